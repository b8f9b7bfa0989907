"""Results of training runs: per-step curves, the probe's statistics at chosen steps, JSON, frames.

A :class:`TrainResult` is one run (one network, one seed); a :class:`TrainSweep` several. Both
round-trip through JSON (``to_json`` / :func:`initdiag.load`) bit for bit and give tidy frames.

Curves (:data:`CURVES`), step t = 1..S, ``res["loss"]`` of shape [S], per-layer ones [S, L]:
every record of step t is made on the weights *before* step t's update (theta_{t-1}) and that
step's mini-batch, except ``update_ratio``, which compares the weights after and before it. A run
that diverges (:attr:`TrainResult.diverged_at`: the first step whose loss, gradient or updated
weights are not all finite) has NaN in every curve from that step on, NaN test numbers and NaN
statistics at the later snapshots.

JSON (``schema`` ``initdiag.results``, ``schema_version`` 1, ``kind`` ``"train"`` or
``"train_sweep"``)::

    {"results": [{"config": {...}, "model": false, "train": {...}, "seed": 0,
                  "curves": {"loss": [...], "update_ratio": [[...], ...], ...},
                  "scalars": {"test_loss": ..., "test_accuracy": ...}, "diverged_at": null,
                  "layers": null | [...],
                  "snapshots": [{"step": 0, "result": {...}}, ...], "meta": {...}}]}

``config`` is a :class:`initdiag.ProbeConfig` for a stack (``model`` false) and the model
probe's config dict for :func:`initdiag.train_fn` (``model`` true); snapshot results are
:class:`~initdiag.results.ProbeResult` or :class:`~initdiag.model.result.ModelResult`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

import numpy as np

from initdiag.config import FRAME_CONFIG_COLUMNS, ProbeConfig
from initdiag.jsonvalues import decode_scalar, encode, float_array
from initdiag.results import ProbeResult, write_document
from initdiag.train.config import TrainConfig


class Curve(NamedTuple):
    """A recorded quantity: its ``definition``, its metric ``kind`` (as in
    :data:`initdiag.metrics.KINDS`: how it is compared and plotted) and whether it has one value
    per layer (``[S, L]``) or one per step (``[S]``)."""

    definition: str
    kind: str
    per_layer: bool


#: Per-step curves, in the order of results. Step t = 1..S; theta_{t-1} the weights before it.
CURVES: dict[str, Curve] = {
    "loss": Curve("training loss of step t's mini-batch under theta_{t-1} (digits: mean softmax "
                  "cross-entropy; teacher: mean squared error)", "positive", False),
    "accuracy": Curve("fraction of step t's mini-batch whose largest logit is the label, under "
                      "theta_{t-1} (digits only)", "fraction", False),
    "grad_preact_rms": Curve("RMS of dL/dh^l over the mini-batch and the units (the probe's "
                             "definition, with L the training loss of step t)", "positive", True),
    "update_ratio": Curve("||W^l_t - W^l_{t-1}||_F / ||W^l_{t-1}||_F: the step's change of the "
                          "layer's weight matrix relative to it (biases excluded; NaN where "
                          "||W^l_{t-1}|| = 0); for train_fn, per weight leaf", "positive", True),
}
#: Numbers of the end of a run (NaN after a divergence).
SCALARS: dict[str, Curve] = {
    "test_loss": Curve("loss on the whole test split under the final weights (BatchNorm "
                       "normalizes by the test split's statistics)", "positive", False),
    "test_accuracy": Curve("accuracy on the whole test split under the final weights (digits)",
                           "fraction", False),
}
#: The fraction of the last steps whose mean training loss is the run's final loss.
FINAL_FRACTION = 0.1
#: The loss threshold of :meth:`TrainResult.steps_to`, as a fraction of the task's chance loss.
THRESHOLD_FRACTION = 0.5
#: Chance-level loss per task: a prediction that ignores the input (uniform over 10 classes;
#: the standardised targets' mean, 0). Used for the default loss threshold.
CHANCE_LOSS = {"digits": math.log(10.0), "teacher": 1.0}


def window(steps: int) -> int:
    """The smoothing window: ``max(1, round(FINAL_FRACTION * steps))`` steps."""
    return max(1, int(math.floor(FINAL_FRACTION * steps + 0.5)))


def _arrays_equal(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


@dataclasses.dataclass(frozen=True, eq=False)
class TrainResult:
    """One training run.

    ``res["loss"]`` is a float64 array [S]; ``res["update_ratio"]`` [S, L] (definitions in
    :data:`CURVES`); ``res.scalars`` the test loss and accuracy; ``res.snapshots`` maps a step
    (0 = before training) to the probe's statistics of the weights after that step (a
    ProbeResult for a stack, equal to ``initdiag.probe`` of the same configuration and seed at
    step 0; a ModelResult for ``train_fn``).

    Attributes:
      config: the network (ProbeConfig; the model probe's config dict for ``train_fn``).
      train: the :class:`TrainConfig` (validated: lr and snapshots filled in).
      seed: the integer seed (weights, data split, mini-batches).
      curves: :data:`CURVES` by name (``accuracy`` only for classification).
      scalars: :data:`SCALARS` by name.
      diverged_at: the first step whose loss, gradient or updated weights were not finite, or
        None.
      snapshots: step -> statistics at that step.
      layers: names of the per-layer axis for ``train_fn`` (weight leaf paths); None for a
        stack (layers 1..L).
      meta: timings and environment (not compared).
      weights: step -> the weights after that step, when the run was asked to keep them
        (``keep_weights=True``); in memory only: not written to JSON, not compared.
    """

    config: Any
    train: TrainConfig
    seed: int
    curves: dict[str, np.ndarray]
    scalars: dict[str, float]
    diverged_at: int | None = None
    snapshots: dict[int, Any] = dataclasses.field(default_factory=dict)
    layers: tuple[str, ...] | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    weights: dict[int, Any] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.is_model:
            object.__setattr__(self, "config", ProbeConfig.from_dict(self.config))

    @property
    def is_model(self) -> bool:
        """A run of :func:`initdiag.train_fn` (a user model), not of a stack."""
        return self.layers is not None

    @property
    def steps(self) -> int:
        return int(self.train.steps)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.curves)

    @property
    def label(self) -> str:
        """``activation / init`` (``model / init`` for train_fn), for legends."""
        head = self.config.get("model") if self.is_model else self.config.get("activation")
        return f"{head} / {self.config.get('init')}"

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.curves[name]
        except KeyError:
            raise KeyError(f"no curve {name!r}; available: {', '.join(self.curves)}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TrainResult):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (f"TrainResult({self.label!r}, seed={self.seed}, {self.train.label()}"
                + (f", diverged at step {self.diverged_at}" if self.diverged_at else "") + ")")

    # -- derived numbers ------------------------------------------------------------------------
    def final_loss(self) -> float:
        """Mean training loss over the last :func:`window` steps (NaN after a divergence)."""
        return float(np.mean(self.curves["loss"][-window(self.steps):]))

    def threshold(self) -> float:
        """The default loss threshold: :data:`THRESHOLD_FRACTION` of the task's chance loss
        (digits: 0.5 ln 10 = 1.151; teacher: 0.5)."""
        return THRESHOLD_FRACTION * CHANCE_LOSS[self.train.task]

    def steps_to(self, threshold: float | None = None) -> int | None:
        """The first step t at which the mean training loss over steps t-w+1..t (w =
        :func:`window`, fewer at the start) is <= ``threshold`` (default :meth:`threshold`);
        None if it never is."""
        thr = self.threshold() if threshold is None else float(threshold)
        loss = np.asarray(self.curves["loss"], np.float64)
        w = window(self.steps)
        c = np.concatenate([[0.0], np.cumsum(np.where(np.isfinite(loss), loss, np.inf))])
        t = np.arange(1, loss.size + 1)
        lo = np.maximum(t - w, 0)
        with np.errstate(invalid="ignore"):
            mean = (c[t] - c[lo]) / (t - lo)
        hit = np.flatnonzero(mean <= thr)
        return int(hit[0]) + 1 if hit.size else None

    # -- JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        config = dict(self.config) if self.is_model else self.config.to_dict()
        return {"config": encode(config), "model": self.is_model, "train": self.train.to_dict(),
                "seed": int(self.seed), "curves": encode(self.curves),
                "scalars": encode(self.scalars), "diverged_at": self.diverged_at,
                "layers": None if self.layers is None else list(self.layers),
                "snapshots": [{"step": int(s), "result": r.to_dict()}
                              for s, r in self.snapshots.items()],
                "meta": encode(self.meta)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainResult":
        model = bool(d.get("model", False))
        if model:
            from initdiag.model.result import ModelResult as snap_cls
        else:
            snap_cls = ProbeResult
        curves = {}
        for k, v in d["curves"].items():  # [S] or [S, L] (a list of rows)
            rows = v and isinstance(v[0], list)
            curves[k] = np.stack([float_array(r) for r in v]) if rows else float_array(v)
        return cls(config=dict(d["config"]) if model else ProbeConfig.from_dict(d["config"]),
                   train=TrainConfig.from_dict(d["train"]), seed=int(d["seed"]), curves=curves,
                   scalars={k: decode_scalar(v) for k, v in d.get("scalars", {}).items()},
                   diverged_at=d.get("diverged_at"),
                   snapshots={int(s["step"]): snap_cls.from_dict(s["result"])
                              for s in d.get("snapshots", [])},
                   layers=None if d.get("layers") is None else tuple(d["layers"]),
                   meta=dict(d.get("meta", {})))

    def to_json(self, path: str | os.PathLike) -> Path:
        return write_document({"kind": "train", "results": [self.to_dict()]}, path)

    def to_frame(self):
        """Tidy DataFrame of the curves and the test numbers (columns :func:`frame_columns`)."""
        return TrainSweep([self]).to_frame()

    def snapshot_frame(self):
        """The snapshots' tidy frames (:meth:`initdiag.SweepResult.to_frame`, or the model
        probe's), concatenated with a ``step`` column."""
        return TrainSweep([self]).snapshot_frame()


#: Columns of the training configuration in a frame.
TRAIN_COLUMNS = ("task", "optimizer", "lr", "steps")
#: Columns of a stack run's frame: the probe config's, the training's, then the rest; a model
#: run has ``model`` and ``init`` in place of the probe config's columns. ``step`` is 1..S for
#: a curve and NaN for a test number; ``layer`` 1..L (a stack) or the weight leaf's position
#: (train_fn) for a per-layer curve, NaN otherwise; ``name`` the leaf's path (train_fn) or None.
FRAME_COLUMNS = (*FRAME_CONFIG_COLUMNS, *TRAIN_COLUMNS, "seed", "step", "layer", "metric", "value")
MODEL_FRAME_COLUMNS = ("model", "init", *TRAIN_COLUMNS, "seed", "step", "layer", "name", "metric",
                       "value")


def _config_columns(r: TrainResult) -> dict[str, Any]:
    if r.is_model:
        head = {"model": r.config.get("model"), "init": r.config.get("init")}
    else:
        head = r.config.columns()
        head.pop("width")  # per layer in the probe frame; here the first layer's width
        head["width"] = r.config.widths[0]
    return {**head, **{k: getattr(r.train, k) for k in TRAIN_COLUMNS}, "seed": int(r.seed)}


class TrainSweep:
    """An ordered collection of :class:`TrainResult` (e.g. activations x norms x inits x seeds)."""

    def __init__(self, results: Iterable[TrainResult] = (), meta: Mapping[str, Any] | None = None):
        self.results: list[TrainResult] = list(results)
        self.meta: dict[str, Any] = dict(meta or {})

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[TrainResult]:
        return iter(self.results)

    def __getitem__(self, i: int) -> TrainResult:
        return self.results[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TrainSweep):
            return NotImplemented
        return self.results == other.results and self.meta == other.meta

    def __repr__(self) -> str:
        return f"TrainSweep({len(self)} runs)"

    def select(self, **where: Any) -> "TrainSweep":
        """The runs whose network config, training config or ``seed`` equals every given value,
        e.g. ``sweep.select(activation="tanh", norm=None, optimizer="sgd")``."""
        def value(r: TrainResult, k: str) -> Any:
            if k == "seed":
                return r.seed
            if k in ("task", "steps", "optimizer", "lr"):
                return getattr(r.train, k)
            return r.config.get(k)
        return TrainSweep([r for r in self.results
                           if all(value(r, k) == v for k, v in where.items())], self.meta)

    def to_frame(self):
        """Tidy DataFrame, one row per (run, step, layer, metric) of the curves plus one per
        (run, test number): columns :data:`FRAME_COLUMNS` (:data:`MODEL_FRAME_COLUMNS` when
        every run is a train_fn run)."""
        import pandas as pd

        model = bool(self.results) and all(r.is_model for r in self.results)
        columns = list(MODEL_FRAME_COLUMNS if model else FRAME_COLUMNS)
        frames = []
        for r in self.results:
            head = _config_columns(r)
            for name, values in r.curves.items():
                values = np.asarray(values, np.float64)
                steps = np.arange(1, values.shape[0] + 1)
                if values.ndim == 1:
                    part = {"step": steps, "layer": np.nan, "value": values}
                else:
                    n = values.shape[1]
                    part = {"step": np.repeat(steps, n), "layer": np.tile(np.arange(1, n + 1),
                                                                          len(steps)),
                            "value": values.ravel()}
                    if r.layers is not None:
                        part["name"] = np.tile(np.asarray(r.layers, object), len(steps))
                frames.append(pd.DataFrame({**head, **part, "metric": name}))
            for name, v in r.scalars.items():
                frames.append(pd.DataFrame({**head, "step": [np.nan], "layer": [np.nan],
                                            "metric": [name], "value": [float(v)]}))
        if not frames:
            return pd.DataFrame(columns=columns)
        out = pd.concat(frames, ignore_index=True)
        if "name" not in out:
            out["name"] = None
        out["step"] = out["step"].astype(float)
        out["layer"] = out["layer"].astype(float)
        return out.reindex(columns=columns)

    def snapshot_frame(self):
        """Every run's snapshot statistics as one tidy frame: the probe's (or model probe's)
        frame of each snapshot with ``step`` and the training columns added."""
        import pandas as pd

        frames = []
        for r in self.results:
            for step, snap in r.snapshots.items():
                f = snap.to_frame()
                for k in TRAIN_COLUMNS:
                    f[k] = getattr(r.train, k)
                f["step"] = step
                frames.append(f)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "train_sweep", "meta": encode(self.meta),
                "results": [r.to_dict() for r in self.results]}

    def to_json(self, path: str | os.PathLike) -> Path:
        return write_document(self.to_dict(), path)


