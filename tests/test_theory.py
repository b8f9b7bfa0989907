"""Mean-field theory against closed forms, an independent integrator, and measurement.

Measurement tests use width 2048, depth 30, batch 128 (the regime the issue names). Their
tolerances come from the finite-width error model of :mod:`initdiag.theory._finite`, not from
the numbers they check.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import brentq
from scipy.stats import norm

import initdiag
from initdiag import theory

L, N, B = 30, 2048, 128


def npdf(u):
    """The standard normal density of a scalar (math, not scipy.stats: quad calls it thousands of
    times, and norm.pdf's per-call overhead made these integrals most of the file's time)."""
    return math.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)


def ncdf(z):
    """The standard normal CDF of a scalar, 0.5 erfc(-z / sqrt 2) (see :func:`npdf`)."""
    return 0.5 * math.erfc(-z / math.sqrt(2))


def gauss_expect(f, q):
    """E_{z~N(0,q)}[f(z)] by scipy's adaptive quad, split at 0 (independent of initdiag)."""
    s = math.sqrt(q)
    g = lambda u: f(s * u) * npdf(u)  # noqa: E731
    return quad(g, -40, 0, epsabs=1e-13, limit=200)[0] + quad(g, 0, 40, epsabs=1e-13, limit=200)[0]


# ---------------------------------------------------------------- closed forms and integrals

def test_relu_he_keeps_q_and_xavier_halves_it():
    q = np.array([0.01, 1.0, 7.5])
    np.testing.assert_allclose(theory.q_map("relu", 2.0, 0.0, q), q, rtol=1e-12)
    np.testing.assert_allclose(theory.q_map("relu", 1.0, 0.0, q), q / 2, rtol=1e-12)
    he = initdiag.theory.predict(activation="relu", init="he_normal", depth=8, width=64)
    np.testing.assert_allclose(he["preact_var"], 2.0, rtol=1e-12)  # q_1 = sigma_w^2 * input_var
    xav = theory.predict(activation="relu", init="xavier_normal", depth=8, width=64)
    np.testing.assert_allclose(xav["preact_var"], 2.0 ** -np.arange(8), rtol=1e-12)
    np.testing.assert_allclose(he["zero_frac"], 0.5, rtol=1e-12)
    np.testing.assert_allclose(he["act_mean"], np.sqrt(2.0 / (2 * np.pi)), rtol=1e-12)
    np.testing.assert_allclose(he["chi"], 1.0, rtol=1e-12)
    np.testing.assert_allclose(xav["grad_preact_rms"], np.sqrt(0.5) ** np.arange(7, -1, -1), rtol=1e-12)


def test_tanh_without_bias_is_critical_at_unit_weight_variance():
    assert theory.edge_of_chaos("tanh", 0.0) == pytest.approx(1.0, abs=1e-6)
    assert theory.chi1("tanh", 1.0, 0.0) == pytest.approx(1.0, abs=1e-12)  # q* = 0, phi'(0) = 1
    assert theory.chi1("tanh", 0.9, 0.0) < 1 < theory.chi1("tanh", 1.2, 0.0)


def test_edge_of_chaos_with_bias_against_independent_integral():
    w = theory.edge_of_chaos("tanh", 0.05)
    assert w == pytest.approx(1.76, abs=0.01)  # Schoenholz et al. 2017, Fig. 1
    # Independent check: q* from scipy quad + brentq, then chi_1 = 1 there.
    q = brentq(lambda q: w * gauss_expect(lambda z: np.tanh(z) ** 2, q) + 0.05 - q, 1e-6, 50)
    chi = w * gauss_expect(lambda z: (1 - np.tanh(z) ** 2) ** 2, q)
    assert chi == pytest.approx(1.0, abs=1e-7)


