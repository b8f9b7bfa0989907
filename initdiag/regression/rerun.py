"""Re-run the configurations stored in results or a baseline, and describe them as a sweep grid.

A stored config holds text labels (``"glorot_normal(gain=1.1)"``, ``"leaky_relu(slope=0.2)"``)
that :func:`initdiag.initializer` and :func:`initdiag.activation` parse back, so a probe can be
repeated exactly from its config and seed. A user callable (label ``custom:...``), weights given
to :func:`initdiag.probe_params` (``init="given"``) or an explicit input array
(``input="array"``) cannot be rebuilt from a label: re-running those raises a ValueError.
"""

from __future__ import annotations

from typing import Any, Mapping

from initdiag.config import ProbeConfig
from initdiag.results import ProbeResult, SweepResult


def probe_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`initdiag.probe` that reproduce ``config`` (seed excluded):
    every recorded field of :class:`initdiag.ProbeConfig`.

    Raises:
      ValueError: the config cannot be re-run (custom callable, given weights or input, an
        unknown field, another dtype); the message names the field and value.
    """
    config = ProbeConfig.from_dict(config)
    label = f"{config.get('activation')} / {config.get('init')}"
    for field in ("activation", "init", "bias_init"):
        v = config.get(field)
        if isinstance(v, str) and v.startswith("custom:"):
            raise ValueError(f"{label}: {field} {v!r} is a user callable, which cannot be "
                             f"re-created from its label; re-run it from Python and compare "
                             f"with initdiag.compare(result, baseline)")
    if config.get("init") == "given" or config.get("input") == "array":
        raise ValueError(f"{label}: made from given weights or an input array "
                         f"(probe_params / input=array), which a baseline does not store; "
                         f"re-run it from Python and compare with initdiag.compare")
    if config.dtype != "float32":
        raise ValueError(f"{label}: dtype {config.dtype!r} is not supported (float32 only)")
    return {k: v for k, v in config.items() if k != "dtype"}


def rerun(results: ProbeResult | SweepResult) -> ProbeResult | SweepResult:
    """Probe every (config, seed) of ``results`` again; same type and order as given. Training
    runs of stacks (:class:`initdiag.TrainResult` / :class:`initdiag.TrainSweep`) are trained
    again (:func:`initdiag.train.train_config`); a train_fn run cannot be (its function is not
    stored)."""
    from initdiag.probe import probe
    from initdiag.train.result import TrainResult, TrainSweep

    if isinstance(results, (TrainResult, TrainSweep)):
        from initdiag.train.api import train_config

        runs = [results] if isinstance(results, TrainResult) else list(results)
        for r in runs:  # fail before any work
            if r.is_model:
                raise ValueError(f"{r.label}: a train_fn run cannot be re-run from its record "
                                 f"(the function is not stored); re-run it from Python and "
                                 f"compare with initdiag.compare")
            probe_kwargs(r.config)
        again = [train_config(r.config, r.train, r.seed) for r in runs]
        return again[0] if isinstance(results, TrainResult) else TrainSweep(again)
    if isinstance(results, ProbeResult):
        return probe(seed=results.seed, **probe_kwargs(results.config))
    kws = [(probe_kwargs(r.config), r.seed) for r in results]  # fail before any work
    return SweepResult([probe(seed=s, **kw) for kw, s in kws])


def _unique(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


#: The sweep axes of :func:`initdiag.sweep`: config field -> the argument listing its values.
_AXES = {"activation": "activations", "init": "inits", "depth": "depths", "width": "widths"}


def sweep_grid(results: ProbeResult | SweepResult) -> dict[str, Any]:
    """The :func:`initdiag.sweep` arguments whose grid holds every config of ``results``.

    Used as the base that command-line probe options override. Activations, inits, depths,
    widths and seeds become lists of their distinct values; every other recorded field (the
    batch and the stack options) must be the same for all configs.

    Raises:
      ValueError: the configs differ in the batch or a stack option, or cannot be re-run.
    """
    rs = [results] if isinstance(results, ProbeResult) else list(results)
    kws = [probe_kwargs(r.config) for r in rs]
    grid: dict[str, Any] = {arg: _unique([kw[f] for kw in kws]) for f, arg in _AXES.items()}
    grid["seeds"] = _unique([r.seed for r in rs])
    for field in dict.fromkeys(k for kw in kws for k in kw if k not in _AXES):
        values = _unique([kw.get(field) for kw in kws])
        if len(values) != 1:
            raise ValueError(f"the stored configs differ in {field} ({values}); probe options "
                             f"can only be combined with a baseline whose configs share it")
        grid[field] = values[0]
    if all(kw.get("input_width") == kw["width"] for kw in kws):
        grid.pop("input_width", None)  # the default (= the width), so --width may change it
    return grid
