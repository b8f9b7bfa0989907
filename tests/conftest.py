import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

pytest_plugins = ["pytester"]


@pytest.fixture
def key():
    return jax.random.key(0)
