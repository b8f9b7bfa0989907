"""Smoke test of the benchmark harness (scripts/_bench) without torch: the FLOP count, the
interleaved timer, the jnp.dot ceiling runner and the per-round ratio, the --reps rule, the naive
JAX peer against initdiag, the equality check, targets and table.

The harness itself (scripts/bench) is run by hand; this keeps its torch-free parts from rotting.
"""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import importlib  # noqa: E402
import importlib.util  # noqa: E402

import initdiag  # noqa: E402
from _bench import floor, measure, naive, render, systems  # noqa: E402
from _bench.workloads import METRICS, STANDARD_INITIALIZERS, flops_per_pass, workloads  # noqa: E402

bench_main = importlib.import_module("_bench.__main__")


def test_no_torch_imported():
    assert "torch" not in sys.modules


def test_flop_count_and_workloads():
    assert flops_per_pass(2, 3, 5) == 6 * 2 * 3 * 3 * 5
    full = workloads()
    a = full["a"]
    assert a.sweep and len(a.configs) == 33 and (a.depth, a.width, a.batch) == (50, 256, 256)
    assert a.flops == 33 * 6 * 50 * 256**2 * 256
    assert (full["b"].depth, full["b"].width, full["b"].batch) == (200, 512, 512)
    assert (full["c"].depth, full["c"].width, full["c"].batch) == (1000, 256, 128)
    assert (full["d"].depth, full["d"].remat) == (10_000, True)
    assert STANDARD_INITIALIZERS == tuple(initdiag.STANDARD_INITIALIZERS)
    # the peers compare the metrics they implement, each one of initdiag's
    assert set(METRICS) <= set(initdiag.METRICS) and len(set(METRICS)) == len(METRICS) == 13


def test_interleaved_is_round_robin():
    calls = []
    out = measure.interleaved({"x": lambda: calls.append("x"), "y": lambda: calls.append("y")},
                              warmup=1, reps=3)
    assert calls == ["x", "y"] * 4
    assert len(out["x"]["times"]) == 3 and out["x"]["first"] is not None
    assert out["x"]["min"] <= out["x"]["median"] <= out["x"]["max"]


@pytest.mark.parametrize("quick", [False, True])
def test_matmul_ceiling_does_the_workloads_flops(quick):
    for key, wl in workloads(quick).items():
        assert wl.matmuls == 3 * wl.depth * len(wl.configs), key
        chain = measure.MatmulChain("jnp.dot", wl.matmuls, wl.batch, wl.width, run=lambda: None)
        assert chain.flops == wl.flops == 6 * wl.depth * wl.width**2 * wl.batch * len(wl.configs)


