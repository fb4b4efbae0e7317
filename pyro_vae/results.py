"""Typed result rows of a comparison, and their flat form in ``results.csv``/``.json``.

:func:`pyro_vae.experiments.compare.compare` builds the rows; the tables
(:mod:`pyro_vae.experiments.report`) and figures (:mod:`pyro_vae.viz`) read their
attributes. ``to_dict`` gives the flat columns of the result files (``test_log_px``,
``test_log_px_se``, ...), and ``from_dict`` reads such a mapping back (e.g. a row of
:func:`pyro_vae.experiments.report.read_results`), checking the keys it needs once.
All estimates are in nats per test data point. The module sits below both
:mod:`pyro_vae.viz` and :mod:`pyro_vae.experiments` (standard library only), so the
figures read the rows without importing the experiments.
"""

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from ._deprecation import warn_renamed

__all__ = [
    "DECOMPOSITIONS",
    "ESTIMATES",
    "PAIRED",
    "SURGERY",
    "Agreement",
    "BetaRow",
    "Estimate",
    "GAP_SPLIT",
    "GapRow",
    "ObjectiveRow",
    "Pair",
    "SANDWICH",
    "SandwichRow",
    "as_rows",
]

ESTIMATES = ("elbo", "iwae_5", "iwae_50", "log_px", "gap", "kl", "reconstruction")
"""Names of the test-set estimates an :class:`ObjectiveRow` carries (``test_<name>``)."""
BETA_ESTIMATES = ("elbo", "log_px", "kl", "reconstruction", "gap")
"""Names of the test-set estimates of a :class:`BetaRow`."""
PAIRED = ("log_px", "elbo", "gap")
"""Estimates compared per test point between two objectives (:class:`Pair`)."""
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
"""Keys of :func:`pyro_vae.elbo_surgery`'s summary, reported as ``surgery_<key>``."""


@dataclass(frozen=True)
class Estimate:
    """A mean with its Monte-Carlo standard error and its spread across training seeds.

    Attributes
    ----------
    mean : float
        Nats per data point.
    se : float or None
        Monte-Carlo standard error of ``mean``; None when not known.
    sd : float or None
        Standard deviation across training seeds (NaN with one seed); None when not
        known.
    se_unreliable : int or None
        Data points at which the s.e. is not reliable (the draws' Pareto k̂ ≥ 0.5,
        :meth:`pyro_vae.infer.evaluation.Evaluation.se_unreliable`), the most over
        seeds; above 0 the s.e. of the mean is not reliable either. None when not
        checked.
    """

    mean: float
    se: float | None = None
    sd: float | None = None
    se_unreliable: int | None = None

    @classmethod
    def over_seeds(cls, summaries: list, name: str) -> "Estimate":
        """Mean over seeds of ``summary[name] = (mean, se)``, the combined s.e. and the s.d.

        ``se_unreliable`` is the largest of the summaries' ``se_unreliable[name]``
        (:class:`pyro_vae.infer.evaluation.Summary`), None where none has it.
        """
        means = [summary[name][0] for summary in summaries]
        ses = [summary[name][1] for summary in summaries]
        counts = [getattr(summary, "se_unreliable", {}).get(name) for summary in summaries]
        counts = [int(count) for count in counts if count is not None]
        return cls(
            statistics.fmean(means),
            math.sqrt(sum(se**2 for se in ses)) / len(ses),
            spread(means),
            max(counts) if counts else None,
        )

    def flat(self, key: str) -> dict:
        """``{key: mean, key_se: se, key_sd: sd, key_se_unreliable: count}``, without
        the unknown ones."""
        out = {key: self.mean}
        if self.se is not None:
            out[f"{key}_se"] = self.se
        if self.sd is not None:
            out[f"{key}_sd"] = self.sd
        if self.se_unreliable is not None:
            out[f"{key}_se_unreliable"] = self.se_unreliable
        return out

    @classmethod
    def read(cls, row: Mapping, key: str, what: str) -> "Estimate":
        """The estimate stored under ``key`` (and ``_se``, ``_sd``) of a flat row.

        Raises
        ------
        ValueError
            If ``key`` is missing (``what`` names the row).
        """
        if key not in row:
            raise ValueError(f"Expected key {key!r} in the row of {what}; it has {sorted(row)}")
        count = row.get(f"{key}_se_unreliable")
        return cls(
            *(_number(row.get(k)) for k in (key, f"{key}_se", f"{key}_sd")),
            None if count is None else int(count),
        )


