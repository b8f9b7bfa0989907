"""The weight draw's options (issue 12, "the weight draw"), timed side by side.

* PRNG implementations: one jitted ``lax.map`` over layers ``l`` of
  ``jax.nn.initializers.glorot_normal()(fold_in(key, l), (W, W))`` for keys of initdiag's
  written-out threefry (:mod:`initdiag.nn.prng`, the default), jax's own threefry2x32, ``rbg``,
  ``unsafe_rbg``, and jax's threefry with ``jax_threefry_partitionable`` off (other bits). Each
  compiled before timing; timed round-robin, median over the rounds.
* Sharing one draw per distribution family: ``initdiag.nn.stacks.init_stack`` of every
  initializer of the default sweep (what a sweep draws today) against one initializer per
  family (zeros, uniform, normal, one variance-scaling uniform, one variance-scaling truncated
  normal, orthogonal): what drawing each family once and scaling it per initializer could save at
  most (the scalings not counted).
"""

from __future__ import annotations

from typing import Any, Callable

from _bench.measure import interleaved

#: Keys compared, in the table's order: label -> (impl for jax.random.key or "initdiag",
#: jax_threefry_partitionable).
IMPLS = {"initdiag's written-out threefry (default)": ("initdiag", True),
         "jax threefry2x32": ("threefry2x32", True),
         "rbg": ("rbg", True),
         "unsafe_rbg": ("unsafe_rbg", True),
         "jax threefry2x32, jax_threefry_partitionable=False": ("threefry2x32", False)}
#: One initializer per distribution family of the default sweep.
FAMILIES = ("zeros", "uniform", "normal", "glorot_uniform", "glorot_normal", "orthogonal")


def _medians(runners: dict[str, Callable[[], Any]], reps: int) -> dict[str, float]:
    """Median seconds of each runner over ``reps`` round-robin rounds after one warm-up round."""
    return {k: v["median"] for k, v in interleaved(runners, warmup=1, reps=reps).items()}


def _impl_runner(impl: str, partitionable: bool, depth: int, width: int) -> Callable[[], Any]:
    import jax
    import jax.numpy as jnp

    from initdiag.nn import prng

    init = jax.nn.initializers.glorot_normal()
    key = prng.key(0) if impl == "initdiag" else jax.random.key(0, impl=impl)

    def stack(k):
        return jax.lax.map(lambda l: init(jax.random.fold_in(k, l), (width, width), jnp.float32),
                           jnp.arange(depth))

    before = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", partitionable)
    try:
        compiled = jax.jit(stack).lower(key).compile()
    finally:
        jax.config.update("jax_threefry_partitionable", before)
    return lambda: compiled(key).block_until_ready()


def bench(quick: bool = False, reps: int = 5, log: Callable[[str], None] = print) -> dict:
    """Both measurements; ``quick`` shrinks the shapes."""
    import jax

    import initdiag
    from initdiag.engine.threads import single_threaded_blas
    from initdiag.nn.stacks import init_stack
    from initdiag.probe import stack_spec

    depth, width = (50, 64) if quick else (1000, 256)
    log(f"weight draw: {depth} layers of {width}x{width} glorot_normal per PRNG implementation")
    runners = {label: _impl_runner(impl, part, depth, width)
               for label, (impl, part) in IMPLS.items()}
    impls = _medians(runners, reps)

    s_depth, s_width = (10, 64) if quick else (50, 256)
    inits = list(initdiag.STANDARD_INITIALIZERS)
    specs = {i: stack_spec(initdiag.ProbeConfig(activation="tanh", init=i, depth=s_depth,
                                                width=s_width)) for i in inits}

    def draw(names):
        with single_threaded_blas():  # as initdiag.probe.prepare draws them
            for i in names:
                jax.block_until_ready(init_stack(0, specs[i]))

    log(f"weight draw: the default sweep's {len(inits)} initializers vs one per family "
        f"({s_depth} layers of {s_width}x{s_width})")
    share = {"every initializer": lambda: draw(inits), "one per family": lambda: draw(FAMILIES)}
    shared = _medians(share, reps)
    return {"reps": reps, "depth": depth, "width": width, "impls": impls,
            "share": {"depth": s_depth, "width": s_width, "inits": inits,
                      "families": list(FAMILIES), "times": shared}}


def markdown(rec: dict[str, Any]) -> list[str]:
    lines = ["## Weight draw options", "",
             f"PRNG implementations: one jitted `lax.map` over {rec['depth']} layers of "
             f"`jax.nn.initializers.glorot_normal()(fold_in(key, l), ({rec['width']}, "
             f"{rec['width']}))`, compiled before timing; median of {rec['reps']} round-robin "
             "rounds. Only initdiag's written-out threefry and jax's threefry2x32 give the bits "
             "`jax.nn.initializers` draws from initdiag's keys (partitionable, jax's default).", "",
             "| keys | s | vs initdiag's |", "|---|---|---|"]
    base = rec["impls"]["initdiag's written-out threefry (default)"]
    for label, t in rec["impls"].items():
        lines.append(f"| {label} | {t:.3f} | {t / base:.2f}x |")
    sh = rec["share"]
    every, fam = sh["times"]["every initializer"], sh["times"]["one per family"]
    lines += ["", f"One draw per distribution family: `init_stack` of the default sweep's "
              f"{len(sh['inits'])} initializers ({sh['depth']} layers of {sh['width']}x"
              f"{sh['width']}) {every:.3f} s, of one per family ({', '.join(sh['families'])}) "
              f"{fam:.3f} s: sharing a family's draw could save at most {every - fam:.3f} s "
              "per sweep of that shape."]
    return lines
