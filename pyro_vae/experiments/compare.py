"""The main job: train one VAE per objective and judge all on held-out log p(x).

It also asks, per objective, how far the trained guide q_φ(z|x) sits from the model's
exact posterior p_θ(z|x) on a few test points
(:func:`pyro_vae.experiments.guide_check.check_guide`): HMC draws (and quadrature for
2-D latents) against guide draws.

For each training seed, every objective trains the same architecture from the same
initialization (drawn with that seed) on the same split; every trained model is then
evaluated on the test split by the same estimator (:func:`pyro_vae.evaluate`,
K = 5000 importance samples). Differences between objectives are reported two ways:
the spread across training seeds (retraining), and paired per-point differences on
the same test points (:func:`pyro_vae.infer.evaluation.paired_difference`), which is what
decides whether one objective beats another on this test set.

Every run (objective and seed, or β schedule) is seeded on its own
(:mod:`pyro_vae.experiments.runs`), so the runs are independent:
``compare(..., workers=N)`` runs them side by side in N processes
(:mod:`pyro_vae.experiments.workers`) and returns the same numbers as one process.
The returned :class:`Comparison` writes the whole report:
``compare(data).write_report("results")``.
"""

import itertools
import math
import os
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pyro
import torch

from .._checks import check_int
from .._deprecation import renamed, warn_renamed
from .._device import check_device, check_dtype
from .._io import versions
from .._threads import torch_threads
from ..infer.evaluation import mean_difference, paired_difference
from ..infer.local import check_family
from ..infer.objectives import objective_label, parse_objective
from ..models.flows import parse_guide
from ..results import (
    BETA_ESTIMATES,
    DECOMPOSITIONS,
    ESTIMATES,
    PAIRED,
    SURGERY,
    Agreement,
    BetaRow,
    Estimate,
    GapRow,
    ObjectiveRow,
    Pair,
    SandwichRow,
    spread,
)
from ..train.config import DEFAULT_LR, MAIN_JOB, TrainConfig, check_objective
from ..train.schedules import parse_schedule
from . import figures as _figures
from . import report
from .guide_check import summarize_agreement
from .runs import AIS_CHAINS, Task, new_model, run_group
from .workers import run_in_workers

__all__ = [
    "DEFAULT_OBJECTIVES",
    "GAP_EVERY",
    "AIS_BRIDGES",
    "BDMC_POINTS",
    "GAP_FAMILIES",
    "GAP_MAX_STEPS",
    "MIN_SAMPLES",
    "NUM_SAMPLES",
    "POSTERIOR_POINTS",
    "RISING",
    "Comparison",
    "RunSettings",
    "check_num_samples",
    "compare",
    "convergence",
]

# The main job's defaults, stated once: compare()'s signature and the CLI's compare
# command read them; its training settings are pyro_vae.MAIN_JOB with GAP_EVERY.
DEFAULT_OBJECTIVES = ("trace", "meanfield", "renyi:0:5", "renyi:0.5:5")
"""Objectives of the main job: Trace_ELBO, TraceMeanField_ELBO, IWAE (K = 5), Rényi α = 0.5."""
NUM_SAMPLES = 5000
"""K of the main job: importance samples per test point behind log p(x) (Burda et al.
2016 use 5000); at least :data:`MIN_SAMPLES`."""
MIN_SAMPLES = 100
"""Smallest K of the main job: two groups of 50 draws, for the standard error of the
IWAE-50 bound its test evaluation reports (:func:`check_num_samples`)."""
POSTERIOR_POINTS = 16
"""Test points (the first ones) on which the main job checks each guide against the
exact posterior and splits its gap."""
GAP_FAMILIES = ("diagonal", "flow")
"""Per-point guide families of the main job's gap split (:func:`pyro_vae.inference_gaps`)."""
GAP_EVERY = 25
"""Epochs between the gap estimates of each run (``gap_every``) unless told otherwise."""
GAP_MAX_STEPS = 1000
"""Adam steps at most per per-point guide fit in the main job (see :func:`compare`): the
diagonal fits usually end by Cremer et al.'s rule near it, the flow fits at it (their
L[q*] then a little low; the report says which fits reached it)."""
AIS_BRIDGES = 100
"""Bridges of the main job's AIS on the checked points and of its BDMC sandwich (16
chains, step sizes adapted on 4 chains per point): sized for the main job's 3 minutes on
2 cores, where it resolves the 8-D digits models' log p(x) to a few hundredths of a nat
(``benchmarks/bench_ais.py`` measures larger budgets)."""
BDMC_POINTS = 50
"""Points simulated from the first objective's model for the main job's BDMC sandwich
(the width's s.e. about 0.04 nats on the digits; ``benchmarks/bench_ais.py`` runs 100)."""
RISING = 0.05
"""Rise of the validation bound over the last tenth of training (nats per point) above
which a run counts as not converged (:func:`convergence`)."""
_PER_RUN = ("loss", "alpha", "num_particles", "seed")


