"""Timing: interleaved repetitions, the matmul ceiling runners timed in the same rounds, the
per-round ratio, standalone matmul rooflines, and a description of the machine."""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from typing import Any, Callable


def interleaved(runners: dict[str, Callable[[], Any]], warmup: int, reps: int,
                on_time: Callable[[str, int, float], None] | None = None) -> dict[str, dict]:
    """Time every runner round-robin (a, b, c, a, b, c, ...): ``warmup`` rounds, then ``reps``.

    Interleaving spreads a shared machine's load drift over every system alike. The first warm-up
    call of each runner is reported as ``first`` (it includes compilation); the statistics are
    over the ``reps`` timed rounds.

    Returns:
      ``{name: {"first": s, "times": [s, ...], "median": s, "min": s, "max": s}}``.
    """
    out = {name: {"first": None, "times": []} for name in runners}
    for rnd in range(warmup + reps):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if rnd == 0:
                out[name]["first"] = dt
            if rnd >= warmup:
                out[name]["times"].append(dt)
            if on_time is not None:
                on_time(name, rnd - warmup, dt)
    for rec in out.values():
        ts = rec["times"]
        rec.update(median=statistics.median(ts), min=min(ts), max=max(ts))
    return out


def round_ratios(numerator: list[float], denominator: list[float]) -> dict[str, Any]:
    """Per-round ratio ``r_i = numerator[i] / denominator[i]`` of two runners' times from the
    same rounds of :func:`interleaved`, and its median, min and max over the rounds.

    With ``numerator`` the matmul ceiling runner's times and ``denominator`` a system's, ``r_i``
    is the system's throughput as a fraction of the ceiling in round ``i`` (both do the same
    FLOPs); the median over rounds is the reported fraction. Pairing times round by round
    cancels load drift slower than a round, and the median drops a round where only one of the
    two was disturbed.
    """
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError(f"need the same number (>= 1) of rounds; got {len(numerator)} and "
                         f"{len(denominator)}")
    r = [n / d for n, d in zip(numerator, denominator)]
    return {"median": statistics.median(r), "min": min(r), "max": max(r), "rounds": r}


@dataclasses.dataclass
class MatmulChain:
    """A matmul ceiling runner: ``dots`` dependent products ``x <- x @ Q`` at ``[B, W] x [W, W]``
    (float32, Q orthogonal so values stay O(1)), ``2 B W^2`` FLOPs each. Calling it runs the
    chain once and returns the final ``x`` (computed: JAX's is blocked on)."""

    name: str
    dots: int
    batch: int
    width: int
    run: Callable[[], Any]
    compile_s: float | None = None
    threads: int | None = None

    @property
    def flops(self) -> float:
        return 2.0 * self.batch * self.width * self.width * self.dots

    def __call__(self) -> Any:
        return self.run()

    def describe(self) -> dict[str, Any]:
        return {"dots": self.dots, "batch": self.batch, "width": self.width,
                "flops": self.flops, "compile_s": self.compile_s, "threads": self.threads}


def orthogonal_data(batch: int, width: int, seed: int = 0):
    """``x ~ N(0, 1)`` ``[B, W]`` and an orthogonal ``Q`` ``[W, W]`` (float32 numpy): the
    chain's start and factor, shared by the JAX and torch runners."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, width)).astype(np.float32)
    q, r = np.linalg.qr(rng.standard_normal((width, width)))
    q = (q * np.sign(np.diag(r))).astype(np.float32)
    return x, q


def jnp_dot_chain(dots: int, batch: int, width: int, seed: int = 0) -> MatmulChain:
    """The ``jnp.dot`` ceiling runner: one jitted ``lax.fori_loop`` over ``dots`` dependent
    ``jnp.dot(x, Q)``, compiled (ahead of time) here, before any timing. As in a compiled scan,
    one call dispatches the whole chain, so per-op dispatch is not counted."""
    import jax
    import jax.numpy as jnp

    x0, q0 = orthogonal_data(batch, width, seed)
    x, q = jnp.asarray(x0), jnp.asarray(q0)

    def chain(x, q):
        return jax.lax.fori_loop(0, dots, lambda i, v: jnp.dot(v, q), x)

    t0 = time.perf_counter()
    compiled = jax.jit(chain).lower(x, q).compile()
    compile_s = time.perf_counter() - t0
    return MatmulChain("jnp.dot", dots, batch, width,
                       lambda: compiled(x, q).block_until_ready(), compile_s=compile_s)


def roofline_jax(batch: int, width: int, reps: int = 30, chain: int = 16) -> float:
    """Standalone GFLOP/s of ``jnp.dot`` at ``[B, W] x [W, W]``: median over ``reps`` timings of
    one jitted chain of ``chain`` dependent dots (``x <- x @ Q``, Q orthogonal so values stay
    O(1)), so that dispatch overhead is not counted, as in a compiled scan.

    Measured once, at the start, not interleaved with the workloads: on a shared machine it
    moves with the load (104-246 GFLOP/s at W=512 within minutes here), so it is reported for
    orientation only; the fractions and targets use :func:`jnp_dot_chain` timed in the same
    rounds as each workload."""
    import jax
    import jax.numpy as jnp

    kx, kw = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (batch, width), jnp.float32)
    q = jax.nn.initializers.orthogonal()(kw, (width, width), jnp.float32)

    @jax.jit
    def f(x, q):
        return jax.lax.fori_loop(0, chain, lambda i, v: jnp.dot(v, q), x)

    f(x, q).block_until_ready()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f(x, q).block_until_ready()
        ts.append((time.perf_counter() - t0) / chain)
    return 2.0 * batch * width * width / statistics.median(ts) / 1e9


def roofline_torch(batch: int, width: int, reps: int = 30, chain: int = 16,
                   threads: int | None = None) -> float:
    """Standalone GFLOP/s of ``torch.matmul`` at ``[B, W] x [W, W]`` with ``threads`` threads:
    median over ``reps`` timings of ``chain`` dependent matmuls, per matmul (default: the torch
    peer's thread count, which is restored afterwards). Like :func:`roofline_jax`, for
    orientation only (the fractions use ``peer_torch.matmul_chain`` in the same rounds)."""
    import torch

    from _bench.peer_torch import THREADS

    torch.set_num_threads(threads or THREADS)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, width, generator=gen)
    q = torch.nn.init.orthogonal_(torch.empty(width, width), generator=gen)
    t_end = time.perf_counter() + 0.5  # warm up the thread pool for half a second
    while time.perf_counter() < t_end:
        torch.matmul(x, q)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        v = x
        for _ in range(chain):
            v = torch.matmul(v, q)
        ts.append((time.perf_counter() - t0) / chain)
    torch.set_num_threads(THREADS)
    return 2.0 * batch * width * width / statistics.median(ts) / 1e9


def machine() -> dict[str, Any]:
    """nproc, CPU model, memory, load average now."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "mem_total_gib": round(mem / 2**30, 1),
            "platform": platform.platform(), "loadavg": list(os.getloadavg())}


def versions() -> dict[str, str]:
    """Versions of the software under test (torch's only if it is installed)."""
    import jax
    import jaxlib
    import numpy

    import initdiag

    out = {"python": platform.python_version(), "initdiag": initdiag.__version__,
           "jax": jax.__version__, "jaxlib": jaxlib.__version__, "numpy": numpy.__version__}
    try:
        import torch
        out["torch"] = torch.__version__
    except ImportError:
        out["torch"] = "not installed"
    return out
