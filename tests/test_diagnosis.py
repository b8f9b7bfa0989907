"""Diagnosis verdicts on real probes of textbook cases, each checked on several seeds."""

import json
import math

import numpy as np
import pytest

import initdiag
from initdiag.analysis.diagnosis import PRIORITY, TITLES

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
        # ... and the verdict says so beside the theory: chi = sigma_w^2 / 2 = 1/2, sqrt(chi) =
        # 0.707 per layer, 1 / log10(sqrt 2) = 6.6 layers per decade, within the finite-width band
        ev, text = v.evidence, str(v)
        assert ev["theory_chi"] == pytest.approx(0.5, rel=1e-9)
        assert ev["theory_grad_factor_per_layer"] == pytest.approx(2 ** -0.5, rel=1e-9)
        lo, hi = ev["theory_grad_band"]
        assert lo < 2 ** -0.5 < hi and lo < ev["grad_factor_per_layer"] < hi and hi / lo < 1.15
        assert not ev["theory_parts"] and ev["theory_note"] == ""
        measured = f"x{ev['grad_factor_per_layer']:.3g} per layer going back (fitted), falls 10x " \
                   f"every {1 / abs(ev['grad_log10_slope']):.2g} layers"
        assert measured in text
        assert ("mean-field theory: chi = 0.5 per layer, so x0.707 per layer for the gradient RMS "
                "(sqrt(chi)), falls 10x every 6.6 layers; the measured factor is within the "
                "finite-width band") in text


def test_verdict_says_where_theory_does_not_apply_and_why():
    # sigmoid with layernorm still vanishes (x0.4 per layer), but mean field does not model the
    # normalization: no theory number, the reason instead
    r = initdiag.probe("sigmoid", "xavier_normal", depth=30, width=128, batch=64, norm="layernorm")
    v = initdiag.diagnose(r)
    assert v.kind == "vanishing" and math.isnan(v.evidence["theory_chi"])
    assert "normalization is not modelled" in v.evidence["theory_note"]
    assert ("mean-field theory does not apply: norm='layernorm': normalization is not modelled "
            "(it fixes each layer's scale whatever the initializer)") in v.detail
    assert "chi =" not in str(v) and "normalization" not in v.suggestion  # it has one already
    res = initdiag.diagnose(initdiag.probe("relu", "he_normal", depth=30, width=64, batch=32,
                                           residual=1.0))
    assert res.kind == "exploding" and "residual stacks are not modelled" in res.detail
    healthy = initdiag.diagnose(initdiag.probe("relu", "he_normal", depth=10, width=64, batch=32,
                                               norm="layernorm"))
    assert healthy.ok and "mean-field theory does not apply" in healthy.detail


def test_verdict_says_where_measurement_and_theory_part():
    r = initdiag.probe("relu", "glorot_normal", **BIG)
    L = BIG["depth"]
    # an extra x0.9 per layer going back: x0.64 measured against theory's x0.707
    values = {**r.values, "grad_preact_rms": r["grad_preact_rms"] * 0.9 ** (L - np.arange(1, L + 1))}
    v = initdiag.diagnose(initdiag.ProbeResult(config=r.config, seed=0, values=values))
    ev = v.evidence
    assert ev["theory_parts"] and ev["grad_factor_per_layer"] < ev["theory_grad_band"][0]
    assert (f"measurement and theory part: the measured x{ev['grad_factor_per_layer']:.3g} per "
            f"layer is outside the finite-width band") in str(v)
    assert "(width 256, depth 50)" in str(v)
    # the half_mse loss feeds the output back: the text says the gradient prediction assumes
    # the projection loss's independent readout
    mse = initdiag.diagnose(initdiag.probe("relu", "glorot_normal", loss="half_mse", **BIG))
    assert mse.kind == "vanishing" and "loss=half_mse" in mse.detail
    assert "independent readout" in mse.evidence["theory_note"]


