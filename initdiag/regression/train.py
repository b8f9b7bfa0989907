"""Regression checks for training runs (:func:`initdiag.train_probe`, :func:`initdiag.train_fn`).

:func:`initdiag.save_baseline`, :func:`initdiag.load_baseline`, :func:`initdiag.compare` and
:func:`initdiag.update_baseline` (hence ``initdiag check`` and the pytest fixture) dispatch here
when given a :class:`~initdiag.train.result.TrainResult` or
:class:`~initdiag.train.result.TrainSweep`.

* Baseline file: the stack layout with ``kind`` ``"train"`` or ``"train_sweep"``; each entry is
  the run's JSON (:meth:`TrainResult.to_dict`) without ``meta`` and without the snapshots'
  ``meta`` (timings change on every run). It loads back to an equal result (``meta`` aside).
* Matching: runs by (network config, training config, seed): the network's
  :meth:`initdiag.ProbeConfig.key` (a model's name and init), the :meth:`TrainConfig.key`.
* Compared values, each a "metric" of the comparison: the curves (``loss``, ``accuracy``,
  ``grad_preact_rms``, ``update_ratio``: every step, every layer), the test numbers
  (``test_loss``, ``test_accuracy``) and the snapshots' statistics as ``<metric>@<step>``
  (``act_var@0``: the probe's act_var at step 0, per layer). A deviation's ``site`` says where:
  ``"step 12, layer 3"``.
* Tolerances: by kind (:data:`initdiag.metrics.DEFAULT_TOLERANCE`): the loss, test loss,
  gradient RMS and update ratio in log space (ratio, rtol 1e-3), accuracies absolutely (atol
  1e-3); snapshot statistics as their metric (the stack table, or the model metric's analogue).
  A rerun on the same machine is bit for bit identical; elsewhere float32 rounding differs, and
  training amplifies it step by step (a stable run by ~1e-6 over 200 steps, an unstable one
  without bound): compare runs of other machines with looser ``rtol``.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np

from initdiag import metrics as metric_table
from initdiag.regression import tolerance as tol_mod
from initdiag.regression.entries import check_entries, read_entries
from initdiag.train.result import CURVES, SCALARS, TrainResult, TrainSweep
from initdiag.train.result import check_entry as check_run

TRAIN_KINDS = ("train", "train_sweep")
#: Separates a snapshot statistic's name from its step: ``act_var@0``.
AT = "@"


def is_train(obj: Any) -> bool:
    return isinstance(obj, (TrainResult, TrainSweep))


def train_list(obj: TrainResult | TrainSweep) -> list[TrainResult]:
    return [obj] if isinstance(obj, TrainResult) else list(obj)


def label(r: TrainResult) -> str:
    """``"tanh / he_normal depth=10 width=64 batch=128 | digits, sgd lr=0.1, 200 steps"``."""
    net = (f"{r.config.get('model')} / {r.config.get('init')}" if r.is_model
           else r.config.label())
    return f"{net} | {r.train.label()}"


# ---------------------------------------------------------------- baseline files
def document(result: TrainResult | TrainSweep) -> tuple[str, list[dict], dict]:
    """(kind, entries, meta) of a training baseline."""
    kind = "train" if isinstance(result, TrainResult) else "train_sweep"
    entries = []
    for r in train_list(result):
        d = r.to_dict()
        d.pop("meta", None)
        for s in d["snapshots"]:
            s["result"].pop("meta", None)
        entries.append(d)
    runs = train_list(result)
    meta = result.meta if isinstance(result, TrainSweep) else {}
    if "environment" not in meta and runs:
        meta = {"environment": runs[0].meta.get("environment", {})}
    return kind, entries, meta


def check_entry(i: int, e: Any) -> None:
    """Check ``results[i]`` of a training baseline: a run as a results file stores it
    (:func:`initdiag.train.result.check_entry`; ``meta`` absent); the message names the
    field."""
    check_run(f"results[{i}]", e)


def check_document(doc: dict) -> None:
    check_entries(doc, check_entry, "train")


def from_document(doc: dict, env: dict) -> TrainResult | TrainSweep:
    return read_entries(doc, env, TrainResult.from_dict, TrainSweep, "train")


# ---------------------------------------------------------------- compare
def values(r: TrainResult) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Every compared metric of a run: name -> (values, where each value is), flattened."""
    out: dict[str, tuple[np.ndarray, list[str]]] = {}
    for name, v in {**r.curves, **{k: np.array([x]) for k, x in r.scalars.items()}}.items():
        v = np.asarray(v, np.float64)
        if name in r.scalars:
            out[name] = (v, ["end"])
        elif v.ndim == 1:
            out[name] = (v, [f"step {t}" for t in range(1, v.size + 1)])
        else:
            names = r.layers or [str(l) for l in range(1, v.shape[1] + 1)]
            out[name] = (v.ravel(), [f"step {t}, layer {n}" for t in range(1, v.shape[0] + 1)
                                     for n in names])
    for step, snap in r.snapshots.items():
        where = list(snap.sites) if r.is_model else [str(l) for l in range(1, snap.depth + 1)]
        for m, v in snap.values.items():
            out[f"{m}{AT}{step}"] = (np.asarray(v, np.float64),
                                     [f"step {step}, {'site' if r.is_model else 'layer'} {w}"
                                      for w in where])
    return out


