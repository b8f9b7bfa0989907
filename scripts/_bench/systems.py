"""The three systems behind one interface, and the check that they compute the same numbers.

``run(system, workload) -> list of per-config stats`` for ``system`` in :data:`SYSTEMS`:

* ``initdiag``: the public API as a user calls it: ``initdiag.sweep(...)`` for a sweep workload,
  ``initdiag.probe(...)`` otherwise (``remat=True`` where the workload says so);
* ``torch``: :mod:`_bench.peer_torch` (imported on first use: the only torch import);
* ``naive-jax``: :mod:`_bench.naive`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from _bench import naive
from _bench.workloads import METRICS, Workload

SYSTEMS = ("initdiag", "torch", "naive-jax")


def run_initdiag(workload: Workload, seed: int = 0) -> list[Any]:
    """initdiag's results (ProbeResult objects) for every configuration of ``workload``."""
    import initdiag

    if workload.sweep:
        return list(initdiag.sweep(activations=list(workload.activations),
                                   inits=list(workload.inits), depths=[workload.depth],
                                   widths=[workload.width], seeds=[seed], batch=workload.batch))
    return [initdiag.probe(a, i, depth=workload.depth, width=workload.width,
                           batch=workload.batch, seed=seed,
                           remat=True if workload.remat else None)
            for a, i in workload.configs]


def run(system: str, workload: Workload, seed: int = 0) -> list[Any]:
    """Run ``system`` on every configuration of ``workload``."""
    if system == "initdiag":
        return run_initdiag(workload, seed)
    if system == "torch":
        from _bench import peer_torch
        return peer_torch.run(workload, seed)
    if system == "naive-jax":
        return naive.run(workload, seed)
    raise ValueError(f"unknown system {system!r}; choose one of {', '.join(SYSTEMS)}")


def compare(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray], *, width: int,
            batch: int, rtol: float = 1e-4, layer_rtol: dict[str, np.ndarray] | None = None,
            flips: np.ndarray | None = None) -> list[str]:
    """Metrics where ``theirs`` differs from ``ours`` beyond float32 rounding; [] when equal.

    Tolerances: ``rtol`` on every metric; means also get ``atol = rtol * sqrt(var)`` (a mean near
    0 has no relative precision); fractions ``atol = 1 / (B W)`` (saturation, zero) or ``1 / W``
    (dead units): one entry rounded across a threshold; ``unit_spread`` (a fraction of a
    variance, in [0, 1]) ``atol = rtol``: float32 rounding where it is near 0. NaN must match
    NaN.

    ``layer_rtol`` (metric -> per-layer rtol) replaces ``rtol`` for the layers a ReLU mask flip
    can reach and ``flips`` (per-layer flip counts) widens the fractions' ``atol`` to that many
    entries / units; both come from :func:`flip_tolerances`, never from a caller's guess.
    """
    bad = []
    for m in METRICS:
        a, b = np.asarray(ours[m], np.float64), np.asarray(theirs[m], np.float64)
        rt = np.full(a.shape, rtol) if layer_rtol is None or m not in layer_rtol \
            else np.asarray(layer_rtol[m], np.float64)
        n = np.ones(a.shape) if flips is None else np.maximum(1, np.asarray(flips, np.float64))
        atol = np.zeros_like(a)
        if m in ("preact_mean", "act_mean"):
            var = ours["preact_var" if m == "preact_mean" else "act_var"]
            atol = rtol * np.sqrt(np.asarray(var, np.float64))
        elif m == "saturation":
            atol = atol + 1.0 / (batch * width)
        elif m == "zero_frac":
            atol = atol + n / (batch * width)
        elif m == "dead_frac":
            atol = atol + n / width
        elif m == "unit_spread":
            atol = atol + rtol
        if a.shape != b.shape or not _close(a, b, rt, atol):
            with np.errstate(divide="ignore", invalid="ignore"):
                err = np.nanmax(np.abs(b - a) / np.maximum(np.abs(a), 1e-300))
            bad.append(f"{m} (max relative difference {err:.2e})")
    return bad


def _close(a: np.ndarray, b: np.ndarray, rtol: np.ndarray, atol: np.ndarray) -> bool:
    """``np.allclose(b, a, rtol, atol, equal_nan=True)`` with per-entry ``rtol``."""
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore"):
        ok = (a == b) | (np.abs(b - a) <= atol + rtol * np.abs(a))
    return bool(np.all(ok | both_nan))


