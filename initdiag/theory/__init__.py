"""Mean-field theory beside measurement (Poole et al. 2016; Schoenholz et al. 2017).

Variances throughout: ``weight_var`` is sigma_w^2 = fan_in * Var(W_ij), ``bias_var`` is
sigma_b^2 = Var(b_j), ``q`` the variance of a pre-activation. See :mod:`._meanfield` for the maps
and depth scales, :mod:`._predict` for per-layer predictions of a probe's metrics and where they
do not apply, :mod:`._finite` for the finite-width band, :mod:`._quadrature` for the integrals,
:mod:`._compare` for measurement beside prediction (:func:`compare`, :func:`compare_frame`).
"""

from initdiag.theory._compare import COMPARED as COMPARED
from initdiag.theory._compare import Comparison as Comparison
from initdiag.theory._compare import compare as compare
from initdiag.theory._compare import compare_frame as compare_frame

from initdiag.theory._finite import correlations as correlations
from initdiag.theory._finite import grad_slope_sd as grad_slope_sd
from initdiag.theory._finite import grad_step_var as grad_step_var
from initdiag.theory._meanfield import c_map as c_map
from initdiag.theory._meanfield import c_star as c_star
from initdiag.theory._meanfield import chi as chi
from initdiag.theory._meanfield import chi1 as chi1
from initdiag.theory._meanfield import depth_scales as depth_scales
from initdiag.theory._meanfield import edge_of_chaos as edge_of_chaos
from initdiag.theory._meanfield import fixed_point as fixed_point
from initdiag.theory._meanfield import phase_grid as phase_grid
from initdiag.theory._meanfield import q_map as q_map
from initdiag.theory._predict import PREDICTED as PREDICTED
from initdiag.theory._predict import NotApplicable as NotApplicable
from initdiag.theory._predict import Prediction as Prediction
from initdiag.theory._predict import predict as predict
from initdiag.theory._predict import predict_config as predict_config
from initdiag.theory._predict import predict_configs as predict_configs
from initdiag.theory._predict import predict_result as predict_result
from initdiag.theory._predict import saturation_at as saturation_at
from initdiag.theory._quadrature import gaussian as gaussian


def code_files() -> tuple:
    """The files of the theory's code (for caches keyed by it: a change is a miss)."""
    from pathlib import Path

    return tuple(sorted(Path(__file__).parent.glob("*.py")))
