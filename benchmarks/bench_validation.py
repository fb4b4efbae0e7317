"""The per-epoch validation of ``fit``: the traced path against ``evaluate_bounds`` (on demand).

    python benchmarks/bench_validation.py --out benchmarks/validation.json

The main job's network, ``VAE(64, z_dim=8, hidden_dims=(256,))`` (seed 0, untrained:
the cost does not depend on the values), on the 180 validation digits of
``load_digits(binarize="dynamic")``, one torch thread. Three paths, each giving the
same numbers (checked bit for bit here):

- ``traced``: the validation before ``evaluate_bounds``,
  ``evaluate_unchecked(vae, x, 50, (50,), seed, khat=False).summary()`` with the
  decoder's activations out of place (as they were);
- ``untraced_out_of_place``: ``evaluate_bounds(...).summary()`` with the activations
  still out of place (what dropping Pyro's traces, the unread estimates and the heap's
  release after each call saves alone);
- ``untraced``: ``evaluate_bounds(...).summary()`` as ``fit`` now calls it.

V1, one validation call: the paths run in interleaved blocks of ``--block`` calls
(the first of each block untimed), ``--repeats`` blocks each, so each path meets the
heap its own previous call left, as at the next epoch of ``fit``; median and minimum
milliseconds per call, the median of the page faults per call (``ru_minflt``), and the
ratio traced / untraced. Also the parts (medians over ``--repeats``): one traced pass
of guide and model (``log_importance_weights``), ``point_estimates`` on its terms, the
decoder and likelihood alone on fixed draws (the floor), the seeding and the
param-store contexts. V2, the same at K = ``--big-k`` draws on the first
``--big-points`` points (``log_px=True``, as ``track_gap`` reads it).

V3, ``fit``: ``--fit-epochs`` epochs of the main job (``MAIN_JOB`` settings but the
epochs, ``gap_every=25`` as ``pyro-vae compare``) with the traced and the new
validation, each in a fresh process, alternating, ``--fit-repeats`` times: wall time,
the time inside ``Trainer.validate`` and ``Trainer.track_gap``, page faults inside
``validate``, and whether the two histories are identical. Writes everything with the
machine's description to ``--out`` (JSON, atomically). Timings depend on the machine
and its load: not part of the test run.
"""

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings

import pyro
import torch

import pyro_vae.models.vae
import pyro_vae.train.training as training
from pyro_vae import VAE, fit
from pyro_vae.data import load_digits
from pyro_vae.infer.evaluation import evaluate_bounds, evaluate_unchecked, point_estimates
from pyro_vae.infer.traces import log_importance_weights, param_store_as_found, seeded
from pyro_vae.models.guides import ACTIVATIONS
from pyro_vae.train import MAIN_JOB

PATHS = ("traced", "untraced_out_of_place", "untraced")


@contextlib.contextmanager
def out_of_place():
    """The decoder's activations as before ``ACTIVATIONS_IN_PLACE``: a new buffer each."""
    saved = pyro_vae.models.vae.ACTIVATIONS_IN_PLACE
    pyro_vae.models.vae.ACTIVATIONS_IN_PLACE = ACTIVATIONS
    try:
        yield
    finally:
        pyro_vae.models.vae.ACTIVATIONS_IN_PLACE = saved


def traced_bounds(vae, x, num_samples, ks, seed, *, log_px=False):
    """The validation's call before ``evaluate_bounds`` (decoder out of place)."""
    with out_of_place():
        return evaluate_unchecked(vae, x, num_samples, ks, seed, khat=False)


def run_path(path, vae, x, k, ks, log_px):
    """One call of ``path``: its summary (a dict of (mean, se))."""
    if path == "traced":
        return traced_bounds(vae, x, k, ks, 0).summary()
    context = out_of_place() if path == "untraced_out_of_place" else contextlib.nullcontext()
    with context:
        return evaluate_bounds(vae, x, k, ks, 0, log_px=log_px).summary()


def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_paths(vae, x, k, ks, log_px, repeats, block):
    """ms per call and page faults per call of each path, in interleaved blocks."""
    ms = {path: [] for path in PATHS}
    cpu_ms = {path: [] for path in PATHS}
    page_faults = {path: [] for path in PATHS}
    for repeat in range(repeats):
        order = PATHS if repeat % 2 == 0 else PATHS[::-1]
        for path in order:
            run_path(path, vae, x, k, ks, log_px)  # meets the heap another path left
            for _ in range(block - 1):
                before, start, cpu = faults(), time.perf_counter(), time.process_time()
                run_path(path, vae, x, k, ks, log_px)
                ms[path].append(1000 * (time.perf_counter() - start))
                cpu_ms[path].append(1000 * (time.process_time() - cpu))
                page_faults[path].append(faults() - before)
    out = {}
    for path in PATHS:
        out[path] = {
            "median_ms": statistics.median(ms[path]),
            "min_ms": min(ms[path]),
            "median_cpu_ms": statistics.median(cpu_ms[path]),
            "page_faults_median": statistics.median(page_faults[path]),
            "all_ms": ms[path],
        }
    out["ratio_traced_to_untraced"] = out["traced"]["median_ms"] / out["untraced"]["median_ms"]
    return out


