"""``initdiag report``: probe a sweep, diagnose it, write figures, results and an HTML page.

Output folder (default ``reports/<slug of --title, or "default">/``)::

    index.html          the self-contained report (open it in any browser, mail it)
    <figure>.png        one PNG per figure (initdiag.report.figures.FIGURES)
    results.json        every probe result, loadable with initdiag.load()

Options can also come from a TOML file (``--config``) whose keys are the option names (with ``_``
or ``-``); options given on the command line win over the file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from initdiag.cli import _ints, _list, add_probe_options, sweep_kwargs

DESCRIPTION = """\
Probe a sweep (default: every standard initializer x tanh, sigmoid, relu at depth 50, width 256),
diagnose each configuration (vanishing/exploding gradients, saturation, dead units, activation
collapse, symmetric init) and write a self-contained HTML report with figures, the PNGs and the
results (results.json, loadable with initdiag.load). Prints a one-screen verdict summary."""

EPILOG = """\
examples:
  initdiag report                                   the built-in default sweep
  initdiag report --activations tanh,relu --inits he_normal,'orthogonal(gain=1.2)' \\
                  --depth 100 --seeds 0,1,2 --title "deep tanh" --out my-report
  initdiag report --config sweep.toml               the same options from a TOML file

sweep.toml:
  title = "deep tanh"
  activations = ["tanh", "relu"]        # or "tanh,relu"
  inits = ["he_normal", "orthogonal(gain=1.2)"]
  depth = 100
  seeds = [0, 1, 2]
