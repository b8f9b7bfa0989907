"""Timing: interleaved repetitions, matmul rooflines, and a description of the machine."""

from __future__ import annotations

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


def roofline_jax(batch: int, width: int, reps: int = 30, chain: int = 16) -> float:
    """GFLOP/s of ``jnp.dot`` at ``[B, W] x [W, W]``: median over ``reps`` timings of one jitted
    chain of ``chain`` dependent dots (``x <- x @ Q``, Q orthogonal so values stay O(1)),
    so that dispatch overhead is not counted, as in a compiled scan."""
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
    """GFLOP/s of ``torch.matmul`` at ``[B, W] x [W, W]`` with ``threads`` threads: median over
    ``reps`` timings of ``chain`` dependent matmuls, per matmul (default: the torch peer's
    thread count, which is restored afterwards)."""
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
