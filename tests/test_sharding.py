"""Sharded sweeps on 4 forced CPU devices: identical numbers, and each device holds its share."""

import json
import os
import subprocess
import sys

SCRIPT = r"""
import json, jax, numpy as np, initdiag
from initdiag.engine import sharding
from initdiag.engine import scan
from initdiag.config import ProbeConfig
from initdiag.probe import prepare
assert jax.device_count() == 4, jax.devices()
kw = dict(activations=["tanh", "relu"], inits=["he_normal", "orthogonal", "zeros"], depths=[6],
          widths=[16], seeds=[0, 1], batch=8)
sharded = initdiag.sweep(**kw)              # default: every device
single = initdiag.sweep(devices=1, **kw)    # one device, one probe at a time
same = all(np.array_equal(a[m], b[m], equal_nan=True) and a.config == b.config and a.seed == b.seed
           for a, b in zip(sharded, single) for m in a.metrics)
# what each device holds for one step of 4 probes
jobs = [prepare(ProbeConfig(activation="tanh", init=i, depth=6, width=16, batch=8), s)
        for i in ["he_normal", "orthogonal"] for s in [0, 1]]
mesh = jax.sharding.Mesh(np.array(jax.devices()), ("config",))
spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("config"))
args = sharding._stack_on_devices(list(zip(jax.devices(), jobs)), spec, {d.id for d in jax.devices()})
weights = args[0][0][0]
out = sharding._per_device(jobs[0].static, mesh)(*args)
print(json.dumps({"n": len(sharded), "same": bool(same),
                  "devices_used": sorted({r.meta["device"] for r in sharded}),
                  "weight_shards": sharding.local_shapes(weights),
                  "out_shards": sharding.local_shapes(out["preact_var"][0])}))
"""


def test_sharded_sweep_matches_one_device_and_splits_the_work():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["n"] == 12 and out["same"]
    assert len(out["devices_used"]) == 4
    # every device holds exactly one probe's weights [1, L, n, n] and one probe's statistics
    assert sorted(d for d, _ in out["weight_shards"]) == sorted({d for d, _ in out["weight_shards"]})
    assert [s for _, s in out["weight_shards"]] == [[1, 6, 16, 16]] * 4
    assert [s for _, s in out["out_shards"]] == [[1, 6]] * 4


WORKER = r"""
import json, sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=sys.argv[2], num_processes=2,
                           process_id=int(sys.argv[1]))
import initdiag
r = initdiag.sweep(activations=["tanh"], inits=["he_normal", "orthogonal", "zeros"], depths=[5],
                   widths=[8], seeds=[0, 1], batch=4)
print(json.dumps({"devices": jax.device_count(), "local": jax.local_device_count(),
                  "placed": [x.meta["device"] for x in r],
                  "values": [[x[m].tolist() for m in x.metrics] for x in r]}))
"""


def _free_loopback_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_loopback_share_a_sweep():
    """The multi-host recipe, run as two processes on this machine (loopback only)."""
    import numpy as np

    import initdiag
    address = f"127.0.0.1:{_free_loopback_port()}"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(i), address], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=240)
        assert p.returncode == 0, stderr[-3000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    single = initdiag.sweep(activations=["tanh"], inits=["he_normal", "orthogonal", "zeros"],
                            depths=[5], widths=[8], seeds=[0, 1], batch=4, devices=1)
    expected = [[np.asarray(r[m]).tolist() for m in r.metrics] for r in single]
    for out in outs:
        assert out["devices"] == 4 and out["local"] == 2
        assert len(set(out["placed"][:4])) == 4  # the first step used all four devices
        np.testing.assert_array_equal(np.array(out["values"], float), np.array(expected, float))
