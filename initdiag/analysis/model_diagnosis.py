"""Diagnosis of a model probe (:func:`initdiag.probe_fn`): one verdict per configuration.

The same verdict kinds and :class:`~initdiag.analysis.diagnosis.Thresholds` as for stacks
(:mod:`initdiag.analysis.diagnosis`), read from the per-site statistics of a
:class:`~initdiag.model.result.ModelResult` and its parameter table. Sites i = 1..N in call order;
g_i = ``grad_rms``; the *layers* are the dense/conv sites. A ratio 0/0 counts as 0 and x/0 as
infinity, as for stacks. Findings, each tested independently:

* **symmetric** -- some dense/conv weight leaf is all zeros (``weight_norm == 0``) or the init is
  ``zeros``/``constant``. The verdict names the first zero leaf and the site it feeds
  (``Verdict.leaf``, ``Verdict.site``). A zero weight passes no gradient back: when every site
  before the last zero-fed site S has ``grad_rms`` exactly 0 the text says so ("grad_rms is
  exactly 0 at every site before 'S' because its weight leaf 'P' is all zeros"), and those
  exact zeros are *not* counted as vanishing (a zero-initialised readout is the common case).
* **dead** -- an activation site with ``dead_frac >= dead`` whose input (the nearest earlier site
  with a ``sq_mean``) is not collapsed: sq_mean / sq_mean at site 1 >= ``act_collapse``.
* **saturation** -- a site with ``saturation >= saturation``.
* **exploding** -- inf anywhere, or NaN where a value must exist (``grad_rms``, the ``var`` of a
  dense/conv site): the pass overflows; or g_i / g_last > ``grad_explode`` at some site before the
  last, where "last" is the last site that carries a gradient (not NaN).
* **vanishing** -- g_i / g_last < ``grad_vanish`` at some site before the last (sites below a
  zero-weight cut excluded, see symmetric).
* **collapse** -- var_i / var_first < ``act_collapse`` (sites fed by or after a zero weight leaf
  excluded when symmetric is found).

Priority, ``layer`` (1-based site position; the first crossing forward for activation findings,
backward from the output for gradient findings) and pooling of seeds (positive metrics by
geometric mean, signed and fractions by arithmetic mean, per
:func:`initdiag.model.result.model_metric_kind`) as for stacks. Evidence: ``grad_ratio`` (first
gradient site / last), ``var_ratio`` (last / first), and least-squares fits over the dense/conv
sites: ``grad_factor_per_layer`` (per layer going back) and ``var_factor_per_layer``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

import numpy as np

from initdiag.analysis.diagnosis import (PRIORITY, TITLES, Thresholds, Verdict,
                                         every_factor, init_advice, log10_slope, nanmax, pow10,
                                         spec_name)
from initdiag.jsonvalues import encode
from initdiag.metrics import relative_to
from initdiag.model.result import ModelResult, ModelSweep, model_metric_kind

_LAYER_KINDS = ("dense", "conv")


@dataclasses.dataclass
class _Pooled:
    config: dict
    seeds: tuple
    sites: tuple
    kinds: tuple
    activations: tuple
    leaves: tuple          # per site: weight leaf path or None
    values: dict
    params: dict           # path -> {"role", "weight_norm", "grad_norm"}


def _pool_values(name: str, stack: np.ndarray) -> np.ndarray:
    stack = np.asarray(stack, np.float64)
    if model_metric_kind(name) != "positive":
        return stack.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 ** np.log10(stack).mean(axis=0)


_LAST_KEY = re.compile(r"(/[^/\[\].]+|\[\d+\]|\.[^/\[\].]+)$")
_ITER = re.compile(r"(/\[\d+\])+$")


def _guess_leaves(r: ModelResult) -> tuple:
    """For results without ``site_params`` (older files): the dense/conv leaf whose owner (its
    path without the last key) is the site's name without iteration suffixes."""
    owners: dict[str, str] = {}
    for row in r.param_rows:
        if row.get("role") in _LAYER_KINDS:
            owners.setdefault(_LAST_KEY.sub("", row["path"]) or row["path"], row["path"])
    out = []
    for name, kind in zip(r.sites, r.kinds):
        out.append(owners.get(_ITER.sub("", name)) if kind in _LAYER_KINDS else None)
    return tuple(out)


