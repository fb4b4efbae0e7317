import math
from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

import pyro_vae.evaluation
from pyro_vae.data import make_linear_gaussian
from pyro_vae.evaluation import evaluate, log_importance_weights
from pyro_vae.models import VAE, LinearGaussianVAE

NUM_SAMPLES = 5000


def fitted_linear_gaussian():
    """Probabilistic PCA fit by ML on 2000 points, and 200 held-out points."""
    torch.manual_seed(0)
    data = make_linear_gaussian(2200, 10, 2, 0.5)
    x_train, x_test = data.x[:2000], data.x[2000:]
    return LinearGaussianVAE(10, 2).fit_maximum_likelihood(x_train), x_test


def perturb_guide(lg):
    """Widen and shift q(z|x) away from p(z|x) so the gap KL(q ‖ p(z|x)) is ≈ 5 nats."""
    with torch.no_grad():
        lg.guide_log_scale += 0.5
        lg.guide_loc.bias += 0.3
    return lg


@pytest.fixture(scope="module")
def perturbed():
    lg, x_test = fitted_linear_gaussian()
    perturb_guide(lg)
    result = evaluate(lg, x_test, num_samples=NUM_SAMPLES, seed=0)
    return lg, x_test, result


def log_px_bias(result):
    """Delta-method bias of L_S = log mean_s w_s per point: E[L_S] − log p(x) ≈ −se²/2.

    Averaged over the points it is a systematic (not random) offset, so comparisons of
    the log p(x) estimate with the truth allow it on top of the Monte-Carlo errors.
    """
    return float(result.std_errors["log_px"].square().mean() / 2)


# ----------------------------------------------------- perturbed guide: the estimates


def test_shapes_and_keys(perturbed):
    _, x_test, result = perturbed
    assert result.num_samples == NUM_SAMPLES
    expected = {"elbo", "reconstruction", "kl", "iwae_1", "iwae_5", "iwae_50"}
    expected |= {"log_px", "gap", "ess"}
    assert set(result.values) == expected
    for value in result.values.values():
        assert value.shape == (len(x_test),)
        assert torch.isfinite(value).all()
    assert set(result.std_errors) == expected - {"ess"}
    assert (result.values["ess"] > 1).all()
    assert (result.values["ess"] <= NUM_SAMPLES * (1 + 1e-4)).all()


def test_log_px_matches_exact_log_likelihood(perturbed):
    lg, x_test, result = perturbed
    exact = lg.exact_log_likelihood(x_test)
    mean, se = result.summary()["log_px"]
    assert se > 0
    error = abs(mean - exact.mean().item())
    assert error <= 3 * se + log_px_bias(result)
    assert error <= 0.05
    # Per point: the delta-method errors are honest for nearly all points (a 3-se
    # interval covers ≈ 99.7 % under normality; require 95 % of the 200 points).
    per_point = (result.values["log_px"] - exact).abs()
    covered = per_point <= 3 * result.std_errors["log_px"] + 1e-4
    assert covered.float().mean() >= 0.95


def test_bound_ordering(perturbed):
    lg, x_test, result = perturbed
    summary = result.summary()
    exact = lg.exact_log_likelihood(x_test).mean().item()
    chain = [summary["elbo"], summary["iwae_5"], summary["iwae_50"]]
    # Each estimate is a mean of independent draws with the reported se; a difference
    # of two has se ≤ √(se1² + se2²) (they share draws, which only helps here).
    for (low, se_low), (high, se_high) in zip(chain, chain[1:], strict=False):
        assert low <= high + 3 * math.hypot(se_low, se_high)
    iwae_50, se_50 = summary["iwae_50"]
    assert iwae_50 <= exact + 3 * se_50
    # The bounds are strictly ordered here, by far more than their errors.
    assert summary["elbo"][0] < summary["iwae_5"][0] - 1.0
    assert summary["iwae_5"][0] < summary["iwae_50"][0] - 0.5
    assert summary["iwae_1"] == summary["elbo"]


def test_gap_matches_exact_posterior_kl(perturbed):
    lg, x_test, result = perturbed
    exact_kl = lg.exact_posterior_kl(x_test).mean().item()
    gap, se = result.summary()["gap"]
    assert exact_kl > 1.0
    # se of the gap is the quadrature of its two terms' errors (an upper bound); the
    # slack is the delta-method bias of the log p(x) term (see log_px_bias).
    assert abs(gap - exact_kl) <= 3 * se + log_px_bias(result)
    # The gap is log_px − elbo per point, exactly.
    assert torch.allclose(
        result.values["gap"],
        result.values["log_px"] - result.values["elbo"],
        atol=1e-5,
    )


def test_elbo_matches_closed_form_elbo(perturbed):
    lg, x_test, result = perturbed
    # ELBO = log p(x) − KL(q ‖ p(z|x)), both in closed form.
    exact_elbo = (lg.exact_log_likelihood(x_test) - lg.exact_posterior_kl(x_test)).mean()
    elbo, se = result.summary()["elbo"]
    assert abs(elbo - exact_elbo.item()) <= 3 * se


