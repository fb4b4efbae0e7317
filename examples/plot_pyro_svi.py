"""
Train with plain Pyro SVI, then measure the bounds
==================================================

The model and guide are plain Pyro functions: this script uses nothing but
``pyro.infer.SVI`` to train, ``pyro.infer.Predictive`` to sample, and
:func:`pyro_vae.evaluate` for the held-out ELBO, IWAE bounds and log p(x), then draws
test digits and their reconstructions.

.. code-block:: bash

    python examples/plot_pyro_svi.py --epochs 100
"""

import argparse

import matplotlib.pyplot as plt
import pyro
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO

import pyro_vae
from pyro_vae.data import load_digits
from pyro_vae.viz.images import plot_reconstructions


def main(args):
    pyro.set_rng_seed(args.seed)
    data = load_digits(binarize="dynamic")
    vae = pyro_vae.VAE(x_dim=64, z_dim=args.z_dim)
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    num_data = len(data.train)
    for epoch in range(1, args.epochs + 1):
        x = data.train_epoch()
        loss = 0.0
        for rows in torch.randperm(num_data).split(128):
            loss += svi.step(x[rows], num_data=num_data, subsample=rows) * len(rows) / num_data
        if epoch % max(1, args.epochs // 5) == 0:
            print(f"epoch {epoch:4d}  -ELBO {loss / num_data:.2f} nats per point")

    samples = Predictive(vae.model, guide=vae.guide, num_samples=10)(data.test[:5])
    print("Predictive z shape:", tuple(samples["z"].shape))

    summary = pyro_vae.evaluate(vae, data.test, num_samples=args.num_samples).summary()
    for name in ("elbo", "iwae_5", "iwae_50", "log_px", "gap"):
        mean, se = summary[name]
        print(f"test {name:>7}: {mean:8.2f} ± {se:.2f} nats per point")
    x = data.test[:10]
    with torch.no_grad():
        recon = vae.likelihood_dist(vae.encode(x).mean).mean
    fig, ax = plt.subplots(figsize=(6, 1.6))
    plot_reconstructions(x, {"SVI, Trace_ELBO": recon}, data.image_shape, ax=ax)
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().partition("\n")[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--z-dim", type=int, default=8)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
    plt.show()
