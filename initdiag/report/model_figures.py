"""Figures of a model report (:func:`initdiag.write_report` of a ``ModelResult`` / ``ModelSweep``).

Every figure is a vertical stack of panels over the model's sites: the x axis is the site's index
in call order, its tick labels the site names shortened (:func:`short_site`; the tables give them
whole). One line per initializer (colours of :func:`initdiag.report.style.init_palette`); with
several seeds the line is the median over seeds and the shaded band spans min to max over seeds.
A metric defined only at some sites (e.g. ``saturation`` at activation sites) is drawn at those
sites only, joined in call order. Values <= 0 cannot be drawn on a log axis: such sites are named
in a note under the panel.

Figures (:data:`MODEL_FIGURES`): ``site_stats`` (var, grad_rms, and the saturated / zero / dead
fractions when the model has such activation sites), ``signal_propagation`` (Brock et al. 2021's
signal propagation plot: ch_sq_mean, ch_var, and branch_ratio at the residual sites) and
``attention`` (attn_entropy, attn_max_logit at the attention sites; only when there are any).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from initdiag.model.result import MODEL_METRICS

#: The model report's figures (PNG names), in page order.
MODEL_FIGURES = ("site_stats", "signal_propagation", "attention")
#: Site names on the axis: the last SHORT_PARTS path components, at most SHORT_WIDTH characters.
SHORT_PARTS, SHORT_WIDTH = 2, 24
#: At most this many tick labels on a site axis (every k-th site beyond).
MAX_TICKS = 60
#: Metrics drawn on a log y axis.
LOG_METRICS = frozenset({"var", "sq_mean", "grad_rms", "ch_var", "ch_sq_mean", "branch_var",
                         "skip_var", "branch_ratio"})
#: The fractions of the third ``site_stats`` panel and their dash patterns.
FRACTIONS = {"saturation": "-", "zero_frac": "--", "dead_frac": ":"}
#: y axis labels.
YLABELS = {"var": "Var[v]", "grad_rms": r"RMS $\partial L/\partial v$",
           "ch_var": "mean channel variance", "ch_sq_mean": "mean channel squared mean",
           "branch_ratio": "Var[branch] / Var[skip]", "attn_entropy": "attention entropy (nats)",
           "attn_max_logit": "max attention logit"}
SEED_NOTE = "line: median over seeds; shaded band: min to max over seeds"


def short_site(name: str, parts: int = SHORT_PARTS, width: int = SHORT_WIDTH) -> str:
    """A site name for an axis: its last ``parts`` ``/``-separated components (``…/`` before
    them when some were dropped), ellipsized at the front to ``width`` characters."""
    pieces = str(name).split("/")
    out = "/".join(pieces[-parts:])
    if len(pieces) > parts:
        out = "…/" + out
    if len(out) > width:
        out = "…" + out[-(width - 1):]
    return out


def sites_of(results: Sequence[Any]) -> tuple[tuple, tuple, tuple]:
    """(sites, kinds, activations) shared by every result.

    Raises:
      ValueError: the results probe different models (their site lists differ).
    """
    first = results[0]
    for r in results[1:]:
        if r.sites != first.sites:
            raise ValueError(f"the results probe different models ({first.config.get('model')!r}"
                             f" and {r.config.get('model')!r}: their sites differ); write one "
                             f"report per model")
    return first.sites, first.kinds, first.activations


def by_init(results: Sequence[Any]) -> dict[str, list]:
    """The results grouped by initializer label, in order of first appearance."""
    out: dict[str, list] = {}
    for r in results:
        out.setdefault(str(r.config.get("init")), []).append(r)
    return out


def pooled(results: Sequence[Any], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, min, max) over the results (seeds) of ``metric`` per site; NaN where every
    result has NaN (or lacks the metric)."""
    n = len(results[0].sites)
    rows = np.stack([np.asarray(r.values.get(metric, np.full(n, np.nan)), dtype=float)
                     for r in results])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN
        return np.nanmedian(rows, axis=0), np.nanmin(rows, axis=0), np.nanmax(rows, axis=0)


def defined(results: Sequence[Any], metric: str) -> np.ndarray:
    """Indices of the sites where ``metric`` is finite in some result."""
    n = len(results[0].sites)
    ok = np.zeros(n, dtype=bool)
    for r in results:
        v = np.asarray(r.values.get(metric, np.full(n, np.nan)), dtype=float)
        ok |= np.isfinite(v)
    return np.flatnonzero(ok)


def present(results: Sequence[Any], metrics: Sequence[str]) -> list[str]:
    """The ``metrics`` that are finite at some site of some result."""
    return [m for m in metrics if defined(results, m).size]


def _range_text(idx: np.ndarray) -> str:
    idx = [int(i) for i in idx]
    if len(idx) > 6:
        return f"{len(idx)} sites"
    return "site" + ("s " if len(idx) > 1 else " ") + ", ".join(map(str, idx))


