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
  value, each with weight 1/k, k = min(n_0, n_L). For widths up to a few thousand. J is
  compiled once per activation and layer shapes (:func:`stack_jacobians`: the parameters are an
  argument, so every initializer shares the executable); :func:`jacobian_spectra` computes many
  stacks together, drawing weights shared by several of them (same seed, initializers and
  shapes, any activation) once and running each draw's SVDs (batched) in a worker thread while
  XLA computes the next.
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
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from initdiag.base import check_float, check_int, check_one_of
from initdiag.engine.threads import single_threaded_blas
from initdiag.nn.stacks import (StackSpec, apply_stack, draw_key, init_stack, make_input,
                                 make_spec, split_seed)

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


# --- what a spectrum is of ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SpectrumSetup:
    """What a spectrum is taken of: a stack, its seed and its input points (the arguments of
    :func:`jacobian_spectrum`, validated).

    Attributes:
      spec: the stack.
      seed: the probe's seed (an integer or a jax key): weights and input points come from it.
      points: number of input points, the first rows of the probe's input batch.
      input_var: E[x0^2] of the input's entries (a variance).
      batch: the input rows LSUV is fitted on (its rescaling); unused by other initializers.
    """

    spec: StackSpec
    seed: Any
    points: int
    input_var: float
    batch: int

    def weights_key(self) -> tuple | None:
        """What the stack's weights depend on, or None (a key object as seed): setups with equal
        keys have the same weights, bit for bit. A named initializer draws from the seed, the
        initializers and the layer shapes alone (:func:`initdiag.nn.stacks.draw_key`), so the
        activations of a sweep share one draw; LSUV rescales on this stack's activations of
        this input batch, so its key is the whole setup."""
        key = draw_key(self.seed, self.spec)
        if key is None or not self.spec.init.data_dependent:
            return key
        return (key[0], self.spec, self.input_var, self.batch)

    def inputs(self, rows: int | None = None) -> jax.Array:
        """The first ``rows`` (default ``points``) rows of the probe's input batch (N(0, 1)
        entries) times sqrt(input_var): float32 ``[rows, n_0]``."""
        scale = np.float32(np.sqrt(self.input_var))
        rows = self.points if rows is None else rows
        return make_input(split_seed(self.seed)["input"], rows, self.spec.input_width) * scale

    def draw(self):
        """The stack's parameters as :func:`initdiag.probe` draws them for this seed; for LSUV
        its orthogonal start rescaled on ``inputs(batch)``. Asynchronous: call it, and wait for
        the result, inside :func:`single_threaded_blas` (orthogonal's QR)."""
        params = init_stack(self.seed, self.spec)
        if self.spec.init.data_dependent:
            params = self.spec.init.rescale(params, self.inputs(self.batch), self.spec)
        return params

    def config(self) -> dict[str, Any]:
        """The labels :attr:`JacobianSpectrum.config` holds."""
        s = self.spec
        return {"activation": s.activation.label, "init": s.init.label,
                "bias_init": s.bias_init.label, "depth": s.depth, "width": list(s.widths),
                "seed": self.seed, "points": self.points, "input_var": self.input_var}


def spectrum_setup(activation: Any = "tanh", init: Any = "orthogonal", depth: int = 10,
                   width: int | Sequence[int] = 128, seed: int = 0, bias_init: Any = "zeros", *,
                   points: int = 1, input_width: int | None = None, input_var: float = 1.0,
                   batch: int = 256) -> SpectrumSetup:
    """Validate :func:`jacobian_spectrum`'s stack arguments into a :class:`SpectrumSetup`.

    Raises:
      ValueError: naming the bad argument.
    """
    points = check_int("points", points)
    input_var = check_float("input_var (E[x0^2], a variance)", input_var)
    if not input_var > 0:
        raise ValueError(f"input_var (E[x0^2], a variance) must be finite and > 0; got {input_var!r}")
    spec = make_spec(activation=activation, init=init, depth=depth, width=width,
                     input_width=input_width, bias_init=bias_init)
    if spec.init.data_dependent:  # the batch is LSUV's alone
        batch = check_int("batch", batch)
    return SpectrumSetup(spec, seed, int(points), input_var, batch)


# --- the compiled Jacobian and the SVD ----------------------------------------------------------

