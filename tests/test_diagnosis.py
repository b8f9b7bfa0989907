"""Diagnosis verdicts on real probes of textbook cases, each checked on several seeds."""

import json
import math

import numpy as np
import pytest

import initdiag
from initdiag.diagnosis import PRIORITY, TITLES

SEEDS = (0, 1, 2)
BIG = dict(depth=50, width=256, batch=128)


def verdicts(activation, init, seeds=SEEDS, **kw):
    opts = {**BIG, **kw}
    return [initdiag.diagnose(initdiag.probe(activation=activation, init=init, seed=s, **opts))
            for s in seeds]


def kinds(vs):
    return [v.kind for v in vs]


def test_xavier_relu_vanishes_by_the_known_factor():
    for v in verdicts("relu", "glorot_normal"):
        assert v.kind == "vanishing" and v.title == "vanishing gradients"
        # Xavier on a square ReLU stack halves the gradient variance per layer: RMS x 1/sqrt 2.
        assert v.evidence["grad_factor_per_layer"] == pytest.approx(2 ** -0.5, rel=0.05)
        assert v.key_value == v.evidence["grad_ratio"] < 1e-5
        assert 1 < v.layer < 50


def test_he_relu_is_healthy():
    for v in verdicts("relu", "he_normal"):
        assert v.ok and v.kind == "healthy" and v.findings == () and v.layer is None
        assert abs(v.evidence["grad_log10_slope"]) < 0.01


def test_tanh_std_one_saturates():
    for v in verdicts("tanh", "normal(std=1.0)"):
        assert v.kind == "saturation" and v.evidence["max_saturation"] > 0.8
        assert v.layer == 1  # N(0, 256) pre-activations saturate tanh from the first layer


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("init", ["zeros", "constant(value=0.1)"])
def test_zero_and_constant_init_are_symmetric(act, init):
    for v in verdicts(act, init, depth=12, width=64, batch=32):
        assert v.kind == "symmetric"
        if init == "zeros":
            assert v.key_value == 0 and v.layer == 1  # hidden layers receive no gradient at all


def test_zero_weights_from_the_metrics_alone():
    r = initdiag.probe("tanh", "zeros", depth=8, width=32, batch=16)
    given = initdiag.ProbeResult(config={**r.config, "init": "given"}, seed=0, values=r.values)
    assert initdiag.diagnose(given).kind == "symmetric"


@pytest.mark.parametrize("act,init", [("relu", "he_normal(gain=2)"), ("linear", "orthogonal(gain=3)")])
def test_large_gain_explodes(act, init):
    gain = {"relu": 2.0, "linear": 3.0}[act]
    for v in verdicts(act, init, depth=30, width=128):
        assert v.kind == "exploding" and v.key_value > 1e2
        # each layer multiplies the backward signal by the gain (He/orthogonal keep it at 1 at gain 1)
        assert v.evidence["grad_factor_per_layer"] == pytest.approx(gain, rel=0.05)


@pytest.mark.parametrize("act,init,depth", [("linear", "orthogonal(gain=3)", 100),
                                            ("relu", "he_normal(gain=4)", 80)])
def test_overflowing_pass_is_exploding_not_a_crash(act, init, depth):
    for v in verdicts(act, init, depth=depth, width=64, batch=64):
        assert v.kind == "exploding" and v.evidence["overflow"]
        assert v.key_value == math.inf and 1 < v.layer <= depth
        assert "vanishing" not in kinds(v.findings)  # zeros from NaN gradients are not trusted
        json.dumps(v.to_dict(), allow_nan=False)


def test_tanh_small_weights_vanish_and_collapse():
    # Both forward and backward shrink by sigma*sqrt(n) = 0.16 per layer; the gradient is primary.
    for v in verdicts("tanh", "normal(std=0.01)"):
        assert v.kind == "vanishing" and kinds(v.findings) == ["vanishing", "collapse"]
        assert v.evidence["grad_factor_per_layer"] == pytest.approx(0.16, rel=0.05)
        assert v.evidence["act_var_factor_per_layer"] == pytest.approx(0.16 ** 2, rel=0.1)


