r"""Draws from the posterior p_θ(z|x) of many data points at once, with θ held fixed.

The posterior of a VAE's latent z given one data point x,

.. math:: p_\theta(z \mid x) \propto p(z)\, p_\theta(x \mid z),

is what the guide q_φ(z|x) approximates; to judge the guide, one needs draws from it.
The posteriors of different data points are independent, so :func:`sample_posterior`
runs Hamiltonian Monte Carlo (HMC; Neal 2011) with one chain per (chain index, data
point), all chains advanced in lockstep by the batched kernel of
:mod:`pyro_vae.infer.hmc` on the potential U(z) = −log p(z) − log p_θ(x|z). Each chain
keeps its own step size (dual averaging, Hoffman & Gelman 2014) and its own diagonal
mass matrix (windowed adaptation as Stan's), so a narrow posterior does not set the
step of a wide one. The potential comes from a Pyro trace of the user's own
``vae.model``, so any model with one latent site ``"z"`` and observed sites in the
``"data"`` plate works. ``method="nuts"`` runs Pyro's own NUTS per data point instead
(:mod:`pyro_vae.infer.nuts`), the reference the batched sampler is tested against.

The draws come as an ArviZ ``InferenceData``; :mod:`pyro_vae.infer.posterior_checks`
compares them with the guide (:func:`~pyro_vae.sample_guide`,
:func:`~pyro_vae.compare_posteriors`).

References
----------
1. R. M. Neal, "MCMC using Hamiltonian dynamics", in Handbook of Markov Chain Monte
   Carlo, ch. 5, Chapman & Hall/CRC, 2011.
2. M. D. Hoffman, A. Gelman, "The No-U-Turn Sampler: Adaptively Setting Path Lengths
   in Hamiltonian Monte Carlo", J. Mach. Learn. Res. 15:1593–1623, 2014.
3. Stan Development Team, "Stan Reference Manual", sec. "HMC algorithm parameters"
   (windowed adaptation of the step size and mass matrix).
4. A. Vehtari, A. Gelman, D. Simpson, B. Carpenter, P.-C. Bürkner, "Rank-Normalization,
   Folding, and Localization: An Improved R̂ for Assessing Convergence of MCMC",
   Bayesian Analysis 16(2):667–718, 2021.
"""

import contextlib
import time
from collections.abc import Sequence

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from ..._checks import check_int
from ..._deprecation import renamed
from ..._device import on_device
from ...data import check_data
from .. import diagnostics
from ..evaluation import param_store_as_found
from ..traces import guide_moments
from .hmc import BatchedHMC, HMCState, check_target_accept_prob
from .nuts import nuts_reference

__all__ = ["sample_posterior"]

METHODS = ("hmc", "nuts")


