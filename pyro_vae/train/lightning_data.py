"""The data side of :mod:`pyro_vae.train.lightning`: training rows dealt out to the
processes (:class:`VAEDataModule`) and the seeds derived from (seed, purpose, ...).

Everything random is a function of ``seed`` and the epoch: the sampler shuffles with a
generator seeded from (seed, epoch), as
:class:`~torch.utils.data.distributed.DistributedSampler` does, and dynamic
binarization redraws the *whole* training set from (seed, epoch) in every process.
Needs PyTorch Lightning (the ``lightning`` extra).
"""

import hashlib

import lightning.pytorch as pl
import torch

from .._checks import check_int, is_int
from ..data import Dataset

__all__ = ["VAEDataModule", "derived_seed"]


def derived_seed(*parts: int | str) -> int:
    """A 32-bit seed from ``parts`` (ints and strings), the same on every platform."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")


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
            generator = torch.Generator().manual_seed(derived_seed(self.seed, "binarize", epoch))
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
            seed=derived_seed(self.seed, "shuffle"),
            drop_last=False,
        )
        # a generator of its own: the loader's draw of a worker seed at every epoch
        # would otherwise come from the global RNG, after the epoch's reseeding in some
        # epochs and before it in others (the first, and a resumed one)
        generator = torch.Generator().manual_seed(derived_seed(self.seed, "loader"))
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
