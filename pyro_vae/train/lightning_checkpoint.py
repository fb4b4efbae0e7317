"""The checkpoints of :mod:`pyro_vae.train.lightning`: where Lightning's own checkpoint goes,
the callback that writes the package's checkpoint beside it (:class:`PackageCheckpoint`)
and the check of a package checkpoint to resume from. Needs PyTorch Lightning (the
``lightning`` extra).
"""

import copy
import math
import os

from lightning.pytorch.callbacks import Checkpoint

from .._checks import check_int
from .checkpoints import check_resumed_run, load_checkpoint, save_checkpoint

__all__ = ["PackageCheckpoint", "lightning_checkpoint_path", "resume_target"]


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
                module.state,
                data_spec=self.data_spec,
            )
        finally:
            vae.load_state_dict(current)


def resume_target(resume, vae, config: dict) -> tuple[str, dict]:
    """Lightning's checkpoint of the package checkpoint ``resume``, after checking it."""
    _, saved = load_checkpoint(resume)
    fit_config = saved["fit_config"]
    if fit_config.get("trainer") != "lightning":
        raise ValueError(
            f"Expected resume to name a checkpoint written by fit_lightning but "
            f"{os.fspath(resume)!r} was written by pyro_vae.fit: resume it with fit(resume=...)"
        )
    check_resumed_run(saved["model_config"], fit_config, vae, config)
    folder = os.path.dirname(os.path.abspath(resume))
    path = os.path.join(folder, fit_config["lightning_checkpoint"])
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No Lightning checkpoint at {path!r}, which {os.fspath(resume)!r} names for resume"
        )
    return path, fit_config
