"""Short training runs: :func:`train_probe`, :func:`train_config`, :func:`train_sweep`,
:func:`train_fn`.

A stack run builds the probe's stack (:func:`initdiag.probe.prepare`: the same weights, bit for
bit, as ``initdiag.probe`` with the same seed and options, LSUV's rescaling included) with the
task's input width, adds a readout ``f(x) = x^L W_out + b_out`` and trains it with the compiled
loop of :mod:`initdiag.train.loop`. The readout is layer L+1 drawn like the others: W_out
``[n_L, n_out]`` by the same weight initializer from ``fold_in(weight key, L)`` and b_out by
the bias initializer (:func:`initdiag.nn.stacks.init_segment`; LSUV's readout is its orthogonal
start, not rescaled), so a symmetric initializer (zeros, constant) gives a symmetric readout.

The probe's statistics at the snapshot steps are :func:`initdiag.probe.run_job` of the same
prepared job with the weights of that step: the probe's input (N(0, 1) entries from the seed,
not the task's data), its projection loss and batch. At step 0 they are those of
``initdiag.probe(...)`` with the same configuration (``input_width`` = the task's, ``batch``)
and seed. Snapshots after a divergence are left out.
"""

from __future__ import annotations

import dataclasses
import numbers
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from initdiag import metrics
from initdiag.base import check_int
from initdiag.config import ProbeConfig
from initdiag.engine import scan, stats
from initdiag.nn.activations import activation as resolve_activation
from initdiag.nn.initializers import initializer as resolve_initializer
from initdiag.nn.stacks import Segment, init_segment, split_seed
from initdiag.probe import DEFAULT_SWEEP, environment, prepare, run_job, stack_spec
from initdiag.train import loop
from initdiag.train.config import TrainConfig
from initdiag.train.result import TrainResult, TrainSweep
from initdiag.train.tasks import Task, batch_indices, load_task

#: Network defaults of a training run (smaller than a probe's: every step is a forward and a
#: backward pass): depth 10, width 64, mini-batch 128.
TRAIN_DEPTH, TRAIN_WIDTH, TRAIN_BATCH = 10, 64, 128
#: Options of :func:`train_sweep` besides its axes (the stack's and the training's).
SWEEP_OPTIONS = ("bias_init", "use_bias", "residual", "saturation_threshold", "snapshots")


def check_batch(batch: Any, task: Task) -> int:
    """``batch`` as an int, or a ValueError unless it is in [1, rows of the training split]."""
    batch = check_int("batch", batch)
    if batch > task.x_train.shape[0]:
        raise ValueError(f"batch={batch} exceeds the {task.x_train.shape[0]} rows of task "
                         f"{task.name!r}'s training split")
    return batch


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer; got {seed!r}")
    return int(seed)


def train_probe(activation: Any = "relu", init: Any = "he_normal", depth: int = TRAIN_DEPTH,
                width: int | Sequence[int] = TRAIN_WIDTH, steps: int = 200,
                optimizer: str = "sgd", lr: float | None = None, task: str = "digits",
                seed: int = 0, norm: str | None = None, batch: int = TRAIN_BATCH, *,
                bias_init: Any = "zeros", use_bias: bool = True, residual: float | None = None,
                saturation_threshold: float = 0.99, snapshots: Sequence[int] | None = None,
                keep_weights: bool = False) -> TrainResult:
    """Train one stack on a task and record how it learns (module docstring).

    Args:
      activation, init, depth, width, norm, bias_init, use_bias, residual,
        saturation_threshold: the stack, as in :func:`initdiag.probe` (its input width is the
        task's: 64).
      steps: optimizer steps S >= 1.
      optimizer: ``"sgd"`` (plain) or ``"adam"``.
      lr: learning rate > 0 (default: 0.1 for sgd, 1e-3 for adam).
      task: ``"digits"`` or ``"teacher"`` (:mod:`initdiag.train.tasks`).
      seed: integer seed of the weights (as the probe draws them), the data split and the
        mini-batches.
      batch: mini-batch size (also the batch of the probe's statistics at the snapshots).
      snapshots: steps in [0, S] at which to take the probe's statistics (default 0, 10%, 50%
        and 100% of S).
      keep_weights: also keep the weights at the snapshot steps in ``res.weights`` (in memory
        only: not written to JSON, not compared): step -> ``(hidden, (W_out, b_out))``, hidden
        one ``(W [count, fan_in, fan_out], b [count, fan_out])`` pair per segment of equal
        shapes (:func:`initdiag.init_stack`'s layout), numpy arrays.

    Returns:
      A :class:`TrainResult`: ``res["loss"]`` [S], ``res["update_ratio"]`` [S, depth], ...

    Raises:
      ValueError: a bad option (naming it, its value and the choices).
      ImportError: optax or scikit-learn missing (``pip install 'initdiag[train]'``).
    """
    config = ProbeConfig(activation=activation, init=init, bias_init=bias_init, depth=depth,
                         width=width, batch=batch, use_bias=use_bias, norm=norm,
                         residual=residual, saturation_threshold=saturation_threshold)
    return train_config(config, TrainConfig(task, steps, optimizer, lr,
                                            None if snapshots is None else tuple(snapshots)), seed,
                        keep_weights=keep_weights)


