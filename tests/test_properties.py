"""Property-based tests (hypothesis) of the invariants every probe result satisfies, whatever the
configuration: the stack engine (:func:`initdiag.probe`, :func:`initdiag.sweep`) over depths,
widths (one or one per layer), batches, activations, initializers, norms, residual, loss and
seeds; the model probe (:func:`initdiag.probe_fn`, :func:`initdiag.sweep_fn`) over small random
MLPs and convolutional nets; and JSON round trips, bit for bit, NaN and infinities included.

The invariants are exact (they follow from the metrics' definitions in
:data:`initdiag.metrics.TABLE`), so no tolerance is involved except where float32 is compared
with float64 numpy (a stated worst-case rounding bound).

Speed: jax compiles one pass per (activation, norm, residual, loss, histograms) and per shape, so
each example draws one such structure and then probes it several times for free (two
initializers x two seeds, twice); example counts are bounded (the profile in conftest.py).
"""

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import initdiag
from initdiag import metrics
from initdiag.config import LOSSES
from initdiag.model.paths import path_text
from initdiag.model.result import MODEL_METRICS, ModelResult, ModelSweep, model_metric_kind

from conftest import examples
from reference import layers_of

#: Activations drawn: each kind of saturation (both sides, one side, none) and of death.
ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu(slope=0.2)", "gelu", "linear", "selu",
               "softplus", "elu")
#: Initializers drawn: the standard ones, scaled ones that explode or vanish, data-dependent LSUV.
INITS = (*initdiag.STANDARD_INITIALIZERS, "normal(std=3.0)", "orthogonal(gain=2.0)",
         "truncated_normal", "xavier_uniform", "lsuv", "normal(std=0.05)")
SEEDS = st.integers(0, 2**32 - 1)
#: Tests that compile per example report the failing example as found: shrinking it would
#: compile hundreds of other shapes.
NO_SHRINK = [p for p in Phase if p is not Phase.shrink]
FRACTIONS = [m.name for m in metrics.TABLE if m.kind == "fraction"]
POSITIVE = [m.name for m in metrics.TABLE if m.kind == "positive"]


@st.composite
def stacks(draw):
    """One compiled structure: depth 1..5, a width or a list of (up to 3) widths in 2..16, batch 2..16,
    an activation, a norm, residual (when the widths allow), loss, histograms, bias."""
    depth = draw(st.integers(1, 5))
    if depth > 3 or draw(st.booleans()):
        width = draw(st.sampled_from([2, 3, 8, 16]))
        input_width = draw(st.sampled_from([None, None, 5]))
    else:  # every change of width is a layer compiled on its own: at most 3
        width = draw(st.lists(st.sampled_from([2, 3, 8, 16]), min_size=depth, max_size=depth))
        input_width = None
    uniform = isinstance(width, int) and input_width is None
    return {"activation": draw(st.sampled_from(ACTIVATIONS)), "depth": depth, "width": width,
            "input_width": input_width, "batch": draw(st.integers(2, 16)),
            "norm": draw(st.sampled_from([None, "batchnorm", "layernorm"])),
            "residual": draw(st.sampled_from([None, 0.5])) if uniform else None,
            "loss": draw(st.sampled_from(LOSSES)), "histograms": draw(st.booleans()),
            "use_bias": draw(st.booleans()),
            "bias_init": draw(st.sampled_from(["zeros", "normal(std=0.1)"]))}


def same_numbers(a, b):
    """Two ProbeResults hold the same configuration, seed and numbers, bit for bit (NaN where
    NaN); their meta (timings) may differ."""
    assert a.config == b.config and a.seed == b.seed
    assert a.metrics == b.metrics
    for m in a.metrics:
        assert np.array_equal(a[m], b[m], equal_nan=True), (a.config.label(), m)
    assert a.histograms.keys() == b.histograms.keys()
    for k in a.histograms:
        assert np.array_equal(a.histograms[k], b.histograms[k]), k
    assert a.scalars.keys() == b.scalars.keys()
    for k in a.scalars:
        assert same_bits(a.scalars[k], b.scalars[k]), k


