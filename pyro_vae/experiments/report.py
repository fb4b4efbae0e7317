r"""Tables and result files of a comparison of training objectives.

The input is what :func:`pyro_vae.experiments.compare.compare` collects
(:class:`~pyro_vae.experiments.compare.Comparison`, whose ``write_report`` calls
:func:`write_results`), one entry per training objective. Rows are typed
(:mod:`pyro_vae.results`); every function also takes their flat form, the
columns of ``results.csv`` and ``results.json``:

- ``rows``: list of ObjectiveRow or dict with ``"objective"`` (label, e.g. ``"Trace_ELBO"``),
  ``"loss"``, ``"alpha"``, ``"num_particles"``, ``"epochs_run"``, ``"best_epoch"``,
  ``"train_time_s"`` (seconds) and, for each estimate ``<name>`` of
  :data:`ESTIMATES`, ``"test_<name>"`` (mean over the test split, nats per data
  point), ``"test_<name>_se"`` (its Monte-Carlo standard error, nats) and, optionally,
  ``"test_<name>_sd"`` (standard deviation across training seeds),
  ``"test_<name>_se_unreliable"`` (test points where that s.e. is not reliable, Pareto
  k̂ ≥ 0.5 of the draws behind it) and ``"khat_unreliable"`` (test points with Pareto
  k̂ > 0.7);
- ``pairs`` (optional): list of dict with ``"a"``, ``"b"`` and, for log_px and elbo,
  ``"<name>_diff"``, ``"<name>_diff_se"`` and ``"<name>_diff_sd"`` (paired
  differences a − b on the same test points, see :class:`pyro_vae.experiments.compare.Comparison`);
- ``histories``: dict objective label -> list of per-epoch dicts
  (:attr:`pyro_vae.FitResult.history`);
- ``meta``: dict describing the run (``"dataset"``, ``"num_test"``,
  ``"num_samples"``, ``"epochs"``, ``"z_dim"``, ``"seed"``, ``"wall_time_s"``,
  ``"versions"``, ...).

:func:`write_results` turns them into ``results.csv``, ``results.json`` and a
``report.md`` that explains how to read the numbers; :func:`read_results` loads the
JSON back.

References
----------
1. D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
2. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders",
   ICLR 2016.
"""

import contextlib
import csv
import json
import math
import os
from pathlib import Path
from urllib.parse import quote

from .._io import atomic_path
from ..infer.diagnostics import KHAT_GOOD, KHAT_UNRELIABLE
from ..infer.evaluation import format_se
from ..results import ESTIMATES, Agreement, BetaRow, GapRow, ObjectiveRow, SandwichRow, as_rows
from ..viz.labels import estimate_label
from .tables import (
    as_pairs,
    format_agreement,
    format_beta_table,
    format_decompositions,
    format_gap_split,
    format_markdown_table,
    format_pairs,
    format_surgery,
    format_table,
    is_finite,
    listed,
)

__all__ = [
    "ESTIMATES",
    "format_agreement",
    "format_beta_table",
    "format_decompositions",
    "format_markdown_table",
    "format_pairs",
    "format_surgery",
    "format_table",
    "read_results",
    "sandwich_lines",
    "takeaways",
    "write_results",
]


_AGREEMENT_NOTE = """\
Medians over the first {n} test points of each objective's model (first training seed):
the guide's mean error in units of the posterior s.d. (absolute, over points and latent
dims), the ratio of guide to posterior s.d., the 2-Wasserstein distance between Gaussian
fits, and the Pareto k̂ of q as an importance proposal for p(x, z) (Yao et al. 2018;
above 0.7, q misses posterior mass); for 2-D latents the exact KL(q‖p(z|x)) by quadrature,
the gap the ELBO leaves. The reference is the batched HMC sampler (max R̂ and min bulk ESS
over the points say whether to trust it). A larger gap for the IWAE-trained model's guide
answers whether maximizing the ELBO pulls q(z|x) towards p(z|x)."""