SELU_LAMBDA, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772
# phi' written out in numpy (independent of initdiag and of jax's choice of phi'(0))
DPHI_KINKED = {
    "relu": lambda z: 1.0 if z > 0 else 0.0,
    "leaky_relu": lambda z: 1.0 if z > 0 else 0.01,
    "leaky_relu(slope=0.2)": lambda z: 1.0 if z > 0 else 0.2,
    "selu": lambda z: SELU_LAMBDA if z > 0 else SELU_LAMBDA * SELU_ALPHA * np.exp(z),
    "elu": lambda z: 1.0 if z > 0 else np.exp(z),
    "elu(alpha=0.5)": lambda z: 1.0 if z > 0 else 0.5 * np.exp(z),
}
# lim_{q->0+} E_{z~N(0,q)}[phi'(z)^2] = (phi'(0-)^2 + phi'(0+)^2) / 2, from the one-sided slopes
KINK_AT_0 = {"relu": (0.0, 1.0), "leaky_relu": (0.01, 1.0), "leaky_relu(slope=0.2)": (0.2, 1.0),
             "selu": (SELU_LAMBDA * SELU_ALPHA, SELU_LAMBDA), "elu": (1.0, 1.0),
             "elu(alpha=0.5)": (0.5, 1.0)}


@pytest.mark.parametrize("act", list(KINK_AT_0))
def test_chi1_at_zero_fixed_point_is_the_limit_of_the_one_sided_slopes(act):
    left, right = KINK_AT_0[act]
    limit = (left**2 + right**2) / 2
    w = 0.8 / limit  # below the edge: q -> 0 from q0 = 1, chi_1 = w * limit = 0.8
    assert theory.fixed_point(act, w, 0.0) == 0.0
    assert theory.chi1(act, w, 0.0) == pytest.approx(0.8, rel=1e-12)
    assert theory.depth_scales(act, w, 0.0)["chi1"] == pytest.approx(0.8, rel=1e-12)
    grid = theory.phase_grid(act, [w], [0.0])
    assert grid["q_star"][0, 0] == 0.0 and grid["chi1"][0, 0] == pytest.approx(0.8, rel=1e-12)
    # scipy at a small variance approaches the same limit (selu, elu: E[phi'^2] moves by
    # ~sqrt(q) from it; q = 1e-10 -> ~1e-5 relative)
    dphi = DPHI_KINKED[act]
    assert w * gauss_expect(lambda z: dphi(z) ** 2, 1e-10) == pytest.approx(0.8, rel=1e-4)


def test_the_audit_numbers_at_q_star_zero():
    assert theory.chi1("relu", 1.0, 0.0) == pytest.approx(0.5, rel=1e-12)
    assert theory.chi1("leaky_relu", 1.0, 0.0) == pytest.approx((1 + 0.01**2) / 2, rel=1e-12)
    selu = 0.3235 * SELU_LAMBDA**2 * (1 + SELU_ALPHA**2) / 2
    assert selu == pytest.approx(0.679, abs=1e-3)
    assert theory.chi1("selu", 0.3235, 0.0) == pytest.approx(selu, rel=1e-12)


@pytest.mark.parametrize("act,edge", [
    ("relu", 2.0), ("linear", 1.0), ("tanh", 1.0), ("elu", 1.0), ("elu(alpha=0.5)", 2 / 1.25),
    ("leaky_relu", 2 / (1 + 0.01**2)), ("leaky_relu(slope=0.2)", 2 / (1 + 0.2**2)),
    ("selu", 2 / (SELU_LAMBDA**2 * (1 + SELU_ALPHA**2))),
])
def test_edge_of_chaos_without_bias_against_closed_forms(act, edge):
    # sigma_b^2 = 0, phi(0) = 0: q* = 0 with chi_1 = sigma_w^2 (phi'(0-)^2 + phi'(0+)^2) / 2 up
    # to the edge (homogeneous phi: at the edge every q is fixed)
    assert theory.edge_of_chaos(act, 0.0) == pytest.approx(edge, rel=1e-12)


def _gelu_edge_by_scipy(b):
    """sigma_w^2 with chi_1 = 1 for exact gelu, from scipy alone: q* by brentq on quad's F,
    chi_1 = w E[(Phi(z) + z phi(z))^2] at q*, then brentq on w below the divergence at 2."""
    phi2 = lambda z: (z * ncdf(z)) ** 2  # noqa: E731
    dphi2 = lambda z: (ncdf(z) + z * npdf(z)) ** 2  # noqa: E731

    def chi1_minus_1(w):
        q = brentq(lambda q: w * gauss_expect(phi2, q) + b - q, 1e-3, 1e4, xtol=1e-13, rtol=1e-13)
        return w * gauss_expect(dphi2, q) - 1, q

    w = brentq(lambda w: chi1_minus_1(w)[0], 1.9, 1.99, xtol=1e-12, rtol=1e-12)
    return w, chi1_minus_1(w)[1]


