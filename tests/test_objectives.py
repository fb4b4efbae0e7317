import math

import pytest
import torch
from pyro.infer import JitTrace_ELBO, RenyiELBO, Trace_ELBO, TraceMeanField_ELBO

from pyro_vae.data import make_linear_gaussian
from pyro_vae.evaluation import evaluate
from pyro_vae.models import LinearGaussianVAE
from pyro_vae.objectives import make_elbo, objective_label

BATCH = 10
REPEATS = 20


@pytest.fixture(scope="module")
def linear_gaussian():
    """ML-fit probabilistic PCA, guide perturbed (gap ≈ 5 nats/point), 10 points."""
    torch.manual_seed(0)
    data = make_linear_gaussian(2010, 10, 2, 0.5)
    lg = LinearGaussianVAE(10, 2).fit_maximum_likelihood(data.x[:2000])
    with torch.no_grad():
        lg.guide_log_scale += 0.5
        lg.guide_loc.bias += 0.3
    x = data.x[2000:]
    assert x.shape == (BATCH, 10)
    reference = evaluate(lg, x, num_samples=5000, ks=(1, 5, 50), seed=0)
    return lg, x, reference


def repeated_losses(elbo, lg, x, repeats=REPEATS, seed=0):
    """``repeats`` independent evaluations of ``elbo.loss`` (a tensor of floats).

    Their sample mean estimates E[loss] with standard error std / √repeats: the repeats
    are i.i.d. draws of the same estimator, so this needs no formula for its variance.
    """
    torch.manual_seed(seed)
    return torch.tensor(
        [elbo.loss(lg.model, lg.guide, x) for _ in range(repeats)], dtype=torch.float64
    )


def mean_and_se(losses):
    return losses.mean().item(), (losses.std() / math.sqrt(len(losses))).item()


def batch_sum(reference, name):
    """Σ over the batch of an ``evaluate`` estimate and its se (= batch × summary)."""
    mean, se = reference.summary()[name]
    return BATCH * mean, BATCH * se


# --------------------------------------------------------------------- make_elbo


def test_make_elbo_classes():
    trace = make_elbo("trace")
    assert type(trace) is Trace_ELBO
    assert trace.num_particles == 1
    assert not trace.vectorize_particles
    assert trace.max_plate_nesting == 1

    meanfield = make_elbo("meanfield", num_particles=3)
    assert type(meanfield) is TraceMeanField_ELBO
    assert meanfield.num_particles == 3
    assert meanfield.vectorize_particles

    renyi = make_elbo("renyi", alpha=0.5, num_particles=5)
    assert type(renyi) is RenyiELBO
    assert renyi.alpha == 0.5
    assert renyi.num_particles == 5
    assert renyi.vectorize_particles

    jit = make_elbo("trace", jit=True, num_particles=2)
    assert type(jit) is JitTrace_ELBO
    assert jit.num_particles == 2
    # jit is ignored for the other losses.
    assert type(make_elbo("meanfield", jit=True)) is TraceMeanField_ELBO
    assert type(make_elbo("renyi", jit=True)) is RenyiELBO


def test_objective_label():
    assert objective_label("trace") == "Trace_ELBO"
    assert objective_label("meanfield", num_particles=4) == "TraceMeanField_ELBO(K=4)"
    assert objective_label("renyi", alpha=0.0, num_particles=5) == "RenyiELBO(alpha=0, K=5)"


def test_make_elbo_errors():
    with pytest.raises(ValueError) as info:
        make_elbo("elbo")
    for name in ("trace", "meanfield", "renyi"):
        assert name in str(info.value)
    with pytest.raises(ValueError, match="num_particles"):
        make_elbo("trace", num_particles=0)
    with pytest.raises(ValueError, match="num_particles"):
        make_elbo("trace", num_particles=2.0)
    with pytest.raises(ValueError, match="Trace_ELBO"):
        make_elbo("renyi", alpha=1)


def test_negative_alpha_warns_at_the_caller():
    with pytest.warns(UserWarning, match="alpha") as record:
        elbo = make_elbo("renyi", alpha=-0.5, num_particles=2)
    assert type(elbo) is RenyiELBO
    assert elbo.alpha == -0.5
    # stacklevel points the warning at the code calling make_elbo.
    assert record[0].filename == __file__


# ------------------------------------------------------- estimators in expectation


def test_trace_and_meanfield_agree_in_expectation(linear_gaussian):
    lg, x, reference = linear_gaussian
    trace = repeated_losses(make_elbo("trace", num_particles=500), lg, x, seed=1)
    meanfield = repeated_losses(make_elbo("meanfield", num_particles=500), lg, x, seed=2)
    mean_trace, se_trace = mean_and_se(trace)
    mean_meanfield, se_meanfield = mean_and_se(meanfield)
    assert se_trace > 0 and se_meanfield > 0
    # Both estimate −Σ ELBO; the two means are independent, so the se of their
    # difference is the quadrature of the two (each from the 20 repeats). 4 se.
    assert abs(mean_trace - mean_meanfield) <= 4 * math.hypot(se_trace, se_meanfield)
    # ... and agree with the ELBO of evaluate() summed over the batch.
    elbo_sum, se_elbo = batch_sum(reference, "elbo")
    assert abs(mean_trace + elbo_sum) <= 4 * math.hypot(se_trace, se_elbo)
    assert abs(mean_meanfield + elbo_sum) <= 4 * math.hypot(se_meanfield, se_elbo)


@pytest.mark.parametrize("k", [5, 50])
def test_renyi_alpha_zero_is_the_iwae_bound(linear_gaussian, k):
    lg, x, reference = linear_gaussian
    losses = repeated_losses(make_elbo("renyi", alpha=0.0, num_particles=k), lg, x, 100)
    mean, se = mean_and_se(losses)
    # RenyiELBO(α=0, K) is an unbiased estimate of −Σ_i L_K(x_i) (per-point
    # log-mean-exp over the K particles, summed over the batch); evaluate's iwae_K
    # estimates the same L_K from disjoint groups of K draws. 4 se of the difference.
    iwae_sum, se_iwae = batch_sum(reference, f"iwae_{k}")
    assert abs(mean + iwae_sum) <= 4 * math.hypot(se, se_iwae)


def test_bound_ordering(linear_gaussian):
    lg, x, _ = linear_gaussian
    trace, se_trace = mean_and_se(
        -repeated_losses(make_elbo("trace", num_particles=50), lg, x, 100)
    )
    renyi_5, se_5 = mean_and_se(-repeated_losses(make_elbo("renyi", num_particles=5), lg, x, 100))
    renyi_50, se_50 = mean_and_se(
        -repeated_losses(make_elbo("renyi", num_particles=50), lg, x, 100)
    )
    exact = lg.exact_log_likelihood(x).sum().item()
    # ELBO ≤ L_5 ≤ L_50 ≤ log p(x), each mean over 100 repeats with se std/√100; the
    # bounds hold in expectation, so allow 3 se of each difference.
    assert trace <= renyi_5 + 3 * math.hypot(se_trace, se_5)
    assert renyi_5 <= renyi_50 + 3 * math.hypot(se_5, se_50)
    assert renyi_50 <= exact + 3 * se_50
    # With a gap of ≈ 5 nats per point the bounds are far apart (10 points).
    assert renyi_5 - trace > 20
    assert exact - renyi_50 > 0.5
