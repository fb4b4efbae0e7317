"""Command line: ``pyro-vae compare``, ``pyro-vae train``, ``pyro-vae evaluate``.

Arguments are validated before any work starts; a bad one ends the command with a
one-line error naming it (exit status 2) and nothing written.
"""

import argparse
import json
import math
import os
import re
import sys
import time
import warnings

from .compare import DEFAULT_OBJECTIVES, compare, load_dataset, parse_objective
from .evaluation import evaluate
from .models import VAE
from .training import fit, load_checkpoint

__all__ = ["main"]

DEFAULTS = {"epochs": 800, "patience": 100, "binarize": "dynamic"}


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer > 0, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected an integer > 0, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value}")
    return value


def _int_list(text):
    return tuple(_positive_int(part) for part in text.split(","))


def _add_common(parser):
    parser.add_argument(
        "--dataset",
        default="digits",
        help="'digits' (bundled, default), 'mnist:PATH' (local IDX files) or a .npy/.npz/.csv file",
    )
    parser.add_argument(
        "--binarize",
        choices=("dynamic", "static", "none"),
        default=DEFAULTS["binarize"],
        help="binarization of the training data (validation/test are always static "
        "unless 'none'); default %(default)s",
    )
    parser.add_argument("--seed", type=int, default=0, help="default %(default)s")


def _add_training(parser):
    parser.add_argument("--epochs", type=_positive_int, default=DEFAULTS["epochs"])
    parser.add_argument(
        "--patience",
        type=_positive_int,
        default=DEFAULTS["patience"],
        help="stop after this many epochs without a better validation IWAE-50 bound",
    )
    parser.add_argument("--z-dim", type=_positive_int, default=8)
    parser.add_argument("--hidden-dims", type=_int_list, default=(256,))
    parser.add_argument("--likelihood", choices=("bernoulli", "gaussian"), default="bernoulli")
    parser.add_argument("--batch-size", type=_positive_int, default=128)
    parser.add_argument("--lr", type=_positive_float, default=1e-3)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser():
    """The ``pyro-vae`` argument parser (argparse.ArgumentParser)."""
    parser = argparse.ArgumentParser(
        prog="pyro-vae",
        description="Variational autoencoders in Pyro: compare ELBO, IWAE and Rényi "
        "bounds against held-out log p(x).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compare", help="train one VAE per objective and compare them")
    _add_common(p)
    _add_training(p)
    p.add_argument(
        "--objectives",
        default=",".join(DEFAULT_OBJECTIVES),
        help="comma-separated: trace, meanfield, renyi:ALPHA:K, iwae:K (default %(default)s)",
    )
    p.add_argument("--num-samples", type=_positive_int, default=5000)
    p.add_argument("--out", default="results", help="output folder (default %(default)s)")

    p = sub.add_parser("train", help="train one VAE and save a checkpoint")
    _add_common(p)
    _add_training(p)
    p.add_argument("--objective", default="trace", help="as in compare --objectives")
    p.add_argument("--checkpoint", default="vae.pt", help="default %(default)s")

    p = sub.add_parser("evaluate", help="evaluate a checkpoint on the test split")
    p.add_argument("checkpoint")
    _add_common(p)
    p.add_argument("--num-samples", type=_positive_int, default=5000)
    p.add_argument("--json", help="also write the summary to this JSON file")
    return parser


def _binarize(args):
    return None if args.binarize == "none" else args.binarize


def _run_compare(args):
    from . import plots, report

    specs = [s for s in args.objectives.split(",") if s.strip()]
    for spec in specs:
        parse_objective(spec)
    data = load_dataset(args.dataset, _binarize(args), args.seed)
    result = compare(
        data,
        objectives=specs,
        epochs=args.epochs,
        z_dim=args.z_dim,
        hidden_dims=args.hidden_dims,
        likelihood=args.likelihood,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        num_samples=args.num_samples,
        seed=args.seed,
        progress=not args.no_progress,
    )
    out = args.out
    figures = {
        "validation_curves.png": plots.plot_validation_curves(result.histories),
        "bounds.png": plots.plot_bounds(result.rows),
    }
    if data.image_shape is not None:
        x = data.test[:10]
        for label, vae in result.models.items():
            slug = re.sub(r"[^A-Za-z0-9.]+", "_", label).strip("_")
            figures[f"reconstructions_{slug}.png"] = plots.plot_reconstructions(
                x, vae.reconstruct(x), data.image_shape
            )
            figures[f"samples_{slug}.png"] = plots.plot_image_grid(
                vae.sample(40),
                data.image_shape,
                nrows=4,
                title=f"decoder means at z ~ p(z): {label}",
            )
    for name, fig in figures.items():
        plots.save_figure(fig, os.path.join(out, name))
    report.write_results(out, result.rows, result.histories, result.meta)
    print(report.format_table(result.rows, num_samples=args.num_samples))
    print(f"wall time {result.meta['wall_time_s']:.0f} s; results in {out}/")


def _run_train(args):
    loss, alpha, k = parse_objective(args.objective)
    data = load_dataset(args.dataset, _binarize(args), args.seed)
    vae = VAE(data.x_dim, args.z_dim, args.hidden_dims, args.likelihood)
    run = fit(
        vae,
        data,
        loss=loss,
        alpha=alpha,
        num_particles=k,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        patience=args.patience,
        progress=not args.no_progress,
        checkpoint=args.checkpoint,
    )
    last = run.history[run.best_epoch - 1]
    print(
        f"{run.config['objective']}: best epoch {run.best_epoch} of {len(run.history)}, "
        f"validation ELBO {last.get('val_elbo', float('nan')):.2f} nats, "
        f"{run.train_time:.0f} s; checkpoint {args.checkpoint}"
    )


def _run_evaluate(args):
    from ._io import atomic_path

    vae, _ = load_checkpoint(args.checkpoint)
    data = load_dataset(args.dataset, _binarize(args), args.seed)
    start = time.perf_counter()
    summary = evaluate(vae, data.test, args.num_samples, ks=(5, 50), seed=args.seed)
    summary = summary.summary()
    for name, (mean, se) in summary.items():
        print(f"{name:>15} {mean:10.3f}" + (f" ± {se:.3f}" if math.isfinite(se) else ""))
    print(
        f"nats per test point ({len(data.test)} points, K={args.num_samples}); "
        f"{time.perf_counter() - start:.1f} s"
    )
    if args.json:
        with atomic_path(args.json) as tmp, open(tmp, "w") as f:
            finite = {
                k: {"mean": m, "se": s if math.isfinite(s) else None}
                for k, (m, s) in summary.items()
            }
            json.dump(finite, f, indent=2)


def main(argv=None):
    """Entry point of the ``pyro-vae`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    runners = {"compare": _run_compare, "train": _run_train, "evaluate": _run_evaluate}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="pyro")
            runners[args.command](args)
    except (ValueError, FileNotFoundError) as e:
        parser.exit(2, f"pyro-vae {args.command}: error: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
