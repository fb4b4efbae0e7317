"""The per-epoch validation's path, :func:`evaluate_bounds`: the numbers of the traced
:func:`evaluate_unchecked`, bit for bit, for every model it computes without Pyro, and
the traced path itself for every other."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import pyro_vae.infer.evaluation as evaluation
import pyro_vae.infer.traces as traces
import pyro_vae.train.training as training
from pyro_vae import VAE, LinearGaussianVAE, fit
from pyro_vae.data import load_digits, make_linear_gaussian
from pyro_vae.infer.evaluation import evaluate_bounds, evaluate_unchecked


def binary_data(seed, num_points, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((num_points, 64), 0.3), generator=generator).to(dtype)


@pytest.fixture
def traced_passes(monkeypatch):
    """The shapes of the passes traced with Pyro (a list that each pass appends to)."""
    passes = []
    real = evaluation.log_importance_weights

    def counted(model, guide, x, num_samples, **kwargs):
        passes.append((num_samples, x.shape[0]))
        return real(model, guide, x, num_samples, **kwargs)

    monkeypatch.setattr(evaluation, "log_importance_weights", counted)
    return passes


def assert_traced_numbers(vae, x, num_samples, ks, seed, log_px=False):
    """evaluate_bounds against evaluate_unchecked(khat=False): every per-point value and
    standard error with torch.equal, every summary number with ==; returns the result."""
    fast = evaluate_bounds(vae, x, num_samples, ks, seed, log_px=log_px)
    full = evaluate_unchecked(vae, x, num_samples, ks, seed, khat=False)
    names = ["elbo", *(f"iwae_{k}" for k in ks)] + (["log_px", "gap", "ess"] if log_px else [])
    assert list(fast.values) == names
    assert set(fast.std_errors) == {name for name in full.std_errors if name in names}
    for name, value in fast.values.items():
        assert torch.equal(value, full.values[name]), name
    for name, se in fast.std_errors.items():
        assert torch.equal(se, full.std_errors[name]), name
    summary, expected = fast.summary(), full.summary()
    for name, (mean, se) in summary.items():
        assert mean == expected[name][0], name
        assert se == expected[name][1] or math.isnan(se) and math.isnan(expected[name][1])
    return fast


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("stream", [1, 2])
@pytest.mark.parametrize(
    "chunk_rows, num_points, num_samples, ks",
    [
        (None, 180, 50, (50,)),  # the main job's validation: one pass
        (None, 37, 50, (1, 3)),  # k = 1, and k = 3 leaves 2 of the 50 draws out
        (200, 45, 50, (50, 7)),  # blocks of 4 points (12 blocks, the last of 1)
        (30, 3, 50, (5,)),  # one point per block in passes of 30 and 20 particles
    ],
)
def test_the_diagonal_vae_gives_the_traced_numbers(
    monkeypatch, traced_passes, dtype, stream, chunk_rows, num_points, num_samples, ks, seed
):
    if chunk_rows is not None:
        monkeypatch.setattr(traces, "CHUNK_ROWS", chunk_rows)
    torch.manual_seed(seed(stream))
    hidden = (256,) if num_points == 180 else (32,)
    vae = VAE(64, z_dim=8, hidden_dims=hidden).to(dtype)
    x = binary_data(seed(stream), num_points, dtype)
    traced_passes.clear()
    evaluate_bounds(vae, x, num_samples, ks, seed(stream))
    assert traced_passes == []  # computed without Pyro
    assert_traced_numbers(vae, x, num_samples, ks, seed(stream))


@pytest.mark.parametrize("encoder", ["iaf:2", "coupling:2", "spline:1"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_flow_guide_gives_the_traced_numbers_without_pyro(traced_passes, encoder, dtype, seed):
    torch.manual_seed(seed(3))
    vae = VAE(64, z_dim=4, hidden_dims=(32,), encoder=encoder).to(dtype)
    x = binary_data(seed(3), 40, dtype)
    traced_passes.clear()
    fast = evaluate_bounds(vae, x, 30, (30, 4), seed(3), log_px=True)
    assert traced_passes == []
    assert_traced_numbers(vae, x, 30, (30, 4), seed(3), log_px=True)
    assert torch.isfinite(fast.values["elbo"]).all()


@pytest.mark.parametrize("likelihood", ["continuous_bernoulli", "gaussian"])
def test_the_other_likelihoods_give_the_traced_numbers(traced_passes, likelihood, seed):
    torch.manual_seed(seed(4))
    vae = VAE(64, z_dim=3, hidden_dims=(16,), likelihood=likelihood)
    x = torch.rand(30, 64, generator=torch.Generator().manual_seed(seed(4)))
    assert_traced_numbers(vae, x, 20, (20,), seed(4))
    traced_passes.clear()
    evaluate_bounds(vae, x, 20, (20,), seed(4))
    assert traced_passes == []


def test_the_linear_gaussian_vae_gives_the_traced_numbers(traced_passes, seed):
    x = make_linear_gaussian(120, x_dim=6, z_dim=2, noise_scale=0.5, seed=seed(5)).x.double()
    vae = LinearGaussianVAE(6, 2).double()
    for log_px in (False, True):
        assert_traced_numbers(vae, x, 50, (50, 5), seed(5), log_px=log_px)
    traced_passes.clear()
    evaluate_bounds(vae, x, 50, (50,), seed(5))
    assert traced_passes == []


class WideGuideVAE(VAE):
    """A guide of its own: the encoder's Gaussian twice as wide, so encode() is not q."""

    def guide(self, x, num_data=None, subsample=None, batch_size=None, *, beta=1.0):
        with self.create_plates(x, num_data, subsample):
            q = self.encoder(x)
            pyro.sample("z", dist.Normal(q.mean, 2 * q.stddev).to_event(1))