def forward_spec(spec: StackSpec) -> StackSpec:
    """``spec`` without its initializers (None): what :func:`apply_stack` reads (activation,
    layer shapes, norm, residual). Stacks that differ only in their initializers have the same
    forward spec and share one compiled Jacobian (:func:`stack_jacobians`)."""
    return dataclasses.replace(spec, init=None, bias_init=None)


def _jacobians(params, xs: jax.Array, forward: StackSpec) -> jax.Array:
    def f(x):
        return apply_stack(params, x[None, :], forward)[0]

    return jax.vmap(jax.jacfwd(f))(xs)


_jacobians_jit = jax.jit(_jacobians, static_argnums=2)


def stack_jacobians(params, xs: jax.Array, spec: StackSpec) -> jax.Array:
    """J = dx^L/dx^0 of the stack ``spec`` with ``params`` at each row of ``xs``: float32
    ``[points, n_L, n_0]``, by ``jax.jacfwd`` of :func:`apply_stack`.

    Compiled once per :func:`forward_spec` and array shapes (jax's jit cache): every
    initializer of one activation and shape shares the executable. XLA may fuse the
    elementwise work differently from an op-by-op evaluation, so J may differ from one in
    float32 rounding. Asynchronous (a jax array)."""
    return _jacobians_jit(params, jnp.asarray(xs), forward_spec(spec))


def singular_values(jacs: Any) -> np.ndarray:
    """The singular values, descending, of each matrix of ``jacs`` (``[..., m, n]``): numpy's
    float64 SVD of the (float32) matrices, batched, with one BLAS thread: OpenBLAS's own pool
    fights XLA's for the cores (a 256x256 SVD took 0.3-0.6 s instead of 5 ms on 2 busy cores;
    :mod:`initdiag.engine.threads`)."""
    with single_threaded_blas():
        return _svd(jacs)


def _svd(jacs: Any) -> np.ndarray:
    # inside single_threaded_blas (entered by the caller's thread)
    return np.linalg.svd(np.asarray(jacs, np.float64), compute_uv=False)


# --- spectra ------------------------------------------------------------------------------------

def _draw_groups(setups: Sequence[SpectrumSetup]) -> list[list[int]]:
    """Indices of ``setups`` grouped by their weights (:meth:`SpectrumSetup.weights_key`), in
    order of first appearance; a setup without a key is a group of its own."""
    groups: dict[Any, list[int]] = {}
    for i, s in enumerate(setups):
        key = s.weights_key()
        groups.setdefault(("own", i) if key is None else key, []).append(i)
    return list(groups.values())


def _decompose(jacs: Sequence[tuple[int, jax.Array]], out: list) -> None:
    """``out[i]``: the singular values ``[points, k]`` of each ``(i, J [points, m, n])``, by one
    batched SVD (the Jacobians of one draw share their shape)."""
    mats = np.concatenate([np.asarray(j) for _, j in jacs])
    svs = _svd(mats)
    start = 0
    for i, j in jacs:
        out[i] = svs[start:start + j.shape[0]]
        start += j.shape[0]


def _exact_singular_values(setups: Sequence[SpectrumSetup]) -> list[np.ndarray | ValueError]:
    """Each setup's singular values (``[points, k]``), or the ValueError its draw raised.

    One draw per group of setups sharing weights (:func:`_draw_groups`). XLA runs one
    computation at a time and leaves part of a second core idle in the draws (orthogonal's QR,
    one layer after another), so: the main thread dispatches a draw and its Jacobians, then
    waits for the previous draw's Jacobians and hands them to a worker thread, whose SVD (numpy,
    one BLAS thread, without the GIL) runs while XLA computes the next draw (default sweep, 2
    idle cores: 0.77 -> 0.66 s). Two draws at most are alive."""
    out: list[Any] = [None] * len(setups)
    pending: list[tuple[int, jax.Array]] = []
    with single_threaded_blas(), ThreadPoolExecutor(1) as worker:  # orthogonal's QR, the SVDs
        done = []
        for group in _draw_groups(setups):
            try:
                params = setups[group[0]].draw()
            except ValueError as e:
                for i in group:
                    out[i] = e
                continue
            current = [(i, stack_jacobians(params, setups[i].inputs(), setups[i].spec))
                       for i in group]
            if pending:
                done.append(worker.submit(_decompose, jax.block_until_ready(pending), out))
            pending = current
        if pending:
            done.append(worker.submit(_decompose, jax.block_until_ready(pending), out))
        for d in done:
            d.result()
    return out


