"""initdiag.probe_fn against references it did not produce (issue 11 "Tests").

References: the stack probe (``initdiag.probe_params``) on the same weights; ``jax.grad`` with
respect to additive zero perturbations placed by hand; Flax's own intermediates (linen
``capture_intermediates``, ``nnx.capture``); the unrolled form of a scanned stack; channel counts
known by construction; float64 numpy. Tolerances: ``tests/reference.py``'s ``float32_rtol`` (two
float32 evaluations that differ only in operation order); exact where nothing is rounded
differently (fractions, the same ops in the same order).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import initdiag
from initdiag import tap
from initdiag.model import api
from initdiag.model.program import Program
from initdiag.nn.stacks import split_seed

from reference import float32_rtol


def _readout(y, seed=0):
    return jax.random.normal(split_seed(seed)["readout"], y.shape, jnp.float32)


def _projection(y, seed=0):
    return jnp.sum(_readout(y, seed) * y) / y.shape[0]


def _rms64(a):
    a = np.asarray(a, np.float64)
    return float(np.sqrt(np.mean(a**2)))


def _mlp(depth, width, batch, key=0, gain=1.0, bias=0.1):
    ks = jax.random.split(jax.random.key(key), 2 * depth + 1)
    ws = [gain * jax.random.normal(ks[i], (width, width)) / np.sqrt(width) for i in range(depth)]
    bs = [bias * jax.random.normal(ks[depth + i], (width,)) for i in range(depth)]
    x = jax.random.normal(ks[-1], (batch, width))
    return ws, bs, x


# ------------------------------------------------------------------ 1. against probe_params
DEPTH, WIDTH, BATCH = 4, 64, 128
#: Rounding bound between the stack engine and probe_fn's pass (same ops, other fusion/order).
RTOL = float32_rtol(DEPTH, WIDTH, BATCH)


@pytest.mark.parametrize("act,fn", [("tanh", jnp.tanh), ("relu", jax.nn.relu)])
def test_tapped_mlp_equals_probe_params(act, fn):
    assert RTOL < 1.2e-5
    ws, bs, x = _mlp(DEPTH, WIDTH, BATCH, gain=1.5 if act == "tanh" else 1.0,
                     bias=0.1 if act == "tanh" else 0.3)
    if act == "relu":  # two dead units in layer 2, so dead_frac is not trivially 0
        bs[1] = bs[1].at[:2].set(-50.0)

    def f(p, x):
        h = x
        for i, (w, b) in enumerate(zip(*p)):
            z = tap(h @ w + b[None, :], f"pre{i}")
            h = tap(fn(z), f"act{i}", activation=act)
        return h

    res = initdiag.probe_fn(f, (ws, bs), x)
    ref = initdiag.probe_params(ws, bs, x, act)
    assert res.sites == tuple(s for i in range(DEPTH) for s in (f"pre{i}", f"act{i}"))
    pre, post = slice(0, None, 2), slice(1, None, 2)
    for sl, prefix, grad in ((pre, "preact", "grad_preact_rms"), (post, "act", "grad_act_rms")):
        rms = np.sqrt(res["sq_mean"][sl])
        # a mean is a signed sum: its rounding scales with the rms of what is summed
        err = np.abs(res["mean"][sl] - ref[f"{prefix}_mean"])
        assert np.all(err <= RTOL * rms), (prefix, err / rms)
        np.testing.assert_allclose(res["var"][sl], ref[f"{prefix}_var"], rtol=RTOL)
        np.testing.assert_allclose(res["grad_rms"][sl], ref[grad], rtol=RTOL)
    # Fractions are counts. An entry within float32 rounding of a boundary (|tanh h| = 0.99 for
    # saturation, h = 0 for relu) may land on either side, so the counts may differ by at most
    # the number of such entries, found on a float64 forward pass of the same weights: h is
    # within dh = RTOL rms(h) of it, so tanh(h) within sech^2(h) dh + one rounding (2**-24).
    n = BATCH * WIDTH
    h64 = np.asarray(x, np.float64)
    for layer, (w, b) in enumerate(zip(ws, bs)):
        h64 = h64 @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
        dh = RTOL * _rms64(h64)
        i = 2 * layer + 1
        if act == "tanh":
            near = np.abs(np.abs(np.tanh(h64)) - 0.99) <= dh / np.cosh(h64) ** 2 + 2.0**-24
            assert abs(res["saturation"][i] - ref["saturation"][layer]) * n <= near.sum()
            h64 = np.tanh(h64)
        else:
            near = np.abs(h64) <= dh
            assert abs(res["zero_frac"][i] - ref["zero_frac"][layer]) * n <= near.sum()
            # a unit's death is in doubt only if its largest h is within dh of 0
            doubtful = np.abs(h64.max(axis=0)) <= dh
            assert abs(res["dead_frac"][i] - ref["dead_frac"][layer]) * WIDTH <= doubtful.sum()
            h64 = np.maximum(h64, 0.0)
    if act == "tanh":
        assert ref["saturation"].max() > 0  # the comparison sees saturated units
        assert np.all(np.isnan(res["saturation"][pre]))
    else:
        assert res["dead_frac"][3] == ref["dead_frac"][1] == 2 / WIDTH


# ------------------------------------------------------------------ 2. gradients by hand
def _perturbed(d, name, v):
    return v if d is None else v + d[name]


def _check_grads(fn_d, params, x, kinds, names):
    """probe_fn(fn)'s sites have these kinds, and grad_rms equals jax.grad w.r.t. a zero
    perturbation added by hand at the same places (named ``names``, in call order)."""
    res = initdiag.probe_fn(lambda p, x: fn_d(p, x, None), params, x)
    assert res.kinds == tuple(kinds), res.sites
    shapes = _shapes(fn_d, params, x)
    d0 = {k: jnp.zeros(s, jnp.float32) for k, s in shapes.items()}
    g = jax.grad(lambda d: _projection(fn_d(params, x, d)))(d0)
    ref = np.array([_rms64(g[n]) for n in names])
    n_layers = len(names)
    width = max(int(np.prod(s[-1:])) for s in shapes.values())
    np.testing.assert_allclose(res["grad_rms"], ref,
                               rtol=float32_rtol(n_layers, width, x.shape[0]))
    return res


class _Recorder(dict):
    """A perturbation dict that records the shape of every value it is added to."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def __getitem__(self, name):
        return _Shape(self.out, name)


