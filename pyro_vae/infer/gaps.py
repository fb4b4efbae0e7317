r"""Where the gap comes from: the approximation and amortization gaps of a guide.

The inference gap log p(x) − ELBO(q_φ) = KL(q_φ(z|x) ‖ p_θ(z|x)) splits at the best guide
q* of the amortized guide's own family, fitted to each data point alone
(:mod:`pyro_vae.infer.local`; Cremer, Li & Duvenaud 2018, eq. 3):

.. math::

    \underbrace{\log p(x) - \mathcal L[q_\phi]}_{\text{inference gap}}
    = \underbrace{\log p(x) - \mathcal L[q^*]}_{\text{approximation gap}}
    + \underbrace{\mathcal L[q^*] - \mathcal L[q_\phi]}_{\text{amortization gap}}.

The approximation gap is what the family costs (a richer family, a flow, shrinks it); the
amortization gap is what the encoder costs by sharing one network across points (a
larger encoder, or more training of it, shrinks it).

The split rests on the log p(x) estimate. :func:`inference_gaps` uses the best the package
has: the closed form on the linear-Gaussian model, quadrature for z_dim ≤ 2, otherwise the
importance-sampling estimate L_K (K = ``num_samples``) with the highest mean among the
proposals q_φ and each fitted q*. Every IS estimate is biased low, so beyond 2-D latents
the approximation gap is a lower bound on the true one and ``log_px_source`` says which
estimate was used.

References
----------
1. C. Cremer, X. Li, D. Duvenaud, "Inference Suboptimality in Variational Autoencoders",
   ICML 2018.
"""

from dataclasses import dataclass, field

import torch
from torch.distributions import Independent, Normal, TransformedDistribution

from .._checks import check_int
from .evaluation import evaluate_unchecked
from .local import FAMILIES, check_family, fit_local_guides, local_estimates
from .quadrature import quadrature_posterior
from .traces import check_inputs

__all__ = ["InferenceGaps", "amortized_family", "inference_gaps"]


@dataclass
class InferenceGaps:
    """What :func:`inference_gaps` returns.

    Attributes
    ----------
    values, std_errors : dict of str to torch.Tensor
        Per data point, shape ``(B,)``, nats, with their Monte-Carlo standard errors:
        ``log_px``; ``elbo`` (the amortized guide q_φ); ``elbo_local_<family>`` for each
        fitted family; for the amortized guide's own family, ``approximation_gap`` =
        log_px − elbo_local_<family>, ``amortization_gap`` = elbo_local_<family> − elbo and
        ``inference_gap`` = log_px − elbo (their sum).
    family : str or None
        The amortized guide's family (``"diagonal"`` or ``"flow"``), None if neither.
    log_px_source : str
        ``"exact"``, ``"quadrature"`` or ``"is:<proposal>"`` (``"is:amortized"``,
        ``"is:local_diagonal"``, …).
    local : dict of str to LocalGuides
        The fitted per-point guides by family.
    """

    values: dict = field(default_factory=dict)
    std_errors: dict = field(default_factory=dict)
    family: str | None = None
    log_px_source: str = ""
    local: dict = field(default_factory=dict)

    def summary(self):
        """Mean over the points of each value with its Monte-Carlo s.e., nats per point.

        Returns
        -------
        dict of str to (float, float)
            (mean, s.e.), the s.e. that of the mean of independent per-point errors,
            √(Σ se_i²) / B.
        """
        out = {}
        for name, value in self.values.items():
            se = self.std_errors[name]
            out[name] = (value.mean().item(), se.square().sum().sqrt().item() / value.numel())
        return out


def amortized_family(vae, x):
    """The family of ``vae``'s guide q_φ(z|x): ``"diagonal"``, ``"flow"`` or None."""
    if not vae.encoder_is_guide:
        return None
    q = vae.encode(x[:1])
    if isinstance(q, Independent) and isinstance(q.base_dist, Normal):
        return "diagonal"
    if isinstance(q, TransformedDistribution):
        return "flow"
    return None


