"""One run of a comparison: train a model from its seeded initialization, evaluate it on
the test split, take its ELBO apart and, for the first seed, check its guide.

A run is a :class:`Task`; :func:`run_task` does its work in whatever process it is
given (this one, or a worker of :mod:`pyro_vae.experiments.workers`) and returns what
:func:`pyro_vae.experiments.compare.compare` assembles. Every estimate draws from a
seeded, forked RNG, so the runs are independent of each other and of their order.
"""

import os
import time
from dataclasses import dataclass

import pyro
import torch

from ..infer.ais import ais, bdmc
from ..infer.anatomy import active_units, elbo_decompositions, elbo_surgery
from ..infer.evaluation import evaluate
from ..infer.gaps import inference_gaps
from ..models import VAE
from ..train.training import fit
from .guide_check import check_guide

__all__ = ["AGGREGATE_DRAWS", "AIS_CHAINS", "Task", "run_task"]

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


def new_model(data, settings, guide="diagonal"):
    """An untrained VAE of the comparison's architecture with the guide ``guide``
    (draws an initialization)."""
    return VAE(data.x_dim, settings["z_dim"], settings["hidden_dims"], settings["likelihood"],
               encoder=guide)  # fmt: skip


def run_task(task: Task, data, settings: dict, progress: bool) -> dict:
    """Train, evaluate and take apart one run; a dict of what ``compare`` assembles.

    ``rng_state``: the global RNG states (torch, Python, NumPy) at the end of the run,
    which only training moves (every estimate draws from a seeded forked RNG).
    """
    clock = _Clock(task)
    vae = new_model(data, settings, task.guide)
    vae.to(settings["dtype"]).load_state_dict(task.initial)
    device = settings["device"]
    out = {"vae": vae}
    num_samples, x = settings["num_samples"], data.test
    if task.schedule is None:
        out["run"] = fit(vae, data, _config(task, settings, progress))
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
            if settings.get("posterior_points") and settings.get("gap_families"):
                out["gaps"] = inference_gaps(
                    vae, x[: settings["posterior_points"]], settings["gap_families"],
                    num_samples, seed=task.seed, max_steps=settings["gap_max_steps"],
                )  # fmt: skip
                clock.lap("gaps_s")
            if settings.get("posterior_points") and settings.get("ais_steps"):
                out["ais"] = ais(vae, x[: settings["posterior_points"]], **_ais_budget(settings),
                                 seed=task.seed, progress=progress)  # fmt: skip
                clock.lap("ais_s")
            if task.bdmc and settings.get("ais_steps") and settings.get("bdmc_points"):
                out["bdmc"] = _sandwich(vae, settings, task.seed, progress)
                clock.lap("bdmc_s")
    else:
        # every epoch, the last one evaluated: the β = 1 validation bound would pick an
        # early epoch of a run trained far from β = 1 (epoch 1 for β = 0)
        config = _config(task, settings, progress, beta=task.schedule, patience=None,
                         restore_best=False)  # fmt: skip
        out["run"] = fit(vae, data, config)
        clock.lap("fit_s")
        out["test"] = evaluate(vae, x, num_samples, ks=(5, 50), seed=task.seed, device=device)
        clock.lap("evaluate_s")
        out["units"] = active_units(vae, x)
        clock.lap("anatomy_s")
    out["rng_state"] = pyro.util.get_rng_state()
    out["times"] = clock.times
    return out


def _config(task, settings, progress, **overrides):
    """The training configuration of a run: the comparison's, its objective and seed."""
    loss, alpha, k = task.spec
    return settings["config"].replace(loss=loss, alpha=alpha, num_particles=k, seed=task.seed,
                                      progress=progress, **overrides)  # fmt: skip


def _ais_budget(settings):
    """The main job's AIS settings (bridges, chains)."""
    return {"num_steps": settings["ais_steps"], "num_chains": AIS_CHAINS}


def _sandwich(vae, settings, seed, progress):
    """BDMC on ``bdmc_points`` points simulated from the model, importance sampling with
    the guide on the same points, and the wall seconds of each."""
    start = time.perf_counter()
    sandwich = bdmc(vae, settings["bdmc_points"], **_ais_budget(settings), seed=seed,
                    progress=progress)  # fmt: skip
    middle = time.perf_counter()
    test = evaluate(vae, sandwich.x, settings["num_samples"], seed=seed,
                    device=settings["device"])  # fmt: skip
    return {"bdmc": sandwich, "test": test, "seconds": middle - start,
            "is_seconds": time.perf_counter() - middle, "num_steps": settings["ais_steps"],
            "num_chains": AIS_CHAINS}  # fmt: skip


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

    def lap(self, name):
        now = time.perf_counter()
        self.times[name], self.last = now - self.last, now
        self.times["finished"] = time.time()
        self.times["cpu_s"] = time.process_time() - self.cpu
