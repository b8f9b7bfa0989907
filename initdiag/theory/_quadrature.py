"""Gaussian expectations of an activation and its derivatives, by Gaussian quadrature.

Everything here is an expectation over a centred Gaussian given by its **variance** q (never a
standard deviation): ``E_{z ~ N(0, q)}[f(z)] = sum_i w_i f(sqrt(q) x_i)``. phi, phi' and phi''
are jax's (``jax.grad``), so user callables work; they are evaluated in float64
(``jax.enable_x64``) and summed in numpy float64.

The rule: Gauss–Legendre with :data:`N_HALF` nodes on each half-line [-12, 0] and [0, 12]
(standard deviations) against the normal density. A plain Gauss–Hermite rule
(:func:`numpy.polynomial.hermite_e.hermegauss`) converges only algebraically across a kink, and
every built-in kink (relu, leaky_relu, selu, elu) sits at 0: Gauss–Hermite with 160 nodes gets
E[relu(z)] wrong by 3e-3 relative, the split rule to 1e-15. For smooth phi both agree to ~1e-15
(tested against closed forms and scipy.integrate.quad). The mass beyond 12 sd (~4e-33) is
dropped.

Kinks away from 0. A user phi (any activation that is not a built-in) may have a jump of phi'
(a kink, e.g. ``relu(z - 0.7)``, ``clip(z, -1, 1)``) or of phi itself elsewhere; across one the
rule converges only algebraically (E[phi'^2] off by 1-5%: a jump of phi' is a step in the
integrand). Such points are located once per activation, in absolute z, by :func:`find_breaks`
(a grid and bisection, as :meth:`Gaussian.probability` locates set boundaries), and for every q
the rule is split there too (each piece Gauss–Legendre with :data:`N_HALF` nodes): E[phi^2] and
E[phi'^2] are then as accurate as for the built-ins (~1e-15 for piecewise-smooth phi).

Probabilities of sets such as "phi(z) is saturated" are not integrated by the rule (an indicator
converges slowly) but from the boundaries of the set, see :meth:`Gaussian.probability`.

Pairs (correlations between two inputs): ``(u1, u2)`` centred Gaussian with variances q and
correlation c, ``u1 = sqrt(q) z1``, ``u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2)``, by the tensor
product of the split rule with :data:`N_PAIR_HALF` nodes per half-axis (the kink of phi(u2) is
oblique to the grid, so pair expectations of kinked phi are accurate to ~1e-4 only; user kinks
away from 0 are not split there either).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import numpy as np
from numpy.polynomial.legendre import leggauss

from initdiag.nn.activations import Activation, activation as resolve_activation

#: Gauss–Legendre nodes per half-line of the one-dimensional rule.
N_HALF = 128
#: Nodes per half-axis of the two-dimensional (pair) rule.
N_PAIR_HALF = 32
#: The rule covers +-RULE_RANGE standard deviations.
RULE_RANGE = 12.0
#: Probabilities are located on a grid of this many points over +-PROB_RANGE standard deviations.
PROB_GRID = 4801
PROB_RANGE = 12.0  # P(|z| > 12 sd) ~ 4e-33: nothing is lost beyond
#: Below this variance, derivative moments are taken at it: their q -> 0+ limit (see moments).
Q_TINY = 1e-40
#: Breaks (jumps of phi or phi') of a user phi are searched for on |z| in [1e-8, 1e7] (absolute
#: units: the rule spans 12 sd of q in [1e-12, 1e12]) with this many points per decade
#: (spacing <= 0.45% of |z|), each flagged interval bisected to adjacent floats.
BREAK_DECADES = (-8, 7)
BREAK_PER_DECADE = 2000
#: At most this many breaks are kept (the largest jumps).
MAX_BREAKS = 32



def split_rule(n_half: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of E_{z ~ N(0, 1)}: Gauss–Legendre on [-12, 0] and [0, 12]."""
    x, w = leggauss(n_half)
    pos = (x + 1.0) * RULE_RANGE / 2.0
    nodes = np.concatenate([-pos[::-1], pos])
    weights = np.concatenate([w[::-1], w]) * RULE_RANGE / 2.0
    return nodes, weights * np.exp(-nodes**2 / 2.0) / np.sqrt(2.0 * np.pi)


