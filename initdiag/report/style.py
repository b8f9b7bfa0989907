"""One look for every initdiag figure: the initializer palette, the theme and tidy-data helpers.

The palette maps each initializer label to a :class:`LineStyle` once, from the *sorted* labels, so
the same initializer has the same colour (and dash) in every panel of every figure. Colours come
from seaborn's ``"colorblind"`` palette (10 colours, distinguishable with the common colour-vision
deficiencies; its light yellow is darkened to :data:`DARK_YELLOW`); from the 11th label on the
colours repeat with a different dash pattern, so every label stays unique.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from initdiag.results import ProbeResult, SweepResult

#: Replaces the colorblind palette's light yellow (#ECE133), too faint for lines on white.
DARK_YELLOW = (0.74, 0.66, 0.0)
#: Dash patterns, one per round of the 10 colours.
DASHES = ("-", "--", ":", "-.")
#: Markers cycle with the colour so lines stay distinguishable in greyscale too.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
#: Columns of the tidy frame that describe a configuration besides activation and init.
VARIANT_COLUMNS = ("bias_init", "depth", "width", "batch", "norm", "residual", "loss")

#: Matplotlib rc settings used while a figure is drawn (figures.py applies them in a context).
RC: dict[str, Any] = {
    "font.size": 9.5, "axes.titlesize": 10.5, "axes.labelsize": 9.5, "legend.fontsize": 8.5,
    "xtick.labelsize": 8.5, "ytick.labelsize": 8.5, "figure.titlesize": 12,
    "axes.spines.top": False, "axes.spines.right": False, "lines.linewidth": 1.5,
    "savefig.facecolor": "white", "figure.facecolor": "white",
}


@dataclasses.dataclass(frozen=True)
class LineStyle:
    """How one initializer is drawn: ``color`` (RGB tuple), ``dash`` and ``marker``."""

    color: tuple[float, float, float]
    dash: str
    marker: str

    def kwargs(self) -> dict[str, Any]:
        return {"color": self.color, "linestyle": self.dash}


def init_palette(labels: Iterable[str]) -> dict[str, LineStyle]:
    """The initializer -> style mapping, built from the sorted unique labels."""
    import seaborn as sns

    colors = list(sns.color_palette("colorblind", 10))
    colors[8] = DARK_YELLOW
    out = {}
    for i, label in enumerate(sorted(set(labels))):
        out[label] = LineStyle(tuple(colors[i % 10]), DASHES[(i // 10) % len(DASHES)],
                               MARKERS[i % len(MARKERS)])
    return out


def layer_colors(n: int) -> list[tuple[float, float, float]]:
    """n sequential colours (dark -> light, perceptually uniform) for layers of one network."""
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [tuple(cmap(v)[:3]) for v in np.linspace(0.0, 0.85, max(n, 1))]


def to_frame(data: Any) -> pd.DataFrame:
    """A tidy frame (:data:`initdiag.results.FRAME_COLUMNS`) from a sweep, a result or a frame."""
    if isinstance(data, pd.DataFrame):
        missing = {"activation", "init", "seed", "layer", "metric", "value"} - set(data.columns)
        if missing:
            raise ValueError(f"frame lacks columns {sorted(missing)}; use SweepResult.to_frame()")
        return data
    if isinstance(data, ProbeResult):
        return data.to_frame()
    if isinstance(data, SweepResult):
        return data.to_frame()
    raise TypeError(f"expected a SweepResult, ProbeResult or DataFrame; got {type(data).__name__}")


def variant_columns(frame: pd.DataFrame) -> list[str]:
    """The config columns besides activation and init that differ between configurations."""
    cols = []
    for c in VARIANT_COLUMNS:
        if c in frame.columns and c != "width" and frame[c].nunique(dropna=False) > 1:
            cols.append(c)
    keys = ["activation", "init", *cols, "seed", "layer", "metric"]
    if "width" in frame.columns and frame.duplicated(keys).any():
        cols.append("width")
    return cols


def variant_label(row: Mapping[str, Any], cols: Iterable[str]) -> str:
    """``"depth 100, width 512"`` for the varying columns of one configuration ('' if none)."""
    parts = []
    for c in cols:
        v = row[c]
        if isinstance(v, float) and np.isnan(v):
            v = "none"
        parts.append(f"{c.replace('_', ' ')} {v}")
    return ", ".join(parts)


def pick_activation(frame: pd.DataFrame, activation: str | None) -> str:
    """``activation`` if present, or the only activation of the frame; else a clear error."""
    present = list(dict.fromkeys(frame["activation"]))
    if activation is None:
        if len(present) != 1:
            raise ValueError(f"the data holds several activations ({', '.join(present)}); "
                             f"pass activation=")
        return present[0]
    if activation not in present:
        raise ValueError(f"no results for activation {activation!r}; present: {', '.join(present)}")
    return activation


def seed_summary(frame: pd.DataFrame, metric: str, activation: str) -> pd.DataFrame:
    """Per (init, variant, layer): ``median``, ``lo`` (min) and ``hi`` (max) over seeds.

    Columns: init, the variant columns, layer, median, lo, hi, n_seeds. ``variant`` holds the
    readable variant label.
    """
    cols = variant_columns(frame)
    sub = frame[(frame["metric"] == metric) & (frame["activation"] == activation)]
    if sub.empty:
        raise ValueError(f"no values of metric {metric!r} for activation {activation!r}")
    keys = ["init", *cols, "layer"]
    g = sub.groupby(keys, sort=False, dropna=False)["value"]
    out = pd.DataFrame({"median": g.median(), "lo": g.min(), "hi": g.max(),
                        "n_seeds": g.size()}).reset_index()
    out["variant"] = [variant_label(r, cols) for r in out.to_dict("records")] if cols else ""
    return out
