"""The compiled training loop of a stack: one ``lax.scan`` over the steps.

The model is the probe's stack (:func:`initdiag.nn.stacks.apply_stack`: layers 1..L) followed by a
linear readout to the task's outputs, ``f(x) = x^L W_out + b_out`` (no activation). One step t
(1-based) on the mini-batch of rows ``idx[t-1]``:

1. the loss of the current weights theta_{t-1} on the batch and its gradient (``jax.grad``),
   with ``dL/dh^l`` of every layer taken as the gradient with respect to a zero perturbation
   added to ``h^l`` (``apply_stack(..., perturb=)``);
2. the optimizer's update (optax), ``theta_t = theta_{t-1} + u_t`` (``optax.apply_updates``);
   without biases (``use_bias=False``) the bias gradients are zeroed, so biases stay 0;
3. the records of step t: ``loss`` and ``accuracy`` (of theta_{t-1} on the batch),
   ``grad_preact_rms`` (RMS of dL/dh^l over batch and units, per layer) and the update ratio
   ``||W^l_t - W^l_{t-1}||_F / ||W^l_{t-1}||_F`` (weights only, not biases), both reduced in
   the probe's scaled arithmetic (:mod:`initdiag.engine.stats`: a scaled pair per value,
   combined in float64 on the host, so a gradient of 1e-30 reads 1e-30).

Divergence: the first step whose loss, gradient or updated weights are not all finite is
flagged (``ok`` False from that step on); its update is not applied and the weights stay at the
last finite values. The host turns every record from that step on into NaN
(:mod:`initdiag.train.api`).

Snapshots: the weights after the steps listed in ``Static.snapshots`` (0: the initial weights)
are kept in a buffer ``[n_snapshots, ...]``, for the probe's statistics at those steps.

The initializer enters as data: the drawn weights, the data and the learning rate are arguments,
so every initializer (and learning rate, and seed) of one shape shares one compilation.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from initdiag.engine import stats
from initdiag.nn.activations import Activation
from initdiag.nn.stacks import Norm, apply_stack
from initdiag.train.tasks import require

#: The optimizers (optax), in the order of messages.
OPTIMIZERS = ("sgd", "adam")
#: The learning rate of each optimizer when none is given.
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3}


class Static(NamedTuple):
    """What the compiled loop depends on besides array shapes (hashable).

    ``activation``, ``norm``, ``residual`` are the stack's (read by :func:`apply_stack`);
    ``snapshots`` the sorted steps whose weights are kept (0 = before the first step). With
    ``fn`` (a user model ``fn(params, x)``, :func:`initdiag.train_fn`) the stack fields are
    unused: the model is ``fn``, its weights are every leaf of two or more dimensions and no
    ``grad_preact_rms`` is recorded.
    """

    activation: Activation | None
    norm: Norm
    residual: float | None
    use_bias: bool
    classification: bool
    optimizer: str
    snapshots: tuple[int, ...]
    fn: Any = None


def make_optimizer(name: str, lr: Any):
    """``optax.sgd(lr)`` (plain SGD, no momentum) or ``optax.adam(lr)`` (b1 0.9, b2 0.999,
    eps 1e-8: optax's defaults)."""
    optax = require("optax")
    return optax.sgd(lr) if name == "sgd" else optax.adam(lr)


def task_loss(classification: bool, out: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy over the batch (integer labels), or the mean over the batch of
    the squared error summed over outputs (:mod:`initdiag.train.tasks`)."""
    if classification:
        optax = require("optax")
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(out, y))
    return jnp.mean(jnp.sum(jnp.square(out - y), axis=-1))


def accuracy(out: jax.Array, y: jax.Array) -> jax.Array:
    """Fraction of rows whose largest output is the label."""
    return jnp.mean((jnp.argmax(out, axis=-1) == y).astype(jnp.float32))


def forward(static: Static, theta, x: jax.Array, perturb=None) -> jax.Array:
    """The model's output: ``fn(theta, x)`` for a user model; for a stack
    ``apply_stack(hidden, x) @ W_out + b_out`` with ``theta = (hidden, (W_out, b_out))``."""
    if static.fn is not None:
        return static.fn(theta, x)
    hidden, (w_out, b_out) = theta
    return apply_stack(hidden, x, static, perturb) @ w_out + b_out[None, :]


def weights(static: Static, theta) -> list[jax.Array]:
    """The weights whose ``update_ratio`` is recorded: the hidden layers' stacked ``W``
    (``[count, fan_in, fan_out]`` per segment) of a stack; each leaf of two or more dimensions
    of a user model (a leading axis of 1 added)."""
    if static.fn is None:
        return [w for w, _ in theta[0]]
    return [a[None] for a in jax.tree.leaves(theta) if a.ndim >= 2]


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)]))


def _layer_pairs(fn, segments) -> tuple[jax.Array, jax.Array]:
    """A scaled pair per layer: ``fn`` (array -> (v, e)) mapped over each segment's layers."""
    if not segments:
        return jnp.zeros((0,), jnp.float32), jnp.zeros((0,), jnp.int32)
    pairs = [jax.vmap(fn)(a) for a in segments]
    return jnp.concatenate([p[0] for p in pairs]), jnp.concatenate([p[1] for p in pairs])


def _rms(g):
    return stats.rms(*stats.normalized(g))


def run_impl(static: Static, theta0, x_train, y_train, idx, lr, x_test, y_test) -> dict[str, Any]:
    """Train ``theta0`` for ``len(idx)`` steps: a stack's ``(hidden segments ((W, b), ...),
    (W_out, b_out))``, or a user model's parameter pytree (``static.fn``).

    Returns:
      ``ok`` [S] (bool: no divergence up to and including the step), the per-step scaled pairs
      ``grad_preact_rms`` [S, L] (stacks), ``update_norm`` and ``weight_norm`` [S, L] (of
      W^l_t - W^l_{t-1} and W^l_{t-1}), ``loss`` and ``accuracy`` [S] (float32),
      ``snapshots`` (theta with a leading axis over ``static.snapshots``) and the final
      ``test_loss``, ``test_accuracy`` (of the last finite weights).
    """
    opt = make_optimizer(static.optimizer, lr)
    batch = idx.shape[1]
    stack = static.fn is None
    zeros = (tuple(jnp.zeros((w.shape[0], batch, w.shape[2]), w.dtype) for w, _ in theta0[0])
             if stack else ())
    snaps = jnp.asarray(static.snapshots, jnp.int32)

    def objective(theta, perturb, x, y):
        out = forward(static, theta, x, perturb if stack else None)
        return task_loss(static.classification, out, y), out

    grad_fn = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)

    def keep(buf, tree, t):
        slot = jnp.minimum(jnp.searchsorted(snaps, t), snaps.shape[0] - 1)
        hit = snaps[slot] == t
        return jax.tree.map(lambda b, w: b.at[slot].set(jnp.where(hit, w, b[slot])), buf, tree)

    buf0 = jax.tree.map(lambda w: jnp.zeros((snaps.shape[0],) + w.shape, w.dtype),
                        theta0)
    buf0 = keep(buf0, theta0, 0)

    def step(carry, inp):
        theta, state, buf, bad = carry
        t, rows = inp
        x, y = x_train[rows], y_train[rows]
        (loss, out), (g, gh) = grad_fn(theta, zeros, x, y)
        if stack and not static.use_bias:  # no biases: they stay 0
            g = (tuple((gw, jnp.zeros_like(gb)) for gw, gb in g[0]),
                 (g[1][0], jnp.zeros_like(g[1][1])))
        updates, new_state = opt.update(g, state, theta)
        new_theta = require("optax").apply_updates(theta, updates)
        ok = ~bad & jnp.isfinite(loss) & _all_finite(g) & _all_finite(new_theta)
        old_w, new_w = weights(static, theta), weights(static, new_theta)
        rec = {"ok": ok, "loss": loss,
               "update_norm": _layer_pairs(stats.frobenius, [n - o for n, o in zip(new_w, old_w)]),
               "weight_norm": _layer_pairs(stats.frobenius, old_w)}
        if stack:
            rec["grad_preact_rms"] = _layer_pairs(_rms, gh)
        if static.classification:
            rec["accuracy"] = accuracy(out, y)
        theta = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new_theta, theta)
        state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new_state, state)
        return (theta, state, keep(buf, theta, t), ~ok), rec

    steps = jnp.arange(1, idx.shape[0] + 1, dtype=jnp.int32)
    carry = (theta0, opt.init(theta0), buf0, jnp.bool_(False))
    (theta, _, buf, _), recs = jax.lax.scan(step, carry, (steps, idx))
    out = forward(static, theta, x_test)
    recs["snapshots"] = buf
    recs["test_loss"] = task_loss(static.classification, out, y_test)
    if static.classification:
        recs["test_accuracy"] = accuracy(out, y_test)
    return recs


#: :func:`run_impl` compiled once per ``static`` and array shapes.
run = jax.jit(run_impl, static_argnums=0)
