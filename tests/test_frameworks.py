"""initdiag.model.frameworks.adapt on every example model in every framework, and the examples.

``fn`` and the framework's own call run the same operations, but as two programs that another
CPU may fuse differently, so outputs are compared to float32 rounding (tests/reference.
float32_rtol), as are scanned against unrolled layers. Parameters passed through unchanged are
compared exactly.
"""

import ast
import functools
import pathlib

import equinox as eqx
import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from initdiag.examples import deep_cnn, mlp, resnet, transformer
from initdiag.model.frameworks import Adapted, adapt
from reference import float32_rtol

KEY0 = jax.random.key(0)


# -- the models, and each framework's own forward call ----------------------------------------

def _haiku_bn():
    """transform_with_state, apply takes an rng: BatchNorm (batch statistics) and dropout."""
    def f(x, is_training):
        h = hk.BatchNorm(True, True, 0.9)(hk.Linear(8)(x), is_training)
        return hk.dropout(hk.next_rng_key(), 0.5, h)

    t = hk.transform_with_state(f)
    x = jax.random.normal(jax.random.key(1), (6, 4))
    params, state = t.init(KEY0, x, is_training=True)
    return (t, params, state), x, {"is_training": True}


# Smaller than the defaults where compiling dominates: one residual block, and 16 input channels
# so that every convolution kernel has one shape (XLA compiles a random draw of rank 4 in ~1 s
# of CPU, once per shape).
RESNET = {"blocks": 1, "in_channels": 16}
CNN = {"depth": 5}

CASES = {
    # id: (make() -> (model, x[, apply_kwargs]), the framework adapt should detect)
    "mlp-jax": (lambda: _jax(mlp.make_jax()), "function"),
    "mlp-linen": (mlp.make_linen, "flax.linen"),
    "mlp-linen-bound": (lambda: _bound(*mlp.make_linen()), "flax.linen"),
    "mlp-nnx": (mlp.make_nnx, "flax.nnx"),
    "mlp-equinox": (mlp.make_equinox, "equinox"),
    "mlp-haiku": (mlp.make_haiku, "haiku"),
    "resnet-jax": (lambda: _jax(resnet.make_jax(**RESNET)), "function"),
    "resnet-linen": (lambda: resnet.make_linen(**RESNET), "flax.linen"),
    "resnet-linen-eval": (lambda: (*resnet.make_linen(**RESNET), {"train": False}), "flax.linen"),
    "resnet-nnx": (lambda: resnet.make_nnx(**RESNET), "flax.nnx"),
    "resnet-equinox": (lambda: resnet.make_equinox(**RESNET), "equinox"),
    "transformer-jax": (lambda: _jax(transformer.make_jax()), "function"),
    "transformer-jax-scan": (lambda: _jax(transformer.make_jax(scan=True)), "function"),
    "transformer-linen": (transformer.make_linen, "flax.linen"),
    "transformer-linen-scan": (lambda: transformer.make_linen(scan=True), "flax.linen"),
    "transformer-nnx": (transformer.make_nnx, "flax.nnx"),
    "transformer-equinox": (transformer.make_equinox, "equinox"),
    "deep_cnn-delta-2d": (lambda: _jax(deep_cnn.make_model("delta_orthogonal", spatial=(4, 4),
                                                           **CNN)), "function"),
    "deep_cnn-gaussian": (lambda: _jax(deep_cnn.make_model("gaussian", **CNN)), "function"),
    "haiku-bn-rng": (_haiku_bn, "haiku"),
}
LAYOUT = {"function": "flax", "flax.linen": "flax", "flax.nnx": "flax", "equinox": "equinox",
          "haiku": "haiku"}


def _jax(made):
    fn, params, x = made
    return (fn, params), x


def _bound(model, x):
    module, variables = model
    return module.bind(variables), x


@functools.cache
def _build(case):
    """The model of a case, built once for the tests that use it (none changes it)."""
    made = CASES[case][0]()
    model, x = made[:2]
    return model, x, (made[2] if len(made) > 2 else {})


_JITS = {}


