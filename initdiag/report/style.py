"""One look for every initdiag figure: the initializer palette, the theme and tidy-data helpers.

The palette maps each initializer label to a :class:`LineStyle` once, from the *sorted* labels, so
the same initializer has the same colour (and marker, and dash) in every panel of every figure.
Colours (:data:`COLORS`): the Okabe–Ito / seaborn ``"colorblind"`` colours that read on white
(the pale pink and the light yellow of ``"colorblind"`` are left out; the yellow is darkened), plus
black and Tol's wine: 10 colours, distinguishable with the common colour-vision deficiencies, each
with a contrast ratio of at least 2 against white. Symmetric initializers (``zeros``,
``constant``) are drawn in a neutral grey (:data:`NEUTRAL`). Markers cycle with a period (7)
coprime to the number of colours (10), so the first 70 labels all get distinct (colour, marker)
pairs; the dash pattern changes with every round of the colours.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from initdiag.config import ProbeConfig, varying
from initdiag.results import ProbeResult, SweepResult

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


def config_key(config: Mapping[str, Any]) -> str:
    """The identity of a configuration (:meth:`initdiag.ProbeConfig.key`)."""
    return ProbeConfig.from_dict(config).key()


def configurations(results: Iterable[ProbeResult]) -> list[tuple[ProbeConfig, list[ProbeResult]]]:
    """The results grouped by configuration (seeds pooled), in order of appearance:
    ``[(config, [results of its seeds]), ...]``."""
    groups: dict[str, tuple[ProbeConfig, list[ProbeResult]]] = {}
    for r in results:
        groups.setdefault(r.config.key(), (r.config, []))[1].append(r)
    return list(groups.values())


def varying_keys(configs: Iterable[Mapping[str, Any]],
                 exclude: Iterable[str] = ("activation", "init")) -> list[str]:
    """The config fields (besides ``exclude``) whose values differ between ``configs``: those of
    :data:`VARIANT_COLUMNS` first (:func:`initdiag.config.varying`)."""
    return varying(configs, exclude=exclude, order=VARIANT_COLUMNS)


def config_label(config: Mapping[str, Any], keys: Iterable[str]) -> str:
    """``"depth 4, width 8"``: the values of ``keys`` in one configuration ('' if none)
    (:meth:`initdiag.ProbeConfig.values_label`)."""
    return ProbeConfig.from_dict(config).values_label(keys)
