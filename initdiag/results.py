"""Probe results: numpy arrays per metric, lossless JSON, tidy DataFrames.

It imports numpy (pandas lazily), the configuration schema and file helpers; never the probe
engine, the analyses or the theory.

JSON layout (``schema_version`` 1)::

    {"schema": "initdiag.results", "schema_version": 1, "kind": "sweep" | "probe",
     "results": [{"config": {...}, "seed": 0,
                  "metrics": {"preact_var": [...], ...},      # one value per layer
                  "histograms": {"act_hist": [[...], ...], "act_edges": [...], ...},
                  "scalars": {"loss": ...}, "meta": {"environment": {...}, "timing": {...}}}]}

Numbers are written as :mod:`initdiag.jsonvalues` says (float64 values load back bit for bit;
NaN and infinities as strings, so the file stays strict JSON); the config as
:class:`initdiag.ProbeConfig` writes it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from initdiag import metrics
from initdiag.config import FRAME_CONFIG_COLUMNS, ProbeConfig, check_recorded, shown
from initdiag.fileio import atomic_write_text
from initdiag.jsonvalues import SPECIALS, decode_scalar, encode, float_array

SCHEMA = "initdiag.results"
SCHEMA_VERSION = 1

#: Every per-layer metric with its exact definition, ``{name: definition}`` in the order of
#: the metric table :data:`initdiag.metrics.TABLE` (notation and kinds defined there).
METRICS: dict[str, str] = metrics.definitions()

#: Histograms (optional): per-layer counts in fixed bins. Values outside the edges are counted
#: in the first or last bin; exact zeros of the gradient (log10 = -inf) in the first.
HISTOGRAMS: dict[str, str] = {
    "act_hist": "counts of the entries of a^l in the bins act_edges",
    "grad_hist": "counts of log10|dL/dh^l| (entries) in the bins grad_edges",
}

#: Columns of :meth:`SweepResult.to_frame` (tidy: one row per config, seed, layer and metric):
#: the config (``width`` is the layer's output width n_l, ``input_width`` n_0, ``norm`` "none"
#: without normalization, ``residual`` NaN for a plain stack), the seed, the layer l = 1..L, the
#: metric name (:data:`METRICS`) and its value.
FRAME_COLUMNS = (*FRAME_CONFIG_COLUMNS, "seed", "layer", "metric", "value")


def _arrays_equal(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    if a.keys() != b.keys():
        return False
    return all(np.array_equal(np.asarray(a[k]), np.asarray(b[k]), equal_nan=True) for k in a)


@dataclasses.dataclass(frozen=True, eq=False)
class ProbeResult:
    """The statistics of one configuration and one seed.

    ``result["preact_var"]`` is a float64 array of shape [depth]; ``result.metrics`` lists the
    metric names (definitions in :data:`METRICS`); ``result.config`` is the full configuration,
    a :class:`initdiag.ProbeConfig` (a dict given here is read as one).
    """

    config: ProbeConfig
    seed: int
    values: dict[str, np.ndarray]
    histograms: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    scalars: dict[str, float] = dataclasses.field(default_factory=dict)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", ProbeConfig.from_dict(self.config))

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.values)

    @property
    def depth(self) -> int:
        return int(self.config["depth"])

    @property
    def label(self) -> str:
        """``activation / init`` plus whatever else distinguishes the config, for legends."""
        return f"{self.config.get('activation')} / {self.config.get('init')}"

    def __getitem__(self, metric: str) -> np.ndarray:
        try:
            return self.values[metric]
        except KeyError:
            raise KeyError(f"no metric {metric!r}; available: {', '.join(self.values)}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProbeResult):
            return NotImplemented
        return (self.config == other.config and self.seed == other.seed
                and _arrays_equal(self.values, other.values)
                and _arrays_equal(self.histograms, other.histograms)
                and encode(self.scalars) == encode(other.scalars) and self.meta == other.meta)

    def to_dict(self) -> dict[str, Any]:
        return {"config": encode(self.config.to_dict()), "seed": int(self.seed),
                "metrics": encode(self.values), "histograms": encode(self.histograms),
                "scalars": encode(self.scalars), "meta": encode(self.meta)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ProbeResult":
        hists = {}
        for k, v in d.get("histograms", {}).items():
            arr = np.array(v)
            hists[k] = arr.astype(np.float64) if k.endswith("_edges") else arr.astype(np.int64)
        return cls(config=ProbeConfig.from_dict(d["config"]), seed=int(d["seed"]),
                   values={k: float_array(v) for k, v in d["metrics"].items()},
                   histograms=hists,
                   scalars={k: decode_scalar(v) for k, v in d.get("scalars", {}).items()},
                   meta=dict(d.get("meta", {})))

    def to_json(self, path: str | os.PathLike) -> Path:
        return write_document({"kind": "probe", "results": [self.to_dict()]}, path)

    def to_frame(self):
        return SweepResult([self]).to_frame()


class SweepResult:
    """An ordered collection of :class:`ProbeResult` (configs x seeds)."""

    def __init__(self, results: Iterable[ProbeResult] = (), meta: Mapping[str, Any] | None = None):
        self.results: list[ProbeResult] = list(results)
        self.meta: dict[str, Any] = dict(meta or {})

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[ProbeResult]:
        return iter(self.results)

    def __getitem__(self, i: int) -> ProbeResult:
        return self.results[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SweepResult):
            return NotImplemented
        return self.results == other.results and self.meta == other.meta

    def __repr__(self) -> str:
        return f"SweepResult({len(self)} results)"

    def select(self, **where: Any) -> "SweepResult":
        """The results whose config (or ``seed``) equals every given value, e.g.
        ``sweep.select(activation="tanh", init="he_normal")``."""
        def ok(r: ProbeResult) -> bool:
            return all((r.seed if k == "seed" else r.config.get(k)) == v for k, v in where.items())
        return SweepResult([r for r in self.results if ok(r)], self.meta)

    def to_frame(self):
        """Tidy DataFrame, one row per (config, seed, layer, metric); columns
        :data:`FRAME_COLUMNS` (defined there)."""
        import pandas as pd

        frames = []
        for r in self.results:
            columns = config_columns(r.config, r.seed)
            for metric, values in r.values.items():
                frames.append(pd.DataFrame({**columns, "metric": metric, "value": values}))
        if not frames:
            return pd.DataFrame(columns=list(FRAME_COLUMNS))
        return pd.concat(frames, ignore_index=True)[list(FRAME_COLUMNS)]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "sweep", "meta": encode(self.meta),
                "results": [r.to_dict() for r in self.results]}

    def to_json(self, path: str | os.PathLike) -> Path:
        return write_document(self.to_dict(), path)


def config_columns(config: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The columns of :data:`FRAME_COLUMNS` before ``metric`` for one result: its config
    (:meth:`initdiag.ProbeConfig.columns`; per layer where it varies: ``width``), ``seed`` and
    ``layer`` = 1..L."""
    config = ProbeConfig.from_dict(config)
    return {**config.columns(), "seed": int(seed), "layer": np.arange(1, int(config.depth) + 1)}


