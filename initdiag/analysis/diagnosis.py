"""Diagnosis: one verdict per configuration from the per-layer statistics of a probe.

Layer l = 1..L (index l-1). g_l = ``grad_preact_rms`` (RMS of dL/dh^l), v_l = ``act_var``.
A ratio 0/0 counts as 0 (an exactly-zero gradient is infinitely vanished, not missing) and
x/0 with x > 0 as infinity. Findings, each tested independently (:class:`Thresholds`):

* **symmetric** -- the init is ``zeros`` or ``constant`` (or has gain 0), or some layer's weight
  matrix is exactly 0 (``weight_norm == 0``), or some layer's units are identical:
  ``unit_spread < symmetric`` (the fraction of the layer's output variance that lies across
  units; a custom initializer with identical columns gives ~1e-14, float32 rounding). Every unit
  of a layer then computes the same function (or differs only by its bias) and, for zero weights,
  every layer below gets an exactly-zero gradient. ``act_var`` cannot show this (it is over batch
  *and* units, so identical units that vary over the batch have act_var > 0).
* **dead** -- some layer has ``dead_frac >= dead`` (units that are 0 for every sample) while its
  pre-activation is not collapsed: (mean^2 + var of h^l) / (same at layer 1) >= ``act_collapse``.
  Units that read 0 only because the whole forward signal underflowed to 0 are *collapse*.
* **saturation** -- some layer has ``saturation >= saturation`` (tanh, sigmoid, ...).
* **exploding** -- g_l / g_L > ``grad_explode`` for some l < L, or any inf/NaN in the forward
  statistics or g (an overflowing pass). When the forward pass overflows, the gradient numbers
  are not trusted and no vanishing finding is made from them.
* **vanishing** -- g_l / g_L < ``grad_vanish`` for some l < L.
* **collapse** -- v_l / v_1 < ``act_collapse`` for some layer l.

The primary verdict is the first finding in the order symmetric > dead > saturation > exploding >
vanishing > collapse; "healthy" when there is none. Example: tanh with normal(std=0.01) shrinks
forward signal and backward gradient by the same ~0.16 per layer; both *vanishing* and *collapse*
are found and vanishing is primary (the gradient is what stops training), collapse second.
``layer`` is where the threshold is first crossed: going forward for activation findings, going
backward from L (the largest such l) for gradient findings.

Evidence slopes are least-squares fits (``np.polyfit``, degree 1) of log10 of the per-layer
values against l, over the layers where the value is finite and > 0 (NaN when fewer than 2).

Theory beside measurement (:func:`_theory_evidence`): a gradient verdict's text gives the
measured per-layer factor going back (``grad_factor_per_layer`` = 10^-slope) and how many layers
make a decade ("falls 10x every 6.6 layers"), then mean field's chi (``theory_chi``), sqrt(chi)
as the gradient RMS factor and its layers per decade, and whether the measured factor is inside
the finite-width band of the theory (``theory_grad_band``, the spread of the fitted slope at this
width and depth) or outside it ("measurement and theory part", ``theory_parts``). Where the theory
does not apply (normalization, residual, ...), ``theory_note`` holds its reason and the text says
so; with the half_mse loss it notes that the gradient prediction assumes an independent readout.
When the gradient is exactly 0 at every layer (the forward signal underflowed to 0 in float32,
and relu'(0) = 0 passes nothing back) the text says that instead of a ratio; tiny but nonzero
gradients get the ordinary ratio and fit.
Seeds of one configuration are pooled before diagnosis (:func:`initdiag.metrics.pool`, by the
metric's kind): positive metrics by the mean of their log10 (a geometric mean; a 0 in any seed
gives 0), signed means and fractions by the mean.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Iterable

import numpy as np

from initdiag import metrics
from initdiag.nn.spec import parse_spec
from initdiag.base import unknown_choice_message
from initdiag.jsonvalues import encode
from initdiag.results import ProbeResult, SweepResult

#: Primary-verdict priority, highest first.
PRIORITY = ("symmetric", "dead", "saturation", "exploding", "vanishing", "collapse")
TITLES = {"healthy": "healthy", "vanishing": "vanishing gradients",
          "exploding": "exploding gradients", "collapse": "activation collapse",
          "saturation": "saturation", "dead": "dead units", "symmetric": "symmetric"}
_RELU_LIKE = ("relu", "leaky_relu", "elu", "gelu", "silu", "softplus")


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Every threshold of :func:`diagnose` (see the module docstring for the rules).

    Attributes:
      grad_vanish: vanishing when g_l / g_L < this for some layer l (default 1e-2: the gradient
        RMS lost two decades between the output and layer l).
      grad_explode: exploding when g_l / g_L > this for some layer l (default 1e2).
      act_collapse: collapse when act_var_l / act_var_1 < this (default 1e-4: four decades of
        variance, two of RMS, matching the gradient thresholds); also the pre-activation level
        below which dead units count as collapse rather than death.
      saturation: saturation when the saturated fraction of some layer >= this (default 0.3).
      dead: dead units when the fraction of dead units of some layer >= this (default 0.9; a
        healthy deep He/ReLU stack drifts towards ~0.5 as its inputs become correlated).
      symmetric: symmetric when ``unit_spread`` of some layer < this (default 1e-6: identical
        units read ~1e-14; a healthy layer ~0.5-1, a deep correlated ReLU stack >= ~0.01).
    """

    grad_vanish: float = 1e-2
    grad_explode: float = 1e2
    act_collapse: float = 1e-4
    saturation: float = 0.3
    dead: float = 0.9
    symmetric: float = 1e-6

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            try:
                object.__setattr__(self, f.name, float(v))
            except (TypeError, ValueError):
                raise ValueError(f"threshold {f.name} must be a number; got {v!r}") from None
        checks = {"grad_vanish": 0 < self.grad_vanish < 1, "grad_explode": self.grad_explode > 1,
                  "act_collapse": 0 < self.act_collapse < 1, "saturation": 0 < self.saturation <= 1,
                  "dead": 0 < self.dead <= 1, "symmetric": 0 < self.symmetric < 1}
        rules = {"grad_vanish": "in (0, 1)", "grad_explode": "> 1", "act_collapse": "in (0, 1)",
                 "saturation": "in (0, 1]", "dead": "in (0, 1]", "symmetric": "in (0, 1)"}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"threshold {name} must be {rules[name]}; got {getattr(self, name)!r}")

    def replace(self, **overrides: float) -> "Thresholds":
        """A copy with some fields changed; an unknown name raises ValueError listing the fields."""
        valid = [f.name for f in dataclasses.fields(self)]
        for name in overrides:
            if name not in valid:
                raise ValueError(unknown_choice_message("threshold", name, valid))
        return dataclasses.replace(self, **overrides)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The diagnosis of one configuration (or one finding of it, in ``findings``).

    Attributes:
      kind: one of "healthy" and :data:`PRIORITY`. title: its readable name (:data:`TITLES`).
      config: the configuration (without seed). seeds: the seeds pooled.
      key_value, key_label: the number behind the verdict and what it is.
      layer: 1-based layer where the threshold is first crossed, or None.
      evidence: fitted slopes, ratios and maxima (see :func:`diagnose`).
      suggestion: one concrete line. detail: the readable evidence, the part of ``str()``
        between the title and the suggestion. findings: every problem found, primary first.
      ok: (property) True when the kind is "healthy".
    """

    kind: str
    title: str
    config: dict
    seeds: tuple[int, ...]
    key_value: float
    key_label: str
    layer: int | None
    evidence: dict
    suggestion: str
    detail: str = ""
    findings: tuple = ()
    site: str | None = None
    leaf: str | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "healthy"

    def __str__(self) -> str:
        return f"{self.title}: {self.detail}; suggestion: {self.suggestion}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (non-finite floats as "NaN"/"Infinity", as in results files)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name != "findings" and not (f.name in ("site", "leaf") and getattr(self, f.name) is None)}
        d["seeds"] = list(self.seeds)
        d["findings"] = [f.to_dict() for f in self.findings]
        d["text"] = str(self)
        return encode(d)


def pow10(x: float) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.power(10.0, x))


def log10_slope(values: np.ndarray) -> float:
    v = np.asarray(values, np.float64)
    keep = np.isfinite(v) & (v > 0)
    if keep.sum() < 2:
        return math.nan
    return float(np.polyfit(np.arange(1, len(v) + 1)[keep], np.log10(v[keep]), 1)[0])


def _first(mask: np.ndarray, last: bool = False) -> int | None:
    idx = np.flatnonzero(mask)
    return None if idx.size == 0 else int(idx[-1 if last else 0]) + 1


def nanmax(v: np.ndarray) -> float:
    v = np.asarray(v, np.float64)
    return float(np.max(v[~np.isnan(v)])) if np.any(~np.isnan(v)) else math.nan


def spec_name(label: Any) -> tuple[str, dict]:
    try:
        return parse_spec(str(label))
    except ValueError:
        return str(label), {}


def init_advice(act: str, unknown: str = "") -> str:
    """The initializer to recommend for activation ``act`` (a registry name; ``""`` when not
    known: ``unknown`` then, default "xavier_normal for this activation")."""
    if act == "relu":
        return "He init (he_normal: variance 2/fan_in, gain sqrt 2) for ReLU"
    if act in _RELU_LIKE:
        return f"He-like init (he_normal: variance 2/fan_in) for {act}"
    if act == "tanh":
        return "xavier_normal or lecun_normal for tanh (variance ~1/fan_in; gain at most 5/3)"
    if act == "selu":
        return "lecun_normal for SELU"
    if act == "linear":
        return "orthogonal (gain 1) or lecun_normal for a linear stack"
    if not act and unknown:
        return unknown
    return f"xavier_normal for {act or 'this activation'}"


def _suggestion(kind: str, config: dict) -> str:
    act, _ = spec_name(config.get("activation", ""))
    base = init_advice(act)
    if kind == "healthy":
        return "no change needed"
    if kind == "symmetric":
        return f"a random init breaks the symmetry: {base}"
    if kind == "dead":
        bias, _ = spec_name(config.get("bias_init", "zeros"))
        fix = "zero biases (bias_init=zeros)" if bias not in ("zeros", "zero", "none") else "leaky_relu"
        return f"{fix} with He init (he_normal), so pre-activations are not pushed below 0"
    if kind in ("vanishing", "collapse") and act == "sigmoid":
        return _sigmoid_hint(config)
    if kind in ("vanishing", "collapse") and act not in _RELU_LIKE + ("tanh", "selu", "linear"):
        edge = _edge_hint(config)
        return (f"{base}{edge}" if edge else
                f"{act or 'this activation'}'s slope is small at this scale and mean-field theory "
                f"gives no edge of chaos for it here: {_alternatives(config)}")
    if kind in ("exploding", "saturation"):
        return f"smaller weights: {base}" + _edge_hint(config)
    return base + (_edge_hint(config) if kind in ("vanishing", "collapse") else "")


def _edge(config: dict) -> tuple[float, float] | None:
    """(sigma_w^2 at the edge of chaos, sigma_b^2 of the run) or None where there is none."""
    from initdiag import theory

    try:
        b = float(theory.predict_config(config, band=False).bias_var[0])
        return theory.edge_of_chaos(config["activation"], b), b
    except (ValueError, KeyError):
        return None


def _edge_hint(config: dict) -> str:
    """'; sigma_w^2 = 1.76 with sigma_b^2 = 0.05 is at the edge of chaos for tanh' (mean-field
    chi_1 = 1 at the run's bias variance, :func:`initdiag.theory.edge_of_chaos`), or '' where the
    theory gives none: relu and linear stacks with a bias (chi_1 < 1 wherever q* is finite),
    gelu/silu with small biases (chi_1 jumps past 1 where q* does), configs it does not model."""
    act, _ = spec_name(config.get("activation", ""))
    edge = _edge(config)
    if edge is None:
        return ""
    w, b = edge
    if act == "relu" and abs(w - 2.0) < 1e-9:
        return ""  # He init itself, already the base suggestion
    return (f"; sigma_w^2 = {w:.3g} with sigma_b^2 = {b:.3g} is at the edge of chaos for {act} "
            f"(init='variance_scaling(scale={w:.4g}, mode=fan_in, distribution=normal)')")


def _sigmoid_hint(config: dict) -> str:
    """Sigmoid's slope is at most 1/4 and its mean 1/2: mean field's edge of chaos needs
    sigma_w^2 ~ 100, where about half the units are saturated. Say so, with the numbers."""
    from initdiag import theory

    edge = _edge(config)
    if edge is None:
        return f"sigmoid's slope is at most 1/4: {_alternatives(config)}"
    w, b = edge
    q = theory.fixed_point("sigmoid", w, b)
    sat, t = theory.saturation_at("sigmoid", q, config)
    return (f"sigmoid's slope is at most 1/4, so at ~1/fan_in weight variance the gradient "
            f"shrinks every layer; mean field puts the edge of chaos at sigma_w^2 = {w:.3g} with "
            f"sigma_b^2 = {b:.3g} (init='variance_scaling(scale={w:.4g}, mode=fan_in, "
            f"distribution=normal)'), but there q* = {q:.3g} and {sat:.0%} of activations are "
            f"saturated (at t = {t:g}): {_alternatives(config, 'prefer')}")


def _alternatives(config: dict, verb: str = "use") -> str:
    """'use tanh or ReLU, normalization or residual connections', without what the stack has."""
    parts = ["tanh or ReLU"]
    if not config.get("norm"):
        parts.append("normalization")
    if config.get("residual") is None:
        parts.append("residual connections")
    if len(parts) == 1:
        return f"{verb} {parts[0]}"
    if len(parts) == 2:
        return f"{verb} {parts[0]}, or {parts[1]}"
    return f"{verb} {parts[0]}, " + " or ".join(parts[1:])


#: The finite-width band of the gradient factor spans this many standard deviations each side.
BAND_SD = 3.0


def every_factor(factor: float) -> str:
    """'falls 10x every 6.6 layers' for a per-layer factor going back (< 1 falls, > 1 grows)."""
    if not (math.isfinite(factor) and factor > 0):
        return ""
    lg = math.log10(factor)
    if abs(lg) < 1e-12:
        return "level with depth"
    return f"{'falls' if lg < 0 else 'grows'} 10x every {1 / abs(lg):.2g} layers"


def _theory_evidence(config: dict, g: np.ndarray, g_slope: float, seeds: int) -> dict[str, Any]:
    """Mean-field numbers beside the measured ones (NaN where the theory does not apply):

    * theory_chi: geometric mean over layers of chi_l = sigma_w^2 E[phi'(h^l)^2] (the factor of
      E|dL/dh|^2 per layer going back); theory_grad_factor_per_layer: its square root (RMS);
      theory_grad_ratio: predicted grad RMS layer 1 / layer L;
    * layers_per_decade: layers over which the *measured* gradient RMS changes 10x
      (1 / |fitted log10 slope|); theory_layers_per_decade: the same for the predicted profile;
    * theory_grad_factor_fit: 10^-slope of the predicted profile fitted like the measured one
      (same layers); theory_grad_band: (low, high) of the measured factor expected from finite
      width at this depth: +-BAND_SD sd of the fitted slope of one input's random walk
      (:func:`initdiag.theory.grad_slope_sd`, divided by sqrt(seeds) when pooled), the
      low end also moved by that walk's drift exp(-mean step variance) (one input's log RMS
      falls below the log of its mean; a batch averages most of it away). One input's walk is
      the widest; a batch's measured factors sit well inside (xavier/relu, width 256, depth 50:
      within 1 of its sd over 6 seeds). theory_parts: the measured factor lies outside the band;
    * theory_note: why the theory does not apply (its NotApplicable reason) or where its gradient
      prediction is not meant to hold (the half_mse loss), else "".
    """
    from initdiag import theory

    nan2 = (math.nan, math.nan)
    out = {"theory_chi": math.nan, "theory_grad_factor_per_layer": math.nan,
           "theory_grad_ratio": math.nan,
           "layers_per_decade": 1.0 / abs(g_slope) if g_slope and math.isfinite(g_slope) else math.inf,
           "theory_layers_per_decade": math.nan, "theory_grad_factor_fit": math.nan,
           "theory_grad_band": nan2, "theory_parts": False, "theory_note": ""}
    try:
        p = theory.predict_config(config, band=False)
    except theory.NotApplicable as e:
        out["theory_note"] = f"mean-field theory does not apply: {e.reason}"
        return out
    except (ValueError, KeyError) as e:
        out["theory_note"] = f"mean-field theory unavailable: {e}"
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        chi = float(np.exp(np.mean(np.log(p["chi"]))))
    out.update(theory_chi=chi, theory_grad_factor_per_layer=math.sqrt(chi),
               theory_grad_ratio=float(p["grad_preact_rms"][0]))
    if config.get("loss", "projection") != "projection":
        out["theory_note"] = (f"loss={config.get('loss')}: the gradient entering the stack depends "
                              "on its output, while the theory's gradient profile assumes the "
                              "projection loss's independent readout")
    keep = np.isfinite(g) & (g > 0)
    pg = np.asarray(p["grad_preact_rms"], np.float64)
    t_slope = log10_slope(np.where(keep, pg, np.nan))
    if not math.isfinite(t_slope):
        return out
    out["theory_grad_factor_fit"] = pow10(-t_slope)
    out["theory_layers_per_decade"] = 1.0 / abs(t_slope) if t_slope else math.inf
    q = np.asarray(p["preact_var"], np.float64)
    if len(q) < 2 or not np.all(np.isfinite(q) & (q > 0)):
        return out
    step = theory.grad_step_var(theory.gaussian(config["activation"]), q, p.config["widths"])
    sd = theory.grad_slope_sd(step, keep) / math.sqrt(max(int(seeds), 1))
    if not math.isfinite(sd):
        return out
    f = out["theory_grad_factor_fit"]
    # one input's ln RMS drifts by -step_var per layer (E ln R < ln E R); a batch much less
    drift = math.exp(-float(np.mean(step[keep[:-1]]))) if keep[:-1].any() else 1.0
    lo, hi = f * drift * pow10(-BAND_SD * sd), f * pow10(BAND_SD * sd)
    out["theory_grad_band"] = (lo, hi)
    measured = pow10(-g_slope) if math.isfinite(g_slope) else math.nan
    out["theory_parts"] = bool(math.isfinite(measured) and not lo <= measured <= hi)
    return out


def _grad_text(ev: dict, v: dict[str, np.ndarray], verb: str, threshold: str) -> str:
    """The measured side of a gradient verdict: the ratio, the fitted per-layer factor and the
    layers per decade, or where the gradient is exactly 0 (and why, when the forward signal
    underflowed to 0)."""
    g = v["grad_preact_rms"]
    L, zeros, f = len(g), ev["grad_zero_layers"], ev["grad_factor_per_layer"]
    every = every_factor(f)
    fit = (f"x{f:.3g} per layer going back (fitted)" + (f", {every}" if every else "")
           if math.isfinite(f) else "")
    if zeros == L:
        gone = _first((v["act_var"] == 0) & (v["act_mean"] == 0))
        text = (f"grad RMS is exactly 0 at all {L} layers, layer {L} included: no gradient "
                f"reaches the stack")
        if gone is not None:
            text += (f" (the forward signal is exactly 0 from layer {gone} on, underflowed, and "
                     f"passes no gradient back)")
        return text
    if zeros:
        top = _first(g == 0, last=True)
        text = (f"grad RMS falls to exactly 0 at {zeros} of {L} layers (the highest is layer "
                f"{top})" + (f"; {fit} over the nonzero layers" if fit else ""))
    else:
        text = f"grad RMS {verb} {ev['grad_ratio']:.2g}x from layer {L} to layer 1: {fit}"
    return f"{text}; {threshold}"


def _theory_text(ev: dict, config: dict) -> str:
    """The theory's side of a gradient verdict, and where it parts from the measurement."""
    if ev["theory_note"].startswith("mean-field theory"):
        return "; " + ev["theory_note"]
    if not math.isfinite(ev["theory_chi"]):
        return ""
    f = ev["theory_grad_factor_per_layer"]
    every = every_factor(ev["theory_grad_factor_fit"] if math.isfinite(ev["theory_grad_factor_fit"]) else f)
    text = (f"; mean-field theory: chi = {ev['theory_chi']:.3g} per layer, so x{f:.3g} per layer "
            f"for the gradient RMS (sqrt(chi))" + (f", {every}" if every else ""))
    lo, hi = ev["theory_grad_band"]
    if math.isfinite(lo) and math.isfinite(ev["grad_factor_per_layer"]):
        widths = config.get("width")
        n = f"width {widths}" if not isinstance(widths, list) else f"widths {min(widths)}-{max(widths)}"
        band = f"x{lo:.3g}-x{hi:.3g}"
        if ev["theory_parts"]:
            text += (f"; measurement and theory part: the measured x{ev['grad_factor_per_layer']:.3g}"
                     f" per layer is outside the finite-width band {band} ({n}, depth "
                     f"{ev['depth']})")
        else:
            text += f"; the measured factor is within the finite-width band {band}"
    if ev["theory_note"]:
        text += f"; {ev['theory_note']}"
    return text