class FullCovarianceEncoder(nn.Module):
    """A module of the user's own: q(z|x) = N(Ax, LLᵀ) with L lower triangular."""

    def __init__(self, x_dim, z_dim):
        super().__init__()
        self.loc = nn.Linear(x_dim, z_dim)
        self.tril = nn.Parameter(torch.eye(z_dim) + 0.1 * torch.ones(z_dim, z_dim).tril(-1))

    def forward(self, x):
        loc = self.loc(x)
        return dist.MultivariateNormal(loc, scale_tril=self.tril.expand(*loc.shape, -1))


@pytest.mark.parametrize("case", ["guide", "encoder", "linear_gaussian_encoder"])
def test_what_it_cannot_reproduce_goes_through_the_traces(traced_passes, case, seed):
    torch.manual_seed(seed(6))
    if case == "guide":
        vae = WideGuideVAE(64, z_dim=3, hidden_dims=(16,))
    elif case == "encoder":
        vae = VAE(64, z_dim=3, hidden_dims=(16,), encoder=FullCovarianceEncoder(64, 3))
    else:
        vae = LinearGaussianVAE(64, 3, encoder=FullCovarianceEncoder(64, 3))
    x = binary_data(seed(6), 25)
    traced_passes.clear()
    fast = evaluate_bounds(vae, x, 20, (20, 4), seed(6), log_px=True)
    assert traced_passes == [(20, 25)]
    assert_traced_numbers(vae, x, 20, (20, 4), seed(6), log_px=True)
    if case == "guide":  # the encoder's q would have given other numbers
        plain = VAE(64, z_dim=3, hidden_dims=(16,))
        plain.load_state_dict(vae.state_dict())
        other = evaluate_bounds(plain, x, 20, (20, 4), seed(6))
        assert not torch.equal(other.values["elbo"], fast.values["elbo"])


