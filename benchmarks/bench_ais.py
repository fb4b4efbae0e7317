"""The BDMC sandwich's width against its cost, on data simulated from the main job's 8-D
digits VAE.

    python benchmarks/bench_ais.py --checkpoint /tmp/digits_trace.pt --out benchmarks/ais.json

Trains (or, when ``--checkpoint`` exists, loads) the main job's Trace_ELBO model on the
bundled digits (z = 8, one hidden layer of 256 units, Bernoulli likelihood,
:data:`pyro_vae.train.MAIN_JOB`: 800 epochs, patience 100, seed 0), simulates ``--points``
points from it and, for each of ``--steps`` bridges, runs :func:`pyro_vae.bdmc`
(``--chains`` chains, default 16; L = 10; step sizes tuned on 4 chains per point)
and reports the width (reverse − forward, nats per point, ± s.e.)
with its wall time as a ratio to importance sampling with K = 5000 on the same points
(:func:`pyro_vae.evaluate`), timed in the same run, alternating, ``--repeats`` times
each (the median). Also :func:`pyro_vae.ais` from the guide on the first ``--points``
test digits at the same budgets, against IS-5000 there. One torch thread. Writes JSON
atomically.

The cost of AIS grows as points × chains × (bridges + the adaptation pass's 100) ×
leapfrog steps × one gradient of log p(x, z) (the decoder's size); BDMC runs two such
passes (forward and reverse) after one adaptation pass.
"""

import argparse
import json
import os
import statistics
import time

import torch

from pyro_vae import VAE, ais, bdmc, evaluate, fit, load_checkpoint, save_checkpoint
from pyro_vae._io import atomic_path
from pyro_vae.data import load_digits
from pyro_vae.infer.evaluation import mean_difference
from pyro_vae.train import MAIN_JOB


def _model(args, data):
    if args.checkpoint and os.path.exists(args.checkpoint):
        return load_checkpoint(args.checkpoint)[0]
    torch.manual_seed(0)
    vae = VAE(data.x_dim, 8, (256,))
    fit(vae, data, MAIN_JOB.replace(progress=False, seed=0))
    if args.checkpoint:
        save_checkpoint(args.checkpoint, vae)
    return vae


def _median_time(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def main(args):
    torch.set_num_threads(1)
    data = load_digits(binarize="dynamic")
    vae = _model(args, data)
    out = {"setting": "digits, z 8, hidden (256,), Trace_ELBO, MAIN_JOB, seed 0",
           "points": args.points, "chains": args.chains, "leapfrog_steps": 10, "threads": 1,
           "repeats": args.repeats, "bdmc": [], "ais": []}  # fmt: skip
    simulated = bdmc(vae, args.points, num_bridges=1, seed=args.seed).x  # the same x* below
    x_test = data.test[: args.points]
    for steps in args.steps:
        sandwich, seconds = _median_time(
            lambda s=steps: bdmc(vae, args.points, s, args.chains, seed=args.seed), args.repeats
        )
        assert torch.equal(sandwich.x, simulated)
        test, is_s = _median_time(
            lambda: evaluate(vae, simulated, 5000, seed=args.seed), args.repeats
        )
        row = {"num_steps": steps, **sandwich.summary(), "is_5000": test.summary()["log_px"],
               "forward_minus_is": mean_difference(sandwich.forward.log_px, test.values["log_px"]),
               "seconds": seconds, "is_seconds": is_s, "cost_vs_is": seconds / is_s}  # fmt: skip
        out["bdmc"].append(row)
        print(json.dumps(row), flush=True)
        result, seconds = _median_time(
            lambda s=steps: ais(vae, x_test, s, args.chains, seed=args.seed), args.repeats
        )
        test, is_s = _median_time(lambda: evaluate(vae, x_test, 5000, seed=args.seed), args.repeats)
        row = {"num_steps": steps, **result.summary(), "is_5000": test.summary()["log_px"],
               "ais_minus_is": mean_difference(result.log_px, test.values["log_px"]),
               "seconds": seconds, "is_seconds": is_s, "cost_vs_is": seconds / is_s}  # fmt: skip
        out["ais"].append(row)
        print(json.dumps(row), flush=True)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        with atomic_path(args.out) as tmp, open(tmp, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", help="the trained model: loaded if it exists, else saved")
    parser.add_argument("--out")
    main(parser.parse_args())
