"""``scripts/bench``: time initdiag, the torch-hooks peer and a naive JAX loop side by side.

Writes ``bench.md`` and ``bench.json`` (atomically) to ``--out`` (default ``reports/bench``; with
``--quick``, a temporary folder, so a smoke run never overwrites the committed table) and prints
the markdown. See :mod:`_bench` for the pieces and ``reports/bench/bench.md`` for the definitions.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import floor, measure, render, systems
from _bench.workloads import STANDARD_INITIALIZERS, flat_depths, workloads

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("a", "b", "c", "d", "flat", "draw", "report", "models", "train")
#: Issue 5: "median of >= 5 after warm-up"; fewer repetitions only with --quick.
MIN_REPS = 5
#: The naive loop is skipped where it would take longer than this (issue: "> 2 min").
NAIVE_LIMIT_S = 120.0


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "scripts"),
                                                      env.get("PYTHONPATH")]))
    return env


def _worker(*args: str) -> dict:
    cmd = [sys.executable, "-m", "_bench.worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _skips(key: str, wl, naive_c_s: float | None) -> dict[str, str]:
    """Systems not run on a workload, with the reason printed in the table."""
    if key != "d":
        return {}
    gib = wl.depth * wl.width * wl.width * 4 / 2**30
    est = f"; (c) took {naive_c_s:.0f} s, so ~{10 * naive_c_s:.0f} s" if naive_c_s else ""
    return {
        "torch": f"nn.Sequential holds all {wl.depth} weights and their .grad ({2 * gib:.1f} GiB"
                 + (", over the 2 GiB target" if 2 * gib > 2 else "") + ") and forward hooks fire again under "
                 "torch.utils.checkpoint's recomputation: not written",
        "naive-jax": f"no remat in a naive loop: weights, dL/dW and activations of {wl.depth} "
                     f"layers (> {2 * gib:.1f} GiB){est}",
    }


#: Order of the runners in each round: each matmul ceiling runner right after the system it is
#: compared with most (jnp.dot after initdiag, torch.mm before torch), so the times paired in a
#: round's ratio are close in time; the floors (:mod:`_bench.floor`) right after jnp.dot.
ROUND_ORDER = ("initdiag", "jnp.dot", "floor + draw", "floor", "torch.mm", "torch", "naive-jax")
FLOORS = ("floor + draw", "floor")
#: How "% jnp.dot" / "% torch.mm" are computed from the rounds (stored in bench.json).
RATIO_METHOD = ("median over the timed rounds i of t(ceiling runner, round i) / t(system, "
                "round i); both do the workload's FLOPs (3 L configs [B,W]x[W,W] products)")


def matmul_runners(wl) -> tuple[dict[str, measure.MatmulChain], dict[str, str]]:
    """The matmul ceiling runners of a workload (``jnp.dot``; ``torch.mm`` when torch is
    installed), each performing exactly ``wl.matmuls`` products, ``wl.flops`` FLOPs; and the
    reasons for those not built."""
    runners = {"jnp.dot": measure.jnp_dot_chain(wl.matmuls, wl.batch, wl.width)}
    skipped = {}
    if importlib.util.find_spec("torch") is None:
        skipped["torch.mm"] = "torch not installed"
    else:
        from _bench import peer_torch
        runners["torch.mm"] = peer_torch.matmul_chain(wl.matmuls, wl.batch, wl.width)
    for r in runners.values():
        assert r.flops == wl.flops, (r.name, r.flops, wl.flops)
    return runners, skipped


def _floor_skip(wl) -> str | None:
    """Why the floors are not run on a workload, or None."""
    if wl.remat:
        gib = wl.depth * wl.width * wl.width * 4 / 2**30
        return (f"the floor keeps every layer's weights and inputs ({gib:.1f} GiB of weights): "
                "not the remat workload's memory regime")
    return None


def _ceiling_fractions(timed: dict, mm: dict, times: list[float]) -> dict:
    """A runner's fraction of each matmul ceiling timed beside it (interleaved: the per-round
    ratio t(ceiling)_i / t(runner)_i, its median, min, max and rounds); None without it."""
    out: dict = {}
    for name, field in (("jnp.dot", "frac_jnp_dot"), ("torch.mm", "frac_torch_mm")):
        if name in mm:
            r = measure.round_ratios(timed[name]["times"], times)
            out.update({field: r["median"], field + "_min": r["min"], field + "_max": r["max"],
                        field + "_rounds": r["rounds"]})
        else:
            out[field] = None
    return out


def bench_workload(key: str, wl, args, roof: dict, naive_c_s: float | None) -> dict:
    skip = _skips(key, wl, naive_c_s)
    if key == "c" and naive_c_s is not None and naive_c_s > NAIVE_LIMIT_S:
        skip["naive-jax"] = f"one pass took {naive_c_s:.0f} s > {NAIVE_LIMIT_S:.0f} s"
    run_systems = [s for s in systems.SYSTEMS if s not in skip]
    log(f"({key}) {wl.shape()}, {len(wl.configs)} configs: {', '.join(run_systems)}; matmul "
        f"ceiling: {wl.matmuls} dependent [{wl.batch},{wl.width}]x[{wl.width},{wl.width}]")
    mm, mm_skip = matmul_runners(wl)
    runners = {s: (lambda s=s: systems.run(s, wl)) for s in run_systems}
    runners.update(mm)
    floor_skip = _floor_skip(wl)
    fl = None
    if floor_skip is None:
        fl = floor.Floor(wl)
        runners.update({"floor + draw": fl.with_draw, "floor": fl.floor})
    runners = {name: runners[name] for name in ROUND_ORDER if name in runners}
    timed = measure.interleaved(
        runners, args.warmup, args.reps,
        on_time=lambda s, i, dt: log(f"  ({key}) {s} {'warm-up' if i < 0 else f'rep {i + 1}'}: "
                                     f"{dt:.3f} s"))
    out = {"title": wl.title, "shape": wl.shape(), "configs": len(wl.configs),
           "depth": wl.depth, "width": wl.width, "batch": wl.batch, "flops": wl.flops,
           "remat": wl.remat, "round_order": list(runners), "systems": {}, "matmul": {},
           "floor": {}}
    for name in FLOORS:
        if fl is None:
            out["floor"][name] = {"status": "skipped", "reason": floor_skip}
            continue
        t = timed[name]
        out["floor"][name] = {"status": "ok", "median_s": t["median"], "min_s": t["min"],
                              "max_s": t["max"], "times": t["times"], "first_s": t["first"],
                              "compile_s": fl.compile_s, "gflops": wl.flops / t["median"] / 1e9,
                              **_ceiling_fractions(timed, mm, t["times"])}
    for name in ("jnp.dot", "torch.mm"):
        if name in mm_skip:
            out["matmul"][name] = {"status": "skipped", "reason": mm_skip[name]}
            continue
        t = timed[name]
        out["matmul"][name] = {"status": "ok", **mm[name].describe(), "median_s": t["median"],
                               "min_s": t["min"], "max_s": t["max"], "times": t["times"],
                               "first_s": t["first"], "gflops": wl.flops / t["median"] / 1e9}
    for s in systems.SYSTEMS:
        if s in skip:
            out["systems"][s] = {"status": "skipped", "reason": skip[s]}
            continue
        t = timed[s]
        log(f"  ({key}) {s}: fresh process (end to end, peak RSS)")
        w = _worker("run", s, key, *(["--quick"] if args.quick else []))
        gflops = wl.flops / t["median"] / 1e9
        rec = {"status": "ok", "median_s": t["median"], "min_s": t["min"], "max_s": t["max"],
               "times": t["times"], "inprocess_first_s": t["first"], "first_s": w["first_s"],
               "compile_s": w["first_s"] - t["median"] if s == "initdiag" else None,
               "e2e_s": w["e2e_s"],
               "import_s": w["import_s"], "peak_rss": w["peak_rss"],
               "baseline_rss": w["baseline_rss"], "gflops": gflops,
               # the standalone rooflines measured once at the start (orientation only)
               "frac_jnp_dot_standalone": gflops / roof["jnp_dot"],
               "frac_torch_mm_standalone":
                   gflops / roof["torch_mm"] if roof.get("torch_mm") else None}
        rec.update(_ceiling_fractions(timed, mm, t["times"]))
        if "memory" in w:
            rec["memory"] = w["memory"]
        if s == "initdiag" and wl.sweep:
            rec.update(_e2e_cached(key, args.quick))
        out["systems"][s] = rec
    return out


def _e2e_cached(key: str, quick: bool) -> dict:
    """initdiag's end to end with the persistent compilation cache: a fresh process with an
    empty cache folder (cold), then another with the folder it filled (warm)."""
    with tempfile.TemporaryDirectory(prefix="initdiag-bench-cache-") as cache:
        extra = ["--cache", cache, *(["--quick"] if quick else [])]
        log(f"  ({key}) initdiag: fresh process, empty compilation cache (cold)")
        cold = _worker("run", "initdiag", key, *extra)
        log(f"  ({key}) initdiag: fresh process, the cache the cold run filled (warm)")
        warm = _worker("run", "initdiag", key, *extra)
    return {"e2e_cold_s": cold["e2e_s"], "e2e_warm_s": warm["e2e_s"],
            "import_warm_s": warm["import_s"], "first_warm_s": warm["first_s"]}


def memory_row(key: str, rec: dict) -> dict:
    m = rec["memory"]
    predicted = rec["baseline_rss"] + m["estimate"]
    plan = ("weights drawn in the scan" if m["draw_in_scan"] else "weights drawn upfront") + \
        (f", remat chunks of {m['remat']}" if m["remat"] else ", no remat")
    return {"workload": key, "plan": plan, "baseline": rec["baseline_rss"],
            "estimate": m["estimate"], "predicted": predicted, "measured": rec["peak_rss"],
            "error_pct": 100.0 * (predicted - rec["peak_rss"]) / rec["peak_rss"]}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="small workloads and 2 repetitions: a smoke run, not the targets")
    p.add_argument("--only", default=None,
                   help=f"comma-separated parts to run, from {','.join(PARTS)} "
                        "(default: all; with --quick all but report and train)")
    p.add_argument("--reps", type=int, default=None,
                   help=f"timed repetitions (default {MIN_REPS}, at least {MIN_REPS} unless "
                        "--quick; quick default 2)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up rounds (default 1)")
    p.add_argument("--torch-threads", type=int, default=2,
                   help="torch.set_num_threads for the torch peer (default 2)")
    p.add_argument("--out", default=None, help="output folder (default reports/bench)")
    args = p.parse_args(argv)
    if args.only is None:
        args.parts = [x for x in PARTS if not (args.quick and x in ("report", "train"))]
    else:
        args.parts = [x.strip() for x in args.only.split(",") if x.strip()]
        bad = [x for x in args.parts if x not in PARTS]
        if bad:
            p.error(f"--only: unknown part(s) {', '.join(bad)}; choose from {', '.join(PARTS)}")
    if args.reps is None:
        args.reps = 2 if args.quick else MIN_REPS
    if args.reps < 1 or args.warmup < 1:
        p.error(f"--reps and --warmup must be >= 1; got --reps {args.reps}, "
                f"--warmup {args.warmup}")
    if args.reps < MIN_REPS and not args.quick:
        p.error(f"--reps {args.reps}: a full run reports the median of >= {MIN_REPS} timed "
                f"repetitions after warm-up (issue 5); use --reps {MIN_REPS} or more, or --quick "
                "for a smoke run")
    if args.out is None:
        args.out = (Path(tempfile.gettempdir()) / "initdiag-bench-quick" if args.quick
                    else ROOT / "reports" / "bench")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    os.environ["BENCH_TORCH_THREADS"] = str(args.torch_threads)  # read by peer_torch, workers
    import initdiag
    from initdiag.fileio import atomic_write_text

    if tuple(initdiag.STANDARD_INITIALIZERS) != STANDARD_INITIALIZERS:
        raise SystemExit(f"bench: initdiag.STANDARD_INITIALIZERS changed: "
                         f"{initdiag.STANDARD_INITIALIZERS}; update _bench/workloads.py")
    res = {"command": shlex.join(["scripts/bench", *argv]), "quick": args.quick,
           "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "machine": measure.machine(), "versions": measure.versions(),
           "settings": {"reps": args.reps, "warmup": args.warmup, "parts": args.parts,
                        "torch_threads": args.torch_threads, "round_order": list(ROUND_ORDER),
                        "ratio": RATIO_METHOD},
           "notes": []}
    res["machine"]["loadavg_start"] = res["machine"].pop("loadavg")
    wls = workloads(args.quick)
    a = wls["a"]
    log(f"checking that torch, initdiag and the naive loop agree ({a.shape()})")
    res["check"] = systems.check_peers(a.depth, a.width, a.batch)
    bad = [c for c in res["check"] if c["torch"] or c["naive-jax"]]
    if bad:
        for c in bad:
            log(f"MISMATCH {c['activation']}/{c['init']}: torch {c['torch']}, naive "
                f"{c['naive-jax']}")
        raise SystemExit("bench: the peers do not compute the same statistics as initdiag; "
                         "aborting (nothing written)")
    for c in res["check"]:
        if c.get("note"):
            log(f"note {c['activation']}/{c['init']}: {c['note']}")
    keys = [k for k in "abcd" if k in args.parts]
    res["rooflines"] = {}
    for k in keys:
        shape = f"{wls[k].batch}x{wls[k].width}"
        if shape not in res["rooflines"]:
            log(f"standalone matmul roofline at [{wls[k].batch},{wls[k].width}]x"
                f"[{wls[k].width},{wls[k].width}] (orientation only)")
            res["rooflines"][shape] = {
                "batch": wls[k].batch, "width": wls[k].width,
                "jnp_dot": measure.roofline_jax(wls[k].batch, wls[k].width),
                "torch_mm": measure.roofline_torch(wls[k].batch, wls[k].width),
                "torch_mm_1thread": measure.roofline_torch(wls[k].batch, wls[k].width,
                                                           threads=1)}
    res["workloads"], res["memory"] = {}, []
    naive_c = None
    for k in keys:
        roof = res["rooflines"][f"{wls[k].batch}x{wls[k].width}"]
        res["workloads"][k] = bench_workload(k, wls[k], args, roof, naive_c)
        rec = res["workloads"][k]["systems"]
        if k == "c" and rec["naive-jax"].get("status") == "ok":
            naive_c = rec["naive-jax"]["median_s"]
        if k in "bcd" and rec["initdiag"].get("status") == "ok":
            res["memory"].append(memory_row(k, rec["initdiag"]))
        if k == "d" and rec["initdiag"].get("status") == "ok" \
                and not rec["initdiag"]["memory"]["draw_in_scan"]:
            log("  (d) initdiag with draw_weights='in_scan': fresh process (peak RSS)")
            w = _worker("run", "initdiag", k, "--in-scan", *(["--quick"] if args.quick else []))
            row = memory_row("d, in_scan", w)
            row["first_s"] = w["first_s"]
            res["memory"].append(row)
    if "flat" in args.parts:
        small, large, w, b = flat_depths(args.quick)
        log(f"compile time at L={small} and L={large} (W={w}, B={b}), fresh processes")
        s = _worker("compile", str(small), str(w), str(b))
        l_ = _worker("compile", str(large), str(w), str(b))
        res["compile_flatness"] = {"small": s, "large": l_,
                                   "ratio": l_["compile_s"] / s["compile_s"]}
    if "draw" in args.parts:
        from _bench import draws
        res["draws"] = draws.bench(args.quick, args.reps, log)
    if "models" in args.parts:
        from _bench import models
        res["models"] = models.bench(args.quick, args.warmup, args.reps, log)
    if "report" in args.parts:
        from _bench import report
        log("default report: python -m initdiag report --quiet (fresh processes: cold, warm, "
            "no cache)")
        res["report"] = report.run(ROOT, 1 if args.quick else 3, log)
    if "train" in args.parts:
        from _bench import report
        log("training report: python -m initdiag report --train 200 --quiet (fresh processes: "
            "cold, warm)")
        res["train_report"] = report.run_train(ROOT, 1 if args.quick else 3, log)
    res["machine"]["loadavg_end"] = list(os.getloadavg())
    res["targets"] = render.targets(res)
    out = Path(args.out)
    md = render.markdown(res)
    atomic_write_text(out / "bench.json", json.dumps(res, indent=1) + "\n")
    atomic_write_text(out / "bench.md", md)
    print(md)
    log(f"wrote {out / 'bench.md'} and {out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