def spread(values: list) -> float:
    """Standard deviation across seeds; NaN with one value."""
    return statistics.stdev(values) if len(values) > 1 else math.nan


def _number(value):
    """A stored number as a float (None, as JSON writes NaN, stays None)."""
    return None if value is None else float(value)


def _estimates(row, prefix, names, what, required=True):
    return {
        name: Estimate.read(row, f"{prefix}{name}", what)
        for name in names
        if required or f"{prefix}{name}" in row
    }


def _flat(prefix, estimates):
    out = {}
    for name, estimate in estimates.items():
        out.update(estimate.flat(f"{prefix}{name}"))
    return out


def _known(row, cls, skip):
    names = {f.name for f in fields(cls)} - set(skip)
    return {name: row[name] for name in names if name in row}


@dataclass
class ObjectiveRow:
    """One training objective's results, aggregated over its training seeds.

    Attributes
    ----------
    objective : str
        Its label, e.g. ``"Trace_ELBO"``.
    test : dict of str to Estimate
        For each name in :data:`ESTIMATES`: the mean over seeds of the test-set mean
        (nats per point), its Monte-Carlo s.e. and its s.d. across seeds.
    train_time_s, train_cpu_s : float
        Means over seeds of the wall and CPU seconds of training (validation included);
        a run trained in a stack of R runs counts the stack's seconds over R
        (:func:`pyro_vae.train.stack.fit_runs`).
    loss, alpha, num_particles
        The objective spec (:func:`pyro_vae.parse_objective`).
    guide : str
        The guide spec (``"diagonal"``, ``"iaf:2"``, …; ``VAE(..., encoder=...)``).
    seeds, epochs_run, best_epoch, stopped_early, still_rising : list
        Per seed: training seeds, epochs run, best epoch, whether patience stopped the
        run, the validation bound's rise over the last tenth of the epochs (nats).
    converged : bool
        Every seed ended converged (:func:`pyro_vae.experiments.compare.convergence`).
    khat_unreliable : int
        Largest number over seeds of test points with Pareto k̂ > 0.7.
    decomp, surgery : dict of str to Estimate
        The ELBO three ways (keys :data:`DECOMPOSITIONS`) and ELBO surgery (keys
        :data:`SURGERY`), nats per point; ``decomp_log_px_method`` says how log p(x) was
        computed.
    active_units : list of int
        Per seed, :func:`pyro_vae.active_units` (threshold 0.01).
    activity, kl_per_dim : list of float
        Of the first seed, per latent dimension: the activity and the KL (nats).
    extra : dict
        Columns of a flat row that none of the above reads, written back unchanged.

    Any attribute but ``objective`` and ``test`` may be None (not known).
    """

    objective: str
    test: dict = field(default_factory=dict)
    loss: str | None = None
    alpha: float | None = None
    num_particles: int | None = None
    guide: str | None = None
    seeds: list | None = None
    epochs_run: list | int | None = None
    best_epoch: list | int | None = None
    stopped_early: list | None = None
    still_rising: list | None = None
    train_time_s: float | None = None
    train_cpu_s: float | None = None
    converged: bool | None = None
    khat_unreliable: int | None = None
    decomp: dict = field(default_factory=dict)
    decomp_log_px_method: str | None = None
    surgery: dict = field(default_factory=dict)
    active_units: list | None = None
    activity: list | None = None
    kl_per_dim: list | None = None
    extra: dict = field(default_factory=dict)

    _HEAD = ("objective", "loss", "alpha", "num_particles", "guide", "seeds", "epochs_run",
             "best_epoch", "stopped_early", "still_rising", "train_time_s", "train_cpu_s",
             "converged")  # fmt: skip
    _TAIL = ("active_units", "activity", "kl_per_dim")

    def to_dict(self) -> dict:
        """The flat row of ``results.csv``/``results.json`` (unknown values left out)."""
        out = {k: getattr(self, k) for k in self._HEAD if getattr(self, k) is not None}
        out.update(_flat("test_", self.test))
        if self.khat_unreliable is not None:
            out["khat_unreliable"] = self.khat_unreliable
        out.update(_flat("decomp_", self.decomp))
        if self.decomp_log_px_method is not None:
            out["decomp_log_px_method"] = self.decomp_log_px_method
        out.update(_flat("surgery_", self.surgery))
        out.update({k: getattr(self, k) for k in self._TAIL if getattr(self, k) is not None})
        return {**out, **self.extra}

    def need(self, name: str, se: bool = False) -> Estimate:
        """The test-set estimate ``name`` (with its s.e. if ``se``).

        Raises
        ------
        ValueError
            If it is not known, naming its column and the objective.
        """
        estimate = self.test.get(name)
        missing = f"test_{name}" if estimate is None else None
        if missing is None and se and estimate.se is None:
            missing = f"test_{name}_se"
        if missing is not None:
            raise ValueError(
                f"Expected key {missing!r} in the row of objective {self.objective!r}; it "
                f"has {sorted(self.to_dict())}"
            )
        return estimate

    @classmethod
    def from_dict(cls, row: Mapping, index: int = 0) -> "ObjectiveRow":
        """Read a flat row (the estimates present; :meth:`need` asks for one).

        Raises
        ------
        ValueError
            If ``row`` is not a mapping.
        """
        if not isinstance(row, Mapping):
            raise ValueError(f"Expected rows[{index}] to be a dict but got {type(row)}")
        objective = str(row.get("objective", f"rows[{index}]"))
        what = f"objective {objective!r}"
        prefixed = [f"{p}{n}" for p, names in (("test_", ESTIMATES), ("decomp_", DECOMPOSITIONS),
                    ("surgery_", SURGERY)) for n in names]  # fmt: skip
        used = {*prefixed, *(f"{k}{s}" for k in prefixed for s in ("_se", "_sd", "_se_unreliable"))}
        used |= {f.name for f in fields(cls)}
        return cls(
            **_known(row, cls, ("objective", "test", "decomp", "surgery", "extra")),
            objective=objective,
            test=_estimates(row, "test_", ESTIMATES, what, required=False),
            decomp=_estimates(row, "decomp_", DECOMPOSITIONS, what, required=False),
            surgery=_estimates(row, "surgery_", SURGERY, what, required=False),
            extra={k: v for k, v in row.items() if k not in used},
        )


