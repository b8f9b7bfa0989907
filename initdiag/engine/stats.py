"""Per-layer reductions, computed so that neither tiny nor huge values are rounded away.

float32 squares underflow below ~1e-19 and overflow above ~1e19, and XLA flushes denormals, so a
naive ``sqrt(mean(g**2))`` of a vanishing gradient reads 0. Every reduction here first rescales
its input by an exact power of two, ``x = xs * 2**e`` with ``max|xs|`` in [0.5, 1), reduces
``xs`` and returns ``(value_of_xs, e)``; :func:`combine` forms ``value * 2**(k*e)`` in float64 on
the host. Rescaling by a power of two is exact, so where nothing under- or overflows the result is
bit-for-bit the plain float32 reduction.

A scaled statistic is a pair ``(v, e)`` of arrays; ``k`` (1 for means, RMS and norms, 2 for
variances: the metric's ``power`` in :data:`initdiag.metrics.TABLE`) is applied by
:func:`combine`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from initdiag.nn.activations import Activation


def exponent(m: jax.Array) -> jax.Array:
    """int32 ``e`` with ``m * 2**-e`` in [0.5, 1); 0 when ``m`` is 0, Inf or NaN."""
    _, e = jnp.frexp(m)
    return jnp.where(jnp.isfinite(m) & (m > 0), e, 0).astype(jnp.int32)


def times_pow2(x: jax.Array, k: jax.Array) -> jax.Array:
    """``x * 2**k`` for an integer scalar ``k``, exact barring under/overflow of the result.

    Two scalar factors (each a normal float32 for |k| <= 252) multiply the array: much cheaper
    than an elementwise ``jnp.ldexp``, which XLA evaluates with a ``pow`` per entry. ``k`` is
    clipped to [-252, 252], so the factors are always finite: a larger shift of a normalized
    value under- or overflows anyway, and 0 times a huge shift stays 0 (never NaN).
    """
    k = jnp.clip(k, -252, 252)
    k1 = k // 2
    one = jnp.ones((), x.dtype)
    return x * jnp.ldexp(one, k1) * jnp.ldexp(one, k - k1)


def normalized(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(xs, e)`` with ``x == xs * 2**e`` exactly and ``max|xs|`` in [0.5, 1) (or x all zero)."""
    e = exponent(jnp.max(jnp.abs(x)))
    return times_pow2(x, -e), e


def mean_var_scaled(xs: jax.Array, e: jax.Array) -> dict[str, tuple[jax.Array, jax.Array]]:
    """Mean and (population) variance of ``xs * 2**e`` (``xs`` already normalized), scaled."""
    return {"mean": (jnp.mean(xs), e), "var": (jnp.var(xs), e)}


def unit_spread(xs: jax.Array) -> jax.Array:
    """Fraction of the variance of ``x`` ([B, n]) that lies across units:
    ``mean_i Var_j x_ij / Var_ij x_ij`` (0 when every unit computes the same function of the
    input, 1 when no sample shifts all units together; NaN where ``x`` is constant). Scale-free,
    so the normalized ``xs`` gives the same value as ``x``.

    ``across <= total`` exactly (``total`` = ``across`` + the variance of the per-sample means),
    but the two float32 reductions round on their own: where the per-sample means are all but
    equal (layernorm; a wide layer) ``across / total`` came out 1 + 2**-23. The ratio is clipped
    to 1, the nearest value of its range."""
    total = jnp.var(xs)
    across = jnp.mean(jnp.var(xs, axis=1))
    ratio = jnp.minimum(across / jnp.where(total > 0, total, 1.0), 1.0)
    return jnp.where(total > 0, ratio, jnp.nan)


