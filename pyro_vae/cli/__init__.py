"""Command line: ``pyro-vae compare``, ``train``, ``evaluate``, ``posterior`` and ``ais``.

One module per subcommand: its parser (``add_parser``) and ``run(args)``, the parsed command
line to one call of :mod:`pyro_vae.experiments`, whose result it prints. A bad argument ends
the command before any work with a one-line error naming it (exit 2) and nothing written.
The package's warnings are shown; Pyro's deprecation chatter is not."""

import warnings

import torch

from .._version import __version__
from ..experiments.jobs import LIGHTNING_STRATEGIES
from . import ais, compare, evaluate, posterior, train
from ._options import MIN_SAMPLES, Parser

__all__ = ["LIGHTNING_STRATEGIES", "MIN_SAMPLES", "build_parser", "main"]

COMMANDS = {"compare": compare, "train": train, "evaluate": evaluate,
            "posterior": posterior, "ais": ais}  # fmt: skip
"""The subcommands' modules, by name, in the order of ``--help``."""


def build_parser():
    """The ``pyro-vae`` argument parser (argparse.ArgumentParser)."""
    description = ("Variational autoencoders in Pyro: compare ELBO, IWAE and Rényi bounds "
                   "against held-out log p(x).")  # fmt: skip
    parser = Parser(prog="pyro-vae", description=description)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv=None):
    """Entry point of the ``pyro-vae`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        with warnings.catch_warnings():
            # Pyro's own deprecation notices only; pyro_vae's warnings stay visible.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pyro\.")
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"pyro\.")
            COMMANDS[args.command].run(args)
    except (ValueError, FileNotFoundError) as e:
        parser.exit(2, f"pyro-vae {args.command}: error: {e}\n")
    return 0