@dataclass
class BetaRow:
    """One β schedule's run (first seed, the last epoch's model) on the test split.

    Attributes
    ----------
    schedule : str
        The schedule's label; ``spec`` and ``name`` as :func:`pyro_vae.parse_schedule`.
    test : dict of str to Estimate
        For each of elbo, log_px, kl, reconstruction and gap: mean and Monte-Carlo s.e.
        (nats per point).
    num_active, z_dim : int
        Active units (:func:`pyro_vae.active_units`) out of the latent dimensions.
    activity, kl_per_dim : list of float
        Per latent dimension.
    objective : str
        The objective trained under the schedule.
    best_epoch, epochs_run : int
        Best epoch by the β = 1 validation bound (for reference) and epochs trained.
    train_time_s, train_cpu_s : float
        Wall and CPU seconds of training.
    """

    schedule: str
    test: dict = field(default_factory=dict)
    num_active: int = 0
    z_dim: int = 0
    spec: str | None = None
    name: str | None = None
    objective: str | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    train_time_s: float | None = None
    train_cpu_s: float | None = None
    activity: list | None = None
    kl_per_dim: list | None = None
    extra: dict = field(default_factory=dict)

    _HEAD = ("schedule", "spec", "name", "objective", "z_dim", "best_epoch", "epochs_run",
             "train_time_s", "train_cpu_s", "num_active", "activity", "kl_per_dim")  # fmt: skip

    def to_dict(self) -> dict:
        """The flat row stored under ``"beta"`` in ``results.json``."""
        out = {k: getattr(self, k) for k in self._HEAD if getattr(self, k) is not None}
        return {**out, **_flat("test_", self.test), **self.extra}

    @classmethod
    def from_dict(cls, row: Mapping, index: int = 0) -> "BetaRow":
        """Read a flat row; ``schedule``, ``test_log_px``, ``test_elbo``, ``test_kl``,
        ``test_reconstruction``, ``num_active`` and ``z_dim`` are required.

        Raises
        ------
        ValueError
            If one is missing (named, with the schedule).
        """
        if not isinstance(row, Mapping):
            raise ValueError(f"Expected rows[{index}] to be a dict but got {type(row)}")
        label = str(row.get("schedule", f"rows[{index}]"))
        for key in ("schedule", "test_log_px", "test_elbo", "test_kl", "test_reconstruction",
                    "num_active", "z_dim"):  # fmt: skip
            if key not in row:
                raise ValueError(
                    f"Expected key {key!r} in the row of schedule {label!r}; it has {sorted(row)}"
                )
        what = f"schedule {label!r}"
        keys = [f"test_{n}" for n in BETA_ESTIMATES]
        used = {*keys, *(f"{k}{s}" for k in keys for s in ("_se", "_sd"))}
        used |= {f.name for f in fields(cls)}
        return cls(
            **_known(row, cls, ("test", "extra")),
            test=_estimates(row, "test_", BETA_ESTIMATES, what, required=False),
            extra={k: v for k, v in row.items() if k not in used},
        )


