"""The jobs behind ``pyro-vae train``, ``evaluate``, ``posterior`` and ``ais``, as library calls.

:func:`train_job` trains one model into a checkpoint, resumable, by the package's own
loop (:func:`pyro_vae.fit`) or through PyTorch Lightning
(:func:`pyro_vae.train.lightning.fit_lightning`): a new run from its settings, a resumed
one from its checkpoint alone. :func:`evaluate_job` evaluates a checkpoint on a test
split; :func:`posterior_job` checks its guide against HMC draws of the exact posterior
and writes the draws, the table and the figures; :func:`ais_job` estimates its log p(x)
by AIS beside importance sampling, and runs the BDMC sandwich on data simulated from it.

Each takes typed keywords and returns a result; :mod:`pyro_vae.cli` parses the command
line into them and prints the results. The messages of the errors they raise name the
command's flags (``--resume``, ``--points``), which are these keywords.
"""

import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._device import DTYPES
from .._io import atomic_path
from ..data import Dataset, dataset_from_spec, load_dataset
from ..infer.ais import AISResult, BDMCResult, ais, bdmc
from ..infer.evaluation import Evaluation, Summary, evaluate, mean_difference
from ..models import VAE
from ..train.checkpoints import load_checkpoint
from ..train.config import TrainConfig
from ..train.state import FitResult
from ..train.training import fit
from .figures import posterior_figures, save_figure
from .guide_check import GuideCheck, check_guide, summarize_agreement
from .report import format_agreement

__all__ = [
    "BINARIZE_CHOICES",
    "LIGHTNING_STRATEGIES",
    "CheckpointAIS",
    "CheckpointEvaluation",
    "CheckpointPosterior",
    "CheckpointTraining",
    "ais_job",
    "binarize_choice",
    "checkpoint_with_split",
    "evaluate_job",
    "posterior_job",
    "run_ais",
    "run_evaluate",
    "run_train",
    "train_job",
]

LIGHTNING_STRATEGIES = ("auto", "ddp")  # pyro_vae.train.lightning.STRATEGIES, without importing it
_LIGHTNING_FLAGS = ("strategy", "devices", "accelerator")
BINARIZE_CHOICES = (None, "dynamic", "static", "threshold", "none")
"""The values of ``binarize`` (the ``--binarize`` choices, and None: by the likelihood)."""
_RESUME_SETTINGS = ("epochs", "lr", "progress", "device", "num_threads")
"""What a resumed run takes from the ``config`` of :func:`train_job`; the rest is saved."""


def binarize_choice(binarize: str | None, likelihood: str | None) -> str | None:
    """The ``--binarize`` choice as a loader argument (:func:`pyro_vae.data.load_dataset`).

    Parameters
    ----------
    binarize : {None, "dynamic", "static", "threshold", "none"}
        None: dynamic for a Bernoulli ``likelihood``, no binarization otherwise;
        ``"none"``: no binarization.
    likelihood : str or None
        The model's likelihood (:data:`pyro_vae.models.LIKELIHOODS`).

    Returns
    -------
    str or None
        ``"dynamic"``, ``"static"``, ``"threshold"`` or None (real values kept).

    Raises
    ------
    ValueError
        For a ``binarize`` not in :data:`BINARIZE_CHOICES`.
    """
    if _is_namespace(binarize):  # the 0.x call binarize_choice(args, likelihood)
        warnings.warn(
            "binarize_choice(args, likelihood) with the parsed command line is deprecated; "
            "pass args.binarize",
            FutureWarning,
            stacklevel=2,
        )
        binarize = binarize.binarize
    if binarize not in BINARIZE_CHOICES:
        raise ValueError(f"Expected binarize in {BINARIZE_CHOICES} but got {binarize!r}")
    if binarize is None:
        return "dynamic" if likelihood == "bernoulli" else None
    return None if binarize == "none" else binarize


def _is_namespace(args):
    """A parsed command line (argparse.Namespace), recognized without importing argparse."""
    return type(args).__name__ == "Namespace"


