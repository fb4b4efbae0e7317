"""The guide seam: a user's own encoder, an overriding guide and an autoguide go through
every estimator, traced, or are refused with one line, never replaced by ``encode()``."""

import math
import types

import arviz
import numpy as np
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
    ais,
    compare_posteriors,
    evaluate,
    fit,
    inference_gaps,
    quadrature_posterior,
    sample_guide,
    sample_posterior,
)
from pyro_vae._threads import torch_threads
from pyro_vae.data import load_digits
from pyro_vae.infer import active_units, elbo_decompositions, elbo_surgery


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


class MixtureEncoder(nn.Module):
    """q(z|x) = Σ_k π_k(x) N(μ_k(x), diag σ_k(x)²), linear in x: torch's
    MixtureSameFamily (as a Pyro distribution), which has no ``rsample``."""

    def __init__(self, x_dim, z_dim, components=2):
        super().__init__()
        self.shape = (components, z_dim)
        self.loc = nn.Linear(x_dim, components * z_dim)
        self.log_scale = nn.Linear(x_dim, components * z_dim)
        self.logits = nn.Linear(x_dim, components)

    def forward(self, x):
        shape = (x.shape[0], *self.shape)
        scale = self.log_scale(x).view(shape).exp()
        components = dist.Normal(self.loc(x).view(shape), scale).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=self.logits(x)), components)