_X, _W = split_rule(N_HALF)
#: Nodes and weights of the rule of each variable of a bivariate expectation E[f(z1, z2)]:
#: :meth:`Gaussian.pair` and the chaotic branch of ``_meanfield.phase_grid``.
PAIR_NODES, PAIR_WEIGHTS = split_rule(N_PAIR_HALF)
_GL_X, _GL_W = leggauss(N_HALF)


def _is_builtin(act: Activation) -> bool:
    try:
        return act == resolve_activation(act.label)
    except (ValueError, TypeError):
        return False


def find_breaks(g: "Gaussian") -> np.ndarray:
    """Points z != 0 (absolute units) where phi or phi' of ``g.act`` jumps, sorted.

    On each interval [a, b] of a grid of +-|z| in 10^:data:`BREAK_DECADES` (:data:`BREAK_PER_DECADE`
    points per decade) the trapezoid residuals r1 = phi'(b) - phi'(a) - (b - a)(phi''(a) +
    phi''(b))/2 and r0 = phi(b) - phi(a) - (b - a)(phi'(a) + phi'(b))/2 are ~(b - a)^3 for smooth
    phi but equal the jump of phi' (r1) or of phi (r0) when there is one inside. An interval with
    |r| > 1e-9 (1 + |values at its ends|) is bisected, keeping the half with the larger |r|,
    until a and b are adjacent floats: a jump keeps its residual, a smooth stretch loses it (and
    is dropped, also where the grid aliases a fast oscillation). Breaks within 1e-12 relative of
    each other are merged; the :data:`MAX_BREAKS` largest are kept.
    """
    lo, hi = BREAK_DECADES
    pos = np.unique(np.concatenate([np.linspace(10.0**k, 10.0 ** (k + 1), BREAK_PER_DECADE + 1)
                                    for k in range(lo, hi)]))
    found, sizes = [], []
    for side in (pos, -pos[::-1]):
        p, d1, d2 = g.phi(side), g.dphi(side), g.ddphi(side)
        for f, df in ((d1, d2), (p, d1)):  # jumps of phi', then of phi
            fn, dfn = (g.dphi, g.ddphi) if f is d1 else (g.phi, g.dphi)
            h = np.diff(side)
            with np.errstate(invalid="ignore", over="ignore"):
                r = f[1:] - f[:-1] - h * (df[1:] + df[:-1]) / 2
                tol = 1e-9 * (1 + np.abs(f[1:]) + np.abs(f[:-1]))
                flagged = np.flatnonzero(np.isfinite(r) & (np.abs(r) > tol))
            if flagged.size == 0:
                continue
            a, b = side[flagged].copy(), side[flagged + 1].copy()
            fa, fb, dfa, dfb = f[flagged], f[flagged + 1], df[flagged], df[flagged + 1]
            for _ in range(80):
                m = 0.5 * (a + b)
                live = (m > a) & (m < b)
                if not live.any():
                    break
                fm, dfm = fn(m), dfn(m)
                with np.errstate(invalid="ignore", over="ignore"):
                    left = np.abs(fm - fa - (m - a) * (dfa + dfm) / 2)
                    right = np.abs(fb - fm - (b - m) * (dfm + dfb) / 2)
                go_left = live & ~(right > left)
                go_right = live & (right > left)
                b, fb = np.where(go_left, m, b), np.where(go_left, fm, fb)
                dfb = np.where(go_left, dfm, dfb)
                a, fa = np.where(go_right, m, a), np.where(go_right, fm, fa)
                dfa = np.where(go_right, dfm, dfa)
            with np.errstate(invalid="ignore", over="ignore"):  # a, b adjacent floats now
                jump = np.abs(fb - fa - (b - a) * (dfa + dfb) / 2)
            keep = np.isfinite(jump) & (jump > 1e-9 * (1 + np.abs(fa) + np.abs(fb)))
            found.append(0.5 * (a + b)[keep])
            sizes.append(jump[keep])
    if not found:
        return np.zeros(0)
    z, size = np.concatenate(found), np.concatenate(sizes)
    order = np.argsort(z)
    z, size = z[order], size[order]
    merged_z, merged_s = [], []
    for zi, si in zip(z, size):
        if merged_z and abs(zi - merged_z[-1]) <= 1e-12 * max(1.0, abs(zi)):
            merged_s[-1] = max(merged_s[-1], si)
            continue
        merged_z.append(zi)
        merged_s.append(si)
    z, size = np.array(merged_z), np.array(merged_s)
    if z.size > MAX_BREAKS:
        z = np.sort(z[np.argsort(size)[::-1][:MAX_BREAKS]])
    return z


