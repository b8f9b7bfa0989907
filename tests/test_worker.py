"""The figure worker (initdiag.report.worker) and what the report computes in it
(initdiag.report.beside): tasks, errors, a worker that dies, an orphaned worker, and reports drawn
with and without it (the same bytes).

A worker is forked only before JAX starts its runtime; pytest's process has long started it, so
everything that needs a worker runs in a fresh interpreter (``python -c``)."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import initdiag
from initdiag.probe import planned_records
from initdiag.report import beside, figures
from initdiag.report.build import HTML_TIMING, TOTAL_TIMING
from initdiag.report.worker import FigureWorker, fork_is_safe


def _python(script: str, *args: str, timeout: float = 300, cache: str = "") -> str:
    env = dict(os.environ, JAX_PLATFORMS="cpu", INITDIAG_CACHE_DIR=cache)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_no_worker_is_forked_once_jax_runs():
    import jax.numpy as jnp

    jnp.zeros(1).block_until_ready()  # this process's JAX runtime is up
    assert not fork_is_safe()
    assert FigureWorker.start() is None


TASKS = r"""
import os
from initdiag.report.worker import FigureWorker, WorkerGone, WorkerTraceback, fork_is_safe

def add(state, a, b):
    state["x"] = a + b
    return a + b

def get(state):
    return state["x"]

def fail(state):
    raise ValueError("bad value 3; choose from 1, 2")

class Odd(Exception):  # pickles, but not back to itself
    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")

def odd(state):
    raise Odd(1, 2)

def die(state):
    os._exit(3)

def unpicklable_answer(state):
    return lambda: 1

assert fork_is_safe()
w = FigureWorker.start()
assert w is not None and w.alive and w.pid != os.getpid()
t1, t2, t3, t4 = w.submit(add, 1, 2), w.submit(get), w.submit(fail), w.submit(odd)
assert w.result(t2) == 3 and w.result(t1) == 3  # any order; state kept between tasks
try:
    w.result(t3)
    raise AssertionError("no error")
except ValueError as e:
    assert str(e) == "bad value 3; choose from 1, 2"
    assert isinstance(e.__cause__, WorkerTraceback) and "in fail" in str(e.__cause__)
try:
    w.result(t4)
    raise AssertionError("no error")
except RuntimeError as e:
    assert str(e) == "Odd: 1/2", e
assert w.outstanding() == 0
try:
    w.submit(add, lambda: 1, 2)  # an argument that does not pickle: refused at once
    raise AssertionError("no error")
except Exception as e:
    assert "pickle" in str(e).lower(), e
try:
    w.result(w.submit(unpicklable_answer))  # an answer that does not pickle: its error, no hang
    raise AssertionError("no error")
except Exception as e:
    assert "pickle" in str(e).lower(), e
assert w.result(w.submit(get)) == 3  # still serving
t5 = w.submit(die)
try:
    w.result(t5)
    raise AssertionError("no error")
except WorkerGone as e:
    assert "exit code 3" in str(e)
assert not w.alive
try:
    w.submit(get)
    raise AssertionError("no error")
except WorkerGone:
    pass
w.close()

w = FigureWorker.start()
w.submit(add, 2, 2)
pid = w.pid
w.close()  # asks it to exit, then waits
assert not w.alive and w.exitcode == 0, w.exitcode  # it exited by itself
try:
    os.kill(pid, 0)
    raise AssertionError("still running")
except ProcessLookupError:
    pass

cpus = os.sched_getaffinity(0)
if len(cpus) > 1:  # on one CPU a second process would only take turns with this one
    os.sched_setaffinity(0, {min(cpus)})
    assert fork_is_safe() and FigureWorker.start() is None
    os.sched_setaffinity(0, cpus)
print("ok")
"""


def test_worker_tasks_errors_and_a_worker_that_dies():
    assert _python(TASKS).strip() == "ok"


ORPHAN = r"""
import os, sys, time
from initdiag.report.worker import FigureWorker

def busy(state):
    time.sleep(120)

