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
import copy
import hashlib
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass

import pyro
import torch

from .._checks import check_int, is_int
from .._threads import torch_threads
from ..data import Dataset
from ..infer.evaluation import evaluate_unchecked
from ..infer.objectives import check_objective, make_elbo, objective_label
from .schedules import Schedule, check_beta
from .training import (
    DEFAULT_LR,
    RUN_DEFINING,
    SAVED_DEFAULTS,
    FitResult,
    check_fit_args,
    check_schedule,
    load_checkpoint,
    save_checkpoint,
    training_data,
)

INSTALL_HINT = 'pip install "pyro-vae[lightning]"'
"""The command that installs the optional extra this module needs."""

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Checkpoint
except ImportError as e:  # pragma: no cover - exercised with Lightning uninstalled
    raise ImportError(
        f"pyro_vae.train.lightning needs PyTorch Lightning, which is not installed ({e}); "
        f"install the optional extra: {INSTALL_HINT}"
    ) from e

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


def _derived_seed(*parts):
    """A 32-bit seed from ``parts`` (ints and strings), the same on every platform."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def lightning_checkpoint_path(checkpoint):
    """Where :func:`fit_lightning` writes Lightning's checkpoint for ``checkpoint``.

    Parameters
    ----------
    checkpoint : str or os.PathLike
        The package checkpoint, e.g. ``"runs/vae.pt"``.

    Returns
    -------
    str
        ``"runs/vae_lightning/last.ckpt"``: the folder is the package checkpoint's name
        without its extension, plus ``_lightning``; it is also the Trainer's
        ``default_root_dir``.
    """
    stem = os.path.splitext(os.fspath(checkpoint))[0]
    return os.path.join(f"{stem}_lightning", "last.ckpt")


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
    loss : {"trace", "meanfield", "renyi"}, default "trace"
        The objective (:func:`pyro_vae.infer.objectives.make_elbo`). ``"pyro_renyi"`` has no
        ``differentiable_loss`` and is refused.
    alpha : float, default 0.0
        Rényi order (``loss="renyi"``); 0 is the IWAE bound.
    num_particles : int, default 1
        Samples per data point (the IWAE k).
    lr : float, optional
        Adam's learning rate (default 1e-3).
    beta : float, str or Schedule, default 1.0
        KL weight β or its schedule over the epochs (1, 2, …), as :func:`pyro_vae.fit`.
    seed : int, optional
        With a seed, the global RNGs of process r are seeded from (seed, r, epoch) at
        the start of every epoch (the z draws), and validation draws from ``seed``.
        None leaves the RNGs alone.
    validation : torch.Tensor, optional
        Validation data ``(num_val, x_dim)``, already checked.
    val_samples : int, default 50
        Draws per validation point (k of the IWAE bound).
    monitor : {"iwae", "elbo"}, default "iwae"
        The bound that picks the best epoch and drives ``patience``.
    patience : int, optional
        Stop after this many epochs without a better monitored bound.
    restore_best : bool, default True
        Keep a copy of the best epoch's parameters (:attr:`best_state`).

    Attributes
    ----------
    history : list of dict
        One record per epoch, as :attr:`pyro_vae.FitResult.history` (``epoch``,
        ``beta``, ``train_loss``, ``val_elbo``, ``val_iwae``, ``wall_time``; nats per
        data point).
    best_epoch, best_score, best_state, stale
        As :class:`pyro_vae.TrainingState`.
    config : dict
        The JSON-able settings (``loss``, ``alpha``, ``num_particles``, ``objective``,
        ``lr``, ``seed``, ``val_samples``, ``monitor``, ``patience``,
        ``restore_best``, ``beta``, ``beta_schedule``).

    Raises
    ------
    ValueError
        For an unknown or unsupported ``loss``, bad ``num_particles``, ``alpha``,
        ``beta``, ``lr``, ``num_data``, ``val_samples`` or ``monitor`` (the message
        names it).
    """

    def __init__(
        self,
        vae,
        num_data,
        loss="trace",
        alpha=0.0,
        num_particles=1,
        lr=None,
        beta=1.0,
        seed=None,
        validation=None,
        val_samples=50,
        monitor="iwae",
        patience=None,
        restore_best=True,
    ):
        super().__init__()
        check_objective(loss, alpha, num_particles, beta=beta)
        if loss == "pyro_renyi":
            raise ValueError(
                "Expected loss in ('trace', 'meanfield', 'renyi') for Lightning but got "
                "'pyro_renyi': Pyro's RenyiELBO has no differentiable_loss for a training "
                "step to return; use loss='renyi' (the same bound, N/B outside the "
                "log-sum-exp)"
            )
        check_int("num_data", num_data)
        lr = DEFAULT_LR if lr is None else lr
        check_fit_args(1, 1, lr, patience, val_samples, monitor, None)
        schedule = check_schedule(beta, None, None)
        if seed is not None and not is_int(seed):
            raise ValueError(f"Expected seed to be an integer or None but got {seed!r}")
        self.vae = vae
        self.num_data = num_data
        self.elbo = make_elbo(loss, alpha, num_particles)
        self.lr = lr
        self.schedule = schedule
        self.seed = seed
        self.val_data = validation
        self.config = {
            "loss": loss,
            "alpha": alpha,
            "num_particles": num_particles,
            "objective": objective_label(loss, alpha, num_particles),
            "lr": lr,
            "seed": seed,
            "val_samples": val_samples,
            "monitor": monitor,
            "patience": patience,
            "restore_best": restore_best,
            "beta": schedule.spec if isinstance(schedule, Schedule) else None,
            "beta_schedule": repr(schedule),
        }
        self.history = []
        self.best_score, self.best_epoch, self.best_state, self.stale = -math.inf, 0, None, 0
        self._start = time.perf_counter()
        self._sums = None

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
            pyro.set_rng_seed(_derived_seed(self.seed, "draws", self.global_rank, epoch))
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
            score = record["val_iwae" if self.config["monitor"] == "iwae" else "val_elbo"]
            if score > self.best_score:
                self.best_score, self.best_epoch, self.stale = score, epoch, 0
                if self.config["restore_best"]:
                    self.best_state = copy.deepcopy(self.vae.state_dict())
            else:
                self.stale += 1
            shown = {"val_elbo": record["val_elbo"], "val_iwae": record["val_iwae"]}
            # identical in every process already: sync_dist only keeps Lightning quiet
            self.log_dict(shown, prog_bar=True, sync_dist=True)
            patience = self.config["patience"]
            if patience is not None and self.stale >= patience:
                self.trainer.should_stop = True
        else:
            self.best_epoch = epoch
        record["wall_time"] = time.perf_counter() - self._start
        self.history.append(record)

    def final_state(self):
        """The parameters to keep: the best epoch's with ``restore_best`` (dict)."""
        if self.config["restore_best"] and self.best_state is not None:
            return self.best_state
        return self.vae.state_dict()

    # --- Lightning's checkpoints -----------------------------------------------------

    def on_save_checkpoint(self, checkpoint):
        """Add the config, history, best epoch and state to Lightning's checkpoint."""
        checkpoint[_CONFIG_KEY] = {
            "config": dict(self.config),
            "model_config": self.vae.config,
            "num_data": self.num_data,
            "history": list(self.history),
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "stale": self.stale,
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
        if saved["model_config"] != self.vae.config:
            raise ValueError(
                f"Expected the checkpoint's model {saved['model_config']} but got vae with "
                f"{self.vae.config}"
            )
        if saved["num_data"] != self.num_data:
            raise ValueError(
                f"Expected num_data={saved['num_data']} as in the checkpoint being resumed "
                f"but got {self.num_data}"
            )
        for name in RUN_DEFINING:
            if name in self.config and saved["config"].get(name) != self.config[name]:
                raise ValueError(
                    f"Expected {name}={saved['config'].get(name)!r} as in the checkpoint "
                    f"being resumed but got {self.config[name]!r}"
                )
        self.history = list(saved["history"])
        self.best_score, self.best_epoch = saved["best_score"], saved["best_epoch"]
        self.best_state, self.stale = saved["best_state"], saved["stale"]
        for state in checkpoint.get("optimizer_states", []):
            for group in state["param_groups"]:
                group["lr"] = self.lr  # a new lr replaces the saved one


class _EpochRows(torch.utils.data.Dataset):
    """The training rows of one epoch, fetched a minibatch at a time as ``(x, rows)``.

    With dynamic binarization, :meth:`set_epoch` redraws the whole training set from
    (seed, epoch): the same draws in every process.
    """

    def __init__(self, data, seed):
        self.data, self.seed = data, seed
        self.x = data if isinstance(data, torch.Tensor) else data.train

    def set_epoch(self, epoch):
        data = self.data
        if isinstance(data, Dataset) and data.binarize == "dynamic":
            generator = torch.Generator().manual_seed(_derived_seed(self.seed, "binarize", epoch))
            self.x = data.train_epoch(generator)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], torch.as_tensor(index)

    def __getitems__(self, indices):
        rows = torch.as_tensor(indices, dtype=torch.long)
        return self.x[rows], rows


