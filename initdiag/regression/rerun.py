"""Re-run the configurations stored in results or a baseline, and describe them as a sweep grid.

A stored config holds text labels (``"glorot_normal(gain=1.1)"``, ``"leaky_relu(slope=0.2)"``)
that :func:`initdiag.initializer` and :func:`initdiag.activation` parse back, so a probe can be
repeated exactly from its config and seed. A user callable (label ``custom:...``), weights given
to :func:`initdiag.probe_params` (``init="given"``) or an explicit input array
(``input="array"``) cannot be rebuilt from a label: re-running those raises a ValueError.
"""

from __future__ import annotations

from typing import Any

from initdiag.results import ProbeResult, SweepResult

#: Config fields passed to :func:`initdiag.probe` unchanged.
_PASSED = ("activation", "init", "bias_init", "depth", "width", "input_width", "batch",
           "use_bias", "norm", "residual", "input", "loss", "saturation_threshold")
#: Config fields of the stack options of :func:`initdiag.sweep` (one value per grid).
_OPTIONS = ("bias_init", "use_bias", "norm", "residual", "input", "loss",
            "saturation_threshold", "input_width", "remat")


def probe_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`initdiag.probe` that reproduce ``config`` (seed excluded).

    Raises:
      ValueError: the config cannot be re-run (custom callable, given weights or input, an
        unknown field); the message names the field and value.
    """
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
    unknown = set(config) - set(_PASSED) - {"remat", "dtype"}
    if unknown:
        raise ValueError(f"{label}: cannot re-run a config with field(s) "
                         f"{', '.join(sorted(unknown))} (made by another initdiag version?)")
    if config.get("dtype", "float32") != "float32":
        raise ValueError(f"{label}: dtype {config['dtype']!r} is not supported (float32 only)")
    kw = {k: config[k] for k in _PASSED if k in config}
    kw["remat"] = config.get("remat") or None
    return kw


def rerun(results: ProbeResult | SweepResult) -> ProbeResult | SweepResult:
    """Probe every (config, seed) of ``results`` again; same type and order as given."""
    from initdiag.probe import probe

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


def sweep_grid(results: ProbeResult | SweepResult) -> dict[str, Any]:
    """The :func:`initdiag.sweep` arguments whose grid holds every config of ``results``.

    Used as the base that command-line probe options override. Activations, inits, depths,
    widths and seeds become lists of their distinct values; the batch and every stack option
    must be the same for all configs.

    Raises:
      ValueError: the configs differ in the batch or a stack option, or cannot be re-run.
    """
    rs = [results] if isinstance(results, ProbeResult) else list(results)
    for r in rs:
        probe_kwargs(r.config)
    grid: dict[str, Any] = {
        "activations": _unique([r.config["activation"] for r in rs]),
        "inits": _unique([r.config["init"] for r in rs]),
        "depths": _unique([r.config["depth"] for r in rs]),
        "widths": _unique([r.config["width"] for r in rs]),
        "seeds": _unique([r.seed for r in rs]),
    }
    for field in ("batch", *_OPTIONS):
        values = _unique([r.config.get(field) for r in rs])
        if len(values) != 1:
            raise ValueError(f"the stored configs differ in {field} ({values}); probe options "
                             f"can only be combined with a baseline whose configs share it")
        grid[field] = values[0]
    grid["remat"] = grid["remat"] or None
    if all(r.config.get("input_width") == r.config["width"] for r in rs):
        del grid["input_width"]  # the default (= the width), so --width may change it
    return grid
