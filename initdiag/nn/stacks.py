"""Fully connected stacks: their specification, their parameters, one layer's forward map.

Layer ``l = 1..L`` of a stack maps ``x^{l-1}`` (``[batch, n_{l-1}]``) to ``x^l``::

    h^l = x^{l-1} @ W^l + b^l                  # W^l: [n_{l-1}, n_l] (jax's [fan_in, fan_out])
    a^l = phi(norm(h^l))                        # norm: none, batchnorm or layernorm
    x^l = a^l                                   # plain stack
    x^l = x^{l-1} + alpha * a^l                 # residual stack (needs n_{l-1} == n_l)

The activation is applied on every layer, the last included. ``batchnorm`` standardises each
unit over the batch (training-mode statistics, no learned scale or shift, eps 1e-5);
``layernorm`` standardises each sample over its units (same eps, no affine).

Weights of layer ``l`` are drawn from ``fold_in(key_w, l)``, biases from ``fold_in(key_b, l)``,
so layer ``l`` gets the same weights whatever the depth of the stack, and every initializer sees
the same keys for the same seed (common random numbers make initializers comparable).
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from initdiag import config
from initdiag.base import PRNGKey, check_bool, check_float, check_int, check_one_of
from initdiag.nn import prng
from initdiag.nn.activations import Activation, activation as resolve_activation
from initdiag.nn.initializers import AnyInitializer, initializer as resolve_initializer
from initdiag.nn.initializers import INDEXED_FORMS, sample_form, sample_indexed, weight_form

NORMS = (None, *config.NORMS)
INPUTS = config.INPUTS
NORM_EPS = 1e-5

Norm = Literal[None, "batchnorm", "layernorm"]


@dataclasses.dataclass(frozen=True)
class Segment:
    """A run of consecutive layers with one weight shape: layers ``start+1 .. start+count``."""

    start: int
    count: int
    fan_in: int
    fan_out: int


@dataclasses.dataclass(frozen=True)
class StackSpec:
    """Everything that defines a stack except its random draw.

    Attributes:
      depth: number of layers L >= 1.
      widths: output width of each layer, length L.
      input_width: width of the input x^0.
      activation: phi.
      init: weight initializer.
      bias_init: bias initializer (ignored when ``use_bias`` is False).
      use_bias: whether layers have a bias.
      norm: None, "batchnorm" or "layernorm", applied to h before phi.
      residual: None for a plain stack, else alpha in x <- x + alpha * phi(norm(h)).
    """

    depth: int
    widths: tuple[int, ...]
    input_width: int
    activation: Activation
    init: AnyInitializer
    bias_init: AnyInitializer
    use_bias: bool = True
    norm: Norm = None
    residual: float | None = None

    @property
    def uniform_width(self) -> int | None:
        """The common width when every layer and the input have it, else None."""
        w = set(self.widths) | {self.input_width}
        return self.input_width if len(w) == 1 else None

    def layer_shapes(self) -> list[tuple[int, int]]:
        fans_in = (self.input_width,) + self.widths[:-1]
        return list(zip(fans_in, self.widths))

    def segments(self) -> list[Segment]:
        """Consecutive layers grouped by weight shape; each group is one ``lax.scan``."""
        out: list[Segment] = []
        for l, shape in enumerate(self.layer_shapes()):
            if out and (out[-1].fan_in, out[-1].fan_out) == shape:
                last = out[-1]
                out[-1] = dataclasses.replace(last, count=last.count + 1)
            else:
                out.append(Segment(l, 1, *shape))
        return out

    def static_config(self) -> tuple:
        """What the compiled forward/backward depends on besides array shapes."""
        return (self.activation, self.norm, self.residual, self.use_bias)


def make_spec(*, activation: Any = "relu", init: Any = "he_normal", depth: int = 10,
              width: int | Sequence[int] = 256, input_width: int | None = None,
              bias_init: Any = "zeros", use_bias: bool = True, norm: Norm = None,
              residual: float | None = None) -> StackSpec:
    """Validate user options and build a :class:`StackSpec`.

    ``width`` is one width for every layer or a list of L widths; ``input_width`` defaults to the
    first layer's width.

    Raises:
      ValueError: naming the bad option and the valid choices.
    """
    depth = check_int("depth", depth)
    if isinstance(width, (str, bytes)) or not (isinstance(width, numbers.Real)
                                               or hasattr(width, "__iter__")):
        raise ValueError(f"width must be an integer >= 1 or a list of {depth} of them; "
                         f"got {width!r}")
    if isinstance(width, numbers.Real):
        widths = (check_int("width", width),) * depth
    else:
        widths = tuple(check_int(f"width[{i}]", w) for i, w in enumerate(width))
        if len(widths) != depth:
            raise ValueError(f"width lists {len(widths)} layer widths but depth is {depth}")
    input_width = widths[0] if input_width is None else check_int("input_width", input_width)
    if isinstance(norm, str) and norm.lower() == "none":
        norm = None
    check_one_of("norm", norm, NORMS)
    if residual is not None:
        residual = check_float("residual", residual)
        shapes = [(i, o) for i, o in zip((input_width,) + widths[:-1], widths) if i != o]
        if shapes:
            raise ValueError(f"a residual stack needs equal input and output width on every layer; "
                             f"got layer shapes {shapes[:3]}")
    use_bias = check_bool("use_bias", use_bias)
    return StackSpec(depth=depth, widths=widths, input_width=input_width,
                     activation=resolve_activation(activation), init=resolve_initializer(init),
                     bias_init=resolve_initializer(bias_init), use_bias=use_bias, norm=norm,
                     residual=residual)


def split_seed(seed: int | PRNGKey) -> dict[str, PRNGKey]:
    """The named keys a probe uses, from an integer seed or a jax key (:func:`initdiag.nn.prng.as_key`:
    jax's threefry with its hash compiled faster on CPU, the same draws as ``jax.random.key``)."""
    k_in, k_w, k_b, k_out = jax.random.split(prng.as_key(seed), 4)
    return {"input": k_in, "weights": k_w, "biases": k_b, "readout": k_out}


def init_segment(key_w: PRNGKey, key_b: PRNGKey, seg: Segment, init: AnyInitializer,
                 bias_init: AnyInitializer, use_bias: bool, dtype: Any = jnp.float32):
    """Stacked weights ``[count, fan_in, fan_out]`` and biases ``[count, fan_out]`` of a segment.

    Named initializers (and LSUV's start) are drawn by one compiled function per segment shape
    and bias initializer that selects the form at run time
    (:func:`initdiag.nn.initializers.sample_indexed`); callables are compiled per object.
    """
    form, value = weight_form(init, seg.fan_in, seg.fan_out)
    if form in INDEXED_FORMS:
        index, form = jnp.int32(INDEXED_FORMS.index(form)), None
    else:
        index = jnp.int32(-1)
    return _init_segment_jit(key_w, key_b, seg, form, index, jnp.float32(value), bias_init,
                             use_bias, dtype)


def _init_segment(key_w, key_b, seg: Segment, form: tuple | None, index, value,
                  bias_init: AnyInitializer, use_bias: bool, dtype: Any):
    layers = jnp.arange(seg.start, seg.start + seg.count)
    shape = (seg.fan_in, seg.fan_out)

    def one(l):
        key = jax.random.fold_in(key_w, l)
        if form is None:
            w = sample_indexed(index, value, key, shape, dtype)
        else:
            w = sample_form(form, value, key, shape, dtype)
        if use_bias:
            b = bias_init.bias(jax.random.fold_in(key_b, l), seg.fan_in, seg.fan_out, dtype)
        else:
            b = jnp.zeros((seg.fan_out,), dtype)
        return w.astype(dtype), b.astype(dtype)

    # One layer at a time: the drawing's transient memory is one layer's, and measured faster
    # than drawing 16 at once (0.5x the time at width 512). jaxlib's batched QR (orthogonal)
    # also deadlocked inside a batched loop on a 2-core machine.
    return jax.lax.map(one, layers)


def init_stack(key: int | PRNGKey, spec: StackSpec, dtype: Any = jnp.float32):
    """Weights and biases of every layer, as one ``(W [n, fi, fo], b [n, fo])`` pair per segment.

    The drawing is compiled per weight shape and bias initializer: every named weight initializer
    shares it (:func:`init_segment`). For LSUV these are its start, before the rescaling.
    """
    keys = split_seed(key)
    return tuple(init_segment(keys["weights"], keys["biases"], seg, spec.init, spec.bias_init,
                              spec.use_bias, dtype)
                 for seg in spec.segments())


_init_segment_jit = jax.jit(_init_segment, static_argnums=(2, 3, 6, 7, 8))


def draw_key(seed: Any, spec: StackSpec) -> tuple | None:
    """What :func:`init_stack`'s weights for ``seed`` depend on: the seed, the initializers, the
    use of biases and the layer shapes (not the activation, norm or residual). Equal keys give
    the same weights, bit for bit, so probes that share one can share one draw. None for a seed
    that is a key object (not compared)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        return None
    return (int(seed), spec.init, spec.bias_init, spec.use_bias, tuple(spec.layer_shapes()))


def make_input(key: PRNGKey, batch: int, width: int, kind: str = "normal", dtype: Any = jnp.float32):
    """The input batch x^0, ``[batch, width]``: ``normal`` is N(0, 1) entries; ``uniform`` is
    U(-sqrt(3), sqrt(3)) entries (also unit variance)."""
    check_one_of("input", kind, INPUTS)
    if kind == "normal":
        return jax.random.normal(key, (batch, width), dtype)
    s = float(np.sqrt(3.0))
    return jax.random.uniform(key, (batch, width), dtype, minval=-s, maxval=s)


def normalize(h: jax.Array, norm: Norm) -> jax.Array:
    """batchnorm: per unit over the batch axis; layernorm: per sample over units; no affine."""
    if norm is None:
        return h
    axis = 0 if norm == "batchnorm" else -1
    mean = jnp.mean(h, axis=axis, keepdims=True)
    var = jnp.var(h, axis=axis, keepdims=True)
    return (h - mean) * jax.lax.rsqrt(var + NORM_EPS)


def branch(h: jax.Array, act: Activation, norm: Norm) -> jax.Array:
    """``a = phi(norm(h))``: the part of a layer after the affine map."""
    return act(normalize(h, norm))


def layer_output(x_prev: jax.Array, a: jax.Array, residual: float | None) -> jax.Array:
    return a if residual is None else x_prev + residual * a


def apply_stack(params, x: jax.Array, spec: StackSpec, perturb=None) -> jax.Array:
    """The stack's output x^L for input ``x`` (a ``lax.scan`` per segment of equal fans; a
    layer that changes the width, whose output has another shape than its input, is applied
    directly).

    ``perturb``: None, or one array ``[count, batch, fan_out]`` per segment added to the
    pre-activations, ``h^l = x^{l-1} W^l + b^l + delta^l``. With zeros it changes no value;
    the gradient of a loss with respect to it is ``dL/dh^l`` (how the training loop measures
    ``grad_preact_rms``, :mod:`initdiag.train.loop`).
    """
    def step(x, wbd):
        h = x @ wbd[0] + wbd[1][None, :]
        if len(wbd) == 3:
            h = h + wbd[2]
        return layer_output(x, branch(h, spec.activation, spec.norm), spec.residual), None

    for k, (w, b) in enumerate(params):
        xs = (w, b) if perturb is None else (w, b, perturb[k])
        if w.shape[1] == w.shape[2]:
            x, _ = jax.lax.scan(step, x, xs)
        else:
            for i in range(w.shape[0]):
                x, _ = step(x, tuple(a[i] for a in xs))
    return x