w = FigureWorker.start()
w.submit(busy)  # the worker is busy (not reading) when this process dies
time.sleep(0.5)
print(w.pid, flush=True)
os.kill(os.getpid(), 9)  # killed: no close(), no exit handlers
"""


def test_a_busy_worker_whose_main_process_is_killed_exits():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", ORPHAN], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == -9
    pid = int(proc.stdout.split()[0])
    from initdiag.report.worker import PARENT_CHECK_S

    deadline = time.monotonic() + 10 * PARENT_CHECK_S + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(") ")[1].startswith("Z"):
                return  # exited; a zombie until the (re-)parent reaps it
        time.sleep(0.1)
    raise AssertionError(f"the worker {pid} outlived its main process")


#: Five reports of one sweep in one fresh process, four with a worker forked before anything ran
#: on JAX: a plain one; one whose theory task fails in the worker (the main process computes the
#: theory, then sends it for the theory figures); one whose worker dies at its first figure; one
#: whose diagnosis fails there; and one without a worker (as from Python, or where a fork is not
#: safe).
REPORTS = r"""
import json, os, sys
import initdiag
import initdiag.report.beside as beside
import initdiag.report.figures as figures
from initdiag.report.build import build_report
from initdiag.report.figures import warm_up
from initdiag.report.worker import FigureWorker

def failing_theory(state, plan):
    raise ValueError("theory failed in the worker")

def dying_draw(state, name, out_dir):
    os._exit(5)

def failing_diagnosis(state):
    raise ValueError("diagnosis failed in the worker")

kwargs = json.loads(sys.argv[1])
out = sys.argv[2]
initdiag.enable_cache()  # the later workers load what the first compiled
workers = [FigureWorker.start() for _ in range(4)]
assert all(w is not None for w in workers)
for w in workers:
    w.submit(warm_up)
used = {}
names = ["plain", "theory_fails", "worker_dies", "diagnosis_fails", "no_worker"]
for name, w in zip(names, [*workers, None]):
    theory_task, draw, diag = beside.theory_task, figures._draw_in_worker, beside.diagnose_task
    if name == "theory_fails":
        beside.theory_task = failing_theory
    if name == "worker_dies":
        figures._draw_in_worker = dying_draw
    if name == "diagnosis_fails":
        beside.diagnose_task = failing_diagnosis
    try:
        if w is None:
            sweep, verdicts, paths = build_report(dict(kwargs), f"{out}/{name}")
        else:
            with w:
                sweep, verdicts, paths = build_report(dict(kwargs), f"{out}/{name}", worker=w)
    finally:
        beside.theory_task, figures._draw_in_worker, beside.diagnose_task = theory_task, draw, diag
    used[name] = sorted(sweep.meta["report"]["timings_s"])
