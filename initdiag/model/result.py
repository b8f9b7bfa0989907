"""Results of probing a model: per-site statistics, per-leaf parameter statistics, JSON, frames.

A :class:`ModelResult` holds one probe of one model (one set of weights, one seed); a
:class:`ModelSweep` several (initializers x seeds). Both round-trip through JSON
(``to_json`` / :func:`initdiag.load`) bit for bit, and give tidy DataFrames.

JSON (``schema`` ``initdiag.results``, ``schema_version`` 1, ``kind`` ``"model"`` or
``"model_sweep"``)::

    {"results": [{"config": {...}, "seed": 0, "sites": [...], "kinds": [...],
                  "activations": [...], "site_params": [...], "metrics": {"var": [...], ...},
                  "params": [{"path": ..., "shape": [...], ...}], "skipped": [...],
                  "scalars": {"loss": ...}, "meta": {...}}]}
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from initdiag.jsonvalues import decode_scalar, encode, float_array

#: Per-site metrics: ``result[name]`` is a float64 array over the sites, NaN where the metric does
#: not apply to the site's kind. ``v`` is the site's value (every entry, all axes), ``L`` the loss.
MODEL_METRICS: dict[str, str] = {
    "mean": "mean of v over every entry",
    "var": "population variance of v over every entry",
    "sq_mean": "mean of v**2 over every entry",
    "saturation": "fraction of entries of v in the activation's saturated range (activation "
                  "sites of a saturating activation: tanh, sigmoid, selu, elu, softplus)",
    "zero_frac": "fraction of entries of v exactly 0 (ReLU-family activation sites)",
    "dead_frac": "fraction of channels of v that are 0 for every sample and every position "
                 "(ReLU-family activation sites)",
    "grad_rms": "RMS of dL/dv over every entry, through a zero perturbation added at the site "
                "(reduced in scaled arithmetic: 1e-30 reads 1e-30; exactly 0 reads 0)",
    "ch_var": "mean over channels of the variance of v over every other axis (batch, space); "
              "Brock et al. 2021's average channel variance",
    "ch_sq_mean": "mean over channels of the squared mean of v over every other axis; Brock et "
                  "al. 2021's average channel squared mean",
    "branch_var": "residual sites: population variance of the branch operand",
    "skip_var": "residual sites: population variance of the skip operand",
    "branch_ratio": "residual sites: branch_var / skip_var",
    "attn_entropy": "attention sites: entropy -sum_k p log p of the attention probabilities "
                    "over the keys, in nats, mean over batch, heads and queries",
    "attn_max_logit": "attention sites: the largest attention logit (softmax input) over every "
                      "entry",
}

def markdown_table() -> str:
    """The README's table of :data:`MODEL_METRICS` (markdown, one row per metric)."""
    rows = ["| metric | definition |", "|---|---|"]
    rows += [f"| `{name}` | {text} |" for name, text in MODEL_METRICS.items()]
    return "\n".join(rows) + "\n"


#: The stack metric (:data:`initdiag.metrics.TABLE`) each model metric is read like: its kind
#: (signed / positive / fraction), hence how seeds are pooled in a diagnosis and how it is compared
#: against a baseline (comparison and default tolerance). None: no analogue; a signed metric
#: compared as "scaled" with the default tolerance. Parameter-table columns are included (they are
#: compared per leaf).
MODEL_ANALOGUES: dict[str, str | None] = {
    "mean": "act_mean", "var": "act_var", "sq_mean": "act_var", "saturation": "saturation",
    "zero_frac": "zero_frac", "dead_frac": "dead_frac", "grad_rms": "grad_preact_rms",
    "ch_var": "act_var", "ch_sq_mean": "act_chan_sq_mean", "branch_var": "act_var",
    "skip_var": "act_var", "branch_ratio": "act_var", "attn_entropy": None,
    "attn_max_logit": None,
    "weight_norm": "weight_norm", "grad_norm": "grad_weight_norm",
    "grad_weight_ratio": "grad_weight_ratio",
}
#: The variance metric whose square root scales a signed model metric in a comparison.
MODEL_SCALE_OF: dict[str, str] = {"mean": "var"}


