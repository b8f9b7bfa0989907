"""One schema for a probe's configuration: :class:`ProbeConfig`.

Every field carries its default, its JSON type, whether it names the configuration (its
identity, :meth:`ProbeConfig.key`), whether it shows in labels (:meth:`ProbeConfig.label`), whether
it is a column of a tidy frame, and whether it is an option of the command line (and a key of
its TOML files). Validation, results, JSON files, baselines, re-runs, frame columns, labels and the
CLI's options all derive from the field list here; no other module restates it.

A configuration is what was probed, recorded with every result (``result.config``). It reads like
the dict it is written as: ``config["init"]`` and ``config.get("norm")`` give the JSON value,
``config.init`` the same and ``config.widths`` the per-layer widths. Activations and initializers
are recorded by label (``"normal(std=0.1)"``; a user callable as ``"custom:<name>"``), which
:func:`initdiag.initializer` and :func:`initdiag.activation` parse back. How a probe is run
(``remat``, ``draw_weights``, ``memory_budget``, ``devices``) does not change its numbers and is
not part of the configuration (the memory plan chosen is in ``result.meta["memory"]``).

Files written before a field existed load with that field's default, and are written back as
they were (a configuration remembers which fields it recorded: :attr:`ProbeConfig.recorded`).

This module imports nothing from initdiag but :mod:`initdiag.base`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

from initdiag.base import check_bool, check_float, check_int, check_one_of, same_value

NORMS = ("batchnorm", "layernorm")
LOSSES = ("projection", "half_mse")
INPUTS = ("normal", "uniform")
DTYPES = ("float32",)
#: Most histogram bins a probe takes, and the narrowest bin of act_hist_range relative to
#: max(|lo|, |hi|): within these, float32 bin indices are exact (initdiag.engine.stats.histogram).
MAX_HIST_BINS = 100_000
MIN_BIN_WIDTH = 1e-5


# --- JSON types --------------------------------------------------------------------------------

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class JsonType(NamedTuple):
    """A JSON type a field's stored value must have: a test and its description for messages."""

    test: Callable[[Any], bool]
    text: str


STR = JsonType(lambda v: isinstance(v, str), "a string")
POS_INT = JsonType(lambda v: _is_int(v) and v >= 1, "an integer >= 1")
BOOL = JsonType(lambda v: isinstance(v, bool), "true or false")
NUMBER = JsonType(_is_number, "a number")
OPT_STR = JsonType(lambda v: v is None or isinstance(v, str), "a string or null")
OPT_NUMBER = JsonType(lambda v: v is None or _is_number(v), "a number or null")
WIDTH = JsonType(lambda v: POS_INT.test(v) or (isinstance(v, list) and len(v) > 0
                                               and all(POS_INT.test(w) for w in v)),
                 "an integer >= 1 or an array of depth integers >= 1")


def shown(value: Any) -> str:
    """A JSON value as it appears in a file, with its JSON type: ``"6" (a string)``."""
    kind = ("a boolean" if isinstance(value, bool) else "null" if value is None
            else "a number" if isinstance(value, (int, float)) else "a string"
            if isinstance(value, str) else "an array" if isinstance(value, list)
            else "an object" if isinstance(value, dict) else type(value).__name__)
    text = json.dumps(value, default=repr)
    return f"{text if len(text) <= 80 else text[:77] + '...'} ({kind})"


# --- the schema ----------------------------------------------------------------------------------

class Field(NamedTuple):
    """What the schema says of one field of :class:`ProbeConfig` (its ``metadata["schema"]``).

    Attributes:
      json: the JSON type of the stored value.
      doc: what the field is (the CLI's help text and the README's).
      label: ``"always"``: shown in every label; ``"changed"``: shown when not at its default;
        ``"never"``.
      identity: part of :meth:`ProbeConfig.key` (what a baseline matches results by). Output
        options (histograms) are not: they add outputs but change no statistic.
      column: a column of :meth:`initdiag.SweepResult.to_frame`.
      rerun: a re-run needs it recorded: a baseline without it is malformed (it would silently
        take the default and show up as drift).
      cli: the field is a probe option of the command line (``--name-with-dashes``) and a key of
        its TOML files, derived from this schema (:mod:`initdiag.cli.options`): help from
        ``doc`` and the default, choices from ``choices``, type from ``json``. The sweep axes
        (activation, init, depth, width, batch) are the CLI's own options; input_width is not
        one.
      choices: the valid values of a closed set, for messages and the CLI.
      cli_name: the option's name and TOML key when not the field's name. A boolean field whose
        default is True is given on the command line by a flag that sets it to False, named
        ``no_<field>`` unless ``cli_name`` says otherwise (use_bias: ``no_bias``).
    """

    json: JsonType
    doc: str
    label: str = "changed"
    identity: bool = True
    column: bool = True
    rerun: bool = True
    cli: bool = True
    choices: tuple[Any, ...] | None = None
    cli_name: str | None = None


