"""Is the trained guide q_φ(z|x) the model's posterior p_θ(z|x)? HMC and quadrature say.

:func:`check_guide` draws the exact posterior of a few data points with the batched HMC
sampler (:func:`pyro_vae.sample_posterior`), draws the guide, tabulates their agreement
per point (:func:`pyro_vae.compare_posteriors`) and, for 2-D latents, adds the exact
KL(q‖p(z|x)) by quadrature; :func:`summarize_agreement` reduces the table to the medians
the comparison reports.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..infer.mcmc import sample_posterior
from ..infer.posterior_checks import compare_posteriors, exact_kl, sample_guide
from ..infer.quadrature import quadrature_posterior

if TYPE_CHECKING:
    import pandas

__all__ = ["GuideCheck", "check_guide", "summarize_agreement"]


@dataclass
class GuideCheck:
    """What :func:`check_guide` returns.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per checked data point (:func:`pyro_vae.compare_posteriors`), with
        ``kl_exact`` (KL(q‖p(z|x)) by quadrature, NaN where it did not converge:
        :func:`pyro_vae.infer.posterior_checks.exact_kl`) and ``quadrature_error`` for
        2-D latents.
    posterior : arviz.InferenceData
        HMC draws of p_θ(z|x) (:func:`pyro_vae.sample_posterior`).
    guide : arviz.InferenceData
        Draws of q_φ(z|x) with their log weights (:func:`pyro_vae.sample_guide`).
    exact : QuadraturePosterior or None
        The quadrature posterior for z_dim ≤ 2, else None.
    vae : pyro_vae.models.base.BaseVAE
        The model checked.
    """

    table: object
    posterior: object
    guide: object
    exact: object = None
    vae: object = None


def check_guide(
    vae: torch.nn.Module,
    x: torch.Tensor,
    num_samples: int = 1000,
    warmup_steps: int = 500,
    num_chains: int = 4,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> "GuideCheck":
    """Compare a guide q_φ(z|x) with the exact posterior p_θ(z|x) on the rows of x.

    Draws the posterior with the batched HMC sampler and the guide, tabulates their
    agreement per data point (:func:`pyro_vae.compare_posteriors`: mean error in
    posterior s.d., s.d. ratio, 2-Wasserstein distance between Gaussian fits, Pareto
    k̂ of q as an importance proposal, R̂, bulk ESS and divergences of the reference),
    and for z_dim ≤ 2 adds the exact KL(q‖p(z|x)) by quadrature.

    Parameters
    ----------
    vae : pyro_vae.models.base.BaseVAE
        The trained model; θ is held fixed.
    x : torch.Tensor
        Data points, shape ``(B, x_dim)``.
    num_samples, warmup_steps, num_chains, seed, device
        As :func:`pyro_vae.sample_posterior`; ``num_samples`` guide draws too.

    Returns
    -------
    GuideCheck

    Raises
    ------
    ValueError
        As :func:`pyro_vae.sample_posterior`.
    """
    posterior = sample_posterior(
        vae, x, num_samples, warmup_steps, num_chains, seed=seed, device=device
    )
    guide = sample_guide(vae, x, num_samples, seed=seed, device=device)
    table = compare_posteriors(posterior, guide)
    exact = None
    if vae.z_dim <= 2:
        exact = quadrature_posterior(vae, x)
        table["kl_exact"] = exact_kl(exact, table.index.values)
        table["quadrature_error"] = exact.error.cpu().numpy()
    return GuideCheck(table, posterior, guide, exact, vae)


def summarize_agreement(table: "pandas.DataFrame") -> dict:
    """Medians over data points of a guide-vs-posterior table, and the worst chain checks.

    Parameters
    ----------
    table : pandas.DataFrame
        As :attr:`GuideCheck.table`.

    Returns
    -------
    dict
        ``mean_error`` (median over points and dims of the absolute mean error, posterior s.d.),
        ``sd_ratio`` (median of guide s.d. / posterior s.d.), ``w2``, ``khat`` and,
        when present, ``kl_exact`` (medians, nats for KL); ``rhat_max``,
        ``ess_bulk_min``, ``divergences`` (total) of the reference; ``num_points``.
    """
    columns = list(table.columns)
    out = {"num_points": int(len(table))}
    errors = [c for c in columns if c.startswith("mean_error_")]
    ratios = [c for c in columns if c.startswith("sd_ratio_")]
    if errors:
        out["mean_error"] = float(table[errors].abs().stack().median())
    if ratios:
        out["sd_ratio"] = float(table[ratios].stack().median())
    for name in ("w2", "khat", "kl_exact"):
        if name in columns:
            out[name] = float(table[name].median())
    if "rhat_max" in columns:
        out["rhat_max"] = float(table["rhat_max"].max())
    if "ess_bulk_min" in columns:
        out["ess_bulk_min"] = float(table["ess_bulk_min"].min())
    if "divergences" in columns:
        out["divergences"] = int(table["divergences"].sum())
    return out
