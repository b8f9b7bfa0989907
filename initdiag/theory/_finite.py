"""How far one finite network is expected to sit from the mean-field recursion.

Setting: layer widths n_l, a batch of B inputs whose pre-activations at layer l have (mean-field)
variance q_l and pairwise correlation c_l (c_1 = sigma_b^2 / q_1 for independent inputs,
c_{l+1} = (sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2) / q_{l+1}). Q_l is the *measured*
``preact_var`` of layer l (over batch and units); F the length map of layer l+1.

**One step.** Given layer l, Q_{l+1} = F(Q_l) (1 + e_l) with, to first order in 1/n,

    Var(e_l) = [ sigma_w^4 V_l / n_l + 2 (F^2 / B + (1 - 1/B) F_c^2) / n_{l+1} ] / F^2

* the first term: layer l has only n_l units, so its measured E[phi^2] and its measured q differ
  from a Gaussian's in a correlated way. Per unit, psi(u) = phi(u)^2 - k u^2 with
  k = dE[phi^2]/dq is the part not absorbed by using the measured q;
  V_l = Var(psi)/B + (1 - 1/B) Cov(psi(u1), psi(u2)) at correlation c_l.
* the second: the n_{l+1} units of layer l+1 are a finite sample of Gaussian weights and biases
  (a Wishart-type fluctuation); F = F(q_l), F_c = F * c_{l+1} is the cross-sample covariance.

The e_l of different layers are uncorrelated (each has mean 0 given the layers below), so a
one-step prediction has no systematic bias, only this noise.

**The whole profile.** delta_l = ln(Q_l / q_l) follows delta_{l+1} = s_l delta_l + e_l with
s_l = q_l F'(q_l) / F(q_l), so Var(delta_{l+1}) = s_l^2 Var(delta_l) + Var(e_l). The first layer
adds the input's own sampling noise (entries of variance v: Var of their mean square is
2 v^2 / (n_0 B), exact for Gaussian input). For ReLU with sigma_w^2 = 2 and a single input
(B = 1, or fully correlated inputs, c = 1) each step adds exactly 5 / n: Hanin's (2018)
Var[ln q_L] ~ 5 sum_l 1/n_l. Independent inputs average part of the noise away while their
correlation is below 1, so a batch's band is narrower. The median of Q_l sits at
q_l exp(-Var(delta_l)/2) (the mean is unbiased); the band is centred on q_l.

**Gradients.** Going back one layer, g^l = phi'(h^l) * (W^{l+1} g^{l+1}); with the backward
weights independent of the forward pass (the gradient independence assumption) and one input,
R_l = |g^l|^2 / |g^{l+1}|^2 = Var(W^{l+1}) sum_j phi'(h^l_j)^2 xi_j^2 over the n_l units, xi_j
iid N(0, 1): E[R_l] is the chi-product's factor and Var(R_l) / E[R_l]^2 =
(3 E[phi'^4] - E[phi'^2]^2) / (n_l E[phi'^2]^2) (5 / n for relu, 2 / n for phi' = 1). ln of the
gradient RMS is then a random walk backward from layer L with steps of variance
Var(R_l) / (4 E[R_l]^2); :func:`grad_slope_sd` gives the spread of its least-squares slope
against l. A batch of B inputs averages the unit term over samples, so this one-input spread is
the widest: a measured slope outside it is not explained by finite width.
"""

from __future__ import annotations

import numpy as np

from initdiag.theory._quadrature import Gaussian