_ANATOMY_NOTE = """\
The same ELBO reached three ways (nats per test point): reconstruction minus the KL to the
prior (Kingma & Welling 2014), expected complete-data log-likelihood plus the guide's
entropy, and the evidence minus the gap KL(q(z|x) ‖ p(z|x)) (Blei et al. 2017). Each term
is estimated on its own draws (the KL and entropy analytically), so the three agree only
within their errors; log p(x) is exact for the linear-Gaussian model, by quadrature for
2-D latents and by importance sampling otherwise (then the third way is log p̂(x) minus
log p̂(x) − ELBO on other draws, a check of consistency more than a third measurement)."""

_SURGERY_NOTE = """\
ELBO surgery (Hoffman & Johnson 2016): the KL term averaged over the test points splits
into the mutual information I_q(x; z) between data and code under q and the KL from the
aggregate posterior q(z) = (1/N) Σ_n q(z|x_n) to the prior. q(z) is the mixture over
these N test points, so I_q ≤ log N. A latent dimension is *active* when the variance over
x of its guide mean, A_d = Cov_x(E_q[z_d]), exceeds 0.01 (Burda et al. 2016); one that
carries KL ≈ 0 has collapsed onto the prior."""


def _jsonable(obj):
    """Plain JSON types: tuples as lists, numpy/torch scalars as numbers, NaN as None.

    Infinite floats also become None, so the file is strict JSON.
    """
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, str | bytes):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _describe(meta, num_objectives):
    """One paragraph on what was run, from whatever ``meta`` holds."""
    what = f"{num_objectives} training objective{'s' if num_objectives != 1 else ''}"
    parts = [f"This run compares {what}"]
    if "dataset" in meta:
        parts.append(f" on the `{meta['dataset']}` data set")
    if "z_dim" in meta:
        parts.append(f" with a {meta['z_dim']}-dimensional latent z")
    if "epochs" in meta:
        parts.append(f", each trained for up to {meta['epochs']} epochs")
    if "seeds" in meta:
        parts.append(f" (training seeds {', '.join(map(str, meta['seeds']))}")
        if meta.get("split_seed") is not None:
            parts.append(f"; split seed {meta['split_seed']}")
        parts.append(")")
    parts.append(".")
    if "num_test" in meta or "num_samples" in meta:
        parts.append(" All objectives are evaluated with the same estimators")
        if "num_test" in meta:
            parts.append(f" on {meta['num_test']} test points")
        if "num_samples" in meta:
            parts.append(f", log p(x) with K = {meta['num_samples']} importance samples")
        parts.append(".")
    binarize = meta.get("binarize")
    if binarize in ("static", "dynamic"):
        train = "redrawn every epoch" if binarize == "dynamic" else "drawn once"
        parts.append(
            f" Binarization: training images {train} ({binarize}), validation and test "
            "images drawn once (static): every log p(x) here is on those binary test images."
        )
    elif binarize == "threshold":
        parts.append(
            " Binarization: every image of every split set to 1[intensity > 0.5] (threshold, "
            "Cremer et al. 2018's preprocessing): every log p(x) here is on those thresholded "
            "images, not comparable with numbers on stochastically binarized ones."
        )
    elif binarize == "none":
        parts.append(" Binarization: none; the data are used as given.")
    if "wall_time_s" in meta:
        parts.append(f" Total wall time: {float(meta['wall_time_s']):.1f} s")
        if meta.get("cpu_time_s") is not None:
            parts.append(f" ({float(meta['cpu_time_s']):.1f} s CPU)")
        parts.append(".")
    if "torch_threads" in meta:
        parts.append(f" Torch threads: {meta['torch_threads']}")
        workers = meta.get("workers") or 1
        if workers > 1:
            parts.append(f" in each of {workers} worker processes, the runs side by side")
        if meta.get("cpu_count"):
            parts.append(f" on {meta['cpu_count']} CPUs")
        loads = [v for v in meta.get("load_average") or [] if v is not None]
        if loads:
            busy = "the torch threads" if workers == 1 else "workers × threads"
            parts.append(
                f"; 1-minute load average {loads[0]:.1f} at the start, {loads[-1]:.1f} at "
                f"the end (a load above {busy} means other processes competed for "
                "the cores: compare the wall and CPU columns)"
            )
        parts.append(".")
    text = "".join(parts)
    versions = meta.get("versions")
    if isinstance(versions, dict) and versions:
        listed = ", ".join(f"{name} {version}" for name, version in versions.items())
        text += f"\n\nVersions: {listed}."
    return text


