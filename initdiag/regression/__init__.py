"""Regression checks on layer statistics: baselines, comparison with tolerances, health checks.

* :func:`save_baseline` / :func:`load_baseline`: a human-diffable JSON baseline (:mod:`.baseline`).
* :func:`compare` -> :class:`Comparison`: every deviation, one-sided configs and metrics
  (:mod:`.compare`), with per-metric tolerance kinds (:mod:`.tolerance`).
* :func:`update_baseline`: rewrite a baseline unless new results are within tolerance of it
  (:mod:`.update`).
* The pytest fixture ``initdiag_regression`` (:mod:`initdiag.pytest_plugin`) and the command
  ``initdiag check`` (:mod:`initdiag.cli.check`) are thin layers over these.
"""

from initdiag.regression.baseline import BaselineError as BaselineError
from initdiag.regression.baseline import load_baseline as load_baseline
from initdiag.regression.baseline import probe_list as probe_list
from initdiag.regression.baseline import save_baseline as save_baseline
from initdiag.regression.compare import Comparison as Comparison
from initdiag.regression.compare import Deviation as Deviation
from initdiag.regression.compare import SeedMismatchError as SeedMismatchError
from initdiag.regression.compare import compare as compare
from initdiag.regression.compare import config_label as config_label
from initdiag.regression.health import assert_healthy as assert_healthy
from initdiag.regression.tolerance import DEFAULT_TOLERANCES as DEFAULT_TOLERANCES
from initdiag.regression.tolerance import Tolerance as Tolerance
from initdiag.regression.update import BaselineUpdate as BaselineUpdate
from initdiag.regression.update import update_baseline as update_baseline
