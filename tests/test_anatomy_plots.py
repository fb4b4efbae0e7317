import math

import numpy as np
import pytest
import torch
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch

from pyro_vae.viz.anatomy import plot_active_units, plot_aggregate_posterior
from pyro_vae.viz.beta import plot_beta_schedules
from pyro_vae.viz.images import save_figure
from pyro_vae.viz.training import plot_gap_during_training

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LONG = "RenyiELBO(alpha=0.5, K=5)"


def _draws(num_dims, scales=None, num=2000, *, seed):
    rng = np.random.default_rng(seed)
    scales = np.ones(num_dims) if scales is None else np.asarray(scales)
    return rng.normal(size=(num, num_dims)) * scales


def _lines(ax):
    return {line.get_label(): line for line in ax.lines}


def _normal_pdf(x):
    return np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)


# plot_aggregate_posterior


def test_aggregate_posterior_2d_is_a_normalized_density_with_the_prior_circles(seed):
    z = _draws(2, scales=(0.5, 1.5), seed=seed(0))
    fig = plot_aggregate_posterior(torch.tensor(z))
    assert fig.get_suptitle() == "aggregate posterior q(z) vs prior p(z)"
    (column,) = fig.subfigs
    assert "2000 draws" in column.get_suptitle()
    ax = column.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z[0]", "z[1]")
    assert ax.get_aspect() == 1.0
    left, right, bottom, top = ax.images[0].get_extent()
    assert left == bottom == -right == -top and right > 3.5  # the 3 s.d. circle fits
    density = ax.images[0].get_array()
    expected, _, _ = np.histogram2d(
        z[:, 0], z[:, 1], bins=40, range=[[left, right], [bottom, top]], density=True
    )
    np.testing.assert_allclose(density, expected.T)  # rows along z[1]
    cell = ((right - left) / 40) ** 2
    assert abs(density.sum() * cell - 1) < 1e-9  # normalized
    assert density[:, :15].sum() < density[:, 15:25].sum()  # narrow along z[0]
    lines = _lines(ax)
    for radius in (1, 2, 3):
        circle = lines[f"prior {radius} s.d."]
        np.testing.assert_allclose(np.hypot(circle.get_xdata(), circle.get_ydata()), radius)
    assert len(column.axes) == 2  # the panel and its colour bar, no marginals
    assert column.axes[1].get_ylabel() == "density of q(z) (per unit area)"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        f"prior N(0, I) {r} s.d." for r in (1, 2, 3)
    ]


def test_aggregate_posterior_many_dims_marginals_and_largest_variance_projection(seed):
    scales = [1.0, 2.0, 0.3, 3.0, 0.5]
    z = _draws(5, scales=scales, seed=seed(0))
    column = plot_aggregate_posterior(z).subfigs[0]
    projection = column.axes[0]
    assert (projection.get_xlabel(), projection.get_ylabel()) == ("z[3]", "z[1]")
    assert "z[3], z[1]" in projection.get_title() and "largest variance" in projection.get_title()
    marginals = column.axes[1:6]
    assert [ax.get_title() for ax in marginals] == [f"z[{d}]" for d in range(5)]
    for d, ax in enumerate(marginals):
        (histogram,) = ax.patches
        assert isinstance(histogram, StepPatch)
        heights, edges, _ = histogram.get_data()
        expected, _ = np.histogram(z[:, d], bins=edges, density=True)
        np.testing.assert_allclose(heights, expected)
        assert edges[0] == -edges[-1] and len(edges) == 41
        prior = ax.lines[0]
        np.testing.assert_allclose(prior.get_ydata(), _normal_pdf(prior.get_xdata()))
    # The common range covers the widest dimension (s.d. 3) to its 99.8 % quantile, with
    # 5 % to spare: the rule applied to these draws. (The quantile of 2000 draws has an
    # sd of about 0.45 around 3 × 3.09 = 9.27, so a fixed bound such as 9 failed on some
    # streams.)
    expected = 1.05 * max(3.5, np.quantile(np.abs(z), 0.998, axis=0).max())
    assert edges[-1] == pytest.approx(expected) and expected > 3 * 3.0 * 0.8
    assert len(column.axes) == 1 + 5 + 1 and column.axes[-1].get_label() == "<colorbar>"
    texts = [t.get_text() for t in column.get_figure(root=True).legends[0].get_texts()]
    assert "histogram of z_d (density)" in texts and "prior N(0, 1) density" in texts