def _deprecated_job(name, command, args):
    """Run the 0.x job ``name(args)`` as ``pyro-vae COMMAND`` does, with a FutureWarning."""
    if not _is_namespace(args):
        raise TypeError(
            f"Expected {name}(args) with an argparse.Namespace (deprecated) but got "
            f"{type(args).__name__}; call {command}_job(...) with keywords"
        )
    warnings.warn(
        f"{name}(args) is deprecated: call pyro_vae.experiments.jobs.{command}_job(...) "
        f"with keywords, or pyro_vae.cli.main([{command!r}, ...])",
        FutureWarning,
        stacklevel=3,
    )
    from importlib import import_module  # the CLI prints; imported only for this shim

    import_module(f"pyro_vae.cli.{command}").run(args)


def run_train(args) -> None:
    """Deprecated: ``pyro-vae train`` on a parsed command line; use :func:`train_job`."""
    _deprecated_job("run_train", "train", args)


def run_evaluate(args) -> None:
    """Deprecated: ``pyro-vae evaluate`` on a parsed command line; use :func:`evaluate_job`."""
    _deprecated_job("run_evaluate", "evaluate", args)


def run_ais(args) -> None:
    """Deprecated: ``pyro-vae ais`` on a parsed command line; use :func:`ais_job`."""
    _deprecated_job("run_ais", "ais", args)


# --- train ----------------------------------------------------------------------------


def _check_overwrite(checkpoint, overwrite, resume):
    """Refuse to replace an existing checkpoint unless ``overwrite`` (or it is resumed)."""
    if not os.path.exists(checkpoint) or overwrite:
        return
    if resume and os.path.samefile(checkpoint, resume):
        return
    raise ValueError(
        f"Expected --checkpoint to name a new file but {os.fspath(checkpoint)!r} exists; pass "
        "--overwrite to replace it, or choose another --checkpoint"
    )


def _lightning_settings(given, resume, saved, gap_every):
    """The Lightning settings of a run (dict), or None for the package's own loop.

    Lightning trains when a strategy is given, or when ``resume`` names a checkpoint of
    a Lightning run (whose strategy, devices and accelerator are used unless given).
    """
    flags = [f"--{name}" for name in _LIGHTNING_FLAGS if given[name] is not None]
    stored = {}
    if resume:
        config = saved["fit_config"]
        if config.get("trainer") == "lightning":
            stored = {name: config.get(name) for name in _LIGHTNING_FLAGS}
        elif flags:
            raise ValueError(
                f"Expected no {', '.join(flags)} with --resume {os.fspath(resume)!r}: it was "
                "trained by the package's own loop, which continues without Lightning"
            )
    if not flags and not stored:
        return None
    if given["strategy"] is None and not stored:
        raise ValueError(f"Expected --strategy with {', '.join(flags)} (e.g. --strategy ddp)")
    settings = {"strategy": "auto", "devices": 1, "accelerator": "auto"}
    settings.update({k: v for k, v in stored.items() if v is not None})
    settings.update({k: v for k, v in given.items() if v is not None})
    if settings["devices"] > 1 and settings["strategy"] != "ddp":
        raise ValueError(
            f"Expected --strategy ddp with --devices {settings['devices']} (one process per "
            f"device) but got --strategy {settings['strategy']}"
        )
    if gap_every:
        raise ValueError(
            f"Expected --gap-every 0 with --strategy {settings['strategy']} (the gap is "
            f"tracked by the package's own loop only) but got {gap_every}"
        )
    return settings


def _resumed_run(resume, saved, config, needs_state):
    """The data and settings of the run in checkpoint ``resume`` (``saved``): its data
    split and its recorded settings (:meth:`TrainConfig.from_record`) with those of
    :data:`_RESUME_SETTINGS` from ``config``; the package's own loop also needs the
    training state (``needs_state``), Lightning its own checkpoint."""
    if not saved.get("data_spec") or (needs_state and not saved.get("training_state")):
        what = "training state or data spec" if needs_state else "data spec"
        raise ValueError(
            f"Expected --resume to name a checkpoint written by `pyro-vae train` but "
            f"{os.fspath(resume)!r} holds no {what}"
        )
    keep = {name: getattr(config, name) for name in _RESUME_SETTINGS}
    settings = TrainConfig.from_record(saved["fit_config"]).replace(**keep)
    return dataset_from_spec(saved["data_spec"]), settings


