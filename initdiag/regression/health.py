"""``assert_healthy``: fail a test when a probe shows broken signal propagation, no baseline needed.

Four explicit per-layer checks, run on every result (each seed separately), then the diagnosis
(:func:`initdiag.diagnose`, seeds pooled per config) with matching thresholds. With layer
l = 1..L, g_l = ``grad_preact_rms`` (RMS of dL/dh^l) and v_l = ``act_var`` (variance of the
layer output x^l over batch and units):

* ``max_grad_ratio`` = M bounds the backward signal, both directions: every layer l < L must have
  1/M <= g_l / g_L <= M (g_L is the gradient entering the stack at the output; 0/0 counts as 0,
  x/0 as infinity, as in the diagnosis). Diagnosis thresholds grad_vanish = 1/M, grad_explode = M.
* ``var_range`` = (lo, hi) bounds the forward signal, both directions: every layer l must have
  lo <= v_l / v_1 <= hi. Relative to layer 1 so that it does not depend on phi's output range
  (sigmoid outputs have variance ~0.04 in a healthy stack). Diagnosis threshold act_collapse = lo.
* ``max_saturation`` bounds ``saturation`` (fraction of a^l in phi's saturated range) from above
  at every layer; skipped where it is NaN (phi does not saturate). Diagnosis threshold: the same.
* ``max_dead`` bounds ``dead_frac`` (fraction of units 0 for every sample) from above at every
  layer; skipped where NaN (phi cannot die). Diagnosis threshold: the same.

A bound passes at equality. ``None`` switches a check off together with the diagnosis findings it
corresponds to (vanishing/exploding, collapse, saturation, dead). The "symmetric" finding (zeros
or constant init, zero weights) and overflow to inf/NaN always fail. The defaults equal the
defaults of :class:`initdiag.Thresholds`, so ``assert_healthy(r)`` fails exactly when a default
explicit check or ``initdiag.diagnose(r)`` does -- except for a fraction exactly at
``max_saturation`` / ``max_dead``, which passes here while the diagnosis (``>=``) flags it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from initdiag.metrics import relative_to
from initdiag.regression.compare import config_label
from initdiag.results import ProbeResult, SweepResult

_KIND_OF_CHECK = {"grad": ("vanishing", "exploding"), "var": ("collapse",),
                  "saturation": ("saturation",), "dead": ("dead",)}


def worst_deviation(values: np.ndarray, bad: np.ndarray, lo: float, hi: float) -> int:
    """Index of the failing layer farthest outside [lo, hi] in log10 (NaN counts as farthest)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.where(np.isnan(values), np.inf,
                        np.maximum(np.log10(lo) - np.log10(values), np.log10(values) - np.log10(hi)))
    return int(np.flatnonzero(bad)[np.argmax(dist[bad])])


def _checks(r: ProbeResult, max_grad_ratio, var_range, max_saturation, max_dead) -> list[tuple[str, str]]:
    """``(check, message)`` for each failing check of one result."""
    where = f"{config_label(r.config)}, seed {r.seed}"
    out = []
    g, v, L = r["grad_preact_rms"], r["act_var"], r.depth
    if max_grad_ratio is not None and L > 1:
        rel = relative_to(g[:-1], g[-1])
        lo, hi = 1.0 / max_grad_ratio, max_grad_ratio
        bad = ~((rel >= lo) & (rel <= hi))
        if bad.any():
            i = worst_deviation(rel, bad, lo, hi)
            out.append(("grad", f"{where}: layer {i + 1}: grad_preact_rms / its value at layer {L} "
                                f"= {rel[i]:.3g}, outside [{lo:.3g}, {hi:.3g}] (max_grad_ratio="
                                f"{max_grad_ratio:g}; {int(bad.sum())} of {L - 1} layers outside)"))
    if var_range is not None:
        lo, hi = var_range
        rel = relative_to(v, v[0])
        bad = ~((rel >= lo) & (rel <= hi))
        if bad.any():
            i = worst_deviation(rel, bad, max(lo, 1e-300), hi)
            out.append(("var", f"{where}: layer {i + 1}: act_var / act_var at layer 1 = "
                               f"{rel[i]:.3g}, outside [{lo:.3g}, {hi:.3g}] (var_range; "
                               f"{int(bad.sum())} of {L} layers outside)"))
    for check, metric, bound, name in (("saturation", "saturation", max_saturation, "max_saturation"),
                                       ("dead", "dead_frac", max_dead, "max_dead")):
        if bound is None:
            continue
        x = r[metric]
        bad = ~np.isnan(x) & (x > bound)
        if bad.any():
            i = int(np.flatnonzero(bad)[np.argmax(x[bad])])
            out.append((check, f"{where}: layer {i + 1}: {metric} = {x[i]:.3g} > {name}={bound:g} "
                               f"({int(bad.sum())} of {L} layers above)"))
    return out