def test_aggregate_posterior_one_column_per_label(seed):
    z = {"Trace_ELBO": _draws(2, seed=seed(0)), LONG: _draws(4, num=500, seed=seed(1))}
    fig = plot_aggregate_posterior(z, dims=(1, 0))
    assert len(fig.subfigs) == 2
    assert fig.subfigs[0].get_suptitle() == "Trace_ELBO  (2000 draws)"
    assert fig.subfigs[1].get_suptitle() == f"{LONG}  (500 draws)"
    for column in fig.subfigs:
        assert (column.axes[0].get_xlabel(), column.axes[0].get_ylabel()) == ("z[1]", "z[0]")
    assert len(fig.subfigs[1].axes) == 1 + 4 + 1  # projection, 4 marginals, colour bar
    assert "(chosen)" in fig.subfigs[1].axes[0].get_title()


def test_aggregate_posterior_scatter_by_class_at_most_max_points(seed):
    z = _draws(2, num=1000, seed=seed(0))
    classes = np.arange(1000) % 3
    ax = plot_aggregate_posterior(z, labels=classes, max_points=300).subfigs[0].axes[0]
    assert not ax.images
    assert [c.get_label() for c in ax.collections] == ["0", "1", "2"]
    offsets = [c.get_offsets() for c in ax.collections]
    assert sum(len(o) for o in offsets) == 300
    keep = np.linspace(0, 999, 300).round().astype(int)
    np.testing.assert_allclose(offsets[1], z[keep[classes[keep] == 1]])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]
    assert "prior 3 s.d." in _lines(ax)


def test_aggregate_posterior_one_dim_is_one_histogram(seed):
    (column,) = plot_aggregate_posterior(_draws(1, seed=seed(0))).subfigs
    assert [ax.get_title() for ax in column.axes] == ["z[0]"]


def test_aggregate_posterior_validates_input(seed):
    z = _draws(3, num=10, seed=seed(0))
    with pytest.raises(ValueError, match=r"z of shape \(S, D\)"):
        plot_aggregate_posterior(z[:, 0])
    with pytest.raises(ValueError, match=r"finite values in z\['a'\]"):
        plot_aggregate_posterior({"a": np.full((4, 2), np.nan)})
    with pytest.raises(ValueError, match="non-empty dict"):
        plot_aggregate_posterior({})
    with pytest.raises(ValueError, match=r"labels of shape \(10,\)"):
        plot_aggregate_posterior(z, labels=np.zeros(9))
    with pytest.raises(ValueError, match="max_points"):
        plot_aggregate_posterior(z, max_points=0)
    for dims in ((0, 0), (0, 3), (0,)):
        with pytest.raises(ValueError, match=r"dims .*\[0, 3\)"):
            plot_aggregate_posterior(z, dims=dims)


# plot_active_units


def test_active_units_bars_threshold_and_counts():
    activity = {"Trace_ELBO": np.array([0.5, 2.0, 0.02]), LONG: np.array([1.0, 0.0, 1e-3, 0.01])}
    kl = {"Trace_ELBO": np.array([1.5, 3.0, 0.1]), LONG: np.array([2.0, 0.0, 0.001, 0.002])}
    fig = plot_active_units(activity, kl)
    assert fig.get_suptitle() == f"active units (A_d > 0.01): Trace_ELBO: 3/3, {LONG}: 1/4"
    ax_a, ax_kl = fig.axes
    assert ax_a.get_yscale() == "log" and ax_kl.get_yscale() == "linear"
    threshold = ax_a.lines[0]
    assert threshold.get_linestyle() == "--"
    np.testing.assert_allclose(threshold.get_ydata(), [0.01, 0.01])
    floor = 1e-6
    for i, name in enumerate(activity):
        bars_a, bars_kl = ax_a.containers[i], ax_kl.containers[i]
        assert isinstance(bars_a, BarContainer) and len(bars_a) == len(activity[name])
        tops = [r.get_y() + r.get_height() for r in bars_a]
        np.testing.assert_allclose(tops, np.maximum(activity[name], floor))
        np.testing.assert_allclose([r.get_height() for r in bars_kl], kl[name])
        centres = [r.get_x() + r.get_width() / 2 for r in bars_kl]
        np.testing.assert_allclose(centres, np.arange(len(kl[name])) + (i - 0.5) * 0.4)
        alphas = [r.get_facecolor()[3] for r in bars_a]
        np.testing.assert_allclose(alphas, np.where(activity[name] > 0.01, 1.0, 0.3))
    assert ax_a.get_ylim()[0] < floor  # the floor bars are seen
    assert "drawn at 1e-06" in ax_a.get_title(loc="left")  # the 0 was clipped, and it says so
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[:2] == ["Trace_ELBO", LONG] and "threshold 0.01" in texts


