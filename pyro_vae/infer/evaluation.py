r"""Estimators of log p(x), the ELBO and the IWAE bounds from importance weights.

For one data point x and S draws z_s ~ q_φ(z|x), the log importance weights are

.. math:: \log w_s = \log p_\theta(x \mid z_s) + \log p(z_s) - \log q_\phi(z_s \mid x).

From them, per data point and in nats:

- ELBO = mean_s log w_s = E_q log p(x|z) − KL(q(z|x) ‖ p(z)) (Kingma & Welling 2014,
  eq. 7), with both terms reported (KL estimated on the same draws, so the two add up);
- the IWAE bound L_k = E[log (1/k) Σ_{s≤k} w_s] (Burda et al. 2016, eq. 8), estimated
  from S/k disjoint groups of k draws; L_1 is the ELBO, L_k increases with k;
- log p(x) ≈ L_S = log (1/S) Σ_s w_s, the importance-sampling estimate with the
  guide as proposal (Burda et al. 2016, sec. 5.1, S = 5000), with Monte-Carlo
  standard error √(1/ESS − 1/S) by the delta method, ESS = (Σ w)² / Σ w²
  (Kong 1992), and bias ≈ −(1/ESS − 1/S)/2;
- the gap log p(x) − ELBO, which estimates KL(q(z|x) ‖ p(z|x)), with its standard
  error by the delta method on the shared draws;
- the Pareto k̂ of the weights (Vehtari et al. 2024), which says whether the log p(x)
  estimate and its standard error can be trusted (:mod:`pyro_vae.infer.diagnostics`),
  and the Pareto k̂ of the draws of the ELBO's terms, which says the same of theirs.

A standard error is reported as reliable only where the draws behind it have a finite
variance, k̂ < 0.5 (:data:`~pyro_vae.infer.diagnostics.KHAT_GOOD`): from 0.5 no central
limit theorem holds and the delta-method s.e. understates the error
(:meth:`Evaluation.se_unreliable`; ``Summary.se_unreliable`` counts the points).

All weights come from Pyro traces of the user's model and guide run under a plate of
S particles (dim -2), so any model/guide pair whose sample sites sit in one
``"data"`` plate works. The main interface is :func:`evaluate`; compare two models on
the same points with :func:`paired_difference`.

References
----------
1. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
2. D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
3. A. Kong, "A note on importance sampling using standardized weights", Tech. Rep. 348,
   Dept. of Statistics, University of Chicago, 1992.
4. A. Vehtari, D. Simpson, A. Gelman, Y. Yao, J. Gabry, "Pareto Smoothed Importance
   Sampling", J. Mach. Learn. Res. 25(72):1–58, 2024.
"""

import math
from dataclasses import dataclass

import pyro.distributions as dist
import torch

from .._checks import check_int, is_int
from ..models.base import BaseVAE
from ..models.flows import FlowEncoder
from ..models.guides import Encoder, LinearEncoder
from ..models.linear_gaussian import LinearGaussianVAE
from ..models.vae import VAE
from .diagnostics import KHAT_GOOD, KHAT_UNRELIABLE, pareto_khat, tail_khat
from .traces import (
    check_inputs,
    chunks,
    log_importance_weights,
    param_store_as_found,
    row_kwargs,
    seeded,
)

__all__ = [
    "DEFAULT_KS",
    "Evaluation",
    "Summary",
    "evaluate",
    "evaluate_bounds",
    "evaluate_unchecked",
    "format_se",
    "mean_difference",
    "paired_difference",
    "point_estimates",
]

_SUMMARY_NOTES = {
    "ess": "draws (mean importance-sampling effective sample size out of K)",
    "khat": f"(mean Pareto k-hat of the weights; from {KHAT_GOOD} the s.e. of log p(x) is not "
    f"reliable, above {KHAT_UNRELIABLE} nor is log p(x))",
    "khat_elbo": f"(mean Pareto k-hat of the ELBO terms' draws; from {KHAT_GOOD} their s.e. "
    "is not reliable)",
}

_SE_KHATS = {"log_px": ("khat",), "gap": ("khat", "khat_elbo"), "elbo": ("khat_elbo",),
             "reconstruction": ("khat_elbo",), "kl": ("khat_elbo",),
             "iwae_1": ("khat_elbo",)}  # fmt: skip
"""The k̂ values that must be below :data:`KHAT_GOOD` for each estimate's s.e. to hold."""

_REMEDY = (
    "! s.e. not reliable at the points counted: the draws behind it have Pareto k̂ >= "
    f"{KHAT_GOOD}, an infinite variance (Vehtari et al. 2024), so no standard error exists. "
    "More samples shrink the error, slower than 1/sqrt(K); for log p(x) and the gap use "
    "pyro_vae.ais, for the ELBO's terms a guide with lighter tails."
)


