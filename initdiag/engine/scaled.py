"""One layer's forward map on scaled values, so that vanishing or exploding signals are measured.

The engine carries every signal as a pair ``(xs, e)`` meaning ``x = xs * 2**e`` with ``max|xs|``
in [0.5, 1) (see :func:`initdiag.engine.stats.normalized`). float32 alone cannot hold a signal that has
shrunk below ~1e-38 (XLA flushes denormals to 0), nor one that has grown past ~3e38; scaled, a
linear or ReLU stack is exact at any magnitude, and a collapse to 1e-80 is reported as 1e-80.

Layer ``l`` (notation of :mod:`initdiag.nn.stacks`):

* :func:`affine`: ``h = x W + b`` with ``x = xs 2**E``: ``h = 2**F (xs W 2**(E-F) + b 2**-F)``,
  ``F = max(E, exponent of max|b|)`` (``E`` when ``b = 0``). Multiplying by a power of two is
  exact, so wherever nothing underflows this is bit for bit the float32 ``x W + b``.
* :func:`branch`: ``a = phi(norm(h))`` from ``(hs, F)``, as ``(as_, A)``:

  - positively homogeneous phi (linear, relu, leaky_relu) without norm: ``phi(hs)``, ``A = F``,
    exact at any scale (a ReLU's sign pattern is that of ``hs``);
  - other phi, where ``max|h| >= 2**SMALL_EXP``: ``phi(h)`` evaluated directly, ``A = 0``;
  - other phi, where ``max|h| < 2**SMALL_EXP`` (``|h| < 8.7e-19``): the first-order expansion
    ``phi(0) + phi'(0-+) h`` with the one-sided slopes (a kink at 0 -- selu, elu with alpha != 1,
    a user relu -- keeps both sides), whose relative error is O(h) <= 1e-18 for phi smooth on
    each side of 0. When phi(0) = 0 (tanh, elu, selu, gelu, silu) that is ``phi'(0-+) hs`` with
    ``A = F``: the collapsing signal is carried exactly. When phi(0) != 0 (sigmoid, softplus) the
    output is phi(0) to float32 (and float64) precision, and the backward pass differentiates
    the linear term (``grad=True``), so dL/dh = phi'(0-+) dL/da is kept;
  - batchnorm / layernorm, ``(h - mean) / sqrt(var + eps)``: computed as
    ``(hs - ms) / sqrt(vs + eps 2**-2F)`` (``A = 0``) when ``F >= SMALL_EXP``, else as
    ``(hs - ms) / sqrt(eps)`` with ``A = F`` (there ``var`` is below ``2**-120``, so ``eps``
    alone counts); phi then applies as above.

  Which case applies depends only on ``F`` (a traced scalar), so the backward pass can take
  ``jax.vjp`` of ``hs -> as_`` at fixed ``F``: ``dL/dh = vjp(dL/da_s) 2**(A - F)`` exactly.
* :func:`add`: the residual sum ``x^{l-1} + alpha a`` of two scaled values.

A user callable phi is expanded the same way (one-sided slopes from ``jax.jvp`` at -+2**-100); a
callable with phi(0) = phi'(0-+) = 0 reads 0 below 8.7e-19. Zero and dead fractions are counted
on the scaled output, whose zeros do not depend on float32 underflow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from initdiag.engine import stats
from initdiag.nn.activations import Activation
from initdiag.nn.stacks import NORM_EPS

#: Below ``max|h| < 2**SMALL_EXP`` phi (unless homogeneous) and the normalizations use their
#: small-h forms.
SMALL_EXP = -60

def _max_exponent(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(exponent of max|x|, whether x has a nonzero entry)."""
    m = jnp.max(jnp.abs(x))
    return stats.exponent(m), m > 0


