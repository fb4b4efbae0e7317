"""Tests of pyro_vae.infer.mcmc.posterior against the closed-form posterior of probabilistic PCA.

For the linear-Gaussian VAE, p(z|x) = N(M⁻¹Wᵀ(x − b), σ²M⁻¹) is known exactly, so the
batched sampler's means and standard deviations are compared with it, with tolerances
that are several Monte-Carlo standard errors (MCSE, from ArviZ) wide; the draws are
seeded, so each test is deterministic.
"""

import math
import types

import arviz
import matplotlib
import numpy as np
import pyro
import pytest
import torch
from pyro.infer.mcmc.adaptation import WarmupAdapter
from pyro.ops.dual_averaging import DualAveraging

from pyro_vae import VAE, LinearGaussianVAE, fit, quadrature_posterior
from pyro_vae.data import load_digits, make_linear_gaussian
from pyro_vae.infer.diagnostics import KHAT_GOOD, KHAT_UNRELIABLE, RHAT_MAX
from pyro_vae.infer.mcmc import adaptation_windows, sample_posterior
from pyro_vae.infer.posterior_checks import compare_posteriors, gaussian_w2, sample_guide

matplotlib.use("Agg")


def fitted_linear_gaussian(data_seed, x_dim=6, z_dim=2):
    """A maximum-likelihood probabilistic PCA whose guide is the exact posterior."""
    data = make_linear_gaussian(200, x_dim=x_dim, z_dim=z_dim, noise_scale=0.5, seed=data_seed)
    return LinearGaussianVAE(x_dim, z_dim).fit_maximum_likelihood(data.x), data.x


@pytest.fixture(scope="module")
def linear_gaussian(seed):
    return fitted_linear_gaussian(seed(3))


@pytest.fixture(scope="module")
def hmc_run(linear_gaussian, seed):
    """4 chains × 1000 draws of 8 posteriors at once (about 2 s)."""
    vae, x = linear_gaussian
    return sample_posterior(vae, x[:8], num_samples=1000, warmup_steps=500, seed=seed(1))


def exact_moments(vae, x):
    """Closed-form posterior mean (B, D) and s.d. (B, D) as numpy arrays."""
    exact = vae.exact_posterior(x)
    sd = exact.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()
    return exact.loc.double().numpy(), sd.double().numpy()


def draws(idata):
    return idata.posterior["z"].transpose("chain", "draw", "datum", "latent").values


def test_recovers_the_exact_posterior_of_8_points_at_once(linear_gaussian, hmc_run):
    vae, x = linear_gaussian
    mean, sd = exact_moments(vae, x[:8])
    z = draws(hmc_run).reshape(-1, 8, 2)
    mcse_mean = arviz.mcse(hmc_run, method="mean")["z"].values / sd
    mcse_sd = arviz.mcse(hmc_run, method="sd")["z"].values / sd
    # The tolerances, 0.1 posterior s.d. for the mean and 10 % for the s.d., are at
    # least 4 MCSE wide at every one of the 16 coordinates (asserted): a correct
    # sampler fails with probability below 16 × 6e-5, a wrong one (a shared step, an
    # MH sign flipped) misses by far more.
    assert mcse_mean.max() < 0.1 / 4 and mcse_sd.max() < 0.1 / 4
    np.testing.assert_array_less(np.abs(z.mean(0) - mean) / sd, 0.1)
    np.testing.assert_array_less(np.abs(z.std(0, ddof=1) / sd - 1), 0.1)
    assert arviz.rhat(hmc_run)["z"].values.max() < RHAT_MAX


