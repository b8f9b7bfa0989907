"""Public probe API: :func:`probe`, :func:`probe_params`, :func:`sweep`.

A probe draws a stack (:mod:`initdiag.nn.stacks`) from a seed, pushes one input batch through it,
backpropagates a fixed loss and returns per-layer statistics (:data:`initdiag.results.METRICS`)
as a :class:`~initdiag.results.ProbeResult`.

Losses (``loss=``), with x^L the output of the last layer ([B, n_L]):

* ``"projection"`` (default): L = mean_i <g_i, x^L_i>, g ~ N(0, I) of shape [B, n_L] drawn from
  the seed. dL/dx^L = g / B does not depend on the forward pass, so the backward signal
  measures the stack alone.
* ``"half_mse"``: L = 0.5 mean_i ||x^L_i||^2 (= 0.5 sum of squares of the output / B).

Seeds: an integer seed gives keys for the input, the weights, the biases and the readout
(:func:`initdiag.nn.stacks.split_seed`). The same seed gives the same numbers, bit for bit.

Compilation: the engine is compiled once per (activation, norm, residual, loss, options) and
array shapes; every initializer of a sweep reuses it (initializers only change the weights fed
in). Weights are drawn by a small per-initializer function compiled once per shape.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from initdiag.engine import scan

from initdiag.engine import memory

from initdiag.engine import stats
from initdiag import metrics
from initdiag import resume
from initdiag.engine.threads import single_threaded_blas
from initdiag.base import check_int, check_one_of, check_seed
from initdiag.config import DEFAULTS, FIELD_NAMES, ProbeConfig
from initdiag.nn.activations import activation as resolve_activation
from initdiag.nn.activations import names as activation_names
from initdiag.nn.initializers import initializer as resolve_initializer
from initdiag.nn.initializers import names as initializer_names
from initdiag.nn.initializers import STANDARD_INITIALIZERS
from initdiag.results import ProbeResult, SweepResult, check_entry
from initdiag.nn.stacks import (StackSpec, draw_key, init_stack, make_input, make_spec,
                                 split_seed)

#: Fixed bins of log10 |dL/dh| for grad_hist: 1e-45 .. 1e5.
GRAD_HIST_RANGE = (-45.0, 5.0)
#: Fixed bins of the activation output for act_hist when phi is unbounded.
ACT_HIST_RANGE = (-4.0, 4.0)

#: The built-in default sweep (what ``scripts/demo`` and ``initdiag report`` run).
DEFAULT_SWEEP: dict[str, Any] = {
    "activations": ("tanh", "sigmoid", "relu"),
    "inits": STANDARD_INITIALIZERS,
    "depths": (50,),
    "widths": (256,),
    "seeds": (0,),
    "batch": 256,
}


def environment() -> dict[str, str]:
    """Versions and device, recorded with every result."""
    return dict(_environment())


@functools.lru_cache(maxsize=1)
def _environment() -> dict[str, str]:
    import jaxlib

    from initdiag.version import __version__
    dev = jax.devices()[0]
    return {"initdiag": __version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "numpy": np.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "device": f"{dev.platform}:{dev.device_kind}",
            "device_count": str(jax.device_count())}


def _edges(lo: float, hi: float, bins: int) -> jax.Array:
    return jnp.linspace(lo, hi, bins + 1, dtype=jnp.float32)


def _act_range(spec: StackSpec, config: ProbeConfig) -> tuple[float, float]:
    if config.act_hist_range is not None:
        return config.act_hist_range
    act = spec.activation
    if act.lower is not None and act.upper is not None:
        return act.lower, act.upper
    return ACT_HIST_RANGE


def _to_result(raw: dict[str, Any], config: ProbeConfig, seed: int, histograms: bool,
               act_edges, grad_edges, timing: dict[str, float]) -> ProbeResult:
    raw = jax.device_get(raw)
    values: dict[str, np.ndarray] = {}
    for m in metrics.measured():  # a scaled pair (v, e) -> v * 2**(power e), or a plain value
        item = raw[m.name]
        values[m.name] = (np.asarray(item, np.float64) if m.power is None
                          else stats.combine(*item, power=m.power))
    values = metrics.with_derived(values)
    hists = {}
    if histograms:
        hists = {"act_hist": np.asarray(raw["act_hist"], np.int64),
                 "act_edges": np.asarray(act_edges, np.float64),
                 "grad_hist": np.asarray(raw["grad_hist"], np.int64),
                 "grad_edges": np.asarray(grad_edges, np.float64)}
    return ProbeResult(config=config, seed=int(seed), values=values, histograms=hists,
                       scalars={"loss": float(stats.combine(*raw["loss"]))},
                       meta={"environment": environment(), "timing": timing})


@dataclasses.dataclass
class Job:
    """Everything one probe needs, prepared on the host: the compiled pass's inputs and labels."""

    static: scan.Static
    params: Any
    keys: tuple
    x0: jax.Array
    readout: jax.Array
    act_edges: jax.Array
    grad_edges: jax.Array
    config: ProbeConfig
    seed: int
    meta: dict[str, Any]
    weight_norms: Any = None  # scan.weight_norms(params) for stored weights

    def args(self) -> tuple:
        """The array arguments of :func:`initdiag.engine.scan.run`, after ``static``."""
        return (self.params, self.keys, self.x0, self.readout, self.act_edges, self.grad_edges)


