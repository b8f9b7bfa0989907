"""Mean-field predictions of a probe's per-layer statistics: :func:`predict`.

For layer l = 1..L with weight variance sigma_w,l^2 = fan_in_l * Var(W^l_ij) and bias variance
sigma_b,l^2 = Var(b^l_j) (**variances**, taken from the initializers' ``weight_variance`` and
``bias_variance``; orthogonal weights by their variance gain^2 / max(fan_in, fan_out)):

    q_1 = sigma_w,1^2 * input_var + sigma_b,1^2      (input_var = E[x0^2] per entry, 1 for the
    q_{l+1} = sigma_w,l+1^2 E_{z~N(0,q_l)}[phi(z)^2] + sigma_b,l+1^2        probe's inputs)

and, with z ~ N(0, q_l), the probe's metrics (:data:`initdiag.results.METRICS`) are predicted as

=================  ==========================================================================
preact_mean        0
preact_var         q_l
act_mean           E[phi(z)]
act_var            E[phi(z)^2] - E[phi(z)]^2
saturation         P(phi(z) in the saturated range, :meth:`Activation.saturated` at threshold t)
                   (NaN when phi does not saturate, as measured)
zero_frac          P(phi(z) = 0) (1/2 for relu; NaN unless phi can die, as measured)
grad_preact_rms    RMS of dL/dh^l relative to layer L (1 at l = L):
                   E|dL/dh^l|^2 = E[phi'(z_l)^2] * fan_out_{l+1} Var(W^{l+1}) * E|dL/dh^{l+1}|^2
                   (dL/dh^l = phi'(h^l) * (W^{l+1} dL/dh^{l+1}), weights of the backward pass
                   taken independent of the forward's: the gradient independence assumption)
chi                sigma_w,l^2 E[phi'(z_l)^2]; for equal widths and one initializer,
                   grad_preact_rms[l]^2 / grad_preact_rms[l+1]^2 = chi[l]
=================  ==========================================================================

Where the theory does not apply, :func:`predict` raises :class:`NotApplicable` (a ValueError)
saying why, instead of returning a number: normalization, residual stacks, weights that are not
zero-mean iid (zeros, constant, LSUV's data-dependent rescaling), initializers of unknown
variance (user callables), biases with a nonzero mean (constant), user-given input arrays.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from initdiag.nn.activations import activation as resolve_activation
from initdiag.config import INPUTS, ProbeConfig
from initdiag.nn.initializers import CallableInitializer, initializer as resolve_initializer
from initdiag.theory import _finite
from initdiag.theory._meanfield import depth_scales
from initdiag.theory._quadrature import gaussian

#: Metrics a prediction carries (all [depth] arrays).
PREDICTED = ("preact_mean", "preact_var", "act_mean", "act_var", "saturation", "zero_frac",
             "grad_preact_rms", "chi")


class NotApplicable(ValueError):
    """Mean-field theory does not describe this configuration; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(f"mean-field theory does not apply: {reason}")
        self.reason = reason

    def __reduce__(self):  # pickled with its reason, not its message (which __init__ prefixes)
        return (type(self), (self.reason,))


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Per-layer mean-field predictions, indexed like a ProbeResult: ``pred["preact_var"]``.

    Attributes:
      config: what was predicted (activation, init, bias_init labels, depth, widths, batch...).
      values: metric name -> float64 array [depth] (see the module docstring).
      weight_var: sigma_w^2 per layer (fan_in * Var(W), a variance).
      bias_var: sigma_b^2 per layer (a variance).
      q_star, chi1, xi_q, xi_c: of the recursion's fixed point when every layer has the same
        sigma_w^2 and sigma_b^2 (:func:`initdiag.theory.depth_scales`); NaN when undefined.
      log_sd: predicted standard deviation of ln(measured preact_var / predicted) for one
        network at these widths and this batch (:mod:`initdiag.theory._finite`).
      step_sd: predicted standard deviation of the one-step relative error
        measured q_{l+1} / F(measured q_l) - 1 (index 0: input -> layer 1).
    """

    config: dict[str, Any]
    values: dict[str, np.ndarray]
    weight_var: np.ndarray
    bias_var: np.ndarray
    q_star: float = math.nan
    chi1: float = math.nan
    xi_q: float = math.nan
    xi_c: float = math.nan
    log_sd: np.ndarray | None = None
    step_sd: np.ndarray | None = None

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.values)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.values:
            raise KeyError(f"no prediction for {name!r}; predicted: {', '.join(self.values)}")
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def band(self, k: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) preact_var band: q_l * exp(-+ k * log_sd_l)."""
        q = self.values["preact_var"]
        return q * np.exp(-k * self.log_sd), q * np.exp(k * self.log_sd)

    def one_step(self, measured_q: np.ndarray) -> np.ndarray:
        """F_{l+1}(measured q_l) for l = 1..L-1: each layer's prediction from the measured one below."""
        g = gaussian(self.config["activation"])
        measured_q = np.asarray(measured_q, np.float64)
        return self.weight_var[1:] * g.moments(measured_q[:-1])["phi2"] + self.bias_var[1:]

    def relative_deviation(self, result: Any, metric: str) -> np.ndarray:
        """measured / predicted - 1 per layer for a ProbeResult (NaN where undefined)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(result[metric], np.float64) / self[metric] - 1.0


def _fail_if(cond: bool, reason: str) -> None:
    if cond:
        raise NotApplicable(reason)


def _variances(init, bias_init, use_bias: bool, shapes: Sequence[tuple[int, int]]):
    _fail_if(isinstance(init, CallableInitializer),
             f"the weight initializer {init.name} is a user callable of unknown variance")
    _fail_if(init.name in ("zeros", "constant"),
             f"init={init.label}: every weight is equal, not zero-mean iid (all units compute the "
             "same function; the probe shows it directly)")
    _fail_if(init.data_dependent, "init=lsuv rescales each layer from data; it is not a fixed "
             "distribution (LSUV sets each layer's preact_var to 1 by construction)")
    w = np.array([fi * init.weight_variance(fi, fo) for fi, fo in shapes], np.float64)
    if not use_bias:
        return w, np.zeros_like(w)
    _fail_if(isinstance(bias_init, CallableInitializer),
             f"the bias initializer {bias_init.name} is a user callable of unknown variance")
    _fail_if(bias_init.name == "constant" and bias_init.kwargs["value"] * bias_init.gain != 0,
             f"bias_init={bias_init.label} has a nonzero mean (the theory assumes zero-mean biases)")
    _fail_if(bias_init.data_dependent, "bias_init=lsuv is not a bias initializer")
    b = np.array([bias_init.bias_variance(fi, fo) for fi, fo in shapes], np.float64)
    return w, b


def _stack(activation: Any, init: Any, depth: int, width: int | Sequence[int], bias_init: Any,
           input_var: float, *, input_width: int | None, use_bias: bool, batch: int | None,
           norm: str | None, residual: float | None, saturation_threshold: float) -> "_Stack":
    """Validate :func:`predict`'s arguments (raising as it does) into a :class:`_Stack`."""
    _fail_if(norm is not None, f"norm={norm!r}: normalization is not modelled (it fixes each "
             "layer's scale whatever the initializer)")
    _fail_if(residual is not None, f"residual={residual!r}: residual stacks are not modelled")
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1; got {depth!r}")
    depth = int(depth)
    widths = [int(width)] * depth if np.isscalar(width) else [int(v) for v in width]
    if len(widths) != depth or min(widths) < 1:
        raise ValueError(f"width must be one width >= 1 or {depth} of them; got {width!r}")
    n0 = widths[0] if input_width is None else int(input_width)
    input_var = float(input_var)
    if not (math.isfinite(input_var) and input_var > 0):
        raise ValueError(f"input_var (E[x0^2], a variance) must be finite and > 0; got {input_var!r}")
    batch = 1 if batch is None else int(batch)
    t = float(saturation_threshold)
    if not 0 < t < 1:
        raise ValueError(f"saturation_threshold must be in (0, 1); got {t}")
    act = resolve_activation(activation)
    init_o, bias_o = resolve_initializer(init), resolve_initializer(bias_init)
    shapes = list(zip([n0] + widths[:-1], widths))
    w, b = _variances(init_o, bias_o, use_bias, shapes)
    back = np.array([fo * init_o.weight_variance(fi, fo) for fi, fo in shapes])
    config = {"activation": act.label, "init": init_o.label, "bias_init": bias_o.label,
              "depth": depth, "widths": widths, "input_width": n0, "input_var": input_var,
              "use_bias": bool(use_bias), "batch": batch, "saturation_threshold": t}
    return _Stack(act, config, w, b, back)


