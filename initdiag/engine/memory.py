"""Memory planning: estimate a probe's peak memory from its shapes and choose a plan that fits.

The estimate (bytes, float32 = 4 bytes) is the process's resident memory before the probe plus:

* weights: drawn upfront, every layer's ``W`` and ``b`` (``4 sum_l (n_{l-1} n_l + n_l)``; they
  are drawn one layer at a time, so the drawing's transient is small); drawn in the scan, a few
  copies of one layer's ``W``;
* saved activations: without remat the forward pass keeps ``x^{l-1}`` and ``h^l`` of every layer
  (``4 B sum_l (n_{l-1} + n_l)``); with remat chunks of k layers it keeps one input per chunk and,
  during the backward pass, one chunk's ``x`` and ``h`` (``4 B (L/k + 2k) n``);
* working set: a fixed number of ``[B, n]`` temporaries, ``dL/dW`` (``n^2``) when it is formed,
  the Gram matrices (``B^2``) when it is not;
* runtime: the compiled program and allocator slack (a constant) and per-layer bookkeeping.

The constants were calibrated against measured peak RSS on this project's benchmark workloads
(``scripts/bench``); the estimate is meant to be within 25% of the measured peak there.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import warnings
from typing import Any

from initdiag.base import check_int, check_one_of
from initdiag.nn.stacks import StackSpec

F32 = 4
#: [B, n] temporaries alive at once in a layer's forward or backward step (h, a, x, g, scaled
#: copies, the vjp's residuals): an upper count read off the compiled program.
WORKING_COPIES = 12
#: XLA compiling the pass on a first call, the compiled program, buffers and allocator slack on
#: top of the baseline RSS (bytes), and what grows with depth besides activations (per-layer
#: outputs, scan bookkeeping): calibrated on the benchmark workloads (b)-(d) in fresh processes.
RUNTIME_OVERHEAD = 140 * 2**20
PER_LAYER_OVERHEAD = 8 * 2**10
#: The fraction of available memory a plan may use when no budget is given.
DEFAULT_BUDGET_FRACTION = 0.8

DRAW = ("auto", "upfront", "in_scan")


class MemoryPlanWarning(UserWarning):
    """An automatic switch to in-scan weights or remat, made so the probe fits in memory."""


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """How a probe will run and what it is expected to need (bytes, beyond the baseline RSS)."""

    remat: int
    draw_in_scan: bool
    estimate: int
    parts: dict[str, int]
    budget: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"remat": self.remat, "draw_in_scan": self.draw_in_scan, "estimate": self.estimate,
                "parts": dict(self.parts), "budget": self.budget, "note": self.note}


def current_rss() -> int:
    """Resident memory of this process now (bytes); 0 when /proc is not available."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def available_memory() -> int:
    """Memory available to new allocations (MemAvailable), bytes."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def estimate(spec: StackSpec, batch: int, *, remat: int, draw_in_scan: bool) -> dict[str, int]:
    """Bytes each part of a probe needs beyond the baseline RSS (see the module docstring)."""
    shapes = spec.layer_shapes()
    depth = spec.depth
    widest = max(max(s) for s in shapes)
    biggest_w = max(fi * fo for fi, fo in shapes)
    if draw_in_scan:
        weights = 4 * biggest_w * F32
    else:
        weights = F32 * sum(fi * fo + fo for fi, fo in shapes)
    if remat and remat <= depth:  # a longer chunk than the stack: nothing is recomputed
        chunks = math.ceil(depth / remat)
        saved = F32 * batch * widest * (chunks + 2 * remat)
    else:
        saved = F32 * batch * sum(fi + fo for fi, fo in shapes)
    gram = batch * 2 * widest < widest * widest
    working = F32 * (WORKING_COPIES * batch * widest + (2 * batch * batch if gram else biggest_w))
    return {"weights": int(weights), "activations": int(saved), "working": int(working),
            "runtime": RUNTIME_OVERHEAD + PER_LAYER_OVERHEAD * depth}


def lower_bound(depth: int, fans: list[int], batch: int) -> int:
    """Bytes that every plan of :func:`plan` needs at least, for a stack of ``depth`` layers
    whose fans are ``fans`` (n_0, n_1, ...; a single width stands for all its layers) at
    ``batch``: the runtime and per-layer overhead, one layer's weights, and the working set and
    one saved activation of the widest layer (each part of :func:`estimate` is at least that)."""
    widest = max(fans)
    biggest_w = max(a * b for a, b in zip(fans[:-1], fans[1:])) if len(fans) > 1 else widest ** 2
    return (RUNTIME_OVERHEAD + PER_LAYER_OVERHEAD * depth
            + F32 * (biggest_w + (WORKING_COPIES + 1) * batch * widest))


def check_sizes(depth: Any, width: Any, batch: Any, input_width: Any = None, *,
                budget: int | None = None) -> None:
    """Refuse, before anything is allocated, sizes that no plan can fit in ``budget`` (default:
    80% of the available memory): when even :func:`lower_bound` exceeds it, a
    :class:`MemoryError` names the sizes, the bound, the budget and the largest depth, width or
    batch that would fit with the others as given. Values that are not sizes (not integers
    >= 1) are left to the checks that name them (:func:`initdiag.nn.stacks.make_spec`)."""
    try:
        depth, batch = check_int("depth", depth), check_int("batch", batch)
        if isinstance(width, numbers.Real):
            widths = [check_int("width", width)]
        else:
            widths = [check_int("width", w) for w in width]
        first = widths[0] if input_width is None else check_int("input_width", input_width)
    except (TypeError, ValueError, IndexError):
        return
    fans = [first, *widths]
    if budget is None:
        budget = int(DEFAULT_BUDGET_FRACTION * available_memory())
    need = lower_bound(depth, fans, batch)
    if need <= budget:
        return
    fixed = RUNTIME_OVERHEAD
    widest = max(fans)
    biggest_w = max(a * b for a, b in zip(fans[:-1], fans[1:]))
    limits = {  # the largest value of each size that fits, the others as given
        "depth": (budget - fixed - F32 * (biggest_w + (WORKING_COPIES + 1) * batch * widest))
        // PER_LAYER_OVERHEAD,
        "batch": (budget - fixed - PER_LAYER_OVERHEAD * depth - F32 * biggest_w)
        // (F32 * (WORKING_COPIES + 1) * widest),
        "width": _largest_width(budget - fixed - PER_LAYER_OVERHEAD * depth, batch),
    }
    wide = "width" if widest in widths else "input_width"
    given = {"depth": depth, wide: widest, "batch": batch}
    limits[wide] = limits.pop("width")
    sizes = ", ".join(f"{k} {v}" for k, v in given.items())
    head = f"any probe at {sizes} needs at least {_gib(need)}, over the memory budget of " \
           f"{_gib(budget)}"
    # the size furthest beyond the largest value that fits with the others as given
    fixable = [k for k in given if 1 <= limits[k] < given[k]]
    if not fixable:
        raise MemoryError(f"{head}; reducing one size alone does not make it fit: reduce "
                          f"several (or raise memory_budget)")
    worst = max(fixable, key=lambda k: given[k] / limits[k])
    raise MemoryError(f"{worst} {given[worst]} is too large: {head}; with the other sizes as "
                      f"given, {worst} can be at most {limits[worst]} (or raise memory_budget)")


def _largest_width(room: int, batch: int) -> int:
    """The largest n with F32 (n**2 + (WORKING_COPIES + 1) batch n) <= room (0 if none)."""
    if room <= 0:
        return 0
    k = (WORKING_COPIES + 1) * batch
    n = int((-k + math.isqrt(k * k + 4 * (room // F32))) // 2)
    while n > 0 and F32 * (n * n + k * n) > room:
        n -= 1
    return max(n, 0)


def _resolve_remat(remat: int | bool | None | str, depth: int) -> int | None:
    """None for "decide automatically", else the chunk length (0 = no remat)."""
    if remat is None or remat == "auto":
        return None
    if remat is False:
        return 0
    if remat is True:
        return default_chunk(depth)
    if isinstance(remat, str) or int(remat) < 1:
        raise ValueError(f"remat must be True, False, 'auto' or a chunk length >= 1; got {remat!r}")
    return int(remat)


def default_chunk(depth: int) -> int:
    """sqrt(L): minimises L/k + 2k up to a constant."""
    return max(1, int(round(math.sqrt(depth / 2))))


def plan(spec: StackSpec, batch: int, *, remat: int | bool | None | str = None,
         draw_weights: str = "auto", budget: int | None = None) -> MemoryPlan:
    """Choose remat and weight drawing for a probe so that it fits in ``budget`` bytes.

    Options given explicitly are kept; automatic ones are tried fastest first: stored weights and
    activations, then weights drawn in the scan, then remat, then both. An explicit remat with
    ``draw_weights="auto"`` draws the weights in the scan (memory independent of depth).

    Raises:
      MemoryError: when no plan fits, naming each plan's estimate and the budget.
    """
    check_one_of("draw_weights", draw_weights, DRAW)
    fixed_remat = _resolve_remat(remat, spec.depth)
    if budget is None:
        budget = int(DEFAULT_BUDGET_FRACTION * available_memory())
    remats = [fixed_remat] if fixed_remat is not None else [0, default_chunk(spec.depth)]
    draws = {"auto": [False, True], "upfront": [False], "in_scan": [True]}[draw_weights]
    if draw_weights == "auto" and fixed_remat:
        # Asking for remat asks for memory bounded in depth: draw the weights in the scan too.
        draws = [True]
    candidates = [(r, d) for r in remats for d in draws]
    tried = []
    for r, d in candidates:
        parts = estimate(spec, batch, remat=r, draw_in_scan=d)
        total = sum(parts.values())
        tried.append((r, d, total))
        if total <= budget:
            note = ""
            if (r, d) != candidates[0]:
                note = (f"memory: the default plan needs ~{_gib(tried[0][2])} but the budget is "
                        f"{_gib(budget)}; using " + _describe(r, d) + f" (~{_gib(total)})")
                warnings.warn(note, MemoryPlanWarning, stacklevel=3)
            return MemoryPlan(r, d, total, parts, budget, note)
    options = "; ".join(f"{_describe(r, d)}: ~{_gib(t)}" for r, d, t in tried)
    raise MemoryError(
        f"this probe does not fit in the memory budget of {_gib(budget)} (depth {spec.depth}, "
        f"widths up to {max(spec.widths)}, batch {batch}). Estimates: {options}. Reduce the batch "
        f"or width, pass remat=K with a different K, or raise memory_budget.")


def _describe(remat: int, draw_in_scan: bool) -> str:
    what = "weights drawn in the scan" if draw_in_scan else "weights drawn upfront"
    return f"{what}, " + (f"remat chunks of {remat}" if remat else "no remat")


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"
