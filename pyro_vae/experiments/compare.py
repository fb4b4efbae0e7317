"""The main job: train one VAE per objective and judge all on held-out log p(x).

It also asks, per objective, how far the trained guide q_φ(z|x) sits from the model's
exact posterior p_θ(z|x) on a few test points (:func:`check_guide`): HMC draws (and
quadrature for 2-D latents) against guide draws.

For each training seed, every objective trains the same architecture from the same
initialization (drawn with that seed) on the same split; every trained model is then
evaluated on the test split by the same estimator (:func:`pyro_vae.evaluate`,
K = 5000 importance samples). Differences between objectives are reported two ways:
the spread across training seeds (retraining), and paired per-point differences on
the same test points (:func:`pyro_vae.infer.evaluation.paired_difference`), which is what
decides whether one objective beats another on this test set.

Every run (objective and seed, or β schedule) is seeded on its own, so the runs are
independent: ``compare(..., workers=N)`` runs them side by side in N processes and
returns the same numbers as one process (``pyro-vae compare`` uses every core).
"""

import contextlib
import itertools
import math
import multiprocessing
import os
import statistics
import sys
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import pyro
import torch
from tqdm.auto import tqdm
from tqdm.std import tqdm as std_tqdm

from .._checks import check_int
from .._device import check_device, check_dtype
from .._io import versions
from .._threads import DEFAULT_THREADS, torch_threads
from ..infer.anatomy import active_units, elbo_decompositions, elbo_surgery
from ..infer.evaluation import evaluate, paired_difference
from ..infer.objectives import check_objective, objective_label, parse_objective
from ..infer.posterior import sample_posterior
from ..infer.posterior_checks import compare_posteriors, sample_guide
from ..infer.quadrature import quadrature_posterior
from ..models.vae import VAE
from ..train.schedules import parse_schedule
from ..train.training import fit

__all__ = [
    "AGREEMENT",
    "DECOMPOSITIONS",
    "DEFAULT_OBJECTIVES",
    "PAIRED",
    "REPORTED",
    "RISING",
    "SURGERY",
    "Comparison",
    "GuideCheck",
    "available_cores",
    "check_guide",
    "compare",
    "convergence",
    "summarize_agreement",
]

DEFAULT_OBJECTIVES = ("trace", "meanfield", "renyi:0:5", "renyi:0.5:5")
REPORTED = ("elbo", "iwae_5", "iwae_50", "log_px", "gap", "kl", "reconstruction")
PAIRED = ("log_px", "elbo", "gap")
DECOMPOSITIONS = (
    "reconstruction_minus_kl",
    "expected_joint_plus_entropy",
    "evidence_minus_gap",
    "reconstruction",
    "kl_prior",
    "expected_log_joint",
    "entropy",
    "log_px",
    "gap",
)
"""Keys of :func:`pyro_vae.elbo_decompositions`'s summary, reported as ``decomp_<key>``."""
SURGERY = ("average_kl", "mutual_information", "marginal_kl")
AGGREGATE_DRAWS = 10
"""Draws z ~ q(z|x_n) per test point behind :attr:`Comparison.aggregate`."""
"""Keys of :func:`pyro_vae.elbo_surgery`'s summary, reported as ``surgery_<key>``."""


