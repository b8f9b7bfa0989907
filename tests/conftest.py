import os

os.environ.setdefault("MPLBACKEND", "Agg")
# In-process `initdiag report` runs keep jax's persistent compilation cache off: the suite must not
# depend on (or write to) the user's cache; tests/test_cache.py turns it on in subprocesses.
os.environ["INITDIAG_CACHE_DIR"] = ""

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

# `import initdiag` leaves initdiag.theory (scipy, numpy.fft) to its first use. pytester's inline
# runs drop the modules a run imported, and numpy.fft's extension cannot be loaded twice in one
# process: load them here, outside any inline run.
import initdiag.theory  # noqa: E402,F401

pytest_plugins = ["pytester"]

# Property-based tests (hypothesis): one deterministic profile, so CI and a laptop run the same
# examples (derandomize: examples derive from each test's source, not from a random seed), with
# no example database written into the repo, no per-example deadline (the first example of a
# shape pays jax's compilation) and a bounded example count (tests that compile per example set
# a smaller one). INITDIAG_HYPOTHESIS=thorough explores more, randomly, when hunting for bugs.
settings.register_profile("initdiag", derandomize=True, database=None, deadline=None,
                          max_examples=25, print_blob=False,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", parent=settings.get_profile("initdiag"),
                          derandomize=False, max_examples=500)
THOROUGH = os.environ.get("INITDIAG_HYPOTHESIS") == "thorough"
settings.load_profile("thorough" if THOROUGH else "initdiag")


def examples(n):
    """A test's example count: ``n`` in the deterministic profile, the profile's (more) when
    exploring with INITDIAG_HYPOTHESIS=thorough."""
    return max(n, settings.default.max_examples) if THOROUGH else n


@pytest.fixture
def key():
    return jax.random.key(0)
