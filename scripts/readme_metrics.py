"""Write the README's metric table from the metric table (initdiag.metrics.TABLE).

    .venv/bin/python scripts/readme_metrics.py           # rewrite README.md's table in place
    .venv/bin/python scripts/readme_metrics.py --check   # exit 1 if README.md is not current

The table sits between the BEGIN and END marker lines below and is replaced as a whole by
:func:`initdiag.metrics.markdown_table`; the rest of the README is left as it is.
tests/test_metrics.py fails while the README is not current.
"""

from __future__ import annotations

import sys
from pathlib import Path

from initdiag.metrics import markdown_table
from initdiag.model.result import markdown_table as model_markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = ("<!-- BEGIN metric table: generated from initdiag/metrics.py by "
         "scripts/readme_metrics.py; edit the table there -->")
END = "<!-- END metric table -->"
MODEL_BEGIN = ("<!-- BEGIN model metric table: generated from initdiag/model/result.py by "
               "scripts/readme_metrics.py -->")
MODEL_END = "<!-- END model metric table -->"


def _replaced(text: str, begin: str, end: str, table: str) -> str:
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == begin]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\n") == end]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(f"README needs one line {begin!r} and, after it, one line {end!r}")
    return "".join(lines[:starts[0] + 1]) + table + "".join(lines[ends[0]:])


def regenerated(text: str) -> str:
    """``text`` (the README) with the lines between each BEGIN and END pair replaced by its
    table (the stack metrics, then the model metrics).

    Raises:
      ValueError: the markers are missing, repeated or out of order.
    """
    text = _replaced(text, BEGIN, END, markdown_table())
    return _replaced(text, MODEL_BEGIN, MODEL_END, model_markdown_table())


def main(argv: list[str]) -> int:
    text = README.read_text(encoding="utf-8")
    new = regenerated(text)
    if "--check" in argv:
        if new != text:
            print(f"{README} is not current: run scripts/readme_metrics.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        README.write_text(new, encoding="utf-8")
        print(f"wrote {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