def affine(xs: jax.Array, e: jax.Array, w: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``h = (xs 2**e) W + b`` as a normalized ``(hs, F)``."""
    eb, has_b = _max_exponent(b)
    f = jnp.where(has_b, jnp.maximum(e, eb), e)
    hs = stats.times_pow2(xs @ w, e - f) + stats.times_pow2(b, -f)[None, :]
    hs, e1 = stats.normalized(hs)
    return hs, f + e1


def _normalize(hs: jax.Array, f: jax.Array, norm: str) -> tuple[jax.Array, jax.Array]:
    axis = 0 if norm == "batchnorm" else -1
    mean = jnp.mean(hs, axis=axis, keepdims=True)
    centred = hs - mean
    var = jnp.mean(jnp.square(centred), axis=axis, keepdims=True)
    big = f >= SMALL_EXP
    # eps 2**-2F is finite where it is used (F >= SMALL_EXP); clip the shift for the other case.
    # It underflows to 0 for |h| > ~4e16: where a unit is then constant over the axis (var = 0,
    # every centred entry 0) the factor 1/sqrt(var + eps 2**-2F) is 2**F / sqrt(eps) exactly,
    # taken directly (finite up to F = 100), so the output is 0 and its derivative right.
    eps_scaled = stats.times_pow2(jnp.float32(NORM_EPS), jnp.minimum(-2 * f, -2 * SMALL_EXP))
    den = var + eps_scaled
    pos = den > 0
    at_zero = stats.times_pow2(jax.lax.rsqrt(jnp.float32(NORM_EPS)), jnp.minimum(f, 100))
    out_big = centred * jnp.where(pos, jax.lax.rsqrt(jnp.where(pos, den, 1.0)), at_zero)
    out_small = centred * jax.lax.rsqrt(jnp.float32(NORM_EPS))
    return jnp.where(big, out_big, out_small), jnp.where(big, 0, f)


def _phi(us: jax.Array, g: jax.Array, act: Activation,
         grad: bool) -> tuple[jax.Array, jax.Array]:
    """``phi(us 2**g)`` as ``(as_, A)`` (not renormalized); see :func:`branch_unnormalized`."""
    if act.homogeneous:
        return act(us), g
    phi0, left, right = act.taylor0()
    small = g < SMALL_EXP
    direct = act(stats.times_pow2(us, jnp.where(small, 0, g)))
    linear = jnp.where(us > 0, right * us, left * us)  # (phi(h) - phi(0)) 2**-g, to O(h)
    if phi0 == 0.0 or grad:
        return jnp.where(small, linear, direct), jnp.where(small, g, 0)
    return jnp.where(small, jnp.full_like(us, phi0), direct), jnp.zeros_like(g)


def branch_unnormalized(hs: jax.Array, f: jax.Array, act: Activation, norm: str | None,
                        grad: bool = False) -> tuple[jax.Array, jax.Array]:
    """``a = phi(norm(h))`` for ``h = hs 2**f``, as ``(as_, A)`` before renormalization.

    ``A`` depends on ``f`` only, so ``hs -> as_`` at fixed ``f`` is what the backward pass
    differentiates. With ``grad=True`` it returns, in the small-|h| regime, the h-dependent part
    ``(phi(h) - phi(0)) 2**-A`` even where phi(0) != 0 (sigmoid, softplus): the value there is
    phi(0) to float32 precision, but its derivative, phi'(0-+) 2**(g - A), is what the gradient
    needs (differentiating the constant would give 0).
    """
    if norm is None:
        return _phi(hs, f, act, grad)
    us, g = _normalize(hs, f, norm)
    return _phi(us, g, act, grad)


def branch(hs: jax.Array, f: jax.Array, act: Activation,
           norm: str | None) -> tuple[jax.Array, jax.Array]:
    """``a = phi(norm(h))`` for ``h = hs 2**f``, normalized ``(as_, A)``."""
    a, g = branch_unnormalized(hs, f, act, norm)
    a, e1 = stats.normalized(a)
    return a, g + e1


def add(xs: jax.Array, ex: jax.Array, ys: jax.Array, ey: jax.Array,
        alpha: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """``xs 2**ex + alpha ys 2**ey``, normalized (a term that is all zero does not set the scale)."""
    _, x_nonzero = _max_exponent(xs)
    _, y_nonzero = _max_exponent(ys)
    g = jnp.where(x_nonzero & y_nonzero, jnp.maximum(ex, ey), jnp.where(x_nonzero, ex, ey))
    total = stats.times_pow2(xs, ex - g) + jnp.asarray(alpha, xs.dtype) * stats.times_pow2(ys, ey - g)
    total, e1 = stats.normalized(total)
    return total, g + e1


def value(xs: jax.Array, e: jax.Array) -> jax.Array:
    """The plain float32 ``xs 2**e`` (under- or overflowing where float32 does)."""
    return stats.times_pow2(xs, e)
