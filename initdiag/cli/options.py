"""The probe options shared by ``initdiag report``, ``table`` and ``check``, and TOML files of them.

Two kinds of option say what to probe:

* the command line's own: the sweep axes ``--activations``, ``--inits``, ``--depth``,
  ``--width``, ``--seeds`` (comma-separated lists) and ``--batch``, and the run option
  ``--remat``;
* one option per field of :class:`initdiag.ProbeConfig` marked ``cli`` in the schema
  (:data:`initdiag.config.CLI_FIELDS`), derived from it (:func:`schema_options`): the flag is the
  field's name with dashes, the help its ``doc`` and its default (:data:`initdiag.config.DEFAULTS`),
  the choices its ``choices`` (plus ``none`` when the field may be None), the type of the value
  its JSON type. A boolean field is a flag: ``--<name>`` sets it to true; one that is true by
  default is set to false by ``--no-<name>``, or by the flag its ``cli_name`` spells.

A TOML file (``initdiag report --config``) takes the same options, keyed by their names with
``_`` (or ``-``), their values checked as the schema says (:func:`read_config`); options given on
the command line win over the file (:func:`merge_config`). Adding a field to ProbeConfig with
``cli=True`` adds its option and its TOML key, with no edit here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from initdiag import config
from initdiag.nn.spec import split_top_level

#: The command line's own probe options (argparse dest = TOML key) -> the argument of
#: :func:`initdiag.sweep` they set.
OWN_OPTIONS = {"activations": "activations", "inits": "inits", "depth": "depths",
               "width": "widths", "batch": "batch", "seeds": "seeds", "remat": "remat"}
#: TOML keys of the list-valued own options -> the type of their items.
_LIST_ITEMS = {"activations": str, "inits": str, "depth": int, "width": int, "seeds": int}
#: TOML keys of the scalar own options -> the type of their value.
_SCALARS = {"batch": int, "remat": int}
#: Own options that must be integers >= 1.
_POSITIVE = ("depth", "width", "batch", "remat")


def number(text: str) -> float:
    """A finite number (an argparse type): ``"0.5"`` -> 0.5.

    Raises:
      argparse.ArgumentTypeError: not a number, or NaN or infinite; the message quotes ``text``.
    """
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def integer(text: str) -> int:
    """An integer (an argparse type): ``"8"`` -> 8.

    Raises:
      argparse.ArgumentTypeError: not an integer; the message quotes ``text``.
    """
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


#: The argparse type and metavar of an option's text, by the JSON type of its field (booleans
#: are flags; metavar None: the option's name in capitals).
_PARSE = {config.STR: (str, None), config.OPT_STR: (str, None),
          config.NUMBER: (number, "NUMBER"), config.OPT_NUMBER: (number, "NUMBER"),
          config.POS_INT: (integer, "N")}


def comma_list(text: str) -> list[str]:
    """The items of a comma-separated list; commas inside parentheses stay:
    ``"tanh,leaky_relu(slope=0.2)"`` -> ``["tanh", "leaky_relu(slope=0.2)"]``."""
    return split_top_level(text)


def int_list(text: str) -> list[int]:
    """The integers of a comma-separated list (an argparse type): ``"4,8"`` -> ``[4, 8]``.

    Raises:
      argparse.ArgumentTypeError: an item is not an integer, or there is none; the message
        quotes ``text``.
    """
    try:
        values = [int(v) for v in split_top_level(text)]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return values


# --- the options derived from the schema -----------------------------------------------------

class SchemaOption(NamedTuple):
    """The command-line option and TOML key of one field of :class:`initdiag.ProbeConfig`.

    Attributes:
      field: the field's name.
      key: the argparse dest and TOML key: the field's ``cli_name``, else its name, or
        ``no_<name>`` for a boolean field that is true by default.
      negated: a boolean field true by default: the flag sets it to false.
    """

    field: str
    key: str
    negated: bool

    @property
    def schema(self) -> config.Field:
        return config.SCHEMA[self.field]

    @property
    def flag(self) -> str:
        """The option as typed: ``--`` and the key with dashes."""
        return "--" + self.key.replace("_", "-")

    @property
    def is_flag(self) -> bool:
        """A boolean field: an option without a value."""
        return self.schema.json is config.BOOL

    @property
    def choices(self) -> tuple[Any, ...] | None:
        """The valid values of the option: the field's choices, with ``"none"`` first when the
        field may be None; None for an open set."""
        f = self.schema
        if f.choices is None:
            return None
        return ("none", *f.choices) if f.json.test(None) else tuple(f.choices)

    def help(self) -> str:
        """The help text: the field's doc and its default."""
        f = self.schema
        if self.is_flag:
            text = f"{f.doc}: {'no (default: yes)' if self.negated else 'yes (default: no)'}"
        else:
            default = config.DEFAULTS[self.field]
            text = f"{f.doc} (default: {'none' if default is None else default})"
        return text.replace("%", "%%")

    def value(self, given: Any) -> Any:
        """The field's value for the option's value ``given`` (not None): ``"none"`` is None for
        a field that may be None, a negated flag's True is False."""
        if self.is_flag:
            return not given if self.negated else bool(given)
        if given == "none" and self.choices and self.choices[0] == "none":
            return None
        return given

    def add_to(self, group: Any) -> None:
        """Add the option to an argparse parser or argument group.

        Raises:
          TypeError: the field's JSON type has no command-line form (it names the field).
        """
        if self.is_flag:
            group.add_argument(self.flag, dest=self.key, action="store_true", help=self.help())
            return
        if self.schema.json not in _PARSE:
            raise TypeError(f"ProbeConfig field {self.field!r} is marked cli but its JSON type, "
                            f"{self.schema.json.text}, has no command-line form; command-line "
                            f"types: {', '.join(t.text for t in _PARSE)}")
        parse, metavar = _PARSE[self.schema.json]
        group.add_argument(self.flag, dest=self.key, type=parse, choices=self.choices,
                           metavar=None if self.choices else metavar, default=None,
                           help=self.help())


