"""Training through PyTorch Lightning: several GPUs or CPU processes (DDP), Lightning's
checkpoints and resume. An optional extra: ``pip install "pyro-vae[lightning]"``.

As in Pyro's ``examples/svi_lightning.py``, the package's model, guide and ELBO sit in
a :class:`~lightning.pytorch.LightningModule` (:class:`VAEModule`) whose training step
returns the objective's ``differentiable_loss`` and whose optimizer is
:class:`torch.optim.Adam`; Lightning does the backward pass, the optimizer step and,
with ``Trainer(strategy="ddp", devices=n)``, the averaging of the gradients across the
n processes. :class:`VAEDataModule` deals the training rows out to the processes with a
:class:`~torch.utils.data.distributed.DistributedSampler`, and :func:`fit_lightning`
puts the two in a :class:`~lightning.pytorch.Trainer` with the semantics of
:func:`pyro_vae.fit` (validation bounds per epoch, best epoch, patience, β schedules,
the package's own checkpoint); ``pyro-vae train --strategy ddp --devices n`` calls it.

**The minibatch scale N/B.** Each process sees b = B / n rows per step (B, the
``batch_size``, is the *effective* batch of all processes together) and calls the
objective with ``num_data=N``, the size of the *whole* training set, and the rows'
indices in the whole set as ``subsample``: its loss, (N/b) Σ over its b rows, is an
unbiased estimate of the full-data negative bound. DDP averages the n gradients, which
is (N/B) Σ over all B rows of the step: the gradient that one process with batch B
would take. Steps per epoch and effective batch are those of single-process training
with batch B, so the learning rate means the same. See ``docs/scale.md``.

**Seeds.** Everything random is a function of ``seed`` and the epoch, so a resumed run
continues bit for bit (CPU, same number of processes): the sampler shuffles with
``torch.Generator`` seeded from (seed, epoch), as
:class:`~torch.utils.data.distributed.DistributedSampler` does; dynamic binarization
redraws the *whole* training set from (seed, epoch) in every process, so each image is
binarized once per epoch whatever the number of processes, and each process uses the
draws of its own rows; the z draws of process r in epoch t come from (seed, r, t), so
processes draw independent noise, as one process would for all rows.

Importing :mod:`pyro_vae` does not import Lightning; this module does, and raises an
``ImportError`` that names the extra when Lightning is missing.
"""

import contextlib
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass

import pyro
import torch

from .._checks import check_beta, check_int, is_int
from .._threads import torch_threads
from ..data import Dataset
from ..infer.evaluation import evaluate_unchecked
from ..infer.objectives import make_elbo
from .checkpoints import check_resumed_run, load_checkpoint
from .config import DEFAULT_LR, TrainConfig, with_overrides
from .state import EarlyStopping, FitResult, TrainingState
from .training import check_run_io, training_data

INSTALL_HINT = 'pip install "pyro-vae[lightning]"'
"""The command that installs the optional extra this module needs."""

try:
    import lightning.pytorch as pl
except ImportError as e:  # pragma: no cover - exercised with Lightning uninstalled
    raise ImportError(
        f"pyro_vae.train.lightning needs PyTorch Lightning, which is not installed ({e}); "
        f"install the optional extra: {INSTALL_HINT}"
    ) from e

# after the check above, which names the extra when Lightning is missing
from .lightning_checkpoint import (  # noqa: E402
    PackageCheckpoint,
    lightning_checkpoint_path,
    resume_target,
)
from .lightning_data import VAEDataModule, derived_seed  # noqa: E402

__all__ = [
    "INSTALL_HINT",
    "STRATEGIES",
    "LightningFitResult",
    "PackageCheckpoint",
    "VAEDataModule",
    "VAEModule",
    "fit_lightning",
    "lightning_checkpoint_path",
]

STRATEGIES = ("auto", "ddp")
"""Lightning strategies :func:`fit_lightning` accepts: ``"auto"`` (one device) and
``"ddp"`` (one process per device, gradients averaged; gloo on CPU, NCCL on GPUs)."""

_CONFIG_KEY = "pyro_vae"  # our entry in Lightning's checkpoint dict
# Lightning's messages that do not apply to this package's use of it, silenced narrowly.
_BENIGN_WARNINGS = (
    # the data are in memory and indexed a batch at a time: workers would only add cost
    (r".*does not have many workers which may be a bottleneck", UserWarning),
    # Lightning 2.6's pytree helper uses a class torch 2.13 deprecates (no effect here)
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
)


