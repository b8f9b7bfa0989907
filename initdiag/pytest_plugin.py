"""pytest plugin (entry point ``pytest11``): the ``initdiag_regression`` fixture.

In the style of pytest-regressions::

    def test_init(initdiag_regression):
        result = initdiag.probe("tanh", "xavier_normal", depth=20, width=64, batch=64, seed=0)
        initdiag_regression.check(result)

* The baseline is ``<test file folder>/<test file name without .py>/<test name>.json``. The
  test name is the test's node id after the file path with ``::`` as ``__``: ``test_f.json``
  for a function, ``TestRelu__test_it.json`` for a method (so same-named methods of two
  classes do not share a file), ``test_x_relu-0.5_.json`` for ``test_x[relu-0.5]``:
  characters other than letters, digits, ``_``, ``-`` and ``.`` become ``_``, and a name over
  200 bytes is cut and ends with a hash of the whole name. Two tests whose names still
  coincide (``test_c[a/b]``, ``test_c[a:b]``) fail, asking for ``check(..., basename=...)``.
  Commit the baselines with the tests.
* First run: the baseline does not exist; it is written and the test fails, saying so.
* Later runs: the results are compared with :func:`initdiag.compare`; on drift the test fails
  with the drifting layers (expected / got / error / tolerance) and the error statistics.
* ``pytest --initdiag-update``: where the results drift (or the baseline cannot be compared),
  the baseline is rewritten and the test fails, saying so (like pytest-regressions'
  ``--force-regen``); where they do not, nothing is written and the test passes
  (:func:`initdiag.update_baseline`, the rule ``initdiag check --update`` follows too).
* A baseline that cannot be compared (truncated or corrupted, another schema version, other
  seeds) or a bad argument fails the test with the message (and, for the baseline, how to
  regenerate it); every failure's traceback ends in the user's test, without initdiag's frames.
"""

from __future__ import annotations