@dataclass
class CheckpointTraining:
    """What :func:`train_job` returns.

    Attributes
    ----------
    run : FitResult or LightningFitResult
        The run (:func:`pyro_vae.fit` or :func:`~pyro_vae.train.lightning.fit_lightning`,
        whose ``config["trainer"]`` is ``"lightning"``).
    checkpoint : str
        Where the checkpoint was written.
    """

    run: FitResult
    checkpoint: str

    @property
    def lightning(self) -> bool:
        """Whether the run was trained through Lightning."""
        return self.run.config.get("trainer") == "lightning"

    @property
    def main_process(self) -> bool:
        """False in the other processes of a DDP run, which stay quiet."""
        return not self.lightning or self.run.global_rank == 0

    def __str__(self):
        """One line: the best epoch, its validation ELBO, the time and the checkpoint."""
        run, lightning = self.run, self.lightning
        last = run.history[run.best_epoch - 1]
        line = (
            f"{run.config['objective']}: best epoch {run.best_epoch} of {len(run.history)}, "
            f"validation ELBO {last.get('val_elbo', float('nan')):.2f} nats, "
            f"{run.train_time:.1f} s ({run.cpu_time:.1f} s CPU"
            f"{' of process 0' if lightning else ''}, torch threads: {run.num_threads}); "
        )
        if not lightning:
            return f"{line}checkpoint {self.checkpoint}"
        return (
            f"{line}Lightning {run.config['strategy']}, {run.world_size} process(es) x batch "
            f"{run.config['per_process_batch_size']}; checkpoint {self.checkpoint}, "
            f"Lightning's for --resume {run.lightning_checkpoint}"
        )