class VAEModule(pl.LightningModule):
    """A VAE's model, guide and objective as a LightningModule.

    The training step takes a batch ``(x, rows)`` (x of shape ``(b, x_dim)``, rows the
    ``(b,)`` long indices of those points in the training set of N points) and returns
    ``elbo.differentiable_loss(vae.model, vae.guide, x, num_data=N, subsample=rows,
    beta=β)``: the negative bound in nats, summed over the b points and scaled by N/b,
    an unbiased estimate of the full-data negative bound whatever share of the data the
    process sees. The optimizer is :class:`torch.optim.Adam` on ``vae.parameters()``.

    After each training epoch it records, in :attr:`history`, the epoch's mean
    training loss over all processes and, with validation data, the validation ELBO and
    IWAE bound L_k (k = ``val_samples``, β = 1, seeded with ``seed``), each process
    evaluating every n-th validation point and the sums reduced across processes. It
    keeps the best epoch by the monitored bound, and with ``patience`` stops the
    Trainer. Its history and best state travel in Lightning's checkpoints.

    Parameters
    ----------
    vae : VAE or LinearGaussianVAE
        The module to train (in place).
    num_data : int
        N, the size of the whole training set (not of one process's share).
    config : TrainConfig, optional
        The settings (default ``TrainConfig()``); the module reads ``loss``,
        ``alpha``, ``num_particles``, ``lr``, ``beta``, ``seed``, ``val_samples``,
        ``monitor``, ``patience`` and ``restore_best`` (the others are
        :func:`fit_lightning`'s). ``loss="pyro_renyi"`` has no ``differentiable_loss``
        and is refused; ``lr`` None is 1e-3.
    validation : torch.Tensor, optional
        Validation data ``(num_val, x_dim)``, already checked.
    **overrides
        Settings replacing those of ``config``, by name (``loss="renyi"``,
        ``patience=5``, ...). ``seed``: with a seed, the global RNGs of process r are
        seeded from (seed, r, epoch) at the start of every epoch (the z draws), and
        validation draws from ``seed``; ``seed=None``, the default without
        ``config``, leaves the RNGs alone (and validation draws unseeded).

    Attributes
    ----------
    state : TrainingState
        The history (one record per epoch, as :attr:`pyro_vae.FitResult.history`:
        ``epoch``, ``beta``, ``train_loss``, ``val_elbo``, ``val_iwae``,
        ``wall_time``; nats per data point), the best epoch, score and parameters and
        the patience counter.
    history, best_epoch
        Those of :attr:`state`.
    stopping : EarlyStopping
        The rule that picks the best epoch, stops and restores the best, shared with
        :func:`pyro_vae.fit`.
    config : dict
        The JSON-able settings (``loss``, ``alpha``, ``num_particles``, ``objective``,
        ``lr``, ``seed``, ``val_samples``, ``monitor``, ``patience``,
        ``restore_best``, ``beta``, ``beta_schedule``).

    Raises
    ------
    ValueError
        For ``loss="pyro_renyi"``, ``num_data`` not an integer > 0, or any setting
        :meth:`pyro_vae.TrainConfig.validate` refuses (the message names it).
    TypeError
        For an override that is not a setting.
    """

    _RECORDED = (
        "loss",
        "alpha",
        "num_particles",
        "objective",
        "lr",
        "seed",
        "val_samples",
        "monitor",
        "patience",
        "restore_best",
        "beta",
        "beta_schedule",
    )

    def __init__(
        self,
        vae: torch.nn.Module,
        num_data: int,
        config: TrainConfig | None = None,
        *,
        validation: torch.Tensor | None = None,
        **overrides,
    ) -> None:
        super().__init__()
        seed = overrides.pop("seed", None if config is None else config.seed)
        if seed is not None:
            overrides["seed"] = seed
        config = with_overrides(config, overrides).validate()
        if config.loss == "pyro_renyi":
            raise ValueError(
                "Expected a loss other than 'pyro_renyi' for Lightning but got "
                "'pyro_renyi': Pyro's RenyiELBO has no differentiable_loss for a training "
                "step to return; use loss='renyi' (the same bound, N/B outside the "
                "log-sum-exp)"
            )
        check_int("num_data", num_data)
        lr = DEFAULT_LR if config.lr is None else config.lr
        self.vae = vae
        self.num_data = num_data
        self.elbo = make_elbo(config.loss, config.alpha, config.num_particles)
        self.lr = lr
        self.schedule = config.schedule
        self.seed = seed
        self.val_data = validation
        record = {**config.record(lr), "seed": seed}
        self.config = {name: record[name] for name in self._RECORDED}
        self.stopping = EarlyStopping(config.monitor, config.patience, config.restore_best)
        self.state = TrainingState()
        self._start = time.perf_counter()
        self._sums = None

    @property
    def history(self) -> list:
        """One record per epoch (:attr:`pyro_vae.FitResult.history`)."""
        return self.state.history

    @property
    def best_epoch(self) -> int:
        """The best epoch so far (:attr:`pyro_vae.TrainingState.best_epoch`)."""
        return self.state.best_epoch

    # --- training --------------------------------------------------------------------

    def beta(self, epoch):
        """The KL weight β of ``epoch`` (1-based), checked (float)."""
        return check_beta(f"beta (the schedule's value at epoch {epoch})", self.schedule(epoch))

    def loss(self, x, rows, beta=1.0):
        """The minibatch loss: ``elbo.differentiable_loss`` with ``num_data=N``.

        Parameters
        ----------
        x : torch.Tensor
            Rows of the training set, shape ``(b, x_dim)``.
        rows : torch.Tensor
            Their indices in the training set, shape ``(b,)``, long.
        beta : float, default 1.0
            KL weight β.

        Returns
        -------
        torch.Tensor
            Scalar: the negative bound in nats, summed over the b points and scaled by
            N/b (differentiable).
        """
        # the optimizer holds vae.parameters(): registering them in Pyro's param store
        # at every step would change nothing but the time (BaseVAE.skip_param_store)
        with self.vae.skip_param_store():
            return self.elbo.differentiable_loss(
                self.vae.model, self.vae.guide, x, num_data=self.num_data, subsample=rows, beta=beta
            )

    def setup(self, stage):
        """Check that ``num_data`` is the whole training set of a :class:`VAEDataModule`."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if isinstance(datamodule, VAEDataModule) and datamodule.num_data != self.num_data:
            raise ValueError(
                f"Expected num_data={datamodule.num_data}, the size of the whole training "
                f"set of the VAEDataModule, but got {self.num_data}: every process scales "
                "its minibatch to the whole set, not to its share"
            )

    def on_fit_start(self):
        """Start the clock of the history's ``wall_time``."""
        self._start = time.perf_counter()

    def on_train_epoch_start(self):
        """Seed this process's RNGs from (seed, rank, epoch); set the epoch's β."""
        epoch = self.current_epoch + 1
        if self.seed is not None:
            pyro.set_rng_seed(derived_seed(self.seed, "draws", self.global_rank, epoch))
        self._beta = self.beta(epoch)
        # summed loss per point and rows seen, over this process's steps
        self._sums = torch.zeros(2, dtype=torch.float64, device=self.device)

    def training_step(self, batch, batch_idx):
        """The loss of one minibatch.

        Parameters
        ----------
        batch : tuple of torch.Tensor
            ``(x, rows)``: x of shape ``(b, x_dim)`` and its rows' indices in the whole
            training set, shape ``(b,)``.
        batch_idx : int
            Step within the epoch (unused).

        Returns
        -------
        torch.Tensor
            :meth:`loss` at the epoch's β: nats, summed over the b points, scaled by N/b.
        """
        x, rows = batch
        loss = self.loss(x, rows, self._beta)
        per_point = loss.detach() / self.num_data  # mean over the b rows, nats
        self._sums += torch.stack([per_point * len(rows), per_point.new_tensor(len(rows))])
        if self._trainer is not None:  # also usable in a loop of one's own
            self.log("train_loss", per_point, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self):
        """:class:`torch.optim.Adam` on the VAE's parameters at ``lr``."""
        return torch.optim.Adam(self.vae.parameters(), lr=self.lr)

    # --- after each epoch ------------------------------------------------------------

    def _reduce_sum(self, tensor):
        """Sum of ``tensor`` over the processes (the tensor itself with one process)."""
        return self.trainer.strategy.reduce(tensor, reduce_op="sum")

    def _validate(self, record):
        """Add ``val_elbo`` and ``val_iwae`` (nats per point, over all processes)."""
        k = self.config["val_samples"]
        world, rank = self.trainer.world_size, self.global_rank
        shard = self.val_data[rank::world].to(self.device)
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        if len(shard):
            values = evaluate_unchecked(self.vae, shard, k, (k,), self.seed, khat=False).values
            sums[0] = values["elbo"].double().sum()
            sums[1] = values[f"iwae_{k}"].double().sum()
            sums[2] = len(shard)
        sums = self._reduce_sum(sums)
        record["val_elbo"] = float(sums[0] / sums[2])
        record["val_iwae"] = float(sums[1] / sums[2])

    def on_train_epoch_end(self):
        """Record the epoch: the training loss and validation bounds summed over the
        processes, the best epoch; stop the Trainer after ``patience`` epochs without a
        better bound.

        Raises
        ------
        FloatingPointError
            If the epoch's training loss is NaN or inf (in every process at once: the
            value is reduced across them).
        """
        epoch = self.current_epoch + 1
        sums = self._reduce_sum(self._sums)
        train_loss = float(sums[0] / sums[1])
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"Non-finite training loss {train_loss} in epoch {epoch}: lower the learning "
                f"rate (lr={self.lr:g}); the last checkpoint, if any, holds an earlier epoch"
            )
        record = {"epoch": epoch, "beta": self._beta, "train_loss": train_loss}
        if self.val_data is not None:
            with pyro.validation_enabled(False):
                self._validate(record)
            shown = {"val_elbo": record["val_elbo"], "val_iwae": record["val_iwae"]}
            # identical in every process already: sync_dist only keeps Lightning quiet
            self.log_dict(shown, prog_bar=True, sync_dist=True)
        self.stopping.update(self.state, record, self.vae)
        if self.stopping.should_stop(self.state):
            self.trainer.should_stop = True
        record["wall_time"] = time.perf_counter() - self._start
        self.state.history.append(record)

    def final_state(self):
        """The parameters to keep: the best epoch's with ``restore_best`` (dict)."""
        return self.stopping.final_state(self.state, self.vae)

    # --- Lightning's checkpoints -----------------------------------------------------

    def on_save_checkpoint(self, checkpoint):
        """Add the config, history, best epoch and state to Lightning's checkpoint."""
        checkpoint[_CONFIG_KEY] = {
            "config": dict(self.config),
            "model_config": self.vae.config,
            "num_data": self.num_data,
            "history": list(self.state.history),
            "best_score": self.state.best_score,
            "best_epoch": self.state.best_epoch,
            "best_state": self.state.best_state,
            "stale": self.state.stale,
        }

    def on_load_checkpoint(self, checkpoint):
        """Restore what :meth:`on_save_checkpoint` added, after checking the model and the
        run-defining settings; the optimizer continues at this module's ``lr``.

        Raises
        ------
        ValueError
            If the checkpoint was not written by a VAEModule, or by one of another model,
            ``num_data``, objective, seed, validation draws, monitor or β schedule.
        """
        saved = checkpoint.get(_CONFIG_KEY)
        if saved is None:
            raise ValueError("Expected a Lightning checkpoint written by pyro_vae's VAEModule")
        if saved["num_data"] != self.num_data:
            raise ValueError(
                f"Expected num_data={saved['num_data']} as in the checkpoint being resumed "
                f"but got {self.num_data}"
            )
        check_resumed_run(saved["model_config"], saved["config"], self.vae, self.config)
        self.state = TrainingState(
            epoch=len(saved["history"]),
            history=list(saved["history"]),
            best_score=saved["best_score"],
            best_epoch=saved["best_epoch"],
            best_state=saved["best_state"],
            stale=saved["stale"],
        )
        for state in checkpoint.get("optimizer_states", []):
            for group in state["param_groups"]:
                group["lr"] = self.lr  # a new lr replaces the saved one


