"""Find the probe sites of a traced function: an abstract walk over its jaxpr.

The walk enters ``jit`` calls (inlined), ``lax.scan`` bodies (each iteration becomes its own site)
and ``checkpoint``/``remat`` bodies; it follows, for every variable, where it comes from:

* *parameter*: a weight leaf, through layout-only operations (reshape, transpose, broadcast,
  convert, slicing; a scanned stack's per-iteration slice);
* *signal*: derived from the input without a reduction (reductions give statistics);
* *level*: the number of dense/conv layers on the longest path from the input;
* *channel axis*: set by a dense (the weight's output axis) or conv (``out_spec[1]``) and carried
  through elementwise and layout operations.

Sites (kind, in call order):

* ``dense`` / ``conv``: a ``dot_general`` / ``conv_general_dilated`` of a signal and a parameter;
  a following add of a parameter (the bias) is part of the site.
* ``activation``: the output of an elementwise chain applied to one signal that equals a known
  activation (tanh, sigmoid, relu, leaky_relu, elu, selu, gelu either form, silu, softplus). The
  chain's function is evaluated numerically on fixed test points, so any spelling counts: a
  ``custom_jvp`` relu, an inline tanh-gelu, a hand-written ``maximum(x, 0)``. When an activation
  is built from another (silu from sigmoid, selu from elu), the outer one is the site.
* ``norm``: a signal multiplied by a reciprocal square root of a statistic (``rsqrt(var + eps)``)
  or divided by its square root; a following multiply/add by parameters (scale, bias) is part of
  the site. This covers batch, layer, RMS and group norm in every framework.
* ``residual``: an add of two signals of the same shape whose levels differ: the operand with
  more layers behind it is the branch, the other the skip.
* ``attention``: ``exp(l - max) / sum(exp(l - max))`` over the last axis, where the logits ``l``
  come from a product of two signals (q kᵀ, scaled or masked).
* ``tap``: :func:`initdiag.tap`.

Constructs the walk does not enter (``custom_vjp``, a non-elementwise ``custom_jvp``, ``while``,
``cond``, Pallas and other higher-order primitives) are evaluated unchanged and listed as
skipped, with the reason.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import jax
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal

from initdiag.nn.activations import activation as make_activation

CALLS = {"pjit", "jit", "closed_call", "core_call"}
REMAT = {"remat2", "checkpoint", "remat"}
ELEMENTWISE = {
    "neg", "sign", "floor", "ceil", "round", "exp", "exp2", "log", "log1p", "expm1", "tanh",
    "logistic", "sin", "cos", "tan", "sqrt", "rsqrt", "cbrt", "integer_pow", "pow", "square",
    "abs", "max", "min", "add", "sub", "mul", "div", "select_n", "ge", "gt", "le", "lt", "eq",
    "ne", "and", "or", "not", "convert_element_type", "erf", "erfc", "erf_inv", "clamp",
    "stop_gradient", "copy", "copy_p", "is_finite", "nextafter", "atan2", "reduce_precision",
    "add_any",
}
LAYOUT = {"reshape", "transpose", "squeeze", "expand_dims", "convert_element_type", "copy",
          "copy_p", "slice", "dynamic_slice", "rev", "reduce_precision"}
REDUCTIONS = {"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin",
              "reduce_and", "reduce_or"}
KINDS = ("dense", "conv", "activation", "norm", "residual", "attention", "tap")

#: Test points at which an elementwise chain is compared with the known activations (spread so
#: that any prefix covers both signs and several scales: a small tensor uses a prefix).
TEST_POINTS = np.concatenate([
    [1.0, -1.0, 3.0, -3.0, 0.5, -0.5, 6.0, -6.0, 2.0, -2.0, 0.1, -0.1, 30.0, -30.0, 1.5, -1.5,
     0.0, 4.0, -4.0, 0.25, -0.25], np.linspace(-8.0, 8.0, 43)]).astype(np.float32)


def bind(eqn, args: list) -> list:
    """Evaluate one equation on ``args`` as ``jax.core.eval_jaxpr`` does (a list of outputs).

    ``get_bind_params`` returns the parameters (jax >= 0.5) or ``(subfuns, parameters)``."""
    bind_params = eqn.primitive.get_bind_params(eqn.params)
    sub: tuple = ()
    if isinstance(bind_params, tuple):
        sub, bind_params = bind_params
    out = eqn.primitive.bind(*sub, *args, **bind_params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _known_activations() -> list:
    names = ["tanh", "sigmoid", "relu", "selu", "gelu(approximate=True)",
             "gelu(approximate=False)", "silu", "softplus"]
    return [make_activation(n) for n in names]


@dataclasses.dataclass(eq=False)
class Site:
    """One probe site as the walk found it (before scan iterations are unrolled into names)."""

    kind: str
    where: tuple            # (eqn path, output index) of the value measured
    base: str               # name before uniquifying and iteration suffixes
    activation: str | None = None
    chan: int | None = None
    shape: tuple = ()
    param: int | None = None         # the weight leaf feeding a dense/conv site
    branch: int | None = None        # residual: which add operand is the branch
    logits: tuple | None = None      # attention: (scope path, Var) of the logits
    scans: tuple = ()                # (path, length, reverse) of enclosing scans, outer first
    dtype: Any = np.float32


@dataclasses.dataclass
class Group:
    """Sites in call order; a scan's body sites form a nested group run ``length`` times."""

    items: list
    length: int = 1
    reverse: bool = False
    path: tuple = ()


