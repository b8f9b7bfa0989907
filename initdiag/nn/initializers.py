"""Weight initializers by name, built on ``jax.nn.initializers``.

Every initializer here has jax's signature ``init(key, shape, dtype=float32)`` for a weight matrix
of shape ``[fan_in, fan_out]`` (jax's convention: ``h = x @ W``). Exact distributions, with
``n_in = fan_in``, ``n_out = fan_out`` and every one multiplied by ``gain`` (default 1):

==================  ===========================================================================
name (aliases)      distribution of each entry of W
==================  ===========================================================================
zeros               0
constant            ``value`` (default 0.1)
uniform             U(-scale, scale), default scale 0.05 (note: jax's own ``uniform`` is [0, s))
normal              N(0, std^2), default std 0.01
truncated_normal    N(0, std^2) truncated to [-2 std, 2 std] (std of the result: 0.8796 std)
glorot_uniform      U(-a, a), a = sqrt(6 / (n_in + n_out)); variance 2 / (n_in + n_out)
 (xavier_uniform)     (Glorot & Bengio 2010, "normalized initialization")
glorot_normal       truncated normal (at +-2 sigma, rescaled) with variance 2 / (n_in + n_out)
 (xavier_normal)      as in jax and Keras; PyTorch's xavier_normal_ is untruncated
he_uniform          U(-a, a), a = sqrt(6 / n_in); variance 2 / n_in (He et al. 2015)
 (kaiming_uniform)
he_normal           truncated normal with variance 2 / n_in (jax, Keras); PyTorch's
 (kaiming_normal)     kaiming_normal_ is untruncated: variance_scaling(2, "fan_in", "normal")
lecun_uniform       U(-a, a), a = sqrt(3 / n_in); variance 1 / n_in
lecun_normal        truncated normal with variance 1 / n_in
orthogonal          gain * Q, Q uniformly random with orthonormal columns (n_in >= n_out) or rows
torch_default       U(-1/sqrt(n_in), 1/sqrt(n_in)): what torch.nn.Linear does to its weight
 (pytorch_default)    (kaiming_uniform_ with a = sqrt(5)); variance 1 / (3 n_in)
variance_scaling    the general family: variance scale / n, n = n_in, n_out, (n_in + n_out)/2 or
                      sqrt(n_in n_out) for mode fan_in / fan_out / fan_avg / fan_geo_avg;
                      distribution "normal", "truncated_normal" (rescaled) or "uniform"
lsuv                data-dependent, not a distribution: orthogonal start, then each layer
                      rescaled on the probe's input until Var(h^l) is within tol of 1
                      (:mod:`initdiag.nn.lsuv`); a :class:`DataDependentInitializer`
==================  ===========================================================================

"Xavier" is used loosely in the literature (some texts mean N(0, 2/(n_in+n_out)), others
N(0, 1/n_in)); here it always means Glorot & Bengio's variance 2/(n_in + n_out).

Biases (``bias_init=``) take the same names. A bias vector has no fan of its own, so a
fan-dependent initializer uses the fans of its layer: ``he_normal`` as a bias draws with variance
``2 / n_in``; ``torch_default`` gives torch.nn.Linear's bias rule U(-1/sqrt(n_in), 1/sqrt(n_in));
``orthogonal`` gives ``gain`` times a uniformly random unit vector.

Each scheme is one record of :data:`initdiag.nn.schemes.SCHEMES` (its sampler, variance, compiled
form, bias rule, parameters and summary); this module turns names into initializer objects.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, ClassVar, Mapping

import jax
import jax.numpy as jnp

from initdiag.base import PRNGKey, Shape, unknown_choice_message
# re-exported: the records and their constants
from initdiag.nn.schemes import DISTRIBUTIONS as DISTRIBUTIONS, MODES as MODES
from initdiag.nn.schemes import SCHEMES as SCHEMES, TRUNCATED_NORMAL_STD as TRUNCATED_NORMAL_STD
from initdiag.nn.schemes import DataDependentScheme, Form as Form, Scheme
from initdiag.nn.spec import format_spec, parse_spec

ALIASES: dict[str, str] = {
    "zero": "zeros",
    "random_uniform": "uniform",
    "random_normal": "normal",
    "xavier_uniform": "glorot_uniform",
    "xavier_normal": "glorot_normal",
    "kaiming_uniform": "he_uniform",
    "kaiming_normal": "he_normal",
    "pytorch_default": "torch_default",
    "torch": "torch_default",
}

#: The initializers of the default sweep: every standard scheme at its default parameters.
STANDARD_INITIALIZERS = (
    "zeros", "uniform", "normal", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
    "lecun_uniform", "lecun_normal", "orthogonal", "torch_default",
)


def names() -> tuple[str, ...]:
    """Every registered name, canonical names first, then aliases."""
    return tuple(SCHEMES) + tuple(ALIASES)


class DataDependentError(ValueError):
    """A data-dependent initializer (LSUV) was used as a fixed distribution."""


@dataclasses.dataclass(frozen=True)
class _Registered:
    """A registry scheme with its parameters.

    Attributes:
      name: canonical registry name (aliases resolved).
      params: every parameter, defaults included, as sorted ``(key, value)`` pairs.
    """

    name: str
    params: tuple[tuple[str, Any], ...]

    @property
    def scheme(self) -> Scheme | DataDependentScheme:
        """The scheme's record (:mod:`initdiag.nn.schemes`)."""
        return SCHEMES[self.name]

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def gain(self) -> float:
        return float(self.kwargs["gain"])

    @property
    def label(self) -> str:
        """Compact text form that :func:`initializer` parses back, e.g. ``he_normal(gain=1.2)``."""
        return format_spec(self.name, self.kwargs, self.scheme.defaults)

    def __str__(self) -> str:
        return self.label

    def describe(self) -> str:
        """The exact distribution of each weight entry, in words and formula."""
        return f"{self.label}: {self.scheme.summary}"

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.kwargs}


