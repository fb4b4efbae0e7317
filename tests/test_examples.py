import argparse
import math
import pathlib

import pytest
from _scripts import load_script

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name):
    return load_script(EXAMPLES / f"{name}.py")


def test_linear_gaussian_gap_matches_closed_form(capsys, seed):
    rows = load("plot_linear_gaussian_gap").main(
        argparse.Namespace(epochs=10, num_samples=2000, seed=seed(0))
    )
    assert len(rows) >= 3
    for epoch, exact_gap, gap, se in rows:
        # estimated log p(x) − ELBO against the exact KL(q ‖ p(z|x)): 4 Monte-Carlo s.e.
        # plus the O(1/ESS) downward bias of the log p(x) estimate (< 0.02 nats here)
        assert gap == pytest.approx(exact_gap, abs=4 * se + 0.02), epoch
    assert rows[-1][1] < rows[0][1]  # training the guide shrinks the gap
    assert "exact KL" in capsys.readouterr().out


def test_pyro_svi_example_runs(capsys, seed):
    summary = load("plot_pyro_svi").main(
        argparse.Namespace(epochs=2, z_dim=2, num_samples=100, seed=seed(0))
    )
    log_px, log_px_se = summary["log_px"]
    assert -64 * 0.7 < log_px < 0 and log_px_se < 0.5  # nats per 64-pixel binary image
    out = capsys.readouterr().out
    assert "Predictive z shape: (10, 5, 2)" in out


# The gallery's examples (docs/gallery_argv.py runs them with larger budgets while the
# site builds): each main runs with a token budget and returns what it printed and drew.


@pytest.fixture
def figures():
    import matplotlib.pyplot as plt

    plt.close("all")
    yield plt
    plt.close("all")


def test_bdmc_sandwich_example_brackets_the_is_estimate(figures, seed):
    out = load("plot_bdmc_sandwich").main(
        argparse.Namespace(
            epochs=2, z_dim=2, points=3, steps=[2, 5], num_samples=100, seed=seed(0)
        )  # fmt: skip
    )
    assert [row[0] for row in out["rows"]] == [2, 5]
    for _, forward, reverse, width in out["rows"]:
        assert width[0] == pytest.approx(reverse[0] - forward[0], abs=1e-4)
    assert figures.get_fignums()


def test_hmc_vs_guide_example_tables_every_point(figures, seed):
    # 50 draws: ArviZ caps the bulk ESS below 400, so the convergence warning is certain
    with pytest.warns(UserWarning, match="bulk ESS >= 400"):
        table = load("plot_hmc_vs_guide").main(
            argparse.Namespace(epochs=2, points=2, draws=50, seed=seed(0))
        )
    assert len(table) == 2 and (table["kl_exact"] >= 0).all()
    assert len(figures.get_fignums()) >= 2


def test_gap_split_example_adds_up(figures, seed):
    gaps = load("plot_gap_split").main(
        argparse.Namespace(
            epochs=2, z_dim=3, points=2, num_samples=100, max_steps=20, seed=seed(0)
        )  # fmt: skip
    )
    s = gaps.summary()
    assert s["inference_gap"][0] == pytest.approx(
        s["approximation_gap"][0] + s["amortization_gap"][0], abs=1e-4
    )
    assert figures.get_fignums()


def test_compare_bounds_example_trains_three_objectives(figures, seed):
    result = load("plot_compare_bounds").main(
        argparse.Namespace(epochs=1, num_samples=100, seed=seed(0))
    )
    assert [row.objective for row in result.rows] == [
        "Trace_ELBO", "RenyiELBO(alpha=0, K=5)", "RenyiELBO(alpha=0.5, K=5)"
    ]  # fmt: skip
    assert figures.get_fignums()


def test_beta_collapse_example_runs_every_schedule(figures, seed):
    result = load("plot_beta_collapse").main(
        argparse.Namespace(epochs=2, z_dim=4, num_samples=100, seed=seed(0))
    )
    assert [row.schedule for row in result.beta_rows][:3] == ["β=0", "β=1", "β=4"]
    assert len(figures.get_fignums()) == 2


def test_fashion_mnist_example_runs_or_says_why_not(figures, capsys, seed):
    summary = load("plot_fashion_mnist").main(
        argparse.Namespace(epochs=1, train=300, points=10, num_samples=100, seed=seed(0))
    )
    if summary is None:
        assert "Skipped: Fashion-MNIST is not installed" in capsys.readouterr().out
    else:
        assert -784 * math.log(2) < summary["log_px"][0] < 0
        assert len(figures.get_fignums()) == 2


def test_gradient_snr_example_draws_both_groups(figures, seed):
    curves = load("plot_gradient_snr").main(
        argparse.Namespace(epochs=1, points=3, draws=3, ks=[1, 3], seed=seed(0))
    )
    assert [row[0] for row in curves["iwae"]] == [1, 3]
    assert [row[0] for row in curves["dreg"]] == [3]  # dreg:1 is refused: it is STL
    assert all(row[1][0] > 0 and row[2][0] > 0 for row in curves["iwae"])
    assert figures.get_fignums()
