"""The verdict grid (initializer x activation) shared by the HTML table and the text summary.

Rows are initializers in the order they were probed; columns are activations, split further by
any other configuration key that varies (depth, width, ...). A cell holds the
:class:`initdiag.analysis.diagnosis.Verdict` of that configuration (seeds pooled).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from initdiag.config import SCHEMA
from initdiag.config import varying as config_varying

#: The settings every configuration label shows (schema fields labelled ``"always"``) besides
#: the activation and the initializer: the setup line gives them and the grid's columns are
#: split by them first.
SETUP_FIELDS = tuple(n for n, f in SCHEMA.items()
                     if f.label == "always" and n not in ("activation", "init"))


@dataclasses.dataclass(frozen=True)
class Grid:
    """``rows`` (init labels), ``columns`` (column labels) and ``cells[(row, column)]``."""

    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Any]


def column_label(config: dict, varying: Sequence[str]) -> str:
    """``"tanh"`` or ``"tanh, depth 100"`` when depth varies between configurations."""
    parts = [str(config["activation"])]
    parts += [f"{k.replace('_', ' ')} {config.get(k)}" for k in varying]
    return ", ".join(parts)


def verdict_grid(verdicts: Sequence[Any]) -> Grid:
    """Arrange verdicts by initializer (rows) and activation (+ varying keys, columns)."""
    varying = config_varying([v.config for v in verdicts], exclude=("activation", "init"),
                             order=SETUP_FIELDS)
    rows, cols, cells = [], [], {}
    for v in verdicts:
        row, col = str(v.config["init"]), column_label(v.config, varying)
        if row not in rows:
            rows.append(row)
        if col not in cols:
            cols.append(col)
        cells[(row, col)] = v
    return Grid(rows, cols, cells)


def setup_text(results: Sequence[Any]) -> str:
    """``"depth 50, width 256, batch 256, seed 0"``: every value of each setting (several joined
    by '/', e.g. ``"width 8/64"``; per-layer widths in brackets)."""
    parts = []
    for key in SETUP_FIELDS:
        values = list(dict.fromkeys(
            "[" + ", ".join(map(str, v)) + "]" if isinstance(v, list) else str(v)
            for v in (r.config.get(key) for r in results)))
        parts.append(f"{key} {'/'.join(values)}")
    seeds = list(dict.fromkeys(str(r.seed) for r in results))
    parts.append(f"seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}")
    return ", ".join(parts)


def fmt(x: float) -> str:
    """A number in 2 significant digits: ``0.12``, ``3.4e-17``, ``inf``, ``nan``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.2g}"
    return f"{x:.1e}"


def cell_text(v: Any) -> str:
    """Compact cell: ``"vanishing 2.9e-17"`` (kind and key number)."""
    return f"{v.kind} {fmt(v.key_value)}"


def text_summary(verdicts: Sequence[Any], header: str = "") -> list[tuple[str, str | None]]:
    """The one-screen summary as (text, kind) lines; ``kind`` (or None) lets a terminal colour
    a line segment. Each grid line is returned as one entry per cell so callers can style cells.
    """
    grid = verdict_grid(verdicts)
    w0 = max([len(r) for r in grid.rows] + [len("initializer")]) + 2
    widths = [max([len(c)] + [len(cell_text(grid.cells[(r, c)])) for r in grid.rows
                              if (r, c) in grid.cells]) + 2 for c in grid.columns]
    lines: list[tuple[str, str | None]] = []
    if header:
        lines.append((header + "\n", None))
    lines.append(("initializer".ljust(w0)
                  + "".join(c.ljust(w) for c, w in zip(grid.columns, widths)) + "\n", None))
    for r in grid.rows:
        lines.append((r.ljust(w0), None))
        for c, w in zip(grid.columns, widths):
            v = grid.cells.get((r, c))
            lines.append((cell_text(v).ljust(w) if v else "-".ljust(w), v.kind if v else None))
        lines.append(("\n", None))
    keys = {}
    for v in verdicts:
        keys.setdefault(v.kind, v.key_label)
    lines.append(("numbers: " + "; ".join(f"{k}: {lab}" for k, lab in keys.items()) + "\n",
                  None))
    n_ok = sum(v.ok for v in verdicts)
    lines.append((f"healthy: {n_ok} of {len(verdicts)} configurations\n", None))
    return lines