@dataclass
class Comparison:
    """What :func:`compare` returns.

    Attributes
    ----------
    rows : list of dict
        One per objective: ``objective``, ``loss``, ``alpha``, ``num_particles``,
        ``seeds`` (list), ``epochs_run``, ``best_epoch`` and ``stopped_early`` (lists,
        per seed), ``still_rising`` (list per seed: the validation bound's rise over the
        last tenth of the epochs, nats, see :func:`convergence`), ``converged`` (bool,
        every seed), ``train_time_s`` and ``train_cpu_s`` (means over seeds: wall and
        CPU seconds of training, validation included) and, for each name in
        :data:`REPORTED`, ``test_<name>`` (mean over seeds of the test-set mean, nats
        per point), ``test_<name>_se`` (its Monte-Carlo standard error) and
        ``test_<name>_sd`` (standard deviation across seeds; NaN with one seed); and
        ``khat_unreliable``, the largest number over seeds of test points whose Pareto
        k̂ exceeds 0.7 (log p(x) not to be trusted there). The ELBO's anatomy on the
        test split, each as mean over seeds with ``_se`` and ``_sd``: ``decomp_<key>``
        for each key of :data:`DECOMPOSITIONS` (:func:`pyro_vae.elbo_decompositions`;
        ``decomp_log_px_method`` says how log p(x) was computed) and ``surgery_<key>``
        for each of :data:`SURGERY` (:func:`pyro_vae.elbo_surgery`; nats per point);
        ``active_units`` (list per seed, :func:`pyro_vae.active_units` with threshold
        0.01) and, of the first seed, ``activity`` and ``kl_per_dim`` (lists over the
        latent dimensions; KL in nats per point).
    beta_rows : list of dict
        One per β schedule (``beta_schedules``), first seed, the objective
        ``beta_objective``: ``schedule`` (label), ``spec``, ``name``, ``z_dim``,
        ``test_<name>`` and ``test_<name>_se`` for elbo, log_px, kl, reconstruction and
        gap (nats per point), ``num_active``, ``activity``, ``kl_per_dim``,
        ``best_epoch`` (by the β = 1 validation bound, for reference; the model
        evaluated is the last epoch's), ``epochs_run``, ``train_time_s``.
    beta_models : dict of str to VAE
        The trained module of each β schedule, keyed by its label.
    aggregate : dict of str to torch.Tensor
        Per objective (first seed), :data:`AGGREGATE_DRAWS` draws z ~ q(z|x_n) for each
        test point, shape ``(AGGREGATE_DRAWS * num_test, z_dim)``: draws from the
        aggregate posterior q(z).
    pairs : list of dict
        One per pair of objectives (a, b): ``a``, ``b`` and for log_px, elbo and gap
        ``<name>_diff`` (mean over seeds of the mean per-point difference a − b),
        ``<name>_diff_se`` (its standard error over test points) and
        ``<name>_diff_sd`` (standard deviation across seeds; NaN with one seed).
    agreement : list of dict
        One per objective (first seed): medians over the checked test points of the
        guide-vs-posterior table (:func:`summarize_agreement`); empty when
        ``posterior_points`` is 0.
    checks : dict of str to GuideCheck
        The guide-vs-posterior check of each objective's first-seed model.
    histories : dict of str to list of dict
        Per-epoch training history of each objective, first seed.
    models : dict of str to VAE
        The trained modules of the first seed, keyed by objective label.
    evaluations : dict of str to list of Evaluation
        Per-point test estimates of each objective, one per seed.
    meta : dict
        Data set and split, seeds, sizes, settings, versions; ``workers`` (processes
        used), ``torch_threads`` (in each), ``wall_time_s``, ``cpu_time_s`` (this
        process and its workers), ``load_average`` (1-minute, at the start and the end)
        and ``run_times``: per run, in the order of the runs (objectives within seeds,
        then β schedules), ``label``, ``seed``, ``process`` (its process id),
        ``started`` and ``finished`` (seconds since the start of :func:`compare`),
        ``fit_s``, ``evaluate_s``, ``anatomy_s`` (decompositions, surgery and active
        units; active units alone for a β run) and, for a first-seed objective,
        ``check_s`` (aggregate draws and guide check): wall seconds; ``cpu_s``, the
        run's CPU seconds.
    """

    rows: list = field(default_factory=list)
    beta_rows: list = field(default_factory=list)
    beta_models: dict = field(default_factory=dict)
    aggregate: dict = field(default_factory=dict)
    pairs: list = field(default_factory=list)
    agreement: list = field(default_factory=list)
    checks: dict = field(default_factory=dict)
    histories: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    evaluations: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


def _check_compare_args(objectives, num_samples, seeds):
    specs = [parse_objective(spec) for spec in objectives]
    if not specs:
        raise ValueError("Expected at least one objective but got none")
    labels = [objective_label(*spec) for spec in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"Expected distinct objectives but got {list(objectives)}")
    if not isinstance(num_samples, int) or num_samples < 100:
        raise ValueError(
            f"Expected num_samples >= 100 (two groups of 50 for the IWAE-50 standard "
            f"error) but got {num_samples!r}"
        )
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"Expected seeds to be a non-empty list of integers but got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"Expected distinct seeds but got {seeds}")
    return specs, labels, seeds


