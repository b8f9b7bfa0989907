"""Loaders and configs under fuzzing: every file initdiag reads -- results (stack and model,
:func:`initdiag.load`), baselines (stack and model, :func:`initdiag.load_baseline`) and the CLI's
TOML config (``initdiag report --config``) -- fed truncated, mutated, wrong-typed and garbage
files, answers with its own error (:class:`initdiag.ResultsFileError`,
:class:`initdiag.BaselineError`, a ValueError naming the config file: exit status 2 and one line
on the command line) naming the file and the field; or, when what it was fed is still a valid
file, loads exactly what the file says (written back, it is the same document).

Two kinds of case: hypothesis mutations of valid documents (replace any value by any JSON value,
change its type, delete a key or an item, add an unknown key, truncate the text, overwrite
bytes) and a table of hand-written cases (a missing field, a wrong type at each level, a string
for a number, a list for an object, NaN as a string, a negative depth, an unknown metric,
truncated JSON, an empty file, binary garbage, a folder, a file that is not UTF-8).

The checkpoint reader of ``initdiag.sweep(..., checkpoint=...)`` (issue 13, part 1) plugs in as
one more entry of :data:`LOADERS` (a valid checkpoint document, its error class and how a loaded
checkpoint is written back) and one more row per hand-written case of :data:`CASES`; a torn last
line is its own case there (dropped, never loaded).
"""

import copy
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import initdiag
from initdiag import cli
from initdiag.cli import options
from initdiag.cli.report import REPORT_KEYS
from initdiag.jsonvalues import encode
from initdiag.model.result import ModelResult, ModelSweep
from initdiag.regression.baseline import baseline_document

from conftest import examples

# --- valid documents, made by hand (no probing: these tests compile nothing) ----------------------


def _stack_results():
    rng = np.random.default_rng(0)
    out = []
    for seed, width in ((0, 4), (1, [4, 3, 2])):
        config = initdiag.ProbeConfig(activation="tanh", init="he_normal", depth=3, width=width,
                                      input_width=4, batch=2, histograms=True,
                                      hist_bins=2).resolved()
        values = {m: rng.normal(size=3) for m in initdiag.METRICS}
        values["saturation"][1] = math.nan
        values["act_var"][2] = math.inf
        hists = {"act_hist": np.array([[1, 7], [8, 0], [2, 2]]), "act_edges": np.array([-1., 0, 1]),
                 "grad_hist": np.array([[3, 5], [0, 8], [4, 0]]),
                 "grad_edges": np.array([-45., -20, 5])}
        out.append(initdiag.ProbeResult(config=config, seed=seed, values=values, histograms=hists,
                                        scalars={"loss": 0.25},
                                        meta={"timing": {"run_s": 0.5}, "note": [1, "x"]}))
    return out


def _model_results():
    sites = ("[0]", "[0]/relu", "[1]")
    out = []
    for init in ("he_normal", "zeros"):
        values = {m: np.array([0.5, math.nan, 2.0]) for m in ("mean", "var", "zero_frac",
                                                              "grad_rms")}
        rows = ({"path": "[0]", "shape": (4, 3), "role": "dense", "fan_in": 4.0, "fan_out": 3.0,
                 "weight_norm": 1.5, "grad_norm": 0.5, "grad_weight_ratio": 1 / 3},
                {"path": "[1]", "shape": (3,), "role": "other", "fan_in": math.nan,
                 "fan_out": math.nan, "weight_norm": 0.0, "grad_norm": 0.1,
                 "grad_weight_ratio": math.nan})
        out.append(ModelResult(config={"model": "mlp", "init": init, "batch": 2}, seed=0,
                               sites=sites, kinds=("dense", "activation", "dense"),
                               activations=(None, "relu", None), values=values, param_rows=rows,
                               site_params=("[0]", None, "[1]"),
                               skipped=({"construct": "while", "reason": "loop"},),
                               scalars={"loss": -1.0}, meta={"timing": {"probe_s": 0.1}}))
    return out


