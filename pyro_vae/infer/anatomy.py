r"""The ELBO taken apart: its three decompositions, ELBO surgery and active units.

For one data point x and a guide q(z|x), the evidence lower bound is, in three
equivalent ways (nats per data point),

.. math::

    \mathrm{ELBO}(x)
    &= \mathbb E_q[\log p(x \mid z)] - \mathrm{KL}(q(z \mid x) \,\|\, p(z))
    && \text{(Kingma \& Welling 2014, eq. 3; its estimator eq. 7)} \\
    &= \mathbb E_q[\log p(x, z)] + \mathbb H[q(z \mid x)]
    && \text{(Kingma \& Welling 2014, eq. 2; Blei et al. 2017, sec. 2.2)} \\
    &= \log p(x) - \mathrm{KL}(q(z \mid x) \,\|\, p(z \mid x))
    && \text{(Kingma \& Welling 2014, eq. 1; Blei et al. 2017, sec. 2.2)}.

:func:`elbo_decompositions` estimates every term of each, on draws independent from
one decomposition to the next, so that their agreement is a test and not an identity
(the third can instead take log p(x) and the gap from an evaluation already made,
``evaluation=``, so that the costliest estimate is not made twice).

Averaged over the N data points, the KL term splits further (Hoffman & Johnson 2016,
"ELBO surgery"): with the aggregate posterior q(z) = (1/N) Σ_n q(z|x_n),

.. math::

    \frac1N \sum_n \mathrm{KL}(q(z \mid x_n) \,\|\, p(z))
    = I_q(x; z) + \mathrm{KL}(q(z) \,\|\, p(z)),

the mutual information between the data index and the code under q, and how far the
aggregate posterior is from the prior: :func:`elbo_surgery`. :func:`active_units`
counts the latent dimensions the guide uses (Burda et al. 2016, sec. 5.2) with each
dimension's share of the KL.

All three read the distributions from Pyro traces of the user's own model and guide,
as :func:`pyro_vae.infer.evaluation.log_importance_weights` does: every sample site sits in
a plate over the rows of x at dim -1, and draws are made under a plate of particles at
dim -2.

References
----------
1. D. M. Blei, A. Kucukelbir, J. D. McAuliffe, "Variational Inference: A Review for
   Statisticians", J. Am. Stat. Assoc. 112(518), 859–877, 2017.
2. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
3. J. He, D. Spokoyny, G. Neubig, T. Berg-Kirkpatrick, "Lagging Inference Networks and
   Posterior Collapse in Variational Autoencoders", ICLR 2019.
4. M. D. Hoffman, M. J. Johnson, "ELBO surgery: yet another way to carve up the
   variational evidence lower bound", NeurIPS Workshop on Advances in Approximate
   Bayesian Inference, 2016.
5. D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
"""

import math
import numbers
from contextlib import nullcontext
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch.distributions import Independent, Normal, kl_divergence

from .._checks import check_int, is_int
from ..data import check_data
from ..models.vae import BaseVAE
from .evaluation import Evaluation, Summary, evaluate_unchecked, param_store_as_found
from .quadrature import quadrature_posterior

__all__ = [
    "ActiveUnits",
    "ElboDecompositions",
    "ElboSurgery",
    "active_units",
    "elbo_decompositions",
    "elbo_surgery",
]

_CHUNK_ROWS = 2**17  # particles × data points per model or guide pass: bounds memory
_LOG_PX_METHODS = ("auto", "exact", "quadrature", "importance_sampling")
_WAYS = ("reconstruction_minus_kl", "expected_joint_plus_entropy", "evidence_minus_gap")
_TERMS = ("reconstruction", "kl_prior", "expected_log_joint", "entropy", "log_px", "gap")


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class ElboDecompositions:
    """Per-point results of :func:`elbo_decompositions`.

    Attributes
    ----------
    values : dict of str to torch.Tensor
        Each of shape ``(batch,)``, nats per data point. The three ways to the ELBO,
        ``"reconstruction_minus_kl"``, ``"expected_joint_plus_entropy"`` and
        ``"evidence_minus_gap"``, and their terms ``"reconstruction"``
        (E_q log p(x|z)), ``"kl_prior"`` (KL(q(z|x) ‖ p(z))), ``"expected_log_joint"``
        (E_q log p(x, z)), ``"entropy"`` (H[q(z|x)]), ``"log_px"`` and ``"gap"``
        (KL(q(z|x) ‖ p(z|x))).
    std_errors : dict of str to torch.Tensor
        The error of each value, same keys and shapes, nats: the Monte-Carlo standard
        error for Monte-Carlo and importance-sampling estimates, 0 for closed forms,
        the grid's error estimate for quadrature (see :func:`elbo_decompositions`).
    methods : dict of str to str
        How each term was computed: ``"reconstruction"`` and ``"expected_log_joint"``
        ``"monte_carlo"``; ``"kl_prior"`` and ``"entropy"`` ``"analytic"``,
        ``"monte_carlo"`` or ``"mixed"`` (analytic for some latent sites only);
        ``"log_px"`` and ``"gap"`` ``"exact"``, ``"quadrature"`` or
        ``"importance_sampling"``.
    num_samples : int
        S, draws z ~ q(z|x) per data point for each of the first two ways.
    log_px_samples : int or None
        Importance samples per point for log p(x), or None when it was not sampled.
    """

    values: dict
    std_errors: dict
    methods: dict
    num_samples: int
    log_px_samples: int | None

    def summary(self):
        """Mean over data points of every estimate with its error.

        Returns
        -------
        pyro_vae.infer.evaluation.Summary
            A dict ``name -> (mean, se)``, nats per data point, the three ways first,
            with se = √(Σ_i se_i²) / batch (independent draws per point).
        """
        return _summarize(self.values, self.std_errors, self.num_samples, _WAYS + _TERMS)


