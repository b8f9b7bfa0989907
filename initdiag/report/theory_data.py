"""Theory data of the report: pure functions from results to the mean-field and Jacobian numbers.

Here: each configuration's mean-field prediction (:func:`predictions`, computed once per
distinct distribution) and its finite-width band (:func:`band_values`), the prediction lines
overlaid on the line figures (:func:`theory_lines`), the order / chaos plane of the phase diagram
(:func:`phase_plane`) and the points placed on it (:func:`init_points`, :func:`phase_points`),
the exact Jacobian spectra (:func:`report_spectra`) and their densities
(:func:`spectrum_densities`), and which activations the theory figures show or why they are
skipped. Nothing here draws or imports matplotlib; :mod:`.theory_figures` and
:mod:`.figures_theory` draw these numbers. :mod:`initdiag.theory` (scipy, slow to import) is
imported where it is used, so importing the report does not load it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable, Mapping, Sequence

from pathlib import Path

import numpy as np

from initdiag.config import ProbeConfig
from initdiag.nn.activations import activation as resolve_activation
from initdiag.nn.initializers import initializer as resolve_initializer
from initdiag.report.data import (LINE_COLUMNS, activations, config_key, config_label,
                                  configurations, varying_keys)


# --- the phase diagram -------------------------------------------------------------------------

def init_point(init: Any, width: int, bias_init: Any = "zeros") -> tuple[float, float]:
    """(sigma_w^2, sigma_b^2) of an initializer in a stack of equal width (variances).

    Raises:
      theory.NotApplicable: for initializers without a fixed zero-mean variance.
    """
    from initdiag import theory

    p = theory.predict("linear", init, depth=1, width=width, bias_init=bias_init)
    return float(p.weight_var[0]), float(p.bias_var[0])


def _point_label(init: Any) -> str:
    if isinstance(init, str):
        return resolve_initializer(init).label
    return getattr(init, "label", None) or str(init)


def init_points(inits: Iterable[Any], width: int, bias_init: Any = "zeros"
                ) -> tuple[list[tuple[str, float, float]], list[str]]:
    """``(label, sigma_w^2, sigma_b^2)`` of each initializer (:func:`init_point`), and the labels
    of those the theory does not place (no mean-field variance)."""
    from initdiag import theory

    pts, skipped = [], []
    for init in inits:
        label = _point_label(init)
        try:
            pts.append((label, *init_point(init, width, bias_init)))
        except theory.NotApplicable:
            skipped.append(label)
    return pts, skipped


@dataclasses.dataclass(frozen=True)
class PhasePlane:
    """The (sigma_w^2, sigma_b^2) plane of the phase diagram: the grid (``weight_var``,
    ``bias_var``), log2 chi_1 on it (``log_chi``, [bias, weight]), 1 where q diverges
    (``diverges``), the depth scale xi_c (``xi_c``; 1e6 where infinite) and the axis limits."""

    weight_var: np.ndarray
    bias_var: np.ndarray
    log_chi: np.ndarray
    diverges: np.ndarray
    xi_c: np.ndarray
    weight_lim: tuple[float, float]
    bias_lim: tuple[float, float]


def _stored(name: str, act: Any, key: Any, compute: Any) -> dict[str, np.ndarray]:
    """``compute()`` (a dict of arrays), kept in the compilation cache folder when it is on
    (:func:`initdiag.engine.cache.stored_arrays`: keyed by ``name``, the activation, ``key`` and
    the theory's code, so it is computed once per machine, and exactly); a user callable's code
    is part of no key, so its values are always computed."""
    from initdiag import theory
    from initdiag.engine import cache
    from initdiag.nn import activations

    if act.name.startswith("custom:"):
        return compute()
    return cache.stored_arrays(name, (act.label, *key),
                               (*theory.code_files(), Path(activations.__file__)), compute)


def _phase_grid(act: Any, W: np.ndarray, Bv: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`initdiag.theory.phase_grid`, stored (:func:`_stored`)."""
    from initdiag import theory

    return _stored("phase_grid", act, (W, Bv), lambda: theory.phase_grid(act, W, Bv))


def _edge_of_chaos(act: Any, bias_vars: Sequence[float]) -> float:
    """:func:`initdiag.theory.edge_of_chaos` at the first of ``bias_vars`` that has one (NaN:
    none has), stored (:func:`_stored`)."""
    from initdiag import theory

    def compute() -> dict[str, np.ndarray]:
        for b in bias_vars:
            try:
                return {"edge": np.float64(theory.edge_of_chaos(act, b))}
            except ValueError:  # no edge with a finite q* at this bias variance
                pass
        return {"edge": np.float64(np.nan)}

    return float(_stored("edge_of_chaos", act, tuple(float(b) for b in bias_vars),
                         compute)["edge"])


#: The phase plane's default sigma_b^2 range and (sigma_w^2, sigma_b^2) grid size, shared by
#: :func:`phase_plane` and :func:`initdiag.report.theory_figures.phase_diagram` (so the planes
#: :func:`phase_planes` stores are those the figure loads).
PHASE_BIAS_VAR_RANGE = (0.0, 0.5)
PHASE_GRID = (60, 40)


def phase_plane(activation: Any, points: Sequence[tuple[str, float, float]] = (),
                weight_var_range: tuple[float, float] | None = None,
                bias_var_range: tuple[float, float] = PHASE_BIAS_VAR_RANGE,
                grid: tuple[int, int] = PHASE_GRID) -> PhasePlane:
    """The mean-field phase plane of ``activation`` (:func:`initdiag.theory.phase_grid`) over
    ``weight_var_range`` (log spaced; default (0.25, 8) widened to hold the points and the edge
    of chaos over the bias range) x ``bias_var_range`` (widened to hold the points)."""
    act = resolve_activation(activation)
    pts = list(points)
    lo, hi = weight_var_range or (0.25, 8.0)
    if weight_var_range is None and pts:
        ws = [p[1] for p in pts if p[1] > 0]
        lo, hi = min([lo] + [w / 1.6 for w in ws]), max([hi] + [w * 1.3 for w in ws])
    b_lo, b_hi = bias_var_range
    if pts:
        b_hi = max(b_hi, max(p[2] for p in pts) * 1.1)
    if weight_var_range is None:  # show the edge of chaos, wherever it is (sigmoid: ~100)
        # it moves right with sigma_b^2 (tanh: 1 at 0, 2.8 at 0.5)
        edge = _edge_of_chaos(act, (b_hi, b_lo))
        if np.isfinite(edge):
            hi = max(hi, 1.3 * edge)
    W = np.logspace(np.log10(lo), np.log10(hi), grid[0])
    Bv = np.linspace(b_lo, b_hi, grid[1])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        res = _phase_grid(act, W, Bv)
        log_chi = np.log2(res["chi1"])
    return PhasePlane(W, Bv, log_chi, np.isnan(res["chi1"]).astype(float),
                      np.where(np.isfinite(res["xi_c"]), res["xi_c"], 1e6), (lo, hi),
                      (b_lo, b_hi))


def theory_configs(sweep: Any, preds: Mapping[str, Any], activation: str):
    """(config, Prediction) of one activation's configurations where the theory applies, and
    the reasons it does not for the others (``{reason: [init, ...]}``); ``preds``:
    :func:`predictions`."""
    ok, why = [], {}
    for config, _ in configurations(sweep):
        if config["activation"] != activation:
            continue
        p = preds[config_key(config)]
        if isinstance(p, Exception):
            why.setdefault(getattr(p, "reason", str(p)), []).append(config["init"])
        else:
            ok.append((config, p))
    return ok, why


def phase_activations(sweep: Any, preds: Mapping[str, Any]) -> list[str]:
    """The activations of ``sweep`` the phase diagram shows: those with a configuration the
    theory applies to and a Gaussian-moment form."""
    from initdiag import theory

    acts = []
    for act in activations(sweep):
        ok, _ = theory_configs(sweep, preds, act)
        if not ok:
            continue
        try:
            theory.gaussian(act)
        except (ValueError, TypeError):
            continue
        acts.append(act)
    return acts


def phase_skip_reason(sweep: Any, preds: Mapping[str, Any]) -> str | None:
    """Why the phase diagram does not apply to ``sweep`` (None: it does)."""
    if phase_activations(sweep, preds):
        return None
    reasons = sorted({r for a in activations(sweep) for r in theory_configs(sweep, preds, a)[1]})
    return "mean-field theory does not apply to any configuration of this run" + (
        f" ({'; '.join(reasons)})" if reasons else "")


def phase_planes(sweep: Any, preds: Mapping[str, Any]) -> dict[str, PhasePlane]:
    """The plane of each activation the phase diagram shows (:func:`phase_activations`), as its
    figure computes it: :func:`phase_plane` of the activation with its initializers' points
    (:func:`phase_points`) and the default ranges and grid. With the cache on, computing them
    stores them there, where the figure then finds them (the report's second process does this
    during the sweep)."""
    planes = {}
    for act in phase_activations(sweep, preds):
        pts, _ = phase_points(theory_configs(sweep, preds, act)[0])
        planes[act] = phase_plane(act, pts)
    return planes


def phase_points(ok: Sequence[tuple[dict, Any]]
                 ) -> tuple[list[tuple[str, float, float]], dict[str, str]]:
    """``(label, sigma_w^2, sigma_b^2)`` per initializer of one activation (from its
    predictions, at the last layer: fan_in = width), one point per distinct position; an
    initializer at several positions (e.g. ``normal`` at two widths) is labelled with the
    settings that move it. Returns the points and each label's initializer."""
    by_init: dict[str, dict[tuple[float, float], dict]] = {}
    for c, p in ok:
        xy = (float(p.weight_var[-1]), float(p.bias_var[-1]))
        by_init.setdefault(c["init"], {}).setdefault(xy, c)
    pts, inits = [], {}
    for init, spots in by_init.items():
        # the settings that differ between the initializer's points (depth moves none)
        keys = varying_keys(list(spots.values()), exclude=(*LINE_COLUMNS, "depth")) \
            if len(spots) > 1 else []
        for (w, b), c in spots.items():
            label = init + (f" ({config_label(c, keys)})" if keys else "")
            pts.append((label, w, b))
            inits[label] = init
    return pts, inits


# --- mean-field predictions ---------------------------------------------------------------------

#: How far (in standard deviations of the finite-width fluctuation) the band extends.
BAND_K = 2.0


def _distribution(label: Any, shapes: Sequence[tuple[int, int]], bias: bool = False) -> Any:
    """What a prediction depends on about an initializer: for the variance-scaling family its
    distribution (normal, truncated_normal, uniform) and the variance of every layer, so that
    initializers that draw the *same distribution* (glorot_normal and lecun_normal at equal
    fans) compare equal; for any other initializer its label."""
    try:
        ini = resolve_initializer(label)
        vs = ini.variance_scaling_params  # (scale, mode, distribution), None outside the family
    except (AttributeError, TypeError, ValueError):
        return ("label", str(label))
    if vs is None:
        return ("label", ini.label)
    var = ini.bias_variance if bias else ini.weight_variance
    return ("vs", vs[2], tuple(float(var(fi, fo)) for fi, fo in shapes))


def _prediction_key(config: Mapping[str, Any]) -> str:
    """Configurations with equal keys have equal mean-field predictions: every setting but the
    initializers' names, which enter through the distributions they draw (:func:`_distribution`)."""
    config = ProbeConfig.from_dict(config)
    shapes = list(zip(config.fans[:-1], config.fans[1:]))
    bias = config.bias
    rest = {k: v for k, v in config.items() if k not in ("init", "bias_init")}
    rest["init"] = _distribution(config["init"], shapes)
    rest["bias_init"] = None if bias is None else _distribution(bias, shapes, bias=True)
    return json.dumps(rest, sort_keys=True, default=str)


def predictions(sweep: Any) -> dict[str, Any]:
    """The mean-field prediction of every configuration of ``sweep`` (with the finite-width
    band), computed once: ``{data.config_key(config): Prediction or NotApplicable}``.
    Configurations that differ only in the name of an initializer drawing the same distribution
    (glorot_normal and lecun_normal at equal widths) share one computation."""
    from initdiag import theory

    configs = configurations(sweep)
    same: dict[str, str] = {}  # config_key -> the key of its distinct prediction
    first: dict[str, Any] = {}  # one configuration per distinct prediction
    for config, runs in configs:
        key = config_key(config)
        try:
            same[key] = _prediction_key(config)
        except (KeyError, TypeError, ValueError):
            same[key] = key
        first.setdefault(same[key], runs[0].config)
    computed = dict(zip(first, theory.predict_configs(list(first.values()), band=True)))
    out: dict[str, Any] = {}
    for config, _ in configs:
        key = config_key(config)
        pred = computed[same[key]]
        if isinstance(pred, theory.Prediction) and pred.config.get("init") != config["init"]:
            pred = dataclasses.replace(pred, config={**pred.config, "init": config["init"]})
        out[key] = pred
    return out


def band_values(pred: Any, metric: str, k: float = BAND_K):
    """(lower, upper) of the +-k sd finite-width band of ``metric``, or None without one.

    ``preact_var``: :meth:`Prediction.band` (q_l exp(-+k log_sd_l)). ``act_var``: the same band
    of q_l mapped through the mean-field map q -> Var[phi(z)], z ~ N(0, q) (the layer output's
    variance given its pre-activation variance); the lower and upper ends are the smaller and
    larger of the map at the two ends and at q_l. Other metrics (gradients) have no band.
    """
    from initdiag import theory

    if pred.log_sd is None or not np.all(np.isfinite(pred.log_sd)):
        return None
    lo_q, hi_q = pred.band(k)
    if metric == "preact_var":
        return lo_q, hi_q
    if metric != "act_var":
        return None
    g = theory.gaussian(pred.config["activation"])
    vals = []
    for q in (lo_q, pred["preact_var"], hi_q):
        m = g.moments(q)
        vals.append(np.maximum(m["phi2"] - m["phi"] ** 2, 0.0))
    return np.minimum.reduce(vals), np.maximum.reduce(vals)


@dataclasses.dataclass(frozen=True)
class TheoryLine:
    """The prediction of one configuration's ``metric`` per layer: its initializer ``init``,
    ``layers`` 1..L, ``values`` and the finite-width ``band`` (lower, upper) or None."""

    init: str
    layers: np.ndarray
    values: np.ndarray
    band: tuple[np.ndarray, np.ndarray] | None


def theory_lines(sweep: Any, activation: str, metric: str, preds: Mapping[str, Any],
                 band: bool = False) -> list[TheoryLine]:
    """The mean-field prediction of ``metric`` for every configuration of ``activation`` in
    ``sweep`` the theory covers (``preds``: :func:`predictions`). ``grad_preact_rms`` is predicted
    relative to layer L, so it goes through the measured median of layer L over seeds. With
    ``band``, each line's +-2 sd finite-width band (:func:`band_values`), where there is one."""
    lines = []
    for config, runs in configurations(sweep):
        if config.get("activation") != activation:
            continue
        pred = preds.get(config_key(config))
        if pred is None or isinstance(pred, Exception):
            continue
        y = np.array(pred[metric], np.float64)
        if metric == "grad_preact_rms":
            y = y * float(np.median([r[metric][-1] for r in runs]))
        lines.append(TheoryLine(config["init"], np.arange(1, len(y) + 1), y,
                                band_values(pred, metric) if band else None))
    return lines


# --- Jacobian spectra ---------------------------------------------------------------------------

#: Widest layer at which the report computes exact Jacobian spectra (wider runs are computed at
#: this width with the run's depth: jacfwd + SVD cost ~ depth * width^3).
JACOBIAN_MAX_WIDTH = 256


def jacobian_reason(config: Mapping[str, Any]) -> str | None:
    """Why the report draws no Jacobian spectrum for a configuration (None: it draws one)."""
    if config.get("norm") not in (None, "none"):
        return f"norm={config['norm']} (the spectrum is computed for plain stacks)"
    if config.get("residual") is not None:
        return "residual stack (the spectrum is computed for plain stacks)"
    for key in ("activation", "init", "bias_init"):
        if str(config.get(key, "")).startswith(("custom:", "given")):
            return f"{key}={config.get(key)} is recorded by name only"
    if str(config.get("init", "")).split("(")[0] == "lsuv":
        return "init=lsuv needs data"
    return None


def spectrum_width(config: Mapping[str, Any], max_width: int = JACOBIAN_MAX_WIDTH) -> Any:
    """The width the report computes a configuration's Jacobian at: the run's, capped."""
    w = config["width"]
    if isinstance(w, (list, tuple)):
        return [min(int(v), max_width) for v in w]
    return min(int(w), max_width)


def spectrum_config(config: Mapping[str, Any], seed: int, max_width: int = JACOBIAN_MAX_WIDTH
                    ) -> dict[str, Any]:
    """The arguments of :func:`initdiag.analysis.jacobian.jacobian_spectrum` the report computes a
    configuration's spectrum with: its stack at :func:`spectrum_width`, seed ``seed``, one point."""
    return {"activation": config["activation"], "init": config["init"],
            "depth": int(config["depth"]), "width": spectrum_width(config, max_width),
            "seed": seed, "bias_init": config.bias or "zeros",
            "input_width": None if config.get("input_width") == config["width"]
            else min(int(config["input_width"]), max_width)}


def report_spectra(sweep: Any, max_width: int = JACOBIAN_MAX_WIDTH) -> tuple[dict, dict]:
    """Exact Jacobian spectra (one input point, the first seed) of every configuration of the
    sweep the report can compute them for: ``({config_key: spectrum}, {config_key: reason})``.

    Computed together (:func:`initdiag.analysis.jacobian.jacobian_spectra`): the activations
    share each weight draw, every initializer of an activation and shape one compiled Jacobian."""
    from initdiag.analysis.jacobian import jacobian_spectra

    entries = [(config_key(config), jacobian_reason(config), config, runs[0].seed)
               for config, runs in configurations(sweep)]
    todo = [spectrum_config(config, seed, max_width)
            for _, reason, config, seed in entries if reason is None]
    computed = iter(jacobian_spectra(todo, return_errors=True))
    spectra, skipped = {}, {}
    for key, reason, _, _ in entries:
        result = reason if reason is not None else next(computed)
        if isinstance(result, ValueError):
            result = str(result)
        if isinstance(result, str):
            skipped[key] = result
        else:
            spectra[key] = result
    return spectra, skipped


def jacobian_activations(sweep: Any, spectra: Mapping[str, Any]) -> list[str]:
    """The activations of ``sweep`` with a configuration in ``spectra`` (:func:`report_spectra`)."""
    keys = set(spectra)
    return [a for a in activations(sweep)
            if any(config_key(c) in keys for c, _ in configurations(sweep)
                   if c["activation"] == a)]


def jacobian_skip_reason(sweep: Any, spectra: Mapping[str, Any],
                         skipped: Mapping[str, str]) -> str | None:
    """Why the Jacobian figure does not apply to ``sweep`` (None: it does); ``spectra`` and
    ``skipped`` as :func:`report_spectra` returns them."""
    if jacobian_activations(sweep, spectra):
        return None
    reasons = sorted(set(skipped.values()))
    return "no configuration of this run has a Jacobian the report computes" + (
        f" ({'; '.join(reasons)})" if reasons else "")


def jacobian_panel(sweep: Any, spectra: Mapping[str, Any], activation: str
                   ) -> dict[str, tuple[str, Any]]:
    """The spectra of one activation's panel: ``{label: (init, spectrum)}``, labelled by the
    initializer and the settings that vary between the panel's configurations."""
    configs = [c for c, _ in configurations(sweep) if c["activation"] == activation
               and config_key(c) in spectra]
    keys = varying_keys(configs, exclude=LINE_COLUMNS)
    out = {}
    for c in configs:
        label = c["init"] + (f", {config_label(c, keys)}" if keys else "")
        out[label] = (c["init"], spectra[config_key(c)])
    return out


#: Singular values below this fraction of a spectrum's largest are at the float32 resolution
#: of J (initdiag.analysis.jacobian computes J in float32): not drawn, counted in the panel note.
RESOLUTION = 1e-6


@dataclasses.dataclass(frozen=True)
class SpectrumDensities:
    """Densities of log10 sigma of several spectra on shared bins.

    Attributes:
      log_edges: the bin edges, in log10 sigma.
      densities: ``{label: density per bin}`` (fraction of the spectrum's weight per decade).
      drawn: ``{label: True if any of its values is drawn}``.
      zeros: labels with singular values exactly 0 (with their share when not all are 0).
      noise: labels with values below the resolution (with their share).
      same: ``"a = b"`` for spectra equal to an earlier one (their lines coincide).
    """

    log_edges: np.ndarray
    densities: dict[str, np.ndarray]
    drawn: dict[str, bool]
    zeros: list[str]
    noise: list[str]
    same: list[str]


def spectrum_densities(spectra: Mapping[str, Any], bins: int = 60,
                       resolution: float = RESOLUTION) -> SpectrumDensities:
    """The density of log10 sigma of each spectrum (weighted as in the spectrum) on ``bins``
    shared bins over the pooled range of the drawn values (at least -0.05..0.05, padded by 4%).
    Values exactly 0 and those below ``resolution`` x the spectrum's largest are not counted in
    the density, but named (:class:`SpectrumDensities`)."""
    logs, drawn = {}, {}
    for k, s in spectra.items():
        sv = np.asarray(s.singular_values, np.float64)
        top = sv.max() if sv.size else 0.0
        drawn[k] = (sv > 0) & (sv >= resolution * top)
        logs[k] = np.log10(np.where(drawn[k], sv, 1.0))
    finite = [logs[k][drawn[k]] for k in spectra if drawn[k].any()]
    lo = min(v.min() for v in finite) if finite else -1.0
    hi = max(v.max() for v in finite) if finite else 1.0
    lo, hi = min(lo, -0.05), max(hi, 0.05)
    pad = 0.04 * (hi - lo)
    edges = np.linspace(lo - pad, hi + pad, bins + 1)
    zeros, noise, seen, same, densities = [], [], {}, [], {}
    for label, s in spectra.items():
        sv = np.asarray(s.singular_values, np.float64)
        w = np.asarray(s.weights, np.float64)
        total = max(float(w.sum()), 1e-300)
        zero_mass = float(w[sv == 0].sum()) / total
        noise_mass = float(w[(sv > 0) & ~drawn[label]].sum()) / total
        if zero_mass > 0:
            zeros.append(label + ("" if zero_mass == 1 else f" ({zero_mass:.0%})"))
        if noise_mass > 0:
            noise.append(f"{label} ({noise_mass:.0%})")
        if drawn[label].any():
            key = sv.tobytes()
            if key in seen:
                same.append(f"{seen[key]} = {label}")
            else:
                seen[key] = label
        counts, _ = np.histogram(logs[label][drawn[label]], bins=edges, weights=w[drawn[label]])
        densities[label] = counts / (total * np.diff(edges))
    return SpectrumDensities(edges, densities, {k: bool(v.any()) for k, v in drawn.items()},
                             zeros, noise, same)


def log_density_bins(spectra: Mapping[str, Any] | Sequence[Any], per_decade: float = 4.0,
                     most: int = 80, fewest: int = 12) -> int:
    """A number of histogram bins for the Jacobian densities: about ``per_decade`` bins per
    decade of the pooled range, but no more than the typical spectrum has values / 3."""
    values = list(spectra.values()) if isinstance(spectra, Mapping) else list(spectra)
    sv = [np.asarray(s.singular_values, np.float64) for s in values]
    pos = [v[v > 0] for v in sv if np.any(v > 0)]
    if not pos:
        return fewest
    decades = np.log10(max(v.max() for v in pos)) - np.log10(min(v.min() for v in pos))
    n = int(np.median([v.size for v in pos]))
    return int(np.clip(min(per_decade * max(decades, 1.0), n / 3), fewest, most))