def _above(bound: float) -> float:
    """The diagnosis flags ``x >= t``; the check fails on ``x > bound``: t is the next float."""
    return float(np.nextafter(bound, math.inf))


def assert_healthy(result: ProbeResult | SweepResult, max_grad_ratio: float | None = 1e2,
                   var_range: tuple[float, float] | None = (1e-4, 1e4),
                   max_saturation: float | None = 0.3, max_dead: float | None = 0.9) -> Any:
    """Raise AssertionError unless every result propagates signal within the given bounds.

    Args:
      result: a ProbeResult or SweepResult; or a ModelResult / ModelSweep, checked per site
        (gradient ratio of every site to the last gradient-carrying one, var relative to the
        first site, saturation, dead_frac; :func:`initdiag.regression.model.checks`) and by the
        model diagnosis.
      max_grad_ratio: M > 1; every layer l < L needs 1/M <= g_l / g_L <= M (module docstring).
      var_range: (lo, hi) with 0 <= lo < 1 < hi; every layer needs lo <= v_l / v_1 <= hi.
      max_saturation: in [0, 1]; every layer needs saturation <= it.
      max_dead: in [0, 1]; every layer needs dead_frac <= it.

    Returns:
      The diagnosis (a Verdict, or a list of them for a SweepResult) when healthy.

    Raises:
      AssertionError: one line per failure, naming the configuration (and seed), the layer, the
        value and the bound; then the diagnosis findings not already covered.
      ValueError: a bound out of range.
    """
    __tracebackhide__ = True
    from initdiag.analysis.diagnosis import Thresholds, diagnose

    if max_grad_ratio is not None and not max_grad_ratio > 1:
        raise ValueError(f"max_grad_ratio must be > 1; got {max_grad_ratio!r}")
    if var_range is not None and not (len(var_range) == 2 and 0 <= var_range[0] < 1 < var_range[1]):
        raise ValueError(f"var_range must be (lo, hi) with 0 <= lo < 1 < hi; got {var_range!r}")
    for name, b in (("max_saturation", max_saturation), ("max_dead", max_dead)):
        if b is not None and not 0 <= b <= 1:
            raise ValueError(f"{name} must be in [0, 1]; got {b!r}")
    from initdiag.regression import model as model_mod

    is_model = model_mod.is_model(result)
    label_of = model_mod.label if is_model else config_label
    results = [result] if isinstance(result, (ProbeResult, model_mod.ModelResult)) else list(result)
    failures: list[tuple[str, str, str]] = []  # (config label, check, message)
    for r in results:
        failures += [(label_of(r.config), c, m) for c, m in (model_mod.checks if is_model else _checks)(
            r, max_grad_ratio, var_range, max_saturation, max_dead)]
    t, dropped = Thresholds(), set()
    over: dict[str, float] = {}
    if max_grad_ratio is None:
        dropped |= {"vanishing", "exploding"}
    else:
        over.update(grad_vanish=1.0 / max_grad_ratio, grad_explode=float(max_grad_ratio))
    if var_range is None or var_range[0] == 0:
        dropped.add("collapse")
    else:
        over["act_collapse"] = float(var_range[0])
    for kind, b in (("saturation", max_saturation), ("dead", max_dead)):
        if b is None or b >= 1:
            dropped.add(kind)  # a fraction cannot exceed 1
        else:
            over[kind] = _above(b)
    verdicts = diagnose(result, t.replace(**over))
    failed_checks = {(label, c) for label, c, _ in failures}
    lines = [m for _, _, m in failures]
    for v in verdicts if isinstance(verdicts, list) else [verdicts]:
        label = label_of(v.config)
        for f in v.findings:
            covered = any((label, c) in failed_checks for c, kinds in _KIND_OF_CHECK.items()
                          if f.kind in kinds)
            if f.kind not in dropped and not covered:
                layer = (f" at site {f.site!r}" if f.site is not None else
                         f" at layer {f.layer}" if f.layer is not None else "")
                lines.append(f"{label}, seeds {list(v.seeds)}: diagnosis {f.kind}{layer}: {f}")
    if lines:
        raise AssertionError("initdiag: unhealthy signal propagation:\n" + "\n".join(lines))
    return verdicts
