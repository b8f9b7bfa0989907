"""Data of the report's training section: what to train, the outcome table, the curves drawn.

Nothing here draws or imports matplotlib (:mod:`.train_figures` draws). Definitions used on the
page, each from :mod:`initdiag.train.result`:

* smoothed loss: at step t, the mean training loss over steps t-w+1..t, w = 10% of the steps
  (fewer at the start); the final loss is its value at the last step, and the steps to the
  threshold the first step where it is <= the threshold, half the task's chance loss
  (:meth:`initdiag.TrainResult.steps_to`);
* step-0 verdict: :func:`initdiag.diagnose` of the probe's statistics of the weights before the
  first step (``snapshots[0]``, the same as ``initdiag.probe`` of the configuration), seeds
  pooled.

The normalization figure (:func:`norm_plan`) trains the initializers whose step-0 verdict is not
healthy, for the first activation that has any (at most :data:`NORM_INITS` of them, in sweep
order), with each of :data:`NORMS`.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from initdiag.train.api import TRAIN_BATCH, TRAIN_DEPTH, TRAIN_WIDTH
from initdiag.train.result import TrainResult, TrainSweep, window

#: Normalizations side by side in the normalization figure (None: none).
NORMS = (None, "batchnorm", "layernorm")
#: Most initializers in the normalization figure.
NORM_INITS = 4
#: Options of :func:`initdiag.sweep` that a training run takes over from the report's sweep.
STACK_OPTIONS = ("bias_init", "use_bias", "residual", "saturation_threshold")
#: The conventional update:data ratio (Karpathy): ~1e-3 per step.
UPDATE_REFERENCE = 1e-3


def train_kwargs(sweep_kwargs: Mapping[str, Any], steps: int, *,
                 depths: Sequence[int] | None = None, widths: Sequence[int] | None = None,
                 batch: int | None = None) -> dict[str, Any]:
    """Arguments of :func:`initdiag.train_sweep` for a report's training section: the report's
    activations, initializers, seeds, norm and stack options; ``depths``, ``widths`` and
    ``batch`` when given, else the training defaults (depth 10, width 64, batch 128: a training
    step is a forward and a backward pass, 200 of them per configuration)."""
    kw = {"activations": list(sweep_kwargs["activations"]), "inits": list(sweep_kwargs["inits"]),
          "seeds": list(sweep_kwargs.get("seeds", (0,))),
          "norms": [sweep_kwargs.get("norm")],
          "depths": list(depths or [TRAIN_DEPTH]), "widths": list(widths or [TRAIN_WIDTH]),
          "batch": int(batch or TRAIN_BATCH), "steps": int(steps)}
    kw.update({k: sweep_kwargs[k] for k in STACK_OPTIONS if k in sweep_kwargs})
    return kw


def smoothed(loss: np.ndarray, steps: int) -> np.ndarray:
    """The trailing mean of ``loss`` over :func:`initdiag.train.result.window` steps (fewer at
    the start); NaN from the first NaN on."""
    loss = np.asarray(loss, np.float64)
    w = window(steps)
    c = np.concatenate([[0.0], np.cumsum(loss)])
    t = np.arange(1, loss.size + 1)
    lo = np.maximum(t - w, 0)
    return (c[t] - c[lo]) / (t - lo)


def norm_label(norm: Any) -> str:
    return "no normalization" if norm in (None, "none") else str(norm)


def main_runs(ts: TrainSweep, norm: Any) -> TrainSweep:
    """The runs of the report's own norm (the normalization figure's extra runs left out)."""
    return TrainSweep([r for r in ts if r.config.get("norm") == norm], ts.meta)


def step0_verdicts(ts: Iterable[TrainResult]) -> dict[str, Any]:
    """Config key -> the :func:`initdiag.diagnose` verdict of its step-0 statistics (seeds
    pooled)."""
    from initdiag.analysis.diagnosis import diagnose
    from initdiag.results import SweepResult

    snaps = SweepResult([r.snapshots[0] for r in ts if 0 in r.snapshots])
    if not len(snaps):
        return {}
    verdicts = diagnose(snaps)
    verdicts = verdicts if isinstance(verdicts, list) else [verdicts]
    from initdiag.config import ProbeConfig

    return {ProbeConfig.from_dict(v.config).key(): v for v in verdicts}


def norm_plan(ts: TrainSweep, verdicts: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """``(activation, inits)`` of the normalization figure: the first activation with an
    initializer whose step-0 verdict is not healthy, and up to :data:`NORM_INITS` such
    initializers (sweep order); ``(None, [])`` when every one is healthy."""
    for act in dict.fromkeys(r.config["activation"] for r in ts):
        bad = []
        for r in ts:
            v = verdicts.get(r.config.key())
            if r.config["activation"] == act and v is not None and not v.ok \
                    and r.config["init"] not in bad:
                bad.append(r.config["init"])
        if bad:
            return act, bad[:NORM_INITS]
    return None, []


def _fmt_loss(x: float) -> str:
    return "NaN" if not math.isfinite(x) else f"{x:.3g}"


def outcome_rows(ts: TrainSweep, verdicts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per configuration (seeds together): ``activation``, ``init``, ``norm``,
    ``setting`` (depth and width), ``verdict`` (the step-0 Verdict or None), ``final_loss``,
    ``steps_to`` (per seed: the step, or "not reached"), ``test`` (test accuracy, or test loss
    for a regression), ``diverged`` (per seed), all as text but the verdict."""
    groups: dict[str, list[TrainResult]] = {}
    for r in ts:
        groups.setdefault(r.config.key(), []).append(r)
    rows = []
    for key, runs in groups.items():
        r0 = runs[0]
        finals = [r.final_loss() for r in runs]
        tests = [r.scalars.get("test_accuracy", r.scalars.get("test_loss", math.nan))
                 for r in runs]
        steps = [r.steps_to() for r in runs]
        rows.append({
            "activation": r0.config["activation"], "init": r0.config["init"],
            "norm": norm_label(r0.config.get("norm")),
            "setting": f"depth {r0.config['depth']}, width {r0.config.widths[0]}",
            "verdict": verdicts.get(key),
            "final_loss": ", ".join(_fmt_loss(x) for x in finals),
            "steps_to": ", ".join("not reached" if s is None else str(s) for s in steps),
            "test": ", ".join(_fmt_loss(x) for x in tests),
            "diverged": ", ".join(f"step {r.diverged_at}" for r in runs
                                  if r.diverged_at is not None),
        })
    return rows


