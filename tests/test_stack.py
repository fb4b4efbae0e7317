"""Many runs in one pass (pyro_vae.train.stack): a stack of R runs is R single runs.

A stack of one is the single run bit for bit (parameters, history, best epoch, the global
RNG afterwards) for every objective; a stack of R gives each run its single run's losses
to float rounding over the first epochs, its own draws, minibatches, early stopping and
best epoch; and the main job's seeds train as one stack with the same numbers.
"""

import pyro
import pytest
import torch

from pyro_vae import VAE, fit
from pyro_vae.data import load_digits
from pyro_vae.experiments.compare import compare
from pyro_vae.infer.objectives import parse_objective
from pyro_vae.train.stack import RunwiseNormal, StackedVAE, fit_runs, runwise_elbo


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def small(digits):
    """300 training digits and the validation split: a few epochs in a second."""
    return digits.train[:300], digits.validation[:60]


def _models(seeds, **kwargs):
    """One freshly initialized VAE per seed (initialization drawn with that seed)."""
    vaes = []
    for s in seeds:
        torch.manual_seed(s)
        vaes.append(VAE(64, 4, (32,), **kwargs))
    return vaes


def _copy(vae):
    other = VAE(vae.x_dim, vae.z_dim, vae.hidden_dims, vae.likelihood,
                activation=vae.decoder.activation)  # fmt: skip
    other.load_state_dict(vae.state_dict())
    return other


def _history(run):
    return [{k: v for k, v in record.items() if k != "wall_time"} for record in run.history]


def _settings(spec):
    loss, alpha, k = parse_objective(spec)
    return {"loss": loss, "alpha": alpha, "num_particles": k}


@pytest.mark.parametrize(
    "spec, likelihood, extra",
    [
        ("trace", "bernoulli", {}),
        ("meanfield", "bernoulli", {"beta": "warmup:2"}),
        ("renyi:0:5", "bernoulli", {"gap_every": 2, "gap_points": 20, "gap_samples": 10}),
        ("renyi:0.5:3", "continuous_bernoulli", {}),
        ("stl", "bernoulli", {"lr_schedule": "burda2016"}),
        ("dreg:3", "bernoulli", {"monitor": "elbo"}),
        ("trace", "gaussian", {"beta": 0.5}),
    ],
)
def test_a_stack_of_one_is_the_single_run_bit_for_bit(small, seed, spec, likelihood, extra):
    train, validation = small
    [single] = _models([seed(0)], likelihood=likelihood)
    stacked = _copy(single)
    settings = {**_settings(spec), "epochs": 3, "progress": False, **extra}
    alone = fit(single, train, validation=validation, seed=seed(1), **settings)
    after_alone = pyro.util.get_rng_state()
    [run] = fit([stacked], train, validation=validation, seeds=[seed(1)], **settings)
    after_stack = pyro.util.get_rng_state()
    for name, value in single.state_dict().items():
        assert torch.equal(value, stacked.state_dict()[name]), name
    assert _history(run) == _history(alone)
    assert run.best_epoch == alone.best_epoch and run.num_runs == 1
    assert torch.equal(after_alone["torch"], after_stack["torch"])
    assert after_alone["random"] == after_stack["random"]


def test_a_stack_of_three_gives_each_run_its_own_losses(small, seed):
    train, validation = small
    seeds = [seed(0), seed(1), seed(2)]
    vaes = _models(seeds)
    singles = [_copy(vae) for vae in vaes]
    settings = {**_settings("renyi:0:3"), "epochs": 4, "progress": False}
    runs = fit(vaes, train, validation=validation, seeds=seeds, **settings)
    for vae, alone_vae, s, run in zip(vaes, singles, seeds, runs, strict=True):
        alone = fit(alone_vae, train, validation=validation, seed=s, **settings)
        for a, b in zip(alone.history, run.history, strict=True):
            # batched matrix products round differently: agreement to float rounding
            assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5, abs=0)
            assert b["val_iwae"] == pytest.approx(a["val_iwae"], rel=1e-5, abs=0)
        for name, value in alone_vae.state_dict().items():
            torch.testing.assert_close(vae.state_dict()[name], value, rtol=1e-4, atol=1e-5)
        assert run.num_runs == 3
    # the runs differ from each other: each drew its own minibatches and z
    losses = {run.history[0]["train_loss"] for run in runs}
    assert len(losses) == 3


def test_each_run_of_a_stack_stops_on_its_own(small, seed):
    train, validation = small
    seeds = [seed(3), seed(4)]
    settings = {"epochs": 40, "patience": 2, "lr": 0.03, "progress": False}
    vaes = _models(seeds)
    singles = [_copy(vae) for vae in vaes]
    runs = fit(vaes, train, validation=validation, seeds=seeds, **settings)
    alone = [
        fit(v, train, validation=validation, seed=s, **settings)
        for v, s in zip(singles, seeds, strict=True)
    ]
    for run, ref, vae, vae_alone in zip(runs, alone, vaes, singles, strict=True):
        assert run.stopped_early == ref.stopped_early
        assert len(run.history) == len(ref.history)
        assert run.best_epoch == ref.best_epoch
        torch.testing.assert_close(vae.state_dict(), vae_alone.state_dict(), rtol=1e-4, atol=1e-5)
    assert any(run.stopped_early for run in runs)


