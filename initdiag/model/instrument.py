"""Phase 2: evaluate a jaxpr with a zero perturbation and a set of statistics at every site.

:class:`Instrumented` re-evaluates the traced function equation by equation (inside the probe's
one ``jax.jit``). At each site it adds the site's zero perturbation ``delta`` (so that
``dL/d delta`` is the gradient at the site) and reduces the value to a handful of scalars. Inside
``lax.scan`` the body is re-issued as a scan whose extra inputs are the per-iteration
perturbations and whose extra outputs are the per-iteration statistics; ``checkpoint`` bodies are
re-wrapped in ``jax.checkpoint`` with their policy. Everything else is bound unchanged.

Statistics of a site value ``v`` (every entry, all axes; the scaled ones are pairs
``(value, exponent)``, combined on the host with the power given in :data:`POWERS`):

* ``mean``, ``var`` (population), ``sq_mean`` = mean of ``v**2``;
* sites with an activation: ``saturation`` (fraction of entries in the activation's saturated
  range at the threshold), and for the ReLU family ``zero_frac`` (entries exactly 0) and
  ``dead_frac`` (fraction of channels that are 0 for every sample and position);
* sites with a channel axis: ``ch_var`` = mean over channels of the variance over every other
  axis, ``ch_sq_mean`` = mean over channels of the squared mean over every other axis;
* residual sites: ``branch_var``, ``skip_var`` (variances of the two operands);
* attention sites: ``attn_entropy`` (``-sum p log p`` over the keys, mean over every other axis,
  nats) and ``attn_max_logit`` (maximum over every entry of the logits).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import ClosedJaxpr, Literal

from initdiag.engine import stats
from initdiag.model.graph import CALLS, REMAT, Site, bind
from initdiag.nn.activations import activation as make_activation

#: The power of two a scaled statistic's exponent carries (see :func:`initdiag.engine.stats.combine`).
POWERS = {"mean": 1, "var": 2, "sq_mean": 2, "ch_var": 2, "ch_sq_mean": 2, "branch_var": 2,
          "skip_var": 2, "grad_rms": 1, "weight_norm": 1, "grad_norm": 1}


@functools.lru_cache(maxsize=None)
def _activation(label: str):
    return make_activation(label)


def _scaled_var(v: jax.Array) -> tuple[jax.Array, jax.Array]:
    xs, e = stats.normalized(v.astype(jnp.float32))
    return jnp.var(xs), e


def measure(site: Site, v: jax.Array, operands: list, logits: Any,
            threshold: float) -> dict[str, Any]:
    """The statistics of one site value (module docstring)."""
    xs, e = stats.normalized(v.astype(jnp.float32))
    out: dict[str, Any] = {"mean": (jnp.mean(xs), e), "var": (jnp.var(xs), e),
                           "sq_mean": (jnp.mean(jnp.square(xs)), e)}
    chan = site.chan if site.chan is not None else (v.ndim - 1 if v.ndim else None)
    if site.activation is not None:
        act = _activation(site.activation)
        if act.saturates:
            out["saturation"] = jnp.mean(act.saturated(v, threshold).astype(jnp.float32))
        if act.can_die:
            zero = xs == 0
            out["zero_frac"] = jnp.mean(zero.astype(jnp.float32))
            if chan is not None:
                per_chan = jnp.all(jnp.moveaxis(zero, chan, -1).reshape(-1, v.shape[chan]), axis=0)
                out["dead_frac"] = jnp.mean(per_chan.astype(jnp.float32))
    if site.chan is not None and v.ndim >= 2:
        rows = jnp.moveaxis(xs, site.chan, -1).reshape(-1, v.shape[site.chan])
        out["ch_var"] = (jnp.mean(jnp.var(rows, axis=0)), e)
        out["ch_sq_mean"] = (jnp.mean(jnp.square(jnp.mean(rows, axis=0))), e)
    if site.kind == "residual":
        out["branch_var"] = _scaled_var(operands[site.branch])
        out["skip_var"] = _scaled_var(operands[1 - site.branch])
    if site.kind == "attention":
        p = v.astype(jnp.float32)
        ent = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)
        out["attn_entropy"] = jnp.mean(ent)
        if logits is not None:
            out["attn_max_logit"] = jnp.max(logits).astype(jnp.float32)
    return out


def rows_rms(g: jax.Array, lead: int) -> tuple[jax.Array, jax.Array]:
    """RMS over every entry of each of the ``lead`` leading-axis slices of ``g``, scaled per slice
    (so a slice of 1e-30 reads 1e-30 and one that is exactly 0 reads 0)."""
    shape = g.shape[:lead]
    rows = g.astype(jnp.float32).reshape(math.prod(shape), -1)
    m = jnp.max(jnp.abs(rows), axis=1)
    e = stats.exponent(m)
    scaled = rows * jax.vmap(lambda k: stats.times_pow2(jnp.float32(1.0), -k))(e)[:, None]
    rms = jnp.sqrt(jnp.mean(jnp.square(scaled), axis=1))
    return rms.reshape(shape), e.reshape(shape)


class Instrumented:
    """Evaluate a closed jaxpr with perturbations and statistics at ``sites``."""

    def __init__(self, sites: list[Site], threshold: float):
        self.uid = {id(s): k for k, s in enumerate(sites)}
        self.at = {s.where: s for s in sites}
        self.needed = {s.logits for s in sites if s.logits is not None}
        self.sites = sites
        self.threshold = threshold

    def inside(self, path: tuple) -> list[int]:
        """Ids of the sites inside the construct at ``path``."""
        n = len(path)
        return [self.uid[id(s)] for s in self.sites if s.where[0][:n] == path]

    def run(self, jaxpr, consts, args, path: tuple, deltas: dict, registry: dict):
        env: dict = {}
        measured: dict = {}

        def read(v):
            if isinstance(v, Literal):  # a typed array, even for a Python-number literal
                return jnp.asarray(v.val, getattr(v.aval, "dtype", None))
            return env[v]

        for v, c in zip(jaxpr.constvars, consts):
            env[v] = c
        for v, a in zip(jaxpr.invars, args):
            env[v] = a
        for i, eqn in enumerate(jaxpr.eqns):
            p = path + (i,)
            invals = [read(v) for v in eqn.invars]
            name = eqn.primitive.name
            if name in CALLS:
                inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
                closed = inner if isinstance(inner, ClosedJaxpr) else ClosedJaxpr(inner, ())
                outs, st = self.run(closed.jaxpr, closed.consts, invals, p, deltas, registry)
                measured.update(st)
            elif name in REMAT:
                outs, st = self._remat(eqn, invals, p, deltas)
                measured.update(st)
            elif name == "scan":
                outs, st = self._scan(eqn, invals, p, deltas)
                measured.update(st)
            elif name == "initdiag_tap":
                outs = invals
            else:
                outs = bind(eqn, invals)
            for k, v in enumerate(eqn.outvars):
                val = outs[k]
                site = self.at.get((p, k))
                if site is not None:
                    uid = self.uid[id(site)]
                    val = val + deltas[uid].astype(val.dtype)
                    measured[uid] = measure(site, val, invals, registry.get(site.logits),
                                            self.threshold)
                env[v] = val
                if (path, v) in self.needed:
                    registry[(path, v)] = val
        return [read(v) for v in jaxpr.outvars], measured

    def _remat(self, eqn, invals, p, deltas):
        ids = self.inside(p)
        sub = {u: deltas[u] for u in ids}
        body = eqn.params["jaxpr"]

        def f(args, d):
            return self.run(body, [], args, p, d, {})

        policy = eqn.params.get("policy")
        return jax.checkpoint(f, prevent_cse=eqn.params.get("prevent_cse", True),
                              policy=policy)(list(invals), sub)

    def _scan(self, eqn, invals, p, deltas):
        prm = eqn.params
        body: ClosedJaxpr = prm["jaxpr"]
        nc, ncar = prm["num_consts"], prm["num_carry"]
        ids = self.inside(p)
        sub = {u: deltas[u] for u in ids}
        consts, init, xs = invals[:nc], invals[nc:nc + ncar], invals[nc + ncar:]

        def f(carry, x):
            xs_i, d_i = x
            outs, st = self.run(body.jaxpr, body.consts, [*consts, *carry, *xs_i], p, d_i, {})
            return outs[:ncar], (outs[ncar:], st)

        carry, (ys, st) = jax.lax.scan(f, list(init), (list(xs), sub), length=prm["length"],
                                       reverse=prm["reverse"], unroll=prm.get("unroll", 1))
        return [*carry, *ys], st
