"""One name for each thing: the settled names, and the old ones still accepted for one
release with a FutureWarning and the same numbers.

``num_bridges`` counts AIS bridges, ``num_steps`` leapfrog steps everywhere,
``target_accept_prob`` and ``inverse_mass_matrix`` as in Pyro and NumPyro.
"""

import importlib

import numpy as np
import pytest
import torch

from pyro_vae import VAE, ais, bdmc, sample_posterior
from pyro_vae.infer.ais import annealing_schedule
from pyro_vae.infer.mcmc import BatchedHMC, HMCState, hmc, nuts_reference, transition

ais_module = importlib.import_module("pyro_vae.infer.ais")


@pytest.fixture(scope="module", autouse=True)
def short_adaptation():
    """AIS's step-size pass of 4 bridges instead of 100: the same code, at token cost."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ais_module, "ADAPT_BRIDGES", 4)
        yield


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    vae = VAE(12, z_dim=2, hidden_dims=(8,))
    x = torch.bernoulli(torch.full((3, 12), 0.3), generator=torch.Generator().manual_seed(1))
    return vae, x


def _same_ais(a, b):
    for name in ("log_px", "log_weights", "acceptance", "step_size", "ess"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


# ------------------------------------------------------------------------ AIS and BDMC
# Budgets are tokens: what is compared is the numbers of the same settings, bit for bit.

_AIS = {"num_bridges": 3, "num_chains": 2, "num_steps": 2, "target_accept_prob": 0.8, "seed": 4}


@pytest.fixture(scope="module")
def settled(small):
    """AIS with the settled names: 3 bridges, 2 leapfrog steps per transition."""
    vae, x = small
    return ais(vae, x, **_AIS)


def test_an_old_ais_call_gives_the_same_numbers_with_one_warning_per_old_name(small, settled):
    """Before the rename ``num_steps`` counted bridges and ``leapfrog_steps`` leapfrog steps:
    a call of then still means what it meant, and each old keyword says what to write."""
    vae, x = small
    with pytest.warns(FutureWarning) as record:
        old = ais(vae, x, num_steps=3, num_chains=2, leapfrog_steps=2, target_accept=0.8, seed=4)
    _same_ais(old, settled)
    messages = [str(r.message) for r in record]
    assert len(messages) == 3 and all(r.filename == __file__ for r in record)
    assert messages[0].startswith("ais(): num_steps= without num_bridges= counts the AIS bridges")
    assert "pass num_bridges=" in messages[0]
    assert messages[1].startswith("ais(): leapfrog_steps= is deprecated")
    assert messages[1].endswith("use num_steps=")
    assert messages[2].startswith("ais(): target_accept= is deprecated")
    assert messages[2].endswith("use target_accept_prob=")


def test_ais_num_steps_with_num_bridges_is_the_leapfrog_steps(small, settled):
    vae, x = small
    with pytest.warns(FutureWarning, match=r"ais\(\): leapfrog_steps= is deprecated"):
        old = ais(vae, x, **{**_AIS, "num_steps": None}, leapfrog_steps=2)
    _same_ais(old, settled)
    other = ais(vae, x, **{**_AIS, "num_steps": 3})  # 3 leapfrog steps: other numbers
    assert not torch.equal(other.log_weights, settled.log_weights)


def test_ais_positional_calls_keep_their_meaning(small, settled):
    """The third argument counted bridges and the eighth leapfrog steps before the rename,
    as they do now: positional calls need no change and warn of nothing."""
    vae, x = small
    _same_ais(ais(vae, x, 3, 2, 4, "guide", "sigmoid", 2, 0.8), settled)


def test_bdmc_old_keywords(small):
    vae, _ = small
    new = bdmc(vae, 2, num_bridges=2, num_chains=2, num_steps=3, target_accept_prob=0.7, seed=5)
    with pytest.warns(FutureWarning) as record:
        old = bdmc(vae, 2, num_steps=2, num_chains=2, leapfrog_steps=3, target_accept=0.7, seed=5)
    assert len(record) == 3 and all(r.category is FutureWarning for r in record)
    assert all("bdmc()" in str(r.message) and r.filename == __file__ for r in record)
    assert torch.equal(old.x, new.x)
    _same_ais(old.forward, new.forward)
    _same_ais(old.reverse, new.reverse)
    assert bdmc(vae, 2, 2, 2, 5, "sigmoid", 3, 0.7).summary() == new.summary()


def test_annealing_schedule_num_steps_is_num_bridges():
    with pytest.warns(FutureWarning, match="num_steps= is deprecated.*num_bridges="):
        old = annealing_schedule(num_steps=7)
    assert old == annealing_schedule(7) == annealing_schedule(num_bridges=7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_bridges": 3, "num_steps": 2, "leapfrog_steps": 2},
         "Expected one of num_steps= and its old name leapfrog_steps= in ais() but got both"),
        ({"target_accept_prob": 0.7, "target_accept": 0.7},
         "Expected one of target_accept_prob= and its old name target_accept= in ais() but got "
         "both (target_accept_prob=0.7, target_accept=0.7)"),
        # a bad value under an old name is refused under that name, before any warning
        ({"num_steps": 0}, "Expected num_steps to be an integer > 0 but got 0"),
        ({"leapfrog_steps": True}, "Expected leapfrog_steps to be an integer > 0 but got True"),
        ({"target_accept": 1.0}, "Expected target_accept in (0, 1) but got 1.0"),
    ],
)  # fmt: skip
def test_old_and_new_names_together_or_bad_old_values_get_one_line(small, kwargs, message):
    vae, x = small
    with pytest.raises(ValueError) as error:
        ais(vae, x, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


# --------------------------------------------------------------------------------- HMC


def _gaussian(z):
    return 0.5 * z.square().sum(-1)


def test_batched_hmc_old_keywords_and_attributes():
    z = torch.zeros(4, 2)
    scale = torch.full((4, 2), 0.5)
    runs = []
    for kwargs in (
        {"inverse_mass_matrix": scale, "target_accept_prob": 0.7},
        {"inverse_mass": scale, "target_accept": 0.7},
    ):
        torch.manual_seed(3)
        if "inverse_mass" in kwargs:
            with pytest.warns(FutureWarning) as record:
                sampler = BatchedHMC(_gaussian, num_steps=3, **kwargs)
            assert [str(r.message).split(" is ")[0] for r in record] == [
                "BatchedHMC(): inverse_mass=",
                "BatchedHMC(): target_accept=",
            ]
        else:
            sampler = BatchedHMC(_gaussian, num_steps=3, **kwargs)
        state = sampler.warmup(HMCState.at(_gaussian, z), 30)
        runs.append((sampler, sampler.sample(state, 5)[1]))
    (new, new_draws), (old, old_draws) = runs
    assert new.target_accept_prob == old.target_accept_prob == 0.7
    assert torch.equal(new_draws, old_draws)
    assert torch.equal(new.inverse_mass_matrix, old.inverse_mass_matrix)
    with pytest.warns(FutureWarning, match="inverse_mass is deprecated.*inverse_mass_matrix"):
        assert old.inverse_mass is old.inverse_mass_matrix
    with pytest.warns(FutureWarning, match="target_accept is deprecated.*target_accept_prob"):
        assert old.target_accept == 0.7
    with pytest.warns(FutureWarning):
        old.inverse_mass = scale
    with pytest.warns(FutureWarning):
        old.target_accept = 0.9
    assert old.inverse_mass_matrix is scale and old.target_accept_prob == 0.9


def test_transition_inverse_mass_is_inverse_mass_matrix():
    state = HMCState.at(_gaussian, torch.ones(4, 2))
    step, scale = torch.full((4,), 0.3), torch.full((4, 2), 2.0)
    torch.manual_seed(0)
    new, _ = transition(_gaussian, state, step, 3, inverse_mass_matrix=scale)
    torch.manual_seed(0)
    with pytest.warns(FutureWarning, match=r"transition\(\): inverse_mass="):
        old, _ = transition(_gaussian, state, step, 3, inverse_mass=scale)
    assert torch.equal(new.z, old.z)
    with pytest.raises(ValueError, match="got both"):
        transition(_gaussian, state, step, 3, scale, inverse_mass=scale)


def test_check_target_accept_is_check_target_accept_prob():
    assert hmc.check_target_accept_prob(0.5) == 0.5
    with pytest.warns(FutureWarning, match="check_target_accept is deprecated"):
        assert hmc.check_target_accept(0.5) == 0.5


def test_sample_posterior_target_accept_is_target_accept_prob(small):
    vae, x = small
    settings = {"num_samples": 4, "warmup_steps": 10, "num_chains": 2, "seed": 2,
                "posterior_predictive": False}  # fmt: skip
    with pytest.warns(UserWarning, match="The posterior draws"):  # 4 draws: unconverged
        new = sample_posterior(vae, x[:1], target_accept_prob=0.6, **settings)
    with pytest.warns(FutureWarning, match=r"sample_posterior\(\): target_accept="):
        with pytest.warns(UserWarning, match="The posterior draws"):
            old = sample_posterior(vae, x[:1], target_accept=0.6, **settings)
    np.testing.assert_array_equal(new.posterior["z"].values, old.posterior["z"].values)
    np.testing.assert_array_equal(
        new.sample_stats["step_size"].values, old.sample_stats["step_size"].values
    )


def test_nuts_reference_target_accept_is_target_accept_prob(small):
    vae, x = small
    z0 = torch.zeros(1, 1, 2)
    with vae.frozen():  # θ held fixed, as sample_posterior holds it
        torch.manual_seed(0)
        new, _ = nuts_reference(vae.model, x[:1], z0, 2, 4, target_accept_prob=0.6)
        torch.manual_seed(0)
        with pytest.warns(FutureWarning, match=r"nuts_reference\(\): target_accept="):
            old, _ = nuts_reference(vae.model, x[:1], z0, 2, 4, target_accept=0.6)
    assert torch.equal(new, old)


# ------------------------------------------------------- the main job and the CLI


def test_compare_ais_steps_is_ais_bridges(monkeypatch):
    """``compare(ais_steps=)`` and ``AIS_STEPS`` are the old names of ``ais_bridges`` and
    ``AIS_BRIDGES``: the same value reaches the runs' settings, with a FutureWarning."""
    from pyro_vae.data import load_digits
    from pyro_vae.experiments import compare

    module = importlib.import_module("pyro_vae.experiments.compare")
    seen, settings = [], module.RunSettings

    class Stop(Exception):
        pass

    def spy(*args):  # the runs' settings, built and checked; no training follows
        seen.append(settings(*args).ais_bridges)
        raise Stop

    monkeypatch.setattr(module, "RunSettings", spy)
    data = load_digits()
    for kwargs, warns in (({"ais_bridges": 7}, False), ({"ais_steps": 7}, True)):
        with pytest.raises(Stop), warnings_as(warns, r"compare\(\): ais_steps= is deprecated"):
            compare(data, ["trace"], **kwargs)
    assert seen == [7, 7]
    with pytest.raises(ValueError, match="Expected one of ais_bridges= and its old name"):
        compare(data, ["trace"], ais_bridges=5, ais_steps=7)
    with pytest.warns(FutureWarning, match="AIS_STEPS is deprecated.*use AIS_BRIDGES"):
        assert module.AIS_STEPS == module.AIS_BRIDGES
    with pytest.raises(AttributeError):
        module.NOT_A_NAME  # noqa: B018