@pytest.mark.parametrize("b", [0.2, 0.5])
def test_gelu_edge_of_chaos_just_below_the_divergence(b):
    # q diverges at sigma_w^2 = 2 (gelu ~ relu for large q); chi_1 crosses 1 shortly before,
    # between points of a coarse grid (1.97: chi_1 < 1; 1.975: > 1, at b = 0.2)
    w_ref, q_ref = _gelu_edge_by_scipy(b)
    w = theory.edge_of_chaos("gelu", b)
    assert w == pytest.approx(w_ref, rel=1e-8)
    assert theory.fixed_point("gelu", w, b) == pytest.approx(q_ref, rel=1e-6)
    assert 1.95 < w < 1.975 and theory.chi1("gelu", w, b) == pytest.approx(1.0, abs=1e-8)


def test_sigmoid_edge_of_chaos_against_scipy():
    # the diagnosis quotes it: sigmoid's chi_1 reaches 1 only at sigma_w^2 ~ 100, deep in saturation
    from scipy.special import expit as sig

    def chi1_minus_1(w):
        q = brentq(lambda q: w * gauss_expect(lambda z: sig(z) ** 2, q) - q, 1e-3, 1e5, xtol=1e-12)
        return w * gauss_expect(lambda z: (sig(z) * (1 - sig(z))) ** 2, q) - 1, q

    w_ref = brentq(lambda w: chi1_minus_1(w)[0], 50, 200, xtol=1e-10)
    q_ref = chi1_minus_1(w_ref)[1]
    assert theory.edge_of_chaos("sigmoid", 0.0) == pytest.approx(w_ref, rel=1e-7)
    assert w_ref == pytest.approx(103.0, abs=0.05)
    logit = np.log(0.99 / 0.01)  # saturated: |z| > logit(0.99)
    assert 2 * norm.sf(logit / np.sqrt(q_ref)) == pytest.approx(0.496, abs=0.002)


def test_edge_of_chaos_refuses_jumps_and_divergence():
    # relu with a bias: chi_1 = sigma_w^2 / 2 < 1 wherever q* is finite (q* = b / (1 - w/2))
    with pytest.raises(ValueError, match="stays below 1.*no edge of chaos"):
        theory.edge_of_chaos("relu", 0.1)
    # the same for every positively homogeneous phi: chi_1 = 1 - sigma_b^2 / q* (by quadrature)
    for act, w in (("leaky_relu(slope=0.2)", 1.8), ("linear", 0.7), ("relu", 1.9)):
        with pytest.raises(ValueError, match="stays below 1.*no edge of chaos"):
            theory.edge_of_chaos(act, 0.5)
        q = theory.fixed_point(act, w, 0.5)
        assert theory.chi1(act, w, 0.5) == pytest.approx(1 - 0.5 / q, rel=1e-12)
    # gelu without bias: q* = 0 and chi_1 = sigma_w^2 / 4 until the orbit from q0 = 1 stops
    # decaying (an unstable fixed point passes q0) and q jumps to infinity: no chi_1 = 1 on the way
    with pytest.raises(ValueError, match="jumps past 1"):
        theory.edge_of_chaos("gelu", 0.0)


@pytest.mark.parametrize("act,w,b", [("tanh", 2.0, 0.1), ("sigmoid", 4.0, 0.0), ("gelu", 1.5, 0.2)])
def test_fixed_point_by_iteration_and_by_root_finder(act, w, b):
    phi = {"tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
           "gelu": lambda z: z * ncdf(z)}[act]
    F = lambda q: w * gauss_expect(lambda z: phi(z) ** 2, q) + b  # noqa: E731
    q = 1.0
    for _ in range(300):
        q, before = F(q), q
        if abs(q - before) <= 1e-14 * q:  # converged: the remaining steps would not move q
            break
    root = brentq(lambda q: F(q) - q, 1e-6, 100.0)
    assert q == pytest.approx(root, rel=1e-9)
    assert theory.fixed_point(act, w, b) == pytest.approx(root, rel=1e-9)


