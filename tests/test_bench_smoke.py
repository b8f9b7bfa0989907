"""Smoke test of the benchmark harness (scripts/_bench) without torch: the FLOP count, the
interleaved timer, the naive JAX peer against initdiag, the equality check, targets and table.

The harness itself (scripts/bench) is run by hand; this keeps its torch-free parts from rotting.
"""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import initdiag  # noqa: E402
from _bench import measure, naive, render, systems  # noqa: E402
from _bench.workloads import METRICS, STANDARD_INITIALIZERS, flops_per_pass, workloads  # noqa: E402


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
    assert set(METRICS) == set(initdiag.METRICS)


def test_interleaved_is_round_robin():
    calls = []
    out = measure.interleaved({"x": lambda: calls.append("x"), "y": lambda: calls.append("y")},
                              warmup=1, reps=3)
    assert calls == ["x", "y"] * 4
    assert len(out["x"]["times"]) == 3 and out["x"]["first"] is not None
    assert out["x"]["min"] <= out["x"]["median"] <= out["x"]["max"]


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
                "frac_jnp_dot": frac, "frac_torch_mm": None, "peak_rss": peak}
    wl = lambda sysmap: {"shape": "L=2, W=4, B=4", "configs": 1, "systems": sysmap}
    return {
        "command": "scripts/bench --quick", "quick": True, "started": "now",
        "machine": {"nproc": 2, "cpu": "cpu", "mem_total_gib": 1.0, "platform": "linux",
                    "loadavg_start": [1.0, 1.0, 1.0], "loadavg_end": [2.0, 2.0, 2.0]},
        "versions": {"jax": "0"}, "settings": {"reps": 5, "warmup": 1},
        "workloads": {
            "a": wl({"initdiag": rec(1.0, 2.0, 100, 0.8), "torch": rec(3.0, 7.0, 100, 0.3)}),
            "b": wl({"initdiag": rec(1.0, 2.0, 100, 0.7), "torch": rec(0.9, 1.0, 100, 0.3)}),
            "d": wl({"initdiag": rec(1.0, 2.0, 3 * 2**30, 0.5),
                     "torch": {"status": "skipped", "reason": "too big <here>"}}),
        },
        "memory": [{"workload": "d", "plan": "p", "baseline": 1, "estimate": 1, "predicted": 130,
                    "measured": 100, "error_pct": 30.0}],
        "compile_flatness": {"small": {"depth": 10, "width": 4, "batch": 4, "compile_s": 1.0},
                             "large": {"depth": 1000, "width": 4, "batch": 4, "compile_s": 1.4},
                             "ratio": 1.4},
        "report": {"command": "initdiag report", "wall_s": 61.0, "returncode": 0},
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
    assert got["default `initdiag report` < 60 s wall"] is False
    assert got["(d) memory estimate within 25% of measured peak"] is False
    res["targets"] = render.targets(res)
    md = render.markdown(res)
    assert "| (a) L=2, W=4, B=4, 1 config | torch | 3.000 [3.000–3.000] |" in md
    assert "skipped: too big <here>" in md and "3.00x" in md
    assert md.count("**FAIL**") == 5 and md.count("| PASS |") == 3
    assert math.isclose(float(md.split("ratio ")[1].split(".\n")[0]), 1.4)