def test_lp_and_energy_are_the_log_joint_and_the_hamiltonian(linear_gaussian, hmc_run):
    vae, x = linear_gaussian
    z = torch.from_numpy(draws(hmc_run)[0, :5]).float()  # (5 draws, 8 points, 2)
    exact = vae.exact_posterior(x[:8])
    log_joint = vae.exact_log_likelihood(x[:8]) + exact.log_prob(z)  # p(x) p(z|x)
    lp = hmc_run.sample_stats["lp"].transpose("chain", "draw", "datum").values[0, :5]
    np.testing.assert_allclose(lp, log_joint.numpy(), rtol=1e-4, atol=1e-3)
    kinetic = hmc_run.sample_stats["energy"] + hmc_run.sample_stats["lp"]
    assert (kinetic.values >= 0).all()  # H = U + K with U = −lp, K ≥ 0


def test_each_chain_adapts_its_own_step_size(hmc_run):
    stats = hmc_run.sample_stats
    step = stats["step_size"].transpose("chain", "draw", "datum").values
    # After warm-up each chain's step is its own ε × Uniform(0.6, 1.4): per chain the
    # spread is at most 1.4/0.6 (and nearly that in 1000 draws), and the 4 × 8 chains'
    # centres differ, rather than one ε for all.
    spread = step.max(axis=1) / step.min(axis=1)
    assert np.all(spread <= 1.4 / 0.6 + 1e-5) and np.all(spread > 2.2)
    centre = np.median(step, axis=1)
    assert len(np.unique(centre.round(6))) == centre.size
    # Each chain's acceptance sits near its own target 0.8 (dual averaging's running
    # average ends a little above it on a Gaussian).
    accept = stats["acceptance_rate"].mean("draw").values
    assert 0.7 < accept.min() and accept.max() < 0.98
    assert not stats["diverging"].values.any()


def test_mass_matrix_adapts_to_a_misscaled_guide(seed):
    vae, x = fitted_linear_gaussian(seed(3))
    with torch.no_grad():  # start from a mass 25 times off, either way, per dimension
        vae.guide_log_scale.add_(torch.tensor([math.log(5), -math.log(5)]))
    # 4 chains × 1000 draws converge with a margin: over 8 streams R̂ ≤ 1.0033 and bulk
    # ESS ≥ 2500 (300 draws gave R̂ up to 1.0078 and ESS 627, close enough to 1.01 and
    # 400 for the convergence warning to fire on some streams and CPUs).
    idata = sample_posterior(vae, x[:4], num_samples=1000, warmup_steps=500, seed=seed(5))
    # Whitened by the adapted variances the posterior has unit scale, so ε ≈ 1 and
    # L̄ = round(0.6π / ε) is 2 or 3, as for the exact guide; with the initial mass the
    # narrow direction would hold ε near 1/5 and L̄ near 10.
    assert np.median(idata.sample_stats["step_size"].values) > 0.5
    assert idata.sample_stats["n_steps"].values.max() <= 3
    mean, sd = exact_moments(vae, x[:4])
    z = draws(idata).reshape(-1, 4, 2)
    np.testing.assert_allclose(z.std(0, ddof=1), sd, rtol=0.15)  # ≥ 4 MCSE at ESS ≥ 400


def test_layout_of_the_inference_data(linear_gaussian, hmc_run):
    vae, x = linear_gaussian
    assert set(hmc_run.groups()) == {
        "posterior",
        "sample_stats",
        "observed_data",
        "posterior_predictive",
    }
    assert hmc_run.posterior["z"].dims == ("chain", "draw", "datum", "latent")
    assert hmc_run.posterior["z"].shape == (4, 1000, 8, 2)
    np.testing.assert_array_equal(hmc_run.posterior["datum"], np.arange(8))
    np.testing.assert_array_equal(hmc_run.posterior["latent"], np.arange(2))
    names = {"diverging", "energy", "step_size", "n_steps", "acceptance_rate", "lp"}
    assert set(hmc_run.sample_stats.data_vars) == names
    for name in names:
        assert hmc_run.sample_stats[name].dims == ("chain", "draw", "datum")
    assert hmc_run.sample_stats["diverging"].dtype == bool
    assert hmc_run.observed_data["x"].dims == ("datum", "pixel")
    np.testing.assert_allclose(hmc_run.observed_data["x"].values, x[:8].numpy())
    predictive = hmc_run.posterior_predictive["x"]
    assert predictive.dims == ("chain", "draw", "datum", "pixel")
    assert predictive.shape == (4, 1000, 8, 6)
    # x̃ ~ N(Wz + b, σ²I) at each draw: standardized residuals have unit variance.
    z = torch.from_numpy(draws(hmc_run)).float()
    with torch.no_grad():
        mean, scale = vae.decode(z.flatten(0, 1)).reshape(predictive.shape), vae.noise_scale
    residual = (predictive.values - mean.numpy()) / scale.item()
    assert abs(residual.std() - 1) < 0.01  # 192 000 draws: s.e. of the s.d. 0.0016
    assert hmc_run.posterior.attrs["method"] == "hmc"
    assert hmc_run.posterior.attrs["tuning_steps"] == 500
    assert hmc_run.posterior.attrs["sampling_time"] > 0