@dataclasses.dataclass(eq=False)
class Info:
    """What the walk knows of one variable."""

    shape: tuple = ()
    signal: bool = False
    param: int | None = None
    level: int = 0
    chan: int | None = None
    const: Any = None             # numpy value of a constant (literal, broadcast literal)
    key: tuple | None = None      # (scope path, Var): where phase 2 finds the value
    tests: dict | None = None     # elementwise chain: {base Info: values at TEST_POINTS}
    above: frozenset = frozenset()  # chain members this one is computed from
    site: Site | None = None      # a site measured at this variable
    normfactor: bool = False
    sqrtstat: bool = False
    product: bool = False
    reduce: tuple | None = None   # (primitive name, axes, input Info)
    bcast_of: "Info | None" = None
    exp_arg: "Info | None" = None
    sub_of: "Info | None" = None
    namer: str = ""               # name of the nearest upstream named site
    kind_op: str = ""             # the primitive that produced it (elementwise outputs)
    dtype: Any = np.float32
    norm_param: int | None = None  # a normalization factor's scale leaf (folded in)
    leaf_shape: tuple | None = None  # a parameter's shape before layout operations


@dataclasses.dataclass
class Skipped:
    construct: str
    name: str
    reason: str


@dataclasses.dataclass
class LeafUse:
    """How the traced function uses a weight leaf (per layer of a scanned stack).

    ``layer_shape``: the shape one use sees (the leaf's shape without scanned axes);
    ``canonical``/``perm``: how to draw it, as jax's ``[..spatial.., in, out]`` transposed by
    ``perm`` (None when the use does not say, e.g. several contracted axes)."""

    kind: str
    fan_in: int
    fan_out: int
    layer_shape: tuple = ()
    canonical: tuple | None = None
    perm: tuple | None = None


