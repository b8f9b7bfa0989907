"""The probe options shared by ``initdiag report``, ``table`` and ``check``, and TOML files of them.

:func:`add_probe_options` adds the options that say what to probe (the group "what to probe"),
:func:`sweep_kwargs` turns them into arguments of :func:`initdiag.sweep`. A TOML file
(``initdiag report --config``) takes the same options, keyed by their names with ``_`` (or
``-``): :func:`read_config`; options given on the command line win over the file
(:func:`merge_config`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping

from initdiag.nn.spec import split_top_level

#: TOML keys of the list-valued probe options -> the type of their items.
_LIST_ITEMS = {"activations": str, "inits": str, "depth": int, "width": int, "seeds": int}
#: TOML keys of the other probe options -> the type(s) of their value.
_SCALARS: dict[str, type | tuple[type, ...]] = {
    "batch": int, "bias_init": str, "no_bias": bool, "norm": str, "residual": (int, float),
    "loss": str, "input": str, "saturation_threshold": (int, float), "remat": int}
_CHOICES = {"norm": ("none", "batchnorm", "layernorm"), "loss": ("projection", "half_mse"),
            "input": ("normal", "uniform")}
#: The argparse dests (= TOML keys) of every probe option, in the order of ``--help``.
PROBE_KEYS = ("activations", "inits", "depth", "width", "batch", "seeds", "bias_init", "no_bias",
              "norm", "residual", "loss", "input", "saturation_threshold", "remat")
#: Probe options that must be integers >= 1.
_POSITIVE = ("depth", "width", "batch", "remat")


def comma_list(text: str) -> list[str]:
    """The items of a comma-separated list; commas inside parentheses stay:
    ``"tanh,leaky_relu(slope=0.2)"`` -> ``["tanh", "leaky_relu(slope=0.2)"]``."""
    return split_top_level(text)


def int_list(text: str) -> list[int]:
    """The integers of a comma-separated list (an argparse type): ``"4,8"`` -> ``[4, 8]``.

    Raises:
      argparse.ArgumentTypeError: an item is not an integer; the message quotes ``text``.
    """
    try:
        return [int(v) for v in split_top_level(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


# --- argparse --------------------------------------------------------------------------------

def add_probe_options(p: argparse.ArgumentParser) -> None:
    """Add the options that define a sweep (the group "what to probe") to ``p``."""
    from initdiag.nn.initializers import STANDARD_INITIALIZERS
    from initdiag.probe import DEFAULT_SWEEP

    d = DEFAULT_SWEEP
    g = p.add_argument_group("what to probe")
    g.add_argument("--activations", type=comma_list, default=None, metavar="LIST",
                   help=f"comma-separated activations, e.g. tanh,relu,'leaky_relu(slope=0.2)' "
                        f"(default: {','.join(d['activations'])})")
    g.add_argument("--inits", type=comma_list, default=None, metavar="LIST",
                   help="comma-separated initializers, e.g. he_normal,'normal(std=0.1)' "
                        f"(default: every standard initializer: "
                        f"{', '.join(d.get('inits', STANDARD_INITIALIZERS))})")
    g.add_argument("--depth", type=int_list, default=None, metavar="L[,L...]",
                   help=f"depth(s), number of layers >= 1 (default: {d['depths'][0]})")
    g.add_argument("--width", type=int_list, default=None, metavar="W[,W...]",
                   help=f"width(s) of every layer, >= 1 (default: {d['widths'][0]})")
    g.add_argument("--batch", type=int, default=None,
                   help=f"batch size, >= 1 (default: {d['batch']})")
    g.add_argument("--seeds", type=int_list, default=None, metavar="S[,S...]",
                   help=f"seed(s) (default: {','.join(map(str, d['seeds']))})")
    g.add_argument("--bias-init", default=None, help="bias initializer (default: zeros)")
    g.add_argument("--no-bias", action="store_true", help="layers without bias (default: with)")
    g.add_argument("--norm", choices=["none", "batchnorm", "layernorm"], default=None,
                   help="normalization before the activation (default: none)")
    g.add_argument("--residual", type=float, default=None, metavar="ALPHA",
                   help="residual stack x <- x + ALPHA * phi(norm(W x + b)) (default: none, a "
                        "plain stack)")
    g.add_argument("--loss", choices=["projection", "half_mse"], default=None,
                   help="loss backpropagated (default: projection)")
    g.add_argument("--input", choices=["normal", "uniform"], default=None,
                   help="input distribution (default: normal)")
    g.add_argument("--saturation-threshold", type=float, default=None, metavar="T",
                   help="saturation threshold t (default: 0.99)")
    g.add_argument("--remat", type=int, default=None, metavar="K",
                   help="recompute activations in chunks of K layers to bound memory (default: "
                        "off, keep every layer)")


def probe_options_given(args: argparse.Namespace) -> bool:
    """Whether any probe option was given (on the command line or by a TOML file)."""
    return any(getattr(args, k, None) not in (None, False) for k in PROBE_KEYS)


def check_positive(args: argparse.Namespace, keys: Any) -> None:
    """Reject a value below 1 of the options ``keys`` (argparse dests, each an int or a list of
    ints), naming the option: ``--width must be >= 1; got 0``.

    Raises:
      ValueError: for the first value below 1.
    """
    for key in keys:
        value = getattr(args, key, None)
        if value is None:
            continue
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be >= 1; got {v}")


def check_probe_args(args: argparse.Namespace) -> None:
    """Reject sizes below 1 (depth, width, batch, remat) before any work
    (:func:`check_positive`)."""
    check_positive(args, _POSITIVE)


def sweep_kwargs(args: argparse.Namespace, base: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Keyword arguments for :func:`initdiag.sweep` from parsed options over ``base`` (default:
    :data:`initdiag.DEFAULT_SWEEP`); options not given keep the value of ``base``."""
    from initdiag.probe import DEFAULT_SWEEP

    kw: dict[str, Any] = {**DEFAULT_SWEEP, **(base or {})}
    for opt, key in (("activations", "activations"), ("inits", "inits"), ("depth", "depths"),
                     ("width", "widths"), ("seeds", "seeds"), ("batch", "batch"),
                     ("bias_init", "bias_init"), ("residual", "residual"), ("loss", "loss"),
                     ("input", "input"), ("saturation_threshold", "saturation_threshold"),
                     ("remat", "remat")):
        value = getattr(args, opt, None)
        if value is not None:
            kw[key] = value
    if getattr(args, "norm", None) is not None:
        kw["norm"] = None if args.norm == "none" else args.norm
    if getattr(args, "no_bias", False):
        kw["use_bias"] = False
    return kw


