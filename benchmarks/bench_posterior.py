"""Posteriors p_θ(z|x) per second: the batched sampler against Pyro's NUTS (on demand).

    python benchmarks/bench_posterior.py --threads 1

Trains a digits VAE (64-128-z, 30 epochs, static binarization) for each latent
dimension, then samples the posteriors of the first ``--points`` test digits with
``num_chains`` chains × ``--draws`` draws after ``--warmup`` warm-up iterations by

- the batched sampler, ``pyro_vae.infer.mcmc.sample_posterior`` (all points at once);
- Pyro's default ``MCMC(NUTS(vae.model))``, one point and one chain at a time
  (``--nuts-points`` points timed, extrapolated to ``--points``);
- Pyro's NUTS on the joint posterior of all points (one chain; the rate for
  ``num_chains`` chains is extrapolated as ``num_chains`` times its time).

and prints posteriors per second, bulk ESS per second (the sum over points of each
point's smallest bulk ESS over latent coordinates, per second of wall time), R̂, and
where the batched sampler's time goes (potential and gradient, adaptation bookkeeping,
ArviZ). Not part of the test run: timings depend on the machine and its load.
"""

import argparse
import collections
import functools
import time
import warnings

import arviz
import numpy as np
import pyro
import torch
from pyro.infer import MCMC, NUTS
from pyro.ops import integrator
from pyro.ops.dual_averaging import DualAveraging
from pyro.ops.welford import WelfordCovariance

import pyro_vae
from pyro_vae import VAE, fit
from pyro_vae.data import load_digits
from pyro_vae.infer import diagnostics
from pyro_vae.infer.mcmc import adaptation as adaptation_module
from pyro_vae.infer.mcmc import posterior as posterior_module


class Timers:
    """Wall time and calls of wrapped functions, by label."""

    def __init__(self):
        self.seconds = collections.Counter()
        self.calls = collections.Counter()
        self._undo = []

    def wrap(self, owner, name, label):
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - start
                self.calls[label] += 1

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def restore(self):
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def min_bulk_ess(z):
    """Smallest bulk ESS over latent coordinates of each point; z (chain, draw, B, D)."""
    ess = arviz.ess(arviz.convert_to_dataset({"z": z}), method="bulk")["z"].values
    return ess.reshape(z.shape[2], z.shape[3]).min(1)


def max_rhat(z):
    rhat = arviz.rhat(arviz.convert_to_dataset({"z": z}))["z"].values
    return rhat.reshape(z.shape[2], z.shape[3]).max(1)


def batched(vae, x, args):
    timers = Timers()
    timers.wrap(integrator, "potential_grad", "potential + gradient")
    timers.wrap(DualAveraging, "step", "adaptation (dual averaging, Welford)")
    timers.wrap(WelfordCovariance, "update", "adaptation (dual averaging, Welford)")
    timers.wrap(adaptation_module, "_reasonable_step_size", "step-size resets (incl. their U)")
    timers.wrap(diagnostics, "posterior_inference_data", "ArviZ: InferenceData")
    timers.wrap(diagnostics, "convergence_table", "ArviZ: R̂ and ESS checks")
    timers.wrap(posterior_module, "_posterior_predictive", "posterior predictive")
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            idata = posterior_module.sample_posterior(
                vae,
                x,
                num_samples=args.draws,
                warmup_steps=args.warmup,
                num_chains=args.chains,
                seed=0,
            )
    finally:
        timers.restore()
    total = time.perf_counter() - start
    z = idata.posterior["z"].transpose("chain", "draw", "datum", "latent").values
    return {
        "seconds": total,
        "ess": min_bulk_ess(z),
        "rhat": max_rhat(z),
        "timers": timers,
        "warnings": [str(w.message) for w in caught],
        "mean_steps": float(idata.sample_stats["n_steps"].mean()),
        "sampling_time": idata.posterior.attrs["sampling_time"],
    }


def pyro_nuts_per_point(vae, x, args):
    """Pyro's default NUTS, one chain and one point at a time (θ frozen)."""
    draws = []
    start = time.perf_counter()
    with vae.frozen():
        for i in range(x.shape[0]):
            chains = []
            for chain in range(args.chains):
                pyro.set_rng_seed(chain)
                mcmc = MCMC(
                    NUTS(vae.model),
                    num_samples=args.draws,
                    warmup_steps=args.warmup,
                    disable_progbar=True,
                )
                mcmc.run(x[i : i + 1])
                chains.append(mcmc.get_samples()["z"].numpy())  # (draws, 1, D)
            draws.append(np.stack(chains))
    seconds = time.perf_counter() - start
    z = np.concatenate(draws, axis=2)  # (chain, draw, B, D)
    return {"seconds": seconds, "ess": min_bulk_ess(z), "rhat": max_rhat(z)}