@dataclass(frozen=True)
class ElboSurgery:
    """Per-point results of :func:`elbo_surgery`.

    Attributes
    ----------
    values : dict of str to torch.Tensor
        Each of shape ``(N,)``, nats: ``"kl"``, KL(q(z|x_n) ‖ p(z)) of each point;
        ``"marginal_kl"``, point n's share E_{q(z|x_n)}[log q(z) − log p(z)] of
        KL(q(z) ‖ p(z)); ``"mutual_information"``, its share ``kl − marginal_kl`` of
        I_q(x; z). The mean over points of each is the data set's quantity.
    std_errors : dict of str to torch.Tensor
        Their Monte-Carlo standard errors given the N points, shape ``(N,)``
        (std over the point's draws / √S; 0 for an analytic KL).
    kl_method : str
        ``"analytic"``, ``"monte_carlo"`` or ``"mixed"``, as in
        :attr:`ElboDecompositions.methods`.
    num_samples : int
        S, draws from q(z|x_n) per point.
    batch_size : int or None
        B, the number of rows per mixture; None for the whole of x.
    max_mutual_information : float
        log of the largest mixture's number of components (log N, or log B): the
        largest I_q that the empirical aggregate posterior allows, nats.
    """

    values: dict
    std_errors: dict
    kl_method: str
    num_samples: int
    batch_size: int | None
    max_mutual_information: float

    def summary(self):
        """The decomposition E_x KL(q(z|x) ‖ p(z)) = I_q(x; z) + KL(q(z) ‖ p(z)).

        Returns
        -------
        pyro_vae.infer.evaluation.Summary
            ``"average_kl"``, ``"mutual_information"`` and ``"marginal_kl"`` to
            ``(mean, se)``, nats per data point: each is one number for the data set,
            the decomposition of the per-point average KL (N times it is that of the
            KL summed over the data, as in the ELBO of the whole data set);
            se = √(Σ_n se_n²) / N, the Monte-Carlo error given the N points.
        """
        keys = {"average_kl": "kl", "mutual_information": "mutual_information"}
        keys["marginal_kl"] = "marginal_kl"
        values = {key: self.values[name] for key, name in keys.items()}
        ses = {key: self.std_errors[name] for key, name in keys.items()}
        return _summarize(values, ses, self.num_samples, tuple(keys))


@dataclass(frozen=True)
class ActiveUnits:
    """Per-dimension results of :func:`active_units`; printed, a table.

    Attributes
    ----------
    activity : torch.Tensor
        A_d = Var_x(E_q[z_d | x]), the population variance (ddof = 0) over the rows of
        x of the guide's mean, shape ``(D,)``, in squared units of z.
    kl : torch.Tensor or None
        Mean over the rows of x of KL(q(z_d|x) ‖ p(z_d)), nats per data point per
        dimension, shape ``(D,)``; None unless guide and prior are diagonal Normals.
    active : torch.Tensor
        Boolean, shape ``(D,)``: ``activity > threshold``.
    num_active : int
        Number of active dimensions, ``int(active.sum())``.
    threshold : float
        The activity threshold.
    mean : torch.Tensor
        E_q[z|x] per row of x, the site's event flattened, shape ``(N, D)``.
    mean_method : str
        ``"analytic"`` (the distribution's mean) or ``"monte_carlo"``.
    """

    activity: torch.Tensor
    kl: torch.Tensor | None
    active: torch.Tensor
    num_active: int
    threshold: float
    mean: torch.Tensor
    mean_method: str

    def __str__(self):
        lines = [f"{'dim':>4} {'activity':>10} {'KL (nats)':>10}  active"]
        for d, activity in enumerate(self.activity.tolist()):
            kl = "" if self.kl is None else f"{float(self.kl[d]):.4f}"
            mark = "yes" if self.active[d] else "no"
            lines.append(f"{d:>4} {activity:10.4f} {kl:>10}  {mark}")
        total = "" if self.kl is None else f", KL {float(self.kl.sum()):.3f} nats per point"
        lines.append(
            f"{self.num_active} of {len(self.activity)} active (activity > "
            f"{self.threshold:g}){total}"
        )
        return "\n".join(lines)