@dataclasses.dataclass(frozen=True)
class NamedInitializer(_Registered):
    """A registry initializer with its parameters; callable like any jax initializer."""

    data_dependent: ClassVar[bool] = False

    @property
    def variance_scaling_params(self) -> tuple[float, str, str] | None:
        """``(scale, mode, distribution)`` when this is jax's
        ``variance_scaling(scale * gain^2, mode, distribution)`` (He, Glorot, LeCun,
        torch_default, variance_scaling), else None."""
        vs = self.scheme.variance_scaling
        return None if vs is None else vs(self.kwargs)

    def __call__(self, key: PRNGKey, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
        """Sample a weight array of ``shape`` (``[..., fan_in, fan_out]``)."""
        return self.scheme.sampler(self.kwargs)(key, shape, dtype)

    def bias(self, key: PRNGKey, fan_in: int, fan_out: int, dtype: Any = jnp.float32) -> jax.Array:
        """Sample a bias vector of length ``fan_out`` for a layer with the given fans."""
        return self.scheme.bias(self.kwargs, key, fan_in, fan_out, dtype)

    def weight_variance(self, fan_in: int, fan_out: int) -> float:
        """E[W_ij^2], the second moment of one entry (= its variance for zero-mean schemes)."""
        return self.scheme.variance(fan_in, fan_out, self.kwargs)

    def bias_variance(self, fan_in: int, fan_out: int) -> float:
        """E[b_j^2] of :meth:`bias` for a layer with these fans."""
        return self.scheme.bias_variance(fan_in, fan_out, self.kwargs)

    def compiled(self, fan_in: int, fan_out: int) -> tuple[Form, float]:
        """``(form, value)`` of a ``[fan_in, fan_out]`` weight (:func:`weight_form`)."""
        return self.scheme.form(fan_in, fan_out, self.kwargs)


@dataclasses.dataclass(frozen=True)
class DataDependentInitializer(_Registered):
    """A data-dependent scheme with its parameters (``lsuv``): weights drawn by :attr:`start`,
    then changed by :meth:`rescale` on the stack and its input. It has no fixed distribution:
    calling it as a ``(key, shape, dtype)`` initializer, asking its variance or using it for
    biases raises :class:`DataDependentError` saying what to use instead."""

    data_dependent: ClassVar[bool] = True
    variance_scaling_params: ClassVar[None] = None

    @property
    def start(self) -> NamedInitializer:
        """The initializer of the weights before the data-dependent step."""
        return initializer(self.scheme.base, **self.scheme.base_params(self.kwargs))

    def rescale(self, params: Any, x: Any, spec: Any) -> Any:
        """The step: the stack's ``params`` (drawn by :attr:`start`, as
        :func:`initdiag.nn.stacks.init_stack` does for ``spec.init = self``) changed on the input
        batch ``x`` ([batch, n_0]); ``spec`` is the stack (:class:`initdiag.nn.stacks.StackSpec`)."""
        return self.scheme.step_function()(params, x, spec)

    def _refuse(self, what: str) -> DataDependentError:
        step = self.scheme.step.replace(":", ".")
        return DataDependentError(
            f"initializer {self.label!r} is data-dependent: its weights are drawn by "
            f"{self.start.label}, then changed by {step} on a stack and its input, so {what}. "
            f"Use init={self.label!r} in initdiag.probe / initdiag.sweep / jacobian_spectrum, "
            f"or spec = make_spec(init={self.label!r}, ...) and "
            f"spec.init.rescale(init_stack(seed, spec), x, spec) (initdiag.nn.stacks)")

    def __call__(self, key: PRNGKey, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
        """Raises :class:`DataDependentError`: the weights depend on the stack and its input."""
        raise self._refuse("it is not a (key, shape, dtype) initializer")

    def bias(self, key: PRNGKey, fan_in: int, fan_out: int, dtype: Any = jnp.float32) -> jax.Array:
        """Raises :class:`DataDependentError`: LSUV rescales weights, not biases."""
        raise DataDependentError(f"{self.name} is a weight initializer (data-dependent); "
                                 "use another bias_init")

    def weight_variance(self, fan_in: int, fan_out: int) -> float:
        """Raises :class:`DataDependentError`: the variance is set from data, layer by layer."""
        raise self._refuse("it has no fixed weight variance")

    def bias_variance(self, fan_in: int, fan_out: int) -> float:
        """Raises :class:`DataDependentError`, as :meth:`bias`."""
        raise DataDependentError(f"{self.name} is a weight initializer (data-dependent); "
                                 "it has no bias variance")

    def compiled(self, fan_in: int, fan_out: int) -> tuple[Form, float]:
        """The form of :attr:`start`: what :func:`initdiag.nn.stacks.init_stack` draws."""
        return self.start.compiled(fan_in, fan_out)


@dataclasses.dataclass(frozen=True)
class CallableInitializer:
    """A user callable ``fn(key, shape, dtype)`` used as an initializer.

    As a bias initializer it is called with ``shape=(fan_out,)``.
    """

    fn: Callable[..., jax.Array]

    data_dependent: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return "custom:" + getattr(self.fn, "__qualname__", type(self.fn).__name__)

    label = name

    def __str__(self) -> str:
        return self.name

    def describe(self) -> str:
        return f"{self.name}: user-supplied callable"

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name}

    def __call__(self, key: PRNGKey, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
        return self.fn(key, tuple(shape), dtype)

    def bias(self, key: PRNGKey, fan_in: int, fan_out: int, dtype: Any = jnp.float32) -> jax.Array:
        del fan_in
        return self.fn(key, (fan_out,), dtype)

    def weight_variance(self, fan_in: int, fan_out: int) -> None:
        """Unknown for an arbitrary callable."""
        del fan_in, fan_out
        return None

    def bias_variance(self, fan_in: int, fan_out: int) -> None:
        del fan_in, fan_out
        return None

    def compiled(self, fan_in: int, fan_out: int) -> tuple[Form, float]:
        """A form of its own: the callable is compiled per object."""
        del fan_in, fan_out
        return Form("callable", lambda v, key, shape, dtype: self(key, shape, dtype), of=self), 0.0


AnyInitializer = NamedInitializer | DataDependentInitializer | CallableInitializer


def weight_form(init: AnyInitializer, fan_in: int, fan_out: int) -> tuple[Form, float]:
    """``(form, value)`` with ``sample_form(form, value, key, (fan_in, fan_out))`` drawing the
    same distribution as ``init``: the form is what a compiled drawing function depends on, the
    value a number passed at run time. So every initializer of the variance-scaling family with
    one distribution (He, Glorot, LeCun, torch_default, ...) shares one compiled function; a user
    callable is compiled per object. For LSUV it is the form of its orthogonal start."""
    return init.compiled(fan_in, fan_out)


#: The forms :func:`sample_indexed` selects among at run time: one compiled drawing function
#: serves every named initializer (user callables are compiled per object).
INDEXED_FORMS: tuple[Form, ...] = tuple(dict.fromkeys(
    form for scheme in SCHEMES.values() if not scheme.data_dependent for form in scheme.forms))


def sample_indexed(index: Any, value: Any, key: PRNGKey, shape: Shape,
                   dtype: Any = jnp.float32) -> jax.Array:
    """Draw from ``INDEXED_FORMS[index]`` with ``value``; both may be traced (``lax.switch``)."""
    branches = [functools.partial(sample_form, form, shape=shape, dtype=dtype)
                for form in INDEXED_FORMS]
    return jax.lax.switch(index, [lambda v, k, f=f: f(v, k) for f in branches], value, key)


def sample_form(form: Form, value: Any, key: PRNGKey, shape: Shape, dtype: Any = jnp.float32):
    """Draw from a :func:`weight_form`; ``value`` may be a traced scalar."""
    return form.draw(value, key, shape, dtype)


def _validate(name: str, params: dict[str, Any]) -> None:
    scheme = SCHEMES[name]
    defaults = scheme.defaults
    for key in params:
        if key not in defaults:
            raise ValueError(
                f"initializer {name!r} has no parameter {key!r}. "
                f"Valid parameters: {', '.join(defaults) or 'none'}.")
    for key, value in params.items():
        if isinstance(defaults[key], str):  # a choice (variance_scaling's mode): scheme.check
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"initializer {name!r}: {key}={value!r} must be a finite number.")
        if key in ("std", "scale") and value < 0:
            raise ValueError(f"initializer {name!r}: {key}={value!r} must be >= 0.")
    scheme.check(params)


def initializer(name: str | AnyInitializer | Callable[..., jax.Array], **params: Any) -> AnyInitializer:
    """Return the initializer called ``name`` with ``params`` (see the module docstring).

    Examples: ``initializer("normal", std=0.01)``, ``initializer("uniform", scale=0.05)``,
    ``initializer("constant", value=0.1)``, ``initializer("orthogonal", gain=1.0)``,
    ``initializer("he_normal", gain=1.2)``,
    ``initializer("variance_scaling", scale=2.0, mode="fan_in", distribution="normal")``.
    ``name`` may carry parameters as text, ``initializer("normal(std=0.1)")``; an initializer
    object is returned as it is; any other callable with jax's signature ``(key, shape, dtype)``
    is wrapped. ``initializer("lsuv")`` is a :class:`DataDependentInitializer`.

    Raises:
      ValueError: for an unknown name (listing the valid ones and the closest) or parameter.
    """
    if isinstance(name, (NamedInitializer, DataDependentInitializer, CallableInitializer)):
        if params:
            raise ValueError(f"parameters {sorted(params)} given with an initializer object {name}")
        return name
    if callable(name):
        if params:
            raise ValueError(f"parameters {sorted(params)} given with a callable initializer")
        return CallableInitializer(name)
    if not isinstance(name, str):
        raise TypeError(f"init must be a name, an initializer or a callable; got {type(name).__name__}")
    base, text_params = parse_spec(name)
    merged = {**text_params, **params}
    canonical = ALIASES.get(base.lower(), base.lower())
    if canonical not in SCHEMES:
        raise ValueError(unknown_choice_message("initializer", base, names()))
    _validate(canonical, merged)
    scheme = SCHEMES[canonical]
    full = {**scheme.defaults, **merged}
    full = {k: (float(v) if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in full.items()}
    cls = DataDependentInitializer if scheme.data_dependent else NamedInitializer
    return cls(canonical, tuple(sorted(full.items())))


def from_config(config: Mapping[str, Any] | str) -> AnyInitializer | str:
    """Rebuild an initializer from :meth:`NamedInitializer.to_config`; custom ones stay names."""
    if isinstance(config, str):
        return config if config.startswith("custom:") else initializer(config)
    name = config["name"]
    if name.startswith("custom:"):
        return name
    return initializer(name, **{k: v for k, v in config.items() if k != "name"})
