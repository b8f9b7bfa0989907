"""The initialization schemes: one record per scheme, in :data:`SCHEMES`.

A :class:`Scheme` is a fixed distribution of each entry of a ``[fan_in, fan_out]`` weight
matrix, given its parameters ``p`` (a mapping with every parameter, defaults filled in). Its
record holds everything the package knows about it:

* ``sampler(p)``: the jax initializer ``init(key, shape, dtype)``, built on
  :mod:`jax.nn.initializers` wherever jax has the distribution;
* ``variance(fan_in, fan_out, p)``: E[W_ij^2], the second moment of one entry (its variance for
  the zero-mean schemes);
* ``form(fan_in, fan_out, p)``: ``(Form, value)``, how the engine draws the weights inside
  compiled code. A :class:`Form` is one drawing function of a scalar ``value`` that may be traced,
  so every scheme, parameter set and fan with the same form shares one compilation (the whole
  variance-scaling family with one distribution shares one); ``forms`` lists the forms it uses;
* ``bias(p, key, fan_in, fan_out, dtype)`` and ``bias_variance(fan_in, fan_out, p)``: the scheme
  as a bias initializer (a bias vector has no fans: those of its layer are used);
* ``defaults`` and ``summary``: its parameters and what it draws, in words and formula;
* ``check(p)``: validation of the parameters given (before defaults are filled in) beyond
  "every parameter is known, numeric ones finite, std and scale >= 0";
* ``variance_scaling(p)``: ``(scale, mode, distribution)`` for the schemes that are jax's
  ``variance_scaling(scale * gain^2, mode, distribution)``, else None.

Adding a scheme is adding one record. Most are one line of :func:`variance_scaling_scheme`
(jax's engine, specialised to He, Glorot, LeCun, ... as jax does) or :func:`drawn_by` (a scheme
whose weights are one form at a value that depends only on the parameters).

A :class:`DataDependentScheme` is not a distribution: its weights are those of a ``base`` scheme
changed by a ``step`` that needs the stack and its input (LSUV, Mishkin & Matas 2015).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Any, Callable, ClassVar, Mapping

import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

from initdiag.base import PRNGKey, check_one_of

Params = Mapping[str, Any]
#: jax's initializer signature: ``init(key, shape, dtype) -> array``.
Initializer = Callable[..., jax.Array]

#: Standard deviation of a standard normal truncated to (-2, 2), as in jax.nn.initializers.
TRUNCATED_NORMAL_STD = 0.87962566103423978

MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")


@dataclasses.dataclass(frozen=True)
class Form:
    """A drawing function ``draw(value, key, shape, dtype)`` of a scalar ``value`` that may be
    traced: what a compiled drawing of weights depends on. Forms are equal, and hashed, by
    ``name`` and ``of`` (the user initializer of a per-object form), not by ``draw``."""

    name: str
    draw: Callable[..., jax.Array] = dataclasses.field(compare=False, repr=False)
    of: Any = None


def _no_check(p: Params) -> None:
    del p


@dataclasses.dataclass(frozen=True)
class Scheme:
    """A fixed distribution of the weights; fields as in the module docstring."""

    name: str
    summary: str
    defaults: Params
    sampler: Callable[[Params], Initializer]
    variance: Callable[[int, int, Params], float]
    form: Callable[[int, int, Params], tuple[Form, float]]
    forms: tuple[Form, ...]
    bias: Callable[[Params, PRNGKey, int, int, Any], jax.Array]
    bias_variance: Callable[[int, int, Params], float]
    check: Callable[[Params], None] = _no_check
    variance_scaling: Callable[[Params], tuple[float, str, str]] | None = None

    data_dependent: ClassVar[bool] = False


@dataclasses.dataclass(frozen=True)
class DataDependentScheme:
    """Weights drawn by the scheme ``base`` (given the parameters it knows), then changed by
    ``step(params, x, spec)`` on the stack ``spec`` and its input batch ``x``: not a distribution.

    ``step`` is a ``"module:function"`` path, imported when first used: the step runs the
    stack, and :mod:`initdiag.nn` imports nothing above it.
    """

    name: str
    summary: str
    defaults: Params
    base: str
    step: str
    check: Callable[[Params], None] = _no_check

    data_dependent: ClassVar[bool] = True

    def base_params(self, p: Params) -> dict[str, Any]:
        """The parameters of ``p`` that ``base`` takes (``gain``)."""
        return {k: v for k, v in p.items() if k in SCHEMES[self.base].defaults}

    def step_function(self) -> Callable[..., Any]:
        module, _, function = self.step.partition(":")
        return getattr(importlib.import_module(module), function)


def drawn_by(name: str, summary: str, defaults: Params, form: Form,
             value: Callable[[Params], float], variance: Callable[[int, int, Params], float], *,
             bias_as_row: bool = False,
             bias_variance: Callable[[int, int, Params], float] | None = None) -> Scheme:
    """A scheme whose weights are ``form`` at ``value(p)``, in compiled code as in direct calls.

    As a bias initializer it draws a vector of shape ``(fan_out,)``, or with ``bias_as_row``
    the single row of a ``(1, fan_out)`` weight; its bias variance defaults to ``variance``.
    """
    def sampler(p: Params) -> Initializer:
        v = value(p)
        return lambda key, shape, dtype=jnp.float32: form.draw(v, key, shape, dtype)

    def bias(p: Params, key: PRNGKey, fan_in: int, fan_out: int, dtype: Any) -> jax.Array:
        del fan_in
        if bias_as_row:
            return sampler(p)(key, (1, fan_out), dtype)[0]
        return sampler(p)(key, (fan_out,), dtype)

    return Scheme(name, summary, defaults, sampler, variance, lambda fi, fo, p: (form, value(p)),
                  (form,), bias, bias_variance or variance)


def fan_denominator(mode: str, fan_in: int, fan_out: int) -> float:
    """n(mode) of jax's variance_scaling: the variance of an entry is scale / n(mode)."""
    return {
        "fan_in": fan_in,
        "fan_out": fan_out,
        "fan_avg": (fan_in + fan_out) / 2.0,
        "fan_geo_avg": math.sqrt(fan_in * fan_out),
    }[mode]


