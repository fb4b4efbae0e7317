import csv
import json
import math
import os

import pytest

from pyro_vae.experiments.report import (
    ESTIMATES,
    format_markdown_table,
    format_pairs,
    format_table,
    read_results,
    takeaways,
    write_results,
)
from pyro_vae.infer.evaluation import Summary
from pyro_vae.results import Estimate, ObjectiveRow

OBJECTIVES = ("Trace_ELBO", "TraceMeanField_ELBO", "RenyiELBO(alpha=0, K=5)")


def _rows():
    rows = []
    for i, objective in enumerate(OBJECTIVES):
        row = {
            "objective": objective,
            "loss": ("trace", "meanfield", "renyi")[i],
            "alpha": 0.0,
            "num_particles": 5 if i == 2 else 1,
            "epochs_run": 10,
            "best_epoch": 8 + i,
            "train_time_s": 12.3456 + i,
        }
        for j, name in enumerate(ESTIMATES):
            row[f"test_{name}"] = -23.0812 - i - 0.25 * j
            row[f"test_{name}_se"] = 0.0123 + 0.01 * j
        rows.append(row)
    return rows


def _histories():
    return {
        objective: [
            {"epoch": e, "train_loss": 30.5 - e, "val_elbo": -25.0 + e, "wall_time": e}
            for e in (1, 2)
        ]
        for objective in OBJECTIVES
    }


META = {
    "dataset": "digits",
    "num_test": 360,
    "num_samples": 5000,
    "epochs": 2,
    "z_dim": 2,
    "seed": 0,
    "wall_time_s": 12.5,
    "versions": {"torch": "2.4.0", "pyro-ppl": "1.9.1"},
}