class _Stack(NamedTuple):
    """A validated stack to predict: its activation, the prediction's ``config``, sigma_w^2 and
    sigma_b^2 per layer and the backward weight variance fan_out Var(W) per layer."""

    act: Any
    config: dict[str, Any]
    w: np.ndarray
    b: np.ndarray
    back: np.ndarray


def predict(activation: Any = "relu", init: Any = "he_normal", depth: int = 50,
            width: int | Sequence[int] = 256, bias_init: Any = "zeros", input_var: float = 1.0,
            *, input_width: int | None = None, use_bias: bool = True, batch: int | None = None,
            norm: str | None = None, residual: float | None = None,
            saturation_threshold: float = 0.99, band: bool = True) -> Prediction:
    """Mean-field prediction of a probe's per-layer statistics (module docstring).

    Args:
      activation: name, Activation or callable (phi' and phi'' by jax.grad).
      init: weight initializer (name or object); its variance sets sigma_w^2 = fan_in Var(W).
      depth: number of layers L.
      width: width of every layer or a list of L widths (each layer uses its own fans).
      bias_init: bias initializer; its variance sets sigma_b^2.
      input_var: E[x0^2] of the input's entries (a variance; 1.0 for the probe's inputs).
      input_width: width of the input (default: the first layer's).
      use_bias: whether layers have a bias.
      batch: batch size for the finite-width band (``log_sd``); None: one input (B = 1), the
        widest band (Hanin's 5 sum 1/n_l for ReLU at sigma_w^2 = 2).
      norm, residual: only None is modelled; anything else raises NotApplicable.
      saturation_threshold: t of the saturation rule.
      band: compute the finite-width band (``log_sd``, ``step_sd``; NaN when False, faster).

    Returns:
      A :class:`Prediction`.

    Raises:
      NotApplicable: where mean-field theory does not describe the stack (with the reason).
      ValueError: for invalid arguments.
    """
    stack = _stack(activation, init, depth, width, bias_init, input_var,
                   input_width=input_width, use_bias=use_bias, batch=batch, norm=norm,
                   residual=residual, saturation_threshold=saturation_threshold)
    return _predict_stacks([stack], band)[0]