def _train_results():
    """A stack run (depth 3, 4 steps, diverged at step 3, snapshots at 0 and 2) and a
    ``train_fn`` run (two weight leaves), by hand."""
    from initdiag.train.config import TrainConfig
    from initdiag.train.result import TrainResult

    rng = np.random.default_rng(2)
    stack = _stack_results()[0]
    loss = np.array([2.3, 1.9, math.nan, math.nan])
    runs = [TrainResult(config=stack.config, train=TrainConfig(steps=4, snapshots=(0, 2)),
                        seed=0, curves={"loss": loss, "accuracy": np.array([.1, .2, math.nan,
                                                                            math.nan]),
                                        "grad_preact_rms": rng.random((4, 3)),
                                        "update_ratio": np.full((4, 3), 1e-3)},
                        scalars={"test_loss": math.nan, "test_accuracy": math.nan},
                        diverged_at=3, snapshots={0: stack, 2: _stack_results()[0]},
                        meta={"timing": {"train_s": 1.5}}),
            TrainResult(config={"model": "mlp", "init": "he_normal", "batch": 2},
                        train=TrainConfig(task="teacher", steps=2, optimizer="adam", lr=0.01,
                                          snapshots=(0,)),
                        seed=1, curves={"loss": np.array([1.0, 0.5]),
                                        "update_ratio": np.array([[1e-3, 2e-3], [0.5, math.inf]])},
                        scalars={"test_loss": 0.25}, layers=("w1", "w2"),
                        snapshots={0: _model_results()[0]})]
    return runs


def _results_doc(obj):
    """The document ``to_json`` writes for ``obj``."""
    if isinstance(obj, initdiag.TrainResult):
        return {"schema": "initdiag.results", "schema_version": 1, "kind": "train",
                "results": [obj.to_dict()]}
    if isinstance(obj, (initdiag.ProbeResult, ModelResult)):
        kind = "probe" if isinstance(obj, initdiag.ProbeResult) else "model"
        return {"schema": "initdiag.results", "schema_version": 1, "kind": kind,
                "results": [obj.to_dict()]}
    return {"schema": "initdiag.results", "schema_version": 1, **obj.to_dict()}


def _baseline_doc(obj):
    doc = baseline_document(obj)
    doc.pop("initdiag")  # the version of the initdiag that reads it: not data of the file
    return doc


def _normalized(doc, kind_of_file):
    """A document as its loader should read it back: optional keys at their defaults, the
    informational ``initdiag`` version of a baseline dropped."""
    doc = copy.deepcopy(doc)
    if not isinstance(doc, dict):
        return doc
    doc.pop("initdiag", None)
    if kind_of_file == "baseline":
        doc.setdefault("environment", {})
    if doc.get("kind") in ("sweep", "model_sweep", "train_sweep") and kind_of_file == "results":
        doc.setdefault("meta", {})
    for e in doc.get("results", []):
        if not isinstance(e, dict):
            continue
        if doc.get("kind") in ("train", "train_sweep"):
            for key, default in (("scalars", {}), ("diverged_at", None), ("layers", None),
                                 ("snapshots", []), ("meta", {})):
                e.setdefault(key, default)
            if isinstance(e.get("train"), dict):  # a field the file lacks takes its default
                from initdiag.train.config import TrainConfig

                e["train"] = {**TrainConfig().to_dict(), **e["train"]}
            model = e.get("model")
            for s in e["snapshots"] if isinstance(e["snapshots"], list) else ():
                if isinstance(s, dict) and isinstance(s.get("result"), dict):
                    _normalize_entry(s["result"], "model" if model else "probe", kind_of_file)
            continue
        _normalize_entry(e, doc.get("kind"), kind_of_file)
    return doc


def _normalize_entry(e, kind, kind_of_file):
    if kind in ("model", "model_sweep"):
        for key in ("params", "skipped"):
            e.setdefault(key, [])
        if e.get("site_params") == []:
            del e["site_params"]
    elif kind_of_file == "results":
        e.setdefault("histograms", {})
    e.setdefault("scalars", {})
    if kind_of_file == "results":
        e.setdefault("meta", {})