def _as_batch(batch):
    """The DataLoader's collate function: ``_EpochRows`` returns batches already."""
    return batch


class _EpochSampler(torch.utils.data.distributed.DistributedSampler):
    """A DistributedSampler that also tells the dataset the epoch (for binarization)."""

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        self.dataset.set_epoch(epoch + 1)


class VAEDataModule(pl.LightningDataModule):
    """Training rows dealt out to the processes, ``(x, rows)`` per minibatch.

    A :class:`~torch.utils.data.distributed.DistributedSampler` (shuffled, seeded from
    ``seed`` and the epoch, ``drop_last=False``) gives process r of n every n-th row of
    the epoch's permutation, padded by repeating the first rows so that every process
    has ceil(N / n) rows and the same number of steps; each process takes minibatches
    of b = ``batch_size`` / n of them. With dynamic binarization each epoch redraws
    the whole training set from (seed, epoch), identically in every process.

    Parameters
    ----------
    data : Dataset or torch.Tensor
        A :class:`pyro_vae.data.Dataset` (its training split) or a tensor
        ``(num_data, x_dim)``.
    batch_size : int, default 128
        B, the effective minibatch of all processes together; it must be a multiple of
        the number of processes.
    seed : int, default 0
        Seed of the shuffling and of the binarization draws.

    Raises
    ------
    ValueError
        If ``batch_size`` is not an integer > 0, or (when the Trainer asks for the
        data) not a multiple of the Trainer's number of processes.
    """

    def __init__(self, data, batch_size=128, seed=0):
        super().__init__()
        check_int("batch_size", batch_size)
        if not is_int(seed):
            raise ValueError(f"Expected seed to be an integer but got {seed!r}")
        self.data, self.batch_size, self.seed = data, batch_size, seed

    @property
    def num_data(self):
        """N, the number of training rows (int)."""
        data = self.data
        return len(data if isinstance(data, torch.Tensor) else data.train)

    def per_process_batch_size(self, world_size):
        """b = B / ``world_size`` (int); ``ValueError`` unless it divides evenly."""
        if self.batch_size % world_size:
            raise ValueError(
                f"Expected batch_size to be a multiple of the number of processes "
                f"{world_size} (each takes batch_size / {world_size} rows per step) but got "
                f"{self.batch_size}"
            )
        return self.batch_size // world_size

    def train_dataloader(self):
        """The DataLoader of this process (of the Trainer's ``global_rank`` among its
        ``world_size`` processes; 0 of 1 without a Trainer)."""
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        return self.dataloader(world, rank)

    def dataloader(self, world_size=1, rank=0):
        """The training DataLoader of process ``rank`` among ``world_size``.

        Each epoch (after ``loader.sampler.set_epoch(epoch)``, which Lightning calls)
        it yields ``(x, rows)``: ``rows``, shape ``(b,)``, indices in
        the whole training set, and ``x`` their rows of the epoch's data.
        """
        check_int("world_size", world_size)
        if not is_int(rank) or not 0 <= rank < world_size:
            raise ValueError(f"Expected rank in [0, {world_size}) but got {rank!r}")
        rows = _EpochRows(self.data, self.seed)
        sampler = _EpochSampler(
            rows,
            num_replicas=world_size,
            rank=rank,
            shuffle=True,
            seed=_derived_seed(self.seed, "shuffle"),
            drop_last=False,
        )
        # a generator of its own: the loader's draw of a worker seed at every epoch
        # would otherwise come from the global RNG, after the epoch's reseeding in some
        # epochs and before it in others (the first, and a resumed one)
        generator = torch.Generator().manual_seed(_derived_seed(self.seed, "loader"))
        # the sampler is a DistributedSampler, so Lightning keeps it (and its set_epoch,
        # which redraws the binarization) even with use_distributed_sampler=True
        return torch.utils.data.DataLoader(
            rows,
            sampler=sampler,
            batch_size=self.per_process_batch_size(world_size),
            drop_last=False,
            collate_fn=_as_batch,
            generator=generator,
        )