def test_fixed_point_edge_cases():
    assert theory.fixed_point("relu", 3.0, 0.0) == math.inf
    assert theory.fixed_point("tanh", 0.5, 0.0) == 0.0
    assert theory.fixed_point("relu", 2.0, 0.0, q0=3.3) == 3.3  # every q is fixed
    assert theory.fixed_point("relu", 1.0, 0.1) == pytest.approx(0.2, rel=1e-12)  # b / (1 - w/2)
    with pytest.raises(ValueError, match="no fixed point"):
        theory.chi1("relu", 3.0, 0.0)
    with pytest.raises(ValueError, match="weight_var"):
        theory.fixed_point("tanh", -1.0, 0.0)


SELU_L, SELU_A = 1.0507009873554805, 1.6732632423543772
NUMPY_PHI = {  # float64 references written independently of initdiag.nn.activations
    "tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "gelu": lambda z: z * ncdf(z),
    "elu": lambda z: z if z > 0 else np.expm1(z),
    "selu": lambda z: SELU_L * (z if z > 0 else SELU_A * np.expm1(z)),
    "silu": lambda z: z / (1 + np.exp(-z)), "softplus": lambda z: np.logaddexp(0.0, z),
    "leaky_relu(slope=0.2)": lambda z: z if z > 0 else 0.2 * z,
}


@pytest.mark.parametrize("act", list(NUMPY_PHI))
@pytest.mark.parametrize("q", [0.05, 1.0, 9.0])
def test_quadrature_matches_adaptive_integration(act, q):
    phi = NUMPY_PHI[act]
    dphi = lambda z, h=1e-6: (phi(z + h) - phi(z - h)) / (2 * h)  # noqa: E731
    m = theory.gaussian(act).moments(q)
    assert m["phi2"] == pytest.approx(gauss_expect(lambda z: phi(z) ** 2, q), rel=1e-10, abs=1e-14)
    assert m["phi"] == pytest.approx(gauss_expect(phi, q), rel=1e-9, abs=1e-12)
    assert m["dphi2"] == pytest.approx(gauss_expect(lambda z: dphi(z) ** 2, q), rel=1e-6)


def gauss_expect_split(f, q, breaks):
    """E_{z~N(0,q)}[f(z)] by scipy quad on pieces split at 0 and the given breaks (in z)."""
    s = math.sqrt(q)
    ends = sorted({-40.0, 0.0, 40.0, *[b / s for b in breaks if abs(b / s) < 40]})
    g = lambda u: f(s * u) * npdf(u)  # noqa: E731
    return sum(quad(g, a, b, epsabs=1e-14, epsrel=1e-13, limit=200)[0] for a, b in zip(ends[:-1], ends[1:]))


USER_KINKED = {  # jax callable, numpy phi, numpy phi', where phi or phi' jumps
    "relu(z - 0.7)": (lambda z: jnp.maximum(z - 0.7, 0.0), lambda z: max(z - 0.7, 0.0),
                      lambda z: 1.0 if z > 0.7 else 0.0, [0.7]),
    "clip(z, -1, 1)": (lambda z: jnp.clip(z, -1.0, 1.0), lambda z: min(max(z, -1.0), 1.0),
                       lambda z: 1.0 if abs(z) < 1 else 0.0, [-1.0, 1.0]),
    "z + 1[z > 1] z": (lambda z: jnp.where(z > 1.0, 2 * z, z), lambda z: 2 * z if z > 1 else z,
                       lambda z: 2.0 if z > 1 else 1.0, [1.0]),
}


@pytest.mark.parametrize("name", list(USER_KINKED))
@pytest.mark.parametrize("q", [0.3, 1.0, 4.0])
def test_user_callable_with_kinks_away_from_zero(name, q):
    f, phi, dphi, breaks = USER_KINKED[name]
    g = theory.gaussian(f)
    m = g.moments(q)
    assert m["dphi2"] == pytest.approx(gauss_expect_split(lambda z: dphi(z) ** 2, q, breaks), rel=1e-10)
    assert m["phi2"] == pytest.approx(gauss_expect_split(lambda z: phi(z) ** 2, q, breaks), rel=1e-10)
    assert float(theory.chi(f, 1.7, q)) == pytest.approx(1.7 * m["dphi2"], rel=1e-14)
    if name == "relu(z - 0.7)":  # closed form: E[phi'^2] = P(z > 0.7)
        assert m["dphi2"] == pytest.approx(norm.sf(0.7 / math.sqrt(q)), rel=1e-12)
    np.testing.assert_allclose(g.breaks, breaks, rtol=1e-12)  # located to adjacent floats


