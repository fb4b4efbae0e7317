"""The guide seam: a user's own encoder, an overriding guide and an autoguide go through
every estimator, traced, or are refused with one line, never replaced by ``encode()``."""

import math
import types

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from torch import nn

from pyro_vae import (
    VAE,
    LinearGaussianVAE,
    active_units,
    compare_posteriors,
    elbo_decompositions,
    elbo_surgery,
    evaluate,
    fit,
    quadrature_posterior,
    sample_guide,
)
from pyro_vae.data import load_digits


class FullCovEncoder(nn.Module):
    """q(z|x) = N(μ(x), L(x) L(x)ᵀ) with a lower-triangular L, positive diagonal."""

    def __init__(self, x_dim, z_dim, hidden=None):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(x_dim, hidden), nn.Softplus()) if hidden else None
        width = hidden or x_dim
        self.loc = nn.Linear(width, z_dim)
        self.tril = nn.Linear(width, z_dim * (z_dim + 1) // 2)  # diagonal as log
        self.register_buffer("index", torch.tril_indices(z_dim, z_dim))
        self.z_dim = z_dim

    def forward(self, x):
        h = x if self.body is None else self.body(x)
        rows, cols = self.index
        entries = self.tril(h)
        entries = torch.where(rows == cols, entries.exp(), entries)
        scale_tril = entries.new_zeros(*entries.shape[:-1], self.z_dim, self.z_dim)
        scale_tril[..., rows, cols] = entries
        return dist.MultivariateNormal(self.loc(h), scale_tril=scale_tril)


@pytest.fixture(scope="module")
def digits():
    return load_digits(binarize="static")


@pytest.fixture(scope="module")
def trained(digits, seed):
    """A 2-D VAE with a full-covariance encoder, briefly trained on the 8×8 digits."""
    torch.manual_seed(seed(1))
    vae = VAE(64, z_dim=2, hidden_dims=(64,), encoder=FullCovEncoder(64, 2, hidden=64))
    fit(vae, digits, epochs=15, progress=False, seed=seed(2))
    return vae


def test_full_covariance_encoder_through_every_estimator(trained, digits, seed):
    vae, x = trained, digits.test[:8]
    quad = quadrature_posterior(vae, x)
    assert quad.converged.all()
    ev = evaluate(vae, x, 2000, seed=seed(3))
    # log p(x) by importance sampling against quadrature (error ≤ tol): 4 Monte-Carlo
    # s.e. of the mean over points, plus the estimator's bias ≈ −se²/2 per point.
    se = ev.std_errors["log_px"]
    diff = float((ev.values["log_px"] - quad.log_px.float()).mean())
    assert abs(diff) < 4 * float(se.square().sum().sqrt()) / len(x) + float(se.square().mean())
    # The gap log p(x) − ELBO is KL(q ‖ p(z|x)), the quadrature's kl_guide.
    gap_se = float(ev.std_errors["gap"].square().sum().sqrt()) / len(x)
    gap_diff = float((ev.values["gap"] - quad.kl_guide.float()).mean())
    assert abs(gap_diff) < 4 * gap_se + float(se.square().mean())

    dec = elbo_decompositions(vae, x, num_samples=500, seed=seed(4))
    assert dec.methods["log_px"] == "quadrature"  # the encoder's q is the guide
    assert dec.methods["entropy"] == "analytic"  # MultivariateNormal.entropy
    summary = dec.summary()
    one, se1 = summary["reconstruction_minus_kl"]
    two, se2 = summary["expected_joint_plus_entropy"]
    three, se3 = summary["evidence_minus_gap"]  # quadrature: se3 is the grid's error
    assert abs(one - two) < 4 * math.hypot(se1, se2)
    assert abs(one - three) < 4 * math.hypot(se1, se3)

    surgery = elbo_surgery(vae, x, num_samples=200, seed=seed(5)).summary()
    mi, mi_se = surgery["mutual_information"]
    assert mi < math.log(len(x)) + 4 * mi_se
    kl, kl_se = surgery["average_kl"]
    ev_kl, ev_kl_se = ev.summary()["kl"]
    assert abs(kl - ev_kl) < 4 * math.hypot(kl_se, ev_kl_se)

    units = active_units(vae, x)
    assert units.mean_method == "analytic"
    assert torch.allclose(units.mean, vae.encode(x).mean)

    table = compare_posteriors(quad, sample_guide(vae, x, 1000, seed=seed(6)))
    assert (table["kl_exact"] > -1e-4).all()
    assert table[["mean_error_0", "sd_ratio_1", "w2", "khat"]].notna().all().all()


def _exact_posterior_encoder(lg):
    """A linear full-covariance encoder set to p(z|x) of the linear-Gaussian model."""
    encoder = FullCovEncoder(lg.x_dim, lg.z_dim).double()
    with torch.no_grad():
        m = lg.weight.T @ lg.weight + lg.noise_scale.square() * torch.eye(lg.z_dim).double()
        proj = torch.linalg.solve(m, lg.weight.T)
        chol = torch.linalg.cholesky(lg.noise_scale.square() * torch.linalg.inv(m))
        rows, cols = encoder.index
        encoder.loc.weight.copy_(proj)
        encoder.loc.bias.copy_(-proj @ lg.bias)
        encoder.tril.weight.zero_()
        encoder.tril.bias.copy_(torch.where(rows == cols, chol[rows, cols].log(), chol[rows, cols]))
    return encoder


def test_linear_gaussian_with_the_exact_full_covariance_guide_has_no_gap(seed):
    torch.manual_seed(seed(7))
    lg = LinearGaussianVAE(6, 2, noise_scale=0.5, encoder=FullCovEncoder(6, 2)).double()
    with torch.no_grad():
        lg.weight.copy_(torch.randn(6, 2))  # WᵀW not diagonal: no diagonal guide is exact
        lg.bias.copy_(torch.randn(6))
    lg.encoder = _exact_posterior_encoder(lg)
    x = torch.randn(5, 6, dtype=torch.float64)
    assert float(lg.exact_posterior_kl(x).abs().max()) < 1e-10
    assert float(quadrature_posterior(lg, x).kl_guide.abs().max()) < 1e-4
    ev = evaluate(lg, x, 200, seed=seed(8), device="cpu")
    assert float(ev.values["gap"].abs().max()) < 1e-9  # every weight is p(x)
    dec = elbo_decompositions(lg, x, num_samples=100, seed=seed(9))
    assert dec.methods["log_px"] == "exact"
    assert float(dec.values["gap"].abs().max()) < 1e-10


class ShiftedGuideVAE(VAE):
    """A VAE whose own guide moves the encoder's draws: q(z|x) is not encode()'s."""

    def guide(self, x, num_data=None, subsample=None, batch_size=None, *, beta=1.0):
        with self.create_plates(x, num_data, subsample):
            q = self.encoder(x)
            pyro.sample("z", dist.Normal(q.mean + 0.5, q.stddev).to_event(1))


def test_an_overriding_guide_is_traced_or_refused(digits, seed):
    torch.manual_seed(seed(10))
    vae, x = ShiftedGuideVAE(64, z_dim=2, hidden_dims=(32,)), digits.test[:6]
    with pytest.raises(ValueError, match="overrides guide.*pyro_vae.evaluate"):
        quadrature_posterior(vae, x)
    with pytest.raises(ValueError, match="overrides guide"):
        elbo_decompositions(vae, x, log_px="quadrature")
    dec = elbo_decompositions(vae, x, num_samples=500, seed=seed(11), log_px_samples=500)
    assert dec.methods["log_px"] == "importance_sampling"
    ev = evaluate(vae, x, 500, seed=seed(12), device="cpu").summary()
    (one, se1), (elbo, se2) = dec.summary()["reconstruction_minus_kl"], ev["elbo"]
    assert abs(one - elbo) < 4 * math.hypot(se1, se2)  # both read the shifted guide

    class ShiftedLinear(LinearGaussianVAE):
        guide = ShiftedGuideVAE.guide

    with pytest.raises(ValueError, match="overrides guide"):
        ShiftedLinear(6, 2).exact_posterior_kl(torch.randn(3, 6))


def test_the_model_passed_as_the_guide_is_refused(digits):
    vae = VAE(64, z_dim=2, hidden_dims=(32,))
    pair = types.SimpleNamespace(model=vae.model, guide=vae.model)
    for estimate in (evaluate, elbo_decompositions, sample_guide):
        with pytest.raises(ValueError, match="observed: was the model passed as the guide"):
            estimate(pair, digits.test[:4])


class Autoguided(nn.Module):
    """The VAE's model with an autoguide in place of its guide."""

    def __init__(self, vae, autoguide):
        super().__init__()
        self.vae, self.autoguide = vae, autoguide
        self.x_dim, self.likelihood = vae.x_dim, vae.likelihood

    def model(self, x, **kwargs):
        return self.vae.model(x, **kwargs)

    def guide(self, x, **kwargs):
        return self.autoguide(x, **kwargs)


def test_an_autoguides_auxiliary_site_counts_in_sample_guide(trained, digits, seed):
    x = digits.test[:6]
    autoguide = AutoNormal(trained.model, create_plates=trained.create_plates)
    pyro.set_rng_seed(seed(13))
    svi = SVI(trained.model, autoguide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    with trained.frozen():  # the decoder stays as trained
        for _ in range(200):
            svi.step(x)
    pair = Autoguided(trained, autoguide)
    drawn = sample_guide(pair, x, 1000, seed=seed(14), device="cpu")
    log_w = torch.from_numpy(drawn.sample_stats["log_weight"].values[0])
    # The same seed and chunks give evaluate's draws: its log-weights exactly, so log q
    # sums the auxiliary "z_unconstrained" site, not only the Delta at "z".
    ev = evaluate(pair, x, 1000, ks=(), seed=seed(14), device="cpu")
    log_px = log_w.logsumexp(0) - math.log(log_w.shape[0])
    assert torch.allclose(log_px.to(ev.values["log_px"].dtype), ev.values["log_px"])
    # Independent draws agree within 4 Monte-Carlo s.e. of the mean over points.
    other = evaluate(pair, x, 1000, ks=(), seed=seed(15), device="cpu")
    se = math.hypot(ev.summary()["log_px"][1], other.summary()["log_px"][1])
    assert abs(ev.summary()["log_px"][0] - other.summary()["log_px"][0]) < 4 * se
    with pytest.raises(ValueError, match="elbo_surgery"):
        elbo_surgery(pair, x, num_samples=10)