def check_num_samples(num_samples, name: str = "num_samples") -> int:
    """``num_samples`` if the main job can use it as K: an integer ≥ :data:`MIN_SAMPLES`.

    The main job's test evaluation reports the IWAE-50 bound with a standard error from
    groups of 50 draws (:func:`pyro_vae.evaluate`, ``ks=(5, 50)``), so it needs two
    groups at least.

    Parameters
    ----------
    num_samples : int
        K, importance samples per test point.
    name : str, default "num_samples"
        The argument's name in the message (e.g. ``"--num-samples"`` for a command).

    Returns
    -------
    int
        ``num_samples``, unchanged.

    Raises
    ------
    ValueError
        One line naming ``name``, if ``num_samples`` is not an int (a bool is not) or
        is below :data:`MIN_SAMPLES`.
    """
    if (
        not isinstance(num_samples, int)
        or isinstance(num_samples, bool)
        or num_samples < MIN_SAMPLES
    ):
        raise ValueError(
            f"Expected {name} >= {MIN_SAMPLES} (two groups of 50 for the IWAE-50 standard "
            f"error) but got {num_samples!r}"
        )
    return num_samples


@dataclass(frozen=True)
class RunSettings:
    """What every run of the main job is given, checked once (:func:`compare` builds it).

    Frozen and picklable: :func:`compare` hands it to every run
    (:func:`pyro_vae.experiments.runs.run_task`), once to each worker process
    (:mod:`pyro_vae.experiments.workers`), and reads it back when it assembles the
    results; every reader reads attributes.

    Attributes
    ----------
    config : TrainConfig
        The training settings of every run (:class:`pyro_vae.TrainConfig`); each run
        sets its objective and seed. Its ``device`` is where every run trains, is
        evaluated and is checked.
    z_dim : int
        Latent dimension (:class:`pyro_vae.VAE` checks it).
    hidden_dims : tuple of int
        Hidden layer widths (a list is kept as a tuple; :class:`pyro_vae.VAE` checks them).
    likelihood : str
        p(x|z) (:class:`pyro_vae.VAE` checks it).
    num_samples : int
        K, importance samples per test point behind log p(x), in the test evaluation,
        the gap split and the sandwich: at least :data:`MIN_SAMPLES`
        (:func:`check_num_samples`).
    dtype : torch.dtype
        ``torch.float32`` or ``torch.float64`` (the names ``"float32"``, ``"float64"``
        are converted): precision of the models and of every estimate.
    posterior_points : int
        Test points (the first ones) of the guide check, the gap split and AIS, ≥ 0.
    gap_families : tuple of str
        Per-point guide families of the gap split (``"diagonal"``, ``"flow"``).
    gap_max_steps : int
        Most Adam steps of each per-point fit, > 0.
    ais_bridges : int
        Bridges of AIS and of the BDMC sandwich, ≥ 0 (0 skips both).
    bdmc_points : int
        Points simulated for the BDMC sandwich, ≥ 0 (0 skips it).

    Raises
    ------
    ValueError
        One line naming the field, for a ``config`` that is not a valid
        :class:`pyro_vae.TrainConfig`, a K below :data:`MIN_SAMPLES`, another
        ``dtype``, an unknown gap family, or a count that is not an integer in range.
    """

    config: TrainConfig
    z_dim: int
    hidden_dims: tuple
    likelihood: str
    num_samples: int
    dtype: torch.dtype
    posterior_points: int
    gap_families: tuple
    gap_max_steps: int
    ais_bridges: int
    bdmc_points: int

    def __post_init__(self):
        if not isinstance(self.config, TrainConfig):
            raise ValueError(f"Expected config to be a TrainConfig but got {self.config!r}")
        self.config.validate()
        check_num_samples(self.num_samples)
        if isinstance(self.hidden_dims, list):
            object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))
        object.__setattr__(self, "dtype", check_dtype(self.dtype))
        if isinstance(self.gap_families, str):
            raise ValueError(
                f"Expected gap_families to be a sequence of families but got {self.gap_families!r}"
            )
        object.__setattr__(self, "gap_families", tuple(self.gap_families))
        for family in self.gap_families:
            check_family(family)
        check_int("gap_max_steps", self.gap_max_steps)
        check_int("ais_bridges", self.ais_bridges, minimum=0)
        check_int("bdmc_points", self.bdmc_points, minimum=0)
        check_int("posterior_points", self.posterior_points, minimum=0)

    @property
    def device(self):
        """Where every run trains, is evaluated and is checked: ``config.device``."""
        return self.config.device


