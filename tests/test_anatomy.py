import copy
import math
from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions.transforms import AffineTransform

import pyro_vae
import pyro_vae.infer.anatomy
from pyro_vae.data import load_digits, make_linear_gaussian
from pyro_vae.infer.anatomy import active_units, elbo_decompositions, elbo_surgery
from pyro_vae.infer.evaluation import Summary
from pyro_vae.models import VAE, LinearGaussianVAE

WAYS = ("reconstruction_minus_kl", "expected_joint_plus_entropy", "evidence_minus_gap")
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@pytest.fixture(scope="module")
def perturbed(seed):
    """Probabilistic PCA (x_dim 6, z_dim 2, float64) fit by ML on 2000 points, its guide
    widened and shifted off the posterior (gap ≈ 3 nats), and 200 held-out points."""
    data = make_linear_gaussian(2200, 6, 2, 0.5, seed=seed(0))
    x = data.x.double()
    lg = LinearGaussianVAE(6, 2).double().fit_maximum_likelihood(x[:2000])
    with torch.no_grad():
        lg.guide_log_scale.add_(0.5)
        lg.guide_loc.bias.add_(0.3)
    return lg, x[2000:]


def closed_form(lg, x):
    """Per-point closed forms for q = N(m, diag s²), p(x|z) = N(Wz + b, σ²I), p(z) = N(0, I).

    E_q log p(x|z) = −(D/2) log 2πσ² − (‖x − Wm − b‖² + Σ_k s_k² ‖W_k‖²) / 2σ²,
    KL(q ‖ p(z)) = ½ Σ_k (m_k² + s_k² − 1 − 2 log s_k), H[q] = Σ_k (½ log 2π + ½ + log s_k),
    E_q log p(z) = −Σ_k (½ log 2π + ½ (m_k² + s_k²)).
    """
    with torch.no_grad():
        q = lg.encode(x)
        m, s = q.mean, q.stddev
        w, b, var = lg.weight, lg.bias, lg.noise_scale.square()
        residual = (x - m @ w.T - b).square().sum(-1) + (s.square() * w.square().sum(0)).sum(-1)
        reconstruction = -0.5 * lg.x_dim * torch.log(2 * math.pi * var) - residual / (2 * var)
        kl = 0.5 * (m.square() + s.square() - 1 - 2 * s.log()).sum(-1)
        entropy = (HALF_LOG_2PI + 0.5 + s.log()).sum(-1)
        log_prior = -(HALF_LOG_2PI + 0.5 * (m.square() + s.square())).sum(-1)
    return {
        "reconstruction": reconstruction,
        "kl_prior": kl,
        "entropy": entropy,
        "expected_log_joint": reconstruction + log_prior,
        "elbo": reconstruction - kl,
    }


def transformed_guide(lg):
    """lg's model with its own guide written as an affine transform of N(0, I): the same
    q(z|x), but with no registered KL, no ``.entropy()`` and no ``.mean``."""

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            q = lg.encoder(x)
            loc, scale = q.mean, q.stddev
            base = dist.Normal(torch.zeros_like(loc), torch.ones_like(loc)).to_event(1)
            affine = AffineTransform(loc, scale, event_dim=1)
            pyro.sample("z", dist.TransformedDistribution(base, [affine]))

    return SimpleNamespace(model=lg.model, guide=guide)


def within(a, b, se, k=4.0):
    """|a − b| ≤ k se, with a message."""
    assert abs(a - b) <= k * se, f"{a} vs {b}: {abs(a - b) / se:.2f} s.e. apart (s.e. {se})"


# ------------------------------------------------------------- elbo_decompositions


@pytest.fixture(scope="module")
def decomposed(perturbed, seed):
    lg, x = perturbed
    return elbo_decompositions(lg, x, num_samples=1000, seed=seed(0))