def test_arviz_functions_run_on_it_unchanged(hmc_run, tmp_path):
    summary = arviz.summary(hmc_run)
    assert len(summary) == 16 and summary["r_hat"].max() < RHAT_MAX
    assert arviz.rhat(hmc_run)["z"].dims == ("datum", "latent")
    assert arviz.ess(hmc_run, method="bulk")["z"].values.min() > 400
    one = hmc_run.isel(datum=0)  # az.bfmi reads energy as (chain, draw): one datum
    assert (arviz.bfmi(one) > 0.3).all()
    axes = arviz.plot_pair(hmc_run.posterior.sel(datum=0))
    axes_div = arviz.plot_pair(one, divergences=True)
    with pytest.warns(matplotlib.MatplotlibDeprecationWarning):  # ArviZ 0.23 on mpl 3.11
        axes_ppc = arviz.plot_ppc(hmc_run, num_pp_samples=10)
    for ax in (axes, axes_div, axes_ppc):
        matplotlib.pyplot.close(np.ravel(ax)[0].figure)
    path = tmp_path / "posterior.nc"
    hmc_run.to_netcdf(str(path))
    back = arviz.from_netcdf(str(path))
    np.testing.assert_array_equal(back.posterior["z"].values, hmc_run.posterior["z"].values)
    assert back.sample_stats["diverging"].dtype == bool
    assert back.posterior_predictive["x"].dims == ("chain", "draw", "datum", "pixel")


@pytest.mark.slow  # 25-110 s on 2 cores: CI runs it; the default suite stays under 10 min
def test_agrees_with_pyro_nuts_per_point(linear_gaussian, seed):
    vae, x = linear_gaussian
    x = x[8:10]
    # 4 chains × 1000 draws, as for HMC: over 4 streams R̂ ≤ 1.002 and bulk ESS ≥ 2600.
    # 2 chains × 400 draws left R̂ at 1.004–1.015 over 6 streams (split-R̂ of 4 short
    # halves is noisy), so the convergence warning fired on a third of them.
    kwargs = dict(num_samples=1000, warmup_steps=300, seed=seed(2), datum=["a", "b"])
    nuts = sample_posterior(vae, x, method="nuts", **kwargs)
    hmc = sample_posterior(
        vae, x, num_samples=1000, warmup_steps=500, seed=seed(2), datum=["a", "b"]
    )
    assert nuts.posterior["z"].shape == (4, 1000, 2, 2)
    assert list(nuts.posterior["datum"].values) == ["a", "b"]
    assert "tree_depth" in nuts.sample_stats and nuts.posterior.attrs["method"] == "nuts"
    assert nuts.sample_stats["n_steps"].values.min() >= 1
    # Means agree within 4 combined MCSE (both chains' errors independent).
    mcse = np.hypot(
        arviz.mcse(nuts, method="mean")["z"].values, arviz.mcse(hmc, method="mean")["z"].values
    )
    diff = np.abs(draws(nuts).mean((0, 1)) - draws(hmc).mean((0, 1)))
    np.testing.assert_array_less(diff, 4 * mcse)
    mean, _ = exact_moments(vae, x)
    np.testing.assert_array_less(np.abs(draws(nuts).mean((0, 1)) - mean), 4 * mcse)


