"""``initdiag table``: probe a sweep and print per-layer statistics as a text table (and
optionally save the results as JSON with ``--json``).

Every option is checked before anything is probed: sizes below 1, unknown ``--metrics`` and a
``--json`` path that cannot be written exit with status 2 and a message naming the option.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from initdiag.cli.options import (add_probe_options, check_positive, check_probe_args,
                                  integer, metric_names, sweep_kwargs)

#: Metrics ``initdiag table`` prints by default.
TABLE_METRICS = ("preact_var", "act_var", "saturation", "dead_frac", "grad_preact_rms",
                 "grad_weight_ratio")


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


def _fmt(v: float) -> str:
    return f"{v:10.3e}" if v == v else f"{'nan':>10}"


def _metrics(text: str) -> list[str]:
    """argparse type of ``--metrics`` (:func:`initdiag.cli.options.metric_names`)."""
    try:
        return metric_names(text)
    except ValueError as e:  # argparse names the option already
        raise argparse.ArgumentTypeError(str(e).removeprefix("--metrics").lstrip(": ")) from None


def run(args: argparse.Namespace) -> int:
    """Run ``initdiag table``; returns the exit status 0 (bad input raises ValueError, TypeError
    or OSError: exit status 2)."""
    import numpy as np

    from initdiag.probe import sweep

    check_probe_args(args)
    check_positive(args, ["every"])
    if args.json:
        check_writable(args.json, "--json")
    result = sweep(**sweep_kwargs(args))
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


def register(sub: Any) -> argparse.ArgumentParser:
    """Add the ``table`` subcommand to the ``initdiag`` parser's subparsers."""
    from initdiag.results import METRICS

    t = sub.add_parser("table", help="print per-layer statistics of a sweep as text",
                       description="Probe a sweep (default: the built-in default sweep) and print "
                                   "per-layer statistics.")
    add_probe_options(t)
    t.add_argument("--metrics", type=_metrics, default=list(TABLE_METRICS), metavar="LIST",
                   help=f"comma-separated metrics to print, of: {', '.join(METRICS)} (default: "
                        f"{', '.join(TABLE_METRICS)})")
    t.add_argument("--every", type=integer, default=10,
                   help="print every N-th layer, plus the first and last (default: 10)")
    t.add_argument("--json", default=None, metavar="PATH",
                   help="also save the results as JSON (default: not saved)")
    t.set_defaults(func=run)
    return t