def test_analytic_kl_and_entropy_equal_the_closed_forms(perturbed, decomposed):
    lg, x = perturbed
    exact = closed_form(lg, x)
    assert decomposed.methods["kl_prior"] == "analytic"
    assert decomposed.methods["entropy"] == "analytic"
    for name in ("kl_prior", "entropy"):
        torch.testing.assert_close(decomposed.values[name], exact[name], rtol=0, atol=1e-12)
        assert decomposed.std_errors[name].abs().max() <= 1e-12, name


def test_three_ways_agree_with_the_closed_form_elbo(perturbed, decomposed):
    lg, x = perturbed
    exact = closed_form(lg, x)
    assert decomposed.methods["log_px"] == "exact"
    assert exact["elbo"].mean() < lg.exact_log_likelihood(x).mean() - 1  # gap of > 1 nat
    summary = decomposed.summary()
    assert isinstance(summary, Summary) and list(summary)[:3] == list(WAYS)
    for name in ("reconstruction_minus_kl", "expected_joint_plus_entropy"):
        within(summary[name][0], float(exact["elbo"].mean()), summary[name][1])
    for name in ("reconstruction", "expected_log_joint"):
        within(summary[name][0], float(exact[name].mean()), summary[name][1])
    # (3) in closed form is log p(x) − KL(q ‖ p(z|x)) = ELBO, an identity of the model
    torch.testing.assert_close(
        decomposed.values["evidence_minus_gap"], exact["elbo"], rtol=0, atol=1e-9
    )
    for a, b in ((WAYS[0], WAYS[1]), (WAYS[0], WAYS[2]), (WAYS[1], WAYS[2])):
        within(summary[a][0], summary[b][0], math.hypot(summary[a][1], summary[b][1]))


def test_per_point_standard_errors_are_calibrated(perturbed, decomposed):
    # (estimate − closed form) / s.e. over 200 points has s.d. 1 if the s.e. is right;
    # the sample s.d. of 200 standard normals has s.d. 1/√400 = 0.05: 4 of them, 0.2.
    lg, x = perturbed
    exact = closed_form(lg, x)
    for name, truth in (
        ("reconstruction_minus_kl", exact["elbo"]),
        ("expected_joint_plus_entropy", exact["elbo"]),
        ("expected_log_joint", exact["expected_log_joint"]),
    ):
        z = (decomposed.values[name] - truth) / decomposed.std_errors[name]
        assert abs(float(z.std()) - 1) < 0.2, (name, float(z.std()))
    # (1) and (2) on independent draws: their difference has s.e. √(se₁² + se₂²) per point
    # (on shared draws it would be far smaller, the two sharing log p(x|z)).
    one, two = WAYS[:2]
    z = (decomposed.values[one] - decomposed.values[two]) / torch.hypot(
        decomposed.std_errors[one], decomposed.std_errors[two]
    )
    assert abs(float(z.std()) - 1) < 0.2, float(z.std())


def test_evidence_minus_gap_by_quadrature_and_importance_sampling(perturbed, seed):
    lg, x = perturbed
    exact = closed_form(lg, x)
    log_px, gap = lg.exact_log_likelihood(x), lg.exact_posterior_kl(x)
    quad = elbo_decompositions(lg, x[:50], num_samples=100, log_px="quadrature", seed=seed(0))
    assert quad.methods["log_px"] == "quadrature" and quad.log_px_samples is None
    # quadrature_posterior's tolerance is 1e-5 nats per point
    torch.testing.assert_close(quad.values["log_px"], log_px[:50], rtol=0, atol=1e-5)
    torch.testing.assert_close(
        quad.values["evidence_minus_gap"], exact["elbo"][:50], rtol=0, atol=2e-5
    )
    sampled = elbo_decompositions(
        lg, x, num_samples=100, log_px="importance_sampling", log_px_samples=2000, seed=seed(0)
    )
    assert sampled.methods["gap"] == "importance_sampling" and sampled.log_px_samples == 2000
    summary = sampled.summary()
    for name, truth in (("evidence_minus_gap", exact["elbo"]), ("log_px", log_px), ("gap", gap)):
        within(summary[name][0], float(truth.mean()), summary[name][1])
        # per point, (estimate − truth) / s.e. has s.d. 1 (± 0.2: 4 s.e. over 200 points)
        z = (sampled.values[name] - truth) / sampled.std_errors[name]
        assert abs(float(z.std()) - 1) < 0.2, (name, float(z.std()))