def model_metric_kind(name: str) -> str:
    """``"signed"``, ``"positive"`` or ``"fraction"``: the kind of the metric's stack analogue
    (:data:`MODEL_ANALOGUES`); ``"signed"`` for a metric without one."""
    from initdiag.metrics import BY_NAME

    analogue = MODEL_ANALOGUES.get(name)
    return BY_NAME[analogue].kind if analogue is not None else "signed"


#: Columns of :attr:`ModelResult.params` (one row per leaf of the parameter pytree).
PARAM_COLUMNS = ("path", "shape", "role", "fan_in", "fan_out", "weight_norm", "grad_norm",
                 "grad_weight_ratio")
PARAM_DEFINITIONS = {
    "path": "the leaf's path in the parameter pytree (dict keys joined by /, [i], .attr)",
    "shape": "the leaf's shape",
    "role": "dense / conv: the leaf is the weight of such a site; other: anything else",
    "fan_in": "inputs per output unit where the leaf is used as a weight (per layer for a "
              "scanned stack); NaN otherwise",
    "fan_out": "outputs per input unit, likewise",
    "weight_norm": "Frobenius norm of the leaf",
    "grad_norm": "Frobenius norm of dL/d(leaf)",
    "grad_weight_ratio": "grad_norm / weight_norm",
}

#: Columns of :meth:`ModelResult.to_frame`: one row per (config, seed, site, metric).
FRAME_COLUMNS = ("model", "init", "seed", "layer", "site", "kind", "metric", "value")


