r"""Batched Hamiltonian Monte Carlo over a potential callable: many chains in lockstep.

A target density π(z) ∝ exp(−U(z)) is given by its potential U, a callable that takes
z of shape ``(..., z_dim)`` and returns U(z) of shape ``(...)`` (nats). The leading
dimensions index independent chains: one call of U and one backward pass give every
chain its own potential and gradient, so all chains advance together, each with its
own step size and diagonal mass matrix.

The main interface:

- :func:`transition`: one HMC iteration of every chain with a given potential, per-chain
  step sizes and a fixed number of leapfrog steps, without adaptation (for annealed
  targets, e.g. the transitions of annealed importance sampling);
- :class:`BatchedHMC`: the sampler, with Stan's windowed warm-up (per-chain step sizes
  by dual averaging, per-chain diagonal mass matrices by Welford variances), step-size
  jitter and an automatic number of leapfrog steps;
- :class:`HMCState`: a chain's position with its potential and gradient.

The warm-up's step-size and mass-matrix adaptation is
:mod:`pyro_vae.infer.mcmc.adaptation`.

:func:`pyro_vae.sample_posterior` is one user: its potential is
U(z) = −log p(z) − log p_θ(x|z), one chain per (chain index, data point).

References
----------
1. R. M. Neal, "MCMC using Hamiltonian dynamics", in Handbook of Markov Chain Monte
   Carlo, ch. 5, Chapman & Hall/CRC, 2011.
2. M. D. Hoffman, A. Gelman, "The No-U-Turn Sampler: Adaptively Setting Path Lengths
   in Hamiltonian Monte Carlo", J. Mach. Learn. Res. 15:1593–1623, 2014.
3. Stan Development Team, "Stan Reference Manual", sec. "HMC algorithm parameters"
   (windowed adaptation of the step size and mass matrix).
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from pyro.ops import integrator
from tqdm.auto import tqdm

from ..._checks import check_int
from ..._deprecation import renamed, warn_renamed
from .adaptation import _WindowedAdaptation, adaptation_windows

__all__ = [
    "MAX_ENERGY_ERROR",
    "BatchedHMC",
    "HMCState",
    "check_target_accept",
    "check_target_accept_prob",
    "transition",
]

MAX_ENERGY_ERROR = 1000.0
"""Energy error (nats) above which a transition counts as divergent, as in Pyro and Stan."""

_TRAJECTORY_LENGTH = 0.6 * math.pi  # mean integration time in whitened units (see Notes)
_MAX_STEPS = 64  # cap on the automatic number of leapfrog steps
_STEP_SIZE_JITTER = 0.4  # each iteration's step of a chain is ε × Uniform(1 − j, 1 + j)

Potential = Callable[[torch.Tensor], torch.Tensor]


def check_target_accept_prob(value: float, name: str = "target_accept_prob") -> float:
    """A target acceptance probability as a float, checked to lie in (0, 1).

    Raises
    ------
    ValueError
        Naming ``name``, if ``value`` is not a number in (0, 1).
    """
    if not (isinstance(value, float | int) and 0 < value < 1):
        raise ValueError(f"Expected {name} in (0, 1) but got {value!r}")
    return float(value)


def check_target_accept(target_accept: float) -> float:
    """Deprecated name of :func:`check_target_accept_prob` (FutureWarning)."""
    warn_renamed("pyro_vae.infer.hmc", "check_target_accept", "check_target_accept_prob")
    return check_target_accept_prob(target_accept, "target_accept")


class HMCState(NamedTuple):
    """Positions of the chains with their potential and its gradient.

    Attributes
    ----------
    z : torch.Tensor
        Positions, shape ``(..., z_dim)``.
    potential : torch.Tensor
        U(z), shape ``(...)``, nats.
    grad : torch.Tensor
        ∇U(z), shape ``(..., z_dim)``.
    """

    z: torch.Tensor
    potential: torch.Tensor
    grad: torch.Tensor

    @classmethod
    def at(cls, potential: Potential, z: torch.Tensor) -> "HMCState":
        """The state at positions z, shape ``(..., z_dim)``: one evaluation of U and ∇U.

        Call it again when the target changes (e.g. the next temperature of an annealing
        schedule): the state's potential and gradient belong to one U.
        """
        ham = _Hamiltonian(potential, None)
        grad, _ = integrator.potential_grad(ham.potential, {"z": z})
        return cls(z, ham.last_potential, grad["z"])


class _Hamiltonian:
    """U of every chain, and the kinetic energy ½ rᵀ M⁻¹ r, M⁻¹ = diag(inverse_mass_matrix).

    ``potential`` takes ``{"z": (..., z_dim)}`` and returns Σ U (a scalar, as
    :func:`~pyro.ops.integrator.velocity_verlet` needs for its gradient; independent
    chains give each chain its own gradient) and keeps the per-chain U, ``(...)``, in
    ``last_potential``.
    """

    def __init__(self, potential, inverse_mass_matrix):
        self.fn, self.inverse_mass_matrix = potential, inverse_mass_matrix
        self.last_potential = None

    def potential(self, params):
        potential = self.fn(params["z"])
        self.last_potential = potential.detach()
        return potential.sum()

    def kinetic(self, r):
        return 0.5 * (r.square() * self.inverse_mass_matrix).sum(-1)

    def kinetic_grad(self, r):
        return {"z": r["z"] * self.inverse_mass_matrix}

    def momentum(self, like):
        return torch.randn_like(like) * self.inverse_mass_matrix.rsqrt()

    def leapfrog(self, state, r, step_size, num_steps):
        """The state and momentum after ``num_steps`` steps; step_size of shape (...)."""
        z, r, grad, _ = integrator.velocity_verlet(
            {"z": state.z}, {"z": r}, self.potential, self.kinetic_grad,
            step_size.unsqueeze(-1), num_steps, {"z": state.grad},
        )  # fmt: skip
        return HMCState(z["z"], self.last_potential, grad["z"]), r["z"]


def transition(
    potential: Potential,
    state: HMCState,
    step_size: torch.Tensor,
    num_steps: int,
    inverse_mass_matrix: torch.Tensor | None = None,
    *,
    inverse_mass: torch.Tensor | None = None,
) -> tuple[HMCState, dict[str, torch.Tensor]]:
    r"""One HMC iteration of every chain: leapfrog, then a Metropolis accept per chain.

    Draws r ~ N(0, M) with M = diag(1 / inverse_mass_matrix), integrates
    H(z, r) = U(z) + ½ rᵀ M⁻¹ r for ``num_steps`` leapfrog steps of each chain's own
    size (:func:`pyro.ops.integrator.velocity_verlet`) and accepts the end point with
    probability min(1, exp(H₀ − H_L)) (Neal 2011, sec. 5.3.2). No adaptation: the
    transition leaves π ∝ exp(−U) invariant for any fixed step sizes and L.

    Parameters
    ----------
    potential : callable
        U: z of shape ``(..., z_dim)`` → ``(...)``, nats, differentiable in z.
    state : HMCState
        The chains' current state, computed with the same ``potential``
        (:meth:`HMCState.at`).
    step_size : torch.Tensor
        Each chain's leapfrog step ε, shape ``(...)`` (whitened units: z moves by about
        ε M^{−1/2} per step).
    num_steps : int
        Leapfrog steps L, common to all chains (≥ 1).
    inverse_mass_matrix : torch.Tensor, optional
        Diagonal of each chain's M⁻¹, shape ``(..., z_dim)``; default ones (M = I).
        (Pyro's name, as in its ``HMC`` kernel.)
    inverse_mass : torch.Tensor, optional
        The old name of ``inverse_mass_matrix``, accepted for one release with a
        FutureWarning.

    Returns
    -------
    state : HMCState
        The chains after the transition (the proposal where accepted, else unchanged).
    stats : dict of str to torch.Tensor
        Each of shape ``(...)``: ``"acceptance_rate"``, the acceptance probability
        min(1, exp(H₀ − H_L)) (0 for a non-finite energy); ``"diverging"`` (bool),
        H_L − H₀ > :data:`MAX_ENERGY_ERROR` or non-finite; ``"energy"``, H at the
        state after the transition (nats).

    Notes
    -----
    Random draws, in order: the momenta (``torch.randn``), then one uniform per chain
    for the accept decisions (``torch.rand``), from torch's global generator.

    Raises
    ------
    ValueError
        If both ``inverse_mass_matrix`` and ``inverse_mass`` are given.
    """
    inverse_mass_matrix = renamed("transition()", "inverse_mass", inverse_mass,
                                  "inverse_mass_matrix", inverse_mass_matrix, None)  # fmt: skip
    if inverse_mass_matrix is None:
        inverse_mass_matrix = torch.ones_like(state.z)
    return _transition(_Hamiltonian(potential, inverse_mass_matrix), state, step_size, num_steps)


def _transition(ham, state, step_size, num_steps):
    r = ham.momentum(state.z)
    energy = state.potential + ham.kinetic(r)
    proposal, r_end = ham.leapfrog(state, r, step_size, num_steps)
    energy_end = proposal.potential + ham.kinetic(r_end)
    delta = (energy_end - energy).nan_to_num(nan=math.inf)
    accept_prob = (-delta).exp().clamp(max=1.0)
    accept = torch.rand_like(accept_prob) < accept_prob
    state = HMCState(
        *(
            torch.where(accept.view(accept.shape + (1,) * (new.dim() - accept.dim())), new, old)
            for new, old in zip(proposal, state, strict=True)
        )
    )
    stats = {
        "diverging": delta > MAX_ENERGY_ERROR,
        "energy": torch.where(accept, energy_end, energy),
        "acceptance_rate": accept_prob,
    }
    return state, stats


class BatchedHMC:
    r"""HMC for many independent chains at once, each adapting its own ε and M.

    Parameters
    ----------
    potential : callable
        U: z of shape ``(..., z_dim)`` → ``(...)``, nats; the leading dimensions index
        the chains, which must not interact (the gradient of Σ U is each chain's own).
    inverse_mass_matrix : torch.Tensor, optional
        Initial diagonal of each chain's M⁻¹, shape ``(..., z_dim)``, e.g. a variational
        approximation's variances; default ones. Adapted during :meth:`warmup`.
    step_size : torch.Tensor, optional
        Each chain's step ε, shape ``(...)``. :meth:`warmup` starts its search from it
        (default ones); :meth:`sample` without warm-up needs it.
    num_steps : int, optional
        Leapfrog steps L per iteration, common to all chains. ``None`` picks
        L = round(0.6π / ε̃) in [1, 64], with ε̃ the median of the chains' step sizes,
        updated during warm-up and fixed after it.
    target_accept_prob : float, default 0.8
        Mean acceptance probability the step-size adaptation aims at, in (0, 1).
    adapt_mass_matrix : bool, default True
        Adapt ``inverse_mass_matrix`` in Stan's slow windows; ``False`` keeps it and
        adapts only the step sizes, over the whole warm-up (one fast window).
    inverse_mass, target_accept
        The old names of ``inverse_mass_matrix`` and ``target_accept_prob`` (Pyro's and
        NumPyro's names), accepted for one release with a FutureWarning; so are the
        attributes of these names.

    Attributes
    ----------
    step_size : torch.Tensor or None
        Each chain's ε, shape ``(...)``: after :meth:`warmup`, its dual-averaging
        average.
    inverse_mass_matrix : torch.Tensor or None
        Diagonal of each chain's M⁻¹, shape ``(..., z_dim)``.
    target_accept_prob : float

    Raises
    ------
    ValueError
        If ``num_steps`` is not a positive integer, ``target_accept_prob`` is not in
        (0, 1), or a keyword is given under both its names.

    See Also
    --------
    transition : one iteration with given step sizes and L, without adaptation.

    Notes
    -----
    *Adaptation* (warm-up only, per chain; Stan's schedule, :func:`adaptation_windows`):
    a fast window of 75 iterations adapts ε alone, then slow windows of 25, 50, 100, …
    iterations each end by setting M⁻¹ to the regularized Welford variance of the
    window's draws (:class:`pyro.ops.welford.WelfordCovariance`) and restarting ε's
    adaptation from a doubling/halving search (Hoffman & Gelman 2014, alg. 4, threshold
    log 0.8 as Pyro and Stan); a final fast window of 50 iterations adapts ε again. ε
    follows the dual-averaging recursions of Hoffman & Gelman (2014, sec. 3.2,
    :class:`pyro.ops.dual_averaging.DualAveraging`, elementwise on the chains'
    tensors) towards mean acceptance ``target_accept_prob``; after warm-up ε is its
    running average.

    *Trajectory length.* For a standard Gaussian (a well-adapted whitened target) an
    exact trajectory of length T maps z to z cos T + r sin T: successive draws have
    correlation cos T in z and cos² T in z². T = Lε ≈ 0.6π gives −0.31 (antithetic
    draws) and 0.10. Each chain's step is jittered every iteration,
    ε × Uniform(0.6, 1.4) (Neal 2011, sec. 5.4.2.2), so that T varies by ±40 % and is no
    period of the dynamics along a direction that M gets wrong; with one L for all
    chains every leapfrog step serves every chain. On the digits VAEs and
    linear-Gaussian models of 2 and 8 latent dimensions this gave a higher smallest bulk
    ESS per second than L ~ Uniform{1, …, 2L̄ − 1}, ±20 % or ±50 % jitter, or T̄ of
    π/2 or 0.7π.

    Examples
    --------
    Two independent 2-D Gaussians of scales 1 and 10, 4 chains each:

    >>> scale = torch.tensor([1.0, 10.0]).view(2, 1)
    >>> hmc = BatchedHMC(lambda z: 0.5 * (z / scale).square().sum(-1))
    >>> state = hmc.warmup(HMCState.at(hmc.potential, torch.zeros(4, 2, 2)), 500)
    >>> state, z, stats = hmc.sample(state, 1000)  # z: (1000, 4, 2, 2)
    """

    def __init__(
        self,
        potential: Potential,
        inverse_mass_matrix: torch.Tensor | None = None,
        step_size: torch.Tensor | None = None,
        num_steps: int | None = None,
        target_accept_prob: float = 0.8,
        adapt_mass_matrix: bool = True,
        *,
        inverse_mass: torch.Tensor | None = None,
        target_accept: float | None = None,
    ):
        inverse_mass_matrix = renamed("BatchedHMC()", "inverse_mass", inverse_mass,
                                      "inverse_mass_matrix", inverse_mass_matrix, None)  # fmt: skip
        target_accept_prob = renamed("BatchedHMC()", "target_accept", target_accept,
                                     "target_accept_prob", target_accept_prob, 0.8,
                                 check=check_target_accept_prob)  # fmt: skip
        if num_steps is not None:
            check_int("num_steps", num_steps, 1)
        self.potential = potential
        self.inverse_mass_matrix = inverse_mass_matrix
        self.step_size = step_size
        self.num_steps = num_steps
        self.target_accept_prob = check_target_accept_prob(target_accept_prob)
        self.adapt_mass_matrix = bool(adapt_mass_matrix)

    @property
    def inverse_mass(self):
        """The old name of :attr:`inverse_mass_matrix` (FutureWarning)."""
        warn_renamed("BatchedHMC", "inverse_mass", "inverse_mass_matrix")
        return self.inverse_mass_matrix

    @inverse_mass.setter
    def inverse_mass(self, value):
        warn_renamed("BatchedHMC", "inverse_mass", "inverse_mass_matrix")
        self.inverse_mass_matrix = value

    @property
    def target_accept(self):
        """The old name of :attr:`target_accept_prob` (FutureWarning)."""
        warn_renamed("BatchedHMC", "target_accept", "target_accept_prob")
        return self.target_accept_prob

    @target_accept.setter
    def target_accept(self, value):
        warn_renamed("BatchedHMC", "target_accept", "target_accept_prob")
        self.target_accept_prob = check_target_accept_prob(value, "target_accept")

    def _hamiltonian(self, state):
        if self.inverse_mass_matrix is None:
            self.inverse_mass_matrix = torch.ones_like(state.z)
        return _Hamiltonian(self.potential, self.inverse_mass_matrix)

    def warmup(self, state: HMCState, warmup_steps: int, progress: bool = False) -> HMCState:
        """Adapt every chain's step size and mass matrix over ``warmup_steps`` iterations.

        Starts with a doubling/halving search for each chain's step size (also for
        ``warmup_steps=0``), then runs Stan's windows (see Notes of the class).

        Parameters
        ----------
        state : HMCState
            The chains' starting state (:meth:`HMCState.at` with this ``potential``).
        warmup_steps : int
            Adaptation iterations, ≥ 0; their draws are discarded.
        progress : bool, default False
            Show a progress bar.

        Returns
        -------
        HMCState
            The chains after warm-up; ``step_size`` and ``inverse_mass_matrix`` are set.

        Raises
        ------
        ValueError
            If ``warmup_steps`` is not an integer ≥ 0.
        """
        check_int("warmup_steps", warmup_steps, 0)
        ham = self._hamiltonian(state)
        start = torch.ones_like(state.potential) if self.step_size is None else self.step_size
        if self.adapt_mass_matrix or not warmup_steps:
            windows = adaptation_windows(warmup_steps)
        else:
            windows = [(0, warmup_steps - 1, False)]
        adaptation = _WindowedAdaptation(ham, state, windows, self.target_accept_prob, start)
        steps = _num_steps(self.num_steps, adaptation.step_size)
        for t in tqdm(range(warmup_steps), disable=not progress, leave=False):
            state, info = _transition(ham, state, _jitter(adaptation.step_size), steps)
            adaptation.step(t, ham, state, info["acceptance_rate"])
            steps = _num_steps(self.num_steps, adaptation.step_size)
        self.step_size, self.inverse_mass_matrix = adaptation.step_size, ham.inverse_mass_matrix
        return state

    def sample(
        self, state: HMCState, num_samples: int, progress: bool = False
    ) -> tuple[HMCState, torch.Tensor, dict[str, torch.Tensor]]:
        """Draw ``num_samples`` iterations of every chain with ε and M held fixed.

        Parameters
        ----------
        state : HMCState
            The chains' state (after :meth:`warmup`, or with ``step_size`` given).
        num_samples : int
            Iterations kept, ≥ 1.
        progress : bool, default False
            Show a progress bar.

        Returns
        -------
        state : HMCState
            The chains after the last iteration.
        z : torch.Tensor
            The draws, shape ``(num_samples, ..., z_dim)``, detached.
        stats : dict of str to torch.Tensor
            Per iteration and chain, shape ``(num_samples, ...)``: ``"energy"`` (H after
            the transition, nats), ``"acceptance_rate"``, ``"lp"`` (−U at the draw,
            nats), ``"step_size"`` (the jittered ε used), ``"n_steps"`` (L, int64) and
            ``"diverging"`` (bool), ArviZ's names of sampler statistics.

        Raises
        ------
        ValueError
            If ``num_samples`` is not an integer ≥ 1, or no step size is known yet.
        """
        check_int("num_samples", num_samples, 1)
        if self.step_size is None:
            raise ValueError("Expected step_size to be set but got None: run warmup first")
        ham = self._hamiltonian(state)
        steps = _num_steps(self.num_steps, self.step_size)
        draws = state.z.new_empty((num_samples, *state.z.shape))
        shape, like = draws.shape[:-1], state.potential
        stats = {k: like.new_empty(shape) for k in ("energy", "acceptance_rate", "lp")}
        stats["step_size"] = like.new_empty(shape)
        stats["n_steps"] = torch.full(shape, steps, dtype=torch.long, device=like.device)
        stats["diverging"] = torch.zeros(shape, dtype=torch.bool, device=like.device)
        for s in tqdm(range(num_samples), disable=not progress, leave=False):
            step_size = _jitter(self.step_size)
            state, info = _transition(ham, state, step_size, steps)
            draws[s] = state.z
            info.update(step_size=step_size, lp=-state.potential)
            for k, v in info.items():
                stats[k][s] = v
        return state, draws.detach(), stats


def _num_steps(num_steps, step_size):
    """L: the user's, or round(0.6π / ε̃) for the chains' median step size ε̃, in [1, 64]."""
    if num_steps is not None:
        return num_steps
    median = step_size.median().item()
    return int(min(_MAX_STEPS, max(1, round(_TRAJECTORY_LENGTH / median))))


def _jitter(step_size):
    """Each chain's step for one iteration: ε × Uniform(1 − j, 1 + j) (Neal 2011, 5.4.2.2)."""
    return step_size * (1 + _STEP_SIZE_JITTER * (2 * torch.rand_like(step_size) - 1))