def test_a_precomputed_evaluation_gives_log_px_and_the_gap_without_new_draws(
    perturbed, monkeypatch, seed
):
    """With ``evaluation``, (3) is that evaluation's log p(x), gap and ELBO, (1) and (2)
    are unchanged, and no importance sampling is done; the closed forms ignore it."""
    lg, x = perturbed
    x = x[:50]
    evaluation = pyro_vae.evaluate(lg, x, 2000, ks=(), seed=seed(7))
    kwargs = {"num_samples": 100, "log_px_samples": 2000, "seed": seed(3)}
    alone = elbo_decompositions(lg, x, log_px="importance_sampling", **kwargs)

    def no_sampling(*args, **kwargs):
        raise AssertionError("log p(x) sampled again")

    monkeypatch.setattr(pyro_vae.infer.anatomy, "evaluate_unchecked", no_sampling)
    given = elbo_decompositions(
        lg, x, log_px="importance_sampling", evaluation=evaluation, **kwargs
    )
    assert given.methods == alone.methods and given.log_px_samples == 2000
    for name in alone.values:
        if name in ("log_px", "gap", "evidence_minus_gap"):
            continue
        assert torch.equal(given.values[name], alone.values[name]), name
        assert torch.equal(given.std_errors[name], alone.std_errors[name]), name
    for name, source in (("log_px", "log_px"), ("gap", "gap")):
        assert torch.equal(given.values[name], evaluation.values[source])
        assert torch.equal(given.std_errors[name], evaluation.std_errors[source])
    torch.testing.assert_close(
        given.values["evidence_minus_gap"], evaluation.values["elbo"], rtol=0, atol=1e-12
    )
    assert torch.equal(given.std_errors["evidence_minus_gap"], evaluation.std_errors["elbo"])
    # the same quantities as the sampled ones, within their errors
    summary, sampled = given.summary(), alone.summary()
    for name in ("log_px", "gap", "evidence_minus_gap"):
        within(summary[name][0], sampled[name][0], math.hypot(summary[name][1], sampled[name][1]))
    for method in ("exact", "quadrature"):
        exact = elbo_decompositions(lg, x, log_px=method, evaluation=evaluation, **kwargs)
        again = elbo_decompositions(lg, x, log_px=method, **kwargs)
        for name in again.values:
            assert torch.equal(exact.values[name], again.values[name]), (method, name)


def test_monte_carlo_terms_where_there_is_no_closed_form(perturbed, seed):
    lg, x = perturbed
    x = x[:100]
    exact = closed_form(lg, x)
    result = elbo_decompositions(transformed_guide(lg), x, num_samples=1000, seed=seed(0))
    assert result.methods["kl_prior"] == "monte_carlo"
    assert result.methods["entropy"] == "monte_carlo"
    assert result.methods["log_px"] == "importance_sampling"  # no x_dim, no closed form
    summary = result.summary()
    for name in ("kl_prior", "entropy", "reconstruction", "expected_log_joint"):
        assert summary[name][1] > 0, name
        within(summary[name][0], float(exact[name].mean()), summary[name][1])
    for name in WAYS:
        within(summary[name][0], float(exact["elbo"].mean()), summary[name][1])


@pytest.fixture(scope="module", params=[4, 2], ids=["z4", "z2"])
def digits_vae(request, seed):
    """VAE(64, z_dim, (32,)) trained 30 epochs on the digits, and 100 test digits."""
    data = load_digits(binarize="static")
    torch.manual_seed(seed(0))
    vae = VAE(64, z_dim=request.param, hidden_dims=(32,))
    pyro_vae.fit(vae, data, epochs=30, lr=1e-2, progress=False, seed=seed(0))
    return vae, data.test[:100]


