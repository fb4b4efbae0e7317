"""Command line: ``pyro-vae compare``, ``train``, ``evaluate`` and ``posterior``.

Arguments are validated before any work starts; a bad one ends the command with a
one-line error naming it (exit status 2) and nothing written. The package's own
warnings are shown; Pyro's deprecation chatter is not.
"""

import argparse
import os
import sys
import warnings

import torch

from ._device import DTYPES, check_device, default_device
from ._io import atomic_path
from ._version import __version__
from .data import load_dataset
from .experiments.compare import (
    AIS_STEPS,
    BDMC_POINTS,
    DEFAULT_OBJECTIVES,
    GAP_EVERY,
    GAP_MAX_STEPS,
    compare,
)
from .experiments.figures import posterior_figures, save_figure
from .experiments.guide_check import check_guide, summarize_agreement
from .experiments.jobs import (
    LIGHTNING_STRATEGIES,
    binarize_choice,
    checkpoint_with_split,
    run_ais,
    run_evaluate,
    run_train,
)
from .experiments.report import format_agreement
from .experiments.workers import available_cores
from .infer.ais import SCHEDULES, STARTS
from .infer.objectives import OBJECTIVE_GRAMMAR, parse_objective
from .models import LIKELIHOODS
from .models.flows import GUIDE_GRAMMAR, parse_guide
from .train.config import DEFAULT_LR, MAIN_JOB
from .train.schedules import SCHEDULE_GRAMMAR, parse_schedule

__all__ = ["main"]

MIN_SAMPLES = 100
"""Smallest K: two groups of 50 draws, for the standard error of the IWAE-50 bound."""


class _Parser(argparse.ArgumentParser):
    """Every default in ``--help``, once.

    An option whose help already says its default, or whose default is None, a bool
    or suppressed, is left as written; any other gets "(default: ...)". Subcommand parsers
    are of this class too (``add_subparsers`` builds them with the parent's class).
    """

    def add_argument(self, *args, **kwargs):
        default, help = kwargs.get("default"), kwargs.get("help")
        quiet = default is None or default is argparse.SUPPRESS or isinstance(default, bool)
        if help and not quiet and "(default" not in help and "default:" not in help:
            kwargs["help"] = f"{help} (default: %(default)s)"
        return super().add_argument(*args, **kwargs)


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


def _ais_num_samples(text):
    """`ais --num-samples`: 0 (no importance-sampling estimate) or K >= 2."""
    value = _non_negative_int(text)
    if value == 1:
        raise argparse.ArgumentTypeError(
            "expected 0 (no importance-sampling estimate) or K >= 2 importance samples per "
            "point (one gives no standard error), got 1; use --num-samples 5000, or 0"
        )
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
        default=MAIN_JOB.num_threads,
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
        help="'digits' (bundled UCI digits, 8x8), 'fashion-mnist' (28x28, Debian's "
        "dataset-fashion-mnist package; 'fashion-mnist:PATH' for another folder), "
        "'mnist:PATH' (local IDX files) or a "
        ".npy/.npz/.csv file (rows = data points; a CSV header row is skipped)",
    )
    parser.add_argument(
        "--binarize",
        choices=("dynamic", "static", "threshold", "none"),
        help="binarization of the data: 'dynamic' redraws the training images every "
        "epoch, 'static' draws once (validation and test are always static unless "
        "'none'), 'threshold' sets 1[intensity > 0.5] on every split (Cremer et al. "
        "2018); default: dynamic for --likelihood bernoulli, none otherwise",
    )
    parser.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="seed of the train/validation/test split and its static binarization",
    )
    _add_threads(parser)


