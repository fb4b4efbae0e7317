"""compare(): worker processes give the numbers of one process; errors and warnings of
a run reach the caller."""

import json
import math
import multiprocessing
import os
import re
import time
import warnings

import pandas as pd
import pytest
import torch

from pyro_vae.data import load_digits
from pyro_vae.experiments.compare import compare
from pyro_vae.experiments.workers import available_cores
from pyro_vae.results import GapRow, SandwichRow

TINY = {
    "objectives": ("trace", "renyi:-0.5:2"),  # the second warns in every run
    "epochs": 2,
    "z_dim": 3,  # above 2: log p(x) of the decompositions by importance sampling
    "hidden_dims": (8,),
    "num_samples": 100,
    "posterior_points": 1,
    "gap_max_steps": 200,  # the per-point guide fits of the gap split: a token budget
    "ais_bridges": 10,  # AIS on the checked point and the BDMC sandwich: token budgets
    "bdmc_points": 5,
    "progress": False,
    "gap_every": 1,
    "beta_schedules": ("0",),
}

QUIET = {**TINY, "objectives": ("trace", "iwae:2")}  # training seeds: from the `seed` fixture
CLOCKS = ("workers", "load_average", "wall_time_s", "cpu_time_s", "run_times")


@pytest.fixture(scope="module")
def digits():
    return load_digits(binarize="dynamic")


