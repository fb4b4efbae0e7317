"""A small-budget run of ``benchmarks/bench_gradient_snr.py``, so the script cannot rot."""

import json
import math
import pathlib

from _scripts import load_script

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "bench_gradient_snr.py"


def _bench():
    return load_script(BENCH)


def test_the_loglog_slope_of_a_power_law_is_its_exponent():
    slope, se = _bench().loglog_slope([1, 10, 100], [2.0, 2.0 * 10**-0.5, 0.2])
    assert math.isclose(slope, -0.5) and se < 1e-12


def test_a_small_run_writes_the_table_the_slopes_and_the_figure(tmp_path):
    out, figure = tmp_path / "snr.json", tmp_path / "snr.png"
    _bench().main(["--epochs", "1", "--points", "3", "--draws", "3", "--ks", "1", "3",
                   "--families", "iwae", "dreg", "nosuch", "--out", str(out),
                   "--figure", str(figure)])  # fmt: skip
    table = json.loads(out.read_text())
    iwae = [row for row in table["rows"] if row["family"] == "iwae"]
    assert [row["K"] for row in iwae] == [1, 3]
    assert all(row["encoder"][0] > 0 and row["decoder"][0] > 0 for row in iwae)
    assert set(table["slopes"]["iwae"]) == {"encoder", "decoder"}
    assert "nosuch:1" in table["skipped"] and "dreg:1" in table["skipped"]  # K = 1 is STL
    specs = {row["objective"] for row in table["rows"]} | set(table["skipped"])
    assert {"iwae:3", "dreg:3", "stl"} <= specs  # each run or skipped, with a reason
    assert figure.stat().st_size > 0
