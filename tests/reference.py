"""Independent references: a plain Python loop differentiated by jax.grad, and float64 numpy;
and the float32 rounding bound that comparisons with them use."""

import jax
import jax.numpy as jnp
import numpy as np

from initdiag.nn.stacks import NORM_EPS


def float32_rtol(depth, width, batch):
    """Relative bound on the rounding of a float32 pass of ``depth`` layers: between two float32
    evaluations that differ only in operation order (fusion, summation order, remat, where
    weights are drawn), or between one and float64.

    Per layer, forward and backward, an n-term dot product (rounding ~ sqrt(n) u for independent
    roundings, Higham & Mary 2019) and <= 4 elementwise roundings; a final reduction over N <=
    max(B, n) n entries adds sqrt(N) u (a sum accumulated in order). For positive statistics
    (variances, RMS, norms, their ratios); a mean is a signed sum whose rounding scales with what
    is summed (|sum x| <= N rms), not with the mean, which can be ~0: use rtol * rms for it."""
    return (2 * depth * (np.sqrt(width) + 4) + np.sqrt(max(batch, width) * width)) * 2.0**-24


def layers_of(params):
    """Flatten segment-stacked params into per-layer (W, b) lists."""
    ws, bs = [], []
    for w, b in params:
        ws += list(w)
        bs += list(b)
    return ws, bs


def _norm(h, norm):
    if norm is None:
        return h
    axis = 0 if norm == "batchnorm" else 1
    m = jnp.mean(h, axis=axis, keepdims=True)
    v = jnp.mean((h - m) ** 2, axis=axis, keepdims=True)
    return (h - m) / jnp.sqrt(v + NORM_EPS)


def loop_stats(ws, bs, x, phi, readout, loss="projection", norm=None, residual=None, grads=False):
    """Per-layer statistics from jax.grad of a Python loop over layers (float32)."""
    def forward(ws, deltas, out_deltas):
        xs, hs, acts = [x], [], []
        h_in = x
        for w, b, d, e in zip(ws, bs, deltas, out_deltas):
            h = h_in @ w + b[None, :] + d
            a = phi(_norm(h, norm))
            h_in = (a if residual is None else h_in + residual * a) + e
            hs.append(h); acts.append(a); xs.append(h_in)
        return xs, hs, acts

    def loss_fn(ws, deltas, out_deltas):
        out = forward(ws, deltas, out_deltas)[0][-1]
        if loss == "projection":
            return jnp.sum(readout * out) / x.shape[0]
        return 0.5 * jnp.sum(out**2) / x.shape[0]

    # dL/dh^l and dL/dx^l as gradients with respect to zero perturbations added to h^l and x^l.
    deltas = [jnp.zeros((x.shape[0], w.shape[1]), jnp.float32) for w in ws]
    out_deltas = [jnp.zeros_like(d) for d in deltas]
    gw, gd, gx = jax.grad(loss_fn, argnums=(0, 1, 2))(ws, deltas, out_deltas)
    xs, hs, acts = forward(ws, deltas, out_deltas)
    f64 = lambda a: np.asarray(a, np.float64)
    return {
        "preact_mean": np.array([f64(h).mean() for h in hs]),
        "preact_var": np.array([f64(h).var() for h in hs]),
        "act_mean": np.array([f64(v).mean() for v in xs[1:]]),
        "act_var": np.array([f64(v).var() for v in xs[1:]]),
        "unit_spread": np.array([f64(v).var(axis=1).mean() / f64(v).var() if f64(v).var() > 0
                                 else np.nan for v in xs[1:]]),
        "grad_preact_rms": np.array([np.sqrt(np.mean(f64(g) ** 2)) for g in gd]),
        "grad_act_rms": np.array([np.sqrt(np.mean(f64(g) ** 2)) for g in gx]),
        "grad_weight_norm": np.array([np.linalg.norm(f64(g)) for g in gw]),
        "weight_norm": np.array([np.linalg.norm(f64(w)) for w in ws]),
        "acts": [f64(a) for a in acts],
        **({"grads": [f64(g) for g in gd]} if grads else {}),
    }