@dataclass
class Comparison:
    """What :func:`compare` returns; :meth:`write_report` writes the whole report.

    Attributes
    ----------
    rows : list of ObjectiveRow
        One per objective (:class:`pyro_vae.results.ObjectiveRow`): the
        test-set estimates (mean over seeds, Monte-Carlo s.e., s.d. across seeds), the
        ELBO's anatomy, active units, training times, best epochs and convergence.
    beta_rows : list of BetaRow
        One per β schedule (``beta_schedules``), first seed, the objective
        ``beta_objective``, the last epoch's model
        (:class:`pyro_vae.results.BetaRow`).
    beta_models : dict of str to VAE
        The trained module of each β schedule, keyed by its label.
    aggregate : dict of str to torch.Tensor
        Per objective (first seed), :data:`pyro_vae.experiments.runs.AGGREGATE_DRAWS`
        draws z ~ q(z|x_n) for each test point, shape
        ``(AGGREGATE_DRAWS * num_test, z_dim)``: draws from the aggregate posterior q(z).
    pairs : list of Pair
        One per pair of objectives (a, b): paired differences a − b of log p(x), ELBO
        and gap on the same test points (:class:`pyro_vae.results.Pair`).
    gap_rows : list of GapRow
        One per objective (first seed): where its gap comes from on the checked test
        points (:func:`pyro_vae.inference_gaps`, :class:`pyro_vae.results.GapRow`), with
        ``log_px_ais``, log p(x) by AIS from the guide (:func:`pyro_vae.ais`) on the same
        points; empty when ``posterior_points`` is 0, or ``gap_families`` is empty and
        ``ais_bridges`` 0 (without gap families a row holds the importance-sampling
        ``log_px`` of the test evaluation and ``log_px_ais``).
    sandwich : SandwichRow or None
        The BDMC sandwich (:func:`pyro_vae.bdmc`) on ``bdmc_points`` points simulated
        from the first objective's first-seed model, with importance sampling by its
        guide on the same points (:class:`pyro_vae.results.SandwichRow`); None when
        ``bdmc_points`` or ``ais_bridges`` is 0.
    agreement : list of Agreement
        One per objective (first seed): medians over the checked test points of the
        guide-vs-posterior table
        (:func:`pyro_vae.experiments.guide_check.summarize_agreement`); empty when
        ``posterior_points`` is 0.
    checks : dict of str to GuideCheck
        The guide-vs-posterior check of each objective's first-seed model.
    histories : dict of str to list of dict
        Per-epoch training history of each objective, first seed.
    models : dict of str to VAE
        The trained modules of the first seed, keyed by objective label.
    evaluations : dict of str to list of Evaluation
        Per-point test estimates of each objective, one per seed.
    data : pyro_vae.data.Dataset
        The data compared on (its test split feeds the report's image figures).
    meta : dict
        Data set and split (``image_shape`` included), seeds, sizes, settings, versions;
        ``workers`` (processes used), ``torch_threads`` (in each), ``wall_time_s``,
        ``cpu_time_s`` (this process and its workers), ``load_average`` (1-minute, at
        the start and the end) and ``run_times``: per run, in the order of the runs
        (objectives within seeds, then β schedules), ``label``, ``seed``, ``process``
        (its process id), ``started`` and ``finished`` (seconds since the start of
        :func:`compare`), ``fit_s``, ``evaluate_s``, ``anatomy_s`` (decompositions,
        surgery and active units; active units alone for a β run) and, for a
        first-seed objective, ``check_s`` (aggregate draws and guide check), ``gaps_s``
        (the gap split), ``ais_s`` (AIS on the checked points) and, for the first
        objective, ``bdmc_s`` (the BDMC sandwich and IS on its points): wall seconds;
        ``cpu_s``, the run's CPU seconds.
    """

    rows: list = field(default_factory=list)
    beta_rows: list = field(default_factory=list)
    beta_models: dict = field(default_factory=dict)
    aggregate: dict = field(default_factory=dict)
    pairs: list = field(default_factory=list)
    gap_rows: list = field(default_factory=list)
    sandwich: object = None
    agreement: list = field(default_factory=list)
    checks: dict = field(default_factory=dict)
    histories: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    evaluations: dict = field(default_factory=dict)
    data: object = None
    meta: dict = field(default_factory=dict)

    def figures(self) -> list:
        """The report's figures, ``(file name, caption, matplotlib Figure)`` in order.

        As :func:`pyro_vae.experiments.figures.report_figures`; the reconstructions and
        samples draw from the global RNG.
        """
        return _figures.report_figures(self)

    def write_report(self, out_dir: str | os.PathLike) -> dict:
        """Write the figures, ``results.csv``, ``results.json`` and ``report.md``.

        The figures (:meth:`figures`) are saved as PNG files into ``out_dir``, then
        :func:`pyro_vae.experiments.report.write_results` writes the result files and
        the report that links exactly these figures (figures a previous run recorded in
        ``out_dir`` and this one did not write are removed, nothing else).

        Parameters
        ----------
        out_dir : str or os.PathLike
            Output folder, created if needed.

        Returns
        -------
        dict of str to str
            File name -> path of every file written.
        """
        figures = self.figures()
        paths = {
            name: _figures.save_figure(fig, os.path.join(out_dir, name)) for name, _, fig in figures
        }
        paths.update(
            report.write_results(
                out_dir,
                self.rows,
                self.histories,
                self.meta,
                self.pairs,
                self.agreement,
                figures=[(name, caption) for name, caption, _ in figures],
                beta_rows=self.beta_rows,
                gap_rows=self.gap_rows,
                sandwich=self.sandwich,
            )
        )
        return paths

    def summary(self) -> str:
        """The report's tables and takeaways as plain text (str), for a terminal."""
        parts = [
            report.format_table(self.rows, num_samples=self.meta["num_samples"]),
            "the ELBO three ways (nats per test point):",
            report.format_decompositions(self.rows),
            "ELBO surgery and active units:",
            report.format_surgery(self.rows, self.meta["num_test"]),
        ]
        if self.beta_rows:
            parts += [f"β schedules ({self.meta['beta_objective']}):",
                      report.format_beta_table(self.beta_rows)]  # fmt: skip
        parts += ["paired differences on the same test points (± s.e. over points):",
                  report.format_pairs(self.pairs)]  # fmt: skip
        certified = report.sandwich_lines(self.gap_rows, self.sandwich)
        if certified:
            parts += ["AIS and the BDMC sandwich:", *certified]
        if self.agreement:
            parts += ["guide vs exact posterior (medians over the checked test points):",
                      report.format_agreement(self.agreement)]  # fmt: skip
        parts += ["- " + line.replace("**", "") for line in report.takeaways(self.rows, self.pairs)]
        return "\n".join(parts)


