"""Baselines: per-layer statistics frozen in a human-diffable JSON file.

A baseline is what :func:`initdiag.compare`, ``initdiag check`` and the pytest fixture
``initdiag_regression`` check new results against. Layout (``schema_version`` 1)::

    {"schema": "initdiag.baseline", "schema_version": 1, "kind": "sweep" | "probe",
     "initdiag": "0.1.0",
     "environment": {"jax": ..., "numpy": ..., "device": ..., ...},   # where it was made
     "results": [{"config": {...}, "seed": 0,
                  "metrics": {"preact_var": [
                     1.1427196264266968,         # layer 1: one value per line, so a
                     0.39710906147956848,        # git diff shows exactly which layer moved
                     ...]}, "scalars": {"loss": ...}}, ...]}

Per result it keeps the full config, the seed, every per-layer metric and the scalars; it drops
histograms (not compared) and timings (they change on every run and would make every update a
diff). Floats are shortest round-trip reprs, NaN/Infinity are the strings "NaN", "Infinity",
"-Infinity" (as in :mod:`initdiag.results`), so values load back bit for bit.

:func:`load_baseline` checks every field it reads: each config must hold every field a re-run
needs (:data:`CONFIG_FIELDS`, with its JSON type), seeds are integers and metric values numbers
(``true`` is not a number), and the message names the file, the field, its value and type.
:func:`save_baseline` refuses to write a file that this check would refuse.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from initdiag.fileio import atomic_write_text
from initdiag.results import ProbeResult, SweepResult

SCHEMA = "initdiag.baseline"
SCHEMA_VERSION = 1

Results = ProbeResult | SweepResult


class BaselineError(ValueError):
    """A baseline file that cannot be used: the message names the file and the problem."""


def _results_list(result: Any) -> tuple[str, list[ProbeResult]]:
    if isinstance(result, ProbeResult):
        return "probe", [result]
    if isinstance(result, SweepResult):
        return "sweep", list(result)
    raise TypeError(f"expected a ProbeResult or a SweepResult; got {type(result).__name__}")


def _environment(results: list[ProbeResult], meta: dict[str, Any]) -> dict[str, Any]:
    if "environment" in meta:
        return dict(meta["environment"])
    for r in results:
        if "environment" in r.meta:
            return dict(r.meta["environment"])
    return {}


def baseline_document(result: Results) -> dict[str, Any]:
    """The JSON document :func:`save_baseline` writes, as a dict."""
    from initdiag import __version__

    kind, results = _results_list(result)
    if not results:
        raise ValueError("cannot save an empty SweepResult as a baseline")
    entries = []
    for r in results:
        d = r.to_dict()
        entries.append({"config": d["config"], "seed": d["seed"], "metrics": d["metrics"],
                        "scalars": d["scalars"]})
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "kind": kind,
            "initdiag": __version__, "environment": _environment(results, result.meta),
            "results": entries}


def save_baseline(result: Results, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``result`` (a ProbeResult or SweepResult) as a baseline file, atomically.

    Args:
      result: the results to freeze.
      path: the file to write (parent folders are created).
      overwrite: replace an existing file. Without it an existing baseline is never touched,
        even one that another process creates while this one writes (the file is published
        with a hard link, which fails if the name exists; see :mod:`initdiag.fileio`).

    Returns:
      The path written.

    Raises:
      FileExistsError: ``path`` exists and ``overwrite`` is False (the message says how to
        update it).
      TypeError: ``result`` is not a ProbeResult or SweepResult.
      ValueError: the results are empty, or a config lacks a field a re-run needs (e.g. a
        hand-made ProbeResult): load_baseline would refuse such a file.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise _exists_error(path)
    doc = baseline_document(result)
    try:
        check_document(doc)
    except ValueError as e:
        raise ValueError(f"{path}: the results cannot be saved as a baseline: {e} "
                         f"(load_baseline would refuse the file)") from None
    # indent=1 puts every value on its own line: a diff of two baselines is per layer.
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    try:
        return atomic_write_text(path, text, overwrite=overwrite)
    except FileExistsError:  # it appeared since the check above: still never overwritten
        raise _exists_error(path) from None


def _exists_error(path: Path) -> FileExistsError:
    return FileExistsError(
        f"{path}: baseline exists and is never overwritten silently. To update it: "
        f"save_baseline(..., overwrite=True), `initdiag check {path} --update`, or "
        f"`pytest --initdiag-update` for a baseline of the pytest fixture.")


def _shown(value: Any) -> str:
    """A JSON value as it appears in the file, with its JSON type: ``"6" (a string)``."""
    kind = ("a boolean" if isinstance(value, bool) else "null" if value is None
            else "a number" if isinstance(value, (int, float)) else "a string"
            if isinstance(value, str) else "an array" if isinstance(value, list)
            else "an object" if isinstance(value, dict) else type(value).__name__)
    text = json.dumps(value, default=repr)
    return f"{text if len(text) <= 80 else text[:77] + '...'} ({kind})"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_STR = (lambda v: isinstance(v, str), "a string")
_POS_INT = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
_BOOL = (lambda v: isinstance(v, bool), "true or false")
_NUM = (_is_number, "a number")
_OPT_STR = (lambda v: v is None or isinstance(v, str), "a string or null")
_OPT_NUM = (lambda v: v is None or _is_number(v), "a number or null")

#: The config fields a re-run needs (all written by initdiag.probe), with their JSON types. A
#: missing field would silently take probe's default on a re-run (e.g. width 256) and show up as
#: drift instead of as a malformed file. "width" (an integer or one per layer) is checked apart.
CONFIG_FIELDS: dict[str, tuple[Any, str]] = {
    "activation": _STR, "init": _STR, "bias_init": _STR, "depth": _POS_INT, "width": None,
    "input_width": _POS_INT, "batch": _POS_INT, "use_bias": _BOOL, "norm": _OPT_STR,
    "residual": _OPT_NUM, "input": _STR, "loss": _STR, "saturation_threshold": _NUM,
    "dtype": _STR,
}
_WIDTH = "an integer >= 1 or an array of depth integers >= 1"
_SPECIALS = ("NaN", "Infinity", "-Infinity")


def _check_config(where: str, config: Any) -> int:
    """Check ``config`` (of ``results[i]``); returns its depth. ValueError naming the field."""
    if not isinstance(config, dict):
        raise ValueError(f"{where}.config is {_shown(config)}; expected an object")
    for field, spec in CONFIG_FIELDS.items():
        if field not in config:
            expected = _WIDTH if field == "width" else spec[1]
            raise ValueError(f"{where}.config has no {field!r} (needed to re-run the probe); "
                             f"expected {expected}")
        if spec is not None and not spec[0](config[field]):
            raise ValueError(f"{where}.config[{field!r}] is {_shown(config[field])}; "
                             f"expected {spec[1]}")
    depth, width = config["depth"], config["width"]
    if not (_POS_INT[0](width) or (isinstance(width, list) and len(width) == depth
                                   and all(_POS_INT[0](w) for w in width))):
        raise ValueError(f"{where}.config['width'] is {_shown(width)}; expected "
                         f"{_WIDTH.replace('depth', f'depth ({depth})')}")
    return depth


def _check_metrics(where: str, metrics: Any, depth: int) -> None:
    """Every metric is an array of ``depth`` numbers (or NaN/Infinity strings); no booleans."""
    if not isinstance(metrics, dict):
        raise ValueError(f"{where}.metrics is {_shown(metrics)}; expected an object")
    for name, values in metrics.items():
        if not isinstance(values, list):
            raise ValueError(f"{where}.metrics[{name!r}] is {_shown(values)}; expected an array "
                             f"of {depth} numbers (one per layer)")
        if len(values) != depth:
            raise ValueError(f"{where}.metrics[{name!r}] has {len(values)} values; the config's "
                             f"depth is {depth} (one value per layer)")
        for j, v in enumerate(values):
            if not (_is_number(v) or v in _SPECIALS):
                raise ValueError(f"{where}.metrics[{name!r}][{j}] (layer {j + 1}) is "
                                 f"{_shown(v)}; expected a number or one of "
                                 f"{', '.join(json.dumps(x) for x in _SPECIALS)}")


def _check_entry(i: int, e: Any) -> None:
    """Check ``results[i]``: config (every field a re-run needs), integer seed, metrics."""
    where = f"results[{i}]"
    if not isinstance(e, dict):
        raise ValueError(f"{where} is {_shown(e)}; expected an object")
    for key in ("config", "seed", "metrics"):
        if key not in e:
            raise ValueError(f"{where} has no {key!r}")
    depth = _check_config(where, e["config"])
    if not _is_int(e["seed"]):
        raise ValueError(f"{where}.seed is {_shown(e['seed'])}; expected an integer")
    _check_metrics(where, e["metrics"], depth)


def check_document(doc: dict[str, Any]) -> None:
    """Check the body of a baseline document (after its schema and version).

    Raises:
      ValueError: a field is missing or of the wrong type; the message names the field (e.g.
        ``results[0].config['depth']``), its value and JSON type, and what is expected.
    """
    if doc.get("kind") not in ("probe", "sweep"):
        raise ValueError(f"'kind' is {_shown(doc.get('kind'))}; expected \"probe\" or \"sweep\"")
    if not isinstance(doc.get("environment", {}), dict):
        raise ValueError(f"'environment' is {_shown(doc['environment'])}; expected an object")
    entries = doc.get("results")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"'results' is {_shown(entries)}; expected a non-empty array")
    for i, e in enumerate(entries):
        _check_entry(i, e)
    if doc["kind"] == "probe" and len(entries) != 1:
        raise ValueError(f"kind 'probe' holds {len(entries)} results; expected 1")


def load_baseline(path: str | os.PathLike) -> Results:
    """Read a baseline written by :func:`save_baseline`.

    Returns:
      A ProbeResult (baseline of one probe) or a SweepResult; the environment the baseline was
      made in is in ``.meta["environment"]``.

    Raises:
      BaselineError: the file is missing, not valid JSON (truncated, corrupted), not a baseline
        (e.g. a results file), of another schema version, or malformed; the message names the
        file and the problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BaselineError(f"{path}: no such baseline file. Create it with "
                            f"initdiag.save_baseline(result, {str(path)!r}) or "
                            f"`initdiag check {path} --update [probe options]`.") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise BaselineError(f"{path}: cannot be read as a baseline ({e})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise BaselineError(f"{path}: not valid JSON, the file is truncated or corrupted "
                            f"({e.msg}: line {e.lineno} column {e.colno}); restore it from "
                            f"version control or regenerate it") from None
    if not isinstance(doc, dict) or "schema" not in doc:
        raise BaselineError(f"{path}: not an initdiag baseline (no 'schema' field; expected "
                            f"schema {SCHEMA!r})")
    if doc["schema"] != SCHEMA:
        hint = (" It is a results file: make a baseline of it with "
                "initdiag.save_baseline(initdiag.load(path), new_path).") \
            if doc["schema"] == "initdiag.results" else ""
        raise BaselineError(f"{path}: schema {doc['schema']!r} is not a baseline (expected "
                            f"{SCHEMA!r}).{hint}")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BaselineError(f"{path}: baseline schema_version {version!r} is not supported; "
                            f"this initdiag (made by {doc.get('initdiag', '?')!s}) reads version "
                            f"{SCHEMA_VERSION}. Regenerate the baseline with this initdiag "
                            f"(`initdiag check {path} --update` with its probe options, or "
                            f"`pytest --initdiag-update` for a pytest fixture's baseline).")
    try:
        check_document(doc)
        results = [ProbeResult.from_dict(e) for e in doc["results"]]
    except (KeyError, TypeError, ValueError) as e:
        raise BaselineError(f"{path}: malformed baseline: {e}") from None
    env = dict(doc.get("environment") or {})
    for r in results:
        r.meta["environment"] = env
    if doc["kind"] == "probe":
        return results[0]
    return SweepResult(results, {"environment": env})


def as_results(obj: Any, role: str) -> Results:
    """A ProbeResult/SweepResult as given, or the baseline loaded from a path."""
    if isinstance(obj, (ProbeResult, SweepResult)):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return load_baseline(obj)
    raise TypeError(f"{role} must be a ProbeResult, a SweepResult or a baseline path; "
                    f"got {type(obj).__name__}")

