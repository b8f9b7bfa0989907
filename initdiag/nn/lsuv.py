"""Layer-sequential unit-variance initialization (LSUV; Mishkin & Matas 2015).

Algorithm 1 of the paper, for a fully connected stack (:mod:`initdiag.nn.stacks`):

1. start from orthonormal weights (``orthogonal``, Saxe et al. 2014) and the stack's biases;
2. for each layer l = 1..L in order: forward the batch to layer l, measure Var(h^l), the
   variance of the layer's **pre-activation** h^l = x^{l-1} W^l + b^l over batch and units
   (population variance, the probe's ``preact_var``); while |Var(h^l) - 1| >= tol and attempts
   remain, W^l <- W^l / sqrt(Var(h^l)); then move to the next layer with x^l computed from the
   rescaled W^l.

Which tensor: the paper normalizes "the output of each convolution or inner-product layer" (the
Caffe blob of the affine layer, before the nonlinearity, which Caffe runs as a separate layer):
that is h^l here. Biases are not touched. With zero biases one rescaling is exact (Var(h)
scales by exactly 1/Var(h)), so it converges in one attempt; a bias whose own variance exceeds
1 + tol can never be scaled away, and the loop stops with :class:`LSUVError` after ``max_iter``
attempts. A layer whose pre-activation has variance 0 (every input to it is 0 or identical, e.g.
a dead ReLU layer) cannot be rescaled at all and raises at once.

Use ``init="lsuv"`` or ``init="lsuv(tol=0.05, max_iter=10)"`` in :func:`initdiag.probe` and
:func:`initdiag.sweep`: the rescaling uses the probe's own input batch. Directly:
:func:`lsuv_params`.

LSUV is not a distribution of the weights: ``initdiag.initializer("lsuv")`` is a
:class:`initdiag.nn.initializers.DataDependentInitializer` (record
:class:`initdiag.nn.schemes.DataDependentScheme`: base ``orthogonal``, step :func:`rescale`).
Its ``start`` draws step 1; calling it as a ``(key, shape, dtype)`` initializer or asking its
variance raises :class:`initdiag.nn.initializers.DataDependentError`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from initdiag.nn.schemes import SCHEMES
from initdiag.nn.stacks import StackSpec, branch, layer_output

DEFAULT_TOL = SCHEMES["lsuv"].defaults["tol"]
DEFAULT_MAX_ITER = int(SCHEMES["lsuv"].defaults["max_iter"])


class LSUVError(ValueError):
    """LSUV could not bring a layer's pre-activation variance to 1 within tolerance."""


@dataclasses.dataclass(frozen=True)
class LSUVReport:
    """What LSUV did: per layer, the applied scale factor, attempts and final Var(h^l)."""

    scales: np.ndarray
    attempts: np.ndarray
    variances: np.ndarray


@functools.partial(jax.jit, static_argnums=(4,))
def _layer(x, w, b, scale, static):
    act, norm, residual = static
    h = x @ (w * scale) + b[None, :]
    return jnp.var(h), layer_output(x, branch(h, act, norm), residual)


def lsuv_params(params, x: Any, spec: StackSpec, tol: float = DEFAULT_TOL,
                max_iter: int = DEFAULT_MAX_ITER, return_report: bool = False):
    """Rescale each layer's weights so Var(h^l) on the batch ``x`` is within ``tol`` of 1.

    Args:
      params: segment-stacked ``(W [n, fi, fo], b [n, fo])`` pairs (:func:`initdiag.init_stack`);
        LSUV's orthonormal start is ``init="orthogonal"`` (what
        :func:`initdiag.nn.stacks.init_stack` draws for ``init="lsuv"``:
        ``initializer("lsuv").start``).
      x: the input batch ``[B, n_0]``.
      spec: the stack.
      tol: accept a layer when |Var(h^l) - 1| < tol (0 < tol < 1).
      max_iter: maximum rescaling attempts per layer (>= 1).
      return_report: also return an :class:`LSUVReport`.

    Returns:
      The rescaled params (and the report).

    Raises:
      LSUVError: naming the layer, when its variance is 0 or not finite, or still outside the
        tolerance after ``max_iter`` attempts.
    """
    tol, max_iter = float(tol), int(max_iter)
    if not 0 < tol < 1:
        raise ValueError(f"lsuv tol must be in (0, 1); got {tol}")
    if max_iter < 1:
        raise ValueError(f"lsuv max_iter must be >= 1; got {max_iter}")
    static = (spec.activation, spec.norm, spec.residual)
    x = jnp.asarray(x, jnp.float32)
    scales, attempts, variances = [], [], []
    layer = 0
    for w_seg, b_seg in params:
        for i in range(w_seg.shape[0]):
            layer += 1
            scale = 1.0
            for attempt in range(max_iter + 1):
                var, x_next = _layer(x, w_seg[i], b_seg[i], jnp.float32(scale), static)
                var = float(var)
                if not np.isfinite(var) or var == 0.0:
                    raise LSUVError(
                        f"lsuv: layer {layer} has pre-activation variance {var} on this batch "
                        f"(its input is all zero or constant, e.g. a dead ReLU layer): it cannot be "
                        f"rescaled to unit variance")
                if abs(var - 1.0) < tol:
                    break
                if attempt == max_iter:
                    raise LSUVError(
                        f"lsuv: layer {layer} did not converge: Var(h) = {var:.4g} after "
                        f"{max_iter} rescalings (tol={tol}); a bias variance above 1 + tol "
                        f"cannot be scaled away")
                scale /= float(np.sqrt(var))
            scales.append(scale)
            attempts.append(attempt)
            variances.append(var)
            x = x_next
    out, k = [], 0
    for w_seg, b_seg in params:
        s = jnp.asarray(scales[k:k + w_seg.shape[0]], w_seg.dtype)
        out.append((w_seg * s[:, None, None], b_seg))
        k += w_seg.shape[0]
    out = tuple(out)
    if return_report:
        return out, LSUVReport(np.array(scales), np.array(attempts), np.array(variances))
    return out


def rescale(params, x, spec: StackSpec):
    """LSUV's step as its record names it: :func:`lsuv_params` with the tol and max_iter of
    ``spec.init`` (``lsuv(...)``). The probe, sweep and ``jacobian_spectrum`` call it as
    ``spec.init.rescale(params, x, spec)``."""
    p = getattr(spec.init, "kwargs", {})
    if "tol" not in p or "max_iter" not in p:
        raise ValueError(f"lsuv.rescale needs a stack with init=lsuv(...); got init={spec.init}")
    return lsuv_params(params, x, spec, tol=p["tol"], max_iter=int(p["max_iter"]))
