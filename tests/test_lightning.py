"""Training through PyTorch Lightning (the optional extra), single process and DDP.

The DDP test runs 2 CPU processes (gloo) through ``pyro-vae train --strategy ddp`` in a
subprocess: Lightning's DDP launcher starts the second process by running the command
line again, which a test process cannot do for itself.
"""

import importlib
import json
import math
import os
import pathlib
import subprocess
import sys
import textwrap

import pyro
import pytest
import torch

import pyro_vae
from pyro_vae.cli import main
from pyro_vae.data import load_digits
from pyro_vae.infer.objectives import make_elbo


@pytest.fixture(scope="module")
def pvl():
    """pyro_vae.train.lightning, or skip when the extra is not installed."""
    pytest.importorskip("lightning", reason='needs pip install "pyro-vae[lightning]"')
    return importlib.import_module("pyro_vae.train.lightning")


@pytest.fixture(scope="module")
def digits():
    return load_digits(binarize="dynamic")


def _small_vae(*, seed):
    torch.manual_seed(seed)
    return pyro_vae.VAE(64, z_dim=2, hidden_dims=(16,))


# --- the optional extra -------------------------------------------------------------


def test_importing_pyro_vae_does_not_import_lightning():
    code = "import sys, pyro_vae, pyro_vae.cli; print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture
def without_lightning(monkeypatch):
    """Make ``import lightning`` fail, as it does without the extra."""
    for name in ("lightning", "lightning.pytorch", "lightning.pytorch.callbacks"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "pyro_vae.train.lightning", raising=False)


def test_cli_offers_the_strategies_of_the_module(pvl):
    from pyro_vae import cli

    assert cli.LIGHTNING_STRATEGIES == pvl.STRATEGIES  # the CLI does not import the module


def test_missing_lightning_names_the_extra(without_lightning):
    with pytest.raises(ImportError, match=r'pip install "pyro-vae\[lightning\]"'):
        importlib.import_module("pyro_vae.train.lightning")


def test_cli_without_lightning_names_the_extra(without_lightning, tmp_path, capsys):
    ckpt = tmp_path / "vae.pt"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--strategy", "ddp", "--devices", "2", "--checkpoint", str(ckpt)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--strategy" in err and 'pip install "pyro-vae[lightning]"' in err
    assert not os.listdir(tmp_path)


def test_ci_installs_as_the_readme_says_with_the_extra():
    root = pathlib.Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text().split("## Install")[1]
    line = readme.split("```bash\n")[1].splitlines()[0]
    assert line == 'python -m pip install -c constraints.txt -e ".[test,lightning]"'
    ci = (root / ".ci" / "run").read_text().splitlines()
    assert line in ci
    # and the docs extra as the README's "Documentation site" says, before CI builds it
    docs = (root / "README.md").read_text().split("**Documentation site.**")[1]
    docs_install, build = docs.split("```bash\n")[1].splitlines()[:2]
    assert docs_install == 'python -m pip install -c constraints.txt -e ".[test,lightning,docs]"'
    assert build.startswith("sphinx-build -W")
    assert docs_install in ci and ci.index(docs_install) < len(ci) - 1
    assert any(step.startswith("sphinx-build -W") for step in ci[ci.index(docs_install) :])