class PackageCheckpoint(Checkpoint):
    """Write the package's checkpoint (and Lightning's, for resume) after epochs.

    Every ``every`` epochs, at the last epoch and when the run stops early, all
    processes call ``trainer.save_checkpoint`` (Lightning's own file, written by global
    rank 0, for ``Trainer.fit(ckpt_path=...)``), and global rank 0 writes the package's
    checkpoint with :func:`pyro_vae.save_checkpoint` (atomically), which
    :func:`pyro_vae.load_checkpoint` reads: the module with the best epoch's
    parameters (``restore_best``), the run's config, the history and the data spec.

    Parameters
    ----------
    path : str or os.PathLike
        The package checkpoint (``*.pt``).
    lightning_path : str or os.PathLike, optional
        Lightning's checkpoint (default :func:`lightning_checkpoint_path` of ``path``).
    every : int, optional
        Epochs between checkpoints (default: only at the end).
    config : dict, optional
        Added to the :class:`VAEModule`'s config in the package checkpoint.
    data_spec : dict, optional
        :attr:`pyro_vae.data.Dataset.spec` of the training data.
    """

    def __init__(self, path, lightning_path=None, every=None, config=None, data_spec=None):
        super().__init__()
        if every is not None:
            check_int("every", every)
        self.path = os.fspath(path)
        self.lightning_path = os.fspath(lightning_path or lightning_checkpoint_path(path))
        self.every, self.config, self.data_spec = every, dict(config or {}), data_spec

    def on_train_epoch_end(self, trainer, module):
        """Save when due: every ``every`` epochs, at the last epoch, at an early stop."""
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else math.inf
        due = (self.every and epoch % self.every == 0) or trainer.should_stop
        if due or epoch >= last:
            self.save(trainer, module)

    def save(self, trainer, module):
        """Write both checkpoints now (call it in every process)."""
        trainer.save_checkpoint(self.lightning_path)
        if trainer.global_rank == 0:
            self.save_package(module)

    def save_package(self, module):
        """Write the package's checkpoint from ``module`` (a :class:`VAEModule`)."""
        vae = module.vae
        current = copy.deepcopy(vae.state_dict())
        try:
            vae.load_state_dict(module.final_state())
            save_checkpoint(
                self.path,
                vae,
                {**module.config, **self.config},
                _History(module.history, module.best_epoch),
                data_spec=self.data_spec,
            )
        finally:
            vae.load_state_dict(current)


