"""Targets (issue 5) and the markdown rendering of a benchmark result.

A benchmark result is a JSON-able dict (written to ``bench.json``); :func:`targets` evaluates
the issue's targets on it and :func:`markdown` renders it. Neither needs torch or JAX.
"""

from __future__ import annotations

import statistics
from typing import Any

from _bench.workloads import METRICS

GIB = 2**30
MIB = 2**20


def _sys(res: dict, key: str, system: str) -> dict | None:
    rec = res.get("workloads", {}).get(key, {}).get("systems", {}).get(system)
    return rec if rec and rec.get("status") == "ok" else None


def _floor(res: dict, key: str, name: str) -> dict | None:
    rec = res.get("workloads", {}).get(key, {}).get("floor", {}).get(name)
    return rec if rec and rec.get("status") == "ok" else None


#: Steady-state fraction of the jnp.dot ceiling each workload should reach (issue 12).
STEADY_TARGETS = {"a": 0.75, "b": 0.75, "c": 0.50}


def _target(name: str, measured: str, ok: bool | None) -> dict[str, Any]:
    return {"target": name, "measured": measured, "pass": ok}


def targets(res: dict) -> list[dict[str, Any]]:
    """Every target of issue 5 that ``res`` has the numbers for: name, measured, pass."""
    out = []
    for key in ("a", "b", "c"):
        ours = _sys(res, key, "initdiag")
        if ours is not None and ours.get("frac_jnp_dot") is not None:
            f = ours["frac_jnp_dot"]
            spread = (f" (rounds {100 * ours['frac_jnp_dot_min']:.0f}–"
                      f"{100 * ours['frac_jnp_dot_max']:.0f}%)"
                      if ours.get("frac_jnp_dot_min") is not None else "")
            need = STEADY_TARGETS[key]
            fl = _floor(res, key, "floor + draw")
            floor = (f"; the floor with its weight draw: {100 * fl['frac_jnp_dot']:.0f}%"
                     if fl is not None else "")
            out.append(_target(f"({key}) steady state >= {100 * need:.0f}% of jnp.dot throughput",
                               f"{100 * f:.0f}%{spread}{floor}", f >= need))
    for key in ("b", "c"):
        ours, theirs = _sys(res, key, "initdiag"), _sys(res, key, "torch")
        if ours and theirs:
            r = theirs["median_s"] / ours["median_s"]
            out.append(_target(f"({key}) steady state at least as fast as torch hooks",
                               f"{r:.2f}x torch", r >= 1.0))
    ours, theirs = _sys(res, "a", "initdiag"), _sys(res, "a", "torch")
    if ours and theirs and ours.get("e2e_warm_s") and theirs.get("e2e_s"):
        r = theirs["e2e_s"] / ours["e2e_warm_s"]
        cold = theirs["e2e_s"] / ours["e2e_cold_s"]
        out.append(_target("(a) >= 3x faster than torch hooks end to end (fresh process: import, "
                           "compile or load from the warm compilation cache, probe, to_frame)",
                           f"{r:.2f}x ({ours['e2e_warm_s']:.1f} s vs {theirs['e2e_s']:.1f} s); "
                           f"cold cache {cold:.2f}x ({ours['e2e_cold_s']:.1f} s), no cache "
                           f"{theirs['e2e_s'] / ours['e2e_s']:.2f}x ({ours['e2e_s']:.1f} s)",
                           r >= 3.0))
    flat = res.get("compile_flatness")
    if flat:
        r = flat["ratio"]
        out.append(_target(f"compile(L={flat['large']['depth']}) <= 1.5x compile"
                           f"(L={flat['small']['depth']})",
                           f"{r:.2f}x ({flat['large']['compile_s']:.2f} s vs "
                           f"{flat['small']['compile_s']:.2f} s)", r <= 1.5))
    ours = _sys(res, "d", "initdiag")
    if ours and ours.get("peak_rss"):
        p = ours["peak_rss"]
        out.append(_target("(d) peak RSS <= 2 GiB", f"{p / GIB:.2f} GiB", p <= 2 * GIB))
    if res.get("report"):
        from _bench import report
        out.extend(_target(*t) for t in report.targets(res["report"]))
    if res.get("train_report"):
        from _bench import report
        out.extend(_target(*t) for t in report.train_targets(res["train_report"]))
    scan = [m for m in res.get("memory", []) if m["workload"] == "d, in_scan"]
    if scan:
        p = scan[0]["measured"]
        out.append(_target("(d) peak RSS <= 2 GiB with draw_weights='in_scan'",
                           f"{p / GIB:.2f} GiB", p <= 2 * GIB))
    for m in res.get("memory", []):
        out.append(_target(f"({m['workload']}) memory estimate within 25% of measured peak",
                           f"{m['error_pct']:+.0f}%", abs(m["error_pct"]) <= 25))
    return out