def _variance_scaling_draw(distribution: str) -> Callable[..., jax.Array]:
    return lambda value, key, shape, dtype: jinit.variance_scaling(value, "fan_in", distribution)(
        key, shape, dtype)


#: The variance-scaling family's forms, one per distribution: variance ``value / fan_in``.
VARIANCE_SCALING_FORMS = {d: Form(f"variance_scaling/{d}", _variance_scaling_draw(d))
                          for d in DISTRIBUTIONS}


def variance_scaling_scheme(name: str, summary: str,
                            vs: Callable[[Params], tuple[float, str, str]],
                            defaults: Params | None = None,
                            check: Callable[[Params], None] = _no_check,
                            distributions: tuple[str, ...] = DISTRIBUTIONS) -> Scheme:
    """jax's ``variance_scaling(scale * gain^2, mode, distribution)`` with
    ``(scale, mode, distribution) = vs(p)``: variance ``scale * gain^2 / n(mode)``
    (:func:`fan_denominator`), the truncated normal rescaled to it. As a bias initializer it
    draws with the variance of its layer's weights. ``defaults``: every parameter (default:
    ``gain`` only); ``distributions``: those ``vs`` may return."""
    def sampler(p: Params) -> Initializer:
        scale, mode, distribution = vs(p)
        return jinit.variance_scaling(scale * p["gain"] ** 2, mode, distribution)

    def variance(fan_in: int, fan_out: int, p: Params) -> float:
        scale, mode, _ = vs(p)
        return scale * p["gain"] ** 2 / fan_denominator(mode, fan_in, fan_out)

    def form(fan_in: int, fan_out: int, p: Params) -> tuple[Form, float]:
        scale, mode, distribution = vs(p)
        # variance = scale gain^2 / n(mode) = value / fan_in
        value = scale * p["gain"] ** 2 * fan_in / fan_denominator(mode, fan_in, fan_out)
        return VARIANCE_SCALING_FORMS[distribution], value

    def bias(p: Params, key: PRNGKey, fan_in: int, fan_out: int, dtype: Any) -> jax.Array:
        # Shape (1, fan_out) in mode fan_out has denominator fan_out: rescale to the layer's.
        init = jinit.variance_scaling(variance(fan_in, fan_out, p) * fan_out, "fan_out", vs(p)[2])
        return init(key, (1, fan_out), dtype)[0]

    forms = tuple(VARIANCE_SCALING_FORMS[d] for d in distributions)
    return Scheme(name, summary, defaults or {"gain": 1.0}, sampler, variance, form, forms, bias,
                  variance, check, vs)


def _vs(name: str, summary: str, scale: float, mode: str, distribution: str) -> Scheme:
    """A one-line specialisation of :func:`variance_scaling_scheme`, as jax's he_normal etc."""
    return variance_scaling_scheme(name, summary, lambda p: (scale, mode, distribution),
                                   distributions=(distribution,))


def _check_variance_scaling(p: Params) -> None:
    check_one_of("variance_scaling mode", p.get("mode", "fan_in"), MODES)
    check_one_of("variance_scaling distribution", p.get("distribution", "truncated_normal"),
                 DISTRIBUTIONS)


def _check_lsuv(p: Params) -> None:
    if not (0 < p.get("tol", 0.05) < 1 and p.get("max_iter", 10) >= 1):
        raise ValueError(f"initializer 'lsuv': tol must be in (0, 1) and max_iter >= 1; got {p}")