def compare(
    data,
    objectives=DEFAULT_OBJECTIVES,
    epochs=300,
    z_dim=8,
    hidden_dims=(256,),
    likelihood="bernoulli",
    batch_size=128,
    lr=1e-3,
    patience=None,
    num_samples=5000,
    seeds=(0,),
    posterior_points=16,
    progress=True,
    num_threads=DEFAULT_THREADS,
    gap_every=25,
    beta_schedules=(),
    beta_objective=None,
    workers=1,
    device=None,
    dtype=torch.float32,
):
    """Train one VAE per objective and training seed, then evaluate each on the test split.

    Parameters
    ----------
    data : pyro_vae.data.Dataset
        Train/validation/test splits (the split and its seed are fixed by the data;
        training seeds do not move the test set). The validation split selects each
        run's best epoch by the validation IWAE bound L_50.
    objectives : sequence of str, default DEFAULT_OBJECTIVES
        Specs as in :func:`pyro_vae.infer.objectives.parse_objective`; default Trace_ELBO,
        TraceMeanField_ELBO, the IWAE bound (Rényi α = 0, K = 5) and the Rényi bound
        α = 0.5, K = 5.
    epochs, batch_size, lr, patience
        As in :func:`pyro_vae.fit`, the same for every objective.
    z_dim, hidden_dims, likelihood
        As in :class:`pyro_vae.VAE`.
    num_samples : int, default 5000
        Importance samples per test point for log p(x) (Burda et al. 2016).
    seeds : sequence of int, default (0,)
        Training seeds (initialization, shuffling, binarization and z draws); each
        objective is trained once per seed.
    posterior_points : int, default 16
        Test points (the first ones) on which each objective's first-seed guide is
        checked against its exact posterior (:func:`check_guide`); 0 skips the check.
    progress : bool, default True
        Show progress bars: one per run with ``workers=1``, else one counting the
        finished runs.
    num_threads : int or None, default DEFAULT_THREADS (1)
        Torch threads for the whole comparison (restored afterwards), in each worker
        process too; None leaves torch's setting (workers take this process's). One
        thread is the measured best for networks this small
        (``benchmarks/bench_threads.py``).
    gap_every : int or None, default 25
        Every this many epochs, each run estimates log p(x), the ELBO and their gap on
        100 validation points (``fit(gap_every=...)``); None turns it off.
    beta_schedules : sequence of str, default ()
        β schedules (:func:`pyro_vae.train.schedules.parse_schedule` specs, e.g. ``"0"``,
        ``"4"``, ``"warmup:100"``) under which ``beta_objective`` is also trained, first
        seed only, from the same initialization, for all ``epochs`` (no early stopping)
        and evaluated at the last epoch, since the β = 1 validation bound that picks the
        best epoch elsewhere would pick an early epoch of a run far from β = 1:
        posterior collapse and its cure in :attr:`Comparison.beta_rows`.
    beta_objective : str, optional
        The objective spec of the β runs; default the first of ``objectives``.
    workers : int, default 1
        Processes that run the runs (one per objective and seed, one per β schedule:
        training, test evaluation, anatomy and guide check) side by side; at most the
        number of runs is used. 1 runs everything in this process. With more, each
        worker is a fresh Python process (``multiprocessing``'s ``"spawn"`` start
        method, safe with torch's thread pools where ``fork`` is not) that imports
        ``pyro_vae`` and, like any spawned process, re-imports the calling script
        as ``__mp_main__``: in a script, call ``compare(..., workers=2)`` under
        ``if __name__ == "__main__":``, or the workers would run the script's top
        level again (Python then raises a RuntimeError). Every run is seeded as with
        one worker, so the results are the same numbers; use as many workers as free
        cores (``pyro-vae compare`` uses :func:`available_cores`, capped at the
        number of runs), each with ``num_threads`` threads. A run's warnings are shown
        here once it finishes; its error is raised here with the worker's traceback
        attached, after the other workers are stopped.
    device : str or torch.device, optional
        Where every run trains, is evaluated and is checked (``"cpu"``, ``"cuda"``,
        ``"cuda:N"``); default CUDA when PyTorch sees a GPU, else the CPU. The
        returned modules are on the CPU.
    dtype : torch.dtype or {"float32", "float64"}, default torch.float32
        Precision of the models' parameters and of every estimate.

    Returns
    -------
    Comparison

    Raises
    ------
    ValueError
        For a bad objective spec, seeds, ``workers`` (an integer ≥ 1), ``device``,
        ``dtype`` or any invalid training argument, before any training.
    RuntimeError
        If a worker process died (e.g. killed for memory) before returning its run.

    Notes
    -----
    Each run's test evaluation (:func:`pyro_vae.evaluate`, K = ``num_samples``) also
    supplies log p(x) and the gap to its ELBO decompositions
    (``elbo_decompositions(..., evaluation=...)``): ``decomp_log_px``,
    ``decomp_gap`` and ``decomp_evidence_minus_gap`` are ``test_log_px``,
    ``test_gap`` and ``test_elbo``, computed once.
    """
    specs, labels, seeds = _check_compare_args(objectives, num_samples, seeds)
    if not isinstance(posterior_points, int) or posterior_points < 0:
        raise ValueError(
            f"Expected posterior_points to be an integer >= 0 but got {posterior_points!r}"
        )
    check_int("workers", workers)
    device, dtype = str(check_device(device)), check_dtype(dtype)
    schedules = [parse_schedule(spec) for spec in beta_schedules]
    if len({schedule.spec for schedule in schedules}) != len(schedules):
        raise ValueError(f"Expected distinct beta_schedules but got {list(beta_schedules)}")
    beta_spec = parse_objective(beta_objective) if beta_objective is not None else specs[0]
    for schedule in schedules:
        check_objective(*beta_spec, beta=schedule)
    with torch_threads(num_threads):
        settings = {"epochs": epochs, "z_dim": z_dim, "hidden_dims": hidden_dims,
                    "likelihood": likelihood, "batch_size": batch_size, "lr": lr,
                    "patience": patience, "num_samples": num_samples,
                    "posterior_points": posterior_points, "gap_every": gap_every,
                    "device": device, "dtype": dtype}  # fmt: skip
        start, cpu_start, started = time.perf_counter(), _cpu_time(), time.time()
        load_before = _load_average()
        tasks = _tasks(data, specs, labels, seeds, beta_spec, schedules, settings)
        workers = min(workers, len(tasks))
        if workers == 1:
            outputs = [_run(task, data, settings, progress) for task in tasks]
        else:
            outputs = _run_in_workers(tasks, data, settings, workers, progress)
        for out in outputs:
            out["vae"].cpu()  # in place: the guide checks hold the same module
        # leave the global RNGs as the last run left them in this process with one worker
        pyro.util.set_rng_state(outputs[-1]["rng_state"])
        result = _assemble(data, tasks, outputs, specs, labels, seeds, settings)
        if schedules:
            result.meta["beta_objective"] = objective_label(*beta_spec)
            result.meta["beta_schedules"] = [schedule.spec for schedule in schedules]
        result.meta["workers"] = workers
        result.meta["device"] = device
        result.meta["dtype"] = str(dtype).removeprefix("torch.")
        result.meta["load_average"] = [load_before, _load_average()]
        result.meta["wall_time_s"] = time.perf_counter() - start
        result.meta["cpu_time_s"] = _cpu_time() - cpu_start
        result.meta["run_times"] = [_relative(out["times"], started) for out in outputs]
        return result


