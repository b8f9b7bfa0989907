"""Initializers against their documented formulas: moments, KS tests, exact structure."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sst

import initdiag
from initdiag.nn import schemes
from initdiag.nn.initializers import (INDEXED_FORMS, STANDARD_INITIALIZERS, TRUNCATED_NORMAL_STD,
                                      names, sample_form, weight_form)

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


# ---- one record per scheme ----------------------------------------------------------------------


#: Non-default parameters for each scheme (every scheme with a fixed distribution is listed).
RECORD_PARAMS = {
    "zeros": [{"gain": 1.3}],
    "constant": [{"value": -0.3, "gain": 1.4}],
    "uniform": [{"scale": 0.2, "gain": 1.3}],
    "normal": [{"std": 0.3, "gain": 0.7}],
    "truncated_normal": [{"std": 0.2, "gain": 1.3}],
    "glorot_uniform": [{"gain": 1.3}],
    "glorot_normal": [{"gain": 1.3}],
    "he_uniform": [{"gain": 0.8}],
    "he_normal": [{"gain": 1.3}],
    "lecun_uniform": [{"gain": 1.3}],
    "lecun_normal": [{"gain": 1.3}],
    "orthogonal": [{"gain": 1.7}],
    "torch_default": [{"gain": 2.0}],
    "variance_scaling": [{"scale": s, "mode": m, "distribution": d, "gain": 1.2}
                         for s, m, d in [(2.0, "fan_in", "normal"), (0.5, "fan_out", "uniform"),
                                         (3.0, "fan_avg", "truncated_normal"),
                                         (1.0, "fan_geo_avg", "normal")]],
}
CASES = [(n, p) for n, ps in RECORD_PARAMS.items() for p in ps]
CASE_IDS = [initdiag.initializer(n, **p).label for n, p in CASES]


def test_every_fixed_scheme_has_test_parameters():
    fixed = [n for n, s in schemes.SCHEMES.items() if not s.data_dependent]
    assert sorted(fixed) == sorted(RECORD_PARAMS)


def _second_moment_bound(x):
    """5 standard errors of mean(x^2), from the sample's own fourth moment (CLT)."""
    return 5.0 * math.sqrt(max(np.mean(x**4) - np.mean(x**2) ** 2, 0.0) / x.size) + 1e-12


@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_record_variance_is_the_second_moment_of_its_draws(name, params):
    """E[W^2] of the record's formula against the mean of W^2 over a 150k-entry draw
    (non-square fans, non-default parameters), and the same for a 20k-entry bias."""
    init = initdiag.initializer(name, **params)
    w = sample(init)
    var = init.weight_variance(FAN_IN, FAN_OUT)
    if name in ("orthogonal", "zeros", "constant"):
        # no sampling error: every entry equal, or gain * orthonormal rows (sum of squares
        # gain^2 min(fans), exactly); float32 rounding only
        assert np.mean(w**2) == pytest.approx(var, rel=1e-5, abs=1e-30)
    else:
        assert abs(np.mean(w**2) - var) <= _second_moment_bound(w), (np.mean(w**2), var)
    b = np.asarray(init.bias(jax.random.key(3), FAN_IN, 20000), np.float64)
    bvar = init.bias_variance(FAN_IN, 20000)
    assert b.shape == (20000,)
    if name == "orthogonal":  # gain times a unit vector
        assert np.mean(b**2) == pytest.approx(bvar, rel=1e-5) and bvar == pytest.approx(1.7**2 / 20000)
    elif name in ("zeros", "constant"):
        assert np.mean(b**2) == pytest.approx(bvar, rel=1e-5, abs=1e-30)
    else:
        assert abs(np.mean(b**2) - bvar) <= _second_moment_bound(b), (np.mean(b**2), bvar)


@pytest.mark.parametrize("name,params", CASES, ids=CASE_IDS)
def test_compiled_form_draws_what_the_sampler_draws(name, params):
    """The engine's drawing (form and runtime value, traced as in init_stack) is the sampler's,
    to float32 rounding: XLA may fold a constant scale differently from a traced one, and the
    variance-scaling family's form is normalised to mode fan_in. (That the engine's own numbers
    are unchanged is pinned in test_initializer_pins.py.)"""
    init = initdiag.initializer(name, **params)
    form, value = weight_form(init, FAN_IN, FAN_OUT)
    assert form in INDEXED_FORMS and form in init.scheme.forms
    key = jax.random.key(5)
    direct = np.asarray(init(key, (FAN_IN, FAN_OUT), jnp.float32))
    traced = np.asarray(jax.jit(lambda v, k: sample_form(form, v, k, (FAN_IN, FAN_OUT)))(
        jnp.float32(value), key))
    np.testing.assert_allclose(traced, direct, rtol=1e-6, atol=1e-9)