class _Shape:
    def __init__(self, out, name):
        self.out, self.name = out, name

    def __radd__(self, v):
        self.out[self.name] = v.shape
        return v


def _shapes(fn_d, params, x):
    out = {}
    jax.eval_shape(lambda p, x: fn_d(p, x, _Recorder(out)), params, x)
    return out


def _mlp_d(p, x, d):
    h = x
    for i, (w, b) in enumerate(zip(*p)):
        h = _perturbed(d, f"dense{i}", h @ w + b[None, :])
        h = _perturbed(d, f"act{i}", jnp.tanh(h))
    return h


def test_grad_rms_equals_grad_of_perturbation_mlp():
    ws, bs, x = _mlp(3, 48, 64, gain=1.3)
    _check_grads(_mlp_d, (ws, bs), x, ["dense", "activation"] * 3,
                 [f"{k}{i}" for i in range(3) for k in ("dense", "act")])


def _conv(x, w, layout="NHWC"):
    dn = (layout, "HWIO", layout)
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)


def _layernorm(h, scale, shift, eps=1e-5):
    m = jnp.mean(h, axis=-1, keepdims=True)
    v = jnp.mean(jnp.square(h - m), axis=-1, keepdims=True)
    return (h - m) * jax.lax.rsqrt(v + eps) * scale[None, None, None, :] + shift[None, None, None, :]


def _convnet_d(p, x, d):
    h = _perturbed(d, "conv1", _conv(x, p["w1"]) + p["b1"][None, None, None, :])
    h = _perturbed(d, "norm", _layernorm(h, p["scale"], p["shift"]))
    h = _perturbed(d, "act", jax.nn.relu(h))
    h = _perturbed(d, "conv2", _conv(h, p["w2"]) + p["b2"][None, None, None, :])
    return _perturbed(d, "residual", x + h)