@dataclass
class Pair:
    """Paired differences a − b of two objectives on the same test points.

    Attributes
    ----------
    a, b : str
        The objectives' labels.
    diffs : dict of str to Estimate
        For each of log_px, elbo and gap (those known): the mean over seeds of the mean
        per-point difference, its standard error over test points and its s.d. across
        seeds (NaN with one seed); nats per point.
    """

    a: str
    b: str
    diffs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """``a``, ``b`` and ``<name>_diff``, ``_se``, ``_sd`` for each difference."""
        return {"a": self.a, "b": self.b, **_flat("", {f"{n}_diff": e for n, e in
                                                        self.diffs.items()})}  # fmt: skip

    @classmethod
    def from_dict(cls, pair: Mapping) -> "Pair":
        """Read ``{"a", "b", "<name>_diff", "<name>_diff_se", ...}``."""
        what = f"pair {pair.get('a')!r} − {pair.get('b')!r}"
        diffs = {
            name: Estimate.read(pair, f"{name}_diff", what)
            for name in PAIRED
            if f"{name}_diff" in pair
        }
        return cls(pair["a"], pair["b"], diffs)


@dataclass
class Agreement:
    """Medians over the checked test points of a guide-vs-posterior table.

    As :func:`pyro_vae.experiments.guide_check.summarize_agreement`, with the
    objective's label; statistics not computed are None.
    """

    objective: str
    num_points: int = 0
    mean_error: float | None = None
    sd_ratio: float | None = None
    w2: float | None = None
    khat: float | None = None
    kl_exact: float | None = None
    rhat_max: float | None = None
    ess_bulk_min: float | None = None
    divergences: int | None = None

    def to_dict(self) -> dict:
        """The known statistics, keyed by name (``objective`` first)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}  # fmt: skip

    @classmethod
    def from_dict(cls, row: Mapping) -> "Agreement":
        """Read ``{"objective": ..., **summarize_agreement(table)}``."""
        return cls(**_known(row, cls, ()))


GAP_SPLIT = ("log_px", "elbo", "approximation_gap", "amortization_gap", "inference_gap")
"""Estimates of a :class:`GapRow` besides the per-family local ELBOs."""


@dataclass
class GapRow:
    """Where one objective's gap comes from, on the checked test points.

    From :func:`pyro_vae.inference_gaps`: ``estimates`` maps ``log_px``, ``elbo``,
    ``elbo_local_<family>`` and, for the amortized guide's family,
    ``approximation_gap``, ``amortization_gap`` and ``inference_gap`` to an
    :class:`Estimate` (mean and Monte-Carlo s.e., nats per point). ``steps`` and
    ``converged`` map each per-point family to the most Adam steps its fit took and to
    whether the stopping rule (not the step cap) ended every chunk's fit.
    """

    objective: str
    family: str | None = None
    num_points: int = 0
    log_px_source: str = ""
    estimates: dict = field(default_factory=dict)
    steps: dict = field(default_factory=dict)
    converged: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A flat dict: the fields, ``steps_<family>`` and ``converged_<family>``, then
        ``<name>`` and ``<name>_se`` per estimate."""
        out = {"objective": self.objective, "family": self.family,
               "num_points": self.num_points, "log_px_source": self.log_px_source}  # fmt: skip
        out.update({f"steps_{family}": n for family, n in self.steps.items()})
        out.update({f"converged_{family}": c for family, c in self.converged.items()})
        out.update(_flat("", self.estimates))
        return out

    @classmethod
    def from_dict(cls, row: Mapping, index: int = 0) -> "GapRow":
        """Read :meth:`to_dict`'s layout."""
        fixed = {"objective", "family", "num_points", "log_px_source"}
        fits = ("steps_", "converged_")
        names = [k for k in row if k not in fixed and not k.endswith(("_se", "_sd"))
                 and not k.startswith(fits)]  # fmt: skip
        return cls(
            row["objective"],
            row.get("family"),
            int(row.get("num_points") or 0),
            row.get("log_px_source") or "",
            _estimates(row, "", names, f"gap row {index}"),
            {k.removeprefix("steps_"): int(v) for k, v in row.items() if k.startswith("steps_")},
            {
                k.removeprefix("converged_"): bool(v)
                for k, v in row.items()
                if k.startswith("converged_")
            },  # fmt: skip
        )

    @classmethod
    def from_gaps(cls, objective: str, gaps) -> "GapRow":
        """From an :class:`~pyro_vae.infer.gaps.InferenceGaps`."""
        summary = gaps.summary()
        return cls(
            objective,
            gaps.family,
            int(gaps.values["log_px"].numel()),
            gaps.log_px_source,
            {name: Estimate(*summary[name]) for name in summary},
            {family: max(fit.steps) for family, fit in gaps.local.items()},
            {family: all(fit.converged) for family, fit in gaps.local.items()},
        )


