"""One run of a comparison: train a model from its seeded initialization, evaluate it on
the test split, take its ELBO apart and, for the first seed, check its guide.

A run is a :class:`Task` under the comparison's
:class:`~pyro_vae.experiments.compare.RunSettings`; :func:`run_task` does its work in
whatever process it is given (this one, or a worker of
:mod:`pyro_vae.experiments.workers`) and returns a :class:`RunOutput`, what
:func:`pyro_vae.experiments.compare.compare` assembles. :func:`run_group` does the same
for an objective's runs over several seeds, trained as one stack
(:func:`pyro_vae.train.stack.fit_runs`). Every estimate draws from a
seeded, forked RNG, so the runs are independent of each other and of their order.
"""

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyro
import torch

from ..infer.ais import ais, bdmc
from ..infer.anatomy import active_units, elbo_decompositions, elbo_surgery
from ..infer.evaluation import evaluate
from ..infer.gaps import inference_gaps
from ..models import VAE
from ..train.stack import fit_runs
from ..train.training import fit
from .guide_check import check_guide

if TYPE_CHECKING:
    from .compare import RunSettings

__all__ = [
    "AGGREGATE_DRAWS",
    "AIS_CHAINS",
    "RunOutput",
    "SandwichOutput",
    "Task",
    "run_group",
    "run_task",
    "stackable",
]

AGGREGATE_DRAWS = 10
"""Draws z ~ q(z|x_n) per test point behind :attr:`Comparison.aggregate`."""
AIS_CHAINS = 16
"""AIS chains per point of the main job (:func:`pyro_vae.ais`, :func:`pyro_vae.bdmc`)."""


@dataclass(frozen=True)
class Task:
    """One independent run of :func:`compare`: a training seed and objective, or a β
    schedule. ``initial`` is the seeded initialization (a state dict); ``check``:
    whether the guide check and the aggregate draws are due (first seed); ``guide``: the
    guide spec of its model (:func:`pyro_vae.models.flows.parse_guide`); ``bdmc``:
    whether the BDMC sandwich on data simulated from its model is due (the first
    objective's first-seed run)."""

    label: str
    spec: tuple
    seed: int
    initial: dict
    check: bool = False
    schedule: object = None
    guide: str = "diagonal"
    bdmc: bool = False


@dataclass(frozen=True)
class SandwichOutput:
    """The BDMC sandwich of one run and importance sampling with its guide on the same
    simulated points.

    Attributes
    ----------
    bdmc : pyro_vae.infer.ais.BDMCResult
        :func:`pyro_vae.bdmc` on ``bdmc_points`` points simulated from the model.
    test : pyro_vae.infer.evaluation.Evaluation
        :func:`pyro_vae.evaluate` on the same points, K = ``num_samples``.
    seconds, is_seconds : float
        Wall seconds of the BDMC sandwich and of the importance sampling.
    """

    bdmc: object
    test: object
    seconds: float
    is_seconds: float


@dataclass(frozen=True)
class RunOutput:
    """What :func:`run_task` returns for one run, what :func:`compare` assembles.

    Frozen and picklable: a worker process sends it back whole
    (:mod:`pyro_vae.experiments.workers`), with ``vae`` as a state dict on the way.
    The fields after ``times`` are None where the run did not compute them.

    Attributes
    ----------
    vae : pyro_vae.VAE
        The trained module.
    run : pyro_vae.FitResult
        The training run (history, best epoch, times).
    test : pyro_vae.infer.evaluation.Evaluation
        Per-point estimates on the test split (:func:`pyro_vae.evaluate`, K =
        ``num_samples``, ``ks=(5, 50)``).
    units : pyro_vae.infer.surgery.ActiveUnits
        Active units on the test split.
    rng_state : dict
        The global RNG states (torch, Python, NumPy) at the end of the run
        (:func:`pyro.util.get_rng_state`), which only training moves (every estimate
        draws from a seeded forked RNG).
    times : dict
        Wall and CPU seconds of the run's steps and when it ran (``Comparison.meta``'s
        ``run_times``).
    decomp : pyro_vae.infer.anatomy.ElboDecompositions, optional
        The ELBO three ways on the test split (objective runs).
    surgery : pyro_vae.infer.surgery.ElboSurgery, optional
        ELBO surgery on the test split (objective runs).
    aggregate : torch.Tensor, optional
        :data:`AGGREGATE_DRAWS` draws z ~ q(z|x) per test point (first seed).
    check : GuideCheck, optional
        The guide vs the exact posterior on the checked points (first seed).
    gaps : pyro_vae.infer.gaps.InferenceGaps, optional
        :func:`pyro_vae.inference_gaps` on the checked points (first seed).
    ais : pyro_vae.infer.ais.AISResult, optional
        AIS from the guide on the checked points (first seed).
    sandwich : SandwichOutput, optional
        The BDMC sandwich (the first objective's first-seed run).
    """

    vae: object
    run: object
    test: object
    units: object
    rng_state: dict
    times: dict
    decomp: object = None
    surgery: object = None
    aggregate: torch.Tensor | None = None
    check: object = None
    gaps: object = None
    ais: object = None
    sandwich: SandwichOutput | None = None