def draw_metric(ax, results: Sequence[Any], metric: str, palette: dict, *,
                idx: np.ndarray | None = None, log: bool | None = None, dash: str | None = None,
                label: bool = True) -> None:
    """One line per initializer of ``metric`` at the sites ``idx`` (default: where it is
    defined), median over seeds with a min-max band."""
    from initdiag.report import style
    from initdiag.report.ticks import log_scale

    log = metric in LOG_METRICS if log is None else log
    idx = defined(results, metric) if idx is None else idx
    notes = []
    for init, group in by_init(results).items():
        st = palette.get(init) or style.init_palette([init])[init]
        med, lo, hi = (a[idx] for a in pooled(group, metric))
        if log:
            zero = idx[np.isfinite(med) & (med <= 0)]
            if zero.size:
                notes.append(plain(f"{init}: <= 0 at {_range_text(zero)}"))
            med = np.where(med > 0, med, np.nan)
            lo, hi = np.where(lo > 0, lo, np.nan), np.where(hi > 0, hi, np.nan)
        ax.plot(idx, med, color=st.color, linestyle=dash or st.dash, marker=st.marker,
                markersize=3.5, label=init if label else "_nolegend_")
        if len(group) > 1:
            ax.fill_between(idx, lo, hi, color=st.color, alpha=0.2, linewidth=0,
                            label="_nolegend_")
    if log:
        log_scale(ax, "y")
    if notes:
        ax.text(0.01, 0.01, "not drawn on the log scale: " + "; ".join(notes),
                transform=ax.transAxes, fontsize="x-small", color="0.35", va="bottom")


def site_ticks(ax, sites: Sequence[str], idx: Sequence[int] | None = None) -> None:
    """Tick labels ``"<index> <short name>"`` at the sites ``idx`` (default: all), at most
    :data:`MAX_TICKS` of them (every k-th beyond), rotated."""
    idx = list(range(len(sites))) if idx is None else [int(i) for i in idx]
    step = max(1, math.ceil(len(idx) / MAX_TICKS))
    idx = idx[::step]
    ax.set_xticks(idx)
    ax.set_xticklabels([plain(f"{i} {short_site(sites[i])}") for i in idx], rotation=60,
                       ha="right", rotation_mode="anchor", fontsize="x-small")
    ax.set_xlim(-0.5, max(len(sites) - 0.5, 0.5))


def plain(text: str) -> str:
    """``text`` drawn as typed: a ``$`` in a site or initializer name starts no mathtext."""
    return str(text).replace("$", r"\$")


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def _figure(n_panels: int, n_sites: int):
    import matplotlib.pyplot as plt

    from initdiag.report.layout import DPI

    width = min(max(7.5, 2.5 + 0.16 * min(n_sites, MAX_TICKS)), 16.0)
    fig, axes = plt.subplots(n_panels, 1, figsize=(width, 2.3 * n_panels + 2.0), dpi=DPI,
                             sharex=True, layout="constrained", squeeze=False)
    return fig, list(axes[:, 0])


def _legend(fig, axes, palette: dict, results: Sequence[Any]) -> None:
    from matplotlib.lines import Line2D

    from initdiag.report import style

    labels = list(by_init(results))
    handles = [Line2D([], [], color=palette[lab].color, linestyle=palette[lab].dash,
                      marker=palette[lab].marker, markersize=3.5) for lab in labels]
    axes[0].legend(handles, [plain(style.wrap_label(lab)) for lab in labels], loc="upper left",
                   bbox_to_anchor=(1.01, 1.0), frameon=False, title="initializer")


