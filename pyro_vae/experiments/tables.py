"""The tables of a comparison report, as plain text and Markdown (GitHub pipe tables).

Each ``format_*`` function takes typed rows (:mod:`pyro_vae.results`) or their
flat form (the columns of ``results.csv``); estimates are in nats per test data point,
each with its Monte-Carlo standard error or its spread across training seeds.
"""

import math

from ..infer.diagnostics import KHAT_GOOD, KHAT_UNRELIABLE
from ..infer.evaluation import format_se
from ..results import ESTIMATES, Agreement, BetaRow, GapRow, ObjectiveRow, Pair, as_rows
from ..viz.labels import estimate_label

__all__ = [
    "SE_UNRELIABLE_NOTE",
    "as_pairs",
    "format_agreement",
    "format_beta_table",
    "format_decompositions",
    "format_gap_split",
    "format_markdown_table",
    "format_pairs",
    "format_surgery",
    "format_table",
    "is_finite",
    "listed",
]


SE_UNRELIABLE_NOTE = (
    f"! marks a s.e. (or s.d.) not reliable at some test points, where the draws behind the "
    f"estimate have Pareto k̂ ≥ {KHAT_GOOD}, an infinite variance: no standard error exists "
    "there (Vehtari et al. 2024); more samples shrink the error slowly, AIS (`pyro-vae ais`) "
    "estimates log p(x) with a reliable one"
)
"""The note under a table whose estimates carry the ``!`` of an unreliable s.e."""


def _rows(rows):
    return as_rows(rows, ObjectiveRow)


def _flagged(estimate) -> bool:
    """Whether an estimate's s.e. is not reliable at some points (``se_unreliable`` > 0)."""
    return bool(estimate.se_unreliable)


def _across_seeds(rows):
    """Whether the rows carry a spread across training seeds."""
    return all(is_finite(row.need("log_px").sd) for row in rows)


def is_finite(value) -> bool:
    """Whether ``value`` is a known, finite number."""
    return value is not None and math.isfinite(value)


def _cells(rows):
    """Header and string cells of the table, one list per row.

    The ``±`` is the standard deviation across training seeds when every row has one,
    otherwise the Monte-Carlo standard error; it is printed with two significant
    digits (:func:`pyro_vae.infer.evaluation.format_se`), so a small one never reads 0.000;
    ``!`` follows it where the estimate's s.e. is not reliable at some test points.
    """
    rows = _rows(rows)
    spread = "sd" if _across_seeds(rows) else "se"
    cpu = all(row.train_cpu_s is not None for row in rows)
    header = ["objective", "wall (s)", *(["CPU (s)"] if cpu else [])]
    header += [estimate_label(name) for name in ESTIMATES]
    flags = all(row.khat_unreliable is not None for row in rows)
    if flags:
        header.append(f"k̂>{KHAT_UNRELIABLE}")
    body = []
    for row in rows:
        if row.train_time_s is None:
            raise ValueError(
                f"Expected key 'train_time_s' in the row of objective {row.objective!r}; it "
                f"has {sorted(row.to_dict())}"
            )
        cells = [row.objective, f"{row.train_time_s:.1f}"]
        if cpu:
            cells.append(f"{row.train_cpu_s:.1f}")
        for name in ESTIMATES:
            estimate = row.need(name)
            error = getattr(estimate, spread)
            mark = "!" if _flagged(estimate) else ""
            if is_finite(error):
                cells.append(f"{estimate.mean:.2f}±{format_se(error)}{mark}")
            else:
                cells.append(f"{estimate.mean:.2f}{mark}")
        if flags:
            cells.append(str(int(row.khat_unreliable)))
        body.append(cells)
    return header, body


def _note(num_samples, rows=None):
    note = f"nats per test data point; log p(x) by importance sampling with K={num_samples}"
    if rows is not None and _across_seeds(rows):
        seeds = rows[0].seeds
        count = f"{len(seeds)} " if isinstance(seeds, list) else ""
        note += f"; ± one s.d. across {count}training seeds"
    else:
        note += "; ± one Monte-Carlo s.e."
    if rows is not None and any(_flagged(row.need(name)) for row in rows for name in ESTIMATES):
        note += "; " + SE_UNRELIABLE_NOTE
    return note