def same_json(a, b):
    """Equal JSON values, a number equal to a number of the other type (3 and 3.0), ``true``
    never equal to 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b) or (isinstance(a, float) and isinstance(b, float)
                                        and math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


# --- the loaders -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Loader:
    """One file reader under test: how it is called, the error it answers with, a valid
    document, and the document a loaded object is written back as."""

    name: str
    load: Callable[[Path], Any]
    error: type
    valid: Callable[[], dict]
    written: Callable[[Any], dict]
    file_kind: str  # "results" or "baseline": which optional keys exist (see _normalized)


LOADERS = {
    "results-sweep": Loader("results-sweep", initdiag.load, initdiag.ResultsFileError,
                            lambda: _results_doc(initdiag.SweepResult(_stack_results(),
                                                                      {"made": "by hand"})),
                            _results_doc, "results"),
    "results-probe": Loader("results-probe", initdiag.load, initdiag.ResultsFileError,
                            lambda: _results_doc(_stack_results()[1]), _results_doc, "results"),
    "model-results": Loader("model-results", initdiag.load, initdiag.ResultsFileError,
                            lambda: _results_doc(ModelSweep(_model_results(), {"compiled": 1})),
                            _results_doc, "results"),
    "baseline": Loader("baseline", initdiag.load_baseline, initdiag.BaselineError,
                       lambda: _baseline_doc(initdiag.SweepResult(_stack_results())),
                       _baseline_doc, "baseline"),
    "model-baseline": Loader("model-baseline", initdiag.load_baseline, initdiag.BaselineError,
                             lambda: _baseline_doc(ModelSweep(_model_results())),
                             _baseline_doc, "baseline"),
    "train-results": Loader("train-results", initdiag.load, initdiag.ResultsFileError,
                            lambda: _results_doc(initdiag.TrainSweep(_train_results(),
                                                                     {"made": "by hand"})),
                            _results_doc, "results"),
    "train-baseline": Loader("train-baseline", initdiag.load_baseline, initdiag.BaselineError,
                             lambda: _baseline_doc(initdiag.TrainSweep(_train_results())),
                             _baseline_doc, "baseline"),
    # The checkpoint reader's records are checked by the same check_entry functions; its own
    # cases (torn last line, corrupt line, another sweep's header, a malformed record) are in
    # tests/test_checkpoint.py.
}


def _location(path):
    """How an error names the place of a change at ``path`` (a tuple of keys and indices):
    ``results[1]`` inside an entry, else the top-level key; None for a change of ``kind`` (to
    another kind: the entries are then named by what they lack for it)."""
    if len(path) >= 2 and path[0] == "results" and isinstance(path[1], int):
        return f"results[{path[1]}]"
    return None if path[0] == "kind" else str(path[0])


def check_answer(loader, file, doc_or_none, where=None):
    """Load ``file``: either the loader's error, one line naming the file (and ``where``, the
    place of the change), or -- the file was still valid -- an object written back as exactly
    ``doc_or_none`` (None: the text is not a JSON document, so it must be refused)."""
    try:
        obj = loader.load(file)
    except loader.error as e:
        msg = str(e)
        assert msg.startswith(f"{file}: "), msg
        assert "\n" not in msg, msg
        if where is not None:
            assert where in msg, (where, msg)
        return None
    assert doc_or_none is not None, f"{loader.name}: loaded a file that is not a document"
    back = _normalized(loader.written(obj), loader.file_kind)
    # a number beyond float64 (1e999: bytes overwritten in an exponent) reads as infinity
    want = _normalized(encode(doc_or_none), loader.file_kind)
    assert same_json(back, want), (f"{loader.name} loaded something else than the file says",
                                   json.dumps(want)[:3000], json.dumps(back)[:3000])
    return obj


def test_the_valid_documents_load_and_write_back_as_they_are(tmp_path):
    for loader in LOADERS.values():
        doc = loader.valid()
        file = tmp_path / f"{loader.name}.json"
        file.write_text(json.dumps(doc))
        assert check_answer(loader, file, doc) is not None, loader.name


# --- hypothesis: mutations of a valid document ------------------------------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6),
                    st.sampled_from(["NaN", "Infinity", "-Infinity", "nan", "inf", "1.5", "",
                                     "tanh", "he_normal", "layernorm", "float32", "probe"]))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=6)


def _paths(value, prefix=()):
    """The path (keys and indices) of every value inside ``value``."""
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    for k, v in items:
        yield prefix + (k,)
        yield from _paths(v, prefix + (k,))


def _retyped(value, draw):
    """``value`` as a related value of another JSON type."""
    options = [str(value), [value], {"value": value}, None, not value if isinstance(value, bool)
               else True]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        options += [float(value) + 0.5, -value - 1, int(value) if value == int(value) else 0]
    if isinstance(value, str):
        options += [value.upper(), value + "x", 1.0]
    if isinstance(value, list):
        options += [value[:-1], value + value[-1:], {str(i): v for i, v in enumerate(value)}]
    if isinstance(value, dict):
        options += [list(value.values()), list(value)]
    return draw(st.sampled_from(options))


@st.composite
def mutations(draw, doc):
    """``(mutated doc, path)``: one value of ``doc`` replaced by any JSON value or retyped, a
    key or an item deleted, or an unknown key or an item added; ``path`` locates the change
    (for a key added, the new key)."""
    doc = copy.deepcopy(doc)
    path = draw(st.sampled_from(sorted(_paths(doc), key=repr)))
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    op = draw(st.sampled_from(["replace", "retype", "delete", "add"]))
    if op == "replace":
        parent[key] = draw(JSON_VALUES)
    elif op == "retype":
        parent[key] = _retyped(parent[key], draw)
    elif op == "delete":
        del parent[key]
        if isinstance(parent, list):  # the list is one shorter: named as a whole
            path = path[:-1]
    elif isinstance(parent, dict):
        new = draw(st.text("abxyz_", min_size=1, max_size=6).filter(lambda k: k not in parent))
        parent[new] = draw(JSON_VALUES)
        path = path[:-1] + (new,)
    else:
        parent.insert(key, draw(JSON_VALUES))
        path = path[:-1]  # the list is one longer: named as a whole
    return doc, path


@settings(max_examples=examples(60))
@given(name=st.sampled_from(sorted(LOADERS)), data=st.data())
def test_a_mutated_document_is_refused_by_field_or_loaded_as_it_says(name, data, tmp_path_factory):
    loader = LOADERS[name]
    doc, path = data.draw(mutations(loader.valid()), label="mutation")
    file = tmp_path_factory.mktemp("m") / "f.json"
    file.write_text(json.dumps(doc))
    check_answer(loader, file, doc, where=_location(path))


@settings(max_examples=examples(40))
@given(name=st.sampled_from(sorted(LOADERS)), data=st.data())
def test_truncated_or_overwritten_bytes_are_refused_or_loaded_as_they_say(name, data,
                                                                         tmp_path_factory):
    loader = LOADERS[name]
    text = json.dumps(loader.valid(), indent=data.draw(st.sampled_from([None, 1]))).encode()
    if data.draw(st.booleans(), label="truncate"):
        text = text[:data.draw(st.integers(0, len(text) - 1), label="cut")]
    else:
        at = data.draw(st.integers(0, len(text) - 1), label="at")
        text = text[:at] + data.draw(st.binary(min_size=1, max_size=4), label="bytes") + \
            text[at + 1:]
    file = tmp_path_factory.mktemp("b") / "f.json"
    file.write_bytes(text)
    try:
        doc = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        doc = None
    check_answer(loader, file, doc)


# --- the hand-written table --------------------------------------------------------------------------

def _set(path, value):
    def edit(doc):
        d = doc
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


def _delete(path):
    def edit(doc):
        d = doc
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
    return edit


STACK = ("results-sweep", "results-probe", "baseline")
MODEL = ("model-results", "model-baseline")
#: (loaders, case, edit of the valid document, what the message must say)
CASES = [
    (STACK, "no config", _delete(("results", 0, "config")), "results[0] has no 'config'"),
    (STACK, "no seed", _delete(("results", 0, "seed")), "results[0] has no 'seed'"),
    (STACK, "no metrics", _delete(("results", 0, "metrics")), "results[0] has no 'metrics'"),
    (STACK, "no depth", _delete(("results", 0, "config", "depth")),
     "results[0].config has no 'depth'"),
    (STACK, "results an object", _set(("results",), {}), "'results' is {} (an object)"),
    (STACK, "entry a list", _set(("results", 0), []), "results[0] is [] (an array); expected an object"),
    (STACK, "config a list", _set(("results", 0, "config"), []),
     "results[0].config is [] (an array); expected an object"),
    (STACK, "metrics a list", _set(("results", 0, "metrics"), []),
     "results[0].metrics is [] (an array); expected an object"),
    (STACK, "depth a string", _set(("results", 0, "config", "depth"), "3"),
     "results[0].config['depth'] is \"3\" (a string); expected an integer >= 1"),
    (STACK, "negative depth", _set(("results", 0, "config", "depth"), -3),
     "results[0].config['depth'] is -3 (a number); expected an integer >= 1"),
    (STACK, "depth NaN as a string", _set(("results", 0, "config", "depth"), "NaN"),
     "results[0].config['depth'] is \"NaN\" (a string)"),
    (("results-sweep", "baseline"), "depth not the metrics' length",
     _set(("results", 0, "config", "depth"), 4),
     "results[0].metrics['preact_mean'] has 3 values; the config's depth is 4"),
    (("results-probe",), "depth not the widths' length", _set(("results", 0, "config", "depth"), 4),
     "results[0].config['width'] is [4, 3, 2] (an array); expected an integer >= 1 or an array "
     "of depth (4)"),
    (STACK, "seed a string", _set(("results", 0, "seed"), "0"),
     "results[0].seed is \"0\" (a string); expected an integer"),
    (STACK, "seed a float", _set(("results", 0, "seed"), 0.5),
     "results[0].seed is 0.5 (a number); expected an integer"),
    (STACK, "seed true", _set(("results", 0, "seed"), True), "results[0].seed is true (a boolean)"),
    (STACK, "metric a string", _set(("results", 0, "metrics", "act_var"), "NaN"),
     "results[0].metrics['act_var'] is \"NaN\" (a string); expected an array of 3 numbers"),
    (STACK, "lowercase nan", _set(("results", 0, "metrics", "act_var", 1), "nan"),
     "results[0].metrics['act_var'][1] (layer 2) is \"nan\" (a string); expected a number or one of"),
    (STACK, "number as a string", _set(("results", 0, "metrics", "act_var", 0), "1.5"),
     "results[0].metrics['act_var'][0] (layer 1) is \"1.5\" (a string)"),
    (STACK, "metric value true", _set(("results", 0, "metrics", "act_var", 0), True),
     "results[0].metrics['act_var'][0] (layer 1) is true (a boolean)"),
    (STACK, "metric an object", _set(("results", 0, "metrics", "act_var"), {"1": 1.0}),
     "results[0].metrics['act_var'] is {\"1\": 1.0} (an object)"),
    (STACK, "metric nested", _set(("results", 0, "metrics", "act_var"), [[1.0], [2.0], [3.0]]),
     "results[0].metrics['act_var'][0] (layer 1) is [1.0] (an array)"),
    (STACK, "metric too short", _set(("results", 0, "metrics", "act_var"), [1.0]),
     "results[0].metrics['act_var'] has 1 values; the config's depth is 3"),
    (STACK, "unknown metric", _set(("results", 0, "metrics", "act_varr"), [1.0, 2.0, 3.0]),
     "results[0].metrics has metric(s) 'act_varr' unknown to this initdiag"),
    (STACK, "unknown config field", _set(("results", 0, "config", "dropout"), 0.1),
     "results[0].config has field(s) 'dropout' unknown to this initdiag"),
    (STACK, "unknown norm", _set(("results", 0, "config", "norm"), "groupnorm"),
     "results[0].config['norm'] is \"groupnorm\" (a string); expected one of \"batchnorm\", "
     "\"layernorm\" or null"),
    (STACK, "activation a number", _set(("results", 0, "config", "activation"), 3),
     "results[0].config['activation'] is 3 (a number); expected a string"),
    (STACK, "scalar a string", _set(("results", 0, "scalars", "loss"), "low"),
     "results[0].scalars['loss'] is \"low\" (a string); expected a number"),
    (STACK, "scalars a list", _set(("results", 0, "scalars"), [1.0]),
     "results[0].scalars is [1.0] (an array); expected an object"),
    (STACK, "unknown entry key", _set(("results", 0, "scalarz"), {}),
     "results[0] has key(s) 'scalarz' unknown to this initdiag"),
    (STACK, "unknown top-level key", _set(("extra",), 1),
     "the document has key(s) 'extra' unknown to this initdiag"),
    (STACK, "unknown kind", _set(("kind",), "sweeps"), "'kind' is \"sweeps\" (a string)"),
    (("results-sweep", "results-probe"), "histogram counts as floats",
     _set(("results", 0, "histograms", "act_hist", 0), [1.5, 6.5]),
     "results[0].histograms['act_hist'][0] (layer 1) is [1.5, 6.5] (an array); expected 2 counts"),
    (("results-sweep", "results-probe"), "histogram without edges",
     _delete(("results", 0, "histograms", "grad_edges")),
     "results[0].histograms has 'grad_hist' without 'grad_edges'"),
    (("results-sweep",), "meta a string", _set(("meta",), "x"),
     "'meta' is \"x\" (a string); expected an object"),
    (("results-probe",), "a probe file of two results",
     lambda d: d["results"].append(copy.deepcopy(d["results"][0])),
     "'results' holds 2 results; a file of kind 'probe' holds one"),
    (("baseline",), "no width (a re-run needs it)", _delete(("results", 0, "config", "width")),
     "results[0].config has no 'width' (needed to re-run the probe)"),
    (("baseline",), "histograms in a baseline", _set(("results", 0, "histograms"), {}),
     "results[0] has key(s) 'histograms' unknown to this initdiag"),
    (("baseline", "model-baseline"), "version a number", _set(("initdiag",), 1),
     "'initdiag' is 1 (a number); expected a string"),
    (MODEL, "no sites", _delete(("results", 0, "sites")), "results[0] has no 'sites'"),
    (MODEL, "kinds too short", _set(("results", 0, "kinds"), ["dense"]),
     "results[0].kinds is [\"dense\"] (an array); expected an array of 3 names (one per site)"),
    (MODEL, "site name a number", _set(("results", 1, "sites", 0), 0),
     "results[1].sites is [0, \"[0]/relu\", \"[1]\"] (an array); expected an array of names"),
    (MODEL, "unknown model metric", _set(("results", 0, "metrics", "varr"), [1, 2, 3]),
     "results[0].metrics has metric(s) 'varr' unknown to this initdiag"),
    (MODEL, "model metric value a string", _set(("results", 0, "metrics", "var", 2), "2"),
     "results[0].metrics['var'][2] (site '[1]') is \"2\" (a string)"),
    (MODEL, "param row without grad_norm", _delete(("results", 0, "params", 1, "grad_norm")),
     "results[0].params[1] has no 'grad_norm'"),
    (MODEL, "param shape a string", _set(("results", 0, "params", 0, "shape"), "4x3"),
     "results[0].params[0].shape is \"4x3\" (a string); expected an array of integers >= 0"),
    (MODEL, "config without model", _delete(("results", 0, "config", "model")),
     "results[0].config['model'] is null (null); expected a string"),
    (("model-results",), "model meta a list", _set(("results", 0, "meta"), []),
     "results[0].meta is [] (an array); expected an object"),
]


@pytest.mark.parametrize("name, case, edit, message",
                         [(n, c, e, m) for names, c, e, m in CASES for n in names],
                         ids=[f"{n}-{c}" for names, c, _, _ in CASES for n in names])
def test_hand_written_bad_documents_are_named(tmp_path, name, case, edit, message):
    loader = LOADERS[name]
    doc = loader.valid()
    edit(doc)
    file = tmp_path / "f.json"
    file.write_text(json.dumps(doc))
    with pytest.raises(loader.error) as e:
        loader.load(file)
    assert str(e.value).startswith(f"{file}: ") and "\n" not in str(e.value)
    assert message in str(e.value)


#: (case, what the file holds, what the message must say: results loader, baseline loader)
FILES = [
    ("empty file", b"", "not valid JSON", "not valid JSON"),
    ("truncated JSON", b'{"schema": "initdiag.results", "schema_version": 1, "res',
     "not valid JSON", "not valid JSON"),
    ("binary garbage", bytes(range(256)) * 3, "not UTF-8 text", "not UTF-8 text"),
    ("not UTF-8", '{"schema": "initdiag.résultats"}'.encode("latin-1"), "not UTF-8 text",
     "not UTF-8 text"),
    ("a JSON number", b"3", "not an initdiag results file", "not an initdiag baseline"),
    ("a JSON list", b"[]", "not an initdiag results file", "not an initdiag baseline"),
    ("NaN as the document", b"NaN", "not an initdiag results file", "not an initdiag baseline"),
    ("nested too deep", b"[" * 100_000 + b"]" * 100_000, "nested too deep", "nested too deep"),
    ("schema_version true", b'{"schema": "initdiag.results", "schema_version": true}',
     "schema_version True is not supported", "is not a baseline"),
]


@pytest.mark.parametrize("case, content, results_msg, baseline_msg", FILES,
                         ids=[f[0] for f in FILES])
def test_files_that_are_not_documents_are_named(tmp_path, case, content, results_msg,
                                                baseline_msg):
    file = tmp_path / "f.json"
    file.write_bytes(content)
    for load, error, message in ((initdiag.load, initdiag.ResultsFileError, results_msg),
                                 (initdiag.load_baseline, initdiag.BaselineError, baseline_msg)):
        with pytest.raises(error) as e:
            load(file)
        assert str(e.value).startswith(f"{file}: ") and message in str(e.value)
        assert "\n" not in str(e.value)


def test_a_folder_a_missing_file_and_an_unreadable_file_are_named(tmp_path, monkeypatch):
    unreadable = tmp_path / "secret.json"
    unreadable.write_text("{}")
    read_text = Path.read_text

    def refuse(self, *args, **kwargs):  # as chmod 0 would, also for root
        if self == unreadable:
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse)
    cases = [(tmp_path, "cannot be read (Is a directory)",
              "cannot be read as a baseline (Is a directory)"),
             (tmp_path / "nope.json", "no such file", "no such baseline file"),
             (unreadable, "cannot be read (Permission denied)",
              "cannot be read as a baseline (Permission denied)")]
    for file, results_msg, baseline_msg in cases:
        with pytest.raises(initdiag.ResultsFileError, match=re.escape(results_msg)) as e:
            initdiag.load(file)
        assert str(e.value).startswith(f"{file}: ")
        with pytest.raises(initdiag.BaselineError, match=re.escape(baseline_msg)) as e:
            initdiag.load_baseline(file)
        assert str(e.value).startswith(f"{file}: ")


def test_a_bad_baseline_exits_2_on_the_command_line_with_one_line(tmp_path, capsys):
    file = tmp_path / "b.json"
    doc = LOADERS["baseline"].valid()
    doc["results"][0]["metrics"]["act_var"][0] = "1.5"
    file.write_text(json.dumps(doc))
    assert cli.main(["check", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"initdiag: error: {file}: malformed baseline: results[0].metrics"
                          f"['act_var'][0] (layer 1) is \"1.5\" (a string)")


# --- the TOML config of `initdiag report --config` ----------------------------------------------------

VALID_TOML = ('activations = ["tanh", "relu"]\ninits = "he_normal,orthogonal"\ndepth = 3\n'
              'width = [4, 8]\nbatch = 2\nseeds = [0, 4294967295]\nbias-init = "zeros"\n'
              'no_bias = true\nnorm = "layernorm"\nresidual = 0.5\ninput = "uniform"\n'
              'loss = "half_mse"\nsaturation_threshold = 0.9\nremat = 2\ntitle = "t"\n'
              'out = "o"\nquiet = true\n')


def _toml(value):
    """A Python value written as TOML (strings as JSON strings, which TOML reads alike)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


