"""LSUV for any JAX model: :func:`calibrate` (Mishkin & Matas 2015, "All you need is a good init").

In call order, for every dense/conv site of ``fn``'s probe (:class:`initdiag.model.program.Program`),
the weight leaf feeding the site is multiplied by ``sqrt(target_var / var)``, where ``var`` is the
site's measured ``var`` (population variance of its output, bias included, over every entry) in a
probe of the current weights, until ``|var / target_var - 1| <= tol``. Each site is measured
after every earlier site has been fixed (one probe per step, with the program compiled once).

Scans: a site inside ``lax.scan`` whose weight leaf is stacked (leading axes = the scan lengths,
one slice per iteration) gets the slice of its iteration (``Program.flat[i].index``) rescaled.
A leaf used at several sites (a shared weight, a weight closed over by a scan body) is
calibrated at its first site only: rescaling it again would undo that site.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

_LAYER_KINDS = ("dense", "conv")


def _stacked(leaf: Any, scans: tuple, index: tuple, per_iteration: int) -> bool:
    """The leaf holds one slice per scan iteration (leading axes = the scan lengths)."""
    if not index:
        return False
    shape = tuple(np.shape(leaf))
    lengths = tuple(n for _, n, _ in scans)
    if len(shape) <= len(lengths) or shape[:len(lengths)] != lengths:
        return False
    return int(np.prod(shape[len(lengths):])) == per_iteration or per_iteration == 0


def _scaled(leaf: Any, index: tuple | None, scale: float) -> Any:
    if isinstance(leaf, np.ndarray):
        out = np.array(leaf, copy=True)
        if index is None:
            out *= np.asarray(scale, out.dtype)
        else:
            out[index] *= np.asarray(scale, out.dtype)
        return out
    if index is None:
        return (leaf * scale).astype(leaf.dtype)
    return leaf.at[index].multiply(jnp.asarray(scale, leaf.dtype))


def calibrate(fn: Callable, params: Any, x: Any, *, target_var: float = 1.0, tol: float = 0.1,
              max_iter: int = 10, seed: Any = 0, sites: str = "auto"):
    """Rescale every dense/conv weight so that its site's output variance is ``target_var``.

    Args:
      fn, params, x: as for :func:`initdiag.probe_fn` (``params`` any pytree).
      target_var: the variance every dense/conv site's output should have (> 0).
      tol: relative tolerance: a site is done when ``|var / target_var - 1| <= tol``.
      max_iter: most rescaling steps per site.
      seed: the probe's seed (the variance does not depend on it).
      sites: site selection of the probe (``"auto"``, ``"taps"``, ``"discover"``).

    Returns:
      ``(new_params, log)``: ``new_params`` of the same structure and leaf types as ``params``;
      ``log`` a pandas DataFrame with one row per rescaling step, columns ``site``, ``leaf``,
      ``iteration`` (1-based step at that site), ``var_before``, ``var_after``, ``scale``.
      A site already within tolerance gets no row.

    Raises:
      ValueError: a bad argument, or a site that does not reach the target within ``max_iter``
        steps (its variance is 0 or not finite, or it does not depend on the weight, e.g. a bias
        that alone has more than the target variance); the message names the site, its leaf and
        its last variance.
    """
    from initdiag.model.api import program

    import pandas as pd

    target_var, tol = float(target_var), float(tol)
    if not target_var > 0 or not math.isfinite(target_var):
        raise ValueError(f"target_var must be a finite number > 0; got {target_var!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0; got {tol!r}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1; got {max_iter!r}")
    prog = program(fn, params, x, sites=sites)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    leaves = list(leaves)
    rows: list[dict] = []
    done: set = set()
    use = prog.walk.leaf_use

    def measure() -> np.ndarray:
        p = jax.tree_util.tree_unflatten(treedef, leaves)
        return np.asarray(prog(p, x, seed)["values"]["var"], np.float64)

    var = None
    for i, f in enumerate(prog.flat):
        s = f.site
        if s.kind not in _LAYER_KINDS or s.param is None:
            continue
        li = prog.weights[s.param]
        u = use.get(s.param)
        per_it = (u.fan_in * u.fan_out if u is not None and s.kind == "dense" else 0)
        index = tuple(f.index) if _stacked(leaves[li], s.scans, f.index, per_it) else None
        key = (li, index)
        if key in done or (li, None) in done:
            continue
        done.add(key)
        if var is None:
            var = measure()
        for it in range(1, int(max_iter) + 1):
            v = float(var[i])
            if math.isfinite(v) and abs(v / target_var - 1.0) <= tol:
                break
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"calibrate: site {f.name!r} (weight leaf {prog.paths[li]!r}) "
                                 f"has variance {v!r}: no rescaling of the weight can reach "
                                 f"target_var={target_var:g}")
            scale = math.sqrt(target_var / v)
            leaves[li] = _scaled(leaves[li], index, scale)
            var = measure()
            rows.append({"site": f.name, "leaf": prog.paths[li] + (
                "".join(f"[{k}]" for k in index) if index else ""), "iteration": it,
                "var_before": v, "var_after": float(var[i]), "scale": scale})
        v = float(var[i])
        if not (math.isfinite(v) and abs(v / target_var - 1.0) <= tol):
            raise ValueError(f"calibrate: site {f.name!r} (weight leaf {prog.paths[li]!r}) did not "
                             f"converge in {max_iter} steps: its variance is {v:.6g}, target "
                             f"{target_var:g} +- {tol:.0%} (does its output depend on the weight? "
                             f"a bias alone may carry more than the target variance)")
    log = pd.DataFrame(rows, columns=["site", "leaf", "iteration", "var_before", "var_after",
                                      "scale"])
    return jax.tree_util.tree_unflatten(treedef, leaves), log
