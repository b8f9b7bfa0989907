"""The default ``initdiag report`` as a user runs it: fresh processes, cold and warm cache; and the
default training report, ``initdiag report --train 200`` (:func:`run_train`), timed the same way.

Each round runs ``python -m initdiag report --quiet`` three times, each a fresh process:

* **cold**: ``INITDIAG_CACHE_DIR`` set to a new empty folder (every executable is compiled and
  written to the cache);
* **warm**: the same folder again (every executable is loaded from the cache);
* **no cache**: ``--no-cache`` (compiled, nothing stored; what a run without the cache costs).

Wall time is measured around the process (``time.perf_counter`` in this harness; the process's
user+system CPU from ``resource.getrusage(RUSAGE_CHILDREN)``). The phases come from the report
itself (``results.json``: ``meta["report"]["timings_s"]``, the page's timings table); *start-up*
is the wall time not inside the report's own total: interpreter start, imports, argument parsing,
and exit. Medians over the rounds are reported, with min–max.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

#: The report's phases (``meta["report"]["timings_s"]`` keys) -> short names for the table.
PHASES = {
    "sweep (probing, incl. compilation)": "sweep",
    "theory: mean-field predictions": "predictions",
    "diagnosis": "diagnosis",
    "theory: Jacobian spectra": "Jacobian",
    "figures": "figures",
    "page (render + embed the PNGs; measured on a first rendering)": "page",
    "training (incl. compilation and the probe at the snapshots)": "training",
    "training figures": "training figures",
    "total (until the page is written)": "total",
}
#: Short names of the phases the report's figure worker runs (initdiag.report.build.BESIDE_TIMINGS:
#: its own time, overlapping the sweep or the figures) and of its figures row.
WORKER_PHASES = {"predictions": "predictions (worker, during the sweep)",
                 "spectra": "Jacobian (worker, during the sweep)",
                 "phase": "phase planes (worker, during the sweep)",
                 "diagnosis": "diagnosis (worker, beside the figures)"}
FIGURES_PHASE = "figures (both processes, from the end of the sweep)"
FIGURES_AFTER_TRAINING_PHASE = "figures (both processes, from the end of the training figures)"


def phase_name(key: str) -> str | None:
    """The table's name of a ``timings_s`` key (None: not shown)."""
    from initdiag.report.build import BESIDE_TIMINGS, FIGURES_TIMING

    if key in PHASES:
        return PHASES[key]
    for what, label in BESIDE_TIMINGS.items():
        if key == label:
            return WORKER_PHASES[what]
    if key.startswith(FIGURES_TIMING.split("{")[0]):  # and the others below
        if key.endswith("the end of the sweep)"):
            return FIGURES_PHASE
        if key.endswith("the end of the training figures)"):
            return FIGURES_AFTER_TRAINING_PHASE
        return "figures (shared)"  # SHARED_FIGURES_TIMING
    return None


#: Modes in the order each round runs them.
MODES = ("cold", "warm", "no cache")
#: Targets of issue 12 (seconds of wall time, a fresh process).
TARGETS = {"cold": 15.0, "warm": 10.0}
#: The training report's options (issue 14) and its target: "about a minute", cold cache.
TRAIN_OPTIONS = ("--train", "200")
TRAIN_TARGETS = {"cold": 60.0}


def _run_once(root: Path, cache: str | None, log: Callable[[str], None],
              extra: tuple[str, ...] = ()) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="initdiag-bench-report-") as out:
        env = dict(os.environ)
        cmd = [sys.executable, "-m", "initdiag", "report", "--quiet", "--out", out, *extra]
        if cache is None:
            cmd.append("--no-cache")
        else:
            env["INITDIAG_CACHE_DIR"] = cache
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            log(f"initdiag report failed:\n{proc.stderr[-2000:]}")
            return {"returncode": proc.returncode, "wall_s": wall}
        meta = json.loads((Path(out) / "results.json").read_text())["meta"]["report"]
    phases = {phase_name(k): v for k, v in meta["timings_s"].items() if phase_name(k)}
    phases["start-up + exit"] = wall - phases["total"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"returncode": 0, "wall_s": wall, "cpu_s": cpu, "phases": phases}