def default_tolerance(name: str) -> tol_mod.Tolerance:
    """A compared metric's default tolerance: a curve's or test number's kind; a snapshot
    statistic's metric row (a model metric's analogue)."""
    from initdiag.model.result import MODEL_ANALOGUES

    row = CURVES.get(name) or SCALARS.get(name)
    if row is not None:
        rtol, atol = metric_table.DEFAULT_TOLERANCE[row.kind]
        return tol_mod.Tolerance(metric_table.COMPARISON[row.kind], rtol, atol)
    base = name.split(AT, 1)[0]
    base = MODEL_ANALOGUES.get(base) or base
    return tol_mod.DEFAULT_TOLERANCES.get(base, tol_mod.Tolerance("scaled", 1e-3, 0.0))


def tolerances(names: list[str], rtol: float | None, atol: float | None,
               per_metric: Mapping[str, Any] | None) -> dict[str, tol_mod.Tolerance]:
    """Defaults (:func:`default_tolerance`), then ``rtol``/``atol``, then ``per_metric``."""
    tol_mod.resolve(names, rtol, atol, per_metric)  # validates every argument
    out = {}
    for m in names:
        d = default_tolerance(m)
        d = d._replace(rtol=d.rtol if rtol is None else float(rtol),
                       atol=d.atol if atol is None else float(atol))
        spec = (per_metric or {}).get(m) or {}
        out[m] = d._replace(**{k: float(v) for k, v in spec.items()})
    return out


def _key(r: TrainResult) -> tuple:
    net = (json.dumps([r.config.get("model"), r.config.get("init")]) if r.is_model
           else r.config.key())
    return (net, r.train.key(), int(r.seed))


def _index(runs: list[TrainResult], role: str) -> dict[tuple, TrainResult]:
    out: dict[tuple, TrainResult] = {}
    for r in runs:
        k = _key(r)
        if k in out:
            raise ValueError(f"{role} holds the same run twice: {label(r)}, seed {r.seed}")
        out[k] = r
    return out


def compare(current: Any, baseline: Any, rtol=None, atol=None, metrics=None, per_metric=None):
    """:func:`initdiag.compare` for training runs (see the module docstring)."""
    from initdiag.regression.compare import Comparison, Deviation, chosen_metrics

    cur = _index(train_list(current), "current")
    base = _index(train_list(baseline), "baseline")
    cur_v = {k: values(r) for k, r in cur.items()}
    base_v = {k: values(r) for k, r in base.items()}
    every = list(dict.fromkeys(m for v in (*base_v.values(), *cur_v.values()) for m in v))
    chosen = chosen_metrics(metrics, every)
    tols = tolerances(chosen, rtol, atol, per_metric)
    devs, miss_m, extra_m = [], [], []
    n = 0
    for k, b in base.items():
        if k not in cur:
            continue
        bv, cv = base_v[k], cur_v[k]
        lab, seed = label(b), int(b.seed)
        for m in chosen:
            if m not in bv or m not in cv:
                if m in bv:
                    miss_m.append((lab, seed, m))
                elif m in cv:
                    extra_m.append((lab, seed, m))
                continue
            (e, where), (g, _) = bv[m], cv[m]
            if e.shape != g.shape:
                devs.append(Deviation(lab, seed, m, 0, math.nan, math.nan, math.inf, 0.0,
                                      tols[m].kind, site=f"shape {e.shape} -> {g.shape}"))
                n += 1
                continue
            t = tols[m]
            name, _, step = m.partition(AT)
            scale = bv.get(f"{tol_mod.SCALE_OF[name]}{AT}{step}") if (
                step and t.kind == "scaled" and name in tol_mod.SCALE_OF) else None
            err, allowed, ok = tol_mod.errors(t, e, g, None if scale is None else scale[0])
            n += err.size
            for j in np.flatnonzero(~ok):
                devs.append(Deviation(lab, seed, m, int(j) + 1, float(e[j]), float(g[j]),
                                      float(err[j]), float(allowed[j]), t.kind, site=where[j]))
    missing = tuple((label(b), int(b.seed)) for k, b in base.items() if k not in cur)
    extra = tuple((label(c), int(c.seed)) for k, c in cur.items() if k not in base)
    return Comparison(tuple(devs), missing, extra, tuple(miss_m), tuple(extra_m), tols, n)
