"""pyro_vae.infer.gradients: the SNR of an objective's stochastic gradient."""

import math
import statistics

import pyro
import pytest
import torch
from pyro.infer import ELBO

from pyro_vae import VAE, LinearGaussianVAE, evaluate, fit, gradient_snr
from pyro_vae.data import load_digits, make_linear_gaussian
from pyro_vae.infer import GradientSNR
from pyro_vae.infer.evaluation import Summary


class KnownGradient(ELBO):
    """A synthetic objective: each draw sets every gradient coordinate to μ + σ ε, ε ~ N(0, 1)
    drawn from torch's global RNG (so ``gradient_snr``'s seed fixes it)."""

    def __init__(self, vae, loc, scale):
        super().__init__()
        self.params = {"encoder": list(vae.encoder.parameters())}
        self.params["decoder"] = list(vae.decoder.parameters())
        self.loc, self.scale = loc, scale

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError

    def loss(self, model, guide, *args, **kwargs):
        return 0.0

    def loss_and_grads(self, model, guide, *args, **kwargs):
        for group, params in self.params.items():
            for p in params:
                noise = torch.randn(p.shape, dtype=p.dtype)
                p.grad = self.loc[group](p) + self.scale[group] * noise
        return 0.0


def _lg(num_data=20):
    data = make_linear_gaussian(num_data, x_dim=10, z_dim=2, seed=0)
    return LinearGaussianVAE(10, 2), data.x


def _constant(value):
    return lambda p: torch.full_like(p, value)


def test_the_snr_of_a_known_gradient_is_its_mean_over_its_sd(seed):
    vae, x = _lg()
    loc = {"encoder": _constant(0.5), "decoder": _constant(-3.0)}
    scale = {"encoder": 0.5, "decoder": 1.5}  # SNR 1 and 2 in every coordinate
    num_draws = 400
    result = gradient_snr(vae, x, KnownGradient(vae, loc, scale), num_draws, seed=seed(1))
    assert isinstance(result, GradientSNR) and result.num_draws == num_draws
    assert set(result.groups["encoder"]) == {n for n, _ in vae.named_parameters() if "enc" in n}
    for group, snr in (("encoder", 1.0), ("decoder", 2.0)):
        value, se = result.summary()[group]
        # se from the jackknife; 4 s.e. is a two-sided 6e-5 tail
        assert abs(value - snr) < 4 * se, (group, value, se)
        # the sample s.d. of n normal draws has s.e. σ/√(2(n−1)); the mean σ/√n
        for name in result.groups[group]:
            mean, std = result.mean[name], result.std[name]
            assert mean.shape == dict(vae.named_parameters())[name].shape
            tol = 5 * scale[group] / math.sqrt(num_draws)
            assert torch.allclose(mean, loc[group](mean), atol=tol)
            tol = 5 * scale[group] / math.sqrt(2 * (num_draws - 1))
            assert torch.allclose(std, torch.full_like(std, scale[group]), atol=tol)


def test_the_standard_error_of_the_median_is_honest(seed):
    # SNRs spread over coordinates (|μ| from 0 to 3, σ = 1): the median moves with the draws
    vae, x = _lg()
    spread = lambda p: torch.linspace(0.0, 3.0, p.numel()).reshape(p.shape)  # noqa: E731
    elbo = KnownGradient(vae, {"encoder": spread, "decoder": spread}, {"encoder": 1, "decoder": 1})
    medians, ses = [], []
    for n in range(40):
        value, se = gradient_snr(vae, x, elbo, num_draws=100, seed=seed(100 + n)).summary()[
            "decoder"
        ]
        medians.append(value)
        ses.append(se)
    ratio = statistics.stdev(medians) / statistics.mean(ses)
    # the s.d. of 40 draws is within ±25% of its own value with 95% (1/√(2·39) ≈ 0.11);
    # the jackknife of 10 batches is biased by little more; a factor 1.6 either way
    assert 1 / 1.6 < ratio < 1.6, (ratio, medians, ses)


def test_parameters_grads_store_and_rng_are_left_as_found(seed):
    vae, x = _lg()
    vae.decoder.bias.grad = torch.ones_like(vae.decoder.bias)
    before = {n: p.detach().clone() for n, p in vae.named_parameters()}
    keys = set(pyro.get_param_store().keys())
    rng = torch.get_rng_state()
    result = gradient_snr(vae, x, "iwae:3", num_draws=5, seed=seed(2))
    assert all(torch.equal(p, before[n]) for n, p in vae.named_parameters())
    assert torch.equal(vae.decoder.bias.grad, torch.ones_like(vae.decoder.bias))
    assert vae.encoder.loc.weight.grad is None
    assert set(pyro.get_param_store().keys()) == keys
    assert torch.equal(torch.get_rng_state(), rng)
    again = gradient_snr(vae, x, "iwae:3", num_draws=5, seed=seed(2))
    assert all(torch.equal(result.mean[n], again.mean[n]) for n in result.mean)
    summary = result.summary()
    assert isinstance(summary, Summary) and set(summary) == {"encoder", "decoder"}
    assert str(summary).startswith("gradient SNR")


