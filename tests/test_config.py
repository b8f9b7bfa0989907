"""ProbeConfig: one schema for what a probe measures."""

import dataclasses
import json

import numpy as np
import pytest

import initdiag
from initdiag import config as schema
from initdiag.config import ProbeConfig


def test_a_probe_records_every_field_and_round_trips():
    r = initdiag.probe("tanh", "normal(std=0.5)", depth=3, width=[8, 6, 4], batch=5, seed=1,
                       histograms=True, hist_bins=7, norm="none")
    c = r.config
    assert list(c) == list(schema.FIELD_NAMES)  # histograms and hist_bins included
    assert (c["histograms"], c["hist_bins"], c["norm"], c["input_width"]) == (True, 7, None, 8)
    assert c["width"] == [8, 6, 4] and c.width == (8, 6, 4) and c.widths == (8, 6, 4)
    text = json.dumps(c.to_dict())
    back = ProbeConfig.from_dict(json.loads(text))
    assert back == c and back.key() == c.key() and hash(back) == hash(c)
    assert c == c.to_dict()  # reads as the dict it is written as


def test_equal_widths_are_recorded_as_one_number():
    c = initdiag.probe("relu", "he_normal", depth=3, width=[4, 4, 4], batch=2).config
    assert c["width"] == 4 and c.widths == (4, 4, 4)


def test_label_shows_what_differs_from_the_defaults():
    c = ProbeConfig(activation="tanh", init="he_normal", depth=8, width=16, batch=16,
                    norm="layernorm", hist_bins=9)
    assert c.label() == "tanh / he_normal depth=8 width=16 batch=16 norm=layernorm"
    assert ProbeConfig.from_dict({"activation": "a", "init": "b"}).label() == "a / b"


def test_key_is_the_identity_of_what_is_measured():
    a = ProbeConfig(activation="tanh", init="he_normal", depth=4, width=8, batch=8)
    assert a.key() == dataclasses.replace(a, histograms=True, hist_bins=3).key()
    assert a.key() != dataclasses.replace(a, norm="batchnorm").key()
    assert a.key() != dataclasses.replace(a, saturation_threshold=0.9).key()
    # a field a file did not record has its default: the same configuration
    assert ProbeConfig.from_dict({k: v for k, v in a.items() if k != "loss"}).key() == a.key()


def test_varying_lists_the_fields_that_differ():
    cs = [ProbeConfig(depth=d, width=w, input_width=w, norm=n)
          for d, w, n in [(4, 8, None), (4, 16, None), (8, 8, "layernorm")]]
    assert schema.varying(cs) == ["depth", "width", "norm"]  # input_width follows width
    assert schema.varying(cs, exclude=("depth",), order=("norm",)) == ["norm", "width"]
    assert schema.varying([dataclasses.replace(cs[0], histograms=True), cs[0]]) == []


def test_unknown_and_malformed_fields_are_named():
    with pytest.raises(ValueError, match=r"'colour' unknown to this initdiag.*known fields: "
                                         r"activation, init"):
        ProbeConfig.from_dict({"activation": "tanh", "colour": "red"})
    full = initdiag.probe("tanh", "he_normal", depth=2, width=4, batch=2).config.to_dict()
    with pytest.raises(ValueError, match=r"results\[3\]\.config has no 'batch'"):
        ProbeConfig.from_dict({k: v for k, v in full.items() if k != "batch"}, strict=True,
                              where="results[3].config")
    with pytest.raises(ValueError, match=r"config\['use_bias'\] is \"yes\" \(a string\); "
                                         r"expected true or false"):
        ProbeConfig.from_dict({**full, "use_bias": "yes"}, strict=True)
    # histograms/hist_bins are not needed to re-run: files without them are well formed
    ProbeConfig.from_dict({k: v for k, v in full.items() if k not in ("histograms", "hist_bins")},
                          strict=True)


@pytest.mark.parametrize("kwargs,message", [
    (dict(hist_bins=0), "hist_bins must be an integer >= 1; got 0"),
    (dict(histograms="yes"), "histograms must be True or False; got 'yes'"),
    (dict(loss="mse"), "invalid loss 'mse'"),
    (dict(input="gaussian"), "invalid input 'gaussian'"),
    (dict(saturation_threshold=1.0), r"saturation_threshold must be in \(0, 1\); got 1.0"),
])
def test_probe_errors_name_the_field_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        initdiag.probe("tanh", "he_normal", depth=2, width=4, batch=2, **kwargs)


def test_sweep_refuses_an_unknown_option_listing_the_valid_ones():
    with pytest.raises(TypeError, match=r"unknown option\(s\) 'nrom'; valid options: bias_init, "
                                        r"input_width, .*remat, draw_weights, memory_budget"):
        initdiag.sweep(["tanh"], ["he_normal"], depths=[2], widths=[4], batch=2, nrom="layernorm")


def test_probe_config_is_probe():
    c = ProbeConfig(activation="tanh", init="orthogonal", depth=3, width=8, batch=4)
    a, b = initdiag.probe_config(c, seed=2), initdiag.probe("tanh", "orthogonal", 3, 8, 4, 2)
    assert a == b.__class__(b.config, b.seed, b.values, b.histograms, b.scalars, a.meta)


def test_act_hist_range_sets_the_bins_and_is_recorded(tmp_path):
    kw = dict(activation="relu", init="he_normal", depth=3, width=16, batch=32, seed=0,
              histograms=True, hist_bins=4)
    r = initdiag.probe(act_hist_range=(-1.0, 3.0), **kw)
    np.testing.assert_array_equal(r.histograms["act_edges"], [-1.0, 0.0, 1.0, 2.0, 3.0])
    assert r.config["act_hist_range"] == [-1.0, 3.0]
    default = initdiag.probe(**kw)
    assert default.config.act_hist_range is None
    np.testing.assert_array_equal(default.histograms["act_edges"], [-4.0, -2.0, 0.0, 2.0, 4.0])
    assert r.config.key() == default.config.key()  # an output option: the same measurement
    back = initdiag.load(r.to_json(tmp_path / "r.json"))
    assert back == r and back.config.act_hist_range == (-1.0, 3.0)
    # every entry of a^l (B n_l per layer) is counted once, those outside in the end bins
    assert r.histograms["act_hist"].sum(axis=1).tolist() == [32 * 16] * 3
    with pytest.raises(ValueError, match=r"act_hist_range must be \[lo, hi\] with lo < hi; "
                                         r"got \[2.0, 1.0\]"):
        initdiag.probe(act_hist_range=(2.0, 1.0), **kw)