_HOW_TO_READ = """\
## How to read this

All numbers are in nats per test data point; higher is better for every bound.
`±` is one standard deviation across training seeds when several were run (the
spread of retraining), otherwise one Monte-Carlo standard error of the estimator (it
says nothing about retraining). Whether one objective beats another on these test
points is read from the paired differences below the table: the mean per-point
difference with its standard error over test points.

- **ELBO** = E_q log p(x|z) − KL(q(z|x) ‖ p(z)), i.e. the *reconstruction*
  column minus the *KL* column (Kingma & Welling 2014).
- **IWAE-k** is the importance-weighted bound L_k = E log (1/k) Σ_{{s≤k}} w_s with
  w = p(x, z) / q(z|x). L_1 is the ELBO, and the bounds tighten with k toward
  log p(x): ELBO ≤ IWAE-5 ≤ IWAE-50 ≤ log p(x) (Burda et al. 2016).
- **log p(x)** is L_K with K{k}, the importance-sampling estimate with the guide as
  proposal; it is the common yardstick on which all training objectives are judged.
- **gap** = log p(x) − ELBO, which estimates KL(q(z|x) ‖ p(z|x)): how far the
  guide is from the true posterior.
- **KL(q‖p(z))** is KL(q(z|x) ‖ p(z)), the KL to the *prior* inside the ELBO (its
  second term): not the gap. A guide can be far from the prior and close to the
  posterior, or the reverse.
- **wall (s)** and **CPU (s)**: seconds of training (validation included), wall
  clock and CPU of this process. With one torch thread the CPU time is the cost of
  the work and a wall time well above it means other processes shared the core; with
  several threads on a busy machine both grow, as waiting threads spin.
- **k̂>{bad}** counts test points where the Pareto k̂ of the importance weights
  exceeds {bad} (PSIS, Vehtari et al. 2024): there the log p(x) estimate itself is not
  to be trusted.
- **!** after an s.e. (or s.d.): at some test points the draws behind that estimate
  have Pareto k̂ ≥ {good} (of the importance weights for log p(x) and the gap, of the
  draws of the ELBO's terms for those), an infinite variance: no standard error exists
  there, the one printed understates the error, and so does that of the mean over
  points. More samples shrink the error slowly; `pyro-vae ais` estimates log p(x)
  with a reliable error.

References: D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014;
Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
"""


def _best(rows, name, largest=True):
    """The row with the largest (or smallest) test estimate ``name``."""
    pick = max if largest else min
    return pick(rows, key=lambda row: row.need(name).mean)


def _pair_between(pairs, a, b, name):
    """(mean, se) of a − b from the paired differences, whichever order was stored."""
    for pair in pairs:
        if name not in pair.diffs:
            continue
        diff = pair.diffs[name]
        if (pair.a, pair.b) == (a, b):
            return diff.mean, diff.se
        if (pair.a, pair.b) == (b, a):
            return -diff.mean, diff.se
    return None


def _versus(rows, pairs, best, name, largest):
    """``", ahead of B by d ± se nats per point (resolved)"`` for the runner-up B."""
    others = [row for row in rows if row is not best]
    if not others:
        return ""
    runner = _best(others, name, largest)
    found = _pair_between(pairs, best.objective, runner.objective, name)
    if found is None:
        return ""
    diff, se = found
    diff = diff if largest else -diff
    resolved = (
        "more than two standard errors: resolved on these test points"
        if abs(diff) > 2 * se
        else "within two standard errors: not resolved on these test points"
    )
    word = "above" if largest else "below"
    return (
        f", {diff:.3f} ± {format_se(se)} nats per point {word} the next, "
        f"{runner.objective} (paired difference; {resolved})"
    )


