"""Multi-panel report figures (one panel per activation) and their PNG files.

Layout: every panel's plotting area (the axes box) has a fixed size in inches (:data:`PANEL_W` x
:data:`PANEL_H` for line panels, ...); the margins around it are *measured* after drawing (tick
labels, axis labels, titles, legends: ``Axes.get_tightbbox``) and the figure is sized to hold them
plus :data:`PAD`, so no text is clipped whatever the labels (long initializer names are also
wrapped, :func:`initdiag.report.style.wrap_label`). A PNG's pixel size is therefore known after
drawing: :attr:`WrittenFigure.size`. It is at least the panels' area and grows with the text.

Each figure comes with a one-sentence caption that states the definition of what it shows (taken
from :data:`initdiag.results.METRICS`). A figure that does not apply to a sweep (no histograms;
theory figures for normalized or residual stacks) is skipped with the reason, which the page
shows in its place.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from initdiag.fileio import atomic_write_bytes
from initdiag.report import data, plots, style
from initdiag.results import METRICS, SweepResult

DPI = 100
PANEL_W, PANEL_H = 3.7, 3.0    # inches: the plotting area of one line panel
HIST_W, HIST_H = 3.7, 1.05     # inches: one distribution panel
HEAT_W, HEAT_ROW_H = 3.7, 0.26  # inches: heatmap panel width, height per initializer row
CBAR_W = 0.15                  # inches: a colorbar's width
PAD = 0.1                      # inches of white around the contents
WGAP, HGAP = 0.3, 0.25         # inches between the decorations of neighbouring panels
LABEL_WRAP = 24                # characters per line of a legend entry or row label

#: Appended to the captions of line figures (inside their one sentence).
SEED_NOTE = " (line: median over seeds; shaded band: min to max over seeds)"


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """A report figure: file ``name``.png, its ``title``, a ``caption`` builder, ``draw`` and
    ``skip`` (the reason it does not apply to a sweep, or None)."""

    name: str
    title: str
    caption: Callable[[SweepResult, "Context"], str]
    draw: Callable[[SweepResult, "Context"], Any]
    skip: Callable[[SweepResult, "Context"], str | None] = lambda s, c: None


class Context:
    """What the figures of one sweep share: the palette, the tidy frame, the mean-field
    predictions and the Jacobian spectra (each computed once, when first needed)."""

    def __init__(self, sweep: SweepResult, palette: dict | None = None):
        self.sweep = sweep
        self.palette = palette or style.init_palette(data.inits(sweep))
        self._frame = self._preds = self._spectra = None

    @property
    def frame(self):
        if self._frame is None:
            self._frame = self.sweep.to_frame()
        return self._frame

    @property
    def predictions(self) -> dict:
        if self._preds is None:
            from initdiag.report.theory_data import predictions

            self._preds = predictions(self.sweep)
        return self._preds

    @property
    def spectra(self) -> tuple[dict, dict]:
        if self._spectra is None:
            from initdiag.report.theory_data import report_spectra

            self._spectra = report_spectra(self.sweep)
        return self._spectra


# ---------------------------------------------------------------------------------------------
# Layout from measured text extents.

def new_grid(nrows: int, ncols: int, col_w: Sequence[float], row_h: Sequence[float]):
    """A figure with ``nrows x ncols`` axes whose boxes have the final sizes in inches (their
    positions are provisional until :func:`finish_layout`)."""
    import matplotlib.pyplot as plt

    W = sum(col_w) + 2.0 * ncols + 1.0
    H = sum(row_h) + 1.0 * nrows + 1.5
    fig = plt.figure(figsize=(W, H), dpi=DPI)
    axes = np.empty((nrows, ncols), dtype=object)
    y = H - 1.0
    for i in range(nrows):
        y -= row_h[i]
        x = 1.2
        for j in range(ncols):
            axes[i, j] = fig.add_axes((x / W, y / H, col_w[j] / W, row_h[i] / H))
            x += col_w[j] + 2.0
        y -= 1.0
    return fig, axes


def finish_layout(fig, grid, col_w: Sequence[float], row_h: Sequence[float], *,
                  header: Sequence[Any] = (), wgap: float = WGAP, hgap: float = HGAP,
                  pad: float = PAD) -> None:
    """Move the axes of ``grid`` (rows of axes or None) so that each column and row has room
    for the widest / tallest decorations measured in it, stack ``header`` texts (e.g. the
    suptitle, created with ``va="top"``) centred above, and size the figure to fit, with
    ``pad`` inches around everything. Axes keep their sizes, so their contents do not change.
    """
    renderer = fig.canvas.get_renderer()
    dpi = fig.dpi
    nr, nc = len(grid), len(grid[0])
    left, right, top, bottom = [0.0] * nc, [0.0] * nc, [0.0] * nr, [0.0] * nr
    for i, row in enumerate(grid):
        for j, ax in enumerate(row):
            if ax is None or not ax.get_visible():
                continue
            tb, bb = ax.get_tightbbox(renderer), ax.get_window_extent(renderer)
            left[j] = max(left[j], (bb.x0 - tb.x0) / dpi)
            right[j] = max(right[j], (tb.x1 - bb.x1) / dpi)
            bottom[i] = max(bottom[i], (bb.y0 - tb.y0) / dpi)
            top[i] = max(top[i], (tb.y1 - bb.y1) / dpi)
    head = [t.get_window_extent(renderer) for t in header]
    head_h = sum(b.height / dpi for b in head) + 0.08 * len(head)
    grid_w = sum(left) + sum(col_w) + sum(right) + wgap * (nc - 1)
    W = max(grid_w, max([b.width / dpi for b in head], default=0.0)) + 2 * pad
    H = head_h + sum(top) + sum(row_h) + sum(bottom) + hgap * (nr - 1) + 2 * pad
    W, H = _whole_pixels(W, dpi), _whole_pixels(H, dpi)  # the PNG is exactly W x H pixels
    x0 = (W - grid_w) / 2.0  # the grid is centred under a wider header
    fig.set_size_inches(W, H)
    y = H - pad - head_h
    for i, row in enumerate(grid):
        y -= top[i] + row_h[i]
        x = x0
        for j, ax in enumerate(row):
            x += left[j]
            if ax is not None:
                ax.set_position((x / W, y / H, col_w[j] / W, row_h[i] / H))
            x += col_w[j] + right[j] + wgap
        y -= bottom[i] + hgap
    y = H - pad
    for t, b in zip(header, head):
        t.set_position((0.5, y / H))
        t.set_horizontalalignment("center")
        t.set_verticalalignment("top")
        y -= b.height / dpi + 0.08
    grow_to_fit(fig, pad)


def grow_to_fit(fig, pad: float = PAD) -> None:
    """Safety net: if any artist still reaches beyond the figure (measured), enlarge the figure
    by the overflow and shift axes and figure texts so that nothing moves relative to another."""
    renderer = fig.canvas.get_renderer()
    bb = fig.get_tightbbox(renderer)  # inches
    W, H = fig.get_size_inches()
    dl, db = max(0.0, pad / 2 - bb.x0), max(0.0, pad / 2 - bb.y0)
    dr, dt = max(0.0, bb.x1 + pad / 2 - W), max(0.0, bb.y1 + pad / 2 - H)
    if max(dl, db, dr, dt) <= 1e-9:
        return
    W2, H2 = _whole_pixels(W + dl + dr, fig.dpi), _whole_pixels(H + db + dt, fig.dpi)
    for ax in fig.axes:
        p = ax.get_position(original=True)
        ax.set_position(((p.x0 * W + dl) / W2, (p.y0 * H + db) / H2, p.width * W / W2,
                         p.height * H / H2))
    for t in fig.texts:
        x, y = t.get_position()
        t.set_position(((x * W + dl) / W2, (y * H + db) / H2))
    fig.set_size_inches(W2, H2)


def _whole_pixels(inches: float, dpi: float) -> float:
    """``inches`` rounded up to a whole number of pixels at ``dpi``."""
    return math.ceil(inches * dpi - 1e-6) / dpi


def _suptitle(fig, text: str, width: float, **kwargs: Any):
    """The figure title, on two lines (at ``"; "`` or the last ``" ("``) if wider than
    ``width`` inches."""
    t = fig.suptitle(text, va="top", **kwargs)
    renderer = fig.canvas.get_renderer()
    if t.get_window_extent(renderer).width / fig.dpi > width:
        for sep in ("; ", " ("):
            if sep in text:
                head, tail = text.rsplit(sep, 1) if sep == " (" else text.split(sep, 1)
                t.set_text(head + (";\n" if sep == "; " else "\n(") + tail)
                break
    return t


def _legend_labels(handles: dict, labels: list[str]):
    return [handles[lab] for lab in labels], [style.wrap_label(lab, LABEL_WRAP) for lab in labels]


# ---------------------------------------------------------------------------------------------
# The figures.

def _line_figure(draw_panel: Callable[..., Any], suptitle: str, theory_metric: str | None = None,
                 band: bool = False):
    def draw(sweep: SweepResult, ctx: Context):
        acts = data.activations(sweep)
        n = len(acts)
        fig, axes = new_grid(1, n, [PANEL_W] * n, [PANEL_H])
        for ax, act in zip(axes[0], acts):
            draw_panel(ctx.frame, activation=act, ax=ax, palette=ctx.palette, legend=False)
            if theory_metric is not None:  # dashed mean-field prediction per initializer
                from initdiag.report.theory_figures import overlay_theory
                overlay_theory(ax, sweep, act, theory_metric, ctx.palette, ctx.predictions,
                               band=band)
        handles, labels = {}, []
        for ax in axes[0]:
            for handle, lab in zip(*ax.get_legend_handles_labels()):
                if not lab.startswith("_") and lab not in handles:
                    handles[lab] = handle
                    labels.append(lab)
        axes[0, -1].legend(*_legend_labels(handles, labels), loc="center left",
                           bbox_to_anchor=(1.04, 0.5), frameon=False, title="initializer",
                           ncols=2 if len(labels) > 16 else 1)
        title = _suptitle(fig, suptitle, n * PANEL_W + 2.0)
        finish_layout(fig, axes, [PANEL_W] * n, [PANEL_H], header=[title])
        return fig
    return draw


def _hist_figure(sweep: SweepResult, ctx: Context):
    acts, rows = data.activations(sweep), data.hist_rows(sweep)
    nr, nc = len(rows), len(acts)
    fig, axes = new_grid(nr, nc, [HIST_W] * nc, [HIST_H] * nr)
    legend_from = None
    depths = {r.depth for r in sweep}
    by_fraction = len(depths) > 1  # rows of different depths: colour by place in the stack
    frac_colors = style.layer_colors(len(data.LAYER_FRACTIONS))
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
                chosen = data.fraction_layers(sub[0].depth)
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
            labels = list(data.LAYER_FRACTION_NAMES)
        top = axes[0, nc // 2] if nc % 2 else axes[0, nc // 2 - 1]
        anchor = (0.5, 1.18) if nc % 2 else (1.0 + WGAP / (2 * HIST_W), 1.18)
        top.legend(handles, labels, loc="lower center", ncols=len(labels), frameon=False,
                   bbox_to_anchor=anchor, handlelength=1.5, columnspacing=1.2)
    what = "one row per initializer" + (" and setting" if any(v for _, v, _ in rows) else "")
    title = _suptitle(fig, r"Distribution of the activation output $a^l$ (fraction of entries "
                           f"per bin, log scale); {what}", nc * HIST_W + 1.5, fontsize=11)
    finish_layout(fig, axes, [HIST_W] * nc, [HIST_H] * nr, header=[title], wgap=0.12,
                  hgap=0.1)
    return fig


def _heatmap_figure(sweep: SweepResult, ctx: Context):
    acts = data.activations(sweep)
    frame = ctx.frame
    rows_mats = [data.grad_log10_matrix(frame, a) for a in acts]
    n_rows = max(len(r) for r, _ in rows_mats)
    h = max(1.2, HEAT_ROW_H * n_rows)
    n = len(acts)
    fig, axes = new_grid(1, n + 1, [HEAT_W] * n + [CBAR_W], [h])
    vmin, vmax = data.heatmap_limits([m for _, m in rows_mats])
    for j, (ax, act) in enumerate(zip(axes[0, :n], acts)):
        plots.plot_grad_heatmap(frame, activation=act, ax=ax, vmin=vmin, vmax=vmax,
                                colorbar=False)
        ax.set_yticks(ax.get_yticks(), [style.wrap_label(t.get_text(), 32)
                                        for t in ax.get_yticklabels()])
        if j:
            ax.tick_params(labelleft=False)
    fig.colorbar(axes[0, 0].collections[0], cax=axes[0, n], label=plots.HEATMAP_LABEL,
                 extend="both")
    title = _suptitle(fig, r"Backpropagated gradient: $\log_{10}$ RMS of $\partial L/\partial "
                           r"h^l$ (grey: exactly 0)", n * HEAT_W + 1.0)
    finish_layout(fig, axes, [HEAT_W] * n + [CBAR_W], [h], header=[title], wgap=0.25)
    return fig


# --- theory figures ---------------------------------------------------------------------------

def _theory_configs(sweep: SweepResult, ctx: Context, activation: str):
    """(config, Prediction) of one activation's configurations where the theory applies, and
    the reasons it does not for the others."""
    ok, why = [], {}
    for config, _ in data.configurations(sweep):
        if config["activation"] != activation:
            continue
        p = ctx.predictions[data.config_key(config)]
        if isinstance(p, Exception):
            why.setdefault(getattr(p, "reason", str(p)), []).append(config["init"])
        else:
            ok.append((config, p))
    return ok, why


def _phase_acts(sweep: SweepResult, ctx: Context) -> list[str]:
    from initdiag import theory

    acts = []
    for act in data.activations(sweep):
        ok, _ = _theory_configs(sweep, ctx, act)
        if not ok:
            continue
        try:
            theory.gaussian(act)
        except (ValueError, TypeError):
            continue
        acts.append(act)
    return acts


def _phase_skip(sweep: SweepResult, ctx: Context) -> str | None:
    if _phase_acts(sweep, ctx):
        return None
    reasons = sorted({r for a in data.activations(sweep) for r in _theory_configs(sweep, ctx, a)[1]})
    return "mean-field theory does not apply to any configuration of this run" + (
        f" ({'; '.join(reasons)})" if reasons else "")


def phase_points(ok: Sequence[tuple[dict, Any]], palette: dict):
    """``(label, sigma_w^2, sigma_b^2)`` per initializer of one activation (from its
    predictions, at the last layer: fan_in = width), one point per distinct position; an
    initializer at several positions (e.g. ``normal`` at two widths) is labelled with the
    settings that move it. Returns the points and their label -> LineStyle palette."""
    by_init: dict[str, dict[tuple[float, float], dict]] = {}
    for c, p in ok:
        xy = (float(p.weight_var[-1]), float(p.bias_var[-1]))
        by_init.setdefault(c["init"], {}).setdefault(xy, c)
    pts, pal = [], {}
    for init, spots in by_init.items():
        # the settings that differ between the initializer's points (depth moves none)
        keys = data.varying_keys(list(spots.values()), exclude=("activation", "init", "depth")) \
            if len(spots) > 1 else []
        for (w, b), c in spots.items():
            label = init + (f" ({data.config_label(c, keys)})" if keys else "")
            pts.append((label, w, b))
            pal[label] = palette[init]
    return pts, pal


def _phase_figure(sweep: SweepResult, ctx: Context):
    from initdiag.report.theory_figures import CHI_LABEL, phase_diagram

    acts = _phase_acts(sweep, ctx)
    n = len(acts)
    fig, axes = new_grid(1, n + 1, [PANEL_W] * n + [CBAR_W], [PANEL_H])
    for ax, act in zip(axes[0, :n], acts):
        ok, why = _theory_configs(sweep, ctx, act)
        pts, pal = phase_points(ok, ctx.palette)
        widths = "/".join(dict.fromkeys(str(c["width"]) for c, _ in ok))
        skipped = list(dict.fromkeys(i for inits in why.values() for i in inits))
        phase_diagram(act, points=pts, palette=pal, colorbar=False, ax=ax, skipped=skipped,
                      title=f"{act} (points at width {widths})")
    fig.colorbar(axes[0, 0].collections[0], cax=axes[0, n], label=CHI_LABEL)
    title = _suptitle(fig, r"Order / chaos phase diagram of the mean-field recursion, with the "
                           r"run's initializers", n * PANEL_W + 1.0)
    finish_layout(fig, axes, [PANEL_W] * n + [CBAR_W], [PANEL_H], header=[title])
    return fig


def _jacobian_acts(sweep: SweepResult, ctx: Context) -> list[str]:
    spectra, _ = ctx.spectra
    keys = set(spectra)
    return [a for a in data.activations(sweep)
            if any(data.config_key(c) in keys for c, _ in data.configurations(sweep)
                   if c["activation"] == a)]


def _jacobian_skip(sweep: SweepResult, ctx: Context) -> str | None:
    if _jacobian_acts(sweep, ctx):
        return None
    reasons = sorted(set(ctx.spectra[1].values()))
    return "no configuration of this run has a Jacobian the report computes" + (
        f" ({'; '.join(reasons)})" if reasons else "")


def _jacobian_figure(sweep: SweepResult, ctx: Context):
    from matplotlib.patches import StepPatch

    from initdiag.report.theory_data import log_density_bins
    from initdiag.report.theory_figures import jacobian_histogram

    spectra, _ = ctx.spectra
    acts = _jacobian_acts(sweep, ctx)
    n = len(acts)
    fig, axes = new_grid(1, n, [PANEL_W] * n, [PANEL_H])
    handles, labels = {}, []
    for ax, act in zip(axes[0], acts):
        configs = [c for c, _ in data.configurations(sweep) if c["activation"] == act
                   and data.config_key(c) in spectra]
        keys = data.varying_keys(configs, exclude=("activation", "init"))
        chosen, pal = {}, {}
        for c in configs:
            label = c["init"] + (f", {data.config_label(c, keys)}" if keys else "")
            chosen[label] = spectra[data.config_key(c)]
            pal[label] = ctx.palette[c["init"]]
        jacobian_histogram(chosen, palette=pal, legend=False, ax=ax,
                           bins=log_density_bins(chosen))
        ax.set_title(act)
        steps = [p for p in ax.patches if isinstance(p, StepPatch)]  # one per spectrum, in order
        for label, step in zip(chosen, steps):
            if label not in handles:
                handles[label] = step
                labels.append(label)
    axes[0, -1].legend(*_legend_labels(handles, labels), loc="center left",
                       bbox_to_anchor=(1.04, 0.5), frameon=False, title="initializer",
                       ncols=2 if len(labels) > 16 else 1)
    title = _suptitle(fig, r"Singular values of the input-output Jacobian $\partial x^L/"
                           r"\partial x^0$ at initialization", n * PANEL_W + 2.0)
    finish_layout(fig, axes, [PANEL_W] * n, [PANEL_H], header=[title])
    return fig


# --- captions ---------------------------------------------------------------------------------

#: Caption note for figures that overlay the mean-field prediction.
THEORY_NOTE = (". Thin dashed lines: the infinite-width mean-field prediction (initdiag.theory; "
               "gradients drawn through the measured last layer), where the theory applies (not "
               "with normalization, residual, zeros/constant or LSUV init)")
#: Caption note of the activation-variance figure's finite-width band.
BAND_NOTE = ("; light shading around it: the expected finite-width spread, +-2 standard "
             "deviations of ln Var[h^l] for one network of this width and batch (initdiag.theory,"
             " Prediction.band), mapped to Var[x^l] by the mean-field map q -> Var[phi(z)], "
             "z ~ N(0, q).")
#: Caption note of the gradient figure: the theory has no finite-width band for gradients.
NO_BAND_NOTE = "; the gradient prediction has no finite-width band (the theory gives none)."


def _defs(*metrics: str) -> str:
    return "; ".join(f"{m} = {METRICS[m]}" for m in metrics)


def _setting(sweep: SweepResult, key: str) -> str:
    return "/".join(dict.fromkeys(str(r.config.get(key)) for r in sweep))


def _jacobian_caption(sweep: SweepResult, ctx: Context | None = None) -> str:
    from initdiag.report.theory_data import JACOBIAN_MAX_WIDTH

    widths = sorted({w for r in sweep for w in np.atleast_1d(r.config["width"]).tolist()})
    seeds = list(dict.fromkeys(r.seed for r in sweep))
    reduced = [w for w in widths if w > JACOBIAN_MAX_WIDTH]
    where = (f"at the run's depth ({_setting(sweep, 'depth')}) and width "
             f"({_setting(sweep, 'width')})")
    if reduced:
        where = (f"at the run's depth ({_setting(sweep, 'depth')}) but width "
                 f"{JACOBIAN_MAX_WIDTH} instead of {'/'.join(map(str, reduced))} (cost grows as "
                 f"width^3; initializers with a fixed scale, such as normal or uniform, have a "
                 f"different sigma_w^2 there)")
    return (f"Density of log10 of the singular values sigma of the input-output Jacobian "
            f"J = dx^L/dx^0 of each initializer's freshly drawn stack (exact: jax.jacfwd and an "
            f"SVD of J at one N(0, 1) input point, seed {seeds[0]}, {where}); all sigma near 1 "
            f"(dotted line) is dynamical isometry (Pennington, Schoenholz & Ganguli 2017), a "
            f"wide spread means some input directions are amplified while others are lost.")


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("act_var", "Activation variance",
               lambda s, c: f"Variance of each layer's output by depth ({_defs('act_var')}); it "
                            f"should stay roughly constant" + SEED_NOTE + THEORY_NOTE
                            + BAND_NOTE,
               _line_figure(plots.plot_act_var,
                            r"Forward signal: variance of the layer output $x^l$", "act_var",
                            band=True)),
    FigureSpec("grad_rms", "Gradient RMS",
               lambda s, c: f"Backpropagated gradient by depth ({_defs('grad_preact_rms')}); a "
                            f"straight falling or rising line on this log scale is vanishing or "
                            f"exploding gradients" + SEED_NOTE + THEORY_NOTE + NO_BAND_NOTE,
               _line_figure(plots.plot_grad_rms,
                            r"Backward signal: RMS of $\partial L/\partial h^l$",
                            "grad_preact_rms")),
    FigureSpec("saturation", "Saturation and dead units",
               lambda s, c: f"Saturation for tanh/sigmoid-like φ ({_defs('saturation')}), and "
                            f"for ReLU the zero and dead fractions "
                            f"({_defs('zero_frac', 'dead_frac')})" + SEED_NOTE + ".",
               _line_figure(plots.plot_saturation, "Saturated units (tanh, sigmoid) and "
                                                   "zero / dead units (ReLU)")),
    FigureSpec("act_hist", "Activation distributions",
               lambda s, c: "Histogram of the entries of a^l = φ(h^l) at the layers shown, one "
                            "row per initializer (and per depth, width or other setting when "
                            "they vary), pooled over the seeds of that one configuration, as the "
                            "fraction of the batch x units entries per bin (log scale; the outer "
                            "bins also count values beyond the range): mass collapsing onto 0 "
                            "or piling up at φ's bounds is the classic failure.",
               _hist_figure,
               lambda s, c: data.missing_histograms(s)),
    FigureSpec("grad_heatmap", "Gradient heatmap",
               lambda s, c: f"log10 of the median over seeds of the gradient RMS "
                            f"({_defs('grad_preact_rms')}) per initializer and layer; the colour "
                            f"scale is centred on the typical last-layer value (colours "
                            f"saturate {data.HEATMAP_MAX_DECADES:g} decades away), so blue is "
                            f"vanishing and red exploding towards the input, grey is exactly 0.",
               _heatmap_figure),
    FigureSpec("grad_weight_ratio", "Relative weight gradient",
               lambda s, c: f"Relative size of one gradient step per layer "
                            f"({_defs('grad_weight_ratio')}, with {_defs('grad_weight_norm')}); "
                            f"layers whose ratio differs by decades learn at very different "
                            f"speeds under one learning rate" + SEED_NOTE + ".",
               _line_figure(plots.plot_grad_weight_ratio,
                            r"Relative weight gradient "
                            r"$\|\partial L/\partial W^l\|\,/\,\|W^l\|$")),
    FigureSpec("phase_diagram", "Order / chaos phase diagram",
               lambda s, c: "Mean-field phase diagram of each activation (Poole et al. 2016; "
                            "Schoenholz et al. 2017): the colour is log2 chi_1, where "
                            "chi_1 = sigma_w^2 E[phi'(z)^2], z ~ N(0, q*), at the fixed point q* "
                            "of q -> sigma_w^2 E[phi(z)^2] + sigma_b^2 (sigma_w^2 = "
                            "fan_in Var(W_ij), sigma_b^2 = Var(b_j)), so blue (chi_1 < 1) is "
                            "the ordered phase where gradients vanish and red (chi_1 > 1) the "
                            "chaotic one where they explode; the black line chi_1 = 1 is the "
                            "edge of chaos, dashed contours the depth scale xi_c over which two "
                            "inputs' correlation approaches its fixed point (layers), and each "
                            "marker one of the run's initializers at its (sigma_w^2, "
                            "sigma_b^2) for the run's width (initializers the theory does not "
                            "describe are listed under the panel title).",
               _phase_figure, _phase_skip),
    FigureSpec("jacobian", "Jacobian singular values", _jacobian_caption, _jacobian_figure,
               _jacobian_skip),
)


def draw_figure(name: str, sweep: SweepResult, palette: dict | None = None,
                ctx: Context | None = None):
    """Draw report figure ``name`` (one of :data:`FIGURES`) and return the matplotlib Figure.

    Raises:
      ValueError: for an unknown name, or a figure that does not apply to the sweep (why).
    """
    specs = {f.name: f for f in FIGURES}
    if name not in specs:
        raise ValueError(f"unknown figure {name!r}; choose from {', '.join(specs)}")
    ctx = ctx or Context(sweep, palette)
    reason = specs[name].skip(sweep, ctx)
    if reason:
        raise ValueError(f"figure {name!r} does not apply: {reason}")
    with style.theme():
        return specs[name].draw(sweep, ctx)


@dataclasses.dataclass(frozen=True)
class WrittenFigure:
    """A report figure: ``path`` (PNG), ``title``, ``caption``, pixel ``size``; or, when it does
    not apply to the sweep, ``path`` and ``size`` None and ``skipped`` the reason."""

    name: str
    path: Path | None
    title: str
    caption: str
    size: tuple[int, int] | None
    skipped: str | None = None


def png_bytes(fig) -> bytes:
    """The figure as PNG at :data:`DPI` (no tight bounding box: the layout already fits),
    reduced to a 256-colour palette (octree, no dithering): line plots and colour maps look the
    same and the files are ~4x smaller (the example report's PNGs: 1.06 MB -> 0.28 MB), which
    matters for a page that embeds them all and is mailed around."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    buf.seek(0)
    with Image.open(buf) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                                           dither=Image.Dither.NONE)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue()


def write_figures(sweep: SweepResult, out_dir: str | Path, names: list[str] | None = None,
                  ctx: Context | None = None) -> list[WrittenFigure]:
    """Write one PNG per figure into ``out_dir`` (atomically) and return what was written,
    in the order of :data:`FIGURES`; figures that do not apply come back with the reason."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    ctx = ctx or Context(sweep)
    written = []
    for spec in FIGURES:
        if names is not None and spec.name not in names:
            continue
        reason = spec.skip(sweep, ctx)
        if reason:
            written.append(WrittenFigure(spec.name, None, spec.title, spec.caption(sweep, ctx),
                                         None, reason))
            continue
        fig = draw_figure(spec.name, sweep, ctx=ctx)
        try:
            data = png_bytes(fig)
            w, h = fig.get_size_inches()
        finally:
            plt.close(fig)
        path = atomic_write_bytes(out_dir / f"{spec.name}.png", data)
        written.append(WrittenFigure(spec.name, path, spec.title, spec.caption(sweep, ctx),
                                     (int(round(w * DPI)), int(round(h * DPI)))))
    return written
