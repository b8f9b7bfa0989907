"""Theory figures: the order/chaos phase diagram and Jacobian singular-value histograms.

Both follow the panel convention: ``f(..., ax=None) -> ax``; matplotlib only.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from initdiag import theory
from initdiag.activations import activation as resolve_activation
from initdiag.initializers import initializer as resolve_initializer

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


def phase_diagram(activation: Any, *, inits: Iterable[Any] = (),
                  weight_var_range: tuple[float, float] | None = None,
                  bias_var_range: tuple[float, float] = (0.0, 0.5), width: int = 256,
                  bias_init: Any = "zeros", grid: tuple[int, int] = (60, 40), ax=None):
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
      weight_var_range: sigma_w^2 axis (log scale), default (0.25, 8) widened to fit the points.
      bias_var_range: sigma_b^2 axis.
      width, bias_init: the stack the initializers are placed for.
      grid: number of (sigma_w^2, sigma_b^2) grid points.
      ax: matplotlib axes (a new figure when None).

    Returns:
      The axes.
    """
    from matplotlib.colors import TwoSlopeNorm

    ax = _ax(ax)
    act = resolve_activation(activation)
    points, skipped = [], []
    for init in inits:
        label = resolve_initializer(init).label if not callable(init) or hasattr(init, "label") else str(init)
        try:
            points.append((label, *init_point(init, width, bias_init)))
        except theory.NotApplicable:
            skipped.append(label)
    lo, hi = weight_var_range or (0.25, 8.0)
    if weight_var_range is None and points:
        ws = [p[1] for p in points if p[1] > 0]
        lo, hi = min([lo] + [w / 1.3 for w in ws]), max([hi] + [w * 1.3 for w in ws])
    b_lo, b_hi = bias_var_range
    if points:
        b_hi = max(b_hi, max(p[2] for p in points) * 1.1)
    W = np.logspace(np.log10(lo), np.log10(hi), grid[0])
    Bv = np.linspace(b_lo, b_hi, grid[1])
    res = theory.phase_grid(act, W, Bv)
    log_chi = np.log2(res["chi1"])
    mesh = ax.pcolormesh(W, Bv, log_chi, cmap="RdBu_r", shading="auto",
                         norm=TwoSlopeNorm(vcenter=0.0, vmin=-2.0, vmax=2.0))
    ax.figure.colorbar(mesh, ax=ax, label="log2 chi_1  (blue ordered, red chaotic)")
    diverge = np.isnan(res["chi1"]).astype(float)
    if diverge.any():
        ax.contourf(W, Bv, diverge, levels=[0.5, 1.5], colors="none", hatches=["//"])
    if np.nanmin(log_chi) < 0 < np.nanmax(log_chi):
        ax.contour(W, Bv, log_chi, levels=[0.0], colors="black", linewidths=2.0)
        ax.plot([], [], color="black", linewidth=2.0, label="edge of chaos (chi_1 = 1)")
    xi = np.where(np.isfinite(res["xi_c"]), res["xi_c"], 1e6)
    cs = ax.contour(W, Bv, xi, levels=list(XI_LEVELS), colors="0.35", linestyles="--",
                    linewidths=0.9)
    ax.clabel(cs, fmt=lambda v: f"xi_c={v:g}", fontsize=7)
    groups: dict[tuple[float, float], list[str]] = {}
    for label, w, b in points:  # initializers at the same point share one label
        groups.setdefault((round(w, 12), round(b, 12)), []).append(label)
    for k, ((w, b), labels) in enumerate(sorted(groups.items())):
        ax.plot([w], [b], marker="o", color="black", markerfacecolor="white", linestyle="none",
                zorder=5, clip_on=False)
        ax.annotate(", ".join(labels), (w, b), xytext=(4, 6 + 11 * (k % 3)),
                    textcoords="offset points", fontsize=7.5, zorder=6)
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(lo, hi)
    ax.set_ylim(b_lo, b_hi)
    ax.set_xlabel("sigma_w^2 = fan_in Var(W)")
    ax.set_ylabel("sigma_b^2 = Var(b)")
    title = f"{act.label}: order / chaos (width {width})"
    if skipped:
        title += f"\nnot placed (no mean-field variance): {', '.join(skipped)}"
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=7.5)
    return ax


def jacobian_histogram(spectra: Mapping[str, Any] | Sequence[Any], *, bins: int = 60,
                       ax=None):
    """Densities of log10 of the Jacobian's singular values, one step line per spectrum.

    Args:
      spectra: ``{label: JacobianSpectrum}`` or a list (labelled by their initializer).
      bins: number of bins over the pooled range of log10 sigma (floored at 1e-8).
      ax: matplotlib axes (a new figure when None).

    Returns:
      The axes; a dotted vertical line marks sigma = 1 (isometry).
    """
    ax = _ax(ax)
    if not isinstance(spectra, Mapping):
        spectra = {s.config["init"]: s for s in spectra}
    if not spectra:
        raise ValueError("jacobian_histogram: no spectra given")
    logs = {k: np.log10(np.maximum(s.singular_values, 1e-8)) for k, s in spectra.items()}
    lo = min(v.min() for v in logs.values())
    hi = max(v.max() for v in logs.values())
    lo, hi = min(lo, -0.05), max(hi, 0.05)
    edges = np.linspace(lo, hi, bins + 1)
    for label, s in spectra.items():
        dens, _ = np.histogram(logs[label], bins=edges, weights=s.weights, density=True)
        ax.stairs(dens, edges, label=f"{label} (spread {s.spread():.3g})")
    ax.axvline(0.0, color="0.3", linestyle=":", linewidth=1)
    ax.set_xlabel("log10 singular value of dx^L/dx^0")
    ax.set_ylabel("density")
    ax.legend(fontsize=7.5)
    return ax


def overlay_theory(ax, sweep: Any, activation: str, metric: str, palette: Mapping[str, Any]) -> int:
    """Draw the mean-field prediction of ``metric`` as a thin dashed line per configuration of
    ``activation`` in ``sweep``, in its initializer's colour (configurations the theory does not
    cover are skipped). ``grad_preact_rms`` is predicted relative to layer L, so it is drawn
    through the measured median of layer L over seeds.

    Returns:
      The number of lines drawn.
    """
    seen: dict[str, list] = {}
    for r in sweep:
        if r.config.get("activation") != activation:
            continue
        key = repr(sorted((k, str(v)) for k, v in r.config.items()))
        seen.setdefault(key, []).append(r)
    drawn = 0
    for runs in seen.values():
        try:
            pred = theory.predict_result(runs[0], band=False)
        except theory.NotApplicable:
            continue
        y = np.array(pred[metric], np.float64)
        if metric == "grad_preact_rms":
            y = y * float(np.median([r[metric][-1] for r in runs]))
        st = palette.get(runs[0].config["init"])
        color = st.color if st is not None else "0.3"
        with np.errstate(invalid="ignore"):
            y = np.where(y > 0, y, np.nan) if ax.get_yscale() == "log" else y
        ax.plot(np.arange(1, len(y) + 1), y, color=color, linestyle=(0, (2, 2)), linewidth=0.9,
                alpha=0.9, label="_nolegend_")
        drawn += 1
    return drawn