def _jit(key, make):
    """One jitted callable per model kind and static part, so that the three calls of a test
    (model, rebuilt model, rebuilt with doubled weights) compile once."""
    if key not in _JITS:
        _JITS[key] = make()
    return _JITS[key]


def own_forward(model, x, kwargs):
    """The model's output by its framework's own call, jitted with the weights as arguments."""
    kw = tuple(sorted(kwargs.items()))
    if isinstance(model, nnx.Module):
        # on a copy: a BatchNorm in training mode updates the module it is called on
        call = _jit(("nnx", kw), lambda: nnx.jit(lambda m, x: m(x, **kwargs)))
        return call(nnx.clone(model), x)
    if isinstance(model, nn.Module):
        model = model.unbind()
    if isinstance(model, eqx.Module):
        return _jit("eqx", lambda: eqx.filter_jit(lambda m, x: jax.vmap(m)(x)))(model, x)
    head = model[0]
    if isinstance(head, nn.Module):
        module, variables = model
        cols = [c for c in variables if c != "params"]
        call = _jit(("linen", id(module), kw), lambda: jax.jit(
            lambda v, x: module.apply(v, x, mutable=cols, **kwargs)[0] if cols
            else module.apply(v, x, **kwargs)))
        return call(variables, x)
    if isinstance(head, eqx.Module):
        call = _jit("eqx-state", lambda: eqx.filter_jit(
            lambda m, s, x: jax.vmap(m, axis_name="batch", in_axes=(0, None),
                                     out_axes=(0, None))(x, s)[0]))
        return call(*model, x)
    if isinstance(head, hk.TransformedWithState):
        call = _jit(("hk-state", id(head), kw), lambda: jax.jit(
            lambda p, s, x: head.apply(p, s, KEY0, x, **kwargs)[0]))
        return call(*model[1:], x)
    if isinstance(head, hk.Transformed):  # mlp-haiku: hk.without_apply_rng
        call = _jit(("hk", id(head), kw), lambda: jax.jit(lambda p, x: head.apply(p, x, **kwargs)))
        return call(model[1], x)
    fn, params = model
    return _jit(("fn", id(fn), kw), lambda: jax.jit(lambda p, x: fn(p, x, **kwargs)))(params, x)