def _convnet_params(c=16, key=1):
    k = jax.random.split(jax.random.key(key), 6)
    return {"w1": jax.random.normal(k[0], (3, 3, c, c)) / np.sqrt(9 * c),
            "b1": 0.1 * jax.random.normal(k[1], (c,)),
            "scale": 1 + 0.1 * jax.random.normal(k[2], (c,)),
            "shift": 0.1 * jax.random.normal(k[3], (c,)),
            "w2": jax.random.normal(k[4], (3, 3, c, c)) / np.sqrt(9 * c),
            "b2": 0.1 * jax.random.normal(k[5], (c,))}


def test_grad_rms_equals_grad_of_perturbation_conv_norm_residual():
    x = jax.random.normal(jax.random.key(2), (8, 8, 8, 16))
    _check_grads(_convnet_d, _convnet_params(), x,
                 ["conv", "norm", "activation", "conv", "residual"],
                 ["conv1", "norm", "act", "conv2", "residual"])


def _attention_d(p, x, d):
    q = _perturbed(d, "q", x @ p["wq"])
    k = _perturbed(d, "k", x @ p["wk"])
    v = _perturbed(d, "v", x @ p["wv"])
    logits = jnp.einsum("btd,bsd->bts", q, k) / np.sqrt(q.shape[-1])
    e = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
    probs = _perturbed(d, "attention", e / jnp.sum(e, axis=-1, keepdims=True))
    o = _perturbed(d, "o", jnp.einsum("bts,bsd->btd", probs, v) @ p["wo"])
    return _perturbed(d, "residual", x + o)


def _attention_params(dim=32, key=3):
    k = jax.random.split(jax.random.key(key), 4)
    return {n: jax.random.normal(kk, (dim, dim)) / np.sqrt(dim)
            for n, kk in zip(("wq", "wk", "wv", "wo"), k)}


def test_grad_rms_equals_grad_of_perturbation_attention():
    x = jax.random.normal(jax.random.key(4), (8, 16, 32))
    res = _check_grads(_attention_d, _attention_params(), x,
                       ["dense", "dense", "dense", "attention", "dense", "residual"],
                       ["q", "k", "v", "attention", "o", "residual"])
    assert 0 < res["attn_entropy"][3] <= np.log(16)


# ------------------------------------------------------------------ 3. Flax's own intermediates
def _assert_stats(res, names, values, depth, width, batch):
    """mean/var of the sites ``names`` equal float64 statistics of ``values``."""
    rtol = float32_rtol(depth, width, batch)
    for name, v in zip(names, values):
        v = np.asarray(v, np.float64)
        i = res.sites.index(name)
        assert abs(res["mean"][i] - v.mean()) <= rtol * np.sqrt(np.mean(v**2)), name
        np.testing.assert_allclose(res["var"][i], v.var(), rtol=rtol, err_msg=name)


def test_flax_linen_capture_intermediates_agree():
    import flax.linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            for _ in range(2):
                x = nn.Dense(64)(x)
                x = nn.tanh(x)
                self.sow("intermediates", "act", x)
            return nn.Dense(16)(x)

    model = MLP()
    x = jax.random.normal(jax.random.key(5), (128, 32))
    variables = model.init(jax.random.key(6), x)
    _, state = model.apply(variables, x, capture_intermediates=True)
    inter = state["intermediates"]
    res = initdiag.probe_fn(model.apply, variables, x)
    assert res.kinds == ("dense", "activation", "dense", "activation", "dense")
    dense = [n for n, k in zip(res.sites, res.kinds) if k == "dense"]
    assert dense == ["params/Dense_0", "params/Dense_1", "params/Dense_2"]
    acts = [n for n, k in zip(res.sites, res.kinds) if k == "activation"]
    values = [inter[f"Dense_{i}"]["__call__"][0] for i in range(3)] + list(inter["act"])
    _assert_stats(res, dense + acts, values, 3, 64, 128)


