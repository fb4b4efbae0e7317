"""
β, KL warm-up and posterior collapse
====================================

The KL weight β scales KL(q(z|x) ‖ p(z)) in the objective. Trained at β = 4 many latent
dimensions collapse onto the prior (their KL near 0, their activity Cov_x E_q[z_d]
below 0.01; Burda et al. 2016); at β = 0 the KL term is gone and log p(x) suffers; a
warm-up from β = 0 to 1 trades between the two. Each schedule trains the same
Trace_ELBO model from the same initialization and is judged at its last epoch.

.. code-block:: bash

    python examples/plot_beta_collapse.py --epochs 300 --z-dim 16
"""

import argparse

import matplotlib.pyplot as plt

from pyro_vae import TrainConfig
from pyro_vae.data import load_digits
from pyro_vae.experiments.compare import compare
from pyro_vae.experiments.report import format_beta_table
from pyro_vae.viz.anatomy import plot_active_units
from pyro_vae.viz.beta import plot_beta_schedules


def main(args):
    data = load_digits(binarize="dynamic")
    schedules = ("0", "1", "4", f"warmup:{max(1, args.epochs // 2)}")
    result = compare(data, ["trace"],
                     TrainConfig(epochs=args.epochs, progress=False, gap_every=None),
                     z_dim=args.z_dim, num_samples=args.num_samples, seeds=[args.seed],
                     posterior_points=0, gap_families=(), ais_bridges=0,
                     beta_schedules=schedules)  # fmt: skip
    print(format_beta_table(result.beta_rows))
    plot_beta_schedules(result.beta_rows, ax=plt.figure(figsize=(9, 3.5), layout="constrained"))
    fig = plt.figure(figsize=(9, 3.5), layout="constrained")
    activity = {row.schedule: row.activity for row in result.beta_rows}
    plot_active_units(activity, {row.schedule: row.kl_per_dim for row in result.beta_rows}, ax=fig)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().partition("\n")[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--z-dim", type=int, default=16)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
    plt.show()