def _pool(results: list[ProbeResult]) -> dict[str, np.ndarray]:
    return {m: metrics.pool(m, np.array([r[m] for r in results], np.float64))
            for m in results[0].metrics}


def _diagnose(v: dict[str, np.ndarray], config: dict, seeds: tuple[int, ...], t: Thresholds) -> Verdict:
    # an overflowing or nearly overflowing pass (values near 1e308) is data here, not an error
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _diagnose_values(v, config, seeds, t)


def _diagnose_values(v: dict[str, np.ndarray], config: dict, seeds: tuple[int, ...],
                     t: Thresholds) -> Verdict:
    g, av, L = v["grad_preact_rms"], v["act_var"], len(v["grad_preact_rms"])
    pre2 = v["preact_mean"] ** 2 + v["preact_var"]
    forward = np.vstack([v["preact_var"], av, v["act_mean"]])
    bad_fwd = ~np.all(np.isfinite(forward), axis=0)
    overflow = bool(bad_fwd.any() or not np.all(np.isfinite(g)))
    g_rel, av_rel, pre_rel = metrics.relative_to(g, g[-1]), metrics.relative_to(av, av[0]), metrics.relative_to(pre2, pre2[0])
    g_slope, a_slope = log10_slope(g), log10_slope(av)
    ev = {"grad_log10_slope": g_slope, "grad_factor_per_layer": pow10(-g_slope),
          "act_var_log10_slope": a_slope, "act_var_factor_per_layer": pow10(a_slope),
          "grad_ratio": float(g_rel[0]), "act_var_ratio": float(av_rel[-1]),
          "max_saturation": nanmax(v["saturation"]), "max_dead_frac": nanmax(v["dead_frac"]),
          "grad_zero_layers": int(np.sum(g == 0)), "overflow": overflow,
          "first_nonfinite_layer": _first(bad_fwd) if bad_fwd.any() else _first(~np.isfinite(g), True),
          "depth": L}
    ev.update(_theory_evidence(config, g, g_slope, len(seeds)))
    init, params = spec_name(config.get("init", ""))
    found: dict[str, tuple[float, str, int | None, str]] = {}  # kind -> (key, label, layer, detail)
    zero_w = _first(v["weight_norm"] == 0)
    spread = v.get("unit_spread", np.full(L, np.nan))
    same_l = _first(spread < t.symmetric)
    if (init in ("zeros", "zero", "constant") or params.get("gain", 1) == 0 or zero_w is not None
            or same_l is not None):
        hidden = float(np.max(v["grad_weight_norm"][:-1])) if L > 1 else math.nan
        if init in ("zeros", "zero", "constant") or params.get("gain", 1) == 0:
            why = f"{init} init"
        elif zero_w is not None:
            why = f"zero weights at layer {zero_w}"
        else:
            why = (f"identical units from layer {same_l} (unit_spread "
                   f"{float(spread[same_l - 1]):.1e} < {t.symmetric:g})")
        found["symmetric"] = (hidden, "max ||dL/dW|| of layers 1..L-1",
                              zero_w if zero_w is not None else same_l,
                              f"{why}: the units of a layer are identical, so training cannot "
                              f"tell them apart (max ||dL/dW|| below layer {L} = {hidden:.3g})")
    dead_l = (v["dead_frac"] >= t.dead) & (pre_rel >= t.act_collapse)
    if dead_l.any():
        worst = float(np.max(v["dead_frac"][dead_l]))
        found["dead"] = (worst, "max fraction of dead units", _first(dead_l),
                         f"{worst:.0%} of units are 0 for the whole batch (>= {t.dead:.0%} from "
                         f"layer {_first(dead_l)})")
    sat_l = v["saturation"] >= t.saturation
    if sat_l.any():
        found["saturation"] = (ev["max_saturation"], "max saturated fraction", _first(sat_l),
                               f"up to {ev['max_saturation']:.0%} of activations saturated "
                               f"(>= {t.saturation:.0%} from layer {_first(sat_l)})")
    if overflow:
        found["exploding"] = (math.inf, "grad RMS layer 1 / layer L (overflow)",
                              ev["first_nonfinite_layer"], "the pass overflows to inf/NaN at "
                              f"layer {ev['first_nonfinite_layer']} (activation variance "
                              f"x{ev['act_var_factor_per_layer']:.3g} per layer, fitted)")
    inner = np.arange(1, L + 1) < L
    up, down = inner & (g_rel > t.grad_explode), inner & (g_rel < t.grad_vanish)
    if up.any() and not overflow:
        found["exploding"] = (ev["grad_ratio"], "grad RMS layer 1 / layer L", _first(up, True),
                              _grad_text(ev, v, "grows", f"above {t.grad_explode:g} from layer "
                                         f"{_first(up, True)} down") + _theory_text(ev, config))
    if down.any() and not overflow:
        found["vanishing"] = (ev["grad_ratio"], "grad RMS layer 1 / layer L", _first(down, True),
                              _grad_text(ev, v, "falls to", f"below {t.grad_vanish:g} from layer "
                                         f"{_first(down, True)} down") + _theory_text(ev, config))
    col_l = av_rel < t.act_collapse
    if col_l.any():
        found["collapse"] = (ev["act_var_ratio"], "act var layer L / layer 1", _first(col_l),
                             f"activation variance falls to {ev['act_var_ratio']:.2g}x from layer 1 "
                             f"to layer {L} (x{ev['act_var_factor_per_layer']:.3g} per layer, "
                             f"fitted; < {t.act_collapse:g} from layer {_first(col_l)})")

    def make(kind: str, key: float, label: str, layer: int | None, detail: str, findings=()) -> Verdict:
        return Verdict(kind=kind, title=TITLES[kind], config=dict(config), seeds=seeds,
                       key_value=float(key), key_label=label, layer=layer, evidence=dict(ev),
                       suggestion=_suggestion(kind, config), detail=detail, findings=tuple(findings))

    findings = [make(k, *found[k]) for k in PRIORITY if k in found]
    if not findings:
        na = ev["theory_note"] if ev["theory_note"].startswith("mean-field theory") else ""
        return make("healthy", ev["grad_ratio"], "grad RMS layer 1 / layer L", None,
                    f"grad RMS layer 1 / layer {L} = {ev['grad_ratio']:.2g}, activation variance "
                    f"layer {L} / layer 1 = {ev['act_var_ratio']:.2g}, no threshold crossed"
                    + (f"; {na}" if na else ""))
    p = findings[0]
    return dataclasses.replace(p, findings=tuple(findings))