def same_numbers(vae, x, k, ks, log_px):
    """Whether the three paths give the same summary: every mean and s.e. equal (or both NaN)."""
    summaries = [run_path(path, vae, x, k, ks, log_px) for path in PATHS]
    new = summaries[-1]
    return all(
        summary[name][0] == new[name][0]
        and (
            summary[name][1] == new[name][1]
            or math.isnan(summary[name][1])
            and math.isnan(new[name][1])
        )
        for summary in summaries
        for name in new
    )


def median_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def parts(vae, x, k, repeats):
    """Milliseconds of the pieces of one traced validation call (medians)."""
    with torch.no_grad():
        terms = log_importance_weights(vae.model, vae.guide, x, k)
        z = vae.encode(x).sample((k,))

    def decoder_pass():
        with torch.no_grad():
            vae.likelihood_dist(z).log_prob(x)

    def contexts():
        with param_store_as_found(), seeded(0, x.device):
            pass

    with torch.no_grad(), out_of_place():
        traced_pass = median_ms(lambda: log_importance_weights(vae.model, vae.guide, x, k), repeats)
        old_decoder = median_ms(decoder_pass, repeats)
    return {
        "traced_pass_ms": traced_pass,
        "point_estimates_ms": median_ms(lambda: point_estimates(terms, (k,), False), repeats),
        "decoder_and_likelihood_out_of_place_ms": old_decoder,
        "decoder_and_likelihood_ms": median_ms(decoder_pass, repeats),
        "seeded_and_param_store_ms": median_ms(contexts, repeats),
    }


def fit_child(path, epochs):
    """One run of ``fit`` in this process with ``path``'s validation; prints JSON."""
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    if path == "traced":
        training.evaluate_bounds = traced_bounds
    spent = {"validate_s": 0.0, "validate_cpu_s": 0.0, "track_gap_s": 0.0}
    spent["validate_page_faults"] = 0
    real_validate, real_gap = training.Trainer.validate, training.Trainer.track_gap

    def validate(self, record):
        before, start, cpu = faults(), time.perf_counter(), time.process_time()
        real_validate(self, record)
        spent["validate_s"] += time.perf_counter() - start
        spent["validate_cpu_s"] += time.process_time() - cpu
        spent["validate_page_faults"] += faults() - before

    def track_gap(self, record):
        start = time.perf_counter()
        real_gap(self, record)
        spent["track_gap_s"] += time.perf_counter() - start

    training.Trainer.validate, training.Trainer.track_gap = validate, track_gap
    data = load_digits(binarize="dynamic")
    torch.manual_seed(0)
    vae = VAE(data.x_dim, z_dim=8, hidden_dims=(256,))
    config = MAIN_JOB.replace(epochs=epochs, gap_every=25, progress=False, seed=0)
    start, cpu = time.perf_counter(), time.process_time()
    run = fit(vae, data, config)
    spent["wall_s"] = time.perf_counter() - start
    spent["cpu_s"] = time.process_time() - cpu
    keys = ("train_loss", "val_elbo", "val_iwae", "gap_log_px", "gap_elbo", "gap_se")
    spent["history"] = [[h.get(key) for key in keys] for h in run.history]
    print(json.dumps(spent))


