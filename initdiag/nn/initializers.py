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
lsuv                data-dependent: orthogonal start, then each layer rescaled on the probe's
                      input until Var(h^l) is within tol of 1 (:mod:`initdiag.analysis.lsuv`)
==================  ===========================================================================

"Xavier" is used loosely in the literature (some texts mean N(0, 2/(n_in+n_out)), others
N(0, 1/n_in)); here it always means Glorot & Bengio's variance 2/(n_in + n_out).

Biases (``bias_init=``) take the same names. A bias vector has no fan of its own, so a
fan-dependent initializer uses the fans of its layer: ``he_normal`` as a bias draws with variance
``2 / n_in``; ``torch_default`` gives torch.nn.Linear's bias rule U(-1/sqrt(n_in), 1/sqrt(n_in));
``orthogonal`` gives ``gain`` times a uniformly random unit vector.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

from initdiag.nn.spec import format_spec, parse_spec
from initdiag.base import PRNGKey, Shape, check_one_of, unknown_choice_message

# Standard deviation of a standard normal truncated to (-2, 2), as in jax.nn.initializers.
TRUNCATED_NORMAL_STD = 0.87962566103423978

MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")


@dataclasses.dataclass(frozen=True)
class _Family:
    """How one registry entry samples and what it documents."""

    defaults: Mapping[str, Any]
    summary: str
    # (scale, mode, distribution) for the variance-scaling family, else None.
    variance_scaling: Callable[[Mapping[str, Any]], tuple[float, str, str]] | None = None


def _vs(scale: float, mode: str, distribution: str) -> Callable[[Mapping[str, Any]], tuple[float, str, str]]:
    return lambda p: (scale, mode, distribution)