class Walk:
    """Phase 1: find every site of a closed jaxpr (see the module docstring)."""

    def __init__(self, n_params: int, param_owner: list[str]):
        self.root = Group([])
        self.taps: list[Site] = []
        self.skipped: list[Skipped] = []
        self.leaf_use: dict[int, LeafUse] = {}
        self.param_owner = param_owner
        self.n_params = n_params
        self._acts = _known_activations()
        self._act_values: dict[tuple, list] = {}

    # ---------------------------------------------------------------- entry
    def run(self, closed: ClosedJaxpr, param_positions: list[int],
            first_input: int = 0) -> list[Info]:
        """Walk ``closed``; invars at ``param_positions`` are the weights, those from
        ``first_input`` on are the input ``x`` (signals); others are fixed arrays."""
        jaxpr = closed.jaxpr
        ins = []
        params = set(param_positions)
        for i, v in enumerate(jaxpr.invars):
            shape = tuple(v.aval.shape)
            if i in params:
                ins.append(Info(shape=shape, param=param_positions.index(i), leaf_shape=shape))
            elif i >= first_input:
                ins.append(Info(shape=shape, signal=True, chan=len(shape) - 1 if shape else None))
            else:  # a fixed array of params (a mask, a PRNG key, position ids): not a signal
                ins.append(Info(shape=shape))
        return self.scope(jaxpr, self._const_infos(closed), ins, (), self.root, (), "")

    def _const_infos(self, closed: ClosedJaxpr) -> list[Info]:
        out = []
        for c in closed.consts:
            numeric = jax.numpy.issubdtype(getattr(c, "dtype", np.float32), jax.numpy.number)
            arr = np.asarray(c) if np.ndim(c) == 0 and numeric else None
            out.append(Info(shape=tuple(np.shape(c)), const=arr))
        return out

    # ---------------------------------------------------------------- scopes
    def scope(self, jaxpr: Jaxpr, consts: list[Info], ins: list[Info], path: tuple,
              group: Group, scans: tuple, names: str) -> list[Info]:
        env: dict = {}
        uses: dict = {}
        for eqn in jaxpr.eqns:
            for v in eqn.invars:
                if not isinstance(v, Literal):
                    uses[v] = uses.get(v, 0) + 1
        for v in jaxpr.outvars:
            if not isinstance(v, Literal):
                uses[v] = uses.get(v, 0) + 1
        for v, info in zip(jaxpr.constvars, consts):
            env[v] = info
        for v, info in zip(jaxpr.invars, ins):
            info.dtype = getattr(v.aval, "dtype", np.float32)
            env[v] = info

        def read(v):
            if isinstance(v, Literal):
                return Info(shape=tuple(np.shape(v.val)), const=np.asarray(v.val))
            return env[v]

        for i, eqn in enumerate(jaxpr.eqns):
            p = path + (i,)
            infos = [read(v) for v in eqn.invars]
            stack = (names + str(eqn.source_info.name_stack) if names
                     else _scope_name(eqn.source_info.name_stack))
            outs = self.eqn(eqn, infos, p, group, scans, stack, uses, env)
            for k, (v, info) in enumerate(zip(eqn.outvars, outs)):
                info.shape = tuple(getattr(v.aval, "shape", ()))
                info.dtype = getattr(v.aval, "dtype", np.float32)
                info.key = (path, v)
                if info.site is not None and info.site.where == (p, k):
                    info.site.shape = info.shape
                    info.site.dtype = v.aval.dtype
                env[v] = info
        return [read(v) for v in jaxpr.outvars]

    # ---------------------------------------------------------------- one equation
    def eqn(self, eqn, infos: list[Info], p: tuple, group: Group, scans: tuple, stack: str,
            uses: dict, env: dict) -> list[Info]:
        name = eqn.primitive.name
        n_out = len(eqn.outvars)
        if name in CALLS:
            inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            closed = inner if isinstance(inner, ClosedJaxpr) else ClosedJaxpr(inner, ())
            return self.scope(closed.jaxpr, self._const_infos(closed), infos, p, group, scans,
                              stack + "/" if stack else "")
        if name in REMAT:
            return self.scope(eqn.params["jaxpr"], [], infos, p, group, scans,
                              stack + "/" if stack else "")
        if name == "scan":
            return self._scan(eqn, infos, p, group, scans, stack)
        if name == "initdiag_tap":
            info = self._copy(infos[0])
            site = Site("tap", (p, 0), eqn.params["name"], eqn.params["activation"],
                        info.chan, info.shape, scans=scans)
            self.taps.append(site)
            group.items.append(site)
            info.site = site
            info.namer = eqn.params["name"]
            return [info]
        if name == "custom_jvp_call" and self._elementwise_call(eqn.params["call_jaxpr"].jaxpr):
            return [self._elementwise(eqn, infos, p, group, scans, stack, uses)]
        if name in ELEMENTWISE and n_out == 1:
            return [self._elementwise(eqn, infos, p, group, scans, stack, uses)]
        if name == "dot_general":
            return [self._dot(eqn, infos, p, group, scans, stack)]
        if name == "conv_general_dilated":
            return [self._conv(eqn, infos, p, group, scans, stack)]
        if name in REDUCTIONS:
            axes = tuple(eqn.params.get("axes", ()))
            return [Info(reduce=(name, axes, infos[0]), level=infos[0].level,
                         product=infos[0].product) for _ in range(n_out)]
        if name == "broadcast_in_dim":
            return [self._broadcast(eqn, infos[0])]
        if name in LAYOUT:
            out = self._layout(eqn, infos)
            src = infos[0]
            if (src.site is not None and src.site.kind in ("dense", "conv")
                    and name in ("transpose", "reshape") and out.chan is not None
                    and self._single_use(src, uses)):
                site = src.site  # a vmapped W @ x: the layer's output is after the transpose
                site.where = (p, 0)
                src.site = None
                out.site, out.namer, out.level = site, src.namer, src.level
                site.chan = out.chan
            return [out]
        if any(_has_jaxpr(v) for v in eqn.params.values()):
            self._opaque(eqn, infos)
        signal = any(i.signal for i in infos)
        level = max((i.level for i in infos if i.signal), default=0)
        return [Info(signal=signal, level=level, namer=_namer(infos)) for _ in range(n_out)]

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _copy(info: Info) -> Info:
        return dataclasses.replace(info, site=None, tests=None, above=frozenset())

    def _opaque(self, eqn, infos: list[Info]) -> None:
        if not any(i.signal for i in infos):
            return
        label = eqn.params.get("name") or getattr(eqn.params.get("call_jaxpr"), "name", "")
        reasons = {
            "custom_vjp_call": "a custom_vjp function: its backward rule is kept, so its inside "
                               "is not entered",
            "custom_vjp_call_jaxpr": "a custom_vjp function: its backward rule is kept, so its "
                                     "inside is not entered",
            "custom_jvp_call": "a custom_jvp function that is not elementwise: its derivative "
                               "rule is kept, so its inside is not entered",
            "while": "a while loop: its trip count is not known when tracing, so its iterations "
                     "cannot be sites",
            "cond": "a cond/switch: only one branch runs, decided at run time",
        }
        reason = reasons.get(eqn.primitive.name,
                             f"the higher-order primitive {eqn.primitive.name!r} is not entered")
        self.skipped.append(Skipped(eqn.primitive.name, str(label or eqn.primitive.name),
                                    reason + "; it runs unchanged"))

    def _elementwise_call(self, jaxpr: Jaxpr) -> bool:
        for e in jaxpr.eqns:
            n = e.primitive.name
            if n in CALLS:
                inner = e.params.get("jaxpr", e.params.get("call_jaxpr"))
                if not self._elementwise_call(getattr(inner, "jaxpr", inner)):
                    return False
            elif n == "custom_jvp_call":
                if not self._elementwise_call(e.params["call_jaxpr"].jaxpr):
                    return False
            elif n not in ELEMENTWISE and n != "broadcast_in_dim":
                return False
        return True

    def _test_values(self, shape: tuple, dtype: Any = np.float32) -> np.ndarray:
        return np.resize(TEST_POINTS, shape).astype(dtype)

    def _bind_numpy(self, eqn, args: list) -> Any:
        with jax.ensure_compile_time_eval():
            return np.asarray(bind(eqn, args)[0])

    def _elementwise(self, eqn, infos: list[Info], p, group, scans, stack, uses) -> Info:
        name = eqn.primitive.name
        out_shape = tuple(eqn.outvars[0].aval.shape)
        sig = [i for i in infos if i.signal]
        const_like = all(i.signal or i.const is not None for i in infos)
        level = max((i.level for i in sig), default=0)
        out = Info(shape=out_shape, signal=bool(sig), level=level,
                   product=any(i.product for i in sig), namer=_namer(infos))
        chans = [i.chan for i in sig if i.shape == out_shape and i.chan is not None]
        out.chan = chans[0] if chans else None
        out.kind_op = name
        if not sig:
            if const_like and all(i.const is not None for i in infos) and math.prod(out_shape) <= 1:
                out.const = self._bind_numpy(eqn, [i.const for i in infos])
            self._parameter_like(name, infos, out)
            return out
        if name == "exp":
            out.exp_arg = infos[0]
        if name == "sub" and infos[0].signal and not infos[1].signal and infos[1].const is None:
            out.sub_of = infos[0]
        if name == "mul":
            self._norm_mul(infos, out, p, group, scans, stack, uses)
        if name == "div":
            self._div(infos, out, p, group, scans, stack)
        if name in ("add", "add_any"):
            self._add(infos, out, p, group, scans, stack, uses)
        # a comparison's boolean output is part of a chain (the predicate of a where: leaky_relu,
        # elu, selu select between two branches of the same input), but never an activation
        if out.site is None and const_like and out_shape and all(
                i.shape == out_shape for i in sig) and (
                jax.numpy.issubdtype(eqn.outvars[0].aval.dtype, jax.numpy.floating)
                or eqn.outvars[0].aval.dtype == np.bool_):
            self._chain(eqn, infos, out, p, group, scans)
        return out

    def _parameter_like(self, name: str, infos: list[Info], out: Info) -> None:
        """Outputs that carry no signal: normalisation factors (rsqrt/sqrt of a statistic)."""
        if name == "rsqrt" and infos[0].reduce is not None or (
                name == "rsqrt" and not infos[0].signal and infos[0].param is None
                and infos[0].const is None):
            out.normfactor = True
        elif name == "sqrt" and infos[0].param is None and infos[0].const is None:
            out.sqrtstat = True
        elif name == "mul" and any(i.normfactor for i in infos) and all(
                i.normfactor or i.param is not None or i.const is not None for i in infos):
            out.normfactor = True
            out.norm_param = next((i.param for i in infos if i.param is not None),
                                  next((i.norm_param for i in infos if i.normfactor), None))
        elif name in ("convert_element_type", "copy") and infos[0].param is not None:
            out.param, out.leaf_shape = infos[0].param, infos[0].leaf_shape
        elif all(i.param is not None or i.const is not None for i in infos) and any(
                i.param is not None for i in infos):
            src = next(i for i in infos if i.param is not None)
            out.param, out.leaf_shape = src.param, src.leaf_shape
        for i in infos:
            if i.normfactor and name in ("convert_element_type", "add"):
                out.normfactor = True

    # ---- elementwise chains -> activations
    def _chain(self, eqn, infos: list[Info], out: Info, p, group, scans) -> None:
        """Extend the elementwise chains of the inputs through this equation and check whether
        the result equals a known activation of one of the chain's bases."""
        sig = [i for i in infos if i.signal]
        bases: dict | None = None
        for i in sig:  # a signal's chain bases, oldest first, then the signal itself
            own = {**(i.tests or {}), i: self._test_values(i.shape, i.dtype)}
            bases = own if bases is None else {b: v for b, v in bases.items() if b in own}
        if not bases:
            return
        tests = {}
        for base in bases:
            args = []
            for i in infos:
                if i.signal:
                    args.append(self._test_values(i.shape, i.dtype) if i is base
                                else (i.tests or {})[base])
                else:
                    args.append(i.const)
            try:
                tests[base] = self._bind_numpy(eqn, args)
            except Exception:  # noqa: BLE001 - a chain that cannot be replayed is just not a site
                return
        out.tests = tests
        out.above = frozenset().union(*(i.above | ({i} if i.tests else set()) for i in sig))
        if not jax.numpy.issubdtype(eqn.outvars[0].aval.dtype, jax.numpy.floating):
            return  # a comparison: part of the chain, never an activation
        for base, values in tests.items():  # bases in insertion order: the longest chain first
            act = self._match(values, base.shape, base.dtype)
            if act is None:
                continue
            for m in out.above:  # an activation built from another: the outer one is the site
                if m.site is not None and m.site.kind == "activation" and base in (m.tests or {}):
                    self._remove(m.site, group)
                    m.site = None
            site = Site("activation", (p, 0), "", act.label, out.chan, out.shape, scans=scans)
            site.base = _join(base.namer if base.site is not None or base.namer else "", act.name)
            group.items.append(site)
            out.site = site
            out.namer = base.namer
            return

    def _match(self, values: np.ndarray, shape: tuple, dtype: Any = np.float32):
        """The known activation equal to ``values`` at the test points (in ``dtype``, compared in
        float32 to ``dtype``'s rounding: 1e-4 relative for float32, 8 eps for 16-bit floats)."""
        t = self._test_values(shape, dtype).astype(np.float32)
        values = np.asarray(values).astype(np.float32)
        eps = float(jax.numpy.finfo(dtype).eps)
        rtol, atol = max(1e-4, 8 * eps), max(1e-5, 8 * eps)
        key = (shape, str(np.dtype(dtype)))
        if key not in self._act_values:
            with jax.ensure_compile_time_eval():
                self._act_values[key] = [np.asarray(a(t)) for a in self._acts]
        if not np.all(np.isfinite(values)):
            return None
        cands = list(zip(self._acts, self._act_values[key]))
        neg = t < 0
        if np.any(neg) and np.any(t > 0):
            slope = values[neg][0] / t[neg][0]
            if 0 < slope < 1 and not np.isclose(slope, 0):
                a = make_activation("leaky_relu", slope=_short(slope))
                cands.append((a, np.asarray(jax.device_get(a(t)))))
            low = values[t == t.min()][0]
            if low < 0:
                a = make_activation("elu", alpha=_short(-low) if t.min() <= -20 else 1.0)
                cands.append((a, np.asarray(jax.device_get(a(t)))))
        for act, ref in cands:
            if np.all(np.abs(values - ref) <= atol + rtol * np.abs(ref)):
                return act
        return None

    def _remove(self, site: Site, group: Group) -> None:
        if site in group.items:
            group.items.remove(site)

    # ---- norms, residuals, attention
    def _norm_mul(self, infos, out, p, group, scans, stack, uses) -> None:
        a, b = infos
        sig = a if a.signal else b
        other = b if sig is a else a
        if other.normfactor and sig.signal and not sig.normfactor:
            base = (self.param_owner[other.norm_param] if other.norm_param is not None
                    else _join(stack, "norm"))
            if other.norm_param is not None:
                self.leaf_use.setdefault(other.norm_param, LeafUse("norm_scale", 0, 0))
            site = Site("norm", (p, 0), base, None, sig.chan, sig.shape, scans=scans)
            group.items.append(site)
            out.site = site
            out.namer = site.base
        elif other.param is not None and sig.site is not None and sig.site.kind == "norm" \
                and self._single_use(sig, uses) and sig.shape == out.shape:
            self._relocate(sig, out, p, other)

    def _div(self, infos, out, p, group, scans, stack) -> None:
        num, den = infos
        if num.signal and den.sqrtstat:
            site = Site("norm", (p, 0), _join(stack, "norm"), None, num.chan,
                        num.shape, scans=scans)
            group.items.append(site)
            out.site = site
            out.namer = site.base
            return
        red = den.reduce
        if num.exp_arg is None or red is None or red[0] != "reduce_sum" or red[2] is not num:
            return
        if tuple(red[1]) != (len(num.shape) - 1,):
            return
        logits = num.exp_arg.sub_of or num.exp_arg
        if not logits.product:
            return
        site = Site("attention", (p, 0), _join(stack, "attention"), None, None,
                    num.shape, logits=logits.key, scans=scans)
        group.items.append(site)
        out.site = site
        out.namer = site.base

    def _add(self, infos, out, p, group, scans, stack, uses) -> None:
        a, b = infos
        if a.signal and b.signal:
            if a.shape == b.shape == out.shape and a.level != b.level:
                branch = 0 if a.level > b.level else 1
                br = infos[branch]
                site = Site("residual", (p, 0), _join(_strip_label(br.namer) or stack,
                                                      "residual"), None,
                            a.chan if a.chan is not None else b.chan, out.shape,
                            branch=branch, scans=scans)
                group.items.append(site)
                out.site = site
                out.namer = site.base
            return
        sig = a if a.signal else b
        other = b if sig is a else a
        if other.param is not None and sig.site is not None and sig.site.kind in (
                "dense", "conv", "norm") and self._single_use(sig, uses) and sig.shape == out.shape:
            self._relocate(sig, out, p, other)

    @staticmethod
    def _single_use(info: Info, uses: dict) -> bool:
        key = info.key
        return key is not None and uses.get(key[1], 0) == 1

    def _relocate(self, old: Info, new: Info, p: tuple, param: Info) -> None:
        site = old.site
        site.where = (p, 0)
        if param.param is not None:
            role = "norm_scale" if site.kind == "norm" and new.kind_op == "mul" else "bias"
            layer = self.leaf_use.get(site.param) if site.param is not None else None
            fans = (layer.fan_in, layer.fan_out) if layer is not None else (0, 0)
            self.leaf_use.setdefault(param.param, LeafUse(role, *fans, param.leaf_shape or ()))
        old.site = None
        new.site = site
        new.namer = old.namer
        new.level = old.level
        new.chan = old.chan if new.chan is None else new.chan
        if site.kind == "norm" and param.param is not None and new.kind_op == "mul":
            site.base = self.param_owner[param.param]  # the normalization's own module
            new.namer = site.base

    # ---- dense / conv
    def _dot(self, eqn, infos, p, group, scans, stack) -> Info:
        lhs, rhs = infos
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        out_shape = tuple(eqn.outvars[0].aval.shape)
        level = max((i.level for i in infos if i.signal), default=0)
        out = Info(shape=out_shape, signal=lhs.signal or rhs.signal, level=level,
                   namer=_namer(infos))
        if lhs.signal and rhs.signal:
            out.product = True
            return out
        if not (lhs.signal or rhs.signal) or (lhs.param is None and rhs.param is None):
            if lhs.param is not None and rhs.param is not None:
                out.param = lhs.param
            return out
        w, wc, wb, w_is_rhs = (rhs, rc, rb, True) if rhs.param is not None else (lhs, lc, lb, False)
        free = [d for d in range(len(w.shape)) if d not in wc and d not in wb]
        fan_in = int(math.prod(w.shape[d] for d in wc))
        fan_out = int(math.prod(w.shape[d] for d in free))
        nb = len(lb)
        if w_is_rhs:
            chan = len(out_shape) - 1 if free else None
        else:
            chan = nb if free else None
        canonical = perm = None
        if len(w.shape) == 2 and len(wc) == 1 and len(free) == 1 and not wb:
            canonical, perm = (fan_in, fan_out), ((0, 1) if wc[0] == 0 else (1, 0))
        self.leaf_use.setdefault(w.param, LeafUse("dense", fan_in, fan_out, w.shape, canonical,
                                                  perm))
        return self._layer_site("dense", w.param, fan_in, fan_out, out, chan, out_shape, p,
                                group, scans)

    def _conv(self, eqn, infos, p, group, scans, stack) -> Info:
        lhs, rhs = infos
        dn = eqn.params["dimension_numbers"]
        out_shape = tuple(eqn.outvars[0].aval.shape)
        out = Info(shape=out_shape, signal=lhs.signal or rhs.signal, level=lhs.level,
                   namer=_namer(infos))
        if rhs.param is None or not lhs.signal:
            return out
        o, i_, *spatial = dn.rhs_spec
        receptive = int(math.prod(rhs.shape[d] for d in spatial))
        order = [*spatial, i_, o]
        self.leaf_use.setdefault(rhs.param, LeafUse(
            "conv", rhs.shape[i_] * receptive, rhs.shape[o] * receptive, rhs.shape,
            tuple(rhs.shape[d] for d in order), tuple(order.index(j) for j in range(len(order)))))
        return self._layer_site("conv", rhs.param, rhs.shape[i_] * receptive,
                                rhs.shape[o] * receptive, out, dn.out_spec[1], out_shape, p,
                                group, scans)

    def _layer_site(self, kind, leaf, fan_in, fan_out, out: Info, chan, out_shape, p, group,
                    scans) -> Info:
        self.leaf_use.setdefault(leaf, LeafUse(kind, fan_in, fan_out))
        site = Site(kind, (p, 0), self.param_owner[leaf], None, chan, out_shape, param=leaf,
                    scans=scans)
        group.items.append(site)
        out.site = site
        out.level += 1
        out.chan = chan
        out.namer = site.base
        return out

    # ---- layout
    def _broadcast(self, eqn, info: Info) -> Info:
        shape = tuple(eqn.params["shape"])
        dims = tuple(eqn.params["broadcast_dimensions"])
        out = Info(shape=shape, signal=info.signal, param=info.param, level=info.level,
                   product=info.product, norm_param=info.norm_param,
                   leaf_shape=info.leaf_shape,
                   normfactor=info.normfactor, sqrtstat=info.sqrtstat, bcast_of=info,
                   reduce=info.reduce, namer=info.namer)
        if info.const is not None and math.prod(shape) <= 1:
            out.const = np.broadcast_to(info.const, shape)
        elif info.const is not None and np.ndim(info.const) == 0:
            out.const = np.broadcast_to(info.const, shape)
        if info.chan is not None and info.chan < len(dims):
            out.chan = dims[info.chan]
        return out

    def _layout(self, eqn, infos: list[Info], uses: dict | None = None) -> Info:
        info = infos[0]
        name = eqn.primitive.name
        in_shape = info.shape
        out_shape = tuple(eqn.outvars[0].aval.shape)
        out = Info(shape=out_shape, signal=info.signal, param=info.param, level=info.level,
                   product=info.product, normfactor=info.normfactor, sqrtstat=info.sqrtstat,
                   reduce=info.reduce, namer=info.namer, norm_param=info.norm_param,
                   leaf_shape=info.leaf_shape)
        if info.const is not None:
            out.const = np.reshape(info.const, out_shape) if name == "reshape" else (
                info.const if name in ("convert_element_type", "copy") else None)
        if info.chan is not None:
            if name == "transpose":
                out.chan = list(eqn.params["permutation"]).index(info.chan)
            elif name in ("convert_element_type", "copy", "copy_p", "reduce_precision"):
                out.chan = info.chan
            elif (in_shape and out_shape and info.chan == len(in_shape) - 1
                  and in_shape[-1] == out_shape[-1]):
                out.chan = len(out_shape) - 1
            elif info.chan == 0 and in_shape and out_shape and in_shape[0] == out_shape[0]:
                out.chan = 0
        return out

    # ---- scan
    def _scan(self, eqn, infos, p, group, scans, stack) -> list[Info]:
        prm = eqn.params
        body: ClosedJaxpr = prm["jaxpr"]
        nc, ncar, length = prm["num_consts"], prm["num_carry"], prm["length"]
        ins = []
        for k, info in enumerate(infos):
            if k < nc + ncar:
                ins.append(self._copy(info))
            else:  # a per-iteration slice of xs
                sliced = dataclasses.replace(self._copy(info), shape=info.shape[1:],
                                             chan=None if info.chan in (None, 0) else info.chan - 1,
                                             leaf_shape=info.leaf_shape[1:] if info.leaf_shape
                                             else None)
                ins.append(sliced)
        sub = Group([], length, bool(prm["reverse"]), p)
        group.items.append(sub)
        inner_scans = scans + ((p, length, bool(prm["reverse"])),)
        outs = self.scope(body.jaxpr, self._const_infos(body), ins, p, sub, inner_scans,
                          stack + "/" if stack else "")
        result = []
        for k, info in enumerate(outs):
            o = self._copy(info)
            if k >= ncar:  # stacked ys
                o.chan = None if info.chan is None else info.chan + 1
                o.const = None
            result.append(o)
        return result


