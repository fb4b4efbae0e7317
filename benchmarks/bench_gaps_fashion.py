"""Where the gap comes from on Fashion-MNIST, in the setting of Cremer et al. (2018), Table 2.

    python benchmarks/bench_gaps_fashion.py --epochs 100 --points 100 --max-steps 10000 \
        --guide diagonal --out benchmarks/gaps_fashion_ffg.json
    python benchmarks/bench_gaps_fashion.py --epochs 100 --points 100 --max-steps 10000 \
        --guide iaf:2 --out benchmarks/gaps_fashion_iaf.json

Trains a VAE as Cremer, Li & Duvenaud (2018) did for Fashion-MNIST (z = 50, encoder and
decoder with two hidden layers of 200 units, a factorized Gaussian (FFG, ``--guide diagonal``)
or a flow (``--guide iaf:2``, an IAF on the FFG with the encoder's features as context)
amortized guide,
Trace_ELBO, Adam 1e-3, batch 100, dynamic binarization), as long as ``--epochs`` allows on
this machine, then splits the gap on the first ``--points`` statically binarized test
images with :func:`pyro_vae.inference_gaps`: log p̂(x) (the best importance-sampling
estimate, K = 5000), L[q*] for a per-point diagonal Gaussian and a per-point flow, L[q]
for the amortized guide, and the approximation and amortization gaps. Writes the numbers,
the epochs and the wall times as JSON (atomically). One torch thread. Needs Debian's
``dataset-fashion-mnist``.
"""

import argparse
import json
import time

import torch

from pyro_vae import VAE, fit, inference_gaps
from pyro_vae._io import atomic_path
from pyro_vae.data import load_dataset


def main(args):
    torch.set_num_threads(1)
    data = load_dataset("fashion-mnist", "dynamic")
    torch.manual_seed(args.seed)
    vae = VAE(784, z_dim=50, hidden_dims=(200, 200), encoder=args.guide)
    start = time.perf_counter()
    run = fit(vae, data, epochs=args.epochs, batch_size=100, val_samples=10, progress=False,
              seed=args.seed)  # fmt: skip
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    gaps = inference_gaps(vae, data.test[: args.points], families=tuple(args.families),
                          num_samples=5000, seed=args.seed, max_steps=args.max_steps)  # fmt: skip
    gaps_s = time.perf_counter() - start
    out = {
        "setting": "z 50, hidden (200, 200), Trace_ELBO, Adam 1e-3, batch 100",
        "guide": args.guide,
        "max_steps": args.max_steps,
        "binarization": "dynamic (train), static (test points)",
        "epochs": args.epochs,
        "best_epoch": run.best_epoch,
        "points": args.points,
        "train_s": train_s,
        "gaps_s": gaps_s,
        "log_px_source": gaps.log_px_source,
        "local_steps": {f: g.steps for f, g in gaps.local.items()},
        "summary": gaps.summary(),
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        with atomic_path(args.out) as tmp, open(tmp, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--guide", default="diagonal", help="amortized guide spec")
    parser.add_argument("--families", nargs="+", default=["diagonal", "flow"])
    parser.add_argument("--max-steps", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    main(parser.parse_args())
