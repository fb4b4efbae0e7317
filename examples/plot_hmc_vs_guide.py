"""
The guide against the exact posterior, with ArviZ
=================================================

A VAE with 2-D latents, so that the exact posterior p(z|x) is also known by quadrature.
:func:`~pyro_vae.experiments.guide_check.check_guide` draws it by batched HMC
(:func:`pyro_vae.sample_posterior`) for several test digits at once and draws q(z|x)
(:func:`pyro_vae.sample_guide`); both are ArviZ ``InferenceData`` with dims
``(chain, draw, datum, latent)``, so ``az.summary`` and ``az.plot_pair`` work on them, and
:func:`pyro_vae.compare_posteriors` tables their agreement per point.

.. code-block:: bash

    python examples/plot_hmc_vs_guide.py --epochs 100 --points 4
"""

import argparse

import arviz as az
import matplotlib.pyplot as plt
import torch

import pyro_vae
from pyro_vae.data import load_digits
from pyro_vae.experiments.guide_check import check_guide
from pyro_vae.viz.posterior import plot_posterior_draws


def main(args):
    torch.manual_seed(args.seed)
    data = load_digits(binarize="dynamic")
    vae = pyro_vae.VAE(64, z_dim=2)
    pyro_vae.fit(vae, data, epochs=args.epochs, progress=False, seed=args.seed)
    x = data.test[: args.points]
    # HMC draws of p(z|x) and guide draws, as InferenceData; the table per point, with
    # the exact KL(q ‖ p(z|x)) by quadrature for 2-D latents
    check = check_guide(vae, x, num_samples=args.draws, warmup_steps=args.draws, seed=args.seed)
    table = check.table
    print(table[["w2", "khat", "kl_exact", "rhat_max", "ess_bulk_min"]].round(3))
    print(az.summary(check.posterior.isel(datum=0), kind="diagnostics"))
    draws = [
        idata.posterior["z"].stack(s=("chain", "draw")).transpose("s", "datum", "latent").values
        for idata in (check.posterior, check.guide)
    ]
    fig = plt.figure(figsize=(2.2 * args.points, 4.4), layout="constrained")
    plot_posterior_draws(*draws, images=x, image_shape=data.image_shape, ax=fig)
    az.plot_pair(check.posterior.isel(datum=0), var_names=["z"])
    az.plot_rank(check.posterior.isel(datum=0), var_names=["z"])
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().partition("\n")[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
    plt.show()
