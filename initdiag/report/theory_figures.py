"""Theory panels: the order/chaos phase diagram, Jacobian singular-value densities, and the
mean-field overlay (dashed prediction, shaded finite-width band) on the report's line figures.

Panels follow the convention ``f(..., ax=None) -> ax``; matplotlib only. The numbers they draw
(the phase plane, the points placed on it, spectrum densities, prediction lines and bands) come
from :mod:`initdiag.report.theory_data`, which also computes each configuration's prediction
(:func:`~initdiag.report.theory_data.predictions`) and Jacobian spectrum
(:func:`~initdiag.report.theory_data.report_spectra`) once for the report's figures.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from initdiag.nn.activations import activation as resolve_activation
from initdiag.report.theory_data import (PHASE_BIAS_VAR_RANGE, PHASE_GRID, RESOLUTION,
                                         init_points, phase_plane, predictions,
                                         spectrum_densities, theory_lines)

#: Depth-scale contour levels (layers) drawn on the phase diagram.
XI_LEVELS = (3, 10, 30, 100)


def _ax(ax):
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(6.0, 4.2))
    return ax


def phase_diagram(activation: Any, *, inits: Iterable[Any] = (),
                  points: Iterable[tuple[str, float, float]] | None = None,
                  weight_var_range: tuple[float, float] | None = None,
                  bias_var_range: tuple[float, float] = PHASE_BIAS_VAR_RANGE, width: int = 256,
                  bias_init: Any = "zeros", grid: tuple[int, int] = PHASE_GRID,
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
    more, missed = init_points(inits, width, bias_init)
    pts, skipped = list(points or ()) + more, list(skipped) + missed
    plane = phase_plane(act, pts, weight_var_range, bias_var_range, grid)
    W, Bv, log_chi = plane.weight_var, plane.bias_var, plane.log_chi
    mesh = ax.pcolormesh(W, Bv, log_chi, cmap="RdBu_r", shading="auto",
                         norm=TwoSlopeNorm(vcenter=0.0, vmin=-2.0, vmax=2.0), rasterized=True)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label=CHI_LABEL)
    if plane.diverges.any():
        ax.contourf(W, Bv, plane.diverges, levels=[0.5, 1.5], colors="none", hatches=["//"])
        ax.fill_between([], [], [], facecolor="none", hatch="//", edgecolor="0.3",
                        label="q diverges")
    if np.nanmin(log_chi) < 0 < np.nanmax(log_chi):
        ax.contour(W, Bv, log_chi, levels=[0.0], colors="black", linewidths=2.0)
        ax.plot([], [], color="black", linewidth=2.0, label=r"edge of chaos ($\chi_1 = 1$)")
    cs = ax.contour(W, Bv, plane.xi_c, levels=list(XI_LEVELS), colors="0.35", linestyles="--",
                    linewidths=0.8)
    if cs.levels.size:
        ax.clabel(cs, fmt=lambda v: f"{v:g}", fontsize=7, inline_spacing=2)
        ax.plot([], [], color="0.35", linestyle="--", linewidth=0.8,
                label=r"depth scale $\xi_c$ (layers)")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(*plane.weight_lim)
    ax.set_ylim(*plane.bias_lim)
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
    from initdiag.report.ticks import log_scale

    ax = _ax(ax)
    if not isinstance(spectra, Mapping):
        spectra = {s.config["init"]: s for s in spectra}
    if not spectra:
        raise ValueError("jacobian_histogram: no spectra given")
    d = spectrum_densities(spectra, bins, resolution)
    edges = d.log_edges
    for label, s in spectra.items():
        st = palette.get(label) if palette else None
        kw = {"color": st.color, "linestyle": st.dash} if st is not None else {}
        ax.stairs(d.densities[label], 10.0 ** edges, baseline=0.0, linewidth=1.3, fill=False,
                  label=f"{label} (spread {s.spread():.3g})" if d.drawn[label] else label, **kw)
    log_scale(ax, "x")
    ax.set_xlim(10.0 ** edges[0], 10.0 ** edges[-1])
    ax.set_ylim(bottom=0.0)
    ax.axvline(1.0, color="0.3", linestyle=":", linewidth=1)
    ax.set_xlabel(r"singular value $\sigma$ of $\partial x^L / \partial x^0$")
    ax.set_ylabel(r"density of $\log_{10}\sigma$ (per decade)")
    lines = []
    if d.zeros:
        lines.append("σ = 0, not drawn: " + ", ".join(d.zeros))
    if d.noise:
        lines.append(f"σ < {resolution:g} σ_max (float32 rounding), not drawn: "
                     + ", ".join(d.noise))
    if d.same:
        lines.append("same spectrum (lines coincide): " + ", ".join(d.same))
    if note and lines:
        ax.annotate("\n".join(_wrap_list(l.split(", "), 60) for l in lines), (0.0, 0.0),
                    xycoords="axes fraction", xytext=(0, -34), textcoords="offset points",
                    fontsize="x-small", color="0.3", va="top", annotation_clip=False)
    if legend:
        ax.legend(fontsize=7.5)
    return ax


def overlay_theory(ax, sweep: Any, activation: str, metric: str, palette: Mapping[str, Any],
                   preds: Mapping[str, Any] | None = None, band: bool = False) -> int:
    """Draw the mean-field prediction of ``metric`` as a thin dashed line per configuration of
    ``activation`` in ``sweep``, in its initializer's colour (configurations the theory does not
    cover are skipped). ``grad_preact_rms`` is predicted relative to layer L, so it is drawn
    through the measured median of layer L over seeds. With ``band``, the +-2 sd finite-width
    band (:func:`~initdiag.report.theory_data.band_values`) is shaded lightly behind the data,
    where the theory has one (the numbers: :func:`~initdiag.report.theory_data.theory_lines`).

    Args:
      preds: :func:`~initdiag.report.theory_data.predictions` of the sweep (computed here when
        None).

    Returns:
      The number of prediction lines drawn.
    """
    preds = predictions(sweep) if preds is None else preds
    lines = theory_lines(sweep, activation, metric, preds, band)
    log = ax.get_yscale() == "log"
    for line in lines:
        st = palette.get(line.init)
        color = st.color if st is not None else "0.3"
        x, y = line.layers, line.values
        with np.errstate(invalid="ignore"):
            y = np.where(y > 0, y, np.nan) if log else y
        ax.plot(x, y, color=color, linestyle=(0, (2, 2)), linewidth=0.9, alpha=0.9,
                label="_nolegend_", zorder=2.5)
        if line.band is not None:
            ax.fill_between(x, line.band[0], line.band[1], color=color, alpha=0.1, linewidth=0,
                            zorder=0.5, label="_theory_band_")
    return len(lines)
