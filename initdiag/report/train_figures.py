"""The report's training figures: panels ``f(runs, *, ax=None, ...) -> ax`` and four figures.

* ``train_loss``: the smoothed training loss (and accuracy) over the steps, one line per
  initializer, one column per activation;
* ``train_update_ratio``: the update:data ratio ||W_t - W_{t-1}|| / ||W_{t-1}|| of a few layers
  over the steps, one small panel per initializer and activation, with the conventional 1e-3;
* ``train_profiles``: the probe's per-layer act_var and grad_preact_rms at step 0 (dashed) and
  after the last step (solid);
* ``train_norms``: the initializers that are not healthy at step 0, without and with BatchNorm
  / LayerNorm: gradient RMS per layer at step 0 and after training, and the loss.

Colours are the report's initializer palette (:func:`initdiag.report.style.init_palette`, passed
in by the report so that an initializer has one colour on the whole page); layers of one network
take :func:`initdiag.report.style.layer_colors`. Numbers come from :mod:`.train_data`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from initdiag.fileio import atomic_write_bytes
from initdiag.report import layout, style
from initdiag.report.data import LAYER_FRACTION_NAMES, LAYER_FRACTIONS, fraction_layers
from initdiag.report.figures import WrittenFigure
from initdiag.report.layout import HIST_W, LABEL_WRAP, PANEL_H, PANEL_W
from initdiag.report.png import png_bytes
from initdiag.report.train_data import (NORMS, UPDATE_REFERENCE, by_line, curve_summary,
                                        main_runs, norm_label, threshold)
from initdiag.train.result import CURVES, TrainSweep, window

#: Height of one update-ratio panel (inches).
UPDATE_H = 1.25
#: The page's figure names, in page order (a rerun without --train removes their PNGs).
TRAIN_FIGURES = ("train_loss", "train_update_ratio", "train_profiles", "train_norms")


def _ax(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.gca()
    return ax


def _style(palette: Mapping[str, style.LineStyle] | None, init: str) -> style.LineStyle:
    return (palette or {}).get(init) or style.init_palette([init])[init]


def plot_train_curve(runs: Any, name: str, *, activation: str, ax=None,
                     palette: Mapping[str, style.LineStyle] | None = None, legend: bool = True,
                     show_threshold: bool = True, title: str | None = None):
    """One curve over the steps for every initializer of ``activation``: ``loss`` (smoothed:
    the trailing mean over 10% of the steps, log y, with the loss threshold dotted) or
    ``accuracy`` (linear y); the median over seeds when there are several."""
    from initdiag.report.ticks import log_scale

    ax = _ax(ax)
    lines = by_line(runs, activation)
    for (init, variant), rs in lines.items():
        if name not in rs[0].curves:
            continue
        st = _style(palette, init)
        y = curve_summary(rs, name)
        x = np.arange(1, y.size + 1)
        if name == "loss":
            y = np.where(y > 0, y, np.nan)
        ax.plot(x, y, color=st.color, linestyle=st.dash if not variant else "--",
                label=init + (f", {variant}" if variant else ""), linewidth=1.3)
    if name == "loss":
        log_scale(ax, "y")
        if show_threshold and lines:
            thr = threshold(next(iter(lines.values())))
            ax.axhline(thr, color="0.35", linestyle=":", linewidth=1.0, label="_nolegend_")
            ax.text(1.0, thr, f" threshold {thr:.3g}", transform=ax.get_yaxis_transform(),
                    ha="right", va="bottom", fontsize="x-small", color="0.35")
        w = window(next(iter(lines.values()))[0].steps) if lines else 1
        ax.set_ylabel(f"training loss (mean of {w} steps)")
    else:
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("training accuracy (mini-batch)")
    ax.set_xlabel("step")
    ax.set_title(activation if title is None else title)
    if legend:
        ax.legend(loc="best", frameon=False)
    return ax


def plot_update_ratio(runs: Sequence[Any], *, ax=None, reference: float = UPDATE_REFERENCE):
    """The update ratio of a few layers of one configuration over the steps (layers 1, ~L/10,
    ~L/4, ~L/2, L, coloured by depth), median over seeds, log y, with the ``reference`` dashed.
    Values that are 0 or NaN (zero weights, a frozen layer) are not drawn; a panel with none
    says so."""
    from initdiag.report.ticks import log_scale

    ax = _ax(ax)
    y = curve_summary(runs, "update_ratio")  # [S, L]
    colors = style.layer_colors(len(LAYER_FRACTIONS))
    x = np.arange(1, y.shape[0] + 1)
    drawn = False
    for layer, k in fraction_layers(y.shape[1]):
        v = y[:, layer - 1]
        v = np.where(v > 0, v, np.nan)
        drawn |= bool(np.isfinite(v).any())
        ax.plot(x, v, color=colors[k], linewidth=0.9, label=f"layer {layer}")
    ax.axhline(reference, color="0.3", linestyle="--", linewidth=0.9, label="_nolegend_")
    log_scale(ax, "y")
    if not drawn:
        ax.text(0.5, 0.5, "0 or undefined at every step", transform=ax.transAxes, ha="center",
                va="center", color="0.4", fontsize="small")
    return ax


def plot_profile(runs: Any, metric: str, *, activation: str, ax=None,
                 palette: Mapping[str, style.LineStyle] | None = None, title: str | None = None,
                 steps: Sequence[str] = ("first", "last")):
    """The probe's per-layer ``metric`` at step 0 (dashed) and at the last snapshot (solid), one
    colour per initializer (:func:`initdiag.report.plots.plot_metric` of the snapshots)."""
    from initdiag.report.plots import plot_metric
    from initdiag.results import SweepResult

    ax = _ax(ax)
    runs = [r for r in runs if r.config["activation"] == activation]
    first = SweepResult([r.snapshots[0] for r in runs if 0 in r.snapshots])
    last = SweepResult([r.snapshots[r.steps] for r in runs if r.steps in r.snapshots])
    if "first" in steps and len(first):
        plot_metric(first, metric, activation=activation, ax=ax, palette=palette, legend=False,
                    band=False, linestyle="--", label_suffix="_nolegend_", title="")
    if "last" in steps and len(last):
        plot_metric(last, metric, activation=activation, ax=ax, palette=palette, legend=False,
                    band=False, linestyle="-", title="")
    ax.set_title(activation if title is None else title)
    return ax


def _legend_entries(axes) -> tuple[dict, list[str]]:
    handles, labels = {}, []
    for ax in np.ravel(axes):
        if ax is None:
            continue
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if not lab.startswith("_") and lab not in handles:
                handles[lab] = h
                labels.append(lab)
    return handles, labels


def _step_handles(steps: int) -> tuple[dict, list[str]]:
    from matplotlib.lines import Line2D

    labels = ["step 0 (dashed)", f"after step {steps} (solid)"]
    return ({labels[0]: Line2D([], [], color="0.3", linestyle="--"),
             labels[1]: Line2D([], [], color="0.3", linestyle="-")}, labels)


def loss_figure(ts: TrainSweep, palette: Mapping[str, Any]):
    acts = list(dict.fromkeys(r.config["activation"] for r in ts))
    names = ["loss"] + (["accuracy"] if "accuracy" in ts[0].curves else [])
    n = len(acts)
    fig, axes = layout.new_grid(len(names), n, [PANEL_W] * n, [PANEL_H] * len(names))
    for i, name in enumerate(names):
        for j, act in enumerate(acts):
            plot_train_curve(ts, name, activation=act, ax=axes[i, j], palette=palette,
                             legend=False, title=act if i == 0 else "")
    handles, labels = _legend_entries(axes)
    layout.side_legend(axes[0, -1], handles, labels)
    head = layout.suptitle(fig, f"Training: {ts[0].train.label()} (loss: trailing mean of "
                                f"{window(ts[0].steps)} steps)", n * PANEL_W + 2.0)
    layout.finish_layout(fig, axes, [PANEL_W] * n, [PANEL_H] * len(names), header=[head])
    return fig


def update_figure(ts: TrainSweep, palette: Mapping[str, Any]):
    acts = list(dict.fromkeys(r.config["activation"] for r in ts))
    lines = {act: by_line(ts, act) for act in acts}
    rows = list(dict.fromkeys(key for act in acts for key in lines[act]))
    nr, nc = len(rows), len(acts)
    fig, axes = layout.new_grid(nr, nc, [HIST_W] * nc, [UPDATE_H] * nr)
    lo, hi = UPDATE_REFERENCE, UPDATE_REFERENCE
    for j, act in enumerate(acts):
        for i, key in enumerate(rows):
            ax = axes[i, j]
            if key not in lines[act]:
                ax.set_axis_off()
                continue
            plot_update_ratio(lines[act][key], ax=ax)
            for line in ax.get_lines():
                y = np.asarray(line.get_ydata(), float)
                y = y[np.isfinite(y) & (y > 0)]
                if y.size:
                    lo, hi = min(lo, y.min()), max(hi, y.max())
            if i == 0:
                ax.set_title(act, fontsize=11)
            if i != nr - 1:
                ax.tick_params(labelbottom=False)
            else:
                ax.set_xlabel("step")
            if j == 0:
                init, variant = key
                label = style.wrap_label(init, LABEL_WRAP) + (
                    "\n" + style.wrap_label(variant, LABEL_WRAP) if variant else "")
                ax.set_ylabel(label, color=_style(palette, init).color, fontweight="bold",
                              rotation=0, ha="right", va="center", labelpad=8)
            else:
                ax.tick_params(labelleft=False)
    for ax in np.ravel(axes):
        if ax.axison:
            ax.set_ylim(lo / 2, hi * 2)
    from matplotlib.lines import Line2D

    colors = style.layer_colors(len(LAYER_FRACTIONS))
    depths = {r.config["depth"] for r in ts}
    if len(depths) == 1:  # the layers themselves; else their place in the stack
        chosen = fraction_layers(depths.pop())
        names = [f"layer {l}" for l, _ in chosen]
        colors = [colors[k] for _, k in chosen]
    else:
        names = list(LAYER_FRACTION_NAMES)
    handles = [Line2D([], [], color=c, linewidth=1.2) for c in colors]
    handles.append(Line2D([], [], color="0.3", linestyle="--"))
    top = axes[0, nc // 2]
    top.legend(handles, [*names, f"{UPDATE_REFERENCE:g}"], loc="lower center",
               ncols=len(handles), frameon=False, bbox_to_anchor=(0.5, 1.25), handlelength=1.5)
    head = layout.suptitle(fig, r"Update:data ratio $\|W^l_t - W^l_{t-1}\|\,/\,\|W^l_{t-1}\|$ "
                                "per step; one row per initializer", nc * HIST_W + 1.5,
                           fontsize=11)
    layout.finish_layout(fig, axes, [HIST_W] * nc, [UPDATE_H] * nr, header=[head], wgap=0.12,
                         hgap=0.1)
    return fig


def profile_figure(ts: TrainSweep, palette: Mapping[str, Any]):
    acts = list(dict.fromkeys(r.config["activation"] for r in ts))
    metrics = ("act_var", "grad_preact_rms")
    n = len(acts)
    fig, axes = layout.new_grid(2, n, [PANEL_W] * n, [PANEL_H] * 2)
    for i, m in enumerate(metrics):
        for j, act in enumerate(acts):
            plot_profile(ts, m, activation=act, ax=axes[i, j], palette=palette,
                         title=act if i == 0 else "")
    handles, labels = _legend_entries(axes)
    h2, l2 = _step_handles(ts[0].steps)
    layout.side_legend(axes[0, -1], {**handles, **h2}, labels + l2)
    head = layout.suptitle(fig, "How training moves the probe's per-layer profiles (probe input"
                                " and loss, weights at step 0 and after the last step)",
                           n * PANEL_W + 2.0)
    layout.finish_layout(fig, axes, [PANEL_W] * n, [PANEL_H] * 2, header=[head])
    return fig


def norm_figure(ts: TrainSweep, activation: str, inits: Sequence[str],
                palette: Mapping[str, Any]):
    runs = [r for r in ts if r.config["activation"] == activation and r.config["init"] in inits]
    n = len(NORMS)
    fig, axes = layout.new_grid(2, n, [PANEL_W] * n, [PANEL_H] * 2)
    for j, norm in enumerate(NORMS):
        sub = TrainSweep([r for r in runs if r.config.get("norm") == norm])
        if not len(sub):
            for ax in axes[:, j]:
                ax.set_axis_off()
            continue
        plot_profile(sub, "grad_preact_rms", activation=activation, ax=axes[0, j],
                     palette=palette, title=norm_label(norm))
        plot_train_curve(sub, "loss", activation=activation, ax=axes[1, j], palette=palette,
                         legend=False, title="")
    handles, labels = _legend_entries(axes)
    h2, l2 = _step_handles(runs[0].steps)
    layout.side_legend(axes[0, -1], {**handles, **h2}, labels + l2)
    head = layout.suptitle(fig, f"{activation}: the initializers that are not healthy at step 0,"
                                " without and with normalization; top: gradient RMS per layer, "
                                "bottom: training loss", n * PANEL_W + 2.0)
    layout.finish_layout(fig, axes, [PANEL_W] * n, [PANEL_H] * 2, header=[head])
    return fig


# --- captions ------------------------------------------------------------------------------------

def captions(ts: TrainSweep, norm_activation: str | None) -> dict[str, str]:
    """One sentence per figure, with the definitions."""
    r = ts[0]
    w = window(r.steps)
    thr = r.threshold()
    loss_def = CURVES["loss"].definition
    return {
        "train_loss": (f"Training loss ({loss_def}), as the trailing mean over {w} steps (10% of "
                       f"the run), per initializer; the dotted line is the threshold of the "
                       f"table, {thr:.3g} (half the chance-level loss)"
                       + ("; below: the mini-batch accuracy" if "accuracy" in r.curves else "")
                       + "; with several seeds, the median over seeds."),
        "train_update_ratio": (f"Update:data ratio per step, {CURVES['update_ratio'].definition},"
                               f" at layers 1, ~L/10, ~L/4, ~L/2 and L; the dashed line is the "
                               f"conventional {UPDATE_REFERENCE:g} (much lower: the layer barely "
                               f"learns; much higher: unstable)."),
        "train_profiles": ("The probe's statistics of the weights at step 0 (dashed) and after "
                           f"the last step, {r.steps} (solid): top, act_var (variance of the layer "
                           "output x^l over batch and units); bottom, grad_preact_rms (RMS of "
                           "dL/dh^l under the probe's projection loss), both on the probe's "
                           "N(0, 1) input, so they show the weights' signal propagation, not the "
                           "task's loss."),
        "train_norms": (f"The same {norm_activation} initializers trained without normalization, "
                        "with BatchNorm (each unit standardised over the batch) and with "
                        "LayerNorm (each sample over its units), before the activation: top, "
                        "the probe's gradient RMS per layer at step 0 (dashed) and after "
                        "training (solid); bottom, the smoothed training loss."),
    }


def write_train_figures(ts: TrainSweep, out_dir: str | Path, *, palette: Mapping[str, Any],
                        norm: Any, norm_activation: str | None,
                        norm_inits: Sequence[str]) -> list[WrittenFigure]:
    """Write the training figures' PNGs into ``out_dir``; returns them in page order (the
    normalization figure with the reason it is not drawn when no initializer is unhealthy at
    step 0). ``norm`` is the report's own normalization: the other figures show its runs."""
    import matplotlib.pyplot as plt

    main = main_runs(ts, norm)
    caps = captions(main, norm_activation)
    draws: list[tuple[str, str, Callable[[], Any] | None, str | None]] = [
        ("train_loss", "Training loss", lambda: loss_figure(main, palette), None),
        ("train_update_ratio", "Update:data ratio", lambda: update_figure(main, palette), None),
        ("train_profiles", "Per-layer profiles before and after training",
         lambda: profile_figure(main, palette), None),
        ("train_norms", "Normalization as a mitigation",
         (lambda: norm_figure(ts, norm_activation, norm_inits, palette)) if norm_inits else None,
         None if norm_inits else "every initializer is healthy at step 0"),
    ]
    out = []
    for name, title, draw, skipped in draws:
        if draw is None:
            out.append(WrittenFigure(name, None, title, caps[name], None, skipped))
            continue
        with style.theme():
            fig = draw()
        try:
            data = png_bytes(fig)
            w, h = fig.get_size_inches()
        finally:
            plt.close(fig)
        path = atomic_write_bytes(Path(out_dir) / f"{name}.png", data)
        out.append(WrittenFigure(name, path, title, caps[name],
                                 (int(round(w * layout.DPI)), int(round(h * layout.DPI)))))
    return out
