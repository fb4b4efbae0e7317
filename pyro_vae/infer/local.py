r"""Per-data-point optimal guides q*(z|x): the guide family fitted to each point alone.

With the decoder θ and the prior held fixed, each data point x_i gets a guide of its own,
fitted by maximizing its ELBO,

.. math::

    q^*_i = \arg\max_{q \in \mathcal Q} \; \mathbb E_{q}\big[\log p_\theta(x_i, z)
    - \log q(z)\big],

so that ELBO(q*) is the best bound the family 𝒬 reaches at θ, whatever an encoder can
amortize (Cremer, Li & Duvenaud 2018, sec. 3). All points of a batch are fitted at once, as
one set of tensors (one row of parameters per point). Two families:

- ``"diagonal"``: N(μ_i, diag σ_i²), the family of the default amortized guide;
- ``"flow"``: that Gaussian pushed through K conditional affine autoregressive transforms
  (IAF, Kingma et al. 2016) whose context is a free vector c_i per point; the transforms'
  weights are shared by the batch's points and fitted with them (a per-point context, not
  per-point weights).

The procedure is Cremer et al.'s (their code, ``chriscremer/Inference-Suboptimality``):
Adam with learning rate 1e-3 and 50 particles per step; every 100 steps the mean of the
last 100 losses is compared with the best such mean so far, and the fit stops after more
than 10 checks without improvement (here on the loss summed over the batch, i.e. when the
slowest point has stopped improving). The guide starts from the amortized guide q_φ(z|x)
(``init="amortized"``) or from the prior N(0, I) (``init="prior"``, Cremer's choice).

No gradient reaches θ or the encoder (the model is held in
:meth:`~pyro_vae.models.base.BaseVAE.frozen`), and Pyro's param store is not touched.

References
----------
1. C. Cremer, X. Li, D. Duvenaud, "Inference Suboptimality in Variational Autoencoders",
   ICML 2018.
2. D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling, "Improved
   Variational Inference with Inverse Autoregressive Flow", NeurIPS 2016.
"""

import math
from dataclasses import dataclass, field

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import Permute, conditional_affine_autoregressive
from torch import nn

from .._checks import check_int
from .evaluation import point_estimates
from .traces import CHUNK_ROWS, check_inputs, guide_moments, log_joint, seeded

__all__ = [
    "FAMILIES",
    "INITS",
    "LocalGuides",
    "check_family",
    "fit_local_guides",
    "local_estimates",
]

FAMILIES = ("diagonal", "flow")
"""The per-point guide families of :func:`fit_local_guides`."""

INITS = ("amortized", "prior")
"""Where :func:`fit_local_guides` starts: the amortized guide, or N(0, I)."""


class _LocalDiagonal(nn.Module):
    """N(μ_i, diag σ_i²), one row of parameters per data point."""

    def __init__(self, loc, scale):
        super().__init__()
        self.loc = nn.Parameter(loc.clone())
        self.log_scale = nn.Parameter(scale.log().clone())

    def forward(self):
        return dist.Normal(self.loc, self.log_scale.exp()).to_event(1)


class _LocalFlow(nn.Module):
    """N(μ_i, diag σ_i²) through K conditional IAF layers with context c_i per point."""

    def __init__(self, loc, scale, num_transforms=2, context_dim=8, hidden=32):
        super().__init__()
        z_dim = loc.shape[-1]
        self.loc = nn.Parameter(loc.clone())
        self.log_scale = nn.Parameter(scale.log().clone())
        gen = torch.Generator().manual_seed(0)
        self.context = nn.Parameter(
            0.1 * torch.randn(loc.shape[0], context_dim, generator=gen).to(loc)
        )
        self.transforms = nn.ModuleList(
            conditional_affine_autoregressive(
                z_dim, context_dim, hidden_dims=[max(hidden, z_dim)]
            ).to(loc)
            for _ in range(num_transforms)
        )
        self.register_buffer("order", torch.arange(z_dim - 1, -1, -1, device=loc.device))

    def forward(self):
        base = dist.Normal(self.loc, self.log_scale.exp()).to_event(1)
        parts = []
        for i, transform in enumerate(self.transforms):
            if i:
                parts.append(Permute(self.order))
            parts.append(transform.condition(self.context))
        return dist.TransformedDistribution(base, parts)