def _predict_stacks(stacks: Sequence[_Stack], band: bool) -> list[Prediction]:
    """The predictions of ``stacks``; those sharing activation, depth and saturation threshold
    are computed together, every recursion step as one vectorized quadrature over them (the
    same numbers as one at a time: the rules are elementwise in q)."""
    groups: dict[tuple, list[int]] = {}
    for i, st in enumerate(stacks):
        key = (st.act, st.config["depth"], st.config["saturation_threshold"])
        groups.setdefault(key, []).append(i)
    out: list[Prediction | None] = [None] * len(stacks)
    for idx in groups.values():
        for i, pred in zip(idx, _predict_group([stacks[i] for i in idx], band)):
            out[i] = pred
    return out  # type: ignore[return-value]


def _predict_group(stacks: Sequence[_Stack], band: bool) -> list[Prediction]:
    """:func:`_predict_stacks` for stacks of one activation, depth and threshold: arrays
    [stacks, layers]."""
    act = stacks[0].act
    depth, t = stacks[0].config["depth"], stacks[0].config["saturation_threshold"]
    w = np.stack([st.w for st in stacks])
    b = np.stack([st.b for st in stacks])
    back = np.stack([st.back for st in stacks])
    input_var = np.array([st.config["input_var"] for st in stacks], np.float64)
    g = gaussian(act)

    q = np.empty((len(stacks), depth))
    q[:, 0] = w[:, 0] * input_var + b[:, 0]
    for i in range(1, depth):
        prev = q[:, i - 1]
        finite = np.isfinite(prev)
        phi2 = g.moments(np.where(finite, prev, 1.0))["phi2"]
        q[:, i] = np.where(finite, w[:, i] * phi2 + b[:, i], np.inf)
    m = g.moments(q)
    nan = np.full(q.shape, np.nan)
    values = {
        "preact_mean": np.zeros(q.shape), "preact_var": q.copy(), "act_mean": m["phi"],
        "act_var": np.maximum(m["phi2"] - m["phi"] ** 2, 0.0),
        "saturation": (g.saturated_probability(q.ravel(), t).reshape(q.shape) if act.saturates
                       else nan),
        "zero_frac": (g.zero_probability(q.ravel()).reshape(q.shape) if act.can_die
                      else nan.copy()),
    }
    g2 = np.ones(q.shape)
    with np.errstate(over="ignore", invalid="ignore"):  # products beyond 1e308 are inf
        for i in range(depth - 2, -1, -1):
            g2[:, i] = g2[:, i + 1] * m["dphi2"][:, i] * back[:, i + 1]
    values["grad_preact_rms"] = np.sqrt(g2)
    values["chi"] = w * m["dphi2"]

    step = np.full(q.shape, np.nan)
    log_var = np.full(q.shape, np.nan)
    rows = np.flatnonzero(np.all(np.isfinite(q) & (q > 0), axis=1)) if band else np.zeros(0, int)
    if rows.size:
        cfg = [stacks[i].config for i in rows]
        widths = np.array([c["widths"] for c in cfg], np.float64)
        n0 = np.array([c["input_width"] for c in cfg], np.float64)
        batch = np.array([c["batch"] for c in cfg], np.float64)
        corr, nu = _finite.correlations(g, q[rows], w[rows], b[rows], widths, n0)
        step[rows] = _finite.step_variance(g, q[rows], corr, nu, w[rows], widths, batch, n0,
                                           input_var[rows])
        ok = rows[np.all(np.isfinite(step[rows]), axis=1)]
        if ok.size:
            log_var[ok] = _finite.log_variance(g, q[ok], w[ok], step[ok])
    preds = []
    for i, st in enumerate(stacks):
        scales = {}
        if np.ptp(st.w) == 0 and np.ptp(st.b) == 0:
            scales = _depth_scales(act, float(st.w[0]), float(st.b[0]), float(q[i, 0]))
        preds.append(Prediction(
            config=st.config, values={k: v[i].copy() for k, v in values.items()},
            weight_var=st.w, bias_var=st.b, q_star=scales.get("q_star", math.nan),
            chi1=scales.get("chi1", math.nan), xi_q=scales.get("xi_q", math.nan),
            xi_c=scales.get("xi_c", math.nan), log_sd=np.sqrt(log_var[i]),
            step_sd=np.sqrt(step[i])))
    return preds