def test_smooth_user_callables_get_no_breaks():
    for f in (lambda z: jnp.tanh(z), jnp.sin, lambda z: z * jax.nn.sigmoid(z), jnp.exp):
        assert theory.gaussian(f).breaks.size == 0
    q = np.array([0.05, 1.0, 9.0])
    np.testing.assert_array_equal(theory.gaussian(lambda z: jnp.tanh(z)).moments(q)["dphi2"],
                                  theory.gaussian("tanh").moments(q)["dphi2"])


@pytest.mark.parametrize("t", [0.9, 0.99])
def test_tanh_saturation_equals_erf_closed_form(t):
    p = theory.predict("tanh", "normal(std=0.05)", depth=6, width=512, bias_init="normal(std=0.3)",
                       saturation_threshold=t)
    q = p["preact_var"]
    closed = 2 * (1 - norm.cdf(np.arctanh(t) / np.sqrt(q)))  # P(|tanh z| > t), z ~ N(0, q)
    np.testing.assert_allclose(p["saturation"], closed, rtol=1e-9)
    sig = theory.predict("sigmoid", "normal(std=0.2)", depth=3, width=512, saturation_threshold=t)
    logit = np.log(t / (1 - t))  # sigmoid(z) > t or < 1 - t  <=>  |z| > logit(t)
    np.testing.assert_allclose(sig["saturation"], 2 * (1 - norm.cdf(logit / np.sqrt(sig["preact_var"]))),
                               rtol=1e-9)


def test_depth_scales_follow_their_definitions():
    ordered = theory.depth_scales("tanh", 1.3, 0.05)
    assert ordered["c_star"] == 1.0 and ordered["xi_c"] == pytest.approx(-1 / math.log(ordered["chi1"]))
    chaotic = theory.depth_scales("tanh", 3.0, 0.05)
    assert chaotic["chi1"] > 1 and 0 < chaotic["c_star"] < 1
    cs = chaotic["c_star"]
    assert float(theory.c_map("tanh", 3.0, 0.05, chaotic["q_star"], cs)) == pytest.approx(cs, abs=1e-8)
    assert chaotic["xi_c"] == pytest.approx(-1 / math.log(chaotic["chi_c"]))
    # xi_q from the slope of the length map at q*, by finite differences of q_map.
    q, h = ordered["q_star"], 1e-5
    slope = (theory.q_map("tanh", 1.3, 0.05, q + h) - theory.q_map("tanh", 1.3, 0.05, q - h)) / (2 * h)
    assert ordered["xi_q"] == pytest.approx(-1 / math.log(float(slope)), rel=1e-6)
    # xi_c diverges at the edge of chaos.
    w = theory.edge_of_chaos("tanh", 0.05)
    assert theory.depth_scales("tanh", w, 0.05)["xi_c"] > 1e4


@pytest.mark.parametrize("kw,reason", [
    ({"norm": "batchnorm"}, "normalization"), ({"residual": 0.5}, "residual"),
    ({"init": "zeros"}, "every weight is equal"), ({"init": "constant(value=0.1)"}, "every weight"),
    ({"init": lambda k, s, d: np.zeros(s)}, "unknown variance"),
    ({"bias_init": "constant(value=0.1)"}, "nonzero mean"),
])
def test_not_applicable_says_why(kw, reason):
    args = {"activation": "tanh", "init": "he_normal", "depth": 3, "width": 16, **kw}
    with pytest.raises(theory.NotApplicable, match=reason):
        theory.predict(**args)


def test_predict_result_and_non_uniform_widths():
    r = initdiag.probe("tanh", "glorot_uniform", depth=4, width=[64, 32, 32, 16], batch=8)
    p = theory.predict_result(r)
    # glorot: fan_in * 2/(fan_in + fan_out) per layer
    np.testing.assert_allclose(p.weight_var, [1.0, 2 * 64 / 96, 1.0, 2 * 32 / 48])
    assert p["preact_var"].shape == (4,) and set(theory.PREDICTED) == set(p.metrics)
    arr = initdiag.probe("tanh", depth=2, width=8, input=np.ones((4, 8)))
    with pytest.raises(theory.NotApplicable, match="input"):
        theory.predict_result(arr)