def _job(spec: StackSpec, config: ProbeConfig, params, x0, readout, *, remat: int, seed: int,
         keys: tuple = (), generate: scan.Generate | None = None,
         meta: dict[str, Any] | None = None, norms: Any = None) -> Job:
    static = scan.Static(activation=spec.activation, norm=spec.norm, residual=spec.residual,
                         loss=config.loss, saturation_threshold=config.saturation_threshold,
                         histograms=config.histograms, remat=remat, generate=generate)
    if generate is None and norms is None:
        norms = scan.weight_norms(params)
    return Job(static, params, keys, x0, readout, _edges(*_act_range(spec, config), config.hist_bins),
               _edges(*GRAD_HIST_RANGE, config.hist_bins), config, seed, dict(meta or {}), norms)


def finish(job: Job, raw: dict[str, Any], run_s: float) -> ProbeResult:
    """Turn the compiled pass's raw output into a ProbeResult."""
    if job.weight_norms is not None:
        raw = {**raw, "weight_norm": job.weight_norms}
    result = _to_result(raw, job.config, job.seed, job.static.histograms, job.act_edges,
                        job.grad_edges, {"run_s": run_s})
    for key, value in job.meta.items():
        if key == "timing":
            result.meta["timing"].update(value)
        else:
            result.meta[key] = value
    return result


def run_job(job: Job) -> ProbeResult:
    """Run one job on the default device."""
    t0 = time.perf_counter()
    with single_threaded_blas():  # weights drawn in the scan may call LAPACK (orthogonal)
        raw = scan.run(job.static, *job.args())
        jax.block_until_ready(raw)
    return finish(job, raw, time.perf_counter() - t0)


_D = DEFAULTS


