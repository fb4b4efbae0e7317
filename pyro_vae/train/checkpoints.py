"""The package's checkpoint: the file format, writing it atomically, reading it back, the
RNG states a resumed run continues from, and the check that a resumed run is the saved one.

A checkpoint (:data:`CHECKPOINT_FORMAT`) is a PyTorch file of plain types, read with
``torch.load(weights_only=True)``: the module's class, settings and parameters, the
run's settings (:attr:`pyro_vae.FitResult.config`), the data spec, the history, the best
epoch and, for ``fit(resume=...)``, the optimizer's and the RNGs' states.
"""

import os
import random
import zipfile

import numpy as np
import torch

from .._io import atomic_path, versions
from ..models import VAE, LinearGaussianVAE
from .schedules import constant
from .state import TrainingState

__all__ = [
    "CHECKPOINT_FORMAT",
    "MODEL_CLASSES",
    "RUN_DEFINING",
    "SAVED_DEFAULTS",
    "check_resumed_run",
    "load_checkpoint",
    "model_from_config",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

CHECKPOINT_FORMAT = "pyro_vae.checkpoint/2"
# Arguments that define a run: a resumed run must use the saved values.
RUN_DEFINING = (
    "loss",
    "alpha",
    "num_particles",
    "batch_size",
    "seed",
    "val_samples",
    "monitor",
    "beta",
)
# Their values in checkpoints written before the argument existed.
SAVED_DEFAULTS = {"beta": constant(1.0).spec}


def rng_state(generator: torch.Generator) -> dict:
    """The RNG states a run draws from: torch's global, the shuffling generator, and
    Python's and NumPy's (as :func:`pyro.util.get_rng_state`), as plain tensors."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
    }


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    """Set the RNG states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )


def check_resumed_run(saved_model: dict, saved: dict, vae, config: dict) -> None:
    """Raise ``ValueError`` unless a run of ``vae`` with ``config`` continues the saved one.

    Parameters
    ----------
    saved_model : dict
        The checkpoint's ``model_config``.
    saved : dict
        The checkpoint's run settings (``fit_config``).
    vae : VAE or LinearGaussianVAE
        The module to continue training.
    config : dict
        The settings of the resumed run; those of :data:`RUN_DEFINING` it holds must
        equal the saved ones (a checkpoint without ``beta`` was trained with β = 1).
    """

    def architecture(model_config):  # the param-store name does not define the model
        return {key: value for key, value in model_config.items() if key != "name"}

    if architecture(saved_model) != architecture(vae.config):
        raise ValueError(
            f"Expected the checkpoint's model {saved_model} but got vae with {vae.config}"
        )
    for name in RUN_DEFINING:
        value = saved.get(name, SAVED_DEFAULTS.get(name))
        if name in config and value != config[name]:
            raise ValueError(
                f"Expected {name}={value!r} as in the checkpoint being resumed "
                f"but got {config[name]!r}"
            )


def save_checkpoint(
    path: str | os.PathLike,
    vae: torch.nn.Module,
    config: dict | None = None,
    state: TrainingState | None = None,
    resumable: dict | None = None,
    data_spec: dict | None = None,
) -> None:
    """Write the module, the run's settings and history (atomically).

    The file is written to a temporary name and renamed, so a reader never sees a
    partial checkpoint.

    Parameters
    ----------
    path : str or os.PathLike
        Destination (by convention ``*.pt``).
    vae : VAE or LinearGaussianVAE
        The module; its current parameters are saved as ``model_state``.
    config : dict, optional
        The run's arguments (:attr:`pyro_vae.FitResult.config`).
    state : TrainingState, optional
        History, best epoch and counters.
    resumable : dict, optional
        What :meth:`pyro_vae.Trainer.restore` needs (written by :meth:`pyro_vae.Trainer.save`).
    data_spec : dict, optional
        :attr:`pyro_vae.data.Dataset.spec` of the training data (data set,
        binarization, split fractions and split seed).
    """
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "model_config": vae.config,
        "model_state": vae.state_dict(),
        "fit_config": dict(config or {}),
        "data_spec": dict(data_spec) if data_spec else None,
        "history": list(state.history) if state else [],
        "best_epoch": state.best_epoch if state else None,
        "training_state": resumable,
        "versions": versions(),
    }
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def _describe_file(path):
    """What a file that is not a zip archive looks like, from its first bytes (str)."""
    with open(path, "rb") as f:
        head = f.read(256)
    if not head:
        return "an empty file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "a binary file"
    first = text.splitlines()[0][:40] if text.strip() else ""
    kind = "text (a CSV file?)" if "," in first else "text"
    return f"{kind} starting {first!r}"