def test_eight_dimensional_latents(seed):
    vae, x = fitted_linear_gaussian(seed(5), x_dim=12, z_dim=8)
    idata = sample_posterior(vae, x[:4], num_samples=1000, warmup_steps=500, seed=seed(3))
    assert idata.posterior["z"].shape == (4, 1000, 4, 8)
    assert arviz.rhat(idata)["z"].values.max() < RHAT_MAX
    mean, sd = exact_moments(vae, x[:4])
    z = draws(idata).reshape(-1, 4, 8)
    mcse = arviz.mcse(idata, method="mean")["z"].values / sd
    assert mcse.max() < 0.15 / 4  # the tolerance is 4 MCSE wide
    np.testing.assert_array_less(np.abs(z.mean(0) - mean) / sd, 0.15)
    np.testing.assert_array_less(np.abs(z.std(0, ddof=1) / sd - 1), 0.15)


def test_exact_guide_matches_and_a_narrow_guide_is_flagged(hmc_run, seed):
    vae, x = fitted_linear_gaussian(seed(3))  # a copy: the narrow guide below edits it
    guide = sample_guide(vae, x[:8], num_samples=4000, seed=seed(4))
    assert guide.posterior["z"].dims == ("chain", "draw", "datum", "latent")
    assert guide.posterior["z"].shape == (1, 4000, 8, 2)
    assert guide.sample_stats["log_weight"].dims == ("chain", "draw", "datum")
    # With q = p(z|x), log w = log p(x, z) − log p(z|x) = log p(x) for every draw.
    log_px = vae.exact_log_likelihood(x[:8]).numpy()
    np.testing.assert_allclose(
        guide.sample_stats["log_weight"].values[0],
        np.broadcast_to(log_px, (4000, 8)),
        rtol=1e-5,
        atol=1e-3,
    )
    table = compare_posteriors(hmc_run, guide)
    assert list(table.index) == list(range(8)) and table.index.name == "datum"
    # Both are draws of the same posterior: the mean error (in posterior s.d.) has
    # MCSE √(mcse_hmc² + 1/4000) ≤ 0.03, the s.d. ratio about √(1/(2·ESS_sd) + 1/8000)
    # ≤ 0.03 (asserted): 0.12 is 4 of them.
    sd = draws(hmc_run).std((0, 1), ddof=1)
    mcse = np.hypot(arviz.mcse(hmc_run, method="mean")["z"].values / sd, 1 / math.sqrt(4000))
    assert mcse.max() < 0.03
    errors = table[["mean_error_0", "mean_error_1"]].values
    ratios = table[["sd_ratio_0", "sd_ratio_1"]].values
    np.testing.assert_array_less(np.abs(errors), 0.12)
    np.testing.assert_array_less(np.abs(ratios - 1), 0.12)
    assert (table["khat"] < KHAT_GOOD).all()
    assert (table["rhat_max"] < RHAT_MAX).all() and (table["divergences"] == 0).all()
    assert (table["w2"] < 0.12 * sd.max()).all()

    with torch.no_grad():
        vae.guide_log_scale.sub_(math.log(3))  # s.d. a third of the posterior's
    narrow = compare_posteriors(hmc_run, sample_guide(vae, x[:8], num_samples=4000, seed=seed(4)))
    # k = 1 − s²/σ² = 8/9 for a Gaussian proposal a third as wide (Vehtari et al. 2024).
    assert (narrow["khat"] > KHAT_UNRELIABLE).all()
    np.testing.assert_allclose(narrow[["sd_ratio_0", "sd_ratio_1"]].values, 1 / 3, rtol=0.12)