def sample_posterior(
    vae,
    x,
    num_samples=1000,
    warmup_steps=500,
    num_chains=4,
    seed=0,
    method="hmc",
    num_steps=None,
    target_accept_prob=0.8,
    chunk_size=256,
    datum=None,
    posterior_predictive=True,
    progress=False,
    device=None,
    *,
    target_accept=None,
):
    r"""Draw from p_θ(z|x) for every row of x, with the decoder θ held fixed.

    ``method="hmc"`` runs ``num_chains`` HMC chains per data point, all B × chains
    chains in lockstep: one batched evaluation of U(z) = −log p(z) − log p_θ(x|z) and
    its gradient per leapfrog step. Each chain adapts its own step size and diagonal
    mass matrix during warm-up. ``method="nuts"`` runs Pyro's
    :class:`~pyro.infer.NUTS` (diagonal mass matrix, Pyro's defaults) one chain and one
    data point at a time from the same starting points: slow, the reference.

    Parameters
    ----------
    vae : pyro_vae.models.base.BaseVAE
        The model (``VAE``, ``LinearGaussianVAE``): ``model`` with latent site ``"z"``
        of event shape ``(z_dim,)``, and ``encode`` (q_φ(z|x) as a distribution, for the
        starting points and the initial mass matrix). Its parameters are held fixed
        (:meth:`~pyro_vae.models.base.BaseVAE.frozen`) and restored on exit.
    x : torch.Tensor
        Data points, shape ``(B, x_dim)``, validated as by the model.
    num_samples : int, default 1000
        Draws kept per chain, after warm-up.
    warmup_steps : int, default 500
        Adaptation iterations per chain, discarded.
    num_chains : int, default 4
        Independent chains per data point (≥ 2 for a between-chain R̂).
    seed : int, default 0
        Seed of the starting points, momenta and accept decisions. The global torch
        RNG state is left as found (:func:`torch.random.fork_rng`). For ``"hmc"`` the
        draws also depend on ``chunk_size`` (the chunk's draws share one stream).
    method : {"hmc", "nuts"}, default "hmc"
    num_steps : int or None, default None
        ``"hmc"``: leapfrog steps L per iteration, common to the chunk's chains.
        ``None`` picks L = round(0.6π / ε̃) in [1, 64], with ε̃ the chunk's median step
        size (whitened units), updated during warm-up and fixed after it (see Notes).
        Ignored by ``"nuts"``, whose trajectories stop at a U-turn.
    target_accept_prob : float, default 0.8
        Mean acceptance probability the step-size adaptation aims at, in (0, 1)
        (Pyro's and NumPyro's name).
    chunk_size : int, default 256
        ``"hmc"``: data points per lockstep batch. Memory grows as
        chunk_size × num_chains × (hidden width + x_dim) for the decoder's activations
        and gradient, and as num_chains × num_samples × B × (z_dim + x_dim) for the
        returned draws and posterior predictive (see Notes).
    datum : sequence, optional
        Labels of the data points (the ``datum`` coordinate), length B; default
        ``0, …, B − 1``.
    posterior_predictive : bool, default True
        Also draw x̃ ~ p_θ(x|z) at every draw (group ``posterior_predictive``, the
        largest array: chains × draws × B × x_dim).
    progress : bool, default False
        Show a progress bar.
    device : str or torch.device, optional
        Where to run the chains: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; default where
        the model's parameters are (:mod:`pyro_vae._device`), the model left there. A
        given device moves ``vae`` there in place. x goes where the model is; the
        returned draws are NumPy arrays (host memory).
    target_accept : float, optional
        The old name of ``target_accept_prob``, accepted for one release with a
        FutureWarning.

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior`` (``z``, dims ``(chain, draw, datum, latent)``),
        ``sample_stats`` (dims ``(chain, draw, datum)``: ``diverging`` (bool),
        ``step_size``, ``n_steps`` (leapfrog steps), ``lp`` (log p(x, z), nats) and,
        for ``"hmc"``, ``energy`` (the Hamiltonian H at the chain's state after the
        transition, nats) and ``acceptance_rate``; for ``"nuts"``, ``tree_depth``
        instead, as Pyro's public API gives no per-iteration energy or acceptance
        probability (:func:`~pyro_vae.infer.nuts.nuts_reference`)),
        ``observed_data`` (``x``, dims ``(datum, pixel)``) and, with
        ``posterior_predictive``, ``posterior_predictive`` (``x``, dims
        ``(chain, draw, datum, pixel)``). ``posterior.attrs`` holds ``method``,
        ``tuning_steps`` and ``sampling_time`` (seconds of wall time).

    Raises
    ------
    ValueError
        If x does not fit the model, an argument is out of range, ``datum`` does not
        hold B labels, the model has a latent site other than ``"z"``, ``device``
        is not a device name (or is CUDA where PyTorch sees no GPU), or both
        ``target_accept_prob`` and ``target_accept`` are given.

    Warns
    -----
    UserWarning
        Naming the data points where some coordinate has rank-normalized split-R̂ >
        1.01, bulk ESS < 400, or where a post-warm-up transition diverged
        (Vehtari et al. 2021): their draws are not to be trusted as they are.

    See Also
    --------
    sample_guide : the guide's draws in the same layout.
    compare_posteriors : guide against posterior, per data point.

    Notes
    -----
    Per chain, with momentum r ~ N(0, M), M = diag(m), one iteration integrates
    H(z, r) = U(z) + ½ rᵀ M⁻¹ r for L leapfrog steps of size ε
    (:func:`pyro.ops.integrator.velocity_verlet`) and accepts the end point with
    probability min(1, exp(H₀ − H_L)) (Metropolis; per chain). A transition with
    H_L − H₀ > 1000 nats or a non-finite energy is divergent and rejected.

    *Starting points and mass matrix.* Chains start at independent draws from the guide,
    z₀ ~ q_φ(z|x), and M⁻¹ starts as the guide's variance σ_φ(x)², so that the whitened
    coordinates M^{1/2} z have about unit scale from the first iteration (for a guide
    whose variance is infinite, a Student-t of df ≤ 2, the squared scale of its draws'
    interquartile range: :func:`~pyro_vae.infer.traces.guide_moments`).

    *Adaptation and trajectory length* (:class:`~pyro_vae.infer.hmc.BatchedHMC`, whose
    Notes give the details): during warm-up each chain adapts ε by dual averaging towards
    mean acceptance ``target_accept_prob`` and M⁻¹ to the Welford variances of its draws in
    Stan's windows; L = round(0.6π / ε̃) (integration time 0.6π in whitened units), and
    each chain's step is jittered every iteration, ε × Uniform(0.6, 1.4).

    *Memory.* The state (z, r, ∇U, M⁻¹) takes O(chains × chunk × z_dim); a leapfrog
    step's autograd graph O(chains × chunk × (hidden + x_dim)) floats; the returned draws
    chains × num_samples × B × z_dim and the posterior predictive chains × num_samples ×
    B × x_dim values (1.0e8 bytes in float32 for 4 × 1000 draws of 100 digits).
    Time grows with the leapfrog steps (0.6π/ε̃ per iteration: more for a curved
    posterior or a larger z_dim, as ε̃ shrinks like z_dim^{−1/4}) and sublinearly with
    chunk × chains (on a CPU a step's cost is mostly Pyro's tracing, not arithmetic).
    Per-datum BFMI: ``arviz.bfmi(idata.isel(datum=i))`` (ArviZ reads ``energy`` as
    ``(chain, draw)``).

    Examples
    --------
    >>> idata = sample_posterior(vae, data.test[:50])
    >>> arviz.summary(idata.posterior.sel(datum=0))
    >>> compare_posteriors(idata, sample_guide(vae, data.test[:50]))
    """
    target_accept_prob = renamed("sample_posterior()", "target_accept", target_accept,
                                 "target_accept_prob", target_accept_prob, 0.8,
                                 check=check_target_accept_prob)  # fmt: skip
    x, labels = _check_common(vae, x, datum, seed, device)
    check_int("num_samples", num_samples, 1)
    check_int("warmup_steps", warmup_steps, 0)
    check_int("num_chains", num_chains, 1)
    check_int("chunk_size", chunk_size, 1)
    if method not in METHODS:
        raise ValueError(f"Expected method in {METHODS} but got {method!r}")
    if num_steps is not None:
        check_int("num_steps", num_steps, 1)
    settings = dict(
        num_samples=num_samples,
        warmup_steps=warmup_steps,
        target_accept_prob=check_target_accept_prob(target_accept_prob),
        progress=progress,
    )
    start = time.perf_counter()
    with _held_fixed(vae, x, seed):
        if method == "hmc":
            chunks = [
                _hmc_chunk(vae, x[i : i + chunk_size], num_chains, num_steps, **settings)
                for i in range(0, x.shape[0], chunk_size)
            ]
            z = torch.cat([c[0] for c in chunks], dim=2)
            stats = {k: torch.cat([c[1][k] for c in chunks], dim=2) for k in chunks[0][1]}
        else:
            z0 = _starting_points(vae.encode(x), num_chains)
            z, stats = nuts_reference(vae.model, x, z0, **settings)
        elapsed = time.perf_counter() - start
        x_pred = _posterior_predictive(vae.model, z) if posterior_predictive else None
    idata = diagnostics.posterior_inference_data(
        diagnostics.as_numpy(z),
        {k: diagnostics.as_numpy(v) for k, v in stats.items()},
        diagnostics.as_numpy(x),
        x_pred=None if x_pred is None else diagnostics.as_numpy(x_pred),
        datum=labels,
        attrs={"method": method, "tuning_steps": warmup_steps, "sampling_time": elapsed},
    )
    diagnostics.warn_unconverged(
        diagnostics.convergence_table(idata), labels, "The posterior draws"
    )
    return idata


