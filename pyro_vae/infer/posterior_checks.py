r"""The guide against a reference posterior: draws from q_φ(z|x) with their importance
log-weights, and per-point distances between two posteriors.

- :func:`sample_guide`: draws z ~ q_φ(z|x) with log w = log p(x, z) − log q(z|x), as an
  ArviZ ``InferenceData`` in the layout of :func:`pyro_vae.sample_posterior`;
- :func:`compare_posteriors`: per data point, how far an approximation (the guide) is
  from a reference (MCMC draws, or an exact or quadrature posterior);
- :func:`gaussian_w2`: the 2-Wasserstein distance between Gaussian fits.

References
----------
1. C. R. Givens, R. M. Shortt, "A class of Wasserstein metrics for probability
   distributions", Michigan Math. J. 31(2):231–240, 1984.
2. Y. Yao, A. Vehtari, D. Simpson, A. Gelman, "Yes, but Did It Work?: Evaluating
   Variational Inference", ICML 2018.
"""

import contextlib
import warnings
from collections.abc import Sequence

import numpy as np
import pyro
import torch

from .._checks import check_int
from . import diagnostics
from .traces import (
    check_inputs,
    chunks,
    log_density_terms,
    param_store_as_found,
    sample_sites,
    seeded,
    trace_particles,
)

__all__ = ["check_datum", "compare_posteriors", "exact_kl", "gaussian_w2", "sample_guide"]


def sample_guide(vae, x, num_samples=1000, seed=0, datum=None, device=None):
    r"""Draws z_s ~ q_φ(z|x) with their log importance weights, per data point.

    .. math:: \log w_s = \log p(z_s) + \log p_\theta(x \mid z_s) - \log q_\phi(z_s \mid x)

    in the layout of :func:`sample_posterior` (one chain), for
    :func:`compare_posteriors`: the weights' Pareto k̂ says whether q_φ(z|x) covers
    p_θ(z|x) well enough to serve as an importance-sampling proposal (Yao et al. 2018).
    The guide is traced (:mod:`pyro_vae.infer.traces`): log q sums every sample site
    of the guide, so an autoguide whose density sits on an auxiliary site is counted
    whole, and the draws are the same as :func:`pyro_vae.evaluate`'s with the same
    seed and chunks.

    Parameters
    ----------
    vae : object with ``model`` and ``guide``
        E.g. :class:`pyro_vae.VAE`, a subclass with its own ``guide``, or a module
        pairing ``vae.model`` with an autoguide; the model's only latent site is
        ``"z"``. Parameters held fixed (``vae.frozen()`` where it has it), Pyro's param
        store left as found.
    x : torch.Tensor
        Data points, shape ``(B, x_dim)``.
    num_samples : int, default 1000
        Draws per data point (≥ 2).
    seed : int or None, default 0
        Seed of the draws; the global torch RNG state is left as found. None uses the
        global RNG.
    datum : sequence, optional
        Labels of the data points, length B; default ``0, …, B − 1``.
    device : str or torch.device, optional
        As in :func:`sample_posterior`.

    Returns
    -------
    arviz.InferenceData
        ``posterior.z`` with dims ``(chain, draw, datum, latent)`` (one chain),
        ``sample_stats.log_weight`` with dims ``(chain, draw, datum)`` (nats), and
        ``observed_data.x`` with dims ``(datum, pixel)``.

    Raises
    ------
    ValueError
        If x does not fit the model, ``num_samples`` is not an integer ≥ 2, ``seed``
        neither an integer nor None, ``datum`` does not hold B labels, the model has a
        latent site other than ``"z"``, the guide has an observed site, or ``device``
        is not a device name (or is CUDA where PyTorch sees no GPU).

    See Also
    --------
    pyro_vae.log_importance_weights : the same weights, without the draws.
    """
    x = check_inputs(vae, x, seed, device, place=True)
    check_int("num_samples", num_samples, 2)
    labels = check_datum(datum, x.shape[0])
    held = vae.frozen() if callable(getattr(vae, "frozen", None)) else contextlib.nullcontext()
    blocks = []
    with held, param_store_as_found(), seeded(seed, x.device), torch.no_grad():
        with pyro.validation_enabled(False):
            for rows, particles in chunks(x.shape[0], num_samples):
                parts = [_weighted_draws(vae, x[rows], count) for count in particles]
                blocks.append([torch.cat(part) for part in zip(*parts, strict=True)])
    z, log_w = (torch.cat(part, 1) for part in zip(*blocks, strict=True))
    return diagnostics.posterior_inference_data(
        diagnostics.as_numpy(z)[None],
        {"log_weight": diagnostics.as_numpy(log_w)[None]},
        diagnostics.as_numpy(x),
        datum=labels,
        attrs={"method": "guide"},
    )