def compare(
    data,
    objectives: Sequence[str] = DEFAULT_OBJECTIVES,
    config: TrainConfig | None = None,
    *,
    z_dim: int = 8,
    hidden_dims: Sequence[int] = (256,),
    likelihood: str = "bernoulli",
    guides: Sequence[str] = ("diagonal",),
    num_samples: int = NUM_SAMPLES,
    seeds: Iterable[int] = (0,),
    posterior_points: int = POSTERIOR_POINTS,
    gap_families: Sequence[str] = GAP_FAMILIES,
    gap_max_steps: int = GAP_MAX_STEPS,
    ais_bridges: int = AIS_BRIDGES,
    bdmc_points: int = BDMC_POINTS,
    beta_schedules: Sequence[str] = (),
    beta_objective: str | None = None,
    workers: int = 1,
    dtype: torch.dtype | str = torch.float32,
    ais_steps: int | None = None,
    **overrides,
) -> Comparison:
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
    config : TrainConfig, optional
        The training settings of every run (:class:`pyro_vae.TrainConfig`); default
        :data:`pyro_vae.MAIN_JOB` (800 epochs, patience 100, one torch thread) with the
        gap tracked every :data:`GAP_EVERY` epochs. Its objective and seed are set per
        run from ``objectives`` and ``seeds``.
    z_dim, hidden_dims, likelihood
        As in :class:`pyro_vae.VAE`.
    guides : sequence of str, default ("diagonal",)
        Guide specs (``VAE(..., encoder=spec)``: ``"diagonal"``, ``"iaf:K"``,
        ``"coupling:K"``, ``"spline:K"``); each objective is trained with each guide, from
        one initialization per guide and seed. Rows of a guide other than
        ``"diagonal"`` are labelled ``"Trace_ELBO (iaf:2)"``.
    num_samples : int, default NUM_SAMPLES
        K, importance samples per test point for log p(x) (Burda et al. 2016), at
        least :data:`MIN_SAMPLES` (:func:`check_num_samples`).
    seeds : sequence of int, default (0,)
        Training seeds (initialization, shuffling, binarization and z draws); each
        objective is trained once per seed. With several seeds, the runs of one
        objective with the diagonal guide train as one stack of parameters
        (:func:`pyro_vae.train.stack.fit_runs`): each run the computation it is alone
        (its own initialization, minibatches, draws, Adam state, best epoch and early
        stopping), to float rounding of batched matrix products, at a fraction of the
        time; their ``fit_s`` in ``meta["run_times"]`` is the stack's. One seed runs as
        before, bit for bit.
    posterior_points : int, default POSTERIOR_POINTS
        Test points (the first ones) on which each objective's first-seed guide is
        checked against its exact posterior
        (:func:`pyro_vae.experiments.guide_check.check_guide`), and on which its gap is
        split (``gap_families``); 0 skips both.
    gap_families : sequence of str, default GAP_FAMILIES
        Per-point guide families fitted on the checked points to split each
        objective's gap into approximation and amortization gaps
        (:func:`pyro_vae.inference_gaps`); empty skips the split.
    gap_max_steps : int, default GAP_MAX_STEPS
        Most Adam steps of each per-point fit (the main job's budget; Cremer et al.'s
        stopping rule usually ends it earlier).
    ais_bridges : int, default AIS_BRIDGES
        Bridges of AIS from each objective's first-seed guide on the checked points
        (the gap table's ``log p(x) (AIS)``) and of the BDMC sandwich; 0 skips both.
    bdmc_points : int, default BDMC_POINTS
        Points simulated from the first objective's first-seed model for the BDMC
        sandwich (:attr:`Comparison.sandwich`); 0 skips it.
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
        training, test evaluation, anatomy and guide check) side by side, an objective's
        seeds together as one stack; at most the number of stacks and single runs is
        used. 1 runs everything in this process. With more, each
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
    dtype : torch.dtype or {"float32", "float64"}, default torch.float32
        Precision of the models' parameters and of every estimate.
    ais_steps : int, optional
        The old name of ``ais_bridges``, accepted until the next release with a
        FutureWarning (ValueError if both are given).
    **overrides
        Fields of ``config`` to change (:meth:`pyro_vae.TrainConfig.replace`), e.g.
        ``epochs=300, patience=None``; among them ``progress`` (progress bars: one per
        run with ``workers=1``, else one counting the finished runs), ``num_threads``
        (torch threads for the whole comparison, restored afterwards, in each worker
        process too; None leaves torch's setting), ``gap_every`` (every this many
        epochs each run estimates log p(x), the ELBO and their gap on 100 validation
        points; None turns it off) and ``device`` (where every run trains, is
        evaluated and is checked; default CUDA when PyTorch sees a GPU, else the CPU;
        the returned modules are on the CPU).

    Returns
    -------
    Comparison

    Raises
    ------
    ValueError
        For a bad objective or guide spec, seeds, ``workers`` (an integer ≥ 1), any
        invalid training setting (:meth:`pyro_vae.TrainConfig.validate`), an
        override of ``loss``, ``alpha``, ``num_particles`` or ``seed`` (set per run), or
        a setting :class:`RunSettings` refuses (``num_samples`` below
        :data:`MIN_SAMPLES`, ``dtype``, the gap and AIS budgets), before any training.
    TypeError
        For an override that is not a field of :class:`pyro_vae.TrainConfig`.
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
    ais_bridges = renamed("compare()", "ais_steps", ais_steps, "ais_bridges", ais_bridges,
                          AIS_BRIDGES)  # fmt: skip
    config = _check_config(config, overrides)
    specs, labels, seeds = _check_compare_args(objectives, seeds)
    entries = _entries(specs, labels, guides, z_dim)
    settings = RunSettings(config, z_dim, hidden_dims, likelihood, num_samples, dtype,
                           posterior_points, gap_families, gap_max_steps, ais_bridges,
                           bdmc_points)  # fmt: skip
    if posterior_points > len(data.test):
        raise ValueError(
            f"Expected posterior_points <= {len(data.test)}, the size of the test split, "
            f"but got {posterior_points}"
        )
    check_int("workers", workers)
    schedules = [parse_schedule(spec) for spec in beta_schedules]
    if len({schedule.spec for schedule in schedules}) != len(schedules):
        raise ValueError(f"Expected distinct beta_schedules but got {list(beta_schedules)}")
    beta_spec = parse_objective(beta_objective) if beta_objective is not None else specs[0]
    for schedule in schedules:
        check_objective(*beta_spec, beta=schedule)
    with torch_threads(config.num_threads):
        start, cpu_start, started = time.perf_counter(), _cpu_time(), time.time()
        load_before = _load_average()
        tasks = _tasks(data, entries, seeds, beta_spec, schedules, settings)
        groups = _groups(tasks)
        workers = min(workers, len(groups))
        if workers == 1:
            outputs = [None] * len(tasks)
            for group in groups:
                outs = run_group([tasks[i] for i in group], data, settings, config.progress)
                for i, out in zip(group, outs, strict=True):
                    outputs[i] = out
        else:
            outputs = run_in_workers(tasks, data, settings, workers, config.progress, groups)
        for out in outputs:
            out.vae.cpu()  # in place: the guide checks hold the same module
        # leave the global RNGs as the last run left them in this process with one worker
        pyro.util.set_rng_state(outputs[-1].rng_state)
        result = _assemble(data, tasks, outputs, entries, seeds, settings)
        if schedules:
            result.meta["beta_objective"] = objective_label(*beta_spec)
            result.meta["beta_schedules"] = [schedule.spec for schedule in schedules]
        result.meta["workers"] = workers
        result.meta["device"] = settings.device
        result.meta["dtype"] = str(settings.dtype).removeprefix("torch.")
        result.meta["load_average"] = [load_before, _load_average()]
        result.meta["wall_time_s"] = time.perf_counter() - start
        result.meta["cpu_time_s"] = _cpu_time() - cpu_start
        result.meta["run_times"] = [_relative(out.times, started) for out in outputs]
        result.meta["image_shape"] = data.image_shape
        return result