def _same(actual, desired):
    """Equal to float32 rounding: the adapter's fn and the framework's own call run the same
    operations, but the two programs may be fused differently on another CPU. Bound: every
    example is <= 16 layers of fan-in <= 256 (float32_rtol), times the output's RMS."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    rms = float(np.sqrt(np.mean(np.square(desired.astype(np.float64)))))
    atol = float32_rtol(depth=16, width=256, batch=desired.size) * rms
    np.testing.assert_allclose(actual, desired, rtol=0, atol=atol)


def _double(params):
    return jax.tree.map(lambda w: 2 * w, params)


# -- fn equals the model's own call; rebuild puts the weights back -----------------------------

@pytest.mark.parametrize("case", list(CASES))
def test_fn_is_the_model(case):
    model, x, kwargs = _build(case)
    a = adapt(model, x, apply_kwargs=kwargs)
    assert isinstance(a, Adapted)
    assert (a.framework, a.layout) == (CASES[case][1], LAYOUT[CASES[case][1]])
    fn = jax.jit(a.fn)
    y = fn(a.params, x)
    assert y.shape[0] == x.shape[0] and np.isfinite(y).all()
    _same(y, own_forward(model, x, kwargs))
    _same(own_forward(a.rebuild(a.params), x, kwargs), y)
    assert type(a.rebuild(a.params)) is type(model)

    # new weights reach the model's output both ways: through fn and through rebuild
    y2 = fn(_double(a.params), x)
    _same(own_forward(a.rebuild(_double(a.params)), x, kwargs), y2)
    assert not np.allclose(y2, y)


@pytest.mark.parametrize("case", ["resnet-linen", "resnet-nnx", "resnet-equinox",
                                  "transformer-jax-scan", "haiku-bn-rng"])
def test_grad_of_the_weights(case):
    model, x, kwargs = _build(case)
    a = adapt(model, x, apply_kwargs=kwargs)
    # a random projection: sum(y) alone has zero gradient behind a final LayerNorm
    r = jax.random.normal(jax.random.key(2), jax.eval_shape(a.fn, a.params, x).shape)
    g = jax.jit(jax.grad(lambda p: jnp.sum(a.fn(p, x) * r)))(a.params)
    assert jax.tree.structure(g) == jax.tree.structure(a.params)
    leaves = jax.tree.leaves(g)
    assert leaves and all(np.isfinite(v).all() for v in leaves)
    for v in leaves:
        if v.ndim >= 2:  # every kernel and weight matrix gets a gradient
            assert np.abs(v).max() > 0


# -- what is held fixed -----------------------------------------------------------------------

def test_nnx_fn_does_not_touch_the_callers_module():
    model, x = resnet.make_nnx(**RESNET)
    before = jax.tree.map(np.array, nnx.state(model))
    a = adapt(model, x)
    y = a.fn(a.params, x)  # eagerly: a BatchNorm would update whatever module it runs in
    jax.jit(jax.grad(lambda p: jnp.sum(a.fn(p, x)[:, 0])))(a.params)
    after = jax.tree.map(np.array, nnx.state(model))
    jax.tree.map(np.testing.assert_array_equal, after, before)

    # the check can fail: calling the module itself updates its running statistics
    model(x)
    moved = jax.tree.map(np.array, nnx.state(model))
    assert not all(np.array_equal(p, q) for p, q in zip(jax.tree.leaves(moved),
                                                        jax.tree.leaves(before)))
    # adapt took a snapshot: changing the caller's weights afterwards does not reach fn
    model.head.bias[...] = model.head.bias[...] + 1.0
    _same(a.fn(a.params, x), y)


def test_linen_batch_stats_held_fixed_and_apply_kwargs_passed():
    (module, variables), x, _ = _build("resnet-linen")
    train = adapt((module, variables), x)
    evaluate = adapt((module, variables), x, apply_kwargs={"train": False})
    assert "mutable=['batch_stats']" in train.description
    assert set(train.params) == set(variables["params"])
    # training mode normalizes by the batch; eval by the (initial) running averages
    assert not np.allclose(own_forward((module, variables), x, {}),
                           own_forward((module, variables), x, {"train": False}))
    # a bound module rebuilds as a bound module, with the same batch_stats
    bound = adapt(module.bind(variables), x).rebuild(_double(train.params))
    assert bound.scope is not None
    jax.tree.map(np.testing.assert_array_equal, bound.variables["batch_stats"],
                 variables["batch_stats"])
    jax.tree.map(np.testing.assert_array_equal, bound.variables["params"],
                 _double(variables["params"]))


# -- Equinox: the vmap decision ---------------------------------------------------------------

def test_equinox_vmap_per_sample_mlp():
    model, x, _ = _build("mlp-equinox")
    a = adapt(model, x)
    assert "jax.vmap(model)(x)" in a.description and "per-sample module" in a.description
    with pytest.raises(TypeError):  # the weight [64, 32] cannot multiply the batch [64, 32]
        adapt(model, x, vmap=False)
    assert "no x given" in adapt(model).description
    # a BatchNorm model with a state is vmapped with the BatchNorm's axis name
    (resnet_model, state), x, _ = _build("resnet-equinox")
    assert "axis_name='batch'" in adapt((resnet_model, state), x).description


def test_equinox_batchnorm_with_state():
    k1, k2 = jax.random.split(KEY0)
    model, state = eqx.nn.make_with_state(eqx.nn.Sequential)(
        [eqx.nn.Linear(4, 8, use_bias=False, key=k1),
         eqx.nn.BatchNorm(8, axis_name="i", mode="batch")])
    x = jax.random.normal(k2, (4, 4))  # 4 samples of 4 features: the weight fits the batch too
    a = adapt((model, state), x)
    assert "axis_name='i'" in a.description and "per-sample module" in a.description
    own = jax.vmap(model, axis_name="i", in_axes=(0, None), out_axes=(0, None))
    _same(a.fn(a.params, x), own(x, state)[0])
    # the statistics are the whole batch's: a sample's output changes with the other samples
    assert not np.allclose(a.fn(a.params, x)[:2], a.fn(a.params, x[:2]))
    # and never the state's: fn is the same after the model's own call updated the state
    _, new_state = own(x, state)
    _same(a.fn(a.params, x), own(x, new_state)[0])
    # without vmap the Linear runs on the whole batch, but the BatchNorm's axis name is unbound
    with pytest.raises(NameError):
        adapt((model, state), x, vmap=False)


class _BatchLinear(eqx.Module):
    """A module written for batches: it vmaps its per-sample layer itself (on one sample, the
    layer would get scalars)."""
    linear: eqx.nn.Linear

    def __call__(self, x):
        return jax.vmap(self.linear)(x)


def test_equinox_batch_module_is_not_vmapped():
    k1, k2 = jax.random.split(KEY0)
    model = _BatchLinear(eqx.nn.Linear(3, 4, key=k1))
    x = jax.random.normal(k2, (5, 3))
    a = adapt(model, x)
    assert "fn = model(x)" in a.description and "batch module" in a.description
    _same(jax.jit(a.fn)(a.params, x), eqx.filter_jit(model)(x))
    # neither per sample nor on the batch: a ValueError with both reasons
    with pytest.raises(ValueError, match="fails both per sample"):
        adapt(model, x[:, :2])


# -- Haiku ------------------------------------------------------------------------------------

def test_haiku_rng_only_when_apply_takes_one():
    (t, params), x, _ = _build("mlp-haiku")
    assert "jax.random.key(0)" not in adapt((t, params), x).description
    model, x, kwargs = _build("haiku-bn-rng")
    a = adapt(model, x, apply_kwargs=kwargs)
    assert "apply(params, state, jax.random.key(0), x, is_training=True)[0]" in a.description
    with pytest.raises(TypeError, match="takes \\(transformed, params, state\\)"):
        adapt(model[:2], x)


# -- the examples -----------------------------------------------------------------------------

def test_scanned_transformer_equals_unrolled():
    # the models (and compiled calls) of test_fn_is_the_model, built with the same seed
    (fn, p_scan), x, _ = _build("transformer-jax-scan")
    (fn_loop, p_loop), _, _ = _build("transformer-jax")
    jax.tree.map(np.testing.assert_array_equal, transformer.unstack_layers(p_scan), p_loop)
    jax.tree.map(np.testing.assert_array_equal, transformer.stack_layers(p_loop), p_scan)
    y_scan = own_forward((fn, p_scan), x, {})
    y_loop = own_forward((fn_loop, transformer.unstack_layers(p_scan)), x, {})
    # two layers whose matmuls contract over up to 4 d_model = 128 terms, in another order
    rtol = float32_rtol(depth=2, width=128, batch=x.shape[0] * x.shape[1])
    np.testing.assert_allclose(y_scan, y_loop, rtol=0, atol=rtol * np.sqrt(np.mean(y_loop**2)))

    # linen: nn.scan's stacked parameters, put into the unrolled module, give the same output
    (m_scan, v_scan), x, _ = _build("transformer-linen-scan")
    (m_loop, _), _, _ = _build("transformer-linen")
    stacked = v_scan["params"]["layers"]["block"]
    loop = {"params": {"ln_f": v_scan["params"]["ln_f"],
                       **{f"layers_{i}": jax.tree.map(lambda a: a[i], stacked) for i in range(2)}}}
    y_scan, y_loop = own_forward((m_scan, v_scan), x, {}), own_forward((m_loop, loop), x, {})
    np.testing.assert_allclose(y_scan, y_loop, rtol=0, atol=rtol * np.sqrt(np.mean(y_loop**2)))
    # a probe of the scanned stacks sees one block: the layers are a scan, not unrolled
    for a in (adapt((fn, p_scan), x), adapt((m_scan, v_scan), x)):
        jaxpr = jax.make_jaxpr(a.fn)(a.params, x).jaxpr
        assert [e.params["length"] for e in jaxpr.eqns if e.primitive.name == "scan"] == [2]


def test_deep_cnn_depth_1000_in_one_scan():
    fn, params, x = deep_cnn.make_model()
    assert params["kernel"].shape == (1000, 3, 16, 16) and x.shape == (8, 16, 16)
    # one scan of 1000 steps: the program (and its compile time) does not grow with depth
    jaxpr = jax.make_jaxpr(fn)(params, x).jaxpr
    scans = [e for e in jaxpr.eqns if e.primitive.name == "scan"]
    assert len(scans) == 1 and scans[0].params["length"] == 1000 and len(jaxpr.eqns) < 10
    (loss, y), g = jax.jit(jax.value_and_grad(lambda p: (jnp.sum(fn(p, x)[:, 0]), fn(p, x)),
                                              has_aux=True))(params)
    assert np.isfinite(loss) and all(np.isfinite(v).all() for v in jax.tree.leaves(g))
    # at the critical point the signal neither dies nor saturates in 1000 layers: E[y^2] =
    # E[tanh(h)^2], Var(h) -> q* = 0.0259, is ~0.025 (a tenth of it or 5x it would fail)
    assert 0.01 < float(jnp.mean(y**2)) < 0.05


def test_deep_cnn_initializations():
    import initdiag.theory as theory

    # (sigma_w^2, sigma_b^2) is on tanh's critical line: chi_1 = 1
    assert abs(theory.chi1("tanh", deep_cnn.WEIGHT_VAR, deep_cnn.BIAS_VAR) - 1) < 1e-6
    (_, p), _, _ = _build("deep_cnn-delta-2d")
    k = np.asarray(p["kernel"], np.float64)  # [5, 3, 3, 16, 16]: only the centre tap,
    centre = k[:, 1, 1] / np.sqrt(deep_cnn.WEIGHT_VAR)  # sqrt(sigma_w^2) times orthogonal
    np.testing.assert_allclose(np.einsum("lij,lkj->lik", centre, centre),
                               np.broadcast_to(np.eye(16), (5, 16, 16)), atol=1e-5)
    k[:, 1, 1] = 0
    assert not k.any()
    (_, p), _, _ = _build("deep_cnn-gaussian")
    # i.i.d. N(0, sigma_w^2 / fan_in), fan_in = 3 * 16: the sample variance of n draws is
    # within 4 standard errors sqrt(2 / n) of it
    var = np.var(np.asarray(p["kernel"], np.float64)) * 3 * 16 / deep_cnn.WEIGHT_VAR
    assert abs(var - 1) < 4 * np.sqrt(2 / p["kernel"].size)
    bias_var = np.var(np.asarray(p["bias"], np.float64)) / deep_cnn.BIAS_VAR
    assert abs(bias_var - 1) < 4 * np.sqrt(2 / p["bias"].size)


# -- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, seen", [
    (42, "builtins.int"),
    ("mlp", "builtins.str"),
    ([mlp.forward, []], "builtins.list"),
    ((1, 2), "a tuple of (int, int)"),
    (nn.Dense(3), "an unbound linen module has no variables"),
    (hk.transform(lambda x: x), "needs its parameters"),
])
def test_bad_input_is_a_type_error(bad, seen):
    with pytest.raises(TypeError) as info:
        adapt(bad)
    message = str(info.value)
    assert seen in message and "accepted forms" in message
    for form in ("flax.linen", "flax.nnx", "equinox", "haiku", "function"):
        assert form in message


def test_vmap_only_for_equinox():
    fn, params, x = mlp.make_jax()
    with pytest.raises(ValueError, match="Equinox models only"):
        adapt((fn, params), x, vmap=True)


def test_no_framework_imported_at_module_level():
    """Flax, Equinox and Haiku are imported only inside functions (frameworks.adapt looks them
    up in sys.modules; the examples import them in the function that builds a model)."""
    def imports(node):
        """Modules imported by ``node`` outside function bodies (at import time)."""
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or ""
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for child in ast.iter_child_nodes(node):
                yield from imports(child)

    root = pathlib.Path(__file__).resolve().parents[1] / "initdiag"
    checked = 0
    for path in root.rglob("*.py"):
        for name in imports(ast.parse(path.read_text())):
            assert name.split(".")[0] not in ("flax", "equinox", "haiku"), (path, name)
        checked += 1
    assert checked > 20 and (root / "model" / "frameworks.py").exists()
