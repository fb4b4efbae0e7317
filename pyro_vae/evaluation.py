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
  (Kong 1992);
- the gap log p(x) − ELBO, which estimates KL(q(z|x) ‖ p(z|x)).

All weights come from Pyro traces of the user's model and guide run under a plate of
S particles (dim -2), so any model/guide pair whose sample sites sit in one
``"data"`` plate works.

References
----------
1. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
2. D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
3. A. Kong, "A note on importance sampling using standardized weights", Tech. Rep. 348,
   Dept. of Statistics, University of Chicago, 1992.
"""

import math
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from .models import check_data

__all__ = ["Evaluation", "evaluate", "log_importance_weights"]

_CHUNK_ROWS = 2**17  # particles × data points per model pass: bounds memory


def log_importance_weights(model, guide, x, num_samples, **kwargs):
    """Per-point log-density terms of S joint draws z ~ q(z|x), traced with Pyro.

    Parameters
    ----------
    model, guide : callable
        Pyro model and guide taking ``(x, **kwargs)``, with every sample site inside a
        plate at dim -1 over the rows of x.
    x : torch.Tensor
        Data, shape ``(batch, x_dim)``.
    num_samples : int
        S, draws per data point.

    Returns
    -------
    dict of torch.Tensor
        ``"log_likelihood"`` (Σ over observed sites of log p(x|z)), ``"log_prior"``
        (Σ over latent model sites of log p(z)) and ``"log_guide"`` (log q(z|x)), each of
        shape ``(num_samples, batch)`` in nats, unscaled by any subsampling.

    Raises
    ------
    ValueError
        If a site's log-density does not have shape ``(num_samples, batch)``.
    """
    with pyro.plate("particles", num_samples, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(x, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, **kwargs)
    terms = {"log_likelihood": 0.0, "log_prior": 0.0, "log_guide": 0.0}
    for trace, role in ((model_trace, "model"), (guide_trace, "guide")):
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            log_p = site["fn"].log_prob(site["value"])
            if log_p.shape != (num_samples, x.shape[0]):
                raise ValueError(
                    f"Expected site {name!r} to have a log-density of shape "
                    f"{(num_samples, x.shape[0])} (particles, data) but got "
                    f"{tuple(log_p.shape)}: put every sample site in the data plate"
                )
            if role == "guide":
                key = "log_guide"
            else:
                key = "log_likelihood" if site["is_observed"] else "log_prior"
            terms[key] = terms[key] + log_p
    return terms


@dataclass(frozen=True)
class Evaluation:
    """Per-point estimates from :func:`evaluate`.

    Attributes
    ----------
    values : dict of str to torch.Tensor
        Each of shape ``(batch,)``, nats per data point: ``"elbo"``,
        ``"reconstruction"`` (E_q log p(x|z)), ``"kl"`` (KL(q(z|x) ‖ p(z))),
        ``"iwae_{k}"`` for each k, ``"log_px"`` (L_S) and ``"gap"`` (log p(x) − ELBO);
        also ``"ess"``, the importance-sampling effective sample size (draws).
    std_errors : dict of str to torch.Tensor
        Monte-Carlo standard error of each estimate in ``values`` (nats), shape
        ``(batch,)``; for ``"gap"`` the errors of its two terms in quadrature (an
        upper bound, as the two share their draws and are positively correlated).
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
        dict of str to (float, float)
            ``name -> (mean, se)`` in nats per data point, with
            se = √(Σ_i se_i²) / batch (independent draws per point).
        """
        out = {}
        for name, value in self.values.items():
            se = self.std_errors.get(name)
            n = value.numel()
            mc_se = float(se.square().sum().sqrt() / n) if se is not None else math.nan
            out[name] = (float(value.mean()), mc_se)
        return out


def _point_statistics(terms, ks):
    """Estimates and standard errors from log-weight terms of shape (S, batch)."""
    log_w = terms["log_likelihood"] + terms["log_prior"] - terms["log_guide"]
    num_samples = log_w.shape[0]
    values, ses = {}, {}
    for name, draws in (
        ("elbo", log_w),
        ("reconstruction", terms["log_likelihood"]),
        ("kl", terms["log_guide"] - terms["log_prior"]),
    ):
        values[name] = draws.mean(0)
        ses[name] = draws.std(0) / math.sqrt(num_samples)
    for k in ks:
        groups = num_samples // k
        grouped = log_w[: groups * k].reshape(groups, k, -1)
        bound = grouped.logsumexp(1) - math.log(k)
        values[f"iwae_{k}"] = bound.mean(0)
        ses[f"iwae_{k}"] = bound.std(0) / math.sqrt(groups) if groups > 1 else None
    log_sum = log_w.logsumexp(0)
    ess = (2 * log_sum - (2 * log_w).logsumexp(0)).exp()
    values["log_px"] = log_sum - math.log(num_samples)
    ses["log_px"] = (1 / ess - 1 / num_samples).clamp(min=0).sqrt()
    values["gap"] = values["log_px"] - values["elbo"]
    ses["gap"] = (ses["log_px"].square() + ses["elbo"].square()).sqrt()
    values["ess"] = ess
    return values, {key: se for key, se in ses.items() if se is not None}


@torch.no_grad()
def evaluate(vae, x, num_samples=5000, ks=(1, 5, 50), seed=0, **kwargs):
    """Held-out ELBO, IWAE bounds and log p(x) per data point, in nats.

    Draws ``num_samples`` z ~ q_φ(z|x) per point in memory-bounded chunks (at most
    2¹⁷ particle-rows per model pass) and reduces them as described in the module
    docstring; L_S over all draws is the log p(x) estimate.

    Parameters
    ----------
    vae : object with ``model`` and ``guide``
        E.g. :class:`pyro_vae.VAE`; any Pyro model/guide pair with a ``"data"`` plate.
    x : torch.Tensor
        Held-out data, shape ``(batch, x_dim)``.
    num_samples : int, default 5000
        S, importance samples per point (K = 5000 is the standard of Burda et al.).
    ks : tuple of int, default (1, 5, 50)
        The k of the IWAE bounds L_k to report; each ≤ ``num_samples``.
    seed : int or None, default 0
        Seed of the draws (the global RNG state is restored afterwards); None uses
        the global RNG.
    **kwargs
        Passed to ``model`` and ``guide``.

    Returns
    -------
    Evaluation
        Per-point values and standard errors, shape ``(batch,)`` each.

    Raises
    ------
    ValueError
        For bad data (wrong width, NaN/inf, empty, outside [0, 1] for a Bernoulli
        likelihood), ``num_samples`` < 2 or a k outside [1, num_samples].
    """
    if hasattr(vae, "x_dim"):
        x = check_data(x, vae, "x")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"Expected num_samples to be an integer >= 2 but got {num_samples!r}")
    for k in ks:
        if not 1 <= k <= num_samples:
            raise ValueError(f"Expected each k in ks in [1, {num_samples}] but got {k!r}")
    return _evaluate(vae, x, num_samples, ks, seed, **kwargs)


@torch.no_grad()
def _evaluate(vae, x, num_samples, ks, seed, **kwargs):
    """:func:`evaluate` without argument checks, for callers that checked them once."""
    batch_rows = max(1, min(x.shape[0], _CHUNK_ROWS // num_samples))
    sample_rows = max(1, min(num_samples, _CHUNK_ROWS // batch_rows))
    with torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        per_batch = []
        for start in range(0, x.shape[0], batch_rows):
            xb = x[start : start + batch_rows]
            chunks = [
                log_importance_weights(
                    vae.model,
                    vae.guide,
                    xb,
                    min(sample_rows, num_samples - s),
                    **kwargs,
                )
                for s in range(0, num_samples, sample_rows)
            ]
            terms = {key: torch.cat([c[key] for c in chunks]) for key in chunks[0]}
            per_batch.append(_point_statistics(terms, ks))
    values = {key: torch.cat([v[key] for v, _ in per_batch]) for key in per_batch[0][0]}
    ses = {key: torch.cat([s[key] for _, s in per_batch]) for key in per_batch[0][1]}
    return Evaluation(values, ses, num_samples)
