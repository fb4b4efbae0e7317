"""Tests of pyro_vae.infer.mcmc.hmc on Gaussian targets, whose moments are known exactly.

The kernel runs independent chains in lockstep, so one batch holds chains of several
targets of different scales: each must be sampled correctly with its own step size.
Tolerances are Monte-Carlo standard errors (ArviZ's MCSE for correlated draws, the
i.i.d. standard error where chains start at the target and are independent).
"""

import math

import arviz
import numpy as np
import pytest
import torch

from pyro_vae.infer import diagnostics
from pyro_vae.infer.mcmc import BatchedHMC, HMCState, adaptation_windows, transition

SCALES = torch.tensor([[0.01, 0.02], [1.0, 3.0], [10.0, 50.0]])  # s.d. per target and axis
RHO = 0.6  # correlation of the two coordinates of each target
MEAN = torch.tensor([[0.5, -0.2], [1.0, 2.0], [-30.0, 10.0]])


def gaussian_potential(mean, scales, rho):
    """U(z) = ½ (z − μ)ᵀ Σ⁻¹ (z − μ) of 2-D Gaussians, one per row of mean; z (..., T, 2)."""
    cov = torch.diag_embed(scales.square())
    cov[:, 0, 1] = cov[:, 1, 0] = rho * scales[:, 0] * scales[:, 1]
    precision = torch.linalg.inv(cov)

    def potential(z):
        d = z - mean
        return 0.5 * torch.einsum("...i,...ij,...j->...", d, precision, d)

    return potential


def test_recovers_the_moments_of_gaussians_of_very_different_scales(seed):
    torch.manual_seed(seed(0))
    potential = gaussian_potential(MEAN, SCALES, RHO)
    z0 = MEAN + SCALES * torch.randn(4, *SCALES.shape)  # 4 chains per target
    hmc = BatchedHMC(potential)  # M⁻¹ starts at I: up to 2500 times off
    state = hmc.warmup(HMCState.at(potential, z0), 500)
    _, z, stats = hmc.sample(state, 1000)
    assert z.shape == (1000, 4, 3, 2) and stats["lp"].shape == (1000, 4, 3)
    assert not stats["diverging"].any()
    # Adapted M⁻¹ is each target's marginal variance (Welford over ≥ 100 correlated draws
    # per chain, so within a factor 2, far wider than its error): the whitened targets
    # have unit scale, hence ε of order 1 for every chain.
    ratio = hmc.inverse_mass_matrix / SCALES.square()
    assert ratio.min() > 0.5 and ratio.max() < 2
    assert hmc.step_size.min() > 0.3 and hmc.step_size.max() < 3
    # ArviZ layout (chain, draw, datum, latent): per target and axis, mean and s.d.
    # within 4.5 MCSE of the exact ones (12 comparisons: a false alarm below 1e-4).
    idata = diagnostics.posterior_inference_data(
        z.movedim(0, 1).double().numpy(), {}, np.zeros((3, 1))
    )
    assert diagnostics.convergence_table(idata)["ess_bulk_min"].min() > 400
    mcse_mean = arviz.mcse(idata, method="mean")["z"].values
    mcse_sd = arviz.mcse(idata, method="sd")["z"].values
    draws = z.double().flatten(0, 1).numpy()
    np.testing.assert_array_less(np.abs(draws.mean(0) - MEAN.numpy()), 4.5 * mcse_mean)
    np.testing.assert_array_less(np.abs(draws.std(0, ddof=1) - SCALES.numpy()), 4.5 * mcse_sd)
    # lp is −U at the draw
    torch.testing.assert_close(stats["lp"][-1], -potential(z[-1]))


