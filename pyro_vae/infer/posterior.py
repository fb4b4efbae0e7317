r"""Draws from the posterior p_θ(z|x) of many data points at once, with θ held fixed.

The posterior of a VAE's latent z given one data point x,

.. math:: p_\theta(z \mid x) \propto p(z)\, p_\theta(x \mid z),

is what the guide q_φ(z|x) approximates; to judge the guide, one needs draws from it.
The posteriors of different data points are independent, so :func:`sample_posterior`
runs Hamiltonian Monte Carlo (HMC; Neal 2011) with one chain per (chain index, data
point), all chains advanced in lockstep by one batched evaluation of the potential
U(z) = −log p(z) − log p_θ(x|z) and its gradient. Each chain keeps its own step size
(dual averaging, Hoffman & Gelman 2014) and its own diagonal mass matrix (windowed
adaptation as Stan's), so a narrow posterior does not set the step of a wide one.
The potential comes from a Pyro trace of the user's own ``vae.model``, so any model
with one latent site ``"z"`` and observed sites in the ``"data"`` plate works.

The main interface:

- :func:`sample_posterior`: posterior draws of B data points (``method="hmc"``, the
  batched sampler; ``method="nuts"``, Pyro's own NUTS run per data point, the
  reference the batched sampler is tested against), as an ArviZ ``InferenceData``;
- :func:`sample_guide`: draws from q_φ(z|x) with their importance log-weights, in the
  same layout;
- :func:`compare_posteriors`: per data point, how far an approximation (the guide) is
  from a reference (MCMC draws, or an exact or quadrature posterior).

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
5. Y. Yao, A. Vehtari, D. Simpson, A. Gelman, "Yes, but Did It Work?: Evaluating
   Variational Inference", ICML 2018.
"""

import contextlib
import math
import time
from collections.abc import Sequence

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS
from pyro.ops import integrator
from pyro.ops.dual_averaging import DualAveraging
from pyro.ops.welford import WelfordCovariance
from pyro.poutine.util import site_is_subsample
from tqdm.auto import tqdm

from .._checks import check_int
from .._device import on_device
from ..data import check_data
from . import diagnostics
from .evaluation import param_store_as_found

__all__ = ["sample_posterior"]

METHODS = ("hmc", "nuts")
MAX_ENERGY_ERROR = 1000.0
"""Energy error (nats) above which a transition counts as divergent, as in Pyro and Stan."""

_TRAJECTORY_LENGTH = 0.6 * math.pi  # mean integration time in whitened units (see Notes)
_MAX_STEPS = 64  # cap on the automatic number of leapfrog steps
_STEP_SIZE_JITTER = 0.4  # each iteration's step of a chain is ε × Uniform(1 − j, 1 + j)
_STEP_SIZE_SEARCH = 30  # doublings or halvings at most when resetting a step size