class CopiesEncoder(nn.Module):
    """The mixture of two copies of a full-covariance encoder's q(z|x): q(z|x) itself."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        q = self.encoder(x)
        loc = q.loc.unsqueeze(-2).expand(-1, 2, -1)
        scale_tril = q.scale_tril.unsqueeze(-3).expand(-1, 2, -1, -1)
        components = dist.MultivariateNormal(loc, scale_tril=scale_tril)
        return dist.MixtureSameFamily(dist.Categorical(logits=loc.new_zeros(x.shape[0], 2)),
                                      components)  # fmt: skip


class StudentTEncoder(nn.Module):
    """q(z|x) = Π_d StudentT(df; μ_d(x), s_d), linear in x: no finite variance for df ≤ 2."""

    def __init__(self, x_dim, z_dim, df):
        super().__init__()
        self.df = df
        self.loc = nn.Linear(x_dim, z_dim)
        self.log_scale = nn.Parameter(torch.zeros(z_dim))

    def forward(self, x):
        loc = self.loc(x)
        return dist.StudentT(self.df, loc, self.log_scale.exp().expand_as(loc)).to_event(1)


@pytest.fixture
def one_thread():
    """Torch on one thread: these models are tiny, and other processes share the cores."""
    with torch_threads(1):
        yield


def _linear_gaussian(seed):
    """A 6-D, 2-latent pPCA with a random W (posterior correlated), float64, 5 points."""
    torch.manual_seed(seed)
    lg = LinearGaussianVAE(6, 2, noise_scale=0.5).double()
    with torch.no_grad():
        lg.weight.copy_(torch.randn(6, 2))
        lg.bias.copy_(torch.randn(6))
    return lg, torch.randn(5, 6, dtype=torch.float64)


@torch.no_grad()
def _centred(encoder, lg, shift=0.0):
    """``encoder`` (a MixtureEncoder or StudentTEncoder) with its location(s) at the
    mean of p(z|x), component k shifted by ±``shift``, and its scales the posterior s.d."""
    m = lg.weight.T @ lg.weight + lg.noise_scale.square() * torch.eye(lg.z_dim).double()
    proj = torch.linalg.solve(m, lg.weight.T)
    sd = (lg.noise_scale.square() * torch.linalg.inv(m).diagonal()).sqrt()
    repeats = encoder.loc.out_features // lg.z_dim
    encoder.loc.weight.copy_(proj.repeat(repeats, 1))
    shifts = shift * torch.linspace(-1, 1, repeats).double().repeat_interleave(lg.z_dim)
    encoder.loc.bias.copy_((-proj @ lg.bias).repeat(repeats) + shifts * sd.repeat(repeats))
    if isinstance(encoder, StudentTEncoder):
        encoder.log_scale.copy_(sd.log())
    else:
        encoder.log_scale.weight.zero_()
        encoder.log_scale.bias.copy_(sd.log().repeat(repeats))
    return encoder


def test_linear_gaussian_gap_by_monte_carlo_for_a_guide_without_closed_form_kl(seed, one_thread):
    lg, x = _linear_gaussian(seed(16))
    # Two copies of p(z|x) mixed are p(z|x): every draw's log q − log p(z|x) is 0.
    lg.encoder = CopiesEncoder(_exact_posterior_encoder(lg))
    dec = elbo_decompositions(lg, x, num_samples=100, seed=seed(17))
    assert (dec.methods["log_px"], dec.methods["gap"]) == ("exact", "monte_carlo")
    assert float(dec.values["gap"].abs().max()) < 1e-9
    torch.testing.assert_close(dec.values["log_px"], lg.exact_log_likelihood(x), rtol=0, atol=0)

    # Distinct components: the Monte-Carlo KL(q ‖ p(z|x)) against quadrature's, and the
    # third way (exact log p(x) minus it) against the first, on independent draws.
    lg.encoder = _centred(MixtureEncoder(6, 2).double(), lg, shift=1.5)
    dec = elbo_decompositions(lg, x, num_samples=4000, seed=seed(19))
    quad = quadrature_posterior(lg, x)
    assert quad.converged.all() and float(dec.values["gap"].mean()) > 0.1
    gap_se = float(dec.std_errors["gap"].square().sum().sqrt()) / len(x)
    gap_diff = float((dec.values["gap"] - quad.kl_guide).mean())
    assert abs(gap_diff) < 4 * gap_se + float(quad.error.max()), (gap_diff, gap_se)
    summary = dec.summary()
    (one, se1), (three, se3) = summary["reconstruction_minus_kl"], summary["evidence_minus_gap"]
    assert abs(one - three) < 4 * math.hypot(se1, se3)


@pytest.mark.parametrize(
    "encoder",
    [lambda: MixtureEncoder(6, 2), lambda: StudentTEncoder(6, 2, df=1.5)],
    ids=["mixture", "student_t_df_1.5"],
)
def test_hmc_starts_from_a_guide_without_rsample_or_finite_variance(encoder, seed, one_thread):
    lg, x = _linear_gaussian(seed(20))
    lg.encoder = _centred(encoder().double(), lg, shift=1.0)
    idata = sample_posterior(lg, x[:2], num_samples=500, warmup_steps=200, seed=seed(21),
                             posterior_predictive=False)  # fmt: skip
    # Started at the guide's draws, the mass matrix at its (robust) scale: the posterior
    # means within 4 Monte-Carlo s.e. of the exact ones.
    z = idata.posterior["z"].transpose("chain", "draw", "datum", "latent").values
    mcse = arviz.mcse(idata, method="mean")["z"].transpose("datum", "latent").values
    exact = lg.exact_posterior(x[:2]).loc.numpy()
    np.testing.assert_array_less(np.abs(z.mean((0, 1)) - exact), 4 * mcse)


def test_ais_moves_from_a_guide_of_infinite_variance(seed, one_thread):
    lg, x = _linear_gaussian(seed(22))
    lg.encoder = _centred(StudentTEncoder(6, 2, df=1.5).double(), lg)
    result = ais(lg, x, num_bridges=50, num_chains=16, seed=seed(23))
    assert (result.acceptance > 0.3).all(), result.acceptance  # the chains move
    mean, se = result.summary()["log_px"]
    exact = lg.exact_log_likelihood(x).mean().item()
    assert se < 0.1 and abs(mean - exact) < 4 * se, (mean, exact, se)


def _autoguide_fitted_to(vae, x, seed):
    autoguide = AutoNormal(vae.model, create_plates=vae.create_plates)
    pyro.set_rng_seed(seed)
    svi = SVI(vae.model, autoguide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    with vae.frozen():
        for _ in range(100):
            svi.step(x)
    return autoguide


def test_inference_gaps_splits_a_per_point_autoguides_gap(digits, seed, one_thread):
    torch.manual_seed(seed(24))
    vae = VAE(64, z_dim=2, hidden_dims=(16,), encoder=FullCovEncoder(64, 2, hidden=16))
    x = digits.test[:6]
    autoguide = _autoguide_fitted_to(vae, x, seed(24))
    budget = dict(families="diagonal", num_samples=200, seed=seed(25), max_steps=100,
                  num_particles=10)  # fmt: skip
    gaps = inference_gaps(vae, x, guide=autoguide, **budget)
    assert gaps.family == "diagonal" and set(gaps.local) == {"diagonal"}
    # The ELBO split is the autoguide's, on the draws evaluate makes with the same seed.
    pair = types.SimpleNamespace(model=vae.model, guide=autoguide)
    own = evaluate(pair, x, 200, ks=(), seed=seed(25), device="cpu").values["elbo"]
    torch.testing.assert_close(gaps.values["elbo"], own, rtol=0, atol=0)
    # The per-point fits and log p(x) are the model's, whatever the guide.
    with pytest.warns(UserWarning, match="not split"):  # the encoder is full-covariance
        amortized = inference_gaps(vae, x, **budget)
    for name in ("log_px", "elbo_local_diagonal"):
        torch.testing.assert_close(gaps.values[name], amortized.values[name], rtol=0, atol=0)
    assert "approximation_gap" not in amortized.values
    values = gaps.values
    torch.testing.assert_close(values["approximation_gap"] + values["amortization_gap"],
                               values["inference_gap"])  # fmt: skip


def test_inference_gaps_fits_the_guides_own_family_when_left_out(digits, seed, one_thread):
    torch.manual_seed(seed(26))
    vae = VAE(64, z_dim=2, hidden_dims=(16,), encoder="iaf:1")
    gaps = inference_gaps(vae, digits.test[:4], families=("diagonal",), num_samples=50,
                          seed=seed(27), max_steps=20, num_particles=4)  # fmt: skip
    assert gaps.family == "flow" and set(gaps.local) == {"diagonal", "flow"}
    values = gaps.values
    torch.testing.assert_close(values["approximation_gap"],
                               values["log_px"] - values["elbo_local_flow"])  # fmt: skip
