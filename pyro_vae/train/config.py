"""One training configuration: the settings :func:`~pyro_vae.fit`, :func:`fit_lightning`,
:func:`~pyro_vae.experiments.compare.compare` and the CLI share, with their defaults.

:class:`TrainConfig` holds a run's settings (field names are :func:`~pyro_vae.fit`'s
keyword names) and checks them all at once (:meth:`TrainConfig.validate`); variants are
made with :func:`dataclasses.replace`. Per-run input and output — the data, the
validation split, ``checkpoint``, ``checkpoint_every``, ``resume`` — are arguments of
the call, not settings. :data:`MAIN_JOB` states the defaults of the package's main job
(``pyro-vae`` and :func:`~pyro_vae.experiments.compare.compare`) once.

Examples
--------
>>> from dataclasses import replace
>>> from pyro_vae.train import MAIN_JOB, TrainConfig
>>> config = replace(MAIN_JOB, loss="renyi", num_particles=5)
>>> config.epochs, config.patience, config.objective
(800, 100, 'RenyiELBO(alpha=0, K=5)')
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._checks import check_int
from .._device import check_device
from .._threads import DEFAULT_THREADS
from ..infer.objectives import check_loss, objective_label
from .schedules import LR_SCHEDULES, Schedule, as_schedule, constant

__all__ = [
    "DEFAULT_LR",
    "MAIN_JOB",
    "MONITORS",
    "TrainConfig",
    "check_objective",
    "with_overrides",
]

DEFAULT_LR = 1e-3
"""Adam's learning rate for a new run when ``lr`` is None."""

MONITORS = ("iwae", "elbo")
"""The validation bounds that can select the best epoch and drive ``patience``."""


def check_objective(
    loss: str,
    alpha: float = 0.0,
    num_particles: int = 1,
    jit: bool = False,
    beta: float | str | Callable = 1.0,
) -> None:
    """Validate an objective with its KL weight; raise ``ValueError`` naming the bad one.

    The checks of :func:`pyro_vae.infer.objectives.check_loss`, and ``beta``, the KL
    weight or its schedule (:func:`pyro_vae.train.schedules.as_schedule`):
    ``loss="pyro_renyi"`` takes only β = 1, since Pyro's RenyiELBO multiplies the
    minibatch scale N/B into the same log weights (pyro-ppl issue 3104). Warns (at the
    caller's caller) for ``alpha < 0`` with a Rényi loss.

    Raises
    ------
    ValueError
        As :func:`~pyro_vae.infer.objectives.check_loss`; for a malformed ``beta``;
        for β ≠ 1 with ``loss="pyro_renyi"``.
    """
    check_loss(loss, alpha, num_particles, jit, stacklevel=3)
    schedule = as_schedule(beta)
    if loss == "pyro_renyi" and schedule != constant(1.0):
        raise ValueError(
            f"Expected beta=1 with loss='pyro_renyi' but got beta={schedule!r}: Pyro's "
            "RenyiELBO multiplies the minibatch scale N/B into the same log weights as β "
            "(pyro-ppl issue 3104), so the two cannot be told apart; use loss='renyi'"
        )


_RECORD_REQUIRED = ("loss", "alpha", "num_particles", "epochs", "batch_size", "lr", "seed")
_NOT_RECORDED = ("num_threads", "progress", "device")