def site_stats_figure(results: Sequence[Any], palette: dict):
    """var (log), grad_rms (log) and, when present, saturation / zero_frac / dead_frac."""
    sites = results[0].sites
    fractions = present(results, list(FRACTIONS))
    fig, axes = _figure(3 if fractions else 2, len(sites))
    for ax, metric in zip(axes, ("var", "grad_rms")):
        draw_metric(ax, results, metric, palette)
        ax.set_ylabel(YLABELS[metric])
    if fractions:
        ax = axes[2]
        for m in fractions:
            draw_metric(ax, results, m, palette, log=False, dash=FRACTIONS[m], label=False)
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("fraction")
        from matplotlib.lines import Line2D

        ax.legend([Line2D([], [], color="0.3", linestyle=FRACTIONS[m]) for m in fractions],
                  fractions, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    site_ticks(axes[-1], sites)
    axes[-1].set_xlabel("site (call order)")
    _legend(fig, axes, palette, results)
    fig.suptitle("Per-site statistics: forward variance, gradient RMS"
                 + (", fractions" if fractions else ""))
    return fig


def signal_propagation_figure(results: Sequence[Any], palette: dict):
    """Brock et al. 2021's signal propagation plot: ch_sq_mean, ch_var, branch_ratio."""
    sites, kinds = results[0].sites, results[0].kinds
    fig, axes = _figure(3, len(sites))
    for ax, metric in zip(axes, ("ch_sq_mean", "ch_var")):
        if defined(results, metric).size:
            draw_metric(ax, results, metric, palette)
        else:
            _note(ax, f"{metric} is defined at no site")
        ax.set_ylabel(YLABELS[metric])
    res = np.flatnonzero(np.array([k == "residual" for k in kinds], dtype=bool))
    if res.size and defined(results, "branch_ratio").size:
        draw_metric(axes[2], results, "branch_ratio", palette, idx=res)
    else:
        _note(axes[2], "no residual sites")
    axes[2].set_ylabel(YLABELS["branch_ratio"])
    site_ticks(axes[-1], sites)
    axes[-1].set_xlabel("site (call order)")
    _legend(fig, axes, palette, results)
    fig.suptitle("Signal propagation (Brock et al. 2021)")
    return fig


def attention_sites(results: Sequence[Any]) -> np.ndarray:
    return np.flatnonzero(np.array([k == "attention" for k in results[0].kinds], dtype=bool))


def attention_figure(results: Sequence[Any], palette: dict):
    """attn_entropy and attn_max_logit at the attention sites."""
    sites = results[0].sites
    idx = attention_sites(results)
    fig, axes = _figure(2, len(sites))
    for ax, metric in zip(axes, ("attn_entropy", "attn_max_logit")):
        draw_metric(ax, results, metric, palette, idx=idx, log=False)
        ax.set_ylabel(YLABELS[metric])
    site_ticks(axes[-1], sites, idx)
    axes[-1].set_xlabel("site (call order; attention sites labelled)")
    _legend(fig, axes, palette, results)
    fig.suptitle("Attention sites: entropy and largest logit")
    return fig


def _defs(*metrics: str) -> str:
    return "; ".join(f"{m} = {MODEL_METRICS[m]}" for m in metrics)


def captions(results: Sequence[Any]) -> dict[str, str]:
    """One caption per figure, stating what every drawn quantity is (``v``: the site's value,
    ``L``: the loss)."""
    seeds = len({r.seed for r in results}) > 1
    note = f" ({SEED_NOTE})" if seeds else ""
    frac = present(results, list(FRACTIONS))
    return {
        "site_stats": ("Per site, in call order (v: the site's value, L: the loss): "
                       + _defs("var", "grad_rms", *frac)
                       + (" (solid: saturation, dashed: zero_frac, dotted: dead_frac)"
                          if frac else "") + note + "."),
        "signal_propagation": ("Signal propagation plot (Brock et al. 2021, 'Characterizing "
                               "signal propagation to close the performance gap in unnormalized "
                               "ResNets'): " + _defs("ch_sq_mean", "ch_var", "branch_ratio",
                                                     "branch_var", "skip_var") + note + "."),
        "attention": ("At the attention sites: " + _defs("attn_entropy", "attn_max_logit")
                      + note + "."),
    }


FIGURE_TITLES = {"site_stats": "Per-site statistics",
                 "signal_propagation": "Signal propagation",
                 "attention": "Attention"}


def write_model_figures(results: Sequence[Any], out_dir: str | Path) -> list[Any]:
    """Write the PNGs of :data:`MODEL_FIGURES` that apply into ``out_dir`` (atomically);
    returns :class:`initdiag.report.figures.WrittenFigure` in page order (``attention`` with
    ``skipped`` set when the model has no attention site)."""
    import matplotlib.pyplot as plt

    from initdiag.fileio import atomic_write_bytes
    from initdiag.report import style
    from initdiag.report.figures import WrittenFigure
    from initdiag.report.layout import DPI
    from initdiag.report.png import png_bytes

    results = list(results)
    palette = style.init_palette(by_init(results))
    caps = captions(results)
    draw = {"site_stats": site_stats_figure, "signal_propagation": signal_propagation_figure,
            "attention": attention_figure}
    written = []
    for name in MODEL_FIGURES:
        if name == "attention" and not attention_sites(results).size:
            written.append(WrittenFigure(name, None, FIGURE_TITLES[name], caps[name], None,
                                         "the model has no attention sites"))
            continue
        with style.theme():
            fig = draw[name](results, palette)
        try:
            data = png_bytes(fig)
            w, h = fig.get_size_inches()
        finally:
            plt.close(fig)
        path = atomic_write_bytes(Path(out_dir) / f"{name}.png", data)
        written.append(WrittenFigure(name, path, FIGURE_TITLES[name], caps[name],
                                     (int(round(w * DPI)), int(round(h * DPI)))))
    return written

