"""Per-data-point optimal guides and the approximation/amortization split, against exact
answers: probabilistic PCA (closed forms) and a 2-D VAE (quadrature)."""

import copy

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae import VAE, LinearGaussianVAE, evaluate, inference_gaps, quadrature_posterior
from pyro_vae.data import make_linear_gaussian
from pyro_vae.infer import local
from pyro_vae.infer.local import fit_local_guides, local_estimates


@pytest.fixture(scope="module")
def correlated_ppca(seed):
    """pPCA (x_dim 10, z_dim 2) with nearly parallel columns of W (posterior correlation
    ≈ −0.8) and a linear diagonal guide shifted by 0.3 from the best diagonal one, in
    float64; 20 of its data points."""
    data = make_linear_gaussian(200, x_dim=10, z_dim=2, noise_scale=0.5, seed=seed(0))
    vae = LinearGaussianVAE(10, 2).double().fit_maximum_likelihood(data.x)
    with torch.no_grad():
        weight = torch.randn(10, 2, generator=torch.Generator().manual_seed(seed(1)))
        weight[:, 1] = 0.9 * weight[:, 0] + 0.45 * weight[:, 1]
        vae.weight.copy_(weight)
        vae.set_guide_to_posterior()  # the best diagonal Gaussian: exact mean, 1/Λ_ii
        vae.guide_loc.bias.add_(0.3)
    return vae, data.x[:20].double()


def _best_diagonal_kl(vae, x):
    """KL(q* ‖ p(z|x)) of the best diagonal Gaussian q* for p(z|x) = N(m, S):
    ½(log det S + Σ_i log Λ_ii), Λ = S⁻¹ (q* = N(m, diag 1/Λ_ii))."""
    cov = vae.exact_posterior(x).covariance_matrix
    precision = torch.linalg.inv(cov)
    return 0.5 * (torch.logdet(cov) + precision.diagonal(dim1=-2, dim2=-1).log().sum(-1))


def test_ppca_gaps_equal_their_closed_forms(correlated_ppca, seed):
    vae, x = correlated_ppca
    gaps = inference_gaps(vae, x, families=("diagonal",), seed=seed(2))
    summary = gaps.summary()
    assert gaps.log_px_source == "exact" and gaps.family == "diagonal"
    approximation = _best_diagonal_kl(vae, x).mean().item()
    amortization = vae.exact_posterior_kl(x).mean().item() - approximation
    assert approximation > 0.5  # correlated: the diagonal family costs something
    for name, exact in (("approximation_gap", approximation),
                        ("amortization_gap", amortization),
                        ("inference_gap", approximation + amortization)):  # fmt: skip
        mean, se = summary[name]
        assert abs(mean - exact) < 3 * se, (name, mean, exact, se)
    values = gaps.values
    torch.testing.assert_close(
        values["approximation_gap"] + values["amortization_gap"], values["inference_gap"]
    )


@pytest.mark.slow
def test_local_diagonal_guide_finds_the_best_diagonal_gaussian(correlated_ppca, seed):
    # q*_i = N(m_i, diag 1/Λ_ii): the fitted means and s.d. land there, from either start
    vae, x = correlated_ppca
    posterior = vae.exact_posterior(x)
    sd = torch.linalg.inv(posterior.covariance_matrix).diagonal(dim1=-2, dim2=-1).rsqrt()
    steps = {}
    for init in ("amortized", "prior"):
        guides = fit_local_guides(vae, x, init=init, seed=seed(3))
        assert guides.converged == [True]
        steps[init] = guides.steps[0]
        q = guides.modules[0]()
        assert ((q.mean - posterior.mean).abs() / sd).max() < 0.05
        assert ((q.stddev / sd).log().abs()).max() < 0.05
    assert steps["amortized"] < steps["prior"]  # the amortized start is nearer