def test_dynamic_binarization_draws_each_runs_own_data(seed):
    data = load_digits(binarize="dynamic")
    seeds = [seed(5), seed(6)]
    settings = {"epochs": 2, "progress": False, "validation": False}
    vaes = _models(seeds)
    singles = [_copy(vae) for vae in vaes]
    runs = fit(vaes, data, seeds=seeds, **settings)
    for run, vae, s in zip(runs, singles, seeds, strict=True):
        alone = fit(vae, data, seed=s, **settings)
        for a, b in zip(alone.history, run.history, strict=True):
            assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5, abs=0)


def test_runwise_normal_draws_each_run_from_its_own_generator(seed):
    loc, scale = torch.zeros(3, 5, 2), torch.ones(3, 5, 2)
    gens = [torch.Generator().manual_seed(seed(s)) for s in (7, 8, 9)]
    q = RunwiseNormal(loc, scale, gens).to_event(1).expand((4, 3, 5))
    z = q.rsample()
    for r, s in enumerate((7, 8, 9)):
        torch.manual_seed(seed(s))
        assert torch.equal(z[:, r], torch.randn(4, 5, 2))
    assert torch.equal(q.log_prob(z), torch.distributions.Normal(0, 1).log_prob(z).sum(-1))


def test_the_stacked_loss_is_the_sum_of_the_runs_losses(small, seed):
    train, _ = small
    vaes = _models([seed(0), seed(1)])
    stack = StackedVAE(vaes)
    x = torch.stack([train[:16], train[16:32]])
    for spec in ("trace", "meanfield", "renyi:0:4", "stl", "dreg:3"):
        elbo = runwise_elbo(*parse_objective(spec), num_runs=2)
        torch.manual_seed(seed(2))
        loss = elbo.differentiable_loss(stack.model, stack.guide, x, 300)
        assert elbo.per_run.shape == (2,)
        torch.testing.assert_close(elbo.per_run.sum(), loss.detach(), rtol=1e-6, atol=1e-3)


def test_the_main_jobs_seeds_train_as_one_stack(digits, seed):
    settings = {"epochs": 3, "progress": False, "posterior_points": 0, "num_samples": 100,
                "ais_bridges": 0, "gap_every": None}  # fmt: skip
    both = compare(digits, ["renyi:0:3"], seeds=[seed(0), seed(1)], **settings)
    one = compare(digits, ["renyi:0:3"], seeds=[seed(1)], **settings)
    for label, evaluations in both.evaluations.items():
        a, b = evaluations[1].values["log_px"], one.evaluations[label][0].values["log_px"]
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    fits = [times["fit_s"] for times in both.meta["run_times"]]
    assert fits[0] == fits[1]  # one stack


def test_only_the_runs_told_track_the_gap(small, seed):
    train, validation = small
    seeds = [seed(0), seed(1)]
    settings = {"epochs": 2, "progress": False, "gap_every": 1, "gap_points": 10,
                "gap_samples": 5}  # fmt: skip
    vaes, singles = _models(seeds), None
    singles = [_copy(vae) for vae in vaes]
    runs = fit_runs(vaes, train, validation=validation, seeds=seeds, gap_runs=[0], **settings)
    assert all("gap" in record for record in runs[0].history)
    assert not any("gap" in record for record in runs[1].history)
    assert runs[1].config["gap_every"] is None
    alone = fit(singles[1], train, validation=validation, seed=seeds[1], **settings)
    # the gap's draws are its own: the run trains and validates as with it
    for a, b in zip(alone.history, runs[1].history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5, abs=0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda t: fit(_models([0, 1]), t, seeds=[0]), "seeds to be 2 distinct integers"),
        (lambda t: fit(_models([0, 1]), t, seeds=[3, 3]), "seeds to be 2 distinct integers"),
        (lambda t: fit([VAE(64, 4, (32,), encoder="iaf:1")], t, seeds=[0]), "diagonal encoder"),
        (lambda t: fit([VAE(64, 4, (32,)), VAE(64, 3, (32,))], t, seeds=[0, 1]), "architecture"),
        (lambda t: fit(_models([0]), t, seeds=[0], loss="pyro_renyi"), "pyro_renyi"),
        (lambda t: fit(_models([0]), t, seeds=[0], checkpoint="x.pt"), "no checkpoint"),
        (lambda t: fit(_models([0]), t), "seeds=\\[...\\]"),
    ],
)
def test_a_stack_refuses_what_it_cannot_train(small, call, match):
    with pytest.raises(ValueError, match=match):
        call(small[0])


def test_a_stack_leaves_the_users_param_store_and_other_models_alone(small, seed):
    train, validation = small
    pyro.param("user_scale", torch.tensor(2.5))
    other = _models([seed(9)])[0]
    before = {k: v.clone() for k, v in other.state_dict().items()}
    fit(_models([seed(0), seed(1)]), train, validation=False, seeds=[seed(0), seed(1)],
        epochs=1, progress=False)  # fmt: skip
    assert set(pyro.get_param_store().keys()) == {"user_scale"}
    assert pyro.param("user_scale").item() == 2.5
    for name, value in other.state_dict().items():
        assert torch.equal(value, before[name])
    # and a second model still trains alone in the same process
    run = fit(other, train, validation=False, seed=seed(2), epochs=1, progress=False)
    assert not torch.equal(
        other.state_dict()["decoder.fc_out.weight"], before["decoder.fc_out.weight"]
    )
    assert len(run.history) == 1