_FAMILIES: dict[str, _Family] = {
    "zeros": _Family({"gain": 1.0}, "every weight 0"),
    "constant": _Family({"value": 0.1, "gain": 1.0}, "every weight = gain * value"),
    "uniform": _Family({"scale": 0.05, "gain": 1.0}, "U(-gain*scale, gain*scale)"),
    "normal": _Family({"std": 0.01, "gain": 1.0}, "N(0, (gain*std)^2)"),
    "truncated_normal": _Family(
        {"std": 0.01, "gain": 1.0},
        "gain * N(0, std^2) truncated to [-2 std, 2 std] (std of result 0.8796*gain*std)"),
    "glorot_uniform": _Family(
        {"gain": 1.0}, "U(-a, a), a = gain*sqrt(6/(fan_in+fan_out))", _vs(1.0, "fan_avg", "uniform")),
    "glorot_normal": _Family(
        {"gain": 1.0}, "truncated normal, variance gain^2 * 2/(fan_in+fan_out)",
        _vs(1.0, "fan_avg", "truncated_normal")),
    "he_uniform": _Family({"gain": 1.0}, "U(-a, a), a = gain*sqrt(6/fan_in)", _vs(2.0, "fan_in", "uniform")),
    "he_normal": _Family(
        {"gain": 1.0}, "truncated normal, variance gain^2 * 2/fan_in", _vs(2.0, "fan_in", "truncated_normal")),
    "lecun_uniform": _Family({"gain": 1.0}, "U(-a, a), a = gain*sqrt(3/fan_in)", _vs(1.0, "fan_in", "uniform")),
    "lecun_normal": _Family(
        {"gain": 1.0}, "truncated normal, variance gain^2 / fan_in", _vs(1.0, "fan_in", "truncated_normal")),
    "orthogonal": _Family({"gain": 1.0}, "gain * (random matrix with orthonormal columns or rows)"),
    "lsuv": _Family({"tol": 0.05, "max_iter": 10.0, "gain": 1.0},
                    "orthogonal start, then W^l rescaled layer by layer until Var(h^l) on the "
                    "probe's batch is within tol of 1 (initdiag.analysis.lsuv; Mishkin & Matas 2015)"),
    "torch_default": _Family(
        {"gain": 1.0}, "U(-a, a), a = gain/sqrt(fan_in) (torch.nn.Linear)", _vs(1.0 / 3.0, "fan_in", "uniform")),
    "variance_scaling": _Family(
        {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal", "gain": 1.0},
        "variance gain^2 * scale / n(mode), distribution as given",
        lambda p: (p["scale"], p["mode"], p["distribution"])),
}

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
    return tuple(_FAMILIES) + tuple(ALIASES)


@dataclasses.dataclass(frozen=True)
class NamedInitializer:
    """A registry initializer with its parameters; callable like any jax initializer.

    Attributes:
      name: canonical registry name (aliases resolved).
      params: every parameter, defaults included, as sorted ``(key, value)`` pairs.
    """

    name: str
    params: tuple[tuple[str, Any], ...]

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def gain(self) -> float:
        return float(self.kwargs["gain"])

    @property
    def label(self) -> str:
        """Compact text form that :func:`initializer` parses back, e.g. ``he_normal(gain=1.2)``."""
        return format_spec(self.name, self.kwargs, _FAMILIES[self.name].defaults)

    def __str__(self) -> str:
        return self.label

    def describe(self) -> str:
        """The exact distribution of each weight entry, in words and formula."""
        return f"{self.label}: {_FAMILIES[self.name].summary}"

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.kwargs}

    def _vs_params(self) -> tuple[float, str, str] | None:
        vs = _FAMILIES[self.name].variance_scaling
        return None if vs is None else vs(self.kwargs)

    def __call__(self, key: PRNGKey, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
        """Sample a weight array of ``shape`` (``[..., fan_in, fan_out]``)."""
        p = self.kwargs
        gain = p["gain"]
        vs = self._vs_params()
        if vs is not None:
            scale, mode, distribution = vs
            return jinit.variance_scaling(scale * gain**2, mode, distribution)(key, shape, dtype)
        if self.name in ("orthogonal", "lsuv"):  # lsuv: the orthonormal start (initdiag.analysis.lsuv)
            return jinit.orthogonal(scale=gain)(key, shape, dtype)
        return _fan_free_sample(self.name, p, key, shape, dtype)

    def bias(self, key: PRNGKey, fan_in: int, fan_out: int, dtype: Any = jnp.float32) -> jax.Array:
        """Sample a bias vector of length ``fan_out`` for a layer with the given fans."""
        vs = self._vs_params()
        if vs is not None:
            scale, mode, distribution = vs
            variance = scale * self.gain**2 / _fan_denominator(mode, fan_in, fan_out)
            # Shape (1, fan_out) in mode fan_out has denominator fan_out: rescale to the layer's.
            init = jinit.variance_scaling(variance * fan_out, "fan_out", distribution)
            return init(key, (1, fan_out), dtype)[0]
        if self.name == "orthogonal":
            return jinit.orthogonal(scale=self.gain)(key, (1, fan_out), dtype)[0]
        if self.name == "lsuv":
            raise ValueError("lsuv is a weight initializer; use another bias_init")
        return _fan_free_sample(self.name, self.kwargs, key, (fan_out,), dtype)

    def weight_variance(self, fan_in: int, fan_out: int) -> float:
        """E[W_ij^2], the second moment of one entry (= its variance for zero-mean schemes)."""
        p = self.kwargs
        g2 = p["gain"] ** 2
        vs = self._vs_params()
        if vs is not None:
            scale, mode, _ = vs
            return scale * g2 / _fan_denominator(mode, fan_in, fan_out)
        return g2 * {
            "zeros": lambda: 0.0,
            "constant": lambda: p["value"] ** 2,
            "uniform": lambda: p["scale"] ** 2 / 3.0,
            "normal": lambda: p["std"] ** 2,
            "truncated_normal": lambda: (p["std"] * TRUNCATED_NORMAL_STD) ** 2,
            "orthogonal": lambda: 1.0 / max(fan_in, fan_out),
            "lsuv": lambda: math.nan,  # set from data by initdiag.analysis.lsuv
        }[self.name]()

    def bias_variance(self, fan_in: int, fan_out: int) -> float:
        """E[b_j^2] of :meth:`bias` for a layer with these fans."""
        if self.name == "orthogonal":
            return self.gain**2 / fan_out
        return self.weight_variance(fan_in, fan_out)


@dataclasses.dataclass(frozen=True)
class CallableInitializer:
    """A user callable ``fn(key, shape, dtype)`` used as an initializer.

    As a bias initializer it is called with ``shape=(fan_out,)``.
    """

    fn: Callable[..., jax.Array]

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


AnyInitializer = NamedInitializer | CallableInitializer


def _fan_denominator(mode: str, fan_in: int, fan_out: int) -> float:
    return {
        "fan_in": fan_in,
        "fan_out": fan_out,
        "fan_avg": (fan_in + fan_out) / 2.0,
        "fan_geo_avg": math.sqrt(fan_in * fan_out),
    }[mode]


def _fan_free_sample(name: str, p: Mapping[str, Any], key: PRNGKey, shape: Shape, dtype: Any) -> jax.Array:
    gain = p["gain"]
    if name == "zeros":
        return jinit.zeros(key, shape, dtype)
    if name == "constant":
        return jinit.constant(p["value"] * gain)(key, shape, dtype)
    if name == "uniform":
        # jax.nn.initializers.uniform samples [0, scale); the documented range is symmetric.
        s = p["scale"] * gain
        return jax.random.uniform(key, shape, dtype, minval=-s, maxval=s)
    if name == "normal":
        return jinit.normal(stddev=p["std"] * gain)(key, shape, dtype)
    if name == "truncated_normal":
        return jinit.truncated_normal(stddev=p["std"] * gain)(key, shape, dtype)
    raise AssertionError(f"unhandled initializer {name}")


def weight_form(init: AnyInitializer, fan_in: int, fan_out: int) -> tuple[tuple, float]:
    """``(form, value)`` with ``sample_form(form, value, key, (fan_in, fan_out))`` drawing the
    same distribution as ``init``: the form is what a compiled drawing function depends on, the
    value a number passed at run time. So every initializer of the variance-scaling family with
    one distribution (He, Glorot, LeCun, torch_default, ...) shares one compiled function; the
    others are compiled per initializer."""
    if isinstance(init, NamedInitializer):
        p = init.kwargs
        vs = init._vs_params()
        if vs is not None:
            scale, mode, distribution = vs
            # variance = scale gain^2 / n(mode) = value / fan_in
            value = scale * p["gain"] ** 2 * fan_in / _fan_denominator(mode, fan_in, fan_out)
            return ("variance_scaling", distribution), value
        simple = {"zeros": lambda: 0.0, "constant": lambda: p["value"] * p["gain"],
                  "uniform": lambda: p["scale"] * p["gain"], "normal": lambda: p["std"] * p["gain"],
                  "truncated_normal": lambda: p["std"] * p["gain"]}
        if init.name in simple:
            return (init.name,), simple[init.name]()
        if init.name == "orthogonal":
            return ("orthogonal",), p["gain"]
    return ("object", init), 0.0


#: The forms :func:`sample_indexed` selects among at run time: one compiled drawing function
#: serves every named initializer except LSUV (and user callables, compiled per object).
INDEXED_FORMS: tuple[tuple, ...] = (
    ("variance_scaling", "truncated_normal"), ("variance_scaling", "normal"),
    ("variance_scaling", "uniform"), ("normal",), ("truncated_normal",), ("uniform",),
    ("constant",), ("zeros",), ("orthogonal",),
)


def sample_indexed(index: Any, value: Any, key: PRNGKey, shape: Shape,
                   dtype: Any = jnp.float32) -> jax.Array:
    """Draw from ``INDEXED_FORMS[index]`` with ``value``; both may be traced (``lax.switch``)."""
    branches = [functools.partial(sample_form, form, shape=shape, dtype=dtype)
                for form in INDEXED_FORMS]
    return jax.lax.switch(index, [lambda v, k, f=f: f(v, k) for f in branches], value, key)


def sample_form(form: tuple, value: Any, key: PRNGKey, shape: Shape, dtype: Any = jnp.float32):
    """Draw from a :func:`weight_form`; ``value`` may be a traced scalar."""
    kind = form[0]
    if kind == "orthogonal":
        return jinit.orthogonal(scale=value)(key, shape, dtype)
    if kind == "variance_scaling":
        return jinit.variance_scaling(value, "fan_in", form[1])(key, shape, dtype)
    if kind == "normal":
        return jinit.normal(stddev=value)(key, shape, dtype)
    if kind == "truncated_normal":
        return jinit.truncated_normal(stddev=value)(key, shape, dtype)
    if kind == "uniform":
        return jax.random.uniform(key, shape, dtype, minval=-value, maxval=value)
    if kind == "constant":
        return jnp.full(shape, value, dtype)
    if kind == "zeros":
        return jnp.zeros(shape, dtype)
    return form[1](key, shape, dtype)


def _validate(name: str, params: dict[str, Any]) -> None:
    defaults = _FAMILIES[name].defaults
    for key in params:
        if key not in defaults:
            raise ValueError(
                f"initializer {name!r} has no parameter {key!r}. "
                f"Valid parameters: {', '.join(defaults) or 'none'}.")
    for key, value in params.items():
        if key in ("mode", "distribution"):
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"initializer {name!r}: {key}={value!r} must be a finite number.")
        if key in ("std", "scale") and value < 0:
            raise ValueError(f"initializer {name!r}: {key}={value!r} must be >= 0.")
    if name == "lsuv" and not (0 < params.get("tol", 0.05) < 1 and params.get("max_iter", 10) >= 1):
        raise ValueError(f"initializer 'lsuv': tol must be in (0, 1) and max_iter >= 1; got {params}")
    if name == "variance_scaling":
        check_one_of("variance_scaling mode", params.get("mode", "fan_in"), MODES)
        check_one_of("variance_scaling distribution", params.get("distribution", "truncated_normal"),
                     DISTRIBUTIONS)