def metric_names(text: str) -> list[str]:
    """The metrics of a ``--metrics`` value (comma-separated, duplicates dropped), each one of
    :data:`initdiag.METRICS`.

    Raises:
      ValueError: the list is empty or names an unknown metric; the message lists the valid ones.
    """
    from initdiag.results import METRICS

    names = list(dict.fromkeys(comma_list(text)))
    valid = ", ".join(METRICS)
    if not names:
        raise ValueError(f"--metrics {text!r} names no metric; give a comma-separated list of: "
                         f"{valid}")
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ValueError(f"--metrics: unknown metric{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}; valid metrics: {valid}")
    return names


# --- TOML --------------------------------------------------------------------------------------

def config_keys(extra: Mapping[str, type] | None = None) -> tuple[str, ...]:
    """The keys of a TOML file: the probe options', then ``extra`` (a subcommand's own)."""
    return (*PROBE_KEYS, *(extra or {}))


def _as_list(key: str, value: Any, item: type) -> list:
    if isinstance(value, str):
        try:
            value = comma_list(value) if item is str else int_list(value)
        except argparse.ArgumentTypeError:
            pass  # reported below with the key's name
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, item) and not isinstance(v, bool)
                                              for v in value):
        kind = "strings" if item is str else "integers"
        raise ValueError(f"key {key!r} must be a list of {kind} (or a comma-separated "
                         f"string); got {value!r}")
    return value


def _checked(raw_key: str, key: str, value: Any, extra: Mapping[str, type]) -> Any:
    """The value of TOML key ``key`` (spelled ``raw_key`` in the file), checked."""
    if key in _LIST_ITEMS:
        return _as_list(raw_key, value, _LIST_ITEMS[key])
    kind = _SCALARS.get(key) or extra[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"key {raw_key!r} has the wrong type ({type(value).__name__}: "
                         f"{value!r})")
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ValueError(f"{raw_key} = {value!r}; choose from {', '.join(_CHOICES[key])}")
    return value


def read_config(path: str | Path, extra: Mapping[str, type] | None = None) -> dict[str, Any]:
    """The options in a TOML file, keyed by argparse dest.

    Args:
      path: the TOML file.
      extra: the subcommand's own keys besides the probe options -> the type of their value.

    Raises:
      ValueError: no such file, not TOML, an unknown key (the message lists the valid ones), a
        value of the wrong type or not one of the choices; the message names the file.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"config file {path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {path}: not valid TOML: {e}") from None
    keys = config_keys(extra)
    out: dict[str, Any] = {}
    for raw_key, value in doc.items():
        key = raw_key.replace("-", "_")
        if key not in keys:
            raise ValueError(f"config file {path}: unknown key {raw_key!r}; valid keys: "
                             f"{', '.join(keys)}")
        try:
            out[key] = _checked(raw_key, key, value, extra or {})
        except ValueError as e:
            raise ValueError(f"config file {path}: {e}") from None
    return out


def merge_config(args: argparse.Namespace,
                 extra: Mapping[str, type] | None = None) -> argparse.Namespace:
    """Fill the options not given on the command line from the TOML file ``args.config`` (if
    any); ``extra`` as in :func:`read_config`."""
    if not getattr(args, "config", None):
        return args
    for key, value in read_config(args.config, extra).items():
        current = getattr(args, key, None)
        if current is None or current is False:
            setattr(args, key, value)
    return args