def _summarize(values, ses, num_samples, names):
    """Summary of ``names``: mean over points and √(Σ se²) / n of each, nats."""
    first = next(iter(values.values()))
    out = Summary(num_samples=num_samples, num_points=first.numel())
    for name in names:
        n = values[name].numel()
        out[name] = (float(values[name].mean()), float(ses[name].square().sum().sqrt() / n))
    return out


# ------------------------------------------------------------------ public functions


@torch.no_grad()
def elbo_decompositions(
    vae, x, num_samples=1000, seed=0, log_px="auto", log_px_samples=5000, evaluation=None
):
    r"""The ELBO per data point three ways, with every term, in nats.

    (1) E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)) (Kingma & Welling 2014, eq. 3, estimated
    as their eq. 7): the reconstruction by Monte Carlo on S draws z ~ q(z|x); the KL in
    closed form where torch registers ``kl_divergence`` for the guide's and the model's
    distribution of a latent site (diagonal Normals: yes), by Monte Carlo on the same
    draws otherwise.

    (2) E_q[log p(x, z)] + H[q(z|x)] (Kingma & Welling 2014, eq. 2; Blei et al. 2017,
    sec. 2.2): the expected log joint by Monte Carlo on S draws *independent* of those of
    (1), the entropy in closed form where the guide's distribution has ``.entropy()``,
    by Monte Carlo otherwise. (1) and (2) agree only if every term is right.

    (3) log p(x) − KL(q(z|x) ‖ p(z|x)) (Kingma & Welling 2014, eq. 1; Blei et al. 2017,
    sec. 2.2; the gap of Hoffman & Johnson 2016): log p(x) and the gap

    - ``"exact"``: in closed form for :class:`pyro_vae.LinearGaussianVAE`
      (``exact_log_likelihood``, ``exact_posterior_kl``), no error;
    - ``"quadrature"``: by :func:`pyro_vae.quadrature_posterior` for a
      :class:`pyro_vae.models.vae.BaseVAE` with z_dim ≤ 2; the error given is the grid's
      error estimate ``error`` for log p(x) and the gap and 2·``error`` for (3): a
      deterministic error bound, not a standard error;
    - ``"importance_sampling"``: log p̂(x) = log (1/K) Σ_k w_k over K =
      ``log_px_samples`` further independent draws (Burda et al. 2016, sec. 5.1), as
      :func:`pyro_vae.evaluate`, with its delta-method standard error, and the gap
      log p̂(x) − ELBÔ on those same K draws; or, given ``evaluation``, the log p̂(x),
      gap and ELBÔ that :func:`pyro_vae.evaluate` already computed from its K draws
      (no new draws: the costliest part of this function, done once where the caller
      evaluates anyway, as :func:`pyro_vae.experiments.compare.compare` does).

    ``"auto"`` takes the first that applies, in that order.

    .. warning::
       With importance sampling, (3) = log p̂(x) − (log p̂(x) − ELBÔ) is the plain
       Monte-Carlo ELBO on the K importance draws: it agrees with (1) and (2) through
       the consistency of that estimator alone and does not test log p̂(x), which is
       biased low by about se²/2 and is judged by its Pareto k̂
       (:meth:`pyro_vae.infer.evaluation.Evaluation.unreliable`). The exact and quadrature
       methods make (3) an independent check.

    Parameters
    ----------
    vae : object with ``model`` and ``guide``
        E.g. :class:`pyro_vae.VAE`; any Pyro model/guide pair taking ``x`` whose
        sample sites sit in a plate over the rows of x at dim -1, with every latent
        site of the model sampled by the guide. If it has ``x_dim``, x is checked
        against it.
    x : torch.Tensor
        Data, shape ``(batch, x_dim)``.
    num_samples : int, default 1000
        S, draws per data point for each of (1) and (2) (≥ 2).
    seed : int or None, default 0
        Seed of the draws; the global RNG state is restored afterwards. None uses the
        global RNG.
    log_px : {"auto", "exact", "quadrature", "importance_sampling"}, default "auto"
        How log p(x) and the gap of (3) are computed.
    log_px_samples : int, default 5000
        K, importance samples per point for ``"importance_sampling"`` (≥ 2).
    evaluation : pyro_vae.infer.evaluation.Evaluation, optional
        :func:`pyro_vae.evaluate` of this ``vae`` on this ``x`` with K =
        ``log_px_samples`` draws: for ``"importance_sampling"``, (3) takes its
        ``log_px``, ``gap`` and ``elbo`` (values and standard errors) instead of drawing
        K new samples, so that log p(x) costs one pass, not two; the exact and
        quadrature methods draw nothing and do not use it. (1) and (2) do not change;
        (3) is then exactly the evaluation's log p̂(x) − gap = ELBÔ, the numbers it
        reports. Its draws are its own: made with the same ``seed`` as this call, the
        first of them reuse the standard-normal deviates of (1) (torch draws one
        stream), mostly for other data points; seed it otherwise for draws independent
        of (1).

    Returns
    -------
    ElboDecompositions
        Per-point values and errors, shape ``(batch,)`` each, the methods used;
        ``.summary()`` averages over points.

    Raises
    ------
    ValueError
        If ``vae`` lacks a callable ``model`` or ``guide``; for bad data (as
        :func:`pyro_vae.data.check_data` with ``x_dim``; otherwise not a non-empty
        tensor); ``num_samples`` or ``log_px_samples`` not an integer ≥ 2; ``seed``
        neither an integer nor None; ``log_px`` not one of the methods, or a method
        the model does not support (``"exact"`` without the closed forms,
        ``"quadrature"`` on a model that is not a BaseVAE with z_dim ≤ 2); a site's
        log-density not of shape ``(S, batch)``; a latent site of the model that the
        guide does not sample; ``evaluation`` not an Evaluation with ``log_px``,
        ``gap`` and ``elbo`` for each of the ``batch`` points, or drawn with a K other
        than ``log_px_samples``.

    See Also
    --------
    pyro_vae.evaluate : ELBO, IWAE bounds and log p(x) by importance sampling.
    elbo_surgery : the KL term averaged over the data, split further.

    Notes
    -----
    Per data point, with draws z_s ~ q(z|x) and a per-draw value v_s, each Monte-Carlo
    estimate is the mean of v_s with standard error std_s(v) / √S (sample std,
    n − 1). The ways are estimated per draw, so their errors account for the
    correlation of their terms: (1) from v_s = log p(x|z_s) − KL_s and (2) from
    v_s = log p(x, z_s) + H_s, where KL_s and H_s are the closed form (the same for
    every draw of a one-level guide, so its error is 0) or log q(z_s|x) − log p(z_s)
    and −log q(z_s|x). Every latent site contributes; each closed form is that site's
    KL or entropy given the draws of the sites before it (exact for a one-level guide,
    a Rao-Blackwellized Monte-Carlo term otherwise). The errors of two independent
    ways combine in quadrature: (1) − (2) has s.e. √(se₁² + se₂²).

    Pyro's param store is left as found (:func:`pyro_vae.infer.evaluation.param_store_as_found`).

    References
    ----------
    1. D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
    2. M. D. Hoffman, M. J. Johnson, "ELBO surgery", NeurIPS AABI workshop, 2016.
    3. D. M. Blei, A. Kucukelbir, J. D. McAuliffe, "Variational Inference: A Review for
       Statisticians", JASA 112(518), 2017, sec. 2.2.
    4. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders",
       ICLR 2016.
    """
    x = _check_vae_and_x(vae, x)
    check_int("num_samples", num_samples, minimum=2)
    check_int("log_px_samples", log_px_samples, minimum=2)
    _check_seed(seed)
    method = _log_px_method(vae, log_px)
    _check_evaluation(evaluation, x.shape[0], log_px_samples)
    with param_store_as_found(), torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        first = _draws(vae, x, num_samples)
        second = _draws(vae, x, num_samples)
        values, ses = {}, {}
        for name, draws in (
            ("reconstruction_minus_kl", first["log_likelihood"] - first["kl"]),
            ("reconstruction", first["log_likelihood"]),
            ("kl_prior", first["kl"]),
            ("expected_joint_plus_entropy", second["log_joint"] + second["entropy"]),
            ("expected_log_joint", second["log_joint"]),
            ("entropy", second["entropy"]),
        ):
            values[name], ses[name] = _mean_and_se(draws)
        third = _evidence_and_gap(vae, x, method, log_px_samples, evaluation)
        for name, (value, se) in third.items():
            values[name], ses[name] = value.to(x.dtype), se.to(x.dtype)
    methods = {
        "reconstruction": "monte_carlo",
        "kl_prior": first["kl_method"],
        "expected_log_joint": "monte_carlo",
        "entropy": second["entropy_method"],
        "log_px": method,
        "gap": method,
    }
    samples = log_px_samples if method == "importance_sampling" else None
    return ElboDecompositions(values, ses, methods, num_samples, samples)


