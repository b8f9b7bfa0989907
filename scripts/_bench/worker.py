"""One system on one workload in a fresh process: end-to-end time and peak RSS.

Usage (the harness runs it; printing one JSON line on stdout)::

    python -m _bench.worker run SYSTEM WORKLOAD [--quick] [--in-scan]
    python -m _bench.worker compile DEPTH WIDTH BATCH

``run`` times, from the top of this module (interpreter started, nothing imported), the import of
the system and its first call (compilation included): ``e2e_s``. Peak RSS is the process's
``VmHWM`` (``/proc/self/status``) after the call: the high-water mark of resident memory over
the whole program (see :func:`_peak`); ``baseline_rss`` is the resident memory (``/proc/self/status``
VmRSS) just before the call, after the imports and the JAX backend's start.

``--in-scan`` (initdiag only) passes ``draw_weights="in_scan"`` instead of the automatic plan.
``--cache DIR`` (initdiag only) turns on the persistent compilation cache in DIR
(``INITDIAG_CACHE_DIR=DIR``, :func:`initdiag.enable_cache`, as ``initdiag report`` does): an
empty DIR is a cold start, a DIR a previous run filled is a warm one. For a sweep workload
initdiag's end to end includes the tidy frame (``SweepResult.to_frame``), as a user would
take it.

``compile`` probes one config (tanh, glorot_normal) at the given shape: first call, then three
more; ``compile_s`` = first − median of the rest.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _rss() -> int:
    return _status("VmRSS")


def _peak() -> int:
    """Peak resident memory of this program (bytes): VmHWM, the high-water mark of this address
    space. ``ru_maxrss`` is not used: Linux carries the parent's RSS at fork across ``exec`` into
    it, so a child of a big parent reports the parent's size."""
    return _status("VmHWM")


def run(system: str, key: str, quick: bool, in_scan: bool = False,
        cache: str | None = None) -> dict:
    from _bench import systems
    from _bench.workloads import workloads

    wl = workloads(quick)[key]
    if system == "torch":
        from _bench import peer_torch  # noqa: F401  (the import is part of end to end)
    else:
        import os

        import jax
        if cache is not None:
            os.environ["INITDIAG_CACHE_DIR"] = cache
        import initdiag  # noqa: F401
        if cache is not None:
            initdiag.enable_cache()
        jax.devices()
    t_import = time.perf_counter() - T0
    baseline = _rss()
    t1 = time.perf_counter()
    if in_scan:
        import initdiag
        results = [initdiag.probe(a, i, depth=wl.depth, width=wl.width, batch=wl.batch, seed=0,
                                  remat=True if wl.remat else None, draw_weights="in_scan")
                   for a, i in wl.configs]
    else:
        results = systems.run(system, wl)
        if system == "initdiag" and wl.sweep:
            initdiag.SweepResult(results).to_frame()
    t_first = time.perf_counter() - t1
    out = {"system": system, "workload": key, "import_s": t_import, "first_s": t_first,
           "e2e_s": time.perf_counter() - T0, "baseline_rss": baseline, "peak_rss": _peak()}
    if system == "initdiag":
        mems = [r.meta["memory"] for r in results]
        worst = max(mems, key=lambda m: m["estimate"])
        out["memory"] = {"estimate": worst["estimate"], "remat": worst["remat"],
                         "draw_in_scan": worst["draw_in_scan"], "note": worst["note"],
                         "plans": sorted({(m["remat"], m["draw_in_scan"]) for m in mems})}
    return out


def compile_time(depth: int, width: int, batch: int) -> dict:
    import initdiag

    def call():
        t = time.perf_counter()
        initdiag.probe("tanh", "glorot_normal", depth=depth, width=width, batch=batch, seed=0)
        return time.perf_counter() - t

    first = call()
    steady = statistics.median(call() for _ in range(3))
    return {"depth": depth, "width": width, "batch": batch, "first_s": first, "steady_s": steady,
            "compile_s": first - steady}


def main(argv: list[str]) -> None:
    if argv[0] == "run":
        cache = argv[argv.index("--cache") + 1] if "--cache" in argv else None
        out = run(argv[1], argv[2], "--quick" in argv, "--in-scan" in argv, cache)
    elif argv[0] == "compile":
        out = compile_time(*(int(v) for v in argv[1:4]))
    else:
        raise SystemExit(f"unknown worker command {argv[0]!r}; choose run or compile")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