@dataclasses.dataclass(frozen=True, eq=False)
class ModelResult:
    """The statistics of one model probe (see :data:`MODEL_METRICS`, :data:`PARAM_COLUMNS`).

    ``result["var"]`` is a float64 array over ``result.sites`` (names, in call order);
    ``result.kinds`` gives each site's kind; ``result.site_params`` the path of the weight leaf
    feeding each dense/conv site (None for other sites; empty in files that predate it);
    ``result.params`` is a DataFrame of the parameter leaves; ``result.skipped`` lists the constructs that ran unchanged, with the reason.
    """

    config: dict
    seed: int
    sites: tuple
    kinds: tuple
    activations: tuple
    values: dict
    param_rows: tuple = ()
    site_params: tuple = ()  # per site: the path of the weight leaf feeding it (dense/conv), or None
    skipped: tuple = ()
    scalars: dict = dataclasses.field(default_factory=dict)
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.values)

    @property
    def depth(self) -> int:
        return len(self.sites)

    @property
    def label(self) -> str:
        return f"{self.config.get('model')} / {self.config.get('init')}"

    @property
    def params(self):
        """One row per parameter leaf (columns :data:`PARAM_COLUMNS`)."""
        import pandas as pd

        return pd.DataFrame([dict(r) for r in self.param_rows], columns=list(PARAM_COLUMNS))

    def __getitem__(self, metric: str) -> np.ndarray:
        try:
            return self.values[metric]
        except KeyError:
            raise KeyError(f"no metric {metric!r}; available: {', '.join(self.values)}") from None

    def __len__(self) -> int:
        return len(self.sites)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelResult):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (f"ModelResult({self.config.get('model')!r}, init={self.config.get('init')!r}, "
                f"seed={self.seed}, {len(self.sites)} sites, {len(self.param_rows)} leaves, "
                f"{len(self.skipped)} skipped)")

    def site(self, name: str) -> dict[str, float]:
        """Every metric of the site called ``name``."""
        if name not in self.sites:
            raise KeyError(f"no site {name!r}; sites: {', '.join(self.sites[:20])}"
                           + (" ..." if len(self.sites) > 20 else ""))
        i = self.sites.index(name)
        return {m: float(v[i]) for m, v in self.values.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"config": encode(dict(self.config)), "seed": int(self.seed),
                "sites": list(self.sites), "kinds": list(self.kinds),
                "activations": list(self.activations), "metrics": encode(self.values),
                **({"site_params": list(self.site_params)} if self.site_params else {}),
                "params": [encode(dict(r)) for r in self.param_rows],
                "skipped": [dict(s) for s in self.skipped], "scalars": encode(self.scalars),
                "meta": encode(self.meta)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelResult":
        rows = []
        for r in d.get("params", []):
            row = dict(r)
            for k in ("fan_in", "fan_out", "weight_norm", "grad_norm", "grad_weight_ratio"):
                row[k] = decode_scalar(row[k])
            row["shape"] = tuple(row["shape"])
            rows.append(row)
        return cls(config=dict(d["config"]), seed=int(d["seed"]), sites=tuple(d["sites"]),
                   kinds=tuple(d["kinds"]), activations=tuple(d["activations"]),
                   values={k: float_array(v) for k, v in d["metrics"].items()},
                   site_params=tuple(d.get("site_params", ())),
                   param_rows=tuple(rows), skipped=tuple(dict(s) for s in d.get("skipped", [])),
                   scalars={k: decode_scalar(v) for k, v in d.get("scalars", {}).items()},
                   meta=dict(d.get("meta", {})))

    def to_json(self, path):
        from initdiag.results import write_document

        return write_document({"kind": "model", "results": [self.to_dict()]}, path)

    def to_frame(self):
        """Tidy DataFrame, one row per (site, metric): columns :data:`FRAME_COLUMNS` (``layer``
        is the site's position 1..N in call order)."""
        return ModelSweep([self]).to_frame()


class ModelSweep:
    """An ordered collection of :class:`ModelResult` (initializers x seeds)."""

    def __init__(self, results: Iterable[ModelResult] = (), meta: Mapping[str, Any] | None = None):
        self.results: list[ModelResult] = list(results)
        self.meta: dict[str, Any] = dict(meta or {})

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[ModelResult]:
        return iter(self.results)

    def __getitem__(self, i: int) -> ModelResult:
        return self.results[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelSweep):
            return NotImplemented
        return self.results == other.results and self.meta == other.meta

    def __repr__(self) -> str:
        return f"ModelSweep({len(self)} results)"

    def select(self, **where: Any) -> "ModelSweep":
        """The results whose config (or ``seed``) equals every given value."""
        def ok(r: ModelResult) -> bool:
            return all((r.seed if k == "seed" else r.config.get(k)) == v for k, v in where.items())
        return ModelSweep([r for r in self.results if ok(r)], self.meta)

    def to_frame(self):
        """Tidy DataFrame, one row per (result, site, metric); columns :data:`FRAME_COLUMNS`."""
        import pandas as pd

        frames = []
        for r in self.results:
            n = len(r.sites)
            for metric, values in r.values.items():
                frames.append(pd.DataFrame({
                    "model": r.config.get("model"), "init": r.config.get("init"),
                    "seed": int(r.seed), "layer": np.arange(1, n + 1), "site": list(r.sites),
                    "kind": list(r.kinds), "metric": metric, "value": values}))
        if not frames:
            return pd.DataFrame(columns=list(FRAME_COLUMNS))
        return pd.concat(frames, ignore_index=True)[list(FRAME_COLUMNS)]

    def params_frame(self):
        """Every result's parameter table, with ``init`` and ``seed`` columns."""
        import pandas as pd

        frames = [r.params.assign(init=r.config.get("init"), seed=r.seed) for r in self.results]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "model_sweep", "meta": encode(self.meta),
                "results": [r.to_dict() for r in self.results]}

    def to_json(self, path):
        from initdiag.results import write_document

        return write_document(self.to_dict(), path)