@torch.no_grad()
def elbo_surgery(vae, x, num_samples=100, seed=0, batch_size=None):
    r"""ELBO surgery: the average KL = I_q(x; z) + KL(q(z) ‖ p(z)), in nats per point.

    Hoffman & Johnson (2016) split the KL term of the ELBO averaged over the
    N rows x_n of ``x``:

    .. math::

        \underbrace{\frac1N \sum_n \mathrm{KL}(q(z \mid x_n) \,\|\, p(z))}_{
        \texttt{average\_kl}}
        = \underbrace{\mathbb E_{q(n, z)} \log \frac{q(z \mid x_n)}{q(z)}}_{
        \texttt{mutual\_information}\ I_q}
        + \underbrace{\mathrm{KL}(q(z) \,\|\, p(z))}_{\texttt{marginal\_kl}},
        \qquad q(z) = \frac1N \sum_m q(z \mid x_m).

    ``average_kl``: each point's KL in closed form where torch has
    ``kl_divergence`` for the site's distributions, by Monte Carlo otherwise (as
    :func:`elbo_decompositions`). ``marginal_kl`` = E_{q(z)}[log q(z) − log p(z)] by
    Monte Carlo: S draws z_ns ~ q(z|x_n) for every n, with log q(z) = logsumexp_m
    log q(z|x_m) − log N evaluated exactly over all N components (in memory-bounded
    chunks; O(S N²) guide densities). ``mutual_information`` = average_kl −
    marginal_kl, per draw.

    .. warning::
       q(z) here is the *empirical* mixture over the N given points, so these are the
       quantities of that finite mixture. As N grows it approaches the population
       aggregate posterior ∫ q(z|x) p_data(x) dx, but for any N, I_q ≤ log N (the
       index n carries at most log N nats), so small N caps and biases I_q low
       (and KL(q(z) ‖ p(z)) high by as much, the average KL being the same).

    Parameters
    ----------
    vae : object with ``model`` and ``guide``
        As :func:`elbo_decompositions`.
    x : torch.Tensor
        The N data points, shape ``(N, x_dim)``.
    num_samples : int, default 100
        S, draws from q(z|x_n) per point (≥ 2).
    seed : int or None, default 0
        Seed of the draws; the global RNG state is restored afterwards.
    batch_size : int or None, default None
        B: with an integer, the mixture is restricted to each minibatch of B
        consecutive rows of x (the last one may be smaller; shuffle x first for random
        minibatches) and the per-point values are averaged over all points, i.e. over
        minibatches weighted by their size, as He et al. (2019) estimate I_q in their
        code. None uses the whole of x.

    Returns
    -------
    ElboSurgery
        Per-point values and standard errors, shape ``(N,)``; ``.summary()`` gives
        ``average_kl``, ``mutual_information`` and ``marginal_kl``.

    Raises
    ------
    ValueError
        As :func:`elbo_decompositions` for ``vae``, x, ``num_samples`` and ``seed``;
        if ``batch_size`` is neither None nor an integer ≥ 1.

    See Also
    --------
    active_units : the KL per latent dimension and which dimensions are used.
    elbo_decompositions : the KL term per data point beside the other terms.

    Notes
    -----
    **Minibatch estimator.** With mixtures q_b(z) over minibatches of B rows, I_q ≤
    log B and, since the full mixture is the size-weighted average of the q_b and KL
    is convex, the size-weighted mean of KL(q_b(z) ‖ p(z)) is at least KL(q(z) ‖ p(z)):
    the minibatch I_q is at most the full-data one, more biased low the smaller B. He
    et al. (2019) use it to track I_q cheaply during training; for a number to
    report, use the largest N affordable.

    **Standard errors** are Monte-Carlo errors given the N points: per point, std over
    the S draws / √S (0 for a closed-form KL), averaged as √(Σ_n se_n²) / N. The draws
    of different points are independent, so this is exact for these points; it does
    not include how the numbers would change with another sample of N points. Per
    draw, the marginal term is log q(z_ns) − log p(z_ns) and the mutual-information
    term KL_n − log q(z_ns) + log p(z_ns). With a closed-form KL, I_q ≤ log N holds
    for the estimate up to its Monte-Carlo error only; with a Monte-Carlo KL it holds
    draw by draw.

    References
    ----------
    1. M. D. Hoffman, M. J. Johnson, "ELBO surgery: yet another way to carve up the
       variational evidence lower bound", NeurIPS AABI workshop, 2016.
    2. J. He, D. Spokoyny, G. Neubig, T. Berg-Kirkpatrick, "Lagging Inference Networks
       and Posterior Collapse in Variational Autoencoders", ICLR 2019.
    """
    x = _check_vae_and_x(vae, x)
    check_int("num_samples", num_samples, minimum=2)
    _check_seed(seed)
    if batch_size is not None:
        check_int("batch_size", batch_size)
    num_data = x.shape[0]
    size = num_data if batch_size is None else min(batch_size, num_data)
    with param_store_as_found(), torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        draws = _draws(vae, x, num_samples, keep_values=True)
        log_aggregate = torch.cat(
            [
                _log_mixture(vae, x[start : start + size], _rows(draws["values"], start, size))
                for start in range(0, num_data, size)
            ],
            dim=1,
        )
    marginal = log_aggregate - draws["log_prior"]
    values, ses = {}, {}
    for name, per_draw in (
        ("kl", draws["kl"]),
        ("marginal_kl", marginal),
        ("mutual_information", draws["kl"] - marginal),
    ):
        values[name], ses[name] = _mean_and_se(per_draw)
    return ElboSurgery(values, ses, draws["kl_method"], num_samples, batch_size, math.log(size))


