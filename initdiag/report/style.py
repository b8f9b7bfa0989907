"""The look of every initdiag figure: the initializer palette, the theme and label wrapping.

The palette maps each initializer label to a :class:`LineStyle` once, from the *sorted* labels, so
the same initializer has the same colour (and marker, and dash) in every panel of every figure.
Colours (:data:`COLORS`): the Okabe–Ito / seaborn ``"colorblind"`` colours that read on white
(the pale pink and the light yellow of ``"colorblind"`` are left out; the yellow is darkened), plus
black and Tol's wine: 10 colours, distinguishable with the common colour-vision deficiencies, each
with a contrast ratio of at least 2 against white. Symmetric initializers (``zeros``,
``constant``) are drawn in a neutral grey (:data:`NEUTRAL`). Markers cycle with a period (7)
coprime to the number of colours (10), so the first 70 labels all get distinct (colour, marker)
pairs; the dash pattern changes with every round of the colours.

The theme (:func:`theme`): :data:`RC` and seaborn's ``whitegrid`` style (its settings written out,
:data:`AXES_STYLE_RC`), applied while a report figure is drawn. What is drawn (the numbers) comes from :mod:`.data` and :mod:`.theory_data`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from typing import Any, Iterable, Iterator

import numpy as np

#: Replaces the colorblind palette's light yellow (#ECE133), too faint for lines on white.
DARK_YELLOW = (0.74, 0.66, 0.0)
#: Line colours in the order they are given to the sorted labels (hex, then RGB in COLORS).
COLOR_HEX = ("#0173B2", "#DE8F05", "#029E73", "#D55E00", "#CC78BC", "#CA9161", "#56B4E9",
             "#000000", "#BDA800", "#882255")
#: Neutral grey for the symmetric initializers (every weight equal): zeros, constant.
NEUTRAL = (0.5, 0.5, 0.5)
#: Initializer names drawn in :data:`NEUTRAL`.
NEUTRAL_NAMES = ("zeros", "zero", "constant")
#: Dash patterns, one per round of the colours.
DASHES = ("-", "--", ":", "-.")
#: Markers; 7 is coprime to the 10 colours, so (colour, marker) repeats only after 70 labels.
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
#: Markers of the neutral (symmetric) initializers.
NEUTRAL_MARKERS = ("x", "+", "1", "2", "3", "4")
#: Matplotlib rc settings used while a report figure is drawn (:func:`theme`). Panel titles sit
#: at the top of the axes (``axes.titley`` 1.0, plus ``axes.titlepad``): matplotlib's automatic
#: placement would move one up only above tick labels on top or a y offset text, which report
#: panels do not have, and it lays out both axes again for every title at every draw.
RC: dict[str, Any] = {
    "font.size": 9.5, "axes.titlesize": 10.5, "axes.labelsize": 9.5, "legend.fontsize": 8.5,
    "xtick.labelsize": 8.5, "ytick.labelsize": 8.5, "figure.titlesize": 12,
    "axes.spines.top": False, "axes.spines.right": False, "lines.linewidth": 1.5,
    "savefig.facecolor": "white", "figure.facecolor": "white", "axes.titley": 1.0,
}
#: Seaborn axes style (and its overrides) used while a report figure is drawn (:func:`theme`).
AXES_STYLE = ("whitegrid", {"axes.edgecolor": "0.3", "grid.color": "0.9"})
#: The rc settings of :data:`AXES_STYLE`, as ``seaborn.axes_style(*AXES_STYLE)`` gives them (a
#: test keeps them equal), written out so that drawing a figure does not import seaborn and
#: scipy.stats with it (~0.7 s). Left out: its ``image.cmap`` ("rocket", a colormap that exists
#: only once seaborn is imported); report figures name their colormaps. Applied after
#: :data:`RC`, so its spines (all four) win over RC's.
AXES_STYLE_RC: dict[str, Any] = {
    "figure.facecolor": "white", "axes.labelcolor": ".15", "xtick.direction": "out",
    "ytick.direction": "out", "xtick.color": ".15", "ytick.color": ".15", "axes.axisbelow": True,
    "grid.linestyle": "-", "text.color": ".15", "font.family": ["sans-serif"],
    "font.sans-serif": ["Arial", "DejaVu Sans", "Liberation Sans", "Bitstream Vera Sans",
                        "sans-serif"],
    "lines.solid_capstyle": "round", "patch.edgecolor": "w", "patch.force_edgecolor": True,
    "xtick.top": False, "ytick.right": False, "axes.grid": True, "axes.facecolor": "white",
    "axes.edgecolor": "0.3", "grid.color": "0.9", "axes.spines.left": True,
    "axes.spines.bottom": True, "axes.spines.right": True, "axes.spines.top": True,
    "xtick.bottom": False, "ytick.left": False,
}


@contextlib.contextmanager
def theme() -> Iterator[None]:
    """The report's theme while a figure is drawn: :data:`RC`, then :data:`AXES_STYLE`
    (:data:`AXES_STYLE_RC`)."""
    import matplotlib.pyplot as plt

    with plt.rc_context({**RC, **AXES_STYLE_RC}):
        yield


@dataclasses.dataclass(frozen=True)
class LineStyle:
    """How one initializer is drawn: ``color`` (RGB tuple), ``dash`` and ``marker``."""

    color: tuple[float, float, float]
    dash: str
    marker: str

    def kwargs(self) -> dict[str, Any]:
        return {"color": self.color, "linestyle": self.dash}


def _rgb(hex_color: str) -> tuple[float, float, float]:
    return tuple(int(hex_color[k:k + 2], 16) / 255.0 for k in (1, 3, 5))


#: :data:`COLOR_HEX` as RGB tuples.
COLORS = tuple(_rgb(h) for h in COLOR_HEX)


def is_neutral(label: str) -> bool:
    """True for the symmetric initializers drawn in grey (``zeros``, ``constant(value=0.5)``)."""
    return str(label).split("(", 1)[0].strip() in NEUTRAL_NAMES


def init_palette(labels: Iterable[str]) -> dict[str, LineStyle]:
    """The initializer -> style mapping, built from the sorted unique labels.

    Every label gets a distinct (colour, marker) pair (up to 70 labels, and a distinct
    (colour, marker, dash) beyond); ``zeros`` and ``constant`` get the neutral grey.
    """
    out = {}
    ordered = sorted(set(labels))
    coloured = [lab for lab in ordered if not is_neutral(lab)]
    neutral = [lab for lab in ordered if is_neutral(lab)]
    n = len(COLORS)
    for i, label in enumerate(coloured):
        out[label] = LineStyle(COLORS[i % n], DASHES[(i // n) % len(DASHES)],
                               MARKERS[i % len(MARKERS)])
    for i, label in enumerate(neutral):
        k = len(NEUTRAL_MARKERS)
        out[label] = LineStyle(NEUTRAL, DASHES[(i // k) % len(DASHES)], NEUTRAL_MARKERS[i % k])
    return out


def wrap_label(label: str, width: int = 24) -> str:
    """A long label broken into lines of about ``width`` characters, after ``(`` and ``,``
    (``variance_scaling(`` / ``distribution=normal,`` / ``scale=1.76)``); a piece without a
    break point is cut every ``width`` characters. Short labels are unchanged."""
    label = str(label)
    if len(label) <= width:
        return label
    pieces = re.findall(r"[^(,]*(?:[(,]\s*|$)", label)
    lines, cur = [], ""
    for piece in (p for p in pieces if p):
        if cur and len(cur) + len(piece.rstrip()) > width:
            lines.append(cur.rstrip())
            cur = ""
        cur += piece
    if cur.strip():
        lines.append(cur.rstrip())
    out = []
    for line in lines:  # a piece without a break point: cut it every `width` characters
        out += [line[k:k + width] for k in range(0, len(line), width)] or [line]
    return "\n".join(out)


def layer_colors(n: int) -> list[tuple[float, float, float]]:
    """n sequential colours (dark -> light, perceptually uniform) for layers of one network."""
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [tuple(cmap(v)[:3]) for v in np.linspace(0.0, 0.85, max(n, 1))]
