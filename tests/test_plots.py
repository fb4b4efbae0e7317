import os

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from pyro_vae.viz import posterior as plots
from pyro_vae.viz.bounds import plot_bounds
from pyro_vae.viz.images import GAP_COLOR, plot_image_grid, plot_reconstructions, save_figure
from pyro_vae.viz.training import plot_validation_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ("elbo", "iwae_5", "iwae_50", "log_px")


def _rows():
    """Three objectives whose bounds differ by 0.1 nats, with distinct s.e."""
    rows = []
    for i, objective in enumerate(("Trace_ELBO", "TraceMeanField_ELBO", "Renyi")):
        row = {"objective": objective}
        for j, name in enumerate(NAMES):
            row[f"test_{name}"] = -100.0 + 0.1 * i + 0.3 * j
            row[f"test_{name}_se"] = 0.01 * (1 + j) + 0.001 * i
        rows.append(row)
    return rows


def _histories(validation=True):
    out = {}
    for i, objective in enumerate(("Trace_ELBO", "Renyi")):
        history = []
        for epoch in range(1, 5):
            record = {"epoch": epoch, "train_loss": 110.0 - epoch - i}
            if validation:
                record["val_elbo"] = -105.0 + epoch + i
                record["val_iwae"] = -100.0 + epoch + 2 * i
            history.append(record)
        out[objective] = history
    return out


def test_save_figure_writes_a_png_and_no_temporary_file(tmp_path):
    fig = plot_bounds(_rows())
    target = tmp_path / "figures" / "bounds.png"
    assert save_figure(fig, target, dpi=50) == str(target)
    assert target.read_bytes()[:8] == PNG_MAGIC
    assert os.listdir(target.parent) == ["bounds.png"]


def test_save_figure_failure_leaves_no_file(tmp_path, monkeypatch):
    def broken_savefig(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(PNG_MAGIC + b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(Figure(), tmp_path / "bounds.png")
    assert os.listdir(tmp_path) == []


def test_save_figure_failure_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "bounds.png"
    target.write_bytes(b"old")

    def broken_savefig(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"new")
        raise RuntimeError("boom")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError):
        save_figure(Figure(), target)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["bounds.png"]


@pytest.mark.parametrize("path,dpi", [("bounds.pdf", 100), ("bounds.png", 0)])
def test_save_figure_rejects_bad_arguments(tmp_path, path, dpi):
    with pytest.raises(ValueError, match="path|dpi"):
        save_figure(Figure(), tmp_path / path, dpi=dpi)
    assert os.listdir(tmp_path) == []


def test_plot_bounds_points_against_log_k_with_error_bars():
    rows = _rows()
    fig = plot_bounds(rows, num_samples=1000)
    ax = fig.axes[0]
    ks = [1, 5, 50, 1000]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "1\n(ELBO)",
        "5\n(IWAE-5)",
        "50\n(IWAE-50)",
        "1000\n(log p(x))",
    ]
    assert len(ax.containers) == len(rows)
    bottom, top = ax.get_ylim()
    for row, container in zip(rows, ax.containers, strict=True):
        assert isinstance(container, ErrorbarContainer)
        data_line, caps, (bars,) = container.lines
        means = [row[f"test_{name}"] for name in NAMES]
        twice_se = [2 * row[f"test_{name}_se"] for name in NAMES]
        np.testing.assert_allclose(data_line.get_xdata(), ks)
        np.testing.assert_allclose(data_line.get_ydata(), means)
        segments = np.asarray(bars.get_segments())  # (bound, end, xy)
        np.testing.assert_allclose(segments[:, :, 0], np.transpose([ks, ks]))
        np.testing.assert_allclose((segments[:, 1, 1] - segments[:, 0, 1]) / 2, twice_se)
        np.testing.assert_allclose((segments[:, 1, 1] + segments[:, 0, 1]) / 2, means)
        assert len(caps) == 2  # capped, so that short bars are still seen
        # The y axis spans every error bar (autoscaling was not fooled by the dodge).
        assert bottom < segments[:, :, 1].min() and segments[:, :, 1].max() < top
    lowest = min(r[f"test_{n}"] - 2 * r[f"test_{n}_se"] for r in rows for n in NAMES)
    highest = max(r[f"test_{n}"] + 2 * r[f"test_{n}_se"] for r in rows for n in NAMES)
    assert top - bottom < 1.5 * (highest - lowest)  # the axis spans the data, not 0
    assert "±2 MC s.e." in ax.get_title()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [r["objective"] for r in rows]