def sample_posterior(
    vae,
    x,
    num_samples=1000,
    warmup_steps=500,
    num_chains=4,
    seed=0,
    method="hmc",
    num_steps=None,
    target_accept=0.8,
    chunk_size=256,
    datum=None,
    posterior_predictive=True,
    progress=False,
    device=None,
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
    vae : pyro_vae.models.vae.BaseVAE
        The model (``VAE``, ``LinearGaussianVAE``): ``model`` with latent site ``"z"``
        of event shape ``(z_dim,)``, and ``encode`` (the guide's mean and scale, for the
        starting points and the initial mass matrix). Its parameters are held fixed
        (:meth:`~pyro_vae.models.vae.BaseVAE.frozen`) and restored on exit.
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
    target_accept : float, default 0.8
        Mean acceptance probability the step-size adaptation aims at, in (0, 1).
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
        Where to run the chains: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; default CUDA
        when PyTorch sees a GPU, else the CPU. ``vae`` is moved there in place and x
        with it; the returned draws are NumPy arrays (host memory).

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior`` (``z``, dims ``(chain, draw, datum, latent)``),
        ``sample_stats`` (dims ``(chain, draw, datum)``: ``diverging`` (bool),
        ``energy`` (the Hamiltonian H at the chain's state after the transition,
        nats), ``step_size``, ``n_steps`` (leapfrog steps), ``acceptance_rate``,
        ``lp`` (log p(x, z), nats) and, for ``"nuts"``, ``tree_depth``),
        ``observed_data`` (``x``, dims ``(datum, pixel)``) and, with
        ``posterior_predictive``, ``posterior_predictive`` (``x``, dims
        ``(chain, draw, datum, pixel)``). ``posterior.attrs`` holds ``method``,
        ``tuning_steps`` and ``sampling_time`` (seconds of wall time).

    Raises
    ------
    ValueError
        If x does not fit the model, an argument is out of range, ``datum`` does not
        hold B labels, the model has a latent site other than ``"z"``, or ``device``
        is not a device name (or is CUDA where PyTorch sees no GPU).

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
    coordinates M^{1/2} z have about unit scale from the first iteration.

    *Adaptation* (warm-up only, per chain; Stan's schedule): a fast window of 75
    iterations adapts ε alone, then slow windows of 25, 50, 100, … iterations each end
    by setting M⁻¹ to the regularized Welford variance of the window's draws
    (:class:`pyro.ops.welford.WelfordCovariance`) and restarting ε's adaptation from a
    doubling/halving search; a final fast window of 50 iterations adapts ε again.
    ε follows the dual-averaging recursions of Hoffman & Gelman (2014, sec. 3.2,
    :class:`pyro.ops.dual_averaging.DualAveraging`, elementwise on the chains' tensors)
    towards mean acceptance ``target_accept``; after warm-up ε is its running average.

    *Trajectory length.* For a standard Gaussian (a well-adapted whitened posterior) an
    exact trajectory of length T maps z to z cos T + r sin T: successive draws have
    correlation cos T in z and cos² T in z². T = Lε ≈ 0.6π gives −0.31 (antithetic
    draws, a bulk ESS above the number of draws) and 0.10. Each chain's step is
    jittered every iteration, ε × Uniform(0.6, 1.4) (Neal 2011), so that T varies by
    ±40 % and is no period of the dynamics along a direction that M gets wrong; with one
    L for the chunk every leapfrog step serves every chain. On the digits VAEs and
    linear-Gaussian models of 2 and 8 latent dimensions this gave a higher smallest bulk
    ESS per second than L ~ Uniform{1, …, 2L̄ − 1}, ±20 % or ±50 % jitter, or T̄ of
    π/2 or 0.7π.

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
    x, labels = _check_common(vae, x, datum, seed, device)
    check_int("num_samples", num_samples, 1)
    check_int("warmup_steps", warmup_steps, 0)
    check_int("num_chains", num_chains, 1)
    check_int("chunk_size", chunk_size, 1)
    if method not in METHODS:
        raise ValueError(f"Expected method in {METHODS} but got {method!r}")
    if num_steps is not None:
        check_int("num_steps", num_steps, 1)
    if not (isinstance(target_accept, float | int) and 0 < target_accept < 1):
        raise ValueError(f"Expected target_accept in (0, 1) but got {target_accept!r}")
    settings = dict(
        num_samples=num_samples,
        warmup_steps=warmup_steps,
        num_chains=num_chains,
        target_accept=float(target_accept),
        progress=progress,
    )
    start = time.perf_counter()
    with _held_fixed(vae, x, seed):
        if method == "hmc":
            chunks = [
                _hmc_chunk(vae, x[i : i + chunk_size], num_steps=num_steps, **settings)
                for i in range(0, x.shape[0], chunk_size)
            ]
            z = torch.cat([c[0] for c in chunks], dim=2)
            stats = {k: torch.cat([c[1][k] for c in chunks], dim=2) for k in chunks[0][1]}
        else:
            z, stats = _nuts_reference(vae, x, **settings)
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


class _Hamiltonian:
    """U(z) = −log p_θ(x, z) of every chain, and the kinetic energy ½ rᵀ M⁻¹ r.

    ``potential`` takes ``{"z": (chains, B, z_dim)}`` and returns Σ U (a scalar, as
    :func:`~pyro.ops.integrator.velocity_verlet` needs for its gradient; independent
    chains give each chain its own gradient) and keeps the per-chain U, ``(chains, B)``,
    in ``last_potential``.
    """

    def __init__(self, model, x, inverse_mass):
        self.model, self.x, self.inverse_mass = model, x, inverse_mass
        self.last_potential = None

    def potential(self, params):
        potential = -_log_joint(self.model, self.x, params["z"])
        self.last_potential = potential.detach()
        return potential.sum()

    def kinetic(self, r):
        return 0.5 * (r.square() * self.inverse_mass).sum(-1)

    def kinetic_grad(self, r):
        return {"z": r["z"] * self.inverse_mass}

    def momentum(self, like):
        return torch.randn_like(like) * self.inverse_mass.rsqrt()

    def leapfrog(self, state, r, step_size, num_steps):
        """z, r, ∇U and U after ``num_steps`` steps; step_size of shape (chains, B)."""
        z, _, grad = state
        z, r, grad, _ = integrator.velocity_verlet(
            {"z": z}, {"z": r}, self.potential, self.kinetic_grad,
            step_size.unsqueeze(-1), num_steps, {"z": grad},
        )  # fmt: skip
        return (z["z"], self.last_potential, grad["z"]), r["z"]


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


def _transition(ham, state, step_size, num_steps):
    """One HMC iteration of every chain: leapfrog, then a Metropolis accept per chain."""
    r = ham.momentum(state[0])
    energy = state[1] + ham.kinetic(r)
    proposal, r_end = ham.leapfrog(state, r, step_size, num_steps)
    energy_end = proposal[1] + ham.kinetic(r_end)
    delta = (energy_end - energy).nan_to_num(nan=math.inf)
    accept_prob = (-delta).exp().clamp(max=1.0)
    accept = torch.rand_like(accept_prob) < accept_prob
    state = tuple(
        torch.where(accept.view(accept.shape + (1,) * (new.dim() - 2)), new, old)
        for new, old in zip(proposal, state, strict=True)
    )
    stats = {
        "diverging": delta > MAX_ENERGY_ERROR,
        "energy": torch.where(accept, energy_end, energy),
        "acceptance_rate": accept_prob,
    }
    return state, stats


def _reasonable_step_size(ham, state, step_size):
    """Per chain, double or halve ε until one leapfrog step's acceptance crosses 0.8.

    The heuristic of Hoffman & Gelman (2014, alg. 4) as Pyro's HMC uses it (threshold
    log 0.8), run for all chains at once: each stops at its own crossing.
    """
    r = ham.momentum(state[0])
    energy = state[1] + ham.kinetic(r)

    def direction(eps):
        (_, potential, _), r_end = ham.leapfrog(state, r, eps, 1)
        log_accept = (energy - potential - ham.kinetic(r_end)).nan_to_num(nan=-math.inf)
        return torch.where(log_accept > math.log(0.8), 2.0, 0.5)

    factor = direction(step_size)
    searching = torch.ones_like(step_size, dtype=torch.bool)
    for _ in range(_STEP_SIZE_SEARCH):
        step_size = torch.where(searching, step_size * factor, step_size)
        searching &= direction(step_size) == factor
        if not searching.any():
            break
    return step_size


def _adaptation_windows(warmup_steps):
    """Stan's warm-up schedule: [(start, end, slow)], windows of iterations, ends included.

    A fast window of 75 iterations, slow windows of 25, 50, 100, … (the last stretched to
    the end), a fast window of 50; scaled to 15 % / 75 % / 10 % for a warm-up shorter
    than 150, and one fast window for fewer than 20 iterations (as Pyro's adapter).
    """
    if warmup_steps < 20:
        return [(0, warmup_steps - 1, False)] if warmup_steps else []
    first, last, slow = 75, 50, 25
    if first + last + slow > warmup_steps:
        first, last = int(0.15 * warmup_steps), int(0.1 * warmup_steps)
        slow = warmup_steps - first - last
    windows = [(0, first - 1, False)]
    start, end = first, warmup_steps - last
    while start < end:
        size = slow if 3 * slow <= end - start else end - start
        windows.append((start, start + size - 1, True))
        start, slow = start + size, 2 * slow
    windows.append((end, warmup_steps - 1, False))
    return windows


def _num_steps(num_steps, step_size):
    """L: the user's, or round(0.6π / ε̃) for the chunk's median step size ε̃, in [1, 64]."""
    if num_steps is not None:
        return num_steps
    median = step_size.median().item()
    return int(min(_MAX_STEPS, max(1, round(_TRAJECTORY_LENGTH / median))))


def _jitter(step_size):
    """Each chain's step for one iteration: ε × Uniform(1 − j, 1 + j) (Neal 2011, 5.4.2.2)."""
    return step_size * (1 + _STEP_SIZE_JITTER * (2 * torch.rand_like(step_size) - 1))


class _WindowedAdaptation:
    """Stan's warm-up for every chain at once: log ε by dual averaging, M⁻¹ by Welford.

    ``step`` takes iteration t's acceptance probabilities (chains, B), updates the
    chains' step sizes and, at the end of a slow window, their inverse mass matrices
    (in ``ham``), after which ε is searched anew and its averaging restarted.
    """

    def __init__(self, ham, state, warmup_steps, target_accept):
        self.windows = _adaptation_windows(warmup_steps)
        self.target_accept = target_accept
        self.welford = WelfordCovariance(diagonal=True)
        self.step_size = _reasonable_step_size(ham, state, torch.ones_like(state[1]))
        self._restart()

    def _restart(self):
        # x̄ is pulled towards log(10 ε₀), as in Hoffman & Gelman (2014, sec. 3.2.1).
        self.averaging = DualAveraging(prox_center=(10 * self.step_size).log())

    def step(self, t, ham, state, accept_prob):
        self.averaging.step(self.target_accept - accept_prob)
        self.step_size = self.averaging.get_state()[0].exp()
        _, end, slow = next(w for w in self.windows if w[0] <= t <= w[1])
        if slow:
            self.welford.update(state[0])
            if t == end:
                ham.inverse_mass = self.welford.get_covariance(regularize=True)
                self.welford.reset()
                self.step_size = _reasonable_step_size(ham, state, self.step_size)
                self._restart()
        elif t == self.windows[-1][1]:
            self.step_size = self.averaging.get_state()[1].exp()


def _hmc_chunk(vae, x, num_samples, warmup_steps, num_chains, num_steps, target_accept, progress):
    """Warm-up and draws of num_chains × B chains in lockstep: z (C, S, B, D), stats."""
    q = vae.encode(x)
    z = q.rsample((num_chains,))
    ham = _Hamiltonian(vae.model, x, q.variance.expand_as(z).clone())
    grad, _ = integrator.potential_grad(ham.potential, {"z": z})
    state = (z, ham.last_potential, grad["z"])
    adaptation = _WindowedAdaptation(ham, state, warmup_steps, target_accept)
    steps = _num_steps(num_steps, adaptation.step_size)
    draws = z.new_empty((num_chains, num_samples, *q.batch_shape, *q.event_shape))
    stats = {k: state[1].new_empty(draws.shape[:3]) for k in ("energy", "acceptance_rate", "lp")}
    stats["step_size"] = state[1].new_empty(draws.shape[:3])
    stats["n_steps"] = torch.empty(draws.shape[:3], dtype=torch.long)
    stats["diverging"] = torch.zeros(draws.shape[:3], dtype=torch.bool)
    for t in tqdm(range(warmup_steps + num_samples), disable=not progress, leave=False):
        step_size = _jitter(adaptation.step_size)
        state, info = _transition(ham, state, step_size, steps)
        if t < warmup_steps:
            adaptation.step(t, ham, state, info["acceptance_rate"])
            steps = _num_steps(num_steps, adaptation.step_size)
            continue
        s = t - warmup_steps
        draws[:, s] = state[0]
        info.update(step_size=step_size, n_steps=steps, lp=-state[1])
        for k, v in info.items():
            stats[k][:, s] = v
    return draws.detach(), stats


class _RecordingNUTS(NUTS):
    """Pyro's NUTS, recording each iteration's statistics (Pyro has no extra fields)."""

    def setup(self, *args, **kwargs):
        self.records = []
        super().setup(*args, **kwargs)

    def _build_basetree(self, z, r, z_grads, log_slice, direction, energy_current):
        tree = super()._build_basetree(z, r, z_grads, log_slice, direction, energy_current)
        rec = self.records[-1]
        rec["n_steps"] += 1
        rec["energy"] = float(energy_current)
        rec["diverging"] |= bool(tree.diverging)
        rec["accept_sum"] += float(tree.sum_accept_probs)
        return tree

    def sample(self, params):
        self.records.append(
            {"step_size": self.step_size, "n_steps": 0, "diverging": False, "accept_sum": 0.0}
        )
        z = super().sample(params)
        rec = self.records[-1]
        rec["lp"] = -float(self._fetch_from_cache()[1])
        rec["acceptance_rate"] = rec.pop("accept_sum") / max(rec["n_steps"], 1)
        rec["tree_depth"] = math.ceil(math.log2(rec["n_steps"] + 1))
        return z


def _nuts_reference(vae, x, num_samples, warmup_steps, num_chains, target_accept, progress):
    """Pyro's NUTS, one chain and one point at a time, from guide draws as the HMC."""
    z0 = vae.encode(x).rsample((num_chains,))
    draws, records = [], []
    for c in range(num_chains):
        for i in range(x.shape[0]):
            kernel = _RecordingNUTS(vae.model, target_accept_prob=target_accept)
            mcmc = MCMC(
                kernel,
                num_samples=num_samples,
                warmup_steps=warmup_steps,
                initial_params={"z": z0[c, i : i + 1]},
                disable_progbar=not progress,
            )
            mcmc.run(x[i : i + 1])
            draws.append(mcmc.get_samples()["z"][:, 0])
            records.append(kernel.records[warmup_steps:])
    shape = (num_chains, x.shape[0])
    z = torch.stack(draws).reshape(*shape, num_samples, -1).transpose(1, 2)
    stats = {}
    for key in records[0][0]:
        table = torch.tensor([[rec[key] for rec in chain] for chain in records])
        stats[key] = table.reshape(*shape, num_samples).transpose(1, 2)
    return z, stats


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