import hashlib
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
        """The baseline file of this test (``basename`` replaces the test's name); see the
        module docstring for how the name is made."""
        node = self._request.node
        test_file = Path(node.path)
        name = basename or _test_name(node.nodeid, node.name)
        return test_file.parent / test_file.stem / _file_name(name)

    def _claim(self, path: Path) -> None:
        """Fail when another test of this session already uses ``path`` as its default
        baseline (two names that differ only in replaced characters)."""
        __tracebackhide__ = True
        claims = self._request.config.stash.setdefault(_CLAIMS, {})
        me = self._request.node.nodeid
        other = claims.setdefault(path, me)
        if other != me:
            pytest.fail(f"initdiag_regression: {me} and {other} map to the same baseline file "
                        f"{path} (their names differ only in characters that are not kept in "
                        f"file names); give this check a name of its own: "
                        f"initdiag_regression.check(result, basename=...)")

    def check(self, result: Any, *, basename: str | None = None, rtol: float | None = None,
              atol: float | None = None, metrics: Sequence[str] | None = None,
              tolerances: Mapping[str, Mapping[str, float]] | None = None) -> None:
        """Compare ``result`` (ProbeResult, SweepResult, TrainResult or TrainSweep) with this
        test's baseline.

        Args:
          result: the results to check.
          basename: baseline file name (without ``.json``) instead of the test's name, to
            check several results in one test.
          rtol, atol, metrics, tolerances: as in :func:`initdiag.compare`.

        Raises:
          pytest.fail: baseline created or regenerated; the results drift; a bad argument; or
            a baseline that cannot be compared (corrupted, other schema version, other seeds),
            with how to regenerate it. The traceback ends in the calling test.
        """
        __tracebackhide__ = True
        from initdiag.regression import compare, save_baseline
        from initdiag.results import ProbeResult, SweepResult
        from initdiag.train.result import TrainResult, TrainSweep

        if not isinstance(result, (ProbeResult, SweepResult, TrainResult, TrainSweep)):
            pytest.fail(f"initdiag_regression.check: result must be a ProbeResult, a "
                        f"SweepResult, a TrainResult or a TrainSweep; got "
                        f"{type(result).__name__}")
        kw = dict(rtol=rtol, atol=atol, metrics=metrics, tolerances=tolerances)
        _, problem = _call(compare, result, result, **kw)  # a bad argument fails on any run
        if problem:
            pytest.fail(f"initdiag_regression.check: {problem}")
        path = self.path(basename)
        if basename is None:
            self._claim(path)
        if not path.exists():
            _, problem = _call(save_baseline, result, path)
            if problem:
                pytest.fail(f"initdiag_regression.check: {problem}")
            pytest.fail(f"initdiag baseline not found; created {path}\n"
                        f"Review and commit it; the next run compares against it.")
        if self.update:
            self._update(result, path, kw)
            return
        cmp, problem = _call(compare, result, path, **kw)
        if problem:
            pytest.fail(f"initdiag: cannot check against the baseline {path}:\n{problem}\n"
                        f"If the new results are intended (or the file is damaged), regenerate "
                        f"the baseline with pytest --initdiag-update.")
        if cmp.passed:
            return
        pytest.fail(f"initdiag: results drift from the baseline {path}\n{cmp.render()}\n"
                    f"If the change is intended, regenerate with pytest --initdiag-update.")

    def _update(self, result: Any, path: Path, kw: dict[str, Any]) -> None:
        """``--initdiag-update``: rewrite the baseline unless the results are within tolerance
        (:func:`initdiag.update_baseline`); when it was rewritten, fail, saying so and why."""
        __tracebackhide__ = True
        from initdiag.regression import update_baseline

        done, problem = _call(update_baseline, result, path, **kw)
        if problem:
            pytest.fail(f"initdiag_regression.check: cannot regenerate {path}: {problem}")
        if not done.rewritten:
            return
        if done.comparison is not None:
            why = f"It differed from the new results:\n{done.comparison.render()}"
        elif done.error is not None:
            why = f"The old one could not be compared: {done.error}"
        else:
            why = "It did not exist."
        pytest.fail(f"initdiag baseline regenerated (--initdiag-update): {path}\n{why}")


#: Session-wide map of default baseline paths to the node id of the test that uses each.
_CLAIMS = pytest.StashKey[dict]()
#: Longest baseline file name kept whole, in bytes (plus ".json"; file systems allow 255).
_MAX_NAME = 200


def _test_name(nodeid: str, name: str) -> str:
    """A test's node id after the file path, ``::`` as ``__``: ``"test_f"``,
    ``"TestRelu__test_it"``, ``"test_x[relu-0.5]"`` (``name`` when the id has no ``::``)."""
    _, sep, rest = nodeid.partition("::")
    return rest.replace("::", "__") if sep else name


def _file_name(name: str) -> str:
    """``name`` + ``.json`` with every character other than a letter, digit, ``_``, ``-`` or
    ``.`` replaced by ``_``; a name longer than ``_MAX_NAME`` bytes is cut and ends with a hash
    of the whole name, so that long parametrized ids stay distinct."""
    safe = re.sub(r"[^\w.-]", "_", name)
    if len(safe.encode()) > _MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        safe = safe.encode()[:_MAX_NAME - 13].decode(errors="ignore") + "-" + digest
    return safe + ".json"


def _call(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, str | None]:
    """``(fn(*args, **kwargs), None)``, or ``(None, message)`` when it raises a ValueError
    (BaselineError and SeedMismatchError are ValueErrors) or an OSError.

    The caller then calls pytest.fail outside any ``except`` block, so that the failure shows
    neither initdiag's frames nor a chained "During handling of the above exception" traceback.
    """
    try:
        return fn(*args, **kwargs), None
    except (ValueError, OSError) as e:
        return None, str(e)


@pytest.fixture
def initdiag_regression(request: pytest.FixtureRequest) -> InitdiagRegression:
    """Check probe results against a baseline stored next to the test (see the module doc)."""
    return InitdiagRegression(request)