# --- ReLU mask flips --------------------------------------------------------------------------
#
# Two float32 evaluations of h = x W + b in different summation orders (torch's BLAS, XLA's dot)
# differ by rounding; where h is within that rounding of 0 the two can get opposite signs, so the
# ReLU masks differ in that entry. That is float32 arithmetic, not a definition difference, but
# it is visible: the entry's dL/dh is g in one system and 0 in the other. The check counts the
# flips, proves each is within rounding, and compares only the statistics a flip can reach at a
# tolerance set by the flip count; see :func:`flip_tolerances`.

#: u, the unit roundoff of float32 and float64.
U32, U64 = 2.0**-24, 2.0**-53
#: (b): at most this fraction of a layer's B W entries may flip.
MAX_FLIP_FRACTION = 1e-4
#: rtol allowed per flip on the statistics it reaches. One flip changes one of the B W entries of
#: dL/dh^l by its full value; its relative effect on a norm of dL/dh, dL/dx or dL/dW at layers
#: <= l is of order 1 / sqrt(B W) (a row of B rows, an entry of its W): 3.9e-3 at B = W = 256,
#: where the one flip measured moves grad_weight_norm by 1.4e-3. 1e-2 is 2.5x that order.
FLIP_RTOL = 1e-2
#: At most this many flips may reach one statistic (so a loosened rtol is at most 5e-2).
MAX_FLIPS_REACHING = 5
#: Affected statistics of a flip at layer l (1-based): these at layers <= l ...
GRAD_TO_FLIP = ("grad_preact_rms", "grad_weight_norm", "grad_weight_ratio")
#: ... and these at layers < l (dL/dx^l depends on the masks above l only).
GRAD_BELOW_FLIP = ("grad_act_rms",)
#: The numpy activation giving layer l + 1's input from h^l, for the mask-flip analysis.
PHI_NP = {"relu": lambda h: np.maximum(h, 0)}


def gamma(n: int, u: float) -> float:
    """Higham's ``gamma_n = n u / (1 - n u)``."""
    return n * u / (1 - n * u)


def rounding_bound(x: np.ndarray, w: np.ndarray, b: float) -> float:
    """Bound on ``|fl32(x . w + b) - (x . w + b)|`` for any order of evaluation, plus the
    float64 error of evaluating the exact value in numpy.

    ``x . w + b`` is a sum of n + 1 terms (n = len(x) products and b); in float32 each term goes
    through at most n + 1 roundings (its product and n additions) in any summation order, fused
    multiply-adds or not, so ``|fl32(s) - s| <= gamma_{n+1} (sum_k |x_k w_k| + |b|)`` (Higham,
    Accuracy and Stability of Numerical Algorithms, 2nd ed., Lemma 3.1 and eq. (3.5));
    the float64 evaluation adds ``gamma_{n+1}(u64)`` times the same sum.
    """
    n = len(x)
    scale = float(np.abs(np.asarray(x, np.float64)) @ np.abs(np.asarray(w, np.float64))) + abs(b)
    return (gamma(n + 1, U32) + gamma(n + 1, U64)) * scale


def mask_flips(ws, bs, x, activation: str, h_ref, h_peer, *, max_listed: int = 10
               ) -> list[dict[str, Any]]:
    """Entries where the ReLU masks ``h > 0`` of two float32 runs of the same stack differ.

    Args:
      ws, bs, x: the shared weights ``[fan_in, fan_out]``, biases and input.
      activation: a key of :data:`PHI_NP`.
      h_ref, h_peer: each run's pre-activations ``h^1 .. h^L`` (float32 ``[B, W]``).

    Returns one record per layer with flips: ``layer`` (1-based), ``count``, ``within`` (every
    flip is within float32 rounding) and up to ``max_listed`` ``entries``, each with its row,
    unit, both runs' h, each run's float64 ``h64`` (``x . w + b`` from that run's own float32
    input ``phi(h^{l-1})``) and the :func:`rounding_bound`. A flip is within rounding when, on
    both sides, ``|h64| <= bound`` (the exact value is within float32 rounding of 0: its sign
    depends on the summation order) and ``|h - h64| <= bound`` (the float32 value is a rounding
    of that exact value). Every flipped entry is tested; entries beyond ``max_listed`` are only
    counted, the first failing ones are listed.
    """
    phi = PHI_NP[activation]
    out = []
    x_ref = x_peer = np.asarray(x, np.float32)
    for l, (w, b, hr, hp) in enumerate(zip(ws, bs, h_ref, h_peer)):
        hr, hp = np.asarray(hr, np.float32), np.asarray(hp, np.float32)
        w, b = np.asarray(w, np.float32), np.asarray(b, np.float32)
        idx = np.argwhere((hr > 0) != (hp > 0))
        if len(idx):
            entries = []
            for i, j in idx:
                e = {"row": int(i), "unit": int(j), "h_ref": float(hr[i, j]),
                     "h_peer": float(hp[i, j])}
                ok = True
                for side, xin, h in (("ref", x_ref, hr), ("peer", x_peer, hp)):
                    h64 = float(np.asarray(xin[i], np.float64) @ np.asarray(w[:, j], np.float64)
                                + float(b[j]))
                    bound = rounding_bound(xin[i], w[:, j], float(b[j]))
                    e[f"h64_{side}"], e[f"bound_{side}"] = h64, bound
                    ok &= abs(h64) <= bound and abs(float(h[i, j]) - h64) <= bound
                e["within"] = bool(ok)
                entries.append(e)
            out.append({"layer": l + 1, "count": len(idx),
                        "within": all(e["within"] for e in entries),
                        "max_abs_h": max(max(abs(e["h_ref"]), abs(e["h_peer"])) for e in entries),
                        "min_bound": min(min(e["bound_ref"], e["bound_peer"]) for e in entries),
                        "entries": sorted(entries, key=lambda e: e["within"])[:max_listed]})
        x_ref, x_peer = phi(hr), phi(hp)
    return out