def probe(activation: Any = _D["activation"], init: Any = _D["init"], depth: int = _D["depth"],
          width: int | Sequence[int] = _D["width"], batch: int | None = _D["batch"],
          seed: int = 0, bias_init: Any = _D["bias_init"], *,
          input_width: int | None = _D["input_width"], use_bias: bool = _D["use_bias"],
          norm: str | None = _D["norm"], residual: float | None = _D["residual"],
          input: Any = _D["input"], loss: str = _D["loss"],
          saturation_threshold: float = _D["saturation_threshold"],
          histograms: bool = _D["histograms"], hist_bins: int = _D["hist_bins"],
          act_hist_range: tuple[float, float] | None = _D["act_hist_range"],
          remat: int | bool | None = None, draw_weights: str = "auto",
          memory_budget: int | None = None) -> ProbeResult:
    """Probe one stack at initialization and return its per-layer statistics.

    Every argument but ``seed``, ``remat``, ``draw_weights`` and ``memory_budget`` is a field of
    :class:`initdiag.ProbeConfig` (defined there, with its default); the result records them all
    as ``result.config``. :func:`probe_config` takes a ProbeConfig instead.

    Args:
      activation: a name (``"tanh"``, ``"leaky_relu(slope=0.2)"``), an Activation or a callable.
      init: weight initializer: a name, ``initdiag.initializer(...)`` or a jax-style callable.
      depth: number of layers L.
      width: width of every layer, or a list of L widths.
      batch: batch size B (default 256; inferred from ``input`` when that is an array).
      seed: integer seed in [0, 2**32 - 1] (or a jax PRNG key).
      bias_init: bias initializer, same forms as ``init`` (default zeros).
      input_width: width of the input (default: the first layer's width).
      use_bias: whether layers have a bias.
      norm: None, ``"batchnorm"`` or ``"layernorm"`` before the activation.
      residual: None, or alpha for x <- x + alpha * phi(norm(W x + b)).
      input: ``"normal"`` (N(0,1) entries), ``"uniform"`` (U(-sqrt 3, sqrt 3)) or a [B, n_0] array.
      loss: ``"projection"`` or ``"half_mse"`` (module docstring).
      saturation_threshold: t in (0, 1) of the saturation rule (:mod:`initdiag.nn.activations`).
      histograms: also record per-layer histograms ``act_hist`` and ``grad_hist``.
      hist_bins: number of histogram bins.
      act_hist_range: ``(lo, hi)`` of the act_hist bins (default: phi's bounds, else (-4, 4)).
      remat: None/False stores every layer's activations; True or a chunk length k recomputes
        them chunk by chunk in the backward pass (memory O((L/k + k) B n)); ``"auto"`` (the
        default, also None) stores them unless the memory plan says they would not fit.
      draw_weights: ``"upfront"`` draws every layer's weights before the pass (the compiled pass
        is shared by all initializers); ``"in_scan"`` draws each layer's weights inside the scan
        from its key (memory independent of depth; one compilation per initializer; the same
        weights, up to one float32 ulp in the scale of a truncated normal); ``"auto"`` picks
        upfront unless the memory plan says it would not fit.
      memory_budget: bytes the probe may use (default: 80% of the machine's available memory).
        When the estimate of a plan exceeds it, ``"auto"`` options switch to in-scan weights and
        remat (saying so with a :class:`initdiag.engine.memory.MemoryPlanWarning`); when no plan
        fits, :class:`MemoryError` names the estimates. See :mod:`initdiag.engine.memory`.

    Returns:
      A ProbeResult; ``result["preact_var"]`` has shape [depth].
    """
    config = ProbeConfig(activation=activation, init=init, bias_init=bias_init, depth=depth,
                         width=width, input_width=input_width, batch=batch, use_bias=use_bias,
                         norm=norm, residual=residual, input=input, loss=loss,
                         saturation_threshold=saturation_threshold, histograms=histograms,
                         hist_bins=hist_bins, act_hist_range=act_hist_range)
    return probe_config(config, seed, remat=remat, draw_weights=draw_weights, memory_budget=memory_budget)


def probe_config(config: ProbeConfig, seed: int = 0, *, remat: int | bool | None = None,
        draw_weights: str = "auto", memory_budget: int | None = None) -> ProbeResult:
    """Probe the stack ``config`` describes (:func:`probe`'s other arguments as there)."""
    return run_job(prepare(config, seed, remat=remat, draw_weights=draw_weights,
                           memory_budget=memory_budget))