def pyro_nuts_joint(vae, x, args):
    """Pyro's default NUTS on the joint posterior of all points: one chain."""
    pyro.set_rng_seed(0)
    start = time.perf_counter()
    with vae.frozen():
        mcmc = MCMC(
            NUTS(vae.model), num_samples=args.draws, warmup_steps=args.warmup, disable_progbar=True
        )
        mcmc.run(x)
    seconds = time.perf_counter() - start
    z = mcmc.get_samples()["z"].numpy()[None]  # (1, draws, B, D)
    return {"seconds": seconds, "ess": min_bulk_ess(z)}


def report(z_dim, num_points, args, fast, per_point, joint):
    chains = args.chains
    rows = [("batched HMC (all points at once)", fast["seconds"], fast["ess"].sum())]
    scale = num_points / args.nuts_points
    rows.append(
        (
            f"Pyro NUTS per point (timed on {args.nuts_points}, ×{scale:g})",
            per_point["seconds"] * scale,
            per_point["ess"].sum() * scale,
        )
    )
    if joint is not None:
        rows.append(
            (
                f"Pyro NUTS joint over {num_points} points (1 chain ×{chains})",
                joint["seconds"] * chains,
                joint["ess"].sum() * chains,
            )
        )
    print(
        f"\n== z_dim={z_dim}: {num_points} test digits, {chains} chains × {args.draws} draws "
        f"after {args.warmup} warm-up, {torch.get_num_threads()} thread(s)"
    )
    print(f"{'method':<52} {'seconds':>9} {'posteriors/s':>13} {'bulk ESS/s':>11}")
    for label, seconds, ess in rows:
        print(f"{label:<52} {seconds:9.1f} {num_points / seconds:13.3f} {ess / seconds:11.1f}")
    for label, seconds, ess in rows[1:]:
        print(
            f"batched vs {label.split(' (')[0]}: {seconds / rows[0][1]:.0f}× posteriors/s, "
            f"{(rows[0][2] / rows[0][1]) / (ess / seconds):.0f}× ESS/s"
        )
    ess, rhat = fast["ess"], fast["rhat"]
    print(
        f"batched: bulk ESS per point min {ess.min():.0f} / median {np.median(ess):.0f}; "
        f"R̂ max {rhat.max():.4f}; points with R̂ > 1.01: {(rhat > 1.01).sum()}, "
        f"with ESS < 400: {(ess < 400).sum()}; mean leapfrog steps {fast['mean_steps']:.2f}"
    )
    print(
        f"Pyro NUTS per point: bulk ESS min {per_point['ess'].min():.0f}, "
        f"R̂ max {per_point['rhat'].max():.4f}"
    )
    print(f"where the batched sampler's {fast['seconds']:.2f} s go:")
    timers = fast["timers"]
    for label, seconds in timers.seconds.most_common():
        print(f"  {label:<40} {seconds:7.2f} s  ({timers.calls[label]} calls)")
    accounted = sum(timers.seconds.values()) - timers.seconds["step-size resets (incl. their U)"]
    print(f"  {'other (momenta, MH, bookkeeping)':<40} {fast['seconds'] - accounted:7.2f} s")
    for message in fast["warnings"]:
        print(f"  warning: {message[:150]}")


def main(args):
    warnings.filterwarnings("ignore", module="pyro")
    torch.set_num_threads(args.threads)
    data = load_digits(binarize="static")
    x = data.test[: args.points]
    pyro_vae.sample_guide(VAE(64, 2), x[:1], num_samples=2)  # import ArviZ once
    for z_dim in args.z_dims:
        torch.manual_seed(0)
        vae = VAE(64, z_dim=z_dim, hidden_dims=(128,))
        fit(vae, data, epochs=args.epochs, progress=False)
        fast = batched(vae, x, args)
        per_point = pyro_nuts_per_point(vae, x[: args.nuts_points], args)
        joint = None if args.skip_joint else pyro_nuts_joint(vae, x, args)
        report(z_dim, x.shape[0], args, fast, per_point, joint)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--nuts-points", type=int, default=2)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--z-dims", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-joint", action="store_true")
    main(parser.parse_args())
