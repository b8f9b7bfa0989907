"""The ``initdiag`` command line: a thin layer over the public API.

Subcommands (without one, ``report`` runs):
  report  probe, diagnose and write a self-contained HTML report (initdiag.report.command).
  table   probe a sweep and print per-layer statistics as a text table (and optionally save JSON).
  check   re-probe and compare against a baseline (initdiag.cli_check).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from initdiag._spec import split_top_level


def _list(text: str) -> list[str]:
    return split_top_level(text)


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in split_top_level(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_probe_options(p: argparse.ArgumentParser) -> None:
    """The options that define a sweep; shared by every subcommand that probes."""
    from initdiag.probe import DEFAULT_SWEEP

    d = DEFAULT_SWEEP
    g = p.add_argument_group("what to probe")
    g.add_argument("--activations", type=_list, default=None, metavar="LIST",
                   help=f"comma-separated activations, e.g. tanh,relu,'leaky_relu(slope=0.2)' "
                        f"(default: {','.join(d['activations'])})")
    g.add_argument("--inits", type=_list, default=None, metavar="LIST",
                   help="comma-separated initializers, e.g. he_normal,'normal(std=0.1)' "
                        "(default: every standard initializer)")
    g.add_argument("--depth", type=_ints, default=None, metavar="L[,L...]",
                   help=f"depth(s) (default: {d['depths'][0]})")
    g.add_argument("--width", type=_ints, default=None, metavar="W[,W...]",
                   help=f"width(s) (default: {d['widths'][0]})")
    g.add_argument("--batch", type=int, default=None, help=f"batch size (default: {d['batch']})")
    g.add_argument("--seeds", type=_ints, default=None, metavar="S[,S...]",
                   help="seed(s) (default: 0)")
    g.add_argument("--bias-init", default=None, help="bias initializer (default: zeros)")
    g.add_argument("--no-bias", action="store_true", help="layers without bias")
    g.add_argument("--norm", choices=["none", "batchnorm", "layernorm"], default=None,
                   help="normalization before the activation (default: none)")
    g.add_argument("--residual", type=float, default=None, metavar="ALPHA",
                   help="residual stack x <- x + ALPHA * phi(norm(W x + b))")
    g.add_argument("--loss", choices=["projection", "half_mse"], default=None,
                   help="loss backpropagated (default: projection)")
    g.add_argument("--input", choices=["normal", "uniform"], default=None,
                   help="input distribution (default: normal)")
    g.add_argument("--saturation-threshold", type=float, default=None, metavar="T",
                   help="saturation threshold t (default: 0.99)")
    g.add_argument("--remat", type=int, default=None, metavar="K",
                   help="recompute activations in chunks of K layers to bound memory")


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


def cmd_table(args: argparse.Namespace) -> int:
    import numpy as np

    from initdiag.probe import sweep

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
    t.add_argument("--metrics", type=_list,
                   default=["preact_var", "act_var", "saturation", "dead_frac", "grad_preact_rms",
                            "grad_weight_ratio"],
                   help="comma-separated metrics to print")
    t.add_argument("--every", type=int, default=10, help="print every N-th layer (plus first/last)")
    t.add_argument("--json", default=None, metavar="PATH", help="also save the results as JSON")
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