def write_document(body: dict[str, Any], path: str | os.PathLike) -> Path:
    """Compact JSON with one result per line (small files; a diff shows which configs changed)."""
    head = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
            **{k: v for k, v in body.items() if k != "results"}}
    dump = lambda obj: json.dumps(obj, separators=(",", ":"), allow_nan=False)
    lines = ",\n".join(dump(r) for r in body["results"])
    return atomic_write_text(path, dump(head)[:-1] + ',"results":[\n' + lines + "\n]}\n")


class ResultsFileError(ValueError):
    """A results file that cannot be read: names the file and the problem."""


# --- checking a stored document ---------------------------------------------------------------

def is_number(v: Any) -> bool:
    """A JSON number that a float64 holds (``true`` is not one, nor an integer of 400 digits)."""
    if isinstance(v, float):
        return True
    if not isinstance(v, int) or isinstance(v, bool):
        return False
    try:
        float(v)
    except OverflowError:
        return False
    return True


def check_numbers(where: str, values: Any, n: int, unit: str = "layer",
                  names: Any = None) -> None:
    """``values`` is an array of ``n`` numbers or :data:`initdiag.jsonvalues.SPECIALS` strings,
    one per ``unit`` (``names``: the units' names for messages, default their numbers 1..n).

    Raises:
      ValueError: naming ``where``, the entry, its value and JSON type.
    """
    if not isinstance(values, list):
        raise ValueError(f"{where} is {shown(values)}; expected an array of {n} numbers (one "
                         f"per {unit})")
    if len(values) != n:
        expected = (f"the config's depth is {n} (one value per layer)" if unit == "layer"
                    else f"expected {n} (one per {unit})")
        raise ValueError(f"{where} has {len(values)} values; {expected}")
    for j, v in enumerate(values):
        if not (is_number(v) or (isinstance(v, str) and v in SPECIALS)):
            what = f"{unit} {j + 1}" if names is None else f"{unit} {names[j]!r}"
            raise ValueError(f"{where}[{j}] ({what}) is {shown(v)}; expected a number or one of "
                             f"{', '.join(json.dumps(x) for x in SPECIALS)}")


