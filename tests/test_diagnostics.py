import math
import pathlib
import subprocess
import sys
import warnings

import arviz
import numpy as np
import pytest
import torch

import pyro_vae
from pyro_vae.infer.diagnostics import (
    ESS_BULK_MIN,
    KHAT_GOOD,
    KHAT_UNRELIABLE,
    RHAT_MAX,
    convergence_table,
    from_pyro,
    pareto_khat,
    posterior_inference_data,
    tail_khat,
    warn_unconverged,
)


def pareto_log_weights(k, num_samples, batch, *, seed):
    """log w for w = u^(−k), u ~ U(0, 1): a Pareto tail P(w > t) = t^(−1/k), shape k."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(num_samples, batch, generator=gen, dtype=torch.float64)
    return -k * u.log()


def test_thresholds():
    assert (KHAT_GOOD, KHAT_UNRELIABLE) == (0.5, 0.7)


@pytest.mark.parametrize("k", [0.3, 0.9])
def test_recovers_the_shape_of_pareto_weights(k, seed):
    # The tail above any cutoff of a Pareto(k) is a generalized Pareto with shape k.
    # A fit to M = 3√S tail draws has sd ≈ (1 + k)/√M (the maximum-likelihood
    # asymptotics); the mean of 10 columns has sd (1 + k)/√(10 M): allow 4 of those.
    num_samples, batch = 5000, 10
    khat = pareto_khat(pareto_log_weights(k, num_samples, batch, seed=seed(0)))
    assert khat.shape == (batch,)
    assert khat.dtype == torch.float64
    tail = 3 * math.sqrt(num_samples)
    assert abs(khat.mean().item() - k) <= 4 * (1 + k) / math.sqrt(batch * tail)


def test_draws_along_the_first_axis_and_matches_arviz(seed):
    # Column 0 has light weights, column 1 heavy ones: a transposed call would mix them.
    light = pareto_log_weights(0.1, 4000, 1, seed=seed(1))
    heavy = pareto_log_weights(1.2, 4000, 1, seed=seed(2))
    log_w = torch.cat([light, heavy], dim=1)
    khat = pareto_khat(log_w)
    assert khat[0] < KHAT_GOOD < KHAT_UNRELIABLE < khat[1]
    _, reference = arviz.psislw(log_w.T.numpy().copy())
    np.testing.assert_allclose(khat.numpy(), reference, rtol=1e-12)


def test_shift_and_float32_invariance(seed):
    log_w = pareto_log_weights(0.6, 2000, 3, seed=seed(0))
    shifted = log_w + torch.tensor([-300.0, 0.0, 40.0], dtype=torch.float64)
    assert torch.allclose(pareto_khat(shifted), pareto_khat(log_w), atol=1e-8)
    assert torch.allclose(pareto_khat(log_w.float()), pareto_khat(log_w), atol=1e-3)


def test_constant_and_rounding_noise_give_minus_infinity(seed):
    # Constant weights make the estimate exact; ArviZ alone returns inf (no tail).
    constant = torch.full((500, 2), -12.5)
    assert torch.equal(pareto_khat(constant), torch.full((2,), -math.inf, dtype=torch.float64))
    _, arviz_khat = arviz.psislw(constant.T.double().numpy().copy())
    assert np.isinf(arviz_khat).all() and (arviz_khat > 0).all()
    # An exact guide in float32: log w = log p(x) up to a few ulps.
    gen = torch.Generator().manual_seed(seed(0))
    noisy = -15.0 + 4 * torch.finfo(torch.float32).eps * 15 * torch.randn(500, 2, generator=gen)
    assert (pareto_khat(noisy.float()) == -math.inf).all()
    # ... but not a real spread of 1e-2 nats.
    spread = -15.0 + 1e-2 * torch.randn(500, 2, generator=gen)
    assert torch.isfinite(pareto_khat(spread)).all()


def test_too_few_draws_give_infinity(seed):
    # A tail of min(S/5, 3√S) ≤ 4 draws cannot be fitted: flagged as unreliable.
    log_w = torch.randn(20, 3, generator=torch.Generator().manual_seed(seed(0)))
    assert (pareto_khat(log_w) == math.inf).all()
    assert torch.isfinite(pareto_khat(torch.randn(21, 3))).all()


def test_zero_weights_are_allowed(seed):
    log_w = pareto_log_weights(0.3, 1000, 2, seed=seed(0))
    log_w[:100, 0] = -math.inf
    assert torch.isfinite(pareto_khat(log_w)).all()


@pytest.mark.parametrize(
    "log_weights",
    [
        torch.zeros(10),
        torch.zeros(2, 3, 4),
        torch.zeros(1, 3),
        torch.zeros(10, 0),
        torch.zeros(10, 3, dtype=torch.long),
        np.zeros((10, 3)),
        torch.tensor([[0.0, 1.0], [math.nan, 0.0]]),
        torch.tensor([[0.0, 1.0], [math.inf, 0.0]]),
    ],
)
def test_bad_log_weights(log_weights):
    with pytest.raises(ValueError, match="Expected log_weights"):
        pareto_khat(log_weights)


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("k", [0.3, 0.9])
def test_tail_khat_finds_the_heavy_tail_on_either_side(k, sign, seed):
    # f = ±u^(−k): a Pareto tail of shape k on one side, bounded by ±1 on the other. The
    # exceedances of f − median(f) are those of f, so the heavy side's fit is
    # pareto_khat's of log u^(−k) (same tolerance as above) and the bounded side's is
    # negative: the larger of the two is the heavy side's, whichever it is.
    draws = sign * pareto_log_weights(k, 5000, 10, seed=seed(0)).exp()
    khat = tail_khat(draws)
    assert khat.shape == (10,) and khat.dtype == torch.float64
    assert abs(khat.mean().item() - k) <= 4 * (1 + k) / math.sqrt(10 * 3 * math.sqrt(5000))


def test_tail_khat_of_light_heavy_constant_and_infinite_draws(seed):
    gen = torch.Generator().manual_seed(seed(0))
    normal = torch.randn(5000, 4, generator=gen)
    assert (tail_khat(normal) < KHAT_GOOD).all()
    # Cauchy: both tails of shape 1 (fits of sd ≈ 2/√212 ≈ 0.14 each, the larger taken).
    student = torch.distributions.StudentT(1.0).sample((5000, 4))
    assert (tail_khat(student) > KHAT_GOOD).all()
    # Constant up to float32 rounding: an exact mean, the lightest tail; ±inf: no mean.
    noisy = -15.0 + 4 * torch.finfo(torch.float32).eps * 15 * torch.randn(500, 1, generator=gen)
    infinite = torch.randn(500, 2, generator=gen)
    infinite[0, 0], infinite[1, 1] = -math.inf, math.inf
    khat = tail_khat(torch.cat([noisy.float(), torch.full((500, 1), 3.0), infinite], 1))
    assert khat.tolist() == [-math.inf, -math.inf, math.inf, math.inf]


@pytest.mark.parametrize(
    "draws",
    [torch.zeros(10), torch.zeros(1, 3), torch.zeros(10, 0), torch.zeros(10, 3, dtype=torch.long)],
)
def test_bad_draws(draws):
    with pytest.raises(ValueError, match=r"Expected draws to be a floating-point tensor"):
        tail_khat(draws)
    with pytest.raises(ValueError, match="Expected draws without NaN"):
        tail_khat(torch.tensor([[0.0, 1.0], [math.nan, 0.0]]))


def test_arviz_is_imported_only_here_and_only_when_used():
    package = pathlib.Path(pyro_vae.__file__).parent
    users = sorted(
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if "import arviz" in p.read_text()
    )
    assert users == ["infer/diagnostics.py"]
    code = "import sys, pyro_vae; assert 'arviz' not in sys.modules"
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)


def test_first_use_of_arviz_raises_no_warning_under_w_error(tmp_path):
    # ArviZ 0.23 warns about its 1.0 refactor at its first import of each day (a stamp
    # in the user's cache, here an empty one); a user's test suite with warnings as
    # errors must not fail at the package's first k-hat.
    import os

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    code = "import torch, pyro_vae.infer; pyro_vae.infer.pareto_khat(torch.randn(100, 3))"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-1000:]
    plain = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import arviz"], capture_output=True, text=True,
        env={**env, "XDG_CACHE_HOME": str(tmp_path / "fresh")},
    )  # fmt: skip
    assert "ArviZ is undergoing a major refactor" in plain.stderr  # what is silenced


def test_convergence_thresholds():
    assert (RHAT_MAX, ESS_BULK_MIN) == (1.01, 400)


def test_posterior_inference_data_layout_and_shape_checks(seed):
    rng = np.random.default_rng(seed(0))
    z = rng.normal(size=(2, 50, 3, 4))
    stats = {"diverging": np.zeros((2, 50, 3), dtype=bool), "lp": rng.normal(size=(2, 50, 3))}
    x = rng.normal(size=(3, 5))
    idata = posterior_inference_data(
        z, stats, x, x_pred=rng.normal(size=(2, 50, 3, 5)), datum=["a", "b", "c"],
        attrs={"method": "test"},
    )  # fmt: skip
    assert idata.posterior["z"].dims == ("chain", "draw", "datum", "latent")
    assert list(idata.posterior["datum"].values) == ["a", "b", "c"]
    assert idata.sample_stats["lp"].dims == ("chain", "draw", "datum")
    assert idata.observed_data["x"].dims == ("datum", "pixel")
    assert idata.posterior_predictive["x"].dims == ("chain", "draw", "datum", "pixel")
    assert idata.posterior.attrs["method"] == "test"
    with pytest.raises(ValueError, match="sample_stats\\['lp'\\]"):
        posterior_inference_data(z, {"lp": np.zeros((2, 50))}, x)
    with pytest.raises(ValueError, match="Expected z"):
        posterior_inference_data(z, {}, x[:2])


def test_convergence_table_flags_disagreeing_chains_and_counts_divergences(seed):
    rng = np.random.default_rng(seed(1))
    z = rng.normal(size=(4, 500, 3, 2))
    # datum 1: one chain 2 s.d. elsewhere, R̂ ≈ 1.3 (1 s.d. gave R̂ ≈ 1.1, the very
    # threshold asserted, and 1.0999 on one stream)
    z[0, :, 1, 1] += 2.0
    diverging = np.zeros((4, 500, 3), dtype=bool)
    diverging[2, :7, 2] = True
    idata = posterior_inference_data(z, {"diverging": diverging}, np.zeros((3, 1)))
    table = convergence_table(idata)
    assert table["rhat_max"][1] > 1.1 and (table["rhat_max"][[0, 2]] < RHAT_MAX).all()
    expected = arviz.ess(idata, method="bulk")["z"].values.min(1)
    np.testing.assert_allclose(table["ess_bulk_min"], expected)
    np.testing.assert_array_equal(table["divergences"], [0, 0, 7])
    without = convergence_table(posterior_inference_data(z, {}, np.zeros((3, 1))))
    np.testing.assert_array_equal(without["divergences"], [0, 0, 0])


def test_convergence_table_reports_bfmi_per_datum(seed):
    # arviz.bfmi(idata) fails on the package's (chain, draw, datum) energies; the table
    # gives each datum's smallest BFMI over chains. Datum 1's energy is a slow random
    # walk (E[ΔE²] small against Var E): BFMI ≪ 0.3.
    rng = np.random.default_rng(seed(2))
    energy = rng.normal(size=(4, 500, 2))
    energy[:, :, 1] = np.cumsum(0.05 * rng.normal(size=(4, 500)), axis=1)
    z = rng.normal(size=(4, 500, 2, 2))
    idata = posterior_inference_data(z, {"energy": energy}, np.zeros((2, 1)))
    with pytest.raises(ValueError, match="must be a permuted list"):
        arviz.bfmi(idata)
    table = convergence_table(idata)
    expected = [arviz.bfmi(energy[:, :, i]).min() for i in range(2)]
    np.testing.assert_allclose(table["bfmi_min"], expected)
    assert table["bfmi_min"][0] > 1.0 and table["bfmi_min"][1] < 0.3
    assert "bfmi_min" not in convergence_table(posterior_inference_data(z, {}, np.zeros((2, 1))))


def test_unconverged_warning_names_ten_points_and_counts_the_rest():
    checks = {"rhat_max": np.full(359, 1.2), "ess_bulk_min": np.full(359, 1000.0),
              "divergences": np.zeros(359, dtype=int)}  # fmt: skip
    with pytest.warns(UserWarning) as record:
        warn_unconverged(checks, np.arange(359), "The reference")
    message = str(record[0].message)
    assert "datum 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 349 more" in message
    assert len(message) < 400


def test_from_pyro_gives_a_nuts_run_the_packages_dims(seed):
    # az.from_pyro labels z (chain, draw, z_dim_0, z_dim_1); from_pyro gives the layout of
    # sample_posterior and sample_guide, so that compare_posteriors reads NUTS directly.
    import pyro
    from pyro.infer import MCMC, NUTS

    from pyro_vae import VAE, compare_posteriors, sample_guide

    torch.manual_seed(seed(0))
    vae = VAE(64, z_dim=2, hidden_dims=(8,))
    x = torch.bernoulli(torch.full((3, 64), 0.3), generator=torch.Generator().manual_seed(seed(1)))
    pyro.set_rng_seed(seed(2))
    with vae.frozen(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "num_chains=2 is more than available_cpu")
        mcmc = MCMC(NUTS(vae.model), 30, warmup_steps=30, num_chains=2, disable_progbar=True)
        mcmc.run(x)
    assert arviz.from_pyro(mcmc).posterior["z"].dims[2:] == ("z_dim_0", "z_dim_1")
    idata = from_pyro(mcmc, datum=[10, 11, 12])
    assert idata.posterior["z"].dims == ("chain", "draw", "datum", "latent")
    assert idata.posterior["z"].shape == (2, 30, 3, 2)
    assert idata.sample_stats["diverging"].dims == ("chain", "draw", "datum")
    assert idata.observed_data["x"].dims == ("datum", "pixel")
    np.testing.assert_array_equal(idata.observed_data["x"].values, x.numpy())
    np.testing.assert_array_equal(
        idata.posterior["z"].values, mcmc.get_samples(group_by_chain=True)["z"].numpy()
    )
    with pytest.warns(UserWarning):  # 30 draws: R̂ and bulk ESS fail, and it says so
        table = compare_posteriors(idata, sample_guide(vae, x, datum=[10, 11, 12]))
    assert list(table.index) == [10, 11, 12] and "w2" in table