SANDWICH = ("forward", "reverse", "width", "log_px_is", "forward_minus_is")
"""Estimates of a :class:`SandwichRow`."""


@dataclass
class SandwichRow:
    """The BDMC sandwich on data simulated from one objective's model.

    From :func:`pyro_vae.bdmc` and :func:`pyro_vae.evaluate` on the same simulated
    points: ``estimates`` maps ``forward`` (forward AIS from the prior, a stochastic
    lower bound on log p(x)), ``reverse`` (reverse AIS from the generating z, a
    stochastic upper bound), ``width`` (reverse − forward), ``log_px_is`` (importance
    sampling with the guide, K = ``num_samples``) and ``forward_minus_is`` (the paired
    difference per point, s.e. over points) to an :class:`Estimate` (nats per point).
    ``seconds`` and ``is_seconds``: wall seconds of BDMC and of the importance sampling.
    """

    objective: str
    num_points: int = 0
    num_bridges: int = 0
    num_chains: int = 0
    num_samples: int = 0
    estimates: dict = field(default_factory=dict)
    seconds: float | None = None
    is_seconds: float | None = None

    _FIXED = ("objective", "num_points", "num_bridges", "num_chains", "num_samples", "seconds",
              "is_seconds")  # fmt: skip

    @property
    def num_steps(self) -> int:
        """The old name of :attr:`num_bridges` (FutureWarning), until the next release."""
        warn_renamed("SandwichRow", "num_steps", "num_bridges", stacklevel=3)
        return self.num_bridges

    def to_dict(self) -> dict:
        """A flat dict: the fields, then ``<name>`` and ``<name>_se`` per estimate."""
        out = {name: getattr(self, name) for name in self._FIXED}
        out.update(_flat("", self.estimates))
        return out

    @classmethod
    def from_dict(cls, row: Mapping, index: int = 0) -> "SandwichRow":
        """Read :meth:`to_dict`'s layout (``num_steps``, the key of 0.3.0's
        ``results.json``, is read as ``num_bridges``).

        Raises
        ------
        ValueError
            If an estimate of :data:`SANDWICH` is missing (named).
        """
        if "num_bridges" not in row:
            row = {**row, "num_bridges": row.get("num_steps")}
        counts = {k: int(row.get(k) or 0) for k in cls._FIXED[1:5]}
        times = {k: _number(row.get(k)) for k in cls._FIXED[5:]}
        estimates = _estimates(row, "", SANDWICH, f"BDMC row {index}")
        return cls(row.get("objective", ""), **counts, estimates=estimates, **times)


def as_rows(rows, cls=ObjectiveRow) -> list:
    """``rows`` as a list of ``cls``, flat mappings read with ``cls.from_dict``.

    Raises
    ------
    ValueError
        If ``rows`` is empty or a mapping lacks a required key (named).
    """
    if not rows:
        raise ValueError(f"Expected rows to be a non-empty list of dicts but got {rows!r}")
    return [row if isinstance(row, cls) else cls.from_dict(row, i) for i, row in enumerate(rows)]