def test_flax_nnx_capture_agrees():
    from flax import nnx

    if not hasattr(nnx, "capture"):
        pytest.skip("flax.nnx.capture is not in this flax")

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(32, 64, rngs=rngs)
            self.l2 = nnx.Linear(64, 16, rngs=rngs)

        def hidden(self, x):  # its output is captured as a method output
            return jnp.tanh(self.l1(x))

        def __call__(self, x):
            return self.l2(self.hidden(x))

    model = MLP(nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(7), (128, 32))
    _, inter = nnx.capture(model, nnx.Intermediate, method_outputs=nnx.Intermediate)(x)
    flat = {"/".join(map(str, k)): v for k, v in nnx.to_flat_state(inter)}
    values = []
    for key in ("l1/__call__", "hidden", "l2/__call__"):
        v = flat[key]
        v = v.get_value() if hasattr(v, "get_value") else v.value
        values.append(v[0] if isinstance(v, tuple) else v)
    graphdef, state = nnx.split(model)
    res = initdiag.probe_fn(lambda s, x: nnx.merge(graphdef, s)(x), state, x)
    assert res.kinds == ("dense", "activation", "dense")
    _assert_stats(res, res.sites, values, 2, 64, 128)


# ------------------------------------------------------------------ 4. scan == unrolled
def _layer(h, w, b, name):
    z = tap(h @ w + b[None, :], f"pre{name}")
    return tap(jnp.tanh(z), f"act{name}", activation="tanh")


def _stacked(depth, width, batch):
    ws, bs, x = _mlp(depth, width, batch, gain=1.4)
    return (jnp.stack(ws), jnp.stack(bs)), x


def test_scan_equals_unrolled():
    (w, b), x = _stacked(4, 32, 64)

    def scanned(p, x):
        return jax.lax.scan(lambda h, wb: (_layer(h, *wb, ""), None), x, p)[0]

    def unrolled(p, x):
        h = x
        for i in range(p[0].shape[0]):
            h = _layer(h, p[0][i], p[1][i], f"/[{i}]")
        return h

    a = initdiag.probe_fn(scanned, (w, b), x)
    u = initdiag.probe_fn(unrolled, (w, b), x)
    assert a.sites == u.sites == tuple(f"{k}/[{i}]" for i in range(4) for k in ("pre", "act"))
    rtol = float32_rtol(4, 32, 64)
    for m in ("var", "sq_mean", "grad_rms"):
        np.testing.assert_allclose(a[m], u[m], rtol=rtol, err_msg=m)
    # a count: an entry within rounding (~1e-7) of the threshold may fall either way; expected
    # number of such entries ~ 2048 x density x 2e-7 << 1, so at most one is allowed to flip
    np.testing.assert_allclose(a["saturation"], u["saturation"], rtol=0, atol=1 / (64 * 32))
    # discovered sites: the same kinds and values, site by site
    a = initdiag.probe_fn(scanned, (w, b), x, sites="discover")
    u = initdiag.probe_fn(unrolled, (w, b), x, sites="discover")
    assert a.kinds == u.kinds == ("dense", "activation") * 4
    assert all(s.endswith(f"/[{i // 2}]") for i, s in enumerate(a.sites)), a.sites
    for m in ("var", "grad_rms"):
        np.testing.assert_allclose(a[m], u[m], rtol=rtol, err_msg=m)


def test_nested_scan_with_checkpoint_under_jit_equals_unrolled():
    groups, per = 2, 3
    (w, b), x = _stacked(groups * per, 32, 64)
    w = w.reshape(groups, per, 32, 32)
    b = b.reshape(groups, per, 32)

    @jax.jit
    def nested(p, x):
        @jax.checkpoint
        def inner(h, wb):
            return _layer(h, *wb, ""), None

        def outer(h, wb):
            return jax.lax.scan(inner, h, wb)[0], None

        return jax.lax.scan(outer, x, p)[0]

    def unrolled(p, x):
        h = x
        for g in range(groups):
            for j in range(per):
                h = _layer(h, p[0][g, j], p[1][g, j], f"/[{g}]/[{j}]")
        return h

    a = initdiag.probe_fn(nested, (w, b), x)
    u = initdiag.probe_fn(unrolled, (w, b), x)
    assert a.config["sites"] == "taps"  # the taps survive jit, scan and remat
    assert a.sites == u.sites
    assert a.sites[:4] == ("pre/[0]/[0]", "act/[0]/[0]", "pre/[0]/[1]", "act/[0]/[1]")
    rtol = float32_rtol(groups * per, 32, 64)
    for m in ("mean", "var", "grad_rms"):
        np.testing.assert_allclose(a[m], u[m], rtol=rtol, atol=rtol if m == "mean" else 0,
                                   err_msg=m)
    # a count: at most one entry within rounding of the threshold may flip (see above)
    np.testing.assert_allclose(a["saturation"], u["saturation"], rtol=0, atol=1 / (64 * 32))


