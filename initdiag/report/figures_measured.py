"""The report figures of measured data: line figures, the distribution grid, the heatmap.

Each figure draws one panel per activation with the panel functions of :mod:`.plots`, shares one
initializer palette between them (:class:`~initdiag.report.context.Context`) and is laid out by
:mod:`.layout` (fixed panel sizes, measured margins). The line figures can overlay the mean-field
prediction (:func:`initdiag.report.theory_figures.overlay_theory`). A figure is a function
``(sweep, ctx) -> matplotlib Figure``; :mod:`.figures` lists them with titles and captions.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from initdiag.report import layout, plots, style
from initdiag.report.context import Context
from initdiag.report.data import (LAYER_FRACTION_NAMES, LAYER_FRACTIONS, activations,
                                  fraction_layers, grad_log10_matrix, heatmap_limits, hist_rows)
from initdiag.report.layout import (CBAR_W, HEAT_ROW_H, HEAT_W, HIST_H, HIST_W, LABEL_WRAP,
                                    PANEL_H, PANEL_W, WGAP)
from initdiag.report.theory_figures import overlay_theory
from initdiag.results import SweepResult


def line_figure(draw_panel: Callable[..., Any], title: str, theory_metric: str | None = None,
                band: bool = False) -> Callable[[SweepResult, Context], Any]:
    """A figure of one line panel per activation (``draw_panel``: a :mod:`.plots` function),
    titled ``title``, with the initializer legend on the right; with ``theory_metric``, the
    mean-field prediction of that metric overlaid (and its finite-width band with ``band``).
    Returns the figure's ``draw(sweep, ctx)``."""

    def draw(sweep: SweepResult, ctx: Context):
        acts = activations(sweep)
        n = len(acts)
        fig, axes = layout.new_grid(1, n, [PANEL_W] * n, [PANEL_H])
        for ax, act in zip(axes[0], acts):
            draw_panel(ctx.frame, activation=act, ax=ax, palette=ctx.palette, legend=False)
            if theory_metric is not None:  # dashed mean-field prediction per initializer
                overlay_theory(ax, sweep, act, theory_metric, ctx.palette, ctx.predictions,
                               band=band)
        handles, labels = {}, []
        for ax in axes[0]:
            for handle, lab in zip(*ax.get_legend_handles_labels()):
                if not lab.startswith("_") and lab not in handles:
                    handles[lab] = handle
                    labels.append(lab)
        layout.side_legend(axes[0, -1], handles, labels)
        head = layout.suptitle(fig, title, n * PANEL_W + 2.0)
        layout.finish_layout(fig, axes, [PANEL_W] * n, [PANEL_H], header=[head])
        return fig
    return draw


