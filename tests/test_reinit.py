"""initdiag.model.reinit on real Flax, Haiku and Equinox models, against closed forms.

Each case builds a real model, and says by hand (not through the code under test) where its
weights are and what their fans are: a dense [in, out] layer has fan_in = in; a conv has
fan_in = in * receptive, fan_out = out * receptive. Weights are tested with a KS test against
the exact distribution of the initializer at those fans (p > 1e-6 every time: the draws are
seeded), and every test also checks that the same KS test rejects the distribution a wrong
layout would give (in/out swapped, receptive field ignored, a stack taken as one conv).
"""

import math

import equinox as eqx
import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from flax.core import FrozenDict, freeze
from scipy import stats as sst

import initdiag
from initdiag.model.reinit import leaf_paths, reinit, reinit_plan

IN, OUT, K, L = 96, 160, 3, 4  # dense in/out, conv kernel size, stacked layers
C_IN, C_OUT = 32, 64  # conv channels
# std of a standard normal truncated to [-2, 2], from scipy (not from initdiag's constant)
TRUNC_STD = sst.truncnorm(-2, 2).std()
KS_PASS, KS_FAIL = 1e-6, 1e-6


def _trunc(var):
    return sst.truncnorm(-2, 2, scale=math.sqrt(var) / TRUNC_STD)


def _unif(a):
    return sst.uniform(-a, 2 * a)


#: the exact distribution of each entry, written from the papers' formulas
DISTS = {
    "he_normal": lambda fi, fo: _trunc(2 / fi),
    "glorot_uniform": lambda fi, fo: _unif(math.sqrt(6 / (fi + fo))),
    "lecun_normal": lambda fi, fo: _trunc(1 / fi),
    "torch_default": lambda fi, fo: _unif(1 / math.sqrt(fi)),
    "variance_scaling(scale=2.0, mode=fan_out, distribution=normal)":
        lambda fi, fo: sst.norm(scale=math.sqrt(2 / fo)),
}


def ks(x, dist):
    return sst.kstest(np.asarray(x, np.float64).ravel(), dist.cdf).pvalue


# ---------------------------------------------------------------- the models

def _flax_dense():
    return nn.Dense(OUT).init(jax.random.key(1), jnp.ones((1, IN)))


def _flax_conv():
    return nn.Conv(C_OUT, (K, K)).init(jax.random.key(1), jnp.ones((1, 8, 8, C_IN)))


def _haiku_linear():
    return hk.transform(lambda x: hk.Linear(OUT)(x)).init(jax.random.key(1), jnp.ones((1, IN)))


def _haiku_conv():
    f = hk.transform(lambda x: hk.Conv2D(C_OUT, K)(x))
    return f.init(jax.random.key(1), jnp.ones((1, 8, 8, C_IN)))


