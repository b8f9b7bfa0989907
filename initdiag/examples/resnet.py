"""A small ResNet (convolutions, batch normalization, residual blocks) in plain JAX, Flax linen,
Flax nnx and Equinox.

The network: a stem (3x3 convolution to ``channels``, batchnorm, relu), then ``blocks`` residual
blocks ``h <- relu(h + bn(conv(relu(bn(conv(h))))))`` at constant width and resolution, then a
global average pool and a dense readout to ``classes`` logits. Convolutions are 3x3, stride 1,
"SAME" (zero) padding, without bias (the batchnorm's shift follows). The input is a standard
normal batch of ``batch`` images ``size x size`` with ``in_channels`` channels: ``[N, H, W, C]``
for JAX, linen and nnx, ``[N, C, H, W]`` for Equinox (whose layers take one ``[C, H, W]``
sample).

Batch normalization is in training mode: it normalizes by the mean and (biased) variance of the
batch over ``N, H, W``, with epsilon 1e-5, then scales and shifts per channel (scale 1, shift 0
at initialization). The plain JAX version keeps no running averages at all; the frameworks'
layers also update theirs when the model is called (:func:`initdiag.model.frameworks.adapt`
holds those fixed and drops the update).

Initialization: plain JAX draws convolution kernels He normal (truncated, variance 2/fan_in,
fan_in = 9 * in channels) and the readout LeCun normal; the frameworks keep their defaults
(linen and nnx: LeCun normal; Equinox: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as PyTorch).
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


def _input(key, batch: int, size: int, in_channels: int, channels_first: bool = False):
    shape = (batch, in_channels, size, size) if channels_first else (batch, size, size, in_channels)
    return jax.random.normal(key, shape)


# -- plain JAX --------------------------------------------------------------------------------

def conv(x, kernel):
    """3x3 "SAME" convolution, ``x`` ``[N, H, W, C_in]``, ``kernel`` ``[3, 3, C_in, C_out]``."""
    return jax.lax.conv_general_dilated(x, kernel, window_strides=(1, 1), padding="SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def batchnorm(x, scale, shift):
    """Training-mode batch normalization over ``N, H, W`` (biased variance, epsilon 1e-5)."""
    mean = jnp.mean(x, axis=(0, 1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2), keepdims=True)
    per_channel = (1, 1, 1, -1)
    normalized = (x - mean) * jax.lax.rsqrt(var + EPS)
    return normalized * scale.reshape(per_channel) + shift.reshape(per_channel)


def forward(params, x):
    """The ResNet on ``x`` ``[N, H, W, C]``; ``params`` as :func:`make_jax` draws them."""
    def conv_bn(p, h):
        return batchnorm(conv(h, p["kernel"]), p["scale"], p["shift"])

    h = jax.nn.relu(conv_bn(params["stem"], x))
    for block in params["blocks"]:
        r = jax.nn.relu(conv_bn(block["conv1"], h))
        h = jax.nn.relu(h + conv_bn(block["conv2"], r))
    pooled = jnp.mean(h, axis=(1, 2))
    return pooled @ params["head"]["kernel"] + params["head"]["bias"][None, :]


def make_jax(blocks: int = 3, channels: int = 16, size: int = 8, batch: int = 16,
             in_channels: int = 3, classes: int = 10, seed: int = 0):
    """``(fn, params, x)``: ``params = {"stem", "blocks": [{"conv1", "conv2"}, ...], "head"}``,
    each convolution ``{"kernel": [3, 3, in, out], "scale": [out], "shift": [out]}``."""
    k_params, k_x = jax.random.split(jax.random.key(seed))
    keys = iter(jax.random.split(k_params, 2 * blocks + 2))

    def he_normal(key, shape):
        # jax.nn.initializers.he_normal(), drawn flat: XLA compiles a draw of rank >= 4 slowly
        # (seconds on a CPU), a flat one quickly; a truncated normal on [-2, 2] has standard
        # deviation 0.8796..., divided out as jax does
        std = (2 / (shape[0] * shape[1] * shape[2])) ** 0.5 / 0.87962566103423978
        return std * jax.random.truncated_normal(key, -2, 2, (math.prod(shape),)).reshape(shape)

    def conv_bn(n_in):
        return {"kernel": he_normal(next(keys), (3, 3, n_in, channels)),
                "scale": jnp.ones((channels,)), "shift": jnp.zeros((channels,))}

    params = {
        "stem": conv_bn(in_channels),
        "blocks": [{"conv1": conv_bn(channels), "conv2": conv_bn(channels)} for _ in range(blocks)],
        "head": {"kernel": jax.nn.initializers.lecun_normal()(next(keys), (channels, classes)),
                 "bias": jnp.zeros((classes,))},
    }
    return forward, params, _input(k_x, batch, size, in_channels)


# -- Flax linen -------------------------------------------------------------------------------

@functools.cache
def _linen_class():
    import flax.linen as nn

    class ResNet(nn.Module):
        blocks: int
        channels: int
        classes: int

        @nn.compact
        def __call__(self, x, train: bool = True):
            def conv_bn(h):
                h = nn.Conv(self.channels, (3, 3), padding="SAME", use_bias=False)(h)
                return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=EPS)(h)

            h = nn.relu(conv_bn(x))
            for _ in range(self.blocks):
                h = nn.relu(h + conv_bn(nn.relu(conv_bn(h))))
            return nn.Dense(self.classes)(jnp.mean(h, axis=(1, 2)))

    return ResNet


def make_linen(blocks: int = 3, channels: int = 16, size: int = 8, batch: int = 16,
               in_channels: int = 3, classes: int = 10, seed: int = 0):
    """``((module, variables), x)``; variables hold ``params`` and ``batch_stats``. The call
    takes ``train`` (default True: batch statistics); ``train=False`` uses the running ones."""
    k_params, k_x = jax.random.split(jax.random.key(seed))
    x = _input(k_x, batch, size, in_channels)
    module = _linen_class()(blocks, channels, classes)
    return (module, module.init(k_params, x)), x


# -- Flax nnx ---------------------------------------------------------------------------------

@functools.cache
def _nnx_classes():
    from flax import nnx

    class ConvBN(nnx.Module):
        def __init__(self, n_in, n_out, rngs):
            self.conv = nnx.Conv(n_in, n_out, (3, 3), padding="SAME", use_bias=False, rngs=rngs)
            self.bn = nnx.BatchNorm(n_out, momentum=0.9, epsilon=EPS, rngs=rngs)

        def __call__(self, x):
            return self.bn(self.conv(x))

    class Block(nnx.Module):
        def __init__(self, channels, rngs):
            self.conv1 = ConvBN(channels, channels, rngs)
            self.conv2 = ConvBN(channels, channels, rngs)

        def __call__(self, h):
            return nnx.relu(h + self.conv2(nnx.relu(self.conv1(h))))

    class ResNet(nnx.Module):
        def __init__(self, blocks, channels, in_channels, classes, rngs):
            self.stem = ConvBN(in_channels, channels, rngs)
            self.blocks = nnx.List([Block(channels, rngs) for _ in range(blocks)])
            self.head = nnx.Linear(channels, classes, rngs=rngs)

        def __call__(self, x):
            h = nnx.relu(self.stem(x))
            for block in self.blocks:
                h = block(h)
            return self.head(jnp.mean(h, axis=(1, 2)))

    return ResNet


def make_nnx(blocks: int = 3, channels: int = 16, size: int = 8, batch: int = 16,
             in_channels: int = 3, classes: int = 10, seed: int = 0):
    """``(module, x)``; ``nnx.BatchNorm`` in training mode (its default): calling the module
    itself updates its running statistics (``adapt``'s fn does not)."""
    from flax import nnx

    k_params, k_x = jax.random.split(jax.random.key(seed))
    model = _nnx_classes()(blocks, channels, in_channels, classes, nnx.Rngs(params=k_params))
    return model, _input(k_x, batch, size, in_channels)


# -- Equinox ----------------------------------------------------------------------------------

@functools.cache
def _equinox_class():
    import equinox as eqx

    class ConvBN(eqx.Module):
        conv: eqx.nn.Conv2d
        bn: eqx.nn.BatchNorm

        def __init__(self, n_in, n_out, key):
            self.conv = eqx.nn.Conv2d(n_in, n_out, 3, padding=1, use_bias=False, key=key)
            self.bn = eqx.nn.BatchNorm(n_out, axis_name="batch", eps=EPS, momentum=0.9,
                                       mode="batch")

        def __call__(self, x, state):
            return self.bn(self.conv(x), state)

    class ResNet(eqx.Module):
        stem: ConvBN
        blocks: list
        head: eqx.nn.Linear

        def __init__(self, blocks, channels, in_channels, classes, key):
            keys = jax.random.split(key, 2 * blocks + 2)
            self.stem = ConvBN(in_channels, channels, keys[0])
            self.blocks = [(ConvBN(channels, channels, keys[2 * i + 1]),
                            ConvBN(channels, channels, keys[2 * i + 2])) for i in range(blocks)]
            self.head = eqx.nn.Linear(channels, classes, key=keys[-1])

        def __call__(self, x, state):
            """One sample ``[C, H, W]``; run under ``jax.vmap(..., axis_name="batch")``."""
            h, state = self.stem(x, state)
            h = jax.nn.relu(h)
            for conv1, conv2 in self.blocks:
                r, state = conv1(h, state)
                r, state = conv2(jax.nn.relu(r), state)
                h = jax.nn.relu(h + r)
            return self.head(jnp.mean(h, axis=(1, 2))), state

    return ResNet


def make_equinox(blocks: int = 3, channels: int = 16, size: int = 8, batch: int = 16,
                 in_channels: int = 3, classes: int = 10, seed: int = 0):
    """``((module, state), x)`` from ``eqx.nn.make_with_state``; x is ``[N, C, H, W]``. The
    module takes one sample and the state; ``eqx.nn.BatchNorm(mode="batch",
    axis_name="batch")`` needs ``jax.vmap(model, axis_name="batch", in_axes=(0, None),
    out_axes=(0, None))(x, state)``."""
    import equinox as eqx

    k_params, k_x = jax.random.split(jax.random.key(seed))
    model, state = eqx.nn.make_with_state(_equinox_class())(blocks, channels, in_channels,
                                                            classes, k_params)
    return (model, state), _input(k_x, batch, size, in_channels, channels_first=True)
