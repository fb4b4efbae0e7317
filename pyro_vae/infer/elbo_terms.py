r"""Per-draw terms of the ELBO from the trace core: log p(x|z), log p(z), KL and entropy.

For S draws z_s ~ q(z|x) of each data point, :func:`elbo_terms` returns, each of shape
``(S, batch)`` in nats, the log-likelihood, the log-prior, the log joint and per draw
the KL(q(z|x) ‖ p(z)) and entropy H[q(z|x)] terms: in closed form per latent site
where torch registers ``kl_divergence`` for the guide's and the model's distribution of
the site (and the guide's ``.entropy()``), by Monte Carlo on the same draws otherwise
(log q − log p and −log q). A guide with sample sites that are not latent sites of the
model (an autoguide's auxiliary ``"z_unconstrained"``) is traced whole: its KL and
entropy are then Monte Carlo over the log-density of every guide site. The users are
:func:`pyro_vae.elbo_decompositions` and :func:`pyro_vae.elbo_surgery`.
"""

import math

import torch
from torch.distributions import kl_divergence

from .traces import chunks, sample_sites, site_log_prob, trace_particles

__all__ = ["auxiliary_sites", "elbo_terms", "latent_fns", "mean_and_se"]


def mean_and_se(draws):
    """Mean over draws (dim 0) and its standard error std / √S, each ``(batch,)``."""
    return draws.mean(0), draws.std(0) / math.sqrt(draws.shape[0])


def auxiliary_sites(guide_trace, model_trace):
    """Names of the guide's sample sites that are not latent sites of the model (list)."""
    return [
        name
        for name, _ in sample_sites(guide_trace)
        if name not in model_trace.nodes or model_trace.nodes[name]["is_observed"]
    ]


def latent_fns(guide_trace, model_trace, name, label=None):
    """The guide's and the model's distribution of latent site ``name``.

    ``label`` names the site in the error message (default: "the latent site 'name'").

    Raises
    ------
    ValueError
        Unless both the guide and the model sample ``name`` as a latent site.
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
        latents = [n for n, s in sample_sites(guide_trace) if not s["is_observed"]]
        raise ValueError(
            f"Expected {label or f'the latent site {name!r}'} to be sampled by the guide and "
            f"by the model but the guide's latent sites are {latents}"
        )
    return guide_site["fn"], model_site["fn"]


def elbo_terms(vae, x, num_samples, keep_values=False):
    """Per-draw terms of S draws z ~ q(z|x) per point, ``(S, batch)`` each, nats.

    Parameters
    ----------
    vae : object with ``model`` and ``guide``
        Pyro model and guide taking x (checked by the caller).
    x : torch.Tensor
        Data, shape ``(batch, ...)``.
    num_samples : int
        S, draws per point, made in the chunks of :func:`pyro_vae.infer.traces.chunks`.
    keep_values : bool, default False
        Also return the draws of the model's latent sites.

    Returns
    -------
    dict
        ``"log_likelihood"``, ``"log_prior"``, ``"log_joint"``, ``"log_guide"``,
        ``"kl"`` and ``"entropy"``, each ``(S, batch)``; ``"kl_method"`` and
        ``"entropy_method"``: ``"analytic"``, ``"monte_carlo"`` or ``"mixed"``
        (analytic for some latent sites only); with ``keep_values``, ``"values"``, a
        dict site -> ``(S, batch, ...)``.

    Raises
    ------
    ValueError
        If a site's log-density is not ``(S, batch)``, a latent site of the model is
        not sampled by the guide, or the guide has an observed site.
    """
    blocks, methods = [], {"kl": set(), "entropy": set()}
    for rows, particles in chunks(x.shape[0], num_samples):
        parts = [_one_pass(vae, x[rows], count, methods, keep_values) for count in particles]
        blocks.append({key: _cat([p[key] for p in parts], 0) for key in parts[0]})
    out = {key: _cat([b[key] for b in blocks], 1) for key in blocks[0]}
    out["kl_method"], out["entropy_method"] = _method(methods["kl"]), _method(methods["entropy"])
    return out


def _cat(parts, dim):
    if isinstance(parts[0], dict):
        return {key: torch.cat([p[key] for p in parts], dim) for key in parts[0]}
    return torch.cat(parts, dim)


def _method(used):
    return used.pop() if len(used) == 1 else "mixed"


def _closed_form_or(compute, fallback, shape):
    """``compute()`` broadcast to shape, else the Monte-Carlo fallback; and which."""
    try:
        return torch.broadcast_to(compute(), shape), "analytic"
    except (NotImplementedError, RuntimeError):
        return fallback, "monte_carlo"


def _one_pass(vae, x, num_samples, methods, keep_values):
    guide_trace, model_trace = trace_particles(vae.model, vae.guide, x, num_samples)
    shape = torch.Size((num_samples, x.shape[0]))
    zero = x.new_zeros(shape)
    out = {"log_likelihood": zero, "log_prior": zero, "kl": zero, "entropy": zero}
    values = {}
    auxiliary = auxiliary_sites(guide_trace, model_trace)
    for name, site in sample_sites(model_trace):
        log_p = site_log_prob(name, site, shape)
        if site["is_observed"]:
            out["log_likelihood"] = out["log_likelihood"] + log_p
            continue
        q, p = latent_fns(guide_trace, model_trace, name)
        out["log_prior"] = out["log_prior"] + log_p
        values[name] = site["value"]
        if auxiliary:  # the site's own q is not its density: see below
            continue
        log_q = site_log_prob(name, guide_trace.nodes[name], shape, "guide")
        kl, how = _closed_form_or(lambda q=q, p=p: kl_divergence(q, p), log_q - log_p, shape)
        methods["kl"].add(how)
        entropy, how = _closed_form_or(q.entropy, -log_q, shape)
        methods["entropy"].add(how)
        out["kl"] = out["kl"] + kl
        out["entropy"] = out["entropy"] + entropy
    log_guide = zero
    for name, site in sample_sites(guide_trace):
        log_guide = log_guide + site_log_prob(name, site, shape, "guide")
    if auxiliary:  # log q(z|x) is the sum over every guide site: Monte Carlo
        out["kl"], out["entropy"] = log_guide - out["log_prior"], -log_guide
        methods["kl"].add("monte_carlo")
        methods["entropy"].add("monte_carlo")
    out["log_joint"] = out["log_likelihood"] + out["log_prior"]
    out["log_guide"] = log_guide
    if keep_values:
        out["values"] = values
    return out
