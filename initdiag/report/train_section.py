"""The training section of a report (``initdiag report --train STEPS``): train, diagnose step 0,
draw, and what the page shows.

:func:`train_section` trains the runs of :func:`initdiag.report.train_data.train_kwargs` with
:func:`initdiag.train_sweep`, diagnoses each configuration's step 0, trains the normalization
figure's extra runs (:func:`initdiag.report.train_data.norm_plan`: the unhealthy initializers of
one activation with each normalization the report's runs lack), writes the figures and
``train.json`` (every run, :func:`initdiag.load` reads it back) into the report folder and
returns what the page needs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from initdiag.report.train_data import (NORMS, norm_label, norm_plan, outcome_rows,
                                        step0_verdicts)
from initdiag.report.train_figures import write_train_figures

#: Rows of the page's timings table.
TRAIN_TIMING = "training (incl. compilation and the probe at the snapshots)"
TRAIN_FIGURES_TIMING = "training figures"


def train_section(kwargs: Mapping[str, Any], out_dir: str | Path, *, palette: Mapping[str, Any],
                  timings: dict[str, float], progress: Any = None) -> dict[str, Any]:
    """Train, draw and write ``train.json`` into ``out_dir``; ``timings`` gets two rows;
    ``progress(done, total, run)`` is called after each run of the sweep.

    Returns:
      ``{"sweep": TrainSweep, "rows": outcome rows, "figures": WrittenFigures, "label": the
      training setup, "threshold": the loss threshold, "norm_activation", "norm_inits"}``.
    """
    from initdiag.train.api import train_sweep
    from initdiag.train.result import TrainSweep

    t0 = time.perf_counter()
    main = train_sweep(**kwargs, progress=progress)
    verdicts = step0_verdicts(main)
    activation, bad = norm_plan(main, verdicts)
    extra = []
    own = kwargs["norms"][0]
    if activation is not None:
        for norm in NORMS:
            if norm != own:
                extra += list(train_sweep(**{**kwargs, "activations": [activation],
                                             "inits": bad, "norms": [norm]}))
        verdicts.update(step0_verdicts(extra))
    runs = TrainSweep([*main, *extra], {"report": {"train": dict(kwargs)}})
    timings[TRAIN_TIMING] = time.perf_counter() - t0
    t1 = time.perf_counter()
    figs = write_train_figures(runs, out_dir, palette=palette, norm=own,
                               norm_activation=activation, norm_inits=bad)
    timings[TRAIN_FIGURES_TIMING] = time.perf_counter() - t1
    runs.meta["report"]["timings_s"] = {TRAIN_TIMING: timings[TRAIN_TIMING],
                                        TRAIN_FIGURES_TIMING: timings[TRAIN_FIGURES_TIMING]}
    runs.to_json(Path(out_dir) / "train.json")
    return {"sweep": runs, "rows": outcome_rows(runs, verdicts), "figures": figs,
            "label": main[0].train.label(), "threshold": main[0].threshold(),
            "task": main[0].train.task, "norm": norm_label(own),
            "norm_activation": activation, "norm_inits": bad}
