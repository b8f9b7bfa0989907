"""Model workloads of issue 11 ("Performance"): ``initdiag.probe_fn`` on a ResNet and on a
transformer stack, written in plain JAX, against a plain ``jax.jit(jax.value_and_grad(loss))`` of
the same model and loss.

* ``resnet``: a 3x3 conv stem, ``blocks`` residual blocks ``x + bn(conv(relu(bn(conv(x)))))``
  (batch norm over batch and space, with scale and shift), mean pooling and a dense head;
  default 8 blocks, 32 channels, 16x16, batch 32.
* ``transformer``: ``layers`` pre-LN blocks ``x + attn(ln(x))``, ``x + mlp(ln(x))`` (4 heads,
  softmax written out, MLP 4d with tanh-gelu); default 4 layers, d=128, sequence 64, batch 16.

Timed (interleaved rounds, :func:`_bench.measure.interleaved`): the probe is the compiled
:class:`initdiag.model.program.Program` called on the weights (``prog(params, x, seed)``: device
pass, transfer and the host's assembly of the per-site numbers); the plain pass is
``jax.jit(jax.value_and_grad(L))`` with ``L`` the projection loss (a fixed readout ``g``), blocked
until ready. The ratio is the median over rounds of t(probe) / t(plain) (target <= 2).

Sweep: ``initdiag.sweep_fn`` over 10 initializers (the initializer is data: the same shapes), each
probed with the same Program; its ``compiled_count()`` must stay 1.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from _bench import measure

#: Target of issue 11: a probe costs at most twice a plain forward + backward pass.
RATIO_TARGET = 2.0
SWEEP_INITS = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform", "lecun_normal",
               "lecun_uniform", "orthogonal", "torch_default", "truncated_normal", "normal")


@dataclasses.dataclass(frozen=True)
class ModelWorkload:
    key: str
    title: str
    shape: str
    fn: Callable
    init: Callable  # (key, scale) -> params
    x: Any


# ---------------------------------------------------------------- resnet
def _conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _bn(h, p):
    m = jnp.mean(h, axis=(0, 1, 2), keepdims=True)
    v = jnp.mean(jnp.square(h - m), axis=(0, 1, 2), keepdims=True)
    return (h - m) * jax.lax.rsqrt(v + 1e-5) * p["scale"][None, None, None, :] \
        + p["shift"][None, None, None, :]


def resnet_fn(p, x):
    h = _conv(x, p["stem"])
    for blk in p["blocks"]:
        y = jax.nn.relu(_bn(_conv(h, blk["w1"]), blk["bn1"]))
        y = _bn(_conv(y, blk["w2"]), blk["bn2"])
        h = jax.nn.relu(h + y)
    return jnp.mean(h, axis=(1, 2)) @ p["head"]


def resnet(blocks=8, channels=32, size=16, batch=32, classes=10) -> ModelWorkload:
    c = channels

    def init(key, scale=1.0):
        ks = iter(jax.random.split(key, 2 * blocks + 2))
        conv = lambda k, cin: scale * jax.random.normal(k, (3, 3, cin, c)) / np.sqrt(9 * cin)  # noqa: E731
        bn = lambda: {"scale": jnp.ones((c,)), "shift": jnp.zeros((c,))}  # noqa: E731
        return {"stem": conv(next(ks), 3),
                "blocks": [{"w1": conv(next(ks), c), "bn1": bn(), "w2": conv(next(ks), c),
                            "bn2": bn()} for _ in range(blocks)],
                "head": scale * jax.random.normal(next(ks), (c, classes)) / np.sqrt(c)}

    x = jax.random.normal(jax.random.key(100), (batch, size, size, 3))
    return ModelWorkload("resnet", "ResNet (conv + batchnorm + residual)",
                         f"{blocks} blocks, {c} channels, {size}x{size}, B={batch}",
                         resnet_fn, init, x)


# ---------------------------------------------------------------- transformer
def _ln(h, p):
    m = jnp.mean(h, axis=-1, keepdims=True)
    v = jnp.mean(jnp.square(h - m), axis=-1, keepdims=True)
    return (h - m) * jax.lax.rsqrt(v + 1e-5) * p["scale"][None, None, :] + p["shift"][None, None, :]


def _attention(h, p, heads):
    b, t, d = h.shape
    split = lambda a: a.reshape(b, t, heads, d // heads)  # noqa: E731
    q, k, v = split(h @ p["wq"]), split(h @ p["wk"]), split(h @ p["wv"])
    logits = jnp.einsum("bthd,bshd->bhts", q, k) / np.sqrt(d // heads)
    e = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
    probs = e / jnp.sum(e, axis=-1, keepdims=True)
    return jnp.einsum("bhts,bshd->bthd", probs, v).reshape(b, t, d) @ p["wo"]


def transformer_fn(p, x, heads=4):
    h = x
    for blk in p:
        h = h + _attention(_ln(h, blk["ln1"]), blk["attn"], heads)
        u = jax.nn.gelu(_ln(h, blk["ln2"]) @ blk["w1"] + blk["b1"][None, None, :])
        h = h + u @ blk["w2"] + blk["b2"][None, None, :]
    return h


def transformer(layers=4, dim=128, seq=64, batch=16) -> ModelWorkload:
    d = dim

    def init(key, scale=1.0):
        ks = iter(jax.random.split(key, 6 * layers))
        dense = lambda k, i, o: scale * jax.random.normal(k, (i, o)) / np.sqrt(i)  # noqa: E731
        ln = lambda: {"scale": jnp.ones((d,)), "shift": jnp.zeros((d,))}  # noqa: E731
        return [{"ln1": ln(), "attn": {n: dense(next(ks), d, d) for n in ("wq", "wk", "wv", "wo")},
                 "ln2": ln(), "w1": dense(next(ks), d, 4 * d), "b1": jnp.zeros((4 * d,)),
                 "w2": dense(next(ks), 4 * d, d), "b2": jnp.zeros((d,))} for _ in range(layers)]

    x = jax.random.normal(jax.random.key(101), (batch, seq, d))
    return ModelWorkload("transformer", "transformer stack (pre-LN)",
                         f"{layers} layers, d={d}, seq {seq}, B={batch}",
                         transformer_fn, init, x)


def model_workloads(quick: bool = False) -> dict[str, ModelWorkload]:
    if quick:
        return {"resnet": resnet(blocks=2, channels=8, size=8, batch=4),
                "transformer": transformer(layers=2, dim=32, seq=8, batch=2)}
    return {"resnet": resnet(), "transformer": transformer()}


# ---------------------------------------------------------------- timing
def plain_step(wl: ModelWorkload, params):
    """``jax.jit(jax.value_and_grad(L))`` of the projection loss on the model's output."""
    y = jax.eval_shape(wl.fn, params, wl.x)
    g = jax.random.normal(jax.random.key(102), y.shape, jnp.float32)
    batch = wl.x.shape[0]
    step = jax.jit(jax.value_and_grad(lambda p, x: jnp.sum(g * wl.fn(p, x)) / batch))
    return lambda: jax.block_until_ready(step(params, wl.x))