def _field(default: Any, json_type: JsonType, doc: str, **schema: Any) -> Any:
    return dataclasses.field(default=default,
                             metadata={"schema": Field(json_type, doc, **schema)})


@dataclasses.dataclass(frozen=True, eq=False)
class ProbeConfig(Mapping):
    """What one probe measures (see the module docstring). Frozen; reads as a mapping.

    The fields, in the order they are written:

    * ``activation`` / ``init`` / ``bias_init``: labels (:func:`initdiag.activation`,
      :func:`initdiag.initializer`); given to :func:`initdiag.probe` they may also be objects or
      callables, recorded by their label.
    * ``depth`` L; ``width``: n_l of every layer, or a list of L widths; ``input_width`` n_0
      (None: the first layer's width); ``batch`` B (None: 256, or the rows of an input array).
    * ``use_bias``; ``norm``: None, ``"batchnorm"`` or ``"layernorm"`` before the activation;
      ``residual``: None, or alpha of x <- x + alpha * phi(norm(W x + b)).
    * ``input``: ``"normal"``, ``"uniform"``, or ``"array"`` when an array was given.
    * ``loss``: ``"projection"`` or ``"half_mse"``; ``saturation_threshold`` t in (0, 1).
    * ``dtype``: ``"float32"`` (the only one).
    * ``histograms``: also record per-layer histograms; ``hist_bins``: their number of bins;
      ``act_hist_range``: the range of the activation histogram's bins (None: phi's bounds).
    """

    activation: Any = _field("relu", STR, "activation phi, e.g. tanh or 'leaky_relu(slope=0.2)'",
                             label="always", rerun=True, cli=False)
    init: Any = _field("he_normal", STR, "weight initializer, e.g. he_normal or "
                       "'normal(std=0.1)'", label="always", cli=False)
    bias_init: Any = _field("zeros", STR, "bias initializer")
    depth: int = _field(50, POS_INT, "number of layers L >= 1", label="always", cli=False)
    width: Any = _field(256, WIDTH, "width n_l of every layer (>= 1), or one per layer",
                        label="always", cli=False)
    input_width: int | None = _field(None, POS_INT, "width n_0 of the input (default: the "
                                     "first layer's width)", label="never", cli=False)
    batch: int | None = _field(None, POS_INT, "batch size B >= 1 (default 256)",
                               label="always", cli=False)
    use_bias: bool = _field(True, BOOL, "whether layers have a bias", cli_name="no_bias")
    norm: str | None = _field(None, OPT_STR, "normalization before the activation",
                              choices=NORMS)
    residual: float | None = _field(None, OPT_NUMBER, "alpha of a residual stack x <- x + "
                                    "alpha * phi(norm(W x + b)); none: a plain stack")
    input: Any = _field("normal", STR, "input distribution (N(0, 1) or U(-sqrt 3, sqrt 3) "
                        "entries)", choices=INPUTS)
    loss: str = _field("projection", STR, "loss backpropagated", choices=LOSSES)
    saturation_threshold: float = _field(0.99, NUMBER, "saturation threshold t in (0, 1)")
    dtype: str = _field("float32", STR, "floating-point type of the probe", label="never",
                        column=False, cli=False, choices=DTYPES)
    histograms: bool = _field(False, BOOL, "also record per-layer histograms", label="never",
                              identity=False, column=False, rerun=False, cli=False)
    hist_bins: int = _field(50, POS_INT, "number of histogram bins", label="never",
                            identity=False, column=False, rerun=False, cli=False)
    act_hist_range: tuple[float, float] | None = _field(
        None, JsonType(lambda v: v is None or (isinstance(v, list) and len(v) == 2
                                               and all(_is_number(x) for x in v)),
                       "null or an array [lo, hi] of two numbers"),
        "range [lo, hi] of the act_hist bins (default: phi's bounds when it has both, else "
        "[-4, 4]); entries outside fall in the first or last bin", label="never",
        identity=False, column=False, rerun=False, cli=False)
    #: The fields this configuration recorded (all, for one made by a probe; those present in
    #: a file written by an older initdiag). The mapping view lists only these.
    recorded: frozenset = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.recorded is None:
            object.__setattr__(self, "recorded", frozenset(FIELD_NAMES))
        elif not set(self.recorded) <= set(FIELD_NAMES):
            raise ValueError(f"recorded names unknown fields: "
                             f"{sorted(set(self.recorded) - set(FIELD_NAMES))}")
        for name in FIELD_NAMES:  # list values (per-layer widths, ranges) held as tuples
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    # -- the mapping view: JSON values of the recorded fields, in schema order --------------
    def __getitem__(self, name: str) -> Any:
        if name not in self.recorded:
            raise KeyError(name)
        return _json_value(getattr(self, name))

    def __iter__(self) -> Iterator[str]:
        return (f for f in FIELD_NAMES if f in self.recorded)

    def __len__(self) -> int:
        return len(self.recorded)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ProbeConfig):
            return self.to_dict() == other.to_dict()
        if isinstance(other, Mapping):
            return self.to_dict() == dict(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        return f"ProbeConfig({', '.join(f'{k}={v!r}' for k, v in self.items())})"

    # -- derived values -------------------------------------------------------------------------
    @property
    def widths(self) -> tuple[int, ...]:
        """n_1..n_L: the width of every layer."""
        if isinstance(self.width, tuple):
            return tuple(int(w) for w in self.width)
        return (int(self.width),) * int(self.depth)

    @property
    def bias(self) -> Any:
        """The bias initializer's label, or None when the layers have no bias."""
        return self.bias_init if self.use_bias else None

    @property
    def fans(self) -> tuple[int, ...]:
        """n_0..n_L: the input width, then every layer's width."""
        w = self.widths
        return (int(self.input_width or w[0]), *w)

    # -- JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to results and baseline files (the recorded fields)."""
        return dict(self.items())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, strict: bool = False,
                  where: str = "config") -> "ProbeConfig":
        """A configuration from its JSON object (``to_dict``), or from a dict made by hand.

        Fields absent from ``d`` take their default and are not :attr:`recorded`.

        Args:
          strict: also require every field a re-run needs (:attr:`Field.rerun`) and check every
            JSON type: what a baseline must hold.
          where: names the object in messages (``results[0].config``).

        Raises:
          ValueError: a field unknown to this initdiag, or (strict) missing or of the wrong JSON
            type; the message names ``where``, the field, its value and JSON type.
        """
        if isinstance(d, ProbeConfig):
            return d
        check_fields(d, where)
        if strict:
            check_json(d, where)
        return cls(**dict(d), recorded=frozenset(d))

    def key(self) -> str:
        """The identity of the configuration: equal for configurations that measure the same
        thing (the :attr:`Field.identity` fields, defaults filled in for unrecorded ones; key
        order irrelevant). What baselines, seed pooling and report groups match by."""
        return json.dumps({f: _json_value(getattr(self, f)) for f in IDENTITY_FIELDS},
                          sort_keys=True, default=str)

    def label(self) -> str:
        """``"tanh / glorot_normal depth=8 width=16 batch=16"`` plus every option not at its
        default (the :attr:`Field.label` rule)."""
        head = f"{self.get('activation')} / {self.get('init')}"
        parts = [f"{k}={self[k]}" for k in ("depth", "width", "batch") if k in self]
        parts += [f"{k}={self[k]}" for k in LABEL_IF_CHANGED
                  if k in self and not same_value(self[k], DEFAULTS[k])]
        return " ".join([head, *parts])

    def values_label(self, names: Iterable[str]) -> str:
        """``"depth 4, width 8"``: the values of ``names`` in this configuration ('' if none);
        None and NaN read ``none``, per-layer widths ``8/16/4``."""
        parts = []
        for k in names:
            v = self.get(k)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                v = "none"
            elif isinstance(v, (list, tuple)):
                v = "/".join(map(str, v))
            parts.append(f"{k.replace('_', ' ')} {v}")
        return ", ".join(parts)

    def columns(self) -> dict[str, Any]:
        """The frame columns (:data:`FRAME_CONFIG_COLUMNS`) of this configuration: ``width`` per
        layer (a list of L values), ``input_width`` n_0, ``norm`` ``"none"`` without
        normalization, ``residual`` NaN for a plain stack; defaults for unrecorded fields."""
        out = {f: _json_value(getattr(self, f)) for f in FRAME_CONFIG_COLUMNS}
        out["width"] = list(self.widths)
        out["input_width"] = self.fans[0]
        out["norm"] = self.norm or "none"
        out["residual"] = math.nan if self.residual is None else self.residual
        return out

    def resolved(self, **values: Any) -> "ProbeConfig":
        """A copy with ``values`` set (every field recorded): what a probe writes once it has
        turned objects into labels and defaults into numbers."""
        return dataclasses.replace(self, **values, recorded=frozenset(FIELD_NAMES))

    # -- validation of what a user passes ------------------------------------------------------
    def validated(self) -> "ProbeConfig":
        """This configuration with the fields a probe reads directly checked and normalized.

        The stack's fields (activation, initializers, depth, widths, norm, residual, bias) are
        checked where they are resolved, :func:`initdiag.nn.stacks.make_spec`.

        Raises:
          ValueError: naming the field, the bad value and the valid choices or range.
        """
        v: dict[str, Any] = {}
        if self.batch is not None:
            v["batch"] = check_int("batch", self.batch)
        if isinstance(self.input, str):
            check_one_of("input", self.input, INPUTS)
        check_one_of("loss", self.loss, LOSSES)
        t = check_float("saturation_threshold", self.saturation_threshold)
        if not 0.0 < t < 1.0:
            raise ValueError(f"saturation_threshold must be in (0, 1); got {t}")
        v["saturation_threshold"] = t
        check_one_of("dtype", self.dtype, DTYPES)
        v["histograms"] = check_bool("histograms", self.histograms)
        bins = v["hist_bins"] = check_int("hist_bins", self.hist_bins)
        if bins > MAX_HIST_BINS:
            raise ValueError(f"hist_bins must be <= {MAX_HIST_BINS}; got {bins}")
        if self.act_hist_range is not None:
            lo, hi = (check_float("act_hist_range", x) for x in self.act_hist_range)
            if not lo < hi:
                raise ValueError(f"act_hist_range must be [lo, hi] with lo < hi; got "
                                 f"{list(self.act_hist_range)}")
            if (hi - lo) / bins < MIN_BIN_WIDTH * max(abs(lo), abs(hi)):
                raise ValueError(
                    f"act_hist_range {[lo, hi]} with hist_bins={bins} makes bins of width "
                    f"{(hi - lo) / bins:.3g}, below {MIN_BIN_WIDTH:g} x max(|lo|, |hi|) (what "
                    f"float32 resolves); widen the range or use fewer bins")
            v["act_hist_range"] = (lo, hi)
        return dataclasses.replace(self, **v)


