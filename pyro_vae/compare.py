"""The main job: train one VAE per objective and judge all on held-out log p(x).

It also asks, per objective, how far the trained guide q_φ(z|x) sits from the model's
exact posterior p_θ(z|x) on a few test points (:func:`check_guide`): HMC draws (and
quadrature for 2-D latents) against guide draws.

For each training seed, every objective trains the same architecture from the same
initialization (drawn with that seed) on the same split; every trained model is then
evaluated on the test split by the same estimator (:func:`pyro_vae.evaluate`,
K = 5000 importance samples). Differences between objectives are reported two ways:
the spread across training seeds (retraining), and paired per-point differences on
the same test points (:func:`pyro_vae.evaluation.paired_difference`), which is what
decides whether one objective beats another on this test set.
"""

import itertools
import math
import os
import statistics
import time
from dataclasses import dataclass, field

import torch

from ._io import versions
from ._threads import DEFAULT_THREADS, torch_threads
from .anatomy import active_units, elbo_decompositions, elbo_surgery
from .evaluation import evaluate, paired_difference
from .models import VAE
from .objectives import check_objective, objective_label, parse_objective
from .posterior import compare_posteriors, sample_guide, sample_posterior
from .quadrature import quadrature_posterior
from .schedules import parse_schedule
from .training import fit

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
        Data set and split, seeds, sizes, settings, versions and total wall time.
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
):
    """Train one VAE per objective and training seed, then evaluate each on the test split.

    Parameters
    ----------
    data : pyro_vae.data.Dataset
        Train/validation/test splits (the split and its seed are fixed by the data;
        training seeds do not move the test set). The validation split selects each
        run's best epoch by the validation IWAE bound L_50.
    objectives : sequence of str, default DEFAULT_OBJECTIVES
        Specs as in :func:`pyro_vae.objectives.parse_objective`; default Trace_ELBO,
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
        Show progress bars.
    num_threads : int or None, default DEFAULT_THREADS (1)
        Torch threads for the whole comparison (restored afterwards); None leaves
        torch's setting. One thread is the measured best for networks this small
        (``benchmarks/bench_threads.py``).
    gap_every : int or None, default 25
        Every this many epochs, each run estimates log p(x), the ELBO and their gap on
        100 validation points (``fit(gap_every=...)``); None turns it off.
    beta_schedules : sequence of str, default ()
        β schedules (:func:`pyro_vae.schedules.parse_schedule` specs, e.g. ``"0"``,
        ``"4"``, ``"warmup:100"``) under which ``beta_objective`` is also trained, first
        seed only, from the same initialization, for all ``epochs`` (no early stopping)
        and evaluated at the last epoch, since the β = 1 validation bound that picks the
        best epoch elsewhere would pick an early epoch of a run far from β = 1:
        posterior collapse and its cure in :attr:`Comparison.beta_rows`.
    beta_objective : str, optional
        The objective spec of the β runs; default the first of ``objectives``.

    Returns
    -------
    Comparison

    Raises
    ------
    ValueError
        For a bad objective spec, seeds or any invalid training argument, before any
        training.
    """
    specs, labels, seeds = _check_compare_args(objectives, num_samples, seeds)
    if not isinstance(posterior_points, int) or posterior_points < 0:
        raise ValueError(
            f"Expected posterior_points to be an integer >= 0 but got {posterior_points!r}"
        )
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
                    "posterior_points": posterior_points, "progress": progress,
                    "gap_every": gap_every}  # fmt: skip
        start, cpu_start = time.perf_counter(), time.process_time()
        result = _compare(data, specs, labels, seeds, **settings)
        if schedules:
            result.beta_rows, result.beta_models = _beta_runs(
                data, beta_spec, schedules, seeds[0], settings
            )
            result.meta["beta_objective"] = objective_label(*beta_spec)
            result.meta["beta_schedules"] = [schedule.spec for schedule in schedules]
        result.meta["wall_time_s"] = time.perf_counter() - start
        result.meta["cpu_time_s"] = time.process_time() - cpu_start
        return result


def _beta_runs(data, spec, schedules, seed, settings):
    """Train ``spec`` under each β schedule from one initialization; rows and models."""
    loss, alpha, k = spec
    torch.manual_seed(seed)
    model_args = (data.x_dim, settings["z_dim"], settings["hidden_dims"], settings["likelihood"])
    initial = VAE(*model_args).state_dict()
    rows, models = [], {}
    for schedule in schedules:
        vae = VAE(*model_args)
        vae.load_state_dict(initial)
        # every epoch, the last one evaluated: the β = 1 validation bound would pick an
        # early epoch of a run trained far from β = 1 (epoch 1 for β = 0)
        run = fit(vae, data, loss=loss, alpha=alpha, num_particles=k, beta=schedule,
                  epochs=settings["epochs"], batch_size=settings["batch_size"],
                  lr=settings["lr"], seed=seed, patience=None, restore_best=False,
                  progress=settings["progress"], gap_every=settings["gap_every"])  # fmt: skip
        test = evaluate(vae, data.test, settings["num_samples"], ks=(5, 50), seed=seed)
        summary = test.summary()
        units = active_units(vae, data.test)
        row = {
            "schedule": schedule.label,
            "spec": schedule.spec,
            "name": schedule.name,
            "objective": objective_label(loss, alpha, k),
            "z_dim": settings["z_dim"],
            "best_epoch": run.best_epoch,
            "epochs_run": len(run.history),
            "train_time_s": run.train_time,
            "train_cpu_s": run.cpu_time,
            "num_active": int(units.num_active),
            "activity": units.activity.tolist(),
            "kl_per_dim": units.kl.tolist(),
        }
        for name in ("elbo", "log_px", "kl", "reconstruction", "gap"):
            row[f"test_{name}"], row[f"test_{name}_se"] = summary[name]
        rows.append(row)
        models[schedule.label] = vae
    return rows, models