def test_a_local_flow_closes_a_gap_the_diagonal_family_cannot(correlated_ppca, seed):
    # An IAF can represent the correlated Gaussian posterior: its approximation gap is
    # far below the diagonal family's (and is never above it beyond the s.e.)
    vae, x = correlated_ppca
    gaps = inference_gaps(vae, x, families=("diagonal", "flow"), seed=seed(4), max_steps=2000)
    summary = gaps.summary()
    flow, flow_se = summary["elbo_local_flow"]
    diagonal, diagonal_se = summary["elbo_local_diagonal"]
    log_px = summary["log_px"][0]
    assert log_px - flow < 0.5 * (log_px - diagonal)
    assert flow > diagonal - 3 * (flow_se**2 + diagonal_se**2) ** 0.5


def _check_split(gaps, vae, x, own, seed):
    """The split of ``gaps`` is that of its definition at the family ``own``, to rounding;
    each value is recomputed from the fitted guides and the same seed."""
    (other,) = set(gaps.local) - {own}
    values = gaps.values
    assert gaps.family == own
    assert {family: guides.family for family, guides in gaps.local.items()} == {
        family: family for family in gaps.local
    }
    amortized = evaluate(vae, x, num_samples=64, ks=(), seed=seed).values
    estimates = {family: local_estimates(vae, x, guides, num_samples=64, seed=seed)[0]
                 for family, guides in gaps.local.items()}  # fmt: skip
    source = gaps.log_px_source
    if source == "exact":
        log_px = vae.exact_log_likelihood(x)
    elif source == "is:amortized":
        log_px = amortized["log_px"]
    else:
        log_px = estimates[source.removeprefix("is:local_")]["log_px"]
    torch.testing.assert_close(values["log_px"], log_px, rtol=0, atol=0)
    torch.testing.assert_close(values["elbo"], amortized["elbo"], rtol=0, atol=0)
    for family, estimate in estimates.items():
        torch.testing.assert_close(values[f"elbo_local_{family}"], estimate["elbo"], rtol=0, atol=0)
    # approximation = log p(x) − L[q*] and amortization = L[q*] − L[q] at the amortized
    # guide's own family, whose L[q*] differs from the other family's at every point
    best = values[f"elbo_local_{own}"]
    assert (best - values[f"elbo_local_{other}"]).abs().min() > 1e-3
    torch.testing.assert_close(values["approximation_gap"], values["log_px"] - best)
    torch.testing.assert_close(values["amortization_gap"], best - values["elbo"])
    torch.testing.assert_close(values["inference_gap"], values["log_px"] - values["elbo"])


@pytest.mark.parametrize("families", [("diagonal", "flow"), ("flow", "diagonal")])
def test_the_split_uses_the_diagonal_guides_own_family(correlated_ppca, seed, families):
    vae, x = correlated_ppca
    gaps = inference_gaps(vae, x[:4], families=families, num_samples=64, seed=seed(8),
                          num_particles=4, max_steps=30)  # fmt: skip
    assert gaps.log_px_source == "exact"
    _check_split(gaps, vae, x[:4], "diagonal", seed(8))


def test_the_split_uses_the_flow_guides_own_family(correlated_ppca, seed):
    # A flow guide and 3 latents: log p(x) is the best IS estimate, the split the flow's
    torch.manual_seed(seed(9))
    vae = VAE(10, z_dim=3, hidden_dims=(8,), likelihood="gaussian", encoder="iaf:1")
    x = correlated_ppca[1][:4].float()
    gaps = inference_gaps(vae, x, families=("diagonal", "flow"), num_samples=64, seed=seed(10),
                          num_particles=4, max_steps=30)  # fmt: skip
    assert gaps.log_px_source.startswith("is:")
    _check_split(gaps, vae, x, "flow", seed(10))


# The mean loss of each window of 2 steps, as the fits below see it: improvement, stale,
# improvement (the count of stale checks starts again), then stale three times (the last
# window's second loss alone would look like an improvement), then improvements to the end.
_WINDOWS = [(10.0, 10.0), (9.0, 9.0), (9.5, 9.5), (8.0, 8.0), (8.5, 8.5), (8.2, 8.2),
            (8.3, 7.9), (7.0, 7.0), (6.0, 6.0), (5.0, 5.0)]  # fmt: skip