def _log_joint(model, x, z):
    """log p(z) + log p_θ(x|z) of each row of z, (n, B), from a trace of ``model``."""
    with pyro.plate("chains", z.shape[0], dim=-2):
        trace = poutine.trace(poutine.condition(model, data={"z": z})).get_trace(x)
    log_joint = 0.0
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if not site["is_observed"]:
            raise ValueError(f"Expected the model's only latent site to be 'z' but it has {name!r}")
        log_p = site["fn"].log_prob(site["value"])
        if log_p.shape != z.shape[:2]:
            raise ValueError(
                f"Expected site {name!r} to have a log-density of shape {tuple(z.shape[:2])} "
                f"(chains, data) but got {tuple(log_p.shape)}: put it in the data plate"
            )
        log_joint = log_joint + log_p
    return log_joint


def _hmc_chunk(
    vae, x, num_chains, num_steps, num_samples, warmup_steps, target_accept_prob, progress
):
    """Warm-up and draws of num_chains × B chains in lockstep: z (C, S, B, D), stats."""
    q = vae.encode(x)
    z = _starting_points(q, num_chains)

    def potential(z):
        return -_log_joint(vae.model, x, z)

    hmc = BatchedHMC(
        potential,
        inverse_mass_matrix=(guide_moments(q, x.device)[1] ** 2).expand_as(z).clone(),
        num_steps=num_steps,
        target_accept_prob=target_accept_prob,
    )  # fmt: skip
    state = hmc.warmup(HMCState.at(potential, z), warmup_steps, progress=progress)
    _, draws, stats = hmc.sample(state, num_samples, progress=progress)
    return draws.movedim(0, 1), {k: v.movedim(0, 1) for k, v in stats.items()}


