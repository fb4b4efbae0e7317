"""The argument types (a bad value: argparse's one-line usage error naming the flag) and
the options several subcommands share."""

import argparse

from .._deprecation import warn_renamed
from .._device import DTYPES, check_device, default_device
from ..experiments.compare import MIN_SAMPLES
from ..models import LIKELIHOODS
from ..models.flows import parse_guide
from ..train.config import DEFAULT_LR, MAIN_JOB

NUM_SAMPLES_HELP = (
    "K, importance samples per test point for log p(x) (the IS estimate L_K with the "
    "guide as proposal; Burda et al. 2016 use 5000); at least "
    f"{MIN_SAMPLES}, two groups of 50 for the IWAE-50 standard error"
)
BINARIZE = ("dynamic", "static", "threshold", "none")


class Parser(argparse.ArgumentParser):
    """Every default in ``--help``, once: "(default: ...)" added to an option's help unless
    it says its default or the default is None, a bool or suppressed. Subcommand parsers
    are of this class too (``add_subparsers`` builds them with the parent's class)."""

    def add_argument(self, *args, old=None, **kwargs):
        if old is not None:  # the flag's old name, accepted with a FutureWarning
            args, kwargs["action"] = (*args, old), _OldName
            kwargs["help"] += f" ({old}: its old name, until the next release)"
        default, help = kwargs.get("default"), kwargs.get("help")
        quiet = default is None or default is argparse.SUPPRESS or isinstance(default, bool)
        if help and not quiet and "(default" not in help and "default:" not in help:
            kwargs["help"] = f"{help} (default: %(default)s)"
        return super().add_argument(*args, **kwargs)


class _OldName(argparse._StoreAction):
    """Store the value; a FutureWarning when given as the flag's old name (its last)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string == self.option_strings[-1]:
            warn_renamed(parser.prog, option_string, self.option_strings[0], stacklevel=2)
        super().__call__(parser, namespace, values, option_string)


def bounded(cast, expected, ok, hint=""):
    """An argument type: ``cast(text)`` where ``ok`` of it, else the usage error
    "expected EXPECTED, got VALUE" and ``hint``."""

    def checked(text):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}{hint}")
        return value

    return checked


positive_int = bounded(int, "an integer > 0", lambda value: value > 0)
non_negative_int = bounded(int, "an integer >= 0", lambda value: value >= 0)
positive_float = bounded(float, "a number > 0", lambda value: value > 0)
num_samples = bounded(
    positive_int,
    f"K >= {MIN_SAMPLES} (two groups of 50 for the IWAE-50 standard error)",
    lambda value: value >= MIN_SAMPLES,
)
"""K of the importance-sampling estimate, at least :data:`MIN_SAMPLES`."""


def int_list(text):
    return tuple(positive_int(part) for part in text.split(","))


def _usage_error(check):
    """An argument type from a library ``check``: its ValueError is the usage error."""

    def checked(text):
        try:
            return check(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return checked


guide = _usage_error(lambda text: parse_guide(text)[0])
"""--guide as a canonical spec."""
device = _usage_error(lambda text: str(check_device(text, "--device")))
"""--device: 'cpu', 'cuda' or 'cuda:N' where PyTorch sees that GPU."""


# fmt: off
# Each add_* takes the ``add_argument`` of the subcommand's parser.
def command(sub, name, help, checkpoint=False):
    """The ``add_argument`` of a new subcommand's parser (given its CHECKPOINT argument)."""
    add = sub.add_parser(name, help=help).add_argument
    if checkpoint:
        add("checkpoint", help="a checkpoint written by `pyro-vae train`")
    return add


def add_threads(add):
    add("--threads", type=positive_int, default=MAIN_JOB.num_threads,
        help="torch threads; one is as fast as two for networks this small on an idle machine "
        "and far steadier when other processes compete for the cores "
        "(benchmarks/bench_threads.py)")


def add_device(add, what="train and evaluate"):
    add("--device", type=device, default=default_device(),
        help=f"where to {what}: 'cpu', 'cuda' or 'cuda:N' (default: CUDA when PyTorch sees a "
        "GPU, else cpu)")
    add("--dtype", choices=tuple(DTYPES), default="float32",
        help="precision of the parameters and estimates (float64 for closed-form checks; half "
        "precision is not offered: the estimators need float32 at least)")


def add_data(add):
    """--dataset, --binarize, --split-seed and --threads of `compare` and `train`."""
    add("--dataset", default="digits",
        help="'digits' (bundled UCI digits, 8x8), 'fashion-mnist' (28x28, Debian's "
        "dataset-fashion-mnist package; 'fashion-mnist:PATH' for another folder), 'mnist:PATH' "
        "(local IDX files) or a .npy/.npz/.csv file (rows = data points; a CSV header row is "
        "skipped)")
    add("--binarize", choices=BINARIZE,
        help="binarization of the data: 'dynamic' redraws the training images every epoch, "
        "'static' draws once (validation and test are always static unless 'none'), "
        "'threshold' sets 1[intensity > 0.5] on every split (Cremer et al. 2018); default: "
        "dynamic for --likelihood bernoulli, none otherwise")
    add("--split-seed", type=int, default=0,
        help="seed of the train/validation/test split and its static binarization")
    add_threads(add)


def add_training(add):
    """The model and training options of `compare` and `train`."""
    add("--epochs", type=positive_int, default=MAIN_JOB.epochs, help="most epochs per run")
    add("--patience", type=positive_int, default=MAIN_JOB.patience,
        help="stop after this many epochs without a better validation IWAE-50 bound")
    add("--z-dim", type=positive_int, default=8, help="latent dimension")
    add("--hidden-dims", type=int_list, default="256",
        help="comma-separated hidden layer widths of encoder and decoder, e.g. 256,128")
    add("--likelihood", choices=LIKELIHOODS, default="bernoulli",
        help="p(x|z): bernoulli (binary data), continuous_bernoulli (intensities in [0, 1]) or "
        "gaussian (real-valued data, learned per-pixel scale)")
    add("--batch-size", type=positive_int, default=MAIN_JOB.batch_size, help="minibatch size")
    add("--lr", type=positive_float,
        help=f"Adam learning rate (default {DEFAULT_LR:g}; train --resume: the saved one)")
    add("--no-progress", action="store_true", help="hide progress bars")
    add("--seed", type=int, default=0,
        help="training seed: initialization, shuffling, binarization and z draws; the same "
        "seed gives the same numbers; does not move the test set")


def training_settings(args):
    """The training options as :class:`~pyro_vae.TrainConfig` fields (dict)."""
    return {"epochs": args.epochs, "patience": args.patience, "batch_size": args.batch_size,
            "lr": args.lr, "progress": not args.no_progress, "device": args.device}