def test_hanin_band_for_a_single_relu_input():
    p = theory.predict("relu", "he_normal", depth=L, width=N)  # batch=None: one input
    # each step adds 5/n (3/n from the layer's units, 2/n from the weights); the first adds
    # 2/n from the weights and 2/n_0 from the Gaussian input's own mean square
    assert p.log_sd[-1] ** 2 == pytest.approx((5 * (L - 1) + 4) / N, rel=1e-9)


# ---------------------------------------------------------------- measurement vs theory

CASES = {"tanh": ("tanh", "he_normal", "normal(std=0.2)", 3),
         "sigmoid": ("sigmoid", "xavier_normal", "zeros", 3),
         "relu": ("relu", "he_normal", "zeros", 8)}


@pytest.fixture(scope="module")
def measured():
    out = {}
    for key, (act, init, bias, seeds) in CASES.items():
        runs = [initdiag.probe(act, init, L, N, B, s, bias) for s in range(seeds)]
        out[key] = (theory.predict(act, init, L, N, bias, batch=B), runs)
    return out


@pytest.mark.parametrize("key", list(CASES))
def test_one_step_map_predicts_next_layer_within_sampling_error(measured, key):
    pred, runs = measured[key]
    z = np.concatenate([(r["preact_var"][1:] / pred.one_step(r["preact_var"]) - 1) / pred.step_sd[1:]
                        for r in runs])
    # Errors of successive steps are uncorrelated (martingale differences): no systematic bias
    # (mean within 4 standard errors) and a spread consistent with the derived sampling error.
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert 0.4 < np.mean(z**2) < 1.8
    assert 0.005 < np.median(pred.step_sd) < 0.06  # "a few percent per layer" at this width


@pytest.mark.parametrize("key", ["tanh", "sigmoid"])
def test_seed_averaged_profile_within_5_percent(measured, key):
    pred, runs = measured[key]
    for metric in ("preact_var", "act_var"):
        mean = np.mean([r[metric] for r in runs], axis=0)
        np.testing.assert_array_less(np.abs(mean / pred[metric] - 1), 0.05)
    sat = np.mean([r["saturation"] for r in runs], axis=0)
    np.testing.assert_allclose(sat, pred["saturation"], atol=0.005)


def test_relu_drifts_like_a_random_walk_with_the_predicted_spread(measured):
    pred, runs = measured["relu"]
    dev = np.array([np.log(r["preact_var"][-1] / pred["preact_var"][-1]) for r in runs])
    centred = dev + pred.log_sd[-1] ** 2 / 2  # the median sits exp(-Var/2) below the mean
    ratio = np.sqrt(np.mean(centred**2)) / pred.log_sd[-1]
    # chi-square with 8 dof: 99.9% of draws give a ratio in [0.41, 1.87]
    assert 0.41 < ratio < 1.87
    assert 0.15 < pred.log_sd[-1] < np.sqrt(5 * L / N)  # ~20%: narrower than one input's band
    zf = np.mean([r["zero_frac"] for r in runs], axis=0)
    np.testing.assert_allclose(zf, 0.5, atol=0.01)


@pytest.mark.parametrize("key", ["tanh", "sigmoid"])
def test_gradient_chi_products_hold_with_the_random_readout(measured, key):
    pred, runs = measured[key]
    g = np.mean([r["grad_preact_rms"] / r["grad_preact_rms"][-1] for r in runs], axis=0)
    # log10 of a profile spanning up to 18 decades (sigmoid): within 0.02 decades (5%)
    np.testing.assert_allclose(np.log10(g), np.log10(pred["grad_preact_rms"]), atol=0.02)


def test_gradient_predictions_fail_when_the_loss_feeds_the_output_back():
    pred = theory.predict("relu", "he_normal", L, N, batch=B)
    r = initdiag.probe("relu", "he_normal", L, N, B, 0, loss="half_mse")
    g = r["grad_preact_rms"] / r["grad_preact_rms"][-1]
    # dL/dx^L = x^L / B is not independent of the forward pass: the chi-product (1 at every
    # layer for He/ReLU) underestimates the first layer's gradient several-fold.
    assert np.log10(g[0]) - np.log10(pred["grad_preact_rms"][0]) > 0.3