def numpy64_sigmoid_grad_rms(ws, x, readout):
    """float64 forward/backward of a sigmoid stack without bias: RMS of dL/dh per layer."""
    ws = [np.asarray(w, np.float64) for w in ws]
    h_in = np.asarray(x, np.float64)
    hs = []
    for w in ws:
        h = h_in @ w
        hs.append(h)
        h_in = 1 / (1 + np.exp(-h))
    g = np.asarray(readout, np.float64) / x.shape[0]
    out = []
    for w, h in zip(reversed(ws), reversed(hs)):
        s = 1 / (1 + np.exp(-h))
        gh = g * s * (1 - s)
        out.append(np.sqrt(np.mean(gh**2)))
        g = gh @ w.T
    return np.array(out[::-1])


_SELU_L, _SELU_A = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717


def _elu64(alpha):
    return (lambda h: np.where(h > 0, h, alpha * np.expm1(np.minimum(h, 0))),
            lambda h: np.where(h > 0, 1.0, alpha * np.exp(np.minimum(h, 0))))


_PHI64 = {
    "tanh": (np.tanh, lambda h: 1 - np.tanh(h) ** 2),
    "relu": (lambda h: np.maximum(h, 0), lambda h: (h > 0).astype(np.float64)),
    "sigmoid": (lambda h: 1 / (1 + np.exp(-h)),
                lambda h: np.exp(-h) / (1 + np.exp(-h)) ** 2),
    "selu": (lambda h: _SELU_L * _elu64(_SELU_A)[0](h), lambda h: _SELU_L * _elu64(_SELU_A)[1](h)),
    "elu(alpha=0.5)": _elu64(0.5),
}


def numpy64_stats(ws, bs, x, act, readout, norm=None, eps=NORM_EPS):
    """Every statistic of a plain stack in float64 numpy (an activation of ``_PHI64``; optional
    batchnorm), with the projection loss: an implementation independent of jax and of scaling."""
    phi, dphi = _PHI64[act]
    f64 = lambda a: np.asarray(a, np.float64)
    ws, bs = [f64(w) for w in ws], [f64(b) for b in bs]
    xs, hs, us = [f64(x)], [], []
    for w, b in zip(ws, bs):
        h = xs[-1] @ w + b
        u = h
        if norm == "batchnorm":
            u = (h - h.mean(0)) / np.sqrt(h.var(0) + eps)
        hs.append(h); us.append(u); xs.append(phi(u))
    g = f64(readout) / x.shape[0]
    grads_h, grads_x, grads_w = [], [], []
    for l in reversed(range(len(ws))):
        grads_x.append(g)
        gu = g * dphi(us[l])
        if norm == "batchnorm":  # d/dh of (h - mean) / sqrt(var + eps), per unit over the batch
            h = hs[l]
            sd = np.sqrt(h.var(0) + eps)
            n_hat = (h - h.mean(0)) / sd
            gu = (gu - gu.mean(0) - n_hat * (gu * n_hat).mean(0)) / sd
        grads_h.append(gu)
        grads_w.append(xs[l].T @ gu)
        g = gu @ ws[l].T
    grads_h, grads_x, grads_w = grads_h[::-1], grads_x[::-1], grads_w[::-1]
    rms = lambda a: np.sqrt(np.mean(a ** 2))
    return {
        "preact_mean": np.array([h.mean() for h in hs]),
        "preact_var": np.array([h.var() for h in hs]),
        "act_mean": np.array([v.mean() for v in xs[1:]]),
        "act_var": np.array([v.var() for v in xs[1:]]),
        "act_chan_sq_mean": np.array([np.mean(v.mean(axis=0) ** 2) for v in xs[1:]]),
        "grad_preact_rms": np.array([rms(g) for g in grads_h]),
        "grad_act_rms": np.array([rms(g) for g in grads_x]),
        "grad_weight_norm": np.array([np.linalg.norm(g) for g in grads_w]),
        "weight_norm": np.array([np.linalg.norm(w) for w in ws]),
        "zero_frac": np.array([np.mean(v == 0) for v in xs[1:]]),
        "dead_frac": np.array([np.mean(np.all(v == 0, axis=0)) for v in xs[1:]]),
    }