def takeaways(rows: list, pairs: list | None = None, meta: dict | None = None) -> list[str]:
    """The comparison's findings in sentences computed from the numbers.

    Parameters
    ----------
    rows : list of dict
        As for :func:`format_table`, optionally with ``"converged"``, ``"best_epoch"``,
        ``"epochs_run"`` and ``"still_rising"`` (:class:`pyro_vae.experiments.compare.Comparison`).
    pairs : list of dict, optional
        Paired differences (:attr:`pyro_vae.experiments.compare.Comparison.pairs`); with them, each
        finding states the difference to the runner-up and whether it is resolved
        (more than two standard errors).
    meta : dict, optional
        Unused keys are ignored; ``"image_shape"`` None adds that no image figures
        were drawn.

    Returns
    -------
    list of str
        Sentences (Markdown): the objective with the highest log p(x), the lowest and
        highest ELBO, the largest and smallest gap (KL(q‖p(z|x))), and warnings for
        runs that had not converged, for points with Pareto k̂ > 0.7 and for
        estimates whose s.e. is not reliable at some points (k̂ ≥ 0.5), with the
        remedy.
    """
    rows, pairs = as_rows(rows, ObjectiveRow), as_pairs(pairs)
    lines = []
    best = _best(rows, "log_px")
    lines.append(
        f"**Highest log p(x)**: {best.objective}, {best.need('log_px').mean:.2f} nats "
        f"per point{_versus(rows, pairs, best, 'log_px', True)}."
    )
    if len(rows) > 1:
        low = _best(rows, "elbo", largest=False)
        high = _best(rows, "elbo")
        lines.append(
            f"**Lowest ELBO**: {low.objective}, {low.need('elbo').mean:.2f}; highest "
            f"ELBO: {high.objective}, {high.need('elbo').mean:.2f}. A bound trained "
            "with more particles need not have the highest ELBO: it is judged by log p(x)."
        )
        wide = _best(rows, "gap")
        narrow = _best(rows, "gap", largest=False)
        lines.append(
            f"**Largest gap** log p(x) − ELBO = KL(q(z|x) ‖ p(z|x)): {wide.objective}, "
            f"{wide.need('gap').mean:.3f} nats per point"
            f"{_versus(rows, pairs, wide, 'gap', True)}; smallest: {narrow.objective}, "
            f"{narrow.need('gap').mean:.3f}. The gap is how far each guide is from its "
            "model's true posterior."
        )
    unconverged = [_convergence_detail(row) for row in rows if row.converged is False]
    if unconverged:
        which = "all objectives" if len(unconverged) == len(rows) > 1 else "these runs"
        lines.append(
            f"**Not converged** ({which}; best epoch in the last tenth of training or the "
            f"validation bound still rising): {'; '.join(unconverged)}. More epochs "
            "(`--epochs`) would change the numbers; compare with care."
        )
    flagged = [row for row in rows if int(row.khat_unreliable or 0) > 0]
    if flagged:
        counts = ", ".join(f"{row.objective} {int(row.khat_unreliable)}" for row in flagged)
        lines.append(
            f"**Unreliable points** (Pareto k̂ > {KHAT_UNRELIABLE}, where log p(x) and its s.e. "
            f"are not to be trusted), test points per objective{_num_test(meta)}: {counts}."
        )
    shaky = [_unreliable_errors(row) for row in rows if _unreliable_errors(row)]
    if shaky:
        lines.append(
            f"**Error bars not reliable** (!; the draws have Pareto k̂ ≥ {KHAT_GOOD}, an "
            f"infinite variance, at some test points{_num_test(meta)}, so the s.e. "
            f"understates the error): {'; '.join(shaky)}. More samples shrink the error "
            "slowly; `pyro-vae ais` estimates log p(x) with a reliable error."
        )
    if meta is not None and "image_shape" in meta and meta["image_shape"] is None:
        lines.append(
            "No image figures (reconstructions, samples, latent map): the data are not "
            "square images."
        )
    return lines