def check_entry(where: str, e: Any, *, baseline: bool = False) -> None:
    """Check one stored model result (:meth:`ModelResult.to_dict`), ``where`` naming it
    (``results[0]``): its keys (a baseline entry has no ``meta``); ``config`` an object with the
    ``model`` and ``init`` strings; an integer seed; ``sites`` distinct names and ``kinds``,
    ``activations`` (and ``site_params``) one per site; every metric known
    (:data:`MODEL_METRICS`), an array of one number per site; ``params`` rows of
    :data:`PARAM_COLUMNS`; ``skipped`` objects; scalars numbers; meta an object.

    Raises:
      ValueError: naming the field, its value and JSON type, and what is expected.
    """
    from initdiag.config import shown
    from initdiag.results import check_keys, check_numbers, check_object, check_scalar

    check_object(where, e)
    optional = ("site_params", "params", "skipped", "scalars") + (() if baseline else ("meta",))
    check_keys(where, e, ("config", "seed", "sites", "kinds", "activations", "metrics"),
               optional)
    c = e["config"]
    check_object(f"{where}.config", c)
    for key in ("model", "init"):
        if not isinstance(c.get(key), str):
            raise ValueError(f"{where}.config[{key!r}] is {shown(c.get(key))}; expected a string")
    if not (isinstance(e["seed"], int) and not isinstance(e["seed"], bool)):
        raise ValueError(f"{where}.seed is {shown(e['seed'])}; expected an integer")
    sites = e["sites"]
    if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
        raise ValueError(f"{where}.sites is {shown(sites)}; expected an array of names")
    if len(set(sites)) != len(sites):
        raise ValueError(f"{where}.sites holds a name twice")
    n = len(sites)
    for key, nullable in (("kinds", False), ("activations", True), ("site_params", True)):
        if key not in e:
            continue
        v = e[key]
        if not (isinstance(v, list) and len(v) == n
                and all(isinstance(x, str) or (nullable and x is None) for x in v)):
            raise ValueError(f"{where}.{key} is {shown(v)}; expected an array of {n} "
                             f"{'names or nulls' if nullable else 'names'} (one per site)")
    check_object(f"{where}.metrics", e["metrics"])
    unknown = [m for m in e["metrics"] if m not in MODEL_METRICS]
    if unknown:
        raise ValueError(f"{where}.metrics has metric(s) {', '.join(map(repr, unknown))} unknown "
                         f"to this initdiag (made by another version?); known metrics: "
                         f"{', '.join(MODEL_METRICS)}")
    for name, values in e["metrics"].items():
        check_numbers(f"{where}.metrics[{name!r}]", values, n, unit="site", names=sites)
    params = e.get("params", [])
    if not isinstance(params, list):
        raise ValueError(f"{where}.params is {shown(params)}; expected an array of objects "
                         f"(one per parameter leaf)")
    for j, row in enumerate(params):
        at = f"{where}.params[{j}]"
        check_object(at, row)
        check_keys(at, row, PARAM_COLUMNS)
        if not isinstance(row["path"], str) or not isinstance(row["role"], str):
            raise ValueError(f"{at}: path {shown(row['path'])} and role {shown(row['role'])}; "
                             f"expected strings")
        shape = row["shape"]
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool)
                                                and d >= 0 for d in shape)):
            raise ValueError(f"{at}.shape is {shown(shape)}; expected an array of integers >= 0")
        for k in PARAM_COLUMNS[3:]:
            check_scalar(f"{at}[{k!r}]", row[k])
    skipped = e.get("skipped", [])
    if not (isinstance(skipped, list) and all(isinstance(x, dict) for x in skipped)):
        raise ValueError(f"{where}.skipped is {shown(skipped)}; expected an array of objects")
    scalars = e.get("scalars", {})
    check_object(f"{where}.scalars", scalars)
    for k, v in scalars.items():
        check_scalar(f"{where}.scalars[{k!r}]", v)
    check_object(f"{where}.meta", e.get("meta", {}))


def from_document(doc: Mapping[str, Any]) -> ModelResult | ModelSweep:
    """Rebuild a model result or sweep from a parsed results document (checked by
    :func:`initdiag.results.check_document`)."""
    results = [ModelResult.from_dict(r) for r in doc["results"]]
    if doc.get("kind") == "model":
        if len(results) != 1:
            raise ValueError(f"a model file holds one result, found {len(results)}")
        return results[0]
    return ModelSweep(results, doc.get("meta", {}))