TOML_VALUES = st.recursive(
    st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(), st.text(max_size=6),
              st.sampled_from(["tanh", "he_normal", "none", "layernorm", "half_mse", "uniform",
                               "4,8", "0", "-1", "1.5", "nan"])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=2),
    max_leaves=4)
KEYS = options.config_keys(REPORT_KEYS)


def check_config_values(values):
    """What read_config returns is what each key holds: lists of names or of sizes >= 1 or
    seeds in [0, 2**32 - 1], sizes >= 1, a schema field's value of its type and choices
    (finite numbers), the report's own keys of their type."""
    for key, v in values.items():
        assert key in KEYS, key
        if key in ("activations", "inits"):
            assert isinstance(v, list) and all(isinstance(x, str) for x in v)
        elif key in ("depth", "width", "seeds"):
            lo, hi = (0, 2**32 - 1) if key == "seeds" else (1, math.inf)
            assert isinstance(v, list) and all(type(x) is int and lo <= x <= hi for x in v)
        elif key in ("batch", "remat"):
            assert type(v) is int and v >= 1
        elif key in REPORT_KEYS:
            assert type(v) is REPORT_KEYS[key]
        else:
            option = {o.key: o for o in options.schema_options()}[key]
            assert option.schema.json.test(v)
            assert option.choices is None or v in option.choices
            assert not isinstance(v, float) or math.isfinite(v)