def test_active_units_one_run_and_another_threshold():
    fig = plot_active_units(torch.tensor([0.5, 0.05, 0.2]), [1.0, 0.2, 0.5], threshold=0.1)
    assert fig.get_suptitle() == "active units (A_d > 0.1): 2/3"
    assert "drawn at" not in fig.axes[0].get_title(loc="left")  # nothing was clipped
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [0.1, 0.1])
    centres = [r.get_x() + r.get_width() / 2 for r in fig.axes[1].containers[0]]
    np.testing.assert_allclose(centres, [0, 1, 2])


def test_active_units_validates_input():
    good = np.array([0.1, 0.2])
    with pytest.raises(ValueError, match=r"activity.* ≥ 0"):
        plot_active_units(np.array([0.1, -0.2]), good)
    with pytest.raises(ValueError, match=r"kl\['a'\] of the shape"):
        plot_active_units({"a": good}, {"a": np.ones(3)})
    with pytest.raises(ValueError, match="both"):
        plot_active_units({"a": good}, good)
    with pytest.raises(ValueError, match="same labels"):
        plot_active_units({"a": good}, {"b": good})
    with pytest.raises(ValueError, match=r"activity of shape \(D,\)"):
        plot_active_units(np.ones((2, 2)), good)
    for threshold in (0, float("nan"), True):
        with pytest.raises(ValueError, match="threshold"):
            plot_active_units(good, good, threshold=threshold)


# plot_gap_during_training


def _gap_histories():
    histories = {}
    for i, name in enumerate(("Trace_ELBO", LONG, "no gaps")):
        history = []
        for epoch in range(1, 9):
            record = {"epoch": epoch, "train_loss": 100.0 - epoch}
            if epoch % 3 == 0 and name != "no gaps":
                log_px = -90.0 - 5 / epoch + i
                gap = 3.0 / epoch + 0.5 * i
                record.update(
                    gap_log_px=log_px, gap_elbo=log_px - gap, gap=gap, gap_se=0.1 + 0.01 * epoch
                )
            history.append(record)
        histories[name] = history
    return histories


def test_gap_during_training_three_panels_with_the_recorded_epochs():
    histories = _gap_histories()
    fig = plot_gap_during_training(histories)
    assert fig.get_suptitle() == "log p(x), ELBO and their gap during training (validation subset)"
    assert len(fig.axes) == 3
    assert fig.axes[0].get_shared_x_axes().joined(fig.axes[0], fig.axes[2])
    assert fig.axes[2].get_xlabel() == "epoch"
    for name in ("Trace_ELBO", LONG):
        records = [r for r in histories[name] if "gap" in r]
        for ax, key in zip(fig.axes, ("gap_log_px", "gap_elbo", "gap"), strict=True):
            line = _lines(ax)[name]
            np.testing.assert_allclose(line.get_xdata(), [3, 6])
            np.testing.assert_allclose(line.get_ydata(), [r[key] for r in records])
            assert line.get_marker() != "None"
    band = fig.axes[2].collections[1]  # LONG's
    vertices = band.get_paths()[0].vertices
    records = [r for r in histories[LONG] if "gap" in r]
    for r in records:
        at = vertices[np.isclose(vertices[:, 0], r["epoch"])][:, 1]
        np.testing.assert_allclose(
            [at.min(), at.max()], [r["gap"] - 2 * r["gap_se"], r["gap"] + 2 * r["gap_se"]]
        )
    np.testing.assert_allclose(fig.axes[2].lines[-1].get_ydata(), [0, 0])
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["Trace_ELBO", LONG]
    assert "no gaps" in legend.get_title().get_text()  # the left-out objective is named


def test_gap_during_training_sorts_records_by_epoch():
    histories = _gap_histories()
    histories[LONG].reverse()
    line = _lines(plot_gap_during_training(histories).axes[2])[LONG]
    np.testing.assert_allclose(line.get_xdata(), [3, 6])
    np.testing.assert_allclose(line.get_ydata(), [1.0 + 0.5, 0.5 + 0.5])


