"""Jacobian spectra against the known picture (Pennington, Schoenholz & Ganguli 2017)."""

import numpy as np
import pytest

from initdiag import theory
from initdiag.analysis.jacobian import jacobian_spectrum

GAUSS = "variance_scaling(scale=1.0, mode=fan_in, distribution=normal)"


def gamma(k):
    """Higham's gamma_k = k u / (1 - k u) for float32 (u = 2^-24)."""
    return k * 2.0**-24 / (1 - k * 2.0**-24)


def test_deep_linear_orthogonal_stack_is_an_exact_isometry():
    # Weyl: every singular value of the float32 J is within ||J_hat - J|| <= L gamma_n of 1
    # (L products of n-term dot products with factors of norm 1; the float32 Q is orthogonal
    # to O(sqrt(n) u)): 1.1e-4 at L = 30, n = 64 (observed 2.2e-6). Lanczos works on the
    # float32 J^T J (2 L factors): its sigma^2 within 2 L gamma_n, sigma within L gamma_n.
    s = jacobian_spectrum("linear", "orthogonal", depth=30, width=64)
    np.testing.assert_allclose(s.singular_values, 1.0, rtol=0, atol=30 * gamma(64))
    assert s.singular_values.size == 64 and s.method == "exact"
    lz = jacobian_spectrum("linear", "orthogonal", depth=30, width=64, method="lanczos", steps=10,
                           probes=2)
    assert lz.method == "lanczos"
    np.testing.assert_allclose(lz.extremes, 1.0, rtol=0, atol=30 * gamma(64))


def test_gaussian_products_spread_linearly_with_depth():
    # Var(sigma^2)/E[sigma^2]^2 -> L for a product of L square Gaussian matrices (Fuss–Catalan
    # second moment L + 1); orthogonal products stay at 0.
    spreads = {d: jacobian_spectrum("linear", GAUSS, depth=d, width=256).spread() for d in (2, 8, 32)}
    for d, sp in spreads.items():
        assert sp == pytest.approx(d, rel=0.25)
    assert spreads[2] < spreads[8] < spreads[32]
    # float32 isometry: sigma^2 within 2 L gamma_n of 1, so spread <= (2 L gamma_n)^2 = 9.5e-7
    # (observed 1.4e-11; a Gaussian product's is ~32)
    assert jacobian_spectrum("linear", "orthogonal", depth=32, width=256).spread() < (64 * gamma(256)) ** 2


def test_tanh_with_unit_inputs_at_unit_weight_variance_is_ordered():
    # sigma_w^2 = 1, sigma_b^2 = 1e-4 with N(0, 1) inputs: q falls from 1 towards a small q*, and
    # chi < 1 on the way (ordered phase; the chi-product is 0.02 at depth 32), not criticality
    kw = dict(activation="tanh", depth=32, width=256, bias_init="normal(std=0.01)")
    orth = jacobian_spectrum(init="orthogonal", **kw)
    gauss = jacobian_spectrum(init=GAUSS, **kw)
    assert gauss.spread() > 10 * orth.spread()
    assert gauss.spread() == pytest.approx(32, rel=0.3)  # still the linear Gaussian picture
    assert orth.spread() < 3
    assert orth.log_var() < gauss.log_var()
    assert orth.mean_sq() < 0.1


