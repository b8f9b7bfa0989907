"""Singular values of a stack's input-output Jacobian at initialization (dynamical isometry).

For one input point x (a row of the probe's input batch, N(0, 1) entries, scaled by
sqrt(``input_var``)), J = dx^L / dx^0 is the ``[n_L, n_0]`` Jacobian of the stack
(:func:`initdiag.nn.stacks.apply_stack`, the activation on every layer). Pennington, Schoenholz &
Ganguli (2017): a deep network trains fast when all singular values of J are near 1 (dynamical
isometry); a deep linear stack of orthogonal matrices has every singular value exactly 1,
Gaussian weights spread them more with depth, and tanh *at* criticality -- sigma_w^2 =
``theory.edge_of_chaos("tanh", sigma_b^2)`` with the pre-activations at the fixed point q* from
the first layer on, i.e. ``input_var = (q* - sigma_b^2) / sigma_w^2`` -- keeps orthogonal weights
concentrated near 1 with mean sigma^2 = chi_1^L = 1. (With N(0, 1) inputs instead, q starts far
above a small q*: sigma_w^2 = 1, sigma_b^2 = 1e-4 is then the ordered phase, chi < 1 on the way
down, and the mean sigma^2 is ~0.02 at depth 32.)

Two methods:

* ``"exact"``: J by ``jax.jacfwd`` and its SVD (numpy float64 of the float32 J): every singular
  value, each with weight 1/k, k = min(n_0, n_L). For widths up to a few thousand.
* ``"lanczos"``: stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017) on J^T J, applied
  matrix-free through ``jax.jvp`` and ``jax.vjp`` (``jax.linearize``). ``probes`` random unit
  starting vectors, ``steps`` Lanczos steps each with full reorthogonalization; the Ritz values
  theta_i of each run with weights tau_i^2 (squared first components of the eigenvectors of the
  tridiagonal matrix), averaged over runs, form a discrete approximation of the spectral
  density of J^T J: sum_i w_i f(theta_i) estimates (1/n_0) tr f(J^T J) for smooth f. It returns
  sqrt(theta_i) as singular values with those weights. The largest Ritz value converges to the
  largest sigma^2 quickly; the smallest only for well-separated spectra; the density's
  moments (mean of sigma^2, of log sigma) are estimated with error ~1/sqrt(n_0 * probes).

Several points: each point's spectrum is computed separately and pooled (weights sum to 1 per
point, divided by the number of points).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from initdiag.base import check_float, check_int, check_one_of
from initdiag.engine.threads import single_threaded_blas
from initdiag.nn.stacks import apply_stack, init_stack, make_input, make_spec, split_seed

METHODS = ("auto", "exact", "lanczos")
#: ``method="auto"`` uses the exact SVD up to this input width.
EXACT_MAX_WIDTH = 1024


@dataclasses.dataclass(frozen=True)
class JacobianSpectrum:
    """Singular values of J = dx^L/dx^0 with their weights (a discrete spectral density).

    Attributes:
      singular_values: float64 [m]; all of them (exact) or Lanczos nodes sqrt(theta).
      weights: float64 [m], summing to 1.
      method: "exact" or "lanczos".
      config: activation, init, bias_init, depth, width, seed, points, input_var (labels).
      extremes: (smallest, largest) singular value: exact, or the extreme Ritz values.
    """

    singular_values: np.ndarray
    weights: np.ndarray
    method: str
    config: dict[str, Any]
    extremes: tuple[float, float]

    def mean_sq(self) -> float:
        """Weighted mean of sigma^2 = tr(J^T J) / n_0 (mean field: the product of chi's)."""
        return float(np.sum(self.weights * self.singular_values**2))

    def spread(self) -> float:
        """Var(sigma^2) / E[sigma^2]^2 (weighted): 0 for isometry; for a product of L square
        Gaussian matrices it tends to L at large width (the Fuss–Catalan moments
        E[lambda^2] / E[lambda]^2 = L + 1). A polynomial moment, so Lanczos quadrature gets it
        exactly per starting vector; only the probe average is random."""
        s2 = self.singular_values**2
        m = np.sum(self.weights * s2)
        return float(np.sum(self.weights * (s2 - m) ** 2) / m**2)

    def log_var(self) -> float:
        """Weighted variance of ln sigma. Singular values below ~1e-6 sigma_max are at the
        float32 resolution of J and dominate this number for ill-conditioned J (square Gaussian
        products); :meth:`spread` does not suffer from it."""
        ls = np.log(np.maximum(self.singular_values, 1e-300))
        m = np.sum(self.weights * ls)
        return float(np.sum(self.weights * (ls - m) ** 2))

    def histogram(self, edges: Sequence[float]) -> np.ndarray:
        """Weighted density of the singular values in the bins ``edges``."""
        h, _ = np.histogram(self.singular_values, bins=np.asarray(edges), weights=self.weights,
                            density=True)
        return h


def _exact(f, x) -> np.ndarray:
    # one BLAS thread for the SVD (and any QR in f): OpenBLAS's own pool fights XLA's for the
    # cores (a 256x256 SVD took 0.3-0.6 s instead of 5 ms on 2 busy cores; initdiag.engine.threads)
    with single_threaded_blas():
        jac = np.asarray(jax.jacfwd(f)(x), np.float64)
        return np.linalg.svd(jac, compute_uv=False)


def _lanczos(f, x, steps: int, probes: int, key) -> tuple[np.ndarray, np.ndarray]:
    """Ritz values of J^T J and their SLQ weights, pooled over ``probes`` runs."""
    _, jvp = jax.linearize(f, x)
    vjp = jax.linear_transpose(jvp, x)
    op = jax.jit(lambda v: vjp(jvp(v))[0])
    n = x.shape[0]
    m = min(steps, n)
    nodes, weights = [], []
    for k in jax.random.split(key, probes):
        v = np.asarray(jax.random.normal(k, (n,)), np.float64)
        v /= np.linalg.norm(v)
        basis = np.zeros((m, n))
        alpha, beta = np.zeros(m), np.zeros(m)
        for j in range(m):
            basis[j] = v
            w = np.asarray(op(jnp.asarray(v, x.dtype)), np.float64)
            alpha[j] = v @ w
            w -= basis[: j + 1].T @ (basis[: j + 1] @ w)  # full reorthogonalization (twice)
            w -= basis[: j + 1].T @ (basis[: j + 1] @ w)
            if j + 1 < m:
                beta[j] = np.linalg.norm(w)
                if beta[j] < 1e-10 * max(abs(alpha[j]), 1e-30):
                    m_eff = j + 1
                    break
                v = w / beta[j]
        else:
            m_eff = m
        t = np.diag(alpha[:m_eff]) + np.diag(beta[: m_eff - 1], 1) + np.diag(beta[: m_eff - 1], -1)
        theta, vecs = np.linalg.eigh(t)
        nodes.append(np.maximum(theta, 0.0))
        weights.append(vecs[0] ** 2 / probes)
    return np.concatenate(nodes), np.concatenate(weights)


def jacobian_spectrum(activation: Any = "tanh", init: Any = "orthogonal", depth: int = 10,
                      width: int | Sequence[int] = 128, seed: int = 0, bias_init: Any = "zeros",
                      *, points: int = 1, method: Literal["auto", "exact", "lanczos"] = "auto",
                      steps: int = 80, probes: int = 4, input_width: int | None = None,
                      input_var: float = 1.0, batch: int = 256) -> JacobianSpectrum:
    """Singular values of the input-output Jacobian of a freshly initialized stack.

    The stack and the input points come from ``seed`` exactly as in :func:`initdiag.probe`
    (same weights, the first ``points`` rows of its input batch, times sqrt(``input_var``)).

    Args:
      activation, init, depth, width, seed, bias_init, input_width: as in :func:`initdiag.probe`.
        ``init="lsuv"`` rescales the orthogonal start on the first ``batch`` rows of that input
        batch (times sqrt(input_var)), as a probe with that batch does.
      points: number of input points whose spectra are pooled.
      method: "exact" (jacfwd + SVD), "lanczos" (SLQ on J^T J) or "auto" (exact for input
        width <= 1024).
      steps, probes: Lanczos steps per run and number of random starting vectors.
      input_var: E[x0^2] of the input's entries (a variance; default 1, the probe's inputs).
        At criticality use ``(q* - sigma_b^2) / sigma_w^2`` so that q^1 = q* (module docstring).
      batch: LSUV's batch (default 256, the probe's); unused for other initializers.

    Returns:
      A :class:`JacobianSpectrum`.
    """
    check_one_of("method", method, METHODS)
    points = check_int("points", points)
    input_var = check_float("input_var (E[x0^2], a variance)", input_var)
    if not input_var > 0:
        raise ValueError(f"input_var (E[x0^2], a variance) must be finite and > 0; got {input_var!r}")
    spec = make_spec(activation=activation, init=init, depth=depth, width=width,
                     input_width=input_width, bias_init=bias_init)
    with single_threaded_blas():  # orthogonal's QR (initdiag.engine.threads)
        params = jax.block_until_ready(init_stack(seed, spec))
    keys = split_seed(seed)
    scale = np.float32(np.sqrt(input_var))
    xs = make_input(keys["input"], points, spec.input_width) * scale
    if spec.init.data_dependent:  # LSUV: rescaled as in probe
        batch = check_int("batch", batch)
        x_batch = make_input(keys["input"], batch, spec.input_width) * scale
        params = spec.init.rescale(params, x_batch, spec)
    if method == "auto":
        method = "exact" if spec.input_width <= EXACT_MAX_WIDTH else "lanczos"
    f = lambda x: apply_stack(params, x[None, :], spec)[0]  # noqa: E731
    svs, ws, lo, hi = [], [], [], []
    for i in range(int(points)):
        if method == "exact":
            s = _exact(f, xs[i])
            w = np.full(s.size, 1.0 / s.size)
            lo.append(s.min()); hi.append(s.max())
        else:
            theta, w = _lanczos(f, xs[i], int(steps), int(probes), jax.random.fold_in(keys["readout"], i))
            s = np.sqrt(theta)
            lo.append(s[w > 1e-12].min()); hi.append(s.max())
        svs.append(s)
        ws.append(w / points)
    config = {"activation": spec.activation.label, "init": spec.init.label,
              "bias_init": spec.bias_init.label, "depth": spec.depth, "width": list(spec.widths),
              "seed": seed, "points": int(points), "input_var": input_var}
    return JacobianSpectrum(np.concatenate(svs), np.concatenate(ws), method, config,
                            (float(min(lo)), float(max(hi))))