# ------------------------------------------------------------------ 5. dead channels of a conv
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_conv_dead_frac_counts_dead_channels(layout):
    c, dead = 8, (1, 4, 6)
    w = 0.01 * jax.random.normal(jax.random.key(8), (3, 3, c, c))  # |conv| << 10
    b = jnp.full((c,), 0.5).at[jnp.array(dead)].set(-10.0)
    shape = (16, 8, 8, c) if layout == "NHWC" else (16, c, 8, 8)
    x = jax.random.normal(jax.random.key(9), shape)
    bias = (lambda b: b[None, None, None, :]) if layout == "NHWC" else (
        lambda b: b[None, :, None, None])

    def f(p, x):
        return jax.nn.relu(_conv(x, p["w"], layout) + bias(p["b"]))

    res = initdiag.probe_fn(f, {"w": w, "b": b}, x)
    assert res.kinds == ("conv", "activation")
    assert res["dead_frac"][1] == len(dead) / c
    # zero_frac counts entries: every entry of a dead channel, none of a live one (bias 0.5)
    assert res["zero_frac"][1] == len(dead) / c


# ------------------------------------------------------------------ 6. taps are free outside
def _make(with_taps):
    t = tap if with_taps else (lambda v, name, activation=None: v)

    def f(p, x):
        @jax.checkpoint
        def body(h, w):
            return t(jnp.tanh(t(h @ w, "pre")), "act", activation="tanh"), None

        return jax.lax.scan(body, x, p)[0]

    return f


def test_taps_cost_nothing_outside_a_probe():
    w = jax.random.normal(jax.random.key(10), (3, 16, 16)) / 4
    x = jax.random.normal(jax.random.key(11), (32, 16))
    tapped, plain = _make(True), _make(False)
    jitted = jax.jit(tapped)
    before = str(jax.make_jaxpr(jitted)(w, x))
    assert before == str(jax.make_jaxpr(jax.jit(plain))(w, x))
    assert "initdiag_tap" not in before
    out = jitted(w, x)  # cached outside a probe ...
    res = initdiag.probe_fn(jitted, w, x)  # ... traced afresh inside one
    assert res.sites == tuple(f"{k}/[{i}]" for i in range(3) for k in ("pre", "act"))
    assert res.kinds == ("tap",) * 6 and np.all(res["grad_rms"] > 0)
    assert str(jax.make_jaxpr(jitted)(w, x)) == before  # and not reused outside afterwards
    np.testing.assert_array_equal(jitted(w, x), out)


# ------------------------------------------------------------------ 7. underflow-safe reductions
@pytest.mark.parametrize("scale", [1e-30, 0.0])
def test_tiny_and_zero_gradients(scale):
    k = jax.random.split(jax.random.key(12), 3)
    w1 = jax.random.normal(k[0], (32, 64)) / np.sqrt(32)
    w2 = scale * jax.random.normal(k[1], (64, 8)) / 8
    x = jax.random.normal(k[2], (64, 32))

    def f(p, x):
        h = tap(x @ p[0], "h")
        return tap(jnp.tanh(h), "a", activation="tanh") @ p[1]

    res = initdiag.probe_fn(f, (w1, w2), x)
    # float64 reference from the same float32 weights
    h = np.asarray(x, np.float64) @ np.asarray(w1, np.float64)
    y_shape = (64, 8)
    g = np.asarray(_readout(jnp.zeros(y_shape)), np.float64) / 64
    ga = g @ np.asarray(w2, np.float64).T
    gh = ga * (1 - np.tanh(h) ** 2)
    if scale == 0.0:
        assert res["grad_rms"][0] == 0.0 and res["grad_rms"][1] == 0.0
    else:
        ref = np.array([_rms64(gh), _rms64(ga)])
        assert 1e-33 < ref.min() and ref.max() < 1e-29
        np.testing.assert_allclose(res["grad_rms"], ref, rtol=1e-5)


