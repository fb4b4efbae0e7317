"""The thin CLI (``pyro_vae/cli/``) and the library calls it makes (issue 31).

The command line is parsed in ``pyro_vae.cli`` only; each subcommand is one call of
``pyro_vae.experiments.jobs`` whose result it prints. The library rebuilds what the CLI
used to rebuild by hand: a run's settings from its record (``TrainConfig.from_record``)
and a model from its config (``model_from_config``), through one resume path.
"""

import argparse
import json
import pathlib
import re
import subprocess
import sys

import pytest
import torch

import pyro_vae
from pyro_vae import VAE, LinearGaussianVAE, TrainConfig, fit, load_checkpoint
from pyro_vae.cli import build_parser, main
from pyro_vae.data import load_dataset
from pyro_vae.experiments import jobs
from pyro_vae.train import checkpoints
from pyro_vae.train.checkpoints import model_from_config
from pyro_vae.train.schedules import warmup

PACKAGE = pathlib.Path(pyro_vae.__file__).parent
SMALL = ["--z-dim", "2", "--hidden-dims", "8", "--no-progress"]


def _history(checkpoint):
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in checkpoint["history"]]


# --- the layering ---------------------------------------------------------------------


def test_only_the_cli_imports_argparse():
    pattern = re.compile(r"^\s*(import argparse|from argparse import)", re.MULTILINE)
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.parent.name != "cli" and pattern.search(path.read_text())
    ]
    assert offenders == []
    assert pattern.search((PACKAGE / "cli" / "_options.py").read_text())  # the check can see


def test_the_cli_is_under_500_lines():
    lines = sum(len(path.read_text().splitlines()) for path in (PACKAGE / "cli").glob("*.py"))
    assert 0 < lines < 500


def test_one_module_per_subcommand():
    from pyro_vae import cli

    action = next(a for a in build_parser()._actions if a.dest == "command")
    assert list(action.choices) == ["compare", "train", "evaluate", "posterior", "ais"]
    for name, module in cli.COMMANDS.items():
        assert module.__name__ == f"pyro_vae.cli.{name}" and callable(module.run)