@dataclass
class LightningFitResult(FitResult):
    """What :func:`fit_lightning` returns: :class:`pyro_vae.FitResult` and the process.

    Attributes
    ----------
    global_rank : int
        This process's rank (0 in the process that started the run).
    world_size : int
        Number of processes.
    lightning_checkpoint : str or None
        Lightning's checkpoint of the run (for resume), with ``checkpoint``.
    """

    global_rank: int = 0
    world_size: int = 1
    lightning_checkpoint: str | None = None


@contextlib.contextmanager
def _quiet_lightning():
    """Lightning's info messages off, its benign warnings silenced, for the block."""
    names = ("lightning.pytorch", "lightning.fabric")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message, category in _BENIGN_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _check_lightning_args(strategy, devices, accelerator, config):
    if strategy not in STRATEGIES:
        raise ValueError(f"Expected strategy in {STRATEGIES} but got {strategy!r}")
    check_int("devices", devices)
    if devices > 1 and strategy != "ddp":
        raise ValueError(
            f"Expected strategy='ddp' with devices={devices} (one process per device) but "
            f"got strategy={strategy!r}"
        )
    if accelerator not in ("auto", "cpu", "gpu"):
        raise ValueError(f"Expected accelerator in ('auto', 'cpu', 'gpu') but got {accelerator!r}")
    batch_size = config.batch_size
    if is_int(batch_size) and batch_size % devices:
        raise ValueError(
            f"Expected batch_size to be a multiple of devices={devices} (each process takes "
            f"batch_size / devices rows per step) but got {batch_size}"
        )
    for name, value, instead in (
        ("gap_every", config.gap_every, "use pyro_vae.fit to track the gap"),
        ("device", config.device, "choose with accelerator and devices"),
        ("lr_schedule", config.lr_schedule, "use pyro_vae.fit for a learning-rate schedule"),
    ):
        if value is not None:
            raise ValueError(
                f"Expected {name}=None with fit_lightning ({instead}) but got {value!r}"
            )
    if config.adam_eps != 1e-8:
        raise ValueError(
            f"Expected adam_eps=1e-8 with fit_lightning (its optimizer is Adam's default) but "
            f"got {config.adam_eps!r}; use pyro_vae.fit"
        )


