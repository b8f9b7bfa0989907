"""Jacobian spectra against the known picture (Pennington, Schoenholz & Ganguli 2017)."""

import numpy as np
import pytest

from initdiag.jacobian import jacobian_spectrum

GAUSS = "variance_scaling(scale=1.0, mode=fan_in, distribution=normal)"


def test_deep_linear_orthogonal_stack_is_an_exact_isometry():
    s = jacobian_spectrum("linear", "orthogonal", depth=30, width=64)
    np.testing.assert_allclose(s.singular_values, 1.0, atol=1e-4)
    assert s.singular_values.size == 64 and s.method == "exact"
    lz = jacobian_spectrum("linear", "orthogonal", depth=30, width=64, method="lanczos", steps=10,
                           probes=2)
    assert lz.method == "lanczos"
    np.testing.assert_allclose(lz.extremes, 1.0, atol=1e-4)


def test_gaussian_products_spread_linearly_with_depth():
    # Var(sigma^2)/E[sigma^2]^2 -> L for a product of L square Gaussian matrices (Fuss–Catalan
    # second moment L + 1); orthogonal products stay at 0.
    spreads = {d: jacobian_spectrum("linear", GAUSS, depth=d, width=256).spread() for d in (2, 8, 32)}
    for d, sp in spreads.items():
        assert sp == pytest.approx(d, rel=0.25)
    assert spreads[2] < spreads[8] < spreads[32]
    assert jacobian_spectrum("linear", "orthogonal", depth=32, width=256).spread() < 1e-6


def test_tanh_at_criticality_orthogonal_stays_concentrated():
    # sigma_w^2 = 1, sigma_b^2 = 1e-4: q* is small, tanh nearly linear, chi_1 ~ 1.
    kw = dict(activation="tanh", depth=32, width=256, bias_init="normal(std=0.01)")
    orth = jacobian_spectrum(init="orthogonal", **kw)
    gauss = jacobian_spectrum(init=GAUSS, **kw)
    assert gauss.spread() > 10 * orth.spread()
    assert gauss.spread() == pytest.approx(32, rel=0.3)  # still the linear Gaussian picture
    assert orth.spread() < 3
    assert orth.log_var() < gauss.log_var()


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
