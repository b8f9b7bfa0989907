"""The PyTorch peer: the hooks-based probe a PyTorch user typically writes.

``nn.Sequential`` of ``nn.Linear`` + activation; ``register_forward_hook`` on every module records
the forward statistics (pre-activation mean/var on each Linear's output, activation mean/var,
saturation, zero and dead fractions on each activation's output) and registers a tensor hook
(``register_hook``) on the same outputs for ``dL/dh`` and ``dL/dx``; after ``loss.backward()``,
``weight.grad`` gives ``dL/dW``. A Python loop over ``torch.nn.init`` initializers re-initialises
one model per activation. The loss is initdiag's projection ``L = mean_i <g_i, x^L_i>``.

Reductions are done in float64 (``t.double()``): float32 squares of a vanishing gradient
underflow below ~1e-19 and would read 0 where initdiag reports the value; this makes the peer
compute the same statistics at a cost of O(B W) per layer against the O(B W^2) matmuls.
torch runs with ``torch.set_num_threads(2)`` (this machine's cores; ``scripts/bench
--torch-threads N`` sets the environment variable ``BENCH_TORCH_THREADS`` to change it).

This is the only module of the harness that imports torch.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn

from _bench.workloads import CAN_DIE, METRICS, THRESHOLD

THREADS = int(os.environ.get("BENCH_TORCH_THREADS", "2"))
torch.set_num_threads(THREADS)

ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}


def _uniform(scale):
    return lambda w: nn.init.uniform_(w, -scale, scale)


#: initdiag's standard initializers as a torch user writes them (zero biases throughout).
#: glorot_normal, he_normal and lecun_normal are torch's untruncated normals (initdiag's are
#: truncated at 2 sigma, as in jax/Keras); the cost is the same.
INITS = {
    "zeros": nn.init.zeros_,
    "uniform": _uniform(0.05),
    "normal": lambda w: nn.init.normal_(w, 0.0, 0.01),
    "glorot_uniform": nn.init.xavier_uniform_,
    "glorot_normal": nn.init.xavier_normal_,
    "he_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "he_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "lecun_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="linear"),
    "lecun_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="linear"),
    "orthogonal": nn.init.orthogonal_,
    "torch_default": lambda w: nn.init.kaiming_uniform_(w, a=math.sqrt(5)),
}


def _rms(t: torch.Tensor) -> torch.Tensor:
    return t.double().square().mean().sqrt()


class Probe:
    """An ``nn.Sequential`` stack with hooks that record initdiag's per-layer statistics."""

    def __init__(self, activation: str, depth: int, width: int, *, keep_preacts: bool = False):
        """``keep_preacts``: also keep a float32 copy of every layer's pre-activation ``h^l`` in
        :attr:`preacts` (one extra forward hook per Linear), for the peers' check only
        (:func:`_bench.systems.check_peers`); the timed models are built without it."""
        self.activation = activation
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(width, width), ACTIVATIONS[activation]()]
        self.model = nn.Sequential(*layers)
        self.linears = [m for m in self.model if isinstance(m, nn.Linear)]
        self.rec: dict[str, list] = {}
        self.preacts: list[np.ndarray | None] = [None] * depth
        for l, (lin, act) in enumerate(zip(self.model[0::2], self.model[1::2])):
            lin.register_forward_hook(self._preact_hook(l))
            act.register_forward_hook(self._act_hook(l))
            if keep_preacts:
                lin.register_forward_hook(self._keep_hook(l))

    def _keep_hook(self, l):
        def hook(module, inputs, h):
            self.preacts[l] = h.detach().numpy().copy()
        return hook

    def _preact_hook(self, l):
        def hook(module, inputs, h):
            hd = h.detach().double()
            self.rec["preact_mean"][l] = hd.mean()
            self.rec["preact_var"][l] = hd.var(unbiased=False)
            h.register_hook(lambda g: self.rec["grad_preact_rms"].__setitem__(l, _rms(g)))
        return hook

    def _act_hook(self, l):
        def hook(module, inputs, a):
            ad = a.detach().double()
            self.rec["act_mean"][l] = ad.mean()
            self.rec["act_var"][l] = total = ad.var(unbiased=False)
            # fraction of the variance across units: mean_i Var_j a_ij / Var_ij a_ij
            self.rec["unit_spread"][l] = (ad.var(dim=1, unbiased=False).mean() / total
                                          if total > 0 else torch.tensor(float("nan"),
                                                                         dtype=torch.float64))
            if self.activation == "tanh":
                self.rec["saturation"][l] = (ad.abs() > THRESHOLD).double().mean()
            elif self.activation == "sigmoid":
                self.rec["saturation"][l] = ((ad < 1 - THRESHOLD) | (ad > THRESHOLD)).double().mean()
            if self.activation in CAN_DIE:
                zero = a.detach() == 0
                self.rec["zero_frac"][l] = zero.double().mean()
                self.rec["dead_frac"][l] = zero.all(dim=0).double().mean()
            a.register_hook(lambda g: self.rec["grad_act_rms"].__setitem__(l, _rms(g)))
        return hook

    def init(self, init: str, seed: int) -> None:
        """Re-initialise every layer with ``torch.nn.init`` (biases zero)."""
        torch.manual_seed(seed)
        fn = INITS[init]
        with torch.no_grad():
            for lin in self.linears:
                fn(lin.weight)
                nn.init.zeros_(lin.bias)

    def stats(self, x: torch.Tensor, readout: torch.Tensor) -> dict[str, np.ndarray]:
        """One forward and backward pass; per-layer statistics as float64 arrays of length L."""
        depth = len(self.linears)
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        self.rec = {m: [nan] * depth for m in METRICS}
        self.model.zero_grad(set_to_none=True)
        out = self.model(x)
        loss = (readout * out).sum() / x.shape[0]
        loss.backward()
        with torch.no_grad():
            for l, lin in enumerate(self.linears):
                self.rec["grad_weight_norm"][l] = torch.linalg.vector_norm(lin.weight.grad.double())
                self.rec["weight_norm"][l] = torch.linalg.vector_norm(lin.weight.double())
        res = {m: torch.stack(v).numpy() for m, v in self.rec.items() if m != "grad_weight_ratio"}
        with np.errstate(divide="ignore", invalid="ignore"):
            res["grad_weight_ratio"] = np.where(res["weight_norm"] > 0,
                                                res["grad_weight_norm"] / res["weight_norm"],
                                                np.nan)
        return res

    def weights(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The weights as initdiag takes them (``[fan_in, fan_out]`` = ``weight.T``) and biases."""
        ws = [lin.weight.detach().numpy().T.copy() for lin in self.linears]
        bs = [lin.bias.detach().numpy().copy() for lin in self.linears]
        return ws, bs


def data(batch: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Input x ~ N(0, 1) and readout g ~ N(0, 1), both ``[B, W]``."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, width, generator=gen), torch.randn(batch, width, generator=gen))


def run(workload, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Every configuration of ``workload``: one model per activation, a loop over inits."""
    x, g = data(workload.batch, workload.width, seed)
    results = []
    for activation in workload.activations:
        probe = Probe(activation, workload.depth, workload.width)
        for init in workload.inits:
            probe.init(init, seed)
            results.append(probe.stats(x, g))
    return results


def matmul_chain(dots: int, batch: int, width: int, seed: int = 0):
    """The ``torch.mm`` ceiling runner (:class:`_bench.measure.MatmulChain`): ``dots`` dependent
    ``torch.matmul(x, Q)`` in a Python loop under ``torch.no_grad()``, with the peer's
    :data:`THREADS` threads, on the same ``x`` and orthogonal ``Q`` as the ``jnp.dot`` runner."""
    from _bench.measure import MatmulChain, orthogonal_data

    x0, q0 = orthogonal_data(batch, width, seed)
    x, q = torch.from_numpy(x0), torch.from_numpy(q0)

    def run():
        with torch.no_grad():
            v = x
            for _ in range(dots):
                v = torch.matmul(v, q)
        return v

    return MatmulChain("torch.mm", dots, batch, width, run, threads=THREADS)