def _curves(raw: dict[str, Any], steps: int) -> tuple[dict[str, np.ndarray], int | None]:
    """The host side of the loop's records: float64 curves, NaN from the divergence on."""
    ok = np.asarray(raw["ok"], bool)
    bad = np.flatnonzero(~ok)
    diverged_at = int(bad[0]) + 1 if bad.size else None
    curves = {"loss": np.asarray(raw["loss"], np.float64)}
    if "accuracy" in raw:
        curves["accuracy"] = np.asarray(raw["accuracy"], np.float64)
    if "grad_preact_rms" in raw:
        curves["grad_preact_rms"] = stats.combine(*raw["grad_preact_rms"])
    curves["update_ratio"] = metrics.ratio(stats.combine(*raw["update_norm"]),
                                           stats.combine(*raw["weight_norm"]))
    if diverged_at is not None:
        for v in curves.values():
            v[diverged_at - 1:] = np.nan
    assert all(v.shape[0] == steps for v in curves.values())
    return curves, diverged_at


def _scalars(raw: dict[str, Any], diverged: bool) -> dict[str, float]:
    out = {k: float(raw[k]) for k in ("test_loss", "test_accuracy") if k in raw}
    return {k: (np.nan if diverged else v) for k, v in out.items()}


def _run_loop(static: loop.Static, theta0, task: Task, train: TrainConfig, seed: int,
              batch: int) -> dict[str, Any]:
    idx = batch_indices(seed, task.x_train.shape[0], batch, train.steps)
    raw = loop.run(static, theta0, task.x_train, task.y_train, idx, jnp.float32(train.lr),
                   task.x_test, task.y_test)
    return jax.device_get(raw)


def train_config(config: ProbeConfig, train: TrainConfig, seed: int = 0, *,
                 keep_weights: bool = False) -> TrainResult:
    """Train the stack ``config`` describes as ``train`` says (:func:`train_probe`'s other
    arguments as there). ``config.input_width`` must be None or the task's; ``config.batch``
    None means 128."""
    t0 = time.perf_counter()
    train = train.validated()
    seed = _check_seed(seed)
    task = load_task(train.task, seed)
    if config.input_width not in (None, task.input_width):
        raise ValueError(f"input_width={config.input_width} disagrees with task "
                         f"{train.task!r}, whose inputs have {task.input_width} features")
    if not isinstance(config.input, str):
        raise ValueError("a training run takes its data from the task; input= must be "
                         "'normal' or 'uniform' (the probe's input at the snapshots)")
    config = dataclasses.replace(config, input_width=task.input_width,
                                 batch=TRAIN_BATCH if config.batch is None else config.batch)
    check_batch(config.batch, task)
    job = prepare(config, seed, draw_weights="upfront")  # validates the config
    spec = stack_spec(config.validated())
    batch = int(job.x0.shape[0])
    keys = split_seed(seed)
    w_out, b_out = init_segment(keys["weights"], keys["biases"],
                                Segment(spec.depth, 1, spec.widths[-1], task.n_out), spec.init,
                                spec.bias_init, spec.use_bias)
    static = loop.Static(spec.activation, spec.norm, spec.residual, spec.use_bias,
                         task.classification, train.optimizer, train.snapshots)
    t1 = time.perf_counter()
    raw = _run_loop(static, (job.params, (w_out[0], b_out[0])), task, train, seed, batch)
    t2 = time.perf_counter()
    curves, diverged_at = _curves(raw, train.steps)
    snaps, kept = {}, {}
    for k, step in enumerate(train.snapshots):
        if diverged_at is not None and step >= diverged_at:
            continue
        theta = jax.tree.map(lambda b: b[k], raw["snapshots"])
        if keep_weights:
            kept[step] = theta
        params = jax.tree.map(jnp.asarray, theta[0])
        snap_job = job if step == 0 else dataclasses.replace(
            job, params=params, weight_norms=scan.weight_norms(params))
        snaps[step] = run_job(snap_job)
        snaps[step].meta["step"] = step
    meta = {"environment": environment(),
            "timing": {"prepare_s": t1 - t0, "train_s": t2 - t1,
                       "snapshots_s": time.perf_counter() - t2}}
    return TrainResult(config=job.config, train=train, seed=seed, curves=curves,
                       scalars=_scalars(raw, diverged_at is not None), diverged_at=diverged_at,
                       snapshots=snaps, meta=meta, weights=kept)