def test_gap_during_training_validates_input():
    histories = _gap_histories()
    with pytest.raises(ValueError, match=r"'gap_log_px'.*'no gaps'"):
        plot_gap_during_training({"no gaps": histories["no gaps"]})
    del histories["Trace_ELBO"][2]["gap_se"]
    with pytest.raises(ValueError, match=r"'gap_se'.*'Trace_ELBO'"):
        plot_gap_during_training(histories)
    with pytest.raises(ValueError, match="histories"):
        plot_gap_during_training({})


# plot_beta_schedules


def _schedule_rows():
    rows = []
    for i, (name, kl, reconstruction, active) in enumerate(
        (
            ("constant β=1", 25.0, -70.0, 12),
            ("linear warm-up 0→1 over 20 epochs (Bowman et al.)", 28.0, -66.0, 16),
            ("β=4", 12.0, -88.0, 5),
        )
    ):
        elbo = reconstruction - kl
        rows.append(
            {
                "schedule": name,
                "test_log_px": elbo + 4 + 0.3 * i,
                "test_elbo": elbo,
                "test_elbo_se": 0.15 + 0.01 * i,
                "test_kl": kl,
                "test_kl_se": 0.1,
                "test_reconstruction": reconstruction,
                "num_active": active,
                "z_dim": 32 if i < 2 else 16,
            }
        )
    return rows


