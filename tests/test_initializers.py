"""Initializers against their documented formulas: moments, KS tests, exact structure."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sst

import initdiag
from initdiag.nn.initializers import STANDARD_INITIALIZERS, TRUNCATED_NORMAL_STD, names

FAN_IN, FAN_OUT = 300, 500
N = FAN_IN * FAN_OUT  # 150k samples per test


def sample(init, shape=(FAN_IN, FAN_OUT), seed=0):
    return np.asarray(init(jax.random.key(seed), shape, jnp.float32), np.float64)


# name -> (scipy distribution of each entry) for shape (FAN_IN, FAN_OUT)
def _trunc(var):
    # truncated at +-2 sigma of the underlying normal, rescaled to have variance `var`
    sigma = math.sqrt(var) / TRUNCATED_NORMAL_STD
    return sst.truncnorm(-2, 2, scale=sigma)


EXPECTED = {
    "uniform": sst.uniform(-0.05, 0.1),
    "normal": sst.norm(scale=0.01),
    "truncated_normal": sst.truncnorm(-2, 2, scale=0.01),
    "glorot_uniform": sst.uniform(-math.sqrt(6 / (FAN_IN + FAN_OUT)), 2 * math.sqrt(6 / (FAN_IN + FAN_OUT))),
    "glorot_normal": _trunc(2 / (FAN_IN + FAN_OUT)),
    "he_uniform": sst.uniform(-math.sqrt(6 / FAN_IN), 2 * math.sqrt(6 / FAN_IN)),
    "he_normal": _trunc(2 / FAN_IN),
    "lecun_uniform": sst.uniform(-math.sqrt(3 / FAN_IN), 2 * math.sqrt(3 / FAN_IN)),
    "lecun_normal": _trunc(1 / FAN_IN),
    "torch_default": sst.uniform(-1 / math.sqrt(FAN_IN), 2 / math.sqrt(FAN_IN)),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_distribution_matches_documented_formula(name):
    w = sample(initdiag.initializer(name)).ravel()
    dist = EXPECTED[name]
    # KS test at 150k samples: a wrong scale by even 2% is rejected with p << 1e-6.
    assert sst.kstest(w, dist.cdf).pvalue > 1e-4
    # Second moment within 4 standard errors of the formula (and weight_variance agrees).
    var = dist.var()
    se = math.sqrt((dist.moment(4) - var**2) / w.size)
    assert abs(np.mean(w**2) - var) < 4 * se
    assert initdiag.initializer(name).weight_variance(FAN_IN, FAN_OUT) == pytest.approx(var, rel=1e-9)


def test_wrong_scale_is_rejected_by_the_same_ks_test():
    w = 1.03 * sample(initdiag.initializer("he_normal")).ravel()
    assert sst.kstest(w, EXPECTED["he_normal"].cdf).pvalue < 1e-6


@pytest.mark.parametrize("alias,canonical", [("xavier_uniform", "glorot_uniform"),
                                             ("xavier_normal", "glorot_normal"),
                                             ("kaiming_uniform", "he_uniform"),
                                             ("kaiming_normal", "he_normal"),
                                             ("pytorch_default", "torch_default")])
def test_aliases_give_identical_weights(alias, canonical):
    a, b = initdiag.initializer(alias), initdiag.initializer(canonical)
    assert a.name == canonical
    np.testing.assert_array_equal(sample(a), sample(b))


def test_gain_scales_every_initializer():
    for name in STANDARD_INITIALIZERS + ("constant", "truncated_normal"):
        base = sample(initdiag.initializer(name), (64, 48))
        scaled = sample(initdiag.initializer(name, gain=1.7), (64, 48))
        # multiplicative draws (normal, truncated normal, orthogonal, constant) scale by the gain
        # up to a few roundings: rtol. A uniform draw is w = fl(fl(f 2s) - s) (jax.random.uniform
        # over [-s, s]): absolute errors u 2s + u s, so near w = 0 no relative bound holds (6.7e-5
        # without FMA contraction, e.g. XLA at max ISA AVX). Two draws (the scaled, and 1.7 base
        # rounded): |diff| <= 6 u s + 2 u |w|; max|w| of 3072 draws exceeds 0.99 s.
        atol = 8 * 2.0**-24 * np.abs(scaled).max()
        np.testing.assert_allclose(scaled, 1.7 * base, rtol=2e-6, atol=atol, err_msg=name)


def test_named_parameters():
    assert np.all(sample(initdiag.initializer("constant", value=0.3), (4, 5)) == np.float32(0.3))
    w = sample(initdiag.initializer("uniform", scale=2.0))
    assert w.min() >= -2.0 and w.max() <= 2.0 and w.min() < -1.99 and w.max() > 1.99
    assert np.std(sample(initdiag.initializer("normal", std=0.5))) == pytest.approx(0.5, rel=0.01)
    vs = initdiag.initializer("variance_scaling", scale=2.0, mode="fan_in", distribution="normal")
    w = sample(vs).ravel()
    assert sst.kstest(w, sst.norm(scale=math.sqrt(2 / FAN_IN)).cdf).pvalue > 1e-4
    fo = initdiag.initializer("variance_scaling", scale=1.0, mode="fan_out", distribution="uniform")
    assert np.abs(sample(fo)).max() <= math.sqrt(3 / FAN_OUT)


def test_text_parameters_parse_and_labels_round_trip():
    a = initdiag.initializer("normal(std=0.1)")
    assert a == initdiag.initializer("normal", std=0.1)
    assert a.label == "normal(std=0.1)"
    assert initdiag.initializer(a.label) == a
    assert initdiag.initializer("he_normal").label == "he_normal"
    vs = initdiag.initializer("variance_scaling(scale=2.0, mode=fan_out)")
    assert initdiag.initializer(vs.label) == vs


@pytest.mark.parametrize("shape", [(64, 64), (128, 32), (32, 128)])
def test_orthogonal_is_orthogonal(shape):
    w = sample(initdiag.initializer("orthogonal", gain=1.5), shape)
    gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
    np.testing.assert_allclose(gram, 1.5**2 * np.eye(min(shape)), atol=1e-4)


def test_torch_default_weight_and_bias_rule():
    init = initdiag.initializer("torch_default")
    w = sample(init, (400, 100))
    bound = 1 / math.sqrt(400)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert np.var(w) == pytest.approx(bound**2 / 3, rel=0.02)
    b = np.asarray(init.bias(jax.random.key(1), 400, 5000))
    assert b.shape == (5000,)
    assert np.abs(b).max() <= bound and np.abs(b).max() > 0.99 * bound  # fan_in of the layer, not of b
    assert np.var(b) == pytest.approx(bound**2 / 3, rel=0.06)


def test_fan_dependent_bias_uses_the_layer_fans():
    b = np.asarray(initdiag.initializer("he_normal").bias(jax.random.key(2), 200, 20000), np.float64)
    assert np.var(b) == pytest.approx(2 / 200, rel=0.05)


def test_unknown_name_lists_valid_and_suggests_closest():
    with pytest.raises(ValueError) as e:
        initdiag.initializer("xavier")
    msg = str(e.value)
    assert "'xavier'" in msg and "xavier_uniform" in msg and "Did you mean" in msg
    for n in names():
        assert n in msg
    with pytest.raises(ValueError, match="he_normal"):
        initdiag.initializer("he_nromal")


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="'stddev'.*Valid parameters: std, gain"):
        initdiag.initializer("normal", stddev=0.1)
    with pytest.raises(ValueError, match="fan_avg"):
        initdiag.initializer("variance_scaling", mode="fan_mean")
    with pytest.raises(ValueError, match="std=-1"):
        initdiag.initializer("normal", std=-1)


def test_user_callable_is_accepted_everywhere():
    def mine(key, shape, dtype=jnp.float32):
        return 0.5 * jnp.ones(shape, dtype)

    init = initdiag.initializer(mine)
    assert init.name.startswith("custom:")
    r = initdiag.probe("linear", init=mine, depth=2, width=4, batch=3, bias_init=mine)
    np.testing.assert_allclose(r["weight_norm"], [2.0, 2.0])  # ||0.5 * ones(4, 4)||_F
    assert r.config["init"].startswith("custom:") and r.config["bias_init"].startswith("custom:")


@pytest.mark.parametrize("name", ["he_normal", "glorot_uniform", "torch_default", "normal(std=0.3)",
                                  "uniform(scale=0.2)", "lecun_normal(gain=1.3)", "constant(value=0.2)",
                                  "variance_scaling(scale=2.0, mode=fan_avg, distribution=normal)"])
def test_stack_drawing_equals_the_initializer_itself(name):
    """init_stack compiles one drawing per family (a traced scale); the weights must be the
    initializer's own draws from each layer's key."""
    from initdiag.nn.stacks import init_stack, make_spec, split_seed
    spec = make_spec(init=name, depth=3, width=[24, 24, 16], input_width=40)
    params = init_stack(7, spec)
    key_w = split_seed(7)["weights"]
    layer = 0
    for w, _ in params:
        for w_l in w:
            direct = spec.init(jax.random.fold_in(key_w, layer), w_l.shape, jnp.float32)
            # the scale is traced in the stack and a constant here: XLA may fold or contract
            # (FMA) differently. Multiplicative draws: an ulp or two (rtol); uniform draws
            # w = f 2s - s round absolutely, <= 3 u s each (test_gain_scales_every_initializer)
            atol = 8 * 2.0**-24 * np.abs(np.asarray(direct)).max()
            np.testing.assert_allclose(np.asarray(w_l), np.asarray(direct), rtol=1e-6, atol=atol)
            layer += 1
    assert layer == 3