def format_pairs(pairs):
    """Plain-text table of paired differences a − b on the same test points.

    Parameters
    ----------
    pairs : list of Pair or dict
        As :attr:`pyro_vae.experiments.compare.Comparison.pairs` (or their flat form).

    Returns
    -------
    str
        One line per pair: ``Δ log p(x)``, ``Δ ELBO`` and ``Δ gap`` (those present) as
        ``mean ± s.e. over test points`` and, when finite, ``(s.d. across seeds)``;
        nats per point.
    """
    lines = []
    for pair in as_pairs(pairs):
        parts = []
        for name, label in (("log_px", "Δ log p(x)"), ("elbo", "Δ ELBO"), ("gap", "Δ gap")):
            if name not in pair.diffs:
                continue
            diff = pair.diffs[name]
            text = f"{label} {diff.mean:+.3f} ± {format_se(diff.se)}"
            if is_finite(diff.sd):
                text += f" (s.d. {format_se(diff.sd)} across seeds)"
            parts.append(text)
        lines.append(f"{pair.a} − {pair.b}: " + "; ".join(parts))
    return "\n".join(lines)


def as_pairs(pairs) -> list:
    """``pairs`` as a list of :class:`~pyro_vae.results.Pair` (flat dicts read)."""
    return [p if isinstance(p, Pair) else Pair.from_dict(p) for p in pairs or ()]


def format_table(rows: list, num_samples: int | None = None) -> str:
    """Plain-text table of the test-set estimates, one line per objective.

    Columns: objective, wall (s) and, when every row has ``train_cpu_s``, CPU (s) of
    training; ELBO, IWAE-5, IWAE-50, log p(x), gap (= log p(x) − ELBO, which estimates
    KL(q(z|x) ‖ p(z|x))), KL(q‖p(z)) (the KL to the prior inside the ELBO, not the
    gap) and reconstruction (E_q log p(x|z)); and k̂>0.7 when every row has
    ``khat_unreliable``. Means have 2 decimals; each carries its Monte-Carlo standard
    error (or s.d. across seeds) as ``mean±se`` with two significant digits and at
    least 3 decimals (e.g. ``-23.08±0.012``, ``0.18±0.00031``), followed by ``!`` where
    that s.e. is not reliable at some test points (``test_<name>_se_unreliable`` > 0;
    the note then says why, and the remedy). Objective names are left-aligned, numbers
    right-aligned.

    Parameters
    ----------
    rows : list of dict
        One dict per objective with ``"objective"``, ``"train_time_s"`` (wall
        seconds) and ``"test_<name>"`` for each name in :data:`ESTIMATES` (nats per
        data point); optionally ``"train_cpu_s"`` (CPU seconds),
        ``"test_<name>_se"``/``"test_<name>_sd"`` (a missing one prints no ±) and
        ``"test_<name>_se_unreliable"`` (test points where that s.e. is not reliable).
    num_samples : int, optional
        K, the importance samples per point behind log p(x); when given, a last line
        states the units and K.

    Returns
    -------
    str
        Header line, separator line, one line per row (and the note), no trailing
        newline.

    Raises
    ------
    ValueError
        If ``rows`` is empty or a row lacks one of the keys above (named).
    """
    rows = _rows(rows)
    header, body = _cells(rows)
    widths = [max(len(r[j]) for r in (header, *body)) for j in range(len(header))]

    def line(cells):
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join((first, *rest))

    lines = [line(header), "  ".join("-" * w for w in widths)]
    lines += [line(cells) for cells in body]
    if num_samples is not None:
        lines.append(_note(num_samples, rows))
    return "\n".join(lines)


def format_markdown_table(rows: list, num_samples: int | None = None) -> str:
    """The table of :func:`format_table` in Markdown (GitHub pipe table).

    Parameters
    ----------
    rows : list of dict
        As for :func:`format_table`.
    num_samples : int, optional
        When given, a blank line and a note on units and K follow the table.

    Returns
    -------
    str
        ``2 + len(rows)`` lines (header, alignment row, rows), plus 2 with the note;
        no trailing newline. Number columns are right-aligned.

    Raises
    ------
    ValueError
        If ``rows`` is empty or a row lacks a key (named).
    """
    rows = _rows(rows)
    header, body = _cells(rows)
    table = _markdown(header, body)
    if num_samples is not None:
        note = _note(num_samples, rows)
        table += "\n\n" + note + ("" if note.endswith(".") else ".")
    return table


def _markdown(header, body):
    """A GitHub pipe table: header, alignment row (numbers right), one line per row.

    A ``|`` inside a cell (``p(x|z)``) is escaped, so it does not split the cell.
    """

    def line(cells):
        return "| " + " | ".join(str(c).replace("|", r"\|") for c in cells) + " |"

    lines = [line(header), "|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|"]
    return "\n".join([*lines, *(line(cells) for cells in body)])


