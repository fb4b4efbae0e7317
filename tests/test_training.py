import os

import pytest
import torch

from pyro_vae import VAE, LinearGaussianVAE, fit, load_checkpoint, save_checkpoint
from pyro_vae.data import load_digits, make_linear_gaussian


@pytest.fixture(scope="module")
def linear_data():
    return make_linear_gaussian(600, x_dim=6, z_dim=2, noise_scale=0.5, seed=1)


@pytest.fixture(scope="module")
def binary_x():
    return torch.bernoulli(torch.full((40, 64), 0.3), generator=torch.Generator().manual_seed(0))


def test_svi_reaches_maximum_likelihood_on_linear_gaussian(linear_data):
    # SVI on probabilistic PCA: with a diagonal guide the ELBO optimum is the ML fit
    # (WᵀW becomes diagonal), so the trained model's exact log p(x) must approach the
    # closed-form ML optimum. 0.05 nats per point is ~2% of the initial deficit.
    x = linear_data.x
    reference = LinearGaussianVAE(6, 2).fit_maximum_likelihood(x)
    best = reference.exact_log_likelihood(x).mean().item()
    vae = LinearGaussianVAE(6, 2)
    before = vae.exact_log_likelihood(x).mean().item()
    run = fit(vae, x, epochs=300, batch_size=100, lr=0.02, progress=False)
    after = vae.exact_log_likelihood(x).mean().item()
    assert before < best - 1.0
    assert after == pytest.approx(best, abs=0.05)
    assert after <= best + 1e-4  # ML is the maximum
    # the final training loss (negative ELBO per point) is above −log p(x)
    assert run.history[-1]["train_loss"] > -best - 0.05
    # stochastic-gradient noise at lr=0.02 keeps q a little off p(z|x): 0.1 nats
    assert vae.exact_posterior_kl(x).mean().item() < 0.1


def test_history_and_restore_best(linear_data):
    x = linear_data.x
    vae = LinearGaussianVAE(6, 2)
    run = fit(
        vae,
        x[:500],
        validation=x[500:],
        epochs=12,
        batch_size=64,
        lr=0.05,
        progress=False,
    )
    assert [h["epoch"] for h in run.history] == list(range(1, 13))
    assert {"train_loss", "val_elbo", "val_iwae", "wall_time"} <= set(run.history[0])
    scores = [h["val_iwae"] for h in run.history]
    assert run.best_epoch == 1 + max(range(12), key=scores.__getitem__)
    wall = [h["wall_time"] for h in run.history]
    assert wall == sorted(wall) and run.train_time >= wall[-1]
    # the restored parameters reproduce the best epoch's validation bound
    from pyro_vae import evaluate

    again = evaluate(vae, x[500:], 50, ks=(50,), seed=0).summary()["iwae_50"][0]
    assert again == pytest.approx(max(scores), abs=1e-4)


def test_patience_stops_early(linear_data):
    x = linear_data.x
    vae = LinearGaussianVAE(6, 2)
    # lr so large that the validation bound stops improving quickly
    run = fit(vae, x[:500], validation=x[500:], epochs=200, lr=0.5, patience=3, progress=False)
    assert run.stopped_early
    assert len(run.history) == run.best_epoch + 3


def test_fit_on_dataset_with_dynamic_binarization_and_renyi():
    data = load_digits(binarize="dynamic")
    vae = VAE(64, z_dim=2, hidden_dims=(32,))
    run = fit(vae, data, loss="renyi", alpha=0.0, num_particles=5, epochs=3, progress=False)
    losses = [h["train_loss"] for h in run.history]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    # per-point units: a 64-pixel Bernoulli model starts near 64·log 2 ≈ 44 nats
    assert 10 < losses[0] < 60


def test_fit_is_reproducible(binary_x):
    results = []
    for _ in range(2):
        torch.manual_seed(3)
        vae = VAE(64, z_dim=2, hidden_dims=(16,))
        run = fit(vae, binary_x, epochs=2, batch_size=16, seed=5, progress=False)
        results.append(run.history[-1]["train_loss"])
    assert results[0] == results[1]