# ------------------------------------------------------------------ 8. activation recognition
def _tanh_gelu(v):
    return 0.5 * v * (1.0 + jnp.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3)))


ACTIVATIONS = [
    (jnp.tanh, "tanh"), (jax.nn.sigmoid, "sigmoid"), (jax.nn.relu, "relu"),
    (lambda v: jax.nn.leaky_relu(v, 0.2), "leaky_relu(slope=0.2)"), (jax.nn.elu, "elu"),
    (jax.nn.selu, "selu"), (lambda v: jax.nn.gelu(v, approximate=True), "gelu(approximate=True)"),
    (lambda v: jax.nn.gelu(v, approximate=False), "gelu"), (jax.nn.silu, "silu"),
    (jax.nn.softplus, "softplus"), (lambda v: jnp.maximum(v, 0.0), "relu"),
    (_tanh_gelu, "gelu(approximate=True)"), (lambda v: v**2, None), (lambda v: 2 * v, None),
]


def _activation_sites(act):
    w = jnp.ones((16, 32)) / 4
    x = jnp.ones((8, 16))
    prog = Program(lambda p, x: act(x @ p), w, x, sites="discover")  # phase 1 only: no compile
    return [s.activation for s in prog.site_list if s.kind == "activation"]


@pytest.mark.parametrize("act,label", ACTIVATIONS,
                         ids=[f"{i}-{label}" for i, (_, label) in enumerate(ACTIVATIONS)])
def test_activation_recognition(act, label):
    assert initdiag.activation(label).label == label if label else True
    assert _activation_sites(act) == ([label] if label else [])


# ------------------------------------------------------------------ 9. skipped constructs
@jax.custom_vjp
def _custom_dense(h, w):
    return h @ w


_custom_dense.defvjp(lambda h, w: (h @ w, (h, w)), lambda r, g: (g @ r[1].T, r[0].T @ g))


def test_custom_vjp_and_while_are_skipped_and_the_rest_is_probed():
    k = jax.random.split(jax.random.key(13), 3)
    p = {"w1": jax.random.normal(k[0], (16, 16)) / 4, "w2": jax.random.normal(k[1], (16, 16)) / 4}
    x = jax.random.normal(k[2], (32, 16))

    def f(p, x):
        h = jnp.tanh(x @ p["w1"])
        h = _custom_dense(h, p["w2"])
        # a while loop cannot be reverse-differentiated: one off the gradient path (a constant
        # computed from the signal), as a model that trains could have
        c = jax.lax.while_loop(lambda c: c[1] < 3, lambda c: (0.5 * c[0], c[1] + 1),
                               (jax.lax.stop_gradient(h), 0))[0]
        return h - c

    res = initdiag.probe_fn(f, p, x)
    constructs = [s["construct"] for s in res.skipped]
    assert any("custom_vjp" in c for c in constructs), res.skipped
    assert "while" in constructs, res.skipped
    assert all(s["reason"] for s in res.skipped)
    assert res.kinds[:2] == ("dense", "activation"), res.kinds
    assert np.all(np.isfinite(res["var"][:2])) and np.all(res["grad_rms"][:2] > 0)


# ------------------------------------------------------------------ 10-12. compile, JSON, errors
def _tiny():
    ws, bs, x = _mlp(2, 16, 32)
    f = lambda p, x: jnp.tanh(jnp.tanh(x @ p[0][0] + p[1][0][None, :]) @ p[0][1])  # noqa: E731
    return f, (ws, bs), x


