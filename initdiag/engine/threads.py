"""Thread limits for LAPACK calls made from compiled jax code.

jaxlib's CPU QR (orthogonal initialization, LSUV's start) calls LAPACK from scipy's OpenBLAS,
which starts its own thread pool on top of XLA's. On a 2-core machine the two pools fight: drawing
50 orthogonal 256x256 matrices took 1.9 s under load instead of 0.12 s with OpenBLAS limited to
one thread, and a batched QR once deadlocked. XLA's own matmuls do not use OpenBLAS, so limiting
it costs nothing elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator


@functools.lru_cache(maxsize=1)
def _controller():
    # jaxlib loads scipy's LAPACK (its own OpenBLAS) on its first QR; load it now, so that the
    # controller, which sees only the libraries loaded when it is made, limits it too.
    import scipy.linalg.cython_lapack  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Within the block, BLAS/LAPACK libraries (OpenBLAS, MKL) use one thread each.

    Work dispatched to jax inside the block must be waited for inside it
    (``jax.block_until_ready``): the limit applies while the LAPACK call runs. The limit is
    process-wide (threadpoolctl): probes run from several Python threads at once would share it.
    """
    with _controller().limit(limits=1, user_api="blas"):
        yield