@torch.no_grad()
def _log_px(vae, x, num_samples, seed, amortized, local):
    """The best log p(x) estimate (values, s.e., source)."""
    if callable(getattr(vae, "exact_log_likelihood", None)):
        value = vae.exact_log_likelihood(x)
        return value, torch.zeros_like(value), "exact"
    if vae.z_dim <= 2 and vae.encoder_is_guide:
        post = quadrature_posterior(vae, x)
        return post.log_px.to(x.dtype), post.error.to(x.dtype), "quadrature"
    candidates = {"amortized": amortized}
    candidates.update({f"local_{family}": est for family, est in local.items()})
    name = max(candidates, key=lambda key: candidates[key][0]["log_px"].mean().item())
    values, ses = candidates[name]
    return values["log_px"], ses["log_px"], f"is:{name}"


def inference_gaps(vae, x, families=FAMILIES, num_samples=5000, seed=0, **fit_kwargs):
    """log p(x), ELBOs of q_φ and of the per-point optimal q*, and the gaps between them.

    Parameters
    ----------
    vae : pyro_vae.BaseVAE
    x : torch.Tensor
        Data, shape ``(B, x_dim)`` (held-out points, say).
    families : sequence of str, default ("diagonal", "flow")
        The per-point families to fit (:data:`pyro_vae.infer.local.FAMILIES`). The split
        into approximation and amortization gaps needs the amortized guide's own family
        among them.
    num_samples : int, default 5000
        Draws per point for each ELBO and importance-sampling estimate.
    seed : int or None, default 0
        Seed of every draw (the global RNG state is restored).
    **fit_kwargs
        Passed to :func:`pyro_vae.infer.local.fit_local_guides` (``init``,
        ``max_steps``, ``num_particles``, ``lr``, …).

    Returns
    -------
    InferenceGaps
        ``summary()`` gives (mean, s.e.) in nats per point.

    Raises
    ------
    ValueError
        For bad data, an unknown or repeated family, ``num_samples`` < 2, or the errors
        of :func:`~pyro_vae.infer.local.fit_local_guides`.

    Examples
    --------
    >>> gaps = inference_gaps(vae, data.test[:100], families=("diagonal",))
    >>> gaps.summary()["approximation_gap"], gaps.summary()["amortization_gap"]
    """
    families = tuple(families)
    for family in families:
        check_family(family)
    if not families or len(set(families)) != len(families):
        raise ValueError(f"Expected distinct families from {FAMILIES} but got {families!r}")
    check_int("num_samples", num_samples, minimum=2)
    x = check_inputs(vae, x, seed)
    result = InferenceGaps(family=amortized_family(vae, x))
    amortized = evaluate_unchecked(vae, x, num_samples, (), seed, khat=False)
    amortized = (amortized.values, amortized.std_errors)
    local = {}
    for family in families:
        guides = fit_local_guides(vae, x, family, seed=seed, **fit_kwargs)
        result.local[family] = guides
        local[family] = local_estimates(vae, x, guides, num_samples, seed)
    log_px, log_px_se, result.log_px_source = _log_px(vae, x, num_samples, seed, amortized, local)
    values, ses = result.values, result.std_errors
    values["log_px"], ses["log_px"] = log_px, log_px_se
    values["elbo"], ses["elbo"] = amortized[0]["elbo"], amortized[1]["elbo"]
    for family, (est, est_se) in local.items():
        values[f"elbo_local_{family}"], ses[f"elbo_local_{family}"] = est["elbo"], est_se["elbo"]
    if result.family in local:
        local_elbo = values[f"elbo_local_{result.family}"]
        local_se = ses[f"elbo_local_{result.family}"]
        values["approximation_gap"] = log_px - local_elbo
        ses["approximation_gap"] = _hypot(log_px_se, local_se)
        values["amortization_gap"] = local_elbo - values["elbo"]
        ses["amortization_gap"] = _hypot(local_se, ses["elbo"])
        values["inference_gap"] = log_px - values["elbo"]
        ses["inference_gap"] = _hypot(log_px_se, ses["elbo"])
    return result


def _hypot(a, b):
    """s.e. of a difference of independent estimates."""
    return (a.square() + b.square()).sqrt()
