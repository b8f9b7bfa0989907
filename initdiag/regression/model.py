"""Regression checks for model probes (:func:`initdiag.probe_fn`): baselines, compare, health.

The stack functions (:func:`initdiag.save_baseline`, :func:`initdiag.load_baseline`,
:func:`initdiag.compare`, :func:`initdiag.assert_healthy`) dispatch here when given a
:class:`~initdiag.model.result.ModelResult` or :class:`~initdiag.model.result.ModelSweep`.

* Baseline file: the stack layout with ``kind`` ``"model"`` or ``"model_sweep"``; each entry is
  the result's JSON (:meth:`ModelResult.to_dict`) without ``meta`` (timings change every run):
  config, seed, sites, kinds, activations, site_params, metrics (one value per line), params,
  skipped, scalars. It loads back to an equal result (``meta`` aside).
* Matching: results by ``(config["model"], config["init"], seed)``; sites by name, parameter
  leaves by path. A site or leaf on one side only is reported (``Comparison.missing_sites`` /
  ``extra_sites``, e.g. ``"mlp / given, seed 0: site '[3]'"``) and fails the comparison.
* Tolerances: each model metric is compared like its stack analogue
  (:data:`initdiag.model.result.MODEL_ANALOGUES`, defaults of
  :data:`initdiag.regression.tolerance.DEFAULT_TOLERANCES`): var, sq_mean, ch_* and grad_rms in
  log space (ratio), fractions absolutely, ``mean`` scaled by sqrt(var). The parameter table's
  ``weight_norm``, ``grad_norm``, ``grad_weight_ratio`` are compared per leaf. A deviation's
  ``site`` is the site name (or leaf path); its ``layer`` the 1-based position.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from initdiag.model.result import MODEL_ANALOGUES, MODEL_SCALE_OF, ModelResult, ModelSweep
from initdiag.model.result import check_entry as check_model_entry
from initdiag.regression import tolerance as tol_mod
from initdiag.regression.entries import check_entries, read_entries

MODEL_KINDS = ("model", "model_sweep")
PARAM_METRICS = ("weight_norm", "grad_norm", "grad_weight_ratio")


def is_model(obj: Any) -> bool:
    return isinstance(obj, (ModelResult, ModelSweep))


def model_list(obj: ModelResult | ModelSweep) -> list[ModelResult]:
    return [obj] if isinstance(obj, ModelResult) else list(obj)


def label(config: Mapping[str, Any]) -> str:
    return f"{config.get('model')} / {config.get('init')}"


# ---------------------------------------------------------------- baseline files
def document(result: ModelResult | ModelSweep) -> tuple[str, list[dict], dict]:
    """(kind, entries, meta) of a model baseline."""
    kind = "model" if isinstance(result, ModelResult) else "model_sweep"
    entries = []
    for r in model_list(result):
        d = r.to_dict()
        d.pop("meta", None)
        entries.append(d)
    meta = result.meta if isinstance(result, ModelSweep) else r.meta if entries else {}
    return kind, entries, meta


def check_entry(i: int, e: Any) -> None:
    """Check ``results[i]`` of a model baseline (:func:`initdiag.model.result.check_entry`, no
    ``meta``); the message names the field."""
    check_model_entry(f"results[{i}]", e, baseline=True)


def check_document(doc: dict) -> None:
    check_entries(doc, check_entry, "model")


def from_document(doc: dict, env: dict) -> ModelResult | ModelSweep:
    return read_entries(doc, env, ModelResult.from_dict, ModelSweep, "model")


# ---------------------------------------------------------------- compare
def tolerances(metrics: list[str], rtol: float | None, atol: float | None,
               per_metric: Mapping[str, Any] | None) -> dict[str, tol_mod.Tolerance]:
    """The tolerance of each model metric: its analogue's default, then rtol/atol, then
    ``per_metric`` (as :func:`initdiag.regression.tolerance.resolve`)."""
    out = tol_mod.resolve(metrics, rtol, atol, per_metric)  # validates every argument
    for m in metrics:  # resolve() read the stack table; start again from the analogue's row
        d = tol_mod.DEFAULT_TOLERANCES.get(MODEL_ANALOGUES.get(m) or "", tol_mod._SCALED)
        d = d._replace(rtol=d.rtol if rtol is None else float(rtol),
                       atol=d.atol if atol is None else float(atol))
        spec = (per_metric or {}).get(m) or {}
        out[m] = d._replace(**{k: float(v) for k, v in spec.items()})
    return out


def _index(results: list[ModelResult], role: str) -> dict[tuple, ModelResult]:
    out: dict[tuple, ModelResult] = {}
    for r in results:
        k = (str(r.config.get("model")), str(r.config.get("init")), int(r.seed))
        if k in out:
            raise ValueError(f"{role} holds the same model, init and seed twice: {label(r.config)}, "
                             f"seed {r.seed}")
        out[k] = r
    return out


def _param_values(r: ModelResult) -> tuple[list[str], dict[str, np.ndarray]]:
    paths = [row["path"] for row in r.param_rows]
    return paths, {m: np.array([float(row.get(m, math.nan)) for row in r.param_rows], np.float64)
                   for m in PARAM_METRICS}


def compare(current: Any, baseline: Any, rtol=None, atol=None, metrics=None, per_metric=None):
    """:func:`initdiag.compare` for model results (see the module docstring)."""
    from initdiag.regression.compare import Comparison, Deviation, chosen_metrics

    cur = _index(model_list(current), "current")
    base = _index(model_list(baseline), "baseline")
    every = list(dict.fromkeys(m for idx in (base, cur) for r in idx.values() for m in r.metrics))
    if any(r.param_rows for idx in (base, cur) for r in idx.values()):
        every += list(PARAM_METRICS)
    chosen = chosen_metrics(metrics, every)
    tols = tolerances(chosen, rtol, atol, per_metric)
    devs: list = []
    miss_m: list = []
    extra_m: list = []
    miss_s: list = []
    extra_s: list = []
    n = 0
    for k, b in base.items():
        if k not in cur:
            continue
        c = cur[k]
        lab, seed = label(b.config), int(b.seed)
        for what, b_names, c_names, b_vals, c_vals in (
                ("site", list(b.sites), list(c.sites), b.values, c.values),
                ("leaf", *_pair_params(b, c))):
            common = [s for s in b_names if s in c_names]
            miss_s += [f"{lab}, seed {seed}: {what} {s!r}" for s in b_names if s not in c_names]
            extra_s += [f"{lab}, seed {seed}: {what} {s!r}" for s in c_names if s not in b_names]
            bi = np.array([b_names.index(s) for s in common], int)
            ci = np.array([c_names.index(s) for s in common], int)
            for m in chosen:
                if (m in PARAM_METRICS) != (what == "leaf"):
                    continue
                if m not in c_vals or m not in b_vals:
                    if m in b_vals:
                        miss_m.append((lab, seed, m))
                    elif m in c_vals:
                        extra_m.append((lab, seed, m))
                    continue
                t = tols[m]
                scale_name = MODEL_SCALE_OF.get(m) if t.kind == "scaled" else None
                scale = b_vals[scale_name][bi] if scale_name in b_vals else None
                e, g = np.asarray(b_vals[m])[bi], np.asarray(c_vals[m])[ci]
                err, allowed, ok = tol_mod.errors(t, e, g, scale)
                n += err.size
                for j in np.flatnonzero(~ok):
                    devs.append(Deviation(lab, seed, m, int(bi[j]) + 1, float(e[j]), float(g[j]),
                                          float(err[j]), float(allowed[j]), t.kind,
                                          site=common[j]))
    missing = tuple((label(b.config), int(b.seed)) for k, b in base.items() if k not in cur)
    extra = tuple((label(c.config), int(c.seed)) for k, c in cur.items() if k not in base)
    changes = []
    base_models = {k[:2] for k in base}
    for k, c in cur.items():
        if k[:2] not in base_models:
            others = sorted({b[1] for b in base if b[0] == k[0]})
            if others:
                changes.append(f"{label(c.config)}: init {others[0]!r} -> {k[1]!r}")
    return Comparison(tuple(devs), missing, extra, tuple(miss_m), tuple(extra_m), tols, n,
                      tuple(dict.fromkeys(changes)), missing_sites=tuple(miss_s),
                      extra_sites=tuple(extra_s), model=True)


def _pair_params(b: ModelResult, c: ModelResult):
    bp, bv = _param_values(b)
    cp, cv = _param_values(c)
    if not b.param_rows:
        bv = {}
    if not c.param_rows:
        cv = {}
    return bp, cp, bv, cv


# ---------------------------------------------------------------- health
def checks(r: ModelResult, max_grad_ratio, var_range, max_saturation, max_dead) -> list[tuple[str, str]]:
    """``(check, message)`` for each failing per-site check of one model result: the gradient
    ratio of every gradient-carrying site to the last one, var relative to the first site with a
    var, saturation and dead_frac; each message names the site."""
    from initdiag.metrics import relative_to
    from initdiag.regression.health import worst_deviation

    where = f"{label(r.config)}, seed {r.seed}"
    out = []
    n = len(r.sites)
    g = r.values.get("grad_rms", np.full(n, np.nan))
    gi = np.flatnonzero(~np.isnan(g))
    if max_grad_ratio is not None and gi.size > 1:
        rel = relative_to(g[gi[:-1]], g[gi[-1]])
        lo, hi = 1.0 / max_grad_ratio, max_grad_ratio
        bad = ~((rel >= lo) & (rel <= hi))
        if bad.any():
            j = worst_deviation(rel, bad, lo, hi)
            out.append(("grad", f"{where}: site {r.sites[gi[j]]!r}: grad_rms / its value at site "
                                f"{r.sites[gi[-1]]!r} = {rel[j]:.3g}, outside [{lo:.3g}, {hi:.3g}] "
                                f"(max_grad_ratio={max_grad_ratio:g}; {int(bad.sum())} of "
                                f"{gi.size - 1} sites outside)"))
    v = r.values.get("var", np.full(n, np.nan))
    vi = np.flatnonzero(~np.isnan(v))
    if var_range is not None and vi.size:
        lo, hi = var_range
        rel = relative_to(v[vi], v[vi[0]])
        bad = ~((rel >= lo) & (rel <= hi))
        if bad.any():
            j = worst_deviation(rel, bad, max(lo, 1e-300), hi)
            out.append(("var", f"{where}: site {r.sites[vi[j]]!r}: var / var at site "
                               f"{r.sites[vi[0]]!r} = {rel[j]:.3g}, outside [{lo:.3g}, {hi:.3g}] "
                               f"(var_range; {int(bad.sum())} of {vi.size} sites outside)"))
    for check, metric, bound, name in (("saturation", "saturation", max_saturation, "max_saturation"),
                                       ("dead", "dead_frac", max_dead, "max_dead")):
        if bound is None or metric not in r.values:
            continue
        x = r.values[metric]
        bad = ~np.isnan(x) & (x > bound)
        if bad.any():
            i = int(np.flatnonzero(bad)[np.argmax(x[bad])])
            out.append((check, f"{where}: site {r.sites[i]!r}: {metric} = {x[i]:.3g} > "
                               f"{name}={bound:g} ({int(bad.sum())} sites above)"))
    return out
