"""A small-budget run of ``benchmarks/bench_cremer2018.py``, so the script cannot rot."""

import json
import math
import os
import pathlib

import pytest
import torch
from _scripts import load_script

from pyro_vae import evaluate, load_checkpoint
from pyro_vae.data import FASHION_MNIST_DIR
from pyro_vae.train.presets import CREMER2018

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "bench_cremer2018.py"


def _bench():
    return load_script(BENCH)


def test_the_preset_builds_the_papers_networks():
    vae = CREMER2018.build_model("ffg")
    shapes = [tuple(p.shape) for p in vae.encoder.parameters()]
    assert shapes[:4] == [(200, 784), (200,), (200, 200), (200,)]
    assert [tuple(p.shape) for p in vae.decoder.parameters()][-2:] == [(784, 200), (784,)]
    assert vae.z_dim == 50 and vae.config["activation"] == "elu"
    assert CREMER2018.build_model("flow").config["encoder"] == "coupling:2"
    assert CREMER2018.train.batch_size == 100 and CREMER2018.train.adam_eps == 1e-4
    with pytest.raises(ValueError, match=r"Expected guide in \('ffg', 'flow'\)"):
        CREMER2018.build_model("iaf")


def test_train_seconds_add_up_across_resumed_calls():
    history = [{"wall_time": t} for t in (1.0, 2.0, 0.5, 1.5, 0.2)]
    assert _bench().train_seconds(history) == 2.0 + 1.5 + 0.2


def test_evaluate_only_prints_and_leaves_the_committed_table_alone(tmp_path, monkeypatch, capsys):
    """One model's evaluation must not replace the two-model table: without --out,
    --evaluate-only prints; the evaluation of both models writes the table."""
    bench = _bench()
    table = tmp_path / "cremer2018.json"
    monkeypatch.setattr(bench, "TABLE", table)
    monkeypatch.setattr(bench, "evaluate_checkpoint", lambda path, args: {"checkpoint": str(path)})
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    bench.main(["evaluate", "--evaluate-only", "ffg.pt"])
    assert '"checkpoint": "ffg.pt"' in capsys.readouterr().out and not table.exists()
    bench.main(["evaluate", "--evaluate-only", "ffg.pt", "--out", str(tmp_path / "one.json")])
    assert json.loads((tmp_path / "one.json").read_text())["models"] == [{"checkpoint": "ffg.pt"}]
    assert not table.exists()
    bench.main(["evaluate", "--ais-steps", "7"])  # the old name of --ais-bridges
    written = json.loads(table.read_text())
    assert [pathlib.Path(m["checkpoint"]).name for m in written["models"]] == ["ffg.pt", "flow.pt"]
    assert written["ais_bridges"] == 7


@pytest.mark.slow
@pytest.mark.skipif(
    not os.path.isdir(FASHION_MNIST_DIR),
    reason=f"no {FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist",
)
def test_a_small_run_trains_resumes_and_writes_the_gap_table(tmp_path):
    bench = _bench()
    train = ["train", "--guide", "ffg", "--train-points", "200", "--out-dir", str(tmp_path)]
    bench.main([*train, "--epochs", "1"])
    bench.main([*train, "--epochs", "2"])  # resumes the checkpoint
    vae, saved = load_checkpoint(tmp_path / "ffg.pt")
    assert [r["epoch"] for r in saved["history"]] == [1, 2]
    assert saved["fit_config"]["lr_schedule"] == "burda2016"
    out = tmp_path / "gaps.json"
    bench.main(["evaluate", "--evaluate-only", str(tmp_path / "ffg.pt"), "--points", "2",
                "--ais-bridges", "4", "--ais-chains", "2", "--bdmc-points", "2",
                "--iwae-samples", "8", "--max-steps", "4", "--out", str(out)])  # fmt: skip
    table = json.loads(out.read_text())
    (model,) = table["models"]
    assert model["guide"] == "ffg" and model["epochs"] == 2
    for subset in ("train_points", "test_points"):
        row = model[subset]
        log_px, elbo = row["log_px"][0], row["elbo"][0]
        gap = row["approximation_gap"][0] + row["amortization_gap"][0]
        assert gap == pytest.approx(log_px - elbo, abs=1e-9)
        assert row["log_px"][0] == max(row["log_px_ais"][0], row["log_px_iwae"][0])
        assert row["amortization_gap"][0] == pytest.approx(
            row["elbo_local_ffg"][0] - elbo, abs=1e-9
        )
    assert torch.isfinite(torch.tensor(model["bdmc"]["width"])).all()
    # AIS again at more bridges on the same gap split: the split's fields are taken as they
    # were, log p̂(x) and the gaps follow the new AIS
    again = tmp_path / "again.json"
    common = ["evaluate", "--evaluate-only", str(tmp_path / "ffg.pt"), "--points", "2",
              "--ais-chains", "2", "--bdmc-points", "2", "--iwae-samples", "8",
              "--max-steps", "4"]  # fmt: skip
    bench.main([*common, "--ais-steps", "6", "--reuse-gaps", str(out), "--out", str(again)])
    (model2,) = json.loads(again.read_text())["models"]
    for subset in ("train_points", "test_points"):
        before, row = model[subset], model2[subset]
        for field in bench.GAP_FIELDS:
            assert row[field] == before[field]
        assert row["log_px_ais"] != before["log_px_ais"]
        assert row["log_px"][0] == max(row["log_px_ais"][0], row["log_px_iwae"][0])
        gap = row["approximation_gap"][0] + row["amortization_gap"][0]
        assert gap == pytest.approx(row["log_px"][0] - row["elbo"][0], abs=1e-9)
    with pytest.raises(ValueError, match=r"Expected --max-steps 4 as in --reuse-gaps"):
        bench.main([*common[:-1], "5", "--reuse-gaps", str(out), "--out", str(again)])


TABLE = BENCH.parent / "cremer2018.json"


@pytest.mark.skipif(
    not os.path.isdir(FASHION_MNIST_DIR),
    reason=f"no {FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist",
)
def test_the_committed_models_are_the_ones_the_committed_table_measured():
    """Each saved model loads, is the preset's network at the table's epoch, and gives the
    table's amortized ELBO again on the table's training points within the two runs' s.e.;
    its importance-sampling bound stays below the table's log p̂(x) (both are lower bounds,
    the table's the larger one)."""
    table = json.loads(TABLE.read_text())
    data = CREMER2018.load_data()
    assert {m["guide"] for m in table["models"]} == {"ffg", "flow"}
    for model in table["models"]:
        vae, saved = load_checkpoint(BENCH.parent.parent / model["checkpoint"])
        assert saved["history"][-1]["epoch"] == model["epochs"] >= 364
        expected = CREMER2018.build_model(model["guide"]).config
        assert vae.config == expected
        row = model["train_points"]
        x = data.train[: row["points"]]
        summary = evaluate(vae, x, num_samples=1000, seed=1).summary()
        (elbo, elbo_se), (table_elbo, table_se) = summary["elbo"], row["elbo"]
        assert abs(elbo - table_elbo) < 4 * math.hypot(elbo_se, table_se)
        log_px, log_px_se = summary["log_px"]
        assert log_px < row["log_px"][0] + 4 * math.hypot(log_px_se, row["log_px"][1])
        gap = row["approximation_gap"][0] + row["amortization_gap"][0]
        assert gap == pytest.approx(row["log_px"][0] - row["elbo"][0], abs=1e-9)