def initializer(name: str | AnyInitializer | Callable[..., jax.Array], **params: Any) -> AnyInitializer:
    """Return the initializer called ``name`` with ``params`` (see the module docstring).

    Examples: ``initializer("normal", std=0.01)``, ``initializer("uniform", scale=0.05)``,
    ``initializer("constant", value=0.1)``, ``initializer("orthogonal", gain=1.0)``,
    ``initializer("he_normal", gain=1.2)``,
    ``initializer("variance_scaling", scale=2.0, mode="fan_in", distribution="normal")``.
    ``name`` may carry parameters as text, ``initializer("normal(std=0.1)")``; an initializer
    object is returned as it is; any other callable with jax's signature ``(key, shape, dtype)``
    is wrapped.

    Raises:
      ValueError: for an unknown name (listing the valid ones and the closest) or parameter.
    """
    if isinstance(name, (NamedInitializer, CallableInitializer)):
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
    if canonical not in _FAMILIES:
        raise ValueError(unknown_choice_message("initializer", base, names()))
    _validate(canonical, merged)
    full = {**_FAMILIES[canonical].defaults, **merged}
    full = {k: (float(v) if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in full.items()}
    return NamedInitializer(canonical, tuple(sorted(full.items())))


def from_config(config: Mapping[str, Any] | str) -> AnyInitializer | str:
    """Rebuild an initializer from :meth:`NamedInitializer.to_config`; custom ones stay names."""
    if isinstance(config, str):
        return config if config.startswith("custom:") else initializer(config)
    name = config["name"]
    if name.startswith("custom:"):
        return name
    return initializer(name, **{k: v for k, v in config.items() if k != "name"})
