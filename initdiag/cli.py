"""The ``initdiag`` command line: a thin layer over the public API.

Subcommands (without one, ``report`` runs):
  report  probe, diagnose and write a self-contained HTML report (initdiag.report.command).
  table   probe a sweep and print per-layer statistics as a text table (and optionally save JSON).
  check   re-probe and compare against a baseline (initdiag.cli_check).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from initdiag.nn.spec import split_top_level


def _list(text: str) -> list[str]:
    return split_top_level(text)


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in split_top_level(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_probe_options(p: argparse.ArgumentParser) -> None:
    """The options that define a sweep; shared by every subcommand that probes."""
    from initdiag.nn.initializers import STANDARD_INITIALIZERS
    from initdiag.probe import DEFAULT_SWEEP

    d = DEFAULT_SWEEP
    g = p.add_argument_group("what to probe")
    g.add_argument("--activations", type=_list, default=None, metavar="LIST",
                   help=f"comma-separated activations, e.g. tanh,relu,'leaky_relu(slope=0.2)' "
                        f"(default: {','.join(d['activations'])})")
    g.add_argument("--inits", type=_list, default=None, metavar="LIST",
                   help="comma-separated initializers, e.g. he_normal,'normal(std=0.1)' "
                        f"(default: every standard initializer: "
                        f"{', '.join(d.get('inits', STANDARD_INITIALIZERS))})")
    g.add_argument("--depth", type=_ints, default=None, metavar="L[,L...]",
                   help=f"depth(s), number of layers >= 1 (default: {d['depths'][0]})")
    g.add_argument("--width", type=_ints, default=None, metavar="W[,W...]",
                   help=f"width(s) of every layer, >= 1 (default: {d['widths'][0]})")
    g.add_argument("--batch", type=int, default=None,
                   help=f"batch size, >= 1 (default: {d['batch']})")
    g.add_argument("--seeds", type=_ints, default=None, metavar="S[,S...]",
                   help=f"seed(s) (default: {','.join(map(str, d['seeds']))})")
    g.add_argument("--bias-init", default=None, help="bias initializer (default: zeros)")
    g.add_argument("--no-bias", action="store_true", help="layers without bias (default: with)")
    g.add_argument("--norm", choices=["none", "batchnorm", "layernorm"], default=None,
                   help="normalization before the activation (default: none)")
    g.add_argument("--residual", type=float, default=None, metavar="ALPHA",
                   help="residual stack x <- x + ALPHA * phi(norm(W x + b)) (default: none, a "
                        "plain stack)")
    g.add_argument("--loss", choices=["projection", "half_mse"], default=None,
                   help="loss backpropagated (default: projection)")
    g.add_argument("--input", choices=["normal", "uniform"], default=None,
                   help="input distribution (default: normal)")
    g.add_argument("--saturation-threshold", type=float, default=None, metavar="T",
                   help="saturation threshold t (default: 0.99)")
    g.add_argument("--remat", type=int, default=None, metavar="K",
                   help="recompute activations in chunks of K layers to bound memory (default: "
                        "off, keep every layer)")


#: Options that must be integers >= 1 (argparse dest -> option name).
_POSITIVE = {"depth": "--depth", "width": "--width", "batch": "--batch", "remat": "--remat",
             "every": "--every"}


def check_probe_args(args: argparse.Namespace) -> None:
    """Reject sizes below 1 before any work, naming the option: ``--width must be >= 1; got 0``.

    Raises:
      ValueError: for the first option with a value below 1.
    """
    for dest, opt in _POSITIVE.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{opt} must be >= 1; got {v}")


def check_writable(path: str | Path, option: str) -> None:
    """Fail now, not after probing, when ``path`` (a file to write) cannot be written: it is a
    folder, a parent is a file, or its nearest existing folder refuses a new file (tested by
    creating and removing a temporary file there).

    Raises:
      ValueError / OSError: naming the option and the path.
    """
    import os
    import tempfile

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path}: is a folder; give a file name")
    anchor = path.absolute().parent
    while not anchor.exists():
        anchor = anchor.parent
    if not anchor.is_dir():
        raise ValueError(f"{option} {path}: {anchor} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".initdiag-write-test-", dir=anchor)
    except OSError as e:
        raise OSError(f"{option} {path}: cannot write in {anchor}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(tmp)


def sweep_kwargs(args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments for :func:`initdiag.sweep` from parsed options over ``base`` defaults."""
    from initdiag.probe import DEFAULT_SWEEP

    kw: dict[str, Any] = {**DEFAULT_SWEEP, **(base or {})}
    for opt, key in (("activations", "activations"), ("inits", "inits"), ("depth", "depths"),
                     ("width", "widths"), ("seeds", "seeds"), ("batch", "batch"),
                     ("bias_init", "bias_init"), ("residual", "residual"), ("loss", "loss"),
                     ("input", "input"), ("saturation_threshold", "saturation_threshold"),
                     ("remat", "remat")):
        value = getattr(args, opt, None)
        if value is not None:
            kw[key] = value
    if getattr(args, "norm", None) is not None:
        kw["norm"] = None if args.norm == "none" else args.norm
    if getattr(args, "no_bias", False):
        kw["use_bias"] = False
    return kw