@settings(max_examples=examples(60))
@given(data=st.data())
def test_a_fuzzed_toml_config_is_refused_by_key_or_read_as_it_says(data, tmp_path_factory):
    known = data.draw(st.lists(st.sampled_from(KEYS), max_size=4, unique=True), label="keys")
    keys = known + data.draw(st.lists(st.sampled_from(["dropout", "Depth", "inits_", "x"]),
                                      max_size=1), label="unknown")
    values = {k: data.draw(TOML_VALUES, label=k) for k in keys}
    text = "".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in values.items())
    if data.draw(st.booleans(), label="from the valid file"):
        text = VALID_TOML
    if data.draw(st.booleans(), label="damage"):
        raw = text.encode()
        at = data.draw(st.integers(0, max(len(raw) - 1, 0)), label="at")
        raw = raw[:at] + data.draw(st.binary(max_size=3), label="bytes")
        file_bytes = raw
    else:
        file_bytes = text.encode()
    file = tmp_path_factory.mktemp("t") / "c.toml"
    file.write_bytes(file_bytes)
    try:
        got = options.read_config(file, REPORT_KEYS)
    except ValueError as e:
        msg = str(e)
        assert msg.startswith(f"config file {file}: ") and "\n" not in msg, msg
        return
    check_config_values(got)