class Gaussian:
    """Gaussian expectations for one activation (use :func:`gaussian` for a cached instance)."""

    def __init__(self, act: Activation, breaks: bool | None = None):
        """``breaks``: locate jumps of phi and phi' away from 0 (:func:`find_breaks`) and split
        the rule there; None (default): for every activation that is not a built-in (the
        built-ins' only kink is at 0, where the rule is always split)."""
        self.act = act
        f = lambda x: act(x)  # noqa: E731
        d1 = jax.grad(f)
        d2 = jax.grad(d1)
        self._phi = jax.jit(f)
        self._d1 = jax.jit(jax.vmap(d1))
        self._d2 = jax.jit(jax.vmap(d2))
        self._all = jax.jit(lambda z: (f(z), jax.vmap(d1)(z), jax.vmap(d2)(z)))
        self._values_firsts = jax.jit(lambda z: (f(z), jax.vmap(d1)(z)))
        if breaks is None:
            breaks = not _is_builtin(act)
        self.breaks = find_breaks(self) if breaks else np.zeros(0)

    def _rule(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nodes (in z) and weights of E_{z~N(0, s^2)} for standard deviations ``s`` [...]:
        the split rule, and also split at :attr:`breaks` / s inside +-12 sd."""
        if self.breaks.size == 0:
            return s[..., None] * _X, np.broadcast_to(_W, s.shape + _W.shape)
        with np.errstate(divide="ignore"):
            u = np.clip(self.breaks / s[..., None], -RULE_RANGE, RULE_RANGE)
        ends = np.concatenate([np.broadcast_to([-RULE_RANGE, 0.0, RULE_RANGE], s.shape + (3,)), u],
                              axis=-1)
        ends = np.sort(ends, axis=-1)
        a, b = ends[..., :-1, None], ends[..., 1:, None]  # [..., segments, 1]
        x = a + (b - a) * (_GL_X + 1.0) / 2.0
        w = (b - a) / 2.0 * _GL_W * np.exp(-x**2 / 2.0) / np.sqrt(2.0 * np.pi)
        shape = s.shape + (-1,)
        return s[..., None] * x.reshape(shape), w.reshape(shape)

    def _eval(self, fn: Callable, z: np.ndarray):
        """``fn`` on ``z`` in float64, elementwise, in blocks of the few lengths of
        :func:`_blocks`, so the jitted functions compile for a handful of lengths, not one per
        call shape."""
        z = np.asarray(z, np.float64)
        with jax.enable_x64(True):
            parts = [jax.tree.map(lambda a: np.asarray(a, np.float64), fn(block))
                     for block in _blocks(z.ravel())]
        return jax.tree.map(lambda *a: np.concatenate(a)[:z.size].reshape(z.shape), *parts)

    def phi(self, z):
        return self._eval(self._phi, z)

    def dphi(self, z):
        return self._eval(self._d1, z)

    def ddphi(self, z):
        return self._eval(self._d2, z)

    def moments(self, q) -> dict[str, np.ndarray]:
        """For each variance in ``q`` (any shape), with z ~ N(0, q):

        ``phi``: E[phi], ``phi2``: E[phi^2], ``dphi2``: E[phi'^2], ``dphi4``: E[phi'^4],
        ``slope``: E[phi'^2 + phi phi''] = dE[phi^2]/dq (Stein's lemma).

        At q = 0 (and below :data:`Q_TINY`) the derivative moments are their limits as q -> 0+,
        not jax's phi'(0): the rule is evaluated at standard deviation sqrt(Q_TINY), i.e. at
        +-1e-20 x_i, which gives (phi'(0-)^2 + phi'(0+)^2) / 2 for a kink at 0 (relu: 1/2, where
        jax's relu'(0) = 0 would give 0; selu: lambda^2 (1 + alpha^2) / 2) and phi'(0)^2 for
        smooth phi (to ~1e-20). ``phi`` and ``phi2`` are evaluated at q itself (exact at 0).
        """
        q = np.asarray(q, np.float64)
        s = np.sqrt(q)
        z, w = self._rule(s)
        zd, wd = self._rule(np.maximum(s, np.sqrt(Q_TINY)))
        both = np.concatenate([z.ravel(), zd.ravel()])
        values, firsts, seconds = self._eval(self._all, both)  # one call: phi, phi', phi''
        n = z.size
        p, pd = values[:n].reshape(z.shape), values[n:].reshape(zd.shape)
        d1, d2 = firsts[n:].reshape(zd.shape), seconds[n:].reshape(zd.shape)
        e = lambda f, w: np.sum(f * w, axis=-1)  # noqa: E731
        with np.errstate(over="ignore", invalid="ignore"):  # q near 1e308 overflows to inf
            return {"phi": e(p, w), "phi2": e(p * p, w), "dphi2": e(d1 * d1, wd),
                    "dphi4": e(d1**4, wd), "slope": e(d1 * d1 + pd * d2, wd)}

    def pair(self, q, c) -> dict[str, np.ndarray]:
        """Pair expectations at variances q and correlations c (broadcast):

        ``phiphi``: E[phi(u1) phi(u2)]; ``dd``: E[phi'(u1) phi'(u2)]; ``pp2``: E[(phi(u1) phi(u2))^2];
        ``psi_cov``: Cov(psi(u1), psi(u2)) with psi(u) = phi(u)^2 - k u^2, k = dE[phi^2]/dq
        (the per-unit fluctuation that a one-step prediction does not absorb; see
        :mod:`initdiag.theory._finite`).
        """
        q, c = np.broadcast_arrays(np.asarray(q, np.float64), np.asarray(c, np.float64))
        c = np.clip(c, -1.0, 1.0)
        s = np.sqrt(q)[..., None, None]
        u1 = s * PAIR_NODES[:, None]  # [..., n, 1]: u1 is constant along the z2 axis
        u2 = s * (c[..., None, None] * PAIR_NODES[:, None]
                  + np.sqrt(1 - c**2)[..., None, None] * PAIR_NODES[None, :])
        w = PAIR_WEIGHTS[:, None] * PAIR_WEIGHTS[None, :]
        both = np.concatenate([u1.ravel(), np.broadcast_to(u2, s.shape[:-2] + w.shape).ravel()])
        values, firsts = self._eval(self._values_firsts, both)  # one call: phi, phi'
        n = u1.size
        p1, p2 = values[:n].reshape(u1.shape), values[n:].reshape(u1.shape[:-1] + w.shape[-1:])
        d1, d2 = firsts[:n].reshape(u1.shape), firsts[n:].reshape(p2.shape)
        m = self.moments(q)
        k = m["slope"][..., None, None]
        psi1, psi2 = p1 * p1 - k * u1 * u1, p2 * p2 - k * u2 * u2
        mean_psi = (m["phi2"] - m["slope"] * q)[..., None, None]
        ew = lambda a: np.sum(a * w, axis=(-2, -1))  # noqa: E731
        return {"phiphi": ew(p1 * p2), "dd": ew(d1 * d2), "pp2": ew((p1 * p2) ** 2),
                "psi_cov": ew((psi1 - mean_psi) * (psi2 - mean_psi))}

    def saturated_probability(self, q, threshold: float) -> np.ndarray:
        """P(phi(z) in the saturated range at ``threshold``) (:meth:`Activation.saturated`) for
        z ~ N(0, q), each q in ``q`` (1-d); see :meth:`probability`."""
        return self.probability(q, "saturated", float(threshold))

    def zero_probability(self, q) -> np.ndarray:
        """P(phi(z) == 0) for z ~ N(0, q), each q in ``q`` (1-d); see :meth:`probability`."""
        return self.probability(q, "zero", 0.0)

    def probability(self, q, event: str, threshold: float = 0.0) -> np.ndarray:
        """P(phi(z) in ``event``) for z ~ N(0, q), each q in ``q`` (1-d).

        ``event``: ``"saturated"`` (:meth:`Activation.saturated` at ``threshold``) or ``"zero"``
        (phi(z) == 0). The set {z : phi(z) in event} is located on a grid of :data:`PROB_GRID`
        points over +-:data:`PROB_RANGE` standard deviations; each change of the mask between
        grid points is refined by 60 steps of bisection, and the probability is summed from the
        normal CDF between boundaries (exact up to sets narrower than the grid spacing, 0.005 sd).
        The mask is compiled once per event (the threshold is an argument, not a constant).
        """
        from scipy.special import ndtr

        q = np.atleast_1d(np.asarray(q, np.float64))
        u = np.linspace(-PROB_RANGE, PROB_RANGE, PROB_GRID)
        fn = _MASKS.get(event)
        if fn is None:
            raise ValueError(f"invalid event {event!r}; valid events: {', '.join(_MASKS)}")

        def masked(z):
            z = np.asarray(z, np.float64)
            with jax.enable_x64(True):
                out = [np.asarray(fn(self.act, block, np.float64(threshold)))
                       for block in _blocks(z.ravel())]
                return np.concatenate(out)[:z.size].reshape(z.shape)

        inside = masked(np.sqrt(q)[:, None] * u[None, :])
        out = np.zeros(q.shape)
        rows, cols = np.nonzero(inside[:, 1:] != inside[:, :-1])
        lo, hi = u[cols].copy(), u[cols + 1].copy()
        left_in = inside[rows, cols]
        for _ in range(60):  # bisection on all boundaries at once
            mid = 0.5 * (lo + hi)
            same = masked(np.sqrt(q[rows]) * mid) == left_in
            lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
        edge = 0.5 * (lo + hi)
        for i in range(q.size):
            b = np.concatenate([[-np.inf], edge[rows == i], [np.inf]])
            state = inside[i, 0]
            total = 0.0
            for a, z in zip(b[:-1], b[1:]):
                if state:
                    total += ndtr(z) - ndtr(a)
                state = not state
            out[i] = total
        return out


@functools.partial(jax.jit, static_argnums=0)
def _saturated_mask(act: Activation, z: jax.Array, threshold: jax.Array) -> jax.Array:
    return act.saturated(act(z), threshold)


@functools.partial(jax.jit, static_argnums=0)
def _zero_mask(act: Activation, z: jax.Array, threshold: jax.Array) -> jax.Array:
    del threshold
    return act(z) == 0


#: The events of :meth:`Gaussian.probability`: jitted masks, compiled once per activation (a
#: hashable static argument) and padded input length.
_MASKS = {"saturated": _saturated_mask, "zero": _zero_mask}


#: Lengths the quadrature's jitted functions are called with (each compiled once per function):
#: an input is zero-padded to the shortest that holds it, or cut into blocks of the longest.
BLOCK_LENGTHS = (2**9, 2**12, 2**15, 2**18)


def _blocks(flat: np.ndarray) -> list[np.ndarray]:
    """``flat`` zero-padded to a length in :data:`BLOCK_LENGTHS`, or, when longer than the
    longest, cut into blocks of that length (the last one zero-padded)."""
    size = next((n for n in BLOCK_LENGTHS if n >= flat.size), BLOCK_LENGTHS[-1])
    count = max(1, -(-flat.size // size))
    out = np.zeros(count * size, np.float64)
    out[:flat.size] = flat
    return list(out.reshape(count, size))


@functools.lru_cache(maxsize=64)
def _cached(act: Activation) -> Gaussian:
    return Gaussian(act)


def gaussian(activation) -> Gaussian:
    """The (cached) :class:`Gaussian` for an activation name, Activation or callable."""
    return _cached(resolve_activation(activation))
