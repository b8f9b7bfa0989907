"""A fully connected network (MLP) in plain JAX, Flax linen, Flax nnx, Equinox and Haiku.

``depth`` dense layers: ``depth - 1`` hidden layers of ``width`` units, each followed by the
activation (``"tanh"`` or ``"relu"``), then a linear readout to ``out`` units. The input ``x`` is
``[batch, in_features]``, standard normal. Each framework keeps its own default initialization
(what a user of that framework gets), stated per function.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

ACTIVATIONS = {"tanh": jax.nn.tanh, "relu": jax.nn.relu}
FRAMEWORKS = ("jax", "linen", "nnx", "equinox", "haiku")


def make_model(framework: str = "jax", **options):
    """``make_<framework>(**options)``: ``(fn, params, x)`` for ``"jax"``, else ``(model, x)``."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}; got {framework!r}")
    return globals()[f"make_{framework}"](**options)


def _input(key, batch: int, in_features: int) -> jax.Array:
    return jax.random.normal(key, (batch, in_features))


def _sizes(depth: int, width: int, in_features: int, out: int) -> list[int]:
    return [in_features] + [width] * (depth - 1) + [out]


# -- plain JAX --------------------------------------------------------------------------------

def forward(params, x, activation: str = "tanh"):
    """The MLP: ``params`` a list of ``{"kernel": [fan_in, fan_out], "bias": [fan_out]}``."""
    act = ACTIVATIONS[activation]
    for i, layer in enumerate(params):
        x = x @ layer["kernel"] + layer["bias"][None, :]
        if i < len(params) - 1:
            x = act(x)
    return x


def make_jax(depth: int = 6, width: int = 64, batch: int = 64, in_features: int = 32,
             out: int = 10, activation: str = "tanh", seed: int = 0):
    """``(fn, params, x)``; kernels LeCun normal (truncated, variance 1/fan_in, as linen's
    ``nn.Dense``), biases zero."""
    k_params, k_x = jax.random.split(jax.random.key(seed))
    sizes = _sizes(depth, width, in_features, out)
    init = jax.nn.initializers.lecun_normal()
    params = [{"kernel": init(k, (n_in, n_out)), "bias": jnp.zeros((n_out,))}
              for k, n_in, n_out in zip(jax.random.split(k_params, depth), sizes[:-1], sizes[1:])]

    def mlp(params, x):
        return forward(params, x, activation)

    return mlp, params, _input(k_x, batch, in_features)


# -- Flax linen -------------------------------------------------------------------------------

@functools.cache
def _linen_class():
    import flax.linen as nn

    class MLP(nn.Module):
        features: tuple[int, ...]
        activation: str = "tanh"

        @nn.compact
        def __call__(self, x):
            for i, f in enumerate(self.features):
                x = nn.Dense(f)(x)
                if i < len(self.features) - 1:
                    x = ACTIVATIONS[self.activation](x)
            return x

    return MLP


def make_linen(depth: int = 6, width: int = 64, batch: int = 64, in_features: int = 32,
               out: int = 10, activation: str = "tanh", seed: int = 0):
    """``((module, variables), x)``; ``nn.Dense`` defaults (LeCun normal kernels, zero biases)."""
    k_params, k_x = jax.random.split(jax.random.key(seed))
    x = _input(k_x, batch, in_features)
    module = _linen_class()(tuple(_sizes(depth, width, in_features, out)[1:]), activation)
    return (module, module.init(k_params, x)), x


# -- Flax nnx ---------------------------------------------------------------------------------

@functools.cache
def _nnx_class():
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, sizes, activation, rngs):
            self.activation = activation
            self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs)
                                    for a, b in zip(sizes[:-1], sizes[1:])])

        def __call__(self, x):
            for i, layer in enumerate(self.layers):
                x = layer(x)
                if i < len(self.layers) - 1:
                    x = ACTIVATIONS[self.activation](x)
            return x

    return MLP


def make_nnx(depth: int = 6, width: int = 64, batch: int = 64, in_features: int = 32,
             out: int = 10, activation: str = "tanh", seed: int = 0):
    """``(module, x)``; ``nnx.Linear`` defaults (LeCun normal kernels, zero biases)."""
    from flax import nnx

    k_params, k_x = jax.random.split(jax.random.key(seed))
    model = _nnx_class()(_sizes(depth, width, in_features, out), activation,
                         nnx.Rngs(params=k_params))
    return model, _input(k_x, batch, in_features)


# -- Equinox ----------------------------------------------------------------------------------

def make_equinox(depth: int = 6, width: int = 64, batch: int = 64, in_features: int = 32,
                 out: int = 10, activation: str = "tanh", seed: int = 0):
    """``(eqx.nn.MLP, x)``: a per-sample module (``adapt`` vmaps it); ``eqx.nn.Linear``
    defaults (weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as PyTorch)."""
    import equinox as eqx

    k_params, k_x = jax.random.split(jax.random.key(seed))
    model = eqx.nn.MLP(in_features, out, width, depth - 1, activation=ACTIVATIONS[activation],
                       key=k_params)
    return model, _input(k_x, batch, in_features)


# -- Haiku ------------------------------------------------------------------------------------

def make_haiku(depth: int = 6, width: int = 64, batch: int = 64, in_features: int = 32,
               out: int = 10, activation: str = "tanh", seed: int = 0):
    """``((transformed, params), x)`` with ``hk.without_apply_rng(hk.transform(...))`` around
    ``hk.nets.MLP``; ``hk.Linear`` defaults (truncated normal kernels with standard deviation
    1/sqrt(fan_in) before truncation, zero biases)."""
    import haiku as hk

    k_params, k_x = jax.random.split(jax.random.key(seed))
    x = _input(k_x, batch, in_features)
    sizes = _sizes(depth, width, in_features, out)[1:]
    transformed = hk.without_apply_rng(hk.transform(
        lambda x: hk.nets.MLP(sizes, activation=ACTIVATIONS[activation])(x)))
    return (transformed, transformed.init(k_params, x)), x