def _write(tmp_path, content):
    file = tmp_path / "c.toml"
    file.write_bytes(content if isinstance(content, bytes) else content.encode())
    return file


#: (case, TOML file content, what the one-line error says after "config file <path>: ")
TOML_CASES = [
    ("unknown key", 'dropout = 0.1\n', "unknown key 'dropout'; valid keys: activations, inits"),
    ("wrong type: a string for a number", 'residual = "high"\n',
     "key 'residual' has the wrong type (str: 'high'); expected a number or null"),
    ("a list for a number", 'batch = [2]\n', "key 'batch' has the wrong type (list: [2]); expected an integer"),
    ("a table for a list", 'depth = {a = 1}\n', "key 'depth' must be a list of integers"),
    ("a float for a size", 'depth = 2.5\n', "key 'depth' must be a list of integers"),
    ("a boolean for a size", 'batch = true\n', "key 'batch' has the wrong type (bool: True)"),
    ("zero", 'batch = 0\n', "key 'batch' must hold integers >= 1; got 0"),
    ("negative depth", 'depth = [4, -3]\n', "key 'depth' must hold integers >= 1; got -3"),
    ("negative seed", 'seeds = [-1]\n', "key 'seeds' must hold integers in [0, 4294967295]; got -1"),
    ("seed beyond 32 bits", 'seeds = 4294967296\n',
     "key 'seeds' must hold integers in [0, 4294967295]; got 4294967296"),
    ("NaN", 'residual = nan\n', "key 'residual' must be a finite number; got nan"),
    ("NaN as a string", 'residual = "NaN"\n', "key 'residual' has the wrong type (str: 'NaN')"),
    ("infinity", 'saturation_threshold = inf\n', "key 'saturation_threshold' must be a finite number; got inf"),
    ("unknown choice", 'norm = "groupnorm"\n', "norm = 'groupnorm'; choose from none, batchnorm, layernorm"),
    ("a report key of the wrong type", 'quiet = "yes"\n', "key 'quiet' has the wrong type (str: 'yes'); expected true or false"),
    ("a table", '[probe]\ndepth = 3\n', "unknown key 'probe'"),
    ("not TOML", 'depth = \n', "not valid TOML: "),
    ("truncated", 'activations = ["tanh", "re', "not valid TOML: "),
    ("binary garbage", bytes(range(256)), "not TOML: not UTF-8 text"),
    ("not UTF-8", 'title = "caf\xe9"\n'.encode("latin-1"), "not TOML: not UTF-8 text"),
]