def check_scalar(where: str, v: Any) -> None:
    """``v`` is a number or a :data:`initdiag.jsonvalues.SPECIALS` string."""
    if not (is_number(v) or (isinstance(v, str) and v in SPECIALS)):
        raise ValueError(f"{where} is {shown(v)}; expected a number or one of "
                         f"{', '.join(json.dumps(x) for x in SPECIALS)}")


def check_object(where: str, v: Any) -> None:
    if not isinstance(v, dict):
        raise ValueError(f"{where} is {shown(v)}; expected an object")


def check_keys(where: str, d: Mapping[str, Any], required: Iterable[str],
               optional: Iterable[str] = ()) -> None:
    """``d`` holds every key of ``required`` and no key outside ``required`` and ``optional``
    (a key unknown to this initdiag would be dropped on loading: refused instead)."""
    required = tuple(required)
    for key in required:
        if key not in d:
            raise ValueError(f"{where} has no {key!r}")
    known = (*required, *optional)
    unknown = [k for k in d if k not in known]
    if unknown:
        raise ValueError(f"{where} has key(s) {', '.join(map(repr, unknown))} unknown to this "
                         f"initdiag (made by another version?); known keys: {', '.join(known)}")


#: The histogram arrays of a result (:data:`HISTOGRAMS`) and the bin edges of each.
HISTOGRAM_EDGES = {"act_hist": "act_edges", "grad_hist": "grad_edges"}


def _check_histograms(where: str, h: Any, depth: int, bins_recorded: Any) -> None:
    check_object(where, h)
    check_keys(where, h, (), (*HISTOGRAM_EDGES, *HISTOGRAM_EDGES.values()))
    for name, edges_name in HISTOGRAM_EDGES.items():
        if (name in h) != (edges_name in h):
            raise ValueError(f"{where} has {name!r} without {edges_name!r} or the other way "
                             f"round; expected both or neither")
        if name not in h:
            continue
        edges = h[edges_name]
        if not (isinstance(edges, list) and len(edges) >= 2 and all(is_number(e) for e in edges)):
            raise ValueError(f"{where}[{edges_name!r}] is {shown(edges)}; expected an array of "
                             f"at least 2 numbers (the bin edges)")
        bins = len(edges) - 1
        if bins_recorded is not None and bins != bins_recorded:
            raise ValueError(f"{where}[{edges_name!r}] has {len(edges)} edges; the config's "
                             f"hist_bins is {bins_recorded} (hist_bins + 1 edges)")
        counts = h[name]
        if not (isinstance(counts, list) and len(counts) == depth):
            raise ValueError(f"{where}[{name!r}] is {shown(counts)}; expected an array of "
                             f"{depth} arrays (one per layer) of {bins} counts")
        for j, row in enumerate(counts):
            if not (isinstance(row, list) and len(row) == bins
                    and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 2**63
                            for c in row)):
                raise ValueError(f"{where}[{name!r}][{j}] (layer {j + 1}) is {shown(row)}; "
                                 f"expected {bins} counts (integers >= 0, one per bin of "
                                 f"{edges_name})")


def check_entry(where: str, e: Any, *, baseline: bool = False) -> None:
    """Check one stored result (:meth:`ProbeResult.to_dict`), ``where`` naming it
    (``results[0]``): its keys; the configuration (:func:`initdiag.config.check_recorded`, or
    :func:`initdiag.config.check_json` for a baseline: every field a re-run needs); an integer
    seed; every metric known (:data:`METRICS`), an array of ``depth`` numbers; histograms of
    ``depth`` rows of counts over their edges; scalars numbers; meta an object. A baseline
    entry holds config, seed, metrics and scalars only.

    Raises:
      ValueError: naming the field (``results[0].metrics['act_var'][2] (layer 3)``), its value
        and JSON type, and what is expected.
    """
    check_object(where, e)
    optional = ("scalars",) if baseline else ("histograms", "scalars", "meta")
    check_keys(where, e, ("config", "seed", "metrics"), optional)
    check_object(f"{where}.config", e["config"])
    if baseline:
        ProbeConfig.from_dict(e["config"], strict=True, where=f"{where}.config")
    else:
        check_recorded(e["config"], f"{where}.config")
    depth = e["config"]["depth"]
    if not (isinstance(e["seed"], int) and not isinstance(e["seed"], bool)):
        raise ValueError(f"{where}.seed is {shown(e['seed'])}; expected an integer")
    check_object(f"{where}.metrics", e["metrics"])
    unknown = [m for m in e["metrics"] if m not in METRICS]
    if unknown:
        raise ValueError(f"{where}.metrics has metric(s) {', '.join(map(repr, unknown))} unknown "
                         f"to this initdiag (made by another version?); known metrics: "
                         f"{', '.join(METRICS)}")
    for name, values in e["metrics"].items():
        check_numbers(f"{where}.metrics[{name!r}]", values, depth)
    if "histograms" in e:
        _check_histograms(f"{where}.histograms", e["histograms"], depth,
                          e["config"].get("hist_bins"))
    scalars = e.get("scalars", {})
    check_object(f"{where}.scalars", scalars)
    for k, v in scalars.items():
        check_scalar(f"{where}.scalars[{k!r}]", v)
    check_object(f"{where}.meta", e.get("meta", {}))