def test_plot_bounds_right_panel_is_the_distance_below_log_px():
    rows = _rows()
    fig = plot_bounds(rows, num_samples=1000)
    assert len(fig.axes) == 2
    right = fig.axes[1]
    assert right.get_xscale() == "log"
    for row, line in zip(rows, right.lines, strict=False):
        np.testing.assert_allclose(line.get_xdata(), [1, 5, 50])
        distance = [row[f"test_{n}"] - row["test_log_px"] for n in ("elbo", "iwae_5", "iwae_50")]
        np.testing.assert_allclose(line.get_ydata(), distance)
    zero = right.lines[len(rows)]
    np.testing.assert_allclose(zero.get_ydata(), [0, 0])
    np.testing.assert_allclose(right.get_xlim(), fig.axes[0].get_xlim())


def test_plot_bounds_keeps_objectives_apart_on_screen_only():
    rows = _rows()
    for i in range(1, 3):  # three objectives with the same ELBO
        rows[i]["test_elbo"] = rows[0]["test_elbo"]
    fig = plot_bounds(rows)
    lines = [c.lines[0] for c in fig.axes[0].containers]
    assert all(line.get_xdata()[0] == 1 for line in lines)
    screen_x = [line.get_transform().transform((1, rows[0]["test_elbo"]))[0] for line in lines]
    assert screen_x[0] < screen_x[1] < screen_x[2]


def test_plot_bounds_names_are_sorted_by_k():
    rows = _rows()
    fig = plot_bounds(rows, names=("iwae_50", "elbo"))
    assert len(fig.axes) == 1  # no log p(x), no distance panel
    np.testing.assert_allclose(fig.axes[0].containers[0].lines[0].get_xdata(), [1, 50])
    np.testing.assert_allclose(
        fig.axes[0].containers[0].lines[0].get_ydata(),
        [rows[0]["test_elbo"], rows[0]["test_iwae_50"]],
    )


def test_plot_bounds_validates_input():
    with pytest.raises(ValueError, match="rows"):
        plot_bounds([])
    with pytest.raises(ValueError, match="names"):
        plot_bounds(_rows(), names=())
    with pytest.raises(ValueError, match="'gap'"):
        plot_bounds(_rows(), names=("elbo", "gap"))
    with pytest.raises(ValueError, match="distinct k"):
        plot_bounds(_rows(), names=("iwae_50", "log_px"), num_samples=50)
    with pytest.raises(ValueError, match="num_samples"):
        plot_bounds(_rows(), num_samples=0)
    rows = _rows()
    del rows[1]["test_iwae_50_se"]
    with pytest.raises(ValueError, match="'test_iwae_50_se'.*TraceMeanField_ELBO"):
        plot_bounds(rows)
    rows = _rows()
    rows[0]["test_elbo"] = float("nan")
    with pytest.raises(ValueError, match="finite 'test_elbo'"):
        plot_bounds(rows)


def _gap_mask(shape, image_shape, nrows, ncols):
    """True at the 1-pixel gaps of an nrows x ncols mosaic of (H, W) images."""
    height, width = image_shape
    rows, cols = np.indices(shape)
    return (rows % (height + 1) == height) | (cols % (width + 1) == width)


def test_plot_image_grid_tiles_the_images(seed):
    images = torch.rand(5, 12, generator=torch.Generator().manual_seed(seed(0)))
    fig = plot_image_grid(images, (3, 4), nrows=2, title="samples")
    ax = fig.axes[0]
    mosaic = ax.images[0].get_array()
    # 2 rows x 3 columns of 3x4 images with 1-pixel gaps.
    assert mosaic.shape == (2 * 4 - 1, 3 * 5 - 1)
    np.testing.assert_allclose(mosaic[0:3, 0:4], images[0].reshape(3, 4))
    np.testing.assert_allclose(mosaic[0:3, 5:9], images[1].reshape(3, 4))
    np.testing.assert_allclose(mosaic[4:7, 0:4], images[3].reshape(3, 4))
    assert len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0
    assert fig.get_suptitle() == "samples"


def test_plot_image_grid_gaps_are_not_white():
    fig = plot_image_grid(np.ones((5, 12)), (3, 4), nrows=2)
    image = fig.axes[0].images[0]
    masked = np.ma.getmaskarray(image.get_array())
    gaps = _gap_mask(masked.shape, (3, 4), 2, 3)
    assert masked[gaps].all()  # gaps are NaN, so drawn in the "bad" colour
    assert masked[4:7, 10:14].all()  # the empty sixth cell too
    assert masked.sum() == gaps.sum() + 12
    assert to_hex(image.get_cmap().get_bad()) == to_hex(GAP_COLOR)
    assert to_hex(image.get_cmap()(1.0)) == "#ffffff"  # strokes stay white
    assert to_hex(GAP_COLOR) not in {to_hex(image.get_cmap()(v)) for v in np.linspace(0, 1, 256)}


