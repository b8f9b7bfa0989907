"""initdiag: see, before a single training step, whether an initialization lets signal flow.

The public API is re-exported here; every name is documented in its module.
"""

from initdiag.version import __version__ as __version__

from initdiag.nn.activations import Activation as Activation
from initdiag.nn.activations import activation as activation
from initdiag.config import ProbeConfig as ProbeConfig
from initdiag.checkpoint import CheckpointError as CheckpointError
from initdiag.analysis.diagnosis import Thresholds as Thresholds
from initdiag.analysis.diagnosis import Verdict as Verdict
from initdiag.analysis.diagnosis import diagnose as diagnose
from initdiag.nn.initializers import STANDARD_INITIALIZERS as STANDARD_INITIALIZERS
from initdiag.nn.initializers import initializer as initializer
from initdiag.engine.cache import enable as enable_cache
from initdiag.model.api import probe_fn as probe_fn
from initdiag.model.api import probe_model as probe_model
from initdiag.model.api import sweep_model as sweep_model
from initdiag.model.api import sweep_fn as sweep_fn
from initdiag.model.reinit import reinit as reinit
from initdiag.model.reinit import reinit_plan as reinit_plan
from initdiag.model.calibrate import calibrate as calibrate
from initdiag.model.result import ModelResult as ModelResult
from initdiag.model.result import ModelSweep as ModelSweep
from initdiag.model.tap import tap as tap
from initdiag.probe import DEFAULT_SWEEP as DEFAULT_SWEEP
from initdiag.probe import probe as probe
from initdiag.probe import probe_config as probe_config
from initdiag.probe import probe_params as probe_params
from initdiag.probe import sweep as sweep
from initdiag.regression import BaselineError as BaselineError
from initdiag.regression import Comparison as Comparison
from initdiag.regression import assert_healthy as assert_healthy
from initdiag.regression import compare as compare
from initdiag.regression import load_baseline as load_baseline
from initdiag.regression import save_baseline as save_baseline
from initdiag.regression import update_baseline as update_baseline
from initdiag.results import METRICS as METRICS
from initdiag.results import ProbeResult as ProbeResult
from initdiag.results import ResultsFileError as ResultsFileError
from initdiag.results import SweepResult as SweepResult
from initdiag.results import load as load
from initdiag.nn.stacks import StackSpec as StackSpec
from initdiag.nn.stacks import apply_stack as apply_stack
from initdiag.nn.stacks import init_stack as init_stack
from initdiag.nn.stacks import make_spec as make_spec
from initdiag.train import TrainConfig as TrainConfig
from initdiag.train import TrainResult as TrainResult
from initdiag.train import TrainSweep as TrainSweep
from initdiag.train import train_fn as train_fn
from initdiag.train import train_probe as train_probe
from initdiag.train import train_sweep as train_sweep


def write_report(results, out, *, title=None, command=None, verdicts=None):
    """Write the HTML report of stack or model results into the folder ``out``; returns the
    page's path (:func:`initdiag.report.api.write_report`; imports matplotlib on first use)."""
    from initdiag.report.api import write_report as _write_report

    return _write_report(results, out, title=title, command=command, verdicts=verdicts)


def __getattr__(name: str):
    # initdiag.theory imports scipy.optimize (~0.4-0.9 s): loaded on first use, not on import.
    if name == "theory":
        import importlib

        return importlib.import_module("initdiag.theory")
    raise AttributeError(f"module 'initdiag' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + ["theory"])
