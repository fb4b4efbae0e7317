"""What a training run keeps and returns: :class:`TrainingState`, :class:`FitResult`, and
:class:`EarlyStopping`, the best-epoch, patience and restore-best rule that
:func:`pyro_vae.fit` and :func:`pyro_vae.train.lightning.fit_lightning` share."""

import copy
import math
from dataclasses import dataclass, field

import torch

__all__ = ["EarlyStopping", "FitResult", "TrainingState"]


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    history : list of dict
        One dict per epoch: ``epoch``; ``beta``, the epoch's KL weight β (float);
        ``train_loss``, the training objective's negative value in nats per data point
        averaged over the epoch's minibatches (β-weighted: the negative bound only
        where β = 1); ``val_elbo`` and ``val_iwae`` (L_k with k = ``val_samples``) in
        nats per point on the validation data, always the true bounds (β = 1; absent
        without validation data); at the epochs of ``gap_every``, ``gap_log_px``,
        ``gap_elbo`` and ``gap`` = gap_log_px − gap_elbo (nats per point, means over
        the gap subset) and ``gap_se``, the Monte-Carlo s.e. of the mean gap
        (:meth:`pyro_vae.Trainer.track_gap`); ``wall_time``, seconds since the start
        of training (of this process, for a resumed run).
    best_epoch : int
        Epoch whose parameters the module holds at the end: with ``restore_best``, the
        best by the monitored validation bound among the epochs trained at β = 1 (the
        last epoch if none was, e.g. for a constant β ≠ 1); otherwise the last
        (:meth:`EarlyStopping.update`).
    train_time : float
        Wall-clock seconds of training in this call, validation included.
    cpu_time : float
        CPU seconds of this process (all its threads) over the same span. With one
        thread it is the cost of the work, and a ``train_time`` well above it means other
        processes shared the core; with several threads on a busy machine it grows
        too, as waiting threads spin (``benchmarks/bench_threads.py``).
    num_threads : int
        Torch threads during the run.
    config : dict
        The settings of the run, JSON-able (:meth:`pyro_vae.TrainConfig.record`):
        ``loss``, ``alpha``, ``num_particles``, ``objective`` (its label), ``epochs``,
        ``batch_size``, ``lr``, ``seed``, ``val_samples``, ``monitor``, ``patience``,
        ``restore_best``, ``beta`` (the schedule's spec, e.g. ``"warmup:100:0:1"``,
        which :func:`pyro_vae.train.schedules.parse_schedule` reads back; None for a
        plain callable), ``beta_schedule`` (its repr, e.g.
        ``"warmup(epochs=100, start=0, end=1)"``), ``gap_every``, ``gap_points`` and
        ``gap_samples``.
    stopped_early : bool
        Whether ``patience`` ended the run before ``epochs``.
    num_runs : int
        Runs trained together in one stack (:func:`pyro_vae.train.stack.fit_runs`), 1
        for a run trained alone; ``train_time`` and ``cpu_time`` are the stack's.
    """

    history: list = field(default_factory=list)
    best_epoch: int = 0
    train_time: float = 0.0
    cpu_time: float = 0.0
    num_threads: int = 0
    config: dict = field(default_factory=dict)
    stopped_early: bool = False
    num_runs: int = 1


@dataclass
class TrainingState:
    """Everything a run needs to continue bit for bit after the last completed epoch.

    Attributes
    ----------
    epoch : int
        Epochs completed.
    history : list of dict
        As :attr:`FitResult.history`.
    best_score : float
        Best monitored validation bound so far among the epochs trained at β = 1 (nats
        per point), ``-inf`` before any.
    best_epoch : int
        The epoch whose parameters the run returns if it ends now
        (:meth:`EarlyStopping.update`): the best one with ``restore_best``, else the last.
    best_state : dict or None
        The module's ``state_dict`` at ``best_epoch`` (with ``restore_best``).
    stale : int
        Epochs at β = 1 since the monitored bound last improved (for ``patience``).
    """

    epoch: int = 0
    history: list = field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = 0
    best_state: dict | None = None
    stale: int = 0


@dataclass(frozen=True)
class EarlyStopping:
    """The best epoch by a validation bound, early stopping and restoring the best.

    Parameters
    ----------
    monitor : {"iwae", "elbo"}, default "iwae"
        The bound of an epoch's record (``val_iwae`` or ``val_elbo``) to maximize.
    patience : int, optional
        Stop after this many epochs at β = 1 without a better bound; None: never.
    restore_best : bool, default True
        Keep a copy of the best epoch's parameters, to load at the end.
    """

    monitor: str = "iwae"
    patience: int | None = None
    restore_best: bool = True

    def update(self, state: TrainingState, record: dict, vae: torch.nn.Module) -> None:
        """Update ``state``'s best epoch and patience counter after the epoch of ``record``.

        The best epoch is chosen by the monitored bound among the epochs trained at
        β = 1 (``record["beta"]``, 1 when absent): an epoch trained at β ≠ 1 optimized
        another objective than the bound it is judged by (at β = 0 the β = 1 bound
        would pick epoch 1 of a reconstruction-only run), so it is not a candidate and
        does not count towards ``patience`` (a KL warm-up is not stopped while β
        rises). A candidate above ``state.best_score`` becomes the best (its
        ``state_dict`` copied with ``restore_best``); any other adds one stale epoch.

        ``state.best_epoch`` always names the epoch whose parameters the run returns if
        it ends now: the best candidate with ``restore_best``; the last epoch without
        ``restore_best``, without validation data, or before any candidate (a constant
        β ≠ 1, a warm-up that has not reached 1).
        """
        score = record.get(f"val_{self.monitor}")
        if score is not None and record.get("beta", 1.0) == 1:
            if score > state.best_score:
                state.best_score, state.stale = score, 0
                if self.restore_best:
                    state.best_epoch = record["epoch"]
                    state.best_state = copy.deepcopy(vae.state_dict())
            else:
                state.stale += 1
        if not self.restore_best or state.best_state is None:
            state.best_epoch = record["epoch"]

    def should_stop(self, state: TrainingState) -> bool:
        """Whether ``patience`` epochs passed without a better monitored bound (bool)."""
        return self.patience is not None and state.stale >= self.patience

    def final_state(self, state: TrainingState, vae: torch.nn.Module) -> dict:
        """The parameters to keep: the best epoch's with ``restore_best``, else ``vae``'s."""
        if self.restore_best and state.best_state is not None:
            return state.best_state
        return vae.state_dict()
