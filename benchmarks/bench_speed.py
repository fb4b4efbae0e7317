"""Speed of the Pyro path against hand-written PyTorch, in the same run (on demand).

    python benchmarks/bench_speed.py --threads 1 --out benchmarks/speed.json

runs every section (about 12 minutes on 2 cores); ``--sections p1 p2`` runs some.

P1, training: milliseconds per epoch of ``pyro_vae.fit(vae, x, loss=..., epochs=E,
batch_size=B, validation=False, progress=False)`` on the digits training split
(static binarization) replicated ×8 along the rows (10 064 rows: 79 steps of 128 or
10 of 1024), network ``VAE(64, z_dim=8, hidden_dims=(256,))``, Adam lr 1e-3, against
a hand-written PyTorch loop on a copy of the same network (``copy.deepcopy`` of the
package's module: same encoder, decoder and initial weights), the same shuffling,
batch, optimizer and objective written with :mod:`torch.distributions`:

- ``trace``: single-sample ELBO, log p(x|z) + log p(z) − log q(z|x) at a
  reparameterized z (Bernoulli likelihood, Normal prior and guide);
- ``meanfield``: log p(x|z) − KL(q(z|x) ‖ p(z)), the KL in closed form;
- ``iwae5``: the package's ``loss="renyi", alpha=0, num_particles=5`` against
  logsumexp over 5 particles of log w − log 5.

Both losses are −(N/B) Σ_batch bound (nats), as the package scales a minibatch. Each
case builds fresh models, runs one warm-up epoch of each side, then ``--repeats``
interleaved repetitions (package, reference, package, ...) of ``--epochs`` epochs;
the time of a package repetition is the wall time of the whole ``fit`` call (its
setup, a few ms, included) divided by the epochs; the median over repetitions is
printed. A check first computes both losses on one minibatch from the same seed (same
z draws): their relative difference shows the reference computes the same number.

P2, evaluation: ``pyro_vae.evaluate(vae, test, num_samples=5000, ks=(5, 50))`` on the
359 test digits against a pure-tensor importance sampler that draws the same
z ~ q(z|x) in the same chunks (``pyro_vae.infer.traces.chunk_sizes``: at most
``CHUNK_ROWS`` particle-rows per pass) and returns log p(x) = logmeanexp of log w
(with the ELBO and L_5, L_50; the
package also computes standard errors, ESS and Pareto k̂). Peak memory, for K = 5000
and K = 50000: the peak resident set size of the process (``VmHWM``, which
``ru_maxrss`` reports, reset just before the evaluation) minus the resident set just
before it (after imports, model and data), in a fresh subprocess per measurement,
on the first ``--memory-points`` test points (the peak is set by one chunk of
particles, so a subset gives the same figure as the full split, minus a few kB of
per-point results).

P3, posteriors: the batched HMC sampler (``pyro_vae.sample_posterior``, all points
at once) against Pyro's ``MCMC(NUTS(vae.model))`` one point and one chain at a time
(timed on ``--nuts-points`` points and scaled), on the first ``--posterior-points``
test digits of a z_dim = 2 VAE (64-128-2, 30 epochs); 4 chains × 500 draws after 500
warm-up iterations; seconds per posterior and bulk ESS per second (the functions of
``bench_posterior.py``, which has the full comparison).

P4, the main job: wall and CPU time of ``pyro-vae compare`` with its defaults (into a
temporary folder), as a user runs it, in a subprocess, with the load average and the
time per section (``bench_compare.py``'s measurement).

P1 also profiles one epoch of the package's ``trace`` path at batch 128 and 1024 with
cProfile (and, for comparison, one epoch of the reference) and writes the top entries
by cumulative and by own time to ``--profile``.
Writes everything with the machine's description to ``--out`` (JSON, atomically).
Timings depend on the machine and its load: not part of the test run.
"""

import argparse
import copy
import cProfile
import io
import json
import math
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import pyro
import torch
import torch.distributions as td
from torch.nn import functional as F

