"""Measurement beside theory, per layer: :func:`compare` and :func:`compare_frame`.

For a probe result and each metric the theory predicts that the probe measures
(:data:`COMPARED`), layer by layer:

* ``predicted``: the mean-field value (:func:`initdiag.theory.predict_result`, the run's own
  configuration);
* ``measured``: the probe's value; ``grad_preact_rms`` is divided by its value at layer L, as
  the prediction is (the chi-product is relative to the output's gradient);
* ``abs_dev`` = measured - predicted and ``rel_dev`` = measured / predicted - 1.

``rel_dev`` is NaN where a relative deviation has no meaning, and ``notes[metric]`` says why:
the prediction is 0 (``preact_mean``; use ``abs_dev``), the metric is not defined for this
activation (``saturation`` of relu, ``zero_frac`` of tanh: NaN measured and predicted), or the
last layer's gradient is 0. Where the theory does not apply at all (normalization, residual,
zeros/constant weights, LSUV, user callables, user input arrays), nothing is predicted: every
predicted value is NaN, ``reason`` holds :class:`NotApplicable`'s reason, and the frame's
``note`` column repeats it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from initdiag.results import FRAME_COLUMNS, config_columns
from initdiag.theory._predict import NotApplicable, Prediction, predict_result

#: Probe metrics with a mean-field counterpart (chi has none: it is a factor between layers).
COMPARED = ("preact_mean", "preact_var", "act_mean", "act_var", "saturation", "zero_frac",
            "grad_preact_rms")
#: Columns of :meth:`Comparison.to_frame` (the probe frame's, then the theory's).
COMPARE_COLUMNS = FRAME_COLUMNS + ("theory", "abs_dev", "rel_dev", "note")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Per-layer prediction and deviation of one probe result (module docstring).

    Attributes:
      config, seed: the result's.
      reason: why the theory does not apply (None when it does).
      prediction: the :class:`Prediction` (None when the theory does not apply).
      measured, predicted, abs_dev, rel_dev: metric -> float64 array [depth].
      notes: metric -> why its rel_dev is NaN (at some or all layers); absent when it is not.
    """

    config: dict[str, Any]
    seed: int
    reason: str | None
    prediction: Prediction | None
    measured: dict[str, np.ndarray]
    predicted: dict[str, np.ndarray]
    abs_dev: dict[str, np.ndarray]
    rel_dev: dict[str, np.ndarray]
    notes: dict[str, str]

    @property
    def applicable(self) -> bool:
        return self.reason is None

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.measured)

    def __getitem__(self, metric: str) -> np.ndarray:
        """rel_dev of a metric."""
        if metric not in self.rel_dev:
            raise KeyError(f"no comparison for {metric!r}; compared: {', '.join(self.rel_dev)}")
        return self.rel_dev[metric]

    def to_frame(self):
        """Tidy DataFrame, one row per (layer, metric): :data:`COMPARE_COLUMNS`. ``value`` is the
        measured value as compared (grad_preact_rms relative to layer L), ``theory`` the
        prediction, ``note`` the reason rel_dev is NaN (or the theory's NotApplicable reason)."""
        import pandas as pd

        columns = config_columns(self.config, self.seed)
        frames = []
        for m in self.measured:
            note = self.reason if self.reason is not None else self.notes.get(m, "")
            rel = self.rel_dev[m]
            frames.append(pd.DataFrame({
                **columns, "metric": m, "value": self.measured[m], "theory": self.predicted[m],
                "abs_dev": self.abs_dev[m], "rel_dev": rel,
                "note": np.where(np.isnan(rel), note, "")}))
        if not frames:
            return pd.DataFrame(columns=list(COMPARE_COLUMNS))
        return pd.concat(frames, ignore_index=True)[list(COMPARE_COLUMNS)]


def _measured(result: Any, metric: str) -> np.ndarray:
    v = np.asarray(result[metric], np.float64)
    if metric == "grad_preact_rms":
        with np.errstate(divide="ignore", invalid="ignore"):
            v = v / v[-1] if v[-1] != 0 else np.full_like(v, np.nan)
    return v


def compare(result: Any, band: bool = False) -> "Comparison | list[Comparison]":
    """Prediction and per-layer deviation for a ProbeResult (a :class:`Comparison`), or for
    each result of a SweepResult / list (a list, in order).

    Args:
      result: a ProbeResult, SweepResult or iterable of ProbeResults.
      band: also compute the prediction's finite-width band (``prediction.log_sd``; slower).
    """
    if not hasattr(result, "config"):
        return [compare(r, band=band) for r in result]
    metrics = [m for m in COMPARED if m in result.metrics]
    measured = {m: _measured(result, m) for m in metrics}
    depth = int(result.config["depth"])
    try:
        pred = predict_result(result, band=band)
    except NotApplicable as e:
        nan = {m: np.full(depth, np.nan) for m in metrics}
        return Comparison(dict(result.config), int(result.seed), e.reason, None, measured,
                          nan, {m: v.copy() for m, v in nan.items()},
                          {m: v.copy() for m, v in nan.items()}, {})
    predicted = {m: np.asarray(pred[m], np.float64) for m in metrics}
    abs_dev, rel_dev, notes = {}, {}, {}
    for m in metrics:
        x, p = measured[m], predicted[m]
        abs_dev[m] = x - p
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(np.isfinite(p) & (p != 0), x / p - 1.0, np.nan)
        rel_dev[m] = r
        if np.all(np.isnan(x)) and np.all(np.isnan(p)):
            notes[m] = f"{m} is not defined for {result.config['activation']} (NaN measured and predicted)"
        elif np.all(p == 0):
            notes[m] = f"the prediction is 0 (mean-field {m} = 0): see abs_dev"
        elif m == "grad_preact_rms" and np.all(np.isnan(x)):
            notes[m] = "the last layer's gradient is 0: no profile relative to it"
        elif np.isnan(r).any():
            notes[m] = "undefined where the prediction is 0 or either value is NaN"
    return Comparison(dict(result.config), int(result.seed), None, pred, measured, predicted,
                      abs_dev, rel_dev, notes)


def compare_frame(results: Any, band: bool = False):
    """:meth:`Comparison.to_frame` of every result of a ProbeResult, SweepResult or list,
    concatenated (columns :data:`COMPARE_COLUMNS`)."""
    import pandas as pd

    comps = compare(results, band=band)
    comps = [comps] if isinstance(comps, Comparison) else list(comps)
    frames = [c.to_frame() for c in comps]
    if not frames:
        return pd.DataFrame(columns=list(COMPARE_COLUMNS))
    return pd.concat(frames, ignore_index=True)

