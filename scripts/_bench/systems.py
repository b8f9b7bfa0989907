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
            batch: int, rtol: float = 1e-4) -> list[str]:
    """Metrics where ``theirs`` differs from ``ours`` beyond float32 rounding; [] when equal.

    Tolerances: ``rtol`` on every metric; means also get ``atol = rtol * sqrt(var)`` (a mean near
    0 has no relative precision); fractions ``atol = 1 / (B W)`` (saturation, zero) or ``1 / W``
    (dead units): one entry rounded across a threshold; ``unit_spread`` (a fraction of a
    variance, in [0, 1]) ``atol = rtol``: float32 rounding where it is near 0. NaN must match
    NaN.
    """
    bad = []
    for m in METRICS:
        a, b = np.asarray(ours[m], np.float64), np.asarray(theirs[m], np.float64)
        atol = np.zeros_like(a)
        if m in ("preact_mean", "act_mean"):
            var = ours["preact_var" if m == "preact_mean" else "act_var"]
            atol = rtol * np.sqrt(np.asarray(var, np.float64))
        elif m in ("saturation", "zero_frac"):
            atol = atol + 1.0 / (batch * width)
        elif m == "dead_frac":
            atol = atol + 1.0 / width
        elif m == "unit_spread":
            atol = atol + rtol
        if a.shape != b.shape or not np.allclose(b, a, rtol=rtol, atol=atol, equal_nan=True):
            with np.errstate(divide="ignore", invalid="ignore"):
                err = np.nanmax(np.abs(b - a) / np.maximum(np.abs(a), 1e-300))
            bad.append(f"{m} (max relative difference {err:.2e})")
    return bad


#: (activation, init) pairs of the cross-check: healthy configurations, so that float32
#: backprop in torch does not underflow where initdiag's scaled backprop does not.
CHECK_CONFIGS = (("tanh", "glorot_uniform"), ("sigmoid", "glorot_uniform"), ("relu", "he_normal"))


def check_peers(depth: int, width: int, batch: int, seed: int = 0) -> list[dict[str, Any]]:
    """Feed torch's weights to ``initdiag.probe_params`` and the naive loop; compare all metrics.

    Returns one record per configuration with the mismatching metrics of each peer (empty lists
    when equal). The caller aborts the benchmark on any mismatch.
    """
    import initdiag
    import jax.numpy as jnp

    from _bench import peer_torch

    x, g = peer_torch.data(batch, width, seed)
    records = []
    for activation, init in CHECK_CONFIGS:
        probe = peer_torch.Probe(activation, depth, width)
        probe.init(init, seed)
        theirs = probe.stats(x, g)
        ws, bs = probe.weights()
        ours = initdiag.probe_params(weights=ws, biases=bs, x=x.numpy(), activation=activation,
                                     readout=g.numpy())
        ours = {m: ours[m] for m in METRICS}
        loop = naive.stack_stats([jnp.asarray(w) for w in ws], [jnp.asarray(b) for b in bs],
                                 jnp.asarray(x.numpy()), activation, jnp.asarray(g.numpy()))
        records.append({"activation": activation, "init": init, "depth": depth, "width": width,
                        "batch": batch,
                        "torch": compare(ours, theirs, width=width, batch=batch),
                        "naive-jax": compare(ours, loop, width=width, batch=batch)})
    return records