print(json.dumps(used))
"""

KWARGS = {"activations": ["tanh"], "inits": ["he_normal", "zeros"], "depths": [4],
          "widths": [8], "batch": 8, "seeds": [0]}


def _png_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def _verdict_text(page: str) -> str:
    """The page without what differs between runs: its timings table and creation time."""
    import re

    page = re.sub(r'<table id="timings-table">.*?</table>', "", page, flags=re.S)
    return re.sub(r"Created \d{4}-\d\d-\d\d \d\d:\d\d UTC", "", page)


def test_reports_with_and_without_the_worker_are_the_same(tmp_path):
    used = json.loads(_python(REPORTS, json.dumps(KWARGS), str(tmp_path),
                              cache=str(tmp_path / "cache")))
    # the plain run drew figures and computed its theory and diagnosis in the worker
    plain = " | ".join(used["plain"])
    assert "theory: mean-field predictions (in a second process, during the sweep)" in plain
    assert "diagnosis (in the second process, beside the figures)" in plain
    assert "drawn in the second process" in plain
    # a failed theory task: computed here, and the figures still shared
    fails = " | ".join(used["theory_fails"])
    assert "theory: mean-field predictions" in used["theory_fails"]
    assert "diagnosis" in used["theory_fails"] and "drawn in the second process" in fails
    # a worker that dies at its first figure (after the theory and the diagnosis): every figure
    # drawn here
    assert "figures (0 of 8 drawn in the second process; from the end of the sweep)" in used[
        "worker_dies"]
    # a diagnosis that fails in the worker: made here
    assert "diagnosis" in used["diagnosis_fails"]
    assert "drawn in the second process" in " | ".join(used["diagnosis_fails"])

    assert used["no_worker"] == sorted(["sweep (probing, incl. compilation)", "diagnosis",
                                        "theory: mean-field predictions", "figures",
                                        "theory: Jacobian spectra", HTML_TIMING, TOTAL_TIMING])
    # the same pictures and page whoever drew and computed them
    expected = _png_bytes(tmp_path / "no_worker")
    assert len(expected) == len(figures.FIGURES)
    page = _verdict_text((tmp_path / "no_worker" / "index.html").read_text())
    for name in ("plain", "theory_fails", "worker_dies", "diagnosis_fails"):
        folder = tmp_path / name
        assert _png_bytes(folder) == expected, name
        assert _verdict_text((folder / "index.html").read_text()) == page, name
        assert not list(folder.glob(".*")), name  # no temporary file left
        a, b = initdiag.load(folder / "results.json"), initdiag.load(tmp_path / "no_worker" /
                                                                     "results.json")
        for x, y in zip(a, b):
            for m in x.metrics:
                np.testing.assert_array_equal(x[m], y[m], err_msg=m)


# --- the plan of a sweep -------------------------------------------------------------------------

def test_planned_records_are_what_the_results_record():
    kwargs = dict(activations=["tanh"], inits=["glorot_normal", "zeros"], depths=[2],
                  widths=[4, [4, 3]], seeds=[0, 2], batch=4)
    plan = planned_records(**kwargs)
    sweep = initdiag.sweep(**kwargs)
    assert [(c.to_dict(), s) for c, s in plan] == [(r.config.to_dict(), r.seed) for r in sweep]
    assert beside.plan_matches(beside.planned(plan), sweep)
    assert not beside.plan_matches(beside.planned(plan[:-1]), sweep)
    moved = [(c, s + 1) for c, s in plan]
    assert not beside.plan_matches(beside.planned(moved), sweep)


@pytest.mark.parametrize("options", [
    {"norm": "layernorm", "residual": 0.5, "widths": [4, 6]},
    {"bias_init": "normal", "loss": "half_mse", "remat": 2},
    {"use_bias": False, "input_width": 5, "input": "uniform", "batch": None},
    {"saturation_threshold": 0.8, "hist_bins": 32, "histograms": True},
], ids=lambda o: ",".join(o))
def test_planned_records_are_what_each_probe_records(options):
    """Every option a record holds, against the configuration each probe of the sweep records
    (:func:`initdiag.probe.prepare`, which the sweep runs; in the sweep's documented order)."""
    from initdiag.config import ProbeConfig
    from initdiag.probe import RUN_OPTIONS, prepare

    kwargs = dict(activations=["tanh", "relu"], inits=["glorot_normal", "zeros"], depths=[2],
                  widths=[4, [4, 3]], seeds=[0, 2], batch=4)
    kwargs.update(options)
    plan = planned_records(**kwargs)
    run = {k: kwargs.pop(k) for k in RUN_OPTIONS if k in kwargs}
    axes = {k: kwargs.pop(k) for k in ("activations", "inits", "depths", "widths", "seeds")}
    recorded = []
    for a in axes["activations"]:
        for d in axes["depths"]:
            for w in axes["widths"]:
                for i in axes["inits"]:
                    for s in axes["seeds"]:
                        config = ProbeConfig(activation=a, init=i, depth=d, width=w, **kwargs)
                        recorded.append((prepare(config, s, **run).config.to_dict(), s))
    assert [(c.to_dict(), s) for c, s in plan] == recorded


def test_no_plan_for_an_input_array():
    x = np.ones((4, 8), np.float32)
    assert planned_records(activations=["tanh"], inits=["zeros"], depths=[2], widths=[8],
                           batch=4, input=x) is None


def test_theory_of_the_plan_is_the_sweeps():
    from initdiag.report.theory_data import predictions, report_spectra

    kwargs = dict(activations=["tanh", "relu"], inits=["glorot_normal", "lecun_normal", "zeros"],
                  depths=[4], widths=[16], seeds=[0, 1], batch=16)
    sweep = initdiag.sweep(**kwargs)
    state: dict = {}
    got = beside.theory_task(state, beside.planned(planned_records(**kwargs)))
    assert state["theory"]["predictions"] is got["predictions"]
    want = predictions(sweep)
    assert list(got["predictions"]) == list(want)
    for key, p in want.items():
        q = got["predictions"][key]
        assert type(q) is type(p)
        if isinstance(p, Exception):
            assert str(q) == str(p)
            continue
        for f in dataclasses.fields(p):  # every field: arrays bit for bit, the config equal
            a, b = getattr(q, f.name), getattr(p, f.name)
            if isinstance(b, np.ndarray):
                np.testing.assert_array_equal(a, b, err_msg=f.name)
            else:
                np.testing.assert_equal(a, b, err_msg=f.name)
    spectra, skipped = report_spectra(sweep)
    assert got["spectra"][1] == skipped and list(got["spectra"][0]) == list(spectra)
    for key, s in spectra.items():
        for f in dataclasses.fields(s):
            np.testing.assert_equal(getattr(got["spectra"][0][key], f.name), getattr(s, f.name),
                                    err_msg=f.name)
    # what the worker sends back survives pickling unchanged (NotApplicable keeps its reason)
    back = pickle.loads(pickle.dumps(got))
    for key, p in got["predictions"].items():
        if isinstance(p, Exception):
            assert str(back["predictions"][key]) == str(p)
            assert back["predictions"][key].reason == p.reason


def test_theory_task_stores_the_phase_planes_the_phase_diagram_then_loads(tmp_path, monkeypatch):
    """With the cache on, the worker's theory task computes the phase diagram's planes during
    the sweep; drawn from the finished sweep, the figure finds every one in the cache folder
    (nothing computed again, nothing written) and gets the same numbers."""
    import matplotlib

    matplotlib.use("Agg")
    from initdiag import theory
    from initdiag.engine import cache
    from initdiag.report.context import Context
    from initdiag.report.figures_theory import phase_figure
    from initdiag.report.theory_data import phase_planes

    kw = dict(activations=["tanh", "relu"], inits=["glorot_normal", "he_normal", "orthogonal"],
              depths=[4], widths=[16], batch=8)
    plan = beside.planned(planned_records(**kw, histograms=True))
    monkeypatch.setattr(cache, "active_dir", lambda: None)  # off: nothing stored
    assert beside.theory_task({}, plan)["phase_s"] is None and not any(tmp_path.iterdir())

    monkeypatch.setattr(cache, "active_dir", lambda: tmp_path)
    from initdiag.report import theory_data

    def fails(*args, **kwargs):
        raise RuntimeError("planes")

    with monkeypatch.context() as m:  # a failure there costs the planes, not the theory
        m.setattr(theory_data, "phase_planes", fails)
        failed = beside.theory_task({}, plan)
    assert failed["phase_s"] is None and len(failed["predictions"]) == len(plan)
    out = beside.theory_task({}, plan)
    assert out["phase_s"] is not None and out["phase_s"] >= 0
    stored = {f.name: f.stat().st_mtime_ns for f in (tmp_path / "initdiag-arrays").iterdir()}
    # a grid per activation, and the edge of chaos of each activation that has one
    assert sum(n.startswith("phase_grid-") for n in stored) == 2
    expected = phase_planes(plan, out["predictions"])

    def computed(*args, **kwargs):
        raise AssertionError("computed again instead of loaded from the cache folder")

    monkeypatch.setattr(theory, "phase_grid", computed)
    monkeypatch.setattr(theory, "edge_of_chaos", computed)
    sweep = initdiag.sweep(**kw, histograms=True)
    ctx = Context(sweep)
    phase_figure(sweep, ctx)
    again = phase_planes(sweep, ctx.predictions)
    assert {f.name: f.stat().st_mtime_ns
            for f in (tmp_path / "initdiag-arrays").iterdir()} == stored
    assert list(again) == list(expected) == ["tanh", "relu"]
    for act in expected:
        for field in dataclasses.fields(expected[act]):
            np.testing.assert_array_equal(getattr(again[act], field.name),
                                          getattr(expected[act], field.name))