@pytest.fixture
def no_torch(monkeypatch):
    """The harness as it runs where torch is not installed (it may be in .venv)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))


def test_matmul_runners_without_torch(no_torch):
    wl = workloads(quick=True)["b"]
    runners, skipped = bench_main.matmul_runners(wl)
    assert list(runners) == ["jnp.dot"] and skipped == {"torch.mm": "torch not installed"}
    dot = runners["jnp.dot"]
    assert (dot.dots, dot.batch, dot.width) == (3 * 20, 128, 128)
    assert dot.flops == wl.flops == 6 * 20 * 128**2 * 128
    assert dot.compile_s is not None and "torch" not in sys.modules


def test_jnp_dot_chain_computes_x_times_q_to_the_n():
    for n in (1, 2, 7):
        chain = measure.jnp_dot_chain(n, batch=5, width=8, seed=1)
        x, q = measure.orthogonal_data(5, 8, seed=1)
        assert x.dtype == q.dtype == np.float32
        np.testing.assert_allclose(q.T @ q, np.eye(8), atol=1e-5)
        out = np.asarray(chain())
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, x @ np.linalg.matrix_power(q, n), rtol=1e-4, atol=1e-5)
    # Values stay O(1) over a long chain: Q orthogonal keeps every row's norm.
    chain = measure.jnp_dot_chain(3000, batch=4, width=16)
    x, _ = measure.orthogonal_data(4, 16)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(chain()), axis=1),
                               np.linalg.norm(x, axis=1), rtol=1e-3)


def test_round_ratios_is_the_median_of_per_round_ratios():
    r = measure.round_ratios([1.0, 1.0, 4.0], [2.0, 1.0, 2.0])
    assert r["rounds"] == [0.5, 1.0, 2.0]
    assert (r["median"], r["min"], r["max"]) == (1.0, 0.5, 2.0)
    # not the ratio of the medians (1 / 2), nor the ratio of the means
    with pytest.raises(ValueError):
        measure.round_ratios([1.0], [1.0, 2.0])


def test_bench_workload_pairs_rounds(no_torch, monkeypatch):
    """One workload through the harness with stub systems: the ceiling runner is in the same
    round-robin, and each system's fraction is the median of t(jnp.dot)_i / t(system)_i."""
    wl = workloads(quick=True)["c"]
    calls = []

    def fake_run(system, workload, seed=0):
        calls.append(system)
        return []

    monkeypatch.setattr(systems, "run", fake_run)
    monkeypatch.setattr(bench_main, "_worker", lambda *a: {
        "first_s": 1.0, "e2e_s": 2.0, "import_s": 0.5, "peak_rss": 1, "baseline_rss": 1})
    args = bench_main.parse(["--quick", "--reps", "3"])
    out = bench_main.bench_workload("c", wl, args, {"jnp_dot": 1.0, "torch_mm": None}, None)
    assert out["round_order"] == ["initdiag", "jnp.dot", "floor + draw", "floor", "torch",
                                  "naive-jax"]
    assert calls == ["initdiag", "torch", "naive-jax"] * 4  # 1 warm-up + 3 rounds
    dot = out["matmul"]["jnp.dot"]
    assert dot["status"] == "ok" and dot["dots"] == wl.matmuls and dot["flops"] == wl.flops
    assert len(dot["times"]) == 3
    for name in ("floor + draw", "floor"):  # paired with jnp.dot round by round, like a system
        rec = out["floor"][name]
        rounds = [d / t for d, t in zip(dot["times"], rec["times"])]
        assert rec["status"] == "ok" and len(rec["times"]) == 3
        assert rec["frac_jnp_dot_rounds"] == rounds and rec["frac_jnp_dot"] == sorted(rounds)[1]
        assert rec["compile_s"] > 0 and rec["frac_torch_mm"] is None
    assert out["matmul"]["torch.mm"] == {"status": "skipped", "reason": "torch not installed"}
    for s in systems.SYSTEMS:
        rec = out["systems"][s]
        rounds = [d / t for d, t in zip(dot["times"], rec["times"])]
        assert rec["frac_jnp_dot_rounds"] == rounds
        assert rec["frac_jnp_dot"] == sorted(rounds)[1]
        assert (rec["frac_jnp_dot_min"], rec["frac_jnp_dot_max"]) == (min(rounds), max(rounds))
        assert rec["frac_torch_mm"] is None
        assert math.isclose(rec["frac_jnp_dot_standalone"], rec["gflops"] / 1.0)