def format_se(se, digits=2):
    """A standard error with ``digits`` significant digits, at least 3 decimals.

    Parameters
    ----------
    se : float
        The standard error (nats, or any unit).
    digits : int, default 2
        Significant digits kept.

    Returns
    -------
    str
        ``0.0123`` -> ``"0.012"``, ``0.00031`` -> ``"0.00031"``, ``1.5`` -> ``"1.500"``:
        a small error never prints as ``0.000``. NaN and inf print as ``"nan"`` and
        ``"inf"``, 0 as ``"0.000"``.
    """
    se = float(se)
    if not math.isfinite(se) or se == 0:
        return f"{se:.3f}"
    decimals = max(3, digits - 1 - math.floor(math.log10(abs(se))))
    return f"{se:.{decimals}f}"


class Summary(dict):
    """What every ``summary()`` of an estimator's result returns: a dict ``name ->
    (mean, se)``, nats per data point, or ``name -> value`` for a plain mean (float).

    The ``summary()`` of :class:`Evaluation`, :class:`~pyro_vae.AISResult`,
    :class:`~pyro_vae.BDMCResult`, :class:`~pyro_vae.InferenceGaps` and the anatomy
    and surgery results. A plain :class:`dict` in every respect but its printed form, a
    table of ``name  mean ± se`` lines where the standard error is finite (no
    ``± nan``), ``name  value`` for a plain value, with ``ess``, ``khat`` and the
    entries of ``notes`` explained, and ``!`` after a standard error that is not
    reliable, with the count of points behind that and the remedy.

    Attributes
    ----------
    num_samples : int or None
        K, importance samples per data point.
    num_points : int or None
        Data points averaged over.
    se_unreliable : dict of str to int
        For each estimate whose draws were checked: the number of points where its
        s.e. is not reliable (:meth:`Evaluation.se_unreliable`). Where it is above 0,
        the s.e. of the mean is not reliable either: one term of infinite variance
        makes the mean's variance infinite.
    notes : dict of str to str
        What an entry's number is, printed after it where it has no finite s.e.
        (beside those of ``ess``, ``khat`` and ``khat_elbo`` of :class:`Evaluation`).
    unit : str
        The entries' unit, the printed table's heading: ``"nats per data point"`` unless
        told (:class:`~pyro_vae.infer.GradientSNR`'s is dimensionless).
    """

    unit = "nats per data point"  # for a Summary pickled before it had one

    def __init__(
        self,
        *args,
        num_samples=None,
        num_points=None,
        se_unreliable=None,
        notes=None,
        unit="nats per data point",
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.unit = unit
        self.num_samples = num_samples
        self.num_points = num_points
        self.se_unreliable = dict(se_unreliable or {})
        self.notes = dict(notes or {})

    @classmethod
    def from_estimates(cls, values, std_errors, num_samples, names):
        """The Summary of ``names``: mean over points and √(Σ se²) / n of each, nats.

        ``values`` and ``std_errors`` map names to per-point tensors ``(n,)``.
        """
        first = next(iter(values.values()))
        out = cls(num_samples=num_samples, num_points=first.numel())
        for name in names:
            n = values[name].numel()
            se = std_errors[name].square().sum().sqrt() / n
            out[name] = (float(values[name].mean()), float(se))
        return out

    def __str__(self):
        width = max((len(name) for name in self), default=0)
        notes = {**_SUMMARY_NOTES, **self.notes}
        lines = []
        for name, value in self.items():
            mean, se = value if isinstance(value, tuple | list) else (value, math.nan)
            line = f"{name:>{width}} {mean:10.3f}"
            if math.isfinite(se):
                line += f" ± {format_se(se)}"
                flagged = self.se_unreliable.get(name, 0)
                if flagged:
                    of = f" of {self.num_points}" if self.num_points is not None else ""
                    line += f" ! (s.e. not reliable at {flagged}{of} points)"
            elif name in notes:
                line += f"  {notes[name]}"
            lines.append(line)
        about = []
        if self.num_points is not None:
            about.append(f"{self.num_points} points")
        if self.num_samples is not None:
            about.append(f"K = {self.num_samples}")
        head = self.unit + (f" ({', '.join(about)})" if about else "")
        if any(self.se_unreliable.get(name, 0) for name in self):
            lines.append(_REMEDY)
        return "\n".join([head, *lines])

    def __repr__(self):
        return str(self)

    def __reduce__(self):
        return (
            self.__class__,
            (dict(self),),
            {
                "num_samples": self.num_samples,
                "num_points": self.num_points,
                "se_unreliable": self.se_unreliable,
                "notes": self.notes,
                "unit": self.unit,
            },
        )


def _num_points(values):
    for value in values.values():
        return value.numel()
    return None


@dataclass(frozen=True)
class Evaluation:
    """Per-point estimates from :func:`evaluate`.

    Attributes
    ----------
    values : dict of str to torch.Tensor
        Each of shape ``(batch,)``, nats per data point: ``"elbo"``,
        ``"reconstruction"`` (E_q log p(x|z)), ``"kl"`` (KL(q(z|x) ‖ p(z))),
        ``"iwae_{k}"`` for each k, ``"log_px"`` (L_S) and ``"gap"`` (log p(x) − ELBO);
        also ``"ess"``, the importance-sampling effective sample size (draws),
        ``"khat"``, the Pareto k̂ of the weights (dimensionless; see :meth:`unreliable`),
        and ``"khat_elbo"``, the largest Pareto k̂ of the two tails of the draws of
        log w, log p(x|z) and log q(z|x) − log p(z), whose means are ``"elbo"``,
        ``"reconstruction"`` and ``"kl"`` (:func:`~pyro_vae.infer.diagnostics.tail_khat`;
        see :meth:`se_unreliable`).
    std_errors : dict of str to torch.Tensor
        Monte-Carlo standard error of each estimate in ``values`` (nats), shape
        ``(batch,)``; none for ``"ess"``, ``"khat"`` and ``"khat_elbo"``, nor for
        ``"iwae_{k}"`` with fewer than 2 groups of k draws. For ``"gap"`` the
        delta-method error on the shared draws (:func:`point_estimates`), not an upper
        bound.
    num_samples : int
        S, draws per data point.
    """

    values: dict
    std_errors: dict
    num_samples: int

    def summary(self):
        """Mean over data points of each estimate with its Monte-Carlo standard error.

        Returns
        -------
        Summary
            A dict ``name -> (mean, se)`` in nats per data point, with
            se = √(Σ_i se_i²) / batch (independent draws per point); se is NaN for a
            value without standard errors: ``"ess"`` (mean effective sample size, in
            draws out of S), ``"khat"`` and ``"khat_elbo"`` (mean Pareto k̂,
            dimensionless). Its ``se_unreliable`` counts, per estimate, the points
            where the s.e. is not reliable (:meth:`se_unreliable`); where that is above
            0 the mean's se is not reliable either. Printed, it is a table with
            ``± se`` only where se is finite, ``!`` after each s.e. that is not reliable,
            and the remedy.

        See Also
        --------
        paired_difference : the standard error that decides between two models.
        """
        flagged = {
            name: int(self.se_unreliable(name).sum())
            for name in self.std_errors
            if name in _SE_KHATS and all(key in self.values for key in _SE_KHATS[name])
        }
        out = Summary(
            num_samples=self.num_samples,
            num_points=_num_points(self.values),
            se_unreliable=flagged,
        )
        for name, value in self.values.items():
            se = self.std_errors.get(name)
            n = value.numel()
            mc_se = float(se.square().sum().sqrt() / n) if se is not None else math.nan
            out[name] = (float(value.mean()), mc_se)
        return out

    def unreliable(self, threshold=KHAT_UNRELIABLE):
        """Flag the points whose log p(x) estimate itself is not to be trusted.

        Parameters
        ----------
        threshold : float, default 0.7
            k̂ above which a point is flagged
            (:data:`pyro_vae.infer.diagnostics.KHAT_UNRELIABLE`).

        Returns
        -------
        torch.Tensor
            Boolean mask of shape ``(batch,)``, True where ``values["khat"] >
            threshold``; ``int(mask.sum())`` counts them.

        Raises
        ------
        ValueError
            If the evaluation has no ``"khat"`` values.

        See Also
        --------
        se_unreliable : the points whose standard error is not reliable, from k̂ ≥ 0.5:
            a superset, since the s.e. fails before the estimate does.
        """
        if "khat" not in self.values:
            raise ValueError(
                f"Expected an Evaluation with 'khat' values but got {sorted(self.values)}"
            )
        return self.values["khat"] > threshold

    def se_unreliable(self, name="log_px", threshold=KHAT_GOOD):
        """Flag the points whose Monte-Carlo standard error of ``name`` is not reliable.

        The s.e. of a mean of draws is std/√S, or its delta-method form, only if the
        draws have a finite variance, Pareto k̂ < 0.5 (Vehtari et al. 2024). The k̂ that
        must pass: the weights' ``"khat"`` for ``"log_px"``; the ELBO terms'
        ``"khat_elbo"`` for ``"elbo"``, ``"reconstruction"``, ``"kl"`` and
        ``"iwae_1"``; both for ``"gap"``. ``"iwae_{k}"`` with k ≥ 2 is never flagged:
        its draws are logs of means of k weights, whose left tail is k times lighter
        than log w's and whose right tail is log w's.

        Parameters
        ----------
        name : str, default "log_px"
            A key of :attr:`std_errors`.
        threshold : float, default 0.5
            k̂ from which a point is flagged
            (:data:`pyro_vae.infer.diagnostics.KHAT_GOOD`).

        Returns
        -------
        torch.Tensor
            Boolean mask of shape ``(batch,)``, True where a k̂ above is ≥ ``threshold``.

        Raises
        ------
        ValueError
            If ``name`` has no standard errors, or the k̂ it needs was not computed
            (``evaluate_unchecked(..., khat=False)``).

        Notes
        -----
        The flag is no guarantee for a single unflagged point: a point whose draws
        missed the heavy tail has both a low k̂ and an estimate too low with too small
        an s.e. On probabilistic PCA with the best diagonal guide at posterior
        correlation −0.69 (k = 0.69), the 13 % of points with k̂ < 0.5 had a root mean
        square error of 2.9 reported s.e. (``benchmarks/error_bars.json``). When some
        points of an evaluation are flagged, distrust the s.e. of the others too, as
        :meth:`summary` does for the mean.
        """
        if name not in self.std_errors:
            raise ValueError(
                f"Expected name to be an estimate with standard errors, one of "
                f"{sorted(self.std_errors)}, but got {name!r}"
            )
        keys = _SE_KHATS.get(name, ())
        missing = [key for key in keys if key not in self.values]
        if missing:
            raise ValueError(
                f"Expected an Evaluation with {missing} values to judge the s.e. of {name!r} "
                f"but got {sorted(self.values)}"
            )
        flagged = torch.zeros_like(self.std_errors[name], dtype=torch.bool)
        for key in keys:
            flagged |= self.values[key] >= threshold
        return flagged


def point_estimates(terms, ks, khat=True):
    r"""Estimates and Monte-Carlo standard errors from the draws of each data point.

    The estimator core of :func:`evaluate`, on draws already made.

    Parameters
    ----------
    terms : dict of str to torch.Tensor
        ``"log_likelihood"``, ``"log_prior"`` and ``"log_guide"`` as returned by
        :func:`log_importance_weights`, each of shape ``(S, batch)``, nats.
    ks : sequence of int
        The k of the IWAE bounds, each in [1, S] (not checked).
    khat : bool, default True
        Also fit the Pareto k̂ of the weights (``values["khat"]``) and of the ELBO
        terms' draws (``values["khat_elbo"]``, both tails of three terms): most of an
        evaluation's cost at small S, so loops that do not read them (the per-epoch
        validation of :func:`pyro_vae.fit`) leave them out.

    Returns
    -------
    values, std_errors : dict of str to torch.Tensor
        As :attr:`Evaluation.values` and :attr:`Evaluation.std_errors`, shape
        ``(batch,)`` each.

    Notes
    -----
    With normalized weights ŵ_s = w_s / w̄ (mean 1) and sample variances Var_s:

    - ELBO, reconstruction, KL: means over s, se = std_s / √S;
    - L_k: mean over the ⌊S/k⌋ groups of log (1/k) Σ_group w, se = std over groups
      / √⌊S/k⌋;
    - log p(x) = log w̄, se² = Var_s(ŵ) / S = 1/ESS − 1/S (delta method:
      log w̄ ≈ log μ + (w̄ − μ)/μ), and bias E[log w̄] − log p(x) ≈ −se²/2;
    - gap = log w̄ − mean_s log w_s ≈ const + mean_s (ŵ_s − log w_s) to first order,
      so se² = Var_s(ŵ − log w) / S. Since Cov(ŵ, log w) ≥ 0 (both increase with w),
      this is at most the two terms' errors in quadrature, which overstate it;
    - k̂: :func:`pyro_vae.infer.diagnostics.pareto_khat` of log w; k̂ of the ELBO's
      terms: the largest :func:`pyro_vae.infer.diagnostics.tail_khat` of the draws of
      log w, log p(x|z) and log q − log p(z).
    """
    log_w = _log_weights(terms)
    values, ses = {}, {}
    kl_draws = terms["log_guide"] - terms["log_prior"]
    for name, draws in (
        ("elbo", log_w),
        ("reconstruction", terms["log_likelihood"]),
        ("kl", kl_draws),
    ):
        _mean_of_draws(name, draws, values, ses)
    _iwae_bounds(log_w, ks, values, ses)
    _log_px_and_gap(log_w, values, ses)
    if khat:
        values["khat"] = pareto_khat(log_w).to(log_w.dtype)
        draws = torch.cat([log_w, terms["log_likelihood"], kl_draws], 1)
        values["khat_elbo"] = tail_khat(draws).reshape(3, -1).amax(0).to(log_w.dtype)
    return values, ses


def _log_weights(terms):
    """log w = log p(x|z) + log p(z) − log q(z|x) from :func:`log_importance_weights`'s
    terms, shape ``(S, batch)``, nats."""
    return terms["log_likelihood"] + terms["log_prior"] - terms["log_guide"]


def _mean_of_draws(name, draws, values, ses):
    """``values[name]``, the mean over the S draws ``(S, batch)``, and its s.e. std / √S."""
    values[name] = draws.mean(0)
    ses[name] = draws.std(0) / math.sqrt(draws.shape[0])


def _iwae_bounds(log_w, ks, values, ses):
    """``values["iwae_{k}"]`` for each k: the mean over the ⌊S/k⌋ disjoint groups of k
    draws of log (1/k) Σ w; its s.e. where there are 2 groups or more."""
    num_samples = log_w.shape[0]
    for k in ks:
        groups = num_samples // k
        grouped = log_w[: groups * k].reshape(groups, k, -1)
        bound = grouped.logsumexp(1) - math.log(k)
        values[f"iwae_{k}"] = bound.mean(0)
        if groups > 1:
            ses[f"iwae_{k}"] = bound.std(0) / math.sqrt(groups)


def _log_px_and_gap(log_w, values, ses):
    """``"log_px"``, ``"gap"`` (needs ``values["elbo"]``) and ``"ess"`` with the s.e. of
    the first two, as :func:`point_estimates` states them."""
    num_samples = log_w.shape[0]
    log_sum = log_w.logsumexp(0)
    ess = (2 * log_sum - (2 * log_w).logsumexp(0)).exp()
    values["log_px"] = log_sum - math.log(num_samples)
    ses["log_px"] = (1 / ess - 1 / num_samples).clamp(min=0).sqrt()
    values["gap"] = values["log_px"] - values["elbo"]
    normalized = (log_w - values["log_px"]).exp()
    ses["gap"] = ((normalized - log_w).var(0, correction=0) / num_samples).sqrt()
    values["ess"] = ess


@torch.no_grad()
def evaluate(vae, x, num_samples=5000, ks=None, seed=0, device=None, **kwargs):
    """Held-out ELBO, IWAE bounds, log p(x) and Pareto k̂ per data point, in nats.

    Draws ``num_samples`` z ~ q_φ(z|x) per point in memory-bounded chunks (at most
    :data:`~pyro_vae.infer.traces.CHUNK_ROWS` = 2¹⁷ particle-rows per pass of guide and
    model, :func:`~pyro_vae.infer.traces.chunk_sizes`) and reduces them as described in
    the module docstring; L_S over all draws is the log p(x) estimate.

    Parameters
    ----------
    vae : object with ``model`` and ``guide``
        E.g. :class:`pyro_vae.VAE`; any Pyro model/guide pair with a ``"data"`` plate.
        If it has an ``x_dim`` attribute, x is checked against it.
    x : torch.Tensor
        Held-out data, shape ``(batch, x_dim)``.
    num_samples : int, default 5000
        S, importance samples per point (K = 5000 is the standard of Burda et al.).
    ks : sequence of int, optional
        The k of the IWAE bounds L_k to report; each an integer in [1, num_samples].
        Default: those of 1, 5 and 50 that are at most ``num_samples``.
    seed : int or None, default 0
        Seed of the draws (the global RNG state is restored afterwards); None uses
        the global RNG.
    device : str or torch.device, optional
        Where to evaluate: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; default where the
        model's parameters are (:mod:`pyro_vae._device`): x is moved there and the
        model stays. A given device moves a ``vae`` that is a
        :class:`torch.nn.Module` there in place (for any other ``vae``, x only). The
        same seed gives the same draws on the same device only (CPU and CUDA
        generators differ).
    **kwargs
        Passed to ``model`` and ``guide``.

    Returns
    -------
    Evaluation
        Per-point values and standard errors, shape ``(batch,)`` each. Points with
        ``values["khat"]`` > 0.7 (:meth:`Evaluation.unreliable`) have a log p(x)
        estimate not to be trusted; from k̂ ≥ 0.5, of the weights or of the ELBO
        terms' draws, the standard errors that rest on them are not reliable
        (:meth:`Evaluation.se_unreliable`; the summary counts and marks them).

    Raises
    ------
    ValueError
        If ``vae`` lacks a callable ``model`` or ``guide``; for bad data (not a
        non-empty tensor; with ``x_dim``: wrong width, NaN/inf, non-binary for a
        Bernoulli likelihood); ``num_samples`` not an integer ≥ 2 (bools rejected);
        ``ks`` not a sequence of integers in [1, num_samples] (bools and floats
        rejected); ``seed`` neither an integer nor None; a ``device`` that is not
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a torch.device, or is CUDA where
        PyTorch sees no GPU; or parameters that are not float32 or float64.

    See Also
    --------
    evaluate_unchecked : the same without the checks.
    paired_difference : compare two evaluations on the same points.

    Notes
    -----
    Memory: the peak grows with the chunk, about CHUNK_ROWS × (x_dim + the widest
    hidden layer) numbers for the decoder's activations and the likelihood's
    per-pixel terms, plus the ``(S, rows)`` log-weights of one block of rows; it does
    not grow with the number of data points beyond the ``(batch,)`` results.

    Pyro's global param store is left as found: ``pyro.module``/``pyro.param`` calls
    in ``model`` and ``guide`` register names during the evaluation, and those not in
    the store before are deleted afterwards. The store is not emptied for the run
    (as ``pyro.get_param_store().scope()`` would do), since a model or guide that reads
    its parameters with ``pyro.param`` must see the user's values; names already in the
    store keep their tensors (``pyro.param`` never replaces a stored value).
    """
    x = check_inputs(vae, x, seed, device, place=True)
    check_int("num_samples", num_samples, minimum=2)
    ks = tuple(k for k in DEFAULT_KS if k <= num_samples) if ks is None else ks
    ks = _check_ks(ks, num_samples)
    return evaluate_unchecked(vae, x, num_samples, ks, seed, **kwargs)


DEFAULT_KS = (1, 5, 50)
"""The k of the IWAE bounds L_k that :func:`evaluate` reports by default."""


def _check_ks(ks, num_samples):
    """ks as a tuple of Python ints in [1, num_samples], or a ValueError naming ks."""
    expected = f"Expected ks to be a sequence of integers in [1, num_samples={num_samples}]"
    if isinstance(ks, (str, bytes)) or not hasattr(ks, "__iter__"):
        raise ValueError(f"{expected} but got {ks!r}")
    ks = tuple(ks)
    for k in ks:
        if not is_int(k) or not 1 <= k <= num_samples:
            raise ValueError(f"{expected} but got {ks!r}, with k = {k!r}")
    return tuple(int(k) for k in ks)


@torch.no_grad()
def evaluate_unchecked(vae, x, num_samples, ks, seed, *, khat=True, **kwargs):
    """:func:`evaluate` without argument checks, for callers that checked them once.

    Same arguments (all required), result and param-store behaviour as
    :func:`evaluate`; ``khat=False`` leaves out the Pareto k̂ (see
    :func:`point_estimates`).
    """
    values, ses = {}, {}
    block_kwargs = row_kwargs(vae.model, vae.guide, x, kwargs)
    with param_store_as_found(), seeded(seed, x.device):
        for rows, particles in chunks(x.shape[0], num_samples):
            parts = [
                log_importance_weights(vae.model, vae.guide, x[rows], count, **block_kwargs(rows))
                for count in particles
            ]
            terms = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
            del parts  # only the concatenation lives on: no trace outlives its pass
            block_values, block_ses = point_estimates(terms, ks, khat)
            del terms
            _store(values, block_values, rows, x.shape[0])
            _store(ses, block_ses, rows, x.shape[0])
    return Evaluation(values, ses, num_samples)


@torch.no_grad()
def evaluate_bounds(vae, x, num_samples, ks, seed, *, log_px=False):
    r"""The ELBO and IWAE bounds of :func:`evaluate_unchecked`, bit for bit, without traces.

    The per-epoch validation of :func:`pyro_vae.fit`. For a
    :class:`~pyro_vae.BaseVAE` whose ``model`` and ``guide`` are BaseVAE's own, whose
    encoder is one of the package's (:class:`~pyro_vae.models.guides.Encoder`,
    :class:`~pyro_vae.models.flows.FlowEncoder`,
    :class:`~pyro_vae.models.guides.LinearEncoder`) and whose ``likelihood_dist`` is
    :class:`~pyro_vae.VAE`'s or :class:`~pyro_vae.LinearGaussianVAE`'s, each pass calls
    what the traced guide and model call, in their order, without Pyro: q = ``encoder(x)``
    expanded to ``(particles, rows)`` as ``pyro.plate`` expands it, z = its draw (the
    same ``normal_`` calls on the same seeded generator), log q(z|x) from that
    distribution, log p(z) from the model's N(0, I) and log p(x|z) from
    ``likelihood_dist(z)``; the passes are :func:`evaluate_unchecked`'s
    (:func:`~pyro_vae.infer.traces.chunks`) and the reductions :func:`point_estimates`'s,
    so every number equals the traced one. Any other ``vae`` takes
    :func:`evaluate_unchecked` (``khat=False``), with the same result.

    Parameters
    ----------
    vae : object with ``model`` and ``guide``
        As for :func:`evaluate`.
    x : torch.Tensor
        Data, shape ``(batch, x_dim)``, already checked (:func:`evaluate` checks it).
    num_samples : int
        S, draws z ~ q(z|x) per point, ≥ 2 (the ELBO's standard error needs two).
    ks : sequence of int
        The k of the IWAE bounds, each in [1, S] (not checked).
    seed : int or None
        Seed of the draws, the global RNG state restored afterwards; None uses the
        global RNG.
    log_px : bool, default False
        Also estimate log p(x) = L_S and the gap log p(x) − ELBO (and the ESS).

    Returns
    -------
    Evaluation
        ``values``: ``"elbo"`` and ``"iwae_{k}"`` for each k, with ``log_px`` also
        ``"log_px"``, ``"gap"`` and ``"ess"``, each of shape ``(batch,)``, nats per data
        point (the ESS in draws); ``std_errors``: those of them that
        :func:`point_estimates` gives one. Its ``summary()`` holds the numbers of
        ``evaluate_unchecked(vae, x, num_samples, ks, seed, khat=False).summary()``
        under these names, bit for bit.

    See Also
    --------
    evaluate : every estimate, with the argument checks and Pareto k̂.

    Notes
    -----
    At the main job's validation (180 digits, S = 50, one torch thread) the decoder and
    likelihood over the 9000 draws take about 19 ms, the floor of both paths. The
    traced path added about 1.4 ms of Pyro's traces, 0.8 ms of estimates the validation
    does not read and, the largest part, the release of the freed heap to the operating
    system after each call, which the next call took back one page fault at a time
    (about 4700 faults, 15 ms). This path keeps the heap for the next call
    (:func:`~pyro_vae.infer.traces.chunks` with ``release_last=False``), and the
    decoder's activations run in place without gradients
    (:data:`~pyro_vae.models.guides.ACTIVATIONS_IN_PLACE`), small enough a heap that
    glibc does not release it either: 39 → 23 ms per call
    (``benchmarks/validation.json``).

    Pyro's param store and the global RNG state are left as found, as by
    :func:`evaluate_unchecked`.
    """
    if not _untraced(vae):
        full = evaluate_unchecked(vae, x, num_samples, ks, seed, khat=False)
        names = {"elbo", *(f"iwae_{k}" for k in ks)}
        if log_px:
            names |= {"log_px", "gap", "ess"}
        values = {name: value for name, value in full.values.items() if name in names}
        ses = {name: se for name, se in full.std_errors.items() if name in names}
        return Evaluation(values, ses, num_samples)
    ref = next(vae.decoder.parameters())  # the model's dtype and device, as its guide reads them
    x = x.to(dtype=ref.dtype, device=ref.device)
    values, ses = {}, {}
    with param_store_as_found(), seeded(seed, x.device):
        for rows, particles in chunks(x.shape[0], num_samples, release_last=False):
            parts = [_untraced_terms(vae, x[rows], count, ref) for count in particles]
            terms = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
            del parts
            log_w = _log_weights(terms)
            del terms
            block_values, block_ses = {}, {}
            _mean_of_draws("elbo", log_w, block_values, block_ses)
            _iwae_bounds(log_w, ks, block_values, block_ses)
            if log_px:
                _log_px_and_gap(log_w, block_values, block_ses)
            _store(values, block_values, rows, x.shape[0])
            _store(ses, block_ses, rows, x.shape[0])
    return Evaluation(values, ses, num_samples)


def _untraced(vae):
    """Whether :func:`evaluate_bounds` can compute vae's log-weights without Pyro (bool).

    Only where every call of the traced guide and model is known: BaseVAE's ``model``
    and ``guide``, an encoder of the package's own classes (not a subclass, whose
    ``forward`` may differ) and the likelihood of :class:`~pyro_vae.VAE` or
    :class:`~pyro_vae.LinearGaussianVAE`.
    """
    cls = type(vae)
    return (
        isinstance(vae, BaseVAE)
        and cls.model is BaseVAE.model
        and cls.guide is BaseVAE.guide
        and cls.likelihood_dist in _OWN_LIKELIHOODS
        and type(vae.encoder) in _OWN_ENCODERS
    )


_OWN_ENCODERS = (Encoder, FlowEncoder, LinearEncoder)
_OWN_LIKELIHOODS = (VAE.likelihood_dist, LinearGaussianVAE.likelihood_dist)


def _untraced_terms(vae, x, count, ref):
    """:func:`log_importance_weights` of BaseVAE's model and guide, computed as they are.

    For x of shape ``(rows, x_dim)`` and ``count`` particles: the calls of
    ``BaseVAE.guide`` and ``BaseVAE.model`` under ``pyro.plate("particles", count,
    dim=-2)``, in their order. ``pyro.plate`` expands each site's distribution to batch
    shape ``(count, rows)`` (Pyro's ``BroadcastMessenger``) and ``pyro.sample`` draws
    with ``rsample()``; the log-densities are those of the expanded distributions at the
    values, in the order :func:`~pyro_vae.infer.traces.log_density_terms` takes them
    (which starts each sum at 0.0: that changes no non-zero number, and log p(z) < 0).
    ``ref`` is the decoder's first parameter, whose dtype and device the model's
    tensors take.
    """
    rows = x.shape[0]
    shape = torch.Size((count, rows))
    guide = vae.encoder(x).expand(shape)
    z = guide()  # (count, rows, z_dim)
    prior = dist.Normal(ref.new_zeros(rows, vae.z_dim), ref.new_ones(rows, vae.z_dim))
    prior = prior.to_event(1).expand(shape)
    likelihood = vae.likelihood_dist(z).expand(shape)
    log_guide = guide.log_prob(z)
    log_prior = prior.log_prob(z)
    return {
        "log_likelihood": likelihood.log_prob(x),
        "log_prior": log_prior,
        "log_guide": log_guide,
    }


def _store(out, block, rows, num_rows):
    """Write a block's ``(rows,)`` estimates into ``out``'s ``(num_rows,)`` tensors.

    The outputs are allocated once, at the first block: no per-block tensor stays
    alive between passes to pin the freed heap (see
    :func:`~pyro_vae.infer.traces.release_freed_memory`).
    """
    for key, value in block.items():
        if key not in out:
            out[key] = value.new_empty(num_rows)
        out[key][rows] = value


def paired_difference(a, b, name="log_px"):
    r"""Mean per-point difference of two evaluations on the same data points.

    Parameters
    ----------
    a, b : Evaluation
        Evaluations of two models (or objectives, or guides) on the *same* n data
        points, in the same order.
    name : str, default "log_px"
        The estimate to compare, a key of both ``values`` (e.g. ``"log_px"``,
        ``"elbo"``, ``"iwae_50"``).

    Returns
    -------
    mean, se : float
        mean = (1/n) Σ_i (a_i − b_i) and its standard error std_i(a_i − b_i) / √n
        (sample standard deviation, n − 1 in the denominator), nats per data point;
        positive mean: a is higher.

    Raises
    ------
    ValueError
        If ``name`` is missing from either evaluation, their numbers of points differ,
        or there are fewer than 2 points.

    See Also
    --------
    Evaluation.summary : means with their Monte-Carlo standard errors.

    Notes
    -----
    Whether model a beats model b is a question about new data from the same
    distribution, so its uncertainty comes from which n test points were drawn, not
    only from the importance sampling. The Monte-Carlo standard error of
    :meth:`Evaluation.summary` is the error in each model's average on *these* points
    with the points held fixed: it shrinks as S grows and says nothing about the spread
    of log p(x) across points, which is usually far larger (tens of nats against
    hundredths). Comparing two unpaired means with their between-point spreads, in
    turn, throws away that log p(x) of the two models is strongly correlated across
    points (hard points are hard for both):

    .. math:: \mathrm{Var}(\bar a - \bar b) = \frac{\mathrm{Var}(a) + \mathrm{Var}(b)
              - 2\,\mathrm{Cov}(a, b)}{n}.

    The per-point differences d_i = a_i − b_i carry both sources, the choice of points
    and each point's Monte-Carlo error, so std(d)/√n is the standard error of the
    comparison.
    """
    for label, ev in (("a", a), ("b", b)):
        if not isinstance(ev, Evaluation) or name not in ev.values:
            got = sorted(ev.values) if isinstance(ev, Evaluation) else type(ev).__name__
            raise ValueError(
                f"Expected {label} to be an Evaluation with {name!r} in its values but got {got}"
            )
    if a.values[name].shape != b.values[name].shape:
        raise ValueError(
            f"Expected a and b on the same data points but got {a.values[name].numel()} "
            f"and {b.values[name].numel()} points"
        )
    return mean_difference(a.values[name], b.values[name])


def mean_difference(a, b):
    """Mean of per-point differences a − b and its standard error std(d)/√n (nats).

    The tensor core of :func:`paired_difference`, for per-point estimates that are not
    an :class:`Evaluation` (e.g. :attr:`pyro_vae.AISResult.log_px`).

    Parameters
    ----------
    a, b : torch.Tensor
        Per-point estimates on the same n points, shape ``(n,)``.

    Returns
    -------
    mean, se : float

    Raises
    ------
    ValueError
        With fewer than 2 points.
    """
    diff = a - b
    n = diff.numel()
    if n < 2:
        raise ValueError(f"Expected at least 2 data points for a standard error but got {n}")
    return float(diff.mean()), float(diff.std() / math.sqrt(n))