def flip_tolerances(flips: list[dict[str, Any]], depth: int, rtol: float = 1e-4
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-layer rtol of the statistics the flips reach, and the per-layer flip counts.

    A flip at layer l changes one entry of the mask of h^l, so one entry of dL/dh^l: the
    gradient statistics ``GRAD_TO_FLIP`` of layers <= l and ``GRAD_BELOW_FLIP`` of layers < l.
    Forward statistics are not loosened: ReLU is continuous, so a flip moves ``x^l`` by at most
    the flipped ``|h|`` (within :func:`rounding_bound` of 0); only the zero / dead fractions of
    layer l count the flipped entries (their atol becomes that many entries / units). A
    statistic reached by k flips is compared at ``max(rtol, k * FLIP_RTOL)``.
    """
    counts = np.zeros(depth)
    for f in flips:
        counts[f["layer"] - 1] += f["count"]
    at_or_above = np.cumsum(counts[::-1])[::-1]       # flips at layers >= l
    above = np.concatenate([at_or_above[1:], [0.0]])  # flips at layers > l
    layer_rtol = {m: np.maximum(rtol, at_or_above * FLIP_RTOL) for m in GRAD_TO_FLIP}
    layer_rtol.update({m: np.maximum(rtol, above * FLIP_RTOL) for m in GRAD_BELOW_FLIP})
    return layer_rtol, counts


def _layers(mask: np.ndarray) -> str:
    ls = np.flatnonzero(mask) + 1
    return "none" if not len(ls) else f"{ls[0]}" if len(ls) == 1 else f"{ls[0]}-{ls[-1]}"


def compare_flips(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray],
                  flips: list[dict[str, Any]], *, width: int, batch: int, rtol: float = 1e-4,
                  peer: str = "torch", ref: str = "the naive JAX loop"
                  ) -> tuple[list[str], str | None]:
    """:func:`compare` for a ReLU-family stack whose masks differ in ``flips``
    (:func:`mask_flips`): ``(mismatches, note)``.

    No flips: the plain comparison, no note. Flips are accepted, and the statistics they reach
    compared at the loosened rtol of :func:`flip_tolerances`, only when (a) every flip is within
    float32 rounding of 0, (b) at most ``MAX_FLIP_FRACTION`` of any layer's entries flip and at
    most ``MAX_FLIPS_REACHING`` flips reach any statistic; every statistic a flip cannot reach
    stays at ``rtol``. Otherwise the flips are mismatches themselves (and every metric is
    compared at ``rtol``). The note says what was loosened, where, by how much, and the largest
    difference found there.
    """
    depth = len(np.asarray(ours[METRICS[0]]))
    if not flips:
        return compare(ours, theirs, width=width, batch=batch, rtol=rtol), None
    bad = []
    for f in flips:
        if not f["within"]:
            e = f["entries"][0]
            bad.append(f"ReLU mask flip at layer {f['layer']} (row {e['row']}, unit {e['unit']})"
                       f" not within float32 rounding of 0: {peer} h = {e['h_peer']:.3g}, ref h "
                       f"= {e['h_ref']:.3g}, float64 {e['h64_peer']:.3g} / {e['h64_ref']:.3g}, "
                       f"bound {min(e['bound_peer'], e['bound_ref']):.2g}")
        if f["count"] > MAX_FLIP_FRACTION * batch * width:
            bad.append(f"{f['count']} ReLU mask flips at layer {f['layer']}: "
                       f"{f['count'] / (batch * width):.1e} of its entries > "
                       f"{MAX_FLIP_FRACTION:.0e}")
    total = sum(f["count"] for f in flips)
    if total > MAX_FLIPS_REACHING:
        bad.append(f"{total} ReLU mask flips reach layer 1's gradient statistics > "
                   f"{MAX_FLIPS_REACHING}")
    if bad:
        return bad + compare(ours, theirs, width=width, batch=batch, rtol=rtol), None
    layer_rtol, counts = flip_tolerances(flips, depth, rtol)
    bad = compare(ours, theirs, width=width, batch=batch, rtol=rtol, layer_rtol=layer_rtol,
                  flips=counts)
    worst = 0.0
    for m, rt in layer_rtol.items():
        sel = rt > rtol
        a, b = np.asarray(ours[m], np.float64)[sel], np.asarray(theirs[m], np.float64)[sel]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.abs(b - a) / np.abs(a)
        if np.any(np.isfinite(r)):
            worst = max(worst, float(np.nanmax(np.where(np.isfinite(r), r, np.nan))))
    where = "; ".join(f"{f['count']} at layer {f['layer']} (|h| <= {f['max_abs_h']:.1e}, float32 "
                      f"rounding bound {f['min_bound']:.1e})" for f in flips)
    loose = sorted(set(np.round(np.concatenate([rt[rt > rtol] for rt in layer_rtol.values()]),
                                12)))
    g = layer_rtol[GRAD_TO_FLIP[0]] > rtol
    ga = layer_rtol[GRAD_BELOW_FLIP[0]] > rtol
    note = (f"{total} ReLU mask flip{'s' * (total > 1)} between {peer} and {ref}: {where}, "
            f"within float32 rounding of 0; gradient statistics of layers {_layers(g)} "
            f"(grad_act_rms: {_layers(ga)}) compared at rtol "
            f"{'/'.join(f'{v:.0e}' for v in loose)} (largest difference there {worst:.1e}), the "
            f"zero/dead fractions of the flipped layers allowing the flipped entries; every other "
            f"statistic at rtol {rtol:.0e}")
    return bad, note


#: (activation, init) pairs of the cross-check: healthy configurations, so that float32
#: backprop in torch does not underflow where initdiag's scaled backprop does not.
CHECK_CONFIGS = (("tanh", "glorot_uniform"), ("sigmoid", "glorot_uniform"), ("relu", "he_normal"))


def check_peers(depth: int, width: int, batch: int, seed: int = 0) -> list[dict[str, Any]]:
    """Feed torch's weights to ``initdiag.probe_params`` and the naive loop; compare all metrics.

    Returns one record per configuration with the mismatching metrics of each peer (empty lists
    when equal). The caller aborts the benchmark on any mismatch. For a ReLU-family activation
    both torch and the naive loop also keep every pre-activation (check mode, outside the timed
    path); torch's ReLU masks are compared with the naive loop's (which matches initdiag to
    float32 rounding, and is initdiag's side here) and torch's statistics go through
    :func:`compare_flips`: the record's ``flips`` lists the mask flips and ``note`` says which
    statistics were compared at which tolerance because of them (None when there are none).
    """
    import initdiag
    import jax.numpy as jnp

    from _bench import peer_torch

    x, g = peer_torch.data(batch, width, seed)
    records = []
    for activation, init in CHECK_CONFIGS:
        relu_family = activation in PHI_NP
        probe = peer_torch.Probe(activation, depth, width, keep_preacts=relu_family)
        probe.init(init, seed)
        theirs = probe.stats(x, g)
        ws, bs = probe.weights()
        ours = initdiag.probe_params(weights=ws, biases=bs, x=x.numpy(), activation=activation,
                                     readout=g.numpy())
        ours = {m: ours[m] for m in METRICS}
        loop = naive.stack_stats([jnp.asarray(w) for w in ws], [jnp.asarray(b) for b in bs],
                                 jnp.asarray(x.numpy()), activation, jnp.asarray(g.numpy()),
                                 preacts=relu_family)
        flips, note = [], None
        if relu_family:
            loop, h_loop = loop
            flips = mask_flips(ws, bs, x.numpy(), activation, h_loop, probe.preacts)
            bad, note = compare_flips(ours, theirs, flips, width=width, batch=batch)
        else:
            bad = compare(ours, theirs, width=width, batch=batch)
        records.append({"activation": activation, "init": init, "depth": depth, "width": width,
                        "batch": batch, "torch": bad,
                        "naive-jax": compare(ours, loop, width=width, batch=batch),
                        "flips": flips, "note": note})
    return records