def same_bits(a, b):
    """float64 arrays equal bit for bit, except that every NaN equals every NaN (JSON writes NaN
    as "NaN": its payload is not kept). -0.0 differs from 0.0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return False
    ok = ~np.isnan(a)
    return np.array_equal(a[ok].view(np.uint64), b[ok].view(np.uint64))


def check_invariants(r, act):
    """The invariants of one stack probe that hold for any configuration."""
    depth = r.depth
    assert r.metrics == tuple(initdiag.METRICS)
    for m in r.metrics:
        assert r[m].shape == (depth,) and r[m].dtype == np.float64, m
    # NaN by definition, and only then: saturation unless phi saturates, zero/dead fractions
    # unless phi can die
    assert np.isnan(r["saturation"]).all() == (not act.saturates)
    assert not np.isnan(r["saturation"]).any() or not act.saturates
    for m in ("zero_frac", "dead_frac"):
        assert np.isnan(r[m]).all() == (not act.can_die), m
        assert not np.isnan(r[m]).any() or not act.can_die, m
    for m in FRACTIONS:  # saturation, zero_frac, dead_frac, unit_spread
        v = r[m][~np.isnan(r[m])]
        assert ((v >= 0) & (v <= 1)).all(), (m, v)
    if act.can_die:  # a dead unit's B entries are all zero entries
        assert (r["dead_frac"] <= r["zero_frac"]).all(), (r["dead_frac"], r["zero_frac"])
    for m in POSITIVE:  # variances, RMS, norms, their ratio, channel squared mean
        v = r[m]
        assert not (v < 0).any(), (m, v)
    # grad_weight_ratio is grad_weight_norm / weight_norm, NaN where weight_norm is 0
    gw, w = r["grad_weight_norm"], r["weight_norm"]
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.array([g / n if n > 0 else math.nan for g, n in zip(gw, w)])
    assert same_bits(r["grad_weight_ratio"], expected)
    if r.histograms:  # every entry of every layer counted once
        n = np.array(r.config.widths)
        batch = r.config["batch"]
        for name in ("act_hist", "grad_hist"):
            counts = r.histograms[name]
            assert counts.shape == (depth, r.config["hist_bins"]) and (counts >= 0).all()
            assert np.array_equal(counts.sum(axis=1), batch * n), name


def check_weight_norms(r, seed):
    """weight_norm is the Frobenius norm of the drawn W^l: against float64 numpy of the weights
    init_stack draws for this seed, within the worst-case rounding of a float32 sum of N squares
    and a square root, (N + 2) u."""
    c = r.config
    spec = initdiag.make_spec(activation=c.activation, init=c.init, depth=c.depth,
                              width=list(c.widths), input_width=c.input_width,
                              bias_init=c.bias_init, use_bias=c.use_bias, norm=c.norm,
                              residual=c.residual)
    ws, _ = layers_of(initdiag.init_stack(seed, spec))
    for l, w in enumerate(ws):
        w = np.asarray(w, np.float64)
        ref = np.linalg.norm(w)
        bound = (w.size + 2) * 2.0**-24 * ref
        assert abs(r["weight_norm"][l] - ref) <= bound, (l, r["weight_norm"][l], ref)


#: A structure whose unit_spread is 1 up to rounding (layernorm makes every sample's mean 0):
#: it read 1 + 2**-23 for these seeds before the ratio was clipped to its range.
LAYERNORM_LINEAR = {"activation": "linear", "depth": 2, "width": 3, "input_width": None,
                    "batch": 4, "norm": "layernorm", "residual": None, "loss": "projection",
                    "histograms": False, "use_bias": True, "bias_init": "zeros"}


@settings(max_examples=examples(4), phases=NO_SHRINK)
@example(cfg=LAYERNORM_LINEAR, inits=["he_normal", "lsuv"], seeds=[0, 4])
@given(cfg=stacks(), inits=st.lists(st.sampled_from(INITS), min_size=2, max_size=2, unique=True),
       seeds=st.lists(SEEDS, min_size=2, max_size=2, unique=True))
def test_stack_invariants_determinism_sweep_and_json(cfg, inits, seeds):
    """For a drawn structure, two initializers x two seeds:

    * every invariant of :func:`check_invariants`; weight norms against numpy;
    * a sweep (the same activation twice: the second reuses the first's drawn weights) holds
      exactly the numbers of each configuration probed alone, and probing again gives them
      again (the same seed, the same numbers);
    * the sweep's JSON loads back equal, every number bit for bit.
    """
    cfg = dict(cfg)
    activation, depth, width, batch = (cfg.pop(k) for k in ("activation", "depth", "width",
                                                            "batch"))
    act = initdiag.activation(activation)
    sweep = initdiag.sweep(activations=[activation, activation], inits=inits, depths=[depth],
                           widths=[width], seeds=seeds, batch=batch, devices=1, **cfg)
    assert len(sweep) == 2 * 2 * 2
    for i, r in enumerate(sweep):
        check_invariants(r, act)
        init, seed = inits[(i // 2) % 2], seeds[i % 2]
        assert (r.config.init, r.seed) == (initdiag.initializer(init).label, seed)
        if i >= 4:
            same_numbers(r, sweep[i - 4])  # the same probe, with the weights reused
            continue
        alone = initdiag.probe(activation, init, depth, width, batch, seed, **cfg)
        same_numbers(alone, r)
        same_numbers(initdiag.probe(activation, init, depth, width, batch, seed, **cfg), alone)
        if init != "lsuv":  # LSUV rescales the drawn weights on the data
            check_weight_norms(r, seed)
    with tempfile.TemporaryDirectory() as tmp:
        back = initdiag.load(sweep.to_json(Path(tmp) / "r.json"))
    assert back == sweep
    for a, b in zip(sweep, back):
        same_model_numbers(a, b)


#: Initializers that keep signal and gradient of an activation alive at any depth (one
#: compilation per activation and shape serves them all).
HEALTHY = {"relu": ("he_normal", "kaiming_uniform", "orthogonal(gain=1.414)"),
           "tanh": ("xavier_normal", "glorot_uniform", "orthogonal")}


@settings(max_examples=examples(2), phases=NO_SHRINK)
@given(activation=st.sampled_from(sorted(HEALTHY)), depth=st.integers(1, 30),
       width=st.sampled_from([16, 32]), batch=st.integers(8, 16),
       seeds=st.lists(SEEDS, min_size=2, max_size=2, unique=True))
def test_healthy_configurations_give_finite_numbers(activation, depth, width, batch, seeds):
    """Where phi is defined (saturation for a saturating phi, zero/dead fractions for one that
    can die) every metric of a healthy configuration is a finite number, at moderate depth,
    for each initializer that suits phi; a ReLU stack this wide never has a whole layer dead
    (which would make unit_spread NaN)."""
    act = initdiag.activation(activation)
    undefined = set() if act.saturates else {"saturation"}
    undefined |= set() if act.can_die else {"zero_frac", "dead_frac"}
    for init in HEALTHY[activation]:
        for seed in seeds:
            r = initdiag.probe(activation, init, depth, width, batch, seed)
            check_invariants(r, act)
            for m in r.metrics:
                if m not in undefined:
                    assert np.isfinite(r[m]).all(), (activation, init, m, r[m])
            assert math.isfinite(r.scalars["loss"])


# --- JSON: NaN, infinities, signed zeros and subnormals, bit for bit -----------------------------

FLOATS = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True, width=64)


@settings(max_examples=examples(25))
@given(depth=st.integers(1, 5), data=st.data())
def test_json_round_trip_is_bit_for_bit_with_nan_and_infinities(depth, data):
    """Results, baselines and model results made by hand with any float64 (NaN, +-Inf, -0.0,
    subnormals, the extremes) load back bit for bit (NaN as NaN)."""
    values = {m: data.draw(hnp.arrays(np.float64, depth, elements=FLOATS), label=m)
              for m in initdiag.METRICS}
    loss = data.draw(FLOATS, label="loss")
    config = initdiag.ProbeConfig(activation="tanh", init="he_normal", depth=depth, width=4,
                                  input_width=4, batch=2).resolved()
    r = initdiag.ProbeResult(config=config, seed=data.draw(SEEDS, label="seed"), values=values,
                             scalars={"loss": loss})
    sites = tuple(f"s{i}" for i in range(depth))
    mvalues = {m: data.draw(hnp.arrays(np.float64, depth, elements=FLOATS), label=m)
               for m in MODEL_METRICS}
    row = {"path": "w", "shape": (4, 4), "role": "dense", "fan_in": 4.0, "fan_out": 4.0,
           **{k: data.draw(FLOATS, label=k) for k in ("weight_norm", "grad_norm",
                                                     "grad_weight_ratio")}}
    mr = ModelResult(config={"model": "m", "init": "given"}, seed=0, sites=sites,
                     kinds=("dense",) * depth, activations=(None,) * depth, values=mvalues,
                     param_rows=(row,), scalars={"loss": loss})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        back = initdiag.load(r.to_json(tmp / "r.json"))
        base = initdiag.load_baseline(initdiag.save_baseline(r, tmp / "b.json"))
        mback = initdiag.load(mr.to_json(tmp / "m.json"))
        msweep = initdiag.load(ModelSweep([mr, mr]).to_json(tmp / "ms.json"))
        mbase = initdiag.load_baseline(initdiag.save_baseline(mr, tmp / "mb.json"))
        for path in tmp.iterdir():  # strict JSON: no bare NaN or Infinity tokens
            json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path}: {c}"))
    for got in (back, base):
        assert got.metrics == r.metrics and got.config == r.config and got.seed == r.seed
        for m in r.metrics:
            assert same_bits(got[m], r[m]), m
        assert same_bits(got.scalars["loss"], loss)
    for got in (mback, mbase, msweep[0], msweep[1]):
        assert got.sites == sites and got.metrics == mr.metrics
        for m in mr.metrics:
            assert same_bits(got[m], mr[m]), m
        for k in ("weight_norm", "grad_norm", "grad_weight_ratio"):
            assert same_bits(got.param_rows[0][k], row[k]), k
        assert same_bits(got.scalars["loss"], loss)


# --- sharded: the same numbers on 4 host devices ---------------------------------------------------

SHARDED = r"""
import json, sys, jax, numpy as np, initdiag
assert jax.device_count() == 4, jax.devices()
out = []
for cfg in json.loads(sys.argv[1]):
    act, inits, depth, width, seeds, batch, opts = (cfg.pop(k) for k in (
        "activation", "inits", "depth", "width", "seeds", "batch", "options"))
    sharded = initdiag.sweep(activations=[act], inits=inits, depths=[depth], widths=[width],
                             seeds=seeds, batch=batch, **opts)
    swept = initdiag.sweep(activations=[act], inits=inits, depths=[depth], widths=[width],
                           seeds=seeds, batch=batch, devices=1, **opts)
    devices = {r.meta["device"] for r in sharded}
    for r, s in zip(sharded, swept):
        alone = initdiag.probe(act, r.config["init"], depth, width, batch, r.seed, **opts)
        for other in (s, alone):
            assert other.config == r.config and other.seed == r.seed
            for m in r.metrics:
                assert np.array_equal(r[m], other[m], equal_nan=True), (r.config.label(), m)
            for k in r.histograms:
                assert np.array_equal(r.histograms[k], other.histograms[k]), k
    out.append({"n": len(sharded), "devices": len(devices)})
print(json.dumps(out))
"""

#: The configuration probed sharded (compiled twice, sharded and not: one is what the budget
#: allows): a layernorm tanh stack whose width changes (an input width of its own, then 8, then
#: 3: three weight shapes to stack per device), without bias, with the half_mse loss,
#: histograms, data-dependent LSUV and the largest seed.
SHARDED_CONFIGS = [
    {"activation": "tanh", "inits": ["orthogonal(gain=2.0)", "lsuv"], "depth": 3,
     "width": [8, 8, 3], "seeds": [1, 2**32 - 1], "batch": 5,
     "options": {"norm": "layernorm", "input_width": 6, "loss": "half_mse", "use_bias": False,
                 "histograms": True}},
]


def test_alone_equals_in_a_sweep_equals_in_a_sharded_sweep_on_4_devices():
    """One subprocess with 4 forced host devices: every probe of a sharded sweep (one probe per
    device, a step of 4) equals the same sweep on one device and the configuration probed
    alone, bit for bit."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, "-c", SHARDED, json.dumps(SHARDED_CONFIGS)],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out == [{"n": 4, "devices": 4}] * len(SHARDED_CONFIGS)


# --- the model probe: small random MLPs and conv nets --------------------------------------------

MODEL_ACTS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid,
              "gelu": jax.nn.gelu}