def test_three_ways_agree_on_a_trained_digits_vae(digits_vae, seed):
    vae, x = digits_vae
    result = elbo_decompositions(vae, x, num_samples=1000, log_px_samples=2000, seed=seed(0))
    expected = "importance_sampling" if vae.z_dim == 4 else "quadrature"
    assert result.methods["log_px"] == expected
    summary = result.summary()
    for a, b in ((WAYS[0], WAYS[1]), (WAYS[0], WAYS[2]), (WAYS[1], WAYS[2])):
        within(summary[a][0], summary[b][0], math.hypot(summary[a][1], summary[b][1]))
    assert summary["gap"][0] > 4 * summary["gap"][1]  # a real gap, resolved
    assert summary["kl_prior"][0] > 0.5  # the guide is not the prior


def test_same_seed_same_numbers_and_global_state_left_as_found(perturbed, seed):
    lg, x = perturbed
    x = x[:20]
    pyro.param("users_own", torch.ones(2))
    keys, rng = set(pyro.get_param_store().keys()), torch.get_rng_state()
    first = elbo_decompositions(lg, x, num_samples=50, log_px="importance_sampling", seed=seed(0))
    assert set(pyro.get_param_store().keys()) == keys
    assert torch.equal(torch.get_rng_state(), rng)
    again = elbo_decompositions(lg, x, num_samples=50, log_px="importance_sampling", seed=seed(0))
    other = elbo_decompositions(lg, x, num_samples=50, log_px="importance_sampling", seed=seed(1))
    for name in first.values:
        assert torch.equal(first.values[name], again.values[name]), name
    assert not torch.equal(first.values["reconstruction"], other.values["reconstruction"])


def _evaluation(lg, x, drop=(), *, seed):
    """lg evaluated on x with K = 5000 (log_px_samples's default), less the ``drop`` values."""
    evaluation = pyro_vae.evaluate(lg, x, 5000, ks=(), seed=seed(0))
    for name in drop:
        del evaluation.values[name]
    return evaluation


def bad_calls(lg, vae4, seed):
    x = torch.zeros(5, 6, dtype=torch.float64)
    return [
        ("x", lambda: elbo_decompositions(lg, torch.zeros(5, 7))),
        ("x", lambda: elbo_decompositions(lg, torch.zeros(6))),
        ("x", lambda: elbo_surgery(lg, torch.zeros(5, 7))),
        ("x", lambda: active_units(lg, torch.full((5, 6), math.nan))),
        ("vae", lambda: elbo_decompositions(object(), x)),
        ("num_samples", lambda: elbo_decompositions(lg, x, num_samples=1)),
        ("num_samples", lambda: elbo_decompositions(lg, x, num_samples=True)),
        ("num_samples", lambda: elbo_surgery(lg, x, num_samples=1)),
        ("log_px_samples", lambda: elbo_decompositions(lg, x, log_px_samples=1)),
        ("evaluation", lambda: elbo_decompositions(lg, x, evaluation="log_px")),
        (
            "evaluation",
            lambda: elbo_decompositions(lg, x, evaluation=_evaluation(lg, x[:4], seed=seed)),
        ),
        (
            "evaluation",
            lambda: elbo_decompositions(lg, x, evaluation=_evaluation(lg, x, ["elbo"], seed=seed)),
        ),
        (
            "evaluation",
            lambda: elbo_decompositions(
                lg, x, log_px_samples=200, evaluation=_evaluation(lg, x, seed=seed)
            ),
        ),
        ("seed", lambda: elbo_decompositions(lg, x, seed=1.5)),
        ("log_px", lambda: elbo_decompositions(lg, x, log_px="exactly")),
        ("log_px", lambda: elbo_decompositions(vae4, torch.zeros(5, 64), log_px="exact")),
        ("log_px", lambda: elbo_decompositions(vae4, torch.zeros(5, 64), log_px="quadrature")),
        ("batch_size", lambda: elbo_surgery(lg, x, batch_size=0)),
        ("threshold", lambda: active_units(lg, x, threshold=-0.1)),
        ("threshold", lambda: active_units(lg, x, threshold=math.nan)),
        ("threshold", lambda: active_units(lg, x, threshold="0.01")),
        ("threshold", lambda: active_units(lg, x, threshold=True)),
        ("site", lambda: active_units(lg, x, site="w")),
    ]