def test_reconstruction_minus_kl_is_elbo(perturbed):
    _, _, result = perturbed
    values = result.values
    assert torch.allclose(values["reconstruction"] - values["kl"], values["elbo"], atol=1e-4)
    assert not torch.allclose(values["reconstruction"], values["elbo"], atol=0.1)


def test_kl_matches_closed_form_prior_kl(perturbed):
    lg, x_test, result = perturbed
    z_loc, z_scale = lg.encode(x_test)
    q = torch.distributions.Normal(z_loc.double(), z_scale.double())
    prior = torch.distributions.Normal(torch.zeros(2).double(), torch.ones(2).double())
    closed_form = torch.distributions.kl_divergence(q, prior).sum(-1)
    kl, se = result.summary()["kl"]
    assert se > 0
    assert abs(kl - closed_form.mean().item()) <= 3 * se


def test_standard_errors_are_calibrated():
    # Two independent runs (seeds 0, 1) on the same points: the standardized
    # differences (v0 − v1)/√(se0² + se1²) are ≈ N(0, 1), so their mean square over
    # 60 points is ≈ χ²₆₀/60, with sd √(2/60) ≈ 0.18; accept [0.4, 1.7] (> 3 sd).
    lg, x_test = fitted_linear_gaussian()
    perturb_guide(lg)
    x = x_test[:60]
    first = evaluate(lg, x, num_samples=1000, seed=0)
    second = evaluate(lg, x, num_samples=1000, seed=1)
    for name in ("elbo", "kl", "iwae_5"):
        diff = first.values[name] - second.values[name]
        scale = (first.std_errors[name].square() + second.std_errors[name].square()).sqrt()
        mean_square = (diff / scale).square().mean().item()
        assert 0.4 < mean_square < 1.7, name


# ---------------------------------------------------- guide at the exact posterior


def test_guide_at_posterior_gives_exact_values():
    lg, x_test = fitted_linear_gaussian()
    x = x_test[:50]
    result = evaluate(lg, x, num_samples=2000, seed=0)
    exact = lg.exact_log_likelihood(x)
    # log w = log p(x) for every z, so every estimate is log p(x) up to float32 error.
    for name in ("elbo", "iwae_5", "iwae_50", "log_px"):
        assert torch.allclose(result.values[name], exact, rtol=0, atol=1e-4), name
    assert result.values["gap"].abs().max() <= 1e-4
    assert (result.values["ess"] >= 0.999 * 2000).all()
    assert result.std_errors["elbo"].max() <= 1e-4
    # KL(q ‖ p(z)) is not zero, though: the ELBO split still carries information.
    assert (result.values["kl"] > 0.5).all()


# ----------------------------------------------------------- seeding and chunking


