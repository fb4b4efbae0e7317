"""Retraining spread of the yardstick: test log p(x) and ELBO over training seeds.

    python benchmarks/yardstick_spread.py --loss trace --seeds 0 1 2 3 4

Trains the yardstick's VAE (64-256-8, softplus, Adam 1e-3, batch 128, dynamic
binarization, 80/20 split of the digits, 1000 epochs, no validation) once per training
seed on the same split and prints each run's test log p(x) and ELBO (K = 5000) and
their mean and standard deviation across seeds, in nats per test point. The standard
deviation is the tolerance behind ``tests/test_yardstick.py``. One thread per process.
"""

import argparse
import json
import statistics

import torch

from pyro_vae import VAE, evaluate, fit
from pyro_vae.data import load_digits

PARTICLES = {"trace": 1, "renyi": 5}


def main(args):
    torch.set_num_threads(1)
    data = load_digits(binarize="dynamic", val_fraction=0.0, test_fraction=0.2)
    runs = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        vae = VAE(64, z_dim=8, hidden_dims=(256,))
        fit(vae, data, loss=args.loss, num_particles=PARTICLES[args.loss], epochs=args.epochs,
            seed=seed, progress=False)  # fmt: skip
        summary = evaluate(vae, data.test, 5000, seed=0).summary()
        run = {"loss": args.loss, "seed": seed, "log_px": summary["log_px"][0],
               "elbo": summary["elbo"][0]}  # fmt: skip
        print(json.dumps(run), flush=True)
        runs.append(run)
    for key in ("log_px", "elbo"):
        values = [run[key] for run in runs]
        spread = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(f"{args.loss} {key}: mean {statistics.fmean(values):.3f}, s.d. {spread:.3f}")
    return runs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", choices=sorted(PARTICLES), default="trace")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=1000)
    main(parser.parse_args())
