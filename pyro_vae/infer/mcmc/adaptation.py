r"""The warm-up of :class:`~pyro_vae.infer.mcmc.BatchedHMC`: Stan's windowed adaptation of
every chain's step size (dual averaging) and diagonal inverse mass matrix (Welford
variances), and the step-size search that starts each window, for all chains at once.

As Pyro's ``pyro.infer.mcmc.adaptation`` and BlackJAX's ``adaptation`` package, apart
from the kernel (:mod:`pyro_vae.infer.mcmc.hmc`); the arithmetic is Pyro's
(:class:`pyro.ops.dual_averaging.DualAveraging`, :class:`pyro.ops.welford.WelfordCovariance`)
applied elementwise to the chains' tensors.

References
----------
1. M. D. Hoffman, A. Gelman, "The No-U-Turn Sampler: Adaptively Setting Path Lengths
   in Hamiltonian Monte Carlo", J. Mach. Learn. Res. 15:1593–1623, 2014 (alg. 4, 5).
2. Stan Development Team, "Stan Reference Manual", sec. "HMC algorithm parameters"
   (windowed adaptation of the step size and mass matrix).
"""

import math

import torch
from pyro.ops.dual_averaging import DualAveraging
from pyro.ops.welford import WelfordCovariance

__all__ = ["adaptation_windows"]

_STEP_SIZE_SEARCH = 30  # doublings or halvings at most when resetting a step size


def adaptation_windows(warmup_steps: int) -> list[tuple[int, int, bool]]:
    """Stan's warm-up schedule: windows of iterations ``(start, end, slow)``, ends included.

    A fast window of 75 iterations, slow windows of 25, 50, 100, … (the last stretched to
    the end), a fast window of 50; scaled to 15 % / 75 % / 10 % for a warm-up shorter
    than 150, and one fast window for fewer than 20 iterations (as Pyro's
    ``WarmupAdapter``). Slow windows adapt the mass matrix.

    Parameters
    ----------
    warmup_steps : int
        Warm-up iterations, ≥ 0.

    Returns
    -------
    list of (int, int, bool)
        The windows in order, covering ``0, …, warmup_steps − 1``; empty for 0.
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


def _reasonable_step_size(ham, state, step_size):
    """Per chain, double or halve ε until one leapfrog step's acceptance crosses 0.8.

    The heuristic of Hoffman & Gelman (2014, alg. 4) as Pyro's HMC uses it (threshold
    log 0.8), run for all chains at once: each stops at its own crossing.
    """
    r = ham.momentum(state.z)
    energy = state.potential + ham.kinetic(r)

    def direction(eps):
        proposal, r_end = ham.leapfrog(state, r, eps, 1)
        log_accept = (energy - proposal.potential - ham.kinetic(r_end)).nan_to_num(nan=-math.inf)
        return torch.where(log_accept > math.log(0.8), 2.0, 0.5)

    factor = direction(step_size)
    searching = torch.ones_like(step_size, dtype=torch.bool)
    for _ in range(_STEP_SIZE_SEARCH):
        step_size = torch.where(searching, step_size * factor, step_size)
        searching &= direction(step_size) == factor
        if not searching.any():
            break
    return step_size


class _WindowedAdaptation:
    """Stan's warm-up for every chain at once: log ε by dual averaging, M⁻¹ by Welford.

    ``step`` takes iteration t's acceptance probabilities (...), updates the chains' step
    sizes and, at the end of a slow window, their inverse mass matrices (in ``ham``),
    after which ε is searched anew and its averaging restarted.
    """

    def __init__(self, ham, state, windows, target_accept_prob, step_size):
        self.windows = windows
        self.target_accept_prob = target_accept_prob
        self.welford = WelfordCovariance(diagonal=True)
        self.step_size = _reasonable_step_size(ham, state, step_size)
        self._restart()

    def _restart(self):
        # x̄ is pulled towards log(10 ε₀), as in Hoffman & Gelman (2014, sec. 3.2.1).
        self.averaging = DualAveraging(prox_center=(10 * self.step_size).log())

    def step(self, t, ham, state, accept_prob):
        self.averaging.step(self.target_accept_prob - accept_prob)
        self.step_size = self.averaging.get_state()[0].exp()
        _, end, slow = next(w for w in self.windows if w[0] <= t <= w[1])
        if slow:
            self.welford.update(state.z)
            if t == end:
                ham.inverse_mass_matrix = self.welford.get_covariance(regularize=True)
                self.welford.reset()
                self.step_size = _reasonable_step_size(ham, state, self.step_size)
                self._restart()
        elif t == self.windows[-1][1]:
            self.step_size = self.averaging.get_state()[1].exp()
