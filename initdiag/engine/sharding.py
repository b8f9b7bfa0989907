"""Sharded sweeps: spread a sweep's probes over every device, on one host or many.

Probes that share a compiled pass (same activation, options and shapes) are grouped; each group
runs in steps of ``D`` probes, ``D`` the number of devices. A step stacks the probes' inputs along
a leading *config* axis laid out over a one-dimensional :class:`jax.sharding.Mesh` (axis name
``"config"``), one probe per device, and runs the compiled pass under ``jax.shard_map``: each
device runs the unbatched pass on its own probe and holds only that probe's weights and
activations. The last step of a group is padded by repeating its last probe (the
padding's output is dropped). Numbers are bit-identical to running the probes one at a time.

Several hosts: start every process with ``jax.distributed.initialize(...)`` (see the README's
"Scaling out"), then call :func:`initdiag.sweep` with the same arguments on every process. The
mesh then spans all hosts' devices. Every process prepares every probe's inputs on its host (the
layout must be known everywhere) but places on its devices, and computes, only the probes whose
slots are its own; the per-layer statistics (O(L) numbers per probe) are gathered to every
process with ``jax.experimental.multihost_utils.process_allgather``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from initdiag.engine import scan
from initdiag.engine.threads import single_threaded_blas

AXIS = "config"


def _group_key(job) -> tuple:
    shapes = jax.tree.map(lambda a: (a.shape, str(a.dtype)), job.args())
    return (job.static, str(shapes))


def _per_device(static: scan.Static, mesh: Mesh) -> Callable:
    """The compiled pass, run by every device on its own probe (its [1, ...] block of each input).

    ``shard_map`` runs the very same unbatched computation as a single-device probe on each
    device, so the numbers are bit-identical to running the probes one at a time.
    """
    spec = PartitionSpec(AXIS)

    def body(*args):
        one = jax.tree.map(lambda a: a[0], args)
        return jax.tree.map(lambda a: a[None], scan.run_impl(static, *one))

    return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=spec, out_specs=spec,
                                 check_vma=False))


def run_sharded(prepare_jobs: Sequence[Callable[[], Any]], finish: Callable, *,
                devices: Sequence[jax.Device] | None = None,
                on_result: Callable[[int, Any], None] | None = None) -> list:
    """Run probes over all ``devices`` (default: every device of every process).

    Probes are prepared in order; a group's step runs as soon as it has one probe per device, so
    at most one step's inputs per open group are held at once.

    Args:
      prepare_jobs: one zero-argument callable per probe returning its ``probe.Job``.
      finish: ``finish(job, raw, run_s) -> ProbeResult``.
      devices: the mesh's devices, in order.
      on_result: called as ``on_result(index, result)`` as each probe finishes.

    Returns:
      The ProbeResults in the order of ``prepare_jobs``.
    """
    devices = list(jax.devices() if devices is None else devices)
    mesh = Mesh(np.array(devices), (AXIS,))
    sharding = NamedSharding(mesh, PartitionSpec(AXIS))
    local = {d.id for d in jax.local_devices()}
    results: list[Any] = [None] * len(prepare_jobs)
    pending: dict[tuple, list[tuple[int, Any]]] = {}
    compiled: dict[tuple, Callable] = {}

    def flush(key: tuple) -> None:
        step = pending.pop(key)
        padded = step + [step[-1]] * (len(devices) - len(step))
        fn = compiled.setdefault(key, _per_device(step[0][1].static, mesh))
        args = _stack_on_devices([(d, job) for d, (_, job) in zip(devices, padded)], sharding,
                                 local)
        t0 = time.perf_counter()
        with single_threaded_blas():  # see initdiag.engine.threads
            raw = _gather(fn(*args))
        run_s = (time.perf_counter() - t0) / len(step)
        for slot, (i, job) in enumerate(step):
            results[i] = finish(job, jax.tree.map(lambda a: a[slot], raw), run_s)
            results[i].meta["device"] = str(devices[slot])
            if on_result is not None:
                on_result(i, results[i])

    for i, make in enumerate(prepare_jobs):
        job = make()
        key = _group_key(job)
        pending.setdefault(key, []).append((i, job))
        if len(pending[key]) == len(devices):
            flush(key)
    for key in list(pending):
        flush(key)
    return results


def _stack_on_devices(per_device, sharding: NamedSharding, local: set[int]) -> tuple:
    """Global arrays with a leading config axis, each device holding its own probe's inputs."""
    example = per_device[0][1].args()
    leaves, treedef = jax.tree.flatten(example)
    per_leaf: list[list[jax.Array]] = [[] for _ in leaves]
    for device, job in per_device:
        if device.id not in local:
            continue
        for k, leaf in enumerate(jax.tree.leaves(job.args())):
            per_leaf[k].append(jax.device_put(leaf[None], device))
    n = len(per_device)
    arrays = [jax.make_array_from_single_device_arrays((n,) + leaf.shape, sharding, shards)
              for leaf, shards in zip(leaves, per_leaf)]
    return tuple(jax.tree.unflatten(treedef, arrays))


def _gather(raw: Any) -> Any:
    """The stacked outputs as host numpy arrays on every process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return multihost_utils.process_allgather(raw, tiled=True)
    return jax.device_get(raw)


def local_shapes(array: jax.Array) -> list[tuple[str, tuple[int, ...]]]:
    """(device, shape) of each of ``array``'s shards on this process: what each device holds."""
    return [(str(s.device), tuple(s.data.shape)) for s in array.addressable_shards]


def process_flags(flags: Sequence[bool]) -> np.ndarray:
    """Every process's ``flags`` (the same length on each), as a bool array [processes, n]:
    row p is process p's. With one process, its own flags as the only row (no communication)."""
    mine = np.asarray(flags, dtype=bool)
    if jax.process_count() == 1:
        return mine[None]
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(mine.astype(np.int32))).astype(bool)