@torch.no_grad()
def active_units(vae, x, threshold=0.01, site="z", num_samples=1000, seed=0):
    r"""Active latent dimensions and the KL per dimension (Burda et al. 2016, sec. 5.2).

    Dimension d of the latent site is active when its activity

    .. math:: A_d = \mathrm{Var}_x\bigl(\mathbb E_{q(z \mid x)}[z_d]\bigr)

    exceeds ``threshold`` (Burda et al. use 10⁻²): the guide's mean moves with x along
    it. An inactive dimension's code is the same for every x, so it carries no
    information about x; if its KL to the prior is also ~0, the guide has collapsed
    there to the prior (posterior collapse).

    Parameters
    ----------
    vae : object with ``model`` and ``guide``
        As :func:`elbo_decompositions`.
    x : torch.Tensor
        Data, shape ``(N, x_dim)``; the variance is over its rows.
    threshold : float, default 0.01
        Activity above which a dimension counts as active (a finite number ≥ 0).
    site : str, default "z"
        The latent site; its event is flattened to D dimensions.
    num_samples : int, default 1000
        Draws per point for a Monte-Carlo mean (see Notes); ≥ 2.
    seed : int or None, default 0
        Seed of those draws; the global RNG state is restored afterwards.

    Returns
    -------
    ActiveUnits
        ``activity`` and ``kl`` of shape ``(D,)``, ``active``, ``num_active``, the
        guide means ``(N, D)``; printed, a per-dimension table.

    Raises
    ------
    ValueError
        As :func:`elbo_decompositions` for ``vae``, x and ``seed``; if ``threshold``
        is not a finite number ≥ 0, ``num_samples`` not an integer ≥ 2, or the guide
        has no latent sample site named ``site``.

    See Also
    --------
    elbo_surgery : the same average KL split into I_q(x; z) and KL(q(z) ‖ p(z)).

    Notes
    -----
    E_q[z|x] is the guide distribution's ``.mean`` where it has one, and otherwise
    the mean of ``num_samples`` draws per point (a Monte-Carlo estimate, which adds
    its variance, about mean_x Var_q(z_d|x) / S, to A_d). The variance over x is the
    population variance (ddof = 0), as ``torch.var(..., correction=0)``. In a guide
    where the site depends on other latent draws, ``.mean`` is conditional on one draw
    of them.

    The KL per dimension, mean_x KL(q(z_d|x) ‖ p(z_d)) in nats per data point, is
    computed in closed form when the guide's and the prior's distributions of the
    site are diagonal Normals (``Normal(...).to_event(1)``). The KL of a factorized
    guide to a factorized prior is the sum over dimensions, so ``kl.sum()`` is the
    average KL term of the ELBO; for other distributions ``kl`` is None.

    References
    ----------
    1. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders",
       ICLR 2016, sec. 5.2.
    """
    x = _check_vae_and_x(vae, x)
    real = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool)
    if not (real and math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"Expected threshold to be a finite number >= 0 but got {threshold!r}")
    check_int("num_samples", num_samples, minimum=2)
    _check_seed(seed)
    with param_store_as_found(), torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        guide_trace, model_trace = _traces(vae, x)
        q, p = _latent_fns(guide_trace, model_trace, site, f"site={site!r}")
        try:
            mean, mean_method = q.mean.reshape(x.shape[0], -1), "analytic"
        except NotImplementedError:
            mean, mean_method = _monte_carlo_mean(vae, x, site, num_samples), "monte_carlo"
    activity = mean.var(0, correction=0)
    kl = None
    if _is_diagonal_normal(q) and _is_diagonal_normal(p):
        kl = kl_divergence(q.base_dist, p.base_dist).expand(q.batch_shape + q.event_shape)
        kl = kl.reshape(x.shape[0], -1).mean(0)
    active = activity > threshold
    return ActiveUnits(activity, kl, active, int(active.sum()), float(threshold), mean, mean_method)


