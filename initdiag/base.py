"""Type vocabulary shared by every initdiag module (no imports of other layers)."""

from __future__ import annotations

import difflib
import math
import numbers
from typing import Any, Protocol, Sequence

import jax
import numpy as np

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


def same_value(a: Any, b: Any) -> bool:
    """``a == b``, with two float NaNs counted as the same value."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def check_int(param: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int, or ``ValueError`` naming ``param`` unless it is an integer >= minimum.

    Booleans and non-integral floats are refused (``width=4.7`` is not silently 4).
    """
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)) and not (
            isinstance(value, float) and value.is_integer()):
        raise ValueError(f"{param} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{param} must be an integer >= {minimum}; got {value!r}")
    return int(value)


#: Integer seeds are 0 .. SEEDS - 1: a jax key holds 32 bits of an integer seed, so seed s and
#: s + 2**32 (or -1 and 2**32 - 1) would give the same numbers under different names.
SEEDS = 2**32


def check_seed(value: Any) -> int:
    """An integer seed as an int, or ``ValueError`` unless it is in [0, 2**32 - 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"seed must be an integer in [0, {SEEDS - 1}] or a jax PRNG key; got "
                         f"{value!r}")
    if not 0 <= value < SEEDS:
        raise ValueError(f"seed must be an integer in [0, {SEEDS - 1}] (a jax key keeps 32 bits "
                         f"of an integer seed: a negative or larger one would repeat another "
                         f"seed's numbers); got {value}")
    return int(value)


def check_float(param: str, value: Any, *, finite: bool = True) -> float:
    """``value`` as a float, or ``ValueError`` naming ``param`` when it is not a (finite) number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{param} must be a number; got {value!r}")
    value = float(value)
    if finite and not math.isfinite(value):
        raise ValueError(f"{param} must be a finite number; got {value!r}")
    return value


def check_bool(param: str, value: Any) -> bool:
    """``value`` when it is a bool (numpy's too), else ``ValueError`` naming ``param``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"{param} must be True or False; got {value!r}")