@pytest.mark.parametrize("case, content, message", TOML_CASES, ids=[c[0] for c in TOML_CASES])
def test_bad_toml_configs_exit_2_with_one_line_naming_file_and_key(tmp_path, capsys, case,
                                                                     content, message):
    file = _write(tmp_path, content)
    out = tmp_path / "report"
    assert cli.main(["report", "--config", str(file), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"initdiag: error: config file {file}: {err.split(': ', 3)[-1]}"
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"config file {file}: {message}" in err, err
    assert not out.exists()


def test_a_config_that_is_a_folder_or_missing_exits_2_naming_it(tmp_path, capsys):
    for path, message in ((tmp_path, "cannot be read (Is a directory)"),
                          (tmp_path / "nope.toml", "no such file")):
        assert cli.main(["report", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err == f"initdiag: error: config file {path}: {message}\n"


def test_the_valid_config_reads_as_it_says(tmp_path):
    got = options.read_config(_write(tmp_path, VALID_TOML), REPORT_KEYS)
    check_config_values(got)
    assert got == {"activations": ["tanh", "relu"], "inits": ["he_normal", "orthogonal"],
                   "depth": [3], "width": [4, 8], "batch": 2, "seeds": [0, 2**32 - 1],
                   "bias_init": "zeros", "no_bias": True, "norm": "layernorm", "residual": 0.5,
                   "input": "uniform", "loss": "half_mse", "saturation_threshold": 0.9,
                   "remat": 2, "title": "t", "out": "o", "quiet": True}
