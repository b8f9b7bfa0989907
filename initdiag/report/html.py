"""The self-contained HTML report: one file, images embedded, nothing fetched.

Rendered with jinja2 from ``templates/report.html.j2`` with autoescaping on, so every string that
comes from the user (title, initializer and activation labels, the command line) is escaped.
Images are embedded as ``data:image/png;base64`` URIs; the page has no scripts, no external fonts,
stylesheets or links that load anything.

Page order: title, verdict table (initializer x activation, coloured by verdict, with the key
number), suggestions, figures with one-sentence captions that state each definition (a figure
that does not apply to the run is replaced by a note saying why), with ``--train`` the training
section (each configuration's step-0 verdict beside its outcome, then the training figures), the
configuration with what each initializer is exactly, the diagnosis thresholds, the environment
and the timings.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from initdiag.fileio import atomic_write_text
from initdiag.report.figures import WrittenFigure
from initdiag.report.summary import fmt, setup_text, verdict_grid
from initdiag.config import FIELD_NAMES
from initdiag.results import SweepResult

TEMPLATE = "report.html.j2"
#: Environment fields shown, in order (from ``result.meta["environment"]``).
ENVIRONMENT_KEYS = ("initdiag", "jax", "jaxlib", "numpy", "python", "platform", "device",
                    "device_count")
def jinja_environment():
    """The jinja2 environment of the report templates (``templates/``): autoescaping on,
    undefined names an error."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _config_rows(sweep: SweepResult) -> list[tuple[str, str]]:
    rows = []
    for key in FIELD_NAMES:  # every field of initdiag.ProbeConfig
        values = list(dict.fromkeys(str(r.config.get(key)) for r in sweep))
        rows.append((key, ", ".join(values)))
    rows.append(("seeds", ", ".join(str(s) for s in dict.fromkeys(r.seed for r in sweep))))
    return rows


def describe_init(label: str, widths: Sequence[Any] = ()) -> str:
    """What an initializer label means exactly: its distribution (``describe()``), its
    parameters and, for each layer width of the run (square layers), the variance of one weight
    entry: ``"N(0, (gain*std)^2) with std=0.01, gain=1; Var(W_ij) = 0.0001, sigma_w^2 =
    fan_in Var(W_ij) = 0.0256 at width 256"``."""
    from initdiag.nn.initializers import initializer

    try:
        ini = initializer(label)
    except (ValueError, TypeError):
        return "recorded by name only"
    text = ini.describe()
    name = getattr(ini, "label", label)
    if text.startswith(f"{name}: "):
        text = text[len(name) + 2:]
    kwargs = getattr(ini, "kwargs", None)
    if kwargs and ("gain" in text or set(kwargs) != {"gain"}):
        text += " with " + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                     for k, v in kwargs.items())
    at = []
    for width in widths:
        if not isinstance(width, int) or isinstance(width, bool):
            continue
        try:
            var = ini.weight_variance(width, width)
        except (ValueError, TypeError, KeyError):
            var = None
        if var is not None and var == var:
            at.append(f"Var(W_ij) = {var:.4g}, sigma_w^2 = fan_in Var(W_ij) = {width * var:.4g} "
                      f"at width {width}")
    return "; ".join([text] + at)


def _init_rows(sweep: SweepResult) -> list[tuple[str, str]]:
    """(label, exact description) of every weight initializer and bias initializer used."""
    widths = list(dict.fromkeys(r.config.get("width") for r in sweep
                                if not isinstance(r.config.get("width"), list)))
    rows: dict[str, str] = {}
    for r in sweep:
        rows.setdefault(r.config["init"], describe_init(r.config["init"], widths))
    for r in sweep:
        if r.config.bias is not None:
            rows.setdefault(f"bias: {r.config.bias}", describe_init(r.config.bias))
    return list(rows.items())


def _suggestions(verdicts: Sequence[Any]) -> list[tuple[str, list[str]]]:
    """Unique suggestions of the non-healthy verdicts, each with the configs it applies to."""
    out: dict[str, list[str]] = {}
    for v in verdicts:
        if not v.ok:
            out.setdefault(v.suggestion, []).append(
                f"{v.config['activation']} / {v.config['init']}")
    return list(out.items())