def _check_config(config, overrides):
    """The comparison's training configuration, validated, its device resolved."""
    per_run = sorted(set(overrides) & set(_PER_RUN))
    if per_run:
        raise ValueError(
            f"Expected no {', '.join(per_run)} among compare's settings (set per run by "
            f"objectives and seeds) but got {', '.join(f'{k}={overrides[k]!r}' for k in per_run)}"
        )
    config = MAIN_JOB.replace(gap_every=GAP_EVERY) if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"Expected config to be a TrainConfig or None but got {config!r}")
    config = config.replace(**overrides).validate()
    return config.replace(device=str(check_device(config.device)))


def _check_compare_args(objectives, seeds):
    specs = [parse_objective(spec) for spec in objectives]
    if not specs:
        raise ValueError("Expected at least one objective but got none")
    labels = [objective_label(*spec) for spec in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"Expected distinct objectives but got {list(objectives)}")
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"Expected seeds to be a non-empty list of integers but got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"Expected distinct seeds but got {seeds}")
    return specs, labels, seeds


def _entries(specs, labels, guides, z_dim):
    """(objective spec, guide spec, row label) of each run per seed, guide by guide."""
    if isinstance(guides, str):
        raise ValueError(f"Expected guides to be a sequence of guide specs but got {guides!r}")
    canonical = [parse_guide(spec, z_dim)[0] for spec in guides]
    if not canonical:
        raise ValueError("Expected at least one guide but got none")
    if len(set(canonical)) != len(canonical):
        raise ValueError(f"Expected distinct guides but got {list(guides)}")
    return [
        (spec, guide, label if guide == "diagonal" else f"{label} ({guide})")
        for guide in canonical
        for spec, label in zip(specs, labels, strict=True)
    ]


