"""Many runs in one pass: per-epoch cost of a stack of R runs against R single runs (on demand).

    python benchmarks/bench_stack.py --out benchmarks/stack.json

For R in ``--runs`` (default 1, 3, 8) trains R VAEs of the main job's architecture
(x-256-8, softplus, batch 128, Adam 1e-3) for ``--epochs`` epochs two ways in this
process, one torch thread: one after another with :func:`pyro_vae.fit` (R single runs),
and as one stack with ``fit([...], seeds=[...])`` (:func:`pyro_vae.train.stack.fit_runs`),
from the same initializations and seeds. Both ways run with the per-epoch validation
(IWAE-50 on the validation points, as the main job) and without it (``--validation
off`` rows: the training steps alone). Cases are interleaved over ``--repeats``
repetitions, so a slow drift of the machine hits every case alike; the JSON holds every
time, the medians and the ratio stack / singles (below 1: the stack is cheaper).

Data: the digits (1258 training, 180 validation points) and Fashion-MNIST from
Debian's ``dataset-fashion-mnist`` (its first ``--fashion-train`` training and
``--fashion-validation`` validation images, statically binarized: per-epoch cost is
linear in the points), skipped where the package is not installed.
"""

import argparse
import json
import os
import platform
import statistics
import time

import torch

from pyro_vae import VAE, fit
from pyro_vae.data import load_dataset, load_digits

OBJECTIVES = {"trace": ("trace", 0.0, 1), "iwae:5": ("renyi", 0.0, 5)}


def _models(x_dim, seeds):
    vaes = []
    for seed in seeds:
        torch.manual_seed(seed)
        vaes.append(VAE(x_dim, 8, (256,)))
    return vaes


def measure(name, train, validation, args):
    """Rows of per-epoch seconds for one data set."""
    rows = []
    for objective, (loss, alpha, k) in OBJECTIVES.items():
        for validated in (True, False):
            settings = {"loss": loss, "alpha": alpha, "num_particles": k,
                        "epochs": args.epochs, "progress": False,
                        "validation": validation if validated else False}  # fmt: skip
            times = {(r, way): [] for r in args.runs for way in ("singles", "stack")}
            for repeat in range(args.repeats + 1):  # repeat 0 warms up
                for r in args.runs:
                    seeds = list(range(r))
                    ways = ("singles", "stack") if repeat % 2 else ("stack", "singles")
                    for way in ways:
                        vaes = _models(train.shape[1], seeds)
                        start = time.perf_counter()
                        if way == "singles":
                            for vae, seed in zip(vaes, seeds, strict=True):
                                fit(vae, train, seed=seed, **settings)
                        else:
                            fit(vaes, train, seeds=seeds, **settings)
                        seconds = time.perf_counter() - start
                        if repeat:
                            times[r, way].append(seconds / args.epochs)
            for r in args.runs:
                singles = statistics.median(times[r, "singles"])
                stack = statistics.median(times[r, "stack"])
                row = {"data": name, "objective": objective, "validation": validated,
                       "runs": r, "singles_epoch_s": singles, "stack_epoch_s": stack,
                       "ratio": stack / singles, "singles_all_s": times[r, "singles"],
                       "stack_all_s": times[r, "stack"]}  # fmt: skip
                rows.append(row)
                print(f"{name:>8} {objective:>6} val={'on ' if validated else 'off'} R={r}: "
                      f"{r} singles {singles:.3f} s/epoch, stack {stack:.3f} s/epoch, "
                      f"ratio {stack / singles:.2f}", flush=True)  # fmt: skip
    return rows


def main(args):
    torch.set_num_threads(1)
    digits = load_digits()
    rows = measure("digits", digits.train, digits.validation, args)
    if os.path.isdir("/usr/share/datasets/fashion-mnist"):
        fashion = load_dataset("fashion-mnist")
        rows += measure("fashion", fashion.train[: args.fashion_train],
                        fashion.validation[: args.fashion_validation], args)  # fmt: skip
    else:
        print("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): skipped")
    payload = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": 1,
        },  # fmt: skip
        "epochs": args.epochs,
        "repeats": args.repeats,
        "fashion_train": args.fashion_train,
        "fashion_validation": args.fashion_validation,
        "rows": rows,
    }
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, args.out)
    return payload


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 3, 8])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fashion-train", type=int, default=2000)
    parser.add_argument("--fashion-validation", type=int, default=180)
    parser.add_argument("--out", default="benchmarks/stack.json")
    main(parser.parse_args())
