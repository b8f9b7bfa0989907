"""The page of a model report: ``templates/model_report.html.j2`` rendered from model results.

Like the stack report's page (:mod:`.html`): jinja2 with autoescaping (site names, the model's
name, initializer labels, the title and the command line come from the user and are escaped),
images embedded as ``data:`` URIs, nothing fetched.

Page order: title; the diagnosis when given (``verdicts``: a hook for
``initdiag.diagnose(model_result)``, not computed here); the figures with captions stating each
definition; per initializer (median over seeds) the table of sites (whole name, kind, activation,
key metrics) and the table of parameter leaves (:data:`initdiag.model.result.PARAM_COLUMNS`);
the constructs that ran unchanged (skipped) with the reason; the definition of every metric and
column shown; configuration, environment and timings.
"""

from __future__ import annotations

import datetime
import math
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from initdiag.model.result import MODEL_METRICS, PARAM_COLUMNS, PARAM_DEFINITIONS
from initdiag.report.model_figures import by_init, pooled, present

TEMPLATE = "model_report.html.j2"
#: Metrics in the sites table (those defined at some site), in this order.
SITE_TABLE_METRICS = ("var", "grad_rms", "saturation", "zero_frac", "dead_frac", "ch_var",
                      "ch_sq_mean", "branch_ratio", "attn_entropy", "attn_max_logit")
#: The figures' metrics (their definitions are listed whether or not they are in the table).
FIGURE_METRICS = ("var", "grad_rms", "saturation", "zero_frac", "dead_frac", "ch_var",
                  "ch_sq_mean", "branch_var", "skip_var", "branch_ratio", "attn_entropy",
                  "attn_max_logit")


def num(x: Any) -> str:
    """A table cell: 2 significant digits (:func:`initdiag.report.summary.fmt`), "–" for NaN."""
    from initdiag.report.summary import fmt

    if x is None:
        return "–"
    x = float(x)
    return "–" if math.isnan(x) else fmt(x)


def _count(x: Any) -> str:
    x = float(x)
    return "–" if math.isnan(x) else f"{x:.0f}" if x == int(x) else f"{x:g}"


def site_table(results: Sequence[Any], metrics: Sequence[str]) -> list[list[str]]:
    """Rows (index, whole name, kind, activation, median over seeds of each metric)."""
    first = results[0]
    cols = [pooled(results, m)[0] for m in metrics]
    return [[str(i), name, kind, act or "–", *(num(c[i]) for c in cols)]
            for i, (name, kind, act) in enumerate(zip(first.sites, first.kinds,
                                                      first.activations))]


def param_table(results: Sequence[Any]) -> list[list[str]]:
    """Rows of :data:`PARAM_COLUMNS`: the leaf's path, shape, role and fans, and the median over
    seeds of its norms and ratio."""
    frames = [r.params for r in results]
    rows = []
    for k, row in frames[0].iterrows():
        vals = {}
        for col in ("weight_norm", "grad_norm", "grad_weight_ratio"):
            v = np.array([float(f.loc[k, col]) for f in frames])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                vals[col] = float(np.nanmedian(v)) if v.size else float("nan")
        shape = tuple(row["shape"])
        rows.append([str(row["path"]), "(" + ", ".join(map(str, shape)) + (",)" if len(shape) == 1
                                                                             else ")"),
                     str(row["role"]), _count(row["fan_in"]), _count(row["fan_out"]),
                     num(vals["weight_norm"]), num(vals["grad_norm"]),
                     num(vals["grad_weight_ratio"])])
    return rows


def _config_rows(results: Sequence[Any]) -> list[tuple[str, str]]:
    keys = list(dict.fromkeys(k for r in results for k in r.config))
    rows = []
    for key in keys:
        values = dict.fromkeys(str(r.config.get(key)) for r in results)
        rows.append((key, ", ".join(values)))
    rows.append(("seeds", ", ".join(dict.fromkeys(str(r.seed) for r in results))))
    rows.append(("number of sites", str(len(results[0].sites))))
    rows.append(("number of parameter leaves", str(len(results[0].param_rows))))
    return rows


def _init_rows(results: Sequence[Any]) -> list[tuple[str, str]]:
    from initdiag.report.html import describe_init

    rows = {}
    for init in by_init(results):
        rows[init] = ("the weights as passed to probe_fn" if init == "given"
                      else describe_init(init))
    for r in results:
        b = str(r.config.get("bias_init"))
        if b not in ("given", "None"):
            rows.setdefault(f"bias: {b}", describe_init(b))
    return list(rows.items())


def render_model_html(results: Sequence[Any], figures: Sequence[Any], *,
                      title: str | None = None, timings: Mapping[str, float] | None = None,
                      command: str | None = None, verdicts: Sequence[Any] | None = None) -> str:
    """The model report page as a string.

    Args:
      results: the ModelResults (one model; any initializers x seeds).
      figures: from :func:`initdiag.report.model_figures.write_model_figures` (bytes embedded).
      title: shown at the top (escaped); default ``"initdiag report: <model>"``.
      timings: seconds per phase, shown in order.
      command: the command line that made the report (escaped).
      verdicts: the diagnosis (:func:`initdiag.diagnose` of the results, as
        :func:`initdiag.write_report` passes by default): each verdict is listed by its
        ``str()``; None: no diagnosis section.
    """
    from initdiag.probe import environment
    from initdiag.report.html import ENVIRONMENT_KEYS, data_uri, jinja_environment

    results = list(results)
    groups = by_init(results)
    table_metrics = present(results, SITE_TABLE_METRICS)
    shown = present(results, FIGURE_METRICS)
    first = results[0]
    model = str(first.config.get("model"))
    per_init = [{"init": init, "n_seeds": len(group),
                 "sites": site_table(group, table_metrics), "params": param_table(group)}
                for init, group in groups.items()]
    probe_s = sum(float(r.meta.get("timing", {}).get("probe_s", 0.0)) for r in results)
    timing_rows = [(k, f"{v:.2f} s") for k, v in (timings or {}).items()]
    timing_rows.append(("sum of probe runs", f"{probe_s:.2f} s"))
    env = environment()
    figs = [{"name": f.name, "title": f.title, "caption": f.caption,
             "width": f.size[0] if f.size else None, "height": f.size[1] if f.size else None,
             "src": data_uri(Path(f.path).read_bytes()) if f.path else None,
             "skipped": f.skipped} for f in figures]
    return jinja_environment().get_template(TEMPLATE).render(
        title=title or f"initdiag report: {model}", model=model, figures=figs,
        per_init=per_init, table_metrics=table_metrics,
        param_columns=PARAM_COLUMNS, skipped=[dict(s) for s in first.skipped],
        metric_defs=[(m, MODEL_METRICS[m]) for m in shown],
        param_defs=list(PARAM_DEFINITIONS.items()),
        kinds=sorted(set(first.kinds)), verdicts=None if verdicts is None else
        [str(v) for v in verdicts], config_rows=_config_rows(results),
        init_rows=_init_rows(results),
        env_rows=[(k, env[k]) for k in ENVIRONMENT_KEYS if k in env],
        timing_rows=timing_rows, command=command, n_results=len(results),
        n_sites=len(first.sites), setup=", ".join(
            [f"{len(groups)} initializer{'s' if len(groups) > 1 else ''}",
             f"seeds {', '.join(dict.fromkeys(str(r.seed) for r in results))}"]),
        created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
