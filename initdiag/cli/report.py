"""``initdiag report``: probe a sweep, diagnose it and write a report folder
(:func:`initdiag.report.build.build_report`), with a progress bar and a one-screen summary.

With ``--model FILE.py:FUNCTION`` it reports on your own JAX model instead
(:func:`initdiag.model.loader.load_model`; :func:`run_model`): probed as given
(:func:`initdiag.probe_fn`) or redrawn by each of ``--inits`` x ``--seeds``
(:func:`initdiag.sweep_fn`), written by :func:`initdiag.report.api.write_model_report`.

Output folder: ``--out DIR``, by default ``reports/<slug of --title, or "default">/`` (with
``--model``: of the title or the function's name). Options can
also come from a TOML file (``--config``) whose keys are the option names (with ``_`` or ``-``);
options given on the command line win over the file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from initdiag.cli.options import (add_probe_options, check_positive, check_probe_args,
                                  config_keys, merge_config, sweep_kwargs)

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
  initdiag report --model models.py:make_model      your own JAX model: make_model() returns
                                                    (fn, params, x) or (model, x)
  initdiag report --model models.py:make_model --inits he_normal,orthogonal --seeds 0,1
  initdiag report --train 200                       also train every configuration for 200 SGD
                                                    steps on digits (depth 10, width 64 unless
                                                    --depth/--width are given)

sweep.toml:
  title = "deep tanh"
  activations = ["tanh", "relu"]        # or "tanh,relu"
  inits = ["he_normal", "orthogonal(gain=1.2)"]
  depth = 100
  seeds = [0, 1, 2]
"""

#: The report's own TOML keys (besides the probe options) -> the type of their value.
REPORT_KEYS = {"title": str, "out": str, "quiet": bool}


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "report", help="probe, diagnose and write an HTML report (the default command)",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_probe_options(p)
    g = p.add_argument_group("report")
    g.add_argument("--model", default=None, metavar="FILE.py:FUNCTION",
                   help="report on your own JAX model instead of a stack: FUNCTION() in FILE.py "
                        "(imported by its path, called with no arguments) returns (fn, params, "
                        "x), fn(params, x) -> output, or (model, x); probed as given, or with "
                        "its weights redrawn by each of --inits x --seeds; only --inits and "
                        "--seeds of 'what to probe' apply (default: none, probe a stack)")
    g.add_argument("--title", default=None,
                   help="title shown on the page; also names the default output folder "
                        "(default: none; the page is titled 'initdiag report')")
    g.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: reports/<slug of the title, or 'default'>)")
    g.add_argument("--config", default=None, metavar="FILE.toml",
                   help=f"read options from a TOML file; keys: "
                        f"{', '.join(config_keys(REPORT_KEYS))} (default: none; options given "
                        f"on the command line win)")
    g.add_argument("--no-cache", action="store_true",
                   help="do not use the persistent compilation cache (default: on, in "
                        "$INITDIAG_CACHE_DIR, else $XDG_CACHE_HOME/initdiag or ~/.cache/initdiag; "
                        "INITDIAG_CACHE_DIR= empty also turns it off)")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bar and no summary (errors still go to stderr; default: "
                        "a progress bar on a terminal and the summary)")
    t = p.add_argument_group("training")
    t.add_argument("--train", type=int, default=None, metavar="STEPS",
                   help="also train each configuration (activations x inits x seeds, the norm "
                        "and stack options) for STEPS SGD steps (lr 0.1, batch 128 unless "
                        "--batch) on scikit-learn's digits at depth 10, width 64 unless --depth "
                        "/ --width are given, and add a training section: loss curves, "
                        "update:data ratios, profiles before and after, each configuration's "
                        "step-0 verdict beside its outcome, and the unhealthy initializers with "
                        "BatchNorm / LayerNorm; writes train.json (needs initdiag[train]; "
                        "default: no training)")
    p.set_defaults(func=run)
    return p


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


def run(args: argparse.Namespace) -> int:
    """Run ``initdiag report``: exit status 0, 130 when interrupted (bad input raises
    ValueError, TypeError or OSError: exit status 2)."""
    import shlex

    from initdiag.engine import cache as compile_cache
    from initdiag.report.build import build_report, slug

    t0 = time.perf_counter()
    if getattr(args, "no_cache", False):
        compile_cache.disable()
    else:
        compile_cache.enable()
    args = merge_config(args, REPORT_KEYS)
    train = None
    if getattr(args, "train", None) is not None:
        from initdiag.report.train_data import train_kwargs

        check_positive(args, ("train",))
        if args.model:
            raise ValueError("--train trains the stacks of a sweep; it does not apply with "
                             "--model (train a model from Python with initdiag.train_fn)")
        check_probe_args(args)
        train = train_kwargs(sweep_kwargs(args), args.train, depths=args.depth,
                             widths=args.width, batch=args.batch)
    if args.model:
        command = "initdiag " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        try:
            return run_model(args, command)
        except KeyboardInterrupt:
            print("initdiag: interrupted; no report written", file=sys.stderr)
            return 130
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
                                                  command=command, progress=progress,
                                                  train=train)
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


#: The probe options that apply with ``--model`` (argparse dests); the others are refused.
MODEL_KEYS = ("inits", "seeds")


def check_model_args(args: argparse.Namespace) -> None:
    """With ``--model``, reject the stack options that do not apply (only ``--inits`` and
    ``--seeds`` do), naming the first one given."""
    from initdiag.cli.options import probe_keys

    for key in probe_keys():
        if key in MODEL_KEYS:
            continue
        value = getattr(args, key, None)
        if value is not None and value is not False:
            raise ValueError(f"--{key.replace('_', '-')} does not apply with --model (a model "
                             f"report takes --inits and --seeds only)")


def probe_model(loaded: Any, inits: list | None, seeds: list[int] | None):
    """A ``ModelSweep`` of ``loaded`` (:func:`initdiag.model.loader.load_model`): ``sweep_fn``
    over inits x seeds with ``inits``, else ``probe_fn`` of the weights as given, once per seed
    (the seed draws the projection loss's readout; default seed 0)."""
    import initdiag
    from initdiag.model.result import ModelSweep

    seeds = list(seeds) if seeds else [0]
    if inits:
        return initdiag.sweep_fn(loaded.fn, loaded.params, loaded.x, inits=list(inits),
                                 seeds=seeds, layout=loaded.layout, name=loaded.name)
    return ModelSweep([initdiag.probe_fn(loaded.fn, loaded.params, loaded.x, seed=s,
                                         name=loaded.name) for s in seeds])


def run_model(args: argparse.Namespace, command: str) -> int:
    """``initdiag report --model ...``: load, probe, write the report; exit status 0."""
    from initdiag.model.loader import load_model, split_spec
    from initdiag.report.api import write_model_report
    from initdiag.report.build import slug

    t0 = time.perf_counter()
    check_model_args(args)
    _, func = split_spec(args.model)
    out = Path(args.out) if args.out else Path("reports") / slug(args.title or func)
    loaded = load_model(args.model)
    sweep = probe_model(loaded, args.inits, args.seeds)
    paths = write_model_report(sweep, out, title=args.title, command=command)
    if not args.quiet:
        first = sweep[0]
        print(f"initdiag report: model {loaded.name}, {len(first.sites)} sites, "
              f"{len(first.param_rows)} parameter leaves, {len(sweep)} probes")
        print(f"report: {paths['html']}  (results: {paths['results'].name}, "
              f"{len(paths) - 2} figures; {time.perf_counter() - t0:.1f} s)")
    return 0
