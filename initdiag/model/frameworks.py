"""One adapter per framework: any model as a pure ``fn(params, x) -> output`` and its weights.

:func:`adapt` turns a model of Flax linen, Flax nnx, Equinox or Haiku (or a plain JAX function
with its parameters) into an :class:`Adapted`: a pure, jit-able ``fn(params, x)``, the weights
pytree ``params`` that a probe perturbs and differentiates, and ``rebuild(params)`` that puts
weights back into the framework's own object.

What is differentiated and what is held fixed
---------------------------------------------
Only ``params`` is an argument of ``fn``; everything else the model needs is captured at
:func:`adapt` time and held fixed (a snapshot: later changes to the caller's model are not seen):

==============  ============================================  ===================================
framework       params (the argument of fn)                   held fixed
==============  ============================================  ===================================
flax.linen      the ``"params"`` collection                   every other collection
                                                              (``batch_stats``, ...)
flax.nnx        the ``nnx.Param`` variables (``nnx.State``)   graph definition, every other
                                                              variable (``BatchStat``, RNG keys
                                                              and counts, ...)
equinox         every floating-point array leaf of the        the rest of the module (static
                module (``eqx.partition(m,                    fields, integer arrays, functions)
                eqx.is_inexact_array)``; None elsewhere)      and the ``eqx.nn.State``
haiku           the ``params`` mapping                        ``state``; the rng, ``key(0)``
function        the ``params`` given                          whatever ``fn`` closes over
==============  ============================================  ===================================

Normalization layers in training mode normalize by the statistics of the batch ``x`` that
``fn`` is called on: linen is applied with ``mutable=`` its non-params collections (so a
``BatchNorm(use_running_average=False)`` may compute and update its statistics; the updates are
dropped and only the output is returned), an nnx module is merged afresh on every call (its
``BatchNorm`` updates that copy, never the caller's module), an Equinox model with a state runs
under ``jax.vmap(..., axis_name=...)`` and the new state is dropped, and Haiku's new state is
dropped. Running averages are never updated: every call of ``fn`` sees the same fixed state, so
``fn`` is a pure function of ``(params, x)``. Layers drawing randomness (dropout) draw the same
mask on every call: the RNG state (nnx) or key (Haiku) is part of what is held fixed.

Frameworks are never imported here: an object can only be an instance of a framework's class
if that framework is already imported, so detection looks the framework up in ``sys.modules``.
The core of initdiag imports none of them, and a framework that is not installed does not stop
the other forms from working.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from typing import Any, Callable

import jax

FRAMEWORKS = ("flax.linen", "flax.nnx", "equinox", "haiku", "function")
LAYOUTS = ("flax", "haiku", "equinox")

ACCEPTED = """accepted forms:
  flax.linen  a bound module (module.bind(variables)) or a tuple (module, variables)
  flax.nnx    an nnx.Module
  equinox     an eqx.Module, or a tuple (module, state) with state an eqx.nn.State
  haiku       a tuple (transformed, params) or (transformed, params, state), transformed
              from hk.transform / hk.transform_with_state (with or without hk.without_apply_rng)
  function    a tuple (fn, params) with fn(params, x) -> output"""


@dataclasses.dataclass(frozen=True)
class Adapted:
    """A model as a pure function of its weights (see the module docstring for what is fixed).

    - ``fn(params, x) -> output``: pure and jit-able; the output is an array or a pytree of
      arrays (a model's new state, if any, is dropped).
    - ``params``: the weights pytree, the only thing a probe perturbs or differentiates.
    - ``rebuild(params)``: the framework object, in the form given to :func:`adapt`, with these
      weights put back (a new object; the one given to :func:`adapt` is not changed).
    - ``framework``: one of :data:`FRAMEWORKS`.
    - ``layout``: the weight layout, one of :data:`LAYOUTS`: ``"flax"`` (dense kernels
      ``[fan_in, fan_out]``, convolution kernels ``[*spatial, in, out]``; linen, nnx, and
      plain functions by assumption), ``"haiku"`` (Haiku's ``w``: the same shapes, other names)
      or ``"equinox"`` (``weight`` ``[fan_out, fan_in]``, convolutions ``[out, in, *spatial]``).
    - ``description``: one line saying what was detected and how ``fn`` calls the model.
    """

    fn: Callable
    params: Any
    rebuild: Callable
    framework: str
    layout: str
    description: str


def adapt(model: Any, x: Any = None, *, apply_kwargs: dict | None = None,
          vmap: bool | None = None) -> Adapted:
    """``model`` (any accepted form, see :data:`ACCEPTED`) as an :class:`Adapted`.

    ``x``: an input batch (an array, or a pytree of arrays with the batch on axis 0). When given,
    ``fn(params, x)`` is traced once with ``jax.eval_shape`` (errors surface here, and the
    description states the output's shape); Equinox's automatic ``vmap`` decision needs it.

    ``apply_kwargs``: keyword arguments passed on every call: to linen's ``module.apply`` (e.g.
    ``{"train": True}``; a ``mutable=`` here replaces the default), to the nnx or Equinox
    module's call, to Haiku's ``apply``, or to the plain function.

    ``vmap`` (Equinox only; Equinox layers work on one sample): ``True`` calls the module under
    ``jax.vmap`` over axis 0 of ``x``, ``False`` calls it on the whole batch, ``None`` decides:
    vmap, unless the per-sample call fails while the call on the whole batch works and returns
    outputs whose axis 0 is the batch (both checked with ``jax.eval_shape`` on ``x``; without
    ``x``, vmap). The description says which was chosen and why.

    Only ``params`` is differentiated; everything else is held fixed (module docstring). Raises
    ``TypeError`` naming the type seen and listing the accepted forms for anything else.
    """
    kwargs = dict(apply_kwargs or {})
    linen = sys.modules.get("flax.linen")
    nnx = sys.modules.get("flax.nnx")
    eqx = sys.modules.get("equinox")
    hk = sys.modules.get("haiku")

    # a Haiku Transformed is itself a (named) tuple: recognised before tuples are taken apart
    if hk is not None and isinstance(model, (hk.Transformed, hk.TransformedWithState)):
        raise _type_error(model, "a Haiku transformed function needs its parameters: pass "
                                 "(transformed, params) or (transformed, params, state)")
    if linen is not None and isinstance(model, linen.Module):
        if model.scope is None:
            raise _type_error(model, "an unbound linen module has no variables: pass "
                                     "module.bind(variables) or (module, variables)")
        module, variables = model.unbind()
        adapted = _linen(module, variables, kwargs, bound=True)
    elif nnx is not None and isinstance(model, nnx.Module):
        adapted = _nnx(nnx, model, kwargs)
    elif eqx is not None and isinstance(model, eqx.Module):
        adapted = _equinox(eqx, model, None, x, kwargs, vmap)
    elif type(model) is tuple and len(model) in (2, 3):
        head, rest = model[0], model[1:]
        if linen is not None and isinstance(head, linen.Module) and len(rest) == 1:
            adapted = _linen(head, rest[0], kwargs, bound=False)
        elif hk is not None and isinstance(head, (hk.Transformed, hk.TransformedWithState)):
            adapted = _haiku(hk, head, rest, kwargs)
        elif (eqx is not None and isinstance(head, eqx.Module) and len(rest) == 1
              and isinstance(rest[0], eqx.nn.State)):
            adapted = _equinox(eqx, head, rest[0], x, kwargs, vmap)
        elif callable(head) and len(rest) == 1:
            adapted = _function(head, rest[0], kwargs)
        else:
            raise _type_error(model)
    else:
        raise _type_error(model)
    if vmap is not None and adapted.framework != "equinox":
        raise ValueError("vmap= applies to Equinox models only (their layers work on one sample); "
                         f"got vmap={vmap!r} with a {adapted.framework} model")

    if x is not None:
        out = jax.eval_shape(adapted.fn, adapted.params, x)
        adapted = dataclasses.replace(
            adapted, description=f"{adapted.description}; output {_shapes(out)}")
    return adapted


# -- linen ------------------------------------------------------------------------------------

def _linen(module, variables, kwargs: dict, *, bound: bool) -> Adapted:
    if not hasattr(variables, "keys") or "params" not in variables:
        raise _type_error((module, variables), "the variables of a linen module must be a "
                          "mapping with a 'params' collection, as module.init returns")
    fixed = {name: col for name, col in variables.items() if name != "params"}
    mutable = kwargs.pop("mutable", sorted(fixed) or False)
    params = variables["params"]

    def fn(params, x):
        out = module.apply({**fixed, "params": params}, x, mutable=mutable, **kwargs)
        return out[0] if mutable else out

    def rebuild(params):
        new = {**fixed, "params": params}
        return module.bind(new) if bound else (module, new)

    held = "".join(f", {n!r}: fixed" for n in sorted(fixed))
    call = f"module.apply({{'params': params{held}}}, x"
    call += f", mutable={mutable!r})[0]" if mutable else ")"
    form = "bound module" if bound else "(module, variables)"
    return Adapted(fn, params, rebuild, "flax.linen", "flax",
                   f"flax.linen {type(module).__name__} ({form}), {_count(params)}: fn = {call}"
                   f"{_kwargs(kwargs)}")


# -- nnx --------------------------------------------------------------------------------------

def _nnx(nnx, model, kwargs: dict) -> Adapted:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    # split shares the module's Variable objects: copy them (same arrays), so that adapt holds a
    # snapshot and nothing done to the caller's module later reaches fn, nor the reverse
    params, rest = jax.tree.map(lambda a: a, params), jax.tree.map(lambda a: a, rest)

    def fn(params, x):
        # copy=True: fresh Variables each call, so a BatchNorm's update (or a dropout's RNG
        # count) changes this throwaway module only
        return nnx.merge(graphdef, params, rest, copy=True)(x, **kwargs)

    def rebuild(params):
        return nnx.merge(graphdef, params, rest, copy=True)

    held = sorted({type(v).__name__ for v in jax.tree.leaves(
        rest, is_leaf=lambda v: isinstance(v, nnx.Variable)) if isinstance(v, nnx.Variable)})
    return Adapted(fn, params, rebuild, "flax.nnx", "flax",
                   f"flax.nnx {type(model).__name__}, {_count(params)} (nnx.Param): "
                   f"fn = nnx.merge(graphdef, params, rest, copy=True)(x{_kwargs(kwargs, ', ')}); "
                   f"held fixed: {', '.join(held) or 'nothing'}")


# -- equinox ----------------------------------------------------------------------------------

def _equinox(eqx, module, state, x, kwargs: dict, vmap: bool | None) -> Adapted:
    params, static = eqx.partition(module, eqx.is_inexact_array)
    axis_name = _batchnorm_axis(eqx, module)

    def make(use_vmap: bool):
        def fn(params, x):
            m = eqx.combine(params, static)
            if state is None:
                return jax.vmap(lambda xi: m(xi, **kwargs))(x) if use_vmap else m(x, **kwargs)
            if use_vmap:
                out, _ = jax.vmap(lambda xi, s: m(xi, s, **kwargs), axis_name=axis_name,
                                  in_axes=(0, None), out_axes=(0, None))(x, state)
            else:
                out, _ = m(x, state, **kwargs)
            return out
        return fn

    if vmap is None:
        use_vmap, why = _decide_vmap(make, params, x)
    else:
        use_vmap, why = bool(vmap), f"vmap={vmap!r} given"

    def rebuild(params):
        m = eqx.combine(params, static)
        return m if state is None else (m, state)

    if use_vmap:
        call = (f"jax.vmap(model, axis_name={axis_name!r}, in_axes=(0, None), "
                f"out_axes=(0, None))(x, state)[0]" if state is not None
                else "jax.vmap(model)(x)")
    else:
        call = "model(x, state)[0]" if state is not None else "model(x)"
    form = f"({type(module).__name__}, State)" if state is not None else type(module).__name__
    return Adapted(make(use_vmap), params, rebuild, "equinox", "equinox",
                   f"equinox {form}, {_count(params)} (eqx.is_inexact_array): "
                   f"fn = {call}{_kwargs(kwargs)} ({why})")


def _batchnorm_axis(eqx, module) -> Any:
    """The vmap axis name the module's BatchNorm layers reduce over ("batch" if none or mixed)."""
    norms = [n for n in jax.tree.leaves(module, is_leaf=lambda n: isinstance(n, eqx.nn.BatchNorm))
             if isinstance(n, eqx.nn.BatchNorm)]
    names = {n.axis_name for n in norms if isinstance(n.axis_name, str)}
    return names.pop() if len(names) == 1 else "batch"


def _decide_vmap(make: Callable, params, x) -> tuple[bool, str]:
    if x is None:
        return True, "per-sample call assumed: no x given to check it"
    try:
        jax.eval_shape(make(True), params, x)
        return True, "per-sample module: the call under vmap works"
    except Exception as e:  # noqa: BLE001 - any failure of the per-sample call decides
        per_sample = e
    batch = jax.tree.leaves(x)[0].shape[0]
    try:
        out = jax.eval_shape(make(False), params, x)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"equinox model fails both per sample (under jax.vmap) and on the whole "
                         f"batch; per sample: {type(per_sample).__name__}: {per_sample}; on the "
                         f"batch: {type(e).__name__}: {e}") from e
    leaves = jax.tree.leaves(out)
    if not leaves or any(len(o.shape) == 0 or o.shape[0] != batch for o in leaves):
        raise ValueError(f"equinox model fails per sample ({type(per_sample).__name__}: "
                         f"{per_sample}) and on the whole batch its output {_shapes(out)} does "
                         f"not have the batch ({batch}) on axis 0; pass vmap= explicitly")
    return False, (f"batch module: the per-sample call fails ({type(per_sample).__name__}), the "
                   f"call on the whole batch works")


# -- haiku ------------------------------------------------------------------------------------

def _haiku(hk, transformed, rest: tuple, kwargs: dict) -> Adapted:
    with_state = isinstance(transformed, hk.TransformedWithState)
    if with_state != (len(rest) == 2):
        need = "(transformed, params, state)" if with_state else "(transformed, params)"
        raise _type_error((transformed, *rest), f"{type(transformed).__name__} takes {need}")
    params, state = rest[0], (rest[1] if with_state else None)
    takes_rng = _haiku_takes_rng(transformed.apply, 2 if with_state else 1)
    key = jax.random.key(0) if takes_rng else None
    lead = ((state,) if with_state else ()) + ((key,) if takes_rng else ())

    def fn(params, x):
        out = transformed.apply(params, *lead, x, **kwargs)
        return out[0] if with_state else out

    def rebuild(params):
        return (transformed, params, state) if with_state else (transformed, params)

    args = ("params" + (", state" if with_state else "")
            + (", jax.random.key(0)" if takes_rng else ""))
    return Adapted(fn, params, rebuild, "haiku", "haiku",
                   f"haiku {type(transformed).__name__}, {_count(params)}: fn = apply({args}, x"
                   f"{_kwargs(kwargs, ', ')}){'[0]' if with_state else ''}")


def _haiku_takes_rng(apply: Callable, position: int) -> bool:
    """Whether Haiku's apply takes an rng at ``position`` (not after ``hk.without_apply_rng``)."""
    try:
        names = list(inspect.signature(apply).parameters)
    except (TypeError, ValueError):
        return True
    return len(names) > position and names[position] == "rng"


# -- plain function ---------------------------------------------------------------------------

def _function(f: Callable, params, kwargs: dict) -> Adapted:
    def fn(params, x):
        return f(params, x, **kwargs)

    def rebuild(params):
        return (f, params)

    name = getattr(f, "__name__", type(f).__name__)
    return Adapted(fn, params, rebuild, "function", "flax",
                   f"function {name}, {_count(params)}: "
                   f"fn = {name}(params, x{_kwargs(kwargs, ', ')}); weight layout assumed 'flax' "
                   f"(kernels [fan_in, fan_out]; dataclasses.replace(adapted, layout=...) to "
                   f"change it)")


# -- messages ---------------------------------------------------------------------------------

def _kind(model: Any) -> str:
    if type(model) is tuple:
        return f"a tuple of ({', '.join(type(m).__name__ for m in model)})"
    return f"{type(model).__module__}.{type(model).__qualname__}"


def _type_error(model: Any, why: str = "") -> TypeError:
    return TypeError(f"cannot adapt {_kind(model)}{': ' + why if why else ''}\n{ACCEPTED}")


def _count(params) -> str:
    leaves = [p for p in jax.tree.leaves(params) if hasattr(p, "size")]
    return f"{len(leaves)} weight arrays, {sum(int(p.size) for p in leaves):,} numbers"


def _kwargs(kwargs: dict, sep: str = "") -> str:
    """The apply kwargs as text: ``sep`` before them inside a call, else a trailing note."""
    if not kwargs:
        return ""
    text = ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items())
    return f"{sep}{text}" if sep else f" with {text}"


class _Text(str):
    def __repr__(self) -> str:
        return str(self)


def _short(value) -> str:
    """``repr(value)`` on one line, arrays (keys too) shown as dtype and shape only."""
    value = jax.tree.map(lambda a: _Text(f"{a.dtype}{list(a.shape)}") if hasattr(a, "shape")
                         else a, value)
    return " ".join(repr(value).split())


def _shapes(tree) -> str:
    leaves = jax.tree.leaves(tree)
    shown = ", ".join(f"{o.dtype}{list(o.shape)}" for o in leaves[:4])
    return shown + (f", ... ({len(leaves)} arrays)" if len(leaves) > 4 else "")
