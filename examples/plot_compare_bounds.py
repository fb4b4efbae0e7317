"""
Compare the bounds: ELBO, IWAE and Rényi
========================================

One VAE per training objective (``Trace_ELBO``, the IWAE bound with K = 5 and the Rényi
bound with α = 0.5), from the same initialization, judged on the same test digits by
the same estimator: test-set bounds L_k against k, up to log p(x) with K importance
samples (Burda et al. 2016). :func:`pyro_vae.experiments.compare.compare` is the main
job's engine (``pyro-vae compare``); here with a small budget and without its checks.

.. code-block:: bash

    python examples/plot_compare_bounds.py --epochs 300
"""

import argparse

import matplotlib.pyplot as plt

from pyro_vae import TrainConfig
from pyro_vae.data import load_digits
from pyro_vae.experiments.compare import compare
from pyro_vae.experiments.report import format_table
from pyro_vae.viz.bounds import plot_bounds


def main(args):
    data = load_digits(binarize="dynamic")
    result = compare(data, ["trace", "iwae:5", "renyi:0.5:5"],
                     TrainConfig(epochs=args.epochs, progress=False, gap_every=None),
                     num_samples=args.num_samples, seeds=[args.seed], posterior_points=0,
                     gap_families=(), ais_bridges=0)  # fmt: skip
    print(format_table(result.rows, num_samples=args.num_samples))
    fig = plt.figure(figsize=(9, 3.8), layout="constrained")
    plot_bounds(result.rows, num_samples=args.num_samples, ax=fig)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().partition("\n")[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
    plt.show()