def test_format_table_contents_and_numbers():
    rows = _rows()
    lines = format_table(rows, num_samples=5000).splitlines()
    assert len(lines) == 2 + len(rows) + 1
    assert lines[0].split()[:3] == ["objective", "wall", "(s)"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[-1] == (
        "nats per test data point; log p(x) by importance sampling with K=5000; "
        "± one Monte-Carlo s.e."
    )
    # Header, separator and rows align: numbers are right-aligned in fixed columns.
    assert len({len(line) for line in lines[:-1]}) == 1
    first = lines[2].split()
    assert first == [
        "Trace_ELBO",
        "12.3",
        "-23.08±0.012",  # elbo, se 0.0123
        "-23.33±0.022",  # iwae_5, se 0.0223
        "-23.58±0.032",  # iwae_50
        "-23.83±0.042",  # log_px
        "-24.08±0.052",  # gap
        "-24.33±0.062",  # kl
        "-24.58±0.072",  # reconstruction
    ]
    for objective, line in zip(OBJECTIVES, lines[2:5], strict=True):
        assert line.startswith(objective)
    assert "-25.08±0.012" in lines[4]  # elbo of the third objective


def test_format_table_right_aligns_numbers():
    rows = _rows()
    rows[2]["train_time_s"] = 123.456
    header, _, *body = format_table(rows).splitlines()
    end = header.index("wall (s)") + len("wall (s)")
    for line, cell in zip(body, ("12.3", "13.3", "123.5"), strict=True):
        assert line.index(cell) + len(cell) == end
        assert not line.endswith(" ")


def test_format_table_without_num_samples_has_no_note():
    lines = format_table(_rows()).splitlines()
    assert len(lines) == 2 + 3
    assert "nats" not in lines[-1]


def test_format_table_validates_rows():
    with pytest.raises(ValueError, match="rows"):
        format_table([])
    rows = _rows()
    del rows[2]["test_log_px"]
    with pytest.raises(ValueError, match=r"'test_log_px'.*RenyiELBO\(alpha=0, K=5\)"):
        format_table(rows)
    del rows[1]["test_gap_se"]  # a missing standard error prints no ±
    rows[2]["test_log_px"] = -1.0
    assert "  -25.08  " in format_table(rows).splitlines()[3]


def test_small_standard_errors_keep_two_significant_digits():
    """An s.e. below 0.0005 does not print as ±0.000; the CPU column appears with it."""
    rows = _rows()[:1]
    rows[0]["test_log_px_se"] = 0.00031
    rows[0]["test_gap_se"] = 0.000047
    rows[0]["train_cpu_s"] = 11.04
    header, _, line = format_table(rows).splitlines()
    assert header.split()[:5] == ["objective", "wall", "(s)", "CPU", "(s)"]
    cells = line.split()
    assert cells[1:3] == ["12.3", "11.0"]
    assert "-23.83±0.00031" in cells and "-24.08±0.000047" in cells


def test_format_markdown_table_lines():
    rows = _rows()
    lines = format_markdown_table(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[0] == (
        "| objective | wall (s) | ELBO | IWAE-5 | IWAE-50 | log p(x) | gap | KL(q‖p(z)) "
        "| reconstruction |"
    )
    assert lines[1] == "|:---|" + "---:|" * 8
    assert lines[2].startswith("| Trace_ELBO | 12.3 | -23.08±0.012 | -23.33±0.022 |")
    assert all(line.count("|") == 10 for line in lines)
    with_note = format_markdown_table(rows, num_samples=5000).splitlines()
    assert len(with_note) == 2 + len(rows) + 2
    assert with_note[-2] == "" and "K=5000" in with_note[-1]
    with pytest.raises(ValueError, match="rows"):
        format_markdown_table([])


def test_write_results_round_trips(tmp_path):
    rows, histories = _rows(), _histories()
    out_dir = tmp_path / "run" / "compare"
    paths = write_results(out_dir, rows, histories, META)
    assert set(paths) == {"results.csv", "results.json", "report.md"}
    assert sorted(os.listdir(out_dir)) == sorted(paths)  # no temporary file left
    assert all(os.path.isfile(p) for p in paths.values())

    with open(paths["results.json"], encoding="utf-8") as f:
        loaded = json.load(f)
    assert loaded == {
        "meta": {**META, "figures": []}, "results": rows, "pairs": [], "agreement": [],
        "beta": [], "gaps": [], "bdmc": None, "histories": histories
    }  # fmt: skip
    assert isinstance(loaded["results"][0]["test_elbo"], float)
    assert read_results(out_dir) == loaded

    with open(paths["results.csv"], newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert len(table) == 1 + len(rows)
    assert table[0] == list(rows[0])
    for line, row in zip(table[1:], rows, strict=True):
        assert line[0] == row["objective"]
        assert float(line[table[0].index("test_log_px")]) == row["test_log_px"]
        assert int(line[table[0].index("best_epoch")]) == row["best_epoch"]


def test_write_results_writes_strict_json(tmp_path):
    rows = _rows()
    rows[0]["test_gap_se"] = math.nan
    write_results(tmp_path, rows, {}, {"num_samples": 5000})

    def reject(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    with open(tmp_path / "results.json", encoding="utf-8") as f:
        loaded = json.load(f, parse_constant=reject)
    assert loaded["results"][0]["test_gap_se"] is None


def test_report_explains_and_links_this_runs_figures(tmp_path):
    rows = _rows()
    write_results(tmp_path, rows, _histories(), META)
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert report.startswith("# ")
    assert "`digits`" in report and "360 test points" in report
    assert format_markdown_table(rows, num_samples=5000) in report
    assert "## How to read this" in report and "## Takeaways" in report
    assert "Burda et al. 2016" in report
    assert "KL(q(z|x) ‖ p(z|x))" in report
    assert "the KL to the *prior* inside the ELBO" in report  # KL column is not the gap
    assert "![" not in report and "## Figures" not in report  # no figure given

    for name in ("bounds.png", "samples_A.png", "other.png"):
        (tmp_path / name).write_bytes(b"")
    figures = [("bounds.png", "Bounds"), ("samples_A.png", "Samples: A")]
    write_results(tmp_path, rows, _histories(), META, figures=figures)
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "![Bounds](bounds.png)" in report and "![Samples: A](samples_A.png)" in report
    assert "other.png" not in report  # present, but not this run's
    assert read_results(tmp_path)["meta"]["figures"] == ["bounds.png", "samples_A.png"]

    # the next run into the folder removes the figures of the last run it did not
    # rewrite, and nothing else
    write_results(tmp_path, rows, _histories(), META, figures=[("bounds.png", "Bounds")])
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["bounds.png", "other.png", "report.md", "results.csv", "results.json"]
    )
    assert "samples_A.png" not in (tmp_path / "report.md").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="figure file names without a folder"):
        write_results(tmp_path, rows, {}, META, figures=[("../x.png", "X")])


def test_takeaways_are_computed_from_the_numbers():
    from pyro_vae.experiments.report import takeaways

    rows = _rows()
    # log p(x): RenyiELBO highest; ELBO: Trace highest, RenyiELBO lowest; gap: Renyi
    for row, log_px, elbo in zip(rows, (-23.5, -23.4, -23.1), (-23.7, -23.8, -24.0),
                                 strict=True):  # fmt: skip
        row["test_log_px"], row["test_elbo"], row["test_gap"] = log_px, elbo, log_px - elbo
    pairs = [
        {"a": OBJECTIVES[2], "b": OBJECTIVES[1], "log_px_diff": 0.3, "log_px_diff_se": 0.05,
         "gap_diff": 0.5, "gap_diff_se": 0.4},
    ]  # fmt: skip
    lines = takeaways(rows, pairs)
    assert lines[0] == (
        "**Highest log p(x)**: RenyiELBO(alpha=0, K=5), -23.10 nats per point, 0.300 ± 0.050 "
        "nats per point above the next, TraceMeanField_ELBO (paired difference; more than "
        "two standard errors: resolved on these test points)."
    )
    assert lines[1].startswith("**Lowest ELBO**: RenyiELBO(alpha=0, K=5), -24.00; highest ELBO: "
                               "Trace_ELBO, -23.70.")  # fmt: skip
    assert lines[2].startswith(
        "**Largest gap** log p(x) − ELBO = KL(q(z|x) ‖ p(z|x)): "
        "RenyiELBO(alpha=0, K=5), 0.900 nats per point, 0.500 ± 0.40"
    )
    assert "not resolved" in lines[2] and "smallest: Trace_ELBO, 0.200" in lines[2]
    assert len(lines) == 3
    rows[1].update(converged=False, best_epoch=[798], epochs_run=[800], still_rising=[0.08])
    rows[0]["khat_unreliable"] = 4
    lines = takeaways(rows, pairs, {"image_shape": None})
    assert lines[3] == (
        "**Not converged** (these runs; best epoch in the last tenth of training or the "
        "validation bound still rising): TraceMeanField_ELBO (best epoch 798 of 800; rising "
        "+0.080 nats over the last tenth). More epochs (`--epochs`) would change the numbers; "
        "compare with care."
    )
    assert lines[4].startswith("**Unreliable points** (Pareto k̂ > 0.7, where log p(x) and ")
    assert lines[4].endswith("test points per objective: Trace_ELBO 4.")
    assert lines[5].startswith("No image figures")
    lines = takeaways(rows, pairs, {"num_test": 359})
    assert lines[4].endswith("test points per objective (of 359): Trace_ELBO 4.")
    assert len(lines) == 5


def test_unreliable_error_bars_are_marked_where_the_user_reads_them(tmp_path):
    # An estimate whose s.e. is not reliable at some test points (the draws' Pareto
    # k̂ ≥ 0.5) carries "!" in the tables, a note with the remedy, and a finding.
    rows = _rows()
    rows[0]["test_log_px_se_unreliable"] = 12
    rows[0]["test_gap_se_unreliable"] = 12
    rows[1]["test_log_px_se_unreliable"] = 0
    table = format_table(rows, num_samples=5000)
    cells = table.splitlines()[2].split()
    assert cells[5] == "-23.83±0.042!" and cells[6].endswith("!") and cells[2] == "-23.08±0.012"
    assert "!" not in table.splitlines()[3]  # 0 points: reliable
    assert "! marks a s.e. (or s.d.) not reliable" in table.splitlines()[-1]
    assert "AIS (`pyro-vae ais`)" in table.splitlines()[-1]
    assert "-23.83±0.042! |" in format_markdown_table(rows, num_samples=5000)
    assert "! marks" not in format_table(_rows(), num_samples=5000)
    lines = takeaways(rows, meta={"num_test": 359})
    assert lines[-1] == (
        "**Error bars not reliable** (!; the draws have Pareto k̂ ≥ 0.5, an infinite "
        "variance, at some test points (of 359), so the s.e. understates the error): "
        "Trace_ELBO: log p(x) at 12, gap at 12 points. More samples shrink the error "
        "slowly; `pyro-vae ais` estimates log p(x) with a reliable error."
    )
    # The counts survive results.json and are not "extra" columns.
    write_results(tmp_path, rows, _histories(), META)
    back = read_results(tmp_path)["results"]
    assert back[0]["test_log_px_se_unreliable"] == 12 and back[1]["test_log_px_se_unreliable"] == 0
    row = ObjectiveRow.from_dict(rows[0])
    assert row.test["log_px"].se_unreliable == 12 and row.extra == {}
    assert row.to_dict()["test_log_px_se_unreliable"] == 12


def test_estimate_over_seeds_keeps_the_most_flagged_points():
    summaries = [
        Summary({"log_px": (-1.0, 0.1), "elbo": (-2.0, 0.1)}, se_unreliable={"log_px": 3}),
        Summary({"log_px": (-1.2, 0.1), "elbo": (-2.2, 0.1)}, se_unreliable={"log_px": 5}),
    ]
    assert Estimate.over_seeds(summaries, "log_px").se_unreliable == 5
    assert Estimate.over_seeds(summaries, "elbo").se_unreliable is None  # not checked
    plain = [{"log_px": (-1.0, 0.1)}, {"log_px": (-1.2, 0.1)}]
    estimate = Estimate.over_seeds(plain, "log_px")  # a plain dict: not checked
    assert estimate.se_unreliable is None
    assert (estimate.mean, estimate.se, estimate.sd) == pytest.approx(
        (-1.1, 0.1 / 2**0.5, 0.2 / 2**0.5)
    )


def test_write_results_rejects_empty_rows(tmp_path):
    with pytest.raises(ValueError, match="rows"):
        write_results(tmp_path / "out", [], {}, META)
    assert not (tmp_path / "out" / "results.json").exists()


def test_write_results_writes_nothing_for_a_bad_row(tmp_path):
    rows = _rows()
    del rows[0]["test_kl"]
    with pytest.raises(ValueError, match="'test_kl'"):
        write_results(tmp_path, rows, {}, META)
    assert os.listdir(tmp_path) == []


def test_read_results_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json"):
        read_results(tmp_path)


def test_spread_across_seeds_and_paired_differences(tmp_path):
    rows = _rows()
    for row, sd in zip(rows, (0.05, 0.07), strict=False):
        for name in ("elbo", "iwae_5", "iwae_50", "log_px"):
            row[f"test_{name}_sd"] = sd
        row["seeds"] = [0, 1, 2]
        row["khat_unreliable"] = 3
    rows = rows[:2]
    table = format_table(rows, num_samples=5000)
    assert "±0.050" in table and "±0.070" in table  # the s.d. across seeds, not the s.e.
    assert table.splitlines()[-1].endswith("± one s.d. across 3 training seeds")
    assert "k̂>0.7" in table.splitlines()[0]
    pairs = [{"a": "A", "b": "B", "log_px_diff": -0.25, "log_px_diff_se": 0.012,
              "log_px_diff_sd": 0.03, "elbo_diff": 0.3, "elbo_diff_se": 0.01,
              "elbo_diff_sd": float("nan")}]  # fmt: skip
    text = format_pairs(pairs)
    assert text == (
        "A − B: Δ log p(x) -0.250 ± 0.012 (s.d. 0.030 across seeds); Δ ELBO +0.300 ± 0.010"
    )
    write_results(tmp_path, rows, {}, META, pairs)
    report = (tmp_path / "report.md").read_text()
    assert "## Paired differences on the same test points" in report
    assert "- A − B: Δ log p(x) -0.250 ± 0.012" in report
    assert read_results(tmp_path)["pairs"][0]["elbo_diff_sd"] is None  # strict JSON


def test_guide_vs_posterior_section():
    from pyro_vae.experiments.report import format_agreement

    agreement = [
        {"objective": "Trace_ELBO", "num_points": 16, "mean_error": 0.1234, "sd_ratio": 0.91,
         "w2": 0.05, "khat": 0.31, "rhat_max": 1.004, "ess_bulk_min": 812.0, "divergences": 0},
        {"objective": "IWAE", "num_points": 16, "mean_error": 0.2, "sd_ratio": 0.8,
         "w2": 0.1, "khat": 0.52, "rhat_max": 1.006, "ess_bulk_min": 700.0, "divergences": 2},
    ]  # fmt: skip
    lines = format_agreement(agreement).splitlines()
    assert len(lines) == 4
    assert "KL(q‖p(z|x)) exact" not in lines[0]  # no quadrature for these latents
    assert lines[2] == "| Trace_ELBO | 0.123 | 0.910 | 0.050 | 0.31 | 1.004 | 812 | 0 |"
    agreement[0]["kl_exact"] = 0.25
    assert "0.250" in format_agreement(agreement).splitlines()[2]


def test_a_pipe_inside_a_cell_does_not_split_the_markdown_table():
    """Headers such as E_q log p(x|z) keep their column: the | is escaped."""
    from pyro_vae.experiments.report import format_decompositions
    from pyro_vae.results import DECOMPOSITIONS

    row = {"objective": "A", "decomp_log_px_method": "exact"}
    for key in DECOMPOSITIONS:
        row[f"decomp_{key}"], row[f"decomp_{key}_se"] = -23.0, 0.01
    header, align, line = format_decompositions([row]).splitlines()
    columns = len(DECOMPOSITIONS) + 2
    for text in (header, align, line):
        assert text.replace(r"\|", "").count("|") == columns + 1
    assert r"E_q log p(x\|z)" in header


def test_the_report_says_how_the_runs_shared_the_cores(tmp_path):
    """Threads, worker processes and the load they should be read against."""
    machine = {"torch_threads": 1, "cpu_count": 2, "load_average": [0.4, 2.1]}
    cases = [
        (1, "Torch threads: 1 on 2 CPUs", "the torch threads"),
        (2, "Torch threads: 1 in each of 2 worker processes, the runs side by side on 2 CPUs",
         "workers × threads"),
    ]  # fmt: skip
    for workers, expected, busy in cases:
        write_results(tmp_path, _rows(), {}, {**META, **machine, "workers": workers})
        report = " ".join((tmp_path / "report.md").read_text(encoding="utf-8").split())
        assert expected in report
        assert f"0.4 at the start, 2.1 at the end (a load above {busy} means" in report


def test_the_sandwich_section_reads_the_numbers(tmp_path):
    """The AIS column and the BDMC line are computed from the rows (flat dicts here, as
    read back from results.json), and the sandwich is saved under "bdmc"."""
    gaps = [{"objective": "Trace_ELBO", "num_points": 16, "log_px_source": "is:amortized",
             "log_px": -23.61, "log_px_se": 0.004, "log_px_ais": -23.59,
             "log_px_ais_se": 0.003}]  # fmt: skip
    sandwich = {"objective": "Trace_ELBO", "num_points": 100, "num_bridges": 100,
                "num_chains": 16, "num_samples": 5000, "seconds": 10.0, "is_seconds": 1.6,
                "forward": -23.02, "forward_se": 0.02, "reverse": -22.97, "reverse_se": 0.02,
                "width": 0.05, "width_se": 0.03, "log_px_is": -23.03, "log_px_is_se": 0.002,
                "forward_minus_is": 0.01, "forward_minus_is_se": 0.005}  # fmt: skip
    write_results(tmp_path, _rows(), _histories(), {**META, "ais_bridges": 100},
                  gap_rows=gaps, sandwich=sandwich)  # fmt: skip
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| -23.61 ± 0.0040 | -23.59 ± 0.0030 |" in report
    assert "the gap split's log p(x) (is:amortized) minus AIS: -0.02 ± 0.0050 nats." in report
    assert ("BDMC on data simulated from the Trace_ELBO model (100 points, 100 bridges, 16 "
            "chains): forward -23.02, reverse -22.97, width 0.05 ± 0.030 nats; IS-5000 with "
            "the guide is -0.01 ± 0.0050 nats below forward AIS (BDMC 10 s, 6.2× the "
            "importance sampling).") in report  # fmt: skip
    assert "Budget here: 100 bridges" in report
    assert read_results(tmp_path)["bdmc"] == sandwich
    with pytest.raises(ValueError, match="Expected key 'width' in the row of BDMC row 0"):
        write_results(tmp_path, _rows(), _histories(), META,
                      sandwich={k: v for k, v in sandwich.items() if k != "width"})  # fmt: skip


def test_the_report_names_the_binarization_of_every_number(tmp_path):
    """static, dynamic, threshold and none each get their sentence: a number on thresholded
    images is not comparable with one on stochastically binarized images."""
    cases = {
        "dynamic": "training images redrawn every epoch (dynamic), validation and test images "
        "drawn once (static)",
        "static": "training images drawn once (static), validation and test images drawn once",
        "threshold": "every image of every split set to 1[intensity > 0.5] (threshold",
        "none": "Binarization: none; the data are used as given.",
    }
    for binarize, expected in cases.items():
        write_results(tmp_path, _rows(), {}, {**META, "binarize": binarize})
        report = " ".join((tmp_path / "report.md").read_text(encoding="utf-8").split())
        assert expected in report, binarize
        assert report.count("Binarization:") == 1, binarize