FRACTION_METRICS = [m for m in MODEL_METRICS if model_metric_kind(m) == "fraction"]
NONNEGATIVE_METRICS = ["var", "sq_mean", "grad_rms", "ch_var", "ch_sq_mean", "branch_var",
                       "skip_var", "branch_ratio"]


@st.composite
def models(draw):
    """A plain JAX ``fn(params, x)`` with random weights: an MLP (1..2 dense layers, widths
    2..16) or a conv net (1..2 3x3 convolutions, 1..4 channels, then a dense readout), each
    layer followed by a drawn activation; returns (name, fn, params, x)."""
    seed = draw(st.integers(0, 2**16))
    keys = iter(jax.random.split(jax.random.key(seed), 16))
    batch = draw(st.integers(2, 8))
    n_layers = draw(st.integers(1, 2))
    acts = [draw(st.sampled_from(sorted(MODEL_ACTS))) for _ in range(n_layers)]
    scale = draw(st.sampled_from([0.1, 1.0, 3.0]))
    if draw(st.booleans()):
        widths = [draw(st.integers(2, 16)) for _ in range(n_layers + 1)]
        params = [{"w": scale * jax.random.normal(next(keys), (a, b)) / np.sqrt(a),
                   "b": 0.1 * jax.random.normal(next(keys), (b,))}
                  for a, b in zip(widths[:-1], widths[1:])]
        x = jax.random.normal(next(keys), (batch, widths[0]))

        def fn(p, x):
            for layer, a in zip(p, acts):
                x = MODEL_ACTS[a](x @ layer["w"] + layer["b"][None, :])
            return x
        return "mlp", fn, params, x
    chans = [draw(st.integers(1, 4)) for _ in range(n_layers + 1)]
    params = {"convs": [scale * jax.random.normal(next(keys), (3, 3, a, b)) / np.sqrt(9 * a)
                        for a, b in zip(chans[:-1], chans[1:])],
              "out": jax.random.normal(next(keys), (chans[-1], 3))}
    size = draw(st.sampled_from([4, 5]))
    x = jax.random.normal(next(keys), (batch, size, size, chans[0]))

    def fn(p, x):
        for k, a in zip(p["convs"], acts):
            x = MODEL_ACTS[a](jax.lax.conv_general_dilated(
                x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
        return jnp.mean(x, axis=(1, 2)) @ p["out"]
    return "conv", fn, params, x


def same_model_numbers(a, b):
    """Two ModelResults of the same configuration, seed, sites and numbers, bit for bit (NaN
    where NaN); their meta (timings) may differ."""
    da, db = a.to_dict(), b.to_dict()
    da.pop("meta"), db.pop("meta")
    assert da == db  # the numbers as JSON writes them: shortest repr, NaN as "NaN"
    for m in a.metrics:
        assert same_bits(a[m], b[m]), m


def check_model_invariants(r):
    n = len(r.sites)
    assert len(r.kinds) == len(r.activations) == n and n > 0
    assert set(r.metrics) <= set(MODEL_METRICS)
    for m in r.metrics:
        assert r[m].shape == (n,) and r[m].dtype == np.float64, m
    for m in FRACTION_METRICS:
        if m in r.values:
            v = r[m][~np.isnan(r[m])]
            assert ((v >= 0) & (v <= 1)).all(), (m, v)
    if "dead_frac" in r.values:
        both = ~np.isnan(r["dead_frac"]) & ~np.isnan(r["zero_frac"])
        assert (r["dead_frac"][both] <= r["zero_frac"][both]).all()
    for m in NONNEGATIVE_METRICS:
        if m in r.values:
            assert not (r[m] < 0).any(), (m, r[m])
    for row in r.param_rows:  # grad_weight_ratio = grad_norm / weight_norm, NaN where 0
        w, g = row["weight_norm"], row["grad_norm"]
        assert w >= 0 and g >= 0
        assert same_bits(row["grad_weight_ratio"], g / w if w > 0 else math.nan), row


@settings(max_examples=examples(3), phases=NO_SHRINK)
@given(model=models(), inits=st.lists(st.sampled_from(["he_normal", "glorot_uniform", "zeros",
                                                         "orthogonal", "normal(std=3.0)"]),
                                      min_size=2, max_size=2, unique=True),
       seeds=st.lists(SEEDS, min_size=2, max_size=2, unique=True))
def test_model_probe_invariants_determinism_sweep_and_json(model, inits, seeds):
    """probe_fn of the weights as given and sweep_fn over two initializers x two seeds: the
    invariants; weight norms against numpy; the same call twice gives the same numbers; a
    configuration swept alone equals it inside the bigger sweep; JSON loads back bit for bit."""
    name, fn, params, x = model
    given_ = initdiag.probe_fn(fn, params, x, seed=seeds[0], name=name)
    check_model_invariants(given_)
    same_model_numbers(initdiag.probe_fn(fn, params, x, seed=seeds[0], name=name), given_)
    leaves = {row["path"]: row for row in given_.param_rows}
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    assert len(flat) == len(leaves)
    for path, leaf in flat:
        w = np.asarray(leaf, np.float64)
        row = leaves[path_text(path)]
        ref = np.linalg.norm(w)
        assert abs(row["weight_norm"] - ref) <= (w.size + 2) * 2.0**-24 * ref, row
    sweep = initdiag.sweep_fn(fn, params, x, inits=inits, seeds=seeds, name=name)
    assert [(r.config["init"], r.seed) for r in sweep] == [
        (initdiag.initializer(i).label, s) for i in inits for s in seeds]
    for r in sweep:
        check_model_invariants(r)
        assert r.sites == given_.sites and r.kinds == given_.kinds
    one = initdiag.sweep_fn(fn, params, x, inits=[inits[1]], seeds=[seeds[1]], name=name)
    same_model_numbers(one[0], sweep[3])
    with tempfile.TemporaryDirectory() as tmp:
        back = initdiag.load(sweep.to_json(Path(tmp) / "m.json"))
    assert back == sweep
    for a, b in zip(sweep, back):
        same_model_numbers(a, b)
