"""The example models (initdiag/examples) probed end to end, in every framework.

The expected site counts follow from each architecture, not from a previous run:

* MLP, depth 6: 6 dense layers, an activation after each but the readout;
* ResNet, 3 blocks: a stem conv + 2 convs per block = 7 convs, a batchnorm after each and a
  relu after each norm (the second one after the residual add), one residual add per block;
* pre-LN transformer, 2 layers: q, k, v, out and two MLP dense layers per layer (12), two
  layernorms per layer plus the final one (5), one attention and two residual adds per layer,
  one gelu per layer.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

import initdiag
from initdiag.examples import deep_cnn, mlp, resnet, transformer
from reference import float32_rtol

EXPECTED = {
    "mlp": {"dense": 6, "activation": 5},
    "resnet": {"conv": 7, "norm": 7, "activation": 7, "residual": 3},
    "transformer": {"dense": 12, "norm": 5, "attention": 2, "residual": 4, "activation": 2},
}
MODULES = {"mlp": mlp, "resnet": resnet, "transformer": transformer}


def _probe(made, **options):
    if len(made) == 3:
        return initdiag.probe_fn(*made, **options)
    return initdiag.probe_model(*made, **options)


@pytest.mark.parametrize("framework", ["jax", "linen", "nnx", "equinox"])
@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_example_sites_in_every_framework(example, framework):
    res = _probe(MODULES[example].make_model(framework=framework))
    assert dict(collections.Counter(res.kinds)) == EXPECTED[example]
    assert len(set(res.sites)) == len(res.sites)
    assert res.skipped == ()
    assert np.all(np.isfinite(res["var"])) and np.all(res["grad_rms"] > 0)
    acts = {a.split("(")[0] for a in res.activations if a}
    assert acts == {"mlp": {"tanh"}, "resnet": {"relu"}, "transformer": {"gelu"}}[example]


def test_haiku_mlp():
    res = _probe(mlp.make_model(framework="haiku"))
    assert dict(collections.Counter(res.kinds)) == EXPECTED["mlp"]
    assert res.sites[0] == "mlp/~/linear_0" and res.sites[1] == "mlp/~/linear_0/tanh"


@pytest.mark.parametrize("framework", ["jax", "linen"])
def test_scanned_transformer_has_a_site_per_layer(framework):
    scanned = _probe(transformer.make_model(framework=framework, scan=True))
    unrolled = _probe(transformer.make_model(framework=framework))
    assert sorted(scanned.kinds) == sorted(unrolled.kinds)
    per_layer = [s for s in scanned.sites if s.endswith("/[0]")]
    assert len(per_layer) == len([s for s in scanned.sites if s.endswith("/[1]")]) > 0
    if framework == "jax":  # same weights (linen's nn.scan draws its own): same statistics,
        # to float32 rounding of 2 layers x ~6 matmuls of width 32 over 8 x 16 tokens
        rtol = float32_rtol(depth=12, width=32, batch=8 * 16)
        np.testing.assert_allclose(np.sort(scanned["var"]), np.sort(unrolled["var"]), rtol=rtol)


def test_deep_cnn_delta_orthogonal_against_gaussian():
    """Xiao et al. 2018 at tanh's critical point: both keep the mean squared gradient (chi = 1),
    but a Gaussian kernel's per-layer gradient RMS fluctuates from layer to layer (16 channels),
    while delta-orthogonal kernels keep it smooth over 1000 layers (measured: std of log10
    grad_rms over the conv sites 0.04 against 0.34-0.49 for seeds 0-2)."""
    spread = {}
    for init in ("delta_orthogonal", "gaussian"):
        fn, params, x = deep_cnn.make_model(init=init, depth=1000, seed=1)
        res = initdiag.probe_fn(fn, params, x, seed=1)
        g = res["grad_rms"][np.array(res.kinds) == "conv"]
        assert g.size == 1000 and np.all(g > 0)
        spread[init] = float(np.std(np.log10(g)))
    assert spread["delta_orthogonal"] < 0.1 < 0.2 < spread["gaussian"]


def test_probe_model_again_reuses_the_compiled_program():
    """A framework adapter builds a new fn per call; the program is found by what it traces to
    (same jaxpr, constants, structures), so the executable compiles once."""
    from initdiag.model import api
    from initdiag.model.frameworks import adapt

    made = mlp.make_model(framework="equinox", depth=3, width=16, batch=8)
    first = adapt(*made)
    second = adapt(*made)
    assert first.fn is not second.fn
    p1 = api.program(first.fn, first.params, made[1])
    p2 = api.program(second.fn, second.params, made[1])
    assert p2 is p1
    initdiag.probe_model(*made)
    initdiag.probe_model(*made)
    assert p1.compiled_count() == 1
    # a different model (another depth) traces to another program
    other = adapt(*mlp.make_model(framework="equinox", depth=4, width=16, batch=8))
    assert api.program(other.fn, other.params, made[1]) is not p1
