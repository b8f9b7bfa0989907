"""Report data: pure functions from results to the numbers and frames the figures draw.

Here: the tidy frame of a sweep and its seed summaries (median, min and max over seeds per
initializer, variant and layer), the configurations of a sweep grouped and labelled, the rows of
the distribution figure and its pooled histograms, the gradient heatmap's matrix and colour
limits, and where a per-layer value is exactly 0. Nothing here draws or imports matplotlib; the
drawing modules (:mod:`.plots`, the figure modules) take these numbers.

Configuration fields come from :class:`initdiag.ProbeConfig` (:mod:`initdiag.config`), the single
source of them: which fields a configuration has, its identity (:meth:`~initdiag.ProbeConfig.key`),
which fields differ between configurations (:func:`initdiag.config.varying`) and how their values
read (:meth:`~initdiag.ProbeConfig.values_label`). This module lists no field of its own.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from initdiag.config import FRAME_CONFIG_COLUMNS, ProbeConfig, varying
from initdiag.results import ProbeResult, SweepResult

#: The two columns that name a line of a panel; every other configuration column is a variant.
LINE_COLUMNS = ("activation", "init")
#: Columns of the tidy frame that tell configurations of one (activation, init) apart: every
#: configuration column (:data:`initdiag.config.FRAME_CONFIG_COLUMNS`) but :data:`LINE_COLUMNS`.
VARIANT_COLUMNS = tuple(c for c in FRAME_CONFIG_COLUMNS if c not in LINE_COLUMNS)
#: Variant columns that vary within one configuration (``width`` per layer) or follow another
#: (``input_width`` follows the width): variants only when the others leave configurations mixed.
DEPENDENT_COLUMNS = ("width", "input_width")


# --- frames and seed summaries -----------------------------------------------------------------

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
    """The config columns besides activation and init that differ between configurations
    (:data:`VARIANT_COLUMNS`; ``width`` and ``input_width`` only when the others do not already
    tell the configurations apart)."""
    cols = []
    for c in VARIANT_COLUMNS:
        if c in frame.columns and c not in DEPENDENT_COLUMNS \
                and frame[c].nunique(dropna=False) > 1:
            cols.append(c)
    for c in DEPENDENT_COLUMNS:
        keys = [*LINE_COLUMNS, *cols, "seed", "layer", "metric"]
        if c in frame.columns and frame.duplicated(keys).any():
            cols.append(c)
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
    present = list(frame["activation"].unique())  # in order of appearance
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


def zero_layers_note(layers: np.ndarray, y: np.ndarray) -> str:
    """Where a per-layer value is exactly 0 (not drawable on a log axis), in words:
    ``"= 0 at every layer"``, ``"= 0 below layer 8"`` (layers 1..7), ``"= 0 at layers 3-5"``
    or ``"= 0 at 4 layers"``; '' when no value is 0."""
    layers = np.asarray(layers)
    y = np.asarray(y, np.float64)
    zero = y == 0
    if not zero.any():
        return ""
    drawable = np.isfinite(y) & (y > 0)
    if not drawable.any():
        return "= 0 at every layer"
    z = layers[zero]
    lead = int(np.argmin(zero)) if not zero.all() else zero.size  # leading zeros
    if lead and lead == zero.sum():
        return f"= 0 below layer {layers[lead]}"
    if z.size == z.max() - z.min() + 1:
        return f"= 0 at layers {z.min()}-{z.max()}" if z.size > 1 else f"= 0 at layer {z.min()}"
    return f"= 0 at {z.size} layers"


def saturation_metrics(frame, activation: str) -> list[str]:
    """What figure c shows for ``activation``: ``["saturation"]`` for φ that saturate,
    ``["zero_frac", "dead_frac"]`` for φ that can die (ReLU), ``[]`` for neither."""
    sub = frame[frame["activation"] == activation]
    defined = {m for m, v in sub.groupby("metric")["value"] if v.notna().any()}
    if "saturation" in defined:
        return ["saturation"]
    return [m for m in ("zero_frac", "dead_frac") if m in defined]


# --- configurations ------------------------------------------------------------------------------

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
                 exclude: Iterable[str] = LINE_COLUMNS) -> list[str]:
    """The config fields (besides ``exclude``) whose values differ between ``configs``: the
    :data:`VARIANT_COLUMNS` first, in the schema's order (:func:`initdiag.config.varying`)."""
    return varying(configs, exclude=exclude, order=VARIANT_COLUMNS)


def config_label(config: Mapping[str, Any], keys: Iterable[str]) -> str:
    """``"depth 4, width 8"``: the values of ``keys`` in one configuration ('' if none)
    (:meth:`initdiag.ProbeConfig.values_label`)."""
    return ProbeConfig.from_dict(config).values_label(keys)


def activations(sweep: Iterable[ProbeResult]) -> list[str]:
    """The activations of a sweep, in order of appearance."""
    return list(dict.fromkeys(r.config["activation"] for r in sweep))


def inits(sweep: Iterable[ProbeResult]) -> list[str]:
    """The initializer labels of a sweep, in order of appearance."""
    return list(dict.fromkeys(r.config["init"] for r in sweep))


def probe_results(data: Any) -> list[ProbeResult]:
    """The results of a SweepResult or ProbeResult (a frame has no histograms: TypeError)."""
    if isinstance(data, ProbeResult):
        return [data]
    if isinstance(data, SweepResult):
        return list(data)
    raise TypeError("histogram panels need a SweepResult or ProbeResult (a frame has no "
                    f"histograms); got {type(data).__name__}")