def test_verdict_reports_theory_beside_measurement_and_names_the_edge_of_chaos():
    r = initdiag.probe("tanh", "normal(std=0.02)", depth=30, width=256, batch=64,
                       bias_init=f"normal(std={math.sqrt(0.05)})")
    v = initdiag.diagnose(r)
    assert v.kind == "vanishing"
    ev = v.evidence
    pred = theory.predict_result(r)
    assert ev["theory_grad_ratio"] == pytest.approx(pred["grad_preact_rms"][0], rel=1e-9)
    # measured per-layer factor vs mean-field sqrt(chi): width 256, within 5%
    assert ev["grad_factor_per_layer"] == pytest.approx(ev["theory_grad_factor_per_layer"], rel=0.05)
    assert ev["layers_per_decade"] == pytest.approx(1 / abs(ev["grad_log10_slope"]))
    assert "sigma_w^2 = 1.76 with sigma_b^2 = 0.05 is at the edge of chaos for tanh" in v.suggestion


# ---------------------------------------------------------------- deviation from theory

def test_deviation_against_a_hand_computation():
    r = initdiag.probe("relu", "glorot_normal", depth=3, width=64, batch=8)
    # Xavier on equal widths: sigma_w^2 = 1, so q = 1, 1/2, 1/4; E[relu] = sqrt(q / (2 pi));
    # Var = q/2 - q/(2 pi); half the entries are 0; gradient RMS x sqrt(1/2) per layer back.
    values = dict(r.values)
    values.update(preact_var=np.array([1.1, 0.45, 0.25]), act_mean=np.array([0.4, 0.3, 0.2]),
                  zero_frac=np.array([0.5, 0.55, 0.4]), grad_preact_rms=np.array([1.0, 1.5, 2.0]),
                  preact_mean=np.array([0.01, -0.02, 0.0]))
    hand = initdiag.ProbeResult(config=r.config, seed=r.seed, values=values)
    c = theory.compare(hand)
    assert c.applicable and c.reason is None
    np.testing.assert_allclose(c["preact_var"], [0.1, -0.1, 0.0], atol=1e-12)
    q = np.array([1.0, 0.5, 0.25])
    np.testing.assert_allclose(c.predicted["act_mean"], np.sqrt(q / (2 * np.pi)), rtol=1e-12)
    np.testing.assert_allclose(c["act_mean"], [0.4 / np.sqrt(1 / (2 * np.pi)) - 1,
                                               0.3 / np.sqrt(0.5 / (2 * np.pi)) - 1,
                                               0.2 / np.sqrt(0.25 / (2 * np.pi)) - 1], atol=1e-12)
    np.testing.assert_allclose(c["zero_frac"], [0.0, 0.1, -0.2], atol=1e-12)
    # measured gradient relative to the last layer: 0.5, 0.75, 1 vs 0.5, 0.7071, 1
    np.testing.assert_allclose(c.measured["grad_preact_rms"], [0.5, 0.75, 1.0])
    np.testing.assert_allclose(c["grad_preact_rms"], [0.0, 0.75 / np.sqrt(0.5) - 1, 0.0], atol=1e-12)
    # a zero prediction has no relative deviation; an undefined metric is said to be undefined
    assert np.all(np.isnan(c["preact_mean"])) and "prediction is 0" in c.notes["preact_mean"]
    np.testing.assert_allclose(c.abs_dev["preact_mean"], [0.01, -0.02, 0.0])
    assert np.all(np.isnan(c["saturation"])) and "not defined for relu" in c.notes["saturation"]
    assert "preact_var" not in c.notes
    f = theory.compare_frame(hand)
    row = f[(f.metric == "preact_var") & (f.layer == 2)].iloc[0]
    assert row.value == 0.45 and row.theory == pytest.approx(0.5, rel=1e-12)
    assert row.rel_dev == pytest.approx(-0.1, rel=1e-12)
    assert set(f.metric) == set(theory.COMPARED) and len(f) == 3 * len(theory.COMPARED)
    assert theory.compare(hand).predicted.keys() == c.predicted.keys()
    np.testing.assert_allclose(theory.predict_result(hand, band=False)["preact_var"], q, rtol=1e-12)