def test_seeded_evaluate_is_reproducible_and_keeps_global_rng():
    lg, x_test = fitted_linear_gaussian()
    perturb_guide(lg)
    x = x_test[:20]
    torch.manual_seed(42)
    state = torch.get_rng_state()
    first = evaluate(lg, x, num_samples=300, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    second = evaluate(lg, x, num_samples=300, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    for name, value in first.values.items():
        assert torch.equal(value, second.values[name]), name
    for name, value in first.std_errors.items():
        assert torch.equal(value, second.std_errors[name]), name
    other = evaluate(lg, x, num_samples=300, seed=8)
    assert not torch.equal(first.values["elbo"], other.values["elbo"])


def test_unseeded_evaluate_uses_global_rng():
    lg, x_test = fitted_linear_gaussian()
    perturb_guide(lg)
    x = x_test[:10]
    torch.manual_seed(3)
    first = evaluate(lg, x, num_samples=100, seed=None)
    advanced = torch.get_rng_state()
    torch.manual_seed(3)
    second = evaluate(lg, x, num_samples=100, seed=None)
    assert torch.equal(first.values["elbo"], second.values["elbo"])
    torch.manual_seed(3)
    assert not torch.equal(torch.get_rng_state(), advanced)


def counting(lg):
    """A model/guide pair wrapping ``lg`` that records the (particles, rows) of z drawn
    by each guide pass."""
    calls = []

    def guide(x, **kwargs):
        trace = poutine.trace(lg.guide).get_trace(x, **kwargs)
        calls.append(tuple(trace.nodes["z"]["value"].shape[:-1]))

    return SimpleNamespace(model=lg.model, guide=guide, x_dim=lg.x_dim), calls


@pytest.mark.parametrize(
    "num_points, num_samples, expected_passes",
    [
        # _CHUNK_ROWS = 1000: 1 point × 1000 samples per pass, last chunk of 500.
        (12, 2500, 12 * 3),
        # 10 points × 100 samples per pass, last batch of 5 points.
        (45, 100, 5),
    ],
)
def test_chunking_gives_the_same_answer(monkeypatch, num_points, num_samples, expected_passes):
    lg, x_test = fitted_linear_gaussian()
    perturb_guide(lg)
    x = x_test[:num_points]
    default = evaluate(lg, x, num_samples=num_samples, ks=(1, 5), seed=0)
    monkeypatch.setattr(pyro_vae.evaluation, "_CHUNK_ROWS", 1000)
    wrapped, calls = counting(lg)
    chunked = evaluate(wrapped, x, num_samples=num_samples, ks=(1, 5), seed=0)
    assert len(calls) == expected_passes
    # Every pass stays within the chunk budget and all S draws per point are made once.
    assert all(particles * rows <= 1000 for particles, rows in calls)
    assert sum(particles * rows for particles, rows in calls) == num_points * num_samples
    for value in chunked.values.values():
        assert value.shape == (num_points,)
    # Draw order changes with chunking, so compare each run with the closed form:
    # the ELBO is unbiased (3 se), the log p(x) estimate has bias ≈ −se²/2.
    exact_elbo = (lg.exact_log_likelihood(x) - lg.exact_posterior_kl(x)).mean().item()
    exact = lg.exact_log_likelihood(x).mean().item()
    for result in (default, chunked):
        elbo, se = result.summary()["elbo"]
        assert abs(elbo - exact_elbo) <= 3 * se
        log_px, se = result.summary()["log_px"]
        assert abs(log_px - exact) <= 3 * se + log_px_bias(result)
    # ... and with each other, per IWAE bound (independent draws: se in quadrature).
    for name in ("elbo", "kl", "iwae_5"):
        a, se_a = default.summary()[name]
        b, se_b = chunked.summary()[name]
        assert abs(a - b) <= 3 * math.hypot(se_a, se_b), name


# ------------------------------------------------------------------ other models


def test_bernoulli_vae_evaluation():
    vae = VAE(64, z_dim=2, hidden_dims=(32,))
    x = torch.bernoulli(torch.full((8, 64), 0.3))
    result = evaluate(vae, x, num_samples=200, ks=(1, 10), seed=0)
    summary = result.summary()
    assert summary["elbo"][0] <= summary["iwae_10"][0] + 3 * math.hypot(
        summary["elbo"][1], summary["iwae_10"][1]
    )
    # log p(x) of 64 binary pixels under a near-uniform decoder is ≈ −64 log 2.
    assert -64 * math.log(2) - 15 < summary["log_px"][0] < -64 * math.log(2) + 15
    assert torch.allclose(
        result.values["reconstruction"] - result.values["kl"],
        result.values["elbo"],
        atol=1e-4,
    )


def test_log_importance_weights_shapes_and_terms():
    lg, x_test = fitted_linear_gaussian()
    x = x_test[:6]
    terms = log_importance_weights(lg.model, lg.guide, x, 9)
    assert set(terms) == {"log_likelihood", "log_prior", "log_guide"}
    for value in terms.values():
        assert value.shape == (9, 6)
    # At the exact posterior, log p(x|z) + log p(z) − log q(z|x) = log p(x) for all z.
    log_w = terms["log_likelihood"] + terms["log_prior"] - terms["log_guide"]
    assert torch.allclose(log_w, lg.exact_log_likelihood(x).expand(9, 6), atol=1e-4)
    # Unscaled by num_data: the same terms with a subsampling scale.
    scaled = log_importance_weights(lg.model, lg.guide, x, 9, num_data=600)
    scaled_w = scaled["log_likelihood"] + scaled["log_prior"] - scaled["log_guide"]
    assert torch.allclose(scaled_w, log_w, atol=1e-4)


def test_log_importance_weights_rejects_sites_outside_the_data_plate():
    def model(x):
        scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(0.0, scale), obs=x[:, 0])

    def guide(x):
        pyro.sample("scale", dist.LogNormal(0.0, 0.5))

    with pytest.raises(ValueError, match="scale"):
        log_importance_weights(model, guide, torch.randn(4, 1), 3)


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_samples": 1}, "num_samples"),
        ({"ks": (0,)}, "ks"),
        ({"num_samples": 5, "ks": (10,)}, "ks"),
    ],
)
def test_bad_arguments(kwargs, name):
    lg = LinearGaussianVAE(10, 2)
    with pytest.raises(ValueError, match=name):
        evaluate(lg, torch.randn(3, 10), **kwargs)


def test_bad_data():
    lg = LinearGaussianVAE(10, 2)
    nan = torch.randn(3, 10)
    nan[1, 2] = math.nan
    # The argument is named x; the messages start "Expected x ...".
    for x, reason in (
        (nan, "finite"),
        (torch.randn(3, 9), "width"),
        (torch.zeros(0, 10), "at least one"),
        (torch.randn(10), "shape"),
    ):
        with pytest.raises(ValueError, match=rf"Expected x\b.*{reason}"):
            evaluate(lg, x, num_samples=10)
    vae = VAE(64)
    with pytest.raises(ValueError, match=r"Expected x in \[0, 1\]"):
        evaluate(vae, torch.full((2, 64), 1.5), num_samples=10)
    with pytest.raises(ValueError, match=r"Expected x in \[0, 1\]"):
        evaluate(vae, -torch.ones(2, 64), num_samples=10)
