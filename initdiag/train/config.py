"""What a training run does besides the network: :class:`TrainConfig`.

The network of a stack run is a :class:`initdiag.ProbeConfig` (the probe's schema; its ``batch``
is the mini-batch size, its ``input_width`` the task's); this is the rest: the task, the number of
steps, the optimizer, the learning rate and the steps whose weights get the probe's statistics.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

from initdiag.base import check_float, check_int, check_one_of
from initdiag.train.loop import DEFAULT_LR, OPTIMIZERS
from initdiag.train.tasks import TASKS

#: Fractions of the steps at which the probe's statistics are taken by default.
SNAPSHOT_FRACTIONS = (0.0, 0.1, 0.5, 1.0)


def default_snapshots(steps: int) -> tuple[int, ...]:
    """Steps 0, 10%, 50% and 100% of ``steps`` (each rounded half up; duplicates dropped)."""
    return tuple(sorted({int(math.floor(f * steps + 0.5)) for f in SNAPSHOT_FRACTIONS}))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a network is trained.

    Attributes:
      task: ``"digits"`` or ``"teacher"`` (:mod:`initdiag.train.tasks`).
      steps: number of optimizer steps S >= 1.
      optimizer: ``"sgd"`` (plain, no momentum) or ``"adam"`` (optax's defaults).
      lr: learning rate > 0; None: the optimizer's default (:data:`initdiag.train.loop.DEFAULT_LR`:
        0.1 for sgd, 1e-3 for adam).
      snapshots: the steps in [0, S] after which the probe's statistics are taken (0: the initial
        weights); None: :func:`default_snapshots`.
    """

    task: str = "digits"
    steps: int = 200
    optimizer: str = "sgd"
    lr: float | None = None
    snapshots: tuple[int, ...] | None = None

    def validated(self) -> "TrainConfig":
        """This configuration checked, with ``lr`` and ``snapshots`` filled in.

        Raises:
          ValueError: naming the field, the bad value and the valid choices or range.
        """
        check_one_of("task", self.task, TASKS)
        check_one_of("optimizer", self.optimizer, OPTIMIZERS)
        steps = check_int("steps", self.steps)
        lr = DEFAULT_LR[self.optimizer] if self.lr is None else check_float("lr", self.lr)
        if not lr > 0:
            raise ValueError(f"lr must be a number > 0; got {self.lr!r}")
        if self.snapshots is None:
            snaps = default_snapshots(steps)
        else:
            if isinstance(self.snapshots, (str, bytes)) or not hasattr(self.snapshots, "__iter__"):
                raise ValueError(f"snapshots must be a list of steps in [0, {steps}]; "
                                 f"got {self.snapshots!r}")
            snaps = tuple(sorted({check_int("snapshots", s, minimum=0) for s in self.snapshots}))
            if not snaps or snaps[-1] > steps:
                raise ValueError(f"snapshots must be a non-empty list of steps in [0, {steps}]; "
                                 f"got {list(self.snapshots)}")
        return TrainConfig(self.task, steps, self.optimizer, float(lr), snaps)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "steps": self.steps, "optimizer": self.optimizer,
                "lr": self.lr, "snapshots": None if self.snapshots is None else list(self.snapshots)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"train config has unknown field(s) {sorted(unknown)}; known: "
                             f"{', '.join(f.name for f in dataclasses.fields(cls))}")
        snaps = d.get("snapshots")
        return cls(**{**dict(d), "snapshots": None if snaps is None else tuple(snaps)})

    def key(self) -> str:
        """Identity (what baselines match by), as JSON text."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def label(self) -> str:
        """``"digits, sgd lr=0.1, 200 steps"`` (``lr=default`` before validation)."""
        lr = "default" if self.lr is None else f"{self.lr:g}"
        return f"{self.task}, {self.optimizer} lr={lr}, {self.steps} steps"
