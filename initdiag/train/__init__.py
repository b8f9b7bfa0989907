"""Short training runs: from an initialization to its outcome.

:func:`train_probe` trains one probe stack (:func:`train_sweep` many, :func:`train_fn` a user
model) on a small task (:mod:`.tasks`) with optax, in one compiled ``lax.scan`` over the steps
(:mod:`.loop`), and records per step the loss, accuracy, ``grad_preact_rms`` and the update
ratio, plus the probe's statistics at chosen steps (:mod:`.result`). The loop's options are a
:class:`TrainConfig` (:mod:`.config`).

optax and scikit-learn are optional (``pip install 'initdiag[train]'``): nothing here imports
them until a run starts.
"""

from initdiag.train.api import train_config as train_config
from initdiag.train.api import train_fn as train_fn
from initdiag.train.api import train_probe as train_probe
from initdiag.train.api import train_sweep as train_sweep
from initdiag.train.config import TrainConfig as TrainConfig
from initdiag.train.result import TrainResult as TrainResult
from initdiag.train.result import TrainSweep as TrainSweep