def run(root: Path, rounds: int, log: Callable[[str], None], extra: tuple[str, ...] = (),
        modes: tuple[str, ...] = MODES) -> dict[str, Any]:
    """``rounds`` rounds of cold, warm and no-cache runs (``modes``) of ``initdiag report``
    with the options ``extra``; medians per mode and phase."""
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for i in range(rounds):
        with tempfile.TemporaryDirectory(prefix="initdiag-bench-cache-") as cache:
            for mode in modes:
                r = _run_once(root, None if mode == "no cache" else cache, log, extra)
                log(f"  report{' ' + ' '.join(extra) if extra else ''} round {i + 1}/{rounds}, "
                    f"{mode}: {r['wall_s']:.1f} s wall")
                runs[mode].append(r)
    opts = " ".join(extra) + " " if extra else ""
    out: dict[str, Any] = {"command": f"python -m initdiag report {opts}--quiet --out <tmp> "
                                      "(INITDIAG_CACHE_DIR=<folder> / --no-cache)",
                           "rounds": rounds, "modes": {}}
    for mode, rs in runs.items():
        ok = [r for r in rs if r["returncode"] == 0]
        rec: dict[str, Any] = {"returncodes": [r["returncode"] for r in rs]}
        if ok:
            walls = [r["wall_s"] for r in ok]
            rec.update(wall_s=statistics.median(walls), wall_min_s=min(walls),
                       wall_max_s=max(walls), cpu_s=statistics.median(r["cpu_s"] for r in ok),
                       phases={p: statistics.median(r["phases"][p] for r in ok
                                                    if p in r["phases"])
                               for p in dict.fromkeys(p for r in ok for p in r["phases"])})
        out["modes"][mode] = rec
    return out


def run_train(root: Path, rounds: int, log: Callable[[str], None]) -> dict[str, Any]:
    """The default training report, ``initdiag report --train 200``: cold and warm cache."""
    return run(root, rounds, log, extra=TRAIN_OPTIONS, modes=("cold", "warm"))


def targets(rep: dict[str, Any], limits: dict[str, float] | None = None,
            what: str = "default `initdiag report`") -> list[tuple[str, str, bool]]:
    """(target, measured, met) of the report's wall-time targets (``limits``: mode -> seconds,
    default :data:`TARGETS`)."""
    out = []
    for mode, limit in (TARGETS if limits is None else limits).items():
        rec = rep["modes"].get(mode, {})
        if "wall_s" in rec:
            out.append((f"{what} <= {limit:.0f} s, {mode} cache (fresh "
                        f"process)", f"{rec['wall_s']:.1f} s", rec["wall_s"] <= limit))
    return out


def train_targets(rep: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) of the training report (issue 14: about a minute)."""
    return targets(rep, TRAIN_TARGETS, "`initdiag report --train 200`")


def markdown(rep: dict[str, Any], title: str = "Default report") -> list[str]:
    """The report section of bench.md: wall time per mode and each phase."""
    modes = [m for m in MODES if "wall_s" in rep["modes"].get(m, {})]
    if not modes:
        return [f"## {title}", "", "every run failed: "
                + ", ".join(f"{m}: exit {rep['modes'][m]['returncodes']}" for m in rep["modes"])]
    phases = list(dict.fromkeys(p for m in modes for p in rep["modes"][m]["phases"]))
    what = {"cold": "cold (an empty compilation cache)",
            "warm": "warm (the folder the cold run filled)", "no cache": "no cache (`--no-cache`)"}
    ran = [what[m] for m in MODES if m in rep["modes"]]
    ran_text = ", ".join(ran[:-1]) + " and " + ran[-1] if len(ran) > 1 else ran[0]
    lines = [f"## {title}", "",
             f"`{rep['command']}`, each a fresh process; {rep['rounds']} round(s) of "
             f"{ran_text}; medians. Phases from the report's own timings "
             "(`results.json`: `meta.report.timings_s`); start-up + exit = wall − the report's "
             "total (interpreter, imports, exit). *worker*: computed by the report's second "
             "process (`initdiag.report.worker`, forked before JAX starts) while the main process "
             "probes or draws: its own time, overlapping the sweep or the figures, so the phases "
             "add up to more than the total.", "",
             "| | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes),
             "| wall s (min–max) | " + " | ".join(
                 f"{rep['modes'][m]['wall_s']:.1f} ({rep['modes'][m]['wall_min_s']:.1f}–"
                 f"{rep['modes'][m]['wall_max_s']:.1f})" for m in modes) + " |",
             "| CPU s (user + system) | " + " | ".join(
                 f"{rep['modes'][m]['cpu_s']:.1f}" for m in modes) + " |"]
    for p in phases:
        lines.append(f"| {p} s | " + " | ".join(
            f"{rep['modes'][m]['phases'].get(p, float('nan')):.2f}".replace("nan", "–")
            for m in modes) + " |")
    return lines