def train_job(
    checkpoint: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    data: str | Dataset = "digits",
    binarize: str | None = None,
    split_seed: int = 0,
    z_dim: int = 8,
    hidden_dims: int | Sequence[int] = (256,),
    likelihood: str = "bernoulli",
    guide: str = "diagonal",
    resume: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    overwrite: bool = False,
    dtype: str = "float32",
    strategy: str | None = None,
    devices: int | None = None,
    accelerator: str | None = None,
) -> CheckpointTraining:
    """Train one VAE into a checkpoint (``pyro-vae train``), resumable.

    A new run loads ``data``, seeds torch with ``config.seed``, builds
    ``VAE(x_dim, z_dim, hidden_dims, likelihood, encoder=guide)`` and trains it with
    ``config``. A resumed run (``resume``) takes its data split, model and settings
    from that checkpoint (:meth:`TrainConfig.from_record`), and from ``config`` only
    ``epochs`` (the total), ``lr`` (None: the saved one), ``progress``, ``device`` and
    ``num_threads``. Flags are checked, and an existing ``checkpoint`` refused, before
    any work.

    Parameters
    ----------
    checkpoint : str or os.PathLike
        Where the checkpoint goes (atomically, :func:`pyro_vae.save_checkpoint`).
    config : TrainConfig, optional
        The run's settings (default :class:`TrainConfig`).
    data : str or Dataset, default "digits"
        A data set spec (:func:`pyro_vae.data.load_dataset`) or a loaded one; not used
        with ``resume``.
    binarize : {None, "dynamic", "static", "threshold", "none"}
        With a spec: the binarization (:func:`binarize_choice`; None: dynamic for a
        Bernoulli likelihood).
    split_seed : int, default 0
        With a spec: the seed of the train/validation/test split.
    z_dim, hidden_dims, likelihood, guide
        The new model (:class:`pyro_vae.VAE`'s ``z_dim``, ``hidden_dims``,
        ``likelihood`` and ``encoder``).
    resume : str or os.PathLike, optional
        A checkpoint of ``pyro-vae train`` whose run to continue (into ``checkpoint``).
    checkpoint_every : int, optional
        Also write the checkpoint every this many epochs.
    overwrite : bool, default False
        Replace an existing ``checkpoint`` (otherwise an error, except ``resume``'s own).
    dtype : {"float32", "float64"}, default "float32"
        Precision of the package's own loop (Lightning trains in float32).
    strategy, devices, accelerator : optional
        Train through Lightning (``strategy`` in :data:`LIGHTNING_STRATEGIES`); None:
        not given, the package's own loop, or for a resumed Lightning run its saved
        value. With Lightning, ``config.device`` is not used and ``config.gap_every``
        must be None.

    Returns
    -------
    CheckpointTraining
        The run, printed as one line.

    Raises
    ------
    ValueError
        For settings that cannot run together, a ``checkpoint`` that exists, a
        ``resume`` checkpoint without its training state or data split, or one of
        Lightning without Lightning installed, before any training.
    FileNotFoundError
        If ``resume`` does not exist.
    """
    config = TrainConfig() if config is None else config
    saved = vae = None
    if resume:
        vae, saved = load_checkpoint(resume)
        vae.train()  # loaded in eval mode; its parameters are replaced by the saved run's
    given = {"strategy": strategy, "devices": devices, "accelerator": accelerator}
    lightning = _lightning_settings(given, resume, saved, config.gap_every)

    def new_model():
        loaded = data
        if not isinstance(loaded, Dataset):
            loaded = load_dataset(data, binarize_choice(binarize, likelihood), split_seed)
        torch.manual_seed(config.seed)
        return VAE(loaded.x_dim, z_dim, hidden_dims, likelihood, encoder=guide), loaded

    if lightning is not None:
        run = _train_lightning(checkpoint, config, lightning, resume, saved, vae, overwrite,
                               checkpoint_every, new_model)  # fmt: skip
        return CheckpointTraining(run, os.fspath(checkpoint))
    _check_overwrite(checkpoint, overwrite, resume)
    if resume:
        loaded, config = _resumed_run(resume, saved, config, needs_state=True)
    else:
        vae, loaded = new_model()
    vae.to(DTYPES[dtype])
    run = fit(vae, loaded, config, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
              resume=resume)  # fmt: skip
    return CheckpointTraining(run, os.fspath(checkpoint))


def _train_lightning(
    checkpoint, config, lightning, resume, saved, vae, overwrite, every, new_model
):
    """:func:`train_job` through PyTorch Lightning (:func:`fit_lightning`)."""
    try:
        from ..train.lightning import fit_lightning, lightning_checkpoint_path
    except ImportError as e:
        raise ValueError(f"Expected PyTorch Lightning for --strategy: {e}") from None
    _check_overwrite(checkpoint, overwrite, resume)
    ckpt = lightning_checkpoint_path(checkpoint)
    if os.path.exists(ckpt) and not overwrite and not resume:
        raise ValueError(
            f"Expected --checkpoint to name a new run but Lightning's checkpoint {ckpt!r} "
            "exists; pass --overwrite to replace it, --resume to continue it, or choose "
            "another --checkpoint"
        )
    if resume:
        data, config = _resumed_run(resume, saved, config, needs_state=False)
    if config.loss == "pyro_renyi":
        raise ValueError(
            "Expected --objective other than pyro_renyi with --strategy: Pyro's RenyiELBO has "
            "no differentiable_loss for a training step; renyi:ALPHA:K is the same bound"
        )
    devices = lightning["devices"]
    if config.batch_size % devices:
        raise ValueError(
            f"Expected --batch-size to be a multiple of --devices {devices} (each process "
            f"takes batch-size / devices rows per step) but got {config.batch_size}"
        )
    if not resume:
        vae, data = new_model()
    return fit_lightning(vae, data, config.replace(device=None), checkpoint=checkpoint,
                        checkpoint_every=every, resume=resume, **lightning)  # fmt: skip


# --- evaluate -------------------------------------------------------------------------