"""

#: TOML keys -> how to read them (the argparse dest of the option with the same name).
_LIST_KEYS = ("activations", "inits")
_INT_LIST_KEYS = ("depth", "width", "seeds")
_CONFIG_TYPES: dict[str, type | tuple[type, ...]] = {
    "batch": int, "bias_init": str, "no_bias": bool, "norm": str, "residual": (int, float),
    "loss": str, "input": str, "saturation_threshold": (int, float), "remat": int,
    "title": str, "out": str, "quiet": bool,
}
CONFIG_KEYS = (*_LIST_KEYS, *_INT_LIST_KEYS, *_CONFIG_TYPES)
_CHOICES = {"norm": ("none", "batchnorm", "layernorm"), "loss": ("projection", "half_mse"),
            "input": ("normal", "uniform")}


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "report", help="probe, diagnose and write an HTML report (the default command)",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_probe_options(p)
    g = p.add_argument_group("report")
    g.add_argument("--title", default=None,
                   help="title shown on the page; also names the default output folder")
    g.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: reports/<slug of the title, or 'default'>)")
    g.add_argument("--config", default=None, metavar="FILE.toml",
                   help=f"read options from a TOML file; keys: {', '.join(CONFIG_KEYS)}")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bar and no summary (errors still go to stderr)")
    p.set_defaults(func=run)
    return p


def slug(text: str | None) -> str:
    """Folder name from a title: lowercase letters, digits and '-' (``"default"`` if empty)."""
    s = re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-")[:60].strip("-")
    return s or "default"


def _as_list(key: str, value: Any, item: type) -> list:
    if isinstance(value, str):
        try:
            value = _list(value) if item is str else _ints(value)
        except argparse.ArgumentTypeError:
            pass  # reported below with the key's name
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, item) and not isinstance(v, bool)
                                              for v in value):
        kind = "strings" if item is str else "integers"
        raise ValueError(f"key {key!r} must be a list of {kind} (or a comma-separated "
                         f"string); got {value!r}")
    return value


def read_config(path: str | Path) -> dict[str, Any]:
    """Options from a TOML file, keyed by argparse dest; raises ValueError naming bad keys."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"config file {path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {path}: not valid TOML: {e}") from None
    out: dict[str, Any] = {}
    for raw_key, value in doc.items():
        key = raw_key.replace("-", "_")
        if key not in CONFIG_KEYS:
            raise ValueError(f"config file {path}: unknown key {raw_key!r}; valid keys: "
                             f"{', '.join(CONFIG_KEYS)}")
        if key in _LIST_KEYS or key in _INT_LIST_KEYS:
            try:
                value = _as_list(raw_key, value, str if key in _LIST_KEYS else int)
            except ValueError as e:
                raise ValueError(f"config file {path}: {e}") from None
        elif not isinstance(value, _CONFIG_TYPES[key]) or (
                isinstance(value, bool) and _CONFIG_TYPES[key] is not bool):
            raise ValueError(f"config file {path}: key {raw_key!r} has the wrong type "
                             f"({type(value).__name__}: {value!r})")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ValueError(f"config file {path}: {raw_key} = {value!r}; choose from "
                             f"{', '.join(_CHOICES[key])}")
        out[key] = value
    return out


def merge_config(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the options not given on the command line from ``--config``."""
    if not getattr(args, "config", None):
        return args
    for key, value in read_config(args.config).items():
        current = getattr(args, key, None)
        if current is None or current is False:
            setattr(args, key, value)
    return args


class _Progress:
    """A rich progress bar on stderr when it is a terminal; nothing otherwise."""

    def __init__(self, enabled: bool, total: int):
        self.bar = None
        self.task = None
        if enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn)

            self.bar = Progress(TextColumn("probing"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("{task.description}"),
                                console=Console(stderr=True), transient=True)
            self.total = total

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
            self.task = self.bar.add_task("compiling", total=self.total)
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, done: int, total: int, result: Any) -> None:
        if self.bar is None:
            return
        self.bar.update(self.task, completed=done, total=total,
                        description=result.label if done < total else "writing the report")


def _print_summary(verdicts, header: str, footer: str) -> None:
    from rich.console import Console
    from rich.text import Text

    from initdiag.report.summary import text_summary

    styles = {"healthy": "green", "vanishing": "blue", "exploding": "red",
              "collapse": "magenta", "saturation": "yellow", "dead": "bright_black",
              "symmetric": "bright_black"}
    text = Text()
    for piece, kind in text_summary(verdicts, header):
        text.append(piece, style=styles.get(kind, "") if kind else "")
    text.append(footer + "\n")
    Console(highlight=False, soft_wrap=True).print(text, end="")


def build_report(kwargs: dict[str, Any], out: Path, *, title: str | None = None,
                 command: str | None = None, progress: Any = None):
    """Probe ``kwargs`` (for :func:`initdiag.sweep`), diagnose, write the report into ``out``.

    Returns:
      (sweep, verdicts, paths): the SweepResult, its verdicts and {"html", "results", figure
      names...} -> Path.
    """
    from initdiag.diagnosis import diagnose
    from initdiag.probe import sweep as run_sweep
    from initdiag.report.figures import write_figures
    from initdiag.report.html import write_html
    from initdiag.results import _encode

    t0 = time.perf_counter()
    sweep = run_sweep(**kwargs, histograms=True, progress=progress)
    t_sweep = time.perf_counter() - t0
    # Plain JSON types, so the file loads back equal to this object.
    sweep.meta = json.loads(json.dumps(_encode({
        "report": {"title": title, "command": command, "sweep": kwargs,
                   "sweep_s": t_sweep}}), default=str))
    verdicts = diagnose(sweep)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"results": sweep.to_json(out / "results.json")}
    t1 = time.perf_counter()
    figs = write_figures(sweep, out)
    t_fig = time.perf_counter() - t1
    paths.update({f.name: f.path for f in figs})
    t2 = time.perf_counter()
    timings = {"sweep (probing, incl. compilation)": t_sweep, "figures": t_fig}
    paths["html"] = write_html(out / "index.html", sweep, verdicts, figs, title=title,
                               timings=timings, command=command)
    timings["html"] = time.perf_counter() - t2
    return sweep, verdicts, paths


def run(args: argparse.Namespace) -> int:
    """Entry point of ``initdiag report`` (exit 0; errors raise ValueError -> exit 2)."""
    import shlex

    t0 = time.perf_counter()
    args = merge_config(args)
    kwargs = sweep_kwargs(args)
    out = Path(args.out) if args.out else Path("reports") / slug(args.title)
    command = "initdiag " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    show = not args.quiet and sys.stderr.isatty()
    try:
        total = 1
        for key in ("activations", "inits", "depths", "widths", "seeds"):
            total *= len(kwargs[key])
        with _Progress(show, total) as progress:
            sweep, verdicts, paths = build_report(kwargs, out, title=args.title,
                                                  command=command, progress=progress)
    except KeyboardInterrupt:
        print("initdiag: interrupted; no report written", file=sys.stderr)
        return 130
    if not args.quiet:
        c = sweep[0].config
        header = (f"initdiag report: {len(verdicts)} configurations, {len(sweep)} probes "
                  f"(depth {c['depth']}, width {c['width']}, batch {c['batch']})")
        footer = (f"report: {paths['html']}  (results: {paths['results'].name}, "
                  f"{len(paths) - 2} figures; {time.perf_counter() - t0:.1f} s)")
        _print_summary(verdicts, header, footer)
    return 0
