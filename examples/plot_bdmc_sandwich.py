"""
The BDMC sandwich: how far off is importance sampling?
======================================================

On data simulated from a trained VAE, forward AIS from the prior is a stochastic lower
bound on log p(x) and reverse AIS from the z that generated each point a stochastic upper
bound (Grosse et al. 2015). The width of the sandwich bounds the error of any estimate on
such data, importance sampling with the guide included (Wu et al. 2017). This trains a
digits VAE briefly, then runs :func:`pyro_vae.bdmc` at several numbers of bridges and
:func:`pyro_vae.evaluate` (IS with the guide) on the same simulated points.

.. code-block:: bash

    python examples/plot_bdmc_sandwich.py --epochs 200 --points 100 --steps 25 50 100 200
"""

import argparse

import matplotlib.pyplot as plt
import torch

import pyro_vae
from pyro_vae.data import load_digits


def main(args):
    torch.manual_seed(args.seed)
    data = load_digits(binarize="dynamic")
    vae = pyro_vae.VAE(64, z_dim=args.z_dim)
    pyro_vae.fit(vae, data, epochs=args.epochs, progress=False, seed=args.seed)
    rows = []
    for steps in args.steps:
        sandwich = pyro_vae.bdmc(vae, num_points=args.points, num_bridges=steps, seed=args.seed)
        s = sandwich.summary()
        rows.append((steps, s["forward"], s["reverse"], s["width"]))
        print(f"{steps:5d} bridges: forward {s['forward'][0]:.3f}, reverse {s['reverse'][0]:.3f}, "
              f"width {s['width'][0]:.3f} ± {s['width'][1]:.3f} nats per point")  # fmt: skip
    log_px_is = pyro_vae.evaluate(vae, sandwich.x, args.num_samples, seed=args.seed)
    is_mean, is_se = log_px_is.summary()["log_px"]
    print(f"IS-{args.num_samples} with the guide on the same points: {is_mean:.3f} ± {is_se:.3f}")

    steps = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
    for i, label in ((1, "forward AIS (lower bound)"), (2, "reverse AIS (upper bound)")):
        ax.errorbar(steps, [r[i][0] for r in rows], yerr=[2 * r[i][1] for r in rows],
                    marker="o", capsize=3, label=label)  # fmt: skip
    ax.axhline(is_mean, color="k", linestyle="--", label=f"IS, K = {args.num_samples}")
    ax.set(xscale="log", xlabel="bridges", ylabel="log p(x), nats per point")
    ax.legend()
    return {"rows": rows, "is": (is_mean, is_se)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().partition("\n")[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--z-dim", type=int, default=8)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
    plt.show()
