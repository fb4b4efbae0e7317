"""Every door of restoring a model, under one rule (``BaseVAE.load_param_store``).

The model's parameters are its own tensors; values Pyro's param store holds under its
names are copied into them in place before the model's next use, and an explicit
``load_state_dict``/``load_checkpoint`` puts the model's tensors back in the store, so
the last load wins. Each test restores a trained model through Pyro's store and then
calls one door *first*: its output must be the trained model's, exactly (same seed).
"""

import copy
import io
import pickle
import warnings

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO

import pyro_vae
from pyro_vae import VAE, LinearGaussianVAE


def _data(seed, rows=6):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(rows, 64, generator=g) < 0.3).float()


def _train(vae, x, steps, seed):
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    pyro.set_rng_seed(seed)
    for _ in range(steps):
        svi.step(x)
    return vae


def _state(vae):
    return {k: v.detach().clone() for k, v in vae.state_dict().items()}


def _assert_state(vae, expected):
    for key, value in expected.items():
        actual = dict(vae.named_parameters())[key].detach()
        assert torch.equal(actual, value), key


@pytest.fixture(scope="module")
def saved_store(tmp_path_factory, seed):
    """A VAE named "vae" trained by SVI, its store saved, then cleared: the path, the
    trained values and the trained model (a copy, named anew: it ignores the store)."""
    pyro.clear_param_store()
    x = _data(seed(0))
    torch.manual_seed(seed(1))
    trained = _train(VAE(64, z_dim=2, hidden_dims=(8,), name="vae"), x, 30, seed(2))
    path = tmp_path_factory.mktemp("store") / "params.pt"
    pyro.get_param_store().save(path)
    pyro.clear_param_store()
    reference = copy.deepcopy(trained)  # a name of its own: independent of the store
    del trained
    return path, _state(reference), reference, x


def _restored(path, **kwargs):
    torch.manual_seed(12345)  # initial values unlike the trained ones
    vae = VAE(64, z_dim=2, hidden_dims=(8,), name="vae", **kwargs)
    pyro.get_param_store().load(path)
    return vae


def _equal(a, b):
    if isinstance(a, torch.Tensor | np.ndarray):
        return torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_equal(u, v) for u, v in zip(a, b, strict=True))
    return a == b


def _short_hmc(vae, x):
    with warnings.catch_warnings():  # 5 draws: R-hat fails, as it should
        warnings.filterwarnings("ignore", "The posterior draws", UserWarning)
        run = pyro_vae.sample_posterior(vae, x, num_samples=5, warmup_steps=5, num_chains=2, seed=3)
    return run.posterior["z"].values


DOORS = {
    "evaluate": lambda vae, x: pyro_vae.evaluate(vae, x, num_samples=64, seed=3).values,
    "ais": lambda vae, x: pyro_vae.ais(vae, x, num_bridges=10, num_chains=4, seed=3).log_px,
    "bdmc": lambda vae, x: (
        pyro_vae.bdmc(vae, num_points=3, num_bridges=10, num_chains=2).forward.log_px
    ),
    "quadrature_posterior": lambda vae, x: (
        pyro_vae.quadrature_posterior(vae, x[:2], tol=1e-3, max_points=2**10).log_px
    ),
    "sample_posterior": lambda vae, x: _short_hmc(vae, x[:2]),
    "sample_guide": lambda vae, x: (
        pyro_vae.sample_guide(vae, x[:2], num_samples=5, seed=3).posterior["z"].values
    ),
    "fit_local_guides": lambda vae, x: (
        pyro_vae.fit_local_guides(
            vae, x[:2], num_particles=2, check_every=2, patience=1, max_steps=4, seed=3
        ).losses
    ),
    "elbo_decompositions": lambda vae, x: (
        pyro_vae.infer.elbo_decompositions(
            vae, x[:2], num_samples=16, log_px="importance_sampling", log_px_samples=64
        ).values
    ),
    "inference_gaps": lambda vae, x: (
        pyro_vae.inference_gaps(
            vae,
            x[:2],
            families="diagonal",
            num_samples=16,
            seed=3,
            num_particles=2,
            check_every=2,
            patience=1,
            max_steps=4,
        ).values
    ),  # fmt: skip
    "elbo_surgery": lambda vae, x: (
        pyro_vae.infer.elbo_surgery(vae, x, num_samples=8, seed=3).values
    ),
    "active_units": lambda vae, x: pyro_vae.infer.active_units(vae, x, num_samples=8, seed=3).kl,
    "encode": lambda vae, x: vae.encode(x).mean,
    "decode": lambda vae, x: vae.decode(torch.zeros(2, 2)),
    "reconstruct": lambda vae, x: vae.reconstruct(x) if pyro.set_rng_seed(3) is None else None,
    "model trace": lambda vae, x: (
        poutine.trace(poutine.seed(vae.model, rng_seed=3)).get_trace(x).log_prob_sum()
    ),
    "state_dict": lambda vae, x: vae.state_dict(),
}


SLOW_DOORS = {"bdmc"}  # BDMC's two adaptation passes: about a minute on 2 cores


@pytest.mark.parametrize(
    "door",
    [pytest.param(d, marks=pytest.mark.slow) if d in SLOW_DOORS else d for d in DOORS],
)
def test_each_door_sees_the_restored_values_first(saved_store, door):
    path, trained, reference, x = saved_store
    expected = DOORS[door](reference, x)
    vae = _restored(path)
    assert _equal(DOORS[door](vae, x), expected), door
    _assert_state(vae, trained)


