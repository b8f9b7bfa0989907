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
    #: whether drawing it (or its ``skip``) needs the mean-field predictions or the Jacobian
    #: spectra (:class:`Context`); the others need only the probe results
    theory: bool = False
    #: its drawing time relative to a one-row line figure's, for sharing the figures between
    #: processes largest first (:class:`FigureWriter`)
    cost: float = 1.0


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("act_var", "Activation variance", captions.act_var,
               line_figure(plots.plot_act_var,
                           r"Forward signal: variance of the layer output $x^l$", "act_var",
                           band=True), theory=True),
    FigureSpec("grad_rms", "Gradient RMS", captions.grad_rms,
               line_figure(plots.plot_grad_rms,
                           r"Backward signal: RMS of $\partial L/\partial h^l$",
                           "grad_preact_rms"), theory=True),
    FigureSpec("saturation", "Saturation and dead units", captions.saturation,
               line_figure(plots.plot_saturation, "Saturated units (tanh, sigmoid) and "
                                                  "zero / dead units (ReLU)")),
    FigureSpec("act_hist", "Activation distributions", captions.act_hist, hist_figure,
               lambda s, c: missing_histograms(s), cost=3.0),
    FigureSpec("grad_heatmap", "Gradient heatmap", captions.grad_heatmap, heatmap_figure,
               cost=1.5),
    FigureSpec("grad_weight_ratio", "Relative weight gradient", captions.grad_weight_ratio,
               line_figure(plots.plot_grad_weight_ratio,
                           r"Relative weight gradient "
                           r"$\|\partial L/\partial W^l\|\,/\,\|W^l\|$")),
    FigureSpec("phase_diagram", "Order / chaos phase diagram", captions.phase_diagram,
               phase_figure, phase_skip, theory=True, cost=1.5),
    FigureSpec("jacobian", "Jacobian singular values", captions.jacobian, jacobian_figure,
               jacobian_skip, theory=True),
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


def render_figure(name: str, sweep: SweepResult, ctx: Context) -> tuple[bytes, tuple[int, int]]:
    """Draw report figure ``name`` (:func:`draw_figure`) and return its PNG (:mod:`.png`) and its
    pixel size."""
    import matplotlib.pyplot as plt

    fig = draw_figure(name, sweep, ctx=ctx)
    try:
        data = png_bytes(fig)
        w, h = fig.get_size_inches()
    finally:
        plt.close(fig)
    return data, (int(round(w * DPI)), int(round(h * DPI)))


def write_figures(sweep: SweepResult, out_dir: str | Path, names: list[str] | None = None,
                  ctx: Context | None = None, worker: Any = None) -> list[WrittenFigure]:
    """Write one PNG per figure into ``out_dir`` (atomically) and return what was written,
    in the order of :data:`FIGURES`; figures that do not apply come back with the reason.
    ``worker``: a :class:`initdiag.report.worker.FigureWorker` to share the drawing with
    (:class:`FigureWriter`)."""
    writer = FigureWriter(sweep, out_dir, names=names, ctx=ctx, worker=worker)
    writer.start()
    return writer.finish()


