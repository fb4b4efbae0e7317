import os

import numpy as np
import pytest
import torch
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from pyro_vae import plots
from pyro_vae.plots import (
    plot_bounds,
    plot_image_grid,
    plot_reconstructions,
    plot_validation_curves,
    save_figure,
)

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


def test_plot_bounds_bars_and_error_bars():
    rows = _rows()
    ax = plot_bounds(rows).axes[0]
    assert len(ax.patches) == len(rows) * len(NAMES)
    containers = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(containers) == len(NAMES)
    for name, bars in zip(NAMES, containers, strict=True):
        means = [row[f"test_{name}"] for row in rows]
        tops = [p.get_y() + p.get_height() for p in bars.patches]
        np.testing.assert_allclose(tops, means)
        segments = bars.errorbar.lines[2][0].get_segments()
        half_lengths = [(s[1][1] - s[0][1]) / 2 for s in segments]
        centres = [(s[1][1] + s[0][1]) / 2 for s in segments]
        np.testing.assert_allclose(half_lengths, [2 * r[f"test_{name}_se"] for r in rows])
        np.testing.assert_allclose(centres, means)
    assert "±2 MC s.e." in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "ELBO",
        "IWAE-5",
        "IWAE-50",
        "log p(x)",
    ]


def test_plot_bounds_zooms_to_the_data():
    rows = _rows()
    ax = plot_bounds(rows).axes[0]
    lowest = min(r[f"test_{n}"] - 2 * r[f"test_{n}_se"] for r in rows for n in NAMES)
    highest = max(r[f"test_{n}"] + 2 * r[f"test_{n}_se"] for r in rows for n in NAMES)
    bottom, top = ax.get_ylim()
    assert bottom < lowest and top > highest
    # The data span 1.3 nats: the axis must not reach down to 0 (or anywhere near).
    assert top - bottom < 2 * (highest - lowest)
    assert {p.get_y() for p in ax.patches} == {bottom}


def test_plot_bounds_validates_input():
    with pytest.raises(ValueError, match="rows"):
        plot_bounds([])
    rows = _rows()
    del rows[1]["test_iwae_50_se"]
    with pytest.raises(ValueError, match="'test_iwae_50_se'.*TraceMeanField_ELBO"):
        plot_bounds(rows)
    rows = _rows()
    rows[0]["test_elbo"] = float("nan")
    with pytest.raises(ValueError, match="finite 'test_elbo'"):
        plot_bounds(rows)


def test_plot_image_grid_tiles_the_images():
    images = torch.rand(5, 12, generator=torch.Generator().manual_seed(0))
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


def test_plot_image_grid_default_is_near_square():
    mosaic = plot_image_grid(np.zeros((10, 4)), (2, 2)).axes[0].images[0].get_array()
    assert mosaic.shape == (3 * 3 - 1, 4 * 3 - 1)  # 3 rows x 4 columns


def test_plot_image_grid_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"image_shape.*64.*\(7, 7\)"):
        plot_image_grid(np.zeros((3, 64)), (7, 7))
    with pytest.raises(ValueError, match="nrows"):
        plot_image_grid(np.zeros((3, 4)), (2, 2), nrows=4)


def test_plot_reconstructions_two_labelled_rows():
    data = np.linspace(0, 1, 12 * 4).reshape(12, 4)
    recon = 1 - data
    fig = plot_reconstructions(data, recon, (2, 2), n=10)
    top, bottom = fig.axes
    assert top.get_ylabel() == "data" and bottom.get_ylabel() == "reconstruction"
    top_strip, bottom_strip = top.images[0].get_array(), bottom.images[0].get_array()
    assert top_strip.shape == (2, 10 * 3 - 1)
    np.testing.assert_allclose(top_strip[:, 27:29], data[9].reshape(2, 2))
    np.testing.assert_allclose(bottom_strip[:, 27:29], recon[9].reshape(2, 2))
    with pytest.raises(ValueError, match="reconstructions"):
        plot_reconstructions(data, recon[:5], (2, 2))