class _Block(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        return nn.Dense(IN, name="down")(nn.relu(nn.Dense(OUT, name="up")(x))), None


class _Scanned(nn.Module):
    @nn.compact
    def __call__(self, x):
        scan = nn.scan(_Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=L)
        return scan(name="blocks")(x, None)[0]


def _flax_scan():
    return _Scanned().init(jax.random.key(1), jnp.ones((1, IN)))


def _eqx_stack():
    return eqx.filter_vmap(lambda k: eqx.nn.Linear(IN, OUT, key=k))(jax.random.split(jax.random.key(1), L))


# name -> (build, weights(params) -> list of one 2-D [in*receptive, out] matrix per layer, fans,
#          fans a wrong layout would use)
CASES = {
    "flax_dense": (_flax_dense, lambda p: [p["params"]["kernel"]], (IN, OUT), [(OUT, IN)]),
    "flax_conv": (_flax_conv, lambda p: [p["params"]["kernel"].reshape(-1, C_OUT)],
                  (C_IN * K * K, C_OUT * K * K), [(C_OUT * K * K, C_IN * K * K), (C_IN, C_OUT)]),
    "haiku_linear": (_haiku_linear, lambda p: [p["linear"]["w"]], (IN, OUT), [(OUT, IN)]),
    "haiku_conv": (_haiku_conv, lambda p: [p["conv2_d"]["w"].reshape(-1, C_OUT)],
                   (C_IN * K * K, C_OUT * K * K), [(C_OUT * K * K, C_IN * K * K), (C_IN, C_OUT)]),
    "eqx_linear": (lambda: eqx.nn.Linear(IN, OUT, key=jax.random.key(1)),
                   lambda m: [m.weight.T], (IN, OUT), [(OUT, IN)]),
    # OIHW -> HWIO -> [H W I, O]; wrong: taken as HWIO ([64, 32, 3, 3]: in 3, receptive 64 32)
    "eqx_conv": (lambda: eqx.nn.Conv2d(C_IN, C_OUT, K, key=jax.random.key(1)),
                 lambda m: [m.weight.transpose(2, 3, 1, 0).reshape(-1, C_OUT)],
                 (C_IN * K * K, C_OUT * K * K),
                 [(C_OUT * K * K, C_IN * K * K), (C_IN, C_OUT), (3 * C_OUT * C_IN, 3 * C_OUT * C_IN)]),
    # [L, in, out]; wrong: one 1-D conv [W=L, in, out] (fans L in, L out)
    "flax_scan": (_flax_scan, lambda p: list(p["params"]["blocks"]["up"]["kernel"]), (IN, OUT),
                  [(OUT, IN), (L * IN, L * OUT)]),
    # [L, out, in]; wrong: [L, in, out] or one conv
    "eqx_stack": (_eqx_stack, lambda m: [w.T for w in m.weight], (IN, OUT),
                  [(OUT, IN), (L * OUT, L * IN)]),
}


@pytest.fixture(scope="module")
def models():
    return {name: case[0]() for name, case in CASES.items()}


@pytest.mark.parametrize("init", sorted(DISTS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_weights_follow_the_initializer_at_the_layouts_fans(models, case, init):
    _, weights, (fi, fo), wrong = CASES[case]
    ws = weights(reinit(models[case], init, seed=3))
    x = np.concatenate([np.asarray(w).ravel() for w in ws])
    assert x.size >= 15000
    assert ks(x, DISTS[init](fi, fo)) > KS_PASS, (case, init)
    right_var = DISTS[init](fi, fo).var()
    for wfi, wfo in wrong:
        if abs(DISTS[init](wfi, wfo).var() / right_var - 1) > 0.1:  # glorot: symmetric in fans
            assert ks(x, DISTS[init](wfi, wfo)) < KS_FAIL, (case, init, (wfi, wfo))


def _orthonormal(m, atol=1e-4):
    m = np.asarray(m, np.float64)
    g = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    return np.allclose(g, np.eye(len(g)), atol=atol)


@pytest.mark.parametrize("case", sorted(CASES))
def test_orthogonal_gives_orthonormal_layers(models, case):
    # float32 QR: |Q^T Q - I| ~ 1e-6 here; a non-orthogonal draw is off by O(0.1).
    ws = CASES[case][1](reinit(models[case], "orthogonal", seed=4))
    assert all(_orthonormal(w) for w in ws)
    if len(ws) > 1:  # independent slices
        assert not np.allclose(ws[0], ws[1])


def test_orthogonal_check_rejects_one_matrix_over_a_stack():
    # What a stack taken as one [L in, out] matrix would give: slices not orthonormal.
    q = jax.nn.initializers.orthogonal()(jax.random.key(0), (L * OUT, IN)).reshape(L, OUT, IN)
    assert _orthonormal(q.reshape(L * OUT, IN))
    assert not any(_orthonormal(s) for s in q)


def test_orthogonal_on_the_second_scanned_dense_and_flax_scan_plan(models):
    p = reinit(models["flax_scan"], "orthogonal", seed=5)
    down = p["params"]["blocks"]["down"]["kernel"]
    assert down.shape == (L, OUT, IN) and all(_orthonormal(w) for w in down)
    plan = reinit_plan(models["flax_scan"]).set_index("path")
    row = plan.loc["params/blocks/down/kernel"]
    assert (row.role, row.stacked, row.fan_in, row.fan_out, row.layout) == ("dense", L, OUT, IN, "flax")
    assert plan.loc["params/blocks/down/bias"].stacked == L


def test_plan_fans_of_convs():
    for case in ("flax_conv", "haiku_conv", "eqx_conv"):
        plan = reinit_plan(CASES[case][0]())
        row = plan[plan.role == "conv"].iloc[0]
        assert (row.fan_in, row.fan_out, row.stacked) == (C_IN * K * K, C_OUT * K * K, 0), case
        assert plan[plan.role == "bias"].iloc[0].fan_in == C_IN * K * K


# ---------------------------------------------------------------- biases, norms, other leaves

def test_bias_follows_bias_init_with_its_layers_fans():
    p = nn.Dense(4096).init(jax.random.key(1), jnp.ones((1, 3)))
    b = reinit(p, "he_normal", bias_init="he_normal", seed=1)["params"]["bias"]
    assert ks(b, _trunc(2 / 3)) > KS_PASS
    assert ks(b, _trunc(2 / 4096)) < KS_FAIL  # the bias's own size as fan_in


def test_conv_bias_uses_the_receptive_field():
    m = eqx.nn.Conv2d(4, 4096, K, key=jax.random.key(1))
    b = reinit(m, "he_normal", bias_init="torch_default", seed=1).bias
    assert b.shape == (4096, 1, 1)
    assert ks(b, _unif(1 / math.sqrt(4 * K * K))) > KS_PASS
    assert ks(b, _unif(1 / math.sqrt(4))) < KS_FAIL  # receptive field ignored


def test_norm_offset_without_a_layer_uses_its_size():
    p = hk.transform(lambda x: hk.LayerNorm(-1, True, True)(x)).init(jax.random.key(0), jnp.ones((1, 4096)))
    off = reinit(p, "he_normal", bias_init="lecun_normal", seed=2)["layer_norm"]["offset"]
    assert ks(off, _trunc(1 / 4096)) > KS_PASS
    assert ks(off, _trunc(1 / 1)) < KS_FAIL


class _Normed(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(8)(x)
        x = nn.LayerNorm()(x)
        return nn.BatchNorm(use_running_average=False)(x)


def test_flax_norm_scales_are_one_biases_zero_batch_stats_untouched():
    v = _Normed().init(jax.random.key(0), jnp.ones((2, 5)))
    # move every leaf away from its default so the reset is visible
    v = jax.tree_util.tree_map(lambda a: a + 3.0, v)
    out = reinit(v, "he_normal")
    for name in ("LayerNorm_0", "BatchNorm_0"):
        assert np.all(np.asarray(out["params"][name]["scale"]) == 1.0)
        assert np.all(np.asarray(out["params"][name]["bias"]) == 0.0)
    assert np.all(np.asarray(out["params"]["Dense_0"]["bias"]) == 0.0)
    for a, b in zip(jax.tree_util.tree_leaves(v["batch_stats"]),
                    jax.tree_util.tree_leaves(out["batch_stats"])):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_haiku_and_equinox_norm_scales_are_one():
    p = hk.transform(lambda x: hk.LayerNorm(-1, True, True)(hk.Linear(6)(x))).init(
        jax.random.key(0), jnp.ones((1, 3)))
    p = jax.tree_util.tree_map(lambda a: a + 3.0, p)
    out = reinit(p, "orthogonal")
    assert np.all(np.asarray(out["layer_norm"]["scale"]) == 1.0)
    assert np.all(np.asarray(out["layer_norm"]["offset"]) == 0.0)
    m = eqx.nn.Sequential([eqx.nn.Linear(3, 6, key=jax.random.key(0)), eqx.nn.LayerNorm(6)])
    m = jax.tree_util.tree_map(lambda a: a + 3.0 if eqx.is_array(a) else a, m)
    out = reinit(m, "orthogonal")
    assert np.all(np.asarray(out.layers[1].weight) == 1.0)
    assert np.all(np.asarray(out.layers[1].bias) == 0.0)


def test_nnx_state_batch_stats_untouched_and_linear_fans():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(IN, OUT, rngs=rngs)
            self.bn = nnx.BatchNorm(OUT, rngs=rngs)

    _, state = nnx.split(Net(nnx.Rngs(0)))
    state = jax.tree_util.tree_map(lambda a: a + 3.0, state)
    out = reinit(state, "he_normal", seed=1)
    assert type(out) is type(state)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(state)
    assert ks(out["lin"]["kernel"][...], _trunc(2 / IN)) > KS_PASS
    assert ks(out["lin"]["kernel"][...], _trunc(2 / OUT)) < KS_FAIL
    for stat in ("mean", "var"):
        assert np.array_equal(out["bn"][stat][...], state["bn"][stat][...])
    assert np.all(np.asarray(out["bn"]["scale"][...]) == 1.0)


# ---------------------------------------------------------------- structure, keys, paths

def test_same_type_and_structure(models):
    cases = dict(models, frozen=freeze(models["flax_dense"]))
    for name, params in cases.items():
        out = reinit(params, "glorot_uniform", bias_init="normal")
        assert type(out) is type(params), name
        assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(params), name
        for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(params)):
            assert a.shape == b.shape and a.dtype == b.dtype == jnp.float32, name
    assert isinstance(reinit(cases["frozen"], "he_normal"), FrozenDict)


def test_seed_determinism_and_the_documented_keys(models):
    p = models["flax_dense"]  # leaves: params/bias (0), params/kernel (1)
    a = reinit(p, "he_normal", seed=7, bias_init="normal")
    b = reinit(p, "he_normal", seed=jax.random.key(7), bias_init="normal")
    c = reinit(p, "he_normal", seed=8, bias_init="normal")
    for x, y, z in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b),
                       jax.tree_util.tree_leaves(c)):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
        assert not np.array_equal(x, z)
    key = jax.random.fold_in(jax.random.key(7), 1)
    expect = initdiag.initializer("he_normal")(key, (IN, OUT), jnp.float32)
    assert np.asarray(a["params"]["kernel"]).tobytes() == np.asarray(expect).tobytes()
    # a stacked leaf: one key per slice, split from the leaf's key
    m = models["eqx_stack"]
    i = leaf_paths(m).index("weight")
    keys = jax.random.split(jax.random.fold_in(jax.random.key(7), i), L)
    out = reinit(m, "orthogonal", seed=7).weight
    for j in range(L):
        expect = initdiag.initializer("orthogonal")(keys[j], (IN, OUT), jnp.float32).T
        np.testing.assert_array_equal(out[j], expect)


def test_a_jax_callable_sees_the_layer_in_jax_convention(models):
    init = jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")
    w = reinit(models["eqx_conv"], init, seed=2).weight
    assert ks(w, sst.norm(scale=math.sqrt(2 / (C_OUT * K * K)))) > KS_PASS
    assert ks(w, sst.norm(scale=math.sqrt(2 / C_OUT))) < KS_FAIL


def test_leaf_paths_format_and_plan_rows():
    mlp = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.key(0))
    assert "layers[2].weight" in leaf_paths(mlp)
    assert leaf_paths(_flax_dense()) == ["params/bias", "params/kernel"]
    p = hk.transform(lambda x: hk.nets.MLP([5, 6], name="mlp")(x)).init(jax.random.key(0), jnp.ones((1, 3)))
    assert "mlp/~/linear_0/w" in leaf_paths(p)
    for params in (mlp, p):
        plan = reinit_plan(params)
        assert list(plan.columns) == ["path", "role", "layout", "shape", "stacked", "fan_in",
                                      "fan_out", "reason"]
        assert list(plan.path) == leaf_paths(params)
    plan = reinit_plan(mlp).set_index("path")
    assert plan.loc["layers[2].weight"].role == "dense"
    assert (plan.loc["layers[2].weight"].fan_in, plan.loc["layers[2].weight"].fan_out) == (4, 2)
    assert plan.loc["activation"].role == "unchanged"
    assert set(reinit_plan(p).layout) == {"haiku"}