def test_checkpoint_round_trip(tmp_path, binary_x):
    vae = VAE(64, z_dim=3, hidden_dims=(16,))
    path = tmp_path / "run.pt"
    run = fit(vae, binary_x, epochs=2, batch_size=16, checkpoint=path, progress=False)
    loaded, state = load_checkpoint(path)
    assert isinstance(loaded, VAE) and loaded.z_dim == 3 and loaded.hidden_dims == (16,)
    for (name, a), (_, b) in zip(
        vae.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert state["history"] == run.history
    assert state["fit_config"]["epochs"] == 2
    assert state["optimizer_state"]
    assert os.listdir(tmp_path) == ["run.pt"]


def test_resume_continues_the_optimizer(tmp_path, binary_x):
    first, second = tmp_path / "first.pt", tmp_path / "second.pt"
    fit(VAE(64, z_dim=2, hidden_dims=(8,)), binary_x, epochs=2, batch_size=20,
        checkpoint=first, progress=False)  # fmt: skip
    vae, state = load_checkpoint(first)
    fit(vae, binary_x, epochs=3, batch_size=20, checkpoint=second, progress=False,
        optimizer_state=state["optimizer_state"])  # fmt: skip
    resumed = load_checkpoint(second)[1]["optimizer_state"]
    # Adam's step count carries on: 2 epochs × 2 batches, then 3 × 2 more
    steps = {int(s["state"][0]["step"]) for s in resumed.values()}
    assert steps == {10}


def test_unreadable_checkpoint(tmp_path, binary_x):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint"):
        load_checkpoint(path)
    good = tmp_path / "good.pt"
    save_checkpoint(good, VAE(64, z_dim=2, hidden_dims=(8,)))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="checkpoint"):
        load_checkpoint(truncated)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_failed_checkpoint_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "run.pt", VAE(64, z_dim=2, hidden_dims=(8,)))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -3}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"loss": "elbo"}, "'trace', 'meanfield', 'renyi'"),
        ({"num_particles": 0}, "num_particles"),
        ({"loss": "renyi", "alpha": 1.0}, "Trace_ELBO"),
        ({"patience": 0}, "patience"),
    ],
)
def test_bad_arguments(kwargs, match, binary_x, tmp_path):
    path = tmp_path / "never.pt"
    with pytest.raises(ValueError, match=match):
        fit(VAE(64, z_dim=2), binary_x, progress=False, checkpoint=path, **kwargs)
    assert not path.exists()


def test_bad_data(binary_x):
    vae = VAE(64, z_dim=2)
    nan = binary_x.clone()
    nan[0, 0] = float("nan")
    inf = binary_x.clone()
    inf[1, 1] = float("inf")
    cases = [
        (nan, "finite"),
        (inf, "finite"),
        (binary_x * 2, r"\[0, 1\]"),
        (binary_x[:, :10], "x_dim=64"),
        (binary_x[:0], "empty"),
    ]
    for x, match in cases:
        with pytest.raises(ValueError, match=match):
            fit(vae, x, epochs=1, progress=False)
    with pytest.raises(ValueError, match="validation"):
        fit(vae, binary_x, validation=binary_x[:, :3], epochs=1, progress=False)


def test_negative_alpha_warns(binary_x):
    with pytest.warns(UserWarning, match="no lower bound"):
        fit(
            VAE(64, z_dim=2, hidden_dims=(8,)),
            binary_x,
            loss="renyi",
            alpha=-0.5,
            num_particles=2,
            epochs=1,
            progress=False,
        )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace, used by Pyro
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("loss", ["trace", "renyi"])  # meanfield: analytic KL, MC likelihood
@pytest.mark.parametrize("jit", [False, True])
def test_objectives_are_exact_when_the_guide_is_the_posterior(linear_data, loss, jit):
    # With q(z|x) = p(z|x) every log weight equals log p(x), so each objective's loss is
    # −Σ log p(x) whatever the draws: a deterministic check of the (compiled) estimator.
    import pyro
    from pyro.infer import SVI

    from pyro_vae.objectives import make_elbo

    x = linear_data.x[:64]
    vae = LinearGaussianVAE(6, 2).fit_maximum_likelihood(linear_data.x)
    elbo = make_elbo(loss, num_particles=3 if loss == "renyi" else 1, jit=jit)
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.0}), elbo)
    exact = -vae.exact_log_likelihood(x).sum().item()
    for _ in range(2):  # the first JIT call traces, the second runs compiled
        assert svi.step(x) == pytest.approx(exact, rel=1e-5)
