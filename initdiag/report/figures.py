"""The report's figures: which there are (:data:`FIGURES`), drawing one, writing their PNGs.

Each figure has a file name, a title, a one-sentence caption that states the definition of what
it shows (:mod:`.captions`), a drawing function (:mod:`.figures_measured`,
:mod:`.figures_theory`) and the reason it is skipped for a sweep it does not apply to (no
histograms; theory figures for normalized or residual stacks), which the page shows in its
place. Figures are drawn in the report's theme (:func:`initdiag.report.style.theme`), laid out
from measured text (:mod:`.layout`: a PNG's pixel size is known after drawing,
:attr:`WrittenFigure.size`) and written as 256-colour PNGs (:mod:`.png`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from initdiag.fileio import atomic_write_bytes
from initdiag.report import captions, plots, style
from initdiag.report.context import Context
from initdiag.report.data import missing_histograms
from initdiag.report.figures_measured import heatmap_figure, hist_figure, line_figure
from initdiag.report.figures_theory import jacobian_figure, jacobian_skip, phase_figure, phase_skip
from initdiag.report.layout import DPI
from initdiag.report.png import png_bytes
from initdiag.results import SweepResult


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """A report figure: file ``name``.png, its ``title``, a ``caption`` builder, ``draw`` and
    ``skip`` (the reason it does not apply to a sweep, or None)."""

    name: str
    title: str
    caption: Callable[[SweepResult, Context], str]
    draw: Callable[[SweepResult, Context], Any]
    skip: Callable[[SweepResult, Context], str | None] = lambda s, c: None


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("act_var", "Activation variance", captions.act_var,
               line_figure(plots.plot_act_var,
                           r"Forward signal: variance of the layer output $x^l$", "act_var",
                           band=True)),
    FigureSpec("grad_rms", "Gradient RMS", captions.grad_rms,
               line_figure(plots.plot_grad_rms,
                           r"Backward signal: RMS of $\partial L/\partial h^l$",
                           "grad_preact_rms")),
    FigureSpec("saturation", "Saturation and dead units", captions.saturation,
               line_figure(plots.plot_saturation, "Saturated units (tanh, sigmoid) and "
                                                  "zero / dead units (ReLU)")),
    FigureSpec("act_hist", "Activation distributions", captions.act_hist, hist_figure,
               lambda s, c: missing_histograms(s)),
    FigureSpec("grad_heatmap", "Gradient heatmap", captions.grad_heatmap, heatmap_figure),
    FigureSpec("grad_weight_ratio", "Relative weight gradient", captions.grad_weight_ratio,
               line_figure(plots.plot_grad_weight_ratio,
                           r"Relative weight gradient "
                           r"$\|\partial L/\partial W^l\|\,/\,\|W^l\|$")),
    FigureSpec("phase_diagram", "Order / chaos phase diagram", captions.phase_diagram,
               phase_figure, phase_skip),
    FigureSpec("jacobian", "Jacobian singular values", captions.jacobian, jacobian_figure,
               jacobian_skip),
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