@dataclass
class LocalGuides:
    """What :func:`fit_local_guides` returns: the fitted q*_i of each data point.

    Attributes
    ----------
    family : str
        ``"diagonal"`` or ``"flow"``.
    modules : list of torch.nn.Module
        One per chunk of rows; ``module()`` is the chunk's q* as a distribution with batch
        shape ``(rows,)`` and event shape ``(z_dim,)``.
    rows : list of slice
        The data rows of each module.
    steps : list of int
        Adam steps taken per chunk.
    losses : list of list of float
        Per chunk, the loss (negative ELBO estimate summed over the chunk's points, nats)
        at every step.
    converged : list of bool
        Per chunk: whether the stopping rule ended the fit (else ``max_steps`` did).
    """

    family: str
    modules: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    converged: list = field(default_factory=list)


def _initial_moments(vae, x, init, num_draws=256):
    """Mean and s.d. of the starting Gaussian, each ``(B, z_dim)``."""
    if init == "prior":
        zeros = x.new_zeros(x.shape[0], vae.z_dim)
        return zeros, torch.ones_like(zeros)
    with torch.no_grad():
        mean, std = guide_moments(vae.encode(x), x.device, num_draws)
        return mean.detach(), std.detach()


def check_family(family):
    """``family`` if it is one of :data:`FAMILIES`, else a one-line ValueError."""
    if family not in FAMILIES:
        raise ValueError(f"Expected family in {FAMILIES} but got {family!r}")
    return family