def test_gradient_band_against_a_simulated_random_walk():
    from initdiag import theory
    from initdiag.theory import _finite

    # relu: R = Var(W) sum_j 1[h_j > 0] xi_j^2 has relative variance (3 * 1/2 - 1/4) / (1/4) / n
    n, L = 256, 50
    q = np.full(L, 2.0)
    step = _finite.grad_step_var(theory.gaussian("relu"), q, [n] * L)
    np.testing.assert_allclose(step, 5 / (4 * n), rtol=1e-12)
    rng = np.random.default_rng(0)
    masks = rng.random((20000, n)) < 0.5
    ratio = (masks * rng.standard_normal((20000, n)) ** 2).sum(1) * (2 / n)
    assert np.var(0.5 * np.log(ratio)) == pytest.approx(5 / (4 * n), rel=0.05)
    # sd of the fitted log10 slope of a backward random walk with these steps, by simulation
    walks = np.cumsum(rng.normal(0, np.sqrt(5 / (4 * n)), (20000, L - 1))[:, ::-1], axis=1)[:, ::-1]
    log10_g = np.concatenate([walks, np.zeros((20000, 1))], axis=1) / np.log(10)
    slopes = np.polyfit(np.arange(1, L + 1), log10_g.T, 1)[0]
    assert _finite.grad_slope_sd(step) == pytest.approx(np.std(slopes), rel=0.03)
    keep = np.arange(1, L + 1) > 10
    slopes_k = np.polyfit(np.arange(11, L + 1), log10_g[:, 10:].T, 1)[0]
    assert _finite.grad_slope_sd(step, keep) == pytest.approx(np.std(slopes_k), rel=0.03)


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


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_identical_units_from_a_custom_init_are_symmetric(act):
    import jax.numpy as jnp
    same_columns = lambda key, shape, dtype: jnp.full(shape, 1.0 / shape[0], dtype)  # noqa: E731
    r = initdiag.probe(act, same_columns, depth=10, width=64, batch=32)
    v = initdiag.diagnose(r)
    assert v.kind == "symmetric" and v.layer == 1 and str(v).startswith("symmetric: identical units")
    # the same stack with random (He) columns is not
    other = initdiag.diagnose(initdiag.probe(act, "he_normal", depth=10, width=64, batch=32))
    assert "symmetric" not in [f.kind for f in other.findings]


@pytest.mark.parametrize("act,init", [("relu", "he_normal(gain=2)"), ("linear", "orthogonal(gain=3)")])
def test_large_gain_explodes(act, init):
    gain = {"relu": 2.0, "linear": 3.0}[act]
    for v in verdicts(act, init, depth=30, width=128):
        assert v.kind == "exploding" and v.key_value > 1e2
        # each layer multiplies the backward signal by the gain (He/orthogonal keep it at 1 at gain 1)
        assert v.evidence["grad_factor_per_layer"] == pytest.approx(gain, rel=0.05)


# The engine carries the signal scaled (x = xs 2^E), so the pass overflows only where its float64
# statistics do: variance 9^L (gain 3) or 16^L (relu, gain 4) beyond 1e308.
@pytest.mark.parametrize("act,init,depth", [("linear", "orthogonal(gain=3)", 400),
                                            ("relu", "he_normal(gain=4)", 300)])
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
    # normal(0.01): x0.113 per layer. In float32 the forward signal underflows to exactly 0, so
    # every unit reads 0 -- collapse, not death -- and relu'(0) = 0 passes no gradient at all.
    # A pass that avoids the underflow leaves tiny but nonzero gradients instead.
    for v in verdicts("relu", "normal(std=0.01)"):
        assert v.kind == "vanishing" and "dead" not in kinds(v.findings)
        text = str(v)
        assert "falls to 0x" not in text
        if v.evidence["grad_zero_layers"] == 50:
            assert v.evidence["max_dead_frac"] == 1.0 and v.key_value == 0.0
            assert ("grad RMS is exactly 0 at all 50 layers, layer 50 included: no gradient "
                    "reaches the stack (the forward signal is exactly 0 from layer") in text
            assert "below 0.01" not in text
        else:
            assert 0 < v.key_value < 1e-30 and f"falls to {v.key_value:.2g}x" in text
        assert "mean-field theory: chi = 0.0128 per layer, so x0.113 per layer" in text


