"""Redraw the weights of any model's parameter pytree with an initdiag initializer.

``reinit(params, init)`` returns ``params`` with the same type and tree structure (a Flax or
Haiku nested dict, a Flax ``FrozenDict`` or ``nnx.State``, an Equinox module) and every weight
redrawn; :func:`reinit_plan` says, leaf by leaf, what it does and why.

Fans follow each leaf's layout (:mod:`initdiag.model.layout` has the full table):

* Flax (linen and nnx) and Haiku: a dense kernel is ``[in, out]``; a conv kernel is HWIO,
  ``[..spatial.., in, out]``, with ``fan_in = in * receptive`` and ``fan_out = out *
  receptive``, ``receptive`` the product of the spatial sizes (jax.nn.initializers' convention).
* Equinox: ``Linear.weight`` is ``[out, in]``; a ``Conv`` weight is OIHW, ``[out, in,
  ..spatial..]``, with the same fans.
* Embedding tables ``[vocab, dim]`` are drawn as dense ``[in, out] = [vocab, dim]``.
* A stacked (scanned, vmapped) leaf has leading layer axes; each slice is one layer, drawn
  independently.

Norm scales become 1; biases follow ``bias_init`` with their layer's fans (the bias rule of the
initializer, e.g. ``he_normal`` as a bias has variance ``2 / fan_in``; a conv bias, which has
``out`` entries while its layer's ``fan_out`` is ``out * receptive``, takes the first ``out``
entries of that draw); a bias without a layer (a norm offset) uses ``fan_in = fan_out = its
size``. Everything else (integers, PRNG keys, Flax collections other than ``params`` such as
``batch_stats``, nnx ``BatchStat``, unknown parameter names) is returned unchanged.

Each leaf is drawn in its own dtype (16-bit floats: drawn in float32, then rounded to it).

Random keys: ``key = jax.random.key(seed)`` (or ``seed`` itself when it is a key; as a key of
:data:`initdiag.nn.prng.THREEFRY`, which draws the same numbers faster); leaf number
``i`` of ``jax.tree_util.tree_leaves(params)`` is drawn from ``jax.random.fold_in(key, i)``; the
layers of a stacked leaf from ``jax.random.split`` of that key, one key per slice. The same seed
gives the same numbers.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from initdiag.nn import prng
from initdiag.nn.initializers import AnyInitializer, DataDependentError
from initdiag.nn.initializers import initializer as resolve_initializer
from initdiag.model.layout import LeafPlan, leaf_paths as leaf_paths, plan

__all__ = ["reinit", "reinit_plan", "leaf_paths"]

_COLUMNS = ("path", "role", "layout", "shape", "stacked", "fan_in", "fan_out", "reason")


def reinit_plan(params: Any, layout: str = "auto"):
    """What :func:`reinit` does to each leaf of ``params``, one row per leaf in
    ``jax.tree_util.tree_leaves`` order, as a ``pandas.DataFrame`` with columns

    * ``path``: the leaf's path (:func:`leaf_paths`);
    * ``role``: ``dense``, ``conv``, ``embedding`` (drawn by ``init``), ``bias`` (drawn by
      ``bias_init``), ``norm_scale`` (set to 1) or ``unchanged``;
    * ``layout``: the resolved layout (``flax``, ``haiku`` or ``equinox``);
    * ``shape``; ``stacked``: the number of stacked layers, 0 when not stacked;
    * ``fan_in``, ``fan_out``: of one layer (a bias: its layer's), NA when not drawn by fans;
    * ``reason``: which rule applied, in words.

    Raises:
      ValueError: for a bad ``layout``, or when ``"auto"`` cannot tell.
    """
    import pandas as pd

    resolved, rows, _ = plan(params, layout)
    frame = pd.DataFrame([(r.path, r.role, resolved, r.shape, r.stacked, r.fan_in, r.fan_out,
                           r.reason) for r in rows], columns=list(_COLUMNS))
    for col in ("stacked", "fan_in", "fan_out"):
        frame[col] = frame[col].astype("Int64")
    return frame


def _resolve(init: Any, what: str) -> AnyInitializer:
    init = resolve_initializer(init)
    if getattr(init, "data_dependent", False):
        raise DataDependentError(
            f"{what}={init.label!r} is data-dependent: its weights are rescaled on a batch of "
            f"inputs, so reinit, which draws fixed distributions, cannot apply it. Use "
            f"initdiag.calibrate with the model and a batch of inputs, or reinit with its "
            f"start, {what}={init.start.label!r}")
    return init


def _drawer(row: LeafPlan, init: AnyInitializer,
            bias_init: AnyInitializer, dtype: Any) -> Callable[[jax.Array], jax.Array] | None:
    """The drawing of one layer of ``row`` from a key; None when the leaf is not drawn."""
    if row.role in ("dense", "conv", "embedding"):
        def weight(key):
            w = init(key, row.canonical, dtype)
            if row.perm is not None:
                w = jnp.transpose(w, row.perm)
            return w.reshape(row.layer_shape)
        return weight
    if row.role == "bias":
        n = math.prod(row.layer_shape)
        return lambda key: bias_init.bias(key, row.fan_in, row.fan_out, dtype)[:n].reshape(
            row.layer_shape)
    return None


def _redraw(row: LeafPlan, leaf: Any, key: jax.Array, init: AnyInitializer,
            bias_init: AnyInitializer) -> Any:
    if row.role == "unchanged":
        return leaf
    if row.role == "norm_scale":
        out = jnp.ones(row.shape, leaf.dtype)
    else:
        # 16-bit floats are drawn in float32, then rounded: jax's QR (orthogonal) has no bfloat16
        dtype = jnp.float32 if jnp.finfo(leaf.dtype).bits < 32 else leaf.dtype
        draw = _drawer(row, init, bias_init, dtype)
        if row.stacked:
            out = jnp.stack([draw(k) for k in jax.random.split(key, row.stacked)])
        else:
            out = draw(key)
        out = out.reshape(row.shape).astype(leaf.dtype)
    return np.asarray(out).astype(leaf.dtype) if isinstance(leaf, np.ndarray) else out


def reinit(params: Any, init: Any, *, seed: Any = 0, bias_init: Any = "zeros",
           layout: str = "auto", usage: dict[int, LeafPlan] | None = None) -> Any:
    """``params`` with every weight redrawn by ``init`` and every bias by ``bias_init``.

    Args:
      params: a parameter pytree: Flax variables or params (dict, FrozenDict, nnx State),
        Haiku params, an Equinox module, or any pytree with one of these layouts.
      init: an initdiag initializer name (``"he_normal"``, ``"orthogonal"``,
        ``"variance_scaling(scale=2, mode=fan_out)"``, ...), an
        :func:`initdiag.initializer` object, or a jax-style callable ``init(key, shape,
        dtype)``, called with one layer's shape in jax's ``[..spatial.., in, out]`` convention.
      seed: an integer or a jax PRNG key (see the module docstring for how leaves get keys).
      bias_init: the biases' initializer (same forms as ``init``); default zeros.
      layout: ``"auto"`` (infer), ``"flax"``, ``"haiku"`` or ``"equinox"``.
      usage: plans by leaf number for leaves the layout leaves unchanged (what
        :func:`initdiag.sweep_fn` knows from how a traced function uses each leaf: a plain-JAX
        model's weights have no framework names).

    Returns:
      A pytree of the same type and structure, leaf dtypes kept, drawn as
      :func:`reinit_plan` describes.

    Raises:
      ValueError: a bad ``init`` / ``bias_init`` name or ``layout`` (naming it and the valid
        choices), ``"auto"`` unable to tell the layout, a data-dependent initializer (LSUV:
        use ``initdiag.calibrate``), or a failed draw (naming the leaf's path).
    """
    init = _resolve(init, "init")
    bias_init = _resolve(bias_init, "bias_init")
    key = prng.as_key(seed)
    _, rows, treedef = plan(params, layout)
    rows = [usage[i] if usage and i in usage and row.role == "unchanged" else row
            for i, row in enumerate(rows)]
    leaves = jax.tree_util.tree_leaves(params)
    out = []
    for i, (row, leaf) in enumerate(zip(rows, leaves)):
        try:
            out.append(_redraw(row, leaf, jax.random.fold_in(key, i), init, bias_init))
        except Exception as e:  # noqa: BLE001 - re-raised with the leaf's path
            raise ValueError(f"reinit: leaf {row.path!r} ({row.role}, shape {row.shape}): "
                             f"{type(e).__name__}: {e}") from e
    return jax.tree_util.tree_unflatten(treedef, out)