def test_tanh_at_criticality_orthogonal_stays_concentrated():
    # At the edge of chaos with q^1 = q* (inputs of variance (q* - sigma_b^2) / sigma_w^2), every
    # layer has chi = chi_1 = 1: mean sigma^2 = 1. Measured over seeds 0-5 (one point each):
    # orthogonal mean sigma^2 0.84-1.14, spread 0.33-0.39, 87-96% of sigma in [1/2, 2];
    # Gaussian spread 31-38, 5-6% in [1/2, 2].
    b = 1e-4
    w = theory.edge_of_chaos("tanh", b)
    q = theory.fixed_point("tanh", w, b)
    assert w == pytest.approx(1.086, abs=1e-3) and q == pytest.approx(0.0457, abs=1e-4)
    kw = dict(activation="tanh", depth=32, width=256, bias_init=f"normal(std={b ** 0.5})",
              input_var=(q - b) / w)
    for seed in (0, 1, 2):
        orth = jacobian_spectrum(init=f"orthogonal(gain={w ** 0.5})", seed=seed, **kw)
        gauss = jacobian_spectrum(init=f"variance_scaling(scale={w}, mode=fan_in, distribution=normal)",
                                  seed=seed, **kw)
        near = lambda s: np.mean((s.singular_values > 0.5) & (s.singular_values < 2))  # noqa: E731
        assert 0.7 < orth.mean_sq() < 1.4
        assert orth.spread() < 0.6 and near(orth) > 0.75
        assert gauss.spread() > 20 and near(gauss) < 0.2
        assert orth.config["input_var"] == pytest.approx((q - b) / w)


def test_lsuv_spectrum_is_that_of_the_rescaled_weights():
    from initdiag.nn.lsuv import lsuv_params
    from initdiag.nn.stacks import init_stack, make_input, make_spec, split_seed
    from reference import layers_of

    spec = make_spec(activation="tanh", init="lsuv", depth=6, width=32, bias_init="zeros")
    x = make_input(split_seed(4)["input"], 64, 32)
    ws, bs = layers_of(lsuv_params(init_stack(4, spec), x, spec))
    # J = prod_l F_l, F_l = diag(phi'(h^l)) W^l^T, along the first input row, in float64 numpy
    h_in, jac, prod_norms = np.asarray(x[0], np.float64), np.eye(32), 1.0
    for wl, bl in zip(ws, bs):
        h = h_in @ np.asarray(wl, np.float64) + np.asarray(bl, np.float64)
        f = np.asarray(wl, np.float64).T * (1 - np.tanh(h) ** 2)[:, None]
        jac, prod_norms = f @ jac, prod_norms * np.linalg.norm(f, 2)
        h_in = np.tanh(h)
    s = jacobian_spectrum("tanh", "lsuv", depth=6, width=32, seed=4, batch=64)
    # The library's J is float32 (jacfwd). Weyl: |sigma_hat_i - sigma_i| <= ||J_hat - J||_2 for
    # every i, an absolute bound: a relative one on the smallest (1.7e-5 here, sigma_max 3.2)
    # is wrong (its relative error was 5e-5 to 5e-4 depending on the BLAS/ISA). To first order
    # J_hat - J = sum_l F_L..F_{l+1} dF_l F_{l-1}..F_1, so ||J_hat - J|| <= L delta P with
    # P = prod_l ||F_l||_2 (>= every partial product; 9.9 here) and delta the relative error
    # of one factor: two n-term float32 dot products per layer (the tangent's t W^l, and the
    # forward h^l that phi' = 1 - tanh^2 sees, |phi''| < 1) at gamma_n each (Higham 2002, 3.5),
    # plus tanh, the product by phi', and the bias: delta <= gamma_{2n+4}, u = 2^-24.
    # Observed ||J_hat - J||_2 <= 6.6 u P (seeds 0-7; OpenBLAS Haswell/SkylakeX/Sandybridge/
    # Prescott cores, XLA max ISA SSE4.2/AVX/AVX2/AVX-512), the bound is 408 u P; a spectrum of
    # LSUV fitted on 63 of the 64 rows misses it by 7x.
    n, L = 32, 6
    np.testing.assert_allclose(np.sort(s.singular_values), np.sort(np.linalg.svd(jac, compute_uv=False)),
                               rtol=0, atol=L * gamma(2 * n + 4) * prod_norms)