BAD_CALL_NAMES = [name for name, _ in bad_calls(None, None, None)]


@pytest.mark.parametrize("case", range(len(BAD_CALL_NAMES)), ids=BAD_CALL_NAMES)
def test_bad_arguments_raise_value_errors_naming_them(perturbed, case, seed):
    lg, _ = perturbed
    name, call = bad_calls(lg, VAE(64, z_dim=4, hidden_dims=(8,)), seed)[case]
    with pytest.raises(ValueError, match=rf"Expected {name}\b"):
        call()


def test_a_latent_site_missing_from_the_guide_is_refused(perturbed):
    lg, x = perturbed

    def guide(x):
        pass

    with pytest.raises(ValueError, match="'z'"):
        elbo_decompositions(SimpleNamespace(model=lg.model, guide=guide), x[:5])


# ------------------------------------------------------------- elbo_surgery


def mixture_kl_on_grid(lg, x, points):
    """KL(q(z) ‖ N(0, I)) for the mixture q(z) = (1/N) Σ_n q(z|x_n), midpoint rule, and
    each point's share E_{q(z|x_n)}[log q(z) − log p(z)], ``(N,)``, whose mean it is.

    The box spans every component's mean ± 10 s.d. (mass outside < 1e-20)."""
    with torch.no_grad():
        q = lg.encode(x)
        m, s = q.mean, q.stddev
    lower, upper = (m - 10 * s).amin(0), (m + 10 * s).amax(0)
    cell = (upper - lower) / points
    axes = [lower[k] + (torch.arange(points, dtype=m.dtype) + 0.5) * cell[k] for k in range(2)]
    z = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 1, 2)
    log_components = dist.Normal(m, s).log_prob(z).sum(-1)  # (G, N)
    log_q = log_components.logsumexp(-1) - math.log(x.shape[0])
    log_p = dist.Normal(0.0, 1.0).log_prob(z[:, 0]).sum(-1)
    shares = (log_components.exp() * (log_q - log_p)[:, None]).sum(0) * cell.prod()
    return float(shares.mean()), shares


def test_marginal_kl_matches_grid_integration_of_the_mixture(perturbed, seed):
    lg, x = perturbed
    x = x[:30]
    (coarse, _), (fine, shares) = mixture_kl_on_grid(lg, x, 200), mixture_kl_on_grid(lg, x, 400)
    assert abs(coarse - fine) < 1e-8  # the grid has converged
    result = elbo_surgery(lg, x, num_samples=2000, seed=seed(0))
    assert list(result.summary()) == ["average_kl", "mutual_information", "marginal_kl"]
    mean, se = result.summary()["marginal_kl"]
    assert 0 < se < 0.01
    within(mean, fine, se)
    for n in range(30):  # and each point's share, on its own draws
        within(
            float(result.values["marginal_kl"][n]),
            float(shares[n]),
            float(result.std_errors["marginal_kl"][n]),
        )
    average_kl = float(closed_form(lg, x)["kl_prior"].mean())
    assert result.summary()["average_kl"] == (pytest.approx(average_kl, abs=1e-12), 0.0)
    mi, mi_se = result.summary()["mutual_information"]
    within(mi, average_kl - fine, mi_se)
    assert 0 < mi < math.log(30) and result.max_mutual_information == math.log(30)


