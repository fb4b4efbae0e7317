"""Training a VAE: the settings, the loop, its state, checkpoints and β schedules.

The public names, each defined in the module named here:

- the settings (:mod:`.config`): :class:`TrainConfig`, :data:`MAIN_JOB` (the main job's
  defaults) and :data:`DEFAULT_THREADS` (torch threads of the CLI and the main job);
- the loop (:mod:`.training`): :func:`fit`, a :class:`Trainer` around a
  :class:`TrainingState` (:mod:`.state`), returning a :class:`FitResult`, with
  :class:`EarlyStopping`;
- the checkpoint file (:mod:`.checkpoints`): :func:`save_checkpoint`,
  :func:`load_checkpoint`;
- β schedules (:mod:`.schedules`): :class:`constant`, :class:`warmup`,
  :class:`anneal_down`, :func:`parse_schedule`;
- published settings (:mod:`.presets`): :class:`Preset`, :data:`PRESETS`;
- many runs in one pass (:mod:`.stack`): :func:`fit_runs` (also ``fit([...],
  seeds=[...])``), :class:`StackedVAE`.

Training with PyTorch Lightning (``fit_lightning``, DDP on several processes or GPUs)
is the optional extra :mod:`pyro_vae.train.lightning`, imported on its own so that this
package does not need Lightning.
"""

from .._threads import DEFAULT_THREADS
from .checkpoints import load_checkpoint, save_checkpoint
from .config import MAIN_JOB, TrainConfig
from .presets import PRESETS, Preset
from .schedules import anneal_down, constant, parse_schedule, warmup
from .stack import StackedVAE, fit_runs
from .state import EarlyStopping, FitResult, TrainingState
from .training import Trainer, fit

__all__ = [
    "DEFAULT_THREADS",
    "MAIN_JOB",
    "PRESETS",
    "EarlyStopping",
    "FitResult",
    "Preset",
    "StackedVAE",
    "TrainConfig",
    "Trainer",
    "TrainingState",
    "anneal_down",
    "constant",
    "fit",
    "fit_runs",
    "load_checkpoint",
    "parse_schedule",
    "save_checkpoint",
    "warmup",
]
