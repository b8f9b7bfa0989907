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
from initdiag.config import FRAME_CONFIG_COLUMNS, ProbeConfig
from initdiag.fileio import atomic_write_text
from initdiag.jsonvalues import decode_scalar, encode, float_array

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


def load(path: str | os.PathLike) -> ProbeResult | SweepResult:
    """Load a file written by ``to_json``: a :class:`ProbeResult` or a :class:`SweepResult`
    (or the model and training results written by the same schema: ModelResult, ModelSweep,
    :class:`initdiag.TrainResult`, :class:`initdiag.TrainSweep`).

    Raises:
      ResultsFileError: missing file, invalid JSON, another schema or schema version.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsFileError(f"{path}: not valid JSON (truncated or corrupted?): {e}") from None
    return from_document(doc, source=str(path))


def from_document(doc: Any, source: str = "<document>") -> ProbeResult | SweepResult:
    """Rebuild results from a parsed JSON document (see :func:`load`)."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ResultsFileError(f"{source}: not an initdiag results file (schema {SCHEMA!r} expected)")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultsFileError(f"{source}: schema_version {version!r} is not supported; this "
                               f"initdiag reads version {SCHEMA_VERSION}")
    try:
        if doc.get("kind") in ("model", "model_sweep"):
            from initdiag.model.result import from_document as model_document

            return model_document(doc)
        if doc.get("kind") in ("train", "train_sweep"):
            from initdiag.train.result import from_document as train_document

            return train_document(doc)
        results = [ProbeResult.from_dict(r) for r in doc["results"]]
        if doc.get("kind") == "probe":
            if len(results) != 1:
                raise ValueError(f"a probe file holds one result, found {len(results)}")
            return results[0]
        return SweepResult(results, doc.get("meta", {}))
    except (KeyError, TypeError, ValueError) as e:
        raise ResultsFileError(f"{source}: malformed results ({type(e).__name__}: {e})") from None