def hist_figure(sweep: SweepResult, ctx: Context):
    """The distribution figure: one row per initializer (and variant), one column per
    activation, each panel the pooled histograms of a few layers (:func:`.plots.plot_act_hist`)."""
    acts, rows = activations(sweep), hist_rows(sweep)
    nr, nc = len(rows), len(acts)
    fig, axes = layout.new_grid(nr, nc, [HIST_W] * nc, [HIST_H] * nr)
    legend_from = None
    depths = {r.depth for r in sweep}
    by_fraction = len(depths) > 1  # rows of different depths: colour by place in the stack
    frac_colors = style.layer_colors(len(LAYER_FRACTIONS))
    for j, act in enumerate(acts):
        lo, hi = np.inf, -np.inf
        for i, (init, variant, sel) in enumerate(rows):
            ax = axes[i, j]
            sub = sweep.select(activation=act, **sel)
            if len(sub) == 0:
                ax.set_axis_off()
                ax.text(0.5, 0.5, "not probed", transform=ax.transAxes, ha="center",
                        color="0.4")
                continue
            if by_fraction:
                chosen = fraction_layers(sub[0].depth)
                plots.plot_act_hist(sub, ax=ax, legend=False, title="",
                                    layers=[l for l, _ in chosen],
                                    colors=[frac_colors[k] for _, k in chosen],
                                    labels=[f"layer {l}" for l, _ in chosen])
            else:
                plots.plot_act_hist(sub, ax=ax, legend=False, title="")
            legend_from = legend_from or ax
            lo, hi = min(lo, ax.get_xlim()[0]), max(hi, ax.get_xlim()[1])
            ax.set_yticks([1e-4, 1e-2, 1])
            ax.set_ylabel("")
            if j == 0:
                label = style.wrap_label(init, LABEL_WRAP)
                if variant:
                    label += "\n" + style.wrap_label(variant, LABEL_WRAP)
                ax.set_ylabel(label, color=ctx.palette[init].color, fontweight="bold",
                              rotation=0, ha="right", va="center", labelpad=8)
            else:
                ax.tick_params(labelleft=False)
            if i == 0:
                ax.set_title(act, fontsize=11)
            if i != nr - 1:
                ax.set_xlabel("")
                ax.tick_params(labelbottom=False)
        if np.isfinite(lo):
            for ax in axes[:, j]:
                if ax.axison:
                    ax.set_xlim(lo, hi)
    if legend_from is not None:  # the layer legend, centred above the middle column
        handles, labels = legend_from.get_legend_handles_labels()
        if by_fraction:
            from matplotlib.lines import Line2D

            handles = [Line2D([], [], color=c, linewidth=1.4) for c in frac_colors]
            labels = list(LAYER_FRACTION_NAMES)
        top = axes[0, nc // 2] if nc % 2 else axes[0, nc // 2 - 1]
        anchor = (0.5, 1.18) if nc % 2 else (1.0 + WGAP / (2 * HIST_W), 1.18)
        top.legend(handles, labels, loc="lower center", ncols=len(labels), frameon=False,
                   bbox_to_anchor=anchor, handlelength=1.5, columnspacing=1.2)
    what = "one row per initializer" + (" and setting" if any(v for _, v, _ in rows) else "")
    head = layout.suptitle(fig, r"Distribution of the activation output $a^l$ (fraction of "
                                f"entries per bin, log scale); {what}", nc * HIST_W + 1.5,
                           fontsize=11)
    layout.finish_layout(fig, axes, [HIST_W] * nc, [HIST_H] * nr, header=[head], wgap=0.12,
                         hgap=0.1)
    return fig


def heatmap_figure(sweep: SweepResult, ctx: Context):
    """The gradient heatmap: one panel per activation on one shared colour scale."""
    acts = activations(sweep)
    frame = ctx.frame
    rows_mats = [grad_log10_matrix(frame, a) for a in acts]
    n_rows = max(len(r) for r, _ in rows_mats)
    h = max(1.2, HEAT_ROW_H * n_rows)
    n = len(acts)
    fig, axes = layout.new_grid(1, n + 1, [HEAT_W] * n + [CBAR_W], [h])
    vmin, vmax = heatmap_limits([m for _, m in rows_mats])
    for j, (ax, act) in enumerate(zip(axes[0, :n], acts)):
        plots.plot_grad_heatmap(frame, activation=act, ax=ax, vmin=vmin, vmax=vmax,
                                colorbar=False)
        ax.set_yticks(ax.get_yticks(), [style.wrap_label(t.get_text(), 32)
                                        for t in ax.get_yticklabels()])
        if j:
            ax.tick_params(labelleft=False)
    fig.colorbar(axes[0, 0].collections[0], cax=axes[0, n], label=plots.HEATMAP_LABEL,
                 extend="both")
    head = layout.suptitle(fig, r"Backpropagated gradient: $\log_{10}$ RMS of "
                                r"$\partial L/\partial h^l$ (grey: exactly 0)", n * HEAT_W + 1.0)
    layout.finish_layout(fig, axes, [HEAT_W] * n + [CBAR_W], [h], header=[head], wgap=0.25)
    return fig
