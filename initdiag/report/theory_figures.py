"""Theory figures: the order/chaos phase diagram, Jacobian singular-value densities, and the
mean-field overlay (dashed prediction, shaded finite-width band) on the report's line figures.

Panels follow the convention ``f(..., ax=None) -> ax``; matplotlib only. The report computes
each configuration's prediction (:func:`predictions`) and Jacobian spectrum
(:func:`report_spectra`) once and shares them between its figures.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from initdiag import theory
from initdiag.config import ProbeConfig
from initdiag.nn.activations import activation as resolve_activation
from initdiag.nn.initializers import initializer as resolve_initializer

#: Depth-scale contour levels (layers) drawn on the phase diagram.
XI_LEVELS = (3, 10, 30, 100)


def _ax(ax):
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(6.0, 4.2))
    return ax


def init_point(init: Any, width: int, bias_init: Any = "zeros") -> tuple[float, float]:
    """(sigma_w^2, sigma_b^2) of an initializer in a stack of equal width (variances).

    Raises:
      theory.NotApplicable: for initializers without a fixed zero-mean variance.
    """
    p = theory.predict("linear", init, depth=1, width=width, bias_init=bias_init)
    return float(p.weight_var[0]), float(p.bias_var[0])


def _point_label(init: Any) -> str:
    if isinstance(init, str):
        return resolve_initializer(init).label
    return getattr(init, "label", None) or str(init)


def phase_diagram(activation: Any, *, inits: Iterable[Any] = (),
                  points: Iterable[tuple[str, float, float]] | None = None,
                  weight_var_range: tuple[float, float] | None = None,
                  bias_var_range: tuple[float, float] = (0.0, 0.5), width: int = 256,
                  bias_init: Any = "zeros", grid: tuple[int, int] = (60, 40),
                  palette: Mapping[str, Any] | None = None, colorbar: bool = True,
                  skipped: Iterable[str] = (), title: str | None = None, ax=None):
    """The (sigma_w^2, sigma_b^2) plane of a fully connected stack with activation phi.

    Colour: log2 chi_1 (blue: ordered, chi_1 < 1, gradients vanish; red: chaotic, chi_1 > 1,
    gradients explode; white: critical). Black line: the edge of chaos chi_1 = 1. Grey dashed
    contours: the correlation depth scale xi_c in layers (:data:`XI_LEVELS`). Hatched grey: q
    diverges (no fixed point, e.g. relu with sigma_w^2 > 2). Each initializer in ``inits`` is a
    labelled point at its (sigma_w^2, sigma_b^2) for a stack of ``width`` units and the given
    ``bias_init``; initializers the theory does not cover are listed in the title line instead.

    Args:
      activation: name, Activation or callable.
      inits: initializer names or objects to place.
      points: ``(label, sigma_w^2, sigma_b^2)`` to place instead of (or besides) ``inits``.
      weight_var_range: sigma_w^2 axis (log scale), default (0.25, 8) widened to fit the points
        and the edge of chaos over the bias range.
      bias_var_range: sigma_b^2 axis.
      width, bias_init: the stack the initializers are placed for.
      grid: number of (sigma_w^2, sigma_b^2) grid points.
      palette: label -> :class:`initdiag.report.style.LineStyle`: points and labels in the
        initializer's colour and marker (default: black circles).
      colorbar: draw a colorbar for this panel (the report draws one shared colorbar).
      skipped: further labels to list as not placed.
      title: panel title (default: the activation and the width).
      ax: matplotlib axes (a new figure when None).

    Returns:
      The axes; its first collection is the chi_1 mesh (for a shared colorbar).
    """
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax = _ax(ax)
    act = resolve_activation(activation)
    pts, skipped = list(points or ()), list(skipped)
    for init in inits:
        label = _point_label(init)
        try:
            pts.append((label, *init_point(init, width, bias_init)))
        except theory.NotApplicable:
            skipped.append(label)
    lo, hi = weight_var_range or (0.25, 8.0)
    if weight_var_range is None and pts:
        ws = [p[1] for p in pts if p[1] > 0]
        lo, hi = min([lo] + [w / 1.6 for w in ws]), max([hi] + [w * 1.3 for w in ws])
    b_lo, b_hi = bias_var_range
    if pts:
        b_hi = max(b_hi, max(p[2] for p in pts) * 1.1)
    if weight_var_range is None:  # show the edge of chaos, wherever it is (sigmoid: ~100)
        for b in (b_hi, b_lo):  # it moves right with sigma_b^2 (tanh: 1 at 0, 2.8 at 0.5)
            try:
                hi = max(hi, 1.3 * theory.edge_of_chaos(act, b))
                break
            except ValueError:  # no edge with a finite q* at this bias variance
                pass
    W = np.logspace(np.log10(lo), np.log10(hi), grid[0])
    Bv = np.linspace(b_lo, b_hi, grid[1])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        res = theory.phase_grid(act, W, Bv)
        log_chi = np.log2(res["chi1"])
    mesh = ax.pcolormesh(W, Bv, log_chi, cmap="RdBu_r", shading="auto",
                         norm=TwoSlopeNorm(vcenter=0.0, vmin=-2.0, vmax=2.0), rasterized=True)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label=CHI_LABEL)
    diverge = np.isnan(res["chi1"]).astype(float)
    if diverge.any():
        ax.contourf(W, Bv, diverge, levels=[0.5, 1.5], colors="none", hatches=["//"])
        ax.fill_between([], [], [], facecolor="none", hatch="//", edgecolor="0.3",
                        label="q diverges")
    if np.nanmin(log_chi) < 0 < np.nanmax(log_chi):
        ax.contour(W, Bv, log_chi, levels=[0.0], colors="black", linewidths=2.0)
        ax.plot([], [], color="black", linewidth=2.0, label=r"edge of chaos ($\chi_1 = 1$)")
    xi = np.where(np.isfinite(res["xi_c"]), res["xi_c"], 1e6)
    cs = ax.contour(W, Bv, xi, levels=list(XI_LEVELS), colors="0.35", linestyles="--",
                    linewidths=0.8)
    if cs.levels.size:
        ax.clabel(cs, fmt=lambda v: f"{v:g}", fontsize=7, inline_spacing=2)
        ax.plot([], [], color="0.35", linestyle="--", linewidth=0.8,
                label=r"depth scale $\xi_c$ (layers)")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(lo, hi)
    ax.set_ylim(b_lo, b_hi)
    ax.set_xlabel(r"$\sigma_w^2$ = fan_in $\cdot$ Var($W_{ij}$)")
    ax.set_ylabel(r"$\sigma_b^2$ = Var($b_j$)")
    _place_points(ax, pts, palette)
    text = f"{act.label}: order / chaos (width {width})" if title is None else title
    if skipped:
        text += "\n" + _wrap_list(skipped) + ": not placed (no mean-field variance)"
    ax.set_title(text)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=7.5, framealpha=0.85)
    return ax


#: Colorbar label of the phase diagram.
CHI_LABEL = r"$\log_2 \chi_1$  (blue: ordered, red: chaotic)"


def _wrap_list(labels: Sequence[str], width: int = 40) -> str:
    lines, cur = [], ""
    for lab in labels:
        piece = lab if not cur else ", " + lab
        if cur and len(cur) + len(piece) > width:
            lines.append(cur + ",")
            cur = lab
        else:
            cur += piece
    return "\n".join(lines + [cur])


def _place_points(ax, pts: Sequence[tuple[str, float, float]],
                  palette: Mapping[str, Any] | None) -> None:
    """Markers at the points; coincident points share one stacked label; labels are placed
    greedily (measured extents) so they neither overlap each other nor leave the axes."""
    groups: dict[tuple[float, float], list[str]] = {}
    for label, w, b in pts:  # initializers at the same point share one label
        groups.setdefault((float(np.round(w, 12)), float(np.round(b, 12))), []).append(label)
    if not groups:
        return
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed = []
    offsets = [(0, 7), (0, 20), (0, 33), (0, 46), (0, 59), (0, 72), (0, 85), (0, 98)]
    for (w, b), labels in sorted(groups.items()):
        for k, lab in enumerate(labels):
            st = palette.get(lab) if palette else None
            color = st.color if st is not None else "black"
            marker = st.marker if st is not None else "o"
            ax.plot([w], [b], marker=marker, color=color, markerfacecolor="white" if k else color,
                    markeredgecolor=color if st is not None else "black", markersize=6 - k,
                    linestyle="none", zorder=5 + k, clip_on=False, label="_nolegend_")
        best = None
        for ha in ("center", "left", "right"):
            for dx, dy in offsets:
                dx = {"center": 0, "left": 4, "right": -4}[ha]
                texts = _stack(ax, labels, (w, b), (dx, dy), ha, palette)
                boxes = [t.get_window_extent(renderer) for t in texts]
                inside = all(frame.x0 <= bb.x0 and bb.x1 <= frame.x1 and bb.y1 <= frame.y1
                             for bb in boxes)
                clash = sum(bb.overlaps(o) for bb in boxes for o in placed)
                score = (not inside, clash, abs(dy))
                if best is None or score < best[0]:
                    if best is not None:
                        for t in best[1]:
                            t.remove()
                    best = (score, texts, boxes)
                else:
                    for t in texts:
                        t.remove()
                if score[:2] == (False, 0):
                    break
            if best[0][:2] == (False, 0):
                break
        placed += best[2]


def _stack(ax, labels, xy, offset, ha, palette):
    """One text per label, stacked upwards from ``offset`` (points) above the point."""
    texts = []
    for k, lab in enumerate(reversed(labels)):
        st = palette.get(lab) if palette else None
        texts.append(ax.annotate(
            lab, xy, xytext=(offset[0], offset[1] + 10 * k), textcoords="offset points",
            ha=ha, va="bottom", fontsize=7.5, zorder=6, annotation_clip=False,
            color=st.color if st is not None else "black",
            bbox=dict(boxstyle="square,pad=0.1", facecolor="white", edgecolor="none",
                      alpha=0.75)))
    return texts


#: Singular values below this fraction of a spectrum's largest are at the float32 resolution
#: of J (initdiag.analysis.jacobian computes J in float32): not drawn, counted in the panel note.
RESOLUTION = 1e-6


def jacobian_histogram(spectra: Mapping[str, Any] | Sequence[Any], *, bins: int = 60,
                       palette: Mapping[str, Any] | None = None, legend: bool = True,
                       note: bool = True, resolution: float = RESOLUTION, ax=None):
    """Histograms of the Jacobian's singular values on a log axis, one step line per spectrum.

    The y value is the density of log10 sigma (fraction of all singular values per decade,
    weighted as in the spectrum). Not drawn, and named in a note under the panel: singular
    values that are exactly 0 (zero weights, or J underflowing to 0 in float32) and those below
    ``resolution`` x the spectrum's largest (:data:`RESOLUTION`: J is computed in float32, so
    such values are rounding noise, not the spectrum). Spectra that are equal (the same
    weights, e.g. glorot_uniform and lecun_uniform at equal widths) are named there too, since
    their lines coincide.

    Args:
      spectra: ``{label: JacobianSpectrum}`` or a list (labelled by their initializer).
      bins: number of bins over the pooled range of log10 sigma of the drawn values.
      palette: label -> LineStyle (default: matplotlib's colour cycle).
      legend, note: draw the legend / the note.
      resolution: relative floor (0 draws every nonzero value).
      ax: matplotlib axes (a new figure when None).

    Returns:
      The axes (log x); a dotted vertical line marks sigma = 1 (isometry).
    """
    ax = _ax(ax)
    if not isinstance(spectra, Mapping):
        spectra = {s.config["init"]: s for s in spectra}
    if not spectra:
        raise ValueError("jacobian_histogram: no spectra given")
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
    zeros, noise, seen, same = [], [], {}, []
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
        st = palette.get(label) if palette else None
        kw = {"color": st.color, "linestyle": st.dash} if st is not None else {}
        counts, _ = np.histogram(logs[label][drawn[label]], bins=edges, weights=w[drawn[label]])
        dens = counts / (total * np.diff(edges))
        ax.stairs(dens, 10.0 ** edges, baseline=0.0, linewidth=1.3, fill=False,
                  label=f"{label} (spread {s.spread():.3g})" if drawn[label].any() else label,
                  **kw)
    ax.set_xscale("log")
    ax.set_xlim(10.0 ** edges[0], 10.0 ** edges[-1])
    ax.set_ylim(bottom=0.0)
    ax.axvline(1.0, color="0.3", linestyle=":", linewidth=1)
    ax.set_xlabel(r"singular value $\sigma$ of $\partial x^L / \partial x^0$")
    ax.set_ylabel(r"density of $\log_{10}\sigma$ (per decade)")
    lines = []
    if zeros:
        lines.append("σ = 0, not drawn: " + ", ".join(zeros))
    if noise:
        lines.append(f"σ < {resolution:g} σ_max (float32 rounding), not drawn: "
                     + ", ".join(noise))
    if same:
        lines.append("same spectrum (lines coincide): " + ", ".join(same))
    if note and lines:
        ax.annotate("\n".join(_wrap_list(l.split(", "), 60) for l in lines), (0.0, 0.0),
                    xycoords="axes fraction", xytext=(0, -34), textcoords="offset points",
                    fontsize="x-small", color="0.3", va="top", annotation_clip=False)
    if legend:
        ax.legend(fontsize=7.5)
    return ax


def log_density_bins(spectra: Mapping[str, Any] | Sequence[Any], per_decade: float = 4.0,
                     most: int = 80, fewest: int = 12) -> int:
    """A number of histogram bins for :func:`jacobian_histogram`: about ``per_decade`` bins
    per decade of the pooled range, but no more than the typical spectrum has values / 3."""
    values = list(spectra.values()) if isinstance(spectra, Mapping) else list(spectra)
    sv = [np.asarray(s.singular_values, np.float64) for s in values]
    pos = [v[v > 0] for v in sv if np.any(v > 0)]
    if not pos:
        return fewest
    decades = np.log10(max(v.max() for v in pos)) - np.log10(min(v.min() for v in pos))
    n = int(np.median([v.size for v in pos]))
    return int(np.clip(min(per_decade * max(decades, 1.0), n / 3), fewest, most))


#: How far (in standard deviations of the finite-width fluctuation) the band extends.
BAND_K = 2.0


def _distribution(label: Any, shapes: Sequence[tuple[int, int]], bias: bool = False) -> Any:
    """What a prediction depends on about an initializer: for the variance-scaling family its
    distribution (normal, truncated_normal, uniform) and the variance of every layer, so that
    initializers that draw the *same distribution* (glorot_normal and lecun_normal at equal
    fans) compare equal; for any other initializer its label."""
    try:
        ini = resolve_initializer(label)
        vs = ini._vs_params()  # (scale, mode, distribution), None outside the family
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
    import dataclasses

    from initdiag.report import data

    out: dict[str, Any] = {}
    done: dict[str, Any] = {}
    for config, runs in data.configurations(sweep):
        key = data.config_key(config)
        try:
            same = _prediction_key(config)
        except (KeyError, TypeError, ValueError):
            same = key
        try:
            if same not in done:
                done[same] = theory.predict_result(runs[0], band=True)
            pred = done[same]
            if isinstance(pred, theory.Prediction) and pred.config.get("init") != config["init"]:
                pred = dataclasses.replace(pred, config={**pred.config, "init": config["init"]})
            out[key] = pred
        except theory.NotApplicable as e:
            out[key] = e
    return out


def band_values(pred: Any, metric: str, k: float = BAND_K):
    """(lower, upper) of the +-k sd finite-width band of ``metric``, or None without one.

    ``preact_var``: :meth:`Prediction.band` (q_l exp(-+k log_sd_l)). ``act_var``: the same band
    of q_l mapped through the mean-field map q -> Var[phi(z)], z ~ N(0, q) (the layer output's
    variance given its pre-activation variance); the lower and upper ends are the smaller and
    larger of the map at the two ends and at q_l. Other metrics (gradients) have no band.
    """
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


def overlay_theory(ax, sweep: Any, activation: str, metric: str, palette: Mapping[str, Any],
                   preds: Mapping[str, Any] | None = None, band: bool = False) -> int:
    """Draw the mean-field prediction of ``metric`` as a thin dashed line per configuration of
    ``activation`` in ``sweep``, in its initializer's colour (configurations the theory does not
    cover are skipped). ``grad_preact_rms`` is predicted relative to layer L, so it is drawn
    through the measured median of layer L over seeds. With ``band``, the +-2 sd finite-width
    band (:func:`band_values`) is shaded lightly behind the data, where the theory has one.

    Args:
      preds: :func:`predictions` of the sweep (computed here when None).

    Returns:
      The number of prediction lines drawn.
    """
    from initdiag.report import data

    preds = predictions(sweep) if preds is None else preds
    drawn = 0
    log = ax.get_yscale() == "log"
    for config, runs in data.configurations(sweep):
        if config.get("activation") != activation:
            continue
        pred = preds.get(data.config_key(config))
        if pred is None or isinstance(pred, Exception):
            continue
        y = np.array(pred[metric], np.float64)
        if metric == "grad_preact_rms":
            y = y * float(np.median([r[metric][-1] for r in runs]))
        st = palette.get(config["init"])
        color = st.color if st is not None else "0.3"
        x = np.arange(1, len(y) + 1)
        with np.errstate(invalid="ignore"):
            y = np.where(y > 0, y, np.nan) if log else y
        ax.plot(x, y, color=color, linestyle=(0, (2, 2)), linewidth=0.9, alpha=0.9,
                label="_nolegend_", zorder=2.5)
        bounds = band_values(pred, metric) if band else None
        if bounds is not None:
            ax.fill_between(x, bounds[0], bounds[1], color=color, alpha=0.1, linewidth=0,
                            zorder=0.5, label="_theory_band_")
        drawn += 1
    return drawn


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


def report_spectra(sweep: Any, max_width: int = JACOBIAN_MAX_WIDTH) -> tuple[dict, dict]:
    """Exact Jacobian spectra (one input point, the first seed) of every configuration of the
    sweep the report can compute them for: ``({config_key: spectrum}, {config_key: reason})``."""
    from initdiag.analysis.jacobian import jacobian_spectrum
    from initdiag.report import data

    spectra, skipped = {}, {}
    for config, runs in data.configurations(sweep):
        key = data.config_key(config)
        reason = jacobian_reason(config)
        if reason is not None:
            skipped[key] = reason
            continue
        try:
            spectra[key] = jacobian_spectrum(
                config["activation"], config["init"], depth=int(config["depth"]),
                width=spectrum_width(config, max_width), seed=runs[0].seed,
                bias_init=config.bias or "zeros",
                input_width=None if config.get("input_width") == config["width"]
                else min(int(config["input_width"]), max_width),
                method="exact")
        except ValueError as e:
            skipped[key] = str(e)
    return spectra, skipped
