"""``initdiag report``: probe a sweep, diagnose it, write figures, results and an HTML page.

Output folder (default ``reports/<slug of --title, or "default">/``)::

    index.html          the self-contained report (open it in any browser, mail it)
    <figure>.png        one PNG per figure (initdiag.report.figures.FIGURES) that applies
    results.json        every probe result, loadable with initdiag.load()

The folder is written atomically (:class:`ReportFolder`): a failed or interrupted run leaves
nothing behind (and an existing folder as it was).

Options can also come from a TOML file (``--config``) whose keys are the option names (with ``_``
or ``-``); options given on the command line win over the file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from initdiag.fileio import umask, atomic_write_text
from initdiag.cli import _ints, _list, add_probe_options, check_probe_args, sweep_kwargs

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
                   help="title shown on the page; also names the default output folder "
                        "(default: none; the page is titled 'initdiag report')")
    g.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: reports/<slug of the title, or 'default'>)")
    g.add_argument("--config", default=None, metavar="FILE.toml",
                   help=f"read options from a TOML file; keys: {', '.join(CONFIG_KEYS)} "
                        f"(default: none; options given on the command line win)")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bar and no summary (errors still go to stderr; default: "
                        "a progress bar on a terminal and the summary)")
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


class ReportFolder:
    """Where a report is written: a hidden temporary folder, moved into place when complete.

    Created before any probing, so an output folder that cannot be written is reported at once.
    If ``out`` does not exist, the temporary folder is made in its nearest existing ancestor and
    renamed to ``out`` at the end (one atomic step). If ``out`` exists (a folder), it is made
    inside it and its files are moved into ``out`` one by one (each ``os.replace`` atomic),
    ``index.html`` last, so ``out`` never holds a page without its figures; PNGs of report
    figures this run did not draw are removed. On failure the temporary folder is deleted and
    ``out`` is left as it was.
    """

    def __init__(self, out: str | Path):
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"output folder {self.out} exists and is not a folder")
        self.existed = self.out.is_dir()
        anchor = self.out if self.existed else self.out.absolute().parent
        while not anchor.exists():
            anchor = anchor.parent
        if not anchor.is_dir():
            raise ValueError(f"cannot create the output folder {self.out}: {anchor} is not a "
                             f"folder")
        try:
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name or 'report'}.partial-",
                                             dir=anchor))
        except OSError as e:
            raise OSError(f"cannot write the report to {self.out}: "
                          f"{e.strerror or e} ({anchor})") from None

    def commit(self, names: Any = ()) -> Path:
        """Move the finished report into place; ``names``: the report figures this run wrote."""
        from initdiag.report.figures import FIGURES

        if not self.existed:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.tmp, 0o777 & ~umask())
            try:
                os.rename(self.tmp, self.out)
                return self.out
            except OSError:
                if not self.out.is_dir():  # e.g. another file system: copy, then remove
                    shutil.copytree(self.tmp, self.out)
                    shutil.rmtree(self.tmp, ignore_errors=True)
                    return self.out
        files = sorted(p.name for p in self.tmp.iterdir())
        for name in sorted(files, key=lambda n: n == "index.html"):  # the page last
            os.replace(self.tmp / name, self.out / name)
        for spec in FIGURES:
            if spec.name not in names:
                (self.out / f"{spec.name}.png").unlink(missing_ok=True)
        self.tmp.rmdir()
        return self.out

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


#: Row of the timings table for the page itself.
HTML_TIMING = "page (render + embed the PNGs; measured on a first rendering)"
#: Row of the timings table for the whole run.
TOTAL_TIMING = "total (until the page is written)"


def build_report(kwargs: dict[str, Any], out: Path, *, title: str | None = None,
                 command: str | None = None, progress: Any = None):
    """Probe ``kwargs`` (for :func:`initdiag.sweep`), diagnose, write the report into ``out``.

    The folder is written atomically (:class:`ReportFolder`): on any error nothing is left
    behind. Timings on the page: the sweep, the diagnosis, the theory computations (mean-field
    predictions, Jacobian spectra), the figures, the page itself (the page is rendered twice:
    the second rendering shows how long the first took) and the total.

    Returns:
      (sweep, verdicts, paths): the SweepResult, its verdicts and {"html", "results", figure
      names...} -> Path.
    """
    from initdiag.analysis.diagnosis import diagnose
    from initdiag.probe import sweep as run_sweep
    from initdiag.report.figures import Context, write_figures
    from initdiag.report.html import render_html
    from initdiag.jsonvalues import encode

    t0 = time.perf_counter()
    folder = ReportFolder(out)
    try:
        sweep = run_sweep(**kwargs, histograms=True, progress=progress)
        t_sweep = time.perf_counter() - t0
        # Plain JSON types, so the file loads back equal to this object.
        sweep.meta = json.loads(json.dumps(encode({
            "report": {"title": title, "command": command, "sweep": kwargs,
                       "sweep_s": t_sweep}}), default=str))
        timings = {"sweep (probing, incl. compilation)": t_sweep}
        t = time.perf_counter()
        verdicts = diagnose(sweep)
        timings["diagnosis"] = time.perf_counter() - t
        sweep.to_json(folder.tmp / "results.json")
        ctx = Context(sweep)
        t = time.perf_counter()
        ctx.predictions  # noqa: B018 (computed once, shared by the figures)
        timings["theory: mean-field predictions"] = time.perf_counter() - t
        t = time.perf_counter()
        ctx.spectra  # noqa: B018
        timings["theory: Jacobian spectra"] = time.perf_counter() - t
        t = time.perf_counter()
        figs = write_figures(sweep, folder.tmp, ctx=ctx)
        timings["figures"] = time.perf_counter() - t
        t = time.perf_counter()
        render_html(sweep, verdicts, figs, title=title, timings=timings, command=command)
        timings[HTML_TIMING] = time.perf_counter() - t
        timings[TOTAL_TIMING] = time.perf_counter() - t0
        page = render_html(sweep, verdicts, figs, title=title, timings=timings, command=command)
        atomic_write_text(folder.tmp / "index.html", page)
        final = folder.commit({f.name for f in figs if f.path is not None})
    except BaseException:
        folder.discard()
        raise
    paths: dict[str, Path] = {"results": final / "results.json"}
    paths.update({f.name: final / f.path.name for f in figs if f.path is not None})
    paths["html"] = final / "index.html"
    return sweep, verdicts, paths


def run(args: argparse.Namespace) -> int:
    """Entry point of ``initdiag report`` (exit 0; errors raise ValueError -> exit 2)."""
    import shlex

    t0 = time.perf_counter()
    args = merge_config(args)
    check_probe_args(args)
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
        from initdiag.report.summary import setup_text

        header = (f"initdiag report: {len(verdicts)} configurations, {len(sweep)} probes "
                  f"({setup_text(sweep)})")
        footer = (f"report: {paths['html']}  (results: {paths['results'].name}, "
                  f"{len(paths) - 2} figures; {time.perf_counter() - t0:.1f} s)")
        _print_summary(verdicts, header, footer)
    return 0
