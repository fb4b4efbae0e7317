"""The jobs of ``pyro-vae train``, ``evaluate`` and ``ais``, from the parsed command line.

:func:`run_train` trains one model, resumable, by the package's own loop
(:func:`pyro_vae.fit`) or through PyTorch Lightning
(:func:`pyro_vae.train.lightning.fit_lightning`): a new run takes its data, model and
settings from the flags (:func:`pyro_vae.cli.build_parser`), a resumed one from its
checkpoint. :func:`run_evaluate` evaluates a checkpoint on a test split;
:func:`run_ais` estimates its log p(x) by AIS beside importance sampling, and runs the
BDMC sandwich on data simulated from it.
"""

import argparse
import json
import math
import os
import time

import torch

from .._device import DTYPES
from .._io import atomic_path
from ..data import dataset_from_spec, load_dataset
from ..infer.ais import ais, bdmc
from ..infer.evaluation import evaluate, mean_difference
from ..infer.objectives import parse_objective
from ..models import VAE
from ..train.config import TrainConfig
from ..train.schedules import parse_schedule
from ..train.training import fit, load_checkpoint

__all__ = [
    "LIGHTNING_STRATEGIES",
    "binarize_choice",
    "checkpoint_with_split",
    "run_ais",
    "run_evaluate",
    "run_train",
]


def binarize_choice(args: argparse.Namespace, likelihood: str | None) -> str | None:
    """The --binarize flag as a loader argument (:func:`pyro_vae.data.load_dataset`);
    unset: dynamic for a Bernoulli likelihood, none otherwise."""
    if args.binarize is None:
        return "dynamic" if likelihood == "bernoulli" else None
    return None if args.binarize == "none" else args.binarize


def _check_overwrite(args):
    """Refuse to replace an existing checkpoint unless --overwrite (or it is resumed)."""
    path = args.checkpoint
    if not os.path.exists(path) or args.overwrite:
        return
    if args.resume and os.path.samefile(path, args.resume):
        return
    raise ValueError(
        f"Expected --checkpoint to name a new file but {path!r} exists; pass --overwrite "
        "to replace it, or choose another --checkpoint"
    )


LIGHTNING_STRATEGIES = ("auto", "ddp")  # pyro_vae.train.lightning.STRATEGIES, without importing it
_LIGHTNING_FLAGS = ("strategy", "devices", "accelerator")


def _lightning_settings(args):
    """The Lightning settings of `train` (dict), or None for the package's own loop.

    Lightning trains when --strategy is given, or when --resume names a checkpoint of a
    Lightning run (whose strategy, devices and accelerator are used unless given).
    """
    given = [f"--{name}" for name in _LIGHTNING_FLAGS if getattr(args, name) is not None]
    saved = {}
    if args.resume:
        config = load_checkpoint(args.resume)[1]["fit_config"]
        if config.get("trainer") == "lightning":
            saved = {name: config.get(name) for name in _LIGHTNING_FLAGS}
        elif given:
            raise ValueError(
                f"Expected no {', '.join(given)} with --resume {args.resume!r}: it was "
                "trained by the package's own loop, which continues without Lightning"
            )
    if not given and not saved:
        return None
    if args.strategy is None and not saved:
        raise ValueError(f"Expected --strategy with {', '.join(given)} (e.g. --strategy ddp)")
    settings = {"strategy": "auto", "devices": 1, "accelerator": "auto"}
    settings.update({k: v for k, v in saved.items() if v is not None})
    settings.update({k: getattr(args, k) for k in _LIGHTNING_FLAGS if getattr(args, k) is not None})
    if settings["devices"] > 1 and settings["strategy"] != "ddp":
        raise ValueError(
            f"Expected --strategy ddp with --devices {settings['devices']} (one process per "
            f"device) but got --strategy {settings['strategy']}"
        )
    if args.gap_every:
        raise ValueError(
            f"Expected --gap-every 0 with --strategy {settings['strategy']} (the gap is "
            f"tracked by the package's own loop only) but got {args.gap_every}"
        )
    return settings