def _unreliable_errors(row):
    """``"Trace_ELBO: log p(x) at 12, gap at 12 points"`` for the estimates of a row
    whose s.e. is not reliable at some points, or ``""``."""
    counts = [
        f"{estimate_label(name)} at {int(row.test[name].se_unreliable)}"
        for name in ESTIMATES
        if name in row.test and row.test[name].se_unreliable
    ]
    return f"{row.objective}: {', '.join(counts)} points" if counts else ""


def _convergence_detail(row):
    """``"Trace_ELBO (best epoch 773 of 800; rising 0.038 nats)"`` for one row."""
    detail = []
    if row.best_epoch is not None and row.epochs_run is not None:
        detail.append(f"best epoch {listed(row.best_epoch)} of {listed(row.epochs_run)}")
    rises = [r for r in row.still_rising or [] if is_finite(r)]
    if rises:
        detail.append(f"rising {max(rises):+.3f} nats over the last tenth")
    return f"{row.objective} ({'; '.join(detail)})" if detail else row.objective


def _num_test(meta):
    return f" (of {meta['num_test']})" if meta and "num_test" in meta else ""


_GAPS_NOTE = (
    "On the first {n} test points, each objective's gap log p(x) − L[q] splits at the "
    "best guide of its own family fitted to each point alone, q* (decoder fixed; "
    "Cremer, Li & Duvenaud 2018): the approximation gap log p(x) − L[q*] is what the "
    "family costs, the amortization gap L[q*] − L[q] what sharing one encoder across "
    "points costs. A per-point flow shows how much a richer family would recover. "
    "Beyond 2-D latents log p(x) is the best importance-sampling estimate, a lower "
    "bound, so the approximation gap is too."
)


def _fits_note(gap_rows):
    """How the per-point fits ended: by the stopping rule, or at the step cap."""
    capped = sorted({f for row in gap_rows for f, done in row.converged.items() if not done})
    if not capped:
        return " Every per-point fit ended by the stopping rule."
    most = max(n for row in gap_rows for f, n in row.steps.items() if f in capped)
    return (
        f" Some per-point fits ({', '.join(capped)}) reached the step cap ({most} steps, "
        "`--gap-max-steps`) before the stopping rule: their L[q*] is a little low, so the "
        "approximation gap is a little high and the amortization gap a little low."
    )


def gap_takeaways(gap_rows) -> list[str]:
    """One line per objective: which gap dominates and what a per-point flow recovers."""
    lines = []
    for row in gap_rows:
        e = row.estimates
        if "approximation_gap" not in e:
            continue
        approx, amort = e["approximation_gap"], e["amortization_gap"]
        bigger = "amortization" if amort.mean > approx.mean else "approximation"
        line = (
            f"{row.objective}: the {bigger} gap dominates (approximation "
            f"{approx.mean:.2f} ± {format_se(approx.se)}, amortization {amort.mean:.2f} ± "
            f"{format_se(amort.se)} nats per point)"
        )
        if "elbo_local_flow" in e and row.family == "diagonal":
            recovered = e["elbo_local_flow"].mean - e["elbo_local_diagonal"].mean
            line += f"; a per-point flow gains {recovered:+.2f} over the per-point diagonal"
        lines.append(line + ".")
    return lines


_SANDWICH_NOTE = (
    "How to read the sandwich: AIS (Neal 2001) anneals from a start distribution to the "
    "posterior; the log of its chains' mean weight is a stochastic lower bound on log p(x) "
    "whose bias vanishes as the bridges grow. On data simulated from the model the exact "
    "posterior draw is the z that generated each point, so AIS run backwards from it gives "
    "a stochastic upper bound (BDMC; Grosse, Ghahramani & Adams 2015): the true log p(x) "
    "lies between the two, and the width bounds the error of any estimate on such data, "
    "importance sampling included (Wu et al. 2017). A width within its s.e. of 0 says AIS "
    "has converged there; importance sampling below forward AIS by more than a few s.e. "
    "says its log p(x), and every gap computed from it, is too low by about that much."
)