def test_mutual_information_is_capped_by_log_n(perturbed, seed):
    # 8 points, each guide 100× narrower than the spacing of their means: the index n is
    # recovered from z, so I_q reaches the cap log N (and log B within each minibatch),
    # up to the Monte-Carlo error of E_q[log q(z) − log p(z)] against the analytic KL.
    lg, x = perturbed
    narrow = copy.deepcopy(lg)
    with torch.no_grad():
        narrow.guide_log_scale.fill_(-5.0)
    x = x[:8]
    for batch_size, cap in ((None, math.log(8)), (2, math.log(2))):
        result = elbo_surgery(narrow, x, num_samples=2000, batch_size=batch_size, seed=seed(0))
        mi, se = result.summary()["mutual_information"]
        assert result.max_mutual_information == pytest.approx(cap)
        assert se < 0.01
        within(mi, cap, se)
        per_point = result.values["mutual_information"] - cap  # each point at the cap
        assert (per_point.abs() <= 4 * result.std_errors["mutual_information"]).all()


def test_minibatch_mutual_information_is_below_the_full_data_one(perturbed, seed):
    lg, x = perturbed
    full = elbo_surgery(lg, x, num_samples=100, seed=seed(0)).summary()
    batched = elbo_surgery(lg, x, num_samples=100, batch_size=10, seed=seed(0)).summary()
    mi, se = full["mutual_information"]
    mi_b, se_b = batched["mutual_information"]
    assert mi > 4 * se  # I_q ≥ 0, resolved
    assert mi_b <= math.log(10) + 4 * se_b
    assert mi - mi_b > 4 * (se + se_b)  # minibatch mixtures bias I_q low, resolved here
    assert batched["marginal_kl"][0] - full["marginal_kl"][0] > 4 * (se + se_b)


def test_a_guide_that_ignores_x_has_no_mutual_information(perturbed, seed):
    lg, x = perturbed
    constant = copy.deepcopy(lg)
    with torch.no_grad():
        constant.guide_loc.weight.zero_()
    result = elbo_surgery(constant, x[:50], num_samples=200, seed=seed(0))
    mi, se = result.summary()["mutual_information"]
    assert se > 0
    within(mi, 0.0, se)
    assert result.summary()["average_kl"][0] > 0.1  # the KL is all marginal KL


def test_surgery_with_a_monte_carlo_kl(perturbed, seed):
    # No closed-form KL: per draw, log q(z|x_n) − log q(z) ≤ log N exactly; the mixture
    # density comes from the guide conditioned on the draws, whatever its distribution.
    lg, x = perturbed
    x = x[:30]
    result = elbo_surgery(transformed_guide(lg), x, num_samples=2000, seed=seed(0))
    assert result.kl_method == "monte_carlo"
    assert (result.values["mutual_information"] <= math.log(30) + 1e-12).all()
    summary = result.summary()
    within(
        summary["average_kl"][0],
        float(closed_form(lg, x)["kl_prior"].mean()),
        summary["average_kl"][1],
    )
    within(summary["marginal_kl"][0], mixture_kl_on_grid(lg, x, 400)[0], summary["marginal_kl"][1])


# ------------------------------------------------------------- active_units


def collapsed_vae():
    """VAE whose guide has z_0 ~ N(softplus(x_0 + x_1), 1) and z_1 ~ N(0, 1), the prior, for
    every x."""
    vae = VAE(4, z_dim=2, hidden_dims=(3,), likelihood="gaussian")
    encoder = vae.encoder
    with torch.no_grad():
        for p in encoder.parameters():
            p.zero_()
        encoder.hidden[0].weight[0, :2] = 1.0  # h_0 = softplus(x_0 + x_1)
        encoder.fc_loc.weight[0, 0] = 1.0
        encoder.fc_scale.bias.fill_(math.log(math.expm1(1 - 1e-4)))  # softplus + 1e-4 = 1
    return vae


