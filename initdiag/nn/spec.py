"""Parse and format compact specs such as ``"normal(std=0.1)"`` or ``"leaky_relu(slope=0.2)"``.

Used wherever a name may carry parameters as text: the CLI, config files and result labels.
"""

from __future__ import annotations

import ast
from typing import Any, Mapping

from initdiag.base import same_value


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name(k=v, ...)"`` into ``("name", {"k": v, ...})``.

    Values are Python literals (numbers, strings, booleans); a bare word is kept as a string,
    so ``variance_scaling(mode=fan_in)`` works unquoted.

    Raises:
      ValueError: naming the text when it is not of that form.
    """
    text = text.strip()
    if "(" not in text:
        if not text:
            raise ValueError("empty name")
        return text, {}
    if not text.endswith(")"):
        raise ValueError(f"cannot parse {text!r}: expected name(key=value, ...)")
    name, _, inner = text[:-1].partition("(")
    name = name.strip()
    params: dict[str, Any] = {}
    for part in split_top_level(inner):
        key, eq, value = part.partition("=")
        if not eq or not key.strip().isidentifier():
            raise ValueError(f"cannot parse {part!r} in {text!r}: expected key=value")
        params[key.strip()] = _literal(value.strip())
    return name, params


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses: ``"a(x=1,y=2),b"`` -> ``["a(x=1,y=2)", "b"]``."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def format_spec(name: str, params: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """``name(k=v)`` listing only parameters that differ from ``defaults``; inverse of parse."""
    shown = [f"{k}={_fmt(v)}" for k, v in params.items() if k not in defaults or not same_value(v, defaults[k])]
    return f"{name}({', '.join(shown)})" if shown else name


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return v
    return repr(v)