def correlations(g: Gaussian, q: np.ndarray, w: np.ndarray, b: np.ndarray, widths,
                 input_width) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise correlation of two independent inputs' pre-activations per layer: its
    mean-field value c_l and its finite-width spread nu_l = E[(c - c_l)^2] over pairs.

    nu_1 = (1 - c_1^2)^2 / n_1 + (sigma_w^2 v / q_1)^2 / n_0 (the inputs' own overlap); then
    nu_{l+1} = C'(c_l)^2 nu_l + (1 - c_{l+1}^2)^2 / n_{l+1}
    + sigma_w^4 Var(phi(u1) phi(u2)) / (n_l F^2): the correlation map's slope
    C'(c) = sigma_w^2 q E[phi'(u1) phi'(u2)] / F carries the spread forward, and each layer's
    finite sample of weights and of units adds to it. At the edge of chaos C' ~ 1 near c = 0 and
    the spread grows like l / n: it raises the Wishart term of the one-step variance.

    Layers are the last axis of ``q``, ``w``, ``b``, ``widths`` ([..., L]); leading axes are
    independent stacks computed together (``input_width``: a number or one per stack). Where
    q_{l+1} is not finite and > 0, c_{l+1} = 1 and nu_{l+1} = 0.
    """
    q, w, b = (np.asarray(a, np.float64) for a in (q, w, b))
    widths = np.broadcast_to(np.asarray(widths, np.float64), q.shape)
    n0 = np.asarray(input_width, np.float64)
    c, nu = np.empty_like(q), np.empty_like(q)
    pos = q[..., 0] > 0
    safe0 = np.where(pos, q[..., 0], 1.0)
    c[..., 0] = np.where(pos, b[..., 0] / safe0, 1.0)  # independent inputs: only the bias is shared
    # the inputs' own overlap (variance 1/n_0), carried by the share sigma_w^2 v of q_1
    signal = np.where(pos, (q[..., 0] - b[..., 0]) / safe0, 0.0)
    nu[..., 0] = (1 - c[..., 0] ** 2) ** 2 / widths[..., 0] + signal**2 / n0
    for i in range(q.shape[-1] - 1):
        F = q[..., i + 1]
        ok = (F > 0) & np.isfinite(F)
        qi, ci = np.where(ok, q[..., i], 1.0), np.where(ok, c[..., i], 0.0)
        F = np.where(ok, F, 1.0)
        pr = g.pair(qi, ci)
        c_next = np.clip((w[..., i + 1] * pr["phiphi"] + b[..., i + 1]) / F, -1.0, 1.0)
        slope = w[..., i + 1] * qi * pr["dd"] / F
        unit = (w[..., i + 1] ** 2 * np.maximum(pr["pp2"] - pr["phiphi"] ** 2, 0.0)
                / (widths[..., i] * F**2))
        nu_next = slope**2 * nu[..., i] + (1 - c_next**2) ** 2 / widths[..., i + 1] + unit
        c[..., i + 1] = np.where(ok, c_next, 1.0)
        nu[..., i + 1] = np.where(ok, nu_next, 0.0)
    return c, nu


def step_variance(g: Gaussian, q: np.ndarray, c_mean: np.ndarray, nu: np.ndarray, w: np.ndarray,
                  widths, batch, input_width, input_var) -> np.ndarray:
    """Var(e_l) for each layer l = 1..L (index 0: the input -> layer 1 step); pairs enter at
    their root-mean-square correlation sqrt(c_l^2 + nu_l). Layers are the last axis, leading
    axes independent stacks (as :func:`correlations`; ``batch``, ``input_width`` and
    ``input_var`` numbers or one per stack); every layer's pair expectations in one call."""
    q, c_mean, nu, w = (np.asarray(a, np.float64) for a in (q, c_mean, nu, w))
    widths = np.broadcast_to(np.asarray(widths, np.float64), q.shape)
    batch, n0, v = (np.asarray(a, np.float64)[..., None] for a in (batch, input_width, input_var))
    c = np.sign(c_mean) * np.sqrt(np.minimum(c_mean**2 + nu, 1.0))
    c = np.where(c_mean == 0, np.sqrt(np.minimum(nu, 1.0)), c)
    inv_b = 1.0 / batch
    out = np.empty_like(q)
    F0 = q[..., :1]
    wish = 2.0 * (F0**2 * inv_b + (1 - inv_b) * (F0 * c[..., :1]) ** 2) / widths[..., :1]
    inp = w[..., :1] ** 2 * 2.0 * v**2 / (n0 * batch)
    out[..., :1] = (wish + inp) / F0**2
    F = q[..., 1:]
    pair_c = g.pair(q[..., :-1], c[..., :-1])["psi_cov"]
    pair_1 = g.pair(q[..., :-1], 1.0)["psi_cov"]
    V = inv_b * pair_1 + (1 - inv_b) * pair_c
    wish = 2.0 * (F**2 * inv_b + (1 - inv_b) * (F * c[..., 1:]) ** 2) / widths[..., 1:]
    out[..., 1:] = (w[..., 1:] ** 2 * V / widths[..., :-1] + wish) / F**2
    return out


def log_variance(g: Gaussian, q: np.ndarray, w: np.ndarray, step_var: np.ndarray) -> np.ndarray:
    """Var(ln(Q_l / q_l)) per layer from the one-step variances (see the module docstring);
    layers on the last axis, leading axes independent stacks."""
    q, w, step_var = (np.asarray(a, np.float64) for a in (q, w, step_var))
    slope = g.moments(q)["slope"]
    out = np.empty_like(q)
    out[..., 0] = step_var[..., 0]
    for i in range(q.shape[-1] - 1):
        s = q[..., i] * w[..., i + 1] * slope[..., i] / q[..., i + 1]
        out[..., i + 1] = s**2 * out[..., i] + step_var[..., i + 1]
    return out


def grad_step_var(g: Gaussian, q: np.ndarray, widths) -> np.ndarray:
    """Var of ln(g^l RMS / g^{l+1} RMS) for l = 1..L-1 (one input; module docstring)."""
    m = g.moments(np.asarray(q, np.float64)[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (3 * m["dphi4"] - m["dphi2"] ** 2) / (np.asarray(widths, np.float64)[:-1] * m["dphi2"] ** 2)
    return rel / 4.0


def grad_slope_sd(step_var: np.ndarray, keep: np.ndarray | None = None) -> float:
    """Standard deviation of the least-squares slope of log10 of the gradient RMS against the
    layer index l, over the layers in ``keep`` (bool [L]; default all), when ln RMS is the
    backward random walk with per-layer step variances ``step_var`` [L-1] (:func:`grad_step_var`):
    x_t = sum_{s=t}^{L-1} e_s, slope = sum_t c_t x_t, so Var = sum_s step_var_s (sum_{t<=s} c_t)^2.
    About sqrt(1.2 / L) times the step's sd for L equal steps."""
    step_var = np.asarray(step_var, np.float64)
    L = step_var.size + 1
    keep = np.ones(L, bool) if keep is None else np.asarray(keep, bool)
    t = np.arange(1, L + 1, dtype=np.float64)
    if keep.sum() < 2:
        return float("nan")
    tk = t[keep]
    c = np.zeros(L)
    c[keep] = (tk - tk.mean()) / np.sum((tk - tk.mean()) ** 2)
    coef = np.cumsum(c)[:-1]  # e_s (s = 1..L-1) enters x_t for every t <= s
    return float(np.sqrt(np.sum(step_var * coef**2)) / np.log(10.0))