def _ais_budget_note(meta):
    steps = meta.get("ais_bridges", meta.get("ais_steps"))  # 0.3.0: ais_steps
    if not steps:
        return ""
    return (
        f" Budget here: {steps} bridges of the sigmoid schedule, 16 chains per point, 10 "
        "leapfrog steps per transition, step sizes tuned on a separate pass and frozen "
        "(`--ais-bridges`; `pyro-vae ais CHECKPOINT` runs larger budgets on a saved model)."
    )


def _difference(a, b):
    """a − b of two independent estimates: (mean, s.e.)."""
    return a.mean - b.mean, math.hypot(a.se or 0.0, b.se or 0.0)


def sandwich_lines(gap_rows, sandwich=None) -> list[str]:
    """Lines comparing importance sampling with AIS: per objective on the checked test
    points, and the BDMC sandwich on simulated data.

    Parameters
    ----------
    gap_rows : list of GapRow
        Rows with ``log_px_ais`` give a line each (others are skipped).
    sandwich : SandwichRow, optional
        The BDMC sandwich (:attr:`pyro_vae.experiments.compare.Comparison.sandwich`).

    Returns
    -------
    list of str
        Markdown lines (nats per point, ± one Monte-Carlo s.e.).
    """
    lines = []
    for row in gap_rows:
        e = row.estimates
        if "log_px_ais" not in e or "log_px" not in e:
            continue
        d, se = _difference(e["log_px"], e["log_px_ais"])
        source = row.log_px_source or "importance sampling"
        lines.append(
            f"{row.objective}: AIS from the guide gives log p(x) {e['log_px_ais'].mean:.2f} ± "
            f"{format_se(e['log_px_ais'].se)} on the first {row.num_points} test points; "
            f"the gap split's log p(x) ({source}) minus AIS: {d:+.2f} ± {format_se(se)} nats."
        )
    if sandwich is not None:
        e = sandwich.estimates
        cost = (
            f" (BDMC {sandwich.seconds:.0f} s, {sandwich.seconds / sandwich.is_seconds:.1f}× "
            "the importance sampling)"
            if sandwich.seconds and sandwich.is_seconds
            else ""
        )
        lines.append(
            f"BDMC on data simulated from the {sandwich.objective} model ({sandwich.num_points} "
            f"points, {sandwich.num_bridges} bridges, {sandwich.num_chains} chains): forward "
            f"{e['forward'].mean:.2f}, reverse {e['reverse'].mean:.2f}, width "
            f"{e['width'].mean:.2f} ± {format_se(e['width'].se)} nats; IS-{sandwich.num_samples} "
            f"with the guide is {-e['forward_minus_is'].mean:.2f} ± "
            f"{format_se(e['forward_minus_is'].se)} nats below forward AIS{cost}."
        )
    return lines


