"""Training speed per objective on the digits: milliseconds per epoch (on demand).

    python benchmarks/bench_training.py --epochs 100 --threads 1

Reports each objective's ms per epoch of ``pyro_vae.fit`` (one Adam step per minibatch
of 128 on the objective's ``differentiable_loss``, validation off) and the ratio to
Trace_ELBO. Not part of the test run: timings depend on the machine and its load.
"""

import argparse
import time
import warnings

import torch

from pyro_vae import VAE, fit
from pyro_vae.data import load_digits

OBJECTIVES = [
    ("Trace_ELBO", {"loss": "trace"}),
    ("TraceMeanField_ELBO", {"loss": "meanfield"}),
    ("RenyiELBO(alpha=0, K=5)", {"loss": "renyi", "num_particles": 5}),
    ("RenyiELBO(alpha=0, K=50)", {"loss": "renyi", "num_particles": 50}),
]


def main(args):
    warnings.filterwarnings("ignore", module="pyro")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(args.flush_denormal)
    data = load_digits(binarize="dynamic")
    rows = []
    for label, kwargs in OBJECTIVES:
        torch.manual_seed(0)
        vae = VAE(64)
        fit(vae, data, epochs=2, progress=False, validation=False, **kwargs)  # warm-up
        start = time.perf_counter()
        fit(vae, data, epochs=args.epochs, progress=False, validation=False, **kwargs)
        rows.append((label, 1000 * (time.perf_counter() - start) / args.epochs))
    base = rows[0][1]
    print(f"threads={args.threads} flush_denormal={args.flush_denormal}")
    for label, ms in rows:
        print(f"{label:>26}  {ms:7.1f} ms/epoch  {ms / base:5.2f}x Trace_ELBO")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--flush-denormal", action="store_true")
    main(parser.parse_args())
