"""The ``initdiag`` command line: a thin layer over the public API (``initdiag.cli:main``, also
``python -m initdiag``).

Subcommands (without one, ``report`` runs):
  report  probe, diagnose and write a self-contained HTML report (:mod:`initdiag.cli.report`).
  table   probe a sweep and print per-layer statistics as a text table (:mod:`initdiag.cli.table`).
  check   re-probe and compare against a baseline (:mod:`initdiag.cli.check`).

The probe options they share, and TOML files of them, are :mod:`initdiag.cli.options`. Exit
status: 0 ok, 1 drift (``check``), 2 bad input (a ValueError, TypeError, OSError or
MemoryError of a subcommand -- sizes that do not fit, :mod:`initdiag.engine.memory` -- is printed
as one line ``initdiag: error: ...`` on stderr, an option argparse refuses as one line
``initdiag <command>: error: ...``), 130 interrupted (``report``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (the bad value, what is valid, where the
    help is), not the usage followed by the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``initdiag`` parser with its subcommands."""
    from initdiag.version import __version__
    from initdiag.cli import check, report, table

    parser = _Parser(
        prog="initdiag",
        description="Probe deep networks at initialization: per-layer activation and gradient "
                    "statistics, diagnosis and reports. Without a COMMAND, runs 'report' "
                    "(options may follow directly: initdiag --depth 100).")
    parser.add_argument("--version", action="version", version=f"initdiag {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    report.register(sub)
    table.register(sub)
    check.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``initdiag`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit
    status."""
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
    except (ValueError, TypeError, OSError, MemoryError) as e:
        print(f"initdiag: error: {e}", file=sys.stderr)
        return 2