def diagnose(result: ProbeResult | SweepResult | Iterable[ProbeResult],
             thresholds: Thresholds | None = None, **overrides: float) -> Verdict | list[Verdict]:
    """Diagnose a probe (one :class:`Verdict`) or a sweep (one Verdict per configuration).

    A :class:`initdiag.ModelResult` / :class:`initdiag.ModelSweep` (from :func:`initdiag.probe_fn`)
    is diagnosed per site by :func:`initdiag.analysis.model_diagnosis.diagnose_model`.

    Args:
      result: a ProbeResult, or a SweepResult / list of them; or a ModelResult / ModelSweep. Results whose configs are equal
        (they differ only in seed) are pooled (module docstring), in order of first appearance.
      thresholds: a :class:`Thresholds` (defaults if None).
      **overrides: threshold fields to change, e.g. ``grad_vanish=0.1``.

    Raises:
      ValueError: an unknown threshold name (the message lists the valid ones) or a bad value.
      TypeError: ``result`` is not a probe or sweep result.
    """
    t = (thresholds or Thresholds()).replace(**overrides)
    from initdiag.model.result import ModelResult, ModelSweep

    if isinstance(result, (ModelResult, ModelSweep)):
        from initdiag.analysis.model_diagnosis import diagnose_model

        return diagnose_model(result, t)
    if isinstance(result, ProbeResult):
        return _diagnose(_pool([result]), result.config, (result.seed,), t)
    if isinstance(result, (str, bytes)) or not hasattr(result, "__iter__"):
        raise TypeError(f"diagnose takes a ProbeResult or SweepResult; got {type(result).__name__}")
    groups: dict[str, list[ProbeResult]] = {}
    for r in result:
        if not isinstance(r, ProbeResult):
            raise TypeError(f"diagnose takes ProbeResults; got an item of type {type(r).__name__}")
        groups.setdefault(json.dumps(encode(r.config), sort_keys=True), []).append(r)
    from initdiag import theory

    # every configuration's prediction in one vectorized call (cached for _theory_evidence)
    theory.predict_configs([rs[0].config for rs in groups.values()], band=False)
    return [_diagnose(_pool(rs), rs[0].config, tuple(r.seed for r in rs), t) for rs in groups.values()]
