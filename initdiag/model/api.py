"""Probe any JAX function: :func:`probe_fn`, :func:`sweep_fn`.

``probe_fn(fn, params, x)`` probes ``fn(params, x) -> output`` (an array or a pytree of arrays;
``params`` any pytree, an Equinox module included) at sites it finds in the traced jaxpr
(:mod:`initdiag.model.graph`), with the statistics of :mod:`initdiag.model.instrument` and the
loss of :mod:`initdiag.model.program`. One compilation per model shape: a second call with
weights of the same shapes (another initializer, another seed) reuses the executable.
"""

from __future__ import annotations

import collections
import os
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from initdiag.model.program import Program
from initdiag.model.result import ModelResult, ModelSweep, check_entry

_PROGRAMS: "collections.OrderedDict[Any, Program]" = collections.OrderedDict()
_BY_SIGNATURE: "collections.OrderedDict[Any, Program]" = collections.OrderedDict()
_MAX_PROGRAMS = 16


def _aval_key(tree: Any) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    out = []
    for leaf in leaves:
        if isinstance(leaf, (jax.Array, np.ndarray)):
            out.append(("array", tuple(leaf.shape), str(leaf.dtype)))
        else:
            out.append(("static", leaf))
    return treedef, tuple(out)


def _remember(cache: "collections.OrderedDict[Any, Program]", key: Any, prog: Program) -> None:
    cache[key] = prog
    while len(cache) > _MAX_PROGRAMS:
        cache.popitem(last=False)


def program(fn: Callable, params: Any, x: Any, *, sites: str = "auto", loss: str = "projection",
            saturation_threshold: float = 0.99) -> Program:
    """The compiled probe of ``fn`` at these shapes, reused across calls (up to 16 kept).

    Found by ``fn`` itself, else by what ``fn`` traced to: a new function object that traces to
    the same program (a framework adapter builds a fresh closure per call) reuses the compiled
    executable too (:meth:`Program.signature`)."""
    options = dict(sites=sites, loss=loss, saturation_threshold=saturation_threshold)
    try:
        key = (fn, _aval_key(params), _aval_key(x), sites, loss, float(saturation_threshold))
        hash(key)
    except TypeError:  # an unhashable static leaf: no reuse by function
        key = None
    if key is not None and key in _PROGRAMS:
        _PROGRAMS.move_to_end(key)
        return _PROGRAMS[key]
    prog = Program(fn, params, x, **options)
    signature = prog.signature()
    if signature in _BY_SIGNATURE:
        _BY_SIGNATURE.move_to_end(signature)
        prog = _BY_SIGNATURE[signature]
    else:
        _remember(_BY_SIGNATURE, signature, prog)
    if key is not None:
        _remember(_PROGRAMS, key, prog)
    return prog


def _model_name(fn: Callable, name: str | None) -> str:
    if name is not None:
        return str(name)
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