@functools.lru_cache(maxsize=1024)
def _depth_scales(act: Any, w: float, b: float, q0: float) -> dict[str, float]:
    """:func:`depth_scales`, computed once per distinct argument (glorot_normal and lecun_normal
    at equal widths share it); read-only."""
    return depth_scales(act, w, b, q0=q0)


def predict_result(result: Any, band: bool = True) -> Prediction:
    """The prediction for a ProbeResult's configuration (its batch sets the band).

    Raises:
      NotApplicable: as :func:`predict`, and for custom activations/initializers recorded only
        by name, or a user-given input array (unknown input variance).
    """
    return predict_config(result.config, band=band)


def predict_config(cfg: Mapping[str, Any], band: bool = True) -> Prediction:
    """:func:`predict_result` from a result's ``config`` (a :class:`initdiag.ProbeConfig` or
    its dict), through the cache of :func:`predict_configs`; the returned prediction is shared,
    so treat it as read-only.

    Raises:
      NotApplicable: as :func:`predict_result`.
    """
    (pred,) = predict_configs([cfg], band=band)
    if isinstance(pred, NotApplicable):
        raise pred
    return pred


def predict_configs(cfgs: Sequence[Mapping[str, Any]], band: bool = True
                    ) -> list[Prediction | NotApplicable]:
    """The predictions of many results' configurations at once (a whole sweep): each entry is
    a :class:`Prediction`, or the :class:`NotApplicable` (not raised) saying why the theory
    does not describe that configuration.

    Configurations of one activation and depth are computed together (every layer's quadrature
    over all of them in one call, :func:`predict`'s numbers exactly). Each distinct
    configuration is computed once per process (:data:`PREDICTION_CACHE` are kept, shared and
    read-only); a prediction without the band (``band=False``) is taken from one with it when
    that was computed.
    """
    keys = [json.dumps(ProbeConfig.from_dict(c).to_dict(), sort_keys=True, default=str)
            for c in cfgs]
    todo: dict[str, _Stack | NotApplicable] = {}
    for key in keys:
        if key not in todo and _CACHE.get(key, band) is None:
            try:
                todo[key] = _config_stack(key)
            except NotApplicable as e:
                todo[key] = e
    stacks = {k: v for k, v in todo.items() if isinstance(v, _Stack)}
    for key, pred in zip(stacks, _predict_stacks(list(stacks.values()), band)):
        _CACHE.put(key, band, pred)
    return [todo[k] if isinstance(todo.get(k), NotApplicable) else _CACHE.get(k, band)
            for k in keys]