import pyro_vae
from pyro_vae import VAE
from pyro_vae.data import load_digits
from pyro_vae.infer.objectives import make_elbo
from pyro_vae.infer.traces import chunk_sizes

OBJECTIVES = {
    "trace": {"loss": "trace"},
    "meanfield": {"loss": "meanfield"},
    "iwae5": {"loss": "renyi", "alpha": 0.0, "num_particles": 5},
}
LR = 1e-3
REPLICATE = 8


def training_data():
    """The digits training split, static binarization, replicated ×8 along rows."""
    return load_digits(binarize="static").train.repeat(REPLICATE, 1)


def negative_bound(encoder, decoder, xb, objective, num_data):
    """−(N/B) Σ_batch bound of a minibatch ``xb`` (B, D), written with torch alone."""
    guide = encoder(xb)  # the package's encoder returns Normal(z_loc, z_scale).to_event(1)
    z_loc, z_scale = guide.base_dist.loc, guide.base_dist.scale
    q = td.Normal(z_loc, z_scale, validate_args=False)
    prior = td.Normal(torch.zeros_like(z_loc), torch.ones_like(z_scale), validate_args=False)
    particles = 5 if objective == "iwae5" else 1
    z = q.rsample((particles,))  # (K, B, z_dim)
    likelihood = td.Bernoulli(logits=decoder(z), validate_args=False)
    log_px_z = likelihood.log_prob(xb).sum(-1)  # (K, B)
    if objective == "meanfield":
        bound = log_px_z[0] - td.kl_divergence(q, prior).sum(-1)
    else:
        log_w = log_px_z + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
        bound = log_w.logsumexp(0) - math.log(particles)
    return -(num_data / xb.shape[0]) * bound.sum()


def reference_epochs(vae, x, objective, batch_size, epochs, seed=0):
    """The hand-written loop: ``epochs`` epochs of Adam on :func:`negative_bound`.

    Mirrors ``Trainer.train_epoch``: a fresh Adam, a seeded shuffling generator, one
    step per minibatch, the loss read back as a float and checked to be finite.
    """
    optimizer = torch.optim.Adam(vae.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    num_data = x.shape[0]
    for _ in range(epochs):
        total = 0.0
        for rows in torch.randperm(num_data, generator=generator).split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = negative_bound(vae.encoder, vae.decoder, x[rows], objective, num_data)
            loss.backward()
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"Non-finite reference loss {value}")
            optimizer.step()
            total += value * len(rows) / num_data
    return total


def package_epochs(vae, x, objective, batch_size, epochs):
    """``pyro_vae.fit`` for ``epochs`` epochs, validation and progress bar off."""
    return pyro_vae.fit(
        vae,
        x,
        epochs=epochs,
        batch_size=batch_size,
        lr=LR,
        validation=False,
        progress=False,
        **OBJECTIVES[objective],
    )


def same_number(objective, x, batch_size):
    """Relative difference of the package's and the reference's loss on one minibatch,
    computed from the same seed (the same z draws) on the same network."""
    torch.manual_seed(0)
    vae = VAE(64)
    rows = torch.arange(batch_size)
    spec = OBJECTIVES[objective]
    elbo = make_elbo(spec["loss"], spec.get("alpha", 0.0), spec.get("num_particles", 1))
    with pyro.get_param_store().scope(), pyro.validation_enabled(False), torch.no_grad():
        torch.manual_seed(1)
        package = elbo.differentiable_loss(
            vae.model, vae.guide, x[rows], num_data=x.shape[0], subsample=rows
        )
        torch.manual_seed(1)
        reference = negative_bound(vae.encoder, vae.decoder, x[rows], objective, x.shape[0])
    return abs(float(package - reference)) / abs(float(reference))


def time_training(objective, batch_size, x, epochs, repeats):
    """Median ms per epoch of the package and the reference, interleaved."""
    torch.manual_seed(0)
    vae = VAE(64)
    ref = copy.deepcopy(vae)
    package_epochs(vae, x, objective, batch_size, 1)  # warm-up
    reference_epochs(ref, x, objective, batch_size, 1)
    times = {"package": [], "reference": []}
    for _ in range(repeats):
        start = time.perf_counter()
        package_epochs(vae, x, objective, batch_size, epochs)
        times["package"].append(1000 * (time.perf_counter() - start) / epochs)
        start = time.perf_counter()
        reference_epochs(ref, x, objective, batch_size, epochs)
        times["reference"].append(1000 * (time.perf_counter() - start) / epochs)
    return times