_AGREEMENT_COLUMNS = (
    ("mean_error", "abs. mean error (post. s.d.)", "{:.3f}"),
    ("sd_ratio", "s.d. ratio q/p", "{:.3f}"),
    ("w2", "W2", "{:.3f}"),
    ("khat", "k̂", "{:.2f}"),
    ("kl_exact", "KL(q‖p(z|x)) exact", "{:.3f}"),
    ("rhat_max", "max R̂", "{:.3f}"),
    ("ess_bulk_min", "min bulk ESS", "{:.0f}"),
    ("divergences", "divergences", "{:d}"),
)


def format_agreement(agreement: list) -> str:
    """Markdown table of the guide-vs-posterior medians, one row per objective.

    Parameters
    ----------
    agreement : list of dict
        As :attr:`pyro_vae.experiments.compare.Comparison.agreement` (each with ``"objective"``
        and the keys of :func:`pyro_vae.experiments.compare.summarize_agreement`).

    Returns
    -------
    str
        Header, alignment row and one row per objective; columns missing from every
        row (e.g. the exact KL for latents of more than 2 dimensions) are left out.
    """
    agreement = [a if isinstance(a, Agreement) else Agreement.from_dict(a) for a in agreement]
    columns = [c for c in _AGREEMENT_COLUMNS
               if any(getattr(row, c[0]) is not None for row in agreement)]  # fmt: skip
    body = []
    for row in agreement:
        cells = [row.objective]
        for key, _, fmt in columns:
            value = getattr(row, key)
            cells.append("" if value is None else fmt.format(value))
        body.append(cells)
    return _markdown(["objective", *(label for _, label, _ in columns)], body)


def _pm(estimate, digits=2):
    """``"mean ± se"`` of an estimate with its s.d. (across seeds) or s.e., and ``!``
    where that s.e. is not reliable at some points; ``"mean (exact)"`` when the spread
    is 0 (a closed-form term)."""
    mean = estimate.mean
    mark = " !" if _flagged(estimate) else ""
    for spread in (estimate.sd, estimate.se):
        if is_finite(spread):
            if spread == 0:  # computed in closed form, not by Monte Carlo
                return f"{mean:.{digits}f} (exact)"
            return f"{mean:.{digits}f} ± {format_se(spread)}{mark}"
    return f"{mean:.{digits}f}{mark}"


def _kl_per_dimension(values):
    """The per-dimension KLs of a row, largest first, as ``"1.03 0.97 ..."`` (str); for
    a guide without per-dimension marginals (a flow), a dash."""
    if values is None:
        return "—"
    return " ".join(f"{v:.2f}" for v in sorted((float(v) for v in values or []), reverse=True))


_DECOMPOSITION_COLUMNS = (
    ("reconstruction_minus_kl", "E_q log p(x|z) − KL(q‖p(z))"),
    ("expected_joint_plus_entropy", "E_q log p(x,z) + H[q]"),
    ("evidence_minus_gap", "log p(x) − KL(q‖p(z|x))"),
    ("reconstruction", "E_q log p(x|z)"),
    ("kl_prior", "KL(q‖p(z))"),
    ("expected_log_joint", "E_q log p(x,z)"),
    ("entropy", "H[q]"),
    ("log_px", "log p(x)"),
    ("gap", "KL(q‖p(z|x))"),
)


def format_decompositions(rows: list) -> str:
    """Markdown table of the ELBO computed three ways, one row per objective.

    Parameters
    ----------
    rows : list of dict
        As :attr:`pyro_vae.experiments.compare.Comparison.rows`, with ``decomp_<key>`` for each key
        of :data:`pyro_vae.experiments.compare.DECOMPOSITIONS` (and ``_se``/``_sd``).

    Returns
    -------
    str
        Header, alignment row and one row per objective: the three ELBOs, then their
        terms, as ``mean ± s.e.`` (or ± s.d. across seeds), nats per test point; the
        last column says how log p(x) was computed.
    """
    header = ["objective", *(label for _, label in _DECOMPOSITION_COLUMNS), "log p(x) by"]
    body = []
    for row in _rows(rows):
        cells = [row.objective]
        cells += [_pm(row.decomp[key]) for key, _ in _DECOMPOSITION_COLUMNS]
        cells.append(str(row.decomp_log_px_method or "").replace("_", " "))
        body.append(cells)
    return _markdown(header, body)