def test_variance_scaling_family_shares_one_form_per_distribution():
    fans = (FAN_IN, FAN_OUT)
    form = lambda label: weight_form(initdiag.initializer(label), *fans)  # noqa: E731
    trunc = form("he_normal")[0]
    for label in ("lecun_normal", "glorot_normal(gain=2.0)", "variance_scaling(mode=fan_out)"):
        assert form(label)[0] == trunc
    assert form("he_uniform")[0] == form("torch_default")[0] != trunc
    # the runtime value is fan_in times the record's variance
    for label in ("he_normal", "glorot_normal(gain=2.0)", "torch_default",
                  "variance_scaling(scale=3.0, mode=fan_geo_avg, distribution=normal)"):
        v = initdiag.initializer(label).weight_variance(*fans)
        assert form(label)[1] == pytest.approx(FAN_IN * v, rel=1e-12)
    assert len(INDEXED_FORMS) == len(set(INDEXED_FORMS)) == 9


def test_variance_scaling_params_are_jax_arguments():
    assert initdiag.initializer("he_normal(gain=3.0)").variance_scaling_params == \
        (2.0, "fan_in", "truncated_normal")
    assert initdiag.initializer("torch_default").variance_scaling_params == \
        (1.0 / 3.0, "fan_in", "uniform")
    vs = initdiag.initializer("variance_scaling(scale=0.5, mode=fan_avg, distribution=uniform)")
    assert vs.variance_scaling_params == (0.5, "fan_avg", "uniform")
    for label in ("normal", "orthogonal", "zeros", "lsuv"):
        assert initdiag.initializer(label).variance_scaling_params is None


def test_names_and_standard_initializers_are_unchanged():
    assert names() == (
        "zeros", "constant", "uniform", "normal", "truncated_normal", "glorot_uniform",
        "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal", "orthogonal",
        "lsuv", "torch_default", "variance_scaling", "zero", "random_uniform", "random_normal",
        "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "pytorch_default",
        "torch")
    assert STANDARD_INITIALIZERS == (
        "zeros", "uniform", "normal", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
        "lecun_uniform", "lecun_normal", "orthogonal", "torch_default")
    assert initdiag.initializer("normal", std=0.1).label == "normal(std=0.1)"
    assert initdiag.initializer("kaiming_normal(gain=2)").label == "he_normal(gain=2.0)"
    assert initdiag.initializer("he_normal").describe() == \
        "he_normal: truncated normal, variance gain^2 * 2/fan_in"


def test_choice_parameters_name_the_valid_choices():
    with pytest.raises(ValueError, match=r"distribution 'cauchy'.*normal, truncated_normal, uniform"):
        initdiag.initializer("variance_scaling(distribution=cauchy)")
    with pytest.raises(ValueError, match=r"'tol'.*Valid parameters: value, gain"):
        initdiag.initializer("constant", tol=0.1)


def test_adding_a_scheme_is_adding_one_record(monkeypatch):
    """A record added to SCHEMES works everywhere: names, labels, variance, stack drawing (a
    variance-scaling specialisation shares the family's compiled form; a scheme with a new form
    is compiled on its own)."""
    from initdiag.nn.stacks import init_stack, make_spec, split_seed

    fan_out_normal = schemes.variance_scaling_scheme(
        "fan_out_normal", "normal, variance gain^2 / fan_out", lambda p: (1.0, "fan_out", "normal"),
        distributions=("normal",))
    laplace = schemes.drawn_by(
        "laplace", "Laplace(0, gain*b), variance 2 (gain*b)^2", {"b": 0.1, "gain": 1.0},
        schemes.Form("laplace", lambda v, key, shape, dtype: v * jax.random.laplace(key, shape, dtype)),
        value=lambda p: p["b"] * p["gain"], variance=lambda fi, fo, p: 2 * (p["b"] * p["gain"]) ** 2)
    monkeypatch.setitem(schemes.SCHEMES, "fan_out_normal", fan_out_normal)
    monkeypatch.setitem(schemes.SCHEMES, "laplace", laplace)
    assert "laplace" in names()
    init = initdiag.initializer("laplace(b=0.2)")
    assert init.label == "laplace(b=0.2)" and init.weight_variance(3, 4) == pytest.approx(0.08)
    assert weight_form(init, 3, 4)[0] not in INDEXED_FORMS
    assert weight_form(initdiag.initializer("fan_out_normal"), 3, 4)[0] in INDEXED_FORMS
    for label in ("laplace(b=0.2)", "fan_out_normal(gain=2.0)"):
        spec = make_spec(init=label, depth=2, width=[24, 16], input_width=40)
        key_w = split_seed(1)["weights"]
        ws = [w for seg, _ in init_stack(1, spec) for w in seg]
        for l, w in enumerate(ws):
            direct = spec.init(jax.random.fold_in(key_w, l), w.shape, jnp.float32)
            np.testing.assert_allclose(np.asarray(w), np.asarray(direct), rtol=1e-6, atol=1e-9)
    w = sample(initdiag.initializer("fan_out_normal(gain=2.0)"))
    assert abs(np.mean(w**2) - 4.0 / FAN_OUT) <= _second_moment_bound(w)
