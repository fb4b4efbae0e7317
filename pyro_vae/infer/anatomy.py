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

Averaged over the data, the KL term splits further into I_q(x; z) and
KL(q(z) ‖ p(z)) (Hoffman & Johnson 2016, "ELBO surgery"): :func:`elbo_surgery`, with
:func:`active_units`, in :mod:`pyro_vae.infer.surgery` (re-exported here).

All read the distributions from Pyro traces of the user's own model and guide
(:mod:`pyro_vae.infer.traces`, :mod:`pyro_vae.infer.elbo_terms`): every sample site sits
in a plate over the rows of x at dim -1, and draws are made under a plate of particles at
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

from dataclasses import dataclass

import torch

from .._checks import check_int
from ..models.base import BaseVAE
from .elbo_terms import elbo_terms, mean_and_se
from .evaluation import Evaluation, Summary, evaluate_unchecked
from .quadrature import quadrature_posterior
from .surgery import ActiveUnits, ElboSurgery, active_units, elbo_surgery
from .traces import check_inputs, param_store_as_found, seeded

# ActiveUnits, ElboSurgery, active_units and elbo_surgery: re-exported from .surgery.
__all__ = [
    "ActiveUnits",
    "ElboDecompositions",
    "ElboSurgery",
    "active_units",
    "elbo_decompositions",
    "elbo_surgery",
]

_LOG_PX_METHODS = ("auto", "exact", "quadrature", "importance_sampling")
_WAYS = ("reconstruction_minus_kl", "expected_joint_plus_entropy", "evidence_minus_gap")
_TERMS = ("reconstruction", "kl_prior", "expected_log_joint", "entropy", "log_px", "gap")


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
        ``"importance_sampling"``; ``"gap"`` ``"monte_carlo"`` where log p(x) is exact
        and the guide has no closed-form KL (see :func:`elbo_decompositions`).
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
        return Summary.from_estimates(
            self.values, self.std_errors, self.num_samples, _WAYS + _TERMS
        )


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
      (``exact_log_likelihood``, ``exact_posterior_kl``), no error; with a guide that is
      not Gaussian (a flow, a Student-t, a mixture), which has no closed-form KL to the
      Gaussian p(z|x), log p(x) in closed form and the gap by Monte Carlo,
      log p(x) + mean of log q(z_s|x) − log p(x, z_s) over S further draws
      (``methods["gap"] == "monte_carlo"``, its standard error that of (3));
    - ``"quadrature"``: by :func:`pyro_vae.quadrature_posterior` for a
      :class:`pyro_vae.models.base.BaseVAE` with z_dim ≤ 2; the error given is the grid's
      error estimate ``error`` for log p(x) and the gap and 2·``error`` for (3): a
      deterministic error bound, not a standard error;
    - ``"importance_sampling"``: log p̂(x) = log (1/K) Σ_k w_k over K =
      ``log_px_samples`` further independent draws (Burda et al. 2016, sec. 5.1), as
      :func:`pyro_vae.evaluate`, with its delta-method standard error, and the gap
      log p̂(x) − ELBÔ on those same K draws; or, given ``evaluation``, the log p̂(x),
      gap and ELBÔ that :func:`pyro_vae.evaluate` already computed from its K draws
      (no new draws: the costliest part of this function, done once where the caller
      evaluates anyway, as :func:`pyro_vae.experiments.compare.compare` does).

    ``"auto"`` takes the first that applies, in that order; for a BaseVAE subclass that
    overrides ``guide`` (whose q(z|x) is not ``encode()``'s) only importance sampling,
    which traces the guide, applies.

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
        ``"quadrature"`` on a model that is not a BaseVAE with z_dim ≤ 2, either on
        a BaseVAE subclass that overrides ``guide``); a site's log-density not of
        shape ``(S, batch)``; a latent site of the model that the guide does not
        sample; a guide with an observed site; ``evaluation`` not an Evaluation with ``log_px``,
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
    x = check_inputs(vae, x, seed)
    check_int("num_samples", num_samples, minimum=2)
    check_int("log_px_samples", log_px_samples, minimum=2)
    method = _log_px_method(vae, log_px)
    _check_evaluation(evaluation, x.shape[0], log_px_samples)
    with param_store_as_found(), seeded(seed, x.device):
        first = elbo_terms(vae, x, num_samples)
        second = elbo_terms(vae, x, num_samples)
        values, ses = {}, {}
        for name, draws in (
            ("reconstruction_minus_kl", first["log_likelihood"] - first["kl"]),
            ("reconstruction", first["log_likelihood"]),
            ("kl_prior", first["kl"]),
            ("expected_joint_plus_entropy", second["log_joint"] + second["entropy"]),
            ("expected_log_joint", second["log_joint"]),
            ("entropy", second["entropy"]),
        ):
            values[name], ses[name] = mean_and_se(draws)
        third, gap_method = _evidence_and_gap(
            vae, x, method, log_px_samples, evaluation, num_samples
        )
        for name, (value, se) in third.items():
            values[name], ses[name] = value.to(x.dtype), se.to(x.dtype)
    methods = {
        "reconstruction": "monte_carlo",
        "kl_prior": first["kl_method"],
        "expected_log_joint": "monte_carlo",
        "entropy": second["entropy_method"],
        "log_px": method,
        "gap": gap_method,
    }
    samples = log_px_samples if method == "importance_sampling" else None
    return ElboDecompositions(values, ses, methods, num_samples, samples)