@torch.no_grad()
def reference_evaluate(vae, x, num_samples, seed=0):
    """log p(x), ELBO, L_5 and L_50 per point by importance sampling, torch alone.

    The same chunks as ``pyro_vae.evaluate`` (:func:`pyro_vae.infer.traces.chunk_sizes`)
    and, from the same seed, the same draws z ~ q(z|x). Returns a dict of ``(batch,)``
    tensors, nats per point.
    """
    batch_rows, sample_rows = chunk_sizes(x.shape[0], num_samples)
    out = {"log_px": [], "elbo": [], "iwae_5": [], "iwae_50": []}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for start in range(0, x.shape[0], batch_rows):
            xb = x[start : start + batch_rows]
            q = vae.encoder(xb)
            z_loc, z_scale = q.mean, q.stddev
            q = td.Normal(z_loc, z_scale, validate_args=False)
            chunks = []
            for s in range(0, num_samples, sample_rows):
                z = q.rsample((min(sample_rows, num_samples - s),))  # (S, b, z_dim)
                logits = vae.decoder(z)
                log_px_z = -F.binary_cross_entropy_with_logits(
                    logits, xb.expand_as(logits), reduction="none"
                ).sum(-1)
                log_pz = -0.5 * (z.square() + math.log(2 * math.pi)).sum(-1)
                chunks.append(log_px_z + log_pz - q.log_prob(z).sum(-1))
            log_w = torch.cat(chunks)  # (S, b)
            out["log_px"].append(log_w.logsumexp(0) - math.log(num_samples))
            out["elbo"].append(log_w.mean(0))
            for k in (5, 50):
                groups = num_samples // k
                grouped = log_w[: groups * k].reshape(groups, k, -1)
                out[f"iwae_{k}"].append((grouped.logsumexp(1) - math.log(k)).mean(0))
    return {key: torch.cat(value) for key, value in out.items()}


def time_evaluation(vae, test, num_samples, repeats):
    """Median seconds of ``evaluate`` and of the reference (interleaved), and the
    largest difference of their log p(x) per point (nats)."""
    times = {"package": [], "reference": []}
    for _ in range(repeats):
        start = time.perf_counter()
        package = pyro_vae.evaluate(vae, test, num_samples=num_samples, ks=(5, 50))
        times["package"].append(time.perf_counter() - start)
        start = time.perf_counter()
        reference = reference_evaluate(vae, test, num_samples)
        times["reference"].append(time.perf_counter() - start)
    diff = float((package.values["log_px"] - reference["log_px"]).abs().max())
    return times, diff


def peak_memory(which, num_samples, points, threads):
    """Peak resident memory over one evaluation (MiB, dict), in a fresh subprocess."""
    args = [sys.executable, __file__, "--memory-child", which, str(num_samples), str(points)]
    args += ["--threads", str(threads)]
    done = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _status_mib(field):
    """A field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in MiB."""
    with open("/proc/self/status", encoding="ascii") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def memory_child(which, num_samples, points):
    """Print the child's resident memory before and its peak over one evaluation (MiB).

    On Linux the peak (``VmHWM``, what ``ru_maxrss`` reports) is reset to the current
    resident set just before the evaluation (``/proc/self/clear_refs``): otherwise a
    subprocess's ``ru_maxrss`` starts at its parent's resident set at fork time. ArviZ
    is imported before the baseline: its one-time import (at the first Pareto k̂) would
    otherwise count as the evaluation's memory whenever it falls inside the peak.
    """
    import arviz  # noqa: F401  (loaded at the first Pareto k̂: ~45 MiB of modules, once per process)

    torch.manual_seed(0)
    vae = VAE(64)
    test = load_digits(binarize="static").test[:points]
    linux = os.path.exists("/proc/self/clear_refs")
    if linux:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        before = _status_mib("VmRSS")
    else:  # ru_maxrss is in bytes on macOS
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if which == "package":
        pyro_vae.evaluate(vae, test, num_samples=num_samples, ks=(5, 50))
    else:
        reference_evaluate(vae, test, num_samples)
    if linux:
        after = _status_mib("VmHWM")
    else:
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"baseline_mib": before, "peak_mib": after, "growth_mib": after - before}))