def _relative(times, started):
    """A run's times with ``started`` and ``finished`` in seconds since ``started``."""
    return {**times, "started": times["started"] - started,
            "finished": times["finished"] - started}  # fmt: skip


def _tasks(data, entries, seeds, beta_spec, schedules, settings):
    """The runs in the order one worker runs them, each with its initialization (one
    per seed and guide)."""
    tasks = []
    for seed in seeds:
        initial = {}
        for spec, guide, label in entries:
            if guide not in initial:
                torch.manual_seed(seed)
                initial[guide] = new_model(data, settings, guide).state_dict()
            first = seeds[0] == seed
            tasks.append(Task(label, spec, seed, initial[guide], first, guide=guide,
                              bdmc=first and not tasks))  # fmt: skip
    if schedules:
        guide = entries[0][1]
        torch.manual_seed(seeds[0])
        initial = new_model(data, settings, guide).state_dict()
        for schedule in schedules:
            tasks.append(Task(schedule.label, beta_spec, seeds[0], initial, schedule=schedule,
                              guide=guide))  # fmt: skip
    return tasks


def _groups(tasks):
    """The task indices of each group that trains as one stack: an objective's runs over
    the seeds (:func:`pyro_vae.experiments.runs.stackable`); every other task alone."""
    groups, by_label = [], {}
    for i, task in enumerate(tasks):
        if task.schedule is None and task.guide == "diagonal":
            if task.label in by_label:
                by_label[task.label].append(i)
                continue
            by_label[task.label] = [i]
            groups.append(by_label[task.label])
        else:
            groups.append([i])
    return groups