# ------------------------------------------------------------------ helpers


def _log_px_method(vae, log_px):
    """The method for log p(x) and the gap, or a ValueError naming ``log_px``."""
    if log_px not in _LOG_PX_METHODS:
        raise ValueError(f"Expected log_px to be one of {_LOG_PX_METHODS} but got {log_px!r}")
    exact = callable(getattr(vae, "exact_log_likelihood", None)) and callable(
        getattr(vae, "exact_posterior_kl", None)
    )
    quadrature = isinstance(vae, BaseVAE) and vae.z_dim in (1, 2)
    # Both read q(z|x) as encode()'s distribution: not the guide of an overriding subclass.
    own_guide = not isinstance(vae, BaseVAE) or vae.encoder_is_guide
    if log_px == "auto":
        if not own_guide:
            return "importance_sampling"
        return "exact" if exact else "quadrature" if quadrature else "importance_sampling"
    if log_px in ("exact", "quadrature") and not own_guide:
        vae.require_encoder_guide(f"log_px={log_px!r}")
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


def _evidence_and_gap(vae, x, method, log_px_samples, evaluation=None, num_samples=None):
    """``name -> (value, error)`` for log_px, gap and evidence_minus_gap, ``(batch,)``,
    and the gap's method; by importance sampling from ``evaluation``'s estimates when
    given; the exact log p(x) with a Monte-Carlo gap on ``num_samples`` draws when the
    guide has no closed-form KL."""
    gap_method = method
    if method == "exact":
        log_px = vae.exact_log_likelihood(x)
        zero = torch.zeros_like(log_px)
        try:
            gap, errors = vae.exact_posterior_kl(x), (zero, zero, zero)
        except ValueError:  # x and the guide were checked: a guide that is not Gaussian
            gap, gap_se = _monte_carlo_gap(vae, x, log_px, num_samples)
            errors, gap_method = (zero, gap_se, gap_se), "monte_carlo"
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
    }, gap_method


def _monte_carlo_gap(vae, x, log_px, num_samples):
    """KL(q(z|x) ‖ p(z|x)) = E_q[log q(z|x) − log p(x, z)] + log p(x) on S new draws:
    mean and s.e. ``(batch,)``."""
    terms = elbo_terms(vae, x, num_samples)
    return mean_and_se(log_px + terms["log_guide"] - terms["log_joint"])