def test_second_call_reuses_the_executable(tmp_path):
    f, p, x = _tiny()
    res = initdiag.probe_fn(f, p, x)
    p2 = jax.tree_util.tree_map(lambda a: 2 * a, p)
    res2 = initdiag.probe_fn(f, p2, x, seed=3)
    prog = api.program(f, p, x)
    assert api.program(f, p2, x) is prog and prog.compiled_count() == 1
    assert res2["var"][0] != res["var"][0]
    # JSON round trip, bit for bit
    res.to_json(tmp_path / "r.json")
    back = initdiag.load(tmp_path / "r.json")
    assert back == res and back.sites == res.sites
    for m in res.metrics:
        np.testing.assert_array_equal(back[m], res[m])


def test_bad_sites_and_loss_name_the_value_and_the_choices():
    f, p, x = _tiny()
    with pytest.raises(ValueError, match=r"sites='everywhere'.*auto, taps, discover"):
        initdiag.probe_fn(f, p, x, sites="everywhere")
    with pytest.raises(ValueError, match=r"loss='mse'.*projection, half_mse"):
        initdiag.probe_fn(f, p, x, loss="mse")


# ------------------------------------------------------------------ review findings, pinned
def _small(dtype=jnp.float32):
    k = jax.random.split(jax.random.key(5), 3)
    p = {"w": (jax.random.normal(k[0], (16, 16)) / 4).astype(dtype)}
    return p, jax.random.normal(k[1], (8, 16)).astype(dtype)


def test_programs_with_different_custom_rules_are_not_shared():
    """Two closures whose custom_vjp backward rules differ trace to the same jaxpr text: the
    second must not reuse the first's program (its gradient is 5x at the first site)."""
    def make(scale):
        @jax.custom_vjp
        def f(h):
            return jnp.sign(h)
        f.defvjp(lambda h: (f(h), None), lambda r, g: (g * scale,))
        return lambda p, x: f(x @ p["w"]) @ p["w"]

    p, x = _small()
    one = initdiag.probe_fn(make(1.0), p, x)["grad_rms"]
    five = initdiag.probe_fn(make(5.0), p, x)["grad_rms"]
    np.testing.assert_allclose(five[0], 5 * one[0], rtol=1e-6)


def test_unusual_but_legitimate_models_run():
    p, x = _small()
    key = jax.random.key(42)  # a captured PRNG key (fixed dropout mask)
    res = initdiag.probe_fn(lambda p, x: (jnp.tanh(x @ p["w"]), 1.0), p, x)  # a literal output
    assert res.sites == ("w", "w/tanh")
    drop = lambda p, x: jnp.tanh(x @ p["w"]) * jax.random.bernoulli(key, 0.9, (8, 16))  # noqa: E731
    assert initdiag.probe_fn(drop, p, x).sites == ("w", "w/tanh")
    # a PRNG key held in params is a fixed input, not a signal: jax's uniform is no "relu"
    keyed = lambda q, x: jnp.tanh(x @ q["w"]) * jax.random.bernoulli(q["k"], 0.9, (8, 16))  # noqa: E731
    assert initdiag.probe_fn(keyed, {**p, "k": key}, x).kinds == ("dense", "activation")


def test_bfloat16_models_keep_their_activation_sites():
    p, x = _small(jnp.bfloat16)
    for fn, label in ((jnp.tanh, "tanh"), (jax.nn.relu, "relu"), (jax.nn.silu, "silu")):
        res = initdiag.probe_fn(lambda q, x: fn(x @ q["w"]), p, x)
        assert res.activations == (None, label)


def test_cond_is_listed_as_skipped_and_names_stay_unique():
    p, x = _small()
    res = initdiag.probe_fn(
        lambda q, x: jax.lax.cond(x.sum() > 0, lambda h: jnp.tanh(h @ q["w"]), lambda h: h, x),
        p, x)
    assert [s["construct"] for s in res.skipped] == ["cond"]
    q = {"w": p["w"], "w_1": p["w"] * 0.5}
    res = initdiag.probe_fn(lambda q, x: (x @ q["w"]) @ q["w"] @ q["w_1"], q, x)
    assert len(set(res.sites)) == len(res.sites) == 3


def test_projections_before_a_head_split_keep_their_channel_statistics():
    from initdiag.examples import transformer

    res = initdiag.probe_fn(*transformer.make_model(framework="jax"))
    dense = np.array(res.kinds) == "dense"
    assert np.all(np.isfinite(res["ch_var"][dense]))
