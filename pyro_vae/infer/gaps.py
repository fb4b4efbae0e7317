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

import types
import warnings
from dataclasses import dataclass, field

import torch
from pyro import poutine
from pyro.distributions import Delta
from torch.distributions import Independent, Normal, TransformedDistribution

from .._checks import check_int
from ..models.base import BaseVAE
from .evaluation import Summary, evaluate_unchecked
from .local import FAMILIES, check_family, fit_local_guides, local_estimates
from .quadrature import quadrature_posterior
from .traces import check_inputs, param_store_as_found, row_kwargs, sample_sites

__all__ = ["InferenceGaps", "amortized_family", "inference_gaps"]


@dataclass
class InferenceGaps:
    """What :func:`inference_gaps` returns.

    Attributes
    ----------
    values, std_errors : dict of str to torch.Tensor
        Per data point, shape ``(B,)``, nats, with their Monte-Carlo standard errors:
        ``log_px``; ``elbo`` (the amortized guide q_φ, or the ``guide`` given);
        ``elbo_local_<family>`` for each fitted family; ``inference_gap`` = log_px −
        elbo; for a guide of one of the families (``family`` not None), at its own
        family, ``approximation_gap`` = log_px − elbo_local_<family> and
        ``amortization_gap`` = elbo_local_<family> − elbo (their sum is
        ``inference_gap``).
    family : str or None
        The guide's family (``"diagonal"`` or ``"flow"``), None if neither (then the gap
        is not split, with a warning).
    log_px_source : str
        ``"exact"``, ``"quadrature"`` or ``"is:<proposal>"`` (``"is:amortized"``, the
        guide whose gap is split; ``"is:local_diagonal"``, …).
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
        pyro_vae.infer.evaluation.Summary
            A dict of str to (mean, s.e.), the s.e. that of the mean of independent
            per-point errors, √(Σ se_i²) / B. Printed, a table.
        """
        out = Summary(num_points=next((v.numel() for v in self.values.values()), None))
        for name, value in self.values.items():
            se = self.std_errors[name]
            out[name] = (value.mean().item(), se.square().sum().sqrt().item() / value.numel())
        return out


def amortized_family(vae, x):
    """The family of ``vae``'s guide q_φ(z|x): ``"diagonal"``, ``"flow"`` or None."""
    if not vae.encoder_is_guide:
        return None
    return _family_of(vae.encode(x[:1]))


def _family_of(q):
    if isinstance(q, Independent) and isinstance(q.base_dist, Normal):
        return "diagonal"
    if isinstance(q, TransformedDistribution):
        return "flow"
    return None


def _guide_family(vae, guide, x):
    """The family of ``guide`` (None: vae's own), from the density of a trace on x's
    first row: an autoguide's ``Delta`` at ``"z"`` carries none, its auxiliary
    ``"z_unconstrained"`` (the identity transform of the real z) all of it."""
    if guide is None:
        return amortized_family(vae, x)
    kwargs = row_kwargs(vae.model, guide, x, {})(slice(0, 1))
    with torch.no_grad(), param_store_as_found():
        trace = poutine.trace(guide).get_trace(x[:1], **kwargs)
    fns = [site["fn"] for _, site in sample_sites(trace) if not isinstance(site["fn"], Delta)]
    return _family_of(fns[0]) if len(fns) == 1 else None


def _check_vae_and_guide(vae, guide):
    if not isinstance(vae, BaseVAE):
        raise ValueError(
            "Expected vae to be a pyro_vae BaseVAE (its prior and likelihood_dist give the "
            f"per-point fits) but got {type(vae).__name__}; for another guide of the VAE's "
            "model pass it apart: inference_gaps(vae, x, guide=AutoNormal(vae.model, "
            "create_plates=vae.create_plates))"
        )
    if guide is not None and not callable(guide):
        raise ValueError(
            "Expected guide to be None or a Pyro guide of vae.model (a callable taking x) "
            f"but got {type(guide).__name__}"
        )


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


def inference_gaps(vae, x, families=FAMILIES, num_samples=5000, seed=0, guide=None, **fit_kwargs):
    """log p(x), ELBOs of q_φ and of the per-point optimal q*, and the gaps between them.

    Parameters
    ----------
    vae : pyro_vae.BaseVAE
        The model (its prior and ``likelihood_dist``) and, unless ``guide`` is given,
        the guide whose gap is split.
    x : torch.Tensor
        Data, shape ``(B, x_dim)`` (held-out points, say); for a per-point ``guide``,
        the rows it was fitted to, in that order.
    families : str or sequence of str, default ("diagonal", "flow")
        The per-point families to fit (:data:`pyro_vae.infer.local.FAMILIES`; one
        string is one family). The guide's own family, which the split into
        approximation and amortization gaps needs, is fitted too when missing.
    num_samples : int, default 5000
        Draws per point for each ELBO and importance-sampling estimate.
    seed : int or None, default 0
        Seed of every draw (the global RNG state is restored).
    guide : callable, optional
        Another guide of ``vae.model`` whose gap to split, called as the estimators
        call guides (:mod:`pyro_vae.infer.traces`): a per-data-point autoguide
        ``AutoNormal(vae.model, create_plates=vae.create_plates)`` trained on x
        (family ``"diagonal"``; its "amortization gap" L[q*] − L[guide] is then what
        its own fit left). Default: ``vae.guide``. The per-point fits still start
        from ``vae``'s encoder with ``init="amortized"``.
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
        For bad data, an unknown or repeated family, ``num_samples`` < 2, a ``vae``
        that is not a :class:`~pyro_vae.BaseVAE` (an object pairing its model with
        an autoguide: pass the autoguide as ``guide``), a ``guide`` that is not
        callable, or the errors of :func:`~pyro_vae.infer.local.fit_local_guides` and
        :func:`pyro_vae.evaluate` (a global-latent autoguide, say).

    Warns
    -----
    UserWarning
        When the guide is of neither family (a full-covariance Gaussian, a
        Student-t): its gap is then not split, and ``values`` hold ``log_px``,
        ``elbo``, ``inference_gap`` and the local ELBOs only.

    Examples
    --------
    >>> gaps = inference_gaps(vae, data.test[:100], families=("diagonal",))
    >>> gaps.summary()["approximation_gap"], gaps.summary()["amortization_gap"]
    """
    families = (families,) if isinstance(families, str) else tuple(families)
    for family in families:
        check_family(family)
    if not families or len(set(families)) != len(families):
        raise ValueError(f"Expected distinct families from {FAMILIES} but got {families!r}")
    check_int("num_samples", num_samples, minimum=2)
    _check_vae_and_guide(vae, guide)
    x = check_inputs(vae, x, seed)
    result = InferenceGaps(family=_guide_family(vae, guide, x))
    if result.family is None:
        warnings.warn(
            "inference_gaps: the guide is of neither family of fit_local_guides "
            f"{FAMILIES}, so its gap is not split into approximation and amortization "
            "gaps; the result holds log_px, elbo, inference_gap and the local ELBOs",
            UserWarning,
            stacklevel=2,
        )
    elif result.family not in families:
        families = (*families, result.family)
    pair = vae if guide is None else types.SimpleNamespace(model=vae.model, guide=guide)
    amortized = evaluate_unchecked(pair, x, num_samples, (), seed, khat=False)
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