def test_save_checkpoint_first_writes_the_restored_values(saved_store, tmp_path):
    path, trained, _, _ = saved_store
    vae = _restored(path)
    pyro_vae.save_checkpoint(tmp_path / "vae.pt", vae)
    loaded, _ = pyro_vae.load_checkpoint(tmp_path / "vae.pt")
    _assert_state(loaded, trained)


def test_frozen_first_holds_the_restored_values_for_nuts(saved_store):
    path, trained, reference, x = saved_store
    with reference.frozen():
        expected = poutine.trace(poutine.condition(reference.model, {"z": torch.zeros(6, 2)}))
        expected = expected.get_trace(x).log_prob_sum()
    vae = _restored(path)
    with vae.frozen():  # as before MCMC(NUTS(vae.model)).run(x)
        _assert_state(vae, trained)
        trace = poutine.trace(poutine.condition(vae.model, {"z": torch.zeros(6, 2)}))
        assert torch.equal(trace.get_trace(x).log_prob_sum(), expected)
        assert not any(p.requires_grad for p in vae.parameters())
    assert all(p.requires_grad for p in vae.parameters())


def test_an_optimizer_made_before_the_load_trains_the_restored_model(saved_store, seed):
    path, trained, _, x = saved_store
    torch.manual_seed(12345)
    vae = VAE(64, z_dim=2, hidden_dims=(8,), name="vae")
    params = list(vae.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-2)
    pyro.get_param_store().load(path)
    loss_fn = Trace_ELBO().differentiable_loss
    for step in range(3):
        pyro.set_rng_seed(seed(10 + step))
        optimizer.zero_grad()
        loss = loss_fn(vae.model, vae.guide, x)
        if step == 0:  # the first step starts from the trained values
            _assert_state(vae, trained)
        loss.backward()
        optimizer.step()
    assert [p is q for p, q in zip(params, vae.parameters(), strict=True)] == [True] * len(params)
    moved = [not torch.equal(p.detach(), trained[k]) for k, p in vae.named_parameters()]
    assert all(moved), moved


def test_the_last_load_wins_between_a_checkpoint_and_a_live_model(tmp_path, seed):
    # A checkpoint saved at step 10 loads as step 10, though a live model of the same
    # name has trained on to step 40 and its tensors sit in the store.
    x = _data(seed(0))
    torch.manual_seed(seed(1))
    live = VAE(64, z_dim=2, hidden_dims=(8,), name="vae")
    _train(live, x, 10, seed(2))
    pyro_vae.save_checkpoint(tmp_path / "early.pt", live)
    early = _state(live)
    _train(live, x, 30, seed(3))
    late = _state(live)
    assert not _equal(early, late)
    loaded, _ = pyro_vae.load_checkpoint(tmp_path / "early.pt")
    pyro_vae.evaluate(loaded, x, num_samples=8)  # a use, which reads the store
    _assert_state(loaded, early)
    # load_state_dict into a model whose name the store holds: the state dict wins ...
    other = VAE(64, z_dim=2, hidden_dims=(8,), name="vae")
    other.load_state_dict(late)
    other.encode(x)
    _assert_state(other, late)
    # ... until a later store load, which then wins
    path = tmp_path / "store.pt"
    pyro.get_param_store().save(path)  # holds other's tensors: the late values
    other.load_state_dict(early)
    pyro.get_param_store().load(path)
    _assert_state(other.load_param_store(), late)


@pytest.mark.parametrize("dump", ["pickle", "torch.save"])
def test_a_used_model_pickles_whole(seed, dump):
    x = _data(seed(0))
    vae = _train(LinearGaussianVAE(64, 2, name="pca"), x, 2, seed(1))
    vae.weight  # noqa: B018 (a use after training: Pyro's store marks its tensors)
    if dump == "pickle":
        copy_ = pickle.loads(pickle.dumps(vae))
    else:
        buffer = io.BytesIO()
        torch.save(vae, buffer)
        buffer.seek(0)
        copy_ = torch.load(buffer, weights_only=False)
    _assert_state(copy_, _state(vae))
    assert copy_.pyro_name != vae.pyro_name and copy_.name is None
    _train(vae, x, 1, seed(2))  # both go on training after the round trip
    _train(copy_, x, 1, seed(2))
    _assert_state(copy_, _state(vae))


def test_a_named_model_in_a_store_with_others_does_not_warn(tmp_path, seed):
    # "A" restored from a store that also holds a model "B" this process never built
    x = _data(seed(0))
    a = _train(VAE(64, z_dim=2, hidden_dims=(8,), name="A"), x, 2, seed(1))
    state = pyro.get_param_store().get_state()
    state["params"].update(
        {k.replace("A.", "B_from_disk.", 1): v for k, v in state["params"].items()}
    )
    state["constraints"].update(
        {k.replace("A.", "B_from_disk.", 1): v for k, v in state["constraints"].items()}
    )
    del a
    pyro.clear_param_store()
    pyro.get_param_store().set_state(state)
    restored = VAE(64, z_dim=2, hidden_dims=(8,), name="A")
    restored.encode(x)  # no warning: the store holds A's values (filterwarnings = error)
    unnamed = VAE(64, z_dim=2, hidden_dims=(8,))
    with pytest.warns(UserWarning, match=r"named 'B_from_disk'.*name='B_from_disk'\)"):
        unnamed.encode(x)
