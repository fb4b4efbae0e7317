import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Predictive, Trace_ELBO, TraceMeanField_ELBO

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


def test_num_data_scales_the_loss_and_sites(seed):
    vae = VAE(64, z_dim=2)
    batch, num_data = 6, 60
    x = binary_batch(batch=batch)
    # pyro.plate(num_data, subsample_size=batch) draws (unused) subsample indices from
    # the global RNG when num_data > batch, which shifts the z draws; to compare the
    # two losses on the *same* z we replay one recorded guide trace in both.
    pyro.set_rng_seed(seed(1))
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    guide = poutine.replay(vae.guide, trace=guide_trace)
    pyro.set_rng_seed(seed(1))
    full = Trace_ELBO().loss(vae.model, guide, x)
    pyro.set_rng_seed(seed(1))
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


def test_num_data_seeded_loss_scales(seed):
    # The loss of the linear-Gaussian model with its guide at the exact posterior is the
    # same for every draw of z (log w = log p(x) for all z), so here the seeded losses
    # must agree to float tolerance whatever the RNG does.
    data = make_linear_gaussian(500, 10, 2, 0.5, seed=seed(0))
    lg = LinearGaussianVAE(10, 2).fit_maximum_likelihood(data.x)
    x = data.x[:8]
    pyro.set_rng_seed(seed(3))
    full = Trace_ELBO().loss(lg.model, lg.guide, x)
    pyro.set_rng_seed(seed(3))
    scaled = Trace_ELBO().loss(lg.model, lg.guide, x, num_data=500)
    assert full == pytest.approx(-lg.exact_log_likelihood(x).sum().item(), rel=1e-5)
    assert scaled == pytest.approx(500 / 8 * full, rel=1e-5)


def test_num_data_smaller_than_batch_raises():
    vae = VAE(64, z_dim=2)
    with pytest.raises(ValueError, match="num_data"):
        poutine.trace(vae.model).get_trace(binary_batch(batch=6), num_data=3)


# ------------------------------------------------------ β: the weight of the site z


def _traces(vae, x, *, seed, **kwargs):
    """Guide trace and the model trace replayed on it, log-densities computed."""
    pyro.set_rng_seed(seed)
    guide_trace = poutine.trace(vae.guide).get_trace(x, **kwargs)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x, **kwargs)
    guide_trace.compute_log_prob()
    model_trace.compute_log_prob()
    return model_trace, guide_trace


@pytest.mark.parametrize("beta", [0.0, 0.5, 4.0])
def test_beta_weights_the_latent_site_in_model_and_guide(beta, seed):
    vae = VAE(64, z_dim=2, hidden_dims=(8,))
    x, rows = binary_batch(batch=6), torch.arange(6, 12)
    kwargs = {"num_data": 60, "subsample": rows}  # minibatch scale N/B = 10
    model, guide = _traces(vae, x, beta=beta, **kwargs, seed=seed(1))
    plain_model, plain_guide = _traces(vae, x, **kwargs, seed=seed(1))
    assert torch.equal(guide.nodes["z"]["value"], plain_guide.nodes["z"]["value"])
    for weighted, plain in ((model, plain_model), (guide, plain_guide)):
        z, plain_z = weighted.nodes["z"], plain.nodes["z"]
        if beta == 0:  # poutine.scale takes only β > 0: the site is masked instead
            assert z["mask"] is False and z["scale"] == 10
        else:
            assert z["mask"] is None and z["scale"] == pytest.approx(10 * beta)
        assert torch.equal(z["unscaled_log_prob"], plain_z["unscaled_log_prob"])
        assert z["log_prob_sum"].item() == pytest.approx(beta * plain_z["log_prob_sum"].item())
    # the likelihood keeps the minibatch scale alone
    assert model.nodes["x"]["scale"] == 10 and model.nodes["x"]["mask"] is None
    assert model.nodes["x"]["log_prob_sum"] == plain_model.nodes["x"]["log_prob_sum"]