#: The kinds of results file of training runs (:mod:`initdiag.train.result`).
TRAIN_KINDS = ("train", "train_sweep")

#: The kinds of results file (``"model"``, ``"model_sweep"``: :mod:`initdiag.model.result`;
#: :data:`TRAIN_KINDS`).
KINDS = ("probe", "sweep", "model", "model_sweep", *TRAIN_KINDS)


def check_document(doc: Mapping[str, Any]) -> None:
    """Check a results document after its schema and version: its keys, its ``kind``, its
    ``meta`` (an object; a sweep's only) and every entry of ``results`` (:func:`check_entry`, or
    :func:`initdiag.model.result.check_entry` for a model file,
    :func:`initdiag.train.result.check_entry` for training runs); a probe file holds one.

    Raises:
      ValueError: naming the field, its value and what is expected.
    """
    kind = doc.get("kind")
    if not (isinstance(kind, str) and kind in KINDS):
        raise ValueError(f"'kind' is {shown(kind)}; expected one of "
                         f"{', '.join(json.dumps(k) for k in KINDS)}")
    many = kind in ("sweep", "model_sweep", "train_sweep")
    check_keys("the document", doc, ("schema", "schema_version", "kind", "results"),
               ("meta",) if many else ())
    check_object("'meta'", doc.get("meta", {}))
    entries = doc["results"]
    if not isinstance(entries, list):
        raise ValueError(f"'results' is {shown(entries)}; expected an array")
    if not many and len(entries) != 1:
        raise ValueError(f"'results' holds {len(entries)} results; a file of kind {kind!r} "
                         f"holds one")
    if kind in TRAIN_KINDS:
        from initdiag.train.result import check_entry as check_train_entry

        for i, e in enumerate(entries):
            check_train_entry(f"results[{i}]", e)
        return
    if kind in ("model", "model_sweep"):
        from initdiag.model.result import check_entry as check_model_entry

        for i, e in enumerate(entries):
            check_model_entry(f"results[{i}]", e)
    else:
        for i, e in enumerate(entries):
            check_entry(f"results[{i}]", e)


def load(path: str | os.PathLike) -> ProbeResult | SweepResult:
    """Load a file written by ``to_json``: a :class:`ProbeResult` or a :class:`SweepResult`
    (or the model and training results written by the same schema: ModelResult, ModelSweep,
    :class:`initdiag.TrainResult`, :class:`initdiag.TrainSweep`).

    Raises:
      ResultsFileError: a missing or unreadable file (a folder, no permission), not UTF-8 text,
        invalid JSON (truncated, corrupted), another schema or schema version, or a field
        missing, unknown or of the wrong type (:func:`check_document`); the message names the
        file and the field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise ResultsFileError(f"{path}: not a results file: not UTF-8 text ({e.reason} at byte "
                               f"{e.start})") from None
    except OSError as e:
        raise ResultsFileError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultsFileError(f"{path}: not valid JSON (truncated or corrupted?): {e}") from None
    except RecursionError:
        raise ResultsFileError(f"{path}: not a results file: JSON nested too deep") from None
    return from_document(doc, source=str(path))


def from_document(doc: Any, source: str = "<document>") -> ProbeResult | SweepResult:
    """Rebuild results from a parsed JSON document (see :func:`load`)."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ResultsFileError(f"{source}: not an initdiag results file (schema {SCHEMA!r} expected)")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise ResultsFileError(f"{source}: schema_version {version!r} is not supported; this "
                               f"initdiag reads version {SCHEMA_VERSION}")
    try:
        check_document(doc)
    except ValueError as e:
        raise ResultsFileError(f"{source}: malformed results: {e}") from None
    if doc["kind"] in ("model", "model_sweep"):
        from initdiag.model.result import from_document as model_document

        return model_document(doc)
    if doc["kind"] in TRAIN_KINDS:
        from initdiag.train.result import from_document as train_document

        try:
            return train_document(doc)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ResultsFileError(f"{source}: malformed results ({type(e).__name__}: {e})") \
                from None
    results = [ProbeResult.from_dict(r) for r in doc["results"]]
    if doc["kind"] == "probe":
        return results[0]
    return SweepResult(results, doc.get("meta", {}))