def schema_options() -> list[SchemaOption]:
    """The options of the fields of :data:`initdiag.config.CLI_FIELDS`, in schema order."""
    out = []
    for name in config.CLI_FIELDS:
        f = config.SCHEMA[name]
        negated = f.json is config.BOOL and config.DEFAULTS[name] is True
        out.append(SchemaOption(name, f.cli_name or (f"no_{name}" if negated else name),
                                negated))
    return out


def probe_keys() -> tuple[str, ...]:
    """The argparse dests (= TOML keys) of every probe option, in the order of ``--help``."""
    return ("activations", "inits", "depth", "width", "batch", "seeds",
            *(o.key for o in schema_options()), "remat")


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
    g.add_argument("--batch", type=integer, default=None,
                   help=f"batch size, >= 1 (default: {d['batch']})")
    g.add_argument("--seeds", type=int_list, default=None, metavar="S[,S...]",
                   help=f"seed(s) (default: {','.join(map(str, d['seeds']))})")
    for option in schema_options():
        option.add_to(g)
    g.add_argument("--remat", type=integer, default=None, metavar="K",
                   help="recompute activations in chunks of K layers to bound memory (default: "
                        "off, keep every layer)")


def probe_options_given(args: argparse.Namespace) -> bool:
    """Whether any probe option was given (on the command line or by a TOML file)."""
    values = [getattr(args, k, None) for k in probe_keys()]
    return any(v is not None and v is not False for v in values)  # False: a flag not given


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
    """Reject sizes below 1 before any work (:func:`check_positive` of the sizes: depth, width,
    batch, remat and the integer fields of the schema)."""
    check_positive(args, (*_POSITIVE, *(o.key for o in schema_options()
                                        if o.schema.json is config.POS_INT)))


def sweep_kwargs(args: argparse.Namespace, base: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Keyword arguments for :func:`initdiag.sweep` from parsed options over ``base`` (default:
    :data:`initdiag.DEFAULT_SWEEP`); options not given keep the value of ``base``."""
    from initdiag.probe import DEFAULT_SWEEP

    kw: dict[str, Any] = {**DEFAULT_SWEEP, **(base or {})}
    for key, arg in OWN_OPTIONS.items():
        value = getattr(args, key, None)
        if value is not None:
            kw[arg] = value
    for option in schema_options():
        value = getattr(args, option.key, None)
        if value is not None and value is not False:  # False: a flag not given
            kw[option.field] = option.value(value)
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

_TYPE_TEXT = {int: "an integer", str: "a string", bool: "true or false"}


def config_keys(extra: Mapping[str, type] | None = None) -> tuple[str, ...]:
    """The keys of a TOML file: the probe options', then ``extra`` (a subcommand's own)."""
    return (*probe_keys(), *(extra or {}))


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


def _in_range(raw_key: str, key: str, value: Any) -> Any:
    """The sizes (depth, width, batch, remat) are >= 1, the seeds in [0, 2**32 - 1]."""
    from initdiag.base import SEEDS

    lo, hi = (0, SEEDS - 1) if key == "seeds" else (1, None)
    for v in value if isinstance(value, list) else [value]:
        if v < lo or (hi is not None and v > hi):
            valid = f"integers in [{lo}, {hi}]" if hi is not None else f"integers >= {lo}"
            raise ValueError(f"key {raw_key!r} must hold {valid}; got {v}")
    return value


def _checked(raw_key: str, key: str, value: Any, extra: Mapping[str, type]) -> Any:
    """The value of TOML key ``key`` (spelled ``raw_key`` in the file), checked."""
    import math

    if key in _LIST_ITEMS:
        value = _as_list(raw_key, value, _LIST_ITEMS[key])
        return _in_range(raw_key, key, value) if _LIST_ITEMS[key] is int else value
    options = {o.key: o for o in schema_options()}
    if key in options:
        ok = options[key].schema.json.test(value)
        expected, choices = options[key].schema.json.text, options[key].choices
    else:
        kind = _SCALARS.get(key) or extra[key]
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        expected, choices = _TYPE_TEXT.get(kind, kind.__name__), None
    if not ok:
        raise ValueError(f"key {raw_key!r} has the wrong type ({type(value).__name__}: "
                         f"{value!r}); expected {expected}")
    if choices is not None and value not in choices:
        raise ValueError(f"{raw_key} = {value!r}; choose from {', '.join(choices)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"key {raw_key!r} must be a finite number; got {value!r}")
    if key in _POSITIVE or (key in options and options[key].schema.json is config.POS_INT):
        _in_range(raw_key, key, value)
    return value


def read_config(path: str | Path, extra: Mapping[str, type] | None = None) -> dict[str, Any]:
    """The options in a TOML file, keyed by argparse dest.

    Args:
      path: the TOML file.
      extra: the subcommand's own keys besides the probe options -> the type of their value.

    Raises:
      ValueError: no such file, a folder or an unreadable file, not UTF-8 or not TOML, an unknown
        key (the message lists the valid ones), a value of the wrong type, not one of the
        choices, not finite, a size below 1 or a seed outside [0, 2**32 - 1]; the message names
        the file and the key.
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
    except UnicodeDecodeError as e:
        raise ValueError(f"config file {path}: not TOML: not UTF-8 text ({e.reason} at byte "
                         f"{e.start})") from None
    except OSError as e:
        raise ValueError(f"config file {path}: cannot be read ({e.strerror or e})") from None
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