def test_the_rng_and_the_param_store_are_left_as_found(seed):
    torch.manual_seed(seed(7))
    vae = VAE(64, z_dim=3, hidden_dims=(16,), name="validated")
    x = binary_data(seed(7), 20)
    store = pyro.get_param_store()
    pyro.param("users_own", torch.ones(2))
    loaded = torch.full((64,), 0.5)
    store["validated.decoder$$$fc_out.bias"] = loaded  # as from pyro.get_param_store().load
    keys, state = set(store.keys()), torch.get_rng_state()
    fast = evaluate_bounds(vae, x, 10, (10,), seed(8))
    assert set(store.keys()) == keys
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(vae.decoder.fc_out.bias, loaded)  # the store's value was read first
    assert_traced_numbers(vae, x, 10, (10,), seed(8))
    # seed=None draws from the global RNG, as many numbers as the traced path draws
    results = {}
    for name, run in (("fast", evaluate_bounds), ("traced", evaluate_unchecked)):
        torch.manual_seed(seed(9))
        kwargs = {"khat": False} if run is evaluate_unchecked else {}
        results[name] = (run(vae, x, 10, (5,), None, **kwargs), torch.get_rng_state())
    for name in ("elbo", "iwae_5"):
        assert torch.equal(results["fast"][0].values[name], results["traced"][0].values[name])
    assert torch.equal(results["fast"][1], results["traced"][1])
    assert not torch.equal(results["fast"][0].values["elbo"], fast.values["elbo"])


def _old_path(vae, x, num_samples, ks, seed, *, log_px=False):
    """Trainer's validation before evaluate_bounds: the traced path."""
    return evaluate_unchecked(vae, x, num_samples, ks, seed, khat=False)


def test_fit_records_the_traced_numbers_and_trains_as_before(monkeypatch, seed):
    # The main job's network on the digits: each epoch's val_elbo, val_iwae and gap
    # numbers are those of evaluate_unchecked on the same parameters, and the whole run
    # (losses, parameters, RNG state) is the one trained with the traced validation.
    data = load_digits(binarize="dynamic")
    expected = []
    real_validate, real_gap = training.Trainer.validate, training.Trainer.track_gap

    def validate(self, record):
        k, run_seed = self.config["val_samples"], self.config["seed"]
        summary = evaluate_unchecked(self.vae, self.validation, k, (k,), run_seed, khat=False)
        expected.append({"val_elbo": summary.summary()["elbo"][0],
                         "val_iwae": summary.summary()[f"iwae_{k}"][0]})  # fmt: skip
        real_validate(self, record)

    def track_gap(self, record):
        config = self.config
        x = self.validation[: config["gap_points"]]
        summary = evaluate_unchecked(self.vae, x, config["gap_samples"], (), config["seed"],
                                     khat=False).summary()  # fmt: skip
        expected[-1].update(gap_log_px=summary["log_px"][0], gap_elbo=summary["elbo"][0],
                            gap_se=summary["gap"][1])  # fmt: skip
        real_gap(self, record)

    settings = {"epochs": 3, "gap_every": 2, "gap_points": 50, "gap_samples": 100,
                "progress": False, "num_threads": 1, "seed": seed(10)}  # fmt: skip
    runs = []
    for path in ("fast", "traced"):
        with monkeypatch.context() as patch:
            if path == "fast":
                patch.setattr(training.Trainer, "validate", validate)
                patch.setattr(training.Trainer, "track_gap", track_gap)
            else:
                patch.setattr(training, "evaluate_bounds", _old_path)
            torch.manual_seed(seed(10))
            vae = VAE(64, z_dim=8, hidden_dims=(256,))
            run = fit(vae, data, **settings)
        runs.append((run.history, vae.state_dict(), torch.get_rng_state()))
    history = runs[0][0]
    assert len(expected) == len(history) == 3
    for record, numbers in zip(history, expected, strict=True):
        for key, value in numbers.items():
            assert record[key] == value, (record["epoch"], key)
    assert [set(r) >= {"gap_log_px", "gap_se"} for r in history] == [False, True, True]
    (fast, fast_state, fast_rng), (traced, traced_state, traced_rng) = runs
    drop = ("wall_time",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in fast] == [
        {k: v for k, v in r.items() if k not in drop} for r in traced
    ]
    for name, value in fast_state.items():
        assert torch.equal(value, traced_state[name]), name
    assert torch.equal(fast_rng, traced_rng)