def train_sweep(activations: Sequence[Any] = DEFAULT_SWEEP["activations"],
                inits: Sequence[Any] = DEFAULT_SWEEP["inits"], norms: Sequence[Any] = (None,),
                depths: Sequence[int] = (TRAIN_DEPTH,), widths: Sequence[Any] = (TRAIN_WIDTH,),
                seeds: Sequence[int] = (0,), *, steps: int = 200, optimizer: str = "sgd",
                lr: float | None = None, task: str = "digits", batch: int = TRAIN_BATCH,
                progress: Callable[[int, int, TrainResult], None] | None = None,
                **options: Any) -> TrainSweep:
    """Train every combination of activations x norms x depths x widths x inits x seeds.

    Args:
      activations, inits, norms, depths, widths, seeds: lists of values (``norms`` of None,
        ``"batchnorm"``, ``"layernorm"``).
      steps, optimizer, lr, task, batch: as in :func:`train_probe`, for every run.
      progress: called as ``progress(done, total, result)`` after each run.
      **options: :data:`SWEEP_OPTIONS` (bias_init, use_bias, residual, saturation_threshold,
        snapshots), as in :func:`train_probe`.

    Returns:
      A TrainSweep in the nesting order activation, norm, depth, width, init, seed. Every
      initializer of one shape shares one compilation of the loop.
    """
    for name, seq in (("activations", activations), ("inits", inits), ("norms", norms),
                      ("depths", depths), ("widths", widths), ("seeds", seeds)):
        if isinstance(seq, (str, bytes)) or not hasattr(seq, "__iter__"):
            raise TypeError(f"{name} must be a list; got {seq!r} (wrap one value in a list)")
        if len(list(seq)) == 0:
            raise ValueError(f"{name} is empty")
    unknown = [k for k in options if k not in SWEEP_OPTIONS]
    if unknown:
        raise TypeError(f"train_sweep() got unknown option(s) {', '.join(map(repr, unknown))}; "
                        f"valid options: {', '.join(SWEEP_OPTIONS)}")
    snapshots = options.pop("snapshots", None)
    train = TrainConfig(task, steps, optimizer, lr,
                        None if snapshots is None else tuple(snapshots)).validated()
    for a in activations:  # fail fast on bad names, before any work
        resolve_activation(a)
    for i in inits:
        resolve_initializer(i)
    for s in seeds:
        _check_seed(s)
    combos = [(ProbeConfig(activation=a, init=i, depth=d, width=w, batch=batch, norm=n,
                           **options), s)
              for a in activations for n in norms for d in depths for w in widths
              for i in inits for s in seeds]
    results: list[TrainResult] = []
    try:
        for config, s in combos:
            results.append(train_config(config, train, s))
            if progress is not None:
                progress(len(results), len(combos), results[-1])
    except KeyboardInterrupt as e:
        e.partial = TrainSweep(results)  # type: ignore[attr-defined]
        raise
    return TrainSweep(results)


