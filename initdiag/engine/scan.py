"""The compiled probe: one forward scan and one reverse scan per weight-shape segment.

The backward pass is written out (it is short for a fully connected stack) rather than taken from
``jax.grad`` of the whole stack, for two reasons:

* every signal is carried scaled, ``x = xs * 2**E`` forward (:mod:`initdiag.engine.scaled`) and
  ``g = gs * 2**E`` backward, renormalized to ``max|.|`` in [0.5, 1) after every layer (an exact
  power-of-two rescaling; backprop is linear in the cotangent). A gradient of 1e-60 is
  therefore measured as 1e-60, where float32 backprop would have flushed it to 0 forty layers
  earlier;
* only per-layer statistics leave the computation: ``dL/dW`` is reduced to its norm inside the
  scan (without forming it when the batch is small), so memory stays O(L B n), not O(L n^2).

Each layer's local derivative is still jax's: ``jax.vjp`` of the scaled branch
``hs -> as_`` (:func:`initdiag.engine.scaled.branch_unnormalized`, ``a = phi(norm(h))``). Tests compare
every gradient statistic with ``jax.grad`` of a plain Python loop and with float64 numpy.

With ``remat=k`` the forward pass keeps only every k-th layer input and the backward pass
recomputes each chunk of k layers before walking back through it, bounding activation memory by
O((L/k + k) B n) at the price of one more forward pass.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from initdiag.engine import scaled

from initdiag.engine import stats
from initdiag.nn.activations import Activation
from initdiag.nn.initializers import sample_form, weight_form
from initdiag.nn.stacks import Norm

Loss = Literal["projection", "half_mse"]  # initdiag.config.LOSSES


class Static(NamedTuple):
    """Hashable options the compiled computation depends on (besides array shapes)."""

    activation: Activation
    norm: Norm
    residual: float | None
    loss: Loss
    saturation_threshold: float
    histograms: bool
    remat: int  # chunk length for rematerialisation; 0 = store every layer
    generate: Any = None  # a Generate: draw weights inside the scan instead of taking them
    unroll: int = 1  # lax.scan unroll factor


def _forward_layer(static: Static, x_prev, w, b, act_edges):
    """One layer forward on scaled values (:mod:`initdiag.engine.scaled`), with its statistics.

    ``x_prev = (xs, E)``; returns ``x = (xs', E')``, the saved ``(hs, F)`` and the statistics:
    the forward metrics of :data:`initdiag.metrics.TABLE` by name, each a scaled pair ``(v, e)``
    (combined with the row's ``power``) or a plain value (``power`` None).
    """
    xs, e = x_prev
    hs, f = scaled.affine(xs, e, w, b)
    a_s, a_e = scaled.branch(hs, f, static.activation, static.norm)
    if static.residual is None:
        x = (a_s, a_e)
    else:
        x = scaled.add(xs, e, a_s, a_e, static.residual)
    hmv, xmv = stats.mean_var_scaled(hs, f), stats.mean_var_scaled(*x)
    a = scaled.value(a_s, a_e)  # plain float32: for the saturated range and the histogram
    out = {
        "preact_mean": hmv["mean"], "preact_var": hmv["var"],
        "act_mean": xmv["mean"], "act_var": xmv["var"],
        "act_chan_sq_mean": stats.channel_sq_mean(*x),
        "unit_spread": stats.unit_spread(x[0]),
        # zeros counted on the scaled a_s: a collapsed ReLU signal keeps its zero pattern there
        **stats.fractions(a, static.activation, static.saturation_threshold, zeros_of=a_s),
    }
    if static.histograms:
        out["act_hist"] = stats.histogram(a, act_edges)
    return x, (hs, f), out


def _backward_layer(static: Static, carry, x_prev, h, w, grad_edges):
    """One layer back: from dL/dx^l = gs * 2**E to dL/dx^{l-1}, with the layer's statistics
    (the gradient metrics of :data:`initdiag.metrics.TABLE`, scaled pairs).

    ``x_prev = (xs, E_x)`` and ``h = (hs, F)`` are the saved scaled forward values. At fixed
    ``F`` the branch ``hs -> as_`` has output exponent ``A``, so ``dL/dh = vjp(dL/da) 2**(A-F)``.
    """
    gs, e_x = carry
    (xs, e_prev), (hs, f) = x_prev, h
    _, vjp, a_e = jax.vjp(
        lambda hh: scaled.branch_unnormalized(hh, f, static.activation, static.norm, grad=True),
        hs, has_aux=True)
    g_a = gs if static.residual is None else gs * jnp.asarray(static.residual, gs.dtype)
    (gh,) = vjp(g_a)
    gh, e1 = stats.normalized(gh)
    e_h = e_x + a_e - f + e1  # dL/dh = gh * 2**e_h
    gw_v, gw_e = stats.outer_frobenius(xs, gh)
    out = {
        "grad_act_rms": stats.rms(gs, e_x),
        "grad_preact_rms": stats.rms(gh, e_h),
        "grad_weight_norm": (gw_v, gw_e + e_prev + e_h),
    }
    if static.histograms:
        log2 = jnp.log2(jnp.abs(gh)) + e_h.astype(gh.dtype)
        out["grad_hist"] = stats.histogram(log2 * jnp.log10(2.0).astype(gh.dtype), grad_edges)
    g_prev, e2 = stats.normalized(gh @ w.T)
    if static.residual is None:
        return (g_prev, e_h + e2), out
    # dL/dx^{l-1} = dL/dx^l (the skip) + (gh W^T) 2**e_h (the branch)
    return scaled.add(gs, e_x, g_prev, e_h + e2), out


class Generate(NamedTuple):
    """Draw each layer's weights inside the scan (memory independent of depth)."""

    init: Any
    bias_init: Any
    use_bias: bool
    shapes: tuple[tuple[int, int], ...]  # (fan_in, fan_out) of each segment


def _fetcher(static: Static, seg: int, keys, stored):
    """``fetch(i) -> (W, b)`` of one layer from the index ``i`` that the scans run over.

    Stored weights are read by dynamic indexing of the segment's ``(W, b)`` stacks (the scans
    run over indices, so splitting a segment for remat never copies its weights). With
    ``static.generate``, ``i`` is the layer's index in the stack and its weights are drawn from
    ``fold_in(key, i)`` exactly as :func:`initdiag.nn.stacks.init_segment` draws them.
    """
    gen = static.generate
    if gen is None:
        w_all, b_all = stored
        return lambda i: (w_all[i], b_all[i])
    fan_in, fan_out = gen.shapes[seg]
    form, value = weight_form(gen.init, fan_in, fan_out)  # as init_segment draws them

    def fetch(l):
        w = sample_form(form, jnp.float32(value), jax.random.fold_in(keys[0], l),
                        (fan_in, fan_out), jnp.float32)
        if gen.use_bias:
            b = gen.bias_init.bias(jax.random.fold_in(keys[1], l), fan_in, fan_out, jnp.float32)
        else:
            b = jnp.zeros((fan_out,), jnp.float32)
        return w.astype(jnp.float32), b.astype(jnp.float32)
    return fetch


def _seg_forward(static: Static, x, xs, fetch, square: bool, act_edges):
    """Forward through one segment; returns x^out, per-layer (x_prev, h) and statistics."""
    def step(x_prev, inp):
        w, b = fetch(inp)
        x_new, h, out = _forward_layer(static, x_prev, w, b, act_edges)
        if static.generate is not None:  # stored weights: see weight_norms
            out["weight_norm"] = stats.frobenius(w)
        return x_new, ((x_prev, h), out)
    if not square:  # a width change: a one-layer segment whose carry changes shape
        x_new, ys = step(x, jax.tree.map(lambda a: a[0], xs))
        return x_new, *jax.tree.map(lambda a: a[None], ys)
    x, (saved, out) = jax.lax.scan(step, x, xs, unroll=static.unroll)
    return x, saved, out


def _seg_backward(static: Static, carry, saved, xs, fetch, square: bool, grad_edges):
    def step(c, inp):
        (x_prev, h), layer = inp
        w, _ = fetch(layer)
        return _backward_layer(static, c, x_prev, h, w, grad_edges)
    if not square:
        carry, out = step(carry, jax.tree.map(lambda a: a[0], (saved, xs)))
        return carry, jax.tree.map(lambda a: a[None], out)
    return jax.lax.scan(step, carry, (saved, xs), reverse=True, unroll=static.unroll)


def _chunked(tree, k: int):
    return jax.tree.map(lambda a: a.reshape((a.shape[0] // k, k) + a.shape[1:]), tree)


def _unchunked(tree):
    return jax.tree.map(lambda a: a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:]), tree)


def _forward_remat(static: Static, x, xs, fetch, act_edges):
    """Forward keeping only each chunk's input; the backward recomputes the rest."""
    def chunk(x_in, xc):
        x_out, _, out = _seg_forward(static, x_in, xc, fetch, True, act_edges)
        return x_out, (x_in, out)
    x, (chunk_inputs, out) = jax.lax.scan(chunk, x, _chunked(xs, static.remat))
    return x, chunk_inputs, _unchunked(out)


def _backward_remat(static: Static, carry, chunk_inputs, xs, fetch, act_edges, grad_edges):
    def chunk(c, inp):
        x_in, xc = inp
        _, saved, _ = _seg_forward(static, x_in, xc, fetch, True, act_edges)
        return _seg_backward(static, c, saved, xc, fetch, True, grad_edges)
    carry, out = jax.lax.scan(chunk, carry, (chunk_inputs, _chunked(xs, static.remat)),
                              reverse=True)
    return carry, _unchunked(out)


class _Piece(NamedTuple):
    xs: Any       # the layer indices the scans run over (see _fetcher)
    fetch: Any
    square: bool
    chunked: bool


def _pieces(static: Static, params, keys) -> list[_Piece]:
    """Segments, each split so a remat piece's length is a multiple of ``static.remat``."""
    out = []
    for seg, entry in enumerate(params):
        if static.generate is None:
            n, fan_in, fan_out = entry[0].shape
            xs = jnp.arange(n)
            fetch = _fetcher(static, seg, keys, entry)
        else:
            n = entry.shape[0]
            fan_in, fan_out = static.generate.shapes[seg]
            xs = entry
            fetch = _fetcher(static, seg, keys, None)
        square = fan_in == fan_out
        k = static.remat
        main = (n // k) * k if k and square else 0
        if main:
            out.append(_Piece(xs[:main], fetch, True, True))
        if main < n:
            out.append(_Piece(xs[main:], fetch, square, False))
    return out


def run_impl(static: Static, params, keys, x0, readout, act_edges, grad_edges) -> dict[str, Any]:
    """Probe a stack and return its per-layer statistics.

    Args:
      static: the compile-time options.
      params: one entry per segment: ``(W [n, fi, fo], b [n, fo])``, or, with
        ``static.generate``, the layer indices ``[n]`` whose weights are drawn in the scan.
      keys: ``(key_weights, key_biases)`` (used only with ``static.generate``).
      x0: input [B, n_0]; readout: g [B, n_L] of the projection loss.
      act_edges, grad_edges: histogram bin edges.

    Returns:
      Per-layer statistics by metric name (scaled pairs and plain values, see
      :mod:`initdiag.engine.stats`; how each is combined: :data:`initdiag.metrics.TABLE`), each
      with leading dimension L, and the ``loss`` as a scaled pair.
    """
    pieces = _pieces(static, params, keys)
    x = stats.normalized(x0)  # every signal is carried scaled: x = xs * 2**e
    fwd_outs, saved = [], []
    for p in pieces:
        if p.chunked:
            x, keep, out = _forward_remat(static, x, p.xs, p.fetch, act_edges)
        else:
            x, keep, out = _seg_forward(static, x, p.xs, p.fetch, p.square, act_edges)
        fwd_outs.append(out)
        saved.append(keep)
    xs, e = x
    batch = xs.shape[0]
    if static.loss == "projection":  # dL/dx^L = g / B
        carry = stats.normalized(readout / jnp.asarray(batch, xs.dtype))
    else:  # dL/dx^L = x^L / B
        g_s, e1 = stats.normalized(xs / jnp.asarray(batch, xs.dtype))
        carry = (g_s, e + e1)
    bwd_outs = [None] * len(pieces)
    for i in reversed(range(len(pieces))):
        p = pieces[i]
        if p.chunked:
            carry, bwd_outs[i] = _backward_remat(static, carry, saved[i], p.xs, p.fetch, act_edges,
                                                 grad_edges)
        else:
            carry, bwd_outs[i] = _seg_backward(static, carry, saved[i], p.xs, p.fetch, p.square,
                                               grad_edges)
    cat = lambda *xs: jnp.concatenate(xs, axis=0)
    out = jax.tree.map(cat, *fwd_outs)
    out.update(jax.tree.map(cat, *bwd_outs))
    if static.loss == "projection":  # scaled pairs, like every statistic
        out["loss"] = (jnp.sum(readout * xs) / batch, e)
    else:
        out["loss"] = (0.5 * jnp.sum(jnp.square(xs)) / batch, 2 * e)
    return out


#: :func:`run_impl` compiled once per ``static`` and input shapes.
run = jax.jit(run_impl, static_argnums=0)


@jax.jit
def weight_norms(params) -> tuple[jax.Array, jax.Array]:
    """``weight_norm`` of stored weights (segments of ``(W [n, fi, fo], b)``), scaled, [L].

    Computed when the weights are drawn rather than in :func:`run`: inside the forward scan it
    cost as much as the matmul, and a batched (vmapped) reduction is slower still on CPU.
    """
    pairs = [jax.lax.map(stats.frobenius, w) for w, _ in params]
    return tuple(jnp.concatenate(parts) for parts in zip(*pairs))