def test_beta_one_leaves_the_traces_unchanged(seed):
    vae = VAE(64, z_dim=2, hidden_dims=(8,))
    x = binary_batch(batch=4)
    weighted = _traces(vae, x, beta=1.0, num_data=8, seed=seed(1))
    for a, b in zip(weighted, _traces(vae, x, num_data=8, seed=seed(1)), strict=True):
        assert list(a.nodes) == list(b.nodes)
        for name in ("z", "x"):
            if name in a.nodes:
                assert a.nodes[name]["scale"] == b.nodes[name]["scale"] == 2
                assert a.nodes[name]["mask"] is b.nodes[name]["mask"] is None
                assert torch.equal(a.nodes[name]["log_prob"], b.nodes[name]["log_prob"])


@pytest.mark.parametrize("beta", [-1.0, math.nan, math.inf, "0.5", True, torch.tensor(0.5)])
def test_beta_must_be_a_finite_number_at_least_zero(beta):
    vae = VAE(64, z_dim=2, hidden_dims=(8,))
    x = binary_batch(batch=3)
    for fn in (vae.model, vae.guide):
        with pytest.raises(ValueError, match="Expected beta to be a finite number >= 0"):
            fn(x, beta=beta)


def test_beta_is_keyword_only():
    # A positional β would be a traced input of JitTrace_ELBO, not a hashed constant.
    vae = VAE(64, z_dim=2, hidden_dims=(8,))
    with pytest.raises(TypeError):
        vae.model(binary_batch(batch=3), None, None, None, 0.5)


def test_autoguide_create_plates_takes_beta_but_does_not_weight_its_site(seed):
    # Autoguides call create_plates with the model's arguments, beta included. They do
    # not weight their own z site by β (the documented caveat): only the model's is.
    from pyro.infer.autoguide import AutoNormal

    data = make_linear_gaussian(40, x_dim=6, z_dim=2, noise_scale=0.5, seed=seed(2))
    lg = LinearGaussianVAE(6, 2)
    guide = AutoNormal(lg.model, create_plates=lg.create_plates)
    rows = torch.arange(10, 20)
    kwargs = {"num_data": 40, "subsample": rows, "beta": 0.5}
    assert math.isfinite(Trace_ELBO().loss(lg.model, guide, data.x[rows], **kwargs))
    guide_trace = poutine.trace(guide).get_trace(data.x[rows], **kwargs)
    model_trace = poutine.trace(poutine.replay(lg.model, trace=guide_trace)).get_trace(
        data.x[rows], **kwargs
    )
    assert guide_trace.nodes["z"]["scale"] == 4  # N/B, no β
    assert model_trace.nodes["z"]["scale"] == pytest.approx(2)  # β N/B


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
    q = vae.encode(x)
    z_loc, z_scale = q.mean, q.stddev
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


