"""Diagnosis of model probes (initdiag.analysis.model_diagnosis) against what theory says."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import initdiag

WIDTH, DIN, DOUT, BATCH = 96, 32, 4, 128


def _mlp(act):
    def mlp(params, x):
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w + b[None, :]
            if i < len(params) - 1 and act is not None:
                h = act(h)
        return h
    return mlp


RELU, TANH, LINEAR = _mlp(jax.nn.relu), _mlp(jnp.tanh), _mlp(None)
X = jax.random.normal(jax.random.PRNGKey(9), (BATCH, DIN))


def _init(depth, std, bias=0.0, seed=0):
    key = jax.random.PRNGKey(seed)
    dims = [DIN] + [WIDTH] * depth + [DOUT]
    out = []
    for i in range(len(dims) - 1):
        key, k = jax.random.split(key)
        out.append((std * jax.random.normal(k, (dims[i], dims[i + 1])) / np.sqrt(dims[i]),
                    jnp.full((dims[i + 1],), bias)))
    return out


def test_relu_lecun_vanishes_by_theory():
    # relu with Var(W) = 1/fan_in: chi = 1/2, variance x1/2 per layer, gradient RMS x2^-1/2
    depth = 16
    v = initdiag.diagnose(initdiag.probe_fn(RELU, _init(depth, 1.0), X))
    assert v.kind == "vanishing"
    assert "collapse" in [f.kind for f in v.findings]
    assert v.evidence["var_factor_per_layer"] == pytest.approx(0.5, rel=0.1)
    assert v.evidence["grad_factor_per_layer"] == pytest.approx(2 ** -0.5, rel=0.1)
    assert v.site in initdiag.probe_fn(RELU, _init(depth, 1.0), X).sites
    assert "grad_rms falls" in str(v)


def test_relu_he_and_tanh_lecun_healthy():
    assert initdiag.diagnose(initdiag.probe_fn(RELU, _init(16, np.sqrt(2)), X)).kind == "healthy"
    assert initdiag.diagnose(initdiag.probe_fn(TANH, _init(16, 1.0), X)).kind == "healthy"


def test_exploding_gain_and_overflow():
    # relu with Var(W) = 8/fan_in: chi = 4, gradient RMS x2 per layer going back
    v = initdiag.diagnose(initdiag.probe_fn(RELU, _init(16, 2 * np.sqrt(2)), X))
    assert v.kind == "exploding"
    assert v.evidence["grad_factor_per_layer"] == pytest.approx(2.0, rel=0.15)
    # linear, std 200: variance x4e4 per layer overflows float32 within a few dozen layers
    v = initdiag.diagnose(initdiag.probe_fn(LINEAR, _init(16, 300.0), X))
    assert v.kind == "exploding" and v.evidence["overflow"]
    assert "overflows" in v.detail and v.site is not None


def test_saturated_tanh():
    # tanh with Var(W) = 16/fan_in: q* ~ 13, about half of |h| > atanh(0.99) = 2.65
    v = initdiag.diagnose(initdiag.probe_fn(TANH, _init(16, 4.0), X))
    assert v.kind == "saturation"
    assert v.site.endswith("tanh")


def test_dead_relu():
    v = initdiag.diagnose(initdiag.probe_fn(RELU, _init(16, 1.0, bias=-5.0), X))
    assert v.kind == "dead" and v.site == "[0]/relu"
    assert v.key_value == 1.0


def test_zero_readout_is_named_not_vanishing():
    params = _init(16, np.sqrt(2))
    params[-1] = (jnp.zeros_like(params[-1][0]), params[-1][1])
    res = initdiag.probe_fn(RELU, params, X)
    g = res["grad_rms"]
    assert np.all(g[:-1] == 0) and g[-1] > 0
    v = initdiag.diagnose(res)
    assert v.kind == "symmetric"
    assert "vanishing" not in [f.kind for f in v.findings]
    assert v.site == "[16]" and v.leaf == "[16][0]"
    assert ("grad_rms is exactly 0 at every site before '[16]' because its weight leaf "
            "'[16][0]' is all zeros") in str(v)
    assert "zero-initialised readout" in str(v)


def test_zeros_init_names_first_leaf():
    params = [(jnp.zeros_like(w), b) for w, b in _init(16, 1.0)]
    v = initdiag.diagnose(initdiag.probe_fn(TANH, params, X))
    assert v.kind == "symmetric"
    assert v.leaf == "[0][0]" and v.site == "[0]"
    assert "the first '[0][0]'" in str(v)
    assert "vanishing" not in [f.kind for f in v.findings]


def test_sweep_pools_seeds_per_init_and_thresholds_apply():
    # built by hand: initdiag.sweep_fn needs initdiag.model.reinit (not on this branch)
    sweep = initdiag.ModelSweep([
        initdiag.probe_fn(RELU, _init(16, std, seed=s), X, seed=s, init=init)
        for init, std in (("lecun_normal", 1.0), ("he_normal", np.sqrt(2))) for s in (0, 1)])
    verdicts = initdiag.diagnose(sweep)
    assert [v.config["init"] for v in verdicts] == ["lecun_normal", "he_normal"]
    assert [v.kind for v in verdicts] == ["vanishing", "healthy"]
    assert verdicts[0].seeds == (0, 1)
    # looser thresholds pass lecun (2^-8.5 ~ 3e-3 in gradient RMS, 2^-17 in variance)
    assert initdiag.diagnose(sweep[0], grad_vanish=1e-4, act_collapse=1e-7).kind == "healthy"
    d = verdicts[0].to_dict()
    assert d["site"] == verdicts[0].site


def test_model_result_from_old_file_guesses_leaves():
    params = _init(16, np.sqrt(2))
    params[-1] = (jnp.zeros_like(params[-1][0]), params[-1][1])
    res = initdiag.probe_fn(RELU, params, X)
    d = res.to_dict()
    d.pop("site_params")
    old = initdiag.ModelResult.from_dict(d)
    assert old.site_params == ()
    assert initdiag.diagnose(old).leaf == "[16][0]"