def _evaluation_data(checkpoint, saved, dataset, binarize, split_seed):
    """The test split to evaluate on: the checkpoint's own unless ``dataset`` is given."""
    if dataset is None:
        if binarize is not None or split_seed is not None:
            raise ValueError("Expected --binarize and --split-seed only with --dataset")
        if not saved.get("data_spec"):
            raise ValueError(
                f"Expected checkpoint {os.fspath(checkpoint)!r} to record its data split; "
                "name the test data with --dataset (and --split-seed)"
            )
        return dataset_from_spec(saved["data_spec"])
    if binarize is None:
        if saved["model_config"].get("likelihood") == "bernoulli":
            trained_on = (saved.get("data_spec") or {}).get("binarize")
            binarize = "threshold" if trained_on == "threshold" else "static"
    else:
        binarize = binarize_choice(binarize, None)
    return load_dataset(dataset, binarize, split_seed or 0)


class _WritesJSON:
    """``write_json(path)``: the result's :meth:`to_dict` as indented JSON, written
    atomically (nothing half-written is left if it fails)."""

    def write_json(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            json.dump(self.to_dict(), f, indent=2)


@dataclass
class CheckpointEvaluation(_WritesJSON):
    """What :func:`evaluate_job` returns: a checkpoint's estimates on a test split.

    Attributes
    ----------
    evaluation : Evaluation
        The per-point estimates (:func:`pyro_vae.evaluate`, ``ks=(5, 50)``), nats.
    data_spec : dict
        :attr:`pyro_vae.data.Dataset.spec` of the data whose test split was evaluated.
    num_points : int
        Test points.
    seconds : float
        Wall time of the estimates.
    """

    evaluation: Evaluation
    data_spec: dict
    num_points: int
    seconds: float

    @property
    def num_samples(self) -> int:
        """K, importance samples per test point."""
        return self.evaluation.num_samples

    def summary(self) -> Summary:
        """Means over the test points with their s.e. (:meth:`Evaluation.summary`)."""
        return self.evaluation.summary()

    @property
    def khat_unreliable(self) -> int:
        """Test points whose log p(x) has Pareto k̂ > 0.7 (:meth:`Evaluation.unreliable`)."""
        return int(self.evaluation.unreliable().sum())

    def __str__(self):
        """The summary table, then the data, K, the unreliable points and the time."""
        spec = self.data_spec
        return (
            f"{self.summary()}\nnats per test point ({self.num_points} points of "
            f"{spec['dataset']}, split seed {spec['split_seed']}, K={self.num_samples}); test "
            f"points with Pareto k̂ > 0.7: {self.khat_unreliable}; {self.seconds:.1f} s"
        )

    def to_dict(self) -> dict:
        """The summary as ``evaluate --json`` writes it: strict JSON (dict).

        ``name: {"mean": m, "se": s}`` per estimate, nats per point, None where not
        finite (the s.e. of ``ess``, ``khat``); then ``data_spec`` and
        ``khat_unreliable``.
        """
        out = {
            name: {"mean": _finite(mean), "se": _finite(se)}
            for name, (mean, se) in self.summary().items()
        }
        out["data_spec"] = self.data_spec
        out["khat_unreliable"] = self.khat_unreliable
        return out


def _finite(value):
    return value if math.isfinite(value) else None


def evaluate_job(
    checkpoint: str | os.PathLike,
    *,
    num_samples: int = 5000,
    seed: int = 0,
    dataset: str | None = None,
    binarize: str | None = None,
    split_seed: int | None = None,
    device: str | torch.device | None = None,
    dtype: str = "float32",
) -> CheckpointEvaluation:
    """A checkpoint's test-set estimates (``pyro-vae evaluate``).

    Parameters
    ----------
    checkpoint : str or os.PathLike
        A checkpoint of :func:`train_job` (or :func:`pyro_vae.fit` with its data).
    num_samples : int, default 5000
        K, importance samples per test point.
    seed : int, default 0
        Seed of the importance samples.
    dataset : str, optional
        Evaluate on this data set's test split instead of the checkpoint's.
    binarize : {None, "dynamic", "static", "threshold", "none"}
        With ``dataset``: its test split's binarization; None: threshold for a
        Bernoulli model trained on thresholded data, static for another Bernoulli
        model, none otherwise.
    split_seed : int, optional
        With ``dataset``: the split's seed (None: 0).
    device : str or torch.device, optional
        Where to evaluate (:func:`pyro_vae.evaluate`).
    dtype : {"float32", "float64"}, default "float32"
        Precision of the model and estimates.

    Returns
    -------
    CheckpointEvaluation

    Raises
    ------
    ValueError
        For ``binarize`` or ``split_seed`` without ``dataset``, or a checkpoint without
        its data split and no ``dataset``; as :func:`pyro_vae.load_checkpoint`.
    """
    vae, saved = load_checkpoint(checkpoint)
    vae.to(DTYPES[dtype])
    data = _evaluation_data(checkpoint, saved, dataset, binarize, split_seed)
    start = time.perf_counter()
    result = evaluate(vae, data.test, num_samples, ks=(5, 50), seed=seed, device=device)
    return CheckpointEvaluation(result, data.spec, len(data.test), time.perf_counter() - start)


def checkpoint_with_split(path, points):
    """The model of a checkpoint, its saved dict and the data split it records, with
    ``points`` (the --points of a command) checked against the size of its test split.

    Raises
    ------
    ValueError
        For a checkpoint without its data split, or ``points`` above the test split.
    """
    vae, saved = load_checkpoint(path)
    if not saved.get("data_spec"):
        raise ValueError(f"Expected checkpoint {path!r} to record its data split")
    data = dataset_from_spec(saved["data_spec"])
    if points > len(data.test):
        raise ValueError(
            f"Expected --points <= {len(data.test)}, the size of the checkpoint's test "
            f"split, but got {points}"
        )
    return vae, saved, data


# --- posterior ------------------------------------------------------------------------


@dataclass
class CheckpointPosterior:
    """What :func:`posterior_job` returns.

    Attributes
    ----------
    check : GuideCheck
        The draws of the exact posterior and of the guide, and the agreement table.
    objective : str
        The label of the checkpoint's objective (``"?"`` if it records none).
    out : str
        The folder the files were written to.
    num_points : int
        Test points checked.
    """

    check: GuideCheck
    objective: str
    out: str
    num_points: int

    def summary(self) -> dict:
        """``objective`` and the medians of :func:`summarize_agreement` (dict)."""
        return {"objective": self.objective, **summarize_agreement(self.check.table)}

    def __str__(self):
        """The agreement table (:func:`format_agreement`) and where the files are."""
        return (
            f"{format_agreement([self.summary()])}\n{self.num_points} test points; draws and "
            f"agreement table in {self.out}/"
        )


def posterior_job(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike = "posterior",
    *,
    points: int = 16,
    num_samples: int = 1000,
    warmup_steps: int = 500,
    num_chains: int = 4,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: str = "float32",
) -> CheckpointPosterior:
    """Check a checkpoint's guide against HMC draws of the exact posterior (``pyro-vae
    posterior``) on the first ``points`` test points of its split (:func:`check_guide`).

    Writes to ``out`` (atomically): ``posterior.nc`` and ``guide.nc`` (ArviZ
    InferenceData), ``agreement.csv`` (one row per point) and the figures of
    :func:`~pyro_vae.experiments.figures.posterior_figures` (first 4 points).

    Parameters
    ----------
    checkpoint : str or os.PathLike
        A checkpoint that records its data split.
    out : str or os.PathLike, default "posterior"
        Output folder (made if missing).
    points, num_samples, warmup_steps, num_chains, seed, device
        Test points, draws and adaptation steps per chain, chains per point, seed and
        device of :func:`check_guide`.
    dtype : {"float32", "float64"}, default "float32"
        Precision of the model.

    Returns
    -------
    CheckpointPosterior

    Raises
    ------
    ValueError
        For a checkpoint without its data split, or ``points`` above its test split.
    """
    vae, saved, data = checkpoint_with_split(checkpoint, points)
    x = data.test[:points]
    vae.to(DTYPES[dtype])
    check = check_guide(vae, x, num_samples, warmup_steps, num_chains, seed, device)
    vae.cpu()  # the figures read tensors on the host
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    for name, idata in (("posterior.nc", check.posterior), ("guide.nc", check.guide)):
        with atomic_path(os.path.join(out, name)) as tmp:
            idata.to_netcdf(tmp)
    with atomic_path(os.path.join(out, "agreement.csv")) as tmp:
        check.table.to_csv(tmp, index_label="datum")
    for name, fig in posterior_figures(check, data, "guide", num_points=4).items():
        save_figure(fig, os.path.join(out, name))
    return CheckpointPosterior(check, saved["fit_config"].get("objective", "?"), out, len(x))


# --- ais ------------------------------------------------------------------------------


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _paired(a, b):
    """Mean and s.e. over points of a − b (:func:`mean_difference`; s.e. NaN for one point)."""
    if a.numel() < 2:
        return (a - b).mean().item(), math.nan
    return mean_difference(a, b)


@dataclass
class CheckpointAIS(_WritesJSON):
    """What :func:`ais_job` returns: AIS, importance sampling and BDMC on a checkpoint.

    Attributes
    ----------
    checkpoint : str
        The checkpoint.
    data_spec : dict
        Its data split (:attr:`pyro_vae.data.Dataset.spec`).
    points, start, num_bridges, num_chains, schedule, seed
        The settings of :func:`ais_job`.
    ais : AISResult
        AIS on the first ``points`` test points; ``ais_seconds`` its wall time.
    num_samples : int
        K of the importance-sampling estimates (0: none).
    importance : Evaluation or None
        Importance sampling on the same points (``is_seconds``).
    bdmc : BDMCResult or None
        The sandwich on ``bdmc.x``, simulated from the model (``bdmc_seconds``).
    simulated : Evaluation or None
        Importance sampling on the simulated points.
    """

    checkpoint: str
    data_spec: dict
    points: int
    start: str
    num_bridges: int
    num_chains: int
    schedule: str
    seed: int
    ais: AISResult
    ais_seconds: float
    num_samples: int = 0
    importance: Evaluation | None = None
    is_seconds: float | None = None
    bdmc: BDMCResult | None = None
    bdmc_seconds: float | None = None
    simulated: Evaluation | None = None

    def to_dict(self) -> dict:
        """The estimates as ``ais --json`` writes them (dict; (mean, s.e.) pairs in nats
        per point, s.e. NaN for one point).

        The settings; ``ais``: :meth:`AISResult.summary` and ``seconds``; with
        importance sampling ``is``: ``log_px``, ``ais_minus_is`` (paired over points)
        and ``seconds``; with BDMC ``bdmc``: :meth:`BDMCResult.summary`, ``points``,
        ``seconds`` and, with importance sampling, ``forward_minus_is``.
        """
        report = {"checkpoint": self.checkpoint, "data_spec": self.data_spec,
                  "points": self.points, "start": self.start, "num_bridges": self.num_bridges,
                  "num_chains": self.num_chains, "schedule": self.schedule, "seed": self.seed,
                  "ais": {**self.ais.summary(), "seconds": self.ais_seconds}}  # fmt: skip
        if self.importance is not None:
            report["is"] = {
                "log_px": self.importance.summary()["log_px"],
                "ais_minus_is": _paired(self.ais.log_px, self.importance.values["log_px"]),
                "seconds": self.is_seconds,
            }
        if self.bdmc is not None:
            report["bdmc"] = {**self.bdmc.summary(), "points": self.bdmc.x.shape[0],
                              "seconds": self.bdmc_seconds}  # fmt: skip
            if self.simulated is not None:
                report["bdmc"]["forward_minus_is"] = _paired(
                    self.bdmc.forward.log_px, self.simulated.values["log_px"]
                )
        return report

    def __str__(self):
        """One line per estimate: nats per point ± Monte-Carlo s.e., and wall seconds."""
        report, k = self.to_dict(), self.num_samples
        s = report["ais"]
        lines = [
            f"log p(x) by AIS from the {self.start} ({self.num_bridges} bridges, "
            f"{self.num_chains} chains): {_pm(s['log_px'])} nats per point on the first "
            f"{self.points} test points; ESS {s['ess']:.1f} of {self.num_chains}, acceptance "
            f"{s['acceptance']:.2f}; {s['seconds']:.1f} s"
        ]
        if "is" in report:
            s = report["is"]
            lines.append(
                f"log p(x) by importance sampling with the guide (K={k}): {_pm(s['log_px'])}, "
                f"{_pm(s['ais_minus_is'])} nats below AIS (paired over points); "
                f"{s['seconds']:.1f} s"
            )
        if "bdmc" in report:
            s = report["bdmc"]
            lines.append(
                f"BDMC on {s['points']} points simulated from the model: forward "
                f"{_pm(s['forward'])}, reverse {_pm(s['reverse'])}, width {_pm(s['width'])} "
                f"nats per point; {s['seconds']:.1f} s"
            )
            if "forward_minus_is" in s:
                lines.append(
                    f"importance sampling (K={k}) on the simulated points is "
                    f"{_pm(s['forward_minus_is'])} nats below forward AIS"
                )
        return "\n".join(lines)


def _pm(estimate):
    """(mean, s.e.) as "mean ± s.e." (just the mean where the s.e. is NaN)."""
    mean, se = estimate
    return f"{mean:.3f} ± {se:.3f}" if math.isfinite(se) else f"{mean:.3f}"


def ais_job(
    checkpoint: str | os.PathLike,
    *,
    points: int = 100,
    num_bridges: int = 500,
    num_chains: int = 16,
    start: str = "guide",
    schedule: str = "sigmoid",
    num_samples: int = 5000,
    bdmc_points: int = 0,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
    dtype: str = "float32",
) -> CheckpointAIS:
    """log p(x) of a checkpoint's test points by AIS and by importance sampling, and the
    BDMC sandwich on points simulated from it (``pyro-vae ais``).

    Parameters
    ----------
    checkpoint : str or os.PathLike
        A checkpoint that records its data split.
    points : int, default 100
        The first test points.
    num_bridges, num_chains, start, schedule, seed, progress
        Of :func:`pyro_vae.ais` (and :func:`pyro_vae.bdmc`): bridges, chains per point,
        where the chains start, the spacing of the temperatures, seed, progress bars.
    num_samples : int, default 5000
        K of the importance-sampling estimate beside AIS (:func:`pyro_vae.evaluate`),
        0 for none.
    bdmc_points : int, default 0
        Points simulated from the model for the BDMC sandwich (0: none).
    device : str or torch.device, optional
        Where to run.
    dtype : {"float32", "float64"}, default "float32"
        Precision of the model and estimates.

    Returns
    -------
    CheckpointAIS

    Raises
    ------
    ValueError
        For a checkpoint without its data split, or ``points`` above the size of its
        test split.
    """
    vae, _, data = checkpoint_with_split(checkpoint, points)
    vae.to(device=device, dtype=DTYPES[dtype])
    x = data.test[:points].to(device=device, dtype=DTYPES[dtype])
    budget = {"num_bridges": num_bridges, "num_chains": num_chains, "schedule": schedule,
              "seed": seed, "progress": progress}  # fmt: skip
    result, seconds = _timed(lambda: ais(vae, x, start=start, **budget))
    out = CheckpointAIS(os.fspath(checkpoint), data.spec, points, start, num_bridges, num_chains,
                        schedule, seed, result, seconds, num_samples)  # fmt: skip
    if num_samples:
        out.importance, out.is_seconds = _timed(lambda: evaluate(vae, x, num_samples, seed=seed))
    if bdmc_points:
        out.bdmc, out.bdmc_seconds = _timed(lambda: bdmc(vae, bdmc_points, **budget))
        if num_samples:
            out.simulated = evaluate(vae, out.bdmc.x, num_samples, seed=seed)
    return out