def _weighted_draws(vae, x, num_samples):
    """Draws of ``"z"`` ``(S, B, D)`` and their log-weights ``(S, B)`` from one pass."""
    guide_trace, model_trace = trace_particles(vae.model, vae.guide, x, num_samples)
    latents = [name for name, site in sample_sites(model_trace) if not site["is_observed"]]
    if latents != ["z"]:
        raise ValueError(f"Expected the model's only latent site to be 'z' but it has {latents}")
    terms = log_density_terms(guide_trace, model_trace, torch.Size((num_samples, x.shape[0])))
    log_w = terms["log_likelihood"] + terms["log_prior"] - terms["log_guide"]
    return model_trace.nodes["z"]["value"], log_w


def check_datum(datum, num_rows):
    """Labels of ``num_rows`` data points: ``datum`` as an array, or ``0, …, B − 1``.

    Raises
    ------
    ValueError
        Unless ``datum`` is None or a sequence of ``num_rows`` distinct labels.
    """
    if datum is None:
        return np.arange(num_rows)
    if isinstance(datum, str) or not isinstance(datum, Sequence | np.ndarray | torch.Tensor):
        raise ValueError(f"Expected datum to be a sequence of {num_rows} labels but got {datum!r}")
    labels = np.asarray(datum)
    if labels.shape != (num_rows,) or len(set(labels.tolist())) != num_rows:
        raise ValueError(
            f"Expected datum to hold {num_rows} distinct labels, one per row of x, but "
            f"got shape {labels.shape}"
        )
    return labels


