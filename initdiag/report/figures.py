"""Multi-panel report figures (one panel per activation) and their PNG files.

Every figure is drawn at a fixed size and resolution (:data:`DPI`; no tight bounding box), so a
PNG's pixel size is known in advance: ``figure_size_px(name, sweep)``. Each figure comes with a
one-sentence caption that states the definition of what it shows (taken from
:data:`initdiag.results.METRICS`).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any, Callable

import numpy as np

from initdiag._io import atomic_write_bytes
from initdiag.report import plots, style
from initdiag.results import METRICS, SweepResult

DPI = 100
PANEL_W, PANEL_H = 4.6, 4.0   # inches per line panel
LEGEND_W = 2.1                # inches reserved on the right for the shared legend
HIST_PANEL_H = 1.55           # inches per row of the distribution figure

#: Appended to the captions of line figures (inside their one sentence).
SEED_NOTE = " (line: median over seeds; shaded band: min to max over seeds)"


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """A report figure: file ``name``.png, its ``title`` and a ``caption`` builder."""

    name: str
    title: str
    caption: Callable[[SweepResult], str]
    draw: Callable[[SweepResult, dict], Any]


def _activations(sweep: SweepResult) -> list[str]:
    return list(dict.fromkeys(r.config["activation"] for r in sweep))


def _inits(sweep: SweepResult) -> list[str]:
    return list(dict.fromkeys(r.config["init"] for r in sweep))


def figure_size(name: str, sweep: SweepResult) -> tuple[float, float]:
    """Figure size in inches of figure ``name`` for this sweep."""
    n_act = len(_activations(sweep))
    if name == "act_hist":
        return PANEL_W * n_act + 0.6, HIST_PANEL_H * len(_inits(sweep)) + 1.0
    if name == "grad_heatmap":
        return PANEL_W * n_act + 2.6, max(3.0, 0.26 * len(_inits(sweep)) + 1.6)
    return PANEL_W * n_act + LEGEND_W, PANEL_H


def figure_size_px(name: str, sweep: SweepResult) -> tuple[int, int]:
    """(width, height) in pixels of the PNG written for figure ``name``."""
    w, h = figure_size(name, sweep)
    return int(round(w * DPI)), int(round(h * DPI))


def _line_figure(draw_panel: Callable[..., Any], suptitle: str, theory_metric: str | None = None):
    def draw(sweep: SweepResult, palette: dict):
        import matplotlib.pyplot as plt

        acts = _activations(sweep)
        w, h = figure_size("", sweep)
        fig, axes = plt.subplots(1, len(acts), figsize=(w, h), squeeze=False)
        # Fixed margins in inches (constrained layout costs seconds per figure).
        n, gap = len(acts), 0.8
        avail = w - 0.75 - LEGEND_W - 0.1
        fig.subplots_adjust(left=0.75 / w, right=1 - (LEGEND_W + 0.1) / w, bottom=0.5 / h,
                            top=1 - 0.62 / h, wspace=gap / ((avail - (n - 1) * gap) / n))
        frame = sweep.to_frame()
        for ax, act in zip(axes[0], acts):
            draw_panel(frame, activation=act, ax=ax, palette=palette, legend=False)
            if theory_metric is not None:  # dashed mean-field prediction per initializer
                from initdiag.report.theory_figures import overlay_theory
                overlay_theory(ax, sweep, act, theory_metric, palette)
        handles, labels = {}, []
        for ax in axes[0]:
            for handle, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in handles:
                    handles[lab] = handle
                    labels.append(lab)
        fig.legend([handles[l] for l in labels], labels, loc="center left",
                   bbox_to_anchor=(1 - LEGEND_W / w, 0.5), frameon=False, title="initializer")
        fig.suptitle(suptitle, y=1 - 0.06 / h, va="top")
        return fig
    return draw


def _hist_figure(sweep: SweepResult, palette: dict):
    import matplotlib.pyplot as plt

    acts, inits = _activations(sweep), _inits(sweep)
    w, h = figure_size("act_hist", sweep)
    fig, axes = plt.subplots(len(inits), len(acts), figsize=(w, h), squeeze=False)
    # A fixed layout (constrained layout is slow with dozens of panels).
    fig.subplots_adjust(left=1.6 / w, right=1 - 0.2 / w, top=1 - 0.75 / h, bottom=0.5 / h,
                        hspace=0.12, wspace=0.12)
    for j, act in enumerate(acts):
        lo, hi = np.inf, -np.inf
        for i, init in enumerate(inits):
            ax = axes[i, j]
            plots.plot_act_hist(sweep.select(activation=act, init=init), ax=ax, legend=False,
                                title="")
            lo, hi = min(lo, ax.get_xlim()[0]), max(hi, ax.get_xlim()[1])
            ax.set_yticks([1e-4, 1e-2, 1])
            ax.set_ylabel("")
            if j == 0:
                ax.set_ylabel(init, color=palette[init].color, fontweight="bold",
                              rotation=0, ha="right", va="center")
            else:
                ax.tick_params(labelleft=False)
            if i == 0:
                ax.set_title(act, fontsize=11)
            if i != len(inits) - 1:
                ax.set_xlabel("")
                ax.tick_params(labelbottom=False)
        for ax in axes[:, j]:
            ax.set_xlim(lo, hi)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=len(labels), frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.5 / h))
    fig.suptitle(r"Distribution of the activation output $a^l$ (fraction of entries per bin, log "
                 "scale); one row per initializer", fontsize=11, y=1 - 0.08 / h, va="top")
    return fig


def _heatmap_figure(sweep: SweepResult, palette: dict):
    import matplotlib.pyplot as plt

    del palette
    acts = _activations(sweep)
    w, h = figure_size("grad_heatmap", sweep)
    fig, axes = plt.subplots(1, len(acts), figsize=(w, h), squeeze=False, sharey=True)
    fig.subplots_adjust(left=1.35 / w, right=1 - 1.25 / w, bottom=0.5 / h, top=1 - 0.62 / h,
                        wspace=0.06)
    frame = sweep.to_frame()
    mats = [plots.grad_log10_matrix(frame, a)[1] for a in acts]
    vmin, vmax = plots.heatmap_limits(mats)
    for ax, act in zip(axes[0], acts):
        plots.plot_grad_heatmap(frame, activation=act, ax=ax, vmin=vmin, vmax=vmax,
                                colorbar=False)
    cax = fig.add_axes((1 - 1.0 / w, 0.5 / h, 0.14 / w, 1 - 1.12 / h))
    fig.colorbar(axes[0, 0].collections[0], cax=cax, label=plots.HEATMAP_LABEL,
                 extend="both")
    fig.suptitle(r"Backpropagated gradient: $\log_{10}$ RMS of $\partial L/\partial h^l$ "
                 "(grey: exactly 0)",
                 y=1 - 0.06 / h, va="top")
    return fig


#: Caption note for figures that overlay the mean-field prediction.
THEORY_NOTE = (". Thin dashed lines: the infinite-width mean-field prediction (initdiag.theory; "
               "gradients drawn through the measured last layer), where the theory applies (not "
               "with normalization, residual, zeros/constant or LSUV init).")


def _defs(*metrics: str) -> str:
    return "; ".join(f"{m} = {METRICS[m]}" for m in metrics)


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("act_var", "Activation variance",
               lambda s: f"Variance of each layer's output by depth ({_defs('act_var')}); it "
                         f"should stay roughly constant" + SEED_NOTE + THEORY_NOTE,
               _line_figure(plots.plot_act_var,
                            r"Forward signal: variance of the layer output $x^l$", "act_var")),
    FigureSpec("grad_rms", "Gradient RMS",
               lambda s: f"Backpropagated gradient by depth ({_defs('grad_preact_rms')}); a "
                         f"straight falling or rising line on this log scale is vanishing or "
                         f"exploding gradients" + SEED_NOTE + THEORY_NOTE,
               _line_figure(plots.plot_grad_rms,
                            r"Backward signal: RMS of $\partial L/\partial h^l$",
                            "grad_preact_rms")),
    FigureSpec("saturation", "Saturation and dead units",
               lambda s: f"Saturation for tanh/sigmoid-like φ ({_defs('saturation')}), and for "
                         f"ReLU the zero and dead fractions ({_defs('zero_frac', 'dead_frac')})"
                         + SEED_NOTE + ".",
               _line_figure(plots.plot_saturation, "Saturated units (tanh, sigmoid) and "
                                                   "zero / dead units (ReLU)")),
    FigureSpec("act_hist", "Activation distributions",
               lambda s: f"Histogram of the entries of a^l = φ(h^l) at the layers shown, pooled "
                         f"over seeds, as the fraction of the batch x units entries per bin (log "
                         f"scale; the outer bins also count values beyond the range): mass "
                         f"collapsing onto 0 or piling up at φ's bounds is the classic failure.",
               _hist_figure),
    FigureSpec("grad_heatmap", "Gradient heatmap",
               lambda s: f"log10 of the median over seeds of the gradient RMS "
                         f"({_defs('grad_preact_rms')}) per initializer and layer; the colour "
                         f"scale is centred on the typical last-layer value (colours saturate "
                         f"{plots.HEATMAP_MAX_DECADES:g} decades away), so blue is vanishing and "
                         f"red exploding towards the input, grey is exactly 0.",
               _heatmap_figure),
    FigureSpec("grad_weight_ratio", "Relative weight gradient",
               lambda s: f"Relative size of one gradient step per layer "
                         f"({_defs('grad_weight_ratio')}, with {_defs('grad_weight_norm')}); "
                         f"layers whose ratio differs by decades learn at very different speeds "
                         f"under one learning rate" + SEED_NOTE + ".",
               _line_figure(plots.plot_grad_weight_ratio,
                            r"Relative weight gradient "
                            r"$\|\partial L/\partial W^l\|\,/\,\|W^l\|$")),
)


def draw_figure(name: str, sweep: SweepResult, palette: dict | None = None):
    """Draw report figure ``name`` (one of :data:`FIGURES`) and return the matplotlib Figure."""
    import matplotlib.pyplot as plt

    specs = {f.name: f for f in FIGURES}
    if name not in specs:
        raise ValueError(f"unknown figure {name!r}; choose from {', '.join(specs)}")
    palette = palette or style.init_palette(_inits(sweep))
    with plt.rc_context(style.RC):
        import seaborn as sns

        with sns.axes_style("whitegrid", {"axes.edgecolor": "0.3", "grid.color": "0.9"}):
            return specs[name].draw(sweep, palette)


@dataclasses.dataclass(frozen=True)
class WrittenFigure:
    """A figure written to disk: ``path`` (PNG), ``title``, ``caption``, pixel ``size``."""

    name: str
    path: Path
    title: str
    caption: str
    size: tuple[int, int]


def write_figures(sweep: SweepResult, out_dir: str | Path,
                  names: list[str] | None = None) -> list[WrittenFigure]:
    """Write one PNG per figure into ``out_dir`` (atomically) and return what was written.

    The histogram figure is skipped when the results carry no histograms.
    """
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    has_hist = all("act_hist" in r.histograms for r in sweep)
    palette = style.init_palette(_inits(sweep))
    written = []
    for spec in FIGURES:
        if names is not None and spec.name not in names:
            continue
        if spec.name == "act_hist" and not has_hist:
            continue
        fig = draw_figure(spec.name, sweep, palette)
        try:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
        finally:
            plt.close(fig)
        path = atomic_write_bytes(out_dir / f"{spec.name}.png", buf.getvalue())
        written.append(WrittenFigure(spec.name, path, spec.title, spec.caption(sweep),
                                     figure_size_px(spec.name, sweep)))
    return written
