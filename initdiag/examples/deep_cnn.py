"""The picture of Xiao et al. 2018, "Dynamical isometry and a mean field theory of CNNs: how to
train 10,000-layer vanilla convolutional neural networks": a very deep vanilla tanh CNN.

No residual connections, no normalization: ``depth`` identical layers

    y^0 = x,    h^l = W^l * y^(l-1) + b^l,    y^l = tanh(h^l),    output y^depth

where ``*`` is a stride-1 convolution with a ``kernel_size`` kernel (per spatial axis) mapping
``channels`` to ``channels`` with circular (periodic) padding, as in the paper's theory, so every
layer keeps the input's shape ``[batch, *spatial, channels]`` (1-D ``spatial=(16,)`` by default,
or 2-D, e.g. ``(8, 8)``). The layers run inside ``jax.lax.scan`` over a stacked kernel
``params["kernel"]`` ``[depth, *kernel, channels, channels]`` (layout ``[*spatial, in, out]``)
and bias ``params["bias"]`` ``[depth, channels]``, so a probe sees one site per iteration.

Initialization at tanh's critical point (the edge of chaos, chi_1 = 1), with
``sigma_w^2 = WEIGHT_VAR = 1.0499116`` and ``sigma_b^2 = BIAS_VAR = 2e-5`` (``WEIGHT_VAR`` is
``initdiag.theory.edge_of_chaos("tanh", 2e-5)``; the pre-activation fixed point there is
``q* = 0.02587``):

- ``init="delta_orthogonal"``: ``jax.nn.initializers.delta_orthogonal(scale=sqrt(sigma_w^2))``
  per layer: every tap zero except the centre one, which is ``sqrt(sigma_w^2)`` times a
  uniformly random orthogonal ``[channels, channels]`` matrix (Xiao et al.'s Algorithm 2 for
  equal in/out channels). The convolution is then ``sqrt(sigma_w^2)`` times an orthogonal map,
  and the input-output Jacobian is close to isometric at any depth.
- ``init="gaussian"``: every entry i.i.d. N(0, sigma_w^2 / fan_in), fan_in =
  ``kernel_size^d * channels``: the same ``sigma_w^2`` (pre-activation variance
  ``q^l = sigma_w^2 E[tanh(h^(l-1))^2] + sigma_b^2`` for both), but no dynamical isometry: the
  Jacobian's singular values spread with depth.

Biases are N(0, sigma_b^2) in both. The input ``x`` is standard normal.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

WEIGHT_VAR = 1.0499116320749158
BIAS_VAR = 2e-5
INITS = ("delta_orthogonal", "gaussian")


def conv_circular(y, kernel):
    """Stride-1 convolution of ``y`` ``[batch, *spatial, in]`` with ``kernel`` ``[*k, in, out]``
    (odd ``k``), padded circularly so the spatial shape is kept."""
    d = kernel.ndim - 2
    pad = [(0, 0)] + [((k - 1) // 2, (k - 1) // 2) for k in kernel.shape[:d]] + [(0, 0)]
    spatial = "DHW"[-d:] if d <= 3 else None
    dims = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
    return jax.lax.conv_general_dilated(jnp.pad(y, pad, mode="wrap"), kernel, (1,) * d, "VALID",
                                        dimension_numbers=dims)


def forward(params, x):
    """``tanh`` CNN, one ``lax.scan`` step per layer over ``params["kernel"]``/``["bias"]``."""
    def layer(y, p):
        kernel, bias = p
        h = conv_circular(y, kernel) + bias.reshape((1,) * (y.ndim - 1) + (-1,))
        return jnp.tanh(h), None

    y, _ = jax.lax.scan(layer, x, (params["kernel"], params["bias"]))
    return y


def make_model(init: str = "delta_orthogonal", depth: int = 1000, channels: int = 16,
               spatial: tuple[int, ...] = (16,), kernel_size: int = 3, batch: int = 8,
               seed: int = 0, weight_var: float = WEIGHT_VAR, bias_var: float = BIAS_VAR):
    """``(fn, params, x)``: ``params = {"kernel": [depth, *k, C, C], "bias": [depth, C]}``, x
    ``[batch, *spatial, C]``; ``init`` one of :data:`INITS` (see the module docstring)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}; got {init!r}")
    if kernel_size % 2 != 1 or not 1 <= len(spatial) <= 3:
        raise ValueError(f"kernel_size must be odd and spatial 1-, 2- or 3-D; got "
                         f"{kernel_size}, {spatial}")
    k_w, k_b, k_x = jax.random.split(jax.random.key(seed), 3)
    shape = (kernel_size,) * len(spatial) + (channels, channels)
    if init == "delta_orthogonal":
        draw = jax.nn.initializers.delta_orthogonal(scale=math.sqrt(weight_var))
        kernel = jax.vmap(lambda k: draw(k, shape))(jax.random.split(k_w, depth))
    else:
        fan_in = kernel_size ** len(spatial) * channels
        # drawn flat (XLA compiles a draw of rank >= 4 slowly on a CPU), then shaped
        n = depth * math.prod(shape)
        kernel = math.sqrt(weight_var / fan_in) * jax.random.normal(k_w, (n,))
        kernel = kernel.reshape(depth, *shape)
    params = {"kernel": kernel,
              "bias": math.sqrt(bias_var) * jax.random.normal(k_b, (depth, channels))}
    return forward, params, jax.random.normal(k_x, (batch, *spatial, channels))
