"""The main job's typed data: what a run is given (RunSettings) and what it returns
(RunOutput), frozen and picklable; the main job's defaults and its K rule, stated once."""

import dataclasses
import importlib
import inspect
import pickle
import re

import pytest
import torch

from pyro_vae import TrainConfig
from pyro_vae.data import load_digits
from pyro_vae.experiments.compare import (
    AIS_BRIDGES,
    BDMC_POINTS,
    DEFAULT_OBJECTIVES,
    GAP_EVERY,
    GAP_FAMILIES,
    GAP_MAX_STEPS,
    MIN_SAMPLES,
    NUM_SAMPLES,
    POSTERIOR_POINTS,
    RunSettings,
    check_num_samples,
    compare,
)
from pyro_vae.experiments.runs import (
    AIS_CHAINS,
    RunOutput,
    SandwichOutput,
    Task,
    new_model,
    run_task,
)
from pyro_vae.infer.objectives import parse_objective
from pyro_vae.train import MAIN_JOB

main_job = importlib.import_module("pyro_vae.experiments.compare")

TINY = {"z_dim": 3, "hidden_dims": (8,), "likelihood": "bernoulli", "num_samples": 100,
        "dtype": torch.float32, "posterior_points": 1, "gap_families": ("diagonal",),
        "gap_max_steps": 50, "ais_bridges": 5, "bdmc_points": 3}  # fmt: skip


def _settings(**changes):
    config = MAIN_JOB.replace(epochs=2, gap_every=1, progress=False, device="cpu")
    return RunSettings(config=config, **{**TINY, **changes})


@pytest.fixture(scope="module")
def digits():
    return load_digits(binarize="dynamic")


@pytest.fixture(scope="module")
def first_run(digits):
    """One first-seed run of the first objective, with the BDMC sandwich; without the
    guide check, the gap split and AIS on checked points (minutes of HMC; the worker
    test of test_compare.py sends those across processes)."""
    settings = _settings(posterior_points=0)
    torch.manual_seed(3)
    initial = new_model(digits, settings).state_dict()
    task = Task("Trace_ELBO", parse_objective("trace"), 3, initial, check=True, bdmc=True)
    return settings, task, run_task(task, digits, settings, progress=False)


def test_run_settings_are_frozen_picklable_and_read_by_attribute():
    settings = _settings(hidden_dims=[8, 4], dtype="float64", gap_families=["diagonal", "flow"])
    # normalized once: a list is kept as a tuple, a dtype name as the torch dtype
    assert settings.hidden_dims == (8, 4) and settings.gap_families == ("diagonal", "flow")
    assert settings.dtype is torch.float64
    assert settings.device == settings.config.device == "cpu"
    assert settings.num_samples == 100 and settings.ais_bridges == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.num_samples = 5000
    back = pickle.loads(pickle.dumps(settings))
    assert back == settings and back is not settings
    assert back.config == settings.config and back.dtype is torch.float64
    assert hash(back) == hash(settings)  # frozen, of immutable fields: hashable


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_samples": 99}, "Expected num_samples >= 100 (two groups of 50"),
        ({"num_samples": 100.0}, "Expected num_samples >= 100"),
        ({"num_samples": True}, "Expected num_samples >= 100"),
        ({"dtype": torch.float16}, "Expected dtype to be torch.float32 or torch.float64"),
        ({"gap_families": ("gaussian",)}, "Expected family in ('diagonal', 'flow')"),
        ({"gap_families": "diagonal"}, "Expected gap_families to be a sequence of families"),
        ({"gap_max_steps": 0}, "Expected gap_max_steps to be an integer > 0"),
        ({"ais_bridges": -1}, "Expected ais_bridges to be an integer >= 0"),
        ({"bdmc_points": 1.5}, "Expected bdmc_points to be an integer >= 0"),
        ({"posterior_points": -1}, "Expected posterior_points to be an integer >= 0"),
        ({"config": {"epochs": 2}}, "Expected config to be a TrainConfig"),
    ],
)
def test_run_settings_refuse_a_bad_value_in_one_line(changes, message):
    if "config" in changes:
        with pytest.raises(ValueError, match=re.escape(message)) as info:
            RunSettings(**{"config": changes["config"], **TINY})
    else:
        with pytest.raises(ValueError, match=re.escape(message)) as info:
            _settings(**changes)
    assert "\n" not in str(info.value)


def test_run_settings_validate_their_training_config():
    config = dataclasses.replace(MAIN_JOB, batch_size=0)  # replace() skips validate()
    with pytest.raises(ValueError, match="batch_size") as info:
        RunSettings(config=config, **TINY)
    assert "\n" not in str(info.value)