def test_lanczos_estimates_match_the_exact_spectrum():
    probes, n = 16, 256
    exact = jacobian_spectrum("tanh", "xavier_normal", depth=10, width=n)
    slq = jacobian_spectrum("tanh", "xavier_normal", depth=10, width=n, method="lanczos", steps=60,
                            probes=probes)
    assert slq.extremes[1] == pytest.approx(exact.extremes[1], rel=1e-4)  # largest: converged
    assert slq.weights.sum() == pytest.approx(1.0)
    # mean of sigma^2 = average of v^T J^T J v over random unit v: relative sd
    # sqrt(2 spread / ((n + 2) probes)); allow 4 of them
    sd = np.sqrt(2 * exact.spread() / ((n + 2) * probes))
    assert abs(slq.mean_sq() / exact.mean_sq() - 1) < 4 * sd


def test_several_points_pool_and_bad_method():
    s = jacobian_spectrum("tanh", "orthogonal", depth=3, width=16, points=3)
    assert s.singular_values.size == 48 and s.weights.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="method"):
        jacobian_spectrum("tanh", method="svd")


# --- jacobian_spectra: many stacks at once --------------------------------------------------------

PHI64 = {"tanh": (np.tanh, lambda h: 1 - np.tanh(h) ** 2),
         "relu": (lambda h: np.maximum(h, 0), lambda h: (h > 0).astype(np.float64))}


def numpy64_jacobian(ws, bs, x, activation):
    """J = F_L .. F_1, F_l = diag(phi'(h^l)) W^l^T, of the float32 weights in float64 numpy at the
    point ``x``; with P = prod_l ||F_l||_2, and the margin of relu's kink: the smallest |h^l_i|
    over the bound e_l on the float32 forward's error in h^l (so that phi' of the float32 h is
    phi' of this h for relu; e_l = ||W^l||_2 (e_{l-1} + gamma_{n+2} ||x^{l-1}||) with e_0 = 0,
    phi 1-Lipschitz, an n-term dot product plus bias per layer)."""
    phi, dphi = PHI64[activation]
    x_in, jac, prod_norms, err, margin = np.asarray(x, np.float64), None, 1.0, 0.0, np.inf
    for w, b in zip(ws, bs):
        w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
        h = x_in @ w + b
        w_norm = np.linalg.norm(w, 2)
        err = w_norm * (err + gamma(w.shape[0] + 2) * np.linalg.norm(x_in))
        margin = min(margin, np.abs(h).min() / err)
        f = w.T * dphi(h)[:, None]
        jac = f if jac is None else f @ jac
        prod_norms *= np.linalg.norm(f, 2)
        x_in = phi(h)
    return jac, prod_norms, margin


def test_batched_spectra_match_a_float64_reference():
    from initdiag.analysis.jacobian import jacobian_spectra
    from initdiag.nn.stacks import init_stack, make_input, make_spec, split_seed
    from reference import layers_of

    # two activations sharing a draw; a bias. relu only where its kink is clear of rounding
    # (the margin below: its normwise forward bound is loose, > 1 for orthogonal weights only)
    L, n = 8, 48
    stacks = [("tanh", "orthogonal", "zeros", 0), ("relu", "orthogonal", "zeros", 0),
              ("tanh", "he_normal", "normal(std=0.1)", 1), ("tanh", "glorot_uniform", "zeros", 2)]
    configs = [dict(activation=a, init=i, bias_init=b, seed=s, depth=L, width=n)
               for a, i, b, s in stacks]
    spectra = jacobian_spectra(configs)
    for c, s in zip(configs, spectra):
        spec = make_spec(activation=c["activation"], init=c["init"], bias_init=c["bias_init"],
                         depth=L, width=n)
        x = make_input(split_seed(c["seed"])["input"], 1, n)[0]
        ws, bs = layers_of(init_stack(c["seed"], spec))
        jac, prod_norms, margin = numpy64_jacobian(ws, bs, x, c["activation"])
        assert margin > 1 or c["activation"] != "relu", c  # relu: no |h| within rounding of 0
        # Weyl: |sigma_hat_i - sigma_i| <= ||J_hat - J||_2 <= L gamma_{2n+4} P, as derived in
        # test_lsuv_spectrum_is_that_of_the_rescaled_weights (P = prod_l ||F_l||_2)
        ref = np.linalg.svd(jac, compute_uv=False)
        assert s.singular_values.size == ref.size == n
        np.testing.assert_allclose(np.sort(s.singular_values), np.sort(ref), rtol=0,
                                   atol=L * gamma(2 * n + 4) * prod_norms, err_msg=str(c))
        assert s.config["init"] == spec.init.label and s.config["seed"] == c["seed"]