#: How many predictions :func:`predict_configs` keeps (per process).
PREDICTION_CACHE = 1024


class _PredictionCache:
    """Least recently used predictions by (configuration JSON, band)."""

    def __init__(self, size: int):
        self.size = size
        self.items: collections.OrderedDict = collections.OrderedDict()

    def get(self, key: str, band: bool) -> Prediction | None:
        for k in ((key, band),) if band else ((key, False), (key, True)):
            if k in self.items:
                self.items.move_to_end(k)
                pred = self.items[k]
                if k[1] != band:  # the band's prediction without its band
                    nan = np.full(len(pred.bias_var), np.nan)
                    pred = dataclasses.replace(pred, log_sd=nan, step_sd=nan.copy())
                return pred
        return None

    def put(self, key: str, band: bool, pred: Prediction) -> None:
        self.items[(key, band)] = pred
        self.items.move_to_end((key, band))
        while len(self.items) > self.size:
            self.items.popitem(last=False)


_CACHE = _PredictionCache(PREDICTION_CACHE)


def _config_stack(config_json: str) -> _Stack:
    c = ProbeConfig.from_dict(json.loads(config_json))
    for key in ("activation", "init", "bias_init"):
        _fail_if(str(c[key] if key in c else "").startswith(("custom:", "given")),
                 f"{key}={c.get(key)} is recorded by name only")
    _fail_if(c.input not in INPUTS,
             f"input={c.get('input')!r}: the input's variance is not recorded")
    return _stack(c.activation, c.init, int(c.depth), list(c.widths), c.bias_init, 1.0,
                  input_width=c.input_width, use_bias=c.use_bias, batch=c.batch, norm=c.norm,
                  residual=c.residual, saturation_threshold=c.saturation_threshold)


def saturation_at(activation: Any, q: float, cfg: Mapping[str, Any]) -> tuple[float, float]:
    """``(P(phi(z) saturated), t)``, z ~ N(0, q), at the saturation threshold t of ``cfg`` (a
    :class:`initdiag.ProbeConfig` or its dict); the probability is NaN when phi does not
    saturate."""
    act = resolve_activation(activation)
    t = ProbeConfig.from_dict(cfg).saturation_threshold
    if not act.saturates:
        return math.nan, t
    return float(gaussian(act).saturated_probability([q], t)[0]), t
