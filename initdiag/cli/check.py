"""``initdiag check BASELINE``: re-probe and compare against a baseline, for CI.

Without probe options it re-runs exactly the (config, seed) pairs stored in the baseline; probe
options (``--inits``, ``--depth``, ...) override the baseline's grid. ``--rtol``, ``--atol``,
``--metrics`` and ``--max-rows`` are validated before anything is probed.

Exit status: 0 within tolerance, 1 on drift (deviations, configs/metrics on one side only, or
nothing compared), 2 on bad input (missing, corrupted or other-version baseline, bad option,
mismatched seeds). With ``--json`` bad input is also printed on stdout as
``{"error": ..., "exit_code": 2}``; only what argparse itself rejects (``--depth x``, an unknown
option) prints just its one-line error on stderr.

``--update`` writes the new results as the baseline and says so: it creates it when absent,
replaces it when the results drift or cannot be compared with it (other seeds), or when it is
unreadable and probe options say what to probe; a baseline within tolerance is left untouched
("unchanged: within tolerance"): the rule of :func:`initdiag.update_baseline`. ``--json``
prints the comparison as JSON on stdout instead of the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from initdiag.cli.options import (add_probe_options, check_probe_args, metric_names,
                                  probe_options_given, sweep_kwargs)


def _positive_int(name: str, text: str | int) -> int:
    """``int(text)``, or a ValueError naming the option and the value unless it is >= 1."""
    try:
        v = int(text)
    except (TypeError, ValueError):
        v = 0
    if v < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {str(text)!r}")
    return v


def _check_options(args: argparse.Namespace) -> None:
    """Check the probe options' sizes and parse ``--rtol``, ``--atol``, ``--metrics`` and
    ``--max-rows`` in place (given as text), before anything is loaded or probed.

    Raises:
      ValueError: a size below 1, a negative, infinite or non-numeric tolerance, an empty or
        unknown metric list, or a ``--max-rows`` below 1; the message names the option, the
        value and what is valid.
    """
    from initdiag.regression.tolerance import nonnegative

    check_probe_args(args)
    args.rtol = None if args.rtol is None else nonnegative("--rtol", args.rtol)
    args.atol = None if args.atol is None else nonnegative("--atol", args.atol)
    args.metrics = None if args.metrics is None else metric_names(args.metrics)
    args.max_rows = _positive_int("--max-rows", args.max_rows)


def run(args: argparse.Namespace) -> int:
    """Run ``initdiag check``; returns the exit status (0 ok, 1 drift).

    Bad input raises ValueError, TypeError or OSError, which :func:`initdiag.cli.main` prints on
    stderr and turns into exit status 2; with ``--json`` the same message is also printed on
    stdout as ``{"error": "...", "exit_code": 2}`` so that a machine reading stdout sees it.
    """
    try:
        return _check(args)
    except BrokenPipeError:
        raise  # stdout is gone: main ends quietly
    except (ValueError, TypeError, OSError) as e:
        if args.json:
            print(json.dumps({"error": str(e), "exit_code": 2}, indent=1))
        raise


def _check(args: argparse.Namespace) -> int:
    from initdiag.probe import sweep
    from initdiag.regression import (BaselineError, compare, load_baseline, probe_list,
                                     update_baseline)
    from initdiag.regression.rerun import rerun, sweep_grid

    _check_options(args)
    path = Path(args.baseline)
    say = sys.stderr if args.json else sys.stdout
    unreadable = None
    try:
        baseline = load_baseline(path) if (path.exists() or not args.update) else None
    except BaselineError as e:
        if args.update and probe_options_given(args):
            baseline, unreadable = None, e  # what to probe is known: regenerate it
        elif path.exists():
            raise BaselineError(f"{e} [--update with probe options replaces it]") from None
        else:
            raise
    if probe_options_given(args):
        current = sweep(**sweep_kwargs(args, base=sweep_grid(baseline) if baseline else None))
    elif baseline is not None:
        print(f"initdiag check: re-running the {len(probe_list(baseline))} probe(s) stored in "
              f"{path}", file=sys.stderr)
        current = rerun(baseline)
    else:
        raise ValueError(f"{path} does not exist: give probe options (e.g. --activations tanh "
                         f"--inits he_normal --depth 20 --width 64) to create it with --update")
    if args.update:
        done = update_baseline(current, path, rtol=args.rtol, atol=args.atol,
                               metrics=args.metrics)
        return _said(args, path, done, len(probe_list(current)), unreadable is not None, say)
    cmp = compare(current, baseline, rtol=args.rtol, atol=args.atol, metrics=args.metrics)
    if args.json:
        print(json.dumps({"baseline": str(path), "updated": False, **cmp.to_dict()}, indent=1))
    else:
        print(cmp.render(max_rows=args.max_rows))
        if not cmp.passed:
            print(f"initdiag check: drift from {path}. If the change is intended, accept it "
                  f"with `initdiag check {path} --update`.")
    return 0 if cmp.passed else 1


def _said(args: argparse.Namespace, path: Path, done, n_probes: int, unreadable: bool,
          say) -> int:
    """Say what ``--update`` did (``done``: the :class:`initdiag.regression.BaselineUpdate` of
    :func:`initdiag.update_baseline`), as text and with ``--json`` as JSON; returns 0.
    ``unreadable``: the old baseline could not be loaded."""
    body = {"baseline": str(path), "updated": done.rewritten, "created": done.created}
    if done.comparison is not None:
        body.update(done.comparison.to_dict())
    if not done.rewritten:
        text = (f"initdiag check: baseline {path} unchanged: within tolerance "
                f"({done.comparison.n_compared} values)")
    elif done.created:
        text = f"initdiag check: created baseline {path} ({n_probes} probe(s))"
    elif unreadable:
        text = f"initdiag check: replaced unreadable baseline {path} ({n_probes} probe(s))"
    elif done.comparison is None:
        text = (f"initdiag check: updated baseline {path} (the old one could not be compared: "
                f"{done.error})")
    else:
        cmp = done.comparison
        text = (f"initdiag check: updated baseline {path} (replacing {len(cmp.deviations)} "
                f"deviation(s), {len(cmp.missing) + len(cmp.extra)} one-sided config(s))")
    _emit(args, body, text, say)
    return 0


def _emit(args: argparse.Namespace, body: dict, text: str, stream) -> None:
    if args.json:
        print(json.dumps(body, indent=1))
    print(text, file=stream)


def register(sub: Any) -> argparse.ArgumentParser:
    """Add the ``check`` subcommand to the ``initdiag`` parser's subparsers."""
    c = sub.add_parser(
        "check", help="compare fresh probes against a baseline (exit 0 ok, 1 drift, 2 bad input)",
        description="Re-probe the configurations stored in BASELINE (or those given by probe "
                    "options) and compare per-layer statistics with tolerances. Exit status 0 "
                    "within tolerance, 1 on drift, 2 on bad input. Probe options not given keep "
                    "the baseline's values (the defaults listed below apply only when creating "
                    "a baseline).")
    c.add_argument("baseline", metavar="BASELINE", help="baseline JSON file (initdiag.save_baseline)")
    add_probe_options(c)
    c.add_argument("--update", action="store_true",
                   help="write the new results as the baseline (create it, or replace it when "
                        "they drift; one within tolerance is left untouched) and say so")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON on stdout")
    # Parsed by _check_options (not by argparse types) so that a bad value exits 2 before any
    # probing with a message naming it, also as the JSON error of --json.
    c.add_argument("--rtol", default=None, metavar="R",
                   help="relative tolerance for every ratio- and scale-compared metric "
                        "(default 1e-3)")
    c.add_argument("--atol", default=None, metavar="A",
                   help="absolute tolerance for fractions and means (default: fractions 1e-3, "
                        "means 0)")
    c.add_argument("--metrics", default=None, metavar="LIST",
                   help="compare only these metrics, comma-separated (default: all)")
    c.add_argument("--max-rows", default="100", metavar="N",
                   help="most table rows shown (default 100)")
    c.set_defaults(func=run)
    return c
