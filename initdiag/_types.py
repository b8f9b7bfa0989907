"""Type vocabulary shared by every initdiag module (no imports of other layers)."""

from __future__ import annotations

import difflib
from typing import Any, Protocol, Sequence

import jax

PRNGKey = jax.Array
Shape = Sequence[int]
Array = jax.Array


class Initializer(Protocol):
    """jax's initializer signature: ``init(key, shape, dtype) -> array``."""

    def __call__(self, key: PRNGKey, shape: Shape, dtype: Any = ...) -> Array:
        ...


def check_one_of(param: str, value: Any, options: Sequence[Any]) -> None:
    """Raise ``ValueError`` naming ``param``, the bad ``value`` and the valid options."""
    if value in options:
        return
    raise ValueError(unknown_choice_message(param, value, options))


def unknown_choice_message(param: str, value: Any, options: Sequence[Any]) -> str:
    """A one-line error: the bad value, the closest valid names, and all valid names."""
    names = [str(o) for o in options]
    close = difflib.get_close_matches(str(value), names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (f"invalid {param} {value!r}.{hint} "
                    f"Valid choices: {', '.join(names)}.")
