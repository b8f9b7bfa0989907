"""The captions of the report figures: one sentence each that states what the figure shows.

Definitions come from :data:`initdiag.results.METRICS`; the line figures add how seeds are drawn
(:data:`SEED_NOTE`), those with the mean-field overlay what it is (:data:`THEORY_NOTE`, and
:data:`BAND_NOTE` or :data:`NO_BAND_NOTE`). A caption is a function ``(sweep, ctx) -> str``
(``ctx`` may be None); only the Jacobian's reads the sweep (its depth, widths and seed). Text
only: no drawing here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from initdiag.report.data import HEATMAP_MAX_DECADES
from initdiag.report.theory_data import JACOBIAN_MAX_WIDTH
from initdiag.results import METRICS, SweepResult

#: Appended to the captions of line figures (inside their one sentence).
SEED_NOTE = " (line: median over seeds; shaded band: min to max over seeds)"
#: Caption note for figures that overlay the mean-field prediction.
THEORY_NOTE = (". Thin dashed lines: the infinite-width mean-field prediction (initdiag.theory; "
               "gradients drawn through the measured last layer), where the theory applies (not "
               "with normalization, residual, zeros/constant or LSUV init)")
#: Caption note of the activation-variance figure's finite-width band.
BAND_NOTE = ("; light shading around it: the expected finite-width spread, +-2 standard "
             "deviations of ln Var[h^l] for one network of this width and batch (initdiag.theory,"
             " Prediction.band), mapped to Var[x^l] by the mean-field map q -> Var[phi(z)], "
             "z ~ N(0, q).")
#: Caption note of the gradient figure: the theory has no finite-width band for gradients.
NO_BAND_NOTE = "; the gradient prediction has no finite-width band (the theory gives none)."


def _defs(*metrics: str) -> str:
    return "; ".join(f"{m} = {METRICS[m]}" for m in metrics)


def _setting(sweep: SweepResult, key: str) -> str:
    return "/".join(dict.fromkeys(str(r.config.get(key)) for r in sweep))


def act_var(sweep: SweepResult, ctx: Any = None) -> str:
    """Caption of the activation-variance figure."""
    return (f"Variance of each layer's output by depth ({_defs('act_var')}); it should stay "
            f"roughly constant" + SEED_NOTE + THEORY_NOTE + BAND_NOTE)


def grad_rms(sweep: SweepResult, ctx: Any = None) -> str:
    """Caption of the gradient-RMS figure."""
    return (f"Backpropagated gradient by depth ({_defs('grad_preact_rms')}); a straight falling "
            f"or rising line on this log scale is vanishing or exploding gradients"
            + SEED_NOTE + THEORY_NOTE + NO_BAND_NOTE)


def saturation(sweep: SweepResult, ctx: Any = None) -> str:
    """Caption of the saturation / dead-units figure."""
    return (f"Saturation for tanh/sigmoid-like φ ({_defs('saturation')}), and for ReLU the zero "
            f"and dead fractions ({_defs('zero_frac', 'dead_frac')})" + SEED_NOTE + ".")


def act_hist(sweep: SweepResult, ctx: Any = None) -> str:
    """Caption of the activation-distribution figure."""
    return ("Histogram of the entries of a^l = φ(h^l) at the layers shown, one row per "
            "initializer (and per depth, width or other setting when they vary), pooled over "
            "the seeds of that one configuration, as the fraction of the batch x units entries "
            "per bin (log scale; the outer bins also count values beyond the range): mass "
            "collapsing onto 0 or piling up at φ's bounds is the classic failure.")


def grad_heatmap(sweep: SweepResult, ctx: Any = None) -> str:
    """Caption of the gradient heatmap."""
    return (f"log10 of the median over seeds of the gradient RMS ({_defs('grad_preact_rms')}) "
            f"per initializer and layer; the colour scale is centred on the typical last-layer "
            f"value (colours saturate {HEATMAP_MAX_DECADES:g} decades away), so blue is "
            f"vanishing and red exploding towards the input, grey is exactly 0.")


def grad_weight_ratio(sweep: SweepResult, ctx: Any = None) -> str:
    """Caption of the relative weight-gradient figure."""
    return (f"Relative size of one gradient step per layer ({_defs('grad_weight_ratio')}, with "
            f"{_defs('grad_weight_norm')}); layers whose ratio differs by decades learn at very "
            f"different speeds under one learning rate" + SEED_NOTE + ".")


def phase_diagram(sweep: SweepResult, ctx: Any = None) -> str:
    """Caption of the order / chaos phase diagram."""
    return ("Mean-field phase diagram of each activation (Poole et al. 2016; Schoenholz et al. "
            "2017): the colour is log2 chi_1, where chi_1 = sigma_w^2 E[phi'(z)^2], z ~ N(0, q*), "
            "at the fixed point q* of q -> sigma_w^2 E[phi(z)^2] + sigma_b^2 (sigma_w^2 = fan_in "
            "Var(W_ij), sigma_b^2 = Var(b_j)), so blue (chi_1 < 1) is the ordered phase where "
            "gradients vanish and red (chi_1 > 1) the chaotic one where they explode; the black "
            "line chi_1 = 1 is the edge of chaos, dashed contours the depth scale xi_c over which "
            "two inputs' correlation approaches its fixed point (layers), and each marker one of "
            "the run's initializers at its (sigma_w^2, sigma_b^2) for the run's width "
            "(initializers the theory does not describe are listed under the panel title).")


def jacobian(sweep: SweepResult, ctx: Any = None) -> str:
    """Caption of the Jacobian singular-value figure: where the spectra were computed (the
    run's depth and width, or :data:`~initdiag.report.theory_data.JACOBIAN_MAX_WIDTH`)."""
    widths = sorted({w for r in sweep for w in np.atleast_1d(r.config["width"]).tolist()})
    seeds = list(dict.fromkeys(r.seed for r in sweep))
    reduced = [w for w in widths if w > JACOBIAN_MAX_WIDTH]
    where = (f"at the run's depth ({_setting(sweep, 'depth')}) and width "
             f"({_setting(sweep, 'width')})")
    if reduced:
        where = (f"at the run's depth ({_setting(sweep, 'depth')}) but width "
                 f"{JACOBIAN_MAX_WIDTH} instead of {'/'.join(map(str, reduced))} (cost grows as "
                 f"width^3; initializers with a fixed scale, such as normal or uniform, have a "
                 f"different sigma_w^2 there)")
    return (f"Density of log10 of the singular values sigma of the input-output Jacobian "
            f"J = dx^L/dx^0 of each initializer's freshly drawn stack (exact: jax.jacfwd and an "
            f"SVD of J at one N(0, 1) input point, seed {seeds[0]}, {where}); all sigma near 1 "
            f"(dotted line) is dynamical isometry (Pennington, Schoenholz & Ganguli 2017), a "
            f"wide spread means some input directions are amplified while others are lost.")