def _compare(data, specs, labels, seeds, epochs, z_dim, hidden_dims, likelihood, batch_size,
             lr, patience, num_samples, posterior_points, progress, gap_every):  # fmt: skip
    """The work of :func:`compare`, arguments checked."""
    start, cpu_start = time.perf_counter(), time.process_time()
    load_before = _load_average()
    runs = {label: [] for label in labels}
    result = Comparison()
    for seed in seeds:
        torch.manual_seed(seed)
        initial = VAE(data.x_dim, z_dim, hidden_dims, likelihood).state_dict()
        for (loss, alpha, k), label in zip(specs, labels, strict=True):
            vae = VAE(data.x_dim, z_dim, hidden_dims, likelihood)
            vae.load_state_dict(initial)
            run = fit(vae, data, loss=loss, alpha=alpha, num_particles=k, epochs=epochs,
                      batch_size=batch_size, lr=lr, seed=seed, patience=patience,
                      progress=progress, gap_every=gap_every)  # fmt: skip
            test = evaluate(vae, data.test, num_samples, ks=(5, 50), seed=seed)
            anatomy = _anatomy(vae, data.test, num_samples, seed)
            runs[label].append((run, test, anatomy))
            if label not in result.models:
                result.models[label] = vae
                result.histories[label] = run.history
                z_loc, z_scale = vae.encode(data.test)
                generator = torch.Generator(device=z_loc.device).manual_seed(seed)
                shape = (AGGREGATE_DRAWS, *z_loc.shape)
                noise = torch.randn(shape, generator=generator, device=z_loc.device)
                result.aggregate[label] = (z_loc + z_scale * noise).reshape(-1, z_dim)
    for (loss, alpha, k), label in zip(specs, labels, strict=True):
        result.rows.append(_row(label, loss, alpha, k, seeds, runs[label]))
        result.evaluations[label] = [test for _, test, _ in runs[label]]
    for a, b in itertools.combinations(labels, 2):
        result.pairs.append(_pair(a, b, result.evaluations[a], result.evaluations[b]))
    if posterior_points:
        x = data.test[:posterior_points]
        for label, vae in result.models.items():
            result.checks[label] = check_guide(vae, x, seed=seeds[0])
            result.agreement.append(
                {"objective": label, **summarize_agreement(result.checks[label].table)}
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
        "num_samples": num_samples,
        "epochs": epochs,
        "z_dim": z_dim,
        "hidden_dims": list(hidden_dims),
        "likelihood": likelihood,
        "batch_size": batch_size,
        "lr": lr,
        "patience": patience,
        "posterior_points": posterior_points,
        "gap_every": gap_every,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": [load_before, _load_average()],
        "wall_time_s": time.perf_counter() - start,
        "cpu_time_s": time.process_time() - cpu_start,
        "versions": versions(),
    }
    return result


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


def _anatomy(vae, x, num_samples, seed):
    """The ELBO three ways, ELBO surgery and active units of one trained model on x."""
    return {
        "decomp": elbo_decompositions(
            vae, x, num_samples=1000, seed=seed, log_px_samples=num_samples
        ),  # fmt: skip
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
    vae : pyro_vae.models.BaseVAE
        The model checked.
    """

    table: object
    posterior: object
    guide: object
    exact: object = None
    vae: object = None


def check_guide(vae, x, num_samples=1000, warmup_steps=500, num_chains=4, seed=0):
    """Compare a guide q_φ(z|x) with the exact posterior p_θ(z|x) on the rows of x.

    Draws the posterior with the batched HMC sampler and the guide, tabulates their
    agreement per data point (:func:`pyro_vae.compare_posteriors`: mean error in
    posterior s.d., s.d. ratio, 2-Wasserstein distance between Gaussian fits, Pareto
    k̂ of q as an importance proposal, R̂, bulk ESS and divergences of the reference),
    and for z_dim ≤ 2 adds the exact KL(q‖p(z|x)) by quadrature.

    Parameters
    ----------
    vae : pyro_vae.models.BaseVAE
        The trained model; θ is held fixed.
    x : torch.Tensor
        Data points, shape ``(B, x_dim)``.
    num_samples, warmup_steps, num_chains, seed
        As :func:`pyro_vae.sample_posterior`; ``num_samples`` guide draws too.

    Returns
    -------
    GuideCheck

    Raises
    ------
    ValueError
        As :func:`pyro_vae.sample_posterior`.
    """
    posterior = sample_posterior(vae, x, num_samples, warmup_steps, num_chains, seed=seed)
    guide = sample_guide(vae, x, num_samples, seed=seed)
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