def _cpu_time():
    """CPU seconds of this process and of its finished child processes (workers)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _load_average():
    """The 1-minute load average (runnable processes), or None where unavailable."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


# ------------------------------------------------------------------ assembling results


def _assemble(data, tasks, outputs, entries, seeds, settings):
    """The :class:`Comparison` from the runs' outputs (RunOutput, in task order) and
    their settings (:class:`RunSettings`)."""
    labels = [label for _, _, label in entries]
    runs = {label: [] for label in labels}
    result = Comparison(data=data)
    for task, out in zip(tasks, outputs, strict=True):
        if task.schedule is not None:
            result.beta_rows.append(_beta_row(task, out, settings))
            result.beta_models[task.label] = out.vae
            continue
        runs[task.label].append(out)
        if task.check:
            result.models[task.label] = out.vae
            result.histories[task.label] = out.run.history
            result.aggregate[task.label] = out.aggregate
    for (loss, alpha, k), guide, label in entries:
        result.rows.append(_row(label, loss, alpha, k, guide, seeds, runs[label]))
        result.evaluations[label] = [out.test for out in runs[label]]
    for a, b in itertools.combinations(labels, 2):
        result.pairs.append(_pair(a, b, result.evaluations[a], result.evaluations[b]))
    for task, out in zip(tasks, outputs, strict=True):
        if out.gaps is not None:
            result.gap_rows.append(GapRow.from_gaps(task.label, out.gaps))
        if out.ais is not None:
            if out.gaps is None:
                result.gap_rows.append(_is_row(task.label, out.test, out.ais.log_px.numel()))
            summary = out.ais.summary()
            result.gap_rows[-1].estimates["log_px_ais"] = Estimate(*summary["log_px"])
        if out.sandwich is not None:
            result.sandwich = _sandwich_row(task.label, out.sandwich, settings)
        if out.check is not None:
            result.checks[task.label] = out.check
            summary = summarize_agreement(out.check.table)
            result.agreement.append(Agreement(objective=task.label, **summary))
    config = settings.config
    result.meta = {
        "dataset": data.name,
        "data_spec": dict(data.spec),
        "split_seed": data.spec.get("split_seed"),
        "seeds": seeds,
        "binarize": data.binarize,
        "num_train": len(data.train),
        "num_validation": len(data.validation),
        "num_test": len(data.test),
        "num_samples": settings.num_samples,
        "epochs": config.epochs,
        "z_dim": settings.z_dim,
        "hidden_dims": list(settings.hidden_dims),
        "likelihood": settings.likelihood,
        "guides": list(dict.fromkeys(guide for _, guide, _ in entries)),
        "batch_size": config.batch_size,
        "lr": DEFAULT_LR if config.lr is None else config.lr,
        "patience": config.patience,
        "posterior_points": settings.posterior_points,
        "ais_bridges": settings.ais_bridges,
        "bdmc_points": settings.bdmc_points,
        "gap_every": config.gap_every,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "versions": versions(),
    }
    return result


def _is_row(label, test, num_points):
    """A GapRow of the test evaluation's log p(x) on the first ``num_points`` points."""
    values = test.values["log_px"][:num_points]
    se = test.std_errors["log_px"][:num_points]
    estimate = Estimate(values.mean().item(), se.square().sum().sqrt().item() / num_points)
    return GapRow(label, None, num_points, "is:amortized", {"log_px": estimate})


