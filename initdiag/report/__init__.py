"""Reports: the figures, the HTML page and the whole report written into a folder
(:mod:`.build`: :func:`.build.build_report`, which the ``initdiag report`` command,
:mod:`initdiag.cli.report`, runs).

Data (pure functions from results to numbers, no matplotlib): :mod:`.data` (frames, seed
summaries, configurations), :mod:`.theory_data` (mean-field predictions, Jacobian spectra, the
phase plane), :mod:`.captions`. Drawing (matplotlib): the look (:mod:`.style`), the panels
(:mod:`.plots`, :mod:`.theory_figures`), the report figures (:mod:`.figures` lists them;
:mod:`.figures_measured`, :mod:`.figures_theory` draw them; :mod:`.context` holds what they
share), log-axis tick labels (:mod:`.ticks`), their layout (:mod:`.layout`) and PNG files
(:mod:`.png`). The page: :mod:`.html` and :mod:`.summary`.

This package imports matplotlib (seaborn's whitegrid style is written out in :mod:`.style`);
the core of initdiag never imports it. It does not
import :mod:`initdiag.cli`.
"""