def from_document(doc: Mapping[str, Any]) -> TrainResult | TrainSweep:
    """Rebuild a training result or sweep from a parsed results document."""
    results = [TrainResult.from_dict(r) for r in doc["results"]]
    if doc.get("kind") == "train":
        if len(results) != 1:
            raise ValueError(f"a train file holds one result, found {len(results)}")
        return results[0]
    return TrainSweep(results, doc.get("meta", {}))


def check_entry(where: str, e: Any) -> None:
    """Check one stored training run (:meth:`TrainResult.to_dict`), ``where`` naming it
    (``results[0]``): its keys; ``model`` a boolean; ``config`` a recorded
    :class:`~initdiag.ProbeConfig` (:func:`initdiag.config.check_recorded`) or, for ``train_fn``,
    an object; ``train`` a valid :class:`TrainConfig`; an integer seed; every curve known
    (:data:`CURVES`), an array of ``steps`` numbers, or of ``steps`` rows of one number per
    layer (the config's depth; for ``train_fn`` one per name of ``layers``); scalars known
    (:data:`SCALARS`) and numbers; ``diverged_at`` null or a step in 1..steps; ``layers`` null
    for a stack, names for ``train_fn``; snapshots at distinct steps in 0..steps, each a
    stored probe (or model) result; meta an object.

    Raises:
      ValueError: naming the field (``results[0].curves['loss'][3] (step 4)``), its value and
        what is expected.
    """
    from initdiag.config import check_recorded, shown
    from initdiag.model.result import check_entry as check_model_entry
    from initdiag.results import check_entry as check_probe_entry
    from initdiag.results import check_keys, check_numbers, check_object, check_scalar

    check_object(where, e)
    check_keys(where, e, ("config", "model", "train", "seed", "curves"),
               ("scalars", "diverged_at", "layers", "snapshots", "meta"))
    model = e["model"]
    if not isinstance(model, bool):
        raise ValueError(f"{where}.model is {shown(model)}; expected true (train_fn) or false")
    check_object(f"{where}.config", e["config"])
    if not model:
        check_recorded(e["config"], f"{where}.config")
    check_object(f"{where}.train", e["train"])
    try:
        train = TrainConfig.from_dict(e["train"]).validated()
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}.train: {err}") from None
    steps = train.steps
    if not (isinstance(e["seed"], int) and not isinstance(e["seed"], bool)):
        raise ValueError(f"{where}.seed is {shown(e['seed'])}; expected an integer")
    layers = e.get("layers")
    if model:
        if not (isinstance(layers, list) and layers and all(isinstance(x, str) for x in layers)):
            raise ValueError(f"{where}.layers is {shown(layers)}; expected the names of the "
                             f"weight leaves (a train_fn run)")
        width = len(layers)
    else:
        if layers is not None:
            raise ValueError(f"{where}.layers is {shown(layers)}; expected null (a stack's "
                             f"layers are 1..depth)")
        width = e["config"]["depth"]
    check_object(f"{where}.curves", e["curves"])
    for name, values in e["curves"].items():
        at = f"{where}.curves[{name!r}]"
        if name not in CURVES:
            raise ValueError(f"{where}.curves has curve {name!r} unknown to this initdiag (made "
                             f"by another version?); known curves: {', '.join(CURVES)}")
        if not CURVES[name].per_layer:
            check_numbers(at, values, steps, "step")
            continue
        if not (isinstance(values, list) and len(values) == steps):
            raise ValueError(f"{at} is {shown(values)}; expected {steps} rows (one per step) of "
                             f"{width} numbers (one per layer)")
        for t, row in enumerate(values):
            check_numbers(f"{at}[{t}] (step {t + 1})", row, width, "layer",
                          layers if model else None)
    scalars = e.get("scalars", {})
    check_object(f"{where}.scalars", scalars)
    for k, v in scalars.items():
        if k not in SCALARS:
            raise ValueError(f"{where}.scalars has {k!r} unknown to this initdiag; known: "
                             f"{', '.join(SCALARS)}")
        check_scalar(f"{where}.scalars[{k!r}]", v)
    at = e.get("diverged_at")
    if at is not None and not (isinstance(at, int) and not isinstance(at, bool)
                               and 1 <= at <= steps):
        raise ValueError(f"{where}.diverged_at is {shown(at)}; expected null or a step in "
                         f"1..{steps}")
    snaps = e.get("snapshots", [])
    if not isinstance(snaps, list):
        raise ValueError(f"{where}.snapshots is {shown(snaps)}; expected an array")
    seen: set[int] = set()
    for i, s in enumerate(snaps):
        here = f"{where}.snapshots[{i}]"
        check_object(here, s)
        check_keys(here, s, ("step", "result"))
        step = s["step"]
        if not (isinstance(step, int) and not isinstance(step, bool) and 0 <= step <= steps
                and step not in seen):
            raise ValueError(f"{here}.step is {shown(step)}; expected a step in 0..{steps} not "
                             f"given before")
        seen.add(step)
        (check_model_entry if model else check_probe_entry)(f"{here}.result", s["result"])
    check_object(f"{where}.meta", e.get("meta", {}))