def _pool(rs: list[ModelResult]) -> _Pooled:
    first = rs[0]
    for r in rs[1:]:
        if r.sites != first.sites:
            raise ValueError(f"{first.label}: seeds {first.seed} and {r.seed} have different sites; "
                             "they cannot be pooled")
    metrics = list(dict.fromkeys(m for r in rs for m in r.values))
    n = len(first.sites)
    values = {m: _pool_values(m, np.array([r.values.get(m, np.full(n, np.nan)) for r in rs]))
              for m in metrics}
    params: dict[str, dict] = {}
    for row in first.param_rows:
        path = row["path"]
        rows = [next((x for x in r.param_rows if x["path"] == path), row) for r in rs]
        params[path] = {"role": row.get("role"),
                        "weight_norm": float(_pool_values("weight_norm",
                                                          np.array([x["weight_norm"] for x in rows]))),
                        "grad_norm": float(_pool_values("grad_norm",
                                                        np.array([x["grad_norm"] for x in rows])))}
    leaves = first.site_params or _guess_leaves(first)
    return _Pooled(dict(first.config), tuple(int(r.seed) for r in rs), tuple(first.sites),
                   tuple(first.kinds), tuple(first.activations), tuple(leaves), values, params)


def _col(p: _Pooled, metric: str) -> np.ndarray:
    return p.values.get(metric, np.full(len(p.sites), np.nan))


def _main_activation(p: _Pooled) -> str:
    acts = [a for a, k in zip(p.activations, p.kinds) if k == "activation" and a]
    if not acts:
        return ""
    names = [spec_name(a)[0] for a in acts]
    return max(dict.fromkeys(names), key=names.count)


def _suggestion(kind: str, act: str, config: dict) -> str:
    base = init_advice(act, unknown="lecun_normal or orthogonal (variance 1/fan_in) for the "
                                    "dense/conv weights")
    if kind == "healthy":
        return "no change needed"
    if kind == "symmetric":
        return (f"draw the zero weights at random ({base}); a readout can start small "
                f"(e.g. variance 1e-2/fan_in) but not at exactly 0, or nothing below it learns")
    if kind == "dead":
        return "zero biases with He init (he_normal), or leaky_relu, so pre-activations are not all below 0"
    if kind in ("exploding", "saturation"):
        return f"smaller weights: {base}"
    return base + "; initdiag.calibrate (LSUV) rescales every layer to unit output variance"


def _finding_text_grad(p: _Pooled, idx: np.ndarray, g: np.ndarray, ev: dict, verb: str,
                       threshold: str) -> str:
    last, first = idx[-1], idx[0]
    zeros = [i for i in idx[:-1] if g[i] == 0]
    f = ev["grad_factor_per_layer"]
    every = every_factor(f)
    fit = (f"x{f:.3g} per dense/conv layer going back (fitted over {ev['layers']} layers)"
           + (f", {every}" if every else "")) if math.isfinite(f) else ""
    if zeros:
        text = (f"grad_rms is exactly 0 at {len(zeros)} of {len(idx) - 1} sites before "
                f"'{p.sites[last]}' (the last is '{p.sites[zeros[-1]]}')"
                + (f"; {fit} over the nonzero sites" if fit else ""))
    else:
        text = (f"grad_rms {verb} {ev['grad_ratio']:.2g}x from site '{p.sites[last]}' to site "
                f"'{p.sites[first]}'" + (f": {fit}" if fit else ""))
    return f"{text}; {threshold}"


def _diagnose_pooled(p: _Pooled, t: Thresholds) -> Verdict:
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _diagnose_values(p, t)