def curve_summary(runs: Sequence[TrainResult], name: str) -> np.ndarray:
    """The median over seeds of one curve (``[S]`` or ``[S, L]``); the loss smoothed first."""
    arrs = []
    for r in runs:
        v = np.asarray(r.curves[name], np.float64)
        arrs.append(smoothed(v, r.steps) if name == "loss" else v)
    with np.errstate(all="ignore"):
        return np.median(np.stack(arrs), axis=0) if len(arrs) > 1 else arrs[0]


def by_line(ts: Iterable[TrainResult], activation: str) -> dict[tuple[str, str], list]:
    """``(init, variant) -> runs`` of one activation, in sweep order; ``variant`` names the
    depth and width when they vary (else '')."""
    runs = [r for r in ts if r.config["activation"] == activation]
    shapes = {(r.config["depth"], r.config.widths[0]) for r in runs}
    out: dict[tuple[str, str], list] = {}
    for r in runs:
        variant = (f"depth {r.config['depth']}, width {r.config.widths[0]}"
                   if len(shapes) > 1 else "")
        out.setdefault((r.config["init"], variant), []).append(r)
    return out


def threshold(ts: Iterable[TrainResult]) -> float:
    """The loss threshold of the runs (one task per report)."""
    return next(iter(ts)).threshold()


def outcome_text(ts: TrainSweep) -> str:
    """The training outcome for the command line's summary: the setup and the loss threshold,
    then one line per configuration of :func:`outcome_rows` (its step-0 verdict, final loss,
    steps to the threshold, test accuracy or loss, divergence)."""
    runs = list(ts)
    if not runs:
        return ""
    r0 = runs[0]
    rows = outcome_rows(ts, step0_verdicts(ts))
    test = "test acc" if "test_accuracy" in r0.scalars else "test loss"
    table = [("configuration", "step 0", "final loss", f"steps to {r0.threshold():.3g}", test)]
    for row in rows:
        name = f"{row['activation']} / {row['init']}"
        if row["norm"] != norm_label(None):
            name += f" / {row['norm']}"
        verdict = row["verdict"].kind if row["verdict"] is not None else "n/a"
        steps = row["steps_to"] + (f" (diverged at {row['diverged']})" if row["diverged"] else "")
        table.append((name, verdict, row["final_loss"], steps, row["test"]))
    widths = [max(len(t[i]) for t in table) for i in range(len(table[0]))]
    lines = [f"training: {r0.train.label()} ({len(runs)} runs; final loss = mean of the last "
             f"{window(r0.steps)} steps)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip() for t in table]
    return "\n".join(lines)
