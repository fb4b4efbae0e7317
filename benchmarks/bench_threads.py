"""Torch threads under load: wall time of training with 1 vs 2 threads (on demand).

    python benchmarks/bench_threads.py --epochs 30 --repeats 4 --out benchmarks/threads.json

Trains the default VAE (64-256-8, Trace_ELBO, batch 128, validation on) on the digits
for ``--epochs`` epochs in a fresh Python process per repetition, with
``torch.set_num_threads(n)`` for n in ``--threads``, on an idle machine and while a
competing CPU-bound process runs (a torch matrix-multiply loop with torch's default
thread count, as another training job would be). Cases are interleaved, so slow
drift of the machine hits every case alike. Prints, per case, the median, minimum and
maximum wall time and the median CPU time of the training process, and writes them
with the machine's description to ``--out`` (JSON, written atomically).

The package's default thread count (``pyro_vae.train.DEFAULT_THREADS``, the CLI's
``--threads``) was chosen from this measurement; see the README.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

WORKER = """
import sys, time, warnings, torch
warnings.filterwarnings("ignore")
torch.set_num_threads(int(sys.argv[1]))
from pyro_vae import VAE, fit
from pyro_vae.data import load_digits
data = load_digits(binarize="dynamic")
torch.manual_seed(0)
vae = VAE(data.x_dim)
wall, cpu = time.perf_counter(), time.process_time()
fit(vae, data, epochs=int(sys.argv[2]), progress=False)
print(time.perf_counter() - wall, time.process_time() - cpu)
"""

COMPETITOR = """
import torch
a = torch.randn(512, 512)
while True:
    a = torch.tanh(a @ a.T / 512)
"""


def run_once(threads, epochs):
    """(wall seconds, CPU seconds) of one training run in a fresh process."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)  # the worker sets its threads itself
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(threads), str(epochs)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    wall, cpu = map(float, out.stdout.split()[-2:])
    return wall, cpu


def main(args):
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    times = {(load, n): [] for load in ("idle", "busy") for n in args.threads}
    for repeat in range(args.repeats):
        for load in ("idle", "busy"):
            competitor = None
            if load == "busy":
                competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR], env=env)
                time.sleep(1.0)  # let it start
            try:
                for n in args.threads if repeat % 2 == 0 else args.threads[::-1]:
                    times[load, n].append(run_once(n, args.epochs))
                    print(f"repeat {repeat} {load} threads={n}: {times[load, n][-1][0]:.1f} s")
            finally:
                if competitor is not None:
                    competitor.kill()
                    competitor.wait()
    rows = []
    for (load, n), runs in times.items():
        walls = [wall for wall, _ in runs]
        rows.append(
            {
                "load": load,
                "threads": n,
                "epochs": args.epochs,
                "wall_median_s": statistics.median(walls),
                "wall_min_s": min(walls),
                "wall_max_s": max(walls),
                "cpu_median_s": statistics.median(cpu for _, cpu in runs),
                "walls_s": walls,
            }
        )
    print(f"{args.epochs} epochs of fit (Trace_ELBO, validation on), {args.repeats} runs each")
    print(f"{'load':>5} {'threads':>7} {'median':>8} {'min':>7} {'max':>7} {'CPU':>7}  (s)")
    for row in rows:
        print(
            f"{row['load']:>5} {row['threads']:>7} {row['wall_median_s']:8.1f} "
            f"{row['wall_min_s']:7.1f} {row['wall_max_s']:7.1f} {row['cpu_median_s']:7.1f}"
        )
    if args.out:
        import torch

        payload = {
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor(),
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
            "rows": rows,
        }
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, args.out)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default="benchmarks/threads.json")
    main(parser.parse_args())