def _f(v: float | None, fmt: str = ".2f") -> str:
    return "–" if v is None else format(v, fmt)


def _pct(rec: dict, field: str) -> str:
    """``median [min–max]`` of a per-round ratio in percent (median only for old results)."""
    if rec.get(field) is None:
        return "–"
    if rec.get(field + "_min") is None:
        return f"{100 * rec[field]:.0f}"
    return (f"{100 * rec[field]:.0f} [{100 * rec[field + '_min']:.0f}–"
            f"{100 * rec[field + '_max']:.0f}]")


def _workload_rows(res: dict) -> list[str]:
    rows = ["| workload | system | steady s: median [min–max] | first call s | compile s | "
            "end to end s | GFLOP/s | % jnp.dot [min–max] | % torch.mm [min–max] | peak RSS "
            "MiB | initdiag speed-up |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, wl in res.get("workloads", {}).items():
        ours = _sys(res, key, "initdiag")
        label = f"({key}) {wl['shape']}, {wl['configs']} config{'s' * (wl['configs'] > 1)}"
        for system, rec in wl["systems"].items():
            if rec.get("status") != "ok":
                rows.append(f"| {label} | {system} | skipped: {rec.get('reason', '')} "
                            "| | | | | | | | |")
                continue
            speed = "" if system == "initdiag" or ours is None else \
                f"{rec['median_s'] / ours['median_s']:.2f}x"
            rows.append(
                f"| {label} | {system} | {rec['median_s']:.3f} [{rec['min_s']:.3f}–"
                f"{rec['max_s']:.3f}] | {rec['first_s']:.2f} | {_f(rec.get('compile_s'))} | "
                f"{_f(rec.get('e2e_s'))} | {rec['gflops']:.1f} | "
                f"{_pct(rec, 'frac_jnp_dot')} | {_pct(rec, 'frac_torch_mm')} | "
                f"{_f(rec.get('peak_rss') and rec['peak_rss'] / MIB, '.0f')} | {speed} |")
        for name, rec in wl.get("matmul", {}).items():  # no fraction of themselves
            rows.append(_reference_row(label, f"{name} ceiling", rec, " | ",
                                       f" ({rec.get('dots', '?')} dots)"))
        for name, rec in wl.get("floor", {}).items():
            rows.append(_reference_row(label, name, rec, f" {_pct(rec, 'frac_jnp_dot')} | "
                                                         f"{_pct(rec, 'frac_torch_mm')} "))
    return rows


def _reference_row(label: str, name: str, rec: dict, pct_cells: str, detail: str = "") -> str:
    """A row of a runner that is not a system (a ceiling, a floor): no end to end, no peak RSS;
    ``pct_cells`` fills the two % columns."""
    if rec.get("status") != "ok":
        return f"| {label} | {name} | skipped: {rec.get('reason', '')} | | | | | | | | |"
    return (f"| {label} | {name}{detail} | {rec['median_s']:.3f} [{rec['min_s']:.3f}–"
            f"{rec['max_s']:.3f}] | {rec['first_s']:.2f} | {_f(rec.get('compile_s'))} | – | "
            f"{rec['gflops']:.1f} |{pct_cells}| – | |")


def _floor_section(res: dict) -> list[str]:
    """The floors against the steady-state targets: what any system doing the same minimum
    reaches, and initdiag's time as a fraction of it."""
    rows = []
    for key, need in STEADY_TARGETS.items():
        fd, fp, ours = (_floor(res, key, "floor + draw"), _floor(res, key, "floor"),
                        _sys(res, key, "initdiag"))
        if fd is None or fp is None or ours is None or ours.get("frac_jnp_dot") is None:
            continue
        if fd.get("times") and len(fd["times"]) == len(ours.get("times") or ()):
            # per round, as every fraction here: t(floor + draw)_i / t(initdiag)_i, median
            rel = statistics.median(f / t for f, t in zip(fd["times"], ours["times"]))
        else:
            rel = fd["median_s"] / ours["median_s"]
        rows.append(f"| ({key}) | {100 * need:.0f}% | {100 * fp['frac_jnp_dot']:.0f}% | "
                    f"{100 * fd['frac_jnp_dot']:.0f}% | {100 * ours['frac_jnp_dot']:.0f}% | "
                    f"{100 * rel:.0f}% |")
    if not rows:
        return []
    return ["", "## Floors", "",
            "A reference minimal pass for a workload's statistics from the weights initdiag "
            "draws (`scripts/_bench/floor.py`; not a proven lower bound: it draws, then "
            "computes): per configuration, the three matmuls of each layer and φ, nothing else (forward h = x·W, x = φ(h); backward g_h = φ'(h)∘g, g ← g_h·Wᵀ, "
            "‖xᵀg_h‖²; no bias, no statistic, no rescaling; one jitted scan per activation, "
            "compiled before timing). *floor*: over weights drawn once before timing; *floor "
            "+ draw*: each call first draws every initializer's weights (the bits of "
            "`jax.nn.initializers`, by `initdiag.nn.stacks.init_stack`, one draw per "
            "initializer shared by the activations, as `initdiag.sweep` does). Both timed in the "
            "same rounds as jnp.dot; % as in the table above; the last column is the median over "
            "the rounds of t(floor + draw) / t(initdiag). A steady-state target above *floor + "
            "draw* asks a probe to be faster than this minimal pass with its draw; one at it asks "
            "the statistics, biases and rescaling to cost nothing.", "",
            "| workload | target | floor % jnp.dot | floor + draw % jnp.dot | initdiag % jnp.dot "
            "| initdiag's speed as % of floor + draw |", "|---|---|---|---|---|---|", *rows]


def _definitions(res: dict) -> str:
    """The paragraph above the table: exactly what each column measures."""
    st = res["settings"]
    order = st.get("round_order", ["initdiag", "jnp.dot", "torch.mm", "torch", "naive-jax"])
    threads = st.get("torch_threads", 2)
    return (
        f"Steady state: median of {st['reps']} timed rounds after {st['warmup']} warm-up "
        f"round(s), in one process; in every round each runner runs once, in the order "
        f"{', '.join(order)} (skipped ones left out). First call: a fresh process's first call "
        "(compilation included); for the ceiling and floor rows, the warm-up call. Compile = "
        "first call − steady median (for jnp.dot and the floors: the ahead-of-time compile, "
        "before timing). "
        "End to end: a fresh process, import + first call. GFLOP/s counts 6·L·W²·B per "
        "configuration (forward + backward matmuls, no recomputation), over the steady median. "
        "Ceiling rows (jnp.dot, torch.mm): the matmul ceiling measured side by side with the "
        "workload, in the same rounds: exactly the workload's matmul FLOPs, as 3·L·configs "
        "dependent [B,W]×[W,W] products x ← x·Q (float32, Q orthogonal so values stay O(1)); "
        "floor rows: the least work any probe of the workload does (section Floors below), "
        "timed in the same rounds; "
        "jnp.dot: one jitted `lax.fori_loop` over `jnp.dot`, compiled before timing; torch.mm: "
        f"a Python loop of `torch.matmul` under `no_grad` with the peer's {threads} thread(s). "
        "% jnp.dot (% torch.mm): the median over the timed rounds i of t(ceiling, round i) / "
        "t(system, round i), ceiling = the jnp.dot (torch.mm) row — the system's throughput as "
        "a fraction of the ceiling's in the same round — with its min–max over the rounds in "
        "brackets; the targets use this median. On a loaded 2-core machine torch's multi-thread "
        "OpenMP stalls whenever one of its threads is descheduled, which makes torch.mm (and the "
        "torch peer) erratic; `--torch-threads 1` is steadier. "
        "Peak RSS: `VmHWM` (high-water mark of resident memory) of a fresh process running the "
        "workload once. initdiag speed-up: the peer's steady time over initdiag's. The "
        "standalone rooflines at the end are measured once, at the start, and are not used for "
        "any fraction.")


def markdown(res: dict) -> str:
    """The whole result as a markdown page: machine, table, targets, memory, rooflines."""
    m, v = res["machine"], res["versions"]
    lines = [
        "# initdiag benchmark" + (" (quick smoke run: small workloads, not the targets)"
                                  if res.get("quick") else ""), "",
        f"Command: `{res['command']}`  ", f"Date: {res['started']}  ",
        f"Machine: {m['nproc']} cores, {m['cpu']}, {m['mem_total_gib']} GiB RAM, "
        f"{m['platform']}  ",
        f"Load average (1/5/15 min) at start {'/'.join(f'{x:.1f}' for x in m['loadavg_start'])}, "
        f"at end {'/'.join(f'{x:.1f}' for x in m['loadavg_end'])} — a shared machine: other "
        "processes ran during the measurement, absolute numbers are noisy.  ",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()), "",
        _definitions(res), "",
        *_workload_rows(res), "", "## Targets", "", "| target | measured | |", "|---|---|---|"]
    for t in res.get("targets", []):
        verdict = {True: "PASS", False: "**FAIL**", None: "–"}[t["pass"]]
        lines.append(f"| {t['target']} | {t['measured']} | {verdict} |")
    lines += _floor_section(res)
    if res.get("memory"):
        lines += ["", "## Memory estimate vs measured peak RSS", "",
                  "Predicted = RSS just before the probe + `result.meta[\"memory\"][\"estimate\"]`; "
                  "measured = its peak (`VmHWM`).", "",
                  "| workload | plan | baseline MiB | estimate MiB | predicted MiB | measured MiB "
                  "| error |", "|---|---|---|---|---|---|---|"]
        for r in res["memory"]:
            lines.append(f"| ({r['workload']}) | {r['plan']} | {r['baseline'] / MIB:.0f} | "
                         f"{r['estimate'] / MIB:.0f} | {r['predicted'] / MIB:.0f} | "
                         f"{r['measured'] / MIB:.0f} | {r['error_pct']:+.0f}% |")
    flat = res.get("compile_flatness")
    if flat:
        s, l = flat["small"], flat["large"]
        lines += ["", "## Compile time vs depth", "",
                  f"W={s['width']}, B={s['batch']}, tanh/glorot_normal, each depth in a fresh "
                  f"process (first call − median of 3 more): L={s['depth']}: "
                  f"{s['compile_s']:.2f} s, L={l['depth']}: {l['compile_s']:.2f} s, ratio "
                  f"{flat['ratio']:.2f}."]
    if res.get("draws"):
        from _bench import draws
        lines += ["", *draws.markdown(res["draws"])]
    if res.get("models"):
        from _bench import models
        lines += ["", *models.markdown(res["models"])]
    if res.get("report"):
        from _bench import report
        lines += ["", *report.markdown(res["report"])]
    if res.get("train_report"):
        from _bench import report
        lines += ["", *report.markdown(res["train_report"], "Training report (--train 200)")]
    if res.get("rooflines"):
        lines += ["", "## Standalone matmul rooflines (measured once at the start; orientation "
                  "only)", "",
                  "Not interleaved with the workloads and not used by the % columns or the "
                  "targets (those use the ceiling runners timed in the same rounds): on a shared "
                  "machine these move with the load from minute to minute. "
                  "jnp.dot: a jitted chain of 16 dependent dots (XLA's CPU threads); "
                  f"torch.matmul: 16 dependent calls with {res['settings'].get('torch_threads', 2)} "
                  "thread(s) (the peer's setting) and with 1; median of 30 timings, per matmul. On a loaded 2-core machine torch's "
                  "2-thread OpenMP stalls whenever one of its threads is descheduled, so its "
                  "2-thread median is erratic; the 1-thread figure is the steadier ceiling.", "",
                  "| [B,W]×[W,W] | jnp.dot GFLOP/s | torch.matmul GFLOP/s, peer's threads | "
                  "1 thread |", "|---|---|---|---|"]
        for r in res["rooflines"].values():
            lines.append(f"| B={r['batch']}, W={r['width']} | {r['jnp_dot']:.1f} | "
                         f"{_f(r.get('torch_mm'), '.1f')} | "
                         f"{_f(r.get('torch_mm_1thread'), '.1f')} |")
    if res.get("check"):
        lines += ["", "## Same statistics", "",
                  "torch's weights fed to `initdiag.probe_params(weights=[W.T ...])` and to the "
                  "naive JAX loop; every metric compared (rtol 1e-4). For ReLU, torch's masks "
                  "(h > 0) are compared with the naive loop's: a flip is accepted only within "
                  "float32 rounding of 0 (on both sides, the float64 x·w + b from that side's "
                  "input within γ_{n+1}·(Σ|x_k w_k| + |b|) of 0, Higham's bound for a float32 dot "
                  "product in any order, and the float32 h within that bound of it), in at most "
                  "1e-4 of a layer's entries and at most 5 flips in all; only the gradient "
                  "statistics a flip reaches are then compared at a looser rtol (1e-2 per flip), "
                  "as noted:", ""]
        for c in res["check"]:
            ok = not c["torch"] and not c["naive-jax"]
            note = c.get("note")
            lines.append(f"- {c['activation']}/{c['init']}, L={c['depth']}, W={c['width']}, "
                         f"B={c['batch']}: " + (
                             (f"all {len(METRICS)} metrics equal" + (f" as noted: {note}" if note
                                                                     else "")) if ok else
                             f"MISMATCH torch {c['torch']} naive {c['naive-jax']}"))
    for note in res.get("notes", []):
        lines.append(f"\nNote: {note}")
    return "\n".join(lines) + "\n"