def test_a_pyro_elbo_object_and_a_spec_give_the_same_draws(seed):
    from pyro_vae import make_elbo

    vae, x = _lg()
    by_spec = gradient_snr(vae, x, "trace:2", num_draws=4, seed=seed(3))
    by_object = gradient_snr(vae, x, make_elbo("trace", num_particles=2), num_draws=4, seed=seed(3))
    assert all(torch.equal(by_spec.std[n], by_object.std[n]) for n in by_spec.std)
    assert by_object.objective == "Trace_ELBO" and by_spec.objective == "trace:2"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_draws": 1}, r"Expected num_draws to be an integer >= 2 but got 1"),
        ({"num_draws": 2.5}, r"Expected num_draws to be an integer >= 2 but got 2.5"),
        ({"objective": 3}, r"Expected objective to be an objective spec .* but got int"),
        ({"objective": "iwae"}, r"Expected an objective spec"),
        ({"seed": "a"}, r"Expected seed to be an integer or None but got 'a'"),
        ({"x": torch.zeros(10)}, r"x"),
    ],
)
def test_bad_inputs_give_one_line(kwargs, match):
    vae, x = _lg()
    args = {"x": x, "objective": "trace", "num_draws": 3, **kwargs}
    with pytest.raises(ValueError, match=match) as info:
        gradient_snr(vae, **args)
    assert "\n" not in str(info.value)


def test_a_frozen_model_has_no_gradient_to_measure():
    vae, x = _lg()
    vae.requires_grad_(False)
    with pytest.raises(ValueError, match=r"register parameters .* require grad but found none"):
        gradient_snr(vae, x, "trace", num_draws=3)


def _five_epoch_digits_vae(seed):
    """The slope tests' model: a tiny digits VAE (z 4, 32 hidden) after 5 epochs, and the
    first 100 test digits (the signal of a summed gradient grows as √points)."""
    data = load_digits(binarize="dynamic")
    torch.manual_seed(seed(4))
    vae = VAE(data.x_dim, 4, (32,))
    fit(vae, data, epochs=5, progress=False, seed=seed(4))
    return vae, data.test[:100]


@pytest.mark.slow
def test_iwae_encoder_snr_falls_and_decoder_snr_rises_with_k(seed):
    # Rainforth et al. 2018: encoder O(1/√K), decoder O(√K). On a tiny VAE after 5 epochs
    # the encoder's median nears the noise floor of 100 draws (≈ 0.67/√100) by K = 100,
    # so the batch is 100 points (the signal of a summed gradient grows as √points) and
    # K = 1 is compared with K = 100 for the encoder
    vae, x = _five_epoch_digits_vae(seed)
    snr = {k: gradient_snr(vae, x, f"iwae:{k}", 100, seed=seed(5)).summary() for k in (1, 10, 100)}
    enc = {k: s["encoder"] for k, s in snr.items()}
    dec = {k: s["decoder"] for k, s in snr.items()}
    # differences of independent estimates; one-sided, 3 combined s.e. is a 1.3e-3 tail
    assert enc[1][0] - enc[100][0] > 3 * math.hypot(enc[1][1], enc[100][1]), enc
    assert dec[10][0] - dec[1][0] > 3 * math.hypot(dec[1][1], dec[10][1]), dec
    assert dec[100][0] - dec[10][0] > 3 * math.hypot(dec[10][1], dec[100][1]), dec


@pytest.mark.slow
def test_dreg_encoder_snr_does_not_fall_with_k_where_the_weights_allow_it(seed):
    # Tucker et al. 2019: DReG's encoder SNR rises as √K once K is large enough for the
    # w̃²-weighted sum to average, which needs a finite variance of w², Pareto k < ¼. The
    # premise is checked first (after 5 epochs most points have k̂ < ¼), then the slope
    # sign, one-sided: the SNR at K = 30 is not below K = 3's by 3 combined s.e. IWAE's
    # encoder fails the same check by 5 to 8 s.e. on this model (seeds 0, 2, 4).
    vae, x = _five_epoch_digits_vae(seed)
    khat = evaluate(vae, x, num_samples=2000, seed=seed(6)).values["khat"]
    assert khat.median() < 0.25, khat
    snr = {k: gradient_snr(vae, x, f"dreg:{k}", 300, seed=seed(5)).summary() for k in (3, 30)}
    enc = {k: s["encoder"] for k, s in snr.items()}
    assert enc[30][0] - enc[3][0] > -3 * math.hypot(enc[3][1], enc[30][1]), enc