@dataclass
class _History:
    """What :func:`pyro_vae.save_checkpoint` reads of a TrainingState."""

    history: list
    best_epoch: int


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


def _check_lightning_args(strategy, devices, accelerator, batch_size):
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
    if is_int(batch_size) and batch_size % devices:
        raise ValueError(
            f"Expected batch_size to be a multiple of devices={devices} (each process takes "
            f"batch_size / devices rows per step) but got {batch_size}"
        )


def _resume_target(resume, vae, config):
    """Lightning's checkpoint of the package checkpoint ``resume``, after checking it."""
    _, saved = load_checkpoint(resume)
    fit_config = saved["fit_config"]
    if fit_config.get("trainer") != "lightning":
        raise ValueError(
            f"Expected resume to name a checkpoint written by fit_lightning but "
            f"{os.fspath(resume)!r} was written by pyro_vae.fit: resume it with fit(resume=...)"
        )
    if saved["model_config"] != vae.config:
        raise ValueError(
            f"Expected the checkpoint's model {saved['model_config']} but got vae with {vae.config}"
        )
    for name in RUN_DEFINING:
        value = fit_config.get(name, SAVED_DEFAULTS.get(name))
        if value != config[name]:
            raise ValueError(
                f"Expected {name}={value!r} as in the checkpoint being resumed but got "
                f"{config[name]!r}"
            )
    folder = os.path.dirname(os.path.abspath(resume))
    path = os.path.join(folder, fit_config["lightning_checkpoint"])
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No Lightning checkpoint at {path!r}, which {os.fspath(resume)!r} names for resume"
        )
    return path, fit_config


