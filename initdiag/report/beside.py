"""What a report computes in its figure worker beside the sweep (:mod:`.worker`).

The mean-field predictions and the Jacobian spectra depend only on the configurations, which are
known before probing (:func:`initdiag.probe.planned_records`): :func:`theory_task` computes them
in the worker while the main process probes (cold, the two compile side by side), then
:func:`diagnose_task` diagnoses the finished sweep there, against those predictions, while the
main process starts on the figures. The main process uses the worker's numbers only when the
sweep's results record exactly the planned configurations and seeds (:func:`plan_matches`);
otherwise, or if the worker fails, it computes them itself -- the same functions, the same
numbers (tested).

Each ``*_task`` is a worker task ``fn(state, ...)``; ``state`` is the worker's dict
(:mod:`.worker`), where the theory stays for the sweep's figures (:mod:`.figures`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

from initdiag.config import ProbeConfig


@dataclasses.dataclass(frozen=True)
class Planned:
    """A probe not yet run, as the theory functions read a result: its ``config`` (what the
    result will record) and ``seed``."""

    config: ProbeConfig
    seed: int


def planned(records: Sequence[tuple[ProbeConfig, int]]) -> list[Planned]:
    """:func:`initdiag.probe.planned_records` as :class:`Planned` probes."""
    return [Planned(c, s) for c, s in records]


def plan_matches(plan: Sequence[Planned], sweep: Any) -> bool:
    """True when ``sweep``'s results record exactly ``plan``'s configurations and seeds, in
    order (then the theory computed from the plan is the sweep's)."""
    results = list(sweep)
    return len(results) == len(plan) and all(
        r.seed == p.seed and r.config.to_dict() == p.config.to_dict()
        for r, p in zip(results, plan))


def theory_task(state: dict, plan: Sequence[Planned]) -> dict[str, Any]:
    """Compute the report's theory of ``plan`` (:func:`.theory_data.predictions`,
    :func:`.theory_data.report_spectra`), keep it in ``state["theory"]`` and return it with the
    seconds each took: ``{"predictions", "spectra", "predictions_s", "spectra_s", "phase_s"}``.

    With the cache on (:func:`initdiag.engine.cache.active_dir`) it then computes the phase
    diagram's planes (:func:`.theory_data.phase_planes`), which stores them in the cache folder:
    whichever process draws the phase diagram loads them from there instead of computing them
    after the sweep (about two seconds when the cache is cold; ``phase_s`` None when off, or
    when that fails: the figure then computes them, or says why it cannot, itself)."""
    from initdiag.engine import cache
    from initdiag.report.theory_data import phase_planes, predictions, report_spectra

    t = time.perf_counter()
    preds = predictions(plan)
    t_pred = time.perf_counter() - t
    t = time.perf_counter()
    spectra = report_spectra(plan)
    t_spectra = time.perf_counter() - t
    state["theory"] = {"predictions": preds, "spectra": spectra}
    t_phase = None
    if cache.active_dir() is not None:
        t = time.perf_counter()
        try:
            phase_planes(plan, preds)
            t_phase = time.perf_counter() - t
        except Exception:  # noqa: BLE001 - the figure computes them (or says why not) itself
            pass
    return {**state["theory"], "predictions_s": t_pred, "spectra_s": t_spectra,
            "phase_s": t_phase}


def diagnose_task(state: dict) -> tuple[list, float]:
    """:func:`initdiag.diagnose` of the sweep loaded into the worker (``state["sweep"]``), and
    the seconds it took."""
    from initdiag.analysis.diagnosis import diagnose

    t = time.perf_counter()
    verdicts = diagnose(state["sweep"])
    return verdicts, time.perf_counter() - t