def _run_train_lightning(args, lightning):
    """`train` through PyTorch Lightning (:func:`pyro_vae.train.lightning.fit_lightning`)."""
    try:
        from ..train.lightning import fit_lightning, lightning_checkpoint_path
    except ImportError as e:
        raise ValueError(f"Expected PyTorch Lightning for --strategy: {e}") from None
    _check_overwrite(args)
    ckpt = lightning_checkpoint_path(args.checkpoint)
    if os.path.exists(ckpt) and not args.overwrite and not args.resume:
        raise ValueError(
            f"Expected --checkpoint to name a new run but Lightning's checkpoint {ckpt!r} "
            "exists; pass --overwrite to replace it, --resume to continue it, or choose "
            "another --checkpoint"
        )
    if args.resume:
        _, saved = load_checkpoint(args.resume)
        config, model = saved["fit_config"], saved["model_config"]
        if not saved.get("data_spec"):
            raise ValueError(
                f"Expected --resume to name a checkpoint written by `pyro-vae train` but "
                f"{args.resume!r} holds no data spec"
            )
        data = dataset_from_spec(saved["data_spec"])
        vae = VAE(data.x_dim, model["z_dim"], tuple(model["hidden_dims"]), model["likelihood"],
                  encoder=model.get("encoder", "diagonal"))  # fmt: skip
        loss, alpha, k = config["loss"], config["alpha"], config["num_particles"]
        settings = {key: config[key] for key in ("batch_size", "seed", "patience")}
        settings["beta"] = config.get("beta") or "1"
    else:
        loss, alpha, k = parse_objective(args.objective)
        settings = {
            "batch_size": args.batch_size,
            "seed": args.seed,
            "patience": args.patience,
            "beta": parse_schedule(args.beta),
        }
    if loss == "pyro_renyi":
        raise ValueError(
            "Expected --objective other than pyro_renyi with --strategy: Pyro's RenyiELBO has "
            "no differentiable_loss for a training step; renyi:ALPHA:K is the same bound"
        )
    devices = lightning["devices"]
    if settings["batch_size"] % devices:
        raise ValueError(
            f"Expected --batch-size to be a multiple of --devices {devices} (each process "
            f"takes batch-size / devices rows per step) but got {settings['batch_size']}"
        )
    if not args.resume:
        data = load_dataset(args.dataset, binarize_choice(args, args.likelihood), args.split_seed)
        torch.manual_seed(args.seed)
        vae = VAE(data.x_dim, args.z_dim, args.hidden_dims, args.likelihood, encoder=args.guide)
    run = fit_lightning(vae, data, **_run_settings(args, loss, alpha, k), **settings, **lightning)
    if run.global_rank != 0:
        return  # the other processes of a DDP run stay quiet
    last = run.history[run.best_epoch - 1]
    print(
        f"{run.config['objective']}: best epoch {run.best_epoch} of {len(run.history)}, "
        f"validation ELBO {last.get('val_elbo', float('nan')):.2f} nats, "
        f"{run.train_time:.1f} s ({run.cpu_time:.1f} s CPU of process 0, torch threads: "
        f"{run.num_threads}); Lightning {lightning['strategy']}, {run.world_size} "
        f"process(es) x batch {run.config['per_process_batch_size']}; checkpoint "
        f"{args.checkpoint}, Lightning's for --resume {run.lightning_checkpoint}"
    )


def _run_settings(args, loss, alpha, k):
    """The keyword arguments that `train` passes to fit_lightning."""
    return {
        "loss": loss,
        "alpha": alpha,
        "num_particles": k,
        "epochs": args.epochs,
        "lr": args.lr,
        "progress": not args.no_progress,
        "checkpoint": args.checkpoint,
        "checkpoint_every": args.checkpoint_every,
        "resume": args.resume,
    }


