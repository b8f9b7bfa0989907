"""What identifies a sweep in its checkpoint, and opening the checkpoint on every process.

:func:`initdiag.sweep` and :func:`initdiag.sweep_fn` (``checkpoint=PATH``) use these; the file
format is :mod:`initdiag.checkpoint`'s.

* :func:`sweep_header`: a stack sweep is described by the versions of initdiag, jax and jaxlib,
  its axes (``activations``, ``inits`` by label, ``depths``, ``widths``, ``seeds``) and every
  other field of :class:`initdiag.ProbeConfig` (``batch``, ``bias_init`` by label, ``norm``,
  ...; an input array by its shape and SHA-256); a probe's key is
  ``[activation, init, depth, width, seed]``. How a sweep is run (``remat``, ``draw_weights``,
  ``memory_budget``, ``devices``) is not part of it (see :mod:`initdiag.config`).
* :func:`model_header`: a model sweep by the versions, the model's name, its parameter pytree
  (every leaf's path, shape and dtype; a non-array leaf by its type), the input's leaves and the
  SHA-256 of their values, ``loss``, ``sites``, ``saturation_threshold``, and for
  :func:`initdiag.sweep_fn` ``bias_init``, ``layout`` and ``inits`` (labels) or, for weights
  probed as given, the SHA-256 of the parameters' values; then ``seeds``. A probe's key is
  ``[init, seed]``.
* :func:`open_shared`: several processes (``jax.process_count() > 1``): only process 0 writes the
  file; every process reads the same file (it must be on a file system they all see) and they
  check, by gathering what each read, that they agree on which probes are done.
"""

from __future__ import annotations

import hashlib
import operator
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from initdiag.checkpoint import Checkpoint, CheckpointError, header, open_checkpoint
from initdiag.jsonvalues import encode


def _versions() -> dict[str, str]:
    import jaxlib

    from initdiag.version import __version__
    return {"initdiag": __version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__}


def integer_seeds(seeds: Sequence[Any]) -> list[int]:
    """``seeds`` as Python ints; a checkpoint keys probes by integer seeds.

    Raises:
      TypeError: a seed is not an integer (a jax key, a float), naming it.
    """
    out = []
    for s in seeds:
        try:
            out.append(operator.index(s))
        except TypeError:
            raise TypeError(f"checkpoint= needs integer seeds; got {s!r}") from None
    return out


def digest(tree: Any) -> str:
    """SHA-256 (hex) of the array leaves of ``tree``: each leaf's dtype, shape and bytes."""
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
            a = np.ascontiguousarray(jax.device_get(leaf))
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def leaves(tree: Any) -> list[list]:
    """``[path, shape, dtype]`` of every array leaf of ``tree`` and ``[path, type name]`` of
    every other leaf, in flattening order."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = jax.tree_util.keystr(path)
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            out.append([name, [int(d) for d in leaf.shape], str(leaf.dtype)])
        else:
            out.append([name, type(leaf).__name__])
    return out


def sweep_header(activations: Sequence[str], inits: Sequence[str], depths: Sequence[Any],
                 widths: Sequence[Any], seeds: Sequence[int], options: Mapping[str, Any],
                 keys: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """The checkpoint header of a stack sweep (module docstring): ``activations`` and ``inits``
    are labels, ``options`` the other ProbeConfig fields as JSON values, ``keys`` every probe's
    key in the sweep's order."""
    describes = {"versions": _versions(), "activations": list(activations),
                 "inits": list(inits), "depths": encode(list(depths)),
                 "widths": encode(list(widths)), "seeds": list(seeds), **encode(dict(options))}
    return header("sweep", describes, encode([list(k) for k in keys]))


def input_option(value: Any) -> Any:
    """The ``input`` option as a checkpoint describes it: its name, or an array's shape and
    SHA-256 (``"array [16, 8] sha256:..."``)."""
    if isinstance(value, str):
        return value
    return f"array {list(np.shape(value))} sha256:{digest(np.asarray(value))}"


def model_header(kind: str, *, name: str, params: Any, x: Any, loss: str, sites: str,
                 saturation_threshold: float, seeds: Sequence[int],
                 **more: Any) -> dict[str, Any]:
    """The checkpoint header of a model sweep (module docstring): ``kind`` ``"model_sweep"``
    (``more``: bias_init, layout, inits) or ``"model_seeds"`` (``more``: params_sha256)."""
    describes = {"versions": _versions(), "model": name, "params": leaves(params),
                 "input": leaves(x), "input_sha256": digest(x), "loss": loss, "sites": sites,
                 "saturation_threshold": float(saturation_threshold), **encode(more),
                 "seeds": list(seeds)}
    inits = more.get("inits", ["given"])
    return header(kind, describes, [[i, s] for i in inits for s in seeds])


def open_shared(path: str | os.PathLike, head: dict[str, Any],
                decode: Callable[[Mapping[str, Any]], Any]) -> Checkpoint:
    """Open the checkpoint ``path`` on every process: process 0 as its writer, the others as
    readers; with several processes, every process gathers which probes each one read as done
    and all raise :class:`~initdiag.checkpoint.CheckpointError` if they differ (the file is not
    on a file system every host shares, or changed between the reads)."""
    from initdiag.engine.sharding import process_flags

    ckpt = open_checkpoint(path, head, decode=decode, write=jax.process_index() == 0)
    try:
        flags = process_flags([i in ckpt.done for i in range(ckpt.total)])
        if not (flags == flags[0]).all():
            counts = ", ".join(f"process {p}: {int(f.sum())}" for p, f in enumerate(flags))
            raise CheckpointError(f"{path}: the processes read different checkpoints (probes "
                                  f"done: {counts}); put it on a file system every host shares")
    except BaseException:
        ckpt.close()
        raise
    return ckpt
