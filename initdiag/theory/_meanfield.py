"""Mean-field maps of a deep fully connected stack (Poole et al. 2016; Schoenholz et al. 2017).

Throughout, ``weight_var`` is sigma_w^2 = fan_in * Var(W_ij) and ``bias_var`` is
sigma_b^2 = Var(b_j): **variances, not standard deviations**. With ``q`` the variance of a
pre-activation and z ~ N(0, q):

* length map       F(q) = sigma_w^2 E[phi(z)^2] + sigma_b^2       (q^{l+1} = F(q^l))
* its slope        F'(q) = sigma_w^2 E[phi'(z)^2 + phi(z) phi''(z)]  (Stein's lemma)
* backward factor  chi(q) = sigma_w^2 E[phi'(z)^2]; chi_1 = chi(q*)
* correlation map  C(c) = (sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2) / q*, (u1, u2) with
  variances q* and correlation c; c* its stable fixed point (c* = 1 in the ordered phase
  chi_1 < 1) and chi_c = sigma_w^2 E[phi'(u1) phi'(u2)] at c*, the slope of C at c*.

Depth scales (Schoenholz et al. 2017, eqs. 5 and 9): ``xi_q = -1 / ln F'(q*)`` (how fast q
reaches q*) and ``xi_c = -1 / ln chi_c`` (how fast two inputs' correlation reaches c*;
chi_c = chi_1 when c* = 1). xi_c diverges at the edge of chaos chi_1 = 1.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from scipy.optimize import brentq

from initdiag.nn.activations import activation as resolve_activation
from initdiag.theory._quadrature import gaussian

#: Fixed points are searched on q in [Q_MIN, Q_MAX] (variances).
Q_MIN, Q_MAX = 1e-12, 1e12
_Q_GRID = np.logspace(np.log10(Q_MIN), np.log10(Q_MAX), 481)


def _check(weight_var: float, bias_var: float) -> tuple[float, float]:
    w, b = float(weight_var), float(bias_var)
    if not (math.isfinite(w) and w >= 0):
        raise ValueError(f"weight_var (sigma_w^2, a variance) must be finite and >= 0; got {weight_var!r}")
    if not (math.isfinite(b) and b >= 0):
        raise ValueError(f"bias_var (sigma_b^2, a variance) must be finite and >= 0; got {bias_var!r}")
    return w, b


def q_map(activation: Any, weight_var: float, bias_var: float, q) -> np.ndarray:
    """F(q) = sigma_w^2 E_{z~N(0,q)}[phi(z)^2] + sigma_b^2 (variances in, variance out)."""
    w, b = _check(weight_var, bias_var)
    return w * gaussian(activation).moments(q)["phi2"] + b


def fixed_point(activation: Any, weight_var: float, bias_var: float, q0: float = 1.0) -> float:
    """q*: the fixed point of the length map that the recursion reaches from ``q0``.

    F is increasing for every built-in phi, so the orbit q0, F(q0), ... is monotone and converges
    to the nearest root of F(q) = q in the direction it moves. That root is located on a log grid
    of q in [1e-12, 1e12] and polished with :func:`scipy.optimize.brentq`.

    Args:
      activation: name, Activation or callable.
      weight_var: sigma_w^2 = fan_in * Var(W_ij) (a variance).
      bias_var: sigma_b^2 = Var(b_j) (a variance).
      q0: starting pre-activation variance (default 1.0).

    Returns:
      q* (a variance); 0.0 when q shrinks to 0 (e.g. tanh with sigma_w^2 <= 1, sigma_b^2 = 0);
      ``inf`` when q grows without bound (e.g. relu with sigma_w^2 > 2); ``q0`` itself when
      F(q0) = q0 (relu with sigma_w^2 = 2, sigma_b^2 = 0 keeps every q).
    """
    w, b = _check(weight_var, bias_var)
    return _fixed_point(resolve_activation(activation), w, b, float(q0))


@functools.lru_cache(maxsize=4096)
def _fixed_point(activation: Any, w: float, b: float, q0: float) -> float:
    """:func:`fixed_point`, computed once per distinct argument in a process."""
    g = gaussian(activation)
    G = lambda q: w * g.moments(q)["phi2"] + b - q  # noqa: E731
    g0 = float(G(q0))
    if abs(g0) <= 1e-13 * max(q0, 1.0):
        return float(q0)
    grid = _Q_GRID[_Q_GRID > q0] if g0 > 0 else _Q_GRID[_Q_GRID < q0][::-1]
    grid = np.concatenate([[q0], grid])
    vals = G(grid)
    flips = np.nonzero(np.sign(vals[1:]) != np.sign(g0))[0]
    if flips.size == 0:
        return math.inf if g0 > 0 else 0.0
    i = flips[0]
    a, c = sorted((grid[i], grid[i + 1]))
    if vals[i + 1] == 0:
        return float(grid[i + 1])
    return float(brentq(lambda q: float(G(q)), a, c, xtol=1e-14, rtol=1e-13))


def chi(activation: Any, weight_var: float, q) -> np.ndarray:
    """chi(q) = sigma_w^2 E_{z~N(0,q)}[phi'(z)^2]: the factor by which E|dL/dh|^2 grows per
    layer going backward, at pre-activation variance q."""
    w, _ = _check(weight_var, 0.0)
    return w * gaussian(activation).moments(q)["dphi2"]


def chi1(activation: Any, weight_var: float, bias_var: float, q0: float = 1.0) -> float:
    """chi_1 = sigma_w^2 E[phi'(z)^2] at the fixed point q* (:func:`fixed_point` from ``q0``).

    chi_1 < 1: ordered phase (gradients vanish, inputs' correlations go to 1); chi_1 > 1: chaotic
    (gradients explode, correlations decay). At q* = 0 it is the limit q -> 0+ of
    sigma_w^2 E[phi'(z)^2], sigma_w^2 (phi'(0-)^2 + phi'(0+)^2) / 2 (relu: sigma_w^2 / 2;
    tanh: sigma_w^2), not jax's one-sided phi'(0).

    Raises:
      ValueError: when q grows without bound (no fixed point, e.g. relu with sigma_w^2 > 2).
    """
    q = fixed_point(activation, weight_var, bias_var, q0)
    if math.isinf(q):
        raise ValueError(f"no fixed point: q grows without bound for {activation} at "
                         f"weight_var={weight_var}, bias_var={bias_var}")
    return float(chi(activation, weight_var, q))


def edge_of_chaos(activation: Any, bias_var: float, bracket: tuple[float, float] = (1e-3, 1e3)) -> float:
    """The weight variance sigma_w^2 at which chi_1 = 1 for the given bias variance sigma_b^2.

    * With sigma_b^2 = 0 and phi(0) = 0, q* = 0 is a fixed point with chi_1 = sigma_w^2 E0,
      E0 = (phi'(0-)^2 + phi'(0+)^2) / 2 (:func:`chi1`). When the orbit from q0 = 1 still goes
      to 0 just below sigma_w^2 = 1 / E0, that is the edge, exactly: tanh, linear, elu 1;
      relu 2 (He); leaky_relu 2 / (1 + s^2); selu 2 / (lambda^2 (1 + alpha^2)) = 0.4768.
    * Otherwise chi_1 - 1 is solved by :func:`scipy.optimize.brentq` in ``bracket``
      (variances). Where q diverges at the top of the bracket, the boundary sigma_w^2 beyond which
      it does is bisected first (q* from q0 = 1 never decreases as sigma_w^2 grows, since F grows
      with sigma_w^2 and with q, so there is one such boundary) to relative 1e-13, and chi_1 = 1
      is looked for below it: by brentq when chi_1 > 1 at the boundary (gelu with
      sigma_b^2 = 0.2: chi_1 crosses 1 at 1.9707, q diverges only at 2), else on a grid dense
      near the boundary. The root is accepted only where chi_1 is continuous (|chi_1 - 1| <
      1e-6 there), not where q* jumps.

    Raises:
      ValueError: when chi_1 - 1 does not change sign in the bracket, e.g. relu with
        sigma_b^2 > 0, whose chi_1 = sigma_w^2 / 2 approaches 1 only as q* diverges; or when
        chi_1 jumps past 1 with q* (gelu with sigma_b^2 = 0: q* = 0 and chi_1 = sigma_w^2 / 4
        until the orbit from q0 = 1 starts to diverge at sigma_w^2 = 2.35).
    """
    _check(1.0, bias_var)
    lo, hi = (float(v) for v in bracket)
    return _edge_of_chaos(resolve_activation(activation), float(bias_var), (lo, hi))


@functools.lru_cache(maxsize=1024)
def _edge_of_chaos(activation: Any, bias_var: float, bracket: tuple[float, float]) -> float:
    """:func:`edge_of_chaos`, computed once per distinct argument in a process (an argument
    that raises is not remembered)."""
    memo: dict[float, tuple[float, float]] = {}

    def qf(w: float) -> tuple[float, float]:
        w = float(w)
        if w not in memo:
            q = fixed_point(activation, w, bias_var)
            memo[w] = (q, math.inf if math.isinf(q) else float(chi(activation, w, q)) - 1.0)
        return memo[w]

    def f(w: float) -> float:
        return qf(w)[1]

    lo, hi = float(bracket[0]), float(bracket[1])
    if activation.homogeneous and bias_var > 0:
        # phi(z) = z phi'(z), so E[phi^2] = q E[phi'^2]: q* = sigma_w^2 E[phi'^2] q* + sigma_b^2
        # gives chi_1 = 1 - sigma_b^2 / q* < 1 wherever q* is finite (the search below finds the
        # same after bisecting where q diverges, ~0.5 s)
        raise ValueError(
            f"chi_1 stays below 1 for {activation} with bias_var={bias_var} wherever q* is "
            f"finite: phi is positively homogeneous, so chi_1 = 1 - bias_var / q* < 1, and 1 "
            f"only as q* diverges: no edge of chaos with a finite q*")
    g = gaussian(activation)
    if float(bias_var) == 0.0 and float(g.phi(0.0)) == 0.0:
        e0 = float(g.moments(0.0)["dphi2"])
        w0 = 1.0 / e0 if e0 > 0 else math.inf
        if lo < w0 < hi and qf(w0 * (1 - 1e-9))[0] == 0.0:
            return w0
    flo, fhi = f(lo), f(hi)
    if not (flo < 0 < fhi):
        raise ValueError(f"chi_1 = 1 is not bracketed for {activation} with bias_var={bias_var} "
                         f"in weight_var {bracket}: chi_1 - 1 = {flo:.3g}, {fhi:.3g}")
    if math.isinf(fhi):
        a, c = lo, hi  # f(a) finite, f(c) infinite
        while c / a - 1.0 > 1e-13:
            m = math.sqrt(a * c)
            if not a < m < c:
                break
            a, c = (m, c) if math.isfinite(f(m)) else (a, m)
        hi, fhi = a, f(a)
        if not fhi > 0:
            near = a * (1.0 - 10.0 ** -np.arange(1.0, 13.0))
            grid = np.unique(np.concatenate([np.logspace(np.log10(lo), np.log10(a), 60), near]))
            above = next((w for w in grid[(grid > lo) & (grid < a)] if f(w) > 0), None)
            if above is None:
                raise ValueError(
                    f"chi_1 stays below 1 for {activation} with bias_var={bias_var} up to "
                    f"weight_var={a:.6g}, beyond which q diverges (chi_1 -> {fhi + 1:.6g}, "
                    f"q* -> {qf(a)[0]:.3g}): no edge of chaos with a finite q*")
            hi = float(above)
        lo = max([w for w, (_, v) in memo.items() if v < 0 and w < hi], default=lo)
    w = float(brentq(f, lo, hi, xtol=1e-12, rtol=1e-9, maxiter=300))
    if not abs(f(w)) < 1e-6:
        left = max(v for v in memo if v < w and f(v) < 0)
        right = min(v for v in memo if v >= w and f(v) > 0)
        raise ValueError(
            f"chi_1 jumps past 1 at weight_var={w:.6g} for {activation} with bias_var={bias_var}: "
            f"q* (from q0 = 1) jumps from {qf(left)[0]:.3g} to {qf(right)[0]:.3g} and chi_1 from "
            f"{f(left) + 1:.3g} to {f(right) + 1:.3g} there: no edge of chaos")
    return w


def c_map(activation: Any, weight_var: float, bias_var: float, q: float, c) -> np.ndarray:
    """C(c) = (sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2) / F(q) for inputs of variance q and
    correlation c (the next layer's correlation)."""
    w, b = _check(weight_var, bias_var)
    g = gaussian(activation)
    cov = w * g.pair(q, c)["phiphi"] + b
    return cov / (w * g.moments(q)["phi2"] + b)


def c_star(activation: Any, weight_var: float, bias_var: float, q_star: float) -> float:
    """The stable fixed point of the correlation map at q = q*: 1 in the ordered phase; else the
    root of C(c) = c in [0, 1) (bisection; C(0) >= 0 since it is a covariance ratio)."""
    w, b = _check(weight_var, bias_var)
    if q_star <= 0 or float(chi(activation, w, q_star)) <= 1.0:
        return 1.0
    lo, hi = 0.0, 1.0 - 1e-6
    if float(c_map(activation, w, b, q_star, lo)) <= lo + 1e-15:
        return 0.0
    if float(c_map(activation, w, b, q_star, hi)) >= hi:
        return 1.0  # indistinguishable from 1 at this precision (chi_1 within ~1e-6 of 1)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if float(c_map(activation, w, b, q_star, mid)) > mid else (lo, mid)
    return 0.5 * (lo + hi)


def depth_scales(activation: Any, weight_var: float, bias_var: float, q0: float = 1.0) -> dict[str, float]:
    """q*, chi_1, c*, chi_c, xi_q = -1/ln F'(q*) and xi_c = -1/ln chi_c (Schoenholz et al. 2017).

    A scale is ``inf`` where its slope is 1 (xi_c at the edge of chaos) and NaN where q* is 0 or
    infinite (no fixed point to converge to, or a degenerate one); chi_1 is NaN only for q* = inf
    (at q* = 0 it is the limit sigma_w^2 (phi'(0-)^2 + phi'(0+)^2) / 2, see :func:`chi1`).
    """
    w, b = _check(weight_var, bias_var)
    q = fixed_point(activation, w, b, q0)
    out = {"q_star": q, "chi1": math.nan, "c_star": math.nan, "chi_c": math.nan,
           "xi_q": math.nan, "xi_c": math.nan}
    if math.isinf(q):
        return out
    m = gaussian(activation).moments(q)
    out["chi1"] = float(w * m["dphi2"])
    if q == 0:
        return out
    cs = c_star(activation, w, b, q)
    out["c_star"] = cs
    out["chi_c"] = out["chi1"] if cs == 1.0 else float(w * gaussian(activation).pair(q, cs)["dd"])
    out["xi_q"] = _scale(float(w * m["slope"]))
    out["xi_c"] = _scale(out["chi_c"])
    return out


def _scale(slope: float) -> float:
    if slope <= 0:
        return 0.0
    if abs(slope - 1.0) < 1e-12:
        return math.inf
    return -1.0 / math.log(slope) if slope < 1 else 1.0 / math.log(slope)


def phase_grid(activation: Any, weight_vars, bias_vars, q0: float = 1.0) -> dict[str, np.ndarray]:
    """chi_1, q* and xi_c on the grid bias_vars x weight_vars (variances), vectorized.

    For figures: q* is the root of F(q) = q nearest q0 in the direction the orbit moves, found
    on a table of E[phi^2] over 800 log-spaced q in [1e-8, 1e6] and interpolated linearly in
    ln q (relative error ~1e-4 against :func:`fixed_point`); chi_1 by interpolating E[phi'^2]
    the same way; c* by 50 bisection steps of the correlation map in the chaotic phase.

    Returns:
      ``q_star``, ``chi1``, ``xi_c``: arrays [len(bias_vars), len(weight_vars)]; NaN where q
      diverges (q* = inf).
    """
    g = gaussian(activation)
    w = np.asarray(weight_vars, np.float64)[None, :, None]
    b = np.asarray(bias_vars, np.float64)[:, None, None]
    qs = np.logspace(-8, 6, 800)
    m = g.moments(qs)
    lq = np.log(qs)
    G = w * m["phi2"] + b - qs  # [nb, nw, nq]
    g0 = w[..., 0] * float(g.moments(q0)["phi2"]) + b[..., 0] - q0
    up = g0 > 0
    k0 = int(np.searchsorted(qs, q0))
    sign = np.sign(G)
    change = sign[..., 1:] != sign[..., :-1]  # change between i and i+1
    idx = np.arange(len(qs) - 1)
    above = np.where(change & (idx >= k0 - 1), idx, len(qs))
    below = np.where(change & (idx < k0), idx, -1)
    i_up, i_down = above.min(-1), below.max(-1)
    i = np.where(up, i_up, i_down)
    found = (i >= 0) & (i < len(qs) - 1)
    ic = np.clip(i, 0, len(qs) - 2)
    g_lo = np.take_along_axis(G, ic[..., None], -1)[..., 0]
    g_hi = np.take_along_axis(G, ic[..., None] + 1, -1)[..., 0]
    frac = np.where(g_hi != g_lo, g_lo / (g_lo - g_hi), 0.0)
    q_star = np.exp(lq[ic] + frac * (lq[ic + 1] - lq[ic]))
    q_star = np.where(found, q_star, np.where(up, np.inf, 0.0))
    w2 = w[..., 0] * np.ones_like(b[..., 0])
    b2 = b[..., 0] * np.ones_like(w[..., 0])
    d0 = float(g.moments(0.0)["dphi2"])
    chi1 = np.where(q_star == 0, w2 * d0,
                    w2 * np.interp(np.log(np.clip(q_star, 1e-300, None)), lq, m["dphi2"]))
    chi1 = np.where(np.isinf(q_star), np.nan, chi1)
    with np.errstate(divide="ignore"):
        xi = np.where(chi1 < 1, -1.0 / np.log(chi1), np.nan)
    chaos = (chi1 > 1) & (q_star > 0) & np.isfinite(q_star)
    if chaos.any():
        qc, wc, bc = q_star[chaos], w2[chaos], b2[chaos]
        from initdiag.theory._quadrature import PAIR_NODES, PAIR_WEIGHTS
        wt = PAIR_WEIGHTS[:, None] * PAIR_WEIGHTS[None, :]
        z1, z2 = PAIR_NODES[:, None], PAIR_NODES[None, :]

        def pair(c, fn):
            s = np.sqrt(qc)[:, None, None]
            u1 = s * z1 * np.ones_like(z2)
            u2 = s * (c[:, None, None] * z1 + np.sqrt(1 - c**2)[:, None, None] * z2)
            return np.sum(fn(u1) * fn(u2) * wt, axis=(-2, -1))

        lo, hi = np.zeros_like(qc), np.full_like(qc, 1 - 1e-6)
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            cmap = (wc * pair(mid, g.phi) + bc) / qc
            lo, hi = np.where(cmap > mid, mid, lo), np.where(cmap > mid, hi, mid)
        chi_c = wc * pair(0.5 * (lo + hi), g.dphi)
        with np.errstate(divide="ignore"):
            xi[chaos] = np.where(chi_c < 1, -1.0 / np.log(chi_c), np.inf)
    return {"q_star": q_star, "chi1": chi1, "xi_c": xi}