def run_train(args: argparse.Namespace) -> None:
    """`pyro-vae train`: train one model (resumable), by the package's loop or Lightning.

    Raises
    ------
    ValueError
        For a combination of flags that cannot run, or a checkpoint that cannot be
        replaced or resumed (named), before any training.
    """
    lightning = _lightning_settings(args)
    if lightning is not None:
        return _run_train_lightning(args, lightning)
    _check_overwrite(args)
    if args.resume:
        _, saved = load_checkpoint(args.resume)
        if not saved.get("training_state") or not saved.get("data_spec"):
            raise ValueError(
                f"Expected --resume to name a checkpoint written by `pyro-vae train` but "
                f"{args.resume!r} holds no training state or data spec"
            )
        config, model = saved["fit_config"], saved["model_config"]
        data = dataset_from_spec(saved["data_spec"])
        vae = VAE(data.x_dim, model["z_dim"], tuple(model["hidden_dims"]), model["likelihood"],
                  encoder=model.get("encoder", "diagonal"))  # fmt: skip
        loss, alpha, k = config["loss"], config["alpha"], config["num_particles"]
        settings = {
            "batch_size": config["batch_size"],
            "seed": config["seed"],
            "patience": config["patience"],
            "beta": config.get("beta") or "1",
            "gap_every": config.get("gap_every"),
        }
    else:
        loss, alpha, k = parse_objective(args.objective)
        data = load_dataset(args.dataset, binarize_choice(args, args.likelihood), args.split_seed)
        settings = {
            "batch_size": args.batch_size,
            "seed": args.seed,
            "patience": args.patience,
            "beta": parse_schedule(args.beta),
            "gap_every": args.gap_every or None,
        }
        torch.manual_seed(args.seed)
        vae = VAE(data.x_dim, args.z_dim, args.hidden_dims, args.likelihood, encoder=args.guide)
    vae.to(DTYPES[args.dtype])
    config = TrainConfig(loss=loss, alpha=alpha, num_particles=k, epochs=args.epochs, lr=args.lr,
                         progress=not args.no_progress, device=args.device, **settings)  # fmt: skip
    run = fit(vae, data, config, checkpoint=args.checkpoint,
              checkpoint_every=args.checkpoint_every, resume=args.resume)  # fmt: skip
    last = run.history[run.best_epoch - 1]
    print(
        f"{run.config['objective']}: best epoch {run.best_epoch} of {len(run.history)}, "
        f"validation ELBO {last.get('val_elbo', float('nan')):.2f} nats, "
        f"{run.train_time:.1f} s ({run.cpu_time:.1f} s CPU, torch threads: "
        f"{run.num_threads}); checkpoint {args.checkpoint}"
    )


def _evaluation_data(args, saved):
    """The test split to evaluate on: the checkpoint's own unless --dataset is given."""
    if args.dataset is None:
        if args.binarize is not None or args.split_seed is not None:
            raise ValueError("Expected --binarize and --split-seed only with --dataset")
        if not saved.get("data_spec"):
            raise ValueError(
                f"Expected checkpoint {args.checkpoint!r} to record its data split; "
                "name the test data with --dataset (and --split-seed)"
            )
        return dataset_from_spec(saved["data_spec"])
    if args.binarize is None:
        binarize = None
        if saved["model_config"].get("likelihood") == "bernoulli":
            trained_on = (saved.get("data_spec") or {}).get("binarize")
            binarize = "threshold" if trained_on == "threshold" else "static"
    else:
        binarize = binarize_choice(args, None)
    return load_dataset(args.dataset, binarize, args.split_seed or 0)


def run_evaluate(args: argparse.Namespace) -> None:
    """`pyro-vae evaluate`: a checkpoint's test-set estimates, printed (and as JSON).

    Raises
    ------
    ValueError
        For --binarize or --split-seed without --dataset, or a checkpoint without its
        data split and no --dataset.
    """
    vae, saved = load_checkpoint(args.checkpoint)
    vae.to(DTYPES[args.dtype])
    data = _evaluation_data(args, saved)
    start = time.perf_counter()
    result = evaluate(
        vae, data.test, args.num_samples, ks=(5, 50), seed=args.seed, device=args.device
    )
    summary = result.summary()
    print(summary)
    spec = data.spec
    unreliable = int(result.unreliable().sum())
    print(
        f"nats per test point ({len(data.test)} points of {spec['dataset']}, split seed "
        f"{spec['split_seed']}, K={args.num_samples}); test points with Pareto k̂ > 0.7: "
        f"{unreliable}; {time.perf_counter() - start:.1f} s"
    )
    if args.json:
        with atomic_path(args.json) as tmp, open(tmp, "w") as f:
            finite = {
                k: {
                    "mean": m if math.isfinite(m) else None,
                    "se": s if math.isfinite(s) else None,
                }
                for k, (m, s) in summary.items()
            }
            finite["data_spec"] = spec
            finite["khat_unreliable"] = unreliable
            json.dump(finite, f, indent=2)


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


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _paired(a, b):
    """Mean and s.e. over points of a − b (:func:`mean_difference`; s.e. NaN for one point)."""
    if a.numel() < 2:
        return (a - b).mean().item(), math.nan
    return mean_difference(a, b)


