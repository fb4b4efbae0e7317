r"""ELBO surgery and active units: the KL term averaged over the data, taken apart.

Averaged over the N data points, the KL term of the ELBO splits (Hoffman & Johnson
2016, "ELBO surgery"): with the aggregate posterior q(z) = (1/N) Σ_n q(z|x_n),

.. math::

    \frac1N \sum_n \mathrm{KL}(q(z \mid x_n) \,\|\, p(z))
    = I_q(x; z) + \mathrm{KL}(q(z) \,\|\, p(z)),

the mutual information between the data index and the code under q, and how far the
aggregate posterior is from the prior: :func:`elbo_surgery`. :func:`active_units`
counts the latent dimensions the guide uses (Burda et al. 2016, sec. 5.2) with each
dimension's share of the KL. Both read the user's model and guide through the trace
core (:mod:`pyro_vae.infer.traces`); :func:`pyro_vae.elbo_decompositions` is their
per-point sibling.

References
----------
1. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
2. J. He, D. Spokoyny, G. Neubig, T. Berg-Kirkpatrick, "Lagging Inference Networks and
   Posterior Collapse in Variational Autoencoders", ICLR 2019.
3. M. D. Hoffman, M. J. Johnson, "ELBO surgery: yet another way to carve up the
   variational evidence lower bound", NeurIPS Workshop on Advances in Approximate
   Bayesian Inference, 2016.
"""

import math
import numbers
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from torch.distributions import Independent, Normal, kl_divergence

from .._checks import check_int
from . import traces
from .elbo_terms import auxiliary_sites, elbo_terms, latent_fns, mean_and_se
from .evaluation import Summary
from .traces import (
    check_inputs,
    chunks,
    param_store_as_found,
    sample_sites,
    seeded,
    site_log_prob,
    trace_particles,
)

__all__ = ["ActiveUnits", "ElboSurgery", "active_units", "elbo_surgery"]


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
        return Summary.from_estimates(values, ses, self.num_samples, tuple(keys))


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
    x = check_inputs(vae, x, seed)
    check_int("num_samples", num_samples, minimum=2)
    if batch_size is not None:
        check_int("batch_size", batch_size)
    num_data = x.shape[0]
    size = num_data if batch_size is None else min(batch_size, num_data)
    with param_store_as_found(), seeded(seed, x.device):
        draws = elbo_terms(vae, x, num_samples, keep_values=True)
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
        values[name], ses[name] = mean_and_se(per_draw)
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
    x = check_inputs(vae, x, seed)
    real = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool)
    if not (real and math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"Expected threshold to be a finite number >= 0 but got {threshold!r}")
    check_int("num_samples", num_samples, minimum=2)
    with param_store_as_found(), seeded(seed, x.device):
        guide_trace, model_trace = trace_particles(vae.model, vae.guide, x)
        q, p = latent_fns(guide_trace, model_trace, site, f"site={site!r}")
        try:
            if auxiliary_sites(guide_trace, model_trace):  # q at the site is not its law
                raise NotImplementedError
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
    step = max(1, traces.CHUNK_ROWS // num_rows)
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
        unseen = [name for name, _ in sample_sites(trace) if name not in data]
        if unseen:
            raise ValueError(
                f"Expected a guide whose sample sites are the model's latents for "
                f"elbo_surgery (it needs q(z|x_m) at other points' draws) but its sites "
                f"{unseen} are not: use elbo_decompositions or evaluate, which trace it"
            )
        shape = torch.Size((count, num_rows))
        log_q = sum(site_log_prob(name, site, shape, "guide") for name, site in sample_sites(trace))
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
    means = []
    for rows, particles in chunks(x.shape[0], num_samples):
        total = 0.0
        for count in particles:
            with pyro.plate("particles", count, dim=-2):
                trace = poutine.trace(vae.guide).get_trace(x[rows])
            total = total + trace.nodes[site]["value"].sum(0)
        means.append(total.reshape(total.shape[0], -1) / num_samples)
    return torch.cat(means)