def _report(rows, meta, pairs, agreement=None, figures=(), beta_rows=None, gap_rows=None,
            sandwich=None):  # fmt: skip
    lines = [
        "# Comparison of VAE training objectives",
        "",
        _describe(meta, len(rows)),
        "",
        "## Takeaways",
        "",
        *(f"- {line}" for line in takeaways(rows, pairs, meta)),
        "",
        "## Test-set estimates",
        "",
        format_markdown_table(rows, meta.get("num_samples")),
        "",
    ]
    if pairs:
        lines += [
            "## Paired differences on the same test points",
            "",
            "Mean per-point difference a − b ± its standard error over test points "
            "(nats per point); a difference of more than about two standard errors is "
            "resolved on this test set.",
            "",
            *(f"- {line}" for line in format_pairs(pairs).splitlines()),
            "",
        ]
    if all("reconstruction_minus_kl" in row.decomp for row in rows):
        lines += ["## The ELBO three ways", "", format_decompositions(rows), "",
                  _ANATOMY_NOTE, ""]  # fmt: skip
    if all("average_kl" in row.surgery for row in rows):
        lines += [
            "## Where the KL term goes: ELBO surgery and active units",
            "",
            format_surgery(rows, meta.get("num_test")),
            "",
            _SURGERY_NOTE,
            "",
        ]
    if beta_rows:
        lines += [
            f"## β schedules: {beta_rows[0].objective or ''}",
            "",
            "The objective trained under each β schedule (KL weight; first seed, same "
            "initialization, every epoch, the last epoch's model), judged on the same test "
            "points. β = 0 trains the reconstruction term alone; dimensions whose KL stays "
            "near 0 have collapsed onto the prior.",
            "",
            format_beta_table(beta_rows),
            "",
        ]
    if gap_rows:
        lines += [
            "## Where the gap comes from",
            "",
            format_gap_split(gap_rows),
            "",
            *(f"- {line}" for line in gap_takeaways(gap_rows)),
            "",
            _GAPS_NOTE.format(n=gap_rows[0].num_points) + _fits_note(gap_rows),
            "",
        ]
    certified = sandwich_lines(gap_rows or [], sandwich)
    if certified:
        lines += [
            "## A certified log p(x): AIS and the BDMC sandwich",
            "",
            *(f"- {line}" for line in certified),
            "",
            _SANDWICH_NOTE + _ais_budget_note(meta),
            "",
        ]
    if agreement:
        lines += [
            "## Guide vs exact posterior",
            "",
            format_agreement(agreement),
            "",
            _AGREEMENT_NOTE.format(n=agreement[0].num_points),
            "",
        ]
    lines += [
        _HOW_TO_READ.format(
            k=f" = {meta['num_samples']}" if "num_samples" in meta else " (all draws)",
            good=KHAT_GOOD,
            bad=KHAT_UNRELIABLE,
        ).rstrip("\n"),
    ]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{caption}]({quote(name)})\n" for name, caption in figures]
    return "\n".join(lines).rstrip("\n") + "\n"


def _previous_figures(out_dir):
    """Figure file names a previous run recorded in ``out_dir``'s results.json."""
    try:
        with open(out_dir / "results.json", encoding="utf-8") as f:
            names = json.load(f).get("meta", {}).get("figures") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [n for n in names if isinstance(n, str) and n == os.path.basename(n) and n]


