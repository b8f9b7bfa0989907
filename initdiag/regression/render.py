"""Text rendering of a :class:`~initdiag.regression.compare.Comparison` (pytest-regressions style).

The report lists, in order: what is on one side only (configs, metrics), the error statistics,
and a table of the drifting layers grouped by config and seed, capped at ``max_rows`` rows.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from initdiag.regression.compare import Comparison

#: Most rows a deviation table shows (like pytest-regressions' THRESHOLD).
MAX_ROWS = 100


def _f(v: float) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.6g}"


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return ["  " + fmt.format(*header), *("  " + fmt.format(*r) for r in rows)]


def render_comparison(cmp: "Comparison", max_rows: int = MAX_ROWS) -> str:
    """The readable report of ``cmp`` (a single line when it passed)."""
    if cmp.passed:
        new = sorted({m for _, _, m in cmp.extra_metrics})
        return f"initdiag: {cmp.n_compared} values within tolerance." + (
            f" Not in the baseline, not checked: {', '.join(new)}." if new else "")
    out: list[str] = []
    for title, items in (("In the baseline but not in the current results",
                          [f"{c}, seed {s}" for c, s in cmp.missing]),
                         ("In the current results but not in the baseline",
                          [f"{c}, seed {s}" for c, s in cmp.extra]),
                         ("Sites in the baseline but not in the current results",
                          list(cmp.missing_sites)),
                         ("Sites in the current results but not in the baseline",
                          list(cmp.extra_sites)),
                         ("Metrics in the baseline but not in the current results",
                          [f"{c}, seed {s}: {m}" for c, s, m in cmp.missing_metrics]),
                         ("Metrics in the current results but not in the baseline (not "
                          "checked)",
                          [f"{c}, seed {s}: {m}" for c, s, m in cmp.extra_metrics])):
        if items:
            out.append(f"{title} ({len(items)}):")
            out += [f"  {x}" for x in items[:max_rows]]
            if len(items) > max_rows:
                out.append(f"  ... and {len(items) - max_rows} more")
    if cmp.n_compared == 0:
        out.append("No values were compared (no config, seed and metric on both sides): a "
                   "comparison of nothing does not pass.")
    if cmp.changes:
        out.append("Closest baseline config, per new config:")
        out += [f"  {x}" for x in cmp.changes[:max_rows]]
    devs = cmp.deviations
    if devs:
        st = cmp.statistics()
        out.append(f"{len(devs)} of {cmp.n_compared} values out of tolerance.")
        out.append("Error statistics over them: "
                   f"abs max {_f(st['max_abs'])} mean {_f(st['mean_abs'])}; "
                   f"rel max {_f(st['max_rel'])} mean {_f(st['mean_rel'])}; "
                   f"|log10 ratio| max {_f(st['max_log10'])} mean {_f(st['mean_log10'])}")
        tols = "; ".join(f"{m} {t.describe()}" for m, t in cmp.tolerances.items()
                         if any(d.metric == m for d in devs))
        out.append(f"Tolerances: {tols}")
        shown = devs[:max_rows]
        group: tuple[str, int] | None = None
        rows: list[list[str]] = []
        where = ("site" if cmp.model else "where" if any(d.site is not None for d in devs)
                 else "layer")  # training runs: "step t, layer l"
        header = ["metric", where, "expected", "got", "error", "tolerance"]
        for d in shown:
            if (d.config, d.seed) != group:
                if rows:
                    out += _table(rows, header)
                    rows = []
                group = (d.config, d.seed)
                out.append(f"{d.config}, seed {d.seed}:")
            rows.append([d.metric, d.site if d.site is not None else str(d.layer), _f(d.expected), _f(d.got),
                         f"{_f(d.error)} ({d.kind})", _f(d.tolerance)])
        if rows:
            out += _table(rows, header)
        if len(devs) > max_rows:
            out.append(f"... and {len(devs) - max_rows} more deviations (showing the first "
                       f"{max_rows})")
    return "\n".join(out)