def _json_value(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return int(v)
    return v


SCHEMA: dict[str, Field] = {f.name: f.metadata["schema"] for f in dataclasses.fields(ProbeConfig)
                            if "schema" in f.metadata}
#: Every field name, in the order files write them.
FIELD_NAMES: tuple[str, ...] = tuple(SCHEMA)
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(ProbeConfig)
                            if f.name in SCHEMA}
IDENTITY_FIELDS = tuple(n for n, f in SCHEMA.items() if f.identity)
RERUN_FIELDS = tuple(n for n, f in SCHEMA.items() if f.rerun)
LABEL_IF_CHANGED = tuple(n for n, f in SCHEMA.items() if f.label == "changed")
#: Config columns of a tidy frame, before ``seed``, ``layer``, ``metric`` and ``value``.
FRAME_CONFIG_COLUMNS = tuple(n for n, f in SCHEMA.items() if f.column)
#: Fields that are options of the command line and keys of its TOML files.
CLI_FIELDS = tuple(n for n, f in SCHEMA.items() if f.cli)


#: The values a stored field may hold besides its :attr:`Field.choices`: ``input`` records
#: ``"array"`` for an input given as an array (:func:`initdiag.probe_params`).
STORED_CHOICES = {"input": (*INPUTS, "array")}