def _input_shape(x: Any) -> list:
    return [list(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(x)]


def probe_fn(fn: Callable, params: Any, x: Any, *, seed: Any = 0, loss: str = "projection",
             sites: str = "auto", saturation_threshold: float = 0.99, name: str | None = None,
             init: str = "given") -> ModelResult:
    """Probe ``fn(params, x)`` at every site, before any training step.

    Args:
      fn: ``fn(params, x) -> output`` (array or pytree of arrays); may be jitted and may use
        ``lax.scan``, ``checkpoint`` and ``vmap``. It is not edited.
      params: any pytree of weights (floating arrays are differentiated; other arrays are fixed
        inputs; non-array leaves, such as an Equinox module's functions, are static).
      x: the input batch (array or pytree; its first leaf's leading axis is the batch ``B``).
      seed: an integer or a jax key: seeds the projection loss's readout.
      loss: ``"projection"`` (``L = sum(g * y) / B``, ``g ~ N(0, 1)``) or ``"half_mse"``
        (``L = 0.5 sum(y**2) / B``); :mod:`initdiag.model.program`.
      sites: ``"auto"`` (the :func:`initdiag.tap` markers when ``fn`` has any, else discovery),
        ``"taps"`` or ``"discover"``.
      saturation_threshold: t in (0, 1) of the saturated-range rule (as for stacks).
      name: the model's name in results (default: ``fn``'s qualified name).
      init: what to record as the initializer (``"given"``: the weights as passed).

    Returns:
      A :class:`initdiag.model.result.ModelResult`: ``res.sites``, ``res.kinds``,
      ``res["grad_rms"]`` (float64 over the sites, NaN where a metric does not apply),
      ``res.params`` (a DataFrame of the leaves), ``res.skipped``.
    """
    prog = program(fn, params, x, sites=sites, loss=loss,
                   saturation_threshold=saturation_threshold)
    return _result(prog, params, x, seed, name=_model_name(fn, name), init=init)


def _result(prog: Program, params: Any, x: Any, seed: Any, *, name: str, init: str,
            bias_init: str = "given") -> ModelResult:
    start = time.perf_counter()
    numbers = prog(params, x, seed)
    config = {"model": name, "init": init, "bias_init": bias_init, "loss": prog.loss,
              "sites": prog.mode, "batch": prog.batch, "input_shape": _input_shape(x),
              "saturation_threshold": prog.threshold}
    seed_value = int(seed) if isinstance(seed, (int, np.integer)) else 0
    meta = {"timing": {"probe_s": time.perf_counter() - start}}
    return ModelResult(config=config, seed=seed_value, meta=meta, **numbers)


def sweep_fn(fn: Callable, params: Any, x: Any, inits: Sequence[Any], seeds: Sequence[int] = (0,),
             *, bias_init: Any = "zeros", layout: str = "auto", loss: str = "projection",
             sites: str = "auto", saturation_threshold: float = 0.99, name: str | None = None,
             progress: Callable[[int, int, ModelResult], None] | None = None,
             checkpoint: str | os.PathLike | None = None) -> ModelSweep:
    """Probe ``fn`` with its weights redrawn by every initializer x seed.

    Each ``(init, seed)`` redraws every weight leaf with :func:`initdiag.reinit` (``bias_init``,
    ``layout`` as there; ``seed`` seeds both the draw and the readout) and probes it with ONE
    compiled executable: the initializer is data (the drawn weights), not a new trace. A leaf
    the layout does not name (a plain-JAX model's ``params["w1"]``) is drawn from how ``fn``
    uses it: a dense weight's contracted axis is its fan-in, a conv's is its input-feature axis
    times the receptive field; the bias added to such a layer follows ``bias_init``; a
    normalization's scale becomes 1. With ``layout="auto"`` and a pytree whose layout cannot be
    told from its names, that use decides for every leaf.

    ``progress(done, total, result)`` is called after each probe this call computes (``done``
    counts the probes restored from ``checkpoint`` too). ``checkpoint``: None, or a file to
    which each probe is appended as it finishes, and from which a later call of the same sweep
    restores them instead of probing again: the same numbers as an uninterrupted run, bit for
    bit (as :func:`initdiag.sweep`'s ``checkpoint``; :mod:`initdiag.checkpoint` is the format,
    :mod:`initdiag.resume` what identifies a model sweep; seeds must be integers; with several
    processes only process 0 writes it).

    Returns:
      A :class:`initdiag.model.result.ModelSweep` in the order inits x seeds; its
      ``to_frame()`` has ``init`` and ``seed`` columns. On KeyboardInterrupt the results so far
      (restored ones included) are attached to the exception as ``partial``.
    """
    from initdiag.model.reinit import reinit
    from initdiag.nn.initializers import initializer as resolve_initializer

    for label, seq in (("inits", inits), ("seeds", seeds)):
        if isinstance(seq, (str, bytes)) or not hasattr(seq, "__iter__"):
            raise TypeError(f"{label} must be a list; got {seq!r} (wrap one value in a list)")
        if len(list(seq)) == 0:
            raise ValueError(f"{label} is empty")
    resolved = [resolve_initializer(i) for i in inits]  # fail fast, before any work
    prog = program(fn, params, x, sites=sites, loss=loss,
                   saturation_threshold=saturation_threshold)
    model = _model_name(fn, name)
    bias_label = getattr(resolve_initializer(bias_init), "label", str(bias_init))
    usage = prog.usage_plans(params)
    if layout == "auto" and usage:
        from initdiag.model.layout import resolve_layout

        try:
            resolve_layout(params, "auto")
        except ValueError:  # no framework names (a plain-JAX model): how fn uses each leaf
            layout = "flax"
    seeds = list(seeds)
    labels = [getattr(init, "label", str(init)) for init in resolved]
    head = None
    if checkpoint is not None:
        from initdiag import resume

        head = resume.model_header("model_sweep", name=model, params=params, x=x, loss=loss,
                                   sites=prog.mode, saturation_threshold=saturation_threshold,
                                   bias_init=bias_label, layout=layout, inits=labels,
                                   seeds=resume.integer_seeds(seeds))

    def probe_one(n: int) -> ModelResult:
        init, seed = resolved[n // len(seeds)], seeds[n % len(seeds)]
        drawn = reinit(params, init, seed=seed, bias_init=bias_init, layout=layout, usage=usage)
        return _result(prog, drawn, x, seed, name=model, init=labels[n // len(seeds)],
                       bias_init=bias_label)

    results = _run_probes(len(resolved) * len(seeds), probe_one, head, checkpoint, progress)
    return ModelSweep(results, {"compiled": prog.compiled_count()})


def probe_seeds(fn: Callable, params: Any, x: Any, seeds: Sequence[int] = (0,), *,
                loss: str = "projection", sites: str = "auto", saturation_threshold: float = 0.99,
                name: str | None = None,
                progress: Callable[[int, int, ModelResult], None] | None = None,
                checkpoint: str | os.PathLike | None = None) -> ModelSweep:
    """:func:`probe_fn` of the weights as given, once per seed (the seed draws the projection
    loss's readout), as a :class:`ModelSweep` in the order of ``seeds``; ``progress`` and
    ``checkpoint`` as in :func:`sweep_fn` (the checkpoint also records the SHA-256 of the
    weights' values: other weights are another sweep)."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"seeds must be a list; got {seeds!r} (wrap one value in a list)")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds is empty")
    prog = program(fn, params, x, sites=sites, loss=loss,
                   saturation_threshold=saturation_threshold)
    model = _model_name(fn, name)
    head = None
    if checkpoint is not None:
        from initdiag import resume

        head = resume.model_header("model_seeds", name=model, params=params, x=x, loss=loss,
                                   sites=prog.mode, saturation_threshold=saturation_threshold,
                                   params_sha256=resume.digest(params),
                                   seeds=resume.integer_seeds(seeds))
    results = _run_probes(len(seeds),
                          lambda n: _result(prog, params, x, seeds[n], name=model, init="given"),
                          head, checkpoint, progress)
    return ModelSweep(results, {"compiled": prog.compiled_count()})


def _run_probes(total: int, probe_one: Callable[[int], ModelResult], head: dict | None,
                checkpoint: Any, progress: Callable | None) -> list[ModelResult]:
    """``[probe_one(n) for n in range(total)]``, restoring from / appending to ``checkpoint``
    (header ``head``) and calling ``progress``; on KeyboardInterrupt the results so far are
    attached to the exception as ``partial`` (a ModelSweep)."""
    results: list[ModelResult | None] = [None] * total
    ckpt = None
    if checkpoint is not None:
        from initdiag import resume

        ckpt = resume.open_shared(checkpoint, head, _checked_result)
        for n, r in ckpt.done.items():
            results[n] = r
    try:
        for n in range(total):
            if results[n] is not None:
                continue
            results[n] = probe_one(n)
            if ckpt is not None:
                ckpt.append(n, results[n].to_dict())
            if progress is not None:
                progress(sum(r is not None for r in results), total, results[n])
    except KeyboardInterrupt as e:
        e.partial = ModelSweep([r for r in results if r is not None])  # type: ignore[attr-defined]
        raise
    finally:
        if ckpt is not None:
            ckpt.close()
    return results  # type: ignore[return-value]


def probe_model(model: Any, x: Any, *, apply_kwargs: dict | None = None, vmap: bool | None = None,
                **options: Any) -> ModelResult:
    """:func:`probe_fn` for a framework model, in one line.

    ``model`` is a Flax linen module bound to its variables (``module.bind(variables)``) or a
    ``(module, variables)`` pair (batch statistics and other collections are held fixed and a
    BatchNorm in training mode normalizes by the batch), a Flax nnx module, an Equinox module or
    ``(module, state)`` (a per-sample module is vmapped over the batch), or a Haiku
    ``(transformed, params[, state])``. :func:`initdiag.model.frameworks.adapt` builds
    ``fn(params, x)``; only the weights are differentiated. ``apply_kwargs`` go to the model's
    call (e.g. ``{"train": True}``); ``vmap`` forces (True) or forbids (False) vmapping an
    Equinox module over the batch. ``options`` are :func:`probe_fn`'s.
    """
    from initdiag.model.frameworks import adapt

    adapted = adapt(model, x, apply_kwargs=apply_kwargs, vmap=vmap)
    options.setdefault("name", type(model[0] if isinstance(model, tuple) else model).__name__)
    res = probe_fn(adapted.fn, adapted.params, x, **options)
    res.meta["framework"] = adapted.framework
    res.meta["adapter"] = adapted.description
    return res


def sweep_model(model: Any, x: Any, inits: Sequence[Any], seeds: Sequence[int] = (0,), *,
                apply_kwargs: dict | None = None, vmap: bool | None = None,
                **options: Any) -> ModelSweep:
    """:func:`sweep_fn` for a framework model (see :func:`probe_model`); the weight layout for
    :func:`initdiag.reinit` is the framework's unless ``layout=`` is given."""
    from initdiag.model.frameworks import adapt

    adapted = adapt(model, x, apply_kwargs=apply_kwargs, vmap=vmap)
    options.setdefault("name", type(model[0] if isinstance(model, tuple) else model).__name__)
    options.setdefault("layout", adapted.layout)
    return sweep_fn(adapted.fn, adapted.params, x, inits, seeds, **options)


def _checked_result(d: Any) -> ModelResult:
    """A checkpoint record's model result, checked field by field
    (:func:`initdiag.model.result.check_entry`: a ValueError naming the field) before it is
    read."""
    check_entry("result", d)
    return ModelResult.from_dict(d)