def new_model(data, settings: "RunSettings", guide="diagonal"):
    """An untrained VAE of the comparison's architecture with the guide ``guide``
    (draws an initialization)."""
    return VAE(data.x_dim, settings.z_dim, settings.hidden_dims, settings.likelihood,
               encoder=guide)  # fmt: skip


def run_task(task: Task, data, settings: "RunSettings", progress: bool) -> RunOutput:
    """Train, evaluate and take apart one run under ``settings`` (a RunSettings).

    Returns
    -------
    RunOutput
        What ``compare`` assembles.
    """
    clock = _Clock(task)
    vae = new_model(data, settings, task.guide)
    vae.to(settings.dtype).load_state_dict(task.initial)
    if task.schedule is not None:
        return _beta_run(vae, task, data, settings, progress, clock)
    run = fit(vae, data, _config(task, settings, progress))
    clock.lap("fit_s")
    return _estimates(vae, run, task, data, settings, progress, clock)


def stackable(tasks: list[Task]) -> bool:
    """Whether ``tasks`` train as one stack (:func:`run_group`): two or more runs of one
    objective with the diagonal guide, none a β-schedule run (bool)."""
    return (
        len(tasks) > 1
        and all(task.schedule is None and task.guide == "diagonal" for task in tasks)
        and len({(task.label, task.spec) for task in tasks}) == 1
    )


def run_group(tasks: list[Task], data, settings: "RunSettings", progress: bool) -> list[RunOutput]:
    """:func:`run_task` of each task, the runs of one objective over several seeds
    trained as one stack (:func:`pyro_vae.train.stack.fit_runs`) where
    :func:`stackable`; each run then evaluated and taken apart on its own.

    Returns
    -------
    list of RunOutput
        One per task, in order. A stacked run's ``times["fit_s"]`` is the stack's.
    """
    if not stackable(tasks):
        return [run_task(task, data, settings, progress) for task in tasks]
    clocks = [_Clock(task) for task in tasks]
    start = clocks[0].last
    vaes = []
    for task in tasks:
        vae = new_model(data, settings, task.guide)
        vae.to(settings.dtype).load_state_dict(task.initial)
        vaes.append(vae)
    config = _config(tasks[0], settings, progress)
    gap_runs = [i for i, task in enumerate(tasks) if task.check]
    runs = fit_runs(vaes, data, config, seeds=[task.seed for task in tasks], gap_runs=gap_runs)
    now = time.perf_counter()
    for clock in clocks:
        clock.last = start  # one stack: one fit time
        clock.lap("fit_s", now)
    outputs = []
    for vae, run, task, clock in zip(vaes, runs, tasks, clocks, strict=True):
        clock.restart()
        outputs.append(_estimates(vae, run, task, data, settings, progress, clock))
    return outputs


