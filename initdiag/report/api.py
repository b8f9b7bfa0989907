"""``initdiag.write_report(results, out)``: the report of results you already have.

A stack ``SweepResult`` / ``ProbeResult`` gets the stack report (:mod:`.build`, as
``initdiag report`` writes it: diagnosis, figures, theory); a ``ModelResult`` / ``ModelSweep``
(:func:`initdiag.probe_fn`, :func:`initdiag.sweep_fn`) the model report (:mod:`.model_figures`,
:mod:`.model_html`). Either way the folder ``out`` holds ``index.html`` (self-contained: the
PNGs embedded), the PNGs and ``results.json`` (loadable with :func:`initdiag.load`), written
atomically (:class:`.build.ReportFolder`: on any error nothing is left behind and an existing
``out`` is as it was).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence


def write_report(results: Any, out: str | Path, *, title: str | None = None,
                 command: str | None = None, verdicts: Sequence[Any] | None = None) -> Path:
    """Write the HTML report of ``results`` into the folder ``out``; returns ``out/index.html``.

    Args:
      results: a ``SweepResult`` or ``ProbeResult`` (stack report), or a ``ModelResult`` or
        ``ModelSweep`` of one model (model report).
      out: the output folder (created; an existing one is updated in place, atomically).
      title: shown at the top of the page (escaped).
      command: the command line that made the results, shown on the page (escaped).
      verdicts: model reports only: the verdicts listed on the page by their ``str()``; default
        None: :func:`initdiag.diagnose` of ``results`` (as stack reports always are).

    Raises:
      TypeError: ``results`` is none of those types.
      ValueError: no results, or a ModelSweep of several models (their sites differ).
    """
    from initdiag.model.result import ModelResult, ModelSweep
    from initdiag.results import ProbeResult, SweepResult

    if isinstance(results, ProbeResult):
        results = SweepResult([results])
    if isinstance(results, SweepResult):
        if not len(results):
            raise ValueError("write_report: the SweepResult is empty")
        if verdicts is not None:
            raise ValueError("write_report: verdicts= is for model results; a stack report is "
                             "diagnosed by initdiag.diagnose")
        from initdiag.report.build import write_sweep_report

        _, paths = write_sweep_report(results, out, title=title, command=command)
        return paths["html"]
    if isinstance(results, ModelResult):
        results = ModelSweep([results])
    if isinstance(results, ModelSweep):
        if verdicts is None and len(results):
            from initdiag.analysis.diagnosis import diagnose

            verdicts = diagnose(results)
        return write_model_report(results, out, title=title, command=command,
                                  verdicts=verdicts)["html"]
    raise TypeError(f"write_report: expected a SweepResult, ProbeResult, ModelResult or "
                    f"ModelSweep; got {type(results).__name__}")


def write_model_report(sweep: Any, out: str | Path, *, title: str | None = None,
                       command: str | None = None,
                       verdicts: Sequence[Any] | None = None) -> dict[str, Path]:
    """The model report of a ``ModelSweep`` into ``out`` (atomically); returns
    {"html", "results", figure names...} -> Path."""
    from initdiag.fileio import atomic_write_text
    from initdiag.report.build import HTML_TIMING, TOTAL_TIMING, ReportFolder
    from initdiag.report.model_figures import sites_of, write_model_figures
    from initdiag.report.model_html import render_model_html

    results = list(sweep)
    if not results:
        raise ValueError("write_report: the ModelSweep is empty")
    sites_of(results)  # one model, before any work
    t0 = time.perf_counter()
    folder = ReportFolder(out)
    try:
        sweep.to_json(folder.tmp / "results.json")
        timings: dict[str, float] = {}
        t = time.perf_counter()
        figs = write_model_figures(results, folder.tmp)
        timings["figures"] = time.perf_counter() - t
        t = time.perf_counter()
        render_model_html(results, figs, title=title, timings=timings, command=command,
                          verdicts=verdicts)
        timings[HTML_TIMING] = time.perf_counter() - t
        timings[TOTAL_TIMING] = time.perf_counter() - t0
        page = render_model_html(results, figs, title=title, timings=timings, command=command,
                                 verdicts=verdicts)
        atomic_write_text(folder.tmp / "index.html", page)
        final = folder.commit({f.name for f in figs if f.path is not None})
    except BaseException:
        folder.discard()
        raise
    paths: dict[str, Path] = {"results": final / "results.json"}
    paths.update({f.name: final / f.path.name for f in figs if f.path is not None})
    paths["html"] = final / "index.html"
    return paths