def test_plot_image_grid_default_is_near_square():
    mosaic = plot_image_grid(np.zeros((10, 4)), (2, 2)).axes[0].images[0].get_array()
    assert mosaic.shape == (3 * 3 - 1, 4 * 3 - 1)  # 3 rows x 4 columns


def test_plot_image_grid_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"image_shape.*64.*\(7, 7\)"):
        plot_image_grid(np.zeros((3, 64)), (7, 7))
    with pytest.raises(ValueError, match="nrows"):
        plot_image_grid(np.zeros((3, 4)), (2, 2), nrows=4)


def test_plot_reconstructions_one_labelled_row_per_objective():
    data = np.linspace(0, 1, 12 * 4).reshape(12, 4)
    recons = {"Trace_ELBO": 1 - data, "Renyi": data**2}
    fig = plot_reconstructions(data, recons, (2, 2), n=10)
    (ax,) = fig.axes
    image = ax.images[0]
    mosaic = image.get_array()
    assert mosaic.shape == (3 * 3 - 1, 10 * 3 - 1)  # 1 + len(recons) rows of 10
    assert [t.get_text() for t in ax.get_yticklabels()] == ["data", "Trace_ELBO", "Renyi"]
    np.testing.assert_allclose(ax.get_yticks(), [0.5, 3.5, 6.5])  # the row centres
    np.testing.assert_allclose(mosaic[0:2, 27:29], data[9].reshape(2, 2))
    np.testing.assert_allclose(mosaic[3:5, 27:29], recons["Trace_ELBO"][9].reshape(2, 2))
    np.testing.assert_allclose(mosaic[6:8, 0:2], recons["Renyi"][0].reshape(2, 2))
    masked = np.ma.getmaskarray(mosaic)
    gaps = _gap_mask(mosaic.shape, (2, 2), 3, 10)
    assert masked[gaps].all() and not masked[~gaps].any()
    assert to_hex(image.get_cmap().get_bad()) == to_hex(GAP_COLOR)
    assert "z ~ q(z|x)" in fig.get_suptitle()
    titled = plot_reconstructions(data, recons, (2, 2), title="decoder mean at one draw")
    assert titled.get_suptitle() == "decoder mean at one draw"


def test_plot_reconstructions_accepts_one_array():
    data = np.linspace(0, 1, 3 * 4).reshape(3, 4)
    ax = plot_reconstructions(data, torch.tensor(1 - data), (2, 2)).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["data", "reconstruction"]
    mosaic = ax.images[0].get_array()
    assert mosaic.shape == (2 * 3 - 1, 3 * 3 - 1)  # n = 10 but only 3 data points
    np.testing.assert_allclose(mosaic[3:5, 6:8], (1 - data[2]).reshape(2, 2))


def test_plot_reconstructions_validates_input():
    data = np.zeros((12, 4))
    with pytest.raises(ValueError, match=r"reconstructions\['Renyi'\].*12 images.*5"):
        plot_reconstructions(data, {"Trace_ELBO": data, "Renyi": data[:5]}, (2, 2))
    with pytest.raises(ValueError, match=r"reconstructions\['Renyi'\] of shape"):
        plot_reconstructions(data, {"Renyi": data[0]}, (2, 2))
    with pytest.raises(ValueError, match="reconstructions"):
        plot_reconstructions(data, data[:5], (2, 2))
    with pytest.raises(ValueError, match="non-empty dict"):
        plot_reconstructions(data, {}, (2, 2))
    with pytest.raises(ValueError, match="n to be"):
        plot_reconstructions(data, data, (2, 2), n=0)


def _climbing_histories(epochs=60, *, seed):
    """Validation bounds climbing from about −35 to −25 nats; the ELBO 0.3 below L_k."""
    rng = np.random.default_rng(seed(0))
    out = {}
    for i, objective in enumerate(("Trace_ELBO", "Renyi")):
        history = []
        for epoch in range(1, epochs + 1):
            bound = -25.0 - 0.2 * i - 10 * np.exp(-epoch / 5) + rng.normal(0, 0.05)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": -bound + 0.5,
                    "val_iwae": bound,
                    "val_elbo": bound - 0.3,
                }
            )
        out[objective] = history
    return out


def _lines(ax):
    return {line.get_label(): line for line in ax.lines}