def profile_epochs(x, path, top):
    """cProfile one epoch of the package's trace path at batch 128 and 1024 (and of the
    reference, for comparison) and write the top entries to ``path``."""
    sections = []
    for batch_size in (128, 1024):
        for side in ("package", "reference"):
            torch.manual_seed(0)
            vae = VAE(64)
            run = package_epochs if side == "package" else reference_epochs
            run(vae, x, "trace", batch_size, 1)  # warm-up
            profiler = cProfile.Profile()
            profiler.enable()
            run(vae, x, "trace", batch_size, 1)
            profiler.disable()
            for key in ("cumulative", "tottime"):
                stream = io.StringIO()
                pstats.Stats(profiler, stream=stream).sort_stats(key).print_stats(top)
                title = f"### {side}, trace, batch {batch_size}, sorted by {key}"
                sections.append(f"{title}\n{stream.getvalue()}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(sections))


def machine(threads):
    """The machine and library versions behind the numbers (dict)."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "pyro_vae": getattr(pyro_vae, "__version__", None),
        "threads": threads,
    }


def write_json(payload, path):
    """Write ``payload`` as strict JSON to ``path`` atomically (temp file, os.replace)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".speed-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def summarize(times):
    package = statistics.median(times["package"])
    reference = statistics.median(times["reference"])
    return {
        "package": package,
        "reference": reference,
        "ratio": package / reference,
        "package_all": times["package"],
        "reference_all": times["reference"],
    }


def training_section(args):
    """P1: ms per epoch of fit and the reference, per objective and batch size."""
    x = training_data()
    rows = []
    print(f"{'case':>16}  {'steps':>5}  {'package ms':>10}  {'reference ms':>12}  ratio  check")
    for batch_size in args.batch_sizes:
        for objective in OBJECTIVES:
            row = summarize(time_training(objective, batch_size, x, args.epochs, args.repeats))
            row.update(
                objective=objective,
                batch_size=batch_size,
                steps=math.ceil(x.shape[0] / batch_size),
                loss_rel_diff=same_number(objective, x, batch_size),
            )
            rows.append(row)
            print(
                f"{objective + ' B=' + str(batch_size):>16}  {row['steps']:>5}  "
                f"{row['package']:10.1f}  {row['reference']:12.1f}  {row['ratio']:5.2f}  "
                f"{row['loss_rel_diff']:.1e}"
            )
    profile_epochs(x, args.profile, args.profile_top)
    print(f"profile: {args.profile}")
    return {"rows": x.shape[0], "cases": rows, "profile": args.profile}


def evaluation_section(args):
    """P2: evaluate against the pure-tensor sampler, and peak memory."""
    torch.manual_seed(0)
    vae = VAE(64)
    test = load_digits(binarize="static").test
    times, diff = time_evaluation(vae, test, 5000, args.eval_repeats)
    evaluation = summarize(times)
    evaluation.update(num_samples=5000, points=test.shape[0], log_px_max_abs_diff=diff)
    print(
        f"evaluate K=5000, {test.shape[0]} points: package {evaluation['package']:.2f} s, "
        f"reference {evaluation['reference']:.2f} s, ratio {evaluation['ratio']:.2f}, "
        f"max |Δ log p(x)| {diff:.1e} nats"
    )
    memory = {}
    for num_samples in (5000, 50000):
        for which in ("package", "reference"):
            peak = peak_memory(which, num_samples, args.memory_points, args.threads)
            memory[f"{which}_K{num_samples}"] = peak
            print(
                f"peak memory K={num_samples} {which:>9}: +{peak['growth_mib']:.0f} MiB "
                f"(resident {peak['baseline_mib']:.0f} -> {peak['peak_mib']:.0f} MiB)"
            )
    evaluation["memory"] = memory
    return evaluation


def posterior_section(args):
    """P3: seconds per posterior and bulk ESS per second, batched HMC vs Pyro's NUTS."""
    import bench_posterior  # beside this script

    settings = argparse.Namespace(
        draws=500, warmup=500, chains=4, nuts_points=args.nuts_points, points=None
    )
    data = load_digits(binarize="static")
    x = data.test[: args.posterior_points]
    torch.manual_seed(0)
    vae = VAE(64, z_dim=2, hidden_dims=(128,))
    pyro_vae.fit(vae, data, epochs=30, progress=False)
    fast = bench_posterior.batched(vae, x, settings)
    nuts = bench_posterior.pyro_nuts_per_point(vae, x[: args.nuts_points], settings)
    package = fast["seconds"] / x.shape[0]
    reference = nuts["seconds"] / args.nuts_points
    result = {
        "points": x.shape[0],
        "nuts_points": args.nuts_points,
        "chains": 4,
        "draws": 500,
        "warmup": 500,
        "package_s_per_posterior": package,
        "reference_s_per_posterior": reference,
        "ratio": package / reference,
        "package_bulk_ess_per_s": float(fast["ess"].sum() / fast["seconds"]),
        "reference_bulk_ess_per_s": float(nuts["ess"].sum() / nuts["seconds"]),
        "package_max_rhat": float(fast["rhat"].max()),
        "reference_max_rhat": float(nuts["rhat"].max()),
    }
    print(
        f"posteriors (z_dim=2, {x.shape[0]} points): batched HMC {package:.3f} s each, "
        f"Pyro NUTS {reference:.2f} s each, ratio {result['ratio']:.3f}; bulk ESS/s "
        f"{result['package_bulk_ess_per_s']:.0f} vs {result['reference_bulk_ess_per_s']:.0f}"
    )
    return result


def main_job_section(args):
    """P4: wall and CPU time of ``pyro-vae compare`` with defaults, in a fresh process
    (``bench_compare.measure``, which also times its sections)."""
    import bench_compare  # beside this script

    result = bench_compare.measure([])
    print(
        f"pyro-vae compare (defaults): {result['wall_s']:.0f} s wall, {result['cpu_s']:.0f} s CPU"
    )
    return result


SECTIONS = {
    "p1": ("training", training_section),
    "p2": ("evaluation", evaluation_section),
    "p3": ("posteriors", posterior_section),
    "p4": ("main_job", main_job_section),
}


def main(args):
    warnings.filterwarnings("ignore", module="pyro")
    torch.set_num_threads(args.threads)
    payload = {"machine": machine(args.threads)}
    payload["settings"] = {
        "sections": args.sections,
        "epochs_per_repeat": args.epochs,
        "repeats": args.repeats,
        "eval_repeats": args.eval_repeats,
        "memory_points": args.memory_points,
        "posterior_points": args.posterior_points,
        "nuts_points": args.nuts_points,
    }
    print(f"threads={args.threads}  {payload['machine']['platform']}")
    for section in args.sections:
        key, run = SECTIONS[section]
        payload[key] = run(args)
    payload["machine"]["load_average_end"] = list(os.getloadavg())
    write_json(payload, args.out)
    print(f"wrote {args.out}")
    return payload


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        torch.set_num_threads(int(sys.argv[6]))
        warnings.filterwarnings("ignore", module="pyro")
        memory_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per repetition")
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of each side")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--eval-repeats", type=int, default=3)
    parser.add_argument("--memory-points", type=int, default=26)
    parser.add_argument("--profile", default="/tmp/speed_profile.txt")
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--posterior-points", type=int, default=100)
    parser.add_argument("--nuts-points", type=int, default=2)
    parser.add_argument("--sections", nargs="+", choices=sorted(SECTIONS), default=sorted(SECTIONS))
    parser.add_argument("--out", default="benchmarks/speed.json")
    main(parser.parse_args())