def bench_model(wl: ModelWorkload, warmup: int = 1, reps: int = 5,
                log: Callable[[str], None] | None = None) -> dict[str, Any]:
    from initdiag.model import api

    params = wl.init(jax.random.key(0), 1.0)
    t0 = time.perf_counter()
    prog = api.program(wl.fn, params, wl.x)
    trace_s = time.perf_counter() - t0
    runners = {"probe_fn": lambda: prog(params, wl.x, 0), "jit(value_and_grad)": plain_step(wl, params)}
    timed = measure.interleaved(
        runners, warmup, reps,
        on_time=(lambda s, i, dt: log(f"  ({wl.key}) {s} {'warm-up' if i < 0 else f'rep {i + 1}'}"
                                      f": {dt:.3f} s")) if log else None)
    ratio = measure.round_ratios(timed["probe_fn"]["times"], timed["jit(value_and_grad)"]["times"])
    # the sweep: 10 initializers redrawn by sweep_fn (the initializer is data), one executable
    import initdiag

    sweep_times: list[float] = []
    t = time.perf_counter()
    swept = initdiag.sweep_fn(wl.fn, params, wl.x, inits=list(SWEEP_INITS), seeds=[0],
                              progress=lambda *_: sweep_times.append(time.perf_counter() - t))
    sweep_times = [b - a for a, b in zip([0.0] + sweep_times[:-1], sweep_times)]
    same = api.program(wl.fn, params, wl.x) is prog and len(swept) == len(SWEEP_INITS)
    return {"title": wl.title, "shape": wl.shape, "sites": len(prog.flat),
            "kinds": sorted(set(f.site.kind for f in prog.flat)),
            "trace_s": trace_s, "probe_first_s": timed["probe_fn"]["first"],
            "probe_s": timed["probe_fn"]["median"],
            "plain_first_s": timed["jit(value_and_grad)"]["first"],
            "plain_s": timed["jit(value_and_grad)"]["median"],
            "ratio": ratio["median"], "ratio_min": ratio["min"], "ratio_max": ratio["max"],
            "ratio_rounds": ratio["rounds"], "sweep_n": len(SWEEP_INITS),
            "sweep_s": sum(sweep_times), "sweep_median_s": statistics.median(sweep_times),
            "compiled": prog.compiled_count(), "same_program": same}


def bench(quick: bool = False, warmup: int = 1, reps: int = 5,
          log: Callable[[str], None] | None = None) -> dict[str, Any]:
    out = {}
    for key, wl in model_workloads(quick).items():
        if log:
            log(f"(model {key}) {wl.shape}")
        out[key] = bench_model(wl, warmup, reps, log)
    return out


def markdown(rec: dict[str, Any]) -> list[str]:
    lines = ["## Models (issue 11)", "",
             "`probe_fn`'s compiled Program vs `jax.jit(jax.value_and_grad(L))` of the same model "
             "(projection loss), timed in interleaved rounds; ratio = median over rounds of "
             f"t(probe) / t(plain), target <= {RATIO_TARGET:g}. Sweep: {len(SWEEP_INITS)} "
             "initializers (sweep_fn: weights redrawn by reinit, probed with one Program).", "",
             "| model | shape | sites | probe s | plain s | ratio (min–max) | first call s | "
             "sweep of 10 s | executables |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rec.values():
        lines.append(f"| {r['title']} | {r['shape']} | {r['sites']} | {r['probe_s']:.4f} | "
                     f"{r['plain_s']:.4f} | {r['ratio']:.2f} ({r['ratio_min']:.2f}–"
                     f"{r['ratio_max']:.2f}) {'PASS' if r['ratio'] <= RATIO_TARGET else '**FAIL**'}"
                     f" | {r['probe_first_s']:.2f} | {r['sweep_s']:.2f} | {r['compiled']} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m _bench.models", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args(argv)
    rec = bench(args.quick, args.warmup, args.reps,
                log=lambda m: print(f"[bench {time.strftime('%H:%M:%S')}] {m}", file=sys.stderr,
                                    flush=True))
    print("\n".join(markdown(rec)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
