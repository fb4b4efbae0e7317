"""P4: wall time of the main job, ``pyro-vae compare`` with every default (on demand).

    python benchmarks/bench_compare.py --out benchmarks/compare.json

Runs ``pyro-vae compare --no-progress --out TMP`` in a fresh Python process, as a user
runs it (every other option at its default: the four objectives, 800 epochs with
patience 100, K = 5000, the guide check on 16 test points, the gap tracked every 25
epochs, ``--workers`` = the cores, capped at the runs), into a temporary folder, and
writes to ``--out`` (JSON, atomically):

- ``wall_s``: wall seconds of the whole process (interpreter start to exit) and
  ``cpu_s``, the CPU seconds of it and of its worker processes;
- ``load_average``: the 1-minute load average before, after, and sampled every 2 s
  during the run (mean, max): a load above the job's own workers × threads means
  other processes shared the cores, and the wall time is inflated by them;
- ``sections``: wall seconds of the job's parts in the main process (``startup``:
  interpreter and imports; ``load_data``; ``compare``: training, evaluation, anatomy
  and guide checks of every run; ``figures``: drawing and saving them, and printing
  the tables; ``report``: the result files), and ``run_sections``: the per-run wall
  seconds of ``fit``, ``evaluate``, ``anatomy`` and ``check`` summed over the runs,
  with each run's own times under ``runs`` (from ``meta["run_times"]``);
- ``machine``: cores, platform, versions; ``command``, ``target_s`` (150: issue 33 asks
  for under 150 s on 2 cores) and ``under_target``.

``--workers N`` passes ``--workers N`` to the job (``--workers 1``: the sequential
job, for comparison). The numbers the job reports do not depend on the workers.

``--compare-seeds N`` (issue 33) also runs ``pyro-vae compare --seeds N`` in the same session,
alternating with the one-seed job over ``--repeats`` repetitions, and writes both
measurements (``one_seed``, ``seeds``: lists, one per repetition) and
``seeds_ratio``, the median wall time of the N-seed job over the one-seed job's (the
issue asks for at most 1.5 with N = 3, where R separate runs took 2.4).
"""

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

TARGET_S = 150.0
_KEEP = []  # --results DIR


def _child(out_dir, times_path, extra):
    """In the job's process: run the CLI with its parts timed; times to ``times_path``."""
    import pyro_vae.cli as cli
    import pyro_vae.cli.compare as command
    import pyro_vae.experiments.report as report

    sections = {}

    def timed(module, name, section):
        function = getattr(module, name)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            begin = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                sections[section] = sections.get(section, 0.0) + time.perf_counter() - begin

        setattr(module, name, wrapper)

    timed(command, "load_dataset", "load_data")
    timed(command, "compare", "compare")
    timed(report, "write_results", "report")
    begin = time.perf_counter()
    status = cli.main(["compare", "--no-progress", "--out", out_dir, *extra])
    job = time.perf_counter() - begin
    parts = ("load_data", "compare", "report")
    sections["figures"] = job - sum(sections.get(name, 0.0) for name in parts)
    with open(times_path, "w") as f:
        json.dump({"status": status, "sections": sections}, f)


def _sample_load(samples, stop):
    while not stop.wait(2.0):
        samples.append(os.getloadavg()[0])


