"""Annealed importance sampling and the BDMC sandwich against exact answers: probabilistic
PCA (closed-form log p(x)) and a 2-D VAE (quadrature); with one bridge, plain importance
sampling computed by hand."""

import copy
import importlib
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae import VAE, LinearGaussianVAE, fit, quadrature_posterior
from pyro_vae._threads import torch_threads
from pyro_vae.data import load_digits, make_linear_gaussian
from pyro_vae.infer.ais import ADAPT_BRIDGES, ais, annealing_schedule, bdmc
from pyro_vae.infer.mcmc import transition
from pyro_vae.infer.traces import seeded

# the module (the attribute pyro_vae.infer.ais is the function it defines)
ais_module = importlib.import_module("pyro_vae.infer.ais")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def correlated_ppca(seed):
    """pPCA (x_dim 10, z_dim 2) with nearly parallel columns of W (posterior correlation
    ≈ −0.8) and a linear diagonal guide shifted by 0.3 from the best diagonal one
    (KL(q ‖ p(z|x)) of several nats), in float64; 10 of its data points."""
    data = make_linear_gaussian(200, x_dim=10, z_dim=2, noise_scale=0.5, seed=seed(0))
    vae = LinearGaussianVAE(10, 2).double().fit_maximum_likelihood(data.x)
    with torch.no_grad():
        weight = torch.randn(10, 2, generator=torch.Generator().manual_seed(seed(1)))
        weight[:, 1] = 0.9 * weight[:, 0] + 0.45 * weight[:, 1]
        vae.weight.copy_(weight)
        vae.set_guide_to_posterior()
        vae.guide_loc.bias.add_(0.3)
    return vae, data.x[:10].double()


@pytest.mark.parametrize("start", ["guide", "prior"])
def test_ppca_log_px_equals_the_closed_form(correlated_ppca, seed, start):
    vae, x = correlated_ppca
    assert vae.exact_posterior_kl(x).mean() > 1  # the guide alone would be far off
    result = ais(vae, x, num_bridges=200, num_chains=32, start=start, seed=seed(2))
    assert result.log_weights.shape == (32, 10) and result.log_px.shape == (10,)
    mean, se = result.summary()["log_px"]
    exact = vae.exact_log_likelihood(x).mean().item()
    assert se < 0.05
    assert abs(mean - exact) < 3 * se, (mean, exact, se)
    assert (result.ess > 1).all() and (result.ess <= 32 + 1e-9).all()
    assert ((result.acceptance > 0.4) & (result.acceptance < 1)).all()


