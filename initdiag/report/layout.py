"""Figure layout from measured text: panels of fixed size, margins measured after drawing.

Every panel's plotting area (the axes box) has a fixed size in inches (:data:`PANEL_W` x
:data:`PANEL_H` for line panels, ...); the margins around it are *measured* after drawing (tick
labels, axis labels, titles, legends: ``Axes.get_tightbbox``) and the figure is sized to hold them
plus :data:`PAD`, so no text is clipped whatever the labels (long initializer names are also
wrapped, :func:`initdiag.report.style.wrap_label`). A PNG's pixel size is therefore known after
drawing: at least the panels' area, growing with the text. The text is measured once: moving an
axes does not change what surrounds it, so the final check (:func:`grow_to_fit`) shifts the
extents measured before the move instead of laying out every tick label again.

Here: the sizes (:data:`DPI`, panel sizes, gaps), a grid of axes (:func:`new_grid`), the final
layout (:func:`finish_layout`, :func:`grow_to_fit`, :func:`tight_bbox`), the figure title
(:func:`suptitle`) and the initializer legend beside the last panel (:func:`side_legend`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from initdiag.report import style

DPI = 100
PANEL_W, PANEL_H = 3.7, 3.0    # inches: the plotting area of one line panel
HIST_W, HIST_H = 3.7, 1.05     # inches: one distribution panel
HEAT_W, HEAT_ROW_H = 3.7, 0.26  # inches: heatmap panel width, height per initializer row
CBAR_W = 0.15                  # inches: a colorbar's width
PAD = 0.1                      # inches of white around the contents
WGAP, HGAP = 0.3, 0.25         # inches between the decorations of neighbouring panels
LABEL_WRAP = 24                # characters per line of a legend entry or row label


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
    measured = {}  # axes -> (tight bbox, axes box) in pixels, before the axes move
    for i, row in enumerate(grid):
        for j, ax in enumerate(row):
            if ax is None or not ax.get_visible():
                continue
            tb, bb = ax.get_tightbbox(renderer), ax.get_window_extent(renderer).frozen()
            measured[ax] = (tb, bb)
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
    # The axes moved but kept their sizes, so what they hold kept its extent around them: the
    # check below needs no second measurement of their ticks and texts, only a shift.
    moved = {}
    for ax, (tb, bb) in measured.items():
        now = ax.get_window_extent()
        moved[ax] = tb.translated(now.x0 - bb.x0, now.y0 - bb.y0)
    grow_to_fit(fig, pad, measured=moved)


def grow_to_fit(fig, pad: float = PAD, measured: Mapping[Any, Any] | None = None) -> None:
    """Safety net: if any artist still reaches beyond the figure (measured), enlarge the figure
    by the overflow and shift axes and figure texts so that nothing moves relative to another.

    ``measured``: axes -> their tight bounding box (a matplotlib ``Bbox`` in pixels at the
    figure's current size and the axes' current place), already measured by the caller; those
    axes are not measured again (:func:`finish_layout` passes what it measured, shifted to where
    it moved the axes). Every other axes and figure-level artist is measured here."""
    bb = tight_bbox(fig, measured or {})  # inches
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


def tight_bbox(fig, measured: Mapping[Any, Any]):
    """``fig.get_tightbbox()`` (inches: the box around every visible artist that takes part in
    the layout), with the axes in ``measured`` (axes -> tight bbox in pixels) taken from there
    instead of measured again."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    boxes = [a.get_tightbbox(renderer) for a in fig.get_children()
             if a not in fig.axes and a.get_visible() and a.get_in_layout()]
    boxes += [measured[ax] if ax in measured else ax.get_tightbbox(renderer)
              for ax in fig.axes if ax.get_visible()]
    boxes = [b for b in boxes if b is not None and np.isfinite(b.width)
             and np.isfinite(b.height) and (b.width != 0 or b.height != 0)]
    if not boxes:
        return fig.bbox_inches
    return Bbox.union(boxes).transformed(fig.dpi_scale_trans.inverted())


def _whole_pixels(inches: float, dpi: float) -> float:
    """``inches`` rounded up to a whole number of pixels at ``dpi``."""
    return math.ceil(inches * dpi - 1e-6) / dpi


def suptitle(fig, text: str, width: float, **kwargs: Any):
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


def side_legend(ax, handles: Mapping[str, Any], labels: Sequence[str]) -> None:
    """The initializer legend to the right of ``ax`` (the last panel of a row), entries
    wrapped to :data:`LABEL_WRAP` characters, in two columns beyond 16 entries."""
    ax.legend([handles[lab] for lab in labels],
              [style.wrap_label(lab, LABEL_WRAP) for lab in labels], loc="center left",
              bbox_to_anchor=(1.04, 0.5), frameon=False, title="initializer",
              ncols=2 if len(labels) > 16 else 1)