def test_deviation_where_theory_does_not_apply_says_why():
    s = initdiag.sweep(["tanh"], ["he_normal"], depths=[3], widths=[16], batch=8, norm="layernorm")
    c = theory.compare(s)[0]
    assert not c.applicable and "normalization is not modelled" in c.reason
    assert all(np.all(np.isnan(v)) for v in c.rel_dev.values())
    f = theory.compare_frame(s)
    assert f.theory.isna().all() and f.note.str.contains("normalization is not modelled").all()
    np.testing.assert_array_equal(f[f.metric == "act_var"].value, s[0]["act_var"])
    with pytest.raises(theory.NotApplicable, match="normalization"):
        theory.predict_result(s[0])


def test_event_probabilities_compile_once_whatever_the_threshold():
    """The quadrature's masks are jitted once per (activation, event), not once per call: the
    threshold is an argument. Values against the closed form P(|tanh z| > t) = 2 (1 - Phi(
    atanh(t) / sqrt(q))) and P(relu(z) = 0) = 1/2."""
    from scipy.special import ndtr

    from initdiag.theory import _quadrature

    g = theory.gaussian("tanh")
    q = np.array([0.5, 2.0, 8.0])
    g.saturated_probability(q, 0.9)  # compiled here (or earlier in the session)
    before = _quadrature._saturated_mask._cache_size()
    for t in (0.95, 0.99, 0.999):
        p = g.saturated_probability(q, t)
        np.testing.assert_allclose(p, 2 * (1 - ndtr(np.arctanh(t) / np.sqrt(q))), rtol=1e-9)
    assert _quadrature._saturated_mask._cache_size() == before
    np.testing.assert_allclose(theory.gaussian("relu").zero_probability(q), 0.5, rtol=1e-12)
    with pytest.raises(ValueError, match="invalid event 'dead'; valid events: saturated, zero"):
        g.probability(q, "dead")


def test_predict_configs_batches_a_sweep_without_mixing_its_rows():
    """A sweep's predictions computed together (one quadrature per layer over every stack of an
    activation) equal those computed one stack at a time, row by row; NotApplicable entries
    come back in place, not raised."""
    base = initdiag.ProbeConfig(depth=6, batch=8)
    configs = [initdiag.ProbeConfig.from_dict({**base.to_dict(), **kw}) for kw in (
        dict(activation="tanh", init="he_normal", width=32),
        dict(activation="tanh", init="orthogonal(gain=1.3)", width=[8, 64, 16, 16, 4, 32]),
        dict(activation="relu", init="he_normal", width=16, bias_init="normal(std=0.3)"),
        dict(activation="tanh", init="zeros", width=32),  # not applicable
        dict(activation="tanh", init="glorot_normal", width=32, batch=3),
        dict(activation="relu", init="glorot_uniform", width=64, depth=9),
    )]
    for c in configs:
        c.validated()
    for band in (True, False):
        preds = theory.predict_configs(configs, band=band)
        assert isinstance(preds[3], theory.NotApplicable) and "zeros" in preds[3].reason
        for c, p in zip(configs, preds):
            if isinstance(p, theory.NotApplicable):
                continue
            one = theory.predict(c.activation, c.init, c.depth, list(c.widths), c.bias_init,
                                 batch=c.batch, band=band)
            for m in theory.PREDICTED:
                np.testing.assert_array_equal(p[m], one[m], err_msg=f"{c.label()} {m}")
            # the band's pair sums run over all layers at once: equal to float64 rounding
            np.testing.assert_allclose(p.log_sd, one.log_sd, rtol=1e-14, equal_nan=True)
            assert np.all(np.isnan(p.log_sd)) == (not band)
            assert p.q_star == one.q_star or (math.isnan(p.q_star) and math.isnan(one.q_star))


def test_a_prediction_without_band_is_the_banded_one_minus_its_band():
    c = initdiag.ProbeConfig(activation="sigmoid", init="lecun_uniform", depth=5, width=24,
                             batch=16, bias_init="normal(std=0.2)")
    with_band = theory.predict_config(c, band=True)
    without = theory.predict_config(c, band=False)  # served from the banded one
    fresh = theory.predict(c.activation, c.init, 5, 24, c.bias_init, batch=16, band=False)
    assert np.all(np.isfinite(with_band.log_sd)) and np.all(np.isnan(without.log_sd))
    for m in theory.PREDICTED:
        np.testing.assert_array_equal(without[m], fresh[m])