def fit_section(args):
    runs = {path: [] for path in ("traced", "untraced")}
    for repeat in range(args.fit_repeats):
        for path in ("traced", "untraced") if repeat % 2 == 0 else ("untraced", "traced"):
            command = [sys.executable, __file__, "--fit-child", path, str(args.fit_epochs)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            runs[path].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"fit {path:>8}: {runs[path][-1]['wall_s']:.2f} s")
    epochs = args.fit_epochs
    out = {"epochs": epochs, "gap_every": 25}
    for path, results in runs.items():
        out[path] = {
            "wall_s_median": statistics.median(r["wall_s"] for r in results),
            "cpu_s_median": statistics.median(r["cpu_s"] for r in results),
            "validate_ms_per_epoch_median": statistics.median(
                1000 * r["validate_s"] / epochs for r in results
            ),
            "validate_cpu_ms_per_epoch_median": statistics.median(
                1000 * r["validate_cpu_s"] / epochs for r in results
            ),
            "track_gap_ms_per_call_median": statistics.median(
                1000 * r["track_gap_s"] / (epochs // 25 + (epochs % 25 != 0)) for r in results
            ),
            "validate_page_faults_per_epoch_median": statistics.median(
                r["validate_page_faults"] / epochs for r in results
            ),
            "wall_s_all": [r["wall_s"] for r in results],
            "cpu_s_all": [r["cpu_s"] for r in results],
        }
    histories = [r["history"] for results in runs.values() for r in results]
    out["histories_identical"] = all(h == histories[0] for h in histories)
    out["saving_ms_per_epoch"] = (
        1000 * (out["traced"]["wall_s_median"] - out["untraced"]["wall_s_median"]) / epochs
    )
    out["saving_cpu_ms_per_epoch"] = (
        1000 * (out["traced"]["cpu_s_median"] - out["untraced"]["cpu_s_median"]) / epochs
    )
    out["validate_ratio"] = (
        out["traced"]["validate_ms_per_epoch_median"]
        / out["untraced"]["validate_ms_per_epoch_median"]
    )
    return out


def main(args):
    from bench_speed import machine, write_json  # beside this script

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", module="pyro")
    payload = {"machine": machine(1), "settings": vars(args)}
    x = load_digits(binarize="dynamic").validation
    torch.manual_seed(0)
    vae = VAE(64, z_dim=8, hidden_dims=(256,))
    k = MAIN_JOB.val_samples
    with pyro.get_param_store().scope(), pyro.validation_enabled(False):
        validate = time_paths(vae, x, k, (k,), False, args.repeats, args.block)
        validate.update(points=x.shape[0], k=k, same_numbers=same_numbers(vae, x, k, (k,), False))
        validate["parts"] = parts(vae, x, k, args.repeats)
        payload["validate"] = validate
        print(f"validation, {x.shape[0]} points x K={k}:")
        for path in PATHS:
            row = validate[path]
            times = f"{row['median_ms']:6.1f} ms (min {row['min_ms']:.1f}, "
            times += f"CPU {row['median_cpu_ms']:.1f})"
            print(f"  {path:>22}: {times}, {row['page_faults_median']:.0f} page faults")
        print(f"  ratio {validate['ratio_traced_to_untraced']:.2f}, same numbers: "
              f"{validate['same_numbers']}; parts (ms): {validate['parts']}")  # fmt: skip
        big_x = x[: args.big_points]
        big = time_paths(vae, big_x, args.big_k, (), True, max(2, args.repeats // 4), 2)
        big.update(points=big_x.shape[0], k=args.big_k)
        big["same_numbers"] = same_numbers(vae, big_x, args.big_k, (), True)
        payload["big_k"] = big
        print(f"K={args.big_k} on {big_x.shape[0]} points: traced "
              f"{big['traced']['median_ms']:.0f} ms, untraced {big['untraced']['median_ms']:.0f} "
              f"ms, ratio {big['ratio_traced_to_untraced']:.2f}, same numbers: "
              f"{big['same_numbers']}")  # fmt: skip
    if args.fit_repeats:
        payload["fit"] = fit = fit_section(args)
        old, new = fit["traced"], fit["untraced"]
        print(f"fit, {fit['epochs']} epochs: validation {old['validate_ms_per_epoch_median']:.1f}"
              f" -> {new['validate_ms_per_epoch_median']:.1f} ms per epoch (ratio "
              f"{fit['validate_ratio']:.2f}), wall {old['wall_s_median']:.2f} -> "
              f"{new['wall_s_median']:.2f} s ({fit['saving_ms_per_epoch']:.1f} ms per epoch "
              f"saved; CPU {fit['saving_cpu_ms_per_epoch']:.1f} ms), histories identical: "
              f"{fit['histories_identical']}")  # fmt: skip
    payload["machine"]["load_average_end"] = list(os.getloadavg())
    if args.out:
        write_json(payload, args.out)
        print(f"wrote {args.out}")
    return payload


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--fit-child":
        fit_child(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="blocks of calls per path")
    parser.add_argument("--block", type=int, default=5, help="calls per block (first untimed)")
    parser.add_argument("--big-k", type=int, default=5000)
    parser.add_argument("--big-points", type=int, default=20)
    parser.add_argument("--fit-epochs", type=int, default=50)
    parser.add_argument("--fit-repeats", type=int, default=5, help="0 skips the fit runs")
    parser.add_argument("--out", default="benchmarks/validation.json")
    main(parser.parse_args())