def test_plot_validation_curves_draws_the_validation_bound():
    histories = _histories()
    ax = plot_validation_curves(histories).axes[0]
    assert [line.get_label() for line in ax.lines] == list(histories)
    for line, history in zip(ax.lines, histories.values(), strict=True):
        np.testing.assert_allclose(line.get_ydata(), [r["val_iwae"] for r in history])
        np.testing.assert_allclose(line.get_xdata(), [1, 2, 3, 4])
    assert ax.get_ylabel() == "validation L_k (nats per data point)"
    assert ax.get_xlabel() == "epoch"
    elbo_ax = plot_validation_curves(histories, key="val_elbo").axes[0]
    assert elbo_ax.get_ylabel().startswith("validation ELBO")
    np.testing.assert_allclose(elbo_ax.lines[0].get_ydata(), [-104, -103, -102, -101])


def test_plot_validation_curves_falls_back_to_the_training_loss():
    histories = _histories(validation=False)
    ax = plot_validation_curves(histories).axes[0]
    for line, history in zip(ax.lines, histories.values(), strict=True):
        np.testing.assert_allclose(line.get_ydata(), [-r["train_loss"] for r in history])
    assert ax.get_ylabel().startswith("−train loss")


def test_plot_validation_curves_validates_input():
    with pytest.raises(ValueError, match="histories"):
        plot_validation_curves({})
    with pytest.raises(ValueError, match="'Trace_ELBO'"):
        plot_validation_curves({"Trace_ELBO": []})
    with pytest.raises(ValueError, match="key"):
        plot_validation_curves(_histories(), key="val_loss")


def _draws(s, n, d, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(shift, 1.0, size=(s, n, d))


def test_plot_posterior_draws_panels_legend_and_density():
    ref, approx = _draws(300, 3, 2), _draws(200, 3, 2, shift=0.5, seed=1)
    grid = np.linspace(-3, 3, 41)
    log_density = -0.5 * (grid[:, None] ** 2 + grid[None, :] ** 2)
    density = (grid, grid, np.broadcast_to(log_density, (3, 41, 41)))
    images = np.random.default_rng(2).random((3, 64))
    fig = plots.plot_posterior_draws(ref, approx, images, (8, 8), density=density)
    axes = fig.get_axes()
    assert len(axes) == 6  # 3 images over 3 latent panels
    latent = axes[3]
    assert len(latent.collections) >= 3  # contour set + two scatter sets
    offsets = [c.get_offsets() for c in latent.collections if len(c.get_offsets()) in (200, 300)]
    assert sorted(len(o) for o in offsets) == [200, 300]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["posterior (HMC)", "guide q(z|x)", "exact posterior (quadrature)"]


def test_plot_posterior_draws_errors():
    with pytest.raises(ValueError, match="same 3 points"):
        plots.plot_posterior_draws(_draws(10, 3, 2), _draws(10, 4, 2))
    with pytest.raises(ValueError, match="two latent dims"):
        plots.plot_posterior_draws(_draws(10, 3, 4), _draws(10, 3, 4), dims=(0, 4))
    with pytest.raises(ValueError, match="log_density of shape"):
        grid = np.linspace(-1, 1, 5)
        plots.plot_posterior_draws(_draws(10, 2, 2), _draws(10, 2, 2),
                                   density=(grid, grid, np.zeros((2, 5, 4))))  # fmt: skip
    fig = plots.plot_posterior_draws(_draws(10, 2, 1), _draws(10, 2, 1))  # 1-D latents
    assert len(fig.get_axes()) == 2


def test_plot_latent_map():
    z = np.random.default_rng(0).normal(size=(50, 2))
    labels = np.arange(50) % 10
    decoded = np.random.default_rng(1).random((25, 64))
    fig = plots.plot_latent_map(z, labels, decoded, (8, 8), (-3, 3, -3, 3))
    ax_map, ax_grid = fig.get_axes()
    assert len(ax_map.collections) == 10  # one scatter per digit
    assert ax_grid.get_images()[0].get_extent() == [-3, 3, -3, 3]
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plots.plot_latent_map(np.zeros((5, 3)), None, decoded, (8, 8), (-1, 1, -1, 1))
    with pytest.raises(ValueError, match="g\\*g"):
        plots.plot_latent_map(z, labels, decoded[:24], (8, 8), (-1, 1, -1, 1))