def test_beta_schedules_bounds_rate_distortion_and_active_units():
    rows = _schedule_rows()
    fig = plot_beta_schedules(rows)
    ax_bounds, ax_rd, ax_units = fig.axes
    log_px, elbo = ax_bounds.containers
    assert isinstance(log_px, ErrorbarContainer)
    np.testing.assert_allclose(log_px.lines[0].get_xdata(), [-0.1, 0.9, 1.9])
    np.testing.assert_allclose(log_px.lines[0].get_ydata(), [r["test_log_px"] for r in rows])
    np.testing.assert_allclose(elbo.lines[0].get_ydata(), [r["test_elbo"] for r in rows])
    segments = np.asarray(elbo.lines[2][0].get_segments())
    np.testing.assert_allclose(
        segments[:, 1, 1] - segments[:, 0, 1], [4 * r["test_elbo_se"] for r in rows]
    )
    ticks = [t.get_text().replace("\n", " ") for t in ax_bounds.get_xticklabels()]
    assert ticks == [r["schedule"] for r in rows]

    for row, point in zip(rows, ax_rd.containers, strict=True):
        np.testing.assert_allclose(point.lines[0].get_xdata(), [-row["test_reconstruction"]])
        np.testing.assert_allclose(point.lines[0].get_ydata(), [row["test_kl"]])
    (iso,) = [line for line in ax_rd.lines if line.get_label().startswith("D + R =")]
    best = rows[1]  # the highest ELBO: D + R = 66 + 28 = 94
    x = np.asarray(iso.get_xdata())
    np.testing.assert_allclose(np.asarray(iso.get_ydata()) + x, np.full(len(x), 94.0))
    assert x[0] < -best["test_reconstruction"] < x[-1]
    assert ax_rd.get_yscale() == "log"  # rates span orders of magnitude
    assert "distortion" in ax_rd.get_xlabel() and "rate" in ax_rd.get_ylabel()

    z_dim, active = ax_units.containers
    assert [r.get_height() for r in z_dim] == [32, 32, 16]
    assert [r.get_height() for r in active] == [12, 16, 5]
    assert [t.get_text() for t in ax_units.texts] == ["12/32", "16/32", "5/16"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [r["schedule"] for r in rows]


def test_active_units_kl_goes_to_a_log_axis_when_one_run_dwarfs_the_others():
    activity = {"β=0": np.full(4, 40.0), "β=1": np.array([0.5, 0.4, 0.3, 0.0])}
    kl = {"β=0": np.full(4, 50.0), "β=1": np.array([1.0, 0.5, 0.3, 0.0])}
    ax_kl = plot_active_units(activity, kl).axes[1]
    assert ax_kl.get_yscale() == "log" and "log scale" in ax_kl.get_title(loc="left")
    kl["β=0"] = np.full(4, 2.0)
    assert plot_active_units(activity, kl).axes[1].get_yscale() == "linear"


def test_beta_schedules_names_a_run_far_off_the_scale():
    """β = 0's log p(x) of −553 would flatten the others: it is written, not drawn."""
    rows = [
        {"schedule": label, "test_log_px": lp, "test_elbo": lp - 2, "test_kl": kl,
         "test_reconstruction": -5.0, "num_active": 4, "z_dim": 8}
        for label, lp, kl in (("β=0", -553.5, 555.0), ("β=1", -22.7, 5.0), ("β=4", -27.3, 0.01))
    ]  # fmt: skip
    ax_bounds = plot_beta_schedules(rows).axes[0]
    low, high = ax_bounds.get_ylim()
    assert -32 < low < -29.3 and -22.7 < high < -20  # the ELBOs are 2 below
    (note,) = [t.get_text() for t in ax_bounds.texts]
    assert "-553.5" in note and "-555.5" in note and "off scale" in note
    rows[0].update(test_log_px=-24.0, test_elbo=-26.0)
    assert len(plot_beta_schedules(rows).axes[0].texts) == 0


def test_beta_schedules_validates_input():
    with pytest.raises(ValueError, match="rows"):
        plot_beta_schedules([])
    rows = _schedule_rows()
    del rows[2]["test_kl"]
    with pytest.raises(ValueError, match="'test_kl'.*'β=4'"):
        plot_beta_schedules(rows)
    rows = _schedule_rows()
    rows[0]["test_elbo"] = float("nan")
    with pytest.raises(ValueError, match="finite 'test_elbo'"):
        plot_beta_schedules(rows)
    for active, z_dim in ((17, 16), (2.0, 16), (1, 0)):
        rows = _schedule_rows()
        rows[2].update(num_active=active, z_dim=z_dim)
        with pytest.raises(ValueError, match="num_active"):
            plot_beta_schedules(rows)


def test_every_figure_renders_to_png(tmp_path, seed):
    figures = {
        "aggregate": plot_aggregate_posterior(
            {"a": _draws(2, seed=seed(0)), LONG: _draws(6, seed=seed(0))}
        ),
        "classes": plot_aggregate_posterior(_draws(3, seed=seed(0)), labels=np.arange(2000) % 10),
        "active": plot_active_units(np.array([1.0, 0.0]), np.array([2.0, 0.0])),
        "gap": plot_gap_during_training(_gap_histories()),
        "beta": plot_beta_schedules(_schedule_rows()),
    }
    for name, fig in figures.items():
        path = save_figure(fig, tmp_path / f"{name}.png", dpi=30)
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC


def test_plots_draw_into_given_axes_or_a_given_figure():
    """ax=: a sequence of axes, or a (sub)figure that receives the panels."""
    fig = Figure()
    top, bottom = fig.subplots(2, 1)
    activity, kl = np.array([0.5, 0.0]), np.array([1.0, 0.0])
    assert plot_active_units(activity, kl, ax=(top, bottom)) is fig
    assert len(top.containers) == 1 and len(bottom.containers) == 1
    sub = Figure().subfigures(1, 2)[1]
    z = np.random.default_rng(0).normal(size=(50, 2))
    assert plot_aggregate_posterior(z, ax=sub) is sub and sub.subfigs
    with pytest.raises(ValueError, match="Figure or a SubFigure"):
        plot_aggregate_posterior(z, ax=top)


def test_gap_split_bars_stack_to_the_inference_gap():
    from matplotlib.figure import Figure

    from pyro_vae.results import Estimate, GapRow
    from pyro_vae.viz.anatomy import plot_gap_split

    rows = [
        GapRow("A", "diagonal", 4, "exact", {"log_px": Estimate(-20.0, 0.0),
               "elbo_local_flow": Estimate(-20.1, 0.01), "approximation_gap": Estimate(0.3, 0.01),
               "amortization_gap": Estimate(0.5, 0.02), "inference_gap": Estimate(0.8, 0.02)}),
        GapRow("B", None, 4, "exact", {"log_px": Estimate(-21.0, 0.0)}),  # no split: skipped
    ]  # fmt: skip
    ax = Figure().subplots()
    fig = plot_gap_split(rows, ax=ax)
    assert fig is ax.figure
    bars = [p for p in ax.patches]
    assert len(bars) == 2  # one objective, two stacked parts
    assert bars[1].get_y() == 0.3 and bars[1].get_y() + bars[1].get_height() == 0.8
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A"]
    (flow,) = [line for line in ax.lines if line.get_marker() == "D"]
    assert flow.get_ydata()[0] == pytest.approx(0.1)
    assert ax.get_legend() is not None and not fig.legends  # a user's axes: legend inside
    # a figure passed as ax (as the gallery does): the legend goes below the bars, never
    # over them
    own = plot_gap_split(rows, ax=Figure(layout="constrained"))
    assert len(own.legends) == 1 and own.axes[0].get_legend() is None