def _short(v: Any) -> float:
    """The shortest decimal that rounds to ``v`` in float32 (a slope of 0.2 read back from
    float32 test values is 0.2, not 0.20000000298023224), so labels read as the user wrote them."""
    return float(str(np.float32(v)))


def _has_jaxpr(value: Any) -> bool:
    """A jaxpr, or a tuple/list holding one (cond's ``branches``)."""
    if isinstance(value, (ClosedJaxpr, Jaxpr)):
        return True
    return isinstance(value, (tuple, list)) and any(_has_jaxpr(v) for v in value)


def _namer(infos: list[Info]) -> str:
    for i in infos:
        if i.signal and i.namer:
            return i.namer
    return ""


def _scope_name(name_stack: Any) -> str:
    """A name stack as text without its root (a Flax model's class name: the parameter paths
    that name the other sites start below it)."""
    text = str(name_stack)
    head, sep, tail = text.partition("/")
    return tail if sep else text


def _strip_label(name: str) -> str:
    """``a/b/norm`` -> ``a/b``: a name without a trailing site label."""
    head, _, tail = name.rpartition("/")
    labels = {"norm", "attention", "residual", "tanh", "sigmoid", "relu", "leaky_relu", "elu",
              "selu", "gelu", "silu", "softplus"}
    return head if head and tail in labels else name


def _join(prefix: str, label: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{label}" if prefix else label


def sites_of(group: Group) -> list[Site]:
    out = []
    for item in group.items:
        out.extend(sites_of(item) if isinstance(item, Group) else [item])
    return out


def keep(group: Group, wanted: set) -> Group:
    """The group with only the sites in ``wanted`` (empty sub-groups dropped)."""
    items = []
    for item in group.items:
        if isinstance(item, Group):
            sub = keep(item, wanted)
            if sub.items:
                items.append(sub)
        elif item in wanted:
            items.append(item)
    return dataclasses.replace(group, items=items)