def test_plot_validation_curves_solid_bound_dashed_elbo_in_both_panels():
    histories = _histories()
    fig = plot_validation_curves(histories)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        lines = _lines(ax)
        for name, history in histories.items():
            solid, dashed = lines[name], lines[f"{name} ELBO"]
            np.testing.assert_allclose(solid.get_xdata(), [1, 2, 3, 4])
            np.testing.assert_allclose(solid.get_ydata(), [r["val_iwae"] for r in history])
            np.testing.assert_allclose(dashed.get_ydata(), [r["val_elbo"] for r in history])
            assert solid.get_linestyle() == "-" and dashed.get_linestyle() == "--"
            assert solid.get_color() == dashed.get_color()
        assert ax.get_xlabel() == "epoch"
    assert fig.axes[0].get_ylabel() == "validation bound (nats per data point)"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        *histories,
        "solid: validation L_k",
        "dashed: validation ELBO",
        "star: best epoch",
    ]


def test_plot_validation_curves_marks_the_best_epoch(seed):
    histories = _climbing_histories(seed=seed)
    histories["Renyi"][40]["val_iwae"] = -20.0  # epoch 41: the best by far
    fig = plot_validation_curves(histories)
    for name, history in histories.items():
        values = [r["val_iwae"] for r in history]
        best = history[int(np.argmax(values))]["epoch"]
        for ax in fig.axes:
            star = _lines(ax)[f"{name} best epoch"]
            assert star.get_marker() == "*"
            np.testing.assert_allclose(star.get_xdata(), [best])
            np.testing.assert_allclose(star.get_ydata(), [max(values)])
        vertical = _lines(fig.axes[1])[f"{name} best epoch line"]
        np.testing.assert_allclose(vertical.get_xdata(), [best, best])
    assert _lines(fig.axes[0])["Renyi best epoch"].get_xdata()[0] == 41


def test_plot_validation_curves_best_epochs_take_precedence():
    histories = _histories()  # bounds rise every epoch: the best is epoch 4
    fig = plot_validation_curves(histories, best_epochs={"Trace_ELBO": 2})
    for ax in fig.axes:
        star = _lines(ax)["Trace_ELBO best epoch"]
        np.testing.assert_allclose(star.get_xdata(), [2])
        np.testing.assert_allclose(star.get_ydata(), [histories["Trace_ELBO"][1]["val_iwae"]])
        np.testing.assert_allclose(_lines(ax)["Renyi best epoch"].get_xdata(), [4])
    with pytest.raises(ValueError, match="best_epochs.*'Renyi_'"):
        plot_validation_curves(histories, best_epochs={"Renyi_": 2})
    with pytest.raises(ValueError, match=r"best_epochs\['Renyi'\].*7"):
        plot_validation_curves(histories, best_epochs={"Renyi": 7})


def test_plot_validation_curves_zoom_shows_the_late_epochs(seed):
    histories = _climbing_histories(epochs=60, seed=seed)
    whole, zoom = plot_validation_curves(histories).axes
    late = [r[key] for h in histories.values() for r in h[30:] for key in ("val_iwae", "val_elbo")]
    bottom, top = zoom.get_ylim()
    assert bottom < min(late) and max(late) < top
    assert top - bottom < 1.2 * (max(late) - min(late))  # not squeezed by the climb
    assert bottom > -30  # the first epochs (down to −35) are left out ...
    assert whole.get_ylim()[0] < -34  # ... but shown in the whole run
    left, right = zoom.get_xlim()
    assert 30 < left < 31 and 60 < right < 61  # epochs 31 to 60, padded


def test_plot_validation_curves_key_val_elbo_has_no_dashed_line():
    histories = _histories()
    fig = plot_validation_curves(histories, key="val_elbo")
    for ax in fig.axes:
        assert all(line.get_linestyle() != "--" for line in ax.lines)
        np.testing.assert_allclose(_lines(ax)["Trace_ELBO"].get_ydata(), [-104, -103, -102, -101])
    assert fig.axes[0].get_ylabel().startswith("validation ELBO")


def test_plot_validation_curves_falls_back_to_the_training_loss():
    histories = _histories(validation=False)
    fig = plot_validation_curves(histories)
    for ax in fig.axes:
        lines = _lines(ax)
        assert sorted(lines) == sorted(histories)  # no dashed line, no star
        for name, history in histories.items():
            np.testing.assert_allclose(lines[name].get_ydata(), [-r["train_loss"] for r in history])
    assert fig.axes[0].get_ylabel().startswith("−train loss")
    fig = plot_validation_curves(histories, best_epochs={"Renyi": 4})
    np.testing.assert_allclose(_lines(fig.axes[0])["Renyi best epoch"].get_ydata(), [-105.0])