MODEL_CLASSES = {"VAE": VAE, "LinearGaussianVAE": LinearGaussianVAE}
"""The classes a checkpoint's ``model_config`` may name, by name."""


def model_from_config(config: dict) -> torch.nn.Module:
    """A new module built from its ``config`` (:attr:`pyro_vae.VAE.config`), freshly
    initialized: the architecture of a checkpoint's ``model_config`` without its
    parameters (:func:`load_checkpoint` loads those into it).

    Parameters
    ----------
    config : dict
        ``"class"`` (a name of :data:`MODEL_CLASSES`) and the constructor's arguments
        (``x_dim``, ``z_dim``, ``hidden_dims`` as a list or tuple, ``likelihood``,
        ``encoder``, ``activation``, ``name``), as ``vae.config`` gives them.

    Returns
    -------
    VAE or LinearGaussianVAE
        Initialized from torch's global RNG, in float32 on the CPU.

    Raises
    ------
    ValueError
        For a ``config`` that is not a dict or names no class of :data:`MODEL_CLASSES`,
        or arguments the class refuses.
    TypeError
        For an argument the class does not take.
    """
    if not isinstance(config, dict) or config.get("class") not in MODEL_CLASSES:
        found = config.get("class") if isinstance(config, dict) else config
        raise ValueError(
            f"Expected config to be a model config naming a class of {tuple(MODEL_CLASSES)} "
            f"but got {found!r}"
        )
    kwargs = {key: value for key, value in config.items() if key != "class"}
    if "hidden_dims" in kwargs:
        kwargs["hidden_dims"] = tuple(kwargs["hidden_dims"])
    return MODEL_CLASSES[config["class"]](**kwargs)


def load_checkpoint(path: str | os.PathLike) -> tuple[torch.nn.Module, dict]:
    """Rebuild a module from a checkpoint written by :func:`save_checkpoint` or :func:`fit`.

    The module is built by :func:`model_from_config` from the saved ``model_config``,
    then given the saved parameters.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.

    Returns
    -------
    vae : VAE or LinearGaussianVAE
        The module with its saved parameters (the best epoch's, when the run restored
        them) in their saved precision (float64 if it was trained so), on the CPU, in
        eval mode.
    checkpoint : dict
        Everything saved: ``fit_config``, ``data_spec``, ``history``, ``best_epoch``,
        ``training_state`` (for ``fit(resume=...)``), ``versions``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file cannot be read, is not a pyro_vae checkpoint, or is malformed.
    """
    expected = (
        f"Expected a pyro_vae checkpoint ({CHECKPOINT_FORMAT}: a PyTorch file written by "
        f"pyro_vae.fit, save_checkpoint or `pyro-vae train`) at {str(path)!r}"
    )
    if not os.path.exists(path):
        raise FileNotFoundError(f"No checkpoint file at {str(path)!r}")
    if os.path.isdir(path):
        raise ValueError(f"{expected} but it is a folder")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{expected} but it is {_describe_file(path)}, not a PyTorch zip file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # torch's weights-only explanation runs to many lines: keep the first
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{expected} but torch.load could not read it: {first}") from e
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else None
        what = f"format {found!r}" if found else f"a {type(checkpoint).__name__} without a format"
        raise ValueError(f"{expected} but it holds {what}")
    try:
        vae = model_from_config(checkpoint["model_config"])
        state = checkpoint["model_state"]
        dtypes = {v.dtype for v in state.values() if torch.is_floating_point(v)}
        if len(dtypes) == 1:  # keep the saved precision (float64 after vae.double())
            vae.to(dtypes.pop())
        vae.load_state_dict(state)
    except Exception as e:
        raise ValueError(f"Malformed pyro_vae checkpoint {str(path)!r}: {e!r}") from e
    return vae.eval(), checkpoint