def prepare(config: ProbeConfig, seed: int = 0, *, remat: int | bool | None = None,
            draw_weights: str = "auto", memory_budget: int | None = None,
            weights_cache: dict | None = None) -> Job:
    """Validate ``config``, draw the weights and build the :class:`Job` (see :func:`probe`).

    ``weights_cache``: a dict that keeps the last drawn weights (and their norms) by what they
    depend on (seed, initializers, layer shapes), so that probes differing only in activation or
    options reuse them bit for bit (:func:`sweep` passes one).
    """
    config = config.validated()
    rows = config.batch or (256 if isinstance(config.input, str)
                            else (np.shape(config.input) or (1,))[0])
    memory.check_sizes(config.depth, config.width, rows, config.input_width,
                       budget=memory_budget)  # absurd sizes: refused before any allocation
    spec = stack_spec(config)
    keys = split_seed(seed)
    if isinstance(config.input, str):
        x0 = make_input(keys["input"], _batch_of(config), spec.input_width, config.input)
        input_kind = config.input
    else:
        x0 = jnp.asarray(config.input, jnp.float32)
        if x0.ndim != 2 or x0.shape[1] != spec.input_width:
            raise ValueError(f"input must have shape [batch, {spec.input_width}]; got {x0.shape}")
        if config.batch is not None and config.batch != x0.shape[0]:
            raise ValueError(f"batch={config.batch} disagrees with the input's {x0.shape[0]} rows")
        input_kind = "array"
    batch = int(x0.shape[0])
    readout = jax.random.normal(keys["readout"], (batch, spec.widths[-1]), jnp.float32)
    check_one_of("draw_weights", draw_weights, memory.DRAW)
    if spec.init.data_dependent:  # LSUV rescales stored weights
        if draw_weights == "in_scan":
            raise ValueError("init='lsuv' rescales stored weights; it cannot be drawn in the scan "
                             "(draw_weights='in_scan'); use draw_weights='upfront' or 'auto'")
        draw_weights = "upfront"
    mem = memory.plan(spec, batch, remat=remat, draw_weights=draw_weights, budget=memory_budget)
    t0 = time.perf_counter()
    generate = None
    if mem.draw_in_scan:
        generate = scan.Generate(spec.init, spec.bias_init, spec.use_bias,
                                 tuple((s.fan_in, s.fan_out) for s in spec.segments()))
        params = tuple(jnp.arange(s.start, s.start + s.count) for s in spec.segments())
    wkey = None if mem.draw_in_scan else _weights_key(seed, spec)
    cached = weights_cache.get(wkey) if weights_cache is not None and wkey is not None else None
    if cached is None and weights_cache is not None:
        weights_cache.clear()  # drop the last set before drawing the next: one set alive at once
    norms = None
    if cached is not None:
        params, norms = cached
    elif not mem.draw_in_scan:
        with single_threaded_blas():  # orthogonal's QR (see initdiag.engine.threads)
            params = init_stack(seed, spec)
            if spec.init.data_dependent:  # LSUV: rescaled on x0
                params = spec.init.rescale(params, x0, spec)
            jax.block_until_ready(params)
    init_s = time.perf_counter() - t0
    job = _job(spec, recorded(config, spec, batch=batch, input=input_kind), params, x0, readout,
               remat=mem.remat, seed=seed if isinstance(seed, (int, np.integer)) else -1,
               keys=(keys["weights"], keys["biases"]), generate=generate, norms=norms,
               meta={"timing": {"init_s": init_s, "weights_reused": cached is not None},
                     "memory": mem.to_dict()})
    if weights_cache is not None and wkey is not None and cached is None:
        # one set is kept: sweep orders its probes so that those sharing weights are adjacent
        weights_cache[wkey] = (job.params, job.weight_norms)
    return job


def stack_spec(config: ProbeConfig) -> StackSpec:
    """The :class:`StackSpec` of ``config``'s stack fields (validated by make_spec)."""
    return make_spec(activation=config.activation, init=config.init, depth=config.depth,
                     width=config.width, input_width=config.input_width,
                     bias_init=config.bias_init, use_bias=config.use_bias, norm=config.norm,
                     residual=config.residual)


def recorded(config: ProbeConfig, spec: StackSpec, **values: Any) -> ProbeConfig:
    """What a result records of ``config``: labels for objects, the resolved widths (one number
    when every layer has it) and input width, and ``values`` (batch, input)."""
    widths = list(spec.widths)
    stack = dict(activation=spec.activation.label, init=spec.init.label,
                 bias_init=spec.bias_init.label, depth=spec.depth,
                 width=widths[0] if len(set(widths)) == 1 else widths,
                 input_width=spec.input_width, use_bias=spec.use_bias, norm=spec.norm,
                 residual=spec.residual)
    return config.resolved(**{**stack, **values})


def _weights_key(seed: Any, spec: StackSpec) -> tuple | None:
    """What a stack's drawn weights depend on, or None when they are not reusable (LSUV rescales
    them on the data; a key object as seed)."""
    return None if spec.init.data_dependent else draw_key(seed, spec)


