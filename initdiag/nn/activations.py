"""Activation functions by name, each knowing whether and where it saturates and whether it can die.

Saturation is defined on the activation's output ``a = phi(h)`` and a threshold ``t`` (default
0.99): ``a`` is saturated when it lies within ``(1 - t) * bound_scale`` of a finite bound of
phi's range. Concretely, at t = 0.99:

=========  =================  ==========================================================
name       range of phi       saturated when
=========  =================  ==========================================================
tanh       (-1, 1)            \\|a\\| > 0.99
sigmoid    (0, 1)             a < 0.01 or a > 0.99
elu        (-alpha, inf)      a < -0.99 alpha
selu       (-l*alpha, inf)    a < -0.99 * 1.7581 (l*alpha, the lower bound of selu)
softplus   (0, inf)           a < 0.01
=========  =================  ==========================================================

At those points phi'(h) is below about 0.02 (tanh), 0.01 (sigmoid, softplus, elu): the unit
passes almost no gradient. linear, relu, leaky_relu, gelu and silu do not saturate (their
saturation statistic is NaN). relu can die: its output is exactly 0 for every h <= 0, so a unit
whose pre-activation is negative for every input passes no gradient at all; zero and dead
fractions are defined for activations with ``can_die`` (NaN otherwise). leaky_relu keeps a
slope on the negative side and so cannot die.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from initdiag.nn.spec import format_spec, parse_spec
from initdiag.base import check_bool, check_float, unknown_choice_message

# jax.nn.selu's constants: scale lambda and alpha; its output is bounded below by -lambda*alpha.
_SELU_LAMBDA = 1.0507009873554804934193349852946
_SELU_ALPHA = 1.6732632423543772848170429916717


def _identity(x: jax.Array) -> jax.Array:
    return x


def _leaky_relu(x: jax.Array, slope: float) -> jax.Array:
    return jax.nn.leaky_relu(x, negative_slope=slope)


def _elu(x: jax.Array, alpha: float) -> jax.Array:
    return jax.nn.elu(x, alpha=alpha)


def _gelu(x: jax.Array, approximate: bool) -> jax.Array:
    return jax.nn.gelu(x, approximate=approximate)


@dataclasses.dataclass(frozen=True)
class Activation:
    """An elementwise activation phi with what initdiag needs to know about it.

    Attributes:
      name: registry name, or ``custom:<qualname>`` for a user callable.
      fn: the function, called as ``fn(x, **params)``.
      params: sorted ``(key, value)`` parameter pairs.
      lower: finite lower bound of phi's range, or None.
      upper: finite upper bound of phi's range, or None.
      bound_scale: the scale ``s`` in the saturation rule (see the module docstring).
      can_die: True when phi is exactly 0 on a half-line with zero derivative (ReLU family).
      homogeneous: True when phi(c h) = c phi(h) for every c > 0 (linear, relu, leaky_relu):
        the engine then evaluates phi on rescaled pre-activations exactly, at any magnitude.
    """

    name: str
    fn: Callable[..., jax.Array]
    params: tuple[tuple[str, Any], ...] = ()
    lower: float | None = None
    upper: float | None = None
    bound_scale: float = 1.0
    can_die: bool = False
    homogeneous: bool = False
    defaults: tuple[tuple[str, Any], ...] = dataclasses.field(default=(), compare=False, repr=False)

    @property
    def saturates(self) -> bool:
        return self.lower is not None or self.upper is not None

    @property
    def label(self) -> str:
        return format_spec(self.name, dict(self.params), dict(self.defaults))

    def __str__(self) -> str:
        return self.label

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fn(x, **dict(self.params))

    def taylor0(self) -> tuple[float, float, float]:
        """``(phi(0), phi'(0-), phi'(0+))`` as Python floats: the value at 0 and the one-sided
        slopes (taken at -+2**-100, so a kink at 0 -- selu, elu(alpha != 1), a user relu -- gets
        both sides right). Evaluated eagerly, also inside a jit trace."""
        with jax.ensure_compile_time_eval():
            one, tiny = jnp.float32(1.0), jnp.float32(2.0**-100)
            value = self(jnp.float32(0.0))
            _, left = jax.jvp(self, (-tiny,), (one,))
            _, right = jax.jvp(self, (tiny,), (one,))
            return float(value), float(left), float(right)

    def saturated(self, a: jax.Array, threshold: float = 0.99) -> jax.Array:
        """Boolean mask of outputs ``a`` in the saturated range (all False if phi does not saturate)."""
        margin = (1.0 - threshold) * self.bound_scale
        mask = jnp.zeros(a.shape, bool)
        if self.lower is not None:
            mask = mask | (a < self.lower + margin)
        if self.upper is not None:
            mask = mask | (a > self.upper - margin)
        return mask

    def saturation_rule(self, threshold: float = 0.99) -> str:
        """The saturated range in words, for docs and reports."""
        if not self.saturates:
            return "does not saturate"
        margin = (1.0 - threshold) * self.bound_scale
        parts = []
        if self.lower is not None:
            parts.append(f"a < {self.lower + margin:.4g}")
        if self.upper is not None:
            parts.append(f"a > {self.upper - margin:.4g}")
        return " or ".join(parts)

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **dict(self.params)}


def _elu_activation(alpha: float) -> Activation:
    if alpha <= 0:
        raise ValueError(f"elu alpha must be > 0; got {alpha!r}")
    return Activation("elu", _elu, (("alpha", alpha),), lower=-alpha, bound_scale=alpha)


def _make(name: str, params: dict[str, Any]) -> Activation:
    p = params
    table: dict[str, Callable[[], Activation]] = {
        "linear": lambda: Activation("linear", _identity, homogeneous=True),
        "tanh": lambda: Activation("tanh", jnp.tanh, lower=-1.0, upper=1.0),
        "sigmoid": lambda: Activation("sigmoid", jax.nn.sigmoid, lower=0.0, upper=1.0),
        "relu": lambda: Activation("relu", jax.nn.relu, can_die=True, homogeneous=True),
        "leaky_relu": lambda: Activation("leaky_relu", _leaky_relu,
                                         (("slope", check_float("leaky_relu slope", p["slope"])),),
                                         homogeneous=True),
        "elu": lambda: _elu_activation(check_float("elu alpha", p["alpha"])),
        "selu": lambda: Activation("selu", jax.nn.selu, lower=-_SELU_LAMBDA * _SELU_ALPHA,
                                   bound_scale=_SELU_LAMBDA * _SELU_ALPHA),
        "gelu": lambda: Activation("gelu", _gelu, (("approximate",
                                                    check_bool("gelu approximate",
                                                               p["approximate"])),)),
        "silu": lambda: Activation("silu", jax.nn.silu),
        "softplus": lambda: Activation("softplus", jax.nn.softplus, lower=0.0),
    }
    return dataclasses.replace(table[name](), defaults=tuple(sorted(DEFAULTS[name].items())))


#: Parameters of each activation, with defaults. gelu is exact (erf) by default, as in PyTorch.
DEFAULTS: dict[str, dict[str, Any]] = {
    "linear": {}, "tanh": {}, "sigmoid": {}, "relu": {}, "leaky_relu": {"slope": 0.01},
    "elu": {"alpha": 1.0}, "selu": {}, "gelu": {"approximate": False}, "silu": {}, "softplus": {},
}
ALIASES = {"identity": "linear", "none": "linear", "swish": "silu", "logistic": "sigmoid"}


def names() -> tuple[str, ...]:
    return tuple(DEFAULTS) + tuple(ALIASES)


def activation(name: str | Activation | Callable[..., jax.Array], **params: Any) -> Activation:
    """Return the activation called ``name`` (``"leaky_relu(slope=0.2)"`` also parses).

    A user callable ``fn(x)`` becomes an activation that neither saturates nor dies; to declare
    bounds, build :class:`Activation` directly, e.g.
    ``Activation("hardtanh", f, lower=-1.0, upper=1.0)``.

    Raises:
      ValueError: unknown name (listing the valid ones and the closest) or parameter.
    """
    if isinstance(name, Activation):
        if params:
            raise ValueError(f"parameters {sorted(params)} given with an Activation object")
        return name
    if callable(name):
        if params:
            raise ValueError(f"parameters {sorted(params)} given with a callable activation")
        return Activation("custom:" + getattr(name, "__qualname__", type(name).__name__), name)
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name or a callable; got {type(name).__name__}")
    base, text_params = parse_spec(name)
    canonical = ALIASES.get(base.lower(), base.lower())
    if canonical not in DEFAULTS:
        raise ValueError(unknown_choice_message("activation", base, names()))
    merged = {**text_params, **params}
    for key in merged:
        if key not in DEFAULTS[canonical]:
            raise ValueError(f"activation {canonical!r} has no parameter {key!r}. "
                             f"Valid parameters: {', '.join(DEFAULTS[canonical]) or 'none'}.")
    return _make(canonical, {**DEFAULTS[canonical], **merged})
