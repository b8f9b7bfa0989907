"""The tasks a training run learns: their data, split, preprocessing, loss and mini-batches.

Two tasks (:data:`TASKS`), both drawn or split from the run's integer seed, so the same seed gives
the same data, split and mini-batches for every initializer (common random numbers):

* ``"digits"`` -- scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``,
  shipped with scikit-learn: no download): 1797 images of 8 x 8 pixels (64 features, values
  0..16), 10 classes. Split: a random permutation of the 1797 rows (from the seed) puts the
  first :data:`DIGITS_TEST` = 449 (a quarter, rounded down) in the test split and the other 1348
  in the training split. Standardised per feature with the mean and the standard deviation
  (population, ddof 0) of the *training* split, applied to both splits; a feature constant on
  the training split (border pixels that are always 0) is only centred. Loss: softmax
  cross-entropy over the 10 classes, mean over the batch (``optax.
  softmax_cross_entropy_with_integer_labels``); chance level (a uniform prediction) is
  ln 10 = 2.303. Accuracy: the fraction of the batch whose largest logit is the label.
* ``"teacher"`` -- regression on a random teacher network drawn from the seed:
  ``y = tanh(x A) c``, x in R^64 with N(0, 1) entries, A [64, 32] with N(0, 1/64) entries (unit
  pre-activation variance), c [32] with N(0, 1/32) entries; :data:`TEACHER_N` = 2048 samples,
  the first 1536 for training and the other 512 for testing. The targets are standardised with
  the training split's mean and standard deviation, so predicting 0 has loss ~1 (chance level
  1). Loss: mean squared error, ``mean over the batch of (f(x) - y)**2``. No accuracy.

Mini-batches: step t (1-based) trains on ``batch`` distinct rows of the training split drawn
uniformly without replacement with the key ``fold_in(batch_key, t)`` (independent across steps).
Keys: ``fold_in(jax.random.key(seed), TRAIN_TAG)`` split in three (split / teacher, batches,
unused), so they never coincide with the keys of a probe of the same seed
(:func:`initdiag.nn.stacks.split_seed`).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from initdiag.base import check_one_of

#: The tasks, in the order of messages.
TASKS = ("digits", "teacher")
#: Test rows of the digits split: a quarter of the 1797 images, rounded down.
DIGITS_TEST = 1797 // 4
#: Teacher task: input width, hidden units of the teacher, samples, training samples.
TEACHER_INPUT, TEACHER_HIDDEN, TEACHER_N, TEACHER_TRAIN = 64, 32, 2048, 1536
#: Folded into the seed's key to make the training keys (the bytes of "trai").
TRAIN_TAG = 0x74726169
#: The install hint of the optional dependencies of training.
EXTRA_HINT = "pip install 'initdiag[train]'"


class Task(NamedTuple):
    """One task's data, split and standardised (float32 inputs).

    Attributes:
      name: one of :data:`TASKS`.
      x_train, y_train, x_test, y_test: inputs ``[n, d]``; labels ``[n]`` (int32, digits) or
        targets ``[n, 1]`` (float32, teacher).
      n_out: outputs of the model (10 classes; 1 target).
      classification: softmax cross-entropy and accuracy (digits) or mean squared error.
      chance_loss: the loss of a prediction that ignores the input (uniform: ln 10; the
        standardised mean: 1).
      train_rows, test_rows: which rows of the source data each split holds, in order (digits:
        rows of ``load_digits().data``; teacher: of the drawn samples).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_out: int
    classification: bool
    chance_loss: float
    train_rows: np.ndarray
    test_rows: np.ndarray

    @property
    def input_width(self) -> int:
        return int(self.x_train.shape[1])


def require(module: str):
    """Import an optional dependency of training (optax, sklearn), or raise ImportError saying
    how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ImportError(f"training runs need {module.split('.')[0]}, an optional dependency "
                          f"of initdiag: {EXTRA_HINT}") from e


def task_keys(seed: int) -> dict[str, jax.Array]:
    """The keys of a run's data: ``split`` (digits permutation or teacher draw), ``batches``."""
    k_split, k_batches, _ = jax.random.split(jax.random.fold_in(jax.random.key(seed), TRAIN_TAG),
                                             3)
    return {"split": k_split, "batches": k_batches}


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both splits minus the training split's per-column mean, divided by its per-column
    standard deviation (ddof 0) where that is > 0 (a constant column is only centred)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


@functools.lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    datasets = require("sklearn.datasets")
    d = datasets.load_digits()
    return np.asarray(d.data, np.float64), np.asarray(d.target, np.int32)


def digits(seed: int) -> Task:
    """The digits task of ``seed`` (module docstring)."""
    x, y = _digits_raw()
    perm = np.asarray(jax.random.permutation(task_keys(seed)["split"], x.shape[0]))
    test, train = perm[:DIGITS_TEST], perm[DIGITS_TEST:]
    x_train, x_test = standardise(x[train], x[test])
    return Task("digits", x_train.astype(np.float32), y[train], x_test.astype(np.float32),
                y[test], 10, True, math.log(10.0), train, test)


def teacher(seed: int) -> Task:
    """The teacher task of ``seed`` (module docstring)."""
    k_x, k_a, k_c = jax.random.split(task_keys(seed)["split"], 3)
    x = jax.random.normal(k_x, (TEACHER_N, TEACHER_INPUT), jnp.float32)
    a = jax.random.normal(k_a, (TEACHER_INPUT, TEACHER_HIDDEN), jnp.float32) / math.sqrt(
        TEACHER_INPUT)
    c = jax.random.normal(k_c, (TEACHER_HIDDEN, 1), jnp.float32) / math.sqrt(TEACHER_HIDDEN)
    x, y = np.asarray(x, np.float64), np.asarray(jnp.tanh(x @ a) @ c, np.float64)
    y_train, y_test = standardise(y[:TEACHER_TRAIN], y[TEACHER_TRAIN:])
    return Task("teacher", x[:TEACHER_TRAIN].astype(np.float32), y_train.astype(np.float32),
                x[TEACHER_TRAIN:].astype(np.float32), y_test.astype(np.float32), 1, False, 1.0,
                np.arange(TEACHER_TRAIN), np.arange(TEACHER_TRAIN, TEACHER_N))


def load_task(name: str, seed: int) -> Task:
    """The task ``name`` (one of :data:`TASKS`) for ``seed``.

    Raises:
      ValueError: an unknown task, naming it and the choices.
      ImportError: scikit-learn is missing (digits), saying how to install it.
    """
    check_one_of("task", name, TASKS)
    return digits(seed) if name == "digits" else teacher(seed)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _batch_indices(key, n: int, batch: int, steps: int):
    def one(t):
        return jax.random.choice(jax.random.fold_in(key, t), n, (batch,), replace=False)
    return jax.vmap(one)(jnp.arange(1, steps + 1))


def batch_indices(seed: int, n_train: int, batch: int, steps: int) -> np.ndarray:
    """Rows of the training split for every step, ``[steps, batch]`` int32: row t-1 holds step
    t's ``batch`` distinct rows, drawn with ``fold_in(batches key, t)`` (module docstring).

    Raises:
      ValueError: ``batch`` exceeds the training split.
    """
    if batch > n_train:
        raise ValueError(f"batch={batch} exceeds the {n_train} rows of the training split")
    return np.asarray(_batch_indices(task_keys(seed)["batches"], n_train, batch, steps),
                      np.int32)
