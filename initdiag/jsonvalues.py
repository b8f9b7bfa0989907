"""Numbers in strict JSON: how results, baselines and reports write NaN and infinities.

Floats are written with Python's shortest round-trip repr, so float64 values load back bit for
bit; NaN, Infinity and -Infinity are written as the strings ``"NaN"``, ``"Infinity"``,
``"-Infinity"`` so the file stays strict JSON (``allow_nan=False``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Iterable

import numpy as np

#: The strings that stand for the non-finite floats.
SPECIALS: dict[str, float] = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into Python numbers and lists, and
    non-finite floats into their strings (:data:`SPECIALS`), recursively through mappings,
    lists and tuples. Anything else is returned as it is."""
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return encode(value.item())
        # integers, booleans and all-finite floats are JSON as they are (the fast path of
        # large arrays such as histograms); otherwise element by element
        if value.dtype.kind in "iub" or (value.dtype.kind == "f" and np.isfinite(value).all()):
            return value.tolist()
        return [encode(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode_scalar(v: Any) -> Any:
    """The float a :data:`SPECIALS` string stands for; any other value as it is."""
    return SPECIALS.get(v, v) if isinstance(v, str) else v


def float_array(values: Iterable[Any]) -> np.ndarray:
    """A float64 array from encoded numbers (strings of :data:`SPECIALS` decoded)."""
    return np.array([SPECIALS[v] if isinstance(v, str) else v for v in values], dtype=np.float64)