def fit_lightning(
    vae: torch.nn.Module,
    data: Dataset | torch.Tensor,
    config: TrainConfig | None = None,
    *,
    validation: torch.Tensor | bool | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: str | os.PathLike | None = None,
    strategy: str = "auto",
    devices: int = 1,
    accelerator: str = "auto",
    **overrides,
) -> "LightningFitResult":
    """Train a VAE as :func:`pyro_vae.fit` does, through a Lightning ``Trainer``.

    Builds a :class:`VAEModule` and a :class:`VAEDataModule` and runs
    ``Trainer(strategy=strategy, devices=devices, accelerator=accelerator,
    max_epochs=epochs)`` on them: with ``strategy="ddp"``, ``devices`` processes (one
    per GPU, or CPU processes with gloo), each taking ``batch_size / devices`` rows
    per step with ``num_data`` the whole training set (the N/B scale of the module
    docstring), so the effective batch, steps per epoch and learning rate are those of
    ``fit(batch_size=batch_size)``. Lightning's logger, model summary and info
    messages are off; its progress bar shows with ``progress``.

    ``strategy="ddp"`` starts the other processes by running this process's command
    line again (Lightning's subprocess launcher), so call it from a script or
    ``python -m`` module whose ``if __name__ == "__main__":`` block reaches this call
    the same way in every process (as ``pyro-vae train --strategy ddp`` does), and
    only once per process.

    Parameters
    ----------
    vae, data, config, validation, **overrides
        As :func:`pyro_vae.fit`: the settings are a :class:`pyro_vae.TrainConfig`
        with overrides by name (``epochs=5``). ``loss="pyro_renyi"`` is refused (it
        has no differentiable loss); ``gap_every`` and ``device`` must be None (the
        device is chosen by ``accelerator`` and ``devices``). The global RNGs are
        reseeded every epoch from (seed, process, epoch). ``batch_size`` is B, the
        effective minibatch of all processes together, a multiple of ``devices``.
    checkpoint : str or os.PathLike, optional
        Where global rank 0 writes the package checkpoint (atomically, with
        :func:`pyro_vae.save_checkpoint`; :func:`pyro_vae.load_checkpoint` reads it):
        every ``checkpoint_every`` epochs and at the end. Lightning's own checkpoint,
        for resume, goes to :func:`lightning_checkpoint_path` (``vae_lightning/
        last.ckpt`` beside ``vae.pt``) at the same epochs.
    checkpoint_every : int, optional
        Epochs between checkpoints (default: only at the end).
    resume : str or os.PathLike, optional
        A package checkpoint written by this function, whose run to continue from its
        Lightning checkpoint; the run-defining arguments must be the saved ones. With
        the same number of processes on CPU the result equals that of an uninterrupted
        run, bit for bit.
    strategy : {"auto", "ddp"}, default "auto"
        Lightning's strategy; ``"ddp"`` for more than one device.
    devices : int, default 1
        Processes (GPUs, or CPU processes with ``accelerator="cpu"``).
    accelerator : {"auto", "cpu", "gpu"}, default "auto"
        Lightning's accelerator (``"auto"``: a GPU if there is one).

    Returns
    -------
    LightningFitResult
        In every process: history per epoch, best epoch (whose parameters ``vae``
        holds with ``restore_best``), wall and CPU time of this process, threads, the
        config, and the process's rank.

    Raises
    ------
    ValueError
        As :func:`pyro_vae.fit`; also for an unknown ``strategy`` or ``accelerator``,
        ``devices`` not an integer > 0, ``devices`` > 1 without ``strategy="ddp"``,
        ``batch_size`` not a multiple of ``devices``, ``loss="pyro_renyi"``,
        ``gap_every`` or ``device`` not None, a plain callable ``beta``, or a
        ``resume`` checkpoint not written by this function or of another model or run.
    FileNotFoundError
        If ``resume`` or the Lightning checkpoint it names does not exist.
    FloatingPointError
        If an epoch's training loss is NaN or inf.
    """
    config = with_overrides(config, overrides)
    _check_lightning_args(strategy, devices, accelerator, config)
    check_run_io(config, checkpoint, checkpoint_every, resume)
    vae.load_param_store()  # a named model restored with pyro.get_param_store().load
    train, validation = training_data(vae, data, validation)
    lr = config.lr
    if lr is None:
        lr = load_checkpoint(resume)[1]["fit_config"]["lr"] if resume is not None else DEFAULT_LR
    num_data = len(train if isinstance(train, torch.Tensor) else train.train)
    module = VAEModule(vae, num_data, config, validation=validation, lr=lr)
    epochs, batch_size = config.epochs, config.batch_size
    datamodule = VAEDataModule(train, batch_size, config.seed)
    record = {
        **module.config,
        "epochs": epochs,
        "batch_size": batch_size,
        "gap_every": None,
        "trainer": "lightning",
        "strategy": strategy,
        "devices": devices,
        "accelerator": accelerator,
        "per_process_batch_size": batch_size // devices,
    }
    ckpt_path = None
    if resume is not None:
        ckpt_path, _ = resume_target(resume, vae, record)
    callbacks, lightning_path, root = [], None, None
    if checkpoint is not None:
        lightning_path = lightning_checkpoint_path(checkpoint)
        root = os.path.dirname(lightning_path)
        folder = os.path.dirname(os.path.abspath(checkpoint))
        record["lightning_checkpoint"] = os.path.relpath(lightning_path, folder)
        data_spec = data.spec if isinstance(data, Dataset) else None
        callbacks.append(
            PackageCheckpoint(checkpoint, lightning_path, checkpoint_every, record, data_spec)
        )
    result = LightningFitResult(config=record, lightning_checkpoint=lightning_path)
    start, cpu_start = time.perf_counter(), time.process_time()
    with (
        _quiet_lightning(),
        torch_threads(config.num_threads) as threads,
        pyro.get_param_store().scope(),
        pyro.validation_enabled(False),
    ):
        trainer = pl.Trainer(
            accelerator=accelerator,
            strategy=strategy,
            devices=devices,
            max_epochs=epochs,
            logger=False,
            callbacks=callbacks,
            enable_checkpointing=checkpoint is not None,
            enable_model_summary=False,
            enable_progress_bar=config.progress,
            default_root_dir=root,
        )
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    vae.load_state_dict(module.final_state())
    result.history = list(module.history)
    result.best_epoch = module.best_epoch
    result.stopped_early = bool(module.history) and module.history[-1]["epoch"] < epochs
    result.train_time = time.perf_counter() - start
    result.cpu_time = time.process_time() - cpu_start
    result.num_threads = threads
    result.global_rank, result.world_size = trainer.global_rank, trainer.world_size
    return result