# ------------------------------------------------------------------ helpers


def _check_vae_and_x(vae, x):
    """x, checked against vae (as :func:`pyro_vae.evaluate` does), or a ValueError."""
    if not (callable(getattr(vae, "model", None)) and callable(getattr(vae, "guide", None))):
        raise ValueError(
            f"Expected vae to have callable model and guide but got {type(vae).__name__}"
        )
    if hasattr(vae, "x_dim"):
        return check_data(x, vae, "x")
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(
            f"Expected x to be a torch.Tensor of shape (batch, ...) with batch >= 1 but got "
            f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
        )
    return x


def _check_seed(seed):
    if seed is not None and not is_int(seed):
        raise ValueError(f"Expected seed to be an integer or None but got {seed!r}")


def _log_px_method(vae, log_px):
    """The method for log p(x) and the gap, or a ValueError naming ``log_px``."""
    if log_px not in _LOG_PX_METHODS:
        raise ValueError(f"Expected log_px to be one of {_LOG_PX_METHODS} but got {log_px!r}")
    exact = callable(getattr(vae, "exact_log_likelihood", None)) and callable(
        getattr(vae, "exact_posterior_kl", None)
    )
    quadrature = isinstance(vae, BaseVAE) and vae.z_dim in (1, 2)
    if log_px == "auto":
        return "exact" if exact else "quadrature" if quadrature else "importance_sampling"
    if log_px == "exact" and not exact:
        raise ValueError(
            "Expected log_px='exact' only for a model with closed-form "
            f"exact_log_likelihood and exact_posterior_kl but got {type(vae).__name__}; "
            "use log_px='auto'"
        )
    if log_px == "quadrature" and not quadrature:
        raise ValueError(
            "Expected log_px='quadrature' only for a pyro_vae BaseVAE with z_dim 1 or 2 but "
            f"got {type(vae).__name__} with z_dim={getattr(vae, 'z_dim', None)!r}; use "
            "log_px='importance_sampling'"
        )
    return log_px