def probe_params(weights: Sequence[Any], biases: Sequence[Any] | None, x: Any, activation: Any,
                 loss: str = _D["loss"], *, readout: Any = None, seed: int = 0,
                 norm: str | None = _D["norm"], residual: float | None = _D["residual"],
                 saturation_threshold: float = _D["saturation_threshold"],
                 histograms: bool = _D["histograms"],
                 hist_bins: int = _D["hist_bins"]) -> ProbeResult:
    """The same statistics for explicitly given weights, biases and input.

    Args:
      weights: list of L arrays ``[fan_in, fan_out]`` (``h = x @ W + b``; a torch ``Linear``
        weight is ``[fan_out, fan_in]``, so pass ``weight.T``).
      biases: list of L arrays ``[fan_out]``, or None for no bias.
      x: input ``[B, n_0]``.
      activation: as in :func:`probe`.
      loss: ``"projection"`` or ``"half_mse"``.
      readout: the projection g (``[B, n_L]``); drawn from ``seed`` when None.
      seed: seeds the readout only.
      norm, residual, saturation_threshold, histograms, hist_bins: as in :func:`probe`.

    Returns:
      A ProbeResult whose config records ``init="given"``, ``input="array"``.
    """
    config = ProbeConfig(activation=activation, loss=loss, norm=norm, residual=residual,
                         saturation_threshold=saturation_threshold, histograms=histograms,
                         hist_bins=hist_bins).validated()
    ws = [jnp.asarray(w, jnp.float32) for w in weights]
    if not ws:
        raise ValueError("weights is empty")
    bs = ([jnp.zeros((w.shape[1],), jnp.float32) for w in ws] if biases is None
          else [jnp.asarray(b, jnp.float32) for b in biases])
    if len(bs) != len(ws):
        raise ValueError(f"{len(ws)} weights but {len(bs)} biases")
    x0 = jnp.asarray(x, jnp.float32)
    for i, (w, b) in enumerate(zip(ws, bs), start=1):
        fan_in = x0.shape[1] if i == 1 else ws[i - 2].shape[1]
        if w.ndim != 2 or w.shape[0] != fan_in or b.shape != (w.shape[1],):
            raise ValueError(f"layer {i}: weight {w.shape} / bias {b.shape} do not fit fan_in "
                             f"{fan_in} (weights are [fan_in, fan_out])")
    spec = stack_spec(dataclasses.replace(
        config, init="zeros", depth=len(ws), width=[int(w.shape[1]) for w in ws],
        input_width=int(x0.shape[1]), use_bias=biases is not None))
    params = tuple((jnp.stack(ws[s.start:s.start + s.count]), jnp.stack(bs[s.start:s.start + s.count]))
                   for s in spec.segments())
    batch = int(x0.shape[0])
    if readout is None:
        readout = jax.random.normal(split_seed(seed)["readout"], (batch, spec.widths[-1]), jnp.float32)
    readout = jnp.asarray(readout, jnp.float32)
    config = recorded(config, spec, batch=batch, input="array", init="given",
                      bias_init="given" if biases is not None else "none")
    return run_job(_job(spec, config, params, x0, readout, remat=0, seed=seed))


#: Keyword options of :func:`probe` that say how to run, not what to probe.
RUN_OPTIONS = ("remat", "draw_weights", "memory_budget")


