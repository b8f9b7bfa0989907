"""Files written by initdiag 0.1.0 before the ProbeConfig schema (tests/data/*_v0.1.0.json, made
with the code of commit 498f088) still load, re-run bit for bit and write back unchanged."""

import json
from pathlib import Path

import numpy as np
import pytest

import initdiag
from initdiag.config import FIELD_NAMES, ProbeConfig
from initdiag.regression.rerun import rerun

DATA = Path(__file__).parent / "data"
#: What those files' configs hold (the fields of 0.1.0, in its order).
OLD_FIELDS = ["activation", "init", "bias_init", "depth", "width", "input_width", "batch",
              "use_bias", "norm", "residual", "input", "loss", "saturation_threshold", "dtype"]


@pytest.mark.parametrize("name", ["results_v0.1.0.json", "probe_v0.1.0.json"])
def test_old_results_load_and_write_back_byte_for_byte(name, tmp_path):
    loaded = initdiag.load(DATA / name)
    results = [loaded] if isinstance(loaded, initdiag.ProbeResult) else list(loaded)
    for r in results:
        assert isinstance(r.config, ProbeConfig)
        assert list(r.config) == OLD_FIELDS  # nothing invented for fields the file lacks
        assert r.config.histograms is False and r.config.hist_bins == 50  # their defaults
        assert [f for f in FIELD_NAMES if f not in OLD_FIELDS] == [
            "histograms", "hist_bins", "act_hist_range"]  # recorded since
    out = loaded.to_json(tmp_path / name)
    assert out.read_text() == (DATA / name).read_text()


@pytest.mark.parametrize("name", ["baseline_v0.1.0.json", "probe_baseline_v0.1.0.json"])
def test_old_baselines_rerun_bit_for_bit(name):
    base = initdiag.load_baseline(DATA / name)
    again = rerun(base)
    pairs = zip([base] if isinstance(base, initdiag.ProbeResult) else base,
                [again] if isinstance(again, initdiag.ProbeResult) else again)
    for old, new in pairs:
        assert new.config.key() == old.config.key()  # a new result matches the old entry
        for m in old.metrics:
            np.testing.assert_array_equal(new[m], old[m], err_msg=f"{old.config.label()} {m}")
    # the check users run in CI, at the default tolerances: metrics added since 0.1.0 are
    # reported, not checked, and do not fail it
    c = initdiag.compare(again, DATA / name)
    assert c.passed and c.n_compared > 0 and not c.missing and not c.extra
    assert {m for _, _, m in c.extra_metrics} == {"act_chan_sq_mean"}
    assert "Not in the baseline, not checked: act_chan_sq_mean." in c.render()


def test_old_probe_file_records_what_was_probed():
    r = initdiag.load(DATA / "probe_v0.1.0.json")
    c = r.config
    assert (c.activation, c.init, c.bias_init, c.norm, c.loss, c.saturation_threshold) == (
        "sigmoid", "lecun_normal", "normal(std=0.1)", "layernorm", "half_mse", 0.95)
    assert c.widths == (12, 12, 8, 8, 4) and c.fans == (12, 12, 12, 8, 8, 4)
    assert set(r.histograms) == {"act_hist", "act_edges", "grad_hist", "grad_edges"}
    # a new probe of the same configuration records the histogram options too
    new = initdiag.probe(**{k: v for k, v in c.items() if k != "dtype"}, seed=r.seed,
                         histograms=True, hist_bins=10)
    assert new.config["histograms"] is True and new.config["hist_bins"] == 10
    assert new.config.key() == c.key()  # output options do not change what was measured
    np.testing.assert_array_equal(new["grad_preact_rms"], r["grad_preact_rms"])
    np.testing.assert_array_equal(new.histograms["grad_hist"], r.histograms["grad_hist"])
    doc = json.loads((DATA / "probe_baseline_v0.1.0.json").read_text())
    assert "histograms" not in doc["results"][0]["config"]