def test_constraints_pin_everything_the_extra_pulls():
    """lightning and every package it needs, down the tree, are pinned to what is
    installed, so the extra cannot pull another torch (or anything else)."""
    pytest.importorskip("lightning", reason='needs pip install "pyro-vae[lightning]"')
    from importlib.metadata import requires, version

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name

    root = pathlib.Path(__file__).resolve().parent.parent
    pins = {}
    for line in (root / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, pinned = line.split("==")
            pins[canonicalize_name(name)] = pinned
    todo, seen = [("lightning", "")], set()
    while todo:
        name, extra = todo.pop()
        name = canonicalize_name(name)
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        if name == "setuptools":  # comes with every virtual environment (torch needs it)
            continue
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert version(name) in SpecifierSet(f"=={pins[name]}"), name  # 2.13.0+cpu too
        for text in requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
                todo += [(requirement.name, e) for e in ("", *requirement.extras)]
    seen = {name for name, _ in seen}
    assert {"lightning", "torch", "pytorch-lightning", "aiohttp", "yarl"} <= seen


# --- the LightningModule and the data -----------------------------------------------


@pytest.mark.parametrize(
    "loss, alpha, k", [("trace", 0.0, 1), ("meanfield", 0.0, 1), ("renyi", 0.0, 5)]
)
def test_training_step_is_the_differentiable_loss_with_the_whole_n(
    pvl, digits, loss, alpha, k, seed
):
    vae = _small_vae(seed=seed(0))
    num_data = len(digits.train)
    module = pvl.VAEModule(vae, num_data, loss=loss, alpha=alpha, num_particles=k, beta=0.5)
    module.on_train_epoch_start()
    rows = torch.tensor([5, 900, 17, 1200, 3])
    x = digits.train[rows]
    pyro.set_rng_seed(seed(7))
    step = module.training_step((x, rows), 0)
    pyro.set_rng_seed(seed(7))
    elbo = make_elbo(loss, alpha, k)
    expected = elbo.differentiable_loss(
        vae.model, vae.guide, x, num_data=num_data, subsample=rows, beta=0.5
    )
    assert torch.equal(step, expected)
    # N/b: nats summed over the 5 points, scaled to the 1258 training points
    assert 20 * num_data < step.item() < 64 * math.log(2) * 2 * num_data
    step.backward()
    assert all(p.grad is not None for p in vae.parameters())


def test_data_module_deals_disjoint_shards_of_global_rows(pvl, digits, seed):
    data = pvl.VAEDataModule(digits, batch_size=128, seed=seed(3))
    num_data = len(digits.train)
    seen = {}
    for epoch in (0, 1):
        for rank in (0, 1):
            loader = data.dataloader(world_size=2, rank=rank)
            loader.sampler.set_epoch(epoch)
            batches = list(loader)
            assert [len(rows) for _, rows in batches][:-1] == [64] * (len(batches) - 1)
            seen[epoch, rank] = torch.cat([rows for _, rows in batches])
            x = torch.cat([x for x, _ in batches])
            # the epoch's binarization is one draw of the whole set, the same in every
            # process, and binary draws of the rows' own intensities
            assert set(x.unique().tolist()) <= {0.0, 1.0}
            intensities = digits.train_intensities[seen[epoch, rank]]
            assert not (x.bool() & (intensities == 0)).any()
        both = torch.cat([seen[epoch, 0], seen[epoch, 1]])
        assert sorted(both.tolist()) == list(range(num_data))  # 1258: no padding
        assert len(seen[epoch, 0]) == len(seen[epoch, 1]) == num_data // 2
    assert not torch.equal(seen[0, 0], seen[1, 0])  # reshuffled every epoch
    rows0 = pvl.VAEDataModule(digits, batch_size=128, seed=seed(3)).dataloader(2, 0)
    rows0.sampler.set_epoch(1)
    first = next(iter(rows0))
    loader = data.dataloader(2, 0)
    loader.sampler.set_epoch(1)
    again = next(iter(loader))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])  # seeded
    with pytest.raises(ValueError, match="batch_size to be a multiple"):
        pvl.VAEDataModule(digits, batch_size=127).dataloader(world_size=2)


def test_binarization_of_an_epoch_does_not_depend_on_the_process(pvl, digits, seed):
    data = pvl.VAEDataModule(digits, batch_size=128, seed=seed(0))
    draws = {}
    for rank in (0, 1):
        loader = data.dataloader(world_size=2, rank=rank)
        loader.sampler.set_epoch(4)
        draws[rank] = loader.dataset.x
    assert torch.equal(draws[0], draws[1])
    loader.sampler.set_epoch(5)
    assert not torch.equal(loader.dataset.x, draws[0])  # redrawn each epoch


# --- fit_lightning, one process ------------------------------------------------------