def test_a_collapsed_dimension_is_inactive_with_zero_kl(seed):
    vae = collapsed_vae()
    x = torch.randn(100, 4)
    result = active_units(vae, x, seed=seed(0))
    q = vae.encode(x)
    z_loc, z_scale = q.mean, q.stddev
    assert torch.equal(z_scale, torch.ones_like(z_scale))  # the construction is exact
    assert result.activity[1] == 0 and result.kl[1] == 0
    assert result.num_active == 1 and result.active.tolist() == [True, False]
    assert result.threshold == 0.01 and result.mean_method == "analytic"
    torch.testing.assert_close(result.activity, torch.var(z_loc, 0, correction=0))
    assert "1 of 2 active" in str(result)
    # activity > threshold, strictly
    assert active_units(vae, x, threshold=0, seed=seed(0)).num_active == 1


def test_kl_per_dimension_sums_to_the_average_kl(digits_vae, seed):
    vae, x = digits_vae
    result = active_units(vae, x, seed=seed(0))
    average_kl = elbo_surgery(vae, x, num_samples=10, seed=seed(0)).summary()["average_kl"][0]
    kl_prior = elbo_decompositions(vae, x, num_samples=10, seed=seed(0)).summary()["kl_prior"][0]
    assert float(result.kl.sum()) == pytest.approx(average_kl, rel=1e-5)
    assert float(result.kl.sum()) == pytest.approx(kl_prior, rel=1e-5)
    assert (result.kl > 0).all() and len(str(result).splitlines()) == vae.z_dim + 2


def test_monte_carlo_mean_for_a_guide_without_one(perturbed, seed):
    # The mean of S draws adds ε̄ ~ N(0, s²/S) per point: A_MC − A = 2 Cov_x(m, ε̄) +
    # Var_x(ε̄), of mean ≈ s²/S and s.d. ≈ 2 √(A s² / (S N)). The guide is shifted by 100
    # so that a relative error in the mean of 1e-3 shows (the activity cannot see it).
    lg, x = perturbed
    shifted = copy.deepcopy(lg)
    with torch.no_grad():
        shifted.guide_loc.bias.add_(100.0)
    num_samples = 1000
    result = active_units(transformed_guide(shifted), x, num_samples=num_samples, seed=seed(0))
    assert result.mean_method == "monte_carlo" and result.kl is None
    q = shifted.encode(x)
    z_loc, z_scale = q.mean, q.stddev
    assert ((result.mean - z_loc).abs() <= 4 * z_scale / math.sqrt(num_samples)).all()
    exact = torch.var(z_loc, 0, correction=0)
    var = z_scale[0].square() / num_samples
    tol = var + 4 * 2 * (exact * var / x.shape[0]).sqrt()
    assert ((result.activity - exact).abs() <= tol).all(), (result.activity, exact, tol)


def test_memory_bounded_chunks_give_the_same_estimates(perturbed, monkeypatch, seed):
    # 64 particle-rows per pass: 15 passes of 64 draws and one of 40 per decomposition;
    # then 600: 3 rows × 200 draws, and mixture densities of 20 draws × 30 components at
    # a time. 1000 draws, not 100: log p(x|z) is a quadratic form in z with a long lower
    # tail, so the mean of 100 draws is skewed and its z-score heavy-tailed (|z| up to
    # 5.0 over 8 base seeds); with 1000 the 30 z-scores stayed below 2.9.
    lg, x = perturbed
    x = x[:30]
    monkeypatch.setattr(pyro_vae.infer.traces, "CHUNK_ROWS", 64)
    exact = closed_form(lg, x)
    result = elbo_decompositions(lg, x, num_samples=1000, seed=seed(0))
    torch.testing.assert_close(result.values["kl_prior"], exact["kl_prior"], rtol=0, atol=1e-12)
    z = (result.values["reconstruction"] - exact["reconstruction"]) / result.std_errors[
        "reconstruction"
    ]
    assert (z.abs() < 4).all()
    monkeypatch.setattr(pyro_vae.infer.traces, "CHUNK_ROWS", 600)
    mean, se = elbo_surgery(lg, x, num_samples=200, seed=seed(0)).summary()["marginal_kl"]
    within(mean, mixture_kl_on_grid(lg, x, 400)[0], se)
