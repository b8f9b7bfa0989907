"""A model's probe, traced and compiled once per shape: :class:`Program`.

``Program(fn, params, x, ...)`` traces ``fn(params, x)`` to a jaxpr (with :func:`initdiag.tap`
live), finds its sites (:mod:`initdiag.model.graph`) and builds one jitted computation that
evaluates the model with a zero perturbation at every site (:mod:`initdiag.model.instrument`),
takes ``jax.value_and_grad`` of the loss with respect to the perturbations and the weights, and
reduces everything to O(sites + leaves) numbers. Calling it with other weights of the same
shapes, or another seed, reuses the compiled executable.

Leaves of ``params``: floating arrays are the weights (differentiated); other arrays are inputs
held fixed; anything else (an Equinox module's functions, ints, strings) is static.

Loss (the stack probe's, :mod:`initdiag.probe`), with ``B`` the leading dimension of the first
leaf of ``x`` and the output leaves ``y_j``:

* ``"projection"``: ``L = sum_j sum(g_j * y_j) / B``, ``g_j ~ N(0, 1)`` of ``y_j``'s shape, drawn
  from the seed's readout key (``fold_in(key, j)`` for ``j > 0``);
* ``"half_mse"``: ``L = 0.5 sum_j sum(y_j**2) / B``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from initdiag.engine import stats
from initdiag.model import graph
from initdiag.model.instrument import POWERS, Instrumented, rows_rms
from initdiag.model.paths import owner_text, path_text
from initdiag.model.tap import tapping
from initdiag.nn.stacks import split_seed

SITE_MODES = ("auto", "taps", "discover")
LOSSES = ("projection", "half_mse")


def _is_weight(leaf: Any) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray)) and jnp.issubdtype(leaf.dtype, jnp.inexact)


def _is_array(leaf: Any) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray))


@dataclasses.dataclass(frozen=True)
class FlatSite:
    """One site of the results: a walk site at one scan iteration."""

    name: str
    site: graph.Site
    index: tuple  # indices into the site's leading scan axes


def _flatten_group(group: graph.Group, prefix: tuple, suffix: str, out: list) -> None:
    for item in group.items:
        if isinstance(item, graph.Group):
            order = range(item.length - 1, -1, -1) if item.reverse else range(item.length)
            for k in order:
                _flatten_group(item, prefix + (k,), f"{suffix}/[{k}]", out)
        else:
            out.append((item, prefix, suffix))


def _has_rules(jaxpr) -> bool:
    """Whether an equation of ``jaxpr`` (or of a jaxpr inside it) has a callable parameter
    that is not a jaxpr: a custom derivative rule or a callback."""
    for eqn in jaxpr.eqns:
        for value in eqn.params.values():
            values = value if isinstance(value, (tuple, list)) else (value,)
            for v in values:
                inner = getattr(v, "jaxpr", v) if isinstance(v, graph.ClosedJaxpr) else v
                if isinstance(inner, graph.Jaxpr):
                    if _has_rules(inner):
                        return True
                elif callable(v):
                    return True
    return False


def _owners(with_path: list) -> list[str]:
    """Each leaf's owner name (:func:`initdiag.model.paths.owner_text`); matrices and kernels
    (ndim >= 2) held in lists whose owners would coincide -- ``(weights, biases)``: ``[0][3]``
    -- keep their whole path instead."""
    owners = [owner_text(p) for p, _ in with_path]
    big = [i for i, (p, leaf) in enumerate(with_path)
           if np.ndim(leaf) >= 2 and p and isinstance(p[-1], jax.tree_util.SequenceKey)]
    counts: dict[str, int] = {}
    for i in big:
        counts[owners[i]] = counts.get(owners[i], 0) + 1
    for i in big:
        if counts[owners[i]] > 1:
            owners[i] = path_text(with_path[i][0])
    return owners


def _unique(names: list[str]) -> list[str]:
    """``names`` with repeats suffixed ``_1``, ``_2``, ... in order (the first keeps its name),
    skipping any suffixed name that is already taken."""
    taken = set(names)
    seen: set[str] = set()
    out = []
    for n in names:
        if n not in seen:
            seen.add(n)
            out.append(n)
            continue
        k = 1
        while f"{n}_{k}" in taken:
            k += 1
        name = f"{n}_{k}"
        taken.add(name)
        out.append(name)
    return out


class Program:
    """The traced, compiled probe of ``fn`` at the shapes of ``params`` and ``x``."""

    def __init__(self, fn: Callable, params: Any, x: Any, *, sites: str = "auto",
                 loss: str = "projection", saturation_threshold: float = 0.99):
        if sites not in SITE_MODES:
            raise ValueError(f"sites={sites!r} is not valid; choose one of {', '.join(SITE_MODES)}")
        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r} is not valid; choose one of {', '.join(LOSSES)}")
        if not 0.0 < float(saturation_threshold) < 1.0:
            raise ValueError(f"saturation_threshold must be in (0, 1); got {saturation_threshold!r}")
        self.fn, self.loss, self.threshold = fn, loss, float(saturation_threshold)
        with_path, self.treedef = jax.tree_util.tree_flatten_with_path(params)
        leaves = [leaf for _, leaf in with_path]
        self.dynamic = [i for i, leaf in enumerate(leaves) if _is_array(leaf)]
        self.weights = [i for i in self.dynamic if _is_weight(leaves[i])]
        self.static = {i: leaf for i, leaf in enumerate(leaves) if i not in set(self.dynamic)}
        self.n_leaves = len(leaves)
        self.paths = [path_text(p) for p, _ in with_path]
        self.owners = _owners(with_path)
        x_leaves, self.x_treedef = jax.tree_util.tree_flatten(x)
        if not x_leaves:
            raise ValueError("x has no arrays")
        self.batch = int(np.shape(x_leaves[0])[0]) if np.ndim(x_leaves[0]) else 1

        def flat_fn(dyn, xl):
            full = dict(self.static)
            full.update(zip(self.dynamic, dyn))
            p = jax.tree_util.tree_unflatten(self.treedef, [full[i] for i in range(self.n_leaves)])
            return jax.tree_util.tree_leaves(fn(p, jax.tree_util.tree_unflatten(self.x_treedef, xl)))

        dyn = [leaves[i] for i in self.dynamic]
        with tapping():
            self.closed = jax.make_jaxpr(flat_fn)(dyn, list(x_leaves))
        positions = [self.dynamic.index(i) for i in self.weights]
        walk = graph.Walk(len(self.weights), [self.owners[i] for i in self.weights])
        walk.run(self.closed, positions, first_input=len(dyn))
        self.walk = walk
        discovered = [s for s in graph.sites_of(walk.root) if s.kind != "tap"]
        if sites == "taps" or (sites == "auto" and walk.taps):
            chosen = set(walk.taps)
            self.mode = "taps"
        else:
            chosen = set(discovered)
            self.mode = "discover"
        self.root = graph.keep(walk.root, chosen)
        self.site_list = graph.sites_of(self.root)
        base = dict(zip(map(id, self.site_list),
                        _unique([s.base or s.kind for s in self.site_list])))
        flat: list = []
        _flatten_group(self.root, (), "", flat)
        self.flat = [FlatSite(base[id(s)] + suffix, s, idx) for s, idx, suffix in flat]
        self.instrumented = Instrumented(self.site_list, self.threshold)
        self.out_avals = [v.aval for v in self.closed.jaxpr.outvars]
        self._compiled = jax.jit(self._compute)

    # ---------------------------------------------------------------- device side
    def _loss(self, outs: list, key) -> jax.Array:
        total = jnp.float32(0.0)
        for j, y in enumerate(outs):
            if not jnp.issubdtype(y.dtype, jnp.inexact):
                continue
            y = y.astype(jnp.float32)
            if self.loss == "projection":
                g = jax.random.normal(key if j == 0 else jax.random.fold_in(key, j), y.shape,
                                      jnp.float32)
                total = total + jnp.sum(g * y)
            else:
                total = total + 0.5 * jnp.sum(jnp.square(y))
        return total / self.batch

    def _compute(self, dyn: list, xl: list, key):
        wpos = [self.dynamic.index(i) for i in self.weights]
        inst = self.instrumented

        def loss_fn(deltas, weights):
            args = list(dyn)
            for k, w in zip(wpos, weights):
                args[k] = w
            outs, measured = inst.run(self.closed.jaxpr, self.closed.consts, [*args, *xl], (),
                                      deltas, {})
            return self._loss(outs, key), measured

        deltas = {k: jnp.zeros(tuple(n for _, n, _ in s.scans) + tuple(s.shape),
                               self._site_dtype(s)) for k, s in enumerate(self.site_list)}
        weights = [dyn[k] for k in wpos]
        (loss, measured), (g_d, g_w) = jax.value_and_grad(loss_fn, argnums=(0, 1),
                                                          has_aux=True)(deltas, weights)
        grads = {k: rows_rms(g_d[k], len(s.scans)) for k, s in enumerate(self.site_list)}
        leaves = [(stats.frobenius(w.astype(jnp.float32)), stats.frobenius(g.astype(jnp.float32)))
                  for w, g in zip(weights, g_w)]
        return stats.normalized(loss), measured, grads, leaves

    @staticmethod
    def _site_dtype(site: graph.Site):
        return site.dtype

    # ---------------------------------------------------------------- host side
    def __call__(self, params: Any, x: Any, seed: Any = 0) -> dict[str, Any]:
        """Probe these weights (same structure and shapes as traced): per-site and per-leaf
        numbers, float64, on the host."""
        with_path, treedef = jax.tree_util.tree_flatten_with_path(params)
        if treedef != self.treedef:
            raise ValueError("params do not have the structure the program was traced with")
        leaves = [leaf for _, leaf in with_path]
        dyn = [leaves[i] for i in self.dynamic]
        xl = jax.tree_util.tree_leaves(x)
        key = split_seed(seed)["readout"]
        (loss_v, loss_e), measured, grads, leaf_norms = jax.device_get(self._compiled(dyn, xl, key))
        return self._assemble(measured, grads, leaf_norms, leaves,
                              float(stats.combine(loss_v, loss_e)))

    def _assemble(self, measured, grads, leaf_norms, leaves, loss) -> dict[str, Any]:
        n = len(self.flat)
        values: dict[str, np.ndarray] = {}

        def put(metric: str, i: int, value: float) -> None:
            if metric not in values:
                values[metric] = np.full(n, np.nan)
            values[metric][i] = value

        for i, f in enumerate(self.flat):
            k = self.instrumented.uid[id(f.site)]
            for metric, v in measured.get(k, {}).items():
                if isinstance(v, tuple):
                    put(metric, i, float(stats.combine(np.asarray(v[0])[f.index],
                                                       np.asarray(v[1])[f.index],
                                                       POWERS[metric])))
                else:
                    put(metric, i, float(np.asarray(v)[f.index]))
            g_v, g_e = grads[k]
            put("grad_rms", i, float(stats.combine(np.asarray(g_v)[f.index],
                                                   np.asarray(g_e)[f.index], 1)))
        if "branch_var" in values:
            with np.errstate(divide="ignore", invalid="ignore"):
                values["branch_ratio"] = values["branch_var"] / values["skip_var"]
        order = ["mean", "var", "sq_mean", "saturation", "zero_frac", "dead_frac", "grad_rms",
                 "ch_var", "ch_sq_mean", "branch_var", "skip_var", "branch_ratio",
                 "attn_entropy", "attn_max_logit"]
        values = {m: values[m] for m in order if m in values}
        rows = []
        norms = dict(zip(self.weights, leaf_norms))
        use = self.walk.leaf_use
        for i in range(self.n_leaves):
            leaf = leaves[i]
            row = {"path": self.paths[i], "shape": tuple(int(d) for d in np.shape(leaf)),
                   "role": "other", "fan_in": math.nan, "fan_out": math.nan,
                   "weight_norm": math.nan, "grad_norm": math.nan, "grad_weight_ratio": math.nan}
            if i in norms:
                (wv, we), (gv, ge) = norms[i]
                w = float(stats.combine(wv, we))
                g = float(stats.combine(gv, ge))
                row.update(weight_norm=w, grad_norm=g,
                           grad_weight_ratio=g / w if w > 0 else math.nan)
                u = use.get(self.weights.index(i))
                if u is not None and u.kind in ("dense", "conv"):
                    row.update(role=u.kind, fan_in=u.fan_in, fan_out=u.fan_out)
                elif u is not None:
                    row.update(role=u.kind)
            if i in norms or _is_array(leaf):
                rows.append(row)
        return {"sites": tuple(f.name for f in self.flat),
                "kinds": tuple(f.site.kind for f in self.flat),
                "activations": tuple(f.site.activation for f in self.flat),
                "site_params": tuple(None if f.site.param is None
                                     else self.paths[self.weights[f.site.param]]
                                     for f in self.flat),
                "values": values, "param_rows": tuple(rows),
                "skipped": tuple(dataclasses.asdict(s) for s in self.walk.skipped),
                "scalars": {"loss": loss}}

    def signature(self) -> tuple:
        """What the compiled probe depends on: the traced program's text (primitives, shapes,
        parameters, literals), the bytes of its constants, the structures of params and x (leaf
        paths and static leaves included) and the options. Two programs with one signature give
        the same numbers for the same inputs. A program holding a rule that its text names only
        by name (a ``custom_jvp``/``custom_vjp`` rule, a callback) gets a signature of its own:
        it is never shared."""
        import hashlib

        if _has_rules(self.closed.jaxpr):
            return ("unshared", id(self))  # a custom_jvp/vjp rule prints by name only
        digest = hashlib.sha256()
        for c in self.closed.consts:
            if jnp.issubdtype(getattr(c, "dtype", np.float32), jax.dtypes.prng_key):
                c = jax.random.key_data(c)
            arr = np.asarray(c)
            digest.update(f"{arr.dtype}{arr.shape}".encode())
            digest.update(arr.tobytes())
        statics = tuple((i, repr(v)) for i, v in sorted(self.static.items()))
        return (str(self.closed.jaxpr), digest.hexdigest(), str(self.treedef), str(self.x_treedef),
                statics, self.mode, self.loss, self.threshold)

    def usage_plans(self, params: Any) -> dict:
        """How to redraw each weight leaf, from how the traced function uses it: ``{leaf number:
        initdiag.model.layout.LeafPlan}`` for :func:`initdiag.reinit`'s ``usage=`` (dense and
        conv weights, their biases, norm scales)."""
        from initdiag.model.layout import LeafPlan

        leaves = jax.tree_util.tree_leaves(params)
        out = {}
        for k, i in enumerate(self.weights):
            u = self.walk.leaf_use.get(k)
            if u is None:
                continue
            shape = tuple(np.shape(leaves[i]))
            layer = tuple(u.layer_shape) or shape
            lead = len(shape) - len(layer)
            if lead < 0 or shape[lead:] != layer:
                continue
            stacked = math.prod(shape[:lead]) if lead else 0
            if u.kind in ("dense", "conv"):
                if u.canonical is None:
                    continue
                reason = f"used as a {u.kind} weight by the traced function"
                out[i] = LeafPlan(self.paths[i], u.kind, shape, stacked, u.fan_in, u.fan_out,
                                  reason, layer, tuple(u.canonical), tuple(u.perm))
            elif u.kind == "bias":
                out[i] = LeafPlan(self.paths[i], "bias", shape, stacked, u.fan_in or math.prod(layer),
                                  u.fan_out or math.prod(layer),
                                  "added to a dense/conv output by the traced function", layer)
            elif u.kind == "norm_scale":
                out[i] = LeafPlan(self.paths[i], "norm_scale", shape, stacked, None, None,
                                  "scales a normalization in the traced function", layer)
        return out

    def compiled_count(self) -> int:
        """How many executables this program has compiled (1 after any number of calls with the
        traced shapes)."""
        return int(self._compiled._cache_size())
