"""``initdiag.tap``: an explicit probe site that costs nothing outside a probe.

``tap(x, name, activation=None)`` returns ``x``. Outside a probe it is plain Python that returns
its argument, so a jitted function with taps traces to exactly the jaxpr it has without them.
While :func:`initdiag.probe_fn` traces a function (inside :func:`tapping`), it binds the
primitive ``initdiag_tap[name=..., activation=...]``, an identity (differentiable, batchable,
lowerable) that the probe's interpreter recognises, through ``jit``, ``lax.scan``, ``remat`` and
``vmap``.

Whether taps are live is a jax configuration state that is part of jax's trace context, so a
function jitted (and cached) outside a probe is traced afresh inside one and vice versa.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import jax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from initdiag.nn.activations import activation as resolve_activation


def _tapping_state():
    # A bool config state included in jax's trace context: jit caches key on it, so a function
    # traced without taps is not reused by a probe (and the probe's trace is not reused outside).
    # jax has no public API for this; the private one is stable across the supported versions
    # (pyproject's jax range), and tests/test_model_probe.py checks the behaviour.
    from jax._src import config as jax_config

    name = "initdiag_tapping"
    existing = getattr(jax_config, "config_states", {}).get(name)
    if existing is not None:  # the module was reloaded: jax keeps one state per name
        return existing
    return jax_config.bool_state(
        name, False,
        "Internal to initdiag: True while initdiag.probe_fn traces a function (taps are live).",
        include_in_trace_context=True)


_TAPPING = _tapping_state()

tap_p = Primitive("initdiag_tap")
tap_p.def_impl(lambda x, **_: x)
tap_p.def_abstract_eval(lambda aval, **_: aval)
ad.primitive_jvps[tap_p] = lambda primals, tangents, **p: (tap_p.bind(primals[0], **p), tangents[0])
batching.primitive_batchers[tap_p] = lambda args, dims, **p: (tap_p.bind(args[0], **p), dims[0])
mlir.register_lowering(tap_p, mlir.lower_fun(lambda x, **_: x, multiple_results=False))


def tap(x: Any, name: str, *, activation: Any = None) -> Any:
    """Mark ``x`` as a probe site named ``name``; returns ``x`` unchanged.

    Args:
      x: a floating array (the value to measure).
      name: the site's name in the results (made unique in call order if repeated; inside
        ``lax.scan`` each iteration gets ``name/[i]``).
      activation: the activation that produced ``x`` (a name such as ``"tanh"`` or an
        :class:`initdiag.Activation`), so that saturation and zero/dead fractions apply.

    Outside a probe this is the identity in Python: it adds nothing to a jaxpr.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"tap name must be a non-empty string; got {name!r}")
    label = None if activation is None else resolve_activation(activation).label
    if not _TAPPING.value:
        return x
    return tap_p.bind(x, name=name, activation=label)


@contextlib.contextmanager
def tapping() -> Iterator[None]:
    """Make :func:`tap` bind its primitive while tracing inside this context."""
    with _TAPPING(True):
        yield