def _diagnose_values(p: _Pooled, t: Thresholds) -> Verdict:
    n = len(p.sites)
    kinds = np.array(p.kinds, dtype=object)
    layer_mask = np.array([k in _LAYER_KINDS for k in p.kinds], bool)
    g, var, sq = _col(p, "grad_rms"), _col(p, "var"), _col(p, "sq_mean")
    act = _main_activation(p)
    init, init_params = spec_name(p.config.get("init", ""))

    # overflow: inf anywhere; NaN where a value must exist
    inf_any = np.zeros(n, bool)
    for v in p.values.values():
        inf_any |= np.isinf(v)
    fwd_bad = np.zeros(n, bool)
    for m in ("mean", "var", "sq_mean"):
        fwd_bad |= np.isinf(_col(p, m))
    fwd_bad |= layer_mask & np.isnan(var)
    bad = inf_any | np.isnan(g) | fwd_bad
    overflow = bool(bad.any())
    # where it overflows: the first site going forward, else the last (nearest the output) going back
    bad_at = (int(np.flatnonzero(fwd_bad)[0]) if fwd_bad.any() else
              int(np.flatnonzero(bad)[-1]) if overflow else None)

    # weight leaves that are all zeros, and the sites they feed
    zero_leaf = {path for path, row in p.params.items()
                 if row["role"] in _LAYER_KINDS and row["weight_norm"] == 0}
    zero_sites = [i for i in range(n) if layer_mask[i] and p.leaves[i] in zero_leaf]
    constant_init = init in ("zeros", "zero", "constant") or init_params.get("gain", 1) == 0
    gsites = np.flatnonzero(~np.isnan(g))
    cut = None  # the last zero-fed site below which every gradient is exactly 0
    for c in reversed(zero_sites):
        below = gsites[gsites < c]
        if below.size and np.all(g[below] == 0):
            cut = c
            break
    gidx = gsites[gsites >= cut] if cut is not None else gsites
    g_last = g[gidx[-1]] if gidx.size else math.nan
    g_rel = relative_to(g, g_last) if gidx.size else np.full(n, np.nan)
    vsites = np.flatnonzero(np.isfinite(var))
    if zero_sites or constant_init:
        stop = zero_sites[0] if zero_sites else 0
        vsites = vsites[vsites < stop]
    v_ref = var[vsites[0]] if vsites.size else math.nan
    v_rel = relative_to(var, v_ref)
    layers = np.flatnonzero(layer_mask & ~np.isnan(g))
    g_slope = log10_slope(g[layers][::-1])  # per layer going back from the output
    v_layers = np.flatnonzero(layer_mask)
    v_slope = log10_slope(var[v_layers])
    ev: dict[str, Any] = {
        "n_sites": n, "layers": int(layer_mask.sum()),
        "grad_ratio": float(g_rel[gidx[0]]) if gidx.size else math.nan,
        "var_ratio": float(v_rel[vsites[-1]]) if vsites.size else math.nan,
        "grad_factor_per_layer": pow10(g_slope), "var_factor_per_layer": pow10(v_slope),
        "max_saturation": nanmax(_col(p, "saturation")),
        "max_dead_frac": nanmax(_col(p, "dead_frac")),
        "grad_zero_sites": int(np.sum(g == 0)), "overflow": overflow,
        "first_nonfinite_site": p.sites[bad_at] if overflow else None,
        "zero_weight_leaves": [p.leaves[i] for i in zero_sites],
        "grad_cut_site": p.sites[cut] if cut is not None else None,
        "grad_cut_leaf": p.leaves[cut] if cut is not None else None,
    }
    found: dict[str, tuple] = {}  # kind -> (key, label, index or None, detail, leaf)

    if zero_sites or constant_init:
        first = zero_sites[0] if zero_sites else None
        lim = cut if cut is not None else n
        below = [row["grad_norm"] for path, row in p.params.items()
                 if row["role"] in _LAYER_KINDS and path not in zero_leaf]
        key = float(max(below)) if below else math.nan
        if first is not None:
            nz = len(zero_sites)
            total = int(layer_mask.sum())
            what = (f"weight leaf '{p.leaves[first]}' (feeding site '{p.sites[first]}') is all zeros"
                    if nz == 1 else
                    f"{nz} of {total} dense/conv sites are fed by all-zero weight leaves, the "
                    f"first '{p.leaves[first]}' (feeding site '{p.sites[first]}')")
            if nz == 1 and first == int(np.flatnonzero(layer_mask)[-1]):
                what += " (a zero-initialised readout)"
        else:
            what = f"{init} init: every unit of a layer computes the same function"
        parts = [what]
        if cut is not None:
            parts.append(f"grad_rms is exactly 0 at every site before '{p.sites[cut]}' because "
                         f"its weight leaf '{p.leaves[cut]}' is all zeros, so no weight below it "
                         f"gets a gradient")
        if first is not None and (cut is None or first < cut or nz > 1):
            parts.append(f"the output of '{p.sites[first]}' does not depend on its input, and "
                         f"the units of a layer fed by a zero weight are identical")
        found["symmetric"] = (key, "max grad_norm of the nonzero dense/conv leaves",
                              first if first is not None else lim - 1 if lim else None,
                              "; ".join(parts), p.leaves[first] if first is not None else None)

    dead = _col(p, "dead_frac")
    sq_ref_i = np.flatnonzero(np.isfinite(sq))
    dead_l = np.zeros(n, bool)
    for i in np.flatnonzero(dead >= t.dead):
        prev = [j for j in sq_ref_i if j < i]
        src = prev[-1] if prev else i
        ref = sq[sq_ref_i[0]] if sq_ref_i.size else math.nan
        if float(relative_to(np.array([sq[src]]), ref)[0]) >= t.act_collapse:
            dead_l[i] = True
    if dead_l.any():
        i = int(np.flatnonzero(dead_l)[0])
        worst = float(np.max(dead[dead_l]))
        found["dead"] = (worst, "max fraction of dead channels", i,
                         f"{worst:.0%} of channels are 0 for the whole batch (>= {t.dead:.0%} "
                         f"from site '{p.sites[i]}')", None)
    sat = _col(p, "saturation")
    sat_l = sat >= t.saturation
    if sat_l.any():
        i = int(np.flatnonzero(sat_l)[0])
        found["saturation"] = (ev["max_saturation"], "max saturated fraction", i,
                               f"up to {ev['max_saturation']:.0%} of activations saturated "
                               f"(>= {t.saturation:.0%} from site '{p.sites[i]}')", None)
    if overflow:
        i = bad_at
        found["exploding"] = (math.inf, "grad_rms first site / last site (overflow)", i,
                              f"the pass overflows to inf/NaN at site '{p.sites[i]}' (variance "
                              f"x{ev['var_factor_per_layer']:.3g} per dense/conv layer, fitted)",
                              None)
    inner = np.zeros(n, bool)
    if gidx.size > 1:
        inner[gidx[:-1]] = True
    up, down = inner & (g_rel > t.grad_explode), inner & (g_rel < t.grad_vanish)
    if up.any() and not overflow:
        i = int(np.flatnonzero(up)[-1])
        found["exploding"] = (ev["grad_ratio"], "grad_rms first site / last site", i,
                              _finding_text_grad(p, gidx, g, ev, "grows",
                                                 f"above {t.grad_explode:g} from site "
                                                 f"'{p.sites[i]}' down"), None)
    if down.any() and not overflow:
        i = int(np.flatnonzero(down)[-1])
        found["vanishing"] = (ev["grad_ratio"], "grad_rms first site / last site", i,
                              _finding_text_grad(p, gidx, g, ev, "falls to",
                                                 f"below {t.grad_vanish:g} from site "
                                                 f"'{p.sites[i]}' down"), None)
    col = np.zeros(n, bool)
    col[vsites] = v_rel[vsites] < t.act_collapse
    if col.any():
        i = int(np.flatnonzero(col)[0])
        found["collapse"] = (ev["var_ratio"], "var last site / first site", i,
                             f"variance falls to {ev['var_ratio']:.2g}x from site "
                             f"'{p.sites[vsites[0]]}' to site '{p.sites[vsites[-1]]}' "
                             f"(x{ev['var_factor_per_layer']:.3g} per dense/conv layer, fitted; "
                             f"< {t.act_collapse:g} from site '{p.sites[i]}')", None)

    def make(kind: str, key: float, label: str, i: int | None, detail: str, leaf: str | None,
             findings=()) -> Verdict:
        return Verdict(kind=kind, title=TITLES[kind], config=dict(p.config), seeds=p.seeds,
                       key_value=float(key), key_label=label,
                       layer=None if i is None else int(i) + 1, evidence=dict(ev),
                       suggestion=_suggestion(kind, act, p.config), detail=detail,
                       findings=tuple(findings), site=None if i is None else p.sites[i],
                       leaf=leaf if leaf is not None else (None if i is None else p.leaves[i]))

    findings = [make(k, *found[k]) for k in PRIORITY if k in found]
    if not findings:
        return make("healthy", ev["grad_ratio"], "grad_rms first site / last site", None,
                    f"grad_rms first site / last site = {ev['grad_ratio']:.2g}, variance last "
                    f"site / first site = {ev['var_ratio']:.2g} over {n} sites, no threshold "
                    f"crossed", None)
    return dataclasses.replace(findings[0], findings=tuple(findings))


def diagnose_model(result: ModelResult | ModelSweep, t: Thresholds) -> Verdict | list[Verdict]:
    """One Verdict for a ModelResult; one per configuration (seeds pooled) for a ModelSweep."""
    if isinstance(result, ModelResult):
        return _diagnose_pooled(_pool([result]), t)
    groups: dict[str, list[ModelResult]] = {}
    for r in result:
        groups.setdefault(json.dumps(encode(r.config), sort_keys=True), []).append(r)
    return [_diagnose_pooled(_pool(rs), t) for rs in groups.values()]