def train_fn(fn: Callable, params: Any, task: str = "digits", *, steps: int = 200,
             optimizer: str = "sgd", lr: float | None = None, seed: int = 0,
             batch: int = TRAIN_BATCH, snapshots: Sequence[int] | None = None,
             name: str | None = None, init: str = "given",
             keep_weights: bool = False) -> TrainResult:
    """Train a user model ``fn(params, x) -> outputs`` from the weights ``params`` on a task.

    The same loop, task, mini-batches and records as :func:`train_probe`, except: the model is
    ``fn`` (``[B, 64]`` inputs to ``[B, 10]`` logits for digits, ``[B, 1]`` for teacher);
    ``update_ratio`` has one column per leaf of ``params`` with two or more dimensions (the
    weights; their paths are ``res.layers``); no ``grad_preact_rms`` is recorded (a user model
    has no known pre-activations; the snapshots' ``grad_rms`` per site is the probe's); the
    snapshots are :func:`initdiag.probe_fn` of the weights at that step on the first ``batch``
    rows of the training split (the seed also seeds the projection loss there).

    Args:
      fn: ``fn(params, x)``, jax-traceable; jitted once per shape.
      params: a pytree of floating arrays, all trained.
      task, steps, optimizer, lr, seed, batch, snapshots: as in :func:`train_probe`.
      name: the model's name in results (default: ``fn``'s qualified name).
      init: what to record as the initializer (default ``"given"``).
      keep_weights: keep the parameters at the snapshot steps in ``res.weights`` (in memory
        only), as :func:`train_probe`.

    Raises:
      ValueError: a bad option, a non-floating leaf, or outputs of the wrong shape.
    """
    from initdiag.model.api import probe_fn

    t0 = time.perf_counter()
    train = TrainConfig(task, steps, optimizer, lr,
                        None if snapshots is None else tuple(snapshots)).validated()
    seed = _check_seed(seed)
    data = load_task(train.task, seed)
    batch = check_batch(batch, data)
    leaves = jax.tree_util.tree_leaves_with_path(params)
    for path, leaf in leaves:
        if not (hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)):
            raise ValueError(f"train_fn trains every leaf of params; leaf "
                             f"{jax.tree_util.keystr(path)} is {type(leaf).__name__} "
                             f"{getattr(leaf, 'dtype', '')}, not a floating array")
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    want = (batch, data.n_out)
    got = jax.eval_shape(fn, params, jax.ShapeDtypeStruct((batch, data.input_width), jnp.float32))
    if getattr(got, "shape", None) != want:
        raise ValueError(f"fn(params, x) must return an array of shape [batch, {data.n_out}] "
                         f"for task {train.task!r} ({want} for batch {batch}); got "
                         f"{getattr(got, 'shape', type(got).__name__)}")
    layers = tuple(jax.tree_util.keystr(p) for p, a in leaves if np.ndim(a) >= 2)
    static = loop.Static(None, None, None, True, data.classification, train.optimizer,
                         train.snapshots, fn=fn)
    t1 = time.perf_counter()
    raw = _run_loop(static, params, data, train, seed, batch)
    t2 = time.perf_counter()
    curves, diverged_at = _curves(raw, train.steps)
    x_probe = jnp.asarray(data.x_train[:batch])
    snaps, kept = {}, {}
    for k, step in enumerate(train.snapshots):
        if diverged_at is not None and step >= diverged_at:
            continue
        theta = jax.tree.map(lambda b: b[k], raw["snapshots"])
        if keep_weights:
            kept[step] = theta
        snaps[step] = probe_fn(fn, jax.tree.map(jnp.asarray, theta), x_probe, seed=seed,
                               name=name, init=init)
        snaps[step].meta["step"] = step
    config = dict(next(iter(snaps.values())).config) if snaps else {
        "model": name or getattr(fn, "__qualname__", type(fn).__name__), "init": init}
    meta = {"environment": environment(),
            "timing": {"prepare_s": t1 - t0, "train_s": t2 - t1,
                       "snapshots_s": time.perf_counter() - t2}}
    return TrainResult(config=config, train=train, seed=seed, curves=curves,
                       scalars=_scalars(raw, diverged_at is not None), diverged_at=diverged_at,
                       snapshots=snaps, layers=layers, meta=meta, weights=kept)
