"""The benchmark harness behind ``scripts/bench`` (run by hand, not in CI).

Modules, one concept each:

* :mod:`_bench.workloads`: the workloads (a)-(d), their FLOP count and the metric definitions
  shared by the peers;
* :mod:`_bench.naive`: the naive JAX peer (no jit, a Python loop over layers, numpy reductions);
* :mod:`_bench.peer_torch`: the PyTorch peer (``nn.Sequential``, hooks, ``torch.nn.init``);
  the only module that imports torch;
* :mod:`_bench.systems`: the three systems behind one interface ``run(workload) -> stats``;
* :mod:`_bench.measure`: interleaved timing, the matmul ceiling runners (``jnp.dot``; ``torch.mm``
  is in :mod:`_bench.peer_torch`) and the per-round ratio, standalone rooflines, machine
  description;
* :mod:`_bench.worker`: one system, one workload, in a fresh process (end-to-end time, peak RSS);
* :mod:`_bench.render`: targets, markdown table, JSON;
* :mod:`_bench.__main__`: the command line.
"""