def _key_labels(verdicts: Sequence[Any]) -> list[tuple[str, str]]:
    out: dict[str, str] = {}
    for v in verdicts:
        out.setdefault(v.kind, v.key_label)
    return list(out.items())


def _figure_records(figures: Sequence[WrittenFigure]) -> list[dict[str, Any]]:
    return [{"name": f.name, "title": f.title, "caption": f.caption,
             "width": f.size[0] if f.size else None, "height": f.size[1] if f.size else None,
             "src": data_uri(Path(f.path).read_bytes()) if f.path else None,
             "skipped": getattr(f, "skipped", None)} for f in figures]


def _train_context(train: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The training section's page data (:func:`initdiag.report.train_section.train_section`)."""
    if train is None:
        return None
    return {"label": train["label"], "threshold": f"{train['threshold']:.3g}",
            "task": train["task"], "rows": train["rows"], "fmt": fmt,
            "n_runs": len(train["sweep"]), "figures": _figure_records(train["figures"]),
            "norm_activation": train["norm_activation"],
            "norm_inits": ", ".join(train["norm_inits"])}


def render_html(sweep: SweepResult, verdicts: Sequence[Any], figures: Sequence[WrittenFigure],
                *, title: str | None = None, timings: Mapping[str, float] | None = None,
                command: str | None = None, thresholds: Any = None,
                train: Mapping[str, Any] | None = None) -> str:
    """The report page as a string.

    Args:
      sweep: the results (configuration and environment are read from them).
      verdicts: ``initdiag.diagnose(sweep)``, one per configuration.
      figures: the PNGs written by :func:`initdiag.report.figures.write_figures`; their bytes are
        embedded.
      title: shown at the top of the page (escaped).
      timings: seconds per phase, e.g. ``{"sweep": 31.2, "figures": 8.1}``, shown in order.
      command: the command line that made the report (escaped).
      thresholds: the diagnosis thresholds used (default ``initdiag.Thresholds()``).
      train: the training section (``initdiag report --train``), as
        :func:`initdiag.report.train_section.train_section` returns it; None: no section.
    """
    from initdiag.analysis.diagnosis import Thresholds

    grid = verdict_grid(verdicts)
    env = sweep[0].meta.get("environment", {}) if len(sweep) else {}
    probe_run = sum(float(r.meta.get("timing", {}).get("run_s", 0.0)) for r in sweep)
    probe_init = sum(float(r.meta.get("timing", {}).get("init_s", 0.0)) for r in sweep)
    timing_rows = [(k, f"{v:.2f} s") for k, v in (timings or {}).items()]
    timing_rows += [("sum of probe runs (incl. compilation)", f"{probe_run:.2f} s"),
                    ("sum of weight initializations", f"{probe_init:.2f} s")]
    t = thresholds or Thresholds()
    threshold_rows = [(f.name, f"{getattr(t, f.name):g}") for f in dataclasses.fields(t)]
    figs = _figure_records(figures)
    return jinja_environment().get_template(TEMPLATE).render(
        title=title or "initdiag report", grid=grid, fmt=fmt, figures=figs,
        suggestions=_suggestions(verdicts), key_labels=_key_labels(verdicts),
        config_rows=_config_rows(sweep), init_rows=_init_rows(sweep),
        env_rows=[(k, env[k]) for k in ENVIRONMENT_KEYS if k in env],
        timing_rows=timing_rows, threshold_rows=threshold_rows, command=command,
        setup=setup_text(sweep), n_results=len(sweep), n_ok=sum(v.ok for v in verdicts),
        n_verdicts=len(verdicts), train=_train_context(train),
        created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def write_html(path: str | Path, *args: Any, **kwargs: Any) -> Path:
    """Render (:func:`render_html`) and write atomically to ``path``."""
    return atomic_write_text(path, render_html(*args, **kwargs))
