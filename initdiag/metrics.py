"""The table of per-layer metrics: one :class:`Metric` row per statistic a probe reports.

Everything that follows from what a metric *is* is read from its row:

* its definition (:data:`initdiag.results.METRICS` is ``{name: definition}`` in table order);
* how the engine's scaled pair ``(v, e)`` becomes the value, ``v * 2**(power * e)``
  (:func:`initdiag.engine.stats.combine`), or the ``formula`` of a metric derived from others;
* its regression tolerance (:mod:`initdiag.regression.tolerance`): comparison, rtol, atol and,
  for a signed metric, the variance metric that sets its scale;
* how the diagnosis pools seeds (:func:`pool`), whether plots use a log axis, the axis label;
* the README's metric table (:func:`markdown_table`, written into README.md by
  ``scripts/readme_metrics.py``).

Adding a metric is one row here plus its reduction in the engine
(:mod:`initdiag.engine.scan`, ``_forward_layer`` or ``_backward_layer``, as a scaled pair or a
plain value), or one row with a ``formula`` for a metric computed from other metrics; then
``scripts/readme_metrics.py`` rewrites the README's table.

Kinds (:data:`KINDS`):

* ``"signed"`` -- a mean, of either sign and possibly 0 (``preact_mean``). Compared as
  ``"scaled"``: ``|got - expected| <= atol + rtol * max(|expected|, sqrt(scale metric))``;
  seeds pooled by the arithmetic mean; linear axis.
* ``"positive"`` -- >= 0 and spanning decades through a deep stack (variances, RMS, norms and
  their ratios). Compared as ``"ratio"`` in log space; seeds pooled by the geometric mean (the
  mean of log10; a 0 in any seed gives 0); log axis.
* ``"fraction"`` -- a fraction in [0, 1] (saturation, dead units). Compared as ``"abs"``,
  ``|got - expected| <= atol``; seeds pooled by the arithmetic mean; linear axis.

This module is the bottom of the package: it imports numpy only, nothing from initdiag (and no
jax), so :mod:`initdiag.results` stays a leaf.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import numpy as np

#: Kinds of metric, see the module docstring.
KINDS = ("signed", "positive", "fraction")
#: The regression comparison of each kind (:data:`initdiag.regression.tolerance.KINDS`).
COMPARISON = {"signed": "scaled", "positive": "ratio", "fraction": "abs"}
#: Default ``(rtol, atol)`` of each kind: 0.1% relative (a rerun is bit for bit identical on one
#: machine, ~1e-6 apart elsewhere), 0.1 percentage point for a fraction.
DEFAULT_TOLERANCE = {"signed": (1e-3, 0.0), "positive": (1e-3, 0.0), "fraction": (0.0, 1e-3)}


@dataclasses.dataclass(frozen=True)
class Metric:
    """One per-layer metric.

    Attributes:
      name: its key in results (``result[name]``, JSON ``"metrics"``).
      definition: what it is, exactly (the tensor, the axes, thresholds); the value of
        :data:`initdiag.results.METRICS`.
      kind: one of :data:`KINDS`.
      power: the engine reports a scaled pair ``(v, e)`` meaning ``v * 2**(power * e)``: 1 for
        means, RMS and norms (the signal's scale), 2 for variances and squares; None when the
        engine reports the plain value (fractions, scale-free ratios) or for a ``formula``.
      formula: for a metric derived from others, ``values -> array`` of the metrics computed so
        far (every engine metric and the derived rows above this one); None for an engine metric.
      scale: for a ``"signed"`` metric, the variance metric whose square root is its scale in a
        comparison (``preact_var`` for ``preact_mean``).
      ylabel: the plots' axis label (matplotlib mathtext); None: the name.
      rtol, atol: default regression tolerance; None: the kind's (:data:`DEFAULT_TOLERANCE`).
    """

    name: str
    definition: str
    kind: str
    power: int | None = None
    formula: Callable[[Mapping[str, np.ndarray]], np.ndarray] | None = None
    scale: str | None = None
    ylabel: str | None = None
    rtol: float | None = None
    atol: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if (self.scale is not None) != (self.kind == "signed"):
            raise ValueError(f"metric {self.name!r}: a scale metric is given for, and only for, "
                             f"a signed metric")
        if self.formula is not None and self.power is not None:
            raise ValueError(f"metric {self.name!r}: a derived metric has no engine power")
        rtol, atol = DEFAULT_TOLERANCE[self.kind]
        object.__setattr__(self, "rtol", rtol if self.rtol is None else float(self.rtol))
        object.__setattr__(self, "atol", atol if self.atol is None else float(self.atol))

    @property
    def derived(self) -> bool:
        """Computed on the host from other metrics (``formula``), not by the engine."""
        return self.formula is not None

    @property
    def comparison(self) -> str:
        """The regression comparison: ``"scaled"``, ``"ratio"`` or ``"abs"`` (by kind)."""
        return COMPARISON[self.kind]

    @property
    def log_axis(self) -> bool:
        """Plotted on a log y axis: the positive metrics, which span decades."""
        return self.kind == "positive"

    @property
    def label(self) -> str:
        """The axis label: ``ylabel``, else the name."""
        return self.ylabel or self.name


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise, NaN where ``den`` is not > 0."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


#: Every per-layer metric, in the order of results and reports. Layer l = 1..L; h^l =
#: x^{l-1} W^l + b^l is the pre-activation, a^l = phi(norm(h^l)) the activation output, x^l the
#: layer output (= a^l, or x^{l-1} + alpha a^l for a residual stack). "Over batch and units"
#: means over all B * n_l entries of the [B, n_l] array; variances are population variances
#: (ddof = 0).
TABLE: tuple[Metric, ...] = (
    Metric("preact_mean", "mean of h^l over batch and units", "signed", power=1,
           scale="preact_var"),
    Metric("preact_var", "variance of h^l over batch and units", "positive", power=2,
           ylabel=r"Var[$h^l$] (pre-activation)"),
    Metric("act_mean", "mean of the layer output x^l over batch and units", "signed", power=1,
           scale="act_var"),
    Metric("act_var", "variance of the layer output x^l over batch and units", "positive",
           power=2, ylabel=r"Var[$x^l$] (output of layer $l$)"),
    Metric("saturation",
           "fraction of entries of a^l in phi's saturated range (tanh: |a| > t; sigmoid: "
           "a < 1-t or a > t; t = saturation_threshold, default 0.99); NaN when phi does "
           "not saturate", "fraction", ylabel="fraction saturated"),
    Metric("zero_frac", "fraction of entries of a^l exactly 0; NaN unless phi can die (ReLU)",
           "fraction", ylabel="fraction of entries = 0"),
    Metric("dead_frac",
           "fraction of units j with a^l_ij = 0 for every sample i of the batch; NaN "
           "unless phi can die (ReLU)", "fraction", ylabel="fraction of dead units"),
    Metric("unit_spread",
           "fraction of the variance of x^l that lies across units, "
           "mean_i Var_j x^l_ij / Var_ij x^l_ij: 0 when every unit of the layer computes "
           "the same function (symmetric weights, e.g. a constant init); NaN where x^l "
           "is constant", "fraction"),
    Metric("grad_preact_rms", "root mean square of dL/dh^l over batch and units", "positive",
           power=1, ylabel=r"RMS of $\partial L/\partial h^l$"),
    Metric("grad_act_rms", "root mean square of dL/dx^l over batch and units", "positive",
           power=1, ylabel=r"RMS of $\partial L/\partial x^l$"),
    Metric("grad_weight_norm", "Frobenius norm of dL/dW^l", "positive", power=1),
    Metric("weight_norm", "Frobenius norm of W^l", "positive", power=1),
    Metric("grad_weight_ratio", "grad_weight_norm / weight_norm (NaN where weight_norm is 0)",
           "positive", formula=lambda v: ratio(v["grad_weight_norm"], v["weight_norm"]),
           ylabel=r"$\|\partial L/\partial W^l\|\,/\,\|W^l\|$"),
    Metric("act_chan_sq_mean",
           "mean over units j of the squared batch mean of the layer output, "
           "mean_j (mean_i x^l_ij)^2 (the average channel squared mean of Brock, De & Smith "
           "2021): the part of x^l shared by every sample of the batch, a mean shift that "
           "act_var mixes with the spread over samples", "positive", power=2,
           ylabel=r"$\mathrm{mean}_j\,(\mathrm{mean}_i\,x^l_{ij})^2$"),
)

#: The rows by name.
BY_NAME: dict[str, Metric] = {m.name: m for m in TABLE}


def _check_table() -> None:
    if len(BY_NAME) != len(TABLE):
        raise ValueError("metric names must be unique")
    for m in TABLE:
        if m.scale is not None and (m.scale not in BY_NAME or BY_NAME[m.scale].kind != "positive"):
            raise ValueError(f"metric {m.name!r}: scale {m.scale!r} is not a positive metric")


_check_table()


def definitions() -> dict[str, str]:
    """``{name: definition}`` of every metric, in table order (:data:`initdiag.results.METRICS`)."""
    return {m.name: m.definition for m in TABLE}


def measured() -> tuple[Metric, ...]:
    """The rows the engine computes (every row without a ``formula``), in table order."""
    return tuple(m for m in TABLE if not m.derived)


def with_derived(values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``values`` (every measured metric, float64 per layer) plus each derived metric from its
    ``formula``, in table order."""
    out = dict(values)
    for m in TABLE:
        if m.derived:
            out[m.name] = np.asarray(m.formula(out), np.float64)
    return {m.name: out[m.name] for m in TABLE}


def pool(name: str, stack: np.ndarray) -> np.ndarray:
    """Pool the seeds (axis 0) of one metric: the arithmetic mean for signed metrics and
    fractions; the geometric mean ``10**mean(log10)`` for positive metrics and for names not in
    the table (a 0 in any seed gives 0, a negative value NaN)."""
    stack = np.asarray(stack, np.float64)
    row = BY_NAME.get(name)
    if row is not None and row.kind != "positive":
        return stack.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 ** np.log10(stack).mean(axis=0)


def markdown_table() -> str:
    """The README's metric table: ``| metric | kind | definition |``, one row per metric in
    table order (``|`` in a definition escaped)."""
    lines = ["| metric | kind | definition |", "|---|---|---|"]
    for m in TABLE:
        lines.append(f"| `{m.name}` | {m.kind} | {m.definition.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"


def relative_to(values: np.ndarray, reference: float) -> np.ndarray:
    """``values / reference`` (float64), with 0 / 0 read as 0 (a layer as dead as the reference
    is not off from it) and x / 0 as inf or NaN as numpy gives them."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.asarray(values, np.float64) / reference
    return np.where((np.asarray(values) == 0) & (reference == 0), 0.0, r)
