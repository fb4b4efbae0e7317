"""Training with Pyro's SVI, per-epoch history, early stopping and checkpoints."""

import copy
import math
import time
from dataclasses import dataclass, field

import pyro
import pyro.optim
import torch
from pyro.infer import SVI
from tqdm.auto import tqdm

from ._io import atomic_path
from .data import Dataset
from .evaluation import _evaluate
from .models import VAE, LinearGaussianVAE, check_data
from .objectives import check_objective, make_elbo, objective_label

__all__ = ["FitResult", "fit", "load_checkpoint", "save_checkpoint"]

MONITORS = ("iwae", "elbo")
_SHOWN = ("train_loss", "val_elbo", "val_iwae")  # in the progress bar


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    history : list of dict
        One dict per epoch: ``epoch``; ``train_loss``, the objective's negative bound
        in nats per data point averaged over the epoch's minibatches; ``val_elbo`` and
        ``val_iwae`` (L_k with k = ``val_samples``) in nats per point on the
        validation data (absent without validation data); ``wall_time``, seconds since
        the start of training.
    best_epoch : int
        Epoch whose parameters the module holds at the end (the best by the monitored
        validation bound when ``restore_best``; otherwise the last).
    train_time : float
        Seconds of training, validation included.
    config : dict
        The arguments of the run.
    stopped_early : bool
        Whether ``patience`` ended the run before ``epochs``.
    """

    history: list = field(default_factory=list)
    best_epoch: int = 0
    train_time: float = 0.0
    config: dict = field(default_factory=dict)
    stopped_early: bool = False


def _check_fit_args(epochs, batch_size, lr, patience, val_samples, monitor):
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"Expected {name} to be an integer > 0 but got {value!r}")
    if not lr > 0:
        raise ValueError(f"Expected lr > 0 but got {lr!r}")
    if patience is not None and (not isinstance(patience, int) or patience <= 0):
        raise ValueError(f"Expected patience to be None or an integer > 0 but got {patience!r}")
    if not isinstance(val_samples, int) or val_samples < 2:
        raise ValueError(f"Expected val_samples to be an integer >= 2 but got {val_samples!r}")
    if monitor not in MONITORS:
        raise ValueError(f"Expected monitor in {MONITORS} but got {monitor!r}")


def fit(
    vae,
    data,
    loss="trace",
    alpha=0.0,
    num_particles=1,
    epochs=100,
    batch_size=128,
    lr=1e-3,
    seed=0,
    progress=True,
    validation=None,
    val_samples=50,
    monitor="iwae",
    patience=None,
    restore_best=True,
    checkpoint=None,
    optimizer_state=None,
    jit=False,
):
    """Train a VAE's model and guide with :class:`pyro.infer.SVI` and Adam.

    Each epoch shuffles the training data (redrawing it for dynamic binarization),
    takes one SVI step per minibatch, then estimates the validation ELBO and IWAE bound
    L_k (k = ``val_samples``) with :func:`pyro_vae.evaluate` on fixed draws.

    Pyro's global param store is cleared first (as in Pyro's examples), so the
    module's parameters are the ones registered by ``pyro.module``; the global RNGs
    are seeded with ``seed`` via :func:`pyro.set_rng_seed`.

    Parameters
    ----------
    vae : VAE or LinearGaussianVAE
        The module; trained in place.
    data : Dataset or torch.Tensor
        A :class:`pyro_vae.data.Dataset` (its ``validation`` split is used unless
        ``validation`` is given) or a float tensor of shape ``(num_data, x_dim)``.
    loss : {"trace", "meanfield", "renyi"}, default "trace"
        The objective; see :func:`pyro_vae.objectives.make_elbo`.
    alpha : float, default 0.0
        Rényi order (``loss="renyi"``); 0 is the IWAE bound.
    num_particles : int, default 1
        Samples per data point (the IWAE k).
    epochs : int, default 100
        Maximum number of passes over the training data.
    batch_size : int, default 128
        Minibatch size. For ``"trace"`` and ``"meanfield"`` the minibatch bound is
        scaled by num_data / batch through the model's ``num_data``. Rényi bounds are
        trained on unscaled minibatches, because :class:`~pyro.infer.RenyiELBO` applies
        the scale inside its log-sum-exp (Adam is invariant to the constant factor).
    lr : float, default 1e-3
        Adam learning rate.
    seed : int, default 0
        Seed of initialization-independent randomness: shuffling, binarization, z draws.
    progress : bool, default True
        Show a tqdm progress bar with the running loss.
    validation : torch.Tensor, optional
        Validation data ``(num_val, x_dim)``; default the Dataset's validation split.
    val_samples : int, default 50
        Draws per validation point (the k of the monitored IWAE bound).
    monitor : {"iwae", "elbo"}, default "iwae"
        Validation bound that selects the best epoch and drives ``patience``.
        L_k is the closer to log p(x), so it judges all objectives on one yardstick.
    patience : int, optional
        Stop after this many epochs without a better monitored bound.
    restore_best : bool, default True
        Load the best epoch's parameters at the end (needs validation data).
    checkpoint : str or os.PathLike, optional
        Write a checkpoint (see :func:`save_checkpoint`) there at the end, atomically.
    optimizer_state : dict, optional
        Adam state to resume from, as saved in a checkpoint:
        ``vae, ckpt = load_checkpoint(path)`` then
        ``fit(vae, data, optimizer_state=ckpt["optimizer_state"], ...)``. (With
        ``restore_best`` the checkpoint holds the best epoch's parameters but the last
        epoch's optimizer state.)
    jit : bool, default False
        Use :class:`pyro.infer.JitTrace_ELBO` for ``loss="trace"``.

    Returns
    -------
    FitResult
        History per epoch, best epoch and wall time.

    Raises
    ------
    ValueError
        For bad data (NaN/inf, wrong width, empty, outside [0, 1] for a Bernoulli
        likelihood), an unknown loss, ``num_particles`` < 1, ``alpha == 1`` with the
        Rényi bound, or ``epochs``, ``batch_size``, ``lr`` ≤ 0.
    """
    check_objective(loss, alpha, num_particles)
    _check_fit_args(epochs, batch_size, lr, patience, val_samples, monitor)
    if isinstance(data, Dataset):
        check_data(data.train_intensities, vae, "data")
        train = data
        if validation is None and len(data.validation):
            validation = data.validation
    else:
        train = check_data(data, vae, "data")
    if validation is not None:
        validation = check_data(validation, vae, "validation")
    config = {
        "loss": loss,
        "alpha": alpha,
        "num_particles": num_particles,
        "objective": objective_label(loss, alpha, num_particles),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "val_samples": val_samples,
        "monitor": monitor,
        "patience": patience,
        "jit": jit,
    }

    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optim = pyro.optim.Adam({"lr": lr})
    if optimizer_state is not None:
        optim.set_state(optimizer_state)
    svi = SVI(vae.model, vae.guide, optim, make_elbo(loss, alpha, num_particles, jit))
    scaled = loss != "renyi"

    result = FitResult(config=config)
    best_score, best_state, stale = -math.inf, None, 0
    start = time.perf_counter()
    bar = tqdm(range(1, epochs + 1), desc=config["objective"], disable=not progress)
    for epoch in bar:
        x = train.train_epoch(generator) if isinstance(train, Dataset) else train
        num_data = x.shape[0]
        order = torch.randperm(num_data, generator=generator)
        total = 0.0
        for i in range(0, num_data, batch_size):
            xb = x[order[i : i + batch_size]]
            if scaled:
                total += svi.step(xb, num_data=num_data) * xb.shape[0] / num_data
            else:
                total += svi.step(xb)
        record = {"epoch": epoch, "train_loss": total / num_data}
        if validation is not None:
            # validation was checked once above: skip the checks in the epoch loop
            ev = _evaluate(vae, validation, val_samples, (val_samples,), seed)
            summary = ev.summary()
            record["val_elbo"] = summary["elbo"][0]
            record["val_iwae"] = summary[f"iwae_{val_samples}"][0]
            score = record["val_iwae" if monitor == "iwae" else "val_elbo"]
            if score > best_score:
                best_score, stale = score, 0
                result.best_epoch = epoch
                if restore_best:
                    best_state = copy.deepcopy(vae.state_dict())
            else:
                stale += 1
        else:
            result.best_epoch = epoch
        record["wall_time"] = time.perf_counter() - start
        result.history.append(record)
        bar.set_postfix({k: f"{record[k]:.2f}" for k in _SHOWN if k in record})
        if patience is not None and stale >= patience:
            result.stopped_early = True
            break
    bar.close()
    if best_state is not None:
        vae.load_state_dict(best_state)
    result.train_time = time.perf_counter() - start
    if checkpoint is not None:
        save_checkpoint(checkpoint, vae, result, optim)
    return result


def save_checkpoint(path, vae, result=None, optim=None):
    """Write the module's config and state, the run's history and the optimizer state.

    The file is written to a temporary name and renamed, so a reader never sees a
    partial checkpoint.

    Parameters
    ----------
    path : str or os.PathLike
        Destination (by convention ``*.pt``).
    vae : VAE or LinearGaussianVAE
        The module.
    result : FitResult, optional
        The training run (config and history).
    optim : pyro.optim.PyroOptim, optional
        The optimizer, whose per-parameter state is saved.
    """
    state = {
        "format": "pyro_vae.checkpoint/1",
        "model_config": vae.config,
        "model_state": vae.state_dict(),
        "fit_config": result.config if result else {},
        "history": result.history if result else [],
        "best_epoch": result.best_epoch if result else None,
        "optimizer_state": optim.get_state() if optim is not None else None,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path):
    """Rebuild a module from a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.

    Returns
    -------
    vae : VAE or LinearGaussianVAE
        The module with its saved parameters, in eval mode.
    checkpoint : dict
        Everything saved: ``fit_config``, ``history``, ``best_epoch``,
        ``optimizer_state`` (for :meth:`pyro.optim.PyroOptim.set_state`).

    Raises
    ------
    ValueError
        If the file cannot be read or is not a pyro_vae checkpoint.
    FileNotFoundError
        If the file does not exist.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise ValueError(f"Could not read checkpoint {str(path)!r}: {e}") from e
    if not isinstance(state, dict) or state.get("format") != "pyro_vae.checkpoint/1":
        raise ValueError(f"Expected a pyro_vae checkpoint at {str(path)!r}")
    config = dict(state["model_config"])
    classes = {"VAE": VAE, "LinearGaussianVAE": LinearGaussianVAE}
    cls = classes.get(config.pop("class"))
    if cls is None:
        raise ValueError(f"Unknown model class in checkpoint {str(path)!r}")
    if "hidden_dims" in config:
        config["hidden_dims"] = tuple(config["hidden_dims"])
    vae = cls(**config)
    vae.load_state_dict(state["model_state"])
    return vae.eval(), state
