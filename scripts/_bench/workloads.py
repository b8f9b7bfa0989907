"""Workloads, their FLOP count, and the metric definitions every peer implements.

A workload is a list of configurations (activation x initializer) of one stack shape: depth L,
width W (every layer and the input), batch B. Biases are zero-initialised, the input is N(0, 1)
and the loss is the projection ``L = mean_i <g_i, x^L_i>`` (initdiag's default).

FLOPs: ``6 L W^2 B`` per configuration for one forward and backward pass (``2 L W^2 B`` for the
forward matmuls, twice that for the backward ones: ``dL/dx`` and ``dL/dW``), whatever a system
actually computes (remat's recomputation and initdiag's Gram trick are not counted).
"""

from __future__ import annotations

import dataclasses

#: The statistics every peer implements and the check compares, by initdiag's names: listed
#: here, a subset of initdiag.METRICS, so a metric added to initdiag needs no peer (initdiag's
#: other metrics are not compared; tests/test_bench_smoke.py checks the subset).
METRICS = ("preact_mean", "preact_var", "act_mean", "act_var", "saturation", "zero_frac",
           "dead_frac", "unit_spread", "grad_preact_rms", "grad_act_rms", "grad_weight_norm", "weight_norm",
           "grad_weight_ratio")
#: Saturation threshold t: tanh saturated when |a| > t, sigmoid when a < 1 - t or a > t.
THRESHOLD = 0.99
SATURATING = ("tanh", "sigmoid")
CAN_DIE = ("relu",)

STANDARD_INITIALIZERS = ("zeros", "uniform", "normal", "glorot_uniform", "glorot_normal",
                         "he_uniform", "he_normal", "lecun_uniform", "lecun_normal", "orthogonal",
                         "torch_default")  # == initdiag.STANDARD_INITIALIZERS (checked at start)
ACTIVATIONS = ("tanh", "sigmoid", "relu")


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark workload.

    Attributes:
      key: "a".."d".
      title: what it is, for the table.
      depth, width, batch: L, W, B.
      activations, inits: the configurations are every activation x every init.
      remat: run initdiag with ``remat=True``.
      sweep: run initdiag through ``initdiag.sweep`` (else one ``initdiag.probe`` per config).
    """

    key: str
    title: str
    depth: int
    width: int
    batch: int
    activations: tuple[str, ...]
    inits: tuple[str, ...]
    remat: bool = False
    sweep: bool = False

    @property
    def configs(self) -> list[tuple[str, str]]:
        return [(a, i) for a in self.activations for i in self.inits]

    @property
    def flops(self) -> float:
        return len(self.configs) * flops_per_pass(self.depth, self.width, self.batch)

    @property
    def matmuls(self) -> int:
        """``3 L`` per configuration: the number of ``[B, W] x [W, W]`` products (``2 B W^2``
        FLOPs each) with the workload's FLOPs; the matmul ceiling runners perform this many."""
        return 3 * self.depth * len(self.configs)

    def shape(self) -> str:
        return f"L={self.depth}, W={self.width}, B={self.batch}"


def flops_per_pass(depth: int, width: int, batch: int) -> float:
    """``6 L W^2 B``: one forward and backward pass of a square stack (module docstring)."""
    return 6.0 * depth * width * width * batch


def workloads(quick: bool = False) -> dict[str, Workload]:
    """The workloads (a)-(d) of issue 5; ``quick`` shrinks them for a smoke run."""
    if quick:
        return {
            "a": Workload("a", "default sweep (3 inits x 3 activations)", 10, 64, 64, ACTIVATIONS,
                          ("glorot_normal", "he_normal", "orthogonal"), sweep=True),
            "b": Workload("b", "one config", 20, 128, 128, ("tanh",), ("glorot_normal",)),
            "c": Workload("c", "deep", 200, 64, 32, ("tanh",), ("glorot_normal",)),
            "d": Workload("d", "very deep, remat", 1000, 64, 32, ("tanh",), ("glorot_normal",),
                          remat=True),
        }
    return {
        "a": Workload("a", "default report sweep (11 inits x 3 activations)", 50, 256, 256,
                      ACTIVATIONS, STANDARD_INITIALIZERS, sweep=True),
        "b": Workload("b", "one config, wide", 200, 512, 512, ("tanh",), ("glorot_normal",)),
        "c": Workload("c", "one config, deep", 1000, 256, 128, ("tanh",), ("glorot_normal",)),
        "d": Workload("d", "one config, very deep, remat", 10_000, 256, 128, ("tanh",),
                      ("glorot_normal",), remat=True),
    }


def flat_depths(quick: bool = False) -> tuple[int, int, int, int]:
    """(L_small, L_large, W, B) of the compile-time flatness measurement."""
    return (10, 100, 64, 32) if quick else (10, 1000, 256, 128)
