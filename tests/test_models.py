import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Predictive, Trace_ELBO

from pyro_vae.data import make_linear_gaussian
from pyro_vae.models import VAE, LinearGaussianVAE


def binary_batch(batch=6, x_dim=64, p=0.3):
    return torch.bernoulli(torch.full((batch, x_dim), p))


def plate_names(site):
    return [frame.name for frame in site["cond_indep_stack"]]


def dense_log_likelihood(x, weight, bias, noise_scale):
    """log N(x; b, WWᵀ + σ²I) with a dense covariance, in float64."""
    weight, bias, x = weight.double(), bias.double(), x.double()
    cov = weight @ weight.T + noise_scale**2 * torch.eye(len(bias), dtype=torch.float64)
    return torch.distributions.MultivariateNormal(bias, cov).log_prob(x)


def random_linear_gaussian(x_dim=10, z_dim=2, noise_scale=0.7):
    """A LinearGaussianVAE with generic (non-orthogonal) W, nonzero b, random guide."""
    lg = LinearGaussianVAE(x_dim, z_dim, noise_scale=noise_scale)
    with torch.no_grad():
        lg.weight.copy_(torch.randn(x_dim, z_dim))
        lg.bias.copy_(torch.randn(x_dim))
        lg.guide_log_scale.copy_(torch.randn(z_dim) * 0.3)
    return lg


# ---------------------------------------------------------------- Pyro interface, VAE


def test_vae_svi_step_returns_finite_float():
    vae = VAE(64, z_dim=2)
    x = binary_batch()
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    before = vae.decoder.fc_out.bias.detach().clone()
    loss = svi.step(x)
    assert isinstance(loss, float)
    assert math.isfinite(loss)
    # A negative ELBO of 6 binary 64-pixel images under a near-uniform decoder is
    # roughly 6 * 64 * log 2 ≈ 266 nats: positive and of that order.
    assert 100 < loss < 1000
    # The step updated the decoder parameters registered via pyro.module.
    assert not torch.equal(vae.decoder.fc_out.bias.detach(), before)


def test_vae_predictive_shapes():
    vae = VAE(64, z_dim=2)
    x = binary_batch(batch=5)
    samples = Predictive(vae.model, guide=vae.guide, num_samples=7)(x)
    assert samples["z"].shape == (7, 5, 2)
    assert samples["x"].shape == (7, 5, 64)
    # Draws of z differ between the 7 predictive samples.
    assert not torch.allclose(samples["z"][0], samples["z"][1])


def test_vae_trace_sites_and_plate():
    vae = VAE(64, z_dim=2)
    x = binary_batch(batch=5)
    trace = poutine.trace(vae.model).get_trace(x)
    z, obs = trace.nodes["z"], trace.nodes["x"]
    assert z["type"] == "sample" and not z["is_observed"]
    assert z["value"].shape == (5, 2)
    assert z["fn"].event_shape == (2,)
    assert z["fn"].batch_shape == (5,)
    assert obs["is_observed"]
    assert obs["fn"].event_shape == (64,)
    assert torch.equal(obs["value"], x)
    assert plate_names(z) == ["data"]
    assert plate_names(obs) == ["data"]
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    assert plate_names(guide_trace.nodes["z"]) == ["data"]
    assert guide_trace.nodes["z"]["fn"].event_shape == (2,)


def test_num_data_scales_the_loss_and_sites():
    vae = VAE(64, z_dim=2)
    batch, num_data = 6, 60
    x = binary_batch(batch=batch)
    # pyro.plate(num_data, subsample_size=batch) draws (unused) subsample indices from
    # the global RNG when num_data > batch, which shifts the z draws; to compare the
    # two losses on the *same* z we replay one recorded guide trace in both.
    pyro.set_rng_seed(1)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    guide = poutine.replay(vae.guide, trace=guide_trace)
    pyro.set_rng_seed(1)
    full = Trace_ELBO().loss(vae.model, guide, x)
    pyro.set_rng_seed(1)
    scaled = Trace_ELBO().loss(vae.model, guide, x, num_data=num_data)
    assert full > 0
    assert scaled == pytest.approx(num_data / batch * full, rel=1e-6)

    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(
        x, num_data=num_data
    )
    assert model_trace.nodes["z"]["scale"] == pytest.approx(num_data / batch)
    assert model_trace.nodes["x"]["scale"] == pytest.approx(num_data / batch)
    scaled_guide = poutine.trace(vae.guide).get_trace(x, num_data=num_data)
    assert scaled_guide.nodes["z"]["scale"] == pytest.approx(num_data / batch)
    default = poutine.trace(vae.model).get_trace(x)
    assert default.nodes["x"]["scale"] == 1.0