def _check_optional_int(name, value):
    if value is not None:
        check_int(name, value)


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"Expected {name} to be True or False but got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """The settings of a training run (see :func:`pyro_vae.fit` for each one's meaning).

    Attributes
    ----------
    loss : {"trace", "meanfield", "renyi", "pyro_renyi", "stl", "dreg", "iwae_stl"}, default "trace"
        The objective (:func:`pyro_vae.infer.objectives.make_elbo`).
    alpha : float, default 0.0
        Rényi order (Rényi losses); 0 is the IWAE bound.
    num_particles : int, default 1
        Samples z ~ q(z|x) per data point (the IWAE k).
    epochs : int, default 100
        Total passes over the training data (a resumed run counts those done).
    batch_size : int, default 128
        Minibatch size B.
    lr : float, optional
        Adam's learning rate; None: :data:`DEFAULT_LR` for a new run, the saved one
        for a resumed run.
    seed : int, default 0
        Training seed (shuffling, binarization draws, z draws), an integer ≥ 0.
    val_samples : int, default 50
        Draws per validation point (k of the monitored IWAE bound), ≥ 2.
    monitor : {"iwae", "elbo"}, default "iwae"
        The validation bound that selects the best epoch and drives ``patience``.
    patience : int, optional
        Stop after this many epochs at β = 1 without a better monitored bound; None:
        never.
    restore_best : bool, default True
        Load the best epoch's parameters at the end: the best by ``monitor`` among the
        epochs trained at β = 1 (with none, e.g. a constant β ≠ 1, the last epoch's).
    beta : float, str or callable, default 1.0
        The KL weight β per epoch: a number, a schedule spec string, a
        :mod:`pyro_vae.train.schedules` schedule or a callable of the epoch.
    gap_every : int, optional
        Record log p(x), the ELBO and their gap every ``gap_every`` epochs.
    gap_points : int, default 100
        Validation points of the gap subset.
    gap_samples : int, default 500
        Importance samples per point behind the gap's log p(x), ≥ 2.
    num_threads : int, optional
        Torch threads during the run; None: torch's current setting.
    progress : bool, default True
        Show a progress bar.
    device : str or torch.device, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``; None: CUDA when PyTorch sees a GPU.
    lr_schedule : {None, "burda2016"}, default None
        None: ``lr`` throughout. ``"burda2016"``: the stages of Burda et al. (2016,
        sec. 5), epoch stage i = 0, 1, … lasting 3^i epochs at ``lr`` · 10^(−i/7)
        (:func:`pyro_vae.train.schedules.burda2016_lr_factor`).
    adam_eps : float, default 1e-8
        Adam's ε (torch's default; Cremer et al. 2018 use 1e-4).
    """

    loss: str = "trace"
    alpha: float = 0.0
    num_particles: int = 1
    epochs: int = 100
    batch_size: int = 128
    lr: float | None = None
    seed: int = 0
    val_samples: int = 50
    monitor: str = "iwae"
    patience: int | None = None
    restore_best: bool = True
    beta: float | str | Callable = 1.0
    gap_every: int | None = None
    gap_points: int = 100
    gap_samples: int = 500
    num_threads: int | None = None
    progress: bool = True
    device: str | torch.device | None = None
    lr_schedule: str | None = None
    adam_eps: float = 1e-8

    def validate(self) -> "TrainConfig":
        """Check every field; return the config itself.

        Warns (``UserWarning``) for ``alpha < 0`` with a Rényi loss.

        Raises
        ------
        ValueError
            Naming the first field out of range: an unknown ``loss``, ``num_particles``
            not an integer ≥ 1, ``alpha == 1`` with a Rényi loss; ``epochs``,
            ``batch_size``, ``patience``, ``gap_every``, ``gap_points``,
            ``num_threads`` not integers > 0 (None allowed where the default is None;
            bools are not integers); ``seed`` not an integer ≥ 0; ``lr`` ≤ 0;
            ``val_samples`` or ``gap_samples`` not an integer ≥ 2; ``monitor`` not in
            :data:`MONITORS`; ``restore_best`` or ``progress`` not a bool; a ``beta``
            that is negative, non-finite, a malformed spec or ≠ 1 with
            ``loss="pyro_renyi"``; a ``device`` that is not ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or a torch.device, or is CUDA where PyTorch sees no GPU; an
            unknown ``lr_schedule``; ``adam_eps`` outside (0, 1).
        """
        check_objective(self.loss, self.alpha, self.num_particles, beta=self.beta)
        check_int("epochs", self.epochs)
        check_int("batch_size", self.batch_size)
        lr = self.lr
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, int | float) or lr <= 0):
            raise ValueError(f"Expected lr > 0 (or None for the default) but got {lr!r}")
        check_int("seed", self.seed, minimum=0)
        check_int("val_samples", self.val_samples, minimum=2)
        if self.monitor not in MONITORS:
            raise ValueError(f"Expected monitor in {MONITORS} but got {self.monitor!r}")
        _check_optional_int("patience", self.patience)
        _check_bool("restore_best", self.restore_best)
        _check_optional_int("gap_every", self.gap_every)
        check_int("gap_points", self.gap_points)
        check_int("gap_samples", self.gap_samples, minimum=2)
        _check_optional_int("num_threads", self.num_threads)
        _check_bool("progress", self.progress)
        check_device(self.device)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"Expected lr_schedule in {LR_SCHEDULES} but got {self.lr_schedule!r}")
        eps = self.adam_eps
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps < 1:
            raise ValueError(f"Expected adam_eps in (0, 1) but got {eps!r}")
        return self

    @property
    def schedule(self) -> Callable:
        """The β schedule of ``beta`` (:func:`pyro_vae.train.schedules.as_schedule`)."""
        return as_schedule(self.beta)

    @property
    def objective(self) -> str:
        """The objective's label, e.g. ``"RenyiELBO(alpha=0, K=5)"`` (str)."""
        return objective_label(self.loss, self.alpha, self.num_particles)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` (:func:`dataclasses.replace`); unknown names raise
        ``TypeError``."""
        return dataclasses.replace(self, **changes)

    def record(self, lr: float) -> dict:
        """The run's settings as :attr:`pyro_vae.FitResult.config` stores them (dict).

        JSON-able: ``loss``, ``alpha``, ``num_particles``, ``objective`` (its label),
        ``epochs``, ``batch_size``, ``lr`` (the learning rate used), ``seed``,
        ``val_samples``, ``monitor``, ``patience``, ``restore_best``, ``beta`` (the
        schedule's spec, None for a plain callable), ``beta_schedule`` (its repr),
        ``gap_every``, ``gap_points`` and ``gap_samples``; ``lr_schedule`` and
        ``adam_eps`` where they are not the defaults.
        """
        schedule = self.schedule
        return {
            "loss": self.loss,
            "alpha": self.alpha,
            "num_particles": self.num_particles,
            "objective": self.objective,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": lr,
            "seed": self.seed,
            "val_samples": self.val_samples,
            "monitor": self.monitor,
            "patience": self.patience,
            "restore_best": self.restore_best,
            "beta": schedule.spec if isinstance(schedule, Schedule) else None,
            "beta_schedule": repr(schedule),
            "gap_every": self.gap_every,
            "gap_points": self.gap_points,
            "gap_samples": self.gap_samples,
            # only where set, so that the records of runs without them stay as they were
            **({"lr_schedule": self.lr_schedule} if self.lr_schedule is not None else {}),
            **({"adam_eps": self.adam_eps} if self.adam_eps != 1e-8 else {}),
        }

    @classmethod
    def from_record(cls, record: dict) -> "TrainConfig":
        """The settings of a recorded run: the inverse of :meth:`record`.

        ``TrainConfig.from_record(config.record(lr))`` is ``config`` with ``lr`` set and
        ``beta`` as its schedule's spec (an equal schedule), and its :meth:`record` is
        the same dict. Not recorded, so left at their defaults: ``num_threads``,
        ``progress`` and ``device``.

        Parameters
        ----------
        record : dict
            :attr:`pyro_vae.FitResult.config`, as a checkpoint's ``fit_config`` holds it
            (that of :func:`~pyro_vae.train.lightning.fit_lightning` too). The derived
            keys (``objective``, ``beta_schedule``) and keys that are not settings
            (``trainer``, ``strategy``, ...) are ignored; a setting missing from an
            older record takes its default (``beta``: 1, as :data:`SAVED_DEFAULTS
            <pyro_vae.train.checkpoints.SAVED_DEFAULTS>` says).

        Returns
        -------
        TrainConfig
            Not yet validated (:meth:`validate`).

        Raises
        ------
        ValueError
            If ``record`` is not a dict, lacks one of ``loss``, ``alpha``,
            ``num_particles``, ``epochs``, ``batch_size``, ``lr``, ``seed``, or records
            ``beta`` as None (a plain callable, which a record cannot restore).
        """
        if not isinstance(record, dict):
            raise ValueError(
                f"Expected record to be a dict (TrainConfig.record) but got {record!r}"
            )
        missing = [key for key in _RECORD_REQUIRED if key not in record]
        if missing:
            raise ValueError(
                f"Expected record to hold {', '.join(_RECORD_REQUIRED)} (TrainConfig.record) "
                f"but it lacks {', '.join(missing)}"
            )
        if "beta" in record and record["beta"] is None:
            raise ValueError(
                f"Expected record['beta'] to be a schedule spec but got None (the run's β "
                f"was a plain callable, {record.get('beta_schedule')!r}, which a record "
                "cannot restore)"
            )
        names = {field.name for field in dataclasses.fields(cls)} - set(_NOT_RECORDED)
        return cls(**{name: record[name] for name in names if name in record})


MAIN_JOB = TrainConfig(epochs=800, patience=100, num_threads=DEFAULT_THREADS)
"""The defaults of the main job, ``pyro-vae`` and :func:`pyro_vae.experiments.compare.compare`:
800 epochs, early stopping after 100 without a better validation bound, one thread."""


def with_overrides(config: TrainConfig | None, overrides: dict) -> TrainConfig:
    """``config`` (default :class:`TrainConfig`) with ``overrides`` applied, not yet
    validated (:meth:`TrainConfig.validate`).

    Raises
    ------
    TypeError
        For an override that is not a field of :class:`TrainConfig`, or a ``config``
        that is not one.
    """
    if config is None:
        config = TrainConfig()
    elif not isinstance(config, TrainConfig):
        raise TypeError(f"Expected config to be a TrainConfig or None but got {config!r}")
    return config.replace(**overrides) if overrides else config