def test_a_run_returns_a_frozen_output_that_pickles_whole(first_run):
    """What a worker process sends back: every field, read by attribute, survives a
    pickle round trip with the same numbers, and the row built from it is the same."""
    settings, task, out = first_run
    assert isinstance(out, RunOutput) and isinstance(out.sandwich, SandwichOutput)
    for name in ("decomp", "surgery", "aggregate", "sandwich"):
        assert getattr(out, name) is not None, name
    assert (out.check, out.gaps, out.ais) == (None, None, None)  # posterior_points=0
    assert out.times["label"] == task.label and "bdmc_s" in out.times
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.test = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.sandwich.seconds = 0.0
    back = pickle.loads(pickle.dumps(out))
    assert torch.equal(back.test.values["log_px"], out.test.values["log_px"])
    assert torch.equal(back.aggregate, out.aggregate)
    assert torch.equal(back.sandwich.bdmc.forward.log_px, out.sandwich.bdmc.forward.log_px)
    assert back.run.history == out.run.history and back.times == out.times
    for name, value in out.vae.state_dict().items():
        assert torch.equal(back.vae.state_dict()[name], value), name
    row, row_back = (main_job._sandwich_row(task.label, o.sandwich, settings) for o in (out, back))
    assert row == row_back
    assert (row.num_points, row.num_bridges, row.num_chains, row.num_samples) == (
        settings.bdmc_points,
        settings.ais_bridges,
        AIS_CHAINS,
        settings.num_samples,
    )


def test_a_beta_run_leaves_the_first_seed_fields_empty(digits):
    settings = _settings()
    torch.manual_seed(4)
    initial = new_model(digits, settings).state_dict()
    from pyro_vae.train.schedules import parse_schedule

    schedule = parse_schedule("0")
    task = Task(schedule.label, parse_objective("trace"), 4, initial, schedule=schedule)
    out = run_task(task, digits, settings, progress=False)
    assert len(out.run.history) == 2 and out.units is not None
    assert [out.decomp, out.surgery, out.aggregate, out.check, out.gaps, out.ais,
            out.sandwich] == [None] * 7  # fmt: skip
    row = main_job._beta_row(task, pickle.loads(pickle.dumps(out)), settings)
    assert row.z_dim == settings.z_dim and row.epochs_run == 2


def test_the_k_rule_is_stated_once(monkeypatch, digits):
    """check_num_samples, RunSettings and compare() all read the one MIN_SAMPLES."""
    assert MIN_SAMPLES == 100
    assert check_num_samples(100) == 100
    with pytest.raises(ValueError, match=re.escape("Expected --num-samples >= 100 (two groups")):
        check_num_samples(50, "--num-samples")
    monkeypatch.setattr(main_job, "MIN_SAMPLES", 200)
    with pytest.raises(ValueError, match="Expected num_samples >= 200"):
        check_num_samples(150)
    with pytest.raises(ValueError, match="Expected num_samples >= 200"):
        _settings(num_samples=150)
    with pytest.raises(ValueError, match="Expected num_samples >= 200"):
        compare(digits, ["trace"], num_samples=150, epochs=1, progress=False)


def test_the_main_job_defaults_are_stated_once():
    """compare()'s defaults are the module's constants (which the CLI imports), with the
    main job's values; its training settings are MAIN_JOB with the gap every GAP_EVERY."""
    defaults = {name: p.default for name, p in inspect.signature(compare).parameters.items()}
    constants = {"objectives": DEFAULT_OBJECTIVES, "num_samples": NUM_SAMPLES,
                 "posterior_points": POSTERIOR_POINTS, "gap_families": GAP_FAMILIES,
                 "gap_max_steps": GAP_MAX_STEPS, "ais_bridges": AIS_BRIDGES,
                 "bdmc_points": BDMC_POINTS}  # fmt: skip
    for name, value in constants.items():
        assert defaults[name] is value, name
    values = (NUM_SAMPLES, POSTERIOR_POINTS, GAP_FAMILIES, GAP_MAX_STEPS, AIS_BRIDGES, BDMC_POINTS)
    assert values == (5000, 16, ("diagonal", "flow"), 1000, 100, 50) and GAP_EVERY == 25
    config = main_job._check_config(None, {"device": "cpu"})
    assert isinstance(config, TrainConfig)
    assert config == MAIN_JOB.replace(gap_every=GAP_EVERY, device="cpu")
    assert (config.epochs, config.patience) == (800, 100)
