"""Worker processes of a comparison: its runs side by side, with the numbers of one process.

:func:`run_in_workers` runs :func:`pyro_vae.experiments.runs.run_group` for every group of tasks in
a pool of spawned processes (:class:`concurrent.futures.ProcessPoolExecutor`, only its
public API). Each worker keeps the data and settings given once to its initializer and
reports its process id, so that on the first error the parent can stop the busy workers
at once instead of waiting for their runs.
"""

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm
from tqdm.std import tqdm as std_tqdm

from .runs import RunOutput, Task, new_model, run_group

if TYPE_CHECKING:
    from .compare import RunSettings

__all__ = ["available_cores", "run_in_workers"]


def available_cores() -> int:
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


@dataclasses.dataclass(frozen=True)
class _Given:
    """What a worker process is given once: the data and the runs' settings."""

    data: object
    settings: "RunSettings"


_WORKER: _Given | None = None
"""A worker process's data and settings, set once by :func:`_start_worker`."""


def _start_worker(data, settings, num_threads, pids):
    """Initializer of a worker process: keep the data, set the torch threads, report
    this process's id on ``pids``."""
    global _WORKER
    _WORKER = _Given(data, settings)
    torch.set_num_threads(num_threads)
    # tqdm's default lock is a multiprocessing semaphore, which a worker stopped by
    # _stop would leave for the resource tracker to complain about; none is shown here
    std_tqdm.set_lock(threading.RLock())
    pids.put(os.getpid())


def _worker_run(tasks):
    """:func:`run_group` in a worker: the RunOutputs with the modules as state dicts, and
    the runs' warnings recorded."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = run_group(tasks, _WORKER.data, _WORKER.settings, progress=False)
    sent = []
    for out in outs:
        state = {name: value.cpu() for name, value in out.vae.state_dict().items()}
        # the parent attaches its own copy of the module to the guide check
        check = None if out.check is None else dataclasses.replace(out.check, vae=None)
        sent.append(dataclasses.replace(out, vae=state, check=check))
    modules = {getattr(m, "__file__", None): name for name, m in list(sys.modules.items())}
    shown = [
        (w.category, str(w.message), w.filename, w.lineno, modules.get(w.filename)) for w in caught
    ]
    return sent, shown


def run_in_workers(
    tasks: list[Task],
    data,
    settings: "RunSettings",
    workers: int,
    progress: bool,
    groups: list[list[int]] | None = None,
) -> list[RunOutput]:
    """:func:`run_group` of every group of tasks in ``workers`` spawned processes;
    outputs in task order.

    ``groups`` lists the task indices of each group (default: one task per group);
    a group runs in one worker, as one stack where it can
    (:func:`pyro_vae.experiments.runs.run_group`). The groups with the most particles go
    first (the longest first keeps the workers busy until the end). Each worker sets the
    torch threads of this process. On the first error the other runs are cancelled and
    the workers stopped, and the error is raised with a note naming the run (the
    worker's traceback is its ``__cause__``).

    Raises
    ------
    RuntimeError
        If a worker process died (e.g. killed for memory) before returning its run.
    """
    if groups is None:
        groups = [[i] for i in range(len(tasks))]
    order = sorted(groups, key=lambda group: -tasks[group[0]].spec[2])
    outputs = [None] * len(tasks)
    registry = {}
    context = multiprocessing.get_context("spawn")
    pids = context.SimpleQueue()
    initargs = (data, settings, torch.get_num_threads(), pids)
    pool = ProcessPoolExecutor(workers, context, initializer=_start_worker, initargs=initargs)
    bar = tqdm(total=len(tasks), desc=f"runs ({workers} workers)", disable=not progress)
    pending = {}  # an error while submitting (e.g. spawn refused) reaches the except clause
    try:
        pending = {pool.submit(_worker_run, [tasks[i] for i in group]): group for group in order}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                group = pending.pop(future)
                outs = _worker_output(future, [tasks[i] for i in group], registry)
                for i, out in zip(group, outs, strict=True):
                    outputs[i] = out
                bar.update(len(group))
    except BaseException:
        for future in pending:
            future.cancel()
        _stop(pids)
        raise
    finally:
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)
        pids.close()
    with torch.random.fork_rng():  # building a module draws an initialization
        return [
            _with_module(out, data, settings, task)
            for task, out in zip(tasks, outputs, strict=True)
        ]


def _with_module(out, data, settings, task):
    """A worker's RunOutput with its state dict loaded into a module of this process,
    the module its guide check holds too."""
    vae = new_model(data, settings, task.guide).to(settings.dtype)
    vae.load_state_dict(out.vae)
    check = None if out.check is None else dataclasses.replace(out.check, vae=vae)
    return dataclasses.replace(out, vae=vae, check=check)


def _worker_output(future, tasks, registry):
    """A finished group's outputs, its warnings shown; its error raised with a note."""
    seeds = ", ".join(str(task.seed) for task in tasks)
    what = f"the {tasks[0].label} run{'s' if len(tasks) > 1 else ''} (seed {seeds})"
    try:
        out, shown = future.result()
    except BrokenProcessPool as e:
        raise RuntimeError(
            f"A worker process of compare died before {what} returned (killed by the "
            "system, e.g. out of memory?); run with workers=1 (pyro-vae compare "
            "--workers 1) to run everything in this process"
        ) from e
    except Exception as e:
        e.add_note(f"Raised in a worker process of compare, in {what}.")
        raise
    for category, message, filename, lineno, module in shown:
        # the registry of the module the warning names, as if raised here ("default":
        # once per place); a per-call one for a module this process has not loaded
        found = sys.modules.get(module)
        place = vars(found).setdefault("__warningregistry__", {}) if found else registry
        warnings.warn_explicit(message, category, filename, lineno, module, place)
    return out


def _stop(pids):
    """Stop the workers that reported on ``pids`` now, without waiting for their runs.

    The pool sees a worker end abruptly and terminates the others itself (the rest of
    its pending runs fail with BrokenProcessPool, unread); ``shutdown`` then joins them.
    """
    while not pids.empty():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pids.get(), signal.SIGTERM)
