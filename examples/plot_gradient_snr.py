"""
Tighter bounds, noisier encoder gradients
=========================================

Rainforth et al. (2018) showed that as the IWAE bound tightens with K, the
signal-to-noise ratio ``|E[g]| / sd[g]`` of the encoder's gradient falls as 1/√K while the
decoder's rises as √K. :func:`pyro_vae.gradient_snr` measures it at fixed parameters:
here on a small digits VAE after a few epochs, the median SNR over each network's
coordinates of the gradient on one batch of test digits, against K on log-log axes.
DReG (Tucker et al. 2019) removes the encoder's decline; its curve is drawn when
``make_elbo`` knows ``"dreg"`` (from K = 2: at K = 1 it is STL).

.. code-block:: bash

    python examples/plot_gradient_snr.py --epochs 30 --draws 300
"""

import argparse

import matplotlib.pyplot as plt
import torch

from pyro_vae import VAE, fit, gradient_snr, make_elbo
from pyro_vae.data import load_digits


def _known(spec):
    """Whether make_elbo builds ``spec``; prints why not (dreg:1 is STL, refused)."""
    try:
        make_elbo(spec)
    except ValueError as error:
        print(f"skipping {spec}: {error}")
        return False
    return True


def main(args):
    data = load_digits(binarize="dynamic")
    torch.manual_seed(args.seed)
    vae = VAE(data.x_dim, 4, (32,))
    fit(vae, data, epochs=args.epochs, progress=False, seed=args.seed)
    x = data.test[: args.points]
    curves = {}
    for family, k in [(family, k) for family in ("iwae", "dreg") for k in args.ks]:
        if _known(f"{family}:{k}"):
            summary = gradient_snr(vae, x, f"{family}:{k}", args.draws, seed=args.seed).summary()
            curves.setdefault(family, []).append((k, summary["encoder"], summary["decoder"]))
            print(f"{family}:{k:<5} encoder {summary['encoder'][0]:.3f}  "
                  f"decoder {summary['decoder'][0]:.3f}")  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), layout="constrained")
    for ax, column, group in zip(axes, (1, 2), ("encoder", "decoder"), strict=True):
        for family, rows in curves.items():
            ks = [row[0] for row in rows]
            values = [row[column][0] for row in rows]
            errors = [2 * row[column][1] for row in rows]
            ax.errorbar(ks, values, yerr=errors, marker="o", capsize=2, label=family)
        ax.set(xscale="log", yscale="log", xlabel="K", ylabel="median SNR (± 2 s.e.)")
        ax.set_title(group)
        ax.legend()
    return curves


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().partition("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 3, 10, 30, 100])
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
    plt.show()
