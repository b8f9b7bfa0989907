"""initdiag.calibrate: LSUV for any model, checked by independent plain forward passes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import initdiag

DIN, WIDTH, BATCH = 24, 64, 256
X = jax.random.normal(jax.random.PRNGKey(3), (BATCH, DIN))


def _dense_outputs(params, x):
    """Every dense output (bias included) of the tanh MLP, in order: the test's own forward."""
    outs, h = [], x
    for i, layer in enumerate(params["layers"]):
        h = h @ layer["w"] + layer["b"][None, :]
        outs.append(h)
        if i < len(params["layers"]) - 1:
            h = jnp.tanh(h)
    return outs


def mlp(params, x):
    return _dense_outputs(params, x)[-1]


def _params(depth=5, std=0.1, bias_std=0.0, seed=0):
    key = jax.random.PRNGKey(seed)
    dims = [DIN] + [WIDTH] * depth + [3]
    layers = []
    for i in range(len(dims) - 1):
        key, k1, k2 = jax.random.split(key, 3)
        layers.append({"w": std * jax.random.normal(k1, (dims[i], dims[i + 1])),
                       "b": bias_std * jax.random.normal(k2, (dims[i + 1],))})
    return {"layers": layers}


def test_every_dense_site_reaches_target_var():
    params = _params(bias_std=0.1)
    new, log = initdiag.calibrate(mlp, params, X, target_var=1.0, tol=0.05)
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(params)
    for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(params)):
        assert a.shape == b.shape and a.dtype == b.dtype and type(a) is type(b)
    for h in _dense_outputs(new, X):
        assert abs(float(np.var(np.asarray(h, np.float64))) - 1.0) <= 0.05
    # biases untouched; each weight a positive multiple of the original
    for a, b in zip(new["layers"], params["layers"]):
        np.testing.assert_array_equal(a["b"], b["b"])
        ratio = np.asarray(a["w"]) / np.asarray(b["w"])
        assert np.allclose(ratio, ratio.flat[0], rtol=1e-5) and ratio.flat[0] > 0
    assert list(log.columns) == ["site", "leaf", "iteration", "var_before", "var_after", "scale"]
    assert set(log["leaf"]) == {f"layers[{i}]/w" for i in range(6)}
    assert (log["iteration"] >= 1).all()
    # a target other than 1
    new2, _ = initdiag.calibrate(mlp, params, X, target_var=0.25, tol=0.05)
    for h in _dense_outputs(new2, X):
        assert abs(float(np.var(np.asarray(h, np.float64))) / 0.25 - 1.0) <= 0.05


def scanned(params, x):
    def body(h, layer):
        h = jnp.tanh(h @ layer["w"] + layer["b"][None, :])
        return h, None

    h = x @ params["w_in"]
    h, _ = jax.lax.scan(body, h, params["stack"])
    return h @ params["w_out"]


def _scanned_outputs(params, x):
    h = x @ params["w_in"]
    outs = [h]
    for k in range(params["stack"]["w"].shape[0]):
        pre = h @ params["stack"]["w"][k] + params["stack"]["b"][k][None, :]
        outs.append(pre)
        h = jnp.tanh(pre)
    outs.append(h @ params["w_out"])
    return outs


def test_scanned_stack_rescales_each_slice():
    depth = 4
    k = jax.random.split(jax.random.PRNGKey(1), 3)
    params = {"w_in": 0.5 * jax.random.normal(k[0], (DIN, WIDTH)),
              "stack": {"w": 0.05 * jax.random.normal(k[1], (depth, WIDTH, WIDTH)),
                        "b": jnp.zeros((depth, WIDTH))},
              "w_out": 0.3 * jax.random.normal(k[2], (WIDTH, 2))}
    new, log = initdiag.calibrate(scanned, params, X, tol=0.05)
    for h in _scanned_outputs(new, X):
        assert abs(float(np.var(np.asarray(h, np.float64))) - 1.0) <= 0.05
    assert {f"stack/w[{i}]" for i in range(depth)} <= set(log["leaf"])
    # every slice got its own scale
    scales = [np.asarray(new["stack"]["w"][i] / params["stack"]["w"][i]).mean() for i in range(depth)]
    assert len({round(float(s), 4) for s in scales}) == depth


def test_nonconvergence_names_the_site():
    params = _params(depth=2)
    # a bias of std 3 alone carries variance ~9 > target 1: the weight cannot bring it down
    params["layers"][1]["b"] = 3.0 * jax.random.normal(jax.random.PRNGKey(7), (WIDTH,))
    with pytest.raises(ValueError, match=r"site 'layers\[1\]'.*did not converge.*variance is"):
        initdiag.calibrate(mlp, params, X, max_iter=5)
    zero = _params(depth=2)
    zero["layers"][0]["w"] = jnp.zeros_like(zero["layers"][0]["w"])
    with pytest.raises(ValueError, match=r"site 'layers\[0\]'.*variance 0\.0"):
        initdiag.calibrate(mlp, zero, X)


def test_numpy_leaves_and_tuple_structure_preserved():
    p = _params(depth=2)
    tup = tuple((np.asarray(l["w"]), np.asarray(l["b"])) for l in p["layers"])

    def f(params, x):
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w + b[None, :]
            if i < len(params) - 1:
                h = jnp.tanh(h)
        return h

    new, _ = initdiag.calibrate(f, tup, X)
    assert isinstance(new, tuple) and all(isinstance(w, np.ndarray) for w, _ in new)
    np.testing.assert_array_equal(tup[0][0], p["layers"][0]["w"])  # the input is not modified