@pytest.mark.parametrize("start", ["guide", "prior"])
def test_one_bridge_is_importance_sampling_by_hand(correlated_ppca, seed, start):
    vae, x = correlated_ppca
    before = torch.get_rng_state()
    result = ais(vae, x, num_bridges=1, num_chains=8, start=start, seed=seed(3))
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG as found
    with torch.no_grad(), seeded(seed(3)):
        if start == "guide":
            q = vae.encode(x)
        else:
            q = dist.Normal(torch.zeros(10, 2).double(), torch.ones(10, 2).double()).to_event(1)
        z = q.sample((8,))
        prior = dist.Normal(torch.zeros_like(z), torch.ones_like(z)).to_event(1)
        log_w = prior.log_prob(z) + vae.likelihood_dist(z).log_prob(x) - q.log_prob(z)
    torch.testing.assert_close(result.log_weights, log_w, rtol=1e-12, atol=1e-12)
    log_px = torch.logsumexp(log_w, 0) - math.log(8)
    torch.testing.assert_close(result.log_px, log_px, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def digits_2d(seed):
    pyro.set_rng_seed(seed(4))
    data = load_digits(binarize="static")
    vae = VAE(64, z_dim=2, hidden_dims=(64,))
    fit(vae, data, epochs=10, progress=False, seed=seed(4))
    return vae, data.test[:6]


@pytest.mark.parametrize("start", ["guide", "prior"])
def test_2d_vae_log_px_equals_quadrature(digits_2d, seed, start):
    vae, x = digits_2d
    requires_grad = [p.requires_grad for p in vae.parameters()]
    result = ais(vae, x, num_bridges=100, num_chains=16, start=start, seed=seed(5))
    assert [p.requires_grad for p in vae.parameters()] == requires_grad  # θ as found
    exact = quadrature_posterior(copy.deepcopy(vae).double(), x.double()).log_px.mean().item()
    mean, se = result.summary()["log_px"]
    assert abs(mean - exact) < 3 * se + 1e-4, (mean, exact, se)


def test_bdmc_sandwiches_the_exact_log_px_and_narrows(correlated_ppca, seed):
    vae, _ = correlated_ppca
    widths = {}
    for steps in (5, 200):
        sandwich = bdmc(vae, num_points=20, num_bridges=steps, seed=seed(6))
        assert sandwich.x.shape == (20, 10) and sandwich.z.shape == (20, 2)
        summary = sandwich.summary()
        exact = vae.exact_log_likelihood(sandwich.x).mean().item()
        forward, forward_se = summary["forward"]
        reverse, reverse_se = summary["reverse"]
        assert forward < exact + 3 * forward_se, (steps, forward, exact, forward_se)
        assert reverse > exact - 3 * reverse_se, (steps, reverse, exact, reverse_se)
        if steps == 200:
            # ... and from above: the reverse bias is at most the expected width, here
            # -0.02 to 0.02 ± 0.05 on base seeds 0-3, so 0.1 nats covers it
            assert reverse < exact + 3 * reverse_se + 0.1, (reverse, exact, reverse_se)
        widths[steps] = summary["width"]
    (short, short_se), (long, long_se) = widths[5], widths[200]
    assert short - long > 3 * (short_se**2 + long_se**2) ** 0.5, widths


@pytest.mark.parametrize("sandwich", [False, True], ids=["ais", "bdmc"])
def test_the_weights_come_from_the_adapted_step_sizes_held_frozen(
    correlated_ppca, seed, monkeypatch, sandwich
):
    """AIS is unbiased only because every transition of the pass that makes the weights
    (BDMC: both passes) uses each point's step size as the separate adaptation pass left
    it. Every HMC transition is spied on, with the jitter off so that the step passed is
    ε itself, and the adaptation is rebuilt from its own acceptances: log ε moves by
    ½ (acceptance − target) after each transition, ε is the geometric mean over the
    pass's second half."""
    vae, x = correlated_ppca
    calls = []

    def spy(potential, state, step_size, num_steps, inverse_mass_matrix=None):
        state, stats = transition(potential, state, step_size, num_steps, inverse_mass_matrix)
        calls.append((state.z.shape[0], step_size.clone(), stats["acceptance_rate"].mean(0)))
        return state, stats

    monkeypatch.setattr(ais_module, "transition", spy)
    monkeypatch.setattr(ais_module, "_STEP_SIZE_JITTER", 0.0)
    settings = {"num_bridges": 4, "num_chains": 3, "adapt_chains": 2, "num_steps": 2}
    if sandwich:
        result = bdmc(vae, num_points=3, seed=seed(7), **settings)
        passes = [result.forward, result.reverse]
    else:
        result = ais(vae, x[:3], seed=seed(7), **settings)
        passes = [result]
    adapting, weighting = calls[:ADAPT_BRIDGES], calls[ADAPT_BRIDGES:]
    assert [chains for chains, *_ in adapting] == [2] * ADAPT_BRIDGES
    assert [chains for chains, *_ in weighting] == [3] * 4 * len(passes)
    log_eps, history = adapting[0][1][0].log(), []  # steps passed: (chains, points)
    for _, step_size, acceptance in adapting:
        torch.testing.assert_close(step_size, log_eps.exp().expand(2, 3), rtol=1e-12, atol=0)
        log_eps = log_eps + 0.5 * (acceptance - 0.65)
        history.append(log_eps)
    adapted = torch.stack(history[ADAPT_BRIDGES // 2 :]).mean(0).exp()
    assert ((adapted / adapting[0][1][0]).log().abs() > 0.01).all()  # the adaptation moved ε
    for bridge, (_, step_size, _) in enumerate(weighting):
        assert torch.equal(step_size, weighting[0][1]), (
            f"bridge {bridge}: ε {step_size[0].tolist()} after {weighting[0][1][0].tolist()}"
        )
    torch.testing.assert_close(weighting[0][1], adapted.expand(3, 3), rtol=1e-12, atol=0)
    for direction in passes:
        torch.testing.assert_close(direction.step_size, adapted, rtol=1e-12, atol=0)


def test_one_bridge_bdmc_is_prior_sampling_and_the_likelihood_at_the_exact_draw(
    correlated_ppca, seed
):
    """With one bridge both BDMC bounds are known draw by draw. Forward: importance
    sampling with the prior, log w = log p(x*|z₀) for z₀ ~ N(0, I). Reverse: each chain's
    weight is taken at its start z* before any move, log w = −log p(x*|z*), so the upper
    bound is log p(x*|z*) exactly (E[1/p(x*|z*)] = 1/p(x*) over z* ~ p(z|x*))."""
    vae, _ = correlated_ppca
    sandwich = bdmc(vae, num_points=5, num_bridges=1, num_chains=4, num_steps=2, seed=seed(8))
    with torch.no_grad(), seeded(seed(8)):
        z = torch.randn(5, 2, dtype=torch.float64)
        x = vae.likelihood_dist(z).sample()
        prior = dist.Normal(torch.zeros_like(z), torch.ones_like(z)).to_event(1)
        z0 = prior.sample((4,))
    assert torch.equal(sandwich.z, z) and torch.equal(sandwich.x, x)
    with torch.no_grad():
        forward = vae.likelihood_dist(z0).log_prob(x)
        at_exact_draw = vae.likelihood_dist(z).log_prob(x)
    close = {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(sandwich.forward.log_weights, forward, **close)
    torch.testing.assert_close(sandwich.reverse.log_weights, -at_exact_draw.expand(4, 5), **close)
    torch.testing.assert_close(sandwich.reverse.log_px, at_exact_draw, **close)
    log_mean = torch.logsumexp(forward, 0) - math.log(4)
    torch.testing.assert_close(sandwich.forward.log_px, log_mean, **close)


def test_schedules_run_from_zero_to_one():
    for schedule in ("sigmoid", "linear"):
        for steps in (1, 2, 7, 500):
            betas = torch.tensor(annealing_schedule(steps, schedule), dtype=torch.float64)
            assert betas.shape == (steps + 1,)
            assert betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all()
    sigmoid = torch.tensor(annealing_schedule(100), dtype=torch.float64)
    torch.testing.assert_close(sigmoid + sigmoid.flip(0), torch.ones(101, dtype=torch.float64))
    assert sigmoid[1] < 0.01  # small steps near the ends


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_bridges": 0}, "Expected num_bridges to be an integer > 0 but got 0"),
        ({"num_chains": 2.0}, "Expected num_chains to be an integer > 0 but got 2.0"),
        ({"num_steps": True}, "Expected num_steps to be an integer > 0 but got True"),
        ({"adapt_chains": 0}, "Expected adapt_chains to be an integer > 0 but got 0"),
        ({"start": "posterior"}, "Expected start in ('guide', 'prior') but got 'posterior'"),
        ({"schedule": "cosine"}, "Expected schedule in ('sigmoid', 'linear') but got 'cosine'"),
        ({"target_accept_prob": 1.0}, "Expected target_accept_prob in (0, 1) but got 1.0"),
        ({"seed": "a"}, "Expected seed to be an integer or None but got 'a'"),
        ({"x": torch.zeros(3, 9)}, "Expected x of width x_dim=10 but got width 9"),
    ],
)
def test_bad_ais_inputs_get_one_line(correlated_ppca, kwargs, message):
    vae, x = correlated_ppca
    kwargs = {"x": x, **kwargs}
    with pytest.raises(ValueError) as error:
        ais(vae, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_points": 0}, "Expected num_points to be an integer > 0 but got 0"),
        ({"num_bridges": -1}, "Expected num_bridges to be an integer > 0 but got -1"),
        ({"schedule": "cosine"}, "Expected schedule in ('sigmoid', 'linear') but got 'cosine'"),
        ({"target_accept_prob": 0}, "Expected target_accept_prob in (0, 1) but got 0"),
        ({"seed": 1.5}, "Expected seed to be an integer or None but got 1.5"),
        ({"vae": object()}, "Expected vae to be a pyro_vae BaseVAE"),
    ],
)
def test_bad_bdmc_inputs_get_one_line(correlated_ppca, kwargs, message):
    kwargs = {"vae": correlated_ppca[0], **kwargs}
    with pytest.raises(ValueError) as error:
        bdmc(**kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_users_param_store_and_a_second_model_survive_ais(correlated_ppca, seed):
    """AIS and BDMC leave Pyro's param store as found and the model trainable: a user's
    own parameter keeps its value, and a second model then takes SVI steps."""
    import pyro
    from pyro.infer import SVI, Trace_ELBO

    import pyro_vae

    vae, x = correlated_ppca
    pyro.clear_param_store()
    user = pyro.param("user_scale", torch.tensor(2.5))
    ais(vae, x[:4], num_bridges=3, seed=seed(0))
    bdmc(vae, num_points=3, num_bridges=3, seed=seed(1))
    assert list(pyro.get_param_store().keys()) == ["user_scale"]
    assert pyro.param("user_scale") is user and user.item() == 2.5
    assert all(p.requires_grad for p in vae.parameters())  # θ unfrozen again
    torch.manual_seed(seed(2))
    other = pyro_vae.VAE(x.shape[1], z_dim=2, hidden_dims=(8,), likelihood="gaussian")
    before = [p.detach().clone() for p in other.parameters()]
    svi = SVI(other.model, other.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    for _ in range(3):
        svi.step(x.float())
    assert any(not torch.equal(b, p) for b, p in zip(before, other.parameters(), strict=True))
    assert pyro.param("user_scale").item() == 2.5
    pyro.clear_param_store()
