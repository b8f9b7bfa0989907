import os

os.environ.setdefault("MPLBACKEND", "Agg")
# In-process `initdiag report` runs keep jax's persistent compilation cache off: the suite must not
# depend on (or write to) the user's cache; tests/test_cache.py turns it on in subprocesses.
os.environ["INITDIAG_CACHE_DIR"] = ""

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

# `import initdiag` leaves initdiag.theory (scipy, numpy.fft) to its first use. pytester's inline
# runs drop the modules a run imported, and numpy.fft's extension cannot be loaded twice in one
# process: load them here, outside any inline run.
import initdiag.theory  # noqa: E402,F401

pytest_plugins = ["pytester"]


@pytest.fixture
def key():
    return jax.random.key(0)