def check_json(d: Mapping[str, Any], where: str = "config") -> None:
    """Check a stored configuration as a baseline needs it: every :data:`RERUN_FIELDS` present,
    every field of its JSON type and, for a closed set, one of its choices, a list width of
    ``depth`` entries.

    Raises:
      ValueError: naming ``where``, the field, its value and JSON type, and what is expected.
    """
    for name in RERUN_FIELDS:
        if name not in d:
            raise ValueError(f"{where} has no {name!r} (needed to re-run the probe); "
                             f"expected {SCHEMA[name].json.text}")
    _check_values(d, where, defaults_ok=False)


def check_fields(d: Any, where: str = "config") -> None:
    """``d`` is an object whose keys are all fields of :data:`SCHEMA` (a field unknown to this
    initdiag would be dropped on reading: refused instead, naming ``where`` and the fields).

    Raises:
      ValueError: naming ``where``, the unknown fields and the known ones.
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"{where} is {shown(d)}; expected an object")
    unknown = [k for k in d if k not in SCHEMA]
    if unknown:
        raise ValueError(f"{where} has field(s) {', '.join(map(repr, unknown))} unknown to "
                         f"this initdiag (made by another version?); known fields: "
                         f"{', '.join(FIELD_NAMES)}")


def check_recorded(d: Mapping[str, Any], where: str = "config") -> None:
    """Check a configuration as a results file stores it (:meth:`ProbeConfig.to_dict`): fields
    known to this initdiag, ``depth`` present (it gives the length of every per-layer array),
    every other field optional, and each one present of its JSON type (or its default, e.g. a
    ``batch`` of null), one of its choices for a closed set, a list width of ``depth`` entries.

    Raises:
      ValueError: naming ``where``, the field, its value and JSON type, and what is expected.
    """
    check_fields(d, where)
    if "depth" not in d:
        raise ValueError(f"{where} has no 'depth' (the number of layers: the length of every "
                         f"per-layer array); expected {POS_INT.text}")
    _check_values(d, where, defaults_ok=True)


def _check_values(d: Mapping[str, Any], where: str, defaults_ok: bool) -> None:
    for name, value in d.items():
        field = SCHEMA[name]
        if name == "width" or (defaults_ok and same_value(value, DEFAULTS[name])
                               and type(value) is type(DEFAULTS[name])):
            continue
        if not field.json.test(value):
            raise ValueError(f"{where}[{name!r}] is {shown(value)}; expected {field.json.text}")
        choices = STORED_CHOICES.get(name, field.choices)
        if choices is not None and value is not None and value not in choices:
            raise ValueError(f"{where}[{name!r}] is {shown(value)}; expected one of "
                             f"{', '.join(json.dumps(c) for c in choices)}"
                             + (" or null" if field.json.test(None) else ""))
    depth, width = d["depth"], d.get("width", DEFAULTS["width"])  # depth checked; width by it
    if not WIDTH.test(width) or (isinstance(width, list) and len(width) != depth):
        raise ValueError(f"{where}['width'] is {shown(width)}; expected "
                         f"{WIDTH.text.replace('depth', f'depth ({depth})')}")


def varying(configs: Iterable[Mapping[str, Any]], exclude: Iterable[str] = (),
            order: Sequence[str] = ()) -> list[str]:
    """The identity fields (besides ``exclude``) whose values differ between ``configs``: those in
    ``order`` first, then the others in schema order. ``input_width`` is left out when ``width``
    varies too (it follows the width)."""
    configs = [ProbeConfig.from_dict(c) for c in configs]
    exclude = set(exclude)
    names = [n for n in IDENTITY_FIELDS if n not in exclude
             and len({repr(c.get(n)) for c in configs}) > 1]
    ordered = [n for n in order if n in names] + [n for n in names if n not in order]
    if "width" in ordered and "input_width" in ordered:
        ordered.remove("input_width")
    return ordered
