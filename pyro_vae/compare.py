"""The main job: train one VAE per objective and judge all on held-out log p(x).

Every objective trains the same architecture from the same initialization and seed;
every trained model is then evaluated on the test split by the same estimator
(:func:`pyro_vae.evaluate`, K = 5000 importance samples), so the table's differences
are the objectives' own.
"""

import os
import platform
import time
from dataclasses import dataclass, field

import torch

from .data import load_array, load_digits, load_mnist
from .evaluation import evaluate
from .models import VAE
from .objectives import check_objective, objective_label
from .training import fit

__all__ = [
    "DEFAULT_OBJECTIVES",
    "Comparison",
    "compare",
    "load_dataset",
    "parse_objective",
]

DEFAULT_OBJECTIVES = ("trace", "meanfield", "renyi:0:5", "renyi:0.5:5")
REPORTED = ("elbo", "iwae_5", "iwae_50", "log_px", "gap", "kl", "reconstruction")


def parse_objective(spec):
    """Parse an objective spec into ``(loss, alpha, num_particles)``.

    Specs: ``"trace"``, ``"meanfield"`` (optionally ``":K"`` particles),
    ``"renyi:ALPHA:K"``, and ``"iwae:K"`` for ``"renyi:0:K"``.

    Raises
    ------
    ValueError
        If the spec is malformed or its values are invalid (see
        :func:`pyro_vae.objectives.make_elbo`).
    """
    parts = str(spec).strip().split(":")
    name, args = parts[0], parts[1:]
    try:
        if name in ("trace", "meanfield") and len(args) <= 1:
            loss, alpha, k = name, 0.0, int(args[0]) if args else 1
        elif name == "renyi" and len(args) == 2:
            loss, alpha, k = name, float(args[0]), int(args[1])
        elif name == "iwae" and len(args) == 1:
            loss, alpha, k = "renyi", 0.0, int(args[0])
        else:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"Expected an objective like 'trace', 'meanfield', 'renyi:ALPHA:K' or "
            f"'iwae:K' but got {spec!r}"
        ) from None
    check_objective(loss, alpha, k)
    return loss, alpha, k


def load_dataset(spec, binarize="dynamic", seed=0):
    """Load ``"digits"``, ``"mnist:PATH"`` or a ``.npy``/``.npz``/``.csv`` file path.

    Returns
    -------
    pyro_vae.data.Dataset

    Raises
    ------
    ValueError, FileNotFoundError
        As the loaders in :mod:`pyro_vae.data`.
    """
    if spec == "digits":
        return load_digits(binarize=binarize, seed=seed)
    if spec.startswith("mnist:"):
        return load_mnist(spec[len("mnist:") :], binarize=binarize, seed=seed)
    if os.path.splitext(spec)[1].lower() in (".npy", ".npz", ".csv"):
        return load_array(spec, binarize=binarize, seed=seed)
    raise ValueError(
        f"Expected dataset 'digits', 'mnist:PATH' or a .npy/.npz/.csv path but got {spec!r}"
    )


@dataclass
class Comparison:
    """What :func:`compare` returns.

    Attributes
    ----------
    rows : list of dict
        One per objective: ``objective``, ``loss``, ``alpha``, ``num_particles``,
        ``epochs_run``, ``best_epoch``, ``train_time_s`` and, for each of elbo,
        iwae_5, iwae_50, log_px, gap, kl, reconstruction, ``test_<name>`` with its
        Monte-Carlo standard error ``test_<name>_se`` (nats per test point).
    histories : dict of str to list of dict
        Per-epoch training history of each objective (see :class:`pyro_vae.FitResult`).
    models : dict of str to VAE
        The trained modules, keyed by objective label.
    meta : dict
        Data set, sizes, settings, versions and total wall time.
    """

    rows: list = field(default_factory=list)
    histories: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


def compare(
    data,
    objectives=DEFAULT_OBJECTIVES,
    epochs=300,
    z_dim=8,
    hidden_dims=(256,),
    likelihood="bernoulli",
    batch_size=128,
    lr=1e-3,
    patience=None,
    num_samples=5000,
    seed=0,
    progress=True,
):
    """Train one VAE per objective, then evaluate each on the test split.

    Parameters
    ----------
    data : pyro_vae.data.Dataset
        Train/validation/test splits. The validation split selects each run's best
        epoch by the validation IWAE bound L_50.
    objectives : sequence of str, default DEFAULT_OBJECTIVES
        Specs as in :func:`parse_objective`; default Trace_ELBO, TraceMeanField_ELBO,
        RenyiELBO(α=0, K=5) and RenyiELBO(α=0.5, K=5).
    epochs, batch_size, lr, patience, seed
        As in :func:`pyro_vae.fit`, the same for every objective.
    z_dim, hidden_dims, likelihood
        As in :class:`pyro_vae.VAE`.
    num_samples : int, default 5000
        Importance samples per test point for log p(x) (Burda et al. 2016).
    progress : bool, default True
        Show progress bars.

    Returns
    -------
    Comparison

    Raises
    ------
    ValueError
        For a bad objective spec or any invalid training argument, before any training.
    """
    specs = [parse_objective(spec) for spec in objectives]
    if not specs:
        raise ValueError("Expected at least one objective but got none")
    labels = [objective_label(*spec) for spec in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"Expected distinct objectives but got {list(objectives)}")
    if num_samples < 100:
        raise ValueError(
            f"Expected num_samples >= 100 (two groups of 50 for the IWAE-50 standard "
            f"error) but got {num_samples}"
        )
    start = time.perf_counter()
    torch.manual_seed(seed)
    initial = VAE(data.x_dim, z_dim, hidden_dims, likelihood).state_dict()
    result = Comparison()
    for (loss, alpha, k), label in zip(specs, labels, strict=True):
        vae = VAE(data.x_dim, z_dim, hidden_dims, likelihood)
        vae.load_state_dict(initial)
        run = fit(
            vae,
            data,
            loss=loss,
            alpha=alpha,
            num_particles=k,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            patience=patience,
            progress=progress,
        )
        summary = evaluate(vae, data.test, num_samples, ks=(5, 50), seed=seed).summary()
        row = {
            "objective": label,
            "loss": loss,
            "alpha": alpha,
            "num_particles": k,
            "epochs_run": len(run.history),
            "best_epoch": run.best_epoch,
            "train_time_s": run.train_time,
        }
        for name in REPORTED:
            row[f"test_{name}"], row[f"test_{name}_se"] = summary[name]
        result.rows.append(row)
        result.histories[label] = run.history
        result.models[label] = vae
    result.meta = {
        "dataset": data.name,
        "binarize": data.binarize,
        "num_train": len(data.train),
        "num_validation": len(data.validation),
        "num_test": len(data.test),
        "num_samples": num_samples,
        "epochs": epochs,
        "z_dim": z_dim,
        "hidden_dims": list(hidden_dims),
        "likelihood": likelihood,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "wall_time_s": time.perf_counter() - start,
        "versions": _versions(),
    }
    return result


def _versions():
    import pyro

    from . import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro-ppl": pyro.__version__,
        "pyro_vae": __version__,
    }