def test_num_data_seeded_loss_scales():
    # The loss of the linear-Gaussian model with its guide at the exact posterior is the
    # same for every draw of z (log w = log p(x) for all z), so here the seeded losses
    # must agree to float tolerance whatever the RNG does.
    data = make_linear_gaussian(500, 10, 2, 0.5)
    lg = LinearGaussianVAE(10, 2).fit_maximum_likelihood(data.x)
    x = data.x[:8]
    pyro.set_rng_seed(3)
    full = Trace_ELBO().loss(lg.model, lg.guide, x)
    pyro.set_rng_seed(3)
    scaled = Trace_ELBO().loss(lg.model, lg.guide, x, num_data=500)
    assert full == pytest.approx(-lg.exact_log_likelihood(x).sum().item(), rel=1e-5)
    assert scaled == pytest.approx(500 / 8 * full, rel=1e-5)


def test_num_data_smaller_than_batch_raises():
    vae = VAE(64, z_dim=2)
    with pytest.raises(ValueError, match="num_data"):
        poutine.trace(vae.model).get_trace(binary_batch(batch=6), num_data=3)


# ---------------------------------------------------- Pyro interface, LinearGaussianVAE


def test_linear_gaussian_predictive_and_sites():
    lg = LinearGaussianVAE(10, 2)
    x = torch.randn(4, 10)
    samples = Predictive(lg.model, guide=lg.guide, num_samples=7)(x)
    assert samples["z"].shape == (7, 4, 2)
    assert samples["x"].shape == (7, 4, 10)
    trace = poutine.trace(lg.model).get_trace(x)
    sample_sites = {
        name for name, site in trace.nodes.items() if site["type"] == "sample" and name != "data"
    }
    assert sample_sites == {"z", "x"}
    assert trace.nodes["z"]["value"].shape == (4, 2)
    assert trace.nodes["z"]["fn"].event_shape == (2,)
    assert trace.nodes["x"]["is_observed"]
    assert trace.nodes["x"]["fn"].event_shape == (10,)
    assert plate_names(trace.nodes["z"]) == ["data"]
    assert plate_names(trace.nodes["x"]) == ["data"]
    svi = SVI(lg.model, lg.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    assert math.isfinite(svi.step(x))


def test_gaussian_vae_accepts_negative_data():
    vae = VAE(5, likelihood="gaussian")
    x = torch.randn(8, 5) - 3.0
    assert (x < 0).any()
    before = vae.x_log_scale.detach().clone()
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    loss = svi.step(x)
    assert isinstance(loss, float) and math.isfinite(loss)
    # The learned per-pixel scale is a trained parameter: one Adam step moves it.
    assert not torch.allclose(vae.x_log_scale.detach(), before)


# ------------------------------------------------------------ encode/decode/sample


def test_bernoulli_vae_encode_decode_reconstruct_sample():
    vae = VAE(64, z_dim=3, hidden_dims=(32, 16))
    x = binary_batch(batch=9)
    z_loc, z_scale = vae.encode(x)
    assert z_loc.shape == (9, 3) and z_scale.shape == (9, 3)
    assert (z_scale > 0).all()
    means = vae.decode(5.0 * torch.randn(11, 3))
    assert means.shape == (11, 64)
    assert means.min() >= 0 and means.max() <= 1
    recon = vae.reconstruct(x)
    assert recon.shape == (9, 64)
    assert recon.min() >= 0 and recon.max() <= 1
    new = vae.sample(4)
    assert new.shape == (4, 64)
    assert new.min() >= 0 and new.max() <= 1
    assert not new.requires_grad
    with pytest.raises(ValueError, match=r"Expected n to be an integer > 0"):
        vae.sample(0)


def test_gaussian_vae_decode_is_unbounded_mean():
    vae = VAE(5, z_dim=2, likelihood="gaussian")
    with torch.no_grad():
        vae.decoder.fc_out.bias.fill_(-7.0)
    means = vae.decode(torch.zeros(3, 2))
    assert means.shape == (3, 5)
    # A Gaussian mean is not squashed into [0, 1].
    assert (means < 0).any()
    assert torch.allclose(means, vae.decoder(torch.zeros(3, 2)))


# ------------------------------------------------------------------ closed forms


def test_exact_log_likelihood_matches_dense_gaussian():
    lg = random_linear_gaussian()
    x = torch.randn(30, 10) * 2
    expected = dense_log_likelihood(x, lg.weight.detach(), lg.bias.detach(), 0.7)
    actual = lg.exact_log_likelihood(x)
    assert actual.shape == (30,)
    assert torch.allclose(actual.double(), expected, rtol=1e-5, atol=1e-4)


def test_exact_posterior_matches_gaussian_conditioning():
    lg = random_linear_gaussian()
    x = torch.randn(7, 10) * 2
    weight, bias = lg.weight.detach().double(), lg.bias.detach().double()
    # Joint Gaussian (z, x): Cov(x) = WWᵀ + σ²I, Cov(z, x) = Wᵀ, so
    # E[z|x] = Wᵀ Σ⁻¹ (x − b) and Cov(z|x) = I − Wᵀ Σ⁻¹ W.
    sigma = weight @ weight.T + 0.49 * torch.eye(10, dtype=torch.float64)
    gain = weight.T @ torch.linalg.inv(sigma)
    mean = (x.double() - bias) @ gain.T
    cov = torch.eye(2, dtype=torch.float64) - gain @ weight
    posterior = lg.exact_posterior(x)
    assert posterior.event_shape == (2,)
    assert posterior.batch_shape == (7,)
    assert torch.allclose(posterior.mean.double(), mean, atol=1e-4)
    assert torch.allclose(posterior.covariance_matrix.double(), cov.expand(7, 2, 2), atol=1e-5)


def test_exact_posterior_kl_matches_independent_kl():
    lg = random_linear_gaussian()
    x = torch.randn(5, 10)
    z_loc, z_scale = lg.encode(x)
    weight, bias = lg.weight.detach().double(), lg.bias.detach().double()
    sigma = weight @ weight.T + 0.49 * torch.eye(10, dtype=torch.float64)
    gain = weight.T @ torch.linalg.inv(sigma)
    post_mean = (x.double() - bias) @ gain.T
    post_cov = torch.eye(2, dtype=torch.float64) - gain @ weight
    # KL(N(m0, S0) ‖ N(m1, S1))
    #   = ½[tr(S1⁻¹S0) + (m1−m0)ᵀS1⁻¹(m1−m0) − k + log|S1|/|S0|].
    prec = torch.linalg.inv(post_cov)
    var_q = z_scale.double().square()
    diff = post_mean - z_loc.double()
    kl = 0.5 * (
        (prec.diagonal() * var_q).sum(-1)
        + torch.einsum("bi,ij,bj->b", diff, prec, diff)
        - 2
        + torch.logdet(post_cov)
        - var_q.log().sum(-1)
    )
    actual = lg.exact_posterior_kl(x)
    assert (kl > 0.01).all()
    assert torch.allclose(actual.double(), kl, rtol=1e-4, atol=1e-4)


def test_maximum_likelihood_fit():
    data = make_linear_gaussian(5000, 10, 2, 0.5)
    lg = LinearGaussianVAE(10, 2)
    assert lg.fit_maximum_likelihood(data.x) is lg
    fitted = lg.exact_log_likelihood(data.x).double().mean()
    # Independent dense computation at the fitted parameters.
    dense_fitted = dense_log_likelihood(
        data.x, lg.weight.detach(), lg.bias.detach(), lg.noise_scale.item()
    ).mean()
    assert fitted.item() == pytest.approx(dense_fitted.item(), abs=1e-4)
    true = dense_log_likelihood(data.x, data.weight, data.bias, 0.5).mean()
    # ML property: the fit is at least as likely as the generating parameters.
    assert dense_fitted >= true
    assert fitted >= true
    # ... and a local maximum: perturbing any parameter group lowers the likelihood.
    weight, bias, noise = lg.weight.detach(), lg.bias.detach(), lg.noise_scale.item()
    for perturbed in (
        (weight * 1.05, bias, noise),
        (weight, bias + 0.05, noise),
        (weight, bias, noise * 1.05),
        (weight, bias, noise * 0.95),
    ):
        assert dense_log_likelihood(data.x, *perturbed).mean() < dense_fitted
    assert abs(lg.noise_scale.item() - 0.5) < 0.05
    # The ML W spans the same subspace up to rotation: WWᵀ is close to the truth.
    true_ww = data.weight @ data.weight.T
    fitted_ww = lg.weight.detach() @ lg.weight.detach().T
    assert (fitted_ww - true_ww).abs().max() < 0.1 * true_ww.abs().max()


def test_exact_posterior_kl_zero_after_fit_positive_after_perturbation():
    data = make_linear_gaussian(5000, 10, 2, 0.5)
    lg = LinearGaussianVAE(10, 2).fit_maximum_likelihood(data.x)
    x = data.x[:100]
    kl = lg.exact_posterior_kl(x)
    assert kl.shape == (100,)
    assert kl.abs().max() <= 1e-4
    with torch.no_grad():
        lg.guide_loc.bias += 0.2
    assert (lg.exact_posterior_kl(x) > 0.1).all()


# -------------------------------------------------------------- constructor errors


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"x_dim": 0}, "x_dim"),
        ({"x_dim": 64, "z_dim": -1}, "z_dim"),
        ({"x_dim": 64, "likelihood": "poisson"}, "likelihood"),
    ],
)
def test_vae_constructor_errors(kwargs, name):
    with pytest.raises(ValueError, match=name):
        VAE(**kwargs)


@pytest.mark.parametrize(
    "args, name",
    [((0, 2), "x_dim"), ((10, -1), "z_dim"), ((10, 2, 0.0), "noise_scale")],
)
def test_linear_gaussian_constructor_errors(args, name):
    with pytest.raises(ValueError, match=name):
        LinearGaussianVAE(*args)
