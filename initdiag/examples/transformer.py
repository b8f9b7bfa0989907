"""A pre-LN transformer stack in plain JAX, Flax linen, Flax nnx and Equinox.

``layers`` blocks, each

    h <- h + Wo . attention(LayerNorm(h))          multi-head self-attention, no mask
    h <- h + W2 . gelu(W1 . LayerNorm(h) + b1) + b2

then a final LayerNorm. Attention projects to queries, keys and values with ``[d_model,
d_model]`` matrices (no bias), splits ``heads`` heads of ``d_model / heads``, and weighs the
values by ``jax.nn.softmax`` over the last axis of ``q . k^T / sqrt(d_head)``; the MLP is
``d_model -> 4 d_model -> d_model`` with biases and exact (erf) gelu. LayerNorms use epsilon
1e-5, scale 1 and shift 0 at initialization. The input is ``[batch, seq, d_model]``, standard
normal (already embedded: no token embedding here).

``scan=True`` (plain JAX and linen): the layers' parameters are stacked with a leading layer
axis and the blocks run in ``jax.lax.scan`` (linen: ``nn.scan``), so the traced program holds
one block that a probe sees once per iteration; :func:`stack_layers` / :func:`unstack_layers`
convert the plain JAX parameters between the two forms.

Initialization: plain JAX draws every matrix LeCun normal (truncated, variance 1/fan_in, as
linen's ``nn.Dense``), biases zero; the frameworks keep their defaults (linen, nnx: the same
distribution; Equinox: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

FRAMEWORKS = ("jax", "linen", "nnx", "equinox")
EPS = 1e-5


def make_model(framework: str = "jax", **options):
    """``make_<framework>(**options)``: ``(fn, params, x)`` for ``"jax"``, else ``(model, x)``."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}; got {framework!r}")
    return globals()[f"make_{framework}"](**options)


def _input(key, batch: int, seq: int, d_model: int):
    return jax.random.normal(key, (batch, seq, d_model))


