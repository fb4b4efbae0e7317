"""Figures of images: a grid of samples, reconstructions under the data; saving a figure.

Images are grey, black 0 to white 1 (digits are white strokes on black). Where several
are tiled into one picture, the 1-pixel gaps between them (and the empty cells of a grid)
are drawn in a blue (:data:`GAP_COLOR`) that no pixel value maps to, so a separator
cannot be mistaken for a stroke or for the background. ``ax`` as in
:mod:`pyro_vae.viz.style`; :func:`save_figure` writes a figure as PNG atomically.
"""

import math
import os

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .._checks import check_int, is_int
from .._io import atomic_path
from .style import panels

__all__ = ["GAP_COLOR", "as_images", "mosaic", "plot_image_grid", "plot_reconstructions",
           "save_figure", "show_image"]  # fmt: skip

GAP_COLOR = "#4f86c6"
"""Colour of the gaps between tiled images: a mid blue, unlike any grey of the images."""

_GRAY = matplotlib.colormaps["gray"].with_extremes(bad=GAP_COLOR)


def as_images(images, image_shape, name="images"):
    """``images`` as a float array of shape (n, H, W), validated."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    images = np.asarray(images, dtype=float)
    if images.ndim != 2 or images.shape[0] == 0:
        raise ValueError(f"Expected {name} of shape (n, H*W) with n >= 1 but got {images.shape}")
    if (
        len(image_shape) != 2
        or not all(is_int(d) and d > 0 for d in image_shape)
        or image_shape[0] * image_shape[1] != images.shape[1]
    ):
        raise ValueError(
            f"Expected image_shape (H, W) with H*W equal to the width of {name}, "
            f"{images.shape[1]}, but got {tuple(image_shape)}"
        )
    return images.reshape(-1, *image_shape)


def mosaic(images, nrows, ncols):
    """Tile (n, H, W) images into an (nrows*(H+1)-1, ncols*(W+1)-1) array.

    The 1-pixel gaps and the cells beyond n are NaN, drawn in :data:`GAP_COLOR` by
    :func:`show_image`.
    """
    n, height, width = images.shape
    out = np.full((nrows * (height + 1) - 1, ncols * (width + 1) - 1), np.nan)
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = r * (height + 1), c * (width + 1)
        out[top : top + height, left : left + width] = images[i]
    return out


def show_image(ax, mosaic, extent=None):
    """Grey image, black 0 to white 1, NaN (gaps) in :data:`GAP_COLOR`.

    Without ticks, unless ``extent`` places the image in data coordinates.
    """
    ax.imshow(mosaic, cmap=_GRAY, vmin=0.0, vmax=1.0, interpolation="nearest", extent=extent)
    if extent is None:
        ax.set_xticks([])
        ax.set_yticks([])


def plot_image_grid(
    images, image_shape: tuple, nrows: int | None = None, title: str | None = None, ax=None
) -> Figure:
    """A grid of grey images, e.g. decoder means of samples from the model.

    Parameters
    ----------
    images : torch.Tensor or array_like
        Shape ``(n, H*W)``, values in [0, 1] (black 0 to white 1; values outside
        are clipped by the colour map). Rows fill the grid left to right, top to
        bottom; the 1-pixel gaps and the cells beyond ``n`` are in
        :data:`GAP_COLOR`.
    image_shape : tuple of int
        ``(H, W)``, e.g. ``(28, 28)`` for MNIST or ``Dataset.image_shape``.
    nrows : int, optional
        Rows of the grid; default about √n (a near-square grid).
    title : str, optional
        Title of the figure (of the axes, when ``ax`` is given).
    ax : None, Figure, Axes or sequence of Axes, optional
        Where to draw (:mod:`pyro_vae.viz.style`): one Axes, or a figure to fill.

    Returns
    -------
    matplotlib.figure.Figure
        One axes, without ticks, showing the tiled images (NaN at the gaps).

    Raises
    ------
    ValueError
        If ``images`` is not 2-D with at least one row, H*W differs from its width,
        or ``nrows`` is not an integer in [1, n].
    """
    images = as_images(images, image_shape)
    n = images.shape[0]
    if nrows is None:
        nrows = math.ceil(n / math.ceil(math.sqrt(n)))
    if not is_int(nrows) or not 1 <= nrows <= n:
        raise ValueError(f"Expected nrows to be an integer in [1, {n}] but got {nrows!r}")
    ncols = math.ceil(n / nrows)
    scale = min(0.6, 9.0 / ncols)  # inches per image, at most 9 inches wide
    if ax is not None:
        fig, axes = panels(ax, (1, 1), None)
        ax = axes[0, 0]
        show_image(ax, mosaic(images, nrows, ncols))
        ax.set_axis_off()
        if title:
            ax.set_title(title)
        return fig
    fig = Figure(figsize=(ncols * scale, nrows * scale + (0.4 if title else 0.1)))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - (0.4 / fig.get_figheight() if title else 0)))
    show_image(ax, mosaic(images, nrows, ncols))
    ax.set_axis_off()
    if title:
        fig.suptitle(title, y=0.99, va="top")
    return fig


def plot_reconstructions(
    data, reconstructions, image_shape: tuple, n: int = 10, title: str | None = None, ax=None
) -> Figure:
    """Data on top, below them one row of reconstructions per objective.

    Column j shows data point j and, in each row below, its reconstruction. The
    picture is one mosaic; the gaps between images and rows are in
    :data:`GAP_COLOR`, and each row is labelled on the left.

    Parameters
    ----------
    data : torch.Tensor or array_like
        Shape ``(num, H*W)``, values in [0, 1].
    reconstructions : torch.Tensor, array_like or dict of str to array_like
        Same shape as ``data``: e.g. decoder means at one draw z ~ q(z|x) for the
        rows of ``data`` (one row, labelled "reconstruction"), or label (e.g. the
        training objective) -> such an array: one row each, in the dict's order.
    image_shape : tuple of int
        ``(H, W)``.
    n : int, default 10
        Columns: the first ``min(n, num)`` rows of each are shown.
    title : str, optional
        Figure title; default: reconstructions are decoder means at a draw z ~ q(z|x).
    ax : None, Figure, Axes or sequence of Axes, optional
        Where to draw (:mod:`pyro_vae.viz.style`): one Axes.

    Returns
    -------
    matplotlib.figure.Figure
        One axes whose image is the ``(R*(H+1)-1, min(n, num)*(W+1)-1)`` mosaic of
        R = 1 + (number of reconstruction rows) rows, NaN at the gaps; its y tick
        labels, at the row centres, are "data" and the row labels.

    Raises
    ------
    ValueError
        If an array is not 2-D with H*W columns, a reconstruction's shape differs
        from that of ``data`` (the label is named), ``reconstructions`` is an empty
        dict, or ``n`` < 1.
    """
    check_int("n", n)
    data = as_images(data, image_shape, "data")
    if not isinstance(reconstructions, dict):
        reconstructions = {"reconstruction": reconstructions}
    if not reconstructions:
        raise ValueError("Expected reconstructions to be an array or a non-empty dict")
    rows = {"data": data}
    for label, images in reconstructions.items():
        name = f"reconstructions[{label!r}]"
        images = as_images(images, image_shape, name)
        if images.shape != data.shape:
            raise ValueError(
                f"Expected {name} of the same shape as data, {data.shape[0]} images, "
                f"but got {images.shape[0]}"
            )
        rows[str(label)] = images
    n = min(n, data.shape[0])
    height, width = data.shape[1:]
    tiles = mosaic(np.concatenate([images[:n] for images in rows.values()]), len(rows), n)
    scale = min(0.8, 9.0 / n)  # inches per image, at most 9 inches wide
    fig, axes = panels(ax, (1, 1), (n * scale + 1.6, len(rows) * scale + 0.6))
    ax = axes[0, 0]
    show_image(ax, tiles)
    centres = [r * (height + 1) + (height - 1) / 2 for r in range(len(rows))]
    ax.set_yticks(centres, list(rows), fontsize="medium")
    ax.tick_params(axis="y", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(title or "Reconstructions: decoder mean at one draw z ~ q(z|x)", fontsize="medium")
    return fig


def save_figure(fig, path, dpi=100):
    """Write ``fig`` as a PNG file, atomically.

    The image is rendered to a temporary file beside ``path`` and renamed onto it
    (:func:`pyro_vae._io.atomic_path`), so ``path`` never holds a partial image and
    nothing is left behind if rendering fails.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : str or os.PathLike
        Destination ending in ``.png``; its folder is created if needed.
    dpi : float, default 100
        Resolution in dots per inch.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        If ``path`` does not end in ``.png`` or ``dpi`` ≤ 0.
    """
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"Expected path to end in '.png' but got {path!r}")
    if not dpi > 0:
        raise ValueError(f"Expected dpi > 0 but got {dpi!r}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path