def _add_training(parser):
    parser.add_argument("--epochs", type=_positive_int, default=MAIN_JOB.epochs,
                        help="most epochs per run")  # fmt: skip
    parser.add_argument(
        "--patience",
        type=_positive_int,
        default=MAIN_JOB.patience,
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
    parser.add_argument("--batch-size", type=_positive_int, default=MAIN_JOB.batch_size,
                        help="minibatch size")  # fmt: skip
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
    parser = _Parser(
        prog="pyro-vae",
        description="Variational autoencoders in Pyro: compare ELBO, IWAE and Rényi "
        "bounds against held-out log p(x).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compare", help="train one VAE per objective and compare them")  # fmt: skip
    _add_common(p)
    _add_training(p)
    _add_device(p)
    p.add_argument(
        "--objectives",
        default=",".join(DEFAULT_OBJECTIVES),
        help=f"comma-separated objective specs: {OBJECTIVE_GRAMMAR}",
    )
    p.add_argument(
        "--guides",
        type=_guides,
        default="diagonal",
        help=f"comma-separated amortized guides, each objective trained with each: {GUIDE_GRAMMAR}",
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
        "--gap-families",
        default="diagonal,flow",
        help="comma-separated per-point guide families fitted on the --posterior-points "
        "to split each gap into approximation and amortization gaps (diagonal, flow; "
        "'none' skips the split)",
    )
    p.add_argument(
        "--gap-max-steps",
        type=_positive_int,
        default=GAP_MAX_STEPS,
        help="most Adam steps of each per-point guide fit of the gap split",
    )
    p.add_argument(
        "--ais-steps",
        type=_non_negative_int,
        default=AIS_STEPS,
        help="bridges of AIS from each guide on the --posterior-points (the log p(x) (AIS) "
        "column) and of the BDMC sandwich (0 skips both)",
    )
    p.add_argument(
        "--bdmc-points",
        type=_non_negative_int,
        default=BDMC_POINTS,
        help="points simulated from the first objective's model for the BDMC sandwich (0 skips it)",
    )
    p.add_argument(
        "--gap-every",
        type=_non_negative_int,
        default=GAP_EVERY,
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

    p = sub.add_parser("train", help="train one VAE and save a checkpoint")  # fmt: skip
    _add_common(p)
    _add_training(p)
    _add_device(p, "train (without --strategy: Lightning runs use --accelerator)")
    p.add_argument("--objective", default="trace",
                   help=f"one objective spec: {OBJECTIVE_GRAMMAR}")  # fmt: skip
    p.add_argument("--guide", type=_guide, default="diagonal",
                   help=f"the amortized guide: {GUIDE_GRAMMAR}")  # fmt: skip
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
    )
    p.add_argument("checkpoint", help="a checkpoint written by `pyro-vae train`")
    p.add_argument(
        "--dataset",
        help="evaluate on this data set's test split instead of the checkpoint's "
        "('digits', 'fashion-mnist[:PATH]', 'mnist:PATH' or a .npy/.npz/.csv file)",
    )
    p.add_argument(
        "--binarize",
        choices=("dynamic", "static", "threshold", "none"),
        help="with --dataset: binarization of its test split (test data are binarized "
        "once, statically; 'threshold' as 1[intensity > 0.5]; 'none' keeps real values); "
        "default: threshold for a Bernoulli checkpoint trained on thresholded data, static "
        "for another Bernoulli checkpoint, none otherwise",
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

    p = sub.add_parser(
        "ais",
        help="a checkpoint's log p(x) by annealed importance sampling, beside importance "
        "sampling, and the BDMC sandwich on data simulated from it",
    )
    p.add_argument("checkpoint", help="a checkpoint written by `pyro-vae train`")
    p.add_argument("--points", type=_positive_int, default=100, help="first test points")
    p.add_argument("--num-steps", type=_positive_int, default=500,
                   help="AIS bridges (intermediate distributions) per chain")  # fmt: skip
    p.add_argument("--chains", type=_positive_int, default=16, help="AIS chains per point")
    p.add_argument("--start", choices=STARTS, default="guide",
                   help="where the chains start: the guide q(z|x) or the prior")  # fmt: skip
    p.add_argument("--schedule", choices=SCHEDULES, default="sigmoid",
                   help="spacing of the bridges' inverse temperatures")  # fmt: skip
    p.add_argument(
        "--num-samples",
        type=_ais_num_samples,
        default=5000,
        help="importance samples per point for the IS estimate beside AIS, >= 2 (0 skips it)",
    )
    p.add_argument(
        "--bdmc",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="also run the BDMC sandwich (forward and reverse AIS) on N points simulated "
        "from the model (0: no)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every draw")
    p.add_argument("--json", help="also write the estimates to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_threads(p)
    _add_device(p, "run the chains")
    return parser


def _guide(text):
    """--guide as a canonical spec (argparse turns the ValueError into a usage error)."""
    try:
        return parse_guide(text)[0]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _guides(text):
    """--guides as a tuple of canonical specs."""
    return tuple(_guide(spec.strip()) for spec in text.split(",") if spec.strip())


def _families(text):
    """--gap-families as a tuple ('none': empty)."""
    names = tuple(f.strip() for f in text.split(",") if f.strip())
    return () if names == ("none",) else names


def _run_compare(args):
    specs = [s for s in args.objectives.split(",") if s.strip()]
    for spec in specs:
        parse_objective(spec)
    schedules = [s for s in (args.beta_schedules or "").split(",") if s.strip()]
    for spec in schedules:
        parse_schedule(spec)
    data = load_dataset(args.dataset, binarize_choice(args, args.likelihood), args.split_seed)
    result = compare(
        data,
        specs,
        _config(args, gap_every=args.gap_every or None),
        z_dim=args.z_dim,
        hidden_dims=args.hidden_dims,
        likelihood=args.likelihood,
        guides=args.guides,
        num_samples=args.num_samples,
        seeds=range(args.seed, args.seed + args.seeds),
        posterior_points=args.posterior_points,
        gap_families=_families(args.gap_families),
        gap_max_steps=args.gap_max_steps,
        ais_steps=args.ais_steps,
        bdmc_points=args.bdmc_points,
        beta_schedules=schedules,
        beta_objective=args.beta_objective,
        workers=args.workers or available_cores(),
        dtype=args.dtype,
    )
    if data.image_shape is None:
        print(
            f"no image figures: the data's {data.x_dim} columns are not a square image "
            "(reconstructions, samples and latent maps are drawn for images only)"
        )
    result.write_report(args.out)
    print(result.summary())
    meta = result.meta
    print(
        f"wall time {meta['wall_time_s']:.0f} s ({meta['cpu_time_s']:.0f} s CPU, torch "
        f"threads: {meta['torch_threads']}, workers: {meta['workers']}); results in {args.out}/"
    )


def _config(args, **changes):
    """The main job's training configuration with the command's settings."""
    return MAIN_JOB.replace(epochs=args.epochs, patience=args.patience, batch_size=args.batch_size,
                            lr=args.lr, progress=not args.no_progress, num_threads=args.threads,
                            device=args.device, **changes)  # fmt: skip


def _run_posterior(args):
    vae, saved, data = checkpoint_with_split(args.checkpoint, args.points)
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
    for name, fig in posterior_figures(check, data, "guide", num_points=4).items():
        save_figure(fig, os.path.join(out, name))
    summary = {"objective": saved["fit_config"].get("objective", "?"),
               **summarize_agreement(check.table)}  # fmt: skip
    print(format_agreement([summary]))
    print(f"{len(x)} test points; draws and agreement table in {out}/")


def main(argv=None):
    """Entry point of the ``pyro-vae`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    runners = {
        "compare": _run_compare,
        "train": run_train,
        "evaluate": run_evaluate,
        "posterior": _run_posterior,
        "ais": run_ais,
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