def warnings_as(warns, match):
    """``pytest.warns(FutureWarning, match=...)`` when ``warns``, else no warning allowed."""
    import contextlib
    import warnings

    if warns:
        return pytest.warns(FutureWarning, match=match)

    @contextlib.contextmanager
    def none():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yield

    return none()


def test_old_cli_flags_parse_to_the_new_ones_with_a_warning():
    """``ais --num-steps`` and ``compare --ais-steps`` are the old names of ``--bridges``
    and ``--ais-bridges``: the same namespace, and a FutureWarning naming the new flag."""
    from pyro_vae.cli import build_parser

    parser = build_parser()
    renamed = (("ais", "--bridges", "--num-steps", "bridges"),
               ("compare", "--ais-bridges", "--ais-steps", "ais_bridges"))  # fmt: skip
    for command, new, old, dest in renamed:
        head = [command, "ckpt.pt"] if command == "ais" else [command]
        with warnings_as(False, None):
            settled = parser.parse_args([*head, new, "7"])
        with pytest.warns(FutureWarning, match=f"pyro-vae {command}: {old} is deprecated.*{new}"):
            old_args = parser.parse_args([*head, old, "7"])
        assert getattr(settled, dest) == getattr(old_args, dest) == 7
        assert vars(settled) == vars(old_args)
        assert f"{old}: its old name" in " ".join(
            parser._subparsers._group_actions[0].choices[command].format_help().split()
        )