def _aggregate_draws(vae, x, seed, z_dim):
    """AGGREGATE_DRAWS draws z ~ q(z|x) per row of x, ``(AGGREGATE_DRAWS · batch, z_dim)``."""
    q = vae.encode(x)
    with torch.random.fork_rng([x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        return q.sample((AGGREGATE_DRAWS,)).reshape(-1, z_dim)


def _relative(times, started):
    """A run's times with ``started`` and ``finished`` in seconds since ``started``."""
    return {**times, "started": times["started"] - started,
            "finished": times["finished"] - started}  # fmt: skip


def available_cores():
    """CPU cores this process may run on (its affinity where the OS tells), at least 1.

    Returns
    -------
    int
        ``len(os.sched_getaffinity(0))`` where available, else ``os.cpu_count()``.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class _Task:
    """One independent run of :func:`compare`: a training seed and objective, or a β
    schedule. ``initial`` is the seeded initialization (a state dict); ``check``:
    whether the guide check and the aggregate draws are due (first seed)."""

    label: str
    spec: tuple
    seed: int
    initial: dict
    check: bool = False
    schedule: object = None


def _tasks(data, specs, labels, seeds, beta_spec, schedules, settings):
    """The runs in the order one worker runs them, each with its initialization."""
    model_args = (data.x_dim, settings["z_dim"], settings["hidden_dims"], settings["likelihood"])
    tasks = []
    for seed in seeds:
        torch.manual_seed(seed)
        initial = VAE(*model_args).state_dict()
        for spec, label in zip(specs, labels, strict=True):
            tasks.append(_Task(label, spec, seed, initial, check=seed == seeds[0]))
    if schedules:
        torch.manual_seed(seeds[0])
        initial = VAE(*model_args).state_dict()
        for schedule in schedules:
            tasks.append(_Task(schedule.label, beta_spec, seeds[0], initial, schedule=schedule))
    return tasks


def _run(task, data, settings, progress):
    """Train, evaluate and take apart one run; a dict of what :func:`_assemble` needs.

    ``rng_state``: the global RNG states (torch, Python, NumPy) at the end of the run,
    which only training moves (every estimate draws from a seeded forked RNG).
    """
    clock = _Clock(task)
    loss, alpha, k = task.spec
    vae = VAE(data.x_dim, settings["z_dim"], settings["hidden_dims"], settings["likelihood"])
    vae.to(settings["dtype"]).load_state_dict(task.initial)
    device = settings["device"]
    common = {"loss": loss, "alpha": alpha, "num_particles": k, "epochs": settings["epochs"],
              "batch_size": settings["batch_size"], "lr": settings["lr"], "seed": task.seed,
              "progress": progress, "gap_every": settings["gap_every"],
              "device": device}  # fmt: skip
    out = {"vae": vae}
    num_samples, x = settings["num_samples"], data.test
    if task.schedule is None:
        out["run"] = fit(vae, data, patience=settings["patience"], **common)
        clock.lap("fit_s")
        out["test"] = evaluate(vae, x, num_samples, ks=(5, 50), seed=task.seed, device=device)
        clock.lap("evaluate_s")
        out["anatomy"] = _anatomy(vae, x, num_samples, task.seed, out["test"])
        clock.lap("anatomy_s")
        if task.check:
            out["aggregate"] = _aggregate_draws(vae, x, task.seed, settings["z_dim"])
            if settings["posterior_points"]:
                x_check = x[: settings["posterior_points"]]
                out["check"] = check_guide(vae, x_check, seed=task.seed, device=device)
            clock.lap("check_s")
    else:
        # every epoch, the last one evaluated: the β = 1 validation bound would pick an
        # early epoch of a run trained far from β = 1 (epoch 1 for β = 0)
        out["run"] = fit(vae, data, beta=task.schedule, patience=None, restore_best=False,
                         **common)  # fmt: skip
        clock.lap("fit_s")
        out["test"] = evaluate(vae, x, num_samples, ks=(5, 50), seed=task.seed, device=device)
        clock.lap("evaluate_s")
        out["units"] = active_units(vae, x)
        clock.lap("anatomy_s")
    out["rng_state"] = pyro.util.get_rng_state()
    out["times"] = clock.times
    return out


class _Clock:
    """Wall seconds of a run's steps, its CPU seconds and when it ran (Unix time)."""

    def __init__(self, task):
        self.times = {"label": task.label, "seed": task.seed, "process": os.getpid()}
        self.times["started"] = time.time()
        self.cpu, self.last = time.process_time(), time.perf_counter()

    def lap(self, name):
        now = time.perf_counter()
        self.times[name], self.last = now - self.last, now
        self.times["finished"] = time.time()
        self.times["cpu_s"] = time.process_time() - self.cpu


# ------------------------------------------------------------------ worker processes

_WORKER = {}
"""A worker process's data and settings, set once by :func:`_start_worker`."""


def _start_worker(data, settings, num_threads):
    """Initializer of a worker process: keep the data, set the torch threads."""
    _WORKER.update(data=data, settings=settings)
    torch.set_num_threads(num_threads)
    # tqdm's default lock is a multiprocessing semaphore, which a worker stopped by
    # _stop would leave for the resource tracker to complain about; none is shown here
    std_tqdm.set_lock(threading.RLock())


def _worker_run(task):
    """:func:`_run` in a worker: its warnings recorded and the module as a state dict."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _run(task, _WORKER["data"], _WORKER["settings"], progress=False)
    out["vae"] = {name: value.cpu() for name, value in out["vae"].state_dict().items()}
    if "check" in out:
        out["check"].vae = None  # the parent attaches its own copy of the module
    modules = {getattr(m, "__file__", None): name for name, m in list(sys.modules.items())}
    out["warnings"] = [
        (w.category, str(w.message), w.filename, w.lineno, modules.get(w.filename)) for w in caught
    ]
    return out


def _run_in_workers(tasks, data, settings, workers, progress):
    """:func:`_run` of every task in ``workers`` spawned processes; outputs in task order.

    The runs with the most particles go first (the longest first keeps the workers
    busy until the end). Each worker sets the torch threads of this process. On the
    first error the other runs are cancelled and the workers stopped, and the error is
    raised with a note naming the run (the worker's traceback is its ``__cause__``).
    """
    order = sorted(range(len(tasks)), key=lambda i: -tasks[i].spec[2])
    outputs = [None] * len(tasks)
    registry = {}
    context = multiprocessing.get_context("spawn")
    initargs = (data, settings, torch.get_num_threads())
    pool = ProcessPoolExecutor(workers, context, initializer=_start_worker, initargs=initargs)
    bar = tqdm(total=len(tasks), desc=f"runs ({workers} workers)", disable=not progress)
    try:
        pending = {pool.submit(_worker_run, tasks[i]): i for i in order}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                i = pending.pop(future)
                outputs[i] = _worker_output(future, tasks[i], registry)
                bar.update()
    except BaseException:
        _stop(pool)
        raise
    finally:
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)
    model_args = (data.x_dim, settings["z_dim"], settings["hidden_dims"], settings["likelihood"])
    with torch.random.fork_rng():  # building a module draws an initialization
        for out in outputs:
            vae = VAE(*model_args).to(settings["dtype"])
            vae.load_state_dict(out["vae"])
            out["vae"] = vae
            if "check" in out:
                out["check"].vae = vae
    return outputs


def _worker_output(future, task, registry):
    """A finished run's output, its warnings shown; its error raised with a note."""
    what = f"the {task.label} run (seed {task.seed})"
    try:
        out = future.result()
    except BrokenProcessPool as e:
        raise RuntimeError(
            f"A worker process of compare died before {what} returned (killed by the "
            "system, e.g. out of memory?); run with workers=1 (pyro-vae compare "
            "--workers 1) to run everything in this process"
        ) from e
    except Exception as e:
        e.add_note(f"Raised in a worker process of compare, in {what}.")
        raise
    for category, message, filename, lineno, module in out.pop("warnings"):
        # the registry of the module the warning names, as if raised here ("default":
        # once per place); a per-call one for a module this process has not loaded
        found = sys.modules.get(module)
        place = vars(found).setdefault("__warningregistry__", {}) if found else registry
        warnings.warn_explicit(message, category, filename, lineno, module, place)
    return out


def _stop(pool):
    """Stop a pool's worker processes now, without waiting for their runs (as
    ``ProcessPoolExecutor.terminate_workers`` of Python 3.14 does)."""
    processes = dict(getattr(pool, "_processes", None) or {})
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes.values():
        with contextlib.suppress(ValueError, ProcessLookupError):
            if process.is_alive():
                process.terminate()
    if manager is not None:
        manager.join()  # it reaps the stopped processes


def _cpu_time():
    """CPU seconds of this process and of its finished child processes (workers)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


# ------------------------------------------------------------------ assembling results


def _assemble(data, tasks, outputs, specs, labels, seeds, settings):
    """The :class:`Comparison` from the runs' outputs (in task order)."""
    runs = {label: [] for label in labels}
    result = Comparison()
    for task, out in zip(tasks, outputs, strict=True):
        if task.schedule is not None:
            result.beta_rows.append(_beta_row(task, out, settings))
            result.beta_models[task.label] = out["vae"]
            continue
        runs[task.label].append((out["run"], out["test"], out["anatomy"]))
        if task.check:
            result.models[task.label] = out["vae"]
            result.histories[task.label] = out["run"].history
            result.aggregate[task.label] = out["aggregate"]
    for (loss, alpha, k), label in zip(specs, labels, strict=True):
        result.rows.append(_row(label, loss, alpha, k, seeds, runs[label]))
        result.evaluations[label] = [test for _, test, _ in runs[label]]
    for a, b in itertools.combinations(labels, 2):
        result.pairs.append(_pair(a, b, result.evaluations[a], result.evaluations[b]))
    for task, out in zip(tasks, outputs, strict=True):
        if "check" in out:
            result.checks[task.label] = out["check"]
            result.agreement.append(
                {"objective": task.label, **summarize_agreement(out["check"].table)}
            )
    result.meta = {
        "dataset": data.name,
        "data_spec": dict(data.spec),
        "split_seed": data.spec.get("split_seed"),
        "seeds": seeds,
        "binarize": data.binarize,
        "num_train": len(data.train),
        "num_validation": len(data.validation),
        "num_test": len(data.test),
        "num_samples": settings["num_samples"],
        "epochs": settings["epochs"],
        "z_dim": settings["z_dim"],
        "hidden_dims": list(settings["hidden_dims"]),
        "likelihood": settings["likelihood"],
        "batch_size": settings["batch_size"],
        "lr": settings["lr"],
        "patience": settings["patience"],
        "posterior_points": settings["posterior_points"],
        "gap_every": settings["gap_every"],
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "versions": versions(),
    }
    return result


def _beta_row(task, out, settings):
    """The row of one β-schedule run."""
    run, units, schedule = out["run"], out["units"], task.schedule
    row = {
        "schedule": schedule.label,
        "spec": schedule.spec,
        "name": schedule.name,
        "objective": objective_label(*task.spec),
        "z_dim": settings["z_dim"],
        "best_epoch": run.best_epoch,
        "epochs_run": len(run.history),
        "train_time_s": run.train_time,
        "train_cpu_s": run.cpu_time,
        "num_active": int(units.num_active),
        "activity": units.activity.tolist(),
        "kl_per_dim": units.kl.tolist(),
    }
    summary = out["test"].summary()
    for name in ("elbo", "log_px", "kl", "reconstruction", "gap"):
        row[f"test_{name}"], row[f"test_{name}_se"] = summary[name]
    return row


def _load_average():
    """The 1-minute load average (runnable processes), or None where unavailable."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def convergence(history, key="val_iwae", tail=0.1):
    """How much a run's validation bound was still rising at its end.

    Parameters
    ----------
    history : list of dict
        Per-epoch records (:attr:`pyro_vae.FitResult.history`).
    key : str, default "val_iwae"
        The validation bound (nats per point).
    tail : float, default 0.1
        The fraction of the epochs compared: the mean bound over the last ``tail`` of
        the epochs minus the mean over the ``tail`` before it.

    Returns
    -------
    float
        The rise in nats per point (NaN with fewer than 20 validated epochs). Above
        :data:`RISING` the run had not converged: more epochs would still pay.
    """
    values = [r[key] for r in history if key in r]
    n = max(1, int(len(values) * tail))
    if len(values) < 20:
        return math.nan
    return statistics.fmean(values[-n:]) - statistics.fmean(values[-2 * n : -n])


RISING = 0.05
"""Rise of the validation bound over the last tenth of training (nats per point) above
which a run counts as not converged (:func:`convergence`)."""


def _converged(run, rise):
    """Whether a run ended converged: stopped by patience, or best epoch not near the
    end and the validation bound no longer rising."""
    if run.stopped_early:
        return True
    late = run.best_epoch > 0.9 * len(run.history)
    return not late and not rise > RISING


def _spread(values):
    return statistics.stdev(values) if len(values) > 1 else math.nan


def _anatomy(vae, x, num_samples, seed, test):
    """The ELBO three ways, ELBO surgery and active units of one trained model on x;
    ``test``, its evaluation on x, supplies log p(x) and the gap."""
    return {
        "decomp": elbo_decompositions(
            vae, x, num_samples=1000, seed=seed, log_px_samples=num_samples, evaluation=test
        ),
        "surgery": elbo_surgery(vae, x, seed=seed),
        "units": active_units(vae, x, seed=seed),
    }


def _aggregate(row, prefix, summaries, names):
    """Mean over seeds, combined s.e. and s.d. across seeds of each summary entry."""
    for name in names:
        means = [summary[name][0] for summary in summaries]
        ses = [summary[name][1] for summary in summaries]
        row[f"{prefix}{name}"] = statistics.fmean(means)
        row[f"{prefix}{name}_se"] = math.sqrt(sum(se**2 for se in ses)) / len(ses)
        row[f"{prefix}{name}_sd"] = _spread(means)


def _row(label, loss, alpha, k, seeds, runs):
    """One objective's row, aggregated over its runs (one per seed)."""
    row = {
        "objective": label,
        "loss": loss,
        "alpha": alpha,
        "num_particles": k,
        "seeds": list(seeds),
        "epochs_run": [len(run.history) for run, _, _ in runs],
        "best_epoch": [run.best_epoch for run, _, _ in runs],
        "stopped_early": [run.stopped_early for run, _, _ in runs],
        "still_rising": [convergence(run.history) for run, _, _ in runs],
        "train_time_s": statistics.fmean(run.train_time for run, _, _ in runs),
        "train_cpu_s": statistics.fmean(run.cpu_time for run, _, _ in runs),
    }
    row["converged"] = all(
        _converged(run, rise) for (run, _, _), rise in zip(runs, row["still_rising"], strict=True)
    )
    _aggregate(row, "test_", [test.summary() for _, test, _ in runs], REPORTED)
    row["khat_unreliable"] = max(int(test.unreliable().sum()) for _, test, _ in runs)
    anatomy = [a for _, _, a in runs]
    _aggregate(row, "decomp_", [a["decomp"].summary() for a in anatomy], DECOMPOSITIONS)
    row["decomp_log_px_method"] = anatomy[0]["decomp"].methods["log_px"]
    _aggregate(row, "surgery_", [a["surgery"].summary() for a in anatomy], SURGERY)
    row["active_units"] = [int(a["units"].num_active) for a in anatomy]
    row["activity"] = anatomy[0]["units"].activity.tolist()
    row["kl_per_dim"] = anatomy[0]["units"].kl.tolist()
    return row


def _pair(a, b, tests_a, tests_b):
    """Paired differences a − b on the same test points, per seed then aggregated."""
    pair = {"a": a, "b": b}
    for name in PAIRED:
        diffs = [paired_difference(ta, tb, name) for ta, tb in zip(tests_a, tests_b, strict=True)]
        means = [mean for mean, _ in diffs]
        pair[f"{name}_diff"] = statistics.fmean(means)
        # per-seed s.e. over points, combined as the s.e. of the mean over seeds
        pair[f"{name}_diff_se"] = math.sqrt(sum(se**2 for _, se in diffs)) / len(diffs)
        pair[f"{name}_diff_sd"] = _spread(means)
    return pair


@dataclass
class GuideCheck:
    """What :func:`check_guide` returns.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per checked data point (:func:`pyro_vae.compare_posteriors`), with
        ``kl_exact`` (KL(q‖p(z|x)) by quadrature) and ``quadrature_error`` for 2-D
        latents.
    posterior : arviz.InferenceData
        HMC draws of p_θ(z|x) (:func:`pyro_vae.sample_posterior`).
    guide : arviz.InferenceData
        Draws of q_φ(z|x) with their log weights (:func:`pyro_vae.sample_guide`).
    exact : QuadraturePosterior or None
        The quadrature posterior for z_dim ≤ 2, else None.
    vae : pyro_vae.models.vae.BaseVAE
        The model checked.
    """

    table: object
    posterior: object
    guide: object
    exact: object = None
    vae: object = None


def check_guide(vae, x, num_samples=1000, warmup_steps=500, num_chains=4, seed=0, device=None):
    """Compare a guide q_φ(z|x) with the exact posterior p_θ(z|x) on the rows of x.

    Draws the posterior with the batched HMC sampler and the guide, tabulates their
    agreement per data point (:func:`pyro_vae.compare_posteriors`: mean error in
    posterior s.d., s.d. ratio, 2-Wasserstein distance between Gaussian fits, Pareto
    k̂ of q as an importance proposal, R̂, bulk ESS and divergences of the reference),
    and for z_dim ≤ 2 adds the exact KL(q‖p(z|x)) by quadrature.

    Parameters
    ----------
    vae : pyro_vae.models.vae.BaseVAE
        The trained model; θ is held fixed.
    x : torch.Tensor
        Data points, shape ``(B, x_dim)``.
    num_samples, warmup_steps, num_chains, seed, device
        As :func:`pyro_vae.sample_posterior`; ``num_samples`` guide draws too.

    Returns
    -------
    GuideCheck

    Raises
    ------
    ValueError
        As :func:`pyro_vae.sample_posterior`.
    """
    posterior = sample_posterior(
        vae, x, num_samples, warmup_steps, num_chains, seed=seed, device=device
    )
    guide = sample_guide(vae, x, num_samples, seed=seed, device=device)
    table = compare_posteriors(posterior, guide)
    exact = None
    if vae.z_dim <= 2:
        exact = quadrature_posterior(vae, x)
        table["kl_exact"] = exact.kl_guide.cpu().numpy()
        table["quadrature_error"] = exact.error.cpu().numpy()
    return GuideCheck(table, posterior, guide, exact, vae)


AGREEMENT = ("mean_error", "sd_ratio", "w2", "khat", "kl_exact")


def summarize_agreement(table):
    """Medians over data points of a guide-vs-posterior table, and the worst chain checks.

    Parameters
    ----------
    table : pandas.DataFrame
        As :attr:`GuideCheck.table`.

    Returns
    -------
    dict
        ``mean_error`` (median over points and dims of |mean error|, posterior s.d.),
        ``sd_ratio`` (median of guide s.d. / posterior s.d.), ``w2``, ``khat`` and,
        when present, ``kl_exact`` (medians, nats for KL); ``rhat_max``,
        ``ess_bulk_min``, ``divergences`` (total) of the reference; ``num_points``.
    """
    columns = list(table.columns)
    out = {"num_points": int(len(table))}
    errors = [c for c in columns if c.startswith("mean_error_")]
    ratios = [c for c in columns if c.startswith("sd_ratio_")]
    if errors:
        out["mean_error"] = float(table[errors].abs().stack().median())
    if ratios:
        out["sd_ratio"] = float(table[ratios].stack().median())
    for name in ("w2", "khat", "kl_exact"):
        if name in columns:
            out[name] = float(table[name].median())
    if "rhat_max" in columns:
        out["rhat_max"] = float(table["rhat_max"].max())
    if "ess_bulk_min" in columns:
        out["ess_bulk_min"] = float(table["ess_bulk_min"].min())
    if "divergences" in columns:
        out["divergences"] = int(table["divergences"].sum())
    return out