def test_ambiguous_kernel_says_what_it_assumed():
    p = {"params": {"proj": {"kernel": jnp.ones((L, IN, OUT))}}}
    row = reinit_plan(p).iloc[0]
    assert (row.role, row.stacked, row.fan_in) == ("dense", L, IN)
    assert "assumed" in row.reason
    p = {"params": {"Conv_0": {"kernel": jnp.ones((K, IN, OUT))}}}
    row = reinit_plan(p).iloc[0]
    assert (row.role, row.stacked, row.fan_in, row.fan_out) == ("conv", 0, K * IN, K * OUT)


# ---------------------------------------------------------------- errors

def test_errors_name_the_value_and_the_choices(models):
    p = models["flax_dense"]
    with pytest.raises(ValueError, match=r"'he_nromal'.*Did you mean 'he_normal'.*Valid choices"):
        reinit(p, "he_nromal")
    with pytest.raises(ValueError, match=r"layout 'keras'.*auto, flax, haiku, equinox"):
        reinit(p, "he_normal", layout="keras")
    with pytest.raises(ValueError, match=r"layout 'keras'"):
        reinit_plan(p, layout="keras")
    for kw in ({"init": "lsuv"}, {"init": "he_normal", "bias_init": "lsuv"}):
        with pytest.raises(ValueError, match=r"data-dependent.*initdiag\.calibrate"):
            reinit(p, **kw)
    with pytest.raises(ValueError, match=r"cannot tell.*\['bar'\].*layout='flax', 'haiku' or 'equinox'"):
        reinit({"foo": {"bar": jnp.ones(3)}}, "he_normal")
    with pytest.raises(ValueError, match=r"seed must be"):
        reinit(p, "he_normal", seed=1.5)


def test_a_failed_draw_names_the_leaf(models):
    def bad(key, shape, dtype):
        raise RuntimeError("no")

    with pytest.raises(ValueError, match=r"leaf 'params/kernel'.*RuntimeError: no"):
        reinit(models["flax_dense"], bad)
