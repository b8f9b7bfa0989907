"""The probe engine against truths it did not produce."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import initdiag
from initdiag import metrics as metric_table
from initdiag.nn.stacks import init_stack, make_input, make_spec, split_seed
from reference import (float32_rtol, layers_of, loop_stats, numpy64_sigmoid_grad_rms,
                       numpy64_stats)


def log2_slope(values):
    layers = np.arange(1, len(values) + 1)
    return np.polyfit(layers, np.log2(values), 1)[0]


def assert_same_pass(a, b, rtol, metrics):
    """``a`` and ``b`` agree within ``rtol`` (:func:`float32_rtol`); means within rtol * rms,
    fractions (counts of exact zeros or saturated entries) exactly."""
    for m in metrics:
        if metric_table.BY_NAME[m].kind == "signed":  # a mean: its variance metric is its scale
            scale = np.sqrt(b[metric_table.BY_NAME[m].scale] + b[m] ** 2)
            np.testing.assert_array_less(np.abs(a[m] - b[m]), rtol * scale + 1e-300, err_msg=m)
        elif m in ("saturation", "zero_frac", "dead_frac"):
            np.testing.assert_array_equal(a[m], b[m], err_msg=m)
        else:
            np.testing.assert_allclose(a[m], b[m], rtol=rtol, atol=0, err_msg=m)


def seed_mean(metric, seeds, **kw):
    return np.mean([initdiag.probe(seed=s, **kw)[metric] for s in seeds], axis=0)


def test_relu_he_keeps_preact_variance_level():
    var = seed_mean("preact_var", range(4), activation="relu", init="he_normal", depth=50,
                    width=1024, batch=256)
    assert abs(log2_slope(var)) < 0.03


def test_relu_xavier_halves_preact_variance_per_layer():
    var = seed_mean("preact_var", range(4), activation="relu", init="xavier_normal", depth=50,
                    width=1024, batch=256)
    assert log2_slope(var) == pytest.approx(-1.0, abs=0.05)


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
def test_zero_init_is_symmetric_and_frozen(act):
    r = initdiag.probe(act, "zeros", depth=6, width=32, batch=16)
    assert np.all(r["act_var"] == 0)  # every unit of every layer computes phi(0)
    assert np.all(r["grad_weight_norm"][:-1] == 0)
    phi0 = {"tanh": 0.0, "relu": 0.0, "sigmoid": 0.5}[act]
    np.testing.assert_allclose(r["act_mean"], phi0)
    if phi0 == 0:
        assert r["grad_weight_norm"][-1] == 0
    else:  # last layer sees x^{L-1} = 0.5: dL/dW^L = 0.5 * 1 (x) sum_i g_i / B != 0
        assert r["grad_weight_norm"][-1] > 0


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_identical_units_have_no_spread(act):
    # every column of W equal: every unit computes the same function (not detectable by act_var)
    same = lambda key, shape, dtype: jnp.full(shape, 1.0 / shape[0], dtype)
    r = initdiag.probe(act, same, depth=5, width=32, batch=16)
    # identical columns differ only by float32 rounding (~1e-7 relative): spread ~1e-14
    assert np.all(r["act_var"] > 0) and np.all(r["unit_spread"] < 1e-10)
    healthy = initdiag.probe(act, "orthogonal", depth=5, width=32, batch=16)["unit_spread"]
    assert np.all(healthy > 0.5)
    assert np.all(np.isnan(initdiag.probe(act, "zeros", depth=3, width=8, batch=4)["unit_spread"]))


def test_tanh_small_std_collapses():
    r = initdiag.probe("tanh", "normal(std=0.01)", depth=30, width=512, batch=128)
    # each layer multiplies the variance by about n std^2 = 0.0512
    assert r["act_var"][-1] < 1e-30
    assert log2_slope(r["act_var"]) == pytest.approx(np.log2(512 * 0.01**2), abs=0.1)
    assert r["act_var"][-1] > 0  # measured, not rounded to zero


def test_tanh_large_std_saturates():
    r = initdiag.probe("tanh", initdiag.initializer("normal", std=1.0), depth=10, width=512,
                       batch=128)
    assert r["saturation"][9] > 0.5
    assert np.all(np.isnan(initdiag.probe("relu", depth=3, width=8, batch=4)["saturation"]))


CASES = {
    "tanh": dict(activation="tanh", init="glorot_normal", bias_init="normal(std=0.1)"),
    "relu_bias": dict(activation="relu", init="he_uniform", bias_init="torch_default"),
    "sigmoid_half_mse": dict(activation="sigmoid", init="orthogonal", loss="half_mse"),
    "batchnorm": dict(activation="relu", init="normal(std=0.2)", norm="batchnorm"),
    "layernorm": dict(activation="gelu", init="lecun_normal", norm="layernorm"),
    "residual": dict(activation="tanh", init="he_normal", residual=0.5),
    "widths": dict(activation="elu", init="torch_default", width=[24, 16, 16, 8, 8, 12],
                   input_width=20),
    "remat": dict(activation="selu", init="lecun_normal", remat=2),
    "remat_widths": dict(activation="softplus", init="he_normal", remat=1, width=[8, 16, 16, 16, 16, 4]),
    "gram_path": dict(activation="silu", init="he_normal", batch=4),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_statistics_equal_jax_grad_of_a_python_loop(case):
    kw = dict(depth=6, width=16, batch=32, seed=3)
    kw.update(CASES[case])
    r = initdiag.probe(**kw)
    spec = make_spec(**{k: kw[k] for k in ("activation", "init", "depth", "width", "bias_init",
                                           "norm", "residual", "input_width") if k in kw})
    ws, bs = layers_of(init_stack(kw["seed"], spec))
    keys = split_seed(kw["seed"])
    x = make_input(keys["input"], kw["batch"], spec.input_width)
    g = jax.random.normal(keys["readout"], (kw["batch"], spec.widths[-1]))
    ref = loop_stats(ws, bs, x, spec.activation, g, loss=kw.get("loss", "projection"),
                     norm=kw.get("norm"), residual=kw.get("residual"))
    # float32 rounding of differently ordered operations (float32_rtol: ~8e-6; observed <= 9 u
    # = 5e-7). Means at rtol * rms: |mean| / rms is down to 0.007 here.
    ref["grad_weight_ratio"] = ref["grad_weight_norm"] / ref["weight_norm"]
    assert_same_pass(r, ref, float32_rtol(kw["depth"], max(spec.widths), kw["batch"]),
                     ["preact_mean", "preact_var", "act_mean", "act_var", "grad_preact_rms",
                      "grad_act_rms", "grad_weight_norm", "weight_norm", "unit_spread",
                      "grad_weight_ratio"])
    if spec.activation.can_die:
        acts = ref["acts"]
        np.testing.assert_array_equal(r["zero_frac"], [np.mean(a == 0) for a in acts])
        np.testing.assert_array_equal(r["dead_frac"], [np.mean(np.all(a == 0, axis=0)) for a in acts])
    if spec.activation.saturates:
        sat = [np.mean(spec.activation.saturated(jnp.asarray(a, jnp.float32))) for a in ref["acts"]]
        np.testing.assert_allclose(r["saturation"], sat, atol=1.5 / (kw["batch"] * 16))


def test_saturation_and_dead_fractions_by_hand():
    # Two layers, identity-like weights: the fractions can be counted by hand.
    x = np.array([[3.0, -3.0, 0.1], [3.0, 0.5, -0.2]], np.float32)
    w = np.eye(3, dtype=np.float32)
    r = initdiag.probe_params([w], None, x, "tanh")
    assert r["saturation"][0] == pytest.approx(3 / 6)  # |tanh(3)| = 0.995 > 0.99
    r = initdiag.probe_params([w], None, x, "relu")
    assert r["zero_frac"][0] == pytest.approx(2 / 6)
    assert r["dead_frac"][0] == pytest.approx(0.0)
    r = initdiag.probe_params([w], [np.array([0, 0, -1], np.float32)], x, "relu")
    assert r["dead_frac"][0] == pytest.approx(1 / 3)  # unit 3 is 0 for both samples


@pytest.mark.parametrize("act, h, threshold, saturated", [
    # sigmoid(5) = 0.99331, sigmoid(-5) = 0.00669, sigmoid(4.5) = 0.98901, sigmoid(0) = 0.5
    ("sigmoid", [5.0, -5.0, 4.5, 0.0], 0.99, [1, 1, 0, 0]),
    ("sigmoid", [5.0, -5.0, 4.5, 0.0], 0.98, [1, 1, 1, 0]),
    # tanh(2.7) = 0.99101, tanh(-2.6) = -0.98903
    ("tanh", [2.7, -2.6, -2.7, 0.3], 0.99, [1, 0, 1, 0]),
    # elu(-5) = -0.99326, elu(-4) = -0.98168 (bound -alpha = -1)
    ("elu", [-5.0, -4.0, 3.0, 0.0], 0.99, [1, 0, 0, 0]),
    ("elu(alpha=2.0)", [-5.0, -4.0, 3.0, 0.0], 0.99, [1, 0, 0, 0]),
    # selu(-5) = -1.74625, selu(-4) = -1.72588; bound -1.75810, saturated below -1.74052
    ("selu", [-5.0, -4.0, 3.0, 0.0], 0.99, [1, 0, 0, 0]),
    # softplus(-5) = 0.00672, softplus(-4) = 0.01815, saturated below 0.01 (0.02 at t = 0.98)
    ("softplus", [-5.0, -4.0, 3.0, 0.0], 0.99, [1, 0, 0, 0]),
    ("softplus", [-5.0, -4.0, 3.0, 0.0], 0.98, [1, 1, 0, 0]),
])
def test_saturation_rule_of_each_activation_by_hand(act, h, threshold, saturated):
    x = np.array([h], np.float32)  # one sample; identity weights make h^1 = x
    r = initdiag.probe_params([np.eye(4, dtype=np.float32)], None, x, act,
                              saturation_threshold=threshold)
    assert r["saturation"][0] == pytest.approx(np.mean(saturated))


def test_histogram_bins_match_numpy():
    kw = dict(activation="tanh", init="he_normal", depth=3, width=16, batch=8, seed=1)
    r = initdiag.probe(histograms=True, hist_bins=200, **kw)  # bins 0.01 (act), 0.25 (log10 g)
    spec = make_spec(activation="tanh", init="he_normal", depth=3, width=16)
    ws, bs = layers_of(init_stack(1, spec))
    keys = split_seed(1)
    x = make_input(keys["input"], 8, 16)
    g = jax.random.normal(keys["readout"], (8, 16))
    ref = loop_stats(ws, bs, x, spec.activation, g, grads=True)
    act_edges, grad_edges = r.histograms["act_edges"], r.histograms["grad_edges"]
    for l in range(3):
        np.testing.assert_array_equal(r.histograms["act_hist"][l],
                                      np.histogram(ref["acts"][l], act_edges)[0])
        logs = np.clip(np.log10(np.abs(ref["grads"][l])), grad_edges[0], grad_edges[-1])
        counts = r.histograms["grad_hist"][l]
        # bins of log10|g| computed in float32 may differ for values within 1e-6 of an edge
        near_edge = np.min(np.abs(logs[:, :, None] - grad_edges[None, None, :]), axis=-1) < 1e-5
        assert np.abs(counts - np.histogram(logs, grad_edges)[0]).sum() <= 2 * near_edge.sum()
        assert counts.sum() == 8 * 16


def test_user_array_and_uniform_inputs():
    x = np.random.default_rng(0).standard_normal((6, 12)).astype(np.float32) * 3
    r = initdiag.probe("relu", "he_normal", depth=3, width=8, input_width=12, input=x, seed=2)
    assert r.config["input"] == "array" and r.config["batch"] == 6
    spec = make_spec(activation="relu", init="he_normal", depth=3, width=8, input_width=12)
    ws, bs = layers_of(init_stack(2, spec))
    g = jax.random.normal(split_seed(2)["readout"], (6, 8))
    ref = loop_stats(ws, bs, jnp.asarray(x), spec.activation, g)
    for m in ("preact_var", "act_var", "grad_preact_rms"):
        np.testing.assert_allclose(r[m], ref[m], rtol=1e-5, err_msg=m)
    x0 = make_input(split_seed(0)["input"], 4096, 64, "uniform")
    assert float(jnp.max(jnp.abs(x0))) <= np.sqrt(3.0)
    assert float(jnp.var(x0)) == pytest.approx(1.0, abs=0.02)  # sd of the estimate: 0.0035
    with pytest.raises(ValueError, match=r"input must have shape \[batch, 12\]"):
        initdiag.probe("relu", depth=3, width=8, input_width=12, input=x[:, :5])


def test_every_initializer_reuses_one_compiled_pass():
    from initdiag.engine import scan
    kw = dict(activation="softplus", depth=5, width=24, batch=8, loss="half_mse")
    initdiag.probe(init="he_normal", **kw)
    before = scan.run._cache_size()
    for init in ("zeros", "orthogonal", "torch_default", "normal(std=0.3)", "lecun_uniform"):
        initdiag.probe(init=init, **kw)
    assert scan.run._cache_size() == before


def test_vanishing_gradients_are_measured_not_rounded_to_zero():
    # Sigmoid + Glorot at depth 120: dL/dh falls by ~4x per layer, far below float32's range.
    depth, width, batch = 120, 32, 16
    r = initdiag.probe("sigmoid", "glorot_normal", depth=depth, width=width, batch=batch, seed=1)
    spec = make_spec(activation="sigmoid", init="glorot_normal", depth=depth, width=width)
    ws, _ = layers_of(init_stack(1, spec))
    keys = split_seed(1)
    x = make_input(keys["input"], batch, width)
    g = jax.random.normal(keys["readout"], (batch, width))
    expected = numpy64_sigmoid_grad_rms(ws, x, g)
    assert expected[0] < 1e-50  # a float32 backward pass would have flushed this to 0
    np.testing.assert_allclose(r["grad_preact_rms"], expected, rtol=2e-3)


def _float64_check(act, init, depth, width, batch, seed=0, phi=None, **kw):
    spec = make_spec(activation=act, init=init, depth=depth, width=width, **kw)
    ws, bs = layers_of(init_stack(seed, spec))
    keys = split_seed(seed)
    x = make_input(keys["input"], batch, width)
    g = jax.random.normal(keys["readout"], (batch, width))
    r = initdiag.probe(phi or act, init, depth=depth, width=width, batch=batch, seed=seed, **kw)
    return r, numpy64_stats(ws, bs, x, act, g, norm=kw.get("norm"))


def _user_relu(x):
    return jnp.maximum(x, 0.0)  # a callable: not known to be homogeneous; jax's slope at 0 is 1/2


@pytest.mark.parametrize("act, depth, width, phi", [
    ("tanh", 40, 128, None), ("relu", 30, 64, None), ("relu", 30, 64, _user_relu),
    ("selu", 40, 128, None), ("elu(alpha=0.5)", 40, 128, None)])
def test_collapsing_forward_signal_is_measured_below_float32_range(act, depth, width, phi):
    # normal(std=0.01): the signal shrinks by n * 1e-4 (x1/2 for relu) per layer, to ~1e-70;
    # below |h| < 2**-60 the engine expands phi to first order with one-sided slopes (selu's are
    # lambda and lambda * alpha, a user relu's 1 and 0)
    r, ref = _float64_check(act, "normal(std=0.01)", depth, width, batch=32, phi=phi)
    assert ref["act_var"][-1] < 1e-60 and ref["grad_weight_norm"][-1] < 1e-25
    for m in ("preact_var", "act_var", "act_chan_sq_mean", "grad_preact_rms", "grad_act_rms",
              "grad_weight_norm", "weight_norm"):  # float32 rounding: observed below 7e-6
        np.testing.assert_allclose(r[m], ref[m], rtol=1e-4, err_msg=m)
    for m in ("preact_mean", "act_mean"):
        sd = np.sqrt(ref[m.replace("mean", "var")])
        np.testing.assert_array_less(np.abs(r[m] - ref[m]), 1e-4 * sd, err_msg=m)
    if act == "relu" and phi is None:  # the zero pattern survives the collapse
        n = 32 * width  # a sign within float32 rounding of 0 may differ: a few entries at most
        np.testing.assert_allclose(r["zero_frac"], ref["zero_frac"], atol=3 / n)
        np.testing.assert_allclose(r["dead_frac"], ref["dead_frac"], atol=1 / width)


@pytest.mark.parametrize("act, kw", [
    ("relu", dict(init="he_normal", bias_init="normal(std=0.5)")),  # a shift of every unit
    ("tanh", dict(init="glorot_normal", norm="batchnorm")),  # batch means of h are 0
    ("sigmoid", dict(init="normal(std=0.1)"))])  # x^l near 1/2 everywhere
def test_channel_squared_mean_equals_float64(act, kw):
    r, ref = _float64_check(act, depth=8, width=48, batch=16, **kw)
    np.testing.assert_allclose(r["act_chan_sq_mean"], ref["act_chan_sq_mean"], rtol=1e-5)
    # Jensen: act_mean^2 <= act_chan_sq_mean <= act_mean^2 + act_var (the mean square)
    assert np.all(ref["act_mean"] ** 2 <= ref["act_chan_sq_mean"] * (1 + 1e-12))
    assert np.all(ref["act_chan_sq_mean"] <= (ref["act_mean"] ** 2 + ref["act_var"]) * (1 + 1e-12))


def test_tiny_signal_through_sigmoid_keeps_its_gradient():
    # phi(0) = 1/2: the forward value is 1/2 to float32 precision, but dL/dh = phi'(0) dL/da
    r, ref = _float64_check("sigmoid", "normal(std=1e-20)", 4, 32, batch=16)
    assert ref["grad_preact_rms"][0] < 1e-50
    for m in ("grad_preact_rms", "grad_act_rms", "grad_weight_norm", "act_mean"):
        np.testing.assert_allclose(r[m], ref[m], rtol=1e-4, err_msg=m)


def test_batchnorm_of_a_constant_unit_at_a_huge_scale_is_zero_not_nan():
    # identical rows: every unit is constant over the batch; |h| ~ 1e17, where eps 2**-2F
    # underflows in the scaled form. float32 itself gives output 0 and finite gradients.
    x = np.tile(np.linspace(-1, 1, 8, dtype=np.float32), (4, 1))
    ws = [np.eye(8, dtype=np.float32) * 1e17, np.eye(8, dtype=np.float32)]
    r = initdiag.probe_params(ws, None, x, "tanh", norm="batchnorm")
    g = jax.random.normal(split_seed(0)["readout"], (4, 8))
    ref = loop_stats([jnp.asarray(w) for w in ws], [jnp.zeros(8)] * 2, jnp.asarray(x),
                     initdiag.activation("tanh"), g, norm="batchnorm")
    for m in ("act_var", "grad_preact_rms", "grad_act_rms", "grad_weight_norm"):
        assert np.all(np.isfinite(r[m])), m
    for m in ("act_var", "grad_preact_rms", "grad_act_rms"):
        np.testing.assert_allclose(r[m], ref[m], rtol=1e-5, err_msg=m)
    # dL/dW^1 = x^T dL/dh^1 is 0 by symmetry (identical rows, dL/dh^1 sums to 0 over the batch):
    # both read rounding noise, far below ||x|| ||dL/dh^1||
    scale = np.linalg.norm(x) * r["grad_preact_rms"][0] * np.sqrt(4 * 8)
    assert r["grad_weight_norm"][0] < 1e-4 * scale and ref["grad_weight_norm"][0] < 1e-4 * scale
    np.testing.assert_allclose(r["grad_weight_norm"][1], ref["grad_weight_norm"][1], rtol=1e-5)


def test_gram_path_does_not_cancel_for_inputs_with_a_large_mean():
    # batch 8 < width / 2: ||dL/dW^1|| goes through the Gram form. Input mean 1000 and batchnorm
    # (sum_i dL/dh_i = 0 per unit) made the uncentred form lose 4.5%.
    x = np.asarray(1000 + jax.random.normal(jax.random.key(5), (8, 256)), np.float32)
    kw = dict(activation="relu", init="he_normal", depth=3, width=256, norm="batchnorm")
    r = initdiag.probe(input=x, **kw)
    spec = make_spec(**kw)
    ws, bs = layers_of(init_stack(0, spec))
    g = jax.random.normal(split_seed(0)["readout"], (8, 256))
    ref32 = loop_stats(ws, bs, jnp.asarray(x), spec.activation, g, norm="batchnorm", grads=True)
    ref64 = numpy64_stats(ws, bs, x, "relu", g, norm="batchnorm")
    u, n, batch = 2.0**-24, 256, 8
    # The norm adds nothing: ||x^T g||_F of the float32 tensors of the loop (x^{l-1}, g =
    # dL/dh^l), taken in float64, against the engine. The Gram form sums the B x B products
    # (xc xc^T)(g g^T) and the mean terms: |d sq| <= gamma_{n+B+2} abs_sq (the same sums of
    # |.|, Higham 2002, 3.5), half that relative on the norm; the engine's own g differs from
    # the loop's by float32_rtol. Bound ~4e-5; observed 1.4e-6; the uncentred form: 4.5e-2.
    gamma = (n + batch + 2) * u / (1 - (n + batch + 2) * u)
    rtol = float32_rtol(3, n, batch)
    for l, xin in enumerate([np.asarray(x, np.float64)] + ref32["acts"][:-1]):
        gl = ref32["grads"][l]
        norm = np.linalg.norm(xin.T @ gl)
        m, s = xin.mean(0), gl.sum(0)
        xc = np.abs(xin - m)
        abs_sq = (np.sum((xc @ xc.T) * (np.abs(gl) @ np.abs(gl).T))
                  + 2 * (xc @ np.abs(m)) @ (np.abs(gl) @ np.abs(s)) + np.sum(m**2) * np.sum(s**2))
        bound = 0.5 * gamma * abs_sq / norm**2 + rtol
        assert abs(r["grad_weight_norm"][l] / norm - 1) < bound, (l + 1, bound)
    # float32 itself loses more here: h^1 = x W^1 with x ~ 1000 rounds partial sums ~ 1000 |w|
    # sqrt(k), so h - mean(h) (sd ~ |w|) has relative error ~ u |mean x| sqrt(n / 6)
    # (independent roundings of n recursive additions: Higham & Mary 2019) = 3.9e-4, and the
    # normalized h^1 carries it to every statistic. rtol = 10 of those (observed 8.3e-4 on
    # every rounding variant).
    rtol64 = 10 * u * np.abs(x.mean()) * np.sqrt(n / 6)
    np.testing.assert_allclose(r["grad_weight_norm"], ref64["grad_weight_norm"], rtol=rtol64)


def test_same_seed_same_numbers_other_seed_different():
    kw = dict(activation="tanh", init="orthogonal", depth=8, width=32, batch=16)
    a, b, c = initdiag.probe(seed=5, **kw), initdiag.probe(seed=5, **kw), initdiag.probe(seed=6, **kw)
    for m in a.metrics:
        np.testing.assert_array_equal(a[m], b[m])
    assert not np.allclose(a["preact_var"], c["preact_var"])


def test_layer_weights_do_not_depend_on_depth():
    short = initdiag.probe("relu", depth=5, width=16, batch=8, seed=2)
    long = initdiag.probe("relu", depth=12, width=16, batch=8, seed=2)
    np.testing.assert_array_equal(short["preact_var"], long["preact_var"][:5])
    np.testing.assert_array_equal(short["weight_norm"], long["weight_norm"][:5])


def test_remat_gives_the_same_numbers():
    kw = dict(activation="tanh", init="he_normal", depth=23, width=32, batch=16, seed=4)
    a, b = initdiag.probe(**kw), initdiag.probe(remat=5, **kw)
    # remat recompiles the pass (chunks of 5 layers): reductions and fusions are ordered
    # differently even for weight_norm (6 u apart here; 1e-6 = 17 u was below a 1024-term sum's
    # sqrt(N) u). Bound float32_rtol = 2.8e-5; a wrong recomputation is off by O(1).
    assert_same_pass(a, b, float32_rtol(23, 32, 16), a.metrics)


def test_result_api():
    r = initdiag.probe("tanh", "he_normal", depth=7, width=16, batch=8)
    assert r["preact_var"].shape == (7,)
    assert set(initdiag.METRICS) <= set(r.metrics)
    assert r.config["depth"] == 7 and r.config["init"] == "he_normal"
    with pytest.raises(KeyError, match="available"):
        r["nope"]


def test_histograms_count_every_entry():
    r = initdiag.probe("tanh", "he_normal", depth=4, width=16, batch=8, histograms=True, hist_bins=20)
    assert r.histograms["act_hist"].shape == (4, 20)
    assert np.all(r.histograms["act_hist"].sum(axis=1) == 16 * 8)
    assert np.all(r.histograms["grad_hist"].sum(axis=1) == 16 * 8)
    np.testing.assert_allclose(r.histograms["act_edges"][[0, -1]], [-1, 1])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="'tanhh'.*tanh"):
        initdiag.probe("tanhh")
    with pytest.raises(ValueError, match="norm.*batchnorm"):
        initdiag.probe(norm="batch")
    with pytest.raises(ValueError, match="loss.*projection"):
        initdiag.probe(loss="mse")
    with pytest.raises(ValueError, match="depth"):
        initdiag.probe(depth=0)
    with pytest.raises(ValueError, match="residual"):
        initdiag.probe(width=[8, 4], depth=2, residual=1.0)
    with pytest.raises(ValueError, match="batch"):
        initdiag.probe(batch=0)


@pytest.mark.parametrize("kw, message", [
    (dict(width=[4, 4.7], depth=2), r"width\[1\] must be an integer >= 1; got 4.7"),
    (dict(width=2.5), "width must be an integer >= 1; got 2.5"),
    (dict(width=True), "width must be an integer >= 1; got True"),
    (dict(width="abc"), "width must be an integer >= 1 or a list of 2 of them; got 'abc'"),
    (dict(width=0), "width must be an integer >= 1; got 0"),
    (dict(input_width=0), "input_width must be an integer >= 1; got 0"),
    (dict(residual=float("nan")), "residual must be a finite number; got nan"),
    (dict(residual="a"), "residual must be a number; got 'a'"),
    (dict(use_bias="no"), "use_bias must be True or False; got 'no'"),
    (dict(hist_bins=0), "hist_bins must be an integer >= 1; got 0"),
    (dict(histograms="yes"), "histograms must be True or False; got 'yes'"),
    (dict(activation="leaky_relu(slope='a')"), "leaky_relu slope must be a number; got 'a'"),
    (dict(activation="elu(alpha=-1)"), r"elu alpha must be > 0; got -1.0"),
    (dict(seed="a"), "seed must be an integer or a jax PRNG key; got 'a'"),
    (dict(batch=2.5), "batch must be an integer >= 1; got 2.5"),
    (dict(saturation_threshold="x"), "saturation_threshold must be a number; got 'x'"),
])
def test_bad_option_values_are_named(kw, message):
    with pytest.raises(ValueError, match=message):
        initdiag.probe(**{"depth": 2, "width": 4, "batch": 4, **kw})


def test_norm_none_as_text_and_legacy_keys_are_accepted():
    kw = dict(depth=2, width=4, batch=4)
    assert initdiag.probe(norm="none", **kw).config["norm"] is None
    a = initdiag.probe(seed=jax.random.PRNGKey(3), **kw)
    b = initdiag.probe(seed=jax.random.key(3), **kw)
    np.testing.assert_array_equal(a["act_var"], b["act_var"])


def test_probe_params_matches_probe_on_the_same_weights():
    kw = dict(activation="relu", init="he_normal", depth=5, width=24, batch=16, seed=9,
              bias_init="normal(std=0.1)")
    r = initdiag.probe(**kw)
    spec = make_spec(activation="relu", init="he_normal", depth=5, width=24, bias_init="normal(std=0.1)")
    ws, bs = layers_of(init_stack(9, spec))
    keys = split_seed(9)
    x = make_input(keys["input"], 16, 24)
    p = initdiag.probe_params(ws, bs, x, "relu", seed=9)
    for m in r.metrics:
        np.testing.assert_array_equal(r[m], p[m], err_msg=m)


def test_deep_stack_runs_with_memory_bound():
    r = initdiag.probe("relu", "he_normal", depth=1000, width=64, batch=32, remat=True)
    assert r["preact_var"].shape == (1000,)
    assert np.all(np.isfinite(r["grad_preact_rms"]))


def test_core_does_not_import_plotting():
    import subprocess
    import sys
    code = ("import sys, initdiag; initdiag.probe(depth=2, width=4, batch=2); "
            "assert 'matplotlib' not in sys.modules and 'seaborn' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("kw", [
    dict(activation="tanh", init="orthogonal", bias_init="torch_default", depth=9, width=16),
    dict(activation="relu", init="he_uniform", width=[12, 16, 16, 16, 8], depth=5, remat=2),
    dict(activation="tanh", init="glorot_normal", width=[12, 16, 16, 16, 8], depth=5),
])
def test_weights_drawn_in_the_scan_give_identical_numbers(kw):
    a = initdiag.probe(batch=8, seed=3, draw_weights="upfront", **kw)
    b = initdiag.probe(batch=8, seed=3, draw_weights="in_scan", **kw)
    assert b.meta["memory"]["draw_in_scan"] and not a.meta["memory"]["draw_in_scan"]
    # the same draws (sample_form), up to one float32 ulp where XLA folds the scale of a
    # truncated normal as a constant; the pass fuses differently: rounding-level differences
    # (float32_rtol; means at rtol * rms, not rtol |mean| + 1e-7)
    assert_same_pass(a, b, float32_rtol(kw["depth"], 16, 8), a.metrics)


def test_sweep_reuses_weights_across_activations_bit_for_bit():
    kw = dict(depths=[4], widths=[16], seeds=[0, 1], batch=8)
    s = initdiag.sweep(activations=["tanh", "relu", "sigmoid"], inits=["he_normal", "orthogonal"],
                       **kw)
    # the documented order: activation, depth, width, init, seed
    assert [(r.config["activation"], r.config["init"], r.seed) for r in s] == [
        (a, i, seed) for a in ("tanh", "relu", "sigmoid") for i in ("he_normal", "orthogonal")
        for seed in (0, 1)]
    reused = [r.meta["timing"]["weights_reused"] for r in s]
    assert reused == [False] * 4 + [True] * 8  # drawn once per (init, seed), for tanh
    for r in s:
        alone = initdiag.probe(r.config["activation"], r.config["init"], depth=4, width=16,
                               batch=8, seed=r.seed)
        for m in r.metrics:
            np.testing.assert_array_equal(r[m], alone[m], err_msg=m)
