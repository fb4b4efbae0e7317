"""
Fashion-MNIST: a 28 × 28 VAE
============================

Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package
(``apt-get install dataset-fashion-mnist``; IDX files in
``/usr/share/datasets/fashion-mnist``), dynamically binarized. A VAE with 50 latents and
two hidden layers of 200 units (Cremer et al. 2018's setting) is trained on a slice of
the training set for a few epochs, then judged on test images: the held-out ELBO and
log p(x), its reconstructions and samples from the prior. Nothing is downloaded: when
the data are absent the example says so and stops.

.. code-block:: bash

    python examples/plot_fashion_mnist.py --epochs 20 --train 60000
"""

import argparse
import dataclasses

import matplotlib.pyplot as plt
import torch

import pyro_vae
from pyro_vae.data import load_dataset
from pyro_vae.viz.images import plot_image_grid, plot_reconstructions


def main(args):
    try:
        data = load_dataset("fashion-mnist", "dynamic")
    except FileNotFoundError as e:
        print(f"Skipped: Fashion-MNIST is not installed here ({e}).")
        return None
    torch.manual_seed(args.seed)
    data = dataclasses.replace(data, train=data.train[: args.train],
                               train_intensities=data.train_intensities[: args.train])  # fmt: skip
    vae = pyro_vae.VAE(784, z_dim=50, hidden_dims=(200, 200))
    run = pyro_vae.fit(vae, data, epochs=args.epochs, batch_size=100, val_samples=10,
                       progress=False, seed=args.seed)  # fmt: skip
    x = data.test[: args.points]
    summary = pyro_vae.evaluate(vae, x, args.num_samples, seed=args.seed).summary()
    print(f"{run.best_epoch} epochs on {len(data.train)} images; on {len(x)} test images:")
    for name in ("elbo", "log_px", "gap"):
        print(f"  {name:>6}: {summary[name][0]:8.2f} ± {summary[name][1]:.2f} nats per image")
    with torch.no_grad():
        recon = vae.likelihood_dist(vae.encode(x[:10]).mean).mean
        samples = vae.likelihood_dist(torch.randn(20, 50)).mean
    fig, ax = plt.subplots(figsize=(7, 2.2))
    plot_reconstructions(x[:10], {"Trace_ELBO": recon}, data.image_shape, ax=ax)
    fig = plt.figure(figsize=(7, 1.6), layout="constrained")
    plot_image_grid(samples, data.image_shape, nrows=2, ax=fig)
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().partition("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--train", type=int, default=60000, help="training images used")
    parser.add_argument("--points", type=int, default=200, help="test images evaluated")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
    plt.show()