def test_closed_form_reference_reports_the_exact_kl(seed):
    vae, x = fitted_linear_gaussian(seed(3))
    with torch.no_grad():
        vae.guide_log_scale.add_(math.log(1.5))  # a guide 1.5 times too wide
    exact = vae.exact_posterior(x[:5])
    reference = types.SimpleNamespace(  # the attributes of a quadrature result
        mean=exact.loc,
        cov=exact.covariance_matrix,
        log_px=vae.exact_log_likelihood(x[:5]),
        kl_guide=vae.exact_posterior_kl(x[:5]),
        error=torch.zeros(5),
    )
    table = compare_posteriors(reference, sample_guide(vae, x[:5], num_samples=4000, seed=seed(0)))
    np.testing.assert_allclose(table["kl_exact"], reference.kl_guide.numpy())
    assert "rhat_max" not in table and (table["reference_error"] == 0).all()
    # s.d. ratio 1.5 up to the sample s.d.'s relative error 1/√8000 ≈ 0.011 (× 4).
    np.testing.assert_allclose(table[["sd_ratio_0", "sd_ratio_1"]].values, 1.5, rtol=0.045)
    assert (table["khat"] < KHAT_GOOD).all()  # a wider proposal has light-tailed weights


def test_a_quadrature_kl_that_did_not_converge_is_not_reported_as_exact(seed, student_t_encoder):
    # A Student-t guide (ν = 3) has 0.06 nats of its KL beyond any practical grid:
    # quadrature says so (not converged, error ≈ 0.06; tests/test_quadrature.py), and
    # compare_posteriors used to report that KL as kl_exact all the same.
    vae, x = fitted_linear_gaussian(seed(3))
    vae, x = vae.double(), x[:3].double()
    vae.encoder = student_t_encoder(vae, 3.0)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        post = quadrature_posterior(vae, x)
    guide = sample_guide(vae, x, num_samples=1000, seed=seed(0))
    with pytest.warns(UserWarning, match=r"did not converge for 3 data point\(s\).*datum 0, 1, 2"):
        table = compare_posteriors(post, guide)
    assert table["kl_exact"].isna().all()
    assert not table["reference_converged"].any() and (table["reference_error"] > 0.01).all()
    # Where the reference converged its KL is kept, named by the point's label.
    mixed = types.SimpleNamespace(
        mean=post.mean, cov=post.cov, log_px=post.log_px, kl_guide=post.kl_guide,
        error=post.error, converged=torch.tensor([True, False, True]),
    )  # fmt: skip
    guide = sample_guide(vae, x, num_samples=1000, seed=seed(0), datum=["a", "b", "c"])
    with pytest.warns(UserWarning, match=r"for 1 data point\(s\).*: datum b \("):
        table = compare_posteriors(mixed, guide)
    kl = post.kl_guide.numpy()
    np.testing.assert_array_equal(table["kl_exact"].values, [kl[0], np.nan, kl[2]])


def test_gaussian_w2_closed_forms(seed):
    rng = np.random.default_rng(seed(0))
    # 1-D: W₂² = (μ₁ − μ₂)² + (σ₁ − σ₂)².
    w2 = gaussian_w2(np.array([[0.0]]), np.array([[[4.0]]]), np.array([[3.0]]), np.array([[[1.0]]]))
    np.testing.assert_allclose(w2, [math.sqrt(9 + 1)])
    # Commuting (diagonal) covariances: Σ_d (σ_d − s_d)² for the trace term.
    a, b = rng.uniform(0.5, 2, (2, 5, 3))
    w2 = gaussian_w2(
        np.zeros((5, 3)),
        np.apply_along_axis(np.diag, -1, a**2),
        np.zeros((5, 3)),
        np.apply_along_axis(np.diag, -1, b**2),
    )
    np.testing.assert_allclose(w2, np.sqrt(((a - b) ** 2).sum(-1)))
    # General: against scipy's matrix square root; W₂ is symmetric.
    import scipy.linalg

    m1, m2 = rng.normal(size=(2, 3))
    f1, f2 = rng.normal(size=(2, 3, 3))
    c1, c2 = f1 @ f1.T + 0.1 * np.eye(3), f2 @ f2.T + 0.1 * np.eye(3)
    r1 = scipy.linalg.sqrtm(c1)
    expected = np.sqrt(
        np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(r1 @ c2 @ r1)).real
    )
    np.testing.assert_allclose(gaussian_w2(m1, c1, m2, c2), expected, rtol=1e-8)
    np.testing.assert_allclose(gaussian_w2(m2, c2, m1, c1), expected, rtol=1e-8)