def test_plot_validation_curves_validates_input():
    with pytest.raises(ValueError, match="histories"):
        plot_validation_curves({})
    with pytest.raises(ValueError, match="'Trace_ELBO'"):
        plot_validation_curves({"Trace_ELBO": []})
    with pytest.raises(ValueError, match="key"):
        plot_validation_curves(_histories(), key="val_loss")
    with pytest.raises(ValueError, match="'train_loss'.*'Renyi'"):
        plot_validation_curves({"Renyi": [{"epoch": 1}]})


def _draws(s, n, d, shift=0.0, *, seed):
    return np.random.default_rng(seed).normal(shift, 1.0, size=(s, n, d))


def test_plot_posterior_draws_panels_legend_and_density(seed):
    ref, approx = _draws(300, 3, 2, seed=seed(0)), _draws(200, 3, 2, shift=0.5, seed=seed(1))
    grid = np.linspace(-3, 3, 41)
    log_density = -0.5 * (grid[:, None] ** 2 + grid[None, :] ** 2)
    density = (grid, grid, np.broadcast_to(log_density, (3, 41, 41)))
    images = np.random.default_rng(seed(2)).random((3, 64))
    fig = plots.plot_posterior_draws(ref, approx, images, (8, 8), density=density)
    axes = fig.get_axes()
    assert len(axes) == 6  # 3 images over 3 latent panels
    latent = axes[3]
    assert len(latent.collections) >= 3  # contour set + two scatter sets
    offsets = [c.get_offsets() for c in latent.collections if len(c.get_offsets()) in (200, 300)]
    assert sorted(len(o) for o in offsets) == [200, 300]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["posterior (HMC)", "guide q(z|x)", "exact posterior (quadrature)"]


def test_plot_posterior_draws_errors(seed):
    with pytest.raises(ValueError, match="same 3 points"):
        plots.plot_posterior_draws(_draws(10, 3, 2, seed=seed(0)), _draws(10, 4, 2, seed=seed(0)))
    with pytest.raises(ValueError, match="two latent dims"):
        plots.plot_posterior_draws(
            _draws(10, 3, 4, seed=seed(0)), _draws(10, 3, 4, seed=seed(0)), dims=(0, 4)
        )
    with pytest.raises(ValueError, match="log_density of shape"):
        grid = np.linspace(-1, 1, 5)
        plots.plot_posterior_draws(_draws(10, 2, 2, seed=seed(0)), _draws(10, 2, 2, seed=seed(0)),
                                   density=(grid, grid, np.zeros((2, 5, 4))))  # fmt: skip
    fig = plots.plot_posterior_draws(
        _draws(10, 2, 1, seed=seed(0)), _draws(10, 2, 1, seed=seed(0))
    )  # 1-D latents
    assert len(fig.get_axes()) == 2


def test_plot_latent_map(seed):
    z = np.random.default_rng(seed(0)).normal(size=(50, 2))
    labels = np.arange(50) % 10
    decoded = np.random.default_rng(seed(1)).random((25, 64))
    fig = plots.plot_latent_map(z, labels, decoded, (8, 8), (-3, 3, -3, 3))
    ax_map, ax_grid = fig.get_axes()
    assert len(ax_map.collections) == 10  # one scatter per digit
    assert ax_grid.get_images()[0].get_extent() == [-3, 3, -3, 3]
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plots.plot_latent_map(np.zeros((5, 3)), None, decoded, (8, 8), (-1, 1, -1, 1))
    with pytest.raises(ValueError, match="g\\*g"):
        plots.plot_latent_map(z, labels, decoded[:24], (8, 8), (-1, 1, -1, 1))


def test_every_plot_draws_into_given_axes_or_a_given_figure(seed):
    """ax=: the panels given are drawn into (no new figure), in the documented order."""
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert plot_bounds(_rows(), ax=[left, right]) is fig
    assert len(left.containers) == 3 and len(right.lines) == 4
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_bounds(_rows(), names=("elbo", "iwae_5"), ax=ax) is fig and len(ax.containers) == 3
    images = torch.rand(6, 64, generator=torch.Generator().manual_seed(seed(0)))
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_image_grid(images, (8, 8), ax=ax, title="t") is fig and ax.get_title() == "t"
    assert plot_reconstructions(images, images, (8, 8), ax=ax) is fig
    fig = Figure()
    assert plot_validation_curves(_histories(), ax=fig) is fig and len(fig.axes) == 2
    with pytest.raises(ValueError, match="Expected ax to be None, a Figure or 2"):
        plot_validation_curves(_histories(), ax=[ax])