def _estimates(vae, run, task, data, settings, progress, clock):
    """The test evaluation, anatomy and (first seed) checks of a trained objective run."""
    x, k, device = data.test, settings.num_samples, settings.device
    test = evaluate(vae, x, k, ks=(5, 50), seed=task.seed, device=device)
    clock.lap("evaluate_s")
    decomp = elbo_decompositions(
        vae, x, num_samples=1000, seed=task.seed, log_px_samples=k, evaluation=test
    )
    surgery = elbo_surgery(vae, x, seed=task.seed)
    units = active_units(vae, x, seed=task.seed)
    clock.lap("anatomy_s")
    aggregate = check = gaps = from_ais = sandwich = None
    if task.check:
        aggregate = _aggregate_draws(vae, x, task.seed, settings.z_dim)
        points = settings.posterior_points
        if points:
            check = check_guide(vae, x[:points], seed=task.seed, device=device)
        clock.lap("check_s")
        if points and settings.gap_families:
            gaps = inference_gaps(vae, x[:points], settings.gap_families, k, seed=task.seed,
                                  max_steps=settings.gap_max_steps)  # fmt: skip
            clock.lap("gaps_s")
        if points and settings.ais_bridges:
            from_ais = ais(vae, x[:points], num_bridges=settings.ais_bridges, num_chains=AIS_CHAINS,
                           seed=task.seed, progress=progress)  # fmt: skip
            clock.lap("ais_s")
        if task.bdmc and settings.ais_bridges and settings.bdmc_points:
            sandwich = _sandwich(vae, settings, task.seed, progress)
            clock.lap("bdmc_s")
    return RunOutput(vae, run, test, units, pyro.util.get_rng_state(), clock.times,
                     decomp=decomp, surgery=surgery, aggregate=aggregate, check=check,
                     gaps=gaps, ais=from_ais, sandwich=sandwich)  # fmt: skip


def _beta_run(vae, task, data, settings, progress, clock):
    """A β-schedule run: every epoch, the last one evaluated (the β = 1 validation bound
    would pick an early epoch of a run trained far from β = 1: epoch 1 for β = 0)."""
    config = _config(task, settings, progress, beta=task.schedule, patience=None,
                     restore_best=False)  # fmt: skip
    run = fit(vae, data, config)
    clock.lap("fit_s")
    test = evaluate(vae, data.test, settings.num_samples, ks=(5, 50), seed=task.seed,
                    device=settings.device)  # fmt: skip
    clock.lap("evaluate_s")
    units = active_units(vae, data.test)
    clock.lap("anatomy_s")
    return RunOutput(vae, run, test, units, pyro.util.get_rng_state(), clock.times)


def _config(task, settings, progress, **overrides):
    """The training configuration of a run: the comparison's, its objective and seed; the
    gap tracked only where the report reads it (a first-seed run's history)."""
    loss, alpha, k = task.spec
    if not task.check and task.schedule is None:
        overrides.setdefault("gap_every", None)
    return settings.config.replace(loss=loss, alpha=alpha, num_particles=k, seed=task.seed,
                                   progress=progress, **overrides)  # fmt: skip


def _sandwich(vae, settings, seed, progress):
    """BDMC on ``bdmc_points`` points simulated from the model and importance sampling
    with the guide on the same points (a SandwichOutput)."""
    start = time.perf_counter()
    sandwich = bdmc(vae, settings.bdmc_points, num_bridges=settings.ais_bridges,
                    num_chains=AIS_CHAINS, seed=seed, progress=progress)  # fmt: skip
    middle = time.perf_counter()
    test = evaluate(vae, sandwich.x, settings.num_samples, seed=seed, device=settings.device)
    return SandwichOutput(sandwich, test, middle - start, time.perf_counter() - middle)


def _aggregate_draws(vae, x, seed, z_dim):
    """AGGREGATE_DRAWS draws z ~ q(z|x) per row of x, ``(AGGREGATE_DRAWS · batch, z_dim)``."""
    q = vae.encode(x)
    with torch.random.fork_rng([x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        return q.sample((AGGREGATE_DRAWS,)).reshape(-1, z_dim)


class _Clock:
    """Wall seconds of a run's steps, its CPU seconds and when it ran (Unix time)."""

    def __init__(self, task):
        self.times = {"label": task.label, "seed": task.seed, "process": os.getpid()}
        self.times["started"] = time.time()
        self.cpu, self.last = time.process_time(), time.perf_counter()

    def restart(self):
        """Leave out of the next lap and of ``cpu_s`` the time since the last lap (a
        stacked run's estimates start after those of the runs before it)."""
        self.cpu += time.process_time() - self.cpu_at_lap
        self.last = time.perf_counter()

    def lap(self, name, now=None):
        now = time.perf_counter() if now is None else now
        self.times[name], self.last = now - self.last, now
        self.times["finished"] = time.time()
        self.cpu_at_lap = time.process_time()
        self.times["cpu_s"] = self.cpu_at_lap - self.cpu
