"""jax's default PRNG (threefry2x32), with its random bits computed 3x faster on CPU.

initdiag draws every weight, input and readout from keys of :data:`THREEFRY` (unless a user
set jax's default implementation to another: then from that one, :func:`key`), a PRNG
implementation (``jax.extend.random.define_prng_impl``) that is jax's ``threefry2x32`` in all
but how one function is compiled: the same key data, the same ``seed``, ``split`` and
``fold_in`` (jax's own functions), and ``random_bits`` that return **the same bits** as jax's
(tested for every bit width and for shapes of every rank). So ``jax.nn.initializers`` and
``jax.random`` called with a key of :data:`THREEFRY` give, bit for bit, what they give with
``jax.random.key(seed)``, and a stack's weights are still those ``jax.nn.initializers`` draws
from the probe's key.

Why: on CPU jax lowers the threefry hash as a rolled loop (5 iterations of 4 rounds, for
compile time), so every iteration writes its two ``uint32`` words to memory and reads them
back; 6.5 ns per 32 bits on 2 cores, as much as the whole compiled pass of a 256-wide layer.
:func:`random_bits` writes the 20 rounds out (the hash of the Threefry-2x32 paper, as jax
computes it), which XLA fuses into one loop: 2.3 ns per 32 bits, the same bits (measured with
``lax.map`` over 1000 draws of 256 x 256, 2026-12-07).

``random_bits`` follows jax's "partitionable" threefry (``jax_threefry_partitionable``, on by
default): the element at flat index ``i`` (row-major) is ``threefry2x32(key, (hi(i), lo(i)))``,
its two output words xor-ed for 32 bits (shifted and or-ed for 64). It hands the call to jax's
own ``random_bits`` when that flag is off, or when the shape has 2**32 elements or more.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.extend.random as jex
import jax.numpy as jnp
import numpy as np

from initdiag.base import check_seed

_JAX = jex.threefry_prng_impl

#: Rotation constants of Threefry-2x32, rounds 1-4 and 5-8 (they alternate).
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
#: The key schedule's parity constant.
_PARITY = 0x1BD11BDA


def _rotate_left(x: jax.Array, d: int) -> jax.Array:
    return jax.lax.shift_left(x, np.uint32(d)) | jax.lax.shift_right_logical(x, np.uint32(32 - d))


def threefry2x32(k1: jax.Array, k2: jax.Array, x1: jax.Array,
                 x2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 hash (20 rounds) of the counter words ``(x1, x2)`` under the key
    ``(k1, k2)``, all ``uint32``, written out round by round (jax's ``threefry2x32_p`` computes
    the same function)."""
    ks = (k1, k2, k1 ^ k2 ^ np.uint32(_PARITY))
    x0, x1 = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ _rotate_left(x1, r)
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def random_bits(key_data: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    """Uniform random bits of ``shape`` from raw threefry key data (``uint32[2]``): exactly
    ``jax.random.bits`` of the threefry key with that data (see the module docstring).

    Compiled (inlined into a caller's jit), so an eager call does not run the 20 rounds op by
    op; a plain function itself, so the implementation (and its keys) pickle by name."""
    return _random_bits(key_data, bit_width, tuple(shape))


@functools.partial(jax.jit, static_argnums=(1, 2), inline=True)
def _random_bits(key_data: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    size = math.prod(shape)
    if (not jax.config.jax_threefry_partitionable or size >= 2 ** 32
            or bit_width not in (8, 16, 32, 64)):
        return _JAX.random_bits(key_data, bit_width, shape)
    lo = jax.lax.iota(np.uint32, size).reshape(shape)  # flat index < 2**32: its high word is 0
    b1, b2 = threefry2x32(key_data[0], key_data[1], jnp.zeros(shape, np.uint32), lo)
    if bit_width == 64:
        return (jax.lax.shift_left(b1.astype(np.uint64), np.uint64(32))
                | b2.astype(np.uint64))
    bits = b1 ^ b2
    return bits if bit_width == 32 else bits.astype(np.dtype(f"uint{bit_width}"))


#: jax's threefry2x32 with :func:`random_bits` (``jax.random.key(seed, impl=THREEFRY)``).
THREEFRY = jex.define_prng_impl(key_shape=_JAX.key_shape, seed=_JAX.seed, split=_JAX.split,
                                random_bits=random_bits, fold_in=_JAX.fold_in,
                                name="threefry2x32 (initdiag: hash written out)", tag="fry_id")


def key(seed: int) -> jax.Array:
    """``jax.random.key(seed)``'s key data as a key of :data:`THREEFRY`; ``jax.random.key(seed)``
    itself when jax's default implementation is set to another (``jax_default_prng_impl``)."""
    if jax.config.jax_default_prng_impl != "threefry2x32":
        return jax.random.key(seed)
    return jax.random.key(seed, impl=THREEFRY)


def as_key(seed: Any) -> jax.Array:
    """The key a probe draws from: an integer seed in [0, 2**32 - 1] (:func:`key`), a typed jax
    key (:func:`fast`) or a raw legacy ``uint32[2]`` threefry key; ``ValueError`` otherwise."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
        return key(check_seed(seed))
    if isinstance(seed, jax.Array) and jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
        return fast(seed)
    if isinstance(seed, jax.Array) and seed.dtype == jnp.uint32 and seed.shape == (2,):
        return jax.random.wrap_key_data(seed, impl=THREEFRY)  # a raw (legacy) PRNGKey
    raise ValueError(f"seed must be an integer or a jax PRNG key; got {seed!r}")


def fast(k: jax.Array) -> jax.Array:
    """A typed threefry key as the same key of :data:`THREEFRY` (the same key data, so the same
    draws); a key of any other implementation (``rbg``, ...) is returned as it is."""
    if jax.random.key_impl(k) == jax.random.key_impl(jax.random.key(0, impl="threefry2x32")):
        return jax.random.wrap_key_data(jax.random.key_data(k), impl=THREEFRY)
    return k
