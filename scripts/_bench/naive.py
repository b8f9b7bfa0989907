"""The naive JAX peer: no jit, a Python loop over layers, ``jax.vjp``, numpy reductions.

This is what a JAX user writes in ten minutes: draw the weights layer by layer, run the stack
eagerly (every op dispatched on its own), get ``dL/dh``, ``dL/dx`` and ``dL/dW`` from one
``jax.vjp`` (zero perturbations added to ``h^l`` and ``x^l`` expose their cotangents), and
reduce every statistic in float64 numpy on the host. Definitions: :mod:`_bench.workloads`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from _bench.workloads import CAN_DIE, METRICS, THRESHOLD

PHI = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu}


def _forward(ws, bs, dh, dx, x, phi):
    hs, xs = [], []
    for w, b, eh, ex in zip(ws, bs, dh, dx):
        h = x @ w + b[None, :] + eh
        x = phi(h) + ex
        hs.append(h)
        xs.append(x)
    return hs, xs


def stack_stats(ws, bs, x, activation: str, readout, *, preacts: bool = False):
    """Per-layer statistics (initdiag's names and definitions) of the stack ``ws``, ``bs``.

    Args:
      ws: L weight arrays ``[fan_in, fan_out]`` (``h = x @ W + b``).
      bs: L bias arrays ``[fan_out]``.
      x: input ``[B, n_0]``; readout: g ``[B, n_L]`` of the projection loss.
      activation: "tanh", "sigmoid" or "relu".
      preacts: also return each layer's pre-activation ``h^l`` (float32 ``[B, n_l]``), for the
        peers' check (:func:`_bench.systems.check_peers`); the timed path never asks for it.

    Returns:
      float64 arrays of length L, one per name in :data:`_bench.workloads.METRICS`; with
      ``preacts``, the pair ``(stats, [h^1, ..., h^L])``.
    """
    phi = PHI[activation]
    batch = x.shape[0]
    zeros = [jnp.zeros((batch, w.shape[1]), jnp.float32) for w in ws]

    def loss(ws, dh, dx):
        hs, xs = _forward(ws, bs, dh, dx, x, phi)
        return jnp.sum(readout * xs[-1]) / batch, (hs, xs)

    _, vjp, (hs, xs) = jax.vjp(loss, ws, zeros, zeros, has_aux=True)
    gw, gh, gx = vjp(jnp.ones((), jnp.float32))
    out: dict[str, list[float]] = {m: [] for m in METRICS}
    nan = float("nan")
    for w, h, a, g_h, g_x, g_w in zip(ws, hs, xs, gh, gx, gw):
        h, a = np.asarray(h, np.float64), np.asarray(a, np.float64)
        g_h, g_x, g_w = (np.asarray(v, np.float64) for v in (g_h, g_x, g_w))
        w = np.asarray(w, np.float64)
        out["preact_mean"].append(h.mean())
        out["preact_var"].append(h.var())
        out["act_mean"].append(a.mean())
        out["act_var"].append(a.var())
        total = a.var()  # unit_spread: mean_i Var_j x_ij / Var_ij x_ij, NaN where x is constant
        out["unit_spread"].append(a.var(axis=1).mean() / total if total > 0 else nan)
        if activation == "tanh":
            out["saturation"].append(np.mean(np.abs(a) > THRESHOLD))
        elif activation == "sigmoid":
            out["saturation"].append(np.mean((a < 1 - THRESHOLD) | (a > THRESHOLD)))
        else:
            out["saturation"].append(nan)
        if activation in CAN_DIE:
            zero = a == 0
            out["zero_frac"].append(zero.mean())
            out["dead_frac"].append(zero.all(axis=0).mean())
        else:
            out["zero_frac"].append(nan)
            out["dead_frac"].append(nan)
        out["grad_preact_rms"].append(np.sqrt(np.mean(g_h**2)))
        out["grad_act_rms"].append(np.sqrt(np.mean(g_x**2)))
        out["grad_weight_norm"].append(np.linalg.norm(g_w))
        out["weight_norm"].append(np.linalg.norm(w))
    res = {k: np.asarray(v, np.float64) for k, v in out.items() if k != "grad_weight_ratio"}
    with np.errstate(divide="ignore", invalid="ignore"):
        res["grad_weight_ratio"] = np.where(res["weight_norm"] > 0,
                                            res["grad_weight_norm"] / res["weight_norm"], np.nan)
    if preacts:
        return res, [np.asarray(h, np.float32) for h in hs]
    return res


def draw(init: str, depth: int, width: int, batch: int, seed: int):
    """Weights (one jax initializer call per layer), zero biases, input and readout."""
    import initdiag

    fn = initdiag.initializer(init)
    key = jax.random.PRNGKey(seed)
    kx, kg, kw = jax.random.split(key, 3)
    ws = [fn(jax.random.fold_in(kw, l), (width, width), jnp.float32) for l in range(depth)]
    bs = [jnp.zeros((width,), jnp.float32) for _ in range(depth)]
    x = jax.random.normal(kx, (batch, width), jnp.float32)
    g = jax.random.normal(kg, (batch, width), jnp.float32)
    return ws, bs, x, g


def run(workload, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Every configuration of ``workload``: draw, probe, reduce. One stats dict per config."""
    results = []
    for activation, init in workload.configs:
        ws, bs, x, g = draw(init, workload.depth, workload.width, workload.batch, seed)
        results.append(stack_stats(ws, bs, x, activation, g))
    return results