def _check_evaluation(evaluation, batch, log_px_samples):
    """A ValueError naming ``evaluation`` unless it is None or fits the call."""
    if evaluation is None:
        return
    names = ("log_px", "gap", "elbo")
    if not isinstance(evaluation, Evaluation) or not all(
        name in evaluation.values and name in evaluation.std_errors for name in names
    ):
        got = sorted(evaluation.values) if isinstance(evaluation, Evaluation) else evaluation
        raise ValueError(
            "Expected evaluation to be a pyro_vae Evaluation with log_px, gap and elbo "
            f"(pyro_vae.evaluate) but got {got!r}"
        )
    shapes = {tuple(evaluation.values[name].shape) for name in names}
    if shapes != {(batch,)}:
        raise ValueError(
            f"Expected evaluation of the {batch} rows of x but got values of shapes "
            f"{sorted(shapes)}"
        )
    if evaluation.num_samples != log_px_samples:
        raise ValueError(
            f"Expected evaluation drawn with K = log_px_samples = {log_px_samples} "
            f"importance samples but got {evaluation.num_samples!r}"
        )


def _evidence_and_gap(vae, x, method, log_px_samples, evaluation=None):
    """``name -> (value, error)`` for log_px, gap and evidence_minus_gap, ``(batch,)``;
    by importance sampling from ``evaluation``'s estimates when given."""
    if method == "exact":
        log_px, gap = vae.exact_log_likelihood(x), vae.exact_posterior_kl(x)
        zero = torch.zeros_like(log_px)
        errors = (zero, zero, zero)
    elif method == "quadrature":
        quad = quadrature_posterior(vae, x)
        log_px, gap = quad.log_px, quad.kl_guide
        errors = (quad.error, quad.error, 2 * quad.error)
    else:
        ev = evaluation
        if ev is None:
            ev = evaluate_unchecked(vae, x, log_px_samples, (), None)
        log_px, gap = ev.values["log_px"], ev.values["gap"]
        errors = (ev.std_errors["log_px"], ev.std_errors["gap"], ev.std_errors["elbo"])
    return {
        "evidence_minus_gap": (log_px - gap, errors[2]),
        "log_px": (log_px, errors[0]),
        "gap": (gap, errors[1]),
    }


def _mean_and_se(draws):
    """Mean over draws (dim 0) and its standard error std / √S, each ``(batch,)``."""
    return draws.mean(0), draws.std(0) / math.sqrt(draws.shape[0])