def _exact_spectrum(setup: SpectrumSetup, svs: np.ndarray) -> JacobianSpectrum:
    """The spectrum of ``[points, k]`` singular values: each with weight 1 / (k points)."""
    s = svs.reshape(-1)
    return JacobianSpectrum(s, np.full(s.size, 1.0 / s.size), "exact", setup.config(),
                            (float(s.min()), float(s.max())))


def exact_spectra(setups: Sequence[SpectrumSetup]) -> list[JacobianSpectrum | ValueError]:
    """The exact spectrum of each setup, or the ValueError drawing its weights raised.

    Each distinct weight draw is made once (:meth:`SpectrumSetup.weights_key`: a sweep's
    activations share it), each forward structure compiled once (:func:`stack_jacobians`), and
    the SVDs of each draw's Jacobians batched, overlapping XLA's work on the next draw."""
    out: list[Any] = _exact_singular_values(setups)
    for i, s in enumerate(out):
        if not isinstance(s, ValueError):
            out[i] = _exact_spectrum(setups[i], s)
    return out


def jacobian_spectra(configs: Sequence[Mapping[str, Any]], *, return_errors: bool = False
                     ) -> list[Any]:
    """Exact spectra of many stacks, computed together: the same as
    ``[jacobian_spectrum(**c, method="exact") for c in configs]``.

    Each config holds :func:`jacobian_spectrum`'s stack arguments (activation, init, depth,
    width, seed, bias_init, points, input_width, input_var, batch; omitted ones take its
    defaults). Stacks sharing weights (same seed, initializers and shapes; any activation) are
    drawn once, each activation and shape is compiled once, and the SVDs run alongside
    (:func:`exact_spectra`).

    Args:
      return_errors: when True, a config whose arguments or weight draw raise ValueError gets
        that exception in its place in the list instead of raising it.

    Returns:
      One :class:`JacobianSpectrum` (or ValueError) per config, in order.
    """
    setups: list[Any] = []
    for c in configs:
        try:
            setups.append(spectrum_setup(**c))
        except ValueError as e:
            if not return_errors:
                raise
            setups.append(e)
    valid = [i for i, s in enumerate(setups) if isinstance(s, SpectrumSetup)]
    out = list(setups)
    for i, r in zip(valid, exact_spectra([setups[i] for i in valid])):
        if isinstance(r, ValueError) and not return_errors:
            raise r
        out[i] = r
    return out


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
    setup = spectrum_setup(activation, init, depth, width, seed, bias_init, points=points,
                           input_width=input_width, input_var=input_var, batch=batch)
    if method == "auto":
        method = "exact" if setup.spec.input_width <= EXACT_MAX_WIDTH else "lanczos"
    if method == "exact":
        result = exact_spectra([setup])[0]
        if isinstance(result, ValueError):
            raise result
        return result
    return _lanczos_spectrum(setup, int(steps), int(probes))


def _lanczos_spectrum(setup: SpectrumSetup, steps: int, probes: int) -> JacobianSpectrum:
    """SLQ estimate of the spectrum, pooled over the setup's points (module docstring)."""
    with single_threaded_blas():  # orthogonal's QR (initdiag.engine.threads)
        params = jax.block_until_ready(setup.draw())
    spec, xs = setup.spec, setup.inputs()
    f = lambda x: apply_stack(params, x[None, :], spec)[0]  # noqa: E731
    key = split_seed(setup.seed)["readout"]
    svs, ws, lo, hi = [], [], [], []
    for i in range(setup.points):
        theta, w = _lanczos(f, xs[i], steps, probes, jax.random.fold_in(key, i))
        s = np.sqrt(theta)
        lo.append(s[w > 1e-12].min()); hi.append(s.max())
        svs.append(s)
        ws.append(w / setup.points)
    return JacobianSpectrum(np.concatenate(svs), np.concatenate(ws), "lanczos", setup.config(),
                            (float(min(lo)), float(max(hi))))