class FigureWriter:
    """Writes the report's figures into ``out_dir``, in this process or shared with a
    :class:`~initdiag.report.worker.FigureWorker` (``worker``; None: all here).

    :meth:`start` sends the sweep to the worker and returns at once. :meth:`finish` then shares
    the figures between the two processes, largest first (``cost``): a thread here hands the
    worker its next figure the moment it answers the last, while this process draws whichever is
    largest of those left. The worker has the theory when it computed it (``theory_in_worker``:
    :func:`initdiag.report.beside.theory_task` for this sweep) or once it is sent
    (``ctx.predictions`` and ``ctx.spectra``, computed here), before its first theory figure;
    until then it takes the figures that need none. If the worker fails (exits, or a task
    raises), what it did not write is drawn here, so the result does not depend on it: the same
    files, the same bytes. ``drawn_by_worker`` lists the names it wrote, ``worker_seconds`` the
    time it spent drawing and writing them.
    """

    def __init__(self, sweep: SweepResult, out_dir: str | Path, names: list[str] | None = None,
                 ctx: Context | None = None, worker: Any = None,
                 theory_in_worker: bool = False):
        self.sweep = sweep
        self.out_dir = Path(out_dir)
        self.ctx = ctx or Context(sweep)
        self.specs = [s for s in FIGURES if names is None or s.name in names]
        self.worker = worker
        self._theory_in_worker = theory_in_worker
        self.drawn_by_worker: list[str] = []
        self.worker_seconds = 0.0

    def start(self) -> None:
        """Send the sweep (and the palette) to the worker; nothing without one."""
        if self.worker is None or not self.worker.alive:
            self.worker = None
            return
        try:
            self.worker.submit(_load_sweep, self.sweep, self.ctx.palette, self._theory_in_worker)
        except Exception:  # noqa: BLE001 - gone, or a sweep that does not pickle: all here
            self.worker = None

    def finish(self) -> list[WrittenFigure]:
        """Draw or collect every figure; returns them in :data:`FIGURES` order."""
        import threading

        done: dict[str, WrittenFigure] = {}
        todo = []
        for spec in self.specs:
            reason = spec.skip(self.sweep, self.ctx)
            if reason:
                done[spec.name] = WrittenFigure(spec.name, None, spec.title,
                                                spec.caption(self.sweep, self.ctx), None, reason)
            else:
                todo.append(spec)
        todo.sort(key=lambda s: -s.cost)
        lock = threading.Lock()
        feeder = None
        if self.worker is not None:
            if not self._theory_in_worker:  # it needs the theory (computed here by now)
                try:
                    self.worker.submit(_load_theory, self.ctx.predictions, self.ctx.spectra)
                    self._theory_in_worker = True
                except Exception:  # noqa: BLE001 - it takes figures without theory only
                    pass
            feeder = threading.Thread(target=self._feed, args=(todo, lock, done),
                                      name="initdiag-figure-feeder", daemon=True)
            feeder.start()
        while True:  # this process: the largest figure left
            with lock:
                if not todo:
                    break
                spec = todo.pop(0)
            done[spec.name] = self._write_here(spec)
        if feeder is not None:
            feeder.join()
        for spec in self.specs:  # what the worker failed: drawn here, the same bytes
            if spec.name not in done:
                done[spec.name] = self._write_here(spec)
        return [done[s.name] for s in self.specs]

    def _feed(self, todo: list[FigureSpec], lock: Any, done: dict) -> None:
        """The feeder thread: give the worker one figure at a time (the largest it can draw)
        until none is left or it fails (what it failed is missing from ``done``: drawn here by
        :meth:`finish`, and a figure that raised there raises here); on any failure other than
        the figure's own the worker is stopped first, so it writes nothing after the feeder has
        given up on it."""
        from initdiag.report.worker import WorkerTraceback

        while True:
            with lock:
                ok = [s for s in todo if self._theory_in_worker or not s.theory]
                if not ok:
                    return
                spec = ok[0]
                todo.remove(spec)
            try:
                path, size, seconds = self.worker.result(
                    self.worker.submit(_draw_in_worker, spec.name, str(self.out_dir)))
                written = WrittenFigure(spec.name, Path(path), spec.title,
                                        spec.caption(self.sweep, self.ctx), size)
            except BaseException as e:  # noqa: BLE001 - drawn here instead
                if not isinstance(e.__cause__, WorkerTraceback):  # not the figure's own error
                    self.worker.terminate()
                return
            self.drawn_by_worker.append(spec.name)
            self.worker_seconds += seconds
            done[spec.name] = written

    def _write_here(self, spec: FigureSpec) -> WrittenFigure:
        data, size = render_figure(spec.name, self.sweep, self.ctx)
        path = atomic_write_bytes(self.out_dir / f"{spec.name}.png", data)
        return WrittenFigure(spec.name, path, spec.title, spec.caption(self.sweep, self.ctx),
                             size)


# --- tasks run in the figure worker (initdiag.report.worker: fn(state, *args)) -----------------

def _load_sweep(state: dict, sweep: SweepResult, palette: dict, with_theory: bool) -> None:
    state["sweep"], state["ctx"] = sweep, Context(sweep, palette)
    if with_theory:  # the worker's own theory_task of this sweep (initdiag.report.beside)
        _load_theory(state, state["theory"]["predictions"], state["theory"]["spectra"])


def _load_theory(state: dict, predictions: dict, spectra: tuple) -> None:
    # the Context's cached properties, computed by the main process
    state["ctx"].__dict__.update(predictions=predictions, spectra=spectra)


def _draw_in_worker(state: dict, name: str, out_dir: str
                    ) -> tuple[str, tuple[int, int], float]:
    import time

    t = time.perf_counter()
    data, size = render_figure(name, state["sweep"], state["ctx"])
    path = atomic_write_bytes(Path(out_dir) / f"{name}.png", data)
    return str(path), size, time.perf_counter() - t


def warm_up(state: dict | None = None) -> None:
    """Draw and render a small figure in the report's theme with text and mathtext, and drop it:
    loads the fonts and the text layout caches that a process's first figure would otherwise pay
    for (~0.5 s). A task for the figure worker (``state`` unused)."""
    import matplotlib.pyplot as plt

    from initdiag.report import layout

    with style.theme():
        fig, axes = layout.new_grid(1, 1, [1.0], [1.0])
        axes[0, 0].plot([1, 10], [1e-3, 1.0])
        axes[0, 0].set_yscale("log")
        axes[0, 0].set_title(r"$x^l$ warm-up")
        try:
            png_bytes(fig)
        finally:
            plt.close(fig)
