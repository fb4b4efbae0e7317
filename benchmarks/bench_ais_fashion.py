"""How far IS-5000 sits below AIS on a Fashion-MNIST VAE with 50 latent dimensions.

    python benchmarks/bench_ais_fashion.py --epochs 100 --points 20 \
        --checkpoint /tmp/fashion_ffg.pt --out benchmarks/ais_fashion.json

Trains (or, when ``--checkpoint`` exists, loads) the Fashion-MNIST VAE of
``bench_gaps_fashion.py`` (z = 50, two hidden layers of 200 units, a factorized Gaussian
guide, Trace_ELBO, Adam 1e-3, batch 100, dynamic binarization, seed 0), then on the first
``--points`` statically binarized test images:

- log p(x) by importance sampling with the guide as proposal, K = 5000
  (:func:`pyro_vae.evaluate`);
- log p(x) by AIS from the guide (:func:`pyro_vae.ais`, 16 chains, L = 10) for each of
  ``--steps`` bridges; the paired difference AIS − IS per image with its s.e.;

and BDMC (:func:`pyro_vae.bdmc`) on ``--points`` images simulated from the model for each
of ``--bdmc-steps``, with IS-5000 on the same simulated images. Every cost is wall
seconds on one torch thread, also as a ratio to IS-5000 on the same points in the same
run. Wu et al. (2017) found IS with the encoder as proposal several nats below AIS on
MNIST VAEs with 50 latent dimensions. Writes JSON atomically. Needs Debian's
``dataset-fashion-mnist``.
"""

import argparse
import json
import os
import time

import torch

from pyro_vae import VAE, ais, bdmc, evaluate, fit, load_checkpoint, save_checkpoint
from pyro_vae._io import atomic_path
from pyro_vae.data import load_dataset
from pyro_vae.infer.evaluation import mean_difference


def _model(args, data):
    if args.checkpoint and os.path.exists(args.checkpoint):
        return load_checkpoint(args.checkpoint)[0], None
    torch.manual_seed(args.seed)
    vae = VAE(784, z_dim=50, hidden_dims=(200, 200))
    start = time.perf_counter()
    fit(vae, data, epochs=args.epochs, batch_size=100, val_samples=10, progress=False,
        seed=args.seed)  # fmt: skip
    train_s = time.perf_counter() - start
    if args.checkpoint:
        save_checkpoint(args.checkpoint, vae)
    return vae, train_s


def _spread(a, b):
    """How a − b spreads over the points: median, largest, and how many exceed 0.5 and 1."""
    d = (a - b).double()
    return {"median": d.median().item(), "max": d.max().item(),
            "over_0.5": int((d > 0.5).sum()), "over_1": int((d > 1).sum())}  # fmt: skip


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(args):
    torch.set_num_threads(1)
    data = load_dataset("fashion-mnist", "dynamic")
    vae, train_s = _model(args, data)
    x = data.test[: args.points]
    out = {
        "setting": "z 50, hidden (200, 200), diagonal guide, Trace_ELBO, Adam 1e-3, batch 100",
        "epochs": args.epochs,
        "train_s": train_s,
        "points": args.points,
        "chains": 16,
        "leapfrog_steps": 10,
    }
    test, is_s = _timed(lambda: evaluate(vae, x, 5000, seed=args.seed))
    out["is_5000"] = {"log_px": test.summary()["log_px"], "seconds": is_s}
    out["ais"] = []
    for steps in args.steps:
        result, seconds = _timed(lambda s=steps: ais(vae, x, num_bridges=s, seed=args.seed))
        out["ais"].append({
            "num_steps": steps,
            **result.summary(),
            "ais_minus_is": mean_difference(result.log_px, test.values["log_px"]),
            "ais_minus_is_spread": _spread(result.log_px, test.values["log_px"]),
            "seconds": seconds,
            "cost_vs_is": seconds / is_s,
        })  # fmt: skip
        print(json.dumps(out["ais"][-1]), flush=True)
    out["bdmc"] = []
    for steps in args.bdmc_steps:
        sandwich, seconds = _timed(
            lambda s=steps: bdmc(vae, num_points=args.points, num_bridges=s, seed=args.seed)
        )
        simulated, sim_is_s = _timed(
            lambda x_sim=sandwich.x: evaluate(vae, x_sim, 5000, seed=args.seed)
        )
        forward, is_5000 = sandwich.forward.log_px, simulated.values["log_px"]
        out["bdmc"].append({
            "num_steps": steps,
            **sandwich.summary(),
            "is_5000": simulated.summary()["log_px"],
            "forward_minus_is": mean_difference(forward, is_5000),
            "forward_minus_is_spread": _spread(forward, is_5000),
            "is_khat_over_0.7": int((simulated.values["khat"] > 0.7).sum()),
            "seconds": seconds,
            "cost_vs_is": seconds / sim_is_s,
        })  # fmt: skip
        print(json.dumps(out["bdmc"][-1]), flush=True)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        with atomic_path(args.out) as tmp, open(tmp, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 1000, 3000])
    parser.add_argument("--bdmc-steps", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", help="the trained model: loaded if it exists, else saved")
    parser.add_argument("--out")
    main(parser.parse_args())
