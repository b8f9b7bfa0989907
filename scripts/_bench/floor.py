"""The floor: the least work any probe of a workload must do, timed beside the systems.

Every system that measures a workload's gradient statistics from the weights initdiag draws
computes, for each configuration, at least:

* the weights: one draw per initializer (a sweep's activations share it, as
  :func:`initdiag.sweep` shares it), the bits ``jax.nn.initializers`` gives, drawn by
  :func:`initdiag.nn.stacks.init_stack` (initdiag's fastest way to those bits: 1.7x faster than
  jax's own threefry on this CPU, whose ``rbg`` and ``unsafe_rbg`` keys are no faster);
* the three matmuls of each layer and phi: forward ``h = x W``, ``x = phi(h)`` (every layer's
  input kept); backward ``g_h = phi'(h) * g`` (``jax.vjp`` of phi), ``g <- g_h W^T`` and
  ``||x^T g_h||^2`` (so the third product is computed, not removed as dead code).

Nothing else: no bias, no statistic, no rescaling. The pass is one jitted function per
activation, compiled ahead of time, before any timing (like the ``jnp.dot`` ceiling). It is a
reference minimal implementation, not a proven lower bound: it draws, then computes (a system
could overlap the two), and it computes layer 1's ``g_h W^T``, which no statistic needs (one of
the ``3 L`` products).

Two runners: ``floor`` (the pass over weights drawn once, before timing) and ``floor + draw``
(each call draws the weights, then runs the pass). Timed in the same rounds as the ``jnp.dot``
ceiling, their fraction of it says what a probe doing only this reaches on this machine: a
steady-state target above ``floor + draw``'s fraction asks more than this minimal pass does.
"""

from __future__ import annotations

import time
from typing import Any, Callable

def minimal_pass(activation: str) -> Callable:
    """``f(ws [L, W, W], x0 [B, W], g0 [B, W]) -> ||x^T g_h||^2 [L]``: the pass of the module
    docstring for ``activation``, not yet jitted."""
    import jax
    import jax.numpy as jnp

    from _bench.naive import PHI

    phi = PHI[activation]

    def run(ws, x0, g0):
        def forward(x, w):
            h = x @ w
            return phi(h), (x, h)

        _, (inputs, pre) = jax.lax.scan(forward, x0, ws)

        def backward(g, layer):
            w, x, h = layer
            _, vjp = jax.vjp(phi, h)
            (g_h,) = vjp(g)
            dw = x.T @ g_h
            return g_h @ w.T, jnp.sum(dw * dw)

        _, sq = jax.lax.scan(backward, g0, (ws, inputs, pre), reverse=True)
        return sq

    return run


class Floor:
    """The two floor runners of a workload (see the module docstring).

    Built from the workload's configurations, depth, width and batch, with ``seed``; compiles
    each activation's pass and draws every initializer's weights once (for ``floor``) before any
    timing. ``floor()`` runs the passes over those weights; ``with_draw()`` draws again first.
    Both block until the result is computed and return the per-layer sums.
    """

    def __init__(self, workload: Any, seed: int = 0):
        import jax
        import jax.numpy as jnp

        import initdiag
        from initdiag.nn.stacks import init_stack
        from initdiag.probe import stack_spec

        self.configs = list(workload.configs)
        self.inits = list(dict.fromkeys(i for _, i in self.configs))  # one draw each
        self._specs = {i: stack_spec(initdiag.ProbeConfig(
            activation="tanh", init=i, depth=workload.depth, width=workload.width,
            batch=workload.batch)) for i in self.inits}
        self._init_stack = init_stack
        self.seed = seed
        k0, k1 = jax.random.split(jax.random.key(seed))
        self.x0 = jax.random.normal(k0, (workload.batch, workload.width), jnp.float32)
        self.g0 = jax.random.normal(k1, (workload.batch, workload.width), jnp.float32) \
            / workload.batch
        self.weights = self.draw()
        t0 = time.perf_counter()
        w = self.weights[self.inits[0]]
        self._pass = {a: jax.jit(minimal_pass(a)).lower(w, self.x0, self.g0).compile()
                      for a in dict.fromkeys(a for a, _ in self.configs)}
        self.compile_s = time.perf_counter() - t0

    def draw(self) -> dict[str, Any]:
        """Every initializer's weights ``[L, W, W]``, drawn now (blocked on)."""
        return {init: self.draw_one(init) for init in self.inits}

    def _passes(self, weights: dict[str, Any]) -> list[Any]:
        import jax

        return [jax.block_until_ready(self._pass[a](weights[i], self.x0, self.g0))
                for a, i in self.configs]

    def floor(self) -> list[Any]:
        return self._passes(self.weights)

    def with_draw(self) -> list[Any]:
        """Draw each initializer's weights, then run its configurations' passes (a sweep's
        order: the activations sharing a draw run right after it); the results in the order of
        the configurations, as :meth:`floor` returns them."""
        import jax

        out: list[Any] = [None] * len(self.configs)
        for init in self.inits:
            ws = self.draw_one(init)
            for n, (a, i) in enumerate(self.configs):
                if i == init:
                    out[n] = jax.block_until_ready(self._pass[a](ws, self.x0, self.g0))
        return out

    def draw_one(self, init: str) -> Any:
        """``init``'s weights ``[L, W, W]``, drawn now (blocked on), with BLAS limited to one
        thread as :func:`initdiag.probe.prepare` draws them (orthogonal's QR)."""
        import jax

        from initdiag.engine.threads import single_threaded_blas

        with single_threaded_blas():
            (ws, _), = self._init_stack(self.seed, self._specs[init])
            return jax.block_until_ready(ws)