def _sandwich_row(label, sandwich, settings):
    """The SandwichRow of one run's sandwich (a SandwichOutput) under ``settings``."""
    bdmc, test = sandwich.bdmc, sandwich.test
    estimates = {name: Estimate(*value) for name, value in bdmc.summary().items()}
    estimates["log_px_is"] = Estimate(*test.summary()["log_px"])
    estimates["forward_minus_is"] = Estimate(
        *mean_difference(bdmc.forward.log_px, test.values["log_px"])
    )
    return SandwichRow(label, bdmc.x.shape[0], settings.ais_bridges, AIS_CHAINS,
                       settings.num_samples, estimates, sandwich.seconds,
                       sandwich.is_seconds)  # fmt: skip


def _beta_row(task, out, settings):
    """The row of one β-schedule run (its RunOutput)."""
    run, units, schedule = out.run, out.units, task.schedule
    summary = out.test.summary()
    return BetaRow(
        schedule=schedule.label,
        spec=schedule.spec,
        name=schedule.name,
        objective=objective_label(*task.spec),
        z_dim=settings.z_dim,
        best_epoch=run.best_epoch,
        epochs_run=len(run.history),
        train_time_s=run.train_time,
        train_cpu_s=run.cpu_time,
        num_active=int(units.num_active),
        activity=units.activity.tolist(),
        kl_per_dim=None if units.kl is None else units.kl.tolist(),
        test={name: Estimate(*summary[name]) for name in BETA_ESTIMATES},
    )


def convergence(history: list, key: str = "val_iwae", tail: float = 0.1) -> float:
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


def _converged(run, rise):
    """Whether a run ended converged: stopped by patience, or best epoch not near the
    end and the validation bound no longer rising."""
    if run.stopped_early:
        return True
    late = run.best_epoch > 0.9 * len(run.history)
    return not late and not rise > RISING


def _row(label, loss, alpha, k, guide, seeds, outs):
    """One objective's row, aggregated over its runs (RunOutput, one per seed)."""
    fits = [out.run for out in outs]
    rises = [convergence(run.history) for run in fits]
    decomps = [out.decomp.summary() for out in outs]
    surgeries = [out.surgery.summary() for out in outs]
    tests = [out.test.summary() for out in outs]
    units = outs[0].units
    return ObjectiveRow(
        objective=label,
        loss=loss,
        alpha=alpha,
        num_particles=k,
        guide=guide,
        seeds=list(seeds),
        epochs_run=[len(run.history) for run in fits],
        best_epoch=[run.best_epoch for run in fits],
        stopped_early=[run.stopped_early for run in fits],
        still_rising=rises,
        # a stacked run's share of its stack
        train_time_s=statistics.fmean(run.train_time / run.num_runs for run in fits),
        train_cpu_s=statistics.fmean(run.cpu_time / run.num_runs for run in fits),
        converged=all(_converged(run, rise) for run, rise in zip(fits, rises, strict=True)),
        test={name: Estimate.over_seeds(tests, name) for name in ESTIMATES},
        khat_unreliable=max(int(out.test.unreliable().sum()) for out in outs),
        decomp={name: Estimate.over_seeds(decomps, name) for name in DECOMPOSITIONS},
        decomp_log_px_method=outs[0].decomp.methods["log_px"],
        surgery={name: Estimate.over_seeds(surgeries, name) for name in SURGERY},
        active_units=[int(out.units.num_active) for out in outs],
        activity=units.activity.tolist(),
        kl_per_dim=None if units.kl is None else units.kl.tolist(),
    )


def _pair(a, b, tests_a, tests_b):
    """Paired differences a − b on the same test points, per seed then aggregated."""
    diffs = {}
    for name in PAIRED:
        per_seed = [
            paired_difference(ta, tb, name) for ta, tb in zip(tests_a, tests_b, strict=True)
        ]
        means = [mean for mean, _ in per_seed]
        # per-seed s.e. over points, combined as the s.e. of the mean over seeds
        se = math.sqrt(sum(se**2 for _, se in per_seed)) / len(per_seed)
        diffs[name] = Estimate(statistics.fmean(means), se, spread(means))
    return Pair(a, b, diffs)


def __getattr__(name):
    """``AIS_STEPS``, the old name of :data:`AIS_BRIDGES`, with a FutureWarning."""
    if name == "AIS_STEPS":
        warn_renamed("pyro_vae.experiments.compare", "AIS_STEPS", "AIS_BRIDGES")
        return AIS_BRIDGES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