def compare_posteriors(reference, approximation):
    r"""Per data point, how far an approximate posterior is from a reference.

    Parameters
    ----------
    reference : arviz.InferenceData or object
        Either draws from p_θ(z|x) (:func:`sample_posterior`; its R̂, bulk ESS and
        divergences are checked), or an exact or quadrature posterior: any object with
        attributes ``mean`` (B, D), ``cov`` (B, D, D), ``log_px`` (B,), ``kl_guide``
        (B,) and ``error`` (B,), as ``pyro_vae.infer.quadrature.quadrature_posterior``
        returns (duck-typed).
    approximation : arviz.InferenceData
        Draws on the same data points (:func:`sample_guide`, or another
        :func:`sample_posterior` run).

    Returns
    -------
    pandas.DataFrame
        One row per data point, indexed by ``datum``. For each latent dimension d,
        ``mean_error_{d}`` = (μ_q,d − μ_p,d) / σ_p,d (reference posterior s.d. units)
        and ``sd_ratio_{d}`` = σ_q,d / σ_p,d; ``w2``, the 2-Wasserstein distance
        between the Gaussian fits N(μ_p, Σ_p) and N(μ_q, Σ_q) (latent units); ``khat``,
        the Pareto k̂ of the approximation's log-weights when it has them (k̂ < 0.5:
        a good proposal; > 0.7: unreliable, Yao et al. 2018); for a quadrature
        reference, ``kl_exact`` = its ``kl_guide`` (KL(q_φ ‖ p_θ(z|x)), nats, of the
        guide of the VAE it was computed for) where it converged, NaN where not
        (:func:`exact_kl`), ``reference_error`` = its ``error`` and, when it has
        ``converged``, ``reference_converged``;
        for an MCMC reference, ``rhat_max``, ``ess_bulk_min`` (over latent dims) and
        ``divergences`` (post-warm-up count).

    Raises
    ------
    ValueError
        If the two do not cover the same data points (labels, for two InferenceData)
        and latent dimensions, or an argument has neither layout.

    Warns
    -----
    UserWarning
        Naming the data points whose MCMC reference has R̂ > 1.01, bulk ESS < 400 or a
        divergence, or whose quadrature reference did not converge: the reference is
        not trustworthy there.

    Notes
    -----
    The Gaussian fits use the draws' means and covariances (ddof 1). For Gaussians
    (Givens & Shortt 1984)

    .. math:: W_2^2 = \lVert \mu_p - \mu_q \rVert^2 + \operatorname{tr}\Big(\Sigma_p
              + \Sigma_q - 2 \big(\Sigma_p^{1/2} \Sigma_q \Sigma_p^{1/2}\big)^{1/2}\Big),

    with symmetric square roots from eigendecompositions.

    References
    ----------
    1. C. R. Givens, R. M. Shortt, "A class of Wasserstein metrics for probability
       distributions", Michigan Math. J. 31(2):231–240, 1984.
    2. Y. Yao, A. Vehtari, D. Simpson, A. Gelman, "Yes, but Did It Work?: Evaluating
       Variational Inference", ICML 2018.
    """
    import pandas as pd

    q_mean, q_cov, labels = _gaussian_fit(approximation, "approximation")
    columns = {}
    if _is_inference_data(reference):
        p_mean, p_cov, reference_labels = _gaussian_fit(reference, "reference")
        if not np.array_equal(reference_labels, labels):
            raise ValueError(
                f"Expected reference and approximation on the same data points but got datum "
                f"{reference_labels.tolist()} and {labels.tolist()}"
            )
        checks = diagnostics.convergence_table(reference)
    elif all(hasattr(reference, a) for a in ("mean", "cov", "log_px", "kl_guide", "error")):
        p_mean, p_cov = (
            diagnostics.as_numpy(reference.mean).astype(float),
            diagnostics.as_numpy(reference.cov).astype(float),
        )
        checks = None
        columns["kl_exact"] = exact_kl(reference, labels, stacklevel=3)
        columns["reference_error"] = diagnostics.as_numpy(reference.error)
        if getattr(reference, "converged", None) is not None:
            columns["reference_converged"] = diagnostics.as_numpy(reference.converged)
    else:
        raise ValueError(
            "Expected reference to be an InferenceData from sample_posterior or an object "
            f"with mean, cov, log_px, kl_guide and error but got {type(reference).__name__}"
        )
    if p_mean.shape != q_mean.shape or p_cov.shape != q_cov.shape:
        raise ValueError(
            f"Expected reference and approximation on the same (datum, latent) = "
            f"{q_mean.shape} but the reference has {p_mean.shape}"
        )
    p_sd = np.sqrt(np.diagonal(p_cov, axis1=-2, axis2=-1))
    q_sd = np.sqrt(np.diagonal(q_cov, axis1=-2, axis2=-1))
    table = {}
    for d in range(p_mean.shape[1]):
        table[f"mean_error_{d}"] = (q_mean[:, d] - p_mean[:, d]) / p_sd[:, d]
    for d in range(p_mean.shape[1]):
        table[f"sd_ratio_{d}"] = q_sd[:, d] / p_sd[:, d]
    table["w2"] = gaussian_w2(p_mean, p_cov, q_mean, q_cov)
    stats = getattr(approximation, "sample_stats", None)
    if stats is not None and "log_weight" in stats:
        log_w = stats["log_weight"].transpose("chain", "draw", "datum").values
        khat = diagnostics.pareto_khat(torch.from_numpy(log_w.reshape(-1, log_w.shape[-1])))
        table["khat"] = khat.numpy()
    table.update(columns)
    if checks is not None:
        table.update(checks)
        diagnostics.warn_unconverged(checks, labels, "The reference")
    return pd.DataFrame(table, index=pd.Index(labels, name="datum"))