def measure(extra):
    """Run the job once in a fresh process; the measurement as a dict."""
    with tempfile.TemporaryDirectory(prefix="bench_compare_") as tmp:
        out_dir, times_path = os.path.join(tmp, "results"), os.path.join(tmp, "times.json")
        command = [sys.executable, __file__, "--child", out_dir, times_path, *extra]
        samples, stop = [], threading.Event()
        sampler = threading.Thread(target=_sample_load, args=(samples, stop), daemon=True)
        load_before = os.getloadavg()[0]
        usage_before = os.times()
        sampler.start()
        begin = time.perf_counter()
        if _KEEP:  # --results DIR: keep what the job printed too
            name = "printed_seeds.txt" if "--seeds" in extra else "printed_one_seed.txt"
            with open(os.path.join(_KEEP[0], name), "w") as printed:
                subprocess.run(command, check=True, stdout=printed)
        else:
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - begin
        usage = os.times()
        stop.set()
        sampler.join()
        with open(times_path) as f:
            child = json.load(f)
        with open(os.path.join(out_dir, "results.json")) as f:
            meta = json.load(f)["meta"]
        if _KEEP:  # --results DIR: keep each job's results.json
            import shutil

            name = "results_seeds.json" if "--seeds" in extra else "results_one_seed.json"
            shutil.copy(os.path.join(out_dir, "results.json"), os.path.join(_KEEP[0], name))
    cpu = (usage.children_user - usage_before.children_user) + (
        usage.children_system - usage_before.children_system
    )
    runs = meta.get("run_times", [])
    run_sections = {
        name: sum(run.get(f"{name}_s", 0.0) for run in runs)
        for name in ("fit", "evaluate", "anatomy", "check", "gaps", "ais", "bdmc")
    }
    sections = dict(child["sections"])  # the rest: interpreter, imports and exit
    sections = {"startup": wall - sum(sections.values()), **sections}
    return {
        "command": ["pyro-vae", "compare", "--no-progress", "--out", "TMP", *extra],
        "wall_s": wall,
        "cpu_s": cpu,
        "target_s": TARGET_S,
        "under_target": wall < TARGET_S,
        "load_average": {
            "before": load_before,
            "after": os.getloadavg()[0],
            "during_mean": sum(samples) / len(samples) if samples else None,
            "during_max": max(samples) if samples else None,
        },
        "sections": sections,
        "run_sections": run_sections,
        "runs": runs,
        "job": {
            name: meta.get(name)
            for name in ("workers", "torch_threads", "wall_time_s", "cpu_time_s", "epochs")
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "available_cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "platform": platform.platform(),
            "processor": platform.processor(),
            "versions": meta.get("versions"),
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/compare.json", help="JSON file written")
    parser.add_argument("--workers", type=int, help="passed to pyro-vae compare --workers")
    parser.add_argument("--compare-seeds", type=int, help="also time pyro-vae compare --seeds N")
    parser.add_argument("--repeats", type=int, default=1, help="repetitions with --seeds")
    parser.add_argument("--results", help="folder to copy each job's results.json into")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    if args.results:
        os.makedirs(args.results, exist_ok=True)
        _KEEP.append(args.results)
    if args.workers is not None:
        extra = ["--workers", str(args.workers), *extra]
    if args.child:
        _child(*args.child, extra)
        return
    from pyro_vae._io import atomic_path

    if args.compare_seeds is not None:
        return _seeds_ratio(args, extra, atomic_path)
    result = measure(extra)
    with atomic_path(args.out) as tmp, open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    load = result["load_average"]
    print(
        f"pyro-vae compare (defaults{', ' + ' '.join(extra) if extra else ''}): "
        f"{result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} s CPU, "
        f"workers: {result['job']['workers']}, on {result['machine']['cpu_count']} cores; "
        f"load average {load['before']:.2f} before, {load['during_mean'] or 0:.2f} mean "
        f"during; target {TARGET_S:.0f} s: {'met' if result['under_target'] else 'missed'}"
    )
    for name, seconds in result["sections"].items():
        print(f"  {name:<10} {seconds:7.1f} s")
    print("  per run (summed over runs, in the workers):")
    for name, seconds in result["run_sections"].items():
        print(f"    {name:<10} {seconds:7.1f} s")
    print(f"written to {args.out}")


def _seeds_ratio(args, extra, atomic_path):
    """The one-seed job and the ``--seeds N`` job, alternating; both and their ratio."""
    import statistics

    more = [*extra, "--seeds", str(args.compare_seeds)]
    one, many = [], []
    for repeat in range(args.repeats):
        for which in ("one", "many") if repeat % 2 == 0 else ("many", "one"):
            result = measure(extra if which == "one" else more)
            (one if which == "one" else many).append(result)
            print(f"repeat {repeat}: {' '.join(result['command'])}: {result['wall_s']:.1f} s "
                  f"wall, {result['cpu_s']:.1f} s CPU", flush=True)  # fmt: skip
    ratio = statistics.median(r["wall_s"] for r in many) / statistics.median(
        r["wall_s"] for r in one
    )
    seeds = args.compare_seeds
    payload = {"one_seed": one, "seeds": many, "num_seeds": seeds, "seeds_ratio": ratio}
    with atomic_path(args.out) as tmp, open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
    print(f"--seeds {seeds} / one seed: {ratio:.2f} (median wall times); to {args.out}")


if __name__ == "__main__":
    main()
