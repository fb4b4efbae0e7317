"""Command line: ``pyro-vae compare``, ``train``, ``evaluate`` and ``posterior``.

Arguments are validated before any work starts; a bad one ends the command with a
one-line error naming it (exit status 2) and nothing written. The package's own
warnings are shown; Pyro's deprecation chatter is not.
"""

import argparse
import json
import math
import os
import re
import sys
import time
import warnings

import numpy as np
import torch

from ._device import DTYPES, check_device, default_device
from ._io import atomic_path
from ._threads import DEFAULT_THREADS
from .data import dataset_from_spec, load_dataset
from .experiments.compare import (
    DEFAULT_OBJECTIVES,
    available_cores,
    check_guide,
    compare,
    summarize_agreement,
)
from .infer.evaluation import evaluate
from .infer.objectives import OBJECTIVE_GRAMMAR, parse_objective
from .models.vae import LIKELIHOODS, VAE
from .train.schedules import SCHEDULE_GRAMMAR, parse_schedule
from .train.training import DEFAULT_LR, fit, load_checkpoint

__all__ = ["main"]

DEFAULTS = {"epochs": 800, "patience": 100}
MIN_SAMPLES = 100
"""Smallest K: two groups of 50 draws, for the standard error of the IWAE-50 bound."""


class _FORMATTER(argparse.ArgumentDefaultsHelpFormatter):
    """Every default in ``--help``; an option without one (None) explains itself."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer > 0, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected an integer > 0, got {value}")
    return value


def _num_samples(text):
    value = _positive_int(text)
    if value < MIN_SAMPLES:
        raise argparse.ArgumentTypeError(
            f"expected K >= {MIN_SAMPLES} (two groups of 50 for the IWAE-50 standard "
            f"error), got {value}"
        )
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value}")
    return value


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _int_list(text):
    return tuple(_positive_int(part) for part in text.split(","))


_NUM_SAMPLES_HELP = (
    "K, importance samples per test point for log p(x) (the IS estimate L_K with the "
    "guide as proposal; Burda et al. 2016 use 5000); at least "
    f"{MIN_SAMPLES}, two groups of 50 for the IWAE-50 standard error"
)


def _add_threads(parser):
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=DEFAULT_THREADS,
        help="torch threads; one is as fast as two for networks this small on an idle "
        "machine and far steadier when other processes compete for the cores "
        "(benchmarks/bench_threads.py)",
    )


def _device(text):
    """--device: 'cpu', 'cuda' or 'cuda:N' where PyTorch sees that GPU."""
    try:
        return str(check_device(text, "--device"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_device(parser, what="train and evaluate"):
    parser.add_argument(
        "--device",
        type=_device,
        default=default_device(),
        help=f"where to {what}: 'cpu', 'cuda' or 'cuda:N' (default: CUDA when PyTorch "
        "sees a GPU, else cpu)",
    )
    parser.add_argument(
        "--dtype",
        choices=tuple(DTYPES),
        default="float32",
        help="precision of the parameters and estimates (float64 for closed-form checks; "
        "half precision is not offered: the estimators need float32 at least)",
    )


def _add_common(parser):
    parser.add_argument(
        "--dataset",
        default="digits",
        help="'digits' (bundled UCI digits, 8x8), 'mnist:PATH' (local IDX files) or a "
        ".npy/.npz/.csv file (rows = data points; a CSV header row is skipped)",
    )
    parser.add_argument(
        "--binarize",
        choices=("dynamic", "static", "none"),
        help="binarization of the data: 'dynamic' redraws the training images every "
        "epoch, 'static' draws once (validation and test are always static unless "
        "'none'); default: dynamic for --likelihood bernoulli, none otherwise",
    )
    parser.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="seed of the train/validation/test split and its static binarization",
    )
    _add_threads(parser)


def _add_training(parser):
    parser.add_argument("--epochs", type=_positive_int, default=DEFAULTS["epochs"],
                        help="most epochs per run")  # fmt: skip
    parser.add_argument(
        "--patience",
        type=_positive_int,
        default=DEFAULTS["patience"],
        help="stop after this many epochs without a better validation IWAE-50 bound",
    )
    parser.add_argument("--z-dim", type=_positive_int, default=8, help="latent dimension")
    parser.add_argument(
        "--hidden-dims",
        type=_int_list,
        default="256",
        help="comma-separated hidden layer widths of encoder and decoder, e.g. 256,128",
    )
    parser.add_argument(
        "--likelihood",
        choices=LIKELIHOODS,
        default="bernoulli",
        help="p(x|z): bernoulli (binary data), continuous_bernoulli (intensities in "
        "[0, 1]) or gaussian (real-valued data, learned per-pixel scale)",
    )
    parser.add_argument("--batch-size", type=_positive_int, default=128, help="minibatch size")
    parser.add_argument(
        "--lr",
        type=_positive_float,
        help=f"Adam learning rate (default {DEFAULT_LR:g}; train --resume: the saved one)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed: initialization, shuffling, binarization and z draws; the "
        "same seed gives the same numbers; does not move the test set",
    )


def build_parser():
    """The ``pyro-vae`` argument parser (argparse.ArgumentParser)."""
    parser = argparse.ArgumentParser(
        prog="pyro-vae",
        description="Variational autoencoders in Pyro: compare ELBO, IWAE and Rényi "
        "bounds against held-out log p(x).",
        formatter_class=_FORMATTER,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compare", help="train one VAE per objective and compare them",
                       formatter_class=_FORMATTER)  # fmt: skip
    _add_common(p)
    _add_training(p)
    _add_device(p)
    p.add_argument(
        "--objectives",
        default=",".join(DEFAULT_OBJECTIVES),
        help=f"comma-separated objective specs: {OBJECTIVE_GRAMMAR}",
    )
    p.add_argument("--num-samples", type=_num_samples, default=5000, help=_NUM_SAMPLES_HELP)
    p.add_argument(
        "--seeds",
        type=_positive_int,
        default=1,
        help="train each objective with this many training seeds (--seed, --seed+1, ...) "
        "and report mean ± s.d. across them",
    )
    p.add_argument(
        "--posterior-points",
        type=_non_negative_int,
        default=16,
        help="test points on which each guide is checked against HMC draws of the exact "
        "posterior (0 skips the check)",
    )
    p.add_argument(
        "--gap-every",
        type=_non_negative_int,
        default=25,
        help="every this many epochs, estimate log p(x), the ELBO and their gap on 100 "
        "validation points (K=500) for the gap-during-training figure (0 turns it off)",
    )
    p.add_argument(
        "--beta-schedules",
        help="comma-separated KL-weight schedules under which --beta-objective is also "
        f"trained (first seed), e.g. 0,0.5,1,4,warmup:100; each one of: {SCHEDULE_GRAMMAR}",
    )
    p.add_argument(
        "--beta-objective",
        help="objective spec of the --beta-schedules runs (default: the first of --objectives)",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        help="processes that train and evaluate the runs (one per objective and seed, one "
        "per β schedule) side by side, each with --threads torch threads; the numbers are "
        "the same as with 1 (default: the number of CPU cores this process may use, "
        "capped at the number of runs)",
    )
    p.add_argument(
        "--out",
        default="results",
        help="output folder; figures a previous run recorded there and this run does "
        "not write are removed, nothing else",
    )

    p = sub.add_parser("train", help="train one VAE and save a checkpoint",
                       formatter_class=_FORMATTER)  # fmt: skip
    _add_common(p)
    _add_training(p)
    _add_device(p, "train (without --strategy: Lightning runs use --accelerator)")
    p.add_argument("--objective", default="trace",
                   help=f"one objective spec: {OBJECTIVE_GRAMMAR}")  # fmt: skip
    p.add_argument("--checkpoint", default="vae.pt", help="where to write the checkpoint")
    p.add_argument(
        "--beta",
        default="1",
        help=f"KL weight β or its schedule over the epochs, one of: {SCHEDULE_GRAMMAR}",
    )
    p.add_argument(
        "--gap-every",
        type=_non_negative_int,
        default=0,
        help="every this many epochs, record log p(x), the ELBO and their gap on 100 "
        "validation points in the checkpoint's history (0: off)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --checkpoint file (otherwise an existing file is an "
        "error, except the one being resumed)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        help="also write the checkpoint every this many epochs (for --resume)",
    )
    p.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="continue an interrupted run from its checkpoint: its data split, model and "
        "training settings are used; --epochs sets the total, --lr replaces the saved "
        "learning rate only if given; a run trained with --strategy continues from its "
        "Lightning checkpoint (with its strategy, devices and accelerator unless given)",
    )
    p.add_argument(
        "--strategy",
        choices=LIGHTNING_STRATEGIES,
        help="train through PyTorch Lightning (the optional extra: pip install "
        "\"pyro-vae[lightning]\"): 'ddp' runs --devices processes, on GPUs or on CPU "
        "(--accelerator cpu, gloo), averaging their gradients every step; 'auto' runs "
        "one device. --batch-size stays the effective minibatch B: each process takes "
        "B/devices rows per step with the minibatch scale N/B of the whole training set, "
        "so the steps per epoch and the learning rate are those of one process "
        "(docs/scale.md). Lightning's checkpoint, for --resume, goes to "
        "CHECKPOINT_STEM_lightning/last.ckpt. Default: the package's own training loop",
    )
    p.add_argument(
        "--devices",
        type=_positive_int,
        help="with --strategy: number of devices, one process each (default 1; more "
        "than 1 needs --strategy ddp and a --batch-size divisible by it)",
    )
    p.add_argument(
        "--accelerator",
        choices=("auto", "cpu", "gpu"),
        help="with --strategy: Lightning's accelerator (default auto: GPUs if there are any)",
    )

    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on the test split it was trained with",
        formatter_class=_FORMATTER,
    )
    p.add_argument("checkpoint", help="a checkpoint written by `pyro-vae train`")
    p.add_argument(
        "--dataset",
        help="evaluate on this data set's test split instead of the checkpoint's "
        "('digits', 'mnist:PATH' or a .npy/.npz/.csv file)",
    )
    p.add_argument(
        "--binarize",
        choices=("dynamic", "static", "none"),
        help="with --dataset: binarization of its test split (test data are binarized "
        "once, statically; 'none' keeps real values); default: static for a Bernoulli "
        "checkpoint, none otherwise",
    )
    p.add_argument("--split-seed", type=int, help="with --dataset: the split's seed (0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the importance samples")
    p.add_argument("--num-samples", type=_num_samples, default=5000, help=_NUM_SAMPLES_HELP)
    p.add_argument("--json", help="also write the summary to this JSON file")
    _add_threads(p)
    _add_device(p, "evaluate")

    p = sub.add_parser(
        "posterior",
        help="check a checkpoint's guide against HMC draws of the exact posterior",
        formatter_class=_FORMATTER,
    )
    p.add_argument("checkpoint", help="a checkpoint written by `pyro-vae train`")
    p.add_argument("--points", type=_positive_int, default=16, help="first test points")
    p.add_argument("--num-samples", type=_positive_int, default=1000, help="draws per chain")
    p.add_argument("--warmup-steps", type=_positive_int, default=500,
                   help="HMC adaptation steps per chain")  # fmt: skip
    p.add_argument("--chains", type=_positive_int, default=4, help="HMC chains per point")
    p.add_argument("--seed", type=int, default=0, help="seed of the chains and guide draws")
    p.add_argument("--out", default="posterior", help="output folder")
    _add_threads(p)
    _add_device(p, "run the chains")
    return parser


def _binarize(args, likelihood):
    """The --binarize choice as a loader argument; unset: by likelihood."""
    if args.binarize is None:
        return "dynamic" if likelihood == "bernoulli" else None
    return None if args.binarize == "none" else args.binarize


def _slug(label):
    """A file-name part for an objective label, e.g. ``RenyiELBO_alpha_-0.5_K_5``.

    Letters, digits, ``.`` and ``-`` are kept (so α = 0.5 and α = −0.5 differ).
    """
    return re.sub(r"[^A-Za-z0-9.\-]+", "_", label).strip("_")


def _slugs(labels):
    """Distinct file-name parts for distinct labels (a suffix where two would collide)."""
    out, seen = {}, set()
    for label in labels:
        slug = base = _slug(label) or "objective"
        i = 2
        while slug in seen:
            slug, i = f"{base}_{i}", i + 1
        seen.add(slug)
        out[label] = slug
    return out


def _run_compare(args):
    from .experiments import report
    from .viz import plots

    specs = [s for s in args.objectives.split(",") if s.strip()]
    for spec in specs:
        parse_objective(spec)
    schedules = [s for s in (args.beta_schedules or "").split(",") if s.strip()]
    for spec in schedules:
        parse_schedule(spec)
    data = load_dataset(args.dataset, _binarize(args, args.likelihood), args.split_seed)
    result = compare(
        data,
        objectives=specs,
        epochs=args.epochs,
        z_dim=args.z_dim,
        hidden_dims=args.hidden_dims,
        likelihood=args.likelihood,
        batch_size=args.batch_size,
        lr=args.lr or DEFAULT_LR,
        patience=args.patience,
        num_samples=args.num_samples,
        seeds=range(args.seed, args.seed + args.seeds),
        posterior_points=args.posterior_points,
        progress=not args.no_progress,
        num_threads=args.threads,
        gap_every=args.gap_every or None,
        beta_schedules=schedules,
        beta_objective=args.beta_objective,
        workers=args.workers or available_cores(),
        device=args.device,
        dtype=args.dtype,
    )
    out = args.out
    best_epochs = {row["objective"]: row["best_epoch"][0] for row in result.rows}
    figures = [
        (
            "validation_curves.png",
            "Validation bounds per epoch (solid L_50, dashed ELBO; star: best epoch)",
            plots.plot_validation_curves(result.histories, best_epochs=best_epochs),
        ),
        (
            "bounds.png",
            "Test-set bounds L_k against k, and their distance below log p(x) (±2 MC s.e.)",
            plots.plot_bounds(result.rows, num_samples=args.num_samples),
        ),
    ]
    slugs = _slugs(result.models)
    figures += _anatomy_figures(result)
    if data.image_shape is not None:
        x = data.test[:10]
        recon_title = "reconstructions: decoder mean at one draw z ~ q(z|x)"
        reconstructions = {label: vae.reconstruct(x) for label, vae in result.models.items()}
        figures.append(
            (
                "reconstructions.png",
                "Reconstructions (top: test data; one row per objective)",
                plots.plot_reconstructions(x, reconstructions, data.image_shape, title=recon_title),
            )
        )
        if result.beta_models:
            figures.append(
                (
                    "reconstructions_beta.png",
                    "Reconstructions under each β schedule (top: test data)",
                    plots.plot_reconstructions(
                        x,
                        {label: vae.reconstruct(x) for label, vae in result.beta_models.items()},
                        data.image_shape,
                        title=f"β schedules, {result.meta['beta_objective']}: " + recon_title,
                    ),
                )
            )
        for label, vae in result.models.items():
            figures.append(
                (
                    f"samples_{slugs[label]}.png",
                    f"Samples from the model: {label}",
                    plots.plot_image_grid(
                        vae.sample(40),
                        data.image_shape,
                        nrows=4,
                        title=f"decoder means at z ~ p(z): {label}",
                    ),
                )
            )
    else:
        print(
            f"no image figures: the data's {data.x_dim} columns are not a square image "
            "(reconstructions, samples and latent maps are drawn for images only)"
        )
    for label, check in result.checks.items():
        for name, fig in _posterior_figures(check, data, slugs[label]).items():
            caption = "Latent map" if name.startswith("latent_map") else "Posterior vs guide"
            figures.append((name, f"{caption}: {label}", fig))
    for name, _, fig in figures:
        plots.save_figure(fig, os.path.join(out, name))
    meta = {**result.meta, "image_shape": data.image_shape}
    report.write_results(
        out,
        result.rows,
        result.histories,
        meta,
        result.pairs,
        result.agreement,
        figures=[(name, caption) for name, caption, _ in figures],
        beta_rows=result.beta_rows,
    )
    print(report.format_table(result.rows, num_samples=args.num_samples))
    print("the ELBO three ways (nats per test point):")
    print(report.format_decompositions(result.rows))
    print("ELBO surgery and active units:")
    print(report.format_surgery(result.rows, len(data.test)))
    if result.beta_rows:
        print(f"β schedules ({result.meta['beta_objective']}):")
        print(report.format_beta_table(result.beta_rows))
    print("paired differences on the same test points (± s.e. over points):")
    print(report.format_pairs(result.pairs))
    if result.agreement:
        print("guide vs exact posterior (medians over the checked test points):")
        print(report.format_agreement(result.agreement))
    for line in report.takeaways(result.rows, result.pairs):
        print("- " + line.replace("**", ""))
    print(
        f"wall time {result.meta['wall_time_s']:.0f} s ({result.meta['cpu_time_s']:.0f} s "
        f"CPU, torch threads: {result.meta['torch_threads']}, workers: "
        f"{result.meta['workers']}); results in {out}/"
    )


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


def _anatomy_figures(result):
    """Aggregate posterior, active units, the gap during training and the β summary."""
    from .viz import anatomy_plots

    rows = result.rows
    figures = [
        (
            "aggregate_posterior.png",
            "Aggregate posterior q(z) against the prior p(z)",
            anatomy_plots.plot_aggregate_posterior(
                {label: z.cpu() for label, z in result.aggregate.items()}
            ),
        ),
        (
            "active_units.png",
            "Activity and KL per latent dimension (active units: A_d > 0.01)",
            anatomy_plots.plot_active_units(
                {row["objective"]: row["activity"] for row in rows},
                {row["objective"]: row["kl_per_dim"] for row in rows},
            ),
        ),
    ]
    if any("gap" in record for history in result.histories.values() for record in history):
        figures.append(
            (
                "gap_during_training.png",
                "log p(x), ELBO and their gap during training (validation subset)",
                anatomy_plots.plot_gap_during_training(result.histories),
            )
        )
    if result.beta_rows:
        figures.append(
            (
                "beta_schedules.png",
                "β schedules: bounds, rate–distortion and active units",
                anatomy_plots.plot_beta_schedules(result.beta_rows),
            )
        )
        figures.append(
            (
                "active_units_beta.png",
                "Activity and KL per latent dimension under each β schedule",
                anatomy_plots.plot_active_units(
                    {row["schedule"]: row["activity"] for row in result.beta_rows},
                    {row["schedule"]: row["kl_per_dim"] for row in result.beta_rows},
                ),
            )
        )
    return figures


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
        from .train.lightning import fit_lightning, lightning_checkpoint_path
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
        vae = VAE(data.x_dim, model["z_dim"], tuple(model["hidden_dims"]), model["likelihood"])
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
        data = load_dataset(args.dataset, _binarize(args, args.likelihood), args.split_seed)
        torch.manual_seed(args.seed)
        vae = VAE(data.x_dim, args.z_dim, args.hidden_dims, args.likelihood)
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
    """The keyword arguments that `train` passes to fit and to fit_lightning alike."""
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


def _run_train(args):
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
        vae = VAE(data.x_dim, model["z_dim"], tuple(model["hidden_dims"]), model["likelihood"])
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
        data = load_dataset(args.dataset, _binarize(args, args.likelihood), args.split_seed)
        settings = {
            "batch_size": args.batch_size,
            "seed": args.seed,
            "patience": args.patience,
            "beta": parse_schedule(args.beta),
            "gap_every": args.gap_every or None,
        }
        torch.manual_seed(args.seed)
        vae = VAE(data.x_dim, args.z_dim, args.hidden_dims, args.likelihood)
    vae.to(DTYPES[args.dtype])
    run = fit(vae, data, device=args.device, **_run_settings(args, loss, alpha, k), **settings)
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
        binarize = "static" if saved["model_config"].get("likelihood") == "bernoulli" else None
    else:
        binarize = _binarize(args, None)
    return load_dataset(args.dataset, binarize, args.split_seed or 0)


def _run_evaluate(args):
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


def _posterior_figures(check, data, slug, num_points=4):
    """Figures of one guide check: draws in the latent plane, and the 2-D latent map."""
    from .infer.quadrature import log_joint_grid
    from .viz import plots

    n = min(num_points, check.posterior.posterior.sizes["datum"])
    reference = _draws(check.posterior, n)
    guide = _draws(check.guide, n)
    x = data.test[:n]
    density = None
    if check.exact is not None and reference.shape[-1] == 2:
        lows = np.minimum(reference.min((0, 1)), guide.min((0, 1)))
        highs = np.maximum(reference.max((0, 1)), guide.max((0, 1)))
        grids = [np.linspace(lo, hi, 81) for lo, hi in zip(lows, highs, strict=True)]
        density = (*grids, log_joint_grid(check.vae, x, *grids).cpu().numpy())
    figures = {
        f"posterior_{slug}.png": plots.plot_posterior_draws(
            reference, guide, x if data.image_shape else None, data.image_shape, density
        )
    }
    if check.vae.z_dim == 2 and data.image_shape is not None:
        means = check.vae.encode(data.test).mean
        low, high = means.min(0).values - 0.5, means.max(0).values + 0.5
        side = 15
        z0, z1 = (torch.linspace(lo, hi, side) for lo, hi in zip(low, high, strict=True))
        # rows from the top: z[1] decreasing; columns: z[0] increasing
        grid = torch.stack(torch.meshgrid(z1.flip(0), z0, indexing="ij"), -1).flip(-1)
        decoded = check.vae.decode(grid.reshape(-1, 2).to(means.dtype))
        labels = data.labels["test"] if data.labels else None
        extent = (low[0].item(), high[0].item(), low[1].item(), high[1].item())
        figures[f"latent_map_{slug}.png"] = plots.plot_latent_map(
            means, labels, decoded, data.image_shape, extent
        )
    return figures


def _draws(idata, n):
    """Draws of z for the first n data points as an array (S, n, D)."""
    z = idata.posterior["z"].isel(datum=slice(0, n))
    return z.stack(sample=("chain", "draw")).transpose("sample", "datum", "latent").values


def _run_posterior(args):
    from .experiments import report
    from .viz import plots

    vae, saved = load_checkpoint(args.checkpoint)
    if not saved.get("data_spec"):
        raise ValueError(f"Expected checkpoint {args.checkpoint!r} to record its data split")
    data = dataset_from_spec(saved["data_spec"])
    x = data.test[: args.points]
    vae.to(DTYPES[args.dtype])
    check = check_guide(
        vae, x, args.num_samples, args.warmup_steps, args.chains, args.seed, args.device
    )
    vae.cpu()  # the figures read tensors on the host
    out = args.out
    os.makedirs(out, exist_ok=True)
    for name, idata in (("posterior.nc", check.posterior), ("guide.nc", check.guide)):
        with atomic_path(os.path.join(out, name)) as tmp:
            idata.to_netcdf(tmp)
    with atomic_path(os.path.join(out, "agreement.csv")) as tmp:
        check.table.to_csv(tmp, index_label="datum")
    for name, fig in _posterior_figures(check, data, "guide", num_points=4).items():
        plots.save_figure(fig, os.path.join(out, name))
    summary = {"objective": saved["fit_config"].get("objective", "?"),
               **summarize_agreement(check.table)}  # fmt: skip
    print(report.format_agreement([summary]))
    print(f"{len(x)} test points; draws and agreement table in {out}/")


def main(argv=None):
    """Entry point of the ``pyro-vae`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    runners = {
        "compare": _run_compare,
        "train": _run_train,
        "evaluate": _run_evaluate,
        "posterior": _run_posterior,
    }
    torch.set_num_threads(args.threads)
    try:
        with warnings.catch_warnings():
            # Pyro's own deprecation notices only; pyro_vae's warnings stay visible.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pyro\.")
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"pyro\.")
            runners[args.command](args)
    except (ValueError, FileNotFoundError) as e:
        parser.exit(2, f"pyro-vae {args.command}: error: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
