"""Accepting new numbers: :func:`update_baseline` rewrites a baseline unless the new results are
within tolerance of it.

The one rule behind ``pytest --initdiag-update`` (:mod:`initdiag.pytest_plugin`) and
``initdiag check --update`` (:mod:`initdiag.cli.check`): a baseline is written when it does not
exist, when it cannot be compared with the new results (unreadable, another schema version,
other seeds), or when the new results drift from it; a baseline within tolerance is left
untouched, so an update of a passing check changes no file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from initdiag.regression.baseline import Results, save_baseline
from initdiag.regression.compare import Comparison, compare


class BaselineUpdate(NamedTuple):
    """What :func:`update_baseline` did.

    Attributes:
      rewritten: the baseline file was written (created or replaced).
      comparison: the comparison of the new results with the old baseline; None when there was
        no baseline or it could not be compared.
      error: why the old baseline could not be compared (the message of the error), else None.
    """

    rewritten: bool
    comparison: Comparison | None
    error: str | None

    @property
    def created(self) -> bool:
        """There was no baseline: the file is new."""
        return self.rewritten and self.comparison is None and self.error is None


def update_baseline(current: Results, path: str | os.PathLike, *, rtol: float | None = None,
                    atol: float | None = None, metrics: str | Sequence[str] | None = None,
                    tolerances: Mapping[str, Mapping[str, float]] | None = None
                    ) -> BaselineUpdate:
    """Write ``current`` as the baseline ``path`` unless it is within tolerance of it.

    Args:
      current: the new results (ProbeResult or SweepResult).
      path: the baseline file.
      rtol, atol, metrics, tolerances: as in :func:`initdiag.compare`; checked before the file
        is read or written, so a bad argument never replaces a baseline.

    Returns:
      A :class:`BaselineUpdate`: whether the file was written, the comparison with the old
      baseline and why it could not be compared.

    Raises:
      ValueError / TypeError: a bad tolerance or metric argument, or results that cannot be
        saved as a baseline (:func:`initdiag.save_baseline`).
      OSError: the file cannot be written.
    """
    kw: dict[str, Any] = dict(rtol=rtol, atol=atol, metrics=metrics, tolerances=tolerances)
    compare(current, current, **kw)  # bad arguments raise here, before the file is touched
    path = Path(path)
    if not path.exists():
        save_baseline(current, path)
        return BaselineUpdate(True, None, None)
    try:
        cmp = compare(current, path, **kw)
    except (ValueError, OSError) as e:  # unreadable, other version, other seeds
        save_baseline(current, path, overwrite=True)
        return BaselineUpdate(True, None, str(e))
    if cmp.passed:
        return BaselineUpdate(False, cmp, None)
    save_baseline(current, path, overwrite=True)
    return BaselineUpdate(True, cmp, None)