def _fmt(v: float) -> str:
    return f"{v:10.3e}" if v == v else f"{'nan':>10}"


#: Metrics ``initdiag table`` prints by default.
TABLE_METRICS = ("preact_var", "act_var", "saturation", "dead_frac", "grad_preact_rms",
                 "grad_weight_ratio")


def metric_names(text: str) -> list[str]:
    """The metrics of a ``--metrics`` value (comma-separated, duplicates dropped), each one of
    :data:`initdiag.METRICS`.

    Raises:
      ValueError: the list is empty or names an unknown metric; the message lists the valid ones.
    """
    from initdiag.results import METRICS

    names = list(dict.fromkeys(_list(text)))
    valid = ", ".join(METRICS)
    if not names:
        raise ValueError(f"--metrics {text!r} names no metric; give a comma-separated list of: "
                         f"{valid}")
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ValueError(f"--metrics: unknown metric{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}; valid metrics: {valid}")
    return names


def _metrics(text: str) -> list[str]:
    """argparse type of ``initdiag table --metrics`` (:func:`metric_names`)."""
    try:
        return metric_names(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cmd_table(args: argparse.Namespace) -> int:
    import numpy as np

    from initdiag.probe import sweep

    check_probe_args(args)
    if args.json:
        check_writable(args.json, "--json")
    kw = sweep_kwargs(args)
    result = sweep(**kw)
    metrics = args.metrics
    for r in result:
        depth = r.depth
        layers = sorted({1, *range(args.every, depth + 1, args.every), depth})
        print(f"\n{r.config['activation']} / {r.config['init']}  depth {depth}  "
              f"width {r.config['width']}  batch {r.config['batch']}  seed {r.seed}")
        print(f"{'layer':>5} " + " ".join(f"{m[:10]:>10}" for m in metrics))
        for l in layers:
            print(f"{l:>5} " + " ".join(_fmt(float(np.asarray(r[m])[l - 1])) for m in metrics))
    if args.json:
        path = result.to_json(args.json)
        print(f"\nwrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from initdiag import __version__

    parser = argparse.ArgumentParser(
        prog="initdiag",
        description="Probe deep networks at initialization: per-layer activation and gradient "
                    "statistics, diagnosis and reports. Without a COMMAND, runs 'report' "
                    "(options may follow directly: initdiag --depth 100).")
    parser.add_argument("--version", action="version", version=f"initdiag {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from initdiag.report import command as report_command
    report_command.register(sub)
    t = sub.add_parser("table", help="print per-layer statistics of a sweep as text",
                       description="Probe a sweep (default: the built-in default sweep) and print "
                                   "per-layer statistics.")
    add_probe_options(t)
    from initdiag.results import METRICS

    t.add_argument("--metrics", type=_metrics, default=list(TABLE_METRICS), metavar="LIST",
                   help=f"comma-separated metrics to print, of: {', '.join(METRICS)} (default: "
                        f"{', '.join(TABLE_METRICS)})")
    t.add_argument("--every", type=int, default=10,
                   help="print every N-th layer, plus the first and last (default: 10)")
    t.add_argument("--json", default=None, metavar="PATH",
                   help="also save the results as JSON (default: not saved)")
    t.set_defaults(func=cmd_table)
    from initdiag import cli_check
    cli_check.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["report", *argv]  # no subcommand: the main job
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `initdiag table | head`
        sys.stderr.close()
        return 0
    except (ValueError, TypeError, OSError) as e:
        print(f"initdiag: error: {e}", file=sys.stderr)
        return 2