def test_step_sizes_are_per_chain(seed):
    torch.manual_seed(seed(1))
    scales = torch.tensor([0.1, 10.0]).view(2, 1)  # a narrow and a wide isotropic target

    def potential(z):
        return 0.5 * (z / scales).square().sum(-1)

    z0 = scales * torch.randn(8, 2, 3)
    hmc = BatchedHMC(potential, num_steps=5, adapt_mass_matrix=False)
    state = hmc.warmup(HMCState.at(potential, z0), 300)
    assert torch.equal(hmc.inverse_mass_matrix, torch.ones(8, 2, 3))  # not adapted
    # With M = I the acceptance rate depends on ε/σ alone, so each chain's ε follows
    # its own target's scale: 100 times apart, within a factor 2 of each other.
    relative = hmc.step_size / scales.squeeze(-1)
    assert relative.max() / relative.min() < 2
    assert hmc.step_size[:, 0].max() * 20 < hmc.step_size[:, 1].min()
    _, _, stats = hmc.sample(state, 200)
    assert (stats["n_steps"] == 5).all()
    accept = stats["acceptance_rate"].mean(0)  # 200 draws per chain: s.e. ≤ 0.03
    assert accept.min() > 0.6 and accept.max() < 0.98


def test_a_fixed_step_transition_leaves_a_standard_normal_invariant(seed):
    torch.manual_seed(seed(2))
    n = 20_000

    def potential(z):
        return 0.5 * z.square().sum(-1)

    # Exact draws stay exact draws: after 5 transitions the n independent chains are
    # i.i.d. N(0, I), whatever the step sizes, L and mass matrix.
    state = HMCState.at(potential, torch.randn(n, 2))
    step_size = 0.6 + 1.2 * torch.rand(n)  # up to 1.8: near the leapfrog's limit of 2
    inverse_mass_matrix = torch.tensor([1.0, 0.5]).expand(n, 2)
    for _ in range(5):
        state, stats = transition(potential, state, step_size, 10, inverse_mass_matrix)
    assert stats["acceptance_rate"].shape == (n,)
    assert 0.2 < stats["acceptance_rate"].mean() < 0.99  # rejections happen
    z = state.z.double()
    # Moments of N(0, 1) and their i.i.d. standard errors: var(z) = 1, var(z²) = 2,
    # var(z⁴) = 96; 4.5 s.e. for each of 6 comparisons.
    for power, expected, variance in ((1, 0.0, 1.0), (2, 1.0, 2.0), (4, 3.0, 96.0)):
        err = (z**power).mean(0) - expected
        assert (err.abs() < 4.5 * math.sqrt(variance / n)).all(), (power, err)
    torch.testing.assert_close(state.potential, potential(state.z))


def test_transition_marks_divergences_and_rejects_them(seed):
    torch.manual_seed(seed(3))

    def potential(z):
        return 0.5 * z.square().sum(-1)

    state = HMCState.at(potential, torch.randn(5, 2))
    new, stats = transition(potential, state, torch.full((5,), 50.0), 3)  # unstable ε
    assert stats["diverging"].all() and (stats["acceptance_rate"] == 0).all()
    assert torch.equal(new.z, state.z)


def test_bad_arguments_are_named():
    def potential(z):
        return z.square().sum(-1)

    with pytest.raises(ValueError, match="num_steps"):
        BatchedHMC(potential, num_steps=0)
    with pytest.raises(ValueError, match=r"Expected target_accept_prob in \(0, 1\) but got 1.0"):
        BatchedHMC(potential, target_accept_prob=1.0)
    hmc = BatchedHMC(potential)
    state = HMCState.at(potential, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="step_size"):
        hmc.sample(state, 10)
    with pytest.raises(ValueError, match="warmup_steps"):
        hmc.warmup(state, -1)


def test_adaptation_windows_cover_the_warmup():
    for warmup_steps in (1, 19, 20, 149, 150, 1000):
        windows = adaptation_windows(warmup_steps)
        assert windows[0][0] == 0 and windows[-1][1] == warmup_steps - 1
        assert all(a[1] + 1 == b[0] for a, b in zip(windows, windows[1:], strict=False))
