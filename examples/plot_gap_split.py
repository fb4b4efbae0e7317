"""
Where the gap comes from: amortization and approximation
========================================================

The gap log p(x) − ELBO splits at the best guide of the amortized guide's family fitted
to each data point alone, q* (Cremer, Li & Duvenaud 2018): the approximation gap
log p(x) − L[q*] is what the diagonal Gaussian family costs, the amortization gap
L[q*] − L[q] what sharing one encoder across points costs. A per-point flow shows what a
richer family recovers. :func:`pyro_vae.inference_gaps` fits both with the decoder fixed.

.. code-block:: bash

    python examples/plot_gap_split.py --epochs 300 --points 32
"""

import argparse

import matplotlib.pyplot as plt
import torch

import pyro_vae
from pyro_vae.data import load_digits
from pyro_vae.results import GapRow
from pyro_vae.viz.anatomy import plot_gap_split


def main(args):
    torch.manual_seed(args.seed)
    data = load_digits(binarize="dynamic")
    vae = pyro_vae.VAE(64, z_dim=args.z_dim)
    pyro_vae.fit(vae, data, epochs=args.epochs, progress=False, seed=args.seed)
    gaps = pyro_vae.inference_gaps(vae, data.test[: args.points], num_samples=args.num_samples,
                                   seed=args.seed, max_steps=args.max_steps)  # fmt: skip
    for name, (mean, se) in gaps.summary().items():
        print(f"{name:>22}: {mean:8.3f} ± {se:.3f} nats per point")
    fig = plt.figure(figsize=(6, 3.5), layout="constrained")
    plot_gap_split([GapRow.from_gaps("Trace_ELBO", gaps)], ax=fig)
    return gaps


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().partition("\n")[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--z-dim", type=int, default=8)
    parser.add_argument("--points", type=int, default=32)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
    plt.show()