def test_sandwich_row_num_steps_is_num_bridges():
    """A 0.3.0 ``results.json`` row (``num_steps``) reads as ``num_bridges``; the old
    attribute still answers, with a FutureWarning."""
    from pyro_vae.results import SANDWICH, SandwichRow

    estimates = {f"{name}{suffix}": 0.5 for name in SANDWICH for suffix in ("", "_se")}
    old = SandwichRow.from_dict({"objective": "Trace_ELBO", "num_steps": 100, **estimates})
    new = SandwichRow.from_dict({"objective": "Trace_ELBO", "num_bridges": 100, **estimates})
    assert old == new and new.num_bridges == 100
    assert "num_steps" not in new.to_dict() and new.to_dict()["num_bridges"] == 100
    with pytest.warns(FutureWarning, match="SandwichRow: num_steps is deprecated"):
        assert new.num_steps == 100


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("pyro_vae.infer.hmc", "BatchedHMC", "pyro_vae.infer.mcmc"),
        ("pyro_vae.infer.hmc", "transition", "pyro_vae.infer.mcmc"),
        ("pyro_vae.infer.hmc", "adaptation_windows", "pyro_vae.infer.mcmc"),
        ("pyro_vae.infer.hmc", "MAX_ENERGY_ERROR", "pyro_vae.infer.mcmc.hmc"),
        ("pyro_vae.infer.nuts", "nuts_reference", "pyro_vae.infer.mcmc"),
        ("pyro_vae.infer.posterior", "sample_posterior", "pyro_vae.infer.mcmc"),
        ("pyro_vae.infer.posterior", "METHODS", "pyro_vae.infer.mcmc.posterior"),
    ],
)
def test_the_modules_that_moved_into_mcmc_still_give_their_names(old, name, new):
    """0.3.0's ``from pyro_vae.infer.hmc import BatchedHMC`` still works, with a
    FutureWarning naming the new home, and gives the same object."""
    module = importlib.import_module(old)
    with pytest.warns(FutureWarning, match=rf"{old}: {name} is deprecated.*use {new}\.{name}$"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError, match="has no attribute 'not_a_name'"):
        module.not_a_name  # noqa: B018