def channel_sq_mean(xs: jax.Array, e: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean over units j of the squared batch mean of ``x = xs * 2**e`` ([B, n], ``xs`` already
    normalized): ``mean_j (mean_i x_ij)**2``, scaled (combined with power 2)."""
    return jnp.mean(jnp.square(jnp.mean(xs, axis=0))), e


def rms(xs: jax.Array, e: jax.Array) -> tuple[jax.Array, jax.Array]:
    """RMS over every entry of ``xs * 2**e`` (``xs`` already normalized), scaled."""
    return jnp.sqrt(jnp.mean(jnp.square(xs))), e


def frobenius(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Frobenius norm ``sqrt(sum x**2)``, scaled."""
    xs, e = normalized(x)
    return jnp.sqrt(jnp.sum(jnp.square(xs))), e


def outer_frobenius(xs: jax.Array, gs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``||xs^T gs||_F`` for ``xs: [B, n_in]``, ``gs: [B, n_out]``, both normalized, scaled.

    When the batch is small (``B (n_in + n_out) < n_in n_out``) it never forms the
    ``[n_in, n_out]`` matrix. With ``x = xc + 1 m^T`` (``m`` the batch mean of ``x``, ``xc``
    centred) and ``s = sum_i g_i``, ``x^T g = xc^T g + m s^T``, so

        ||x^T g||_F^2 = <xc xc^T, g g^T> + 2 (xc m)^T (g s) + |m|^2 |s|^2.

    Centring first matters: ``<x x^T, g g^T>`` alone cancels catastrophically when ``x`` has a
    large mean and ``s`` is near 0 (as under batchnorm, where every unit's ``s`` is 0).
    """
    batch, n_in = xs.shape
    n_out = gs.shape[1]
    if batch * (n_in + n_out) < n_in * n_out:
        m = jnp.mean(xs, axis=0)
        xc = xs - m[None, :]
        s = jnp.sum(gs, axis=0)
        sq = (jnp.sum((xc @ xc.T) * (gs @ gs.T)) + 2.0 * jnp.dot(xc @ m, gs @ s)
              + jnp.sum(jnp.square(m)) * jnp.sum(jnp.square(s)))
        return jnp.sqrt(jnp.maximum(sq, 0.0)), jnp.int32(0)
    return frobenius(xs.T @ gs)


def fractions(a: jax.Array, act: Activation, threshold: float,
              zeros_of: jax.Array | None = None) -> dict[str, jax.Array]:
    """Saturation, zero and dead fractions of a layer's activation output ``a`` ([B, n]).

    saturation: fraction of entries in phi's saturated range (NaN if phi does not saturate).
    zero_frac: fraction of entries exactly 0; dead_frac: fraction of units (columns) that are 0
    for every sample of the batch. Both NaN unless ``act.can_die``. ``zeros_of``: the same
    entries rescaled by a power of two (``a`` = ``zeros_of`` * 2**e), whose zeros do not depend
    on float32 underflow; default ``a``.
    """
    nan = jnp.float32(jnp.nan)
    sat = jnp.mean(act.saturated(a, threshold).astype(jnp.float32)) if act.saturates else nan
    if act.can_die:
        zero = (a if zeros_of is None else zeros_of) == 0
        zero_frac = jnp.mean(zero.astype(jnp.float32))
        dead_frac = jnp.mean(jnp.all(zero, axis=0).astype(jnp.float32))
    else:
        zero_frac = dead_frac = nan
    return {"saturation": sat, "zero_frac": zero_frac, "dead_frac": dead_frac}


#: Steps by which :func:`histogram` corrects its arithmetic bin estimate each way.
HIST_CORRECTION_STEPS = 1


def histogram(values: jax.Array, edges: jax.Array) -> jax.Array:
    """Counts of ``values`` in the bins ``edges`` (len n+1, evenly spaced: a ``linspace``);
    values below ``edges[0]`` go to the first bin, values at or above ``edges[n]`` and NaN to
    the last.

    A value's bin is that of ``searchsorted(edges, v, side="right") - 1`` clipped to
    [0, n-1]: bin j holds ``edges[j] <= v < edges[j+1]``. It is found without a binary search
    (whose gathers cost 4x the whole histogram on CPU): ``floor((v - edges[0]) * n / (edges[n]
    - edges[0]))`` estimates it, and :data:`HIST_CORRECTION_STEPS` comparisons with the edges
    on each side correct it, so the counts equal the binary search's exactly whenever the
    estimate is off by less than one bin. In float32 (unit roundoff u = 2**-24) the estimate is
    off by at most ~4u n bins from its own rounding plus ~2u M / w bins from the edges'
    (``linspace``'s) rounding, M = max(|edges[0]|, |edges[n]|), w the bin width: below 0.1 bin
    for the n <= 10**5 bins and w >= 1e-5 M that :class:`initdiag.ProbeConfig` admits (tested
    against ``jnp.searchsorted`` at every edge and its neighbouring floats, NaN and +-inf).
    """
    n = edges.shape[0] - 1
    v = values.ravel()
    lo, hi = edges[0], edges[n]
    est = jnp.floor((v - lo) * (n / (hi - lo)))
    est = jnp.where(jnp.isnan(v), n - 1, jnp.clip(est, 0, n - 1)).astype(jnp.int32)
    idx = est
    for _ in range(HIST_CORRECTION_STEPS):  # move up while edges[idx + 1] <= v (NaN: up)
        up = jnp.minimum(idx + 1, n)
        idx = jnp.where(~(v < edges[up]) & (idx < n), idx + 1, idx)
    for _ in range(HIST_CORRECTION_STEPS):  # move down while v < edges[idx]
        idx = jnp.where((v < edges[jnp.clip(idx, 0, n)]) & (idx >= 0), idx - 1, idx)
    idx = jnp.clip(idx, 0, n - 1)
    return jnp.zeros((n,), jnp.int32).at[idx].add(1, mode="promise_in_bounds")


def combine(value, exp, power: int = 1) -> np.ndarray:
    """float64 ``value * 2**(power * exp)``: the host side of a scaled statistic."""
    value = np.asarray(value, np.float64)
    exp = np.asarray(exp, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return value * np.exp2(power * exp)