def test_batched_linear_orthogonal_stacks_are_isometries():
    from initdiag.analysis.jacobian import jacobian_spectra

    # as in test_deep_linear_orthogonal_stack_is_an_exact_isometry: within L gamma_n of 1
    spectra = jacobian_spectra([dict(activation="linear", init="orthogonal", depth=30, width=64,
                                     seed=seed) for seed in (0, 1, 2)])
    for s in spectra:
        assert s.singular_values.size == 64
        np.testing.assert_allclose(s.singular_values, 1.0, rtol=0, atol=30 * gamma(64))


def test_batched_spectra_are_those_of_jacobian_spectrum_and_keep_errors_in_place():
    from initdiag.analysis.jacobian import jacobian_spectra

    # configs that differ only in activation, bias, seed or points: each has its own weights
    # or input points (a wrong sharing of draws would show)
    base = dict(init="glorot_normal", depth=4, width=16)
    configs = [dict(base, activation="tanh"), dict(base, activation="relu"),
               dict(base, activation="tanh", bias_init="normal(std=0.5)"),
               dict(base, activation="tanh", seed=3), dict(base, activation="tanh", points=2),
               dict(base, activation="tanh", input_var=0.25)]
    spectra = jacobian_spectra(configs)
    for c, s in zip(configs, spectra):
        one = jacobian_spectrum(**c, method="exact")
        np.testing.assert_array_equal(s.singular_values, one.singular_values)
        np.testing.assert_array_equal(s.weights, one.weights)
        assert s.config == one.config and s.extremes == one.extremes
    assert len({s.singular_values.tobytes() for s in spectra}) == len(configs)
    bad = [dict(base, activation="tanh", init="nope"),
           dict(base, activation="tanh", bias_init="lsuv")]
    out = jacobian_spectra(bad + configs[:1], return_errors=True)
    assert isinstance(out[0], ValueError) and "nope" in str(out[0])
    assert isinstance(out[1], ValueError) and "lsuv" in str(out[1])
    np.testing.assert_array_equal(out[2].singular_values, spectra[0].singular_values)
    with pytest.raises(ValueError, match="nope"):
        jacobian_spectra(bad[:1])


def test_spectra_of_stacks_that_change_width_match_a_float64_reference():
    """A width change (input width != width, or a list of widths) is a layer whose output has
    another shape than its input: its spectrum is that of the float64 product of its layers."""
    from initdiag.analysis.jacobian import jacobian_spectra
    from initdiag.nn.stacks import init_stack, make_input, make_spec, split_seed
    from reference import layers_of

    configs = [dict(activation="tanh", init="orthogonal", depth=4, width=[24, 40, 40, 16],
                    seed=3),
               dict(activation="tanh", init="he_normal", depth=3, width=32, input_width=20,
                    seed=4)]
    for c, s in zip(configs, jacobian_spectra(configs)):
        spec = make_spec(activation=c["activation"], init=c["init"], depth=c["depth"],
                         width=c["width"], input_width=c.get("input_width"))
        x = make_input(split_seed(c["seed"])["input"], 1, spec.input_width)[0]
        ws, bs = layers_of(init_stack(c["seed"], spec))
        jac, prod_norms, _ = numpy64_jacobian(ws, bs, x, "tanh")
        ref = np.linalg.svd(jac, compute_uv=False)
        assert jac.shape == (spec.widths[-1], spec.input_width) and s.singular_values.size == ref.size
        n = max(max(spec.widths), spec.input_width)
        np.testing.assert_allclose(np.sort(s.singular_values), np.sort(ref), rtol=0,
                                   atol=c["depth"] * gamma(2 * n + 4) * prod_norms, err_msg=str(c))