@pytest.mark.parametrize(
    "patience, steps, converged",
    [
        (1, 12, True),  # the second stale check in a row, window 6
        (2, 14, True),  # the third in a row, window 7
        (3, 20, False),  # never more than 3 in a row: max_steps ends the fit
    ],
)
def test_the_fit_stops_after_more_than_patience_checks_without_improvement(
    correlated_ppca, seed, monkeypatch, patience, steps, converged
):
    # log p(x, z) is replaced by log N(z; 0, I) − the scripted loss, and the guide starts
    # at N(0, I) with a learning rate that leaves it there to 1e-9: each step's loss is
    # the script's, and the rule alone fixes where the fit stops.
    script = torch.tensor([loss for window in _WINDOWS for loss in window], dtype=torch.float64)
    calls = []

    def scripted_log_joint(vae, x, z):
        calls.append(z.shape)
        prior = dist.Normal(torch.zeros_like(z), torch.ones_like(z)).to_event(1)
        return prior.log_prob(z) - script[len(calls) - 1]

    monkeypatch.setattr(local, "log_joint", scripted_log_joint)
    vae, x = correlated_ppca
    guides = fit_local_guides(vae, x[:1], init="prior", num_particles=3, lr=1e-12,
                              check_every=2, patience=patience, max_steps=20,
                              seed=seed(7))  # fmt: skip
    assert (guides.steps, guides.converged) == ([steps], [converged])
    assert len(calls) == steps
    losses = torch.tensor(guides.losses[0], dtype=torch.float64)
    torch.testing.assert_close(losses, script[:steps], rtol=0, atol=1e-9)


@pytest.fixture
def digits_2d(digits_vae_2d):
    vae, test = digits_vae_2d
    return vae, test[:8]


def test_2d_vae_gaps_against_quadrature(digits_2d, seed):
    # log p(x) and KL(q_φ ‖ p(z|x)) by quadrature: the inference gap is exact, and the
    # local diagonal guide's ELBO is at least the amortized one's
    vae, x = digits_2d
    gaps = inference_gaps(vae, x, families=("diagonal",), seed=seed(5), max_steps=4000)
    assert gaps.log_px_source == "quadrature"
    post = quadrature_posterior(vae, x)
    mean, se = gaps.summary()["inference_gap"]
    exact = post.kl_guide.mean().item()
    assert abs(mean - exact) < 3 * se + 1e-4, (mean, exact, se)
    amortization, amortization_se = gaps.summary()["amortization_gap"]
    assert amortization > -3 * amortization_se
    approximation, approximation_se = gaps.summary()["approximation_gap"]
    assert approximation > -3 * approximation_se


def test_no_gradient_reaches_the_model_and_the_store_is_as_found(digits_2d, seed):
    vae, x = digits_2d
    pyro.clear_param_store()
    pyro.param("users_own", torch.ones(2))
    before = copy.deepcopy(vae.state_dict())
    guides = fit_local_guides(vae, x, max_steps=300, seed=seed(6))
    local_estimates(vae, x, guides, num_samples=100, seed=seed(6))
    assert list(pyro.get_param_store().keys()) == ["users_own"]
    for key, value in vae.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.requires_grad for p in vae.parameters())
    pyro.clear_param_store()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"families": ("gaussian",)}, "Expected family in ('diagonal', 'flow') but got 'gaussian'"),
        ({"families": ("diagonal", "diagonal")}, "Expected distinct families"),
        ({"families": ()}, "Expected distinct families"),
        ({"init": "zero"}, "Expected init in ('amortized', 'prior') but got 'zero'"),
        ({"num_samples": 1}, "Expected num_samples to be an integer >= 2"),
        ({"max_steps": 0}, "Expected max_steps to be an integer > 0"),
    ],
)
def test_bad_arguments(correlated_ppca, kwargs, message):
    vae, x = correlated_ppca
    with pytest.raises(ValueError) as info:
        inference_gaps(vae, x, **kwargs)
    assert message in str(info.value)


def test_bad_data(correlated_ppca):
    vae, x = correlated_ppca
    with pytest.raises(ValueError, match="width"):
        inference_gaps(vae, x[:, :5])
