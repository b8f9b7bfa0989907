"""The engine's reductions against independent references (binary search, numpy)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import initdiag
from initdiag.config import MAX_HIST_BINS, MIN_BIN_WIDTH
from initdiag.engine.stats import histogram


def _searchsorted_counts(values, edges):
    """The definition: bin = searchsorted(edges, v, side='right') - 1, clipped (NaN last)."""
    n = edges.shape[0] - 1
    idx = jnp.clip(jnp.searchsorted(edges, values.ravel(), side="right") - 1, 0, n - 1)
    return np.bincount(np.asarray(idx), minlength=n)


def _adversarial(edges, key):
    """Every edge, the floats just below and above it, far outside values, NaN, +-inf and a
    random spread over the range."""
    e = np.asarray(edges, np.float32)
    near = np.concatenate([e, np.nextafter(e, np.float32(-np.inf)),
                           np.nextafter(e, np.float32(np.inf))])
    span = float(e[-1] - e[0])
    special = np.array([np.nan, np.inf, -np.inf, e[0] - 10 * span, e[-1] + 10 * span, 0.0,
                        -0.0], np.float32)
    spread = np.asarray(jax.random.uniform(key, (4096,), jnp.float32, e[0] - 0.1 * span,
                                           e[-1] + 0.1 * span))
    return jnp.asarray(np.concatenate([near, special, spread]))


@pytest.mark.parametrize("lo,hi,bins", [
    (-1.0, 1.0, 50), (0.0, 1.0, 50), (-4.0, 4.0, 7), (-45.0, 5.0, 50), (-1.0, 3.0, 4),
    (-1.0, 1.0, MAX_HIST_BINS),  # the most bins a config admits
    (1.0, 1.0 + 50 * MIN_BIN_WIDTH * 1.0001, 50),  # the narrowest bins a config admits
    (-1e6, -1e6 + 10 * MIN_BIN_WIDTH * 1e6 * 1.0001, 10),
])
def test_histogram_equals_a_binary_search_at_every_edge(lo, hi, bins):
    edges = jnp.linspace(lo, hi, bins + 1, dtype=jnp.float32)  # as the probe makes them
    values = _adversarial(edges, jax.random.PRNGKey(bins))
    got = np.asarray(jax.jit(histogram)(values, edges))
    np.testing.assert_array_equal(got, _searchsorted_counts(values, edges))
    assert got.sum() == values.size


def test_histogram_of_a_2d_batch_counts_every_entry():
    values = jax.random.normal(jax.random.PRNGKey(0), (256, 256)) * 0.7
    edges = jnp.linspace(-1.0, 1.0, 51, dtype=jnp.float32)
    got = np.asarray(histogram(values, edges))
    ref, _ = np.histogram(np.clip(np.asarray(values), -1.0, np.nextafter(np.float32(1.0), 0)),
                          np.asarray(edges))
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("kw,message", [
    (dict(hist_bins=MAX_HIST_BINS + 1), f"hist_bins must be <= {MAX_HIST_BINS}"),
    (dict(act_hist_range=(1.0, 1.0 + 1e-6), hist_bins=50),
     r"act_hist_range \[1.0, 1.000001\] with hist_bins=50 makes bins of width 2e-08"),
])
def test_histogram_settings_float32_cannot_resolve_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        initdiag.probe("tanh", depth=2, width=4, batch=2, histograms=True, **kw)