def test_a_short_reference_is_flagged_by_name(linear_gaussian, seed):
    vae, x = linear_gaussian
    # 2 × 20 draws: ArviZ caps the bulk ESS of N draws at N log10 N = 64 < 400, so the
    # warnings below are certain on every random stream.
    with pytest.warns(UserWarning, match=r"datum .*p, q"):
        short = sample_posterior(
            vae, x[:2], num_samples=20, warmup_steps=30, num_chains=2, datum=["p", "q"],
            posterior_predictive=False, seed=seed(0),
        )  # fmt: skip
    assert "posterior_predictive" not in short.groups()
    guide = sample_guide(vae, x[:2], num_samples=100, datum=["p", "q"], seed=seed(1))
    with pytest.warns(UserWarning, match="The reference .* datum p, q"):
        table = compare_posteriors(short, guide)
    assert (table["ess_bulk_min"] < 400).all()


def test_user_state_is_left_as_found(linear_gaussian, seed):
    vae, x = linear_gaussian
    pyro.param("users_own", torch.ones(2))
    vae.train()
    keys = set(pyro.get_param_store().keys())
    flags = [p.requires_grad for p in vae.parameters()]
    params = [p.detach().clone() for p in vae.parameters()]
    rng = torch.get_rng_state()
    # ≤ 20 draws: bulk ESS ≤ N log10 N < 400 (ArviZ's cap), so the warning is certain.
    with pytest.warns(UserWarning):
        sample_posterior(vae, x[:2], num_samples=10, warmup_steps=10, num_chains=2, seed=seed(0))
    with pytest.warns(UserWarning):
        sample_posterior(
            vae, x[:1], num_samples=10, warmup_steps=10, num_chains=1, method="nuts", seed=seed(1)
        )
    sample_guide(vae, x[:2], num_samples=10, seed=seed(2))
    assert set(pyro.get_param_store().keys()) == keys
    assert [p.requires_grad for p in vae.parameters()] == flags and vae.training
    assert all(torch.equal(p, q) for p, q in zip(vae.parameters(), params, strict=True))
    assert torch.equal(torch.get_rng_state(), rng)


def test_seed_fixes_the_draws(linear_gaussian, seed):
    vae, x = linear_gaussian
    kwargs = dict(num_samples=5, warmup_steps=5, num_chains=2, posterior_predictive=False)
    with pytest.warns(UserWarning):
        a = sample_posterior(vae, x[:2], seed=seed(7), **kwargs)
    with pytest.warns(UserWarning):
        b = sample_posterior(vae, x[:2], seed=seed(7), **kwargs)
    np.testing.assert_array_equal(a.posterior["z"].values, b.posterior["z"].values)
    with pytest.warns(UserWarning):  # chunks of one point: same starts, other streams
        c = sample_posterior(vae, x[:2], seed=seed(7), chunk_size=1, **kwargs)
    assert c.posterior["z"].shape == a.posterior["z"].shape


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "mala"}, "method"),
        ({"num_chains": 0}, "num_chains"),
        ({"num_samples": 1.5}, "num_samples"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"target_accept_prob": 1.0}, r"Expected target_accept_prob in \(0, 1\) but got 1.0"),
        ({"num_steps": 0}, "num_steps"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"seed": None}, "seed"),
        ({"datum": ["a"]}, "datum"),
        ({"datum": ["a", "a"]}, "datum"),
    ],
)
def test_bad_arguments_are_named(linear_gaussian, kwargs, match):
    vae, x = linear_gaussian
    with pytest.raises(ValueError, match=match):
        sample_posterior(vae, x[:2], **kwargs)


