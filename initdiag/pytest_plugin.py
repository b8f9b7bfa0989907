"""pytest plugin (entry point ``pytest11``): the ``initdiag_regression`` fixture.

In the style of pytest-regressions::

    def test_init(initdiag_regression):
        result = initdiag.probe("tanh", "xavier_normal", depth=20, width=64, batch=64, seed=0)
        initdiag_regression.check(result)

* The baseline is ``<test file folder>/<test file name without .py>/<test name>.json``
  (characters other than letters, digits, ``-`` and ``.`` in the test name, e.g. the brackets
  of a parametrized test, become ``_``). Commit it with the tests.
* First run: the baseline does not exist; it is written and the test fails, saying so.
* Later runs: the results are compared with :func:`initdiag.compare`; on drift the test fails
  with the drifting layers (expected / got / error / tolerance) and the error statistics.
* ``pytest --initdiag-update``: where the results drift, the baseline is rewritten and the test
  fails, saying so (like pytest-regressions' ``--force-regen``); where they do not, nothing is
  written and the test passes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("initdiag")
    group.addoption("--initdiag-update", action="store_true", default=False,
                    help="initdiag_regression: rewrite the baselines of drifting tests (they fail "
                         "once, saying so)")


class InitdiagRegression:
    """The object the ``initdiag_regression`` fixture returns; see :meth:`check`."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self.update = bool(request.config.getoption("initdiag_update"))

    def path(self, basename: str | None = None) -> Path:
        """The baseline file of this test (``basename`` replaces the test name)."""
        test_file = Path(self._request.node.path)
        name = basename or self._request.node.name
        return test_file.parent / test_file.stem / (re.sub(r"[^\w.-]", "_", name) + ".json")

    def check(self, result: Any, *, basename: str | None = None, rtol: float | None = None,
              atol: float | None = None, metrics: Sequence[str] | None = None,
              tolerances: Mapping[str, Mapping[str, float]] | None = None) -> None:
        """Compare ``result`` (ProbeResult or SweepResult) with this test's baseline.

        Args:
          result: the results to check.
          basename: baseline file name (without ``.json``) instead of the test's name, to
            check several results in one test.
          rtol, atol, metrics, tolerances: as in :func:`initdiag.compare`.

        Raises:
          pytest.fail: baseline created or regenerated, or the results drift.
        """
        __tracebackhide__ = True
        from initdiag.regression import compare, save_baseline

        path = self.path(basename)
        kw = dict(rtol=rtol, atol=atol, metrics=metrics, tolerances=tolerances)
        if not path.exists():
            compare(result, result, **kw)  # a bad argument fails now, not on the next run
            save_baseline(result, path)
            pytest.fail(f"initdiag baseline not found; created {path}\n"
                        f"Review and commit it; the next run compares against it.")
        try:
            cmp = compare(result, path, **kw)
        except ValueError as e:  # e.g. seeds changed; a corrupted baseline is regenerated too
            if not self.update:
                raise
            save_baseline(result, path, overwrite=True)
            pytest.fail(f"initdiag baseline regenerated (--initdiag-update): {path}\n"
                        f"The old one could not be compared: {e}")
        if cmp.passed:
            return
        if self.update:
            save_baseline(result, path, overwrite=True)
            pytest.fail(f"initdiag baseline regenerated (--initdiag-update): {path}\n"
                        f"It differed from the new results:\n{cmp.render()}")
        pytest.fail(f"initdiag: results drift from the baseline {path}\n{cmp.render()}\n"
                    f"If the change is intended, regenerate with pytest --initdiag-update.")


@pytest.fixture
def initdiag_regression(request: pytest.FixtureRequest) -> InitdiagRegression:
    """Check probe results against a baseline stored next to the test (see the module doc)."""
    return InitdiagRegression(request)
