"""Sharded sweeps on 4 forced CPU devices: identical numbers, and each device holds its share."""

import json
import os
import subprocess
import sys

SCRIPT = r"""
import json, jax, numpy as np, initdiag
from initdiag import sharding, engine
from initdiag.probe import prepare
assert jax.device_count() == 4, jax.devices()
kw = dict(activations=["tanh", "relu"], inits=["he_normal", "orthogonal", "zeros"], depths=[6],
          widths=[16], seeds=[0, 1], batch=8)
sharded = initdiag.sweep(**kw)              # default: every device
single = initdiag.sweep(devices=1, **kw)    # one device, one probe at a time
same = all(np.array_equal(a[m], b[m], equal_nan=True) and a.config == b.config and a.seed == b.seed
           for a, b in zip(sharded, single) for m in a.metrics)
# what each device holds for one step of 4 probes
jobs = [prepare(activation="tanh", init=i, depth=6, width=16, batch=8, seed=s)
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