def _same(a, b, path="result"):
    """Assert a == b: tensors and tables exactly, floats bit for bit (NaN == NaN)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=path)
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for key in a:
            _same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), path
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _numbers(result):
    """Everything compare computed, less the clock readings."""
    timing = ("train_time_s", "train_cpu_s")
    rows = [{k: v for k, v in row.to_dict().items() if k not in timing} for row in result.rows]
    beta_rows = [
        {k: v for k, v in r.to_dict().items() if k not in timing} for r in result.beta_rows
    ]
    histories = {
        label: [{k: v for k, v in record.items() if k != "wall_time"} for record in history]
        for label, history in result.histories.items()
    }
    return {
        "rows": rows,
        "beta_rows": beta_rows,
        "pairs": [pair.to_dict() for pair in result.pairs],
        "agreement": [row.to_dict() for row in result.agreement],
        "gaps": [row.to_dict() for row in result.gap_rows],
        "sandwich": {
            k: v for k, v in result.sandwich.to_dict().items() if k not in ("seconds", "is_seconds")
        },
        "histories": histories,
        "aggregate": result.aggregate,
        "evaluations": {
            label: [(ev.values, ev.std_errors) for ev in evs]
            for label, evs in result.evaluations.items()
        },
        "models": {label: vae.state_dict() for label, vae in result.models.items()},
        "beta_models": {label: vae.state_dict() for label, vae in result.beta_models.items()},
        "checks": {label: check.table for label, check in result.checks.items()},
        "settings": {k: v for k, v in result.meta.items() if k not in CLOCKS},
    }


def _run(digits, workers, seeds):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compare(digits, workers=workers, seeds=seeds, **TINY)
    shown = sorted((w.category.__name__, str(w.message), w.filename, w.lineno) for w in caught)
    return result, shown, torch.rand(4)  # the global RNG as the runs left it


@pytest.mark.slow  # 25-110 s on 2 cores: CI runs it; the default suite stays under 10 min
def test_workers_give_the_numbers_of_one_process(digits, seed):
    """Every number, table, module and history of a run in worker processes is the one
    of the run in this process, bit for bit; so are the warnings shown and the global
    RNG left behind (the CLI draws reconstructions and samples from it)."""
    one, shown_one, rng_one = _run(digits, 1, (seed(0), seed(1)))
    two, shown_two, rng_two = _run(digits, 2, (seed(0), seed(1)))
    assert one.meta["workers"] == 1 and two.meta["workers"] == 2
    _same(_numbers(one), _numbers(two))
    assert torch.equal(rng_one, rng_two)
    assert any("no lower bound" in message for _, message, _, _ in shown_two)
    assert shown_one == shown_two
    for label, check in two.checks.items():
        assert check.vae is two.models[label]  # the module of the results, not a copy
    # five runs, two at a time, in both worker processes; the times of each
    runs = two.meta["run_times"]
    assert [(r["label"], r["seed"]) for r in runs] == [
        ("Trace_ELBO", seed(0)), ("RenyiELBO(alpha=-0.5, K=2)", seed(0)),
        ("Trace_ELBO", seed(1)), ("RenyiELBO(alpha=-0.5, K=2)", seed(1)), ("β=0", seed(0))
    ]  # fmt: skip
    assert len({r["process"] for r in runs}) == 2
    assert {r["process"] for r in one.meta["run_times"]} == {one.meta["run_times"][0]["process"]}
    for r in runs:
        assert 0 <= r["started"] < r["finished"] and r["fit_s"] > 0 and r["cpu_s"] > 0
    assert ("check_s" in runs[0]) and ("check_s" not in runs[2])


@pytest.mark.slow  # 25-110 s on 2 cores: CI runs it; the default suite stays under 10 min
def test_the_decompositions_take_log_px_from_the_test_evaluation(digits, seed, tmp_path):
    """log p(x) by importance sampling is computed once per model: the third way to the
    ELBO reads it, and the gap, from the test evaluation. The result writes the whole
    report from Python: figures, result files and report.md."""
    result = compare(digits, workers=1, **{**QUIET, "seeds": (seed(0),), "beta_schedules": ()})
    paths = result.write_report(tmp_path)
    names = set(os.listdir(tmp_path))
    assert set(paths) == names
    assert {"report.md", "results.csv", "results.json", "bounds.png", "reconstructions.png",
            "posterior_Trace_ELBO.png", "samples_RenyiELBO_alpha_0_K_2.png"} <= names  # fmt: skip
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [r["objective"] for r in saved["results"]] == [row.objective for row in result.rows]
    assert saved["meta"]["figures"] == [n for n in paths if n.endswith(".png")]
    report = (tmp_path / "report.md").read_text()
    assert "## Guide vs exact posterior" in report
    assert "Trace_ELBO" in result.summary()
    # where the gap comes from: one row per objective, the split adds up, it is saved,
    # tabled, drawn and read back
    assert "## Where the gap comes from" in report and "gap_split.png" in names
    assert [g.objective for g in result.gap_rows] == [row.objective for row in result.rows]
    for gaps in result.gap_rows:
        e = gaps.estimates
        assert gaps.family == "diagonal" and gaps.num_points == 1
        assert {"elbo_local_diagonal", "elbo_local_flow"} <= set(e)
        assert e["inference_gap"].mean == pytest.approx(
            e["approximation_gap"].mean + e["amortization_gap"].mean, abs=1e-4
        )
        assert e["elbo"].mean == pytest.approx(e["log_px"].mean - e["inference_gap"].mean, abs=1e-4)
    assert [GapRow.from_dict(g) for g in saved["gaps"]] == result.gap_rows
    # AIS beside importance sampling on the checked point, and the BDMC sandwich on data
    # simulated from the first objective's model: computed, saved, reported
    assert all("log_px_ais" in g.estimates for g in result.gap_rows)
    assert "| log p(x) (AIS) |" in report and "## A certified log p(x)" in report
    sandwich = result.sandwich
    assert (sandwich.objective, sandwich.num_points, sandwich.num_bridges) == ("Trace_ELBO", 5, 10)
    e = sandwich.estimates
    assert e["width"].mean == pytest.approx(e["reverse"].mean - e["forward"].mean, abs=1e-4)
    assert e["forward_minus_is"].mean == pytest.approx(
        e["forward"].mean - e["log_px_is"].mean, abs=1e-4
    )
    assert SandwichRow.from_dict(saved["bdmc"]) == sandwich
    assert "BDMC on data simulated from the Trace_ELBO model (5 points, 10 bridges" in report
    assert "AIS and the BDMC sandwich:" in result.summary()
    for row in result.rows:
        assert row.decomp_log_px_method == "importance_sampling"
        for decomp, test in (("log_px", "log_px"), ("gap", "gap"),
                             ("evidence_minus_gap", "elbo")):  # fmt: skip
            assert row.decomp[decomp].se == row.test[test].se
            assert row.decomp[decomp].mean == pytest.approx(row.test[test].mean, abs=1e-5)
        assert row.decomp["log_px"].mean == row.test["log_px"].mean


def test_a_failing_run_stops_the_others_and_raises_naming_it(digits, seed):
    """β = 1e40 overflows the loss at the first step; the error is raised here, with the
    run named and the worker's traceback attached, and the run beside it (long) is
    stopped rather than waited for."""
    start = time.perf_counter()
    with pytest.raises(FloatingPointError, match="Non-finite loss") as info:
        compare(digits, objectives=("trace",), epochs=100_000, z_dim=2, hidden_dims=(8,),
                num_samples=100, posterior_points=0, progress=False, gap_every=None,
                beta_schedules=("1e40",), workers=2, seeds=(seed(0),))  # fmt: skip
    assert time.perf_counter() - start < 120  # the Trace_ELBO run alone would take hours
    assert info.value.__notes__ == ["Raised in a worker process of compare, in the β=1e+40 run "
                                    f"(seed {seed(0)})."]  # fmt: skip
    assert "train_epoch" in str(info.value.__cause__)  # the worker's traceback
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2", None])
def test_workers_must_be_a_positive_integer(digits, workers):
    with pytest.raises(ValueError, match="Expected workers to be an integer > 0"):
        compare(digits, workers=workers, **QUIET)


def test_available_cores():
    assert 1 <= available_cores() <= (__import__("os").cpu_count() or 1)


def test_float64_runs_stay_float64_and_are_recorded(digits, seed):
    settings = {**QUIET, "seeds": (seed(0),), "beta_schedules": (), "posterior_points": 0}
    result = compare(digits, **settings, device="cpu", dtype="float64")
    assert result.meta["device"] == "cpu" and result.meta["dtype"] == "float64"
    for vae in result.models.values():
        assert next(vae.parameters()).dtype == torch.float64
    with pytest.raises(ValueError, match="dtype to be torch.float32 or torch.float64"):
        compare(digits, **settings, dtype=torch.float16)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"gap_families": ("gaussian",)}, "Expected family in ('diagonal', 'flow')"),
        ({"gap_max_steps": 0}, "Expected gap_max_steps to be an integer > 0"),
        ({"ais_bridges": -1}, "Expected ais_bridges to be an integer >= 0"),
        ({"bdmc_points": 1.5}, "Expected bdmc_points to be an integer >= 0"),
    ],
)
def test_bad_gap_settings_are_refused_before_any_work(digits, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        compare(digits, **{**QUIET, **kwargs})


@pytest.mark.slow  # 25-110 s on 2 cores: CI runs it; the default suite stays under 10 min
def test_without_gap_families_the_ais_column_sits_beside_the_test_evaluation(digits, seed):
    """With no per-point families the gap table still holds log p(x) by importance
    sampling (the test evaluation's, on the checked points) beside AIS; ``ais_bridges=0``
    skips AIS and the sandwich."""
    settings = {**QUIET, "seeds": (seed(0),), "beta_schedules": (), "gap_families": (),
                "posterior_points": 2}  # fmt: skip
    result = compare(digits, **settings)
    for row, gaps in zip(result.rows, result.gap_rows, strict=True):
        assert gaps.objective == row.objective and gaps.num_points == 2
        assert set(gaps.estimates) == {"log_px", "log_px_ais"}
        test = result.evaluations[row.objective][0].values["log_px"][:2]
        assert gaps.estimates["log_px"].mean == pytest.approx(test.mean().item())
    skipped = compare(digits, **{**settings, "ais_bridges": 0})
    assert skipped.gap_rows == [] and skipped.sandwich is None