def _pm(estimate):
    mean, se = estimate
    return f"{mean:.3f} ± {se:.3f}" if math.isfinite(se) else f"{mean:.3f}"


def run_ais(args: argparse.Namespace) -> None:
    """`pyro-vae ais`: log p(x) of a checkpoint's test points by AIS and by importance
    sampling, and with ``--bdmc N`` the BDMC sandwich on N points simulated from it.

    Prints one line per estimate (nats per point, ± Monte-Carlo s.e., wall seconds) and,
    with ``--json``, writes them (atomically).

    Raises
    ------
    ValueError
        For a checkpoint without its data split, or ``--points`` above the size of its
        test split.
    """
    vae, saved, data = checkpoint_with_split(args.checkpoint, args.points)
    vae.to(device=args.device, dtype=DTYPES[args.dtype])
    x = data.test[: args.points].to(device=args.device, dtype=DTYPES[args.dtype])
    budget = {"num_steps": args.num_steps, "num_chains": args.chains,
              "schedule": args.schedule, "seed": args.seed,
              "progress": not args.no_progress}  # fmt: skip
    settings = {k: v for k, v in budget.items() if k != "progress"}
    report = {"checkpoint": args.checkpoint, "data_spec": data.spec, "points": args.points,
              "start": args.start, **settings}  # fmt: skip
    result, seconds = _timed(lambda: ais(vae, x, start=args.start, **budget))
    summary = result.summary()
    report["ais"] = {**summary, "seconds": seconds}
    print(
        f"log p(x) by AIS from the {args.start} ({args.num_steps} bridges, {args.chains} "
        f"chains): {_pm(summary['log_px'])} nats per point on the first {args.points} test "
        f"points; ESS {summary['ess']:.1f} of {args.chains}, acceptance "
        f"{summary['acceptance']:.2f}; {seconds:.1f} s"
    )
    if args.num_samples:
        test, is_seconds = _timed(lambda: evaluate(vae, x, args.num_samples, seed=args.seed))
        below = _paired(result.log_px, test.values["log_px"])
        report["is"] = {"log_px": test.summary()["log_px"], "ais_minus_is": below,
                        "seconds": is_seconds}  # fmt: skip
        print(
            f"log p(x) by importance sampling with the guide (K={args.num_samples}): "
            f"{_pm(test.summary()['log_px'])}, {_pm(below)} nats below AIS (paired over "
            f"points); {is_seconds:.1f} s"
        )
    if args.bdmc:
        sandwich, bdmc_seconds = _timed(lambda: bdmc(vae, args.bdmc, **budget))
        report["bdmc"] = {**sandwich.summary(), "points": args.bdmc, "seconds": bdmc_seconds}
        s = report["bdmc"]
        print(
            f"BDMC on {args.bdmc} points simulated from the model: forward "
            f"{_pm(s['forward'])}, reverse {_pm(s['reverse'])}, width {_pm(s['width'])} "
            f"nats per point; {bdmc_seconds:.1f} s"
        )
        if args.num_samples:
            simulated = evaluate(vae, sandwich.x, args.num_samples, seed=args.seed)
            below = _paired(sandwich.forward.log_px, simulated.values["log_px"])
            s["forward_minus_is"] = below
            print(
                f"importance sampling (K={args.num_samples}) on the simulated points is "
                f"{_pm(below)} nats below forward AIS"
            )
    if args.json:
        with atomic_path(args.json) as tmp, open(tmp, "w") as f:
            json.dump(report, f, indent=2)