def attention(q, k, v, heads: int):
    """Multi-head attention of ``q, k, v`` ``[..., seq, d_model]`` (leading axes batched):
    ``softmax(q_h . k_h^T / sqrt(d_head)) . v_h`` per head, heads concatenated back."""
    *lead, seq, d = q.shape
    split = lambda t: t.reshape(*lead, seq, heads, d // heads)  # noqa: E731
    scores = jnp.einsum("...qhd,...khd->...hqk", split(q), split(k)) / math.sqrt(d // heads)
    weights = jax.nn.softmax(scores, axis=-1)
    return jnp.einsum("...hqk,...khd->...qhd", weights, split(v)).reshape(*lead, seq, d)


# -- plain JAX --------------------------------------------------------------------------------

def _expand(v, ndim: int):
    """A per-feature vector shaped to broadcast against ``[..., features]`` of rank ``ndim``."""
    return v.reshape((1,) * (ndim - 1) + (-1,))


def layer_norm(x, p):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    scale, bias = _expand(p["scale"], x.ndim), _expand(p["bias"], x.ndim)
    return (x - mean) * jax.lax.rsqrt(var + EPS) * scale + bias


def block(p, h, heads: int):
    """One pre-LN block on ``h`` ``[batch, seq, d_model]``."""
    a = layer_norm(h, p["ln1"])
    h = h + attention(a @ p["query"], a @ p["key"], a @ p["value"], heads) @ p["out"]
    m = layer_norm(h, p["ln2"])
    m = jax.nn.gelu(m @ p["fc1"]["kernel"] + _expand(p["fc1"]["bias"], m.ndim), approximate=False)
    return h + m @ p["fc2"]["kernel"] + _expand(p["fc2"]["bias"], h.ndim)


def forward(params, x, heads: int = 4):
    """The stack: ``params["layers"]`` a list of blocks' parameters (unrolled) or one pytree
    with a leading layer axis (run in ``jax.lax.scan``)."""
    layers = params["layers"]
    if isinstance(layers, (list, tuple)):
        h = x
        for p in layers:
            h = block(p, h, heads)
    else:
        h, _ = jax.lax.scan(lambda h, p: (block(p, h, heads), None), x, layers)
    return layer_norm(h, params["ln_f"])


def stack_layers(params):
    """Unrolled parameters (``"layers"`` a list) -> scanned (one pytree, leading layer axis)."""
    return {**params, "layers": jax.tree.map(lambda *a: jnp.stack(a), *params["layers"])}


def unstack_layers(params):
    """Scanned parameters -> unrolled (``"layers"`` a list of per-block pytrees)."""
    n = jax.tree.leaves(params["layers"])[0].shape[0]
    return {**params, "layers": [jax.tree.map(lambda a: a[i], params["layers"]) for i in range(n)]}


def make_jax(layers: int = 2, d_model: int = 32, heads: int = 4, seq: int = 16, batch: int = 8,
             scan: bool = False, seed: int = 0):
    """``(fn, params, x)``: ``params = {"layers": ..., "ln_f"}``, a block's parameters
    ``{"ln1", "query", "key", "value", "out", "ln2", "fc1", "fc2"}``; ``scan=True`` stacks them
    (the same numbers as ``scan=False`` with the same seed)."""
    k_params, k_x = jax.random.split(jax.random.key(seed))
    init = jax.nn.initializers.lecun_normal()

    def ln():
        return {"scale": jnp.ones((d_model,)), "bias": jnp.zeros((d_model,))}

    def one(key):
        kq, kk, kv, ko, k1, k2 = jax.random.split(key, 6)
        return {"ln1": ln(), "query": init(kq, (d_model, d_model)),
                "key": init(kk, (d_model, d_model)), "value": init(kv, (d_model, d_model)),
                "out": init(ko, (d_model, d_model)), "ln2": ln(),
                "fc1": {"kernel": init(k1, (d_model, 4 * d_model)),
                        "bias": jnp.zeros((4 * d_model,))},
                "fc2": {"kernel": init(k2, (4 * d_model, d_model)), "bias": jnp.zeros((d_model,))}}

    params = {"layers": [one(k) for k in jax.random.split(k_params, layers)], "ln_f": ln()}
    if scan:
        params = stack_layers(params)

    def transformer(params, x):
        return forward(params, x, heads)

    return transformer, params, _input(k_x, batch, seq, d_model)


# -- Flax linen -------------------------------------------------------------------------------

@functools.cache
def _linen_classes():
    import flax.linen as nn

    class Block(nn.Module):
        d_model: int
        heads: int

        @nn.compact
        def __call__(self, h):
            dense = functools.partial(nn.Dense, self.d_model, use_bias=False)
            a = nn.LayerNorm(epsilon=EPS, name="ln1")(h)
            q, k, v = (dense(name=n)(a) for n in ("query", "key", "value"))
            h = h + dense(name="out")(attention(q, k, v, self.heads))
            m = nn.LayerNorm(epsilon=EPS, name="ln2")(h)
            m = nn.gelu(nn.Dense(4 * self.d_model, name="fc1")(m), approximate=False)
            return h + nn.Dense(self.d_model, name="fc2")(m)

    class ScanBody(nn.Module):
        """``Block`` as ``nn.scan`` wants it: ``(carry, x) -> (carry, y)``."""
        d_model: int
        heads: int

        @nn.compact
        def __call__(self, h, _):
            return Block(self.d_model, self.heads, name="block")(h), None

    class Transformer(nn.Module):
        layers: int
        d_model: int
        heads: int
        scan: bool = False

        @nn.compact
        def __call__(self, x):
            if self.scan:
                stack = nn.scan(ScanBody, variable_axes={"params": 0},
                                split_rngs={"params": True}, length=self.layers)
                x, _ = stack(self.d_model, self.heads, name="layers")(x, None)
            else:
                for i in range(self.layers):
                    x = Block(self.d_model, self.heads, name=f"layers_{i}")(x)
            return nn.LayerNorm(epsilon=EPS, name="ln_f")(x)

    return Transformer


def make_linen(layers: int = 2, d_model: int = 32, heads: int = 4, seq: int = 16,
               batch: int = 8, scan: bool = False, seed: int = 0):
    """``((module, variables), x)``. Unrolled, block ``i``'s parameters are
    ``params["layers_{i}"]``; with ``scan=True`` they are ``params["layers"]["block"]`` with a
    leading layer axis."""
    k_params, k_x = jax.random.split(jax.random.key(seed))
    x = _input(k_x, batch, seq, d_model)
    module = _linen_classes()(layers, d_model, heads, scan)
    return (module, module.init(k_params, x)), x


# -- Flax nnx ---------------------------------------------------------------------------------

@functools.cache
def _nnx_classes():
    from flax import nnx

    class Block(nnx.Module):
        def __init__(self, d_model, heads, rngs):
            self.heads = heads
            self.ln1 = nnx.LayerNorm(d_model, epsilon=EPS, rngs=rngs)
            self.query, self.key, self.value, self.out = (
                nnx.Linear(d_model, d_model, use_bias=False, rngs=rngs) for _ in range(4))
            self.ln2 = nnx.LayerNorm(d_model, epsilon=EPS, rngs=rngs)
            self.fc1 = nnx.Linear(d_model, 4 * d_model, rngs=rngs)
            self.fc2 = nnx.Linear(4 * d_model, d_model, rngs=rngs)

        def __call__(self, h):
            a = self.ln1(h)
            h = h + self.out(attention(self.query(a), self.key(a), self.value(a), self.heads))
            return h + self.fc2(nnx.gelu(self.fc1(self.ln2(h)), approximate=False))

    class Transformer(nnx.Module):
        def __init__(self, layers, d_model, heads, rngs):
            self.layers = nnx.List([Block(d_model, heads, rngs) for _ in range(layers)])
            self.ln_f = nnx.LayerNorm(d_model, epsilon=EPS, rngs=rngs)

        def __call__(self, x):
            for layer in self.layers:
                x = layer(x)
            return self.ln_f(x)

    return Transformer


def make_nnx(layers: int = 2, d_model: int = 32, heads: int = 4, seq: int = 16, batch: int = 8,
             seed: int = 0):
    """``(module, x)``."""
    from flax import nnx

    k_params, k_x = jax.random.split(jax.random.key(seed))
    model = _nnx_classes()(layers, d_model, heads, nnx.Rngs(params=k_params))
    return model, _input(k_x, batch, seq, d_model)


# -- Equinox ----------------------------------------------------------------------------------

@functools.cache
def _equinox_classes():
    import equinox as eqx

    def per_token(layer, h):
        return jax.vmap(layer)(h)

    class Block(eqx.Module):
        ln1: eqx.nn.LayerNorm
        query: eqx.nn.Linear
        key: eqx.nn.Linear
        value: eqx.nn.Linear
        out: eqx.nn.Linear
        ln2: eqx.nn.LayerNorm
        fc1: eqx.nn.Linear
        fc2: eqx.nn.Linear
        heads: int = eqx.field(static=True)

        def __init__(self, d_model, heads, key):
            kq, kk, kv, ko, k1, k2 = jax.random.split(key, 6)
            self.heads = heads
            self.ln1 = eqx.nn.LayerNorm(d_model, eps=EPS)
            self.query, self.key, self.value, self.out = (
                eqx.nn.Linear(d_model, d_model, use_bias=False, key=k) for k in (kq, kk, kv, ko))
            self.ln2 = eqx.nn.LayerNorm(d_model, eps=EPS)
            self.fc1 = eqx.nn.Linear(d_model, 4 * d_model, key=k1)
            self.fc2 = eqx.nn.Linear(4 * d_model, d_model, key=k2)

        def __call__(self, h):
            """One sequence ``[seq, d_model]``."""
            a = per_token(self.ln1, h)
            q, k, v = (per_token(m, a) for m in (self.query, self.key, self.value))
            h = h + per_token(self.out, attention(q, k, v, self.heads))
            m = jax.nn.gelu(per_token(self.fc1, per_token(self.ln2, h)), approximate=False)
            return h + per_token(self.fc2, m)

    class Transformer(eqx.Module):
        layers: list
        ln_f: eqx.nn.LayerNorm

        def __init__(self, layers, d_model, heads, key):
            self.layers = [Block(d_model, heads, k) for k in jax.random.split(key, layers)]
            self.ln_f = eqx.nn.LayerNorm(d_model, eps=EPS)

        def __call__(self, x):
            """One sequence ``[seq, d_model]`` (``adapt`` vmaps over the batch)."""
            for layer in self.layers:
                x = layer(x)
            return per_token(self.ln_f, x)

    return Transformer


def make_equinox(layers: int = 2, d_model: int = 32, heads: int = 4, seq: int = 16,
                 batch: int = 8, seed: int = 0):
    """``(module, x)``: a per-sample module taking one ``[seq, d_model]`` sequence."""
    k_params, k_x = jax.random.split(jax.random.key(seed))
    model = _equinox_classes()(layers, d_model, heads, k_params)
    return model, _input(k_x, batch, seq, d_model)