def test_bad_inputs_are_named(linear_gaussian, seed):
    vae, x = linear_gaussian
    with pytest.raises(ValueError, match="x"):
        sample_posterior(vae, x[:2, :3])
    with pytest.raises(ValueError, match="num_samples"):
        sample_guide(vae, x[:2], num_samples=1)
    guide = sample_guide(vae, x[:2], num_samples=10, seed=seed(0))
    with pytest.raises(ValueError, match="reference"):
        compare_posteriors(object(), guide)
    with pytest.raises(ValueError, match="same data points"):
        compare_posteriors(sample_guide(vae, x[:2], num_samples=10, datum=[5, 6]), guide)
    with pytest.raises(ValueError, match="approximation"):
        compare_posteriors(guide, guide.posterior)


@pytest.mark.parametrize("warmup_steps", [0, 10, 19, 20, 100, 149, 150, 500, 1000, 1234])
def test_adaptation_windows_match_pyros_schedule(warmup_steps):
    adapter = WarmupAdapter(adapt_step_size=True, adapt_mass_matrix=True)
    adapter._warmup_steps = warmup_steps
    expected = [tuple(w) for w in adapter._build_adaptation_schedule()] if warmup_steps else []
    windows = adaptation_windows(warmup_steps)
    assert [(start, end) for start, end, _ in windows] == expected
    # Slow (mass-matrix) windows are all but the first and the last.
    assert [slow for *_, slow in windows] == [0 < i < len(windows) - 1 for i in range(len(windows))]


def test_dual_averaging_works_elementwise():
    # The sampler relies on Pyro's DualAveraging applied to tensors of chains.
    g = torch.tensor([[0.3, -0.2], [0.1, 0.5]])
    batched = DualAveraging(prox_center=torch.tensor([[0.0, 1.0], [2.0, -1.0]]))
    scalars = [DualAveraging(prox_center=c) for c in (0.0, 1.0, 2.0, -1.0)]
    for step in range(5):
        batched.step(g * (step + 1))
        for da, gi in zip(scalars, g.flatten(), strict=True):
            da.step(float(gi) * (step + 1))
    x_t, x_avg = batched.get_state()
    np.testing.assert_allclose(x_t.flatten(), [da.get_state()[0] for da in scalars], rtol=1e-6)
    np.testing.assert_allclose(x_avg.flatten(), [da.get_state()[1] for da in scalars], rtol=1e-6)


def test_agrees_with_quadrature_on_a_trained_2d_vae(seed):
    data = load_digits(binarize="static")
    vae = VAE(64, z_dim=2, hidden_dims=(128,))
    fit(vae, data, epochs=10, progress=False, validation=False, seed=seed(1))
    x = data.test[:6]
    idata = sample_posterior(vae, x, num_samples=1000, warmup_steps=500, seed=seed(0))
    exact = quadrature_posterior(vae, x)  # grid quadrature, error < 1e-5 nats
    sd = np.sqrt(np.diagonal(exact.cov.numpy(), axis1=-2, axis2=-1))
    mcse_mean = arviz.mcse(idata, method="mean")["z"].values
    mcse_sd = arviz.mcse(idata, method="sd")["z"].values
    # Non-Gaussian posteriors of a real decoder: means within 4 MCSE, s.d. within 4
    # MCSE (and both MCSE below 2.5 % of the s.d.: ESS ≥ 1600 per coordinate).
    assert (mcse_mean / sd).max() < 0.025 and (mcse_sd / sd).max() < 0.025
    z = draws(idata)
    np.testing.assert_array_less(np.abs(z.mean((0, 1)) - exact.mean.numpy()), 4 * mcse_mean)
    np.testing.assert_array_less(np.abs(z.std((0, 1), ddof=1) - sd), 4 * mcse_sd)
    table = compare_posteriors(exact, sample_guide(vae, x, num_samples=1000, seed=seed(2)))
    np.testing.assert_allclose(table["kl_exact"], exact.kl_guide.numpy())