def fit_local_guides(
    vae,
    x,
    family="diagonal",
    init="amortized",
    *,
    num_particles=50,
    lr=1e-3,
    check_every=100,
    patience=10,
    max_steps=20000,
    seed=0,
    num_transforms=2,
):
    """Fit a guide of ``family`` to each row of x alone, with the decoder held fixed.

    Parameters
    ----------
    vae : pyro_vae.BaseVAE
        The model: its prior N(0, I) and ``likelihood_dist`` give log p_θ(x, z); its
        guide supplies the starting point with ``init="amortized"``.
    x : torch.Tensor
        Data, shape ``(B, x_dim)``.
    family : {"diagonal", "flow"}, default "diagonal"
        The per-point family (see the module docstring).
    init : {"amortized", "prior"}, default "amortized"
        Start at the amortized guide's mean and s.d. (a flow's: of 256 of its draws) or
        at N(0, I).
    num_particles : int, default 50
        Draws z ~ q per point and step (the reparameterized ELBO gradient).
    lr : float, default 1e-3
        Adam's learning rate.
    check_every, patience : int, default 100 and 10
        Every ``check_every`` steps compare the mean loss of the last ``check_every``
        steps with the best such mean; stop after more than ``patience`` checks without
        improvement.
    max_steps : int, default 20000
        A cap on the steps per chunk of rows.
    seed : int or None, default 0
        Seed of the draws (the global RNG state is restored).
    num_transforms : int, default 2
        IAF layers of the ``"flow"`` family.

    Returns
    -------
    LocalGuides

    Raises
    ------
    ValueError
        For bad data (as :func:`pyro_vae.evaluate`), an unknown ``family`` or ``init``,
        a count that is not a positive integer, or a ``vae`` without a
        ``likelihood_dist`` (not a :class:`~pyro_vae.BaseVAE`).
    """
    check_family(family)
    if init not in INITS:
        raise ValueError(f"Expected init in {INITS} but got {init!r}")
    if not callable(getattr(vae, "likelihood_dist", None)):
        raise ValueError(
            "Expected vae to be a pyro_vae BaseVAE (prior N(0, I) and likelihood_dist) for "
            f"per-point guides but got {type(vae).__name__}"
        )
    for name, value in (("num_particles", num_particles), ("check_every", check_every),
                        ("patience", patience), ("max_steps", max_steps),
                        ("num_transforms", num_transforms)):  # fmt: skip
        check_int(name, value)
    if not (isinstance(lr, float | int) and not isinstance(lr, bool) and lr > 0):
        raise ValueError(f"Expected lr to be a number > 0 but got {lr!r}")
    x = check_inputs(vae, x, seed)
    rows_per_chunk = max(1, CHUNK_ROWS // num_particles)
    result = LocalGuides(family)
    with vae.frozen(), seeded(seed, x.device):
        for start in range(0, x.shape[0], rows_per_chunk):
            rows = slice(start, min(start + rows_per_chunk, x.shape[0]))
            _fit_chunk(vae, x[rows], rows, family, init, num_particles, lr, check_every,
                       patience, max_steps, num_transforms, result)  # fmt: skip
    return result


def _fit_chunk(vae, x, rows, family, init, particles, lr, every, patience, max_steps, k, out):
    loc, scale = _initial_moments(vae, x, init)
    if family == "diagonal":
        module = _LocalDiagonal(loc, scale)
    else:
        module = _LocalFlow(loc, scale, num_transforms=k)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    losses, best, stale, converged = [], math.inf, 0, False
    for step in range(1, max_steps + 1):
        q = module()
        z = q.rsample((particles,))
        loss = -(log_joint(vae, x, z) - q.log_prob(z)).mean(0).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % every == 0:
            recent = sum(losses[-every:]) / every
            if recent < best:
                best, stale = recent, 0
            else:
                stale += 1
                if stale > patience:
                    converged = True
                    break
    for p in module.parameters():
        p.requires_grad_(False)
    out.modules.append(module)
    out.rows.append(rows)
    out.steps.append(step)
    out.losses.append(losses)
    out.converged.append(converged)


@torch.no_grad()
def local_estimates(vae, x, guides, num_samples=5000, seed=0):
    """ELBO and importance-sampling log p(x) per point with the fitted q*_i.

    Parameters
    ----------
    vae : pyro_vae.BaseVAE
    x : torch.Tensor
        The data the guides were fitted to, shape ``(B, x_dim)``.
    guides : LocalGuides
    num_samples : int, default 5000
        Draws z ~ q*_i per point (Cremer et al. use 1000–5000).
    seed : int or None, default 0

    Returns
    -------
    values, std_errors : dict of str to torch.Tensor
        ``"elbo"`` (ELBO(q*_i), the mean of log p(x, z) − log q*(z)) and ``"log_px"``
        (log of the mean weight, q*_i as proposal), with their Monte-Carlo standard
        errors (as :func:`pyro_vae.infer.evaluation.point_estimates`), nats, shape
        ``(B,)``.
    """
    check_int("num_samples", num_samples, minimum=2)
    x = check_inputs(vae, x, seed)
    values = {"elbo": x.new_empty(x.shape[0]), "log_px": x.new_empty(x.shape[0])}
    ses = {key: torch.empty_like(value) for key, value in values.items()}
    with vae.frozen(), seeded(seed, x.device):
        for module, rows in zip(guides.modules, guides.rows, strict=True):
            q, xb = module(), x[rows]
            per_pass = max(1, CHUNK_ROWS // xb.shape[0])
            parts = []
            for s in range(0, num_samples, per_pass):
                z = q.sample((min(per_pass, num_samples - s),))
                parts.append((log_joint(vae, xb, z), q.log_prob(z)))
            joint = torch.cat([p[0] for p in parts])
            terms = {
                "log_likelihood": joint,
                "log_prior": torch.zeros_like(joint),
                "log_guide": torch.cat([p[1] for p in parts]),
            }
            block, block_se = point_estimates(terms, (), khat=False)
            for key in values:
                values[key][rows] = block[key]
                ses[key][rows] = block_se[key]
    return values, ses