def test_floor_skipped_on_the_remat_workload(no_torch, monkeypatch):
    monkeypatch.setattr(systems, "run", lambda *a, **k: [])
    monkeypatch.setattr(bench_main, "_worker", lambda *a: {
        "first_s": 1.0, "e2e_s": 2.0, "import_s": 0.5, "peak_rss": 1, "baseline_rss": 1})
    out = bench_main.bench_workload("d", workloads(quick=True)["d"],
                                    bench_main.parse(["--quick", "--reps", "1"]),
                                    {"jnp_dot": 1.0, "torch_mm": None}, None)
    assert "floor" not in out["round_order"] and "floor + draw" not in out["round_order"]
    assert {r["status"] for r in out["floor"].values()} == {"skipped"}
    assert "every layer's weights" in out["floor"]["floor"]["reason"]


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_floor_pass_computes_initdiags_weight_gradients(activation):
    """The floor's pass is not dead code or another computation: its per-layer ||x^T g_h||^2
    are initdiag's grad_weight_norm squared (same weights, input and readout; zero biases), an
    independent implementation (plain float32, no rescaling)."""
    import jax.numpy as jnp

    ws, bs, x, g = naive.draw("he_normal", depth=6, width=32, batch=16, seed=2)
    ours = initdiag.probe_params(weights=ws, biases=bs, x=x, activation=activation, readout=g)
    sq = np.asarray(floor.minimal_pass(activation)(jnp.stack(ws), x, g / 16), np.float64)
    assert sq.shape == (6,) and np.all(sq > 0)
    np.testing.assert_allclose(np.sqrt(sq), ours["grad_weight_norm"], rtol=1e-5)
    # and it can fail: another activation's pass gives other numbers
    other = "relu" if activation != "relu" else "tanh"
    sq_other = np.asarray(floor.minimal_pass(other)(jnp.stack(ws), x, g / 16), np.float64)
    assert not np.allclose(np.sqrt(sq_other), ours["grad_weight_norm"], rtol=1e-2)


def test_floor_draws_initdiags_weights_once_per_initializer():
    wl = workloads(quick=True)["a"]
    fl = floor.Floor(wl, seed=0)
    assert fl.inits == ["glorot_normal", "he_normal", "orthogonal"]  # 9 configs, 3 draws
    assert len(fl.configs) == 9
    # the weights a probe of each initializer uses, bit for bit
    prepare = importlib.import_module("initdiag.probe").prepare
    for init in fl.inits:
        job = prepare(initdiag.ProbeConfig(activation="relu", init=init, depth=wl.depth,
                                           width=wl.width, batch=wl.batch), 0)
        np.testing.assert_array_equal(np.asarray(fl.weights[init]), np.asarray(job.params[0][0]))
    a, b = fl.floor(), fl.with_draw()
    assert len(a) == len(b) == 9
    for x, y in zip(a, b):  # drawing again gives the same weights, so the same numbers
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_draw_options_part_runs_and_renders():
    from _bench import draws

    rec = draws.bench(quick=True, reps=1, log=lambda msg: None)
    assert list(rec["impls"]) == list(draws.IMPLS)
    assert all(t > 0 for t in rec["impls"].values())
    assert set(rec["share"]["times"]) == {"every initializer", "one per family"}
    assert set(rec["share"]["families"]) <= set(rec["share"]["inits"])
    md = "\n".join(draws.markdown(rec))
    assert "| initdiag's written-out threefry (default) |" in md and "| rbg |" in md
    base = rec["impls"]["initdiag's written-out threefry (default)"]
    for label, t in rec["impls"].items():  # each row's ratio to initdiag's keys
        assert f"| {label} | {t:.3f} | {t / base:.2f}x |" in md
    every, fam = (rec["share"]["times"][k] for k in ("every initializer", "one per family"))
    assert f"could save at most {every - fam:.3f} s" in md
    # the flag is restored after compiling the non-partitionable runner
    import jax
    assert jax.config.jax_threefry_partitionable


def test_reps_rule():
    assert bench_main.parse([]).reps == 5
    assert bench_main.parse(["--quick"]).reps == 2
    assert bench_main.parse(["--quick", "--reps", "1"]).reps == 1
    assert bench_main.parse(["--reps", "7"]).reps == 7


@pytest.mark.parametrize("argv,words", [
    (["--reps", "3"], ["--reps 3", "median of >= 5", "after warm-up", "--quick"]),
    (["--reps", "4", "--only", "b"], ["--reps 4", ">= 5"]),
    (["--reps", "0"], ["--reps 0", ">= 1"]),
    (["--quick", "--reps", "0"], ["--reps 0", ">= 1"])])