def exact_kl(reference, labels=None, stacklevel=2):
    """KL(q_φ ‖ p_θ(z|x)) of an exact or quadrature reference where it is exact, else NaN.

    Parameters
    ----------
    reference : object
        With ``kl_guide`` (B,), nats, and optionally ``converged`` (B,), as
        :func:`pyro_vae.quadrature_posterior` returns; without ``converged`` (a closed
        form) every KL is exact.
    labels : array-like, optional
        The data points' labels, length B, for the warning; default ``0, …, B − 1``.
    stacklevel : int, default 2
        Of the warning.

    Returns
    -------
    numpy.ndarray
        The KLs, shape ``(B,)``, NaN where ``converged`` is False: there the quadrature
        knows the KL only to within its ``error``, which may be far above its tolerance
        (a heavy-tailed guide's KL has a part beyond the grid).

    Warns
    -----
    UserWarning
        Naming the data points whose KL is left NaN.
    """
    kl = diagnostics.as_numpy(reference.kl_guide).astype(float)
    converged = getattr(reference, "converged", None)
    if converged is None:
        return kl
    converged = diagnostics.as_numpy(converged).astype(bool)
    if not converged.all():
        labels = np.arange(kl.shape[0]) if labels is None else np.asarray(labels)
        failing = [str(v) for v in labels[~converged]]
        named = ", ".join(failing[: diagnostics.MAX_NAMED])
        if len(failing) > diagnostics.MAX_NAMED:
            named += f" and {len(failing) - diagnostics.MAX_NAMED} more"
        warnings.warn(
            f"The quadrature reference did not converge for {len(failing)} data point(s), "
            f"whose KL(q || p(z|x)) is not exact and is left NaN in kl_exact: datum {named} "
            "(their error estimates are the reference's .error)",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
    return np.where(converged, kl, np.nan)


def gaussian_w2(mean_p, cov_p, mean_q, cov_q):
    r"""2-Wasserstein distance between N(μ_p, Σ_p) and N(μ_q, Σ_q), batched.

    Parameters
    ----------
    mean_p, mean_q : numpy.ndarray
        Means, shape ``(..., D)``.
    cov_p, cov_q : numpy.ndarray
        Symmetric positive semi-definite covariances, shape ``(..., D, D)``.

    Returns
    -------
    numpy.ndarray
        W₂, shape ``(...)``, in the units of the means.

    Notes
    -----
    W₂² = ‖μ_p − μ_q‖² + tr(Σ_p + Σ_q − 2 (Σ_p^{1/2} Σ_q Σ_p^{1/2})^{1/2})
    (Givens & Shortt 1984); negative rounding of the trace term is clipped to 0.
    """
    root_p = _sqrtm(cov_p)
    cross = _sqrtm(root_p @ cov_q @ root_p)
    trace = np.trace(cov_p + cov_q - 2 * cross, axis1=-2, axis2=-1)
    return np.sqrt(np.sum((mean_p - mean_q) ** 2, axis=-1) + np.clip(trace, 0.0, None))


def _sqrtm(cov):
    evals, evecs = np.linalg.eigh((cov + np.swapaxes(cov, -1, -2)) / 2)
    return (evecs * np.sqrt(np.clip(evals, 0.0, None))[..., None, :]) @ np.swapaxes(evecs, -1, -2)


# ---------------------------------------------------------------------------- helpers


def _is_inference_data(value):
    return hasattr(value, "groups") and hasattr(value, "posterior")


def _gaussian_fit(idata, name):
    """Mean (B, D) and covariance (B, D, D) of ``posterior.z`` over chains and draws."""
    if not _is_inference_data(idata) or "z" not in idata.posterior:
        raise ValueError(
            f"Expected {name} to be an InferenceData with posterior variable z but got "
            f"{type(idata).__name__}"
        )
    z = idata.posterior["z"].transpose("chain", "draw", "datum", "latent").values
    z = z.reshape(-1, *z.shape[2:]).astype(float)
    mean = z.mean(0)
    centred = z - mean
    cov = np.einsum("sbi,sbj->bij", centred, centred) / max(z.shape[0] - 1, 1)
    return mean, cov, idata.posterior["datum"].values