def test_fit_lightning_writes_a_checkpoint_that_load_checkpoint_reads(
    pvl, digits, tmp_path, monkeypatch, seed
):
    monkeypatch.chdir(tmp_path)  # nothing may land in the working folder
    ckpt = tmp_path / "out" / "vae.pt"
    vae = _small_vae(seed=seed(0))
    run = pvl.fit_lightning(vae, digits, epochs=2, progress=False, checkpoint=ckpt, seed=seed(4))
    assert [h["epoch"] for h in run.history] == [1, 2]
    assert run.global_rank == 0 and run.world_size == 1
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert sorted(os.listdir(tmp_path / "out")) == ["vae.pt", "vae_lightning"]
    assert os.listdir(tmp_path / "out" / "vae_lightning") == ["last.ckpt"]
    loaded, saved = pyro_vae.load_checkpoint(ckpt)
    config = saved["fit_config"]
    assert config["trainer"] == "lightning" and config["per_process_batch_size"] == 128
    assert config["lightning_checkpoint"] == os.path.join("vae_lightning", "last.ckpt")
    assert saved["data_spec"] == digits.spec and saved["best_epoch"] == run.best_epoch
    assert saved["training_state"] is None  # resumed from Lightning's checkpoint instead
    # the saved module is the best epoch's, and its validation bounds are the recorded
    # ones: one process evaluates every point with the run's seed, as fit does
    best = run.history[run.best_epoch - 1]
    summary = pyro_vae.evaluate(loaded, digits.validation, 50, ks=(50,), seed=seed(4)).summary()
    assert summary["elbo"][0] == pytest.approx(best["val_elbo"], abs=1e-4)
    assert summary["iwae_50"][0] == pytest.approx(best["val_iwae"], abs=1e-4)
    for a, b in zip(loaded.state_dict().values(), vae.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_fit_lightning_matches_fit_in_its_first_epoch_statistics(
    pvl, digits, tmp_path, monkeypatch, seed
):
    """Same model, data and effective batch: the bounds after 2 epochs are close."""
    monkeypatch.chdir(tmp_path)
    lit = pvl.fit_lightning(
        _small_vae(seed=seed(0)), digits, epochs=2, progress=False, seed=seed(0)
    )
    assert not os.listdir(tmp_path)  # no checkpoint asked for: Lightning writes nothing
    own = pyro_vae.fit(_small_vae(seed=seed(0)), digits, epochs=2, progress=False, seed=seed(0))
    for key in ("train_loss", "val_elbo", "val_iwae"):
        assert lit.history[-1][key] == pytest.approx(own.history[-1][key], abs=1.0)


@pytest.mark.filterwarnings("ignore:.*does not have many workers")
@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`:FutureWarning")
def test_the_pieces_in_a_trainer_of_ones_own(pvl, digits, tmp_path, seed):
    import lightning.pytorch as pl

    vae = _small_vae(seed=seed(0))
    module = pvl.VAEModule(vae, len(digits.train), seed=seed(0), validation=digits.validation)
    data = pvl.VAEDataModule(digits, batch_size=64, seed=seed(0))
    ckpt = tmp_path / "own.pt"
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[pvl.PackageCheckpoint(ckpt, data_spec=digits.spec)],
        default_root_dir=tmp_path,
    )
    with pyro.validation_enabled(False):
        trainer.fit(module, datamodule=data)
    assert [h["epoch"] for h in module.history] == [1, 2]
    assert trainer.global_step == 2 * math.ceil(len(digits.train) / 64)
    loaded, saved = pyro_vae.load_checkpoint(ckpt)
    assert saved["history"] == module.history and saved["data_spec"] == digits.spec
    assert (tmp_path / "own_lightning" / "last.ckpt").exists()


def test_resume_continues_bit_for_bit(pvl, digits, tmp_path, seed):
    ckpt = tmp_path / "vae.pt"
    common = {"progress": False, "restore_best": False, "seed": seed(2)}
    whole = _small_vae(seed=seed(0))
    straight = pvl.fit_lightning(whole, digits, epochs=4, **common)
    pvl.fit_lightning(_small_vae(seed=seed(0)), digits, epochs=2, checkpoint=ckpt, **common)
    resumed_vae = _small_vae(seed=seed(99))  # the checkpoint's parameters replace these
    resumed = pvl.fit_lightning(
        resumed_vae, digits, epochs=4, checkpoint=ckpt, resume=ckpt, **common
    )
    assert resumed.history[:2] == [
        {k: v for k, v in h.items()} for h in pyro_vae.load_checkpoint(ckpt)[1]["history"][:2]
    ]
    strip = [{k: v for k, v in h.items() if k != "wall_time"} for h in straight.history]
    assert [{k: v for k, v in h.items() if k != "wall_time"} for h in resumed.history] == strip
    for a, b in zip(whole.state_dict().values(), resumed_vae.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match=f"seed={seed(2)} as in the checkpoint"):
        pvl.fit_lightning(
            _small_vae(seed=seed(0)), digits, epochs=5, resume=ckpt, progress=False, seed=seed(3)
        )


def test_patience_stops_the_run(pvl, digits, seed):
    run = pvl.fit_lightning(
        _small_vae(seed=seed(0)),
        digits,
        epochs=30,
        progress=False,
        patience=1,
        lr=0.3,
        monitor="elbo",
        seed=seed(0),
    )
    assert run.stopped_early and len(run.history) < 30
    assert run.best_epoch == len(run.history) - 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"loss": "pyro_renyi", "alpha": 0.5, "num_particles": 2}, "differentiable_loss"),
        ({"devices": 2}, "strategy='ddp' with devices=2"),
        ({"strategy": "ddp", "devices": 3}, "batch_size to be a multiple of devices=3"),
        ({"strategy": "fsdp"}, "strategy in"),
        ({"devices": 0}, "devices to be an integer"),
        ({"accelerator": "tpu"}, "accelerator in"),
        ({"beta": lambda epoch: 1.0, "checkpoint": "x.pt"}, "beta"),
    ],
)
def test_fit_lightning_rejects_bad_arguments(
    pvl, digits, kwargs, message, tmp_path, monkeypatch, seed
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message):
        pvl.fit_lightning(_small_vae(seed=seed(0)), digits, epochs=1, progress=False, **kwargs)
    assert not os.listdir(tmp_path)


def test_resume_of_a_checkpoint_of_the_packages_own_loop_is_refused(pvl, digits, tmp_path, seed):
    ckpt = tmp_path / "own.pt"
    pyro_vae.fit(
        _small_vae(seed=seed(0)), digits, epochs=1, progress=False, checkpoint=ckpt, seed=seed(0)
    )
    with pytest.raises(ValueError, match="written by pyro_vae.fit"):
        pvl.fit_lightning(
            _small_vae(seed=seed(0)), digits, epochs=2, progress=False, resume=ckpt, seed=seed(0)
        )


def test_module_refuses_the_share_of_a_process_as_num_data(pvl, digits, seed):
    module = pvl.VAEModule(_small_vae(seed=seed(0)), len(digits.train) // 2)
    trainer = type("T", (), {"datamodule": pvl.VAEDataModule(digits)})()
    module.trainer = trainer
    with pytest.raises(ValueError, match="num_data=1258, the size of the whole training"):
        module.setup("fit")


# --- DDP: 2 CPU processes against single-process training ----------------------------

EPOCHS = 50
REFERENCE_SEEDS = 8
TOLERANCE_SDS = 4.0
"""Tolerance in units of the predicted s.d. of (DDP − mean of n single-process runs),
s·√(1 + 1/n), s the measured seed-to-seed s.d. of the n runs: P(|t_7| > 4) ≈ 0.005."""

_SPY = textwrap.dedent(
    """
    # The CLI, with the arguments the ELBO receives recorded per process.
    import atexit, json, os, sys
    import pyro_vae.train.lightning as pvl
    from pyro_vae.cli import main

    calls = []
    make_elbo = pvl.make_elbo

    def spying_make_elbo(*args, **kwargs):
        elbo = make_elbo(*args, **kwargs)
        loss = elbo.differentiable_loss

        def differentiable_loss(model, guide, x, **kw):
            calls.append([kw["num_data"], kw["subsample"].tolist(), x.shape[0]])
            return loss(model, guide, x, **kw)

        elbo.differentiable_loss = differentiable_loss
        return elbo

    pvl.make_elbo = spying_make_elbo
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    atexit.register(lambda: json.dump(calls, open(f"calls_{rank}.json", "w")))
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_single_process_training(pvl, digits, tmp_path, seed):
    # Reference: the package's own loop, one process, batch 128, n training seeds.
    reference = []
    for i in range(REFERENCE_SEEDS):
        torch.manual_seed(seed(i))
        run = pyro_vae.fit(
            pyro_vae.VAE(64), digits, epochs=EPOCHS, seed=seed(i), progress=False, num_threads=1
        )
        reference.append(run.history[-1])
    # DDP: 2 processes x 64 rows per step (effective batch 128), another seed.
    script = tmp_path / "spy_cli.py"
    script.write_text(_SPY)
    ckpt = tmp_path / "ddp.pt"
    argv = ["train", "--strategy", "ddp", "--devices", "2", "--accelerator", "cpu",
            "--epochs", str(EPOCHS), "--batch-size", "128", "--seed", str(seed(100)),
            "--no-progress", "--checkpoint", str(ckpt)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(script), *argv],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 process(es) x batch 64" in out.stdout
    assert out.stdout.count("best epoch") == 1  # only process 0 reports

    # Every process scaled its minibatch to the whole training set, with global row
    # indices; in each epoch the two processes covered the training set once.
    num_data = len(digits.train)
    calls = [json.loads((tmp_path / f"calls_{rank}.json").read_text()) for rank in (0, 1)]
    steps = math.ceil(num_data / 2 / 64)
    assert len(calls[0]) == len(calls[1]) == EPOCHS * steps
    for rank in (0, 1):
        assert {n for n, _, _ in calls[rank]} == {num_data}
        assert all(len(rows) == b <= 64 for _, rows, b in calls[rank])
    for epoch in range(EPOCHS):
        span = slice(epoch * steps, (epoch + 1) * steps)
        rows = [r for rank in (0, 1) for _, batch, _ in calls[rank][span] for r in batch]
        assert sorted(rows) == list(range(num_data))

    # The rank-0 checkpoint loads and evaluates.
    vae, saved = pyro_vae.load_checkpoint(ckpt)
    history = saved["history"]
    assert len(history) == EPOCHS and saved["fit_config"]["devices"] == 2
    best = history[saved["best_epoch"] - 1]
    summary = pyro_vae.evaluate(vae, digits.validation, 1000, ks=(50,), seed=seed(1)).summary()
    mean, se = summary["iwae_50"]
    assert abs(mean - best["val_iwae"]) < 4 * se + 0.02  # other draws, same model
    assert (tmp_path / "ddp_lightning" / "last.ckpt").exists()

    # The DDP run is statistically one more draw of single-process training.
    report = {}
    for key in ("val_iwae", "val_elbo", "train_loss"):
        values = torch.tensor([r[key] for r in reference], dtype=torch.float64)
        m, s, n = values.mean().item(), values.std().item(), len(values)
        tolerance = TOLERANCE_SDS * s * math.sqrt(1 + 1 / n)
        report[key] = (history[-1][key], m, s, tolerance)
        print(f"{key}: DDP {history[-1][key]:.3f}, single process {m:.3f} ± {s:.3f} (s.d., "
              f"n={n}), tolerance {tolerance:.3f}")  # fmt: skip
    for key, (ddp, m, _, tolerance) in report.items():
        assert abs(ddp - m) < tolerance, (key, report)


def test_fit_lightning_takes_the_config_of_fit_and_shares_its_stopping_rule(pvl, digits, seed):
    from pyro_vae.train.state import EarlyStopping

    config = pyro_vae.TrainConfig(epochs=2, batch_size=64, seed=seed(0), progress=False)
    keyword = pvl.fit_lightning(
        _small_vae(seed=seed(1)), digits, epochs=2, batch_size=64, seed=seed(0), progress=False
    )
    positional = pvl.fit_lightning(_small_vae(seed=seed(1)), digits, config)
    strip = [{k: v for k, v in h.items() if k != "wall_time"} for h in keyword.history]
    assert [{k: v for k, v in h.items() if k != "wall_time"} for h in positional.history] == strip
    module = pvl.VAEModule(_small_vae(seed=seed(0)), len(digits.train), config, patience=3)
    assert module.stopping == EarlyStopping("iwae", 3, True)
    for field, value in (("gap_every", 1), ("device", "cpu"), ("patience", True)):
        with pytest.raises(ValueError, match=field):
            pvl.fit_lightning(_small_vae(seed=seed(0)), digits, config, **{field: value})