def sweep(activations: Sequence[Any] = DEFAULT_SWEEP["activations"],
          inits: Sequence[Any] = DEFAULT_SWEEP["inits"], depths: Sequence[int] = (50,),
          widths: Sequence[Any] = (256,), seeds: Sequence[int] = (0,), batch: int = 256,
          progress: Callable[[int, int, ProbeResult], None] | None = None,
          devices: Any = None, checkpoint: str | os.PathLike | None = None,
          **options: Any) -> SweepResult:
    """Probe every combination of activations x depths x widths x inits x seeds.

    Args:
      activations, inits, depths, widths, seeds: lists of values (see :func:`probe`).
      batch: batch size of every probe.
      progress: called as ``progress(done, total, result)`` after each probe computed by this
        call; ``done`` counts the probes restored from ``checkpoint`` too.
      devices: None uses every device when there is more than one (one probe per device at a
        time, see :mod:`initdiag.engine.sharding`) and runs probes one by one on a single
        device; a list of devices uses those; 1 forces one device. Numbers do not depend on it.
      checkpoint: None, or a file (JSON lines, :mod:`initdiag.checkpoint`) to which each probe is
        appended as it finishes (flushed and fsynced). A later call with the same file and the
        same sweep skips (does not dispatch) every probe already there and returns the same
        result as an uninterrupted run (the same numbers, bit for bit; the restored probes keep
        their ``meta``, timings included). A torn last line (a crash mid-write) is dropped; a
        file written for another sweep raises :class:`initdiag.checkpoint.CheckpointError`
        naming the first difference (:mod:`initdiag.resume` says what identifies a sweep; not
        ``devices`` or the run options). Seeds must be integers. With several processes
        (``jax.process_count() > 1``) only process 0 writes the file; every process reads it,
        so it must be on a file system they all see, and they check that they read the same
        probes as done.
      **options: the other fields of :class:`initdiag.ProbeConfig` (bias_init, norm, residual,
        loss, histograms, ...) and :data:`RUN_OPTIONS` (remat, draw_weights, memory_budget),
        as in :func:`probe`.

    Returns:
      A SweepResult in the nesting order activation, depth, width, init, seed. On
      KeyboardInterrupt the results so far are kept: the exception is re-raised with them
      attached as ``partial`` (a SweepResult; the restored probes included), and with a
      checkpoint they are in the file.
    """
    for name, seq in (("activations", activations), ("inits", inits), ("depths", depths),
                      ("widths", widths), ("seeds", seeds)):
        if isinstance(seq, (str, bytes)) or not hasattr(seq, "__iter__"):
            raise TypeError(f"{name} must be a list; got {seq!r} (wrap one value in a list)")
        if len(list(seq)) == 0:
            valid = {"activations": activation_names, "inits": initializer_names}.get(name)
            raise ValueError(f"{name} is empty; give one or more "
                             + (f"of: {', '.join(valid())}" if valid else
                                "integers" + (" >= 0" if name == "seeds" else " >= 1")))
    axes = {"activation", "init", "depth", "width", "batch"}
    fields = [f for f in FIELD_NAMES if f not in axes]
    unknown = [k for k in options if k not in fields and k not in RUN_OPTIONS]
    if unknown:
        raise TypeError(f"sweep() got unknown option(s) {', '.join(map(repr, unknown))}; valid "
                        f"options: {', '.join([*fields, *RUN_OPTIONS])}")
    run_options = {k: options.pop(k) for k in RUN_OPTIONS if k in options}
    for a in activations:  # fail fast on bad names, seeds and sizes, before any work
        resolve_activation(a)
    for i in inits:
        resolve_initializer(i)
    for s in seeds:
        if not isinstance(s, jax.Array):
            check_seed(s)
    for d in depths:
        check_int("depth", d)
        for w in widths:
            if isinstance(w, (list, tuple)):
                for i, n in enumerate(w):
                    check_int(f"width[{i}]", n)
            elif isinstance(w, (int, float, np.integer)):
                check_int("width", w)
            memory.check_sizes(d, w, batch, options.get("input_width"),
                               budget=run_options.get("memory_budget"))
    base = ProbeConfig(batch=batch, **options)
    combos = _combos(activations, inits, depths, widths, seeds, base)
    results: list[ProbeResult | None] = [None] * len(combos)
    mesh_devices = _sweep_devices(devices)
    ckpt = None
    if checkpoint is not None:
        for c, _ in combos:  # a bad configuration fails before the file is written
            stack_spec(c.validated())
        ckpt = resume.open_shared(checkpoint, _sweep_header(activations, inits, depths, widths,
                                                            seeds, base),
                                  _checked_result)
        for n, r in ckpt.done.items():
            results[n] = r

    def record(index: int, r: ProbeResult) -> None:
        results[index] = r
        if ckpt is not None:
            ckpt.append(index, r.to_dict())
        if progress is not None:
            progress(sum(x is not None for x in results), len(combos), r)

    try:
        if mesh_devices is None:
            # probes that differ only in the activation run one after another and reuse the
            # drawn weights (bit for bit; a skipped probe's weights are drawn again, the same
            # numbers); results keep the documented order
            cache: dict = {}
            n_act = len(activations)
            for n in sorted(range(len(combos)), key=lambda n: (n % (len(combos) // n_act),
                                                                n // (len(combos) // n_act))):
                if results[n] is None:
                    record(n, run_job(prepare(*combos[n], **run_options, weights_cache=cache)))
        else:
            from initdiag.engine import sharding
            todo = [n for n in range(len(combos)) if results[n] is None]
            if todo:
                sharding.run_sharded([functools.partial(prepare, *combos[n], **run_options)
                                      for n in todo], finish, devices=mesh_devices,
                                     on_result=lambda i, r: record(todo[i], r))
    except KeyboardInterrupt as e:
        e.partial = SweepResult([r for r in results if r is not None])  # type: ignore[attr-defined]
        raise
    finally:
        if ckpt is not None:
            ckpt.close()
    return SweepResult(results)


def _combos(activations: Sequence[Any], inits: Sequence[Any], depths: Sequence[Any],
            widths: Sequence[Any], seeds: Sequence[Any], base: ProbeConfig
            ) -> list[tuple[ProbeConfig, Any]]:
    """The (config, seed) of every probe of a sweep, in its documented order."""
    return [(dataclasses.replace(base, activation=a, init=i, depth=d, width=w), s)
            for a in activations for d in depths for w in widths for i in inits for s in seeds]


def planned_records(activations: Sequence[Any] = DEFAULT_SWEEP["activations"],
                    inits: Sequence[Any] = DEFAULT_SWEEP["inits"], depths: Sequence[int] = (50,),
                    widths: Sequence[Any] = (256,), seeds: Sequence[int] = (0,),
                    batch: int = 256, **options: Any) -> list[tuple[ProbeConfig, int]] | None:
    """``(config, seed)`` of every probe :func:`sweep` would run with these arguments, in its
    order, ``config`` being what the probe's result will record (``result.config``) -- without
    drawing or running anything. What depends only on the configurations (the mean-field
    predictions, the Jacobian spectra) can be computed from it before or beside the sweep.

    Returns None when a result's record is known only after probing (an input array; a run
    option among ``options`` is ignored).

    Raises:
      ValueError, TypeError: for arguments :func:`sweep` refuses, naming the value.
    """
    options = {k: v for k, v in options.items() if k not in RUN_OPTIONS}
    base = ProbeConfig(batch=batch, **options)
    if not isinstance(base.input, str):
        return None
    out = []
    for config, seed in _combos(activations, inits, depths, widths, seeds, base):
        config = config.validated()
        out.append((recorded(config, stack_spec(config), batch=_batch_of(config),
                             input=config.input), int(seed)))
    return out


def _batch_of(config: ProbeConfig) -> int:
    """The batch of a probe whose input is drawn (``input`` a distribution's name)."""
    return 256 if config.batch is None else config.batch


def _checked_result(d: Any) -> ProbeResult:
    """A checkpoint record's result, checked field by field (:func:`initdiag.results.check_entry`:
    a ValueError naming the field) before it is read."""
    check_entry("result", d)
    return ProbeResult.from_dict(d)


def _sweep_header(activations: Sequence[Any], inits: Sequence[Any], depths: Sequence[Any],
                  widths: Sequence[Any], seeds: Sequence[Any],
                  base: ProbeConfig) -> dict[str, Any]:
    """The checkpoint header of a sweep (:func:`initdiag.resume.sweep_header`)."""
    acts = [resolve_activation(a).label for a in activations]
    labels = [resolve_initializer(i).label for i in inits]
    ints = resume.integer_seeds(seeds)
    axes = ("activation", "init", "depth", "width")
    options = {f: getattr(base, f) for f in FIELD_NAMES if f not in axes}
    options["bias_init"] = resolve_initializer(base.bias_init).label
    options["input"] = resume.input_option(base.input)
    keys = [[a, i, d, w, s] for a in acts for d in depths for w in widths for i in labels
            for s in ints]  # the order of the sweep's probes
    return resume.sweep_header(acts, labels, depths, widths, ints, options, keys)


def _sweep_devices(devices: Any) -> list | None:
    if devices is None:
        return list(jax.devices()) if jax.device_count() > 1 else None
    if devices == 1:
        return None
    if isinstance(devices, int):
        raise ValueError(f"devices must be None, 1 or a list of devices; got {devices}")
    return list(devices)