def one_configuration(results: Sequence[ProbeResult],
                      where: Mapping[str, Any]) -> tuple[ProbeConfig, list[ProbeResult]]:
    """The one configuration of ``results`` whose config values match ``where`` and its seeds.

    Raises:
      ValueError: when the selection holds several configurations, or none (naming them).
    """
    rs = [r for r in results if all(r.config.get(k) == v for k, v in where.items())]
    groups = configurations(rs)
    if len(groups) != 1:
        configs = [c for c, _ in groups]
        keys = varying_keys(configs, exclude=())
        found = ("; ".join(config_label(c, keys) for c in configs)) or "none"
        raise ValueError(f"select one configuration with activation=, init= (and e.g. depth=, "
                         f"width=); matching: {found}")
    return groups[0]


# --- the distribution figure ---------------------------------------------------------------------

#: Where in the stack the distribution panel looks: fractions of the depth L.
LAYER_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 1.0)
#: Legend names of :data:`LAYER_FRACTIONS` when depths differ between panels.
LAYER_FRACTION_NAMES = ("layer 1", "layer ~L/10", "layer ~L/4", "layer ~L/2", "layer L")


def default_layers(depth: int) -> list[int]:
    """Layers shown by the distribution panel: 1, L/10, L/4, L/2 and L (rounded, unique)."""
    return sorted({max(1, min(depth, int(round(f * depth)))) for f in LAYER_FRACTIONS})


def fraction_layers(depth: int) -> list[tuple[int, int]]:
    """``(layer, index into LAYER_FRACTIONS)`` of :func:`default_layers`: each layer with the
    first fraction that rounds to it (so panels of different depths can share colours)."""
    out: dict[int, int] = {}
    for k, f in enumerate(LAYER_FRACTIONS):
        out.setdefault(max(1, min(depth, int(round(f * depth)))), k)
    return sorted(out.items())


def act_hist_fractions(results: Sequence[ProbeResult]) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """The activation histograms of one configuration's seeds, pooled: ``(fractions [L, bins],
    edges [bins + 1], entries per layer [L, 1])``; a fraction is the share of that layer's
    entries in the bin.

    Raises:
      ValueError: when the results carry no histograms.
    """
    if not all("act_hist" in r.histograms for r in results):
        raise ValueError("these results have no histograms; probe with histograms=True")
    counts = np.sum([r.histograms["act_hist"] for r in results], axis=0).astype(float)
    edges = results[0].histograms["act_edges"]
    total = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    return frac, edges, total


def hist_rows(sweep: SweepResult) -> list[tuple[str, str, dict]]:
    """The rows of the distribution figure: ``(init, variant label, config selector)`` for every
    initializer and variant (depth, width, ... when they vary), in order of appearance."""
    configs = [c for c, _ in configurations(sweep)]
    keys = varying_keys(configs, exclude=LINE_COLUMNS)
    rows: dict[str, tuple[str, str, dict]] = {}
    for c in configs:
        sel = {"init": c["init"], **{k: c.get(k) for k in keys}}
        if "width" in keys and "input_width" in c:
            sel["input_width"] = c["input_width"]
        rows.setdefault(config_key(sel), (c["init"], config_label(c, keys), sel))
    return list(rows.values())


def missing_histograms(sweep: SweepResult) -> str | None:
    """Why the distribution figure does not apply to ``sweep`` (None: every result has them)."""
    if all("act_hist" in r.histograms for r in sweep):
        return None
    return "the results carry no histograms (probe with histograms=True)"


# --- the gradient heatmap ------------------------------------------------------------------------

#: Largest half-width of the heatmap colour scale, in decades (beyond it colours saturate).
HEATMAP_MAX_DECADES = 12.0


def grad_log10_matrix(data: Any, activation: str | None = None,
                      metric: str = "grad_preact_rms") -> tuple[list[str], np.ndarray]:
    """Rows (init labels, in the data's order) and the [inits, layers] matrix of log10 of the
    median over seeds of ``metric``; -inf where the value is 0, NaN where undefined."""
    frame = to_frame(data)
    act = pick_activation(frame, activation)
    s = seed_summary(frame, metric, act)
    variant = s["variant"].astype(str)
    s["row"] = s["init"].astype(str) + variant.where(variant == "", ", " + variant)
    table = s.pivot_table(index="row", columns="layer", values="median", dropna=False)
    table = table.reindex(s["row"].unique())  # order of appearance
    with np.errstate(divide="ignore", invalid="ignore"):
        mat = np.log10(table.to_numpy(dtype=float))
    return list(table.index), mat


def heatmap_limits(mats: Sequence[np.ndarray]) -> tuple[float, float]:
    """Shared colour limits for heatmaps: centred on the median last-layer value; half-width the
    largest finite deviation, at least 1 and at most :data:`HEATMAP_MAX_DECADES` decades."""
    finite = [m[np.isfinite(m)] for m in mats]
    last = np.concatenate([m[:, -1][np.isfinite(m[:, -1])] for m in mats])
    allv = np.concatenate(finite) if finite else np.array([])
    if allv.size == 0:
        return -1.0, 1.0
    center = float(np.median(last)) if last.size else float(np.median(allv))
    half = min(HEATMAP_MAX_DECADES, max(1.0, float(np.max(np.abs(allv - center)))))
    return center - half, center + half
