"""
The exact gap on probabilistic PCA
==================================

Is log p(x) − ELBO really KL(q(z|x) ‖ p(z|x))? Check it where everything is exact.
Probabilistic PCA has a closed-form log p(x) and posterior. We fit it by maximum
likelihood, then train only the guide with SVI from a poor start and print, every few
epochs, the exact gap KL(q ‖ p(z|x)) next to the estimated log p(x) − ELBO (± 2 s.e.).

.. code-block:: bash

    python examples/plot_linear_gaussian_gap.py
"""

import argparse

import matplotlib.pyplot as plt
import pyro
import torch
from pyro.infer import SVI, Trace_ELBO

import pyro_vae
from pyro_vae.data import make_linear_gaussian


def main(args):
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    data = make_linear_gaussian(2000, x_dim=10, z_dim=2, noise_scale=0.5, seed=args.seed)
    x_train, x_test = data.x[:1500], data.x[1500:]
    vae = pyro_vae.LinearGaussianVAE(10, 2).fit_maximum_likelihood(x_train)
    with torch.no_grad():  # a poor guide: the gap starts large
        vae.guide_loc.weight.zero_()
        vae.guide_log_scale.fill_(1.0)
    vae.decoder.requires_grad_(False)  # train the guide only: p(x) stays fixed
    vae.eval()  # no dropout here; silences Pyro's warning about the frozen parameters
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.02}), Trace_ELBO())
    exact_log_px = vae.exact_log_likelihood(x_test).mean().item()
    print(f"exact log p(x) = {exact_log_px:.3f} nats per point")
    print("epoch   exact KL(q‖p(z|x))   estimated log p(x) − ELBO")
    rows = []
    for epoch in range(args.epochs + 1):
        if epoch:
            for batch in torch.randperm(len(x_train)).split(100):
                svi.step(x_train[batch])
        if epoch % max(1, args.epochs // 5) == 0:
            exact_gap = vae.exact_posterior_kl(x_test).mean().item()
            summary = pyro_vae.evaluate(vae, x_test, args.num_samples).summary()
            gap, se = summary["gap"]
            rows.append((epoch, exact_gap, gap, se))
            print(f"{epoch:5d}   {exact_gap:18.3f}   {gap:12.3f} ± {se:.3f}")
    epochs, exact, estimated, se = (list(column) for column in zip(*rows, strict=True))
    fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
    ax.plot(epochs, exact, "k-", label="exact KL(q ‖ p(z|x))")
    ax.errorbar(epochs, estimated, yerr=[2 * s for s in se], fmt="o", label="log p(x) − ELBO")
    ax.set(xlabel="epoch (guide only)", ylabel="nats per point")
    ax.legend()
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().partition("\n")[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
    plt.show()