_GAIN = {"gain": 1.0}

#: Every scheme by canonical name, in the order names are listed.
SCHEMES: dict[str, Scheme | DataDependentScheme] = {s.name: s for s in (
    drawn_by("zeros", "every weight 0", _GAIN,
             Form("zeros", lambda v, key, shape, dtype: jinit.zeros(key, shape, dtype)),
             value=lambda p: 0.0, variance=lambda fi, fo, p: 0.0),
    drawn_by("constant", "every weight = gain * value", {"value": 0.1, **_GAIN},
             Form("constant", lambda v, key, shape, dtype: jinit.constant(v)(key, shape, dtype)),
             value=lambda p: p["value"] * p["gain"],
             variance=lambda fi, fo, p: p["gain"] ** 2 * p["value"] ** 2),
    # jax.nn.initializers.uniform samples [0, scale): the documented range is symmetric.
    drawn_by("uniform", "U(-gain*scale, gain*scale)", {"scale": 0.05, **_GAIN},
             Form("uniform", lambda v, key, shape, dtype: jax.random.uniform(
                 key, shape, dtype, minval=-v, maxval=v)),
             value=lambda p: p["scale"] * p["gain"],
             variance=lambda fi, fo, p: p["gain"] ** 2 * (p["scale"] ** 2 / 3.0)),
    drawn_by("normal", "N(0, (gain*std)^2)", {"std": 0.01, **_GAIN},
             Form("normal", lambda v, key, shape, dtype: jinit.normal(stddev=v)(key, shape, dtype)),
             value=lambda p: p["std"] * p["gain"],
             variance=lambda fi, fo, p: p["gain"] ** 2 * p["std"] ** 2),
    drawn_by("truncated_normal",
             "gain * N(0, std^2) truncated to [-2 std, 2 std] (std of result 0.8796*gain*std)",
             {"std": 0.01, **_GAIN},
             Form("truncated_normal", lambda v, key, shape, dtype: jinit.truncated_normal(
                 stddev=v)(key, shape, dtype)),
             value=lambda p: p["std"] * p["gain"],
             variance=lambda fi, fo, p: p["gain"] ** 2 * (p["std"] * TRUNCATED_NORMAL_STD) ** 2),
    _vs("glorot_uniform", "U(-a, a), a = gain*sqrt(6/(fan_in+fan_out))", 1.0, "fan_avg", "uniform"),
    _vs("glorot_normal", "truncated normal, variance gain^2 * 2/(fan_in+fan_out)",
        1.0, "fan_avg", "truncated_normal"),
    _vs("he_uniform", "U(-a, a), a = gain*sqrt(6/fan_in)", 2.0, "fan_in", "uniform"),
    _vs("he_normal", "truncated normal, variance gain^2 * 2/fan_in", 2.0, "fan_in",
        "truncated_normal"),
    _vs("lecun_uniform", "U(-a, a), a = gain*sqrt(3/fan_in)", 1.0, "fan_in", "uniform"),
    _vs("lecun_normal", "truncated normal, variance gain^2 / fan_in", 1.0, "fan_in",
        "truncated_normal"),
    # Q uniformly random with orthonormal columns (fan_in >= fan_out) or rows: sum of squares
    # gain^2 min(fans) over fan_in fan_out entries. As a bias: gain times a random unit vector.
    drawn_by("orthogonal", "gain * (random matrix with orthonormal columns or rows)", _GAIN,
             Form("orthogonal",
                  lambda v, key, shape, dtype: jinit.orthogonal(scale=v)(key, shape, dtype)),
             value=lambda p: p["gain"],
             variance=lambda fi, fo, p: p["gain"] ** 2 * (1.0 / max(fi, fo)),
             bias_as_row=True, bias_variance=lambda fi, fo, p: p["gain"] ** 2 / fo),
    DataDependentScheme(
        "lsuv", "orthogonal start, then W^l rescaled layer by layer until Var(h^l) on the "
        "probe's batch is within tol of 1 (initdiag.nn.lsuv; Mishkin & Matas 2015)",
        {"tol": 0.05, "max_iter": 10.0, **_GAIN}, base="orthogonal",
        step="initdiag.nn.lsuv:rescale", check=_check_lsuv),
    _vs("torch_default", "U(-a, a), a = gain/sqrt(fan_in) (torch.nn.Linear)", 1.0 / 3.0, "fan_in",
        "uniform"),
    variance_scaling_scheme(
        "variance_scaling", "variance gain^2 * scale / n(mode), distribution as given",
        lambda p: (p["scale"], p["mode"], p["distribution"]),
        {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal", **_GAIN},
        _check_variance_scaling),
)}