def fit_lightning(
    vae,
    data,
    loss="trace",
    alpha=0.0,
    num_particles=1,
    epochs=100,
    batch_size=128,
    lr=None,
    seed=0,
    progress=True,
    validation=None,
    val_samples=50,
    monitor="iwae",
    patience=None,
    restore_best=True,
    checkpoint=None,
    checkpoint_every=None,
    resume=None,
    num_threads=None,
    beta=1.0,
    strategy="auto",
    devices=1,
    accelerator="auto",
):
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
    vae, data, loss, alpha, num_particles, epochs, lr, seed, progress, validation, \
val_samples, monitor, patience, restore_best, num_threads, beta
        As :func:`pyro_vae.fit` (``loss="pyro_renyi"`` is refused: it has no
        differentiable loss). The global RNGs are reseeded every epoch from
        (seed, process, epoch).
    batch_size : int, default 128
        B, the effective minibatch of all processes together; a multiple of
        ``devices``.
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
        ``batch_size`` not a multiple of ``devices``, ``loss="pyro_renyi"``, a plain
        callable ``beta``, or a ``resume`` checkpoint not written by this function or
        of another model or run.
    FileNotFoundError
        If ``resume`` or the Lightning checkpoint it names does not exist.
    FloatingPointError
        If an epoch's training loss is NaN or inf.
    """
    _check_lightning_args(strategy, devices, accelerator, batch_size)
    check_fit_args(epochs, batch_size, lr, patience, val_samples, monitor, checkpoint_every)
    check_schedule(beta, checkpoint, resume)
    train, validation = training_data(vae, data, validation)
    if lr is None:
        lr = load_checkpoint(resume)[1]["fit_config"]["lr"] if resume is not None else DEFAULT_LR
    module = VAEModule(
        vae,
        len(train if isinstance(train, torch.Tensor) else train.train),
        loss=loss,
        alpha=alpha,
        num_particles=num_particles,
        lr=lr,
        beta=beta,
        seed=seed,
        validation=validation,
        val_samples=val_samples,
        monitor=monitor,
        patience=patience,
        restore_best=restore_best,
    )
    datamodule = VAEDataModule(train, batch_size, seed)
    config = {
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
        ckpt_path, _ = _resume_target(resume, vae, config)
    callbacks, lightning_path, root = [], None, None
    if checkpoint is not None:
        lightning_path = lightning_checkpoint_path(checkpoint)
        root = os.path.dirname(lightning_path)
        folder = os.path.dirname(os.path.abspath(checkpoint))
        config["lightning_checkpoint"] = os.path.relpath(lightning_path, folder)
        data_spec = data.spec if isinstance(data, Dataset) else None
        callbacks.append(
            PackageCheckpoint(checkpoint, lightning_path, checkpoint_every, config, data_spec)
        )
    result = LightningFitResult(config=config, lightning_checkpoint=lightning_path)
    start, cpu_start = time.perf_counter(), time.process_time()
    with (
        _quiet_lightning(),
        torch_threads(num_threads) as threads,
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
            enable_progress_bar=progress,
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