def format_surgery(rows: list, num_points: int | None = None) -> str:
    """Markdown table of ELBO surgery: the average KL term split in two, per objective.

    Columns: E_x KL(q(z|x) ‖ p(z)) = I_q(x; z) + KL(q(z) ‖ p(z)) (Hoffman & Johnson
    2016), nats per point, and the active units with the KL of each latent dimension
    (Burda et al. 2016), so a count at the threshold cannot hide a dimension that
    carries a little information.

    Parameters
    ----------
    rows : list of dict
        As :attr:`pyro_vae.experiments.compare.Comparison.rows`, with ``surgery_<key>`` (and
        ``_se``/``_sd``), ``active_units`` (list per seed) and ``kl_per_dim``.
    num_points : int, optional
        N, the points of the aggregate posterior; adds the cap log N on I_q.

    Returns
    -------
    str
    """
    cap = f" (≤ log N = {math.log(num_points):.2f})" if num_points else ""
    header = ["objective", "E_x KL(q(z|x)‖p(z))", f"I_q(x; z){cap}", "KL(q(z)‖p(z))",
              "active units", "KL per dimension (nats, largest first)"]  # fmt: skip
    body = []
    for row in _rows(rows):
        units = listed(row.active_units) if row.active_units is not None else ""
        width = row.kl_per_dim or row.activity  # a flow guide has no KL per dimension
        dims = f"/{len(width)}" if width else ""
        body.append(
            [
                row.objective,
                _pm(row.surgery["average_kl"]),
                _pm(row.surgery["mutual_information"]),
                _pm(row.surgery["marginal_kl"]),
                f"{units}{dims}",
                _kl_per_dimension(row.kl_per_dim),
            ]
        )
    return _markdown(header, body)


def format_beta_table(beta_rows: list) -> str:
    """Markdown table of one objective trained under several β schedules.

    Parameters
    ----------
    beta_rows : list of dict
        As :attr:`pyro_vae.experiments.compare.Comparison.beta_rows`.

    Returns
    -------
    str
        One row per schedule: log p(x), ELBO, KL(q‖p(z)), reconstruction and gap
        (mean ± MC s.e., nats per test point) of the last epoch's model, active units
        out of z_dim, the KL per dimension (largest first) and the epochs trained.
    """
    header = ["β schedule", "log p(x)", "ELBO", "KL(q‖p(z))", "reconstruction", "gap",
              "active units", "KL per dimension (nats, largest first)", "epochs"]  # fmt: skip
    body = []
    for row in as_rows(beta_rows, BetaRow):
        cells = [row.schedule]
        for name in ("log_px", "elbo", "kl", "reconstruction", "gap"):
            cells.append(_pm(row.test[name]))
        cells.append(f"{row.num_active}/{row.z_dim}")
        cells.append(_kl_per_dimension(row.kl_per_dim))
        cells.append(str(row.epochs_run if row.epochs_run is not None else ""))
        body.append(cells)
    return _markdown(header, body)


def listed(value) -> str:
    """A list as ``"1, 2, 3"``, anything else as ``str``."""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


_GAP_COLUMNS = (
    ("log_px", "log p(x)"),
    ("log_px_ais", "log p(x) (AIS)"),
    ("elbo_local_flow", "L[q*] flow"),
    ("elbo_local_diagonal", "L[q*] diagonal"),
    ("elbo", "L[q] amortized"),
    ("approximation_gap", "approximation gap"),
    ("amortization_gap", "amortization gap"),
    ("inference_gap", "inference gap"),
)


def format_gap_split(gap_rows: list) -> str:
    """Markdown table of where each objective's gap comes from (mean ± s.e., nats/point).

    Parameters
    ----------
    gap_rows : list of GapRow or dict
        As :attr:`pyro_vae.experiments.compare.Comparison.gap_rows`.

    Returns
    -------
    str
        One row per objective: log p(x) (its source in the last column), log p(x) by
        AIS from the guide, the ELBO of each per-point family and of the amortized
        guide, and the three gaps; columns no row has are left out.
    """
    rows = [r if isinstance(r, GapRow) else GapRow.from_dict(r, i) for i, r in enumerate(gap_rows)]
    columns = [c for c in _GAP_COLUMNS if any(c[0] in row.estimates for row in rows)]
    body = []
    for row in rows:
        cells = [row.objective]
        for key, _ in columns:
            e = row.estimates.get(key)
            cells.append("" if e is None else f"{e.mean:.2f} ± {format_se(e.se)}")
        body.append([*cells, row.log_px_source])
    return _markdown(["objective", *(label for _, label in columns), "log p(x) by"], body)