def test_python_dash_m_runs_the_command():
    out = subprocess.run(
        [sys.executable, "-m", "pyro_vae.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"pyro-vae {pyro_vae.__version__}"


# --- TrainConfig.from_record ----------------------------------------------------------

CONFIGS = [
    TrainConfig(),
    TrainConfig(
        loss="renyi",
        alpha=0.5,
        num_particles=5,
        epochs=7,
        batch_size=32,
        lr=0.01,
        seed=3,
        patience=4,
        beta="warmup:10",
    ),  # fmt: skip
    TrainConfig(
        loss="meanfield",
        num_particles=2,
        lr_schedule="burda2016",
        adam_eps=1e-4,
        val_samples=10,
        monitor="elbo",
        restore_best=False,
        gap_every=5,
        gap_points=20,
        gap_samples=50,
        beta=warmup(4, 0.5, 2.0),
    ),  # fmt: skip
    TrainConfig(loss="pyro_renyi", alpha=0.0, num_particles=3, beta=1.0, lr=2e-4),
]


@pytest.mark.parametrize("config", CONFIGS, ids=range(len(CONFIGS)))
def test_from_record_inverts_record(config):
    lr = 1e-3 if config.lr is None else config.lr
    record = config.record(lr)
    back = TrainConfig.from_record(record)
    assert back.record(lr) == record
    assert back.schedule == config.schedule
    assert back == config.replace(lr=lr, beta=config.schedule.spec)
    assert TrainConfig.from_record(json.loads(json.dumps(record))) == back  # as saved


def test_from_record_reads_a_lightning_record_and_an_older_one():
    record = {**CONFIGS[1].record(0.01), "trainer": "lightning", "strategy": "ddp",
              "devices": 2, "per_process_batch_size": 16}  # fmt: skip
    for key in ("gap_points", "gap_samples"):  # not in fit_lightning's record
        del record[key]
    back = TrainConfig.from_record(record)
    assert back == CONFIGS[1].replace(beta="warmup:10:0:1")
    del record["beta"]  # written before β schedules: β = 1
    assert TrainConfig.from_record(record).schedule == TrainConfig().schedule


@pytest.mark.parametrize(
    "record, match",
    [
        ([1, 2], "Expected record to be a dict"),
        ({"loss": "trace"}, "it lacks alpha, num_particles, epochs, batch_size, lr, seed"),
        ({**TrainConfig(beta=lambda e: 1.0).record(1e-3)}, r"record\['beta'\].*plain callable"),
    ],
)
def test_from_record_refuses_what_it_cannot_restore(record, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_record(record)


# --- model_from_config ----------------------------------------------------------------


@pytest.mark.parametrize(
    "vae",
    [
        lambda: VAE(64, 3, (16, 8), "gaussian"),
        lambda: VAE(64, 2, 8, encoder="iaf:1", activation="elu", name="named"),
        lambda: LinearGaussianVAE(5, 2),
    ],
    ids=["gaussian", "flow-named", "linear"],
)
def test_model_from_config_rebuilds_the_architecture(vae):
    vae = vae()
    rebuilt = model_from_config(vae.config)
    assert type(rebuilt) is type(vae) and rebuilt.config == vae.config
    shapes = {name: value.shape for name, value in vae.state_dict().items()}
    assert {name: value.shape for name, value in rebuilt.state_dict().items()} == shapes
    rebuilt = model_from_config(json.loads(json.dumps(vae.config)))  # lists, not tuples
    assert rebuilt.config == vae.config


def test_model_from_config_refuses_an_unknown_class():
    with pytest.raises(ValueError, match=r"naming a class of \('VAE', 'LinearGaussianVAE'\)"):
        model_from_config({"class": "Nope", "x_dim": 3})
    with pytest.raises(ValueError, match="model config"):
        model_from_config(None)


@pytest.fixture
def spied_model_from_config(monkeypatch):
    """Count the calls of model_from_config made through load_checkpoint."""
    calls = []

    def spy(config):
        calls.append(config)
        return model_from_config(config)

    monkeypatch.setattr(checkpoints, "model_from_config", spy)
    return calls


def test_load_checkpoint_rebuilds_through_model_from_config(tmp_path, spied_model_from_config):
    vae = VAE(64, 2, (8,), encoder="iaf:1")
    path = tmp_path / "m.pt"
    checkpoints.save_checkpoint(path, vae)
    loaded, saved = load_checkpoint(path)
    assert spied_model_from_config == [saved["model_config"]]
    for name, value in vae.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)
    saved["model_config"]["class"] = "Nope"
    torch.save(saved, path)
    with pytest.raises(ValueError, match="Malformed pyro_vae checkpoint"):
        load_checkpoint(path)


# --- one resume path ------------------------------------------------------------------


def test_a_resumed_cli_run_is_the_uninterrupted_one(tmp_path, seed, spied_model_from_config):
    """train 2 epochs then --resume to 4 gives the 4-epoch run bit for bit, its model
    rebuilt by model_from_config (load_checkpoint), its settings by from_record."""
    args = [*SMALL, "--seed", str(seed(0)), "--lr", "0.01", "--beta", "warmup:3"]
    whole, part = tmp_path / "whole.pt", tmp_path / "part.pt"
    assert main(["train", "--epochs", "4", *args, "--checkpoint", str(whole)]) == 0
    assert main(["train", "--epochs", "2", *args, "--checkpoint", str(part)]) == 0
    spied_model_from_config.clear()
    assert main(["train", "--epochs", "4", *SMALL, "--resume", str(part),
                 "--checkpoint", str(part)]) == 0  # fmt: skip
    assert spied_model_from_config  # the resumed model came from model_from_config
    a, b = load_checkpoint(part)[1], load_checkpoint(whole)[1]
    assert _history(a) == _history(b) and len(_history(a)) == 4
    assert a["fit_config"] == b["fit_config"]
    for name, value in b["model_state"].items():
        assert torch.equal(a["model_state"][name], value), name


def test_resume_keeps_every_recorded_setting(tmp_path, seed):
    """A run trained by fit with settings the CLI has no flag for resumes with them: the
    resumed settings come from the record, not from defaults."""
    data = load_dataset("digits", "dynamic", 0)
    path = tmp_path / "run.pt"
    config = TrainConfig(epochs=1, seed=seed(1), val_samples=10, monitor="elbo", adam_eps=1e-4,
                         lr_schedule="burda2016", batch_size=64, progress=False)  # fmt: skip
    torch.manual_seed(seed(1))
    fit(VAE(64, 2, (8,)), data, config, checkpoint=path)
    result = jobs.train_job(path, TrainConfig(epochs=2, progress=False), resume=path)
    saved = load_checkpoint(path)[1]["fit_config"]
    assert [h["epoch"] for h in result.run.history] == [1, 2]
    assert {k: saved[k] for k in ("val_samples", "monitor", "adam_eps", "lr_schedule")} == {
        "val_samples": 10, "monitor": "elbo", "adam_eps": 1e-4, "lr_schedule": "burda2016"
    }  # fmt: skip
    assert saved["batch_size"] == 64 and saved["epochs"] == 2


def test_resume_needs_a_checkpoint_of_train(tmp_path, seed):
    path = tmp_path / "bare.pt"
    checkpoints.save_checkpoint(path, VAE(64, 2, (8,)))
    with pytest.raises(ValueError, match="holds no training state or data spec"):
        jobs.train_job(tmp_path / "new.pt", TrainConfig(epochs=2), resume=path)


# --- the results the CLI prints -------------------------------------------------------


@pytest.fixture
def trained(tmp_path, seed):
    path = tmp_path / "vae.pt"
    assert main(["train", "--epochs", "1", *SMALL, "--seed", str(seed(0)),
                 "--checkpoint", str(path)]) == 0  # fmt: skip
    return path


def test_evaluate_job_is_what_the_cli_prints_and_writes(trained, tmp_path, capsys, seed):
    path = tmp_path / "eval.json"
    capsys.readouterr()
    assert main(["evaluate", str(trained), "--num-samples", "100", "--seed", str(seed(1)),
                 "--json", str(path)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    result = jobs.evaluate_job(trained, num_samples=100, seed=seed(1))
    assert json.loads(path.read_text()) == json.loads(json.dumps(result.to_dict()))
    assert result.to_dict()["ess"]["se"] is None  # strict JSON: no NaN
    strip = re.compile(r"\d+\.\d s$")  # the wall time
    assert strip.sub("", printed.strip()) == strip.sub("", str(result))


def test_ais_job_is_what_the_cli_writes(trained, tmp_path, capsys, seed):
    path = tmp_path / "ais.json"
    argv = ["ais", str(trained), "--points", "2", "--bridges", "3", "--chains", "2",
            "--num-samples", "100", "--bdmc", "2", "--seed", str(seed(1)), "--no-progress",
            "--json", str(path)]  # fmt: skip
    assert main(argv) == 0
    result = jobs.ais_job(trained, points=2, num_bridges=3, num_chains=2, num_samples=100,
                          bdmc_points=2, seed=seed(1), progress=False)  # fmt: skip
    written, report = json.loads(path.read_text()), json.loads(json.dumps(result.to_dict()))
    for part in ("ais", "is", "bdmc"):
        del written[part]["seconds"], report[part]["seconds"]
    assert written == report
    assert list(written) == ["checkpoint", "data_spec", "points", "start", "num_bridges",
                             "num_chains", "schedule", "seed", "ais", "is", "bdmc"]  # fmt: skip


# --- the 0.x calls, deprecated --------------------------------------------------------


def test_the_old_namespace_jobs_warn_and_do_what_the_cli_does(trained, tmp_path, capsys, seed):
    parser = build_parser()
    argv = ["evaluate", str(trained), "--num-samples", "100", "--seed", str(seed(1))]
    capsys.readouterr()
    assert main(argv) == 0
    expected = capsys.readouterr().out
    with pytest.warns(FutureWarning, match=r"run_evaluate\(args\) is deprecated"):
        jobs.run_evaluate(parser.parse_args(argv))
    strip = re.compile(r"\d+\.\d s$", re.MULTILINE)
    assert strip.sub("", capsys.readouterr().out) == strip.sub("", expected)

    other = tmp_path / "other.pt"
    argv = ["train", "--epochs", "1", *SMALL, "--seed", str(seed(0)), "--checkpoint", str(other)]
    with pytest.warns(FutureWarning, match=r"run_train\(args\) is deprecated"):
        jobs.run_train(parser.parse_args(argv))
    for name, value in load_checkpoint(trained)[1]["model_state"].items():
        assert torch.equal(load_checkpoint(other)[1]["model_state"][name], value), name

    path = tmp_path / "ais.json"
    argv = ["ais", str(trained), "--points", "2", "--bridges", "2", "--chains", "2",
            "--num-samples", "0", "--no-progress", "--json", str(path)]  # fmt: skip
    with pytest.warns(FutureWarning, match=r"run_ais\(args\) is deprecated"):
        jobs.run_ais(parser.parse_args(argv))
    assert "log p(x) by AIS from the guide (2 bridges, 2 chains)" in capsys.readouterr().out
    assert json.loads(path.read_text())["points"] == 2
    with pytest.raises(TypeError, match="argparse.Namespace"):
        jobs.run_ais({"checkpoint": str(trained)})


def test_binarize_choice_takes_the_flag_and_warns_for_the_namespace():
    assert jobs.binarize_choice(None, "bernoulli") == "dynamic"
    assert jobs.binarize_choice(None, "gaussian") is None
    assert jobs.binarize_choice("none", "bernoulli") is None
    assert jobs.binarize_choice("threshold", None) == "threshold"
    with pytest.warns(FutureWarning, match="binarize_choice"):
        old = jobs.binarize_choice(argparse.Namespace(binarize="static"), "bernoulli")
    assert old == "static"


def test_importing_the_cli_main_module_runs_nothing():
    """Sphinx's recursive autosummary imports ``pyro_vae.cli.__main__``: only
    ``python -m pyro_vae.cli`` may run the command (it parsed sphinx-build's argv)."""
    import importlib

    module = importlib.import_module("pyro_vae.cli.__main__")
    assert module.__name__ == "pyro_vae.cli.__main__"  # imported, and nothing ran