def test_reps_rule_errors(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main.parse(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err


@pytest.mark.parametrize("activation,init", [("tanh", "glorot_normal"), ("sigmoid", "orthogonal"),
                                             ("relu", "he_normal")])
def test_naive_peer_equals_initdiag(activation, init):
    ws, bs, x, g = naive.draw(init, depth=6, width=24, batch=16, seed=3)
    loop = naive.stack_stats(ws, bs, x, activation, g)
    ours = initdiag.probe_params(weights=ws, biases=bs, x=x, activation=activation, readout=g)
    assert systems.compare({m: ours[m] for m in METRICS}, loop, width=24, batch=16) == []
    assert np.all(np.isnan(loop["dead_frac"])) == (activation != "relu")
    # The check can fail: a 0.1% change in one metric at one layer is reported by name.
    bad = dict(loop)
    bad["grad_weight_norm"] = bad["grad_weight_norm"].copy()
    bad["grad_weight_norm"][2] *= 1.001
    diff = systems.compare({m: ours[m] for m in METRICS}, bad, width=24, batch=16)
    assert len(diff) == 1 and diff[0].startswith("grad_weight_norm")


def _result():
    def rec(median, e2e, peak, frac):
        return {"status": "ok", "median_s": median, "min_s": median, "max_s": median,
                "first_s": e2e, "compile_s": e2e - median, "e2e_s": e2e, "gflops": 10.0,
                "frac_jnp_dot": frac, "frac_jnp_dot_min": frac - 0.1,
                "frac_jnp_dot_max": frac + 0.1, "frac_torch_mm": None, "peak_rss": peak}
    matmul = {"jnp.dot": {"status": "ok", "dots": 6, "median_s": 0.5, "min_s": 0.4,
                          "max_s": 0.6, "first_s": 0.7, "compile_s": 0.1, "gflops": 20.0},
              "torch.mm": {"status": "skipped", "reason": "torch not installed"}}
    wl = lambda sysmap: {"shape": "L=2, W=4, B=4", "configs": 1, "systems": sysmap,
                         "matmul": matmul}
    return {
        "command": "scripts/bench --quick", "quick": True, "started": "now",
        "machine": {"nproc": 2, "cpu": "cpu", "mem_total_gib": 1.0, "platform": "linux",
                    "loadavg_start": [1.0, 1.0, 1.0], "loadavg_end": [2.0, 2.0, 2.0]},
        "versions": {"jax": "0"},
        "settings": {"reps": 5, "warmup": 1, "torch_threads": 2,
                     "round_order": ["initdiag", "jnp.dot", "torch.mm", "torch", "naive-jax"]},
        "rooflines": {"4x4": {"batch": 4, "width": 4, "jnp_dot": 1.0, "torch_mm": None}},
        "workloads": {
            "a": {**wl({"initdiag": {**rec(1.0, 2.0, 100, 0.8), "e2e_cold_s": 3.5,
                                     "e2e_warm_s": 2.0, "times": [1.0, 2.0, 1.2]},
                        "torch": rec(3.0, 7.0, 100, 0.3)}),
                  "floor": {"floor + draw": {**rec(0.625, 0.7, 0, 0.72),
                                             "times": [0.9, 1.0, 0.6]},
                            "floor": rec(0.5, 0.6, 0, 0.9)}},
            "b": wl({"initdiag": rec(1.0, 2.0, 100, 0.7), "torch": rec(0.9, 1.0, 100, 0.3)}),
            "d": wl({"initdiag": rec(1.0, 2.0, 3 * 2**30, 0.5),
                     "torch": {"status": "skipped", "reason": "too big <here>"}}),
        },
        "memory": [{"workload": "d", "plan": "p", "baseline": 1, "estimate": 1, "predicted": 130,
                    "measured": 100, "error_pct": 30.0}],
        "compile_flatness": {"small": {"depth": 10, "width": 4, "batch": 4, "compile_s": 1.0},
                             "large": {"depth": 1000, "width": 4, "batch": 4, "compile_s": 1.4},
                             "ratio": 1.4},
        "report": {"command": "initdiag report", "rounds": 1, "modes": {
            "cold": {"returncodes": [0], "wall_s": 16.0, "wall_min_s": 16.0, "wall_max_s": 16.0,
                     "cpu_s": 20.0, "phases": {"sweep": 5.0, "total": 14.0,
                                               "start-up + exit": 2.0}},
            "warm": {"returncodes": [0], "wall_s": 9.5, "wall_min_s": 9.0, "wall_max_s": 9.9,
                     "cpu_s": 12.0, "phases": {"sweep": 2.0, "total": 8.0,
                                               "start-up + exit": 1.5,
                                               "predictions (worker, during the sweep)": 0.7}},
            "no cache": {"returncodes": [1]}}},
    }


def test_targets_pass_and_fail():
    res = _result()
    got = {t["target"]: t["pass"] for t in render.targets(res)}
    assert got["(a) steady state >= 75% of jnp.dot throughput"] is True
    assert got["(b) steady state >= 75% of jnp.dot throughput"] is False
    assert got["(b) steady state at least as fast as torch hooks"] is False  # 0.9 s vs 1.0 s
    assert [v for k, v in got.items() if k.startswith("(a) >= 3x")] == [True]  # 7 s / 2 s
    assert got["compile(L=1000) <= 1.5x compile(L=10)"] is True
    assert got["(d) peak RSS <= 2 GiB"] is False
    assert got["default `initdiag report` <= 15 s, cold cache (fresh process)"] is False
    assert got["default `initdiag report` <= 10 s, warm cache (fresh process)"] is True
    assert got_measured(res, "default `initdiag report` <= 15 s, cold cache (fresh process)") \
        == "16.0 s"
    assert got["(d) memory estimate within 25% of measured peak"] is False
    res["targets"] = render.targets(res)
    md = render.markdown(res)
    assert "| (a) L=2, W=4, B=4, 1 config | torch | 3.000 [3.000–3.000] |" in md
    assert "skipped: too big <here>" in md and "3.00x" in md
    assert md.count("**FAIL**") == 5 and md.count("| PASS |") == 4
    # the (a) end-to-end target is taken warm, with cold and no-cache stated beside it
    assert "3.50x (2.0 s vs 7.0 s); cold cache 2.00x (3.5 s), no cache 3.50x (2.0 s)" in md
    # the report section: a column per mode that ran, a row per phase (a failed mode is left out)
    assert "| | cold | warm |" in md and "| wall s (min–max) | 16.0 (16.0–16.0) | 9.5 (9.0–9.9) |" in md
    assert "| start-up + exit s | 2.00 | 1.50 |" in md
    # a phase only one mode has: shown, with a dash for the other
    assert "| predictions (worker, during the sweep) s | – | 0.70 |" in md
    assert math.isclose(float(md.split("ratio ")[1].split(".\n")[0]), 1.4)
    # the interleaved fraction, median [min–max] over the rounds, is what the table shows
    assert "| 10.0 | 80 [70–90] | – |" in md
    assert got_measured(res, "(a) steady state >= 75% of jnp.dot throughput") == \
        "80% (rounds 70–90%); the floor with its weight draw: 72%"
    assert got_measured(res, "(b) steady state >= 75% of jnp.dot throughput") == \
        "70% (rounds 60–80%)"  # no floor measured: nothing said of one
    assert "| (a) L=2, W=4, B=4, 1 config | floor + draw | 0.625 [0.625–0.625] | 0.70 |" in md
    floors = md.split("## Floors")[1]
    # per round: 0.9 / 1.0, 1.0 / 2.0, 0.6 / 1.2 -> median 0.5 (not 0.625 s / 1.0 s)
    assert "| (a) | 75% | 90% | 72% | 80% | 50% |" in floors
    assert "(b)" not in floors.split("|---|")[-1]
    assert "| jnp.dot ceiling (6 dots) | 0.500 [0.400–0.600] | 0.70 | 0.10 | – | 20.0 |" in md
    assert "| torch.mm ceiling | skipped: torch not installed |" in md
    defs = md.split("\n\n")[2]
    assert defs.startswith("Steady state: median of 5 timed rounds after 1 warm-up")
    assert "initdiag, jnp.dot, torch.mm, torch, naive-jax" in defs
    assert "3·L·configs dependent [B,W]×[W,W] products" in defs
    assert "median over the timed rounds i of t(ceiling, round i) / t(system, round i)" in defs
    assert "## Standalone matmul rooflines (measured once at the start; orientation only)" in md


def test_report_phase_names_follow_the_reports_timings():
    from _bench import report as bench_report
    from initdiag.report.build import (BESIDE_TIMINGS, FIGURES_AFTER_TRAINING_TIMING,
                                       FIGURES_TIMING, HTML_TIMING, SHARED_FIGURES_TIMING,
                                       TOTAL_TIMING)

    name = bench_report.phase_name
    assert name("sweep (probing, incl. compilation)") == "sweep"
    assert name(HTML_TIMING) == "page" and name(TOTAL_TIMING) == "total"
    assert name(BESIDE_TIMINGS["predictions"]) == "predictions (worker, during the sweep)"
    assert name(BESIDE_TIMINGS["spectra"]) == "Jacobian (worker, during the sweep)"
    assert name(BESIDE_TIMINGS["phase"]) == "phase planes (worker, during the sweep)"
    assert name(BESIDE_TIMINGS["diagnosis"]) == "diagnosis (worker, beside the figures)"
    assert name(FIGURES_TIMING.format(n=3, of=8)) == bench_report.FIGURES_PHASE
    assert name(FIGURES_AFTER_TRAINING_TIMING.format(n=3, of=8)) == \
        bench_report.FIGURES_AFTER_TRAINING_PHASE
    assert name(SHARED_FIGURES_TIMING.format(n=2, of=8)) == "figures (shared)"
    assert name("figures") == "figures" and name("something else") is None


def got_measured(res, name):
    return next(t["measured"] for t in render.targets(res) if t["target"] == name)



# --- ReLU mask flips between torch and the reference (systems.mask_flips / compare_flips) -----

def _relu_stack(depth=4, width=128, batch=128, flip_layer=3, seed=0):
    """A float32 ReLU stack whose layer ``flip_layer`` has one pre-activation at float32
    rounding of 0 (row 0: the weight column made orthogonal to that row's input); the per-layer
    h of the forward pass; that entry's (row, unit); and the input."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, width)).astype(np.float32)
    ws = [(rng.standard_normal((width, width)) * np.sqrt(2 / width)).astype(np.float32)
          for _ in range(depth)]
    bs = [np.zeros(width, np.float32) for _ in range(depth)]
    hs, a = [], x
    for l, (w, b) in enumerate(zip(ws, bs)):
        if l == flip_layer - 1:
            xi = a[0].astype(np.float64)
            col = w[:, 0].astype(np.float64)
            w[:, 0] = (col - (xi @ col) / (xi @ xi) * xi).astype(np.float32)
        h = a @ w + b
        hs.append(h)
        a = np.maximum(h, 0)
    assert abs(hs[flip_layer - 1][0, 0]) < 1e-5 * np.abs(hs[flip_layer - 1]).max()
    return ws, bs, x, hs, (0, 0)


def _flipped(hs, layer, entry):
    peer = [h.copy() for h in hs]
    v = peer[layer - 1][entry]
    peer[layer - 1][entry] = -v if v != 0 else np.float32(1e-12)
    return peer


def _stats(depth=4, seed=1):
    rng = np.random.default_rng(seed)
    ours = {m: rng.uniform(0.5, 2.0, depth) for m in METRICS}
    ours["saturation"] = np.full(depth, np.nan)
    ours["zero_frac"] = ours["dead_frac"] = np.full(depth, 0.01)  # rtol * 0.01 << 1 entry
    return ours, {m: v.copy() for m, v in ours.items()}


def test_mask_flip_within_rounding_is_accepted_with_a_note():
    ws, bs, x, hs, entry = _relu_stack()
    peer = _flipped(hs, 3, entry)
    flips = systems.mask_flips(ws, bs, x, "relu", hs, peer)
    assert [(f["layer"], f["count"], f["within"]) for f in flips] == [(3, 1, True)]
    e = flips[0]["entries"][0]
    assert (e["row"], e["unit"]) == entry
    assert abs(e["h64_ref"]) <= e["bound_ref"] and abs(e["h64_peer"]) <= e["bound_peer"]
    ours, theirs = _stats()
    for m in ("grad_weight_norm", "grad_weight_ratio", "grad_preact_rms"):
        theirs[m][:3] *= 1 + 3e-3  # what a flip at layer 3 does: gradients of layers 1-3
    theirs["grad_act_rms"][:2] *= 1 + 3e-3  # dL/dx^l: layers below the flip only
    assert systems.compare(ours, theirs, width=128, batch=128) != []  # refused without the flip
    bad, note = systems.compare_flips(ours, theirs, flips, width=128, batch=128)
    assert bad == []
    assert "1 ReLU mask flip between torch and the naive JAX loop: 1 at layer 3" in note
    assert "within float32 rounding of 0" in note
    assert "gradient statistics of layers 1-3 (grad_act_rms: 1-2) compared at rtol 1e-02" in note
    assert "largest difference there 3.0e-03" in note
    assert "every other statistic at rtol 1e-04" in note
    # no flips: no note, the plain comparison
    assert systems.mask_flips(ws, bs, x, "relu", hs, [h.copy() for h in hs]) == []
    assert systems.compare_flips(ours, ours, [], width=128, batch=128) == ([], None)


def test_mask_flip_far_from_zero_is_refused():
    ws, bs, x, hs, _ = _relu_stack()
    h = hs[2]
    far = tuple(int(v) for v in np.unravel_index(np.argmax(np.abs(h)), h.shape))
    peer = _flipped(hs, 3, far)
    flips = systems.mask_flips(ws, bs, x, "relu", hs, peer)
    assert [(f["layer"], f["count"], f["within"]) for f in flips] == [(3, 1, False)]
    ours, theirs = _stats()
    theirs["grad_weight_norm"][:3] *= 1 + 3e-3
    bad, note = systems.compare_flips(ours, theirs, flips, width=128, batch=128)
    assert note is None
    assert any(b.startswith(f"ReLU mask flip at layer 3 (row {far[0]}, unit {far[1]}) not "
                            "within float32 rounding of 0") for b in bad), bad
    assert any(b.startswith("grad_weight_norm") for b in bad)  # and compared at rtol 1e-4


def test_too_many_mask_flips_are_refused():
    ours, theirs = _stats()
    many = [{"layer": 3, "count": 6, "within": True, "max_abs_h": 1e-8, "min_bound": 1e-4,
             "entries": []}]
    bad, note = systems.compare_flips(ours, theirs, many, width=256, batch=256)
    assert note is None and any("6 ReLU mask flips reach" in b for b in bad), bad
    bad, _ = systems.compare_flips(ours, theirs, [dict(many[0], count=2)], width=16, batch=16)
    assert any("2 ReLU mask flips at layer 3" in b and "> 1e-04" in b for b in bad), bad


@pytest.mark.parametrize("metric,layer", [("grad_weight_norm", 4), ("grad_act_rms", 3),
                                          ("preact_var", 3), ("act_mean", 4)])
def test_mismatch_a_flip_cannot_reach_is_refused(metric, layer):
    """A flip at layer 3 loosens only gradients of layers <= 3 (dL/dx: < 3): a 1e-3 difference
    above it, in dL/dx^3, or in a forward statistic is still a mismatch."""
    ws, bs, x, hs, entry = _relu_stack()
    flips = systems.mask_flips(ws, bs, x, "relu", hs, _flipped(hs, 3, entry))
    assert flips[0]["within"]
    ours, theirs = _stats()
    theirs[metric][layer - 1] *= 1 + 1e-3
    bad, _ = systems.compare_flips(ours, theirs, flips, width=128, batch=128)
    assert len(bad) == 1 and bad[0].startswith(metric), bad


def test_flip_counts_widen_the_zero_and_dead_fractions_at_their_layer_only():
    two = [{"layer": 3, "count": 2, "within": True, "max_abs_h": 1e-8, "min_bound": 1e-4,
            "entries": []}]
    n = 256
    ours, theirs = _stats()
    theirs["zero_frac"][2] += 2 / n**2  # the two flipped entries turned 0
    theirs["dead_frac"][2] += 2 / n  # and two units died
    assert systems.compare_flips(ours, theirs, two, width=n, batch=n)[0] == []
    theirs["zero_frac"][2] += 1 / n**2  # a third entry: more than the flips
    bad = systems.compare_flips(ours, theirs, two, width=n, batch=n)[0]
    assert len(bad) == 1 and bad[0].startswith("zero_frac"), bad
    ours, theirs = _stats()
    theirs["zero_frac"][3] += 2 / n**2  # two entries at layer 4, which has no flip
    bad = systems.compare_flips(ours, theirs, two, width=n, batch=n)[0]
    assert len(bad) == 1 and bad[0].startswith("zero_frac"), bad


def test_naive_preacts_are_the_pre_activations():
    ws, bs, x, g = naive.draw("he_normal", depth=3, width=8, batch=4, seed=0)
    stats, hs = naive.stack_stats(ws, bs, x, "relu", g, preacts=True)
    assert len(hs) == 3 and hs[0].dtype == np.float32
    # h = x W + 0 in float32 vs float64: each entry is a signed n-term sum, so its rounding is
    # bounded by the magnitudes summed, |h32 - h| <= gamma_{n+1} |x| |W| (Higham 2002, 3.5),
    # not by |h| (a relative bound fails wherever the sum cancels)
    x64, w64 = np.asarray(x, np.float64), np.asarray(ws[0], np.float64)
    gamma = 9 * 2.0**-24 / (1 - 9 * 2.0**-24)
    np.testing.assert_array_less(np.abs(hs[0] - x64 @ w64), gamma * (np.abs(x64) @ np.abs(w64)))
    np.testing.assert_allclose(stats["preact_var"], [h.astype(np.float64).var() for h in hs])


def test_bench_md_prints_the_flip_note():
    res = _result()
    note = "1 ReLU mask flip between torch and the naive JAX loop: 1 at layer 33 (...)"
    res["check"] = [{"activation": "relu", "init": "he_normal", "depth": 50, "width": 256,
                     "batch": 256, "torch": [], "naive-jax": [], "flips": [], "note": note},
                    {"activation": "tanh", "init": "glorot_uniform", "depth": 50, "width": 256,
                     "batch": 256, "torch": [], "naive-jax": [], "flips": [], "note": None}]
    res["targets"] = render.targets(res)
    check = render.markdown(res).split("## Same statistics")[1]
    assert (f"- relu/he_normal, L=50, W=256, B=256: all {len(METRICS)} metrics equal as noted: "
            f"{note}") in check
    assert f"- tanh/glorot_uniform, L=50, W=256, B=256: all {len(METRICS)} metrics equal\n" in check


def test_model_workloads_run_and_compile_once():
    """Issue 11's model workloads (tiny sizes): the probe and the plain pass run, the ratio and
    the sweep are reported, and the 10-scale sweep reuses one executable."""
    from _bench import models

    wls = models.model_workloads(quick=True)
    assert set(wls) == {"resnet", "transformer"}
    rec = models.bench(quick=True, warmup=1, reps=1)
    for key, r in rec.items():
        assert r["compiled"] == 1 and r["same_program"], key
        assert r["sweep_n"] == 10 and r["ratio"] > 0 and r["sites"] > 0
    assert "conv" in rec["resnet"]["kinds"] and "norm" in rec["resnet"]["kinds"]
    assert "attention" in rec["transformer"]["kinds"]
    assert "residual" in rec["transformer"]["kinds"]
    md = "\n".join(models.markdown(rec))
    assert "ResNet" in md and "transformer" in md
