"""Compare per-layer statistics against a baseline: :func:`compare` -> :class:`Comparison`.

Results are matched by the full config dict plus the seed. Seeds must match: a baseline made with
seeds {0, 1} is checked against a rerun with seeds {0, 1}. initdiag draws every weight from the
seed, so a rerun is bit for bit identical and tight tolerances (:mod:`.tolerance`) catch a 1%
change of a gain; two different seeds at the widths a CI can afford (16-256) differ by finite-
width fluctuations far larger than that (measured in tests/test_regression.py), so a cross-seed
check would need tolerances that hide the very changes it is meant to catch. A config present
on both sides with different seed sets is refused with :class:`SeedMismatchError`; configs or
metrics present on one side only are reported in ``missing``/``extra`` and fail the check.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from initdiag.regression import tolerance as tol_mod
from initdiag.regression.baseline import as_results, probe_list
from initdiag.config import ProbeConfig
from initdiag.jsonvalues import encode
from initdiag.results import ProbeResult

class SeedMismatchError(ValueError):
    """The same config was probed with different seeds on the two sides."""


def config_label(config: Mapping[str, Any]) -> str:
    """``"tanh / glorot_normal depth=8 width=16 batch=16"`` plus every non-default option
    (:meth:`initdiag.ProbeConfig.label`)."""
    return ProbeConfig.from_dict(config).label()


def _num(v: float) -> Any:
    """A float for strict JSON: NaN/Inf as the strings of results files."""
    return encode(float(v))


class Deviation(NamedTuple):
    """One value out of tolerance (layer is 1-based; error/tolerance in the metric's kind)."""

    config: str
    seed: int
    metric: str
    layer: int
    expected: float
    got: float
    error: float
    tolerance: float
    kind: str
    site: str | None = None  # model results: the site name (or parameter leaf path)

    def to_dict(self) -> dict[str, Any]:
        d = {"config": self.config, "seed": self.seed, "metric": self.metric,
             "layer": self.layer, "expected": _num(self.expected), "got": _num(self.got),
             "error": _num(self.error), "tolerance": _num(self.tolerance), "kind": self.kind}
        if self.site is not None:
            d["site"] = self.site
        return d


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Everything :func:`compare` found.

    Attributes:
      deviations: every value out of tolerance, in result, metric and layer order.
      missing: ``(config label, seed)`` in the baseline but not in the current results.
      extra: ``(config label, seed)`` in the current results but not in the baseline.
      missing_metrics / extra_metrics: ``(config label, seed, metric)`` on one side only. A
        metric in the current results only (one a newer initdiag measures, that the baseline
        predates) is reported, not checked, and does not fail the comparison; one the baseline
        holds but the current results lack does.
      tolerances: the resolved tolerance of each compared metric.
      n_compared: number of values compared.
      changes: for each current config not in the baseline, how it differs from the closest
        baseline config (e.g. ``"init: 'glorot_normal' -> 'glorot_normal(gain=1.1)'"``).
      missing_sites / extra_sites: model results (``model`` True): the sites (or parameter
        leaves) of a matched result on one side only, e.g. ``"mlp / given, seed 0: site '[3]'"``;
        either fails the comparison (:mod:`initdiag.regression.model`).
    """

    deviations: tuple[Deviation, ...]
    missing: tuple[tuple[str, int], ...]
    extra: tuple[tuple[str, int], ...]
    missing_metrics: tuple[tuple[str, int, str], ...]
    extra_metrics: tuple[tuple[str, int, str], ...]
    tolerances: dict[str, tol_mod.Tolerance]
    n_compared: int
    changes: tuple[str, ...] = ()
    missing_sites: tuple[str, ...] = ()
    extra_sites: tuple[str, ...] = ()
    model: bool = False

    @property
    def passed(self) -> bool:
        """True when at least one value was compared, nothing deviates, every config is on both
        sides and every metric of the baseline was compared (``extra_metrics`` do not fail). A
        comparison of nothing (``n_compared == 0``) does not pass."""
        return self.n_compared > 0 and not (self.deviations or self.missing or self.extra
                                            or self.missing_metrics or self.missing_sites
                                            or self.extra_sites)

    def __bool__(self) -> bool:
        return self.passed

    def statistics(self) -> dict[str, float]:
        """Error statistics over the deviations whose values are both finite.

        ``max_abs``/``mean_abs``: |got - expected|; ``max_rel``/``mean_rel``:
        |got - expected| / |expected| (expected != 0); ``max_log10``/``mean_log10``:
        |log10(got / expected)| (both > 0). NaN when no deviation qualifies.
        """
        e = np.array([d.expected for d in self.deviations], np.float64)
        g = np.array([d.got for d in self.deviations], np.float64)
        fin = np.isfinite(e) & np.isfinite(g)
        e, g = e[fin], g[fin]
        ab = np.abs(g - e)
        nz = e != 0
        rel = ab[nz] / np.abs(e[nz])
        pos = (e > 0) & (g > 0)
        lg = np.abs(np.log10(g[pos] / e[pos]))

        def mx(a):
            return float(a.max()) if a.size else math.nan

        def mn(a):
            return float(a.mean()) if a.size else math.nan

        return {"n_deviations": float(len(self.deviations)), "n_compared": float(self.n_compared),
                "max_abs": mx(ab), "mean_abs": mn(ab), "max_rel": mx(rel), "mean_rel": mn(rel),
                "max_log10": mx(lg), "mean_log10": mn(lg)}

    def render(self, max_rows: int = 100) -> str:
        """A readable report: one-sided configs/metrics, error statistics, the deviation table."""
        from initdiag.regression.render import render_comparison

        return render_comparison(self, max_rows=max_rows)

    def __str__(self) -> str:
        return self.render()

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-ready dict (NaN/Inf as strings), for ``initdiag check --json``."""
        d = {
            "passed": self.passed,
            "n_compared": self.n_compared,
            "statistics": {k: _num(v) for k, v in self.statistics().items()},
            "deviations": [d.to_dict() for d in self.deviations],
            "missing": [{"config": c, "seed": s} for c, s in self.missing],
            "extra": [{"config": c, "seed": s} for c, s in self.extra],
            "missing_metrics": [{"config": c, "seed": s, "metric": m}
                                for c, s, m in self.missing_metrics],
            "extra_metrics": [{"config": c, "seed": s, "metric": m}
                              for c, s, m in self.extra_metrics],
            "tolerances": {m: t._asdict() for m, t in self.tolerances.items()},
            "changes": list(self.changes),
        }
        if self.model:
            d.update(missing_sites=list(self.missing_sites), extra_sites=list(self.extra_sites))
        return d


def _index(results: Sequence[ProbeResult], role: str) -> dict[tuple[str, int], ProbeResult]:
    out: dict[tuple[str, int], ProbeResult] = {}
    for r in results:
        k = (r.config.key(), int(r.seed))
        if k in out:
            raise ValueError(f"{role} holds the same config and seed twice: "
                             f"{config_label(r.config)}, seed {r.seed}")
        out[k] = r
    return out


def _check_seeds(cur: Mapping[tuple[str, int], ProbeResult],
                 base: Mapping[tuple[str, int], ProbeResult]) -> None:
    def seeds(idx):
        d: dict[str, set[int]] = {}
        for ck, s in idx:
            d.setdefault(ck, set()).add(s)
        return d

    sc, sb = seeds(cur), seeds(base)
    for ck in sc.keys() & sb.keys():
        if sc[ck] != sb[ck]:
            label = config_label(json.loads(ck))
            raise SeedMismatchError(
                f"{label}: the baseline has seeds {sorted(sb[ck])} but the current results have "
                f"seeds {sorted(sc[ck])}. Seeds must match: initdiag compares a rerun of the "
                f"same random networks (bit for bit reproducible), not two samples of them. "
                f"Probe with seeds {sorted(sb[ck])} (`--seeds "
                f"{','.join(map(str, sorted(sb[ck])))}`), or update the baseline.")


def compare(current: Any, baseline: Any, rtol: float | None = None, atol: float | None = None,
            metrics: Sequence[str] | None = None,
            tolerances: Mapping[str, Mapping[str, float]] | None = None) -> Comparison:
    """Compare ``current`` results against ``baseline``, value by value.

    Args:
      current: a ProbeResult, a SweepResult, or a baseline path.
      baseline: the same forms (typically the path of a file from :func:`save_baseline`).
      rtol: overrides the relative tolerance of every metric (kinds "ratio" and "scaled").
      atol: overrides the absolute tolerance of every metric (kinds "abs" and "scaled").
      metrics: the metrics to compare (default: every metric on either side); a single
        string is one metric name. Must not be empty.
      tolerances: per metric ``{"rtol": ..., "atol": ...}``, applied after rtol/atol.
        Kinds and defaults: :mod:`initdiag.regression.tolerance`.

    Returns:
      A :class:`Comparison`; ``.passed`` is the verdict, ``str()`` the readable report.

    Raises:
      SeedMismatchError: a config present on both sides with different seed sets.
      ValueError: an empty ``metrics``, an unknown metric in ``metrics``/``tolerances``, a
        negative tolerance, or the same (config, seed) twice on one side.
      BaselineError: a path that is not a readable baseline.

    Model results (:class:`initdiag.ModelResult` / :class:`initdiag.ModelSweep`, or a model
    baseline's path) are matched by (model, init, seed) and sites by name:
    :mod:`initdiag.regression.model`. Training runs (:class:`initdiag.TrainResult` /
    :class:`initdiag.TrainSweep`) by (network, training, seed), comparing every step's curves,
    the test numbers and the snapshots' statistics: :mod:`initdiag.regression.train`.
    """
    from initdiag.regression import model as model_mod
    from initdiag.regression import train as train_mod

    cur_r, base_r = as_results(current, "current"), as_results(baseline, "baseline")
    for mod, what in ((train_mod.is_train, "a training run (train_probe, train_fn)"),
                      (model_mod.is_model, "a model result (probe_fn)")):
        if mod(cur_r) != mod(base_r):
            raise TypeError(f"compare: one side is {what} and the other is not "
                            f"({type(cur_r).__name__} vs {type(base_r).__name__}); compare "
                            f"like with like")
    if train_mod.is_train(cur_r):
        return train_mod.compare(cur_r, base_r, rtol, atol, metrics, tolerances)
    if model_mod.is_model(cur_r):
        return model_mod.compare(cur_r, base_r, rtol, atol, metrics, tolerances)
    current, baseline = cur_r, base_r
    cur = _index(probe_list(as_results(current, "current")), "current")
    base = _index(probe_list(as_results(baseline, "baseline")), "baseline")
    _check_seeds(cur, base)
    every = list(dict.fromkeys(m for idx in (base, cur) for r in idx.values() for m in r.metrics))
    chosen = chosen_metrics(metrics, every)
    tols = tol_mod.resolve(chosen, rtol, atol, tolerances)
    devs: list[Deviation] = []
    miss_m: list[tuple[str, int, str]] = []
    extra_m: list[tuple[str, int, str]] = []
    n = 0
    for k, b in base.items():
        if k not in cur:
            continue
        c = cur[k]
        label, seed = config_label(b.config), int(b.seed)
        for m in chosen:
            if m not in c.values or m not in b.values:
                if m in b.values:
                    miss_m.append((label, seed, m))
                elif m in c.values:
                    extra_m.append((label, seed, m))
                continue
            t = tols[m]
            scale_name = tol_mod.SCALE_OF.get(m)
            scale = b.values.get(scale_name) if scale_name else None
            err, allowed, ok = tol_mod.errors(t, b[m], c[m], scale)
            n += err.size
            for i in np.flatnonzero(~ok):
                devs.append(Deviation(label, seed, m, int(i) + 1, float(b[m][i]), float(c[m][i]),
                                      float(err[i]), float(allowed[i]), t.kind))
    missing = tuple((config_label(b.config), int(b.seed)) for k, b in base.items() if k not in cur)
    extra = tuple((config_label(c.config), int(c.seed)) for k, c in cur.items() if k not in base)
    return Comparison(tuple(devs), missing, extra, tuple(miss_m), tuple(extra_m), tols, n,
                      _changes(cur, base))


def chosen_metrics(metrics: str | Sequence[str] | None, every: list[str]) -> list[str]:
    """The metrics to compare: ``every`` for None; a single string is one metric name.

    Raises:
      ValueError: ``metrics`` is empty (a comparison of nothing must not pass) or names a metric
        that neither side holds; the message lists the metrics the results hold.
    """
    if metrics is None:
        return every
    chosen = list(dict.fromkeys([metrics] if isinstance(metrics, str) and metrics else metrics))
    if not chosen:
        raise ValueError(f"metrics is empty: nothing would be compared; give one or more of: "
                         f"{', '.join(every)} (or metrics=None for all)")
    unknown = [m for m in chosen if m not in every]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; the results "
                         f"hold: {', '.join(every)}")
    return chosen


def _changes(cur: Mapping[tuple[str, int], ProbeResult],
             base: Mapping[tuple[str, int], ProbeResult]) -> tuple[str, ...]:
    """For each current-only config: the fields in which it differs from the closest baseline-only
    config (fewest differing fields)."""
    cur_only = {k[0]: r.config for k, r in cur.items() if k[0] not in {b[0] for b in base}}
    base_only = {k[0]: r.config for k, r in base.items() if k[0] not in {c[0] for c in cur}}
    out = []
    for c in cur_only.values():
        best = None
        for b in base_only.values():
            diff = [f"{f}: {b.get(f)!r} -> {c.get(f)!r}" for f in sorted(b.keys() | c.keys())
                    if b.get(f) != c.get(f)]
            if best is None or len(diff) < len(best):
                best = diff
        if best:
            out.append(f"{config_label(c)}: {'; '.join(best)}")
    return tuple(out)