def write_results(
    out_dir,
    rows,
    histories,
    meta,
    pairs=None,
    agreement=None,
    figures=None,
    beta_rows=None,
    gap_rows=None,
    sandwich=None,
):
    """Write ``results.csv``, ``results.json`` and ``report.md`` into ``out_dir``.

    - ``results.csv``: one line per row after a header; the columns are the keys of
      the first row, followed by any key that only later rows have (cells of
      missing keys are empty).
    - ``results.json``: ``{"meta": meta, "results": rows, "pairs": pairs,
      "agreement": agreement, "histories": histories}``, indent 2; ``meta["figures"]``
      lists the figure files of this run; tuples become lists, numpy/torch scalars
      numbers, and NaN or infinite floats ``null`` (strict JSON).
    - ``report.md``: a title, what was run (from ``meta``), the takeaways
      (:func:`takeaways`), the Markdown table (:func:`format_markdown_table`), the
      paired differences and guide check, a "How to read this" section, and image
      links to exactly the ``figures`` of this run.

    Figures that a previous run into the same folder recorded in its
    ``results.json`` and this run did not write again are deleted, so the folder and
    its report describe one run; no other file is touched (nothing the user put
    there). Each file is written to a temporary name and renamed
    (:func:`pyro_vae._io.atomic_path`).

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder, created if needed.
    rows : list of dict
        One dict per objective, see :func:`format_table`.
    histories : dict of str to list of dict
        Objective label -> per-epoch records (:attr:`pyro_vae.FitResult.history`).
    meta : dict
        Description of the run; ``"num_samples"`` (K) is quoted under the table.
    pairs : list of dict, optional
        Paired differences (:attr:`pyro_vae.experiments.compare.Comparison.pairs`), listed in the
        report.
    agreement : list of dict, optional
        Guide-vs-posterior medians per objective
        (:attr:`pyro_vae.experiments.compare.Comparison.agreement`), tabled in the report.
    figures : list of (str, str), optional
        ``(file name, caption)`` of each figure this run saved into ``out_dir``, in
        the order the report shows them.
    beta_rows : list of dict, optional
        One row per β schedule (:attr:`pyro_vae.experiments.compare.Comparison.beta_rows`), tabled
        in the report and stored in ``results.json`` under ``"beta"``.
    gap_rows : list of GapRow or dict, optional
        Where each objective's gap comes from
        (:attr:`pyro_vae.experiments.compare.Comparison.gap_rows`), tabled in the report
        and stored in ``results.json`` under ``"gaps"``.
    sandwich : SandwichRow or dict, optional
        The BDMC sandwich (:attr:`pyro_vae.experiments.compare.Comparison.sandwich`),
        reported with the AIS column and stored in ``results.json`` under ``"bdmc"``.

    Returns
    -------
    dict of str to str
        ``{"results.csv": path, "results.json": path, "report.md": path}``.

    Raises
    ------
    ValueError
        If ``rows`` is empty, a row lacks a key of the table (named), or a figure
        name is not a plain file name.
    """
    rows, pairs = as_rows(rows, ObjectiveRow), as_pairs(pairs)
    agreement = [a if isinstance(a, Agreement) else Agreement.from_dict(a) for a in agreement or ()]
    beta_rows = as_rows(beta_rows, BetaRow) if beta_rows else []
    gap_rows = as_rows(gap_rows, GapRow) if gap_rows else []
    if sandwich is not None and not isinstance(sandwich, SandwichRow):
        sandwich = SandwichRow.from_dict(sandwich)
    figures = [(str(name), str(caption)) for name, caption in (figures or [])]
    for name, _ in figures:
        if not name or name != os.path.basename(name):
            raise ValueError(f"Expected figure file names without a folder but got {name!r}")
    out_dir = Path(out_dir)
    meta = {**meta, "figures": [name for name, _ in figures]}
    report = _report(rows, meta, pairs, agreement, figures, beta_rows, gap_rows, sandwich)
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = [n for n in _previous_figures(out_dir) if n not in meta["figures"]]
    paths = {name: str(out_dir / name) for name in ("results.csv", "results.json")}
    paths["report.md"] = str(out_dir / "report.md")

    flat = [row.to_dict() for row in rows]
    fieldnames = list(flat[0])
    fieldnames += [k for row in flat[1:] for k in row if k not in fieldnames]
    with atomic_path(paths["results.csv"]) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(flat)

    payload = _jsonable(
        {
            "meta": meta,
            "results": flat,
            "pairs": [pair.to_dict() for pair in pairs],
            "agreement": [row.to_dict() for row in agreement],
            "beta": [row.to_dict() for row in beta_rows],
            "gaps": [row.to_dict() for row in gap_rows],
            "bdmc": sandwich.to_dict() if sandwich is not None else None,
            "histories": histories,
        }
    )
    with atomic_path(paths["results.json"]) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, allow_nan=False, ensure_ascii=False)
            f.write("\n")

    with atomic_path(paths["report.md"]) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(report)
    for name in stale:
        with contextlib.suppress(FileNotFoundError):
            (out_dir / name).unlink()
    return paths


def read_results(out_dir):
    """Load the ``results.json`` written by :func:`write_results`.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The folder passed to :func:`write_results`.

    Returns
    -------
    dict
        ``{"meta": dict, "results": list of dict, "histories": dict}``; values that
        were NaN or infinite are ``None``.

    Raises
    ------
    FileNotFoundError
        If ``out_dir`` holds no ``results.json``.
    ValueError
        If the file is not valid JSON or lacks one of the three keys.
    """
    path = os.path.join(os.fspath(out_dir), "results.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No results.json in {os.fspath(out_dir)!r}: expected the output folder "
            "of `pyro-vae compare` (written by pyro_vae.experiments.report.write_results)"
        )
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"Expected valid JSON in {path!r}: {e}") from e
    keys = ("meta", "results", "histories")
    if not isinstance(data, dict) or not all(k in data for k in keys):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"Expected a JSON object with keys {keys} in {path!r} but found {found}")
    return data
