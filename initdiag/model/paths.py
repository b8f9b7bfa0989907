"""Readable names for the leaves of a parameter pytree.

A leaf's path is its key path written as dict keys joined by ``/``, sequence indices as ``[i]``
and attributes as ``.name`` (the leading dot dropped): Flax ``params/Dense_0/kernel``, Haiku
``mlp/~/linear_0/w``, Equinox ``layers[2].weight``. The *owner* of a leaf is that path without
its last key (``params/Dense_0``, ``mlp/~/linear_0``, ``layers[2]``): what a probe site fed by the
leaf is called.
"""

from __future__ import annotations

from typing import Any

import jax


def _key_text(key: Any) -> tuple[str, str]:
    """(separator, text) of one key-path entry."""
    tu = jax.tree_util
    if isinstance(key, tu.DictKey):
        return "/", str(key.key)
    if isinstance(key, tu.SequenceKey):
        return "", f"[{key.idx}]"
    if isinstance(key, tu.GetAttrKey):
        return ".", key.name
    if isinstance(key, tu.FlattenedIndexKey):
        return "", f"[{key.key}]"
    return "/", str(key)


def path_text(path: tuple) -> str:
    """The readable form of a jax key path (see the module docstring)."""
    out = ""
    for key in path:
        sep, text = _key_text(key)
        out += (text if not out or sep == "" else sep + text)
    return out


def owner_text(path: tuple) -> str:
    """The path without its last key; the whole path when it has one key only."""
    return path_text(path[:-1]) if len(path) > 1 else path_text(path)