def test_negative_bias_kills_relu_units():
    for v in verdicts("relu", "he_normal", bias_init="constant(value=-1.0)"):
        assert v.kind == "dead" and v.key_value == 1.0 and 2 <= v.layer <= 6
        assert "vanishing" in kinds(v.findings)  # dead layers pass exactly zero gradient


def test_underflowed_relu_is_not_dead_but_vanished():
    # normal(0.01): the forward signal underflows to exactly 0, so every unit reads 0 -- collapse.
    for v in verdicts("relu", "normal(std=0.01)"):
        assert v.evidence["max_dead_frac"] == 1.0
        assert v.kind == "vanishing" and "dead" not in kinds(v.findings)
        assert v.key_value == 0.0 and v.evidence["grad_zero_layers"] == 50


def test_str_is_one_line_starting_with_the_title():
    for act, init in [("relu", "glorot_normal"), ("relu", "he_normal"), ("tanh", "zeros")]:
        v = verdicts(act, init, seeds=(0,), depth=20, width=64)[0]
        text = str(v)
        assert text.startswith(v.title + ": ") and "\n" not in text and "suggestion: " in text
        d = json.loads(json.dumps(v.to_dict(), allow_nan=False))
        assert d["kind"] == v.kind and d["text"] == text and d["seeds"] == [0]
    assert set(TITLES) == set(PRIORITY) | {"healthy"}


def test_threshold_overrides_turn_marginal_cases():
    # tanh + Xavier loses ~8x of gradient RMS over 50 layers; tanh + He gains ~8x.
    tanh_x = [initdiag.probe("tanh", "glorot_normal", seed=s, **BIG) for s in SEEDS]
    tanh_he = [initdiag.probe("tanh", "he_normal", seed=s, **BIG) for s in SEEDS]
    assert all(initdiag.diagnose(r).ok for r in tanh_x + tanh_he)
    assert all(initdiag.diagnose(r, grad_vanish=0.2).kind == "vanishing" for r in tanh_x)
    strict = initdiag.Thresholds(grad_explode=5.0)
    assert all(initdiag.diagnose(r, strict).kind == "exploding" for r in tanh_he)
    assert all(initdiag.diagnose(r, strict, grad_explode=50).ok for r in tanh_he)


def test_bad_thresholds_are_named():
    r = initdiag.probe("relu", "he_normal", depth=3, width=8, batch=4)
    with pytest.raises(ValueError, match="grad_vanishing.*grad_vanish.*Valid choices: grad_vanish, "
                                         "grad_explode, act_collapse, saturation, dead"):
        initdiag.diagnose(r, grad_vanishing=0.1)
    with pytest.raises(ValueError, match="grad_explode must be > 1; got 0.5"):
        initdiag.Thresholds(grad_explode=0.5)
    with pytest.raises(ValueError, match="threshold dead must be a number; got 'most'"):
        initdiag.diagnose(r, dead="most")
    with pytest.raises(ValueError, match="threshold saturation must be a number; got None"):
        initdiag.Thresholds(saturation=None)
    with pytest.raises(TypeError, match="ProbeResult"):
        initdiag.diagnose("results.json")


def test_sweep_pools_seeds_in_order_of_first_appearance():
    s = initdiag.sweep(activations=["relu"], inits=["glorot_normal", "he_normal"], depths=[20],
                       widths=[64], seeds=[0, 1, 2], batch=64)
    vs = initdiag.diagnose(s)
    assert [v.config["init"] for v in vs] == ["glorot_normal", "he_normal"]
    assert [v.seeds for v in vs] == [(0, 1, 2)] * 2 and "seed" not in vs[0].config
    per_seed = [initdiag.diagnose(r).evidence["grad_ratio"] for r in s.select(init="glorot_normal")]
    # the pooled ratio of geometric means is the geometric mean of the per-seed ratios
    assert vs[0].evidence["grad_ratio"] == pytest.approx(10 ** np.mean(np.log10(per_seed)), rel=1e-9)
    assert [v.kind for v in vs] == ["vanishing", "healthy"]
    assert initdiag.diagnose(list(s)) == vs


def test_depth_one_is_healthy():
    v = initdiag.diagnose(initdiag.probe("relu", "he_normal", depth=1, width=16, batch=8))
    assert v.ok and math.isnan(v.evidence["grad_log10_slope"])