def _chunks(num_rows, num_samples):
    """Row blocks and particle blocks with at most ``_CHUNK_ROWS`` particle-rows."""
    rows = max(1, min(num_rows, _CHUNK_ROWS // num_samples))
    samples = max(1, min(num_samples, _CHUNK_ROWS // rows))
    return rows, samples


def _traces(vae, x, num_samples=None):
    """Guide trace and model trace replayed on it, under a plate of S particles if given."""
    plate = pyro.plate("particles", num_samples, dim=-2) if num_samples else nullcontext()
    with plate:
        guide_trace = poutine.trace(vae.guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    return guide_trace, model_trace


def _sample_sites(trace):
    return [
        (name, site)
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    ]


def _site_log_prob(name, site, shape):
    log_p = site["fn"].log_prob(site["value"])
    if log_p.shape != shape:
        raise ValueError(
            f"Expected site {name!r} to have a log-density of shape {tuple(shape)} "
            f"(particles, data) but got {tuple(log_p.shape)}: put every sample site in "
            "the data plate"
        )
    return log_p


def _latent_fns(guide_trace, model_trace, name, label=None):
    """The guide's and the model's distribution of latent site ``name``.

    ``label`` names the site in the error message (default: "the latent site 'name'").
    """
    guide_site = guide_trace.nodes.get(name)
    model_site = model_trace.nodes.get(name)
    if (
        guide_site is None
        or guide_site["type"] != "sample"
        or guide_site["is_observed"]
        or model_site is None
        or model_site["is_observed"]
    ):
        latents = [n for n, s in _sample_sites(guide_trace) if not s["is_observed"]]
        raise ValueError(
            f"Expected {label or f'the latent site {name!r}'} to be sampled by the guide and "
            f"by the model but the guide's latent sites are {latents}"
        )
    return guide_site["fn"], model_site["fn"]


def _closed_form_or(compute, fallback, shape):
    """``compute()`` broadcast to shape, else the Monte-Carlo fallback; and which."""
    try:
        return torch.broadcast_to(compute(), shape), "analytic"
    except (NotImplementedError, RuntimeError):
        return fallback, "monte_carlo"


def _method(used):
    return used.pop() if len(used) == 1 else "mixed"


def _draws(vae, x, num_samples, keep_values=False):
    """Per-draw terms of S draws z ~ q(z|x) per point, ``(S, batch)`` each, nats.

    ``log_likelihood``, ``log_prior``, ``log_joint``; ``kl`` and ``entropy``, closed
    form per draw or Monte Carlo; with ``keep_values`` the draws themselves under
    ``"values"`` (a dict site -> ``(S, batch, ...)``). Chunked as :func:`pyro_vae.evaluate`.
    """
    rows, samples = _chunks(x.shape[0], num_samples)
    blocks, methods = [], {"kl": set(), "entropy": set()}
    for start in range(0, x.shape[0], rows):
        xb = x[start : start + rows]
        parts = [
            _one_pass(vae, xb, min(samples, num_samples - s), methods, keep_values)
            for s in range(0, num_samples, samples)
        ]
        blocks.append({key: _cat([p[key] for p in parts], 0) for key in parts[0]})
    out = {key: _cat([b[key] for b in blocks], 1) for key in blocks[0]}
    out["kl_method"], out["entropy_method"] = _method(methods["kl"]), _method(methods["entropy"])
    return out


def _cat(parts, dim):
    if isinstance(parts[0], dict):
        return {key: torch.cat([p[key] for p in parts], dim) for key in parts[0]}
    return torch.cat(parts, dim)


def _one_pass(vae, x, num_samples, methods, keep_values):
    guide_trace, model_trace = _traces(vae, x, num_samples)
    shape = torch.Size((num_samples, x.shape[0]))
    zero = x.new_zeros(shape)
    out = {"log_likelihood": zero, "log_prior": zero, "kl": zero, "entropy": zero}
    values = {}
    for name, site in _sample_sites(model_trace):
        log_p = _site_log_prob(name, site, shape)
        if site["is_observed"]:
            out["log_likelihood"] = out["log_likelihood"] + log_p
            continue
        q, p = _latent_fns(guide_trace, model_trace, name)
        log_q = _site_log_prob(name, guide_trace.nodes[name], shape)
        kl, how = _closed_form_or(lambda q=q, p=p: kl_divergence(q, p), log_q - log_p, shape)
        methods["kl"].add(how)
        entropy, how = _closed_form_or(q.entropy, -log_q, shape)
        methods["entropy"].add(how)
        out["log_prior"] = out["log_prior"] + log_p
        out["kl"] = out["kl"] + kl
        out["entropy"] = out["entropy"] + entropy
        values[name] = site["value"]
    for name, site in _sample_sites(guide_trace):
        if not site["is_observed"] and name not in values:
            raise ValueError(
                f"Expected every latent site of the guide in the model but the guide's "
                f"{name!r} is not a latent site of the model"
            )
    out["log_joint"] = out["log_likelihood"] + out["log_prior"]
    if keep_values:
        out["values"] = values
    return out


def _rows(values, start, size):
    """Draws of rows start:start+size, site -> ``(S, size, ...)``."""
    return {name: value[:, start : start + size] for name, value in values.items()}


def _log_mixture(vae, x, values):
    """log (1/M) Σ_m q(z_ns | x_m) for the M rows of x at its draws, ``(S, M)``.

    ``values``: site -> ``(S, M, ...)`` draws; the draws are flattened and evaluated in
    chunks of C, under a plate of C particles with each draw broadcast over the M rows.
    """
    num_samples, num_rows = next(iter(values.values())).shape[:2]
    flat = {name: value.reshape(-1, *value.shape[2:]) for name, value in values.items()}
    step = max(1, _CHUNK_ROWS // num_rows)
    out = []
    for start in range(0, num_samples * num_rows, step):
        chunk = {name: value[start : start + step] for name, value in flat.items()}
        count = next(iter(chunk.values())).shape[0]
        data = {
            name: value.unsqueeze(1).expand(count, num_rows, *value.shape[1:])
            for name, value in chunk.items()
        }
        with pyro.plate("particles", count, dim=-2):
            trace = poutine.trace(poutine.condition(vae.guide, data=data)).get_trace(x)
        shape = torch.Size((count, num_rows))
        log_q = sum(_site_log_prob(name, site, shape) for name, site in _sample_sites(trace))
        out.append(log_q.logsumexp(-1) - math.log(num_rows))
    return torch.cat(out).reshape(num_samples, num_rows)


def _is_diagonal_normal(fn):
    return (
        isinstance(fn, Independent)
        and isinstance(fn.base_dist, Normal)
        and fn.reinterpreted_batch_ndims == 1
    )


def _monte_carlo_mean(vae, x, site, num_samples):
    """Mean of ``num_samples`` draws of ``site`` per row of x, ``(N, D)``."""
    rows, samples = _chunks(x.shape[0], num_samples)
    means = []
    for start in range(0, x.shape[0], rows):
        xb = x[start : start + rows]
        total = 0.0
        for s in range(0, num_samples, samples):
            with pyro.plate("particles", min(samples, num_samples - s), dim=-2):
                trace = poutine.trace(vae.guide).get_trace(xb)
            total = total + trace.nodes[site]["value"].sum(0)
        means.append(total.reshape(xb.shape[0], -1) / num_samples)
    return torch.cat(means)
