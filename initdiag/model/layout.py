"""Which leaf of a model's parameter pytree is what: its path, role, layout and fans.

A leaf's **path** is its place in the pytree, written as dict keys joined by ``/``, sequence
indices as ``[i]`` and attributes as ``.name`` (no leading dot at the start):
``params/Dense_0/kernel`` (Flax), ``mlp/~/linear_0/w`` (Haiku), ``layers[2].weight`` (Equinox),
``lin/kernel.value`` (an ``nnx.State``: the array is the ``value`` of a Variable).

A weight slice (one layer) is drawn in jax's convention, ``[..spatial.., in, out]`` with
``receptive = prod(spatial)``, ``fan_in = in * receptive``, ``fan_out = out * receptive``
(:mod:`jax.nn.initializers`), then arranged into the leaf's layout:

=========================  ==================================  ==========================
layout / leaf              axes of one layer                   drawn as
=========================  ==================================  ==========================
Flax, Haiku dense          kernel / w ``[in, out]``            as is
Flax, Haiku conv           ``[..spatial.., in, out]`` (HWIO)   as is
Haiku ConvNDTranspose      w ``[..spatial.., out, in]``        last two axes swapped
Flax attention q/k/v       kernel ``[in, heads, head_dim]``    ``[in, heads*head_dim]``
Flax attention out         kernel ``[heads, head_dim, out]``   ``[heads*head_dim, out]``
embedding tables           ``[vocab, dim]``                    dense ``[in, out]``
Equinox Linear             weight ``[out, in]``                transposed
Equinox Conv(Transpose)    weight ``[out, in, ..spatial..]``   ``[..spatial.., in, out]``
=========================  ==================================  ==========================

A **stacked** leaf (``nn.scan``, ``hk.layer_stack``, ``eqx.filter_vmap``) has leading layer
axes: each slice along them is one layer. Their number is: for Equinox, the leaf's ndim minus
the ndim its module type needs; for Flax and Haiku, the leading axes of the layer's bias
(``[L, out]`` next to ``[L, in, out]``); without a bias, 0 for a kernel under a module whose
name contains ``conv`` (Haiku's ``convN_d`` names give the spatial rank), else every axis
before the last two (a 3-D kernel is taken as a stack of dense layers, and the plan says so).

Norm scales (``scale``; Equinox norm ``weight``) are set to 1. Biases (``bias``, ``b``,
Haiku ``offset``) are drawn with their layer's fans, or, with no layer (norm offsets), with
``fan_in = fan_out = its size``. Everything else, floating arrays of unknown role included, is
left unchanged, and the plan says why.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from initdiag.base import check_one_of
from initdiag.model.paths import path_text as path_string

LAYOUTS = ("auto", "flax", "haiku", "equinox")
ROLES = ("dense", "conv", "embedding", "norm_scale", "bias", "unchanged")
_NAMES = {  # leaf names of the dict layouts
    "flax": {"weight": "kernel", "bias": "bias", "offset": None, "scale": "scale",
             "embedding": "embedding"},
    "haiku": {"weight": "w", "bias": "b", "offset": "offset", "scale": "scale",
              "embedding": "embeddings"},
}
_HAIKU_SIGNS = {"w", "b", "offset", "embeddings"}
_FLAX_SIGNS = {"kernel", "bias", "embedding"}
_ATTENTION = ("query", "key", "value", "out")


@dataclasses.dataclass(frozen=True)
class LeafPlan:
    """What :func:`initdiag.model.reinit.reinit` does to one leaf (one row of the plan).

    ``stacked``: the number of stacked layers (0 when not stacked); ``layer_shape``: one
    layer's shape (``shape`` without the stacked axes). A weight layer is drawn as
    ``init(key, canonical)`` (jax's ``[..spatial.., in, out]``), transposed by ``perm`` when
    set, and reshaped to ``layer_shape``. A bias layer is the first ``prod(layer_shape)``
    entries of ``bias_init.bias(key, fan_in, fan_out)``.
    """

    path: str
    role: str
    shape: tuple[int, ...]
    stacked: int
    fan_in: int | None
    fan_out: int | None
    reason: str
    layer_shape: tuple[int, ...] = ()
    canonical: tuple[int, ...] | None = None
    perm: tuple[int, ...] | None = None


# ---------------------------------------------------------------- paths and tree walking

def _key_text(k: Any) -> tuple[str, Any]:
    """``(kind, name)`` of one jax path entry: kind is "dict", "index" or "attr"."""
    if isinstance(k, jax.tree_util.DictKey):
        return "dict", k.key
    if isinstance(k, jax.tree_util.SequenceKey):
        return "index", k.idx
    if isinstance(k, jax.tree_util.GetAttrKey):
        return "attr", k.name
    if isinstance(k, jax.tree_util.FlattenedIndexKey):
        return "index", k.key
    return "index", str(k)


def leaf_paths(params: Any) -> list[str]:
    """The path of every leaf of ``params``, in ``jax.tree_util.tree_leaves`` order."""
    return [path_string(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _child(obj: Any, k: Any) -> Any:
    if _is_variable(obj):  # its one child is its value
        return _unwrap(obj)
    kind, name = _key_text(k)
    try:
        if kind == "attr":
            return getattr(obj, name)
        if kind == "dict" or isinstance(k, jax.tree_util.SequenceKey):
            return obj[name]
    except (KeyError, IndexError, TypeError, AttributeError):
        pass
    return None


def _nnx():
    """flax.nnx when it has been imported (nothing here imports a framework)."""
    return sys.modules.get("flax.nnx")


def _is_variable(obj: Any) -> bool:
    nnx = _nnx()
    return nnx is not None and isinstance(obj, nnx.Variable)


def _unwrap(obj: Any) -> Any:
    if not _is_variable(obj):
        return obj
    return obj.get_value() if hasattr(obj, "get_value") else obj.value


@dataclasses.dataclass(frozen=True)
class _Leaf:
    """A leaf as the rules see it: ``names`` from the root (nnx's ``.value`` dropped),
    ``parent`` the dict or module holding it, ``outer`` the one holding ``parent``,
    ``variable`` its nnx Variable (or None)."""

    path: str
    names: tuple
    value: Any
    parent: Any
    outer: Any
    variable: Any

    @property
    def name(self) -> Any:
        return self.names[-1] if self.names else None

    def up(self, n: int) -> str:
        """The name ``n`` levels above the leaf ('' when none)."""
        return str(self.names[-1 - n]) if len(self.names) > n else ""

    def kind(self, n: int = 1) -> str:
        """The class name of the module ``n`` levels up ('' for a dict or when unknown)."""
        obj = self.parent if n == 1 else self.outer
        return "" if obj is None or isinstance(obj, Mapping) else type(obj).__name__

    def sibling(self, name: str | None) -> Any:
        found = _unwrap(_get(self.parent, name))
        return found if hasattr(found, "shape") and hasattr(found, "dtype") else None


def _get(obj: Any, name: str | None) -> Any:
    if name is None or obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _leaves(params: Any) -> tuple[list[_Leaf], Any]:
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    out = []
    for path, value in flat:
        chain = [params]
        for k in path:
            chain.append(None if chain[-1] is None else _child(chain[-1], k))
        names = [_key_text(k)[1] for k in path]
        variable = None
        if len(chain) >= 2 and _is_variable(chain[-2]):
            variable, names, chain = chain[-2], names[:-1], chain[:-1]
        parent = chain[-2] if len(chain) >= 2 else None
        outer = chain[-3] if len(chain) >= 3 else None
        out.append(_Leaf(path_string(path), tuple(names), value, parent, outer, variable))
    return out, treedef


# ---------------------------------------------------------------- layout detection

def _is_equinox(params: Any) -> bool:
    eqx = sys.modules.get("equinox")
    if eqx is None:
        return False
    found = jax.tree_util.tree_leaves(params, is_leaf=lambda x: isinstance(x, eqx.Module))
    return isinstance(params, eqx.Module) or any(isinstance(x, eqx.Module) for x in found)


def resolve_layout(params: Any, layout: str = "auto") -> str:
    """``layout`` checked, or for ``"auto"`` inferred from ``params`` (see the module docstring).

    Raises:
      ValueError: for a bad ``layout``, or when ``"auto"`` cannot tell, saying what it saw.
    """
    check_one_of("layout", layout, LAYOUTS)
    if layout != "auto":
        return layout
    if _is_equinox(params):
        return "equinox"
    nnx = _nnx()
    if nnx is not None and isinstance(params, (nnx.State, nnx.Module)):
        return "flax"
    if not isinstance(params, Mapping):
        raise ValueError(
            f"layout='auto' cannot tell the layout of a {type(params).__name__}: it is not an "
            f"Equinox module, an nnx State or a dict of parameters; pass layout='flax', "
            f"'haiku' or 'equinox'")
    leaves, _ = _leaves(params)
    names = {str(leaf.name) for leaf in leaves if hasattr(leaf.value, "shape")}
    modules = {str(n) for leaf in leaves for n in leaf.names[:-1]}
    haiku = names & _HAIKU_SIGNS or {m for m in modules if "/~/" in m}
    flax = names & _FLAX_SIGNS or ({"params"} & set(map(str, params)))
    if haiku and not flax:
        return "haiku"
    if flax and not haiku:
        return "flax"
    seen = sorted(names)[:12]
    why = (f"both Haiku signs {sorted(haiku)[:4]} and Flax signs {sorted(flax)[:4]}"
           if haiku else "neither Haiku leaf names (w, b, offset, embeddings, '/~/' module paths) "
                         "nor Flax ones (kernel, bias, embedding, a 'params' collection)")
    raise ValueError(f"layout='auto' cannot tell this {type(params).__name__}'s layout: its leaf "
                     f"names {seen} show {why}; pass layout='flax', 'haiku' or 'equinox'")


# ---------------------------------------------------------------- rules

def _weight(leaf: _Leaf, s: int, canonical: tuple, perm: tuple | None, role: str,
            reason: str) -> LeafPlan:
    shape = tuple(leaf.value.shape)
    receptive = math.prod(canonical[:-2])
    return LeafPlan(leaf.path, role, shape, math.prod(shape[:s]) if s else 0,
                    canonical[-2] * receptive, canonical[-1] * receptive, reason,
                    shape[s:], canonical, perm)


def _unchanged(leaf: _Leaf, reason: str) -> LeafPlan:
    shape = tuple(getattr(leaf.value, "shape", ()))
    return LeafPlan(leaf.path, "unchanged", shape, 0, None, None, reason, shape)


def _scale(leaf: _Leaf, reason: str) -> LeafPlan:
    shape = tuple(leaf.value.shape)
    return LeafPlan(leaf.path, "norm_scale", shape, 0, None, None, reason, shape)


def _bias(leaf: _Leaf, layer: LeafPlan | None, reason: str) -> LeafPlan:
    """A bias with its layer's stacking and fans when it fits them, else its own size."""
    shape = tuple(leaf.value.shape)
    if layer is not None and layer.role != "unchanged":
        s = len(layer.shape) - len(layer.layer_shape)
        n = math.prod(shape[s:])
        if shape[:s] == layer.shape[:s] and 0 < n <= layer.fan_out:
            return LeafPlan(leaf.path, "bias", shape, layer.stacked, layer.fan_in, layer.fan_out,
                            f"{reason}, fans of its layer {layer.path}", shape[s:])
    n = math.prod(shape)
    return LeafPlan(leaf.path, "bias", shape, 0, n, n, f"{reason} without a layer: "
                    f"fan_in = fan_out = its size", shape)


def _dict_weight(leaf: _Leaf, layout: str) -> LeafPlan:
    """A Flax kernel or Haiku w: dense, conv or attention, stacked or not."""
    shape = tuple(leaf.value.shape)
    module = leaf.up(1).split("/")[-1] if layout == "haiku" else leaf.up(1)
    name = f"{'Flax' if layout == 'flax' else 'Haiku'} {leaf.name}"
    if layout == "flax" and module in _ATTENTION and len(shape) >= 3 and _attention(leaf):
        s = len(shape) - 3
        a, b, c = shape[s:]
        canonical = (a * b, c) if module == "out" else (a, b * c)
        axes = "[heads, head_dim, out]" if module == "out" else "[in, heads, head_dim]"
        return _weight(leaf, s, canonical, None, "dense", _stacked_text(
            f"{name} of attention {module} {axes}", s, "every axis before the last three"))
    if len(shape) < 2:
        return _unchanged(leaf, f"{name} with fewer than 2 axes: no fans")
    transposed = layout == "haiku" and "conv" in module.lower() and "transpose" in module.lower()
    out_axis = -2 if transposed else -1
    bias = leaf.sibling(_NAMES[layout]["bias"])
    spatial = re.search(r"conv(\d)_d", module.lower()) if layout == "haiku" else None
    if (bias is not None and bias.ndim >= 1 and bias.shape[-1] == shape[out_axis]
            and bias.ndim - 1 <= len(shape) - 2 and tuple(bias.shape[:-1]) == shape[:bias.ndim - 1]):
        s, how = bias.ndim - 1, "the leading axes of its bias"
    elif "conv" in module.lower() or "Conv" in leaf.kind():
        n = int(spatial.group(1)) if spatial else len(shape) - 2
        s = max(len(shape) - 2 - n, 0)
        how = (f"its module {module!r} (conv{n}_d)" if spatial else
               f"assumed: module {module!r} is a conv with {n} spatial axes (no bias to tell)")
    else:
        s = len(shape) - 2
        how = f"assumed: module {module!r} not named conv and no bias to tell"
    layer = shape[s:]
    if transposed:
        canonical, perm = layer[:-2] + (layer[-1], layer[-2]), tuple(range(len(layer) - 2)) + (
            len(layer) - 1, len(layer) - 2)
        axes, role = "[..spatial.., out, in] (transposed conv)", "conv"
    elif len(layer) == 2:
        canonical, perm, axes, role = layer, None, "[in, out]", "dense"
    else:
        canonical, perm, axes, role = layer, None, "[..spatial.., in, out] (HWIO)", "conv"
    return _weight(leaf, s, canonical, perm, role, _stacked_text(f"{name} {axes}", s, how))


def _attention(leaf: _Leaf) -> bool:
    """Whether the leaf's module is a projection of a Flax attention module: its module (or
    dict key) is named like one, or holds query, key, value and out (an nnx State)."""
    outer = f"{leaf.up(2)} {leaf.kind(2)}".lower()
    return "attention" in outer or all(_get(leaf.outer, n) is not None for n in _ATTENTION)


def _stacked_text(text: str, s: int, how: str) -> str:
    return f"{text}, stacked on {s} leading axis(es): {how}" if s else text


def _dict_rule(leaf: _Leaf, layout: str, plan_of) -> LeafPlan:
    names = _NAMES[layout]
    label = "Flax" if layout == "flax" else "Haiku"
    if leaf.name == names["weight"]:
        return _dict_weight(leaf, layout)
    if leaf.name == names["scale"]:
        return _scale(leaf, f"{label} norm scale: set to 1")
    if leaf.name == names["embedding"] and leaf.value.ndim >= 2:
        s = leaf.value.ndim - 2
        return _weight(leaf, s, tuple(leaf.value.shape[s:]), None, "embedding",
                       f"{label} {leaf.name} [vocab, dim] drawn as dense [in, out]")
    if leaf.name in (names["bias"], names["offset"]):
        layer = plan_of(names["weight"]) if leaf.name == names["bias"] else None
        return _bias(leaf, layer, f"{label} {leaf.name}")
    return _unchanged(leaf, f"{label} parameter name {leaf.name!r} has no layout rule")


def _equinox_rule(leaf: _Leaf, plan_of) -> LeafPlan:
    eqx = sys.modules.get("equinox")
    module, shape = leaf.parent, tuple(leaf.value.shape)
    if eqx is None or not isinstance(module, eqx.Module):
        return _unchanged(leaf, "not held by an Equinox module")
    kind = type(module).__name__
    norms = (eqx.nn.LayerNorm, eqx.nn.GroupNorm, eqx.nn.RMSNorm, eqx.nn.BatchNorm)
    if leaf.name == "weight" and isinstance(module, eqx.nn.Linear) and len(shape) >= 2:
        s = len(shape) - 2
        out, inp = shape[-2:]
        return _weight(leaf, s, (inp, out), (1, 0), "dense", _stacked_text(
            "Equinox Linear.weight [out, in]", s, "ndim above Linear's 2"))
    if leaf.name == "weight" and isinstance(module, (eqx.nn.Conv, eqx.nn.ConvTranspose)):
        n = module.num_spatial_dims
        s = len(shape) - n - 2
        if s < 0:
            return _unchanged(leaf, f"Equinox {kind}.weight has {len(shape)} axes, needs {n + 2}")
        out, inp, *sp = shape[s:]
        perm = (n + 1, n) + tuple(range(n))
        return _weight(leaf, s, (*sp, inp, out), perm, "conv", _stacked_text(
            f"Equinox {kind}.weight [out, in, ..spatial..] (OIHW)", s, f"ndim above {n + 2}"))
    if leaf.name == "weight" and isinstance(module, eqx.nn.Embedding) and len(shape) >= 2:
        s = len(shape) - 2
        return _weight(leaf, s, shape[s:], None, "embedding",
                       "Equinox Embedding.weight [vocab, dim] drawn as dense [in, out]")
    if leaf.name == "weight" and isinstance(module, norms):
        return _scale(leaf, f"Equinox {kind}.weight (norm scale): set to 1")
    if leaf.name == "bias" and isinstance(module, norms):
        per = len(module.shape) if isinstance(getattr(module, "shape", None), tuple) else 1
        s = max(len(shape) - per, 0)
        n = math.prod(shape[s:])
        return LeafPlan(leaf.path, "bias", shape, math.prod(shape[:s]) if s else 0, n, n,
                        f"Equinox {kind}.bias (norm offset) without a layer: fan_in = fan_out "
                        f"= its size", shape[s:])
    if leaf.name == "bias" and isinstance(module, (eqx.nn.Linear, eqx.nn.Conv, eqx.nn.ConvTranspose)):
        return _bias(leaf, plan_of("weight"), f"Equinox {kind}.bias")
    return _unchanged(leaf, f"no layout rule for Equinox {kind}.{leaf.name}")


def _rule(leaf: _Leaf, layout: str, params: Any, plan_of) -> LeafPlan:
    value = leaf.value
    if not (hasattr(value, "dtype") and hasattr(value, "shape")
            and jnp.issubdtype(value.dtype, jnp.floating)):
        return _unchanged(leaf, "not a floating array")
    nnx = _nnx()
    if leaf.variable is not None and nnx is not None and not isinstance(leaf.variable, nnx.Param):
        return _unchanged(leaf, f"nnx {type(leaf.variable).__name__}, not a Param")
    if (layout == "flax" and leaf.variable is None and isinstance(params, Mapping)
            and "params" in params and leaf.names[0] != "params"):
        return _unchanged(leaf, f"Flax collection {leaf.names[0]!r}: only 'params' is redrawn")
    if layout == "equinox":
        return _equinox_rule(leaf, plan_of)
    return _dict_rule(leaf, layout, plan_of)


def plan(params: Any, layout: str = "auto") -> tuple[str, list[LeafPlan], Any]:
    """``(resolved layout, one LeafPlan per leaf in tree_leaves order, treedef)``."""
    layout = resolve_layout(params, layout)
    leaves, treedef = _leaves(params)
    index = {leaf.names: i for i, leaf in enumerate(leaves)}
    memo: dict[int, LeafPlan] = {}

    def plan_at(i: int) -> LeafPlan:
        if i not in memo:
            leaf = leaves[i]

            def plan_of(name: str) -> LeafPlan | None:  # a sibling's plan (a bias's layer)
                j = index.get(leaf.names[:-1] + (name,))
                return None if j is None or j == i else plan_at(j)

            memo[i] = _rule(leaf, layout, params, plan_of)
        return memo[i]

    return layout, [plan_at(i) for i in range(len(leaves))], treedef