@pytest.mark.parametrize("activation", ["softplus", "elu", "relu", "tanh"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_decoder_without_gradients_computes_the_same_numbers(activation, dtype, seed):
    # Without gradients the hidden layers' activations overwrite their input
    # (ACTIVATIONS_IN_PLACE): bit for bit the numbers of the out-of-place functions that
    # training differentiates, on particle-shaped z with ragged sizes (7 × 37 rows, 33
    # units: no multiple of a vector width) and pre-activations past softplus's
    # threshold of 20.
    torch.manual_seed(seed(0))
    vae = VAE(64, z_dim=5, hidden_dims=(33, 48), activation=activation).to(dtype)
    z = 30 * torch.randn(7, 37, 5, dtype=dtype)
    given = z.clone()
    with torch.no_grad():
        fast = vae.decoder(z)
    assert (vae.decoder.hidden[0](z).abs() > 20).any()
    reference = vae.decoder(z)
    assert reference.requires_grad  # the out-of-place path
    assert torch.equal(fast, reference.detach())
    assert torch.equal(z, given)


# ------------------------------------------------------------------ closed forms


def test_exact_log_likelihood_matches_dense_gaussian():
    lg = random_linear_gaussian()
    x = torch.randn(30, 10) * 2
    expected = dense_log_likelihood(x, lg.weight.detach(), lg.bias.detach(), 0.7)
    actual = lg.exact_log_likelihood(x)
    assert actual.shape == (30,)
    assert torch.allclose(actual.double(), expected, rtol=1e-5, atol=1e-4)


def test_float32_closed_forms_are_the_float64_values_rounded(seed):
    # The ground truth is computed in float64 whatever the model's dtype: in float32 it
    # is the float64 value rounded once (before: float32 linear algebra, ~2e-5 nats off).
    import copy

    lg = random_linear_gaussian()
    x = torch.randn(50, 10, generator=torch.Generator().manual_seed(seed(0))) * 2
    lg64 = copy.deepcopy(lg).double()
    log_px = lg.exact_log_likelihood(x)
    assert log_px.dtype == torch.float32
    assert torch.equal(log_px, lg64.exact_log_likelihood(x.double()).float())
    posterior, posterior64 = lg.exact_posterior(x), lg64.exact_posterior(x.double())
    assert posterior.loc.dtype == torch.float32
    assert torch.equal(posterior.loc, posterior64.loc.float())
    assert torch.equal(posterior.scale_tril, posterior64.scale_tril.float())


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
    q = lg.encode(x)
    z_loc, z_scale = q.mean, q.stddev
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


def test_maximum_likelihood_fit(seed):
    data = make_linear_gaussian(5000, 10, 2, 0.5, seed=seed(0))
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


def test_exact_posterior_kl_zero_after_fit_positive_after_perturbation(seed):
    data = make_linear_gaussian(5000, 10, 2, 0.5, seed=seed(0))
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


# ------------------------------------------------------ parameters owned per instance


def _train_side_by_side(models, x, steps, *, seed):
    """Plain SVI on each model, steps interleaved, seeded per (model, step)."""
    svis = [SVI(m.model, m.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO()) for m in models]
    for step in range(steps):
        for i, svi in enumerate(svis):
            pyro.set_rng_seed(seed(1000 * i + step))
            svi.step(x)


def test_two_models_in_one_script_both_train_as_when_alone(seed):
    x = binary_batch(batch=16)
    torch.manual_seed(seed(0))
    init_a, init_b = VAE(64, z_dim=2).state_dict(), VAE(64, z_dim=2).state_dict()

    def fresh(init):
        vae = VAE(64, z_dim=2)
        vae.load_state_dict(init)
        return vae

    alone_a, alone_b = fresh(init_a), fresh(init_b)
    pyro.clear_param_store()
    _train_side_by_side([alone_a], x, 5, seed=seed)
    pyro.clear_param_store()
    # alone_b is seeded as the second model of the pair below
    svi = SVI(alone_b.model, alone_b.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    for step in range(5):
        pyro.set_rng_seed(seed(1000 + step))
        svi.step(x)

    # side by side, in one param store, no clear_param_store() in between
    a, b = fresh(init_a), fresh(init_b)
    _train_side_by_side([a, b], x, 5, seed=seed)
    for trained, alone, init in ((a, alone_a, init_a), (b, alone_b, init_b)):
        for name, value in trained.state_dict().items():
            assert not torch.equal(value, init[name]), name  # it trained
            assert torch.equal(value, alone.state_dict()[name]), name  # as when alone


def test_a_copy_owns_its_parameters(seed):
    import copy

    x = binary_batch(batch=8)
    vae = VAE(64, z_dim=2, hidden_dims=(8,))
    _train_side_by_side([vae], x, 1, seed=seed)
    twin = copy.deepcopy(vae)
    assert twin.pyro_name != vae.pyro_name
    before = vae.state_dict()["decoder.fc_out.bias"].clone()
    _train_side_by_side([twin], x, 2, seed=seed)  # the copy trains, the original does not move
    assert not torch.equal(twin.decoder.fc_out.bias, before)
    assert torch.equal(vae.decoder.fc_out.bias.detach(), before)


# ----------------------------------------------------- saving and loading with Pyro


def _state(vae):
    return {k: v.detach().clone() for k, v in vae.state_dict().items()}


def test_a_named_vae_round_trips_through_pyros_param_store(tmp_path, seed):
    # Pyro's own save/load: the model built again under its name reads the saved values
    # (log p(x) is the trained model's), and SVI then trains the module itself.
    import subprocess
    import sys

    from pyro_vae import evaluate

    x = binary_batch(batch=16)
    torch.manual_seed(seed(0))
    vae = VAE(64, z_dim=2, hidden_dims=(8,), name="vae")
    _train_side_by_side([vae], x, 20, seed=seed)
    path = tmp_path / "params.pt"
    pyro.get_param_store().save(path)
    trained = evaluate(vae, x, num_samples=100, seed=seed(1)).values["log_px"]
    torch.save({"x": x, "log_px": trained, "state": _state(vae)}, tmp_path / "expected.pt")
    # in a new process, as a user restarts a script
    script = f"""
import pyro, torch
from pyro.infer import SVI, Trace_ELBO
import pyro_vae
from pyro_vae import VAE, evaluate
expected = torch.load({str(tmp_path / "expected.pt")!r})
vae = VAE(64, z_dim=2, hidden_dims=(8,), name="vae")
pyro.get_param_store().load({str(path)!r})
pyro_vae.ais(vae, expected["x"][:2], num_bridges=2, num_chains=2)  # AIS first, then the rest
for key, value in expected["state"].items():
    assert torch.equal(vae.state_dict()[key], value), key
log_px = evaluate(vae, expected["x"], num_samples=100, seed={seed(1)}).values["log_px"]
assert torch.equal(log_px, expected["log_px"]), (log_px, expected["log_px"])
before = vae.decoder.fc_out.weight.detach().clone()
svi = SVI(vae.model, vae.guide, pyro.optim.Adam({{"lr": 1e-2}}), Trace_ELBO())
for _ in range(5):
    svi.step(expected["x"])
assert not torch.equal(vae.decoder.fc_out.weight, before), "the decoder did not train"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_a_named_vae_takes_the_loaded_store_in_this_process(tmp_path, seed):
    from pyro_vae import fit

    x = binary_batch(batch=16)
    torch.manual_seed(seed(0))
    saved = VAE(64, z_dim=2, hidden_dims=(8,), name="vae")
    _train_side_by_side([saved], x, 10, seed=seed)
    pyro.get_param_store().save(tmp_path / "params.pt")
    pyro.clear_param_store()
    pyro.get_param_store().load(tmp_path / "params.pt")
    # fit, whose loop skips pyro.module, starts from the loaded values too ...
    vae = VAE(64, z_dim=2, hidden_dims=(8,), name="vae")
    assert vae.load_param_store() is vae
    for key, value in _state(saved).items():
        assert torch.equal(vae.state_dict()[key], value), key
    fit(vae, x, epochs=1, batch_size=8, lr=1e-2, progress=False, seed=seed(1))
    after_fit = _state(vae)
    # ... and a later model call keeps what fit trained (the store holds those tensors)
    pyro.set_rng_seed(seed(2))
    poutine.trace(vae.guide).get_trace(x)
    for key, value in after_fit.items():
        assert torch.equal(vae.state_dict()[key], value), key
    pyro.clear_param_store()


def test_an_unnamed_vae_warns_that_it_ignores_a_loaded_store(tmp_path, seed):
    pyro.clear_param_store()
    saved = VAE(64, z_dim=2, hidden_dims=(8,), name="saved_elsewhere")
    _train_side_by_side([saved], binary_batch(), 1, seed=seed)
    store = pyro.get_param_store()
    store.save(tmp_path / "params.pt")
    pyro.clear_param_store()
    # names no model of this process was built with: rename on load, as from another process
    state = torch.load(tmp_path / "params.pt", weights_only=False)
    state["params"] = {
        k.replace("saved_elsewhere", "vae_from_disk"): v for k, v in state["params"].items()
    }
    state["constraints"] = {
        k.replace("saved_elsewhere", "vae_from_disk"): v for k, v in state["constraints"].items()
    }
    store.set_state(state)
    vae = VAE(64, z_dim=2, hidden_dims=(8,))
    with pytest.warns(
        UserWarning, match=r"named 'vae_from_disk'.*VAE\(\.\.\., name='vae_from_disk'\)"
    ):
        poutine.trace(vae.guide).get_trace(binary_batch())
    pyro.clear_param_store()


def test_replaced_parameters_train_under_svi(seed):
    # load_state_dict(assign=True) (or .to("cuda")) swaps the module's Parameters after
    # they were registered: SVI must then step the module's new ones, not the old ones.
    x = binary_batch(batch=8)
    torch.manual_seed(seed(0))
    vae = VAE(64, z_dim=2, hidden_dims=(8,))
    _train_side_by_side([vae], x, 1, seed=seed)
    vae.load_state_dict(_state(vae), assign=True)
    before = _state(vae)
    _train_side_by_side([vae], x, 3, seed=seed)
    assert not torch.equal(vae.decoder.fc_out.weight.detach(), before["decoder.fc_out.weight"])


def test_name_is_kept_by_the_checkpoint_and_not_by_a_copy(tmp_path):
    import copy

    from pyro_vae import load_checkpoint, save_checkpoint

    vae = VAE(64, z_dim=2, hidden_dims=(8,), name="vae")
    assert vae.pyro_name == "vae" and vae.config["name"] == "vae"
    assert "name" not in VAE(64).config
    save_checkpoint(tmp_path / "vae.pt", vae)
    assert load_checkpoint(tmp_path / "vae.pt")[0].pyro_name == "vae"
    twin = copy.deepcopy(vae)
    assert twin.name is None and twin.pyro_name != "vae"


# ------------------------------------------------------------- predictive sampling


def test_prior_predictive_pixel_means_match_the_decoder_marginal(seed):
    vae = VAE(64, z_dim=2, hidden_dims=(16,))
    with torch.no_grad():
        vae.decoder.fc_out.bias.normal_(0.0, 2.0)  # pixels far from p = 0.5
    num_samples, batch = 400, 5
    draws = Predictive(vae.model, num_samples=num_samples)(None, batch_size=batch)
    assert draws["z"].shape == (num_samples, batch, 2)
    assert draws["x"].shape == (num_samples, batch, 64)
    assert set(draws["x"].unique().tolist()) <= {0.0, 1.0}
    # E[x_d] = E_z sigmoid(f(z))_d, estimated independently with 20000 fresh z draws
    torch.manual_seed(seed(7))
    marginal = vae.decode(torch.randn(20000, 2)).mean(0)
    pixels = draws["x"].reshape(-1, 64)
    n = pixels.shape[0]
    se = (marginal * (1 - marginal) / n).sqrt()
    z_scores = (pixels.mean(0) - marginal) / se
    # 64 pixels, each within 4.5 s.e. (two-sided p ≈ 7e-6 per pixel)
    assert z_scores.abs().max() < 4.5
    assert pixels.mean(0).std() > 0.1  # the means really differ across pixels


def test_model_without_data():
    vae = VAE(64, z_dim=3)
    trace = poutine.trace(vae.model).get_trace(None)
    assert trace.nodes["x"]["value"].shape == (1, 64)
    assert not trace.nodes["x"]["is_observed"]
    trace = poutine.trace(vae.model).get_trace(None, num_data=7)
    assert trace.nodes["z"]["value"].shape == (7, 3)
    with pytest.raises(ValueError, match="x for the amortized guide"):
        vae.guide(None)


def test_posterior_predictive_with_uncondition():
    vae = VAE(64, z_dim=2)
    x = binary_batch(batch=5)
    draws = Predictive(poutine.uncondition(vae.model), guide=vae.guide, num_samples=7)(x)
    assert draws["z"].shape == (7, 5, 2)
    assert draws["x"].shape == (7, 5, 64)
    # new draws of x̃ ~ p(x|z), not copies of x: an untrained decoder has p ≈ 0.5
    assert (draws["x"] != x).float().mean() > 0.3
    assert not torch.equal(draws["x"][0], draws["x"][1])


# --------------------------------------------------------------- shapes and dtypes


def test_one_dimensional_x_is_refused():
    vae = VAE(15, z_dim=2, likelihood="gaussian")
    with pytest.raises(ValueError, match=r"\(batch, x_dim=15\).*unsqueeze"):
        Trace_ELBO().loss(vae.model, vae.guide, torch.randn(15))


@pytest.mark.parametrize("num_data", [3.5, "10", True])
def test_num_data_must_be_an_integer(num_data):
    vae = VAE(64, z_dim=2)
    with pytest.raises(ValueError, match="num_data"):
        poutine.trace(vae.model).get_trace(binary_batch(batch=2), num_data=num_data)


def test_subsample_must_name_one_row_per_point():
    vae = VAE(64, z_dim=2)
    x = binary_batch(batch=4)
    with pytest.raises(ValueError, match="subsample"):
        vae.model(x, num_data=10, subsample=torch.arange(3))
    with pytest.raises(ValueError, match=r"subsample indices in \[0, num_data=10\)"):
        vae.model(x, num_data=10, subsample=torch.tensor([0, 1, 2, 10]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64, torch.bool])
def test_data_follows_the_models_dtype(dtype):
    vae = VAE(64, z_dim=2, hidden_dims=(8,))
    x = binary_batch(batch=4).to(dtype)
    loss = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO()).step(x)
    assert math.isfinite(loss)
    double = VAE(64, z_dim=2, hidden_dims=(8,)).double()
    trace = poutine.trace(double.model).get_trace(x.float())
    assert trace.nodes["x"]["value"].dtype == torch.float64
    assert double.sample(3).dtype == torch.float64
    lg = LinearGaussianVAE(5, 2).double()
    xd = torch.randn(3, 5)
    assert lg.exact_posterior(xd).loc.dtype == torch.float64
    lg.set_guide_to_posterior()
    assert lg.guide_log_scale.dtype == torch.float64


def test_bernoulli_refuses_grey_levels_and_names_the_fix():
    vae = VAE(64, z_dim=2)
    grey = torch.full((3, 64), 0.4)
    with pytest.raises(ValueError, match="continuous_bernoulli"):
        Trace_ELBO().loss(vae.model, vae.guide, grey)
    cb = VAE(64, z_dim=2, likelihood="continuous_bernoulli")
    assert math.isfinite(Trace_ELBO().loss(cb.model, cb.guide, grey))
    # the continuous Bernoulli is a normalized density on [0, 1]: its log-density at
    # logits 0 is log 1 = 0 for every x (the uniform distribution)
    with torch.no_grad():
        for p in cb.decoder.parameters():
            p.zero_()
    z = torch.zeros(1, 2)
    assert cb.likelihood_dist(z).log_prob(grey[:1]).abs().item() < 1e-5


# ------------------------------------------- log-densities against written-out formulas


def _log_normal(x, loc, scale):
    return (-0.5 * ((x - loc) / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)).sum(
        -1
    )


def test_vae_log_densities_match_the_formulas():
    vae = VAE(64, z_dim=3, hidden_dims=(16,))
    x = binary_batch(batch=6)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    z = guide_trace.nodes["z"]["value"]
    with torch.no_grad():
        # prior N(0, I), written out
        prior = _log_normal(z, torch.zeros(3), torch.ones(3))
        # Bernoulli likelihood: Σ_d x_d log σ(f) + (1 − x_d) log(1 − σ(f))
        logits = vae.decoder(z)
        p = torch.sigmoid(logits)
        likelihood = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
        # guide: diagonal Gaussian with the encoder's parameters
        h = torch.nn.functional.softplus(vae.encoder.hidden[0](x))
        loc = vae.encoder.fc_loc(h)
        scale = torch.nn.functional.softplus(vae.encoder.fc_scale(h)) + 1e-4
        guide = _log_normal(z, loc, scale)
        sites = {"z": model_trace.nodes["z"], "x": model_trace.nodes["x"]}
        assert torch.allclose(sites["z"]["fn"].log_prob(z), prior, atol=1e-5)
        assert torch.allclose(sites["x"]["fn"].log_prob(x), likelihood, atol=1e-4)
        g = guide_trace.nodes["z"]
        assert torch.allclose(g["fn"].log_prob(z), guide, atol=1e-5)


def test_linear_gaussian_log_densities_match_the_formulas():
    lg = random_linear_gaussian(x_dim=6, z_dim=2)
    x = torch.randn(5, 6)
    guide_trace = poutine.trace(lg.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(lg.model, trace=guide_trace)).get_trace(x)
    z = guide_trace.nodes["z"]["value"]
    with torch.no_grad():
        prior = _log_normal(z, torch.zeros(2), torch.ones(2))
        sigma = lg.noise_scale * torch.ones(6)
        likelihood = _log_normal(x, z @ lg.weight.T + lg.bias, sigma)
        guide = _log_normal(z, x @ lg.guide_loc.weight.T + lg.guide_loc.bias,
                            lg.guide_log_scale.exp())  # fmt: skip
        assert torch.allclose(model_trace.nodes["z"]["fn"].log_prob(z), prior, atol=1e-5)
        assert torch.allclose(model_trace.nodes["x"]["fn"].log_prob(x), likelihood, atol=1e-4)
        assert torch.allclose(guide_trace.nodes["z"]["fn"].log_prob(z), guide, atol=1e-5)


# ------------------------------------------------ per-data-point guides and MCMC


def test_autonormal_on_minibatches_updates_the_right_rows_and_finds_the_posterior(seed):
    from pyro.infer.autoguide import AutoNormal

    data = make_linear_gaussian(40, x_dim=6, z_dim=2, noise_scale=0.5, seed=seed(2))
    lg = LinearGaussianVAE(6, 2).fit_maximum_likelihood(data.x)
    lg.requires_grad_(False).eval()  # θ fixed: the guide alone learns q(z_n) per point
    guide = AutoNormal(lg.model, create_plates=lg.create_plates, init_scale=0.5)
    optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.995})  # lr decays per step
    elbo = TraceMeanField_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(lg.model, guide, optim, elbo)
    rows = torch.arange(10, 20)
    svi.step(data.x[rows], num_data=40, subsample=rows)
    moved = (guide.locs.z.detach() != 0).any(-1)
    assert moved[rows].all() and not moved[:10].any() and not moved[20:].any()
    generator = torch.Generator().manual_seed(seed(0))
    for _ in range(300):
        for rows in torch.randperm(40, generator=generator).split(10):
            svi.step(data.x[rows], num_data=40, subsample=rows)
    exact = lg.exact_posterior(data.x)
    sd = exact.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()
    # The ML posterior is diagonal, so AutoNormal can match it exactly; what is left is
    # stochastic-gradient noise, measured over 12 base seeds at 0.061–0.099 posterior
    # s.d. (means, mean 0.081, s.d. 0.012) and 3.8–6.0 % (s.d.): the bounds sit more than
    # 5 s.d. of that spread above its mean. Wrong rows would be ~1 s.d. off.
    assert ((guide.locs.z.detach() - exact.loc) / sd).abs().max() < 0.15
    assert ((guide.scales.z.detach() / sd) - 1).abs().max() < 0.12


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace, used by Pyro
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_nuts_with_jit_on_the_frozen_model(seed):
    from pyro.infer import MCMC, NUTS

    data = make_linear_gaussian(200, x_dim=6, z_dim=2, noise_scale=0.5, seed=seed(3))
    lg = LinearGaussianVAE(6, 2).fit_maximum_likelihood(data.x)
    x = data.x[:1]
    with lg.frozen():
        kernel = NUTS(lg.model, jit_compile=True, ignore_jit_warnings=True)
        mcmc = MCMC(kernel, num_samples=400, warmup_steps=200, disable_progbar=True)
        mcmc.run(x)
    assert all(p.requires_grad for p in lg.parameters()) and lg.training  # restored
    z = mcmc.get_samples()["z"].squeeze(1)
    exact = lg.exact_posterior(x)
    sd = exact.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt().squeeze(0)
    # 400 draws, ESS ≥ ~100 per coordinate: the mean's MC s.e. ≤ 0.1 sd, so 0.4 sd is 4 s.e.
    assert ((z.mean(0) - exact.loc.squeeze(0)) / sd).abs().max() < 0.4


def test_skip_param_store_leaves_the_loss_and_restores_registration(seed):
    vae = VAE(64, z_dim=2, hidden_dims=(8,))
    x = torch.bernoulli(torch.full((10, 64), 0.3))
    with vae.skip_param_store():
        pyro.set_rng_seed(seed(1))
        skipped = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
        assert not list(pyro.get_param_store().keys())
    grads = torch.autograd.grad(skipped, list(vae.parameters()))
    pyro.set_rng_seed(seed(1))
    registered = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
    assert registered.item() == skipped.item()
    for a, b in zip(grads, torch.autograd.grad(registered, list(vae.parameters())), strict=True):
        assert torch.equal(a, b)
    names = list(pyro.get_param_store().keys())
    assert any(".encoder" in n for n in names) and any(".decoder" in n for n in names)
    with pytest.raises(RuntimeError), vae.skip_param_store():
        raise RuntimeError
    pyro.clear_param_store()
    poutine.trace(vae.guide).get_trace(x)
    assert pyro.get_param_store().keys()  # registering again after an exception


def test_model_tensors_follow_a_dtype_change_and_a_new_decoder():
    vae = VAE(64, z_dim=2, hidden_dims=(8,))
    x = torch.bernoulli(torch.full((4, 64), 0.3))
    assert poutine.trace(vae.model).get_trace(x).nodes["z"]["value"].dtype == torch.float32
    overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)  # new Parameter objects
    try:
        vae.double()
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(overwrite)
    trace = poutine.trace(vae.model).get_trace(x)
    assert trace.nodes["z"]["value"].dtype == torch.float64
    assert trace.nodes["x"]["value"].dtype == torch.float64
    vae.decoder = VAE(64, z_dim=2, hidden_dims=(8,)).decoder  # float32 again
    assert poutine.trace(vae.model).get_trace(x).nodes["z"]["value"].dtype == torch.float32


def test_activation_is_each_hidden_layers_unit_and_survives_a_checkpoint(tmp_path, seed):
    from torch.nn import functional as F

    from pyro_vae import load_checkpoint, save_checkpoint

    torch.manual_seed(seed(0))
    vae = VAE(64, z_dim=3, hidden_dims=(16, 8), activation="elu", encoder="coupling:1")
    assert vae.config["activation"] == "elu" and "activation" not in VAE(64).config
    z = torch.randn(5, 3)
    d = vae.decoder
    h = F.elu(d.hidden[1](F.elu(d.hidden[0](z))))
    assert torch.equal(vae.decode(z), torch.sigmoid(d.fc_out(h)))
    x = binary_batch(batch=5)
    e = vae.encoder
    assert torch.equal(e.features(x), F.elu(e.hidden[1](F.elu(e.hidden[0](x)))))
    save_checkpoint(tmp_path / "elu.pt", vae)
    loaded, _ = load_checkpoint(tmp_path / "elu.pt")
    assert loaded.config == vae.config and torch.equal(loaded.decode(z), vae.decode(z))
    with pytest.raises(ValueError, match=r"Expected activation in \('softplus', 'elu'"):
        VAE(64, activation="gelu")
