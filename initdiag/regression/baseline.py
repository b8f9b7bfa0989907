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
needs (:data:`initdiag.config.RERUN_FIELDS`, with its JSON type), seeds are integers and metric values numbers
(``true`` is not a number), and the message names the file, the field, its value and type.
:func:`save_baseline` refuses to write a file that this check would refuse.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from initdiag.config import shown
from initdiag.fileio import atomic_write_text
from initdiag.results import ProbeResult, SweepResult, check_entry, check_keys

SCHEMA = "initdiag.baseline"
SCHEMA_VERSION = 1

Results = ProbeResult | SweepResult


class BaselineError(ValueError):
    """A baseline file that cannot be used: the message names the file and the problem."""


def probe_list(results: Any) -> list[ProbeResult]:
    """The probes of ``results``: ``[results]`` for a ProbeResult, the results of a SweepResult
    (or of any iterable of ProbeResults) in order."""
    return [results] if isinstance(results, ProbeResult) else list(results)


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
    from initdiag.version import __version__

    from initdiag.regression import model as model_mod

    from initdiag.regression import train as train_mod

    if model_mod.is_model(result) or train_mod.is_train(result):
        mod = model_mod if model_mod.is_model(result) else train_mod
        kind, entries, meta = mod.document(result)
        if not entries:
            raise ValueError(f"cannot save an empty {type(result).__name__} as a baseline")
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "kind": kind,
                "initdiag": __version__, "environment": dict(meta.get("environment", {})),
                "results": entries}
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
      TypeError: ``result`` is not a ProbeResult, SweepResult, ModelResult, ModelSweep,
        TrainResult or TrainSweep (model results: :mod:`initdiag.regression.model`; training
        runs: :mod:`initdiag.regression.train`).
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


def check_document(doc: dict[str, Any]) -> None:
    """Check the body of a baseline document (after its schema and version).

    Raises:
      ValueError: a field is missing or of the wrong type; the message names the field (e.g.
        ``results[0].config['depth']``), its value and JSON type, and what is expected.
    """
    from initdiag.regression import model as model_mod
    from initdiag.regression import train as train_mod

    kind = doc.get("kind")
    if not (isinstance(kind, str)
            and kind in ("probe", "sweep") + model_mod.MODEL_KINDS + train_mod.TRAIN_KINDS):
        raise ValueError(f"'kind' is {shown(kind)}; expected \"probe\" or \"sweep\" "
                         f"(\"model\" or \"model_sweep\" for a probe_fn baseline, \"train\" or "
                         f"\"train_sweep\" for training runs)")
    check_keys("the document", doc, ("schema", "schema_version", "kind", "results"),
               ("initdiag", "environment"))
    if not isinstance(doc.get("environment", {}), dict):
        raise ValueError(f"'environment' is {shown(doc['environment'])}; expected an object")
    if not isinstance(doc.get("initdiag", ""), str):
        raise ValueError(f"'initdiag' is {shown(doc['initdiag'])}; expected a string (the "
                         f"version that wrote the baseline)")
    if doc["kind"] in model_mod.MODEL_KINDS:
        return model_mod.check_document(doc)
    if doc["kind"] in train_mod.TRAIN_KINDS:
        return train_mod.check_document(doc)
    entries = doc.get("results")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"'results' is {shown(entries)}; expected a non-empty array")
    for i, e in enumerate(entries):
        check_entry(f"results[{i}]", e, baseline=True)
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
    except UnicodeDecodeError as e:
        raise BaselineError(f"{path}: not a baseline: not UTF-8 text ({e.reason} at byte "
                            f"{e.start})") from None
    except OSError as e:
        raise BaselineError(f"{path}: cannot be read as a baseline ({e.strerror or e})") from None
    try:
        doc = json.loads(text)
    except RecursionError:
        raise BaselineError(f"{path}: not a baseline: JSON nested too deep") from None
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
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise BaselineError(f"{path}: baseline schema_version {version!r} is not supported; "
                            f"this initdiag (made by {doc.get('initdiag', '?')!s}) reads version "
                            f"{SCHEMA_VERSION}. Regenerate the baseline with this initdiag "
                            f"(`initdiag check {path} --update` with its probe options, or "
                            f"`pytest --initdiag-update` for a pytest fixture's baseline).")
    from initdiag.regression import model as model_mod
    from initdiag.regression import train as train_mod

    try:
        check_document(doc)
        if doc["kind"] in model_mod.MODEL_KINDS:
            return model_mod.from_document(doc, dict(doc.get("environment") or {}))
        if doc["kind"] in train_mod.TRAIN_KINDS:
            return train_mod.from_document(doc, dict(doc.get("environment") or {}))
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
    """A ProbeResult/SweepResult (or ModelResult/ModelSweep, TrainResult/TrainSweep) as given,
    or the baseline loaded from a path."""
    from initdiag.model.result import ModelResult, ModelSweep
    from initdiag.train.result import TrainResult, TrainSweep

    if isinstance(obj, (ProbeResult, SweepResult, ModelResult, ModelSweep, TrainResult,
                        TrainSweep)):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return load_baseline(obj)
    raise TypeError(f"{role} must be a ProbeResult, a SweepResult or a baseline path; "
                    f"got {type(obj).__name__}")

