"""Plot panels: one function per panel, ``f(data, *, ax=None, ...) -> ax``.

``data`` is a :class:`~initdiag.results.SweepResult`, a :class:`~initdiag.results.ProbeResult` or
the tidy frame of ``SweepResult.to_frame()`` (the histogram panel needs results, which carry the
histograms). A panel shows one activation (``activation=``; optional when the data holds one).

Lines: one per initializer (and per variant, e.g. depth, when the data holds several), coloured by
:func:`initdiag.report.style.init_palette`. With several seeds the line is the median over seeds
and the shaded band spans the minimum to the maximum over seeds. Values that are exactly 0 cannot
be drawn on a log axis; the initializers with such values are named in a note at the bottom of
the panel, with where (e.g. "zeros: = 0 below layer 50": zero weights pass no gradient
below the last layer).

Colours: every panel drawn from the same data gets the same initializer colours. When you draw
panels from *different subsets*, pass one ``palette=style.init_palette(all_labels)`` to all.

The numbers a panel draws (seed summaries, pooled histograms, the heatmap's matrix) come from
:mod:`initdiag.report.data`; this module only draws them (matplotlib).

Reuse in your own figures::

    fig, ax = plt.subplots()
    plots.plot_grad_rms(sweep, activation="tanh", ax=ax)
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from initdiag import metrics as metric_table
from initdiag.report import style
from initdiag.report.data import (act_hist_fractions, default_layers, grad_log10_matrix,
                                  heatmap_limits, one_configuration, pick_activation,
                                  probe_results, saturation_metrics, seed_summary, to_frame,
                                  zero_layers_note)

#: Axis labels (with the tensor named) per metric: the ``ylabel`` of its row in
#: :data:`initdiag.metrics.TABLE` (a metric without one is labelled by its name).
YLABELS = {m.name: m.ylabel for m in metric_table.TABLE if m.ylabel}
#: Metrics drawn on a log y axis (they span decades across initializers): the positive kind.
LOG_METRICS = frozenset(m.name for m in metric_table.TABLE if m.log_axis)


def _ax(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.gca()
    return ax


def plot_metric(data: Any, metric: str, *, activation: str | None = None, ax=None,
                palette: Mapping[str, style.LineStyle] | None = None, log: bool | None = None,
                band: bool = True, legend: bool = True, linestyle: str | None = None,
                label_suffix: str = "", title: str | None = None):
    """Per-layer ``metric`` of one activation: one line per initializer, seed band if any.

    Args:
      data: SweepResult, ProbeResult or tidy frame.
      metric: a name of :data:`initdiag.results.METRICS`.
      activation: which activation's results (optional if the data holds only one).
      ax: matplotlib axes (default: the current axes).
      palette: init label -> LineStyle (default: built from the data's init labels).
      log: log y axis (default: True for the metrics in :data:`LOG_METRICS`).
      band: shade min-max over seeds when there are several seeds.
      legend: draw a legend on ``ax``.
      linestyle: force one dash pattern (used to overlay a second metric).
      label_suffix: appended to each legend label.
      title: panel title (default: the activation).

    Returns:
      The axes.
    """
    from initdiag.report.ticks import log_scale

    ax = _ax(ax)
    frame = to_frame(data)
    act = pick_activation(frame, activation)
    summary = seed_summary(frame, metric, act)
    palette = palette or style.init_palette(frame["init"].unique())
    log = metric in LOG_METRICS if log is None else log
    variants = list(summary["variant"].unique())
    order = sorted(palette)
    zero_notes = []
    for (init, variant), g in summary.groupby(["init", "variant"], sort=False):
        st = palette.get(init) or style.init_palette([init])[init]
        g = g.sort_values("layer")
        x, y = g["layer"].to_numpy(), g["median"].to_numpy(dtype=float)
        dash = linestyle or (st.dash if len(variants) == 1
                             else style.DASHES[variants.index(variant) % len(style.DASHES)])
        label = init + (f", {variant}" if variant else "")
        if log:
            note = zero_layers_note(x, y)
            if note:
                zero_notes.append(f"{label}: {note}")
            y = np.where(y > 0, y, np.nan)
        # Markers every ~L/6 layers, offset per initializer so they do not hide each other.
        every = max(1, len(x) // 6)
        offset = (order.index(init) if init in order else 0) * max(1, every // 4) % every
        ax.plot(x, y, color=st.color, linestyle=dash, marker=st.marker,
                markevery=(offset, every), markersize=3.5,
                label=label + label_suffix if label_suffix != "_nolegend_" else "_nolegend_")
        alone = _isolated(y)
        if alone.any():  # a finite value between gaps draws no line segment: mark it
            ax.plot(x[alone], y[alone], color=st.color, marker=st.marker, markersize=3.5,
                    linestyle="none", label="_nolegend_")
        if band and int(g["n_seeds"].max()) > 1:
            lo, hi = g["lo"].to_numpy(dtype=float), g["hi"].to_numpy(dtype=float)
            if log:
                lo, hi = np.where(lo > 0, lo, np.nan), np.where(hi > 0, hi, np.nan)
            ax.fill_between(x, lo, hi, color=st.color, alpha=0.2, linewidth=0, label="_nolegend_")
    if log:
        log_scale(ax, "y")
        if zero_notes:
            sep = "\n" if len(zero_notes) > 1 else " "
            ax.text(0.01, 0.01, "not drawn on the log scale:" + sep + "\n".join(zero_notes),
                    transform=ax.transAxes, fontsize="x-small", color="0.35", va="bottom")
    ax.set_xlabel(r"layer $l$")
    ax.set_ylabel(YLABELS.get(metric, metric))
    ax.set_title(act if title is None else title)
    ax.set_xlim(1, max(int(summary["layer"].max()), 2))
    integer_layers(ax)
    if legend:
        ax.legend(loc="best", frameon=False)
    return ax


def integer_layers(ax, axis: str = "x") -> None:
    """Layer axes get integer ticks only (at small depths matplotlib would put ticks at 1.5)."""
    from matplotlib.ticker import MaxNLocator

    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True))


def _isolated(y: np.ndarray) -> np.ndarray:
    """Finite entries whose neighbours are both missing (NaN) or absent."""
    ok = np.isfinite(y)
    left = np.concatenate([[False], ok[:-1]])
    right = np.concatenate([ok[1:], [False]])
    return ok & ~left & ~right


def plot_act_var(data: Any, **kwargs: Any):
    """Figure a: variance of the layer output x^l vs layer (log y). See :func:`plot_metric`."""
    return plot_metric(data, "act_var", **kwargs)


def plot_grad_rms(data: Any, **kwargs: Any):
    """Figure b: RMS of the backpropagated ∂L/∂h^l vs layer (log y). See :func:`plot_metric`."""
    return plot_metric(data, "grad_preact_rms", **kwargs)


def plot_grad_weight_ratio(data: Any, **kwargs: Any):
    """Figure f: ‖∂L/∂W^l‖_F / ‖W^l‖_F vs layer (log y). See :func:`plot_metric`."""
    return plot_metric(data, "grad_weight_ratio", **kwargs)


def plot_saturation(data: Any, *, activation: str | None = None, ax=None, legend: bool = True,
                    **kwargs: Any):
    """Figure c: saturated fraction (tanh, sigmoid, ...) or, for ReLU, the fraction of entries
    equal to 0 (solid) and of dead units (dotted) vs layer; linear y in [0, 1].

    Returns:
      The axes (with a note in the panel when φ neither saturates nor dies).
    """
    ax = _ax(ax)
    frame = to_frame(data)
    act = pick_activation(frame, activation)
    metrics = saturation_metrics(frame, act)
    if not metrics:
        ax.text(0.5, 0.5, f"{act} neither saturates nor has exact zeros", ha="center",
                va="center", transform=ax.transAxes, color="0.4")
        ax.set_title(act)
        return ax
    if metrics == ["saturation"]:
        plot_metric(frame, "saturation", activation=act, ax=ax, log=False, legend=False, **kwargs)
    else:
        plot_metric(frame, "zero_frac", activation=act, ax=ax, log=False, legend=False, **kwargs)
        plot_metric(frame, "dead_frac", activation=act, ax=ax, log=False, legend=False,
                    linestyle=":", label_suffix="_nolegend_", **kwargs)
        ax.set_ylabel("entries = 0 (solid), dead units (dotted)")
    ax.set_ylim(-0.03, 1.03)
    if legend:
        handles, labels = ax.get_legend_handles_labels()
        keep = [(h, lab) for h, lab in zip(handles, labels) if not lab.startswith("_")]
        if keep:
            ax.legend(*zip(*keep), loc="upper left", frameon=False)
    return ax


def plot_act_hist(data: Any, *, activation: str | None = None, init: str | None = None,
                  layers: Sequence[int] | None = None, ax=None, legend: bool = True,
                  title: str | None = None, colors: Sequence[Any] | None = None,
                  labels: Sequence[str] | None = None, **where: Any):
    """Figure d: distribution of the activation output a^l at chosen layers, one configuration.

    Counts are pooled over the seeds of that one configuration (never across depths, widths or
    any other setting) and shown as the fraction of entries per bin (log y). The outer bins also
    hold the values beyond the histogram range. Needs results probed with ``histograms=True``.

    Args:
      data: SweepResult or ProbeResult.
      activation, init: which configuration (optional when the data holds only one).
      layers: layers to show (default :func:`default_layers`).
      colors, labels: one per layer (default: dark to light, ``"layer l"``).
      **where: further config values that pick the configuration, e.g. ``depth=100, width=512``.

    Returns:
      The axes: one step line per layer, dark (first layer) to light (last).

    Raises:
      ValueError: when the selection holds several configurations (naming what differs).
    """
    from initdiag.report.ticks import log_scale

    ax = _ax(ax)
    rs = probe_results(data)
    if activation is not None:
        where["activation"] = activation
    if init is not None:
        where["init"] = init
    config, rs = one_configuration(rs, where)
    frac, edges, total = act_hist_fractions(rs)
    depth = frac.shape[0]
    layers = default_layers(depth) if layers is None else list(layers)
    bad = [l for l in layers if not 1 <= l <= depth]
    if bad:
        raise ValueError(f"layers {bad} outside 1..{depth}")
    used = np.flatnonzero(frac[[l - 1 for l in layers]].sum(axis=0) > 0)
    colors = style.layer_colors(len(layers)) if colors is None else list(colors)
    labels = [f"layer {l}" for l in layers] if labels is None else list(labels)
    for color, l, lab in zip(colors, layers, labels):
        y = np.where(frac[l - 1] > 0, frac[l - 1], np.nan)
        ax.stairs(y, edges, color=color, linewidth=1.4, label=lab, baseline=None)
    log_scale(ax, "y")
    ax.set_ylim(0.5 / max(float(total.max()), 1.0), 1.5)
    if used.size:
        ax.set_xlim(edges[used[0]], edges[used[-1] + 1])
    ax.set_title(f"{config['activation']} / {config['init']}" if title is None else title)
    ax.set_xlabel(r"$a^l$ (activation output)")
    ax.set_ylabel("fraction of entries")
    if legend:
        ax.legend(loc="best", frameon=False)
    return ax


def plot_grad_heatmap(data: Any, *, activation: str | None = None, ax=None,
                      vmin: float | None = None, vmax: float | None = None,
                      cmap: str = "RdBu_r", colorbar: bool = True):
    """Figure e: heatmap initializer x layer of log10 RMS of ∂L/∂h^l (median over seeds).

    Cells where the gradient is exactly 0 (or undefined) are grey. Colour limits default to
    :func:`heatmap_limits`: symmetric about the median over initializers of the last layer's
    value, so blue reads "smaller than at the output" (vanishing) and red "larger" (exploding).

    Returns:
      The axes (holding one QuadMesh).
    """
    import matplotlib

    ax = _ax(ax)
    frame = to_frame(data)
    act = pick_activation(frame, activation)
    rows, mat = grad_log10_matrix(frame, act)
    if vmin is None or vmax is None:
        vmin, vmax = heatmap_limits([mat])
    cm = matplotlib.colormaps[cmap].with_extremes(bad="0.75")
    masked = np.ma.masked_invalid(mat)
    depth = mat.shape[1]
    mesh = ax.pcolormesh(np.arange(depth + 1) + 0.5, np.arange(len(rows) + 1), masked, cmap=cm,
                         vmin=vmin, vmax=vmax, shading="flat")
    ax.set_yticks(np.arange(len(rows)) + 0.5, rows)
    ax.invert_yaxis()
    ax.set_xlabel(r"layer $l$")
    ax.set_title(act)
    integer_layers(ax)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label=HEATMAP_LABEL)
    return ax


#: Colorbar label of the gradient heatmap.
HEATMAP_LABEL = r"$\log_{10}$ RMS of $\partial L/\partial h^l$"