def test_zero_and_tiny_gradients_are_worded_apart():
    r = initdiag.probe("relu", "he_normal", depth=20, width=64, batch=32)
    L = 20
    tiny = 0.113 ** (L - np.arange(1, L + 1))
    fwd = {"act_var": r["act_var"] * tiny, "act_mean": r["act_mean"] * tiny}
    cases = {
        "tiny": {**r.values, **fwd, "grad_preact_rms": tiny},
        "zero": {**r.values, "grad_preact_rms": np.zeros(L),
                 "act_var": np.where(np.arange(1, L + 1) >= 15, 0.0, r["act_var"]),
                 "act_mean": np.where(np.arange(1, L + 1) >= 15, 0.0, r["act_mean"])},
        "some": {**r.values, "grad_preact_rms": np.where(np.arange(1, L + 1) <= 5, 0.0, tiny)},
    }
    text = {k: str(initdiag.diagnose(initdiag.ProbeResult(config=r.config, seed=0, values=c)))
            for k, c in cases.items()}
    assert text["tiny"].startswith(f"vanishing gradients: grad RMS falls to {0.113 ** 19:.2g}x from "
                                   "layer 20 to layer 1: x0.113 per layer going back (fitted), "
                                   "falls 10x every 1.1 layers; below 0.01 from layer 17 down")
    assert "exactly 0" not in text["tiny"]
    assert text["zero"].startswith("vanishing gradients: grad RMS is exactly 0 at all 20 layers, "
                                   "layer 20 included: no gradient reaches the stack (the forward "
                                   "signal is exactly 0 from layer 15 on")
    assert "0x" not in text["zero"] and "below 0.01" not in text["zero"]
    assert text["some"].startswith("vanishing gradients: grad RMS falls to exactly 0 at 5 of 20 "
                                   "layers (the highest is layer 5); x0.113 per layer going back "
                                   "(fitted), falls 10x every 1.1 layers over the nonzero layers")


def test_suggestions_give_the_edge_of_chaos_of_the_actual_activation():
    # leaky_relu + xavier (sigma_w^2 = 1, chi_1 = 0.5): the edge is 2 / (1 + 0.01^2), not the
    # failing init itself
    v = initdiag.diagnose(initdiag.probe("leaky_relu", "xavier_normal", depth=40, width=128, batch=32))
    assert v.kind == "vanishing"
    assert "sigma_w^2 = 2 with sigma_b^2 = 0 is at the edge of chaos for leaky_relu" in v.suggestion
    # gelu with sigma_b^2 = 0.25: a number for gelu (1.96, test_theory checks it against scipy)
    g = initdiag.diagnose(initdiag.probe("gelu", "xavier_normal", depth=50, width=128, batch=32,
                                         bias_init="normal(std=0.5)"))
    assert g.kind == "vanishing" and "ReLU" not in g.suggestion
    assert "sigma_w^2 = 1.96 with sigma_b^2 = 0.25 is at the edge of chaos for gelu" in g.suggestion
    # sigmoid: an edge exists (sigma_w^2 = 103 at sigma_b^2 = 0), with half the units saturated
    s = initdiag.diagnose(initdiag.probe("sigmoid", "xavier_normal", depth=30, width=128, batch=32))
    assert s.kind == "vanishing" and "no init fixes" not in s.suggestion
    assert "edge of chaos at sigma_w^2 = 103 with sigma_b^2 = 0" in s.suggestion
    assert "50% of activations are saturated" in s.suggestion and "prefer tanh or ReLU" in s.suggestion


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
