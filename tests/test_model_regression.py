"""Regression checks (baseline, compare, assert_healthy) for model probes."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import initdiag
from initdiag.regression.model import tolerances

DIN, WIDTH, BATCH = 16, 48, 64
X = jax.random.normal(jax.random.PRNGKey(5), (BATCH, DIN))


def mlp(params, x):
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w + b[None, :]
        if i < len(params) - 1:
            h = jnp.tanh(h)
    return h


def _params(depth=4, gain=1.0, seed=0):
    key = jax.random.PRNGKey(seed)
    dims = [DIN] + [WIDTH] * depth + [3]
    out = []
    for i in range(len(dims) - 1):
        key, k = jax.random.split(key)
        out.append((gain * jax.random.normal(k, (dims[i], dims[i + 1])) / np.sqrt(dims[i]),
                    jnp.zeros((dims[i + 1],))))
    return out


def _probe(gain=1.0, seed=0, init="lecun_normal", depth=4):
    return initdiag.probe_fn(mlp, _params(depth, gain, seed), X, seed=seed, init=init)


def test_round_trip_and_rerun_passes(tmp_path):
    res = _probe()
    path = initdiag.save_baseline(res, tmp_path / "m.json")
    doc = json.loads(path.read_text())
    assert doc["kind"] == "model" and "meta" not in doc["results"][0]
    back = initdiag.load_baseline(path)
    assert isinstance(back, initdiag.ModelResult)
    a, b = res.to_dict(), back.to_dict()
    a.pop("meta"), b.pop("meta")
    assert a == b
    cmp = initdiag.compare(_probe(), path)
    assert cmp.passed, str(cmp)
    assert cmp.n_compared > len(res.sites)
    assert cmp.to_dict()["missing_sites"] == []


def test_changed_init_fails_naming_site_and_metric(tmp_path):
    path = initdiag.save_baseline(_probe(), tmp_path / "m.json")
    cmp = initdiag.compare(_probe(gain=1.05), path)
    assert not cmp.passed
    devs = {(d.metric, d.site) for d in cmp.deviations}
    assert ("var", "[0]") in devs  # var x1.1025 at the first dense site, > 0.1% tolerance
    assert ("weight_norm", "[0][0]") in devs
    text = str(cmp)
    assert "[0]" in text and "var" in text and "site" in text.splitlines()[-len(cmp.deviations) - 1]
    # the metrics= filter and a loose tolerance
    only = initdiag.compare(_probe(gain=1.05), path, metrics=["var"])
    assert {d.metric for d in only.deviations} == {"var"}
    assert initdiag.compare(_probe(gain=1.05), path, rtol=1.0, atol=1.0).passed


def test_sites_matched_by_name_missing_added_reported(tmp_path):
    path = initdiag.save_baseline(_probe(depth=4), tmp_path / "m.json")
    cmp = initdiag.compare(_probe(depth=3), path)
    assert not cmp.passed
    assert any("site '[4]'" in s for s in cmp.missing_sites)
    assert any("leaf '[4][0]'" in s for s in cmp.missing_sites)
    assert "Sites in the baseline but not in the current results" in str(cmp)
    # the sites both hold are compared by name: the forward pass up to [2] is the same weights
    fwd = [d for d in cmp.deviations if d.metric == "var"]
    assert fwd and not any(d.site in ("[0]", "[0]/tanh", "[1]", "[1]/tanh") for d in fwd)


def test_sweep_matched_by_model_init_seed(tmp_path):
    sweep = initdiag.ModelSweep([_probe(seed=s, init=i) for i in ("a", "b") for s in (0, 1)])
    path = initdiag.save_baseline(sweep, tmp_path / "s.json")
    back = initdiag.load_baseline(path)
    assert isinstance(back, initdiag.ModelSweep) and len(back) == 4
    # order does not matter
    assert initdiag.compare(initdiag.ModelSweep(list(sweep)[::-1]), path).passed
    cmp = initdiag.compare(initdiag.ModelSweep(list(sweep)[:3]), path)
    assert cmp.missing == (("mlp / b", 1),)
    with pytest.raises(TypeError, match="like with like"):
        initdiag.compare(sweep, initdiag.probe(depth=2, width=8, batch=8))


def test_tolerance_table():
    t = tolerances(["var", "grad_rms", "dead_frac", "mean", "attn_entropy", "grad_norm"],
                   None, None, None)
    assert t["var"].kind == "ratio" and t["grad_rms"].kind == "ratio"
    assert t["dead_frac"].kind == "abs" and t["mean"].kind == "scaled"
    assert t["attn_entropy"].kind == "scaled" and t["grad_norm"].kind == "ratio"
    t = tolerances(["var"], None, None, {"var": {"rtol": 0.5}})
    assert t["var"].rtol == 0.5


def test_malformed_model_baseline(tmp_path):
    path = initdiag.save_baseline(_probe(), tmp_path / "m.json")
    doc = json.loads(path.read_text())
    doc["results"][0]["metrics"]["var"] = doc["results"][0]["metrics"]["var"][:-1]
    path.write_text(json.dumps(doc))
    with pytest.raises(initdiag.BaselineError, match=r"metrics\['var'\]"):
        initdiag.load_baseline(path)


def test_assert_healthy_models():
    assert initdiag.assert_healthy(_probe()).kind == "healthy"
    params = _params()
    params[-1] = (jnp.zeros_like(params[-1][0]), params[-1][1])
    with pytest.raises(AssertionError) as e:
        initdiag.assert_healthy(initdiag.probe_fn(mlp, params, X))
    msg = str(e.value)
    assert "site '[0]'" in msg and "grad_rms" in msg
    assert "symmetric" in msg and "'[4][0]' is all zeros" in msg
    with pytest.raises(AssertionError, match="saturation"):
        initdiag.assert_healthy(_probe(gain=5.0))
