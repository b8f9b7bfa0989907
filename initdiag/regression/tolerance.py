"""Per-metric tolerances of :func:`initdiag.compare`, and how each kind measures an error.

Three kinds of comparison, chosen per metric by the metric's kind in the metric table
(:data:`initdiag.metrics.TABLE`: ``Metric.comparison``; defaults ``Metric.rtol``/``atol``):

* ``"ratio"`` (kind "positive": variances, RMS, norms and their ratios). These are positive and
  span tens of decades through a deep stack (a vanishing gradient is 1e-40 at layer 1), so an
  absolute tolerance is meaningless: they are compared in log space.
  ``error = max(got/expected, expected/got) - 1``, passing when ``error <= rtol``, i.e.
  ``|ln(got/expected)| <= ln(1 + rtol)``. Default ``rtol = 1e-3`` (0.1%): a rerun with the
  same seeds is bit for bit identical on one machine and differs by float32 rounding (~1e-6)
  elsewhere, while a gain change of 1% moves a variance by 2%. ``atol`` does not apply. Zero
  (or a negative value) equals only the same value: any other pairing is an infinite error,
  whatever ``rtol`` (a gradient that underflowed to 0 is infinitely far in log space).
* ``"abs"`` (kind "fraction": fractions in [0, 1] such as ``saturation``, ``dead_frac``).
  ``error = |got - expected|``, passing when ``error <= atol``. Default ``atol = 1e-3`` (0.1
  percentage point); a fraction near 0 has no meaningful relative error. ``rtol`` does not
  apply.
* ``"scaled"`` (kind "signed": the means ``preact_mean``, ``act_mean``; and any metric not in
  the table). ``error = |got - expected|``, passing when
  ``error <= atol + rtol * max(|expected|, sigma)``, where sigma is the square root of the
  metric's ``scale`` metric (:data:`SCALE_OF`: ``preact_var`` for ``preact_mean``, ``act_var``
  for ``act_mean``) expected at that layer; 0 when unknown. A mean near 0 is noise of the
  order of sigma, so the relative part is measured against the spread of the values, not
  against the mean alone. Defaults ``rtol = 1e-3``, ``atol = 0``.

Special values, for every kind: NaN equals only NaN, +Inf only +Inf, -Inf only -Inf; any other
pairing is a deviation with an infinite (or NaN) error.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple

import numpy as np

from initdiag.metrics import TABLE

KINDS = ("ratio", "abs", "scaled")


class Tolerance(NamedTuple):
    """How one metric is compared: ``kind`` (see the module docstring), ``rtol``, ``atol``."""

    kind: str
    rtol: float
    atol: float

    def describe(self) -> str:
        if self.kind == "ratio":
            return f"ratio<={self.rtol:.3g}"
        if self.kind == "abs":
            return f"abs<={self.atol:.3g}"
        return f"abs<={self.atol:.3g}+{self.rtol:.3g}*scale"


_SCALED = Tolerance("scaled", 1e-3, 0.0)  # a metric not in the table

#: The default tolerance of every metric of :data:`initdiag.metrics.TABLE`, from its row.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    m.name: Tolerance(m.comparison, m.rtol, m.atol) for m in TABLE}

#: For a "scaled" metric: the variance metric whose square root is its scale sigma.
SCALE_OF: dict[str, str] = {m.name: m.scale for m in TABLE if m.scale is not None}


def resolve(metrics: list[str], rtol: float | None, atol: float | None,
            tolerances: Mapping[str, Any] | None) -> dict[str, Tolerance]:
    """The tolerance of each metric: defaults, then global ``rtol``/``atol``, then per metric.

    ``tolerances`` maps a metric name to ``{"rtol": r, "atol": a}`` (either key optional).

    Raises:
      ValueError: a negative tolerance, an unknown key, or a per-metric tolerance for a metric
        that is not compared.
    """
    rtol = None if rtol is None else nonnegative("rtol", rtol)
    atol = None if atol is None else nonnegative("atol", atol)
    out: dict[str, Tolerance] = {}
    for m in metrics:
        t = DEFAULT_TOLERANCES.get(m, _SCALED)
        out[m] = t._replace(rtol=t.rtol if rtol is None else rtol,
                            atol=t.atol if atol is None else atol)
    for m, spec in (tolerances or {}).items():
        if m not in out:
            raise ValueError(f"tolerances given for metric {m!r}, which is not compared; "
                             f"compared metrics: {', '.join(metrics)}")
        if not isinstance(spec, Mapping):
            raise TypeError(f"tolerances[{m!r}] must be a dict like {{'rtol': 0.01}}; got {spec!r}")
        for k, v in spec.items():
            if k not in ("rtol", "atol"):
                raise ValueError(f"tolerances[{m!r}] has key {k!r}; valid keys: rtol, atol")
        out[m] = out[m]._replace(**{k: nonnegative(f"tolerances[{m!r}][{k!r}]", v)
                                    for k, v in spec.items()})
    return out


def nonnegative(name: str, value: Any) -> float:
    """``float(value)`` (a number or its text), or a ValueError naming ``name`` and the value
    unless it is a finite number >= 0 (NaN is refused; so is infinity, a tolerance that would
    pass anything)."""
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        v = math.nan
    if not v >= 0:
        raise ValueError(f"{name} must be a number >= 0; got {value!r}")
    if math.isinf(v):
        raise ValueError(f"{name} must be a finite number >= 0 (an infinite tolerance passes "
                         f"anything); got {value!r}")
    return v


def errors(tol: Tolerance, expected: np.ndarray, got: np.ndarray,
           scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-layer ``(error, allowed, ok)`` of ``got`` against ``expected`` under ``tol``.

    ``error`` and ``allowed`` are in the kind's units (ratio excess or absolute difference).
    """
    e = np.asarray(expected, np.float64)
    g = np.asarray(got, np.float64)
    err = np.full(e.shape, math.inf)
    allowed = np.full(e.shape, tol.rtol if tol.kind == "ratio" else tol.atol)
    finite = np.isfinite(e) & np.isfinite(g)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if tol.kind == "ratio":
            pos = finite & (e > 0) & (g > 0)
            r = g / e
            err = np.where(pos, np.maximum(r, 1.0 / r) - 1.0, err)
            err = np.where(finite & ~pos & (g == e), 0.0, err)  # 0 == 0; else stays inf
        else:
            err = np.where(finite, np.abs(g - e), err)
            if tol.kind == "scaled":
                s = np.zeros(e.shape) if scale is None else np.sqrt(np.abs(np.asarray(scale)))
                s = np.where(np.isfinite(s), s, 0.0)
                allowed = tol.atol + tol.rtol * np.maximum(np.where(finite, np.abs(e), 0.0), s)
    same_special = ~finite & ((np.isnan(e) & np.isnan(g)) | (e == g))
    err = np.where(same_special, 0.0, err)
    err = np.where(~finite & ~same_special & (np.isnan(e) | np.isnan(g)), math.nan, err)
    ok = same_special | (finite & (err <= allowed))
    return err, allowed, ok