def _starting_points(q, num_chains):
    """``num_chains`` draws of the guide q, ``(num_chains, B, z_dim)``: reparameterized
    where q has ``rsample`` (the draws of earlier releases), plain draws otherwise (a
    mixture such as :class:`~pyro.distributions.MixtureSameFamily` has none)."""
    return q.rsample((num_chains,)) if q.has_rsample else q.sample((num_chains,))


@torch.no_grad()
def _posterior_predictive(model, z):
    """x̃ ~ p_θ(x|z) at every draw, (chains, draws, B, x_dim), from a trace of ``model``."""
    chains, draws, batch, _ = z.shape
    flat = z.reshape(chains * draws, batch, -1)
    with pyro.plate("chains", flat.shape[0], dim=-2):
        trace = poutine.trace(poutine.condition(model, data={"z": flat})).get_trace(
            batch_size=batch
        )
    return trace.nodes["x"]["value"].reshape(chains, draws, batch, -1)


# ---------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _held_fixed(vae, x, seed):
    """θ frozen, Pyro's validation off, the param store as found, a seeded forked RNG."""
    devices = [x.device] if x.device.type == "cuda" else []
    with (
        vae.frozen(),
        param_store_as_found(),
        torch.random.fork_rng(devices=devices),
        pyro.validation_enabled(False),
    ):
        torch.manual_seed(seed)
        yield


def _check_common(vae, x, datum, seed, device):
    for attr in ("model", "guide", "encode", "frozen"):
        if not callable(getattr(vae, attr, None)):
            raise ValueError(
                f"Expected vae to be a pyro_vae model with a callable {attr!r} but got "
                f"{type(vae).__name__}"
            )
    on_device(vae, device)
    x = check_data(x, vae, "x")
    check_int("seed", seed, 0)
    if datum is None:
        return x, np.arange(x.shape[0])
    if isinstance(datum, str) or not isinstance(datum, Sequence | np.ndarray | torch.Tensor):
        raise ValueError(
            f"Expected datum to be a sequence of {x.shape[0]} labels but got {datum!r}"
        )
    labels = np.asarray(datum)
    if labels.shape != (x.shape[0],) or len(set(labels.tolist())) != x.shape[0]:
        raise ValueError(
            f"Expected datum to hold {x.shape[0]} distinct labels, one per row of x, but "
            f"got shape {labels.shape}"
        )
    return x, labels
