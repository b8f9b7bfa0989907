"""Results: lossless JSON round trip (NaN/Inf too), tidy frames, clear load errors."""

import json

import numpy as np
import pytest

import initdiag
from initdiag.results import FRAME_COLUMNS, ProbeResult, ResultsFileError, SweepResult


@pytest.fixture(scope="module")
def small_sweep():
    return initdiag.sweep(activations=["tanh", "relu"], inits=["he_normal", "zeros"], depths=[4],
                          widths=[8], seeds=[0, 1], batch=4, histograms=True, hist_bins=5)


def test_sweep_order_and_size(small_sweep):
    assert len(small_sweep) == 2 * 2 * 2
    assert [(r.config["activation"], r.config["init"], r.seed) for r in small_sweep][:3] == [
        ("tanh", "he_normal", 0), ("tanh", "he_normal", 1), ("tanh", "zeros", 0)]


def test_json_round_trip_is_lossless(small_sweep, tmp_path):
    path = small_sweep.to_json(tmp_path / "r.json")
    back = initdiag.load(path)
    assert isinstance(back, SweepResult) and back == small_sweep
    for a, b in zip(small_sweep, back):
        for m in a.metrics:
            np.testing.assert_array_equal(a[m], b[m])  # bitwise, NaN where NaN
    json.loads(path.read_text())  # strict JSON: no bare NaN tokens
    assert "NaN" in path.read_text()


def test_non_finite_values_survive(tmp_path):
    vals = {"preact_var": np.array([1e-300, np.inf, -np.inf, np.nan, 0.1 + 0.2])}
    r = ProbeResult(config={"depth": 5, "activation": "x", "init": "y"}, seed=0, values=vals)
    back = initdiag.load(r.to_json(tmp_path / "p.json"))
    assert isinstance(back, ProbeResult)
    np.testing.assert_array_equal(back["preact_var"], vals["preact_var"])


def test_tidy_frame(small_sweep):
    df = small_sweep.to_frame()
    assert tuple(df.columns) == FRAME_COLUMNS
    n_metrics = len(small_sweep[0].metrics)
    assert len(df) == len(small_sweep) * 4 * n_metrics
    r = small_sweep.select(activation="relu", init="he_normal", seed=1)[0]
    sub = df[(df.activation == "relu") & (df.init == "he_normal") & (df.seed == 1)
             & (df.metric == "grad_preact_rms")].sort_values("layer")
    np.testing.assert_array_equal(sub.value.to_numpy(), r["grad_preact_rms"])
    assert list(sub.layer) == [1, 2, 3, 4]
    c = r.config
    row = sub.iloc[0]
    assert (row.input_width, row.use_bias, row.input, row.saturation_threshold, row.norm) == (
        c["input_width"], c["use_bias"], c["input"], c["saturation_threshold"], "none")


@pytest.mark.parametrize("text,problem", [
    ('{"schema": "initdiag.results", "schema_version": 1, "results": [', "not valid JSON"),
    ('{"schema": "other"}', "not an initdiag results file"),
    ('{"schema": "initdiag.results", "schema_version": 99, "results": []}', "schema_version 99"),
    ('{"schema": "initdiag.results", "schema_version": 1, "results": [{"seed": 0}]}', "malformed"),
])
def test_bad_files_give_clear_errors(tmp_path, text, problem):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ResultsFileError, match=problem) as e:
        initdiag.load(path)
    assert str(path) in str(e.value)


def test_write_is_atomic_and_leaves_no_temp_files(small_sweep, tmp_path):
    small_sweep.to_json(tmp_path / "a.json")
    small_sweep.to_json(tmp_path / "a.json")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_written_files_get_the_normal_mode(small_sweep, tmp_path):
    import os
    path = small_sweep.to_json(tmp_path / "m.json")
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~mask


@pytest.mark.parametrize("array", [
    np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32),
    np.array([1.0, np.nan, np.inf, -np.inf]), np.array([[np.nan, 1.5]], np.float32),
    np.random.default_rng(1).integers(0, 10**12, size=(4, 3)), np.array([[1, 2]], np.uint8),
    np.array([True, False]), np.zeros((0, 3)), np.array(3.5), np.array(-np.inf),
    np.array([5e-324, 1.7976931348623157e308]), np.array([0.1, 3.0], np.float16),
])
def test_encode_of_an_array_is_its_elements_encoded_one_by_one(array):
    """encode's whole-array path (integers, booleans, all-finite floats as ``tolist()``) gives
    what encoding each element does: the same JSON text and Python types."""
    from initdiag.jsonvalues import encode

    def one_by_one(v):
        return [one_by_one(x) for x in v] if isinstance(v, list) else encode(v)

    expected = one_by_one(array.tolist())
    got = encode(array)
    assert json.dumps(got) == json.dumps(expected)
    assert type(got) is type(expected)
    flat = lambda v: sum((flat(x) for x in v), []) if isinstance(v, list) else [v]  # noqa: E731
    assert [type(x) for x in flat(got)] == [type(x) for x in flat(expected)]
