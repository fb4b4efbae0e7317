"""Figures: learning curves, bounds, images, and posteriors in the latent plane.

Every function builds a :class:`matplotlib.figure.Figure` directly (never pyplot),
so no backend or display is needed and importing this module changes no global
matplotlib state; :func:`save_figure` writes one as PNG atomically. The inputs are
those of :mod:`pyro_vae.report`.
"""

import math
import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ._io import atomic_path
from .report import estimate_label

__all__ = [
    "plot_bounds",
    "plot_image_grid",
    "plot_latent_map",
    "plot_posterior_draws",
    "plot_reconstructions",
    "plot_validation_curves",
    "save_figure",
]

_CURVE_LABELS = {"val_iwae": "validation L_k", "val_elbo": "validation ELBO"}
_UNITS = "(nats per data point)"


def plot_validation_curves(histories, key="val_iwae"):
    """Validation bound per epoch, one line per training objective.

    If not every epoch record has ``key`` (no validation data), the training bound
    −``train_loss`` is drawn instead, for all objectives, so that the lines share
    one y axis.

    Parameters
    ----------
    histories : dict of str to list of dict
        Objective label -> per-epoch records with ``"epoch"``, ``"train_loss"``
        (negative training bound, nats per data point) and optionally
        ``"val_elbo"``, ``"val_iwae"`` (nats per data point), as in
        :attr:`pyro_vae.FitResult.history`.
    key : {"val_iwae", "val_elbo"}, default "val_iwae"
        The validation bound to draw: L_k (k = ``fit``'s ``val_samples``) or the
        ELBO.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; x: epoch, y: the bound in nats per data point.

    Raises
    ------
    ValueError
        If ``histories`` is empty, a history is empty or lacks ``"epoch"`` or
        ``"train_loss"``, or ``key`` is not one of the above.
    """
    if key not in _CURVE_LABELS:
        raise ValueError(f"Expected key in {tuple(_CURVE_LABELS)} but got {key!r}")
    if not histories:
        raise ValueError(
            "Expected histories to be a non-empty dict of objective -> list of "
            f"epoch records but got {histories!r}"
        )
    for name, history in histories.items():
        if not history:
            raise ValueError(f"Expected a non-empty history for objective {name!r}")
        for record in history:
            for needed in ("epoch", "train_loss"):
                if needed not in record:
                    raise ValueError(
                        f"Expected key {needed!r} in every epoch record of objective "
                        f"{name!r} but got {sorted(record)}"
                    )
    validated = all(key in r for history in histories.values() for r in history)

    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for name, history in histories.items():
        epochs = [r["epoch"] for r in history]
        values = [r[key] if validated else -r["train_loss"] for r in history]
        ax.plot(epochs, values, marker="o" if len(epochs) < 30 else None, label=name)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if validated:
        ax.set_ylabel(f"{_CURVE_LABELS[key]} {_UNITS}")
        ax.set_title("Validation bound per epoch")
    else:
        ax.set_ylabel(f"−train loss {_UNITS}")
        ax.set_title(f"Training bound per epoch (no {key!r} in the histories)")
    ax.legend(fontsize="small")
    return fig


def plot_bounds(rows, names=("elbo", "iwae_5", "iwae_50", "log_px")):
    """Grouped bar chart of test-set bounds: one group per objective, one bar per bound.

    Error bars are ±2 Monte-Carlo standard errors. The bars rise from a common
    baseline just below the lowest error bar rather than from 0, so the y axis
    spans the data and differences of 0.1 nats stay visible; bar heights are
    therefore only comparable through the y axis.

    Parameters
    ----------
    rows : list of dict
        One dict per objective with ``"objective"``, and ``"test_<name>"`` (mean,
        nats per data point) and ``"test_<name>_se"`` (its standard error, nats)
        for each of ``names``.
    names : sequence of str, default ("elbo", "iwae_5", "iwae_50", "log_px")
        The estimates to draw, one bar each.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with ``len(rows) * len(names)`` bar patches, drawn row by row;
        the :class:`~matplotlib.container.BarContainer` of each name, in
        ``ax.containers``, has the ±2 s.e. segments in its ``errorbar``.

    Raises
    ------
    ValueError
        If ``rows`` or ``names`` is empty, a row lacks one of the keys (named), or
        a value is not finite.
    """
    if not rows:
        raise ValueError(f"Expected rows to be a non-empty list of dicts but got {rows!r}")
    if not names:
        raise ValueError(f"Expected names to be a non-empty sequence but got {names!r}")
    labels = [str(row.get("objective", f"rows[{i}]")) for i, row in enumerate(rows)]
    means = np.empty((len(names), len(rows)))
    errors = np.empty_like(means)
    for i, row in enumerate(rows):
        for j, name in enumerate(names):
            for key, out in ((f"test_{name}", means), (f"test_{name}_se", errors)):
                if key not in row:
                    raise ValueError(
                        f"Expected key {key!r} in the row of objective {labels[i]!r}; "
                        f"it has {sorted(row)}"
                    )
                out[j, i] = float(row[key])
                if not math.isfinite(out[j, i]):
                    raise ValueError(
                        f"Expected a finite {key!r} for objective {labels[i]!r} "
                        f"but got {row[key]!r}"
                    )
    errors *= 2
    low, high = float((means - errors).min()), float((means + errors).max())
    pad = 0.08 * (high - low) if high > low else max(0.5, 0.01 * abs(low))
    baseline = low - pad

    fig = Figure(figsize=(max(6.4, 1.0 + 0.5 * means.size), 4.4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(names)
    groups = np.arange(len(rows))
    for j, name in enumerate(names):
        ax.bar(
            groups + (j - (len(names) - 1) / 2) * width,
            means[j] - baseline,
            width=width,
            bottom=baseline,
            yerr=errors[j],
            capsize=3,
            label=estimate_label(name),
        )
    ax.set_ylim(baseline, high + pad)
    ax.set_xticks(groups, labels, rotation=20 if max(map(len, labels)) > 12 else 0)
    ax.set_ylabel(f"test bound {_UNITS}")
    ax.set_title("Test-set bounds per objective (error bars: ±2 MC s.e.)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _as_images(images, image_shape, name="images"):
    """``images`` as a float array of shape (n, H, W), validated."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    images = np.asarray(images, dtype=float)
    if images.ndim != 2 or images.shape[0] == 0:
        raise ValueError(f"Expected {name} of shape (n, H*W) with n >= 1 but got {images.shape}")
    if (
        len(image_shape) != 2
        or not all(isinstance(d, int | np.integer) and d > 0 for d in image_shape)
        or image_shape[0] * image_shape[1] != images.shape[1]
    ):
        raise ValueError(
            f"Expected image_shape (H, W) with H*W equal to the width of {name}, "
            f"{images.shape[1]}, but got {tuple(image_shape)}"
        )
    return images.reshape(-1, *image_shape)


def _mosaic(images, nrows, ncols):
    """Tile (n, H, W) images into an (nrows*(H+1)-1, ncols*(W+1)-1) array, 1-px gaps."""
    n, height, width = images.shape
    out = np.ones((nrows * (height + 1) - 1, ncols * (width + 1) - 1))
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = r * (height + 1), c * (width + 1)
        out[top : top + height, left : left + width] = images[i]
    return out


def _show(ax, mosaic):
    ax.imshow(mosaic, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_image_grid(images, image_shape, nrows=None, title=None):
    """A grid of grey images, e.g. decoder means of samples from the model.

    Parameters
    ----------
    images : torch.Tensor or array_like
        Shape ``(n, H*W)``, values in [0, 1] (black 0 to white 1; values outside
        are clipped by the colour map). Rows fill the grid left to right, top to
        bottom; cells beyond ``n`` and the 1-pixel gaps are white.
    image_shape : tuple of int
        ``(H, W)``, e.g. ``(28, 28)`` for MNIST or ``Dataset.image_shape``.
    nrows : int, optional
        Rows of the grid; default about √n (a near-square grid).
    title : str, optional
        Title of the figure.

    Returns
    -------
    matplotlib.figure.Figure
        One axes, without ticks, showing the tiled images.

    Raises
    ------
    ValueError
        If ``images`` is not 2-D with at least one row, H*W differs from its width,
        or ``nrows`` is not an integer in [1, n].
    """
    images = _as_images(images, image_shape)
    n = images.shape[0]
    if nrows is None:
        nrows = math.ceil(n / math.ceil(math.sqrt(n)))
    if isinstance(nrows, bool) or not isinstance(nrows, int) or not 1 <= nrows <= n:
        raise ValueError(f"Expected nrows to be an integer in [1, {n}] but got {nrows!r}")
    ncols = math.ceil(n / nrows)
    scale = min(0.6, 9.0 / ncols)  # inches per image, at most 9 inches wide
    fig = Figure(figsize=(ncols * scale, nrows * scale + (0.4 if title else 0.1)))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - (0.4 / fig.get_figheight() if title else 0)))
    _show(ax, _mosaic(images, nrows, ncols))
    ax.set_axis_off()
    if title:
        fig.suptitle(title, y=0.99, va="top")
    return fig


def plot_reconstructions(data, reconstructions, image_shape, n=10):
    """Data on top, their reconstructions below, side by side in columns.

    Parameters
    ----------
    data : torch.Tensor or array_like
        Shape ``(num, H*W)``, values in [0, 1].
    reconstructions : torch.Tensor or array_like
        Same shape: e.g. decoder means of z ~ q(z|x) for the rows of ``data``.
    image_shape : tuple of int
        ``(H, W)``.
    n : int, default 10
        Columns: the first ``min(n, num)`` rows are shown.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes, labelled "data" and "reconstruction", each one strip of images.

    Raises
    ------
    ValueError
        If the shapes differ, H*W is not their width, or ``n`` < 1.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"Expected n to be an integer >= 1 but got {n!r}")
    data = _as_images(data, image_shape, "data")
    reconstructions = _as_images(reconstructions, image_shape, "reconstructions")
    if data.shape != reconstructions.shape:
        raise ValueError(
            "Expected reconstructions of the same shape as data, "
            f"{data.shape[0]} images, but got {reconstructions.shape[0]}"
        )
    n = min(n, data.shape[0])
    scale = min(0.8, 9.0 / n)
    fig = Figure(figsize=(n * scale + 0.6, 2 * scale + 0.1), layout="constrained")
    axes = fig.subplots(2, 1)
    for ax, images, label in (
        (axes[0], data, "data"),
        (axes[1], reconstructions, "reconstruction"),
    ):
        _show(ax, _mosaic(images[:n], 1, n))
        ax.set_ylabel(label, fontsize="small")
    return fig


def _as_draws(draws, name):
    """Draws as a float array of shape (S, n, D), validated."""
    if hasattr(draws, "detach"):
        draws = draws.detach().cpu().numpy()
    draws = np.asarray(draws, dtype=float)
    if draws.ndim != 3 or min(draws.shape) == 0:
        raise ValueError(
            f"Expected {name} of shape (draws, data points, latent dims) but got {draws.shape}"
        )
    return draws


def plot_posterior_draws(
    reference,
    approximation,
    images=None,
    image_shape=None,
    density=None,
    dims=(0, 1),
    labels=("posterior (HMC)", "guide q(z|x)"),
    max_draws=500,
):
    """Posterior draws and guide draws of a few data points in the latent plane.

    One column per data point: the data image on top (when given), below it the two
    sets of draws projected on latent dimensions ``dims``, and, when ``density`` is
    given (2-D latents, from quadrature), contours of the exact posterior beneath.

    Parameters
    ----------
    reference : array_like
        Draws of p_θ(z|x), shape ``(S, n, D)`` (draws, data points, latent dims); e.g.
        ``idata.posterior.z.stack(s=("chain", "draw")).transpose("s", ...).values``.
    approximation : array_like
        Draws of q_φ(z|x) for the same n points, shape ``(S', n, D)``.
    images : array_like, optional
        The data points, shape ``(n, H*W)``, drawn above their panels.
    image_shape : tuple of int, optional
        ``(H, W)``; required with ``images``.
    density : tuple, optional
        ``(grid_0, grid_1, log_density)``: grid coordinates of shapes ``(G0,)`` and
        ``(G1,)`` along ``dims`` and the log posterior density (unnormalized is fine)
        of shape ``(n, G0, G1)``.
    dims : tuple of int, default (0, 1)
        The two latent dimensions shown (one dimension is shown against itself when
        D = 1).
    labels : tuple of str
        Legend entries of ``reference`` and ``approximation``.
    max_draws : int, default 500
        At most this many draws of each are drawn per point (the first ones).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If the draws are not 3-D with the same n and D, a dim is out of range, or the
        images or density do not match n.
    """
    reference = _as_draws(reference, "reference")
    approximation = _as_draws(approximation, "approximation")
    n, num_dims = reference.shape[1:]
    if approximation.shape[1:] != (n, num_dims):
        raise ValueError(
            f"Expected approximation draws for the same {n} points and {num_dims} latent "
            f"dims as reference but got shape {approximation.shape}"
        )
    dims = tuple(dims) if num_dims > 1 else (0, 0)
    if len(dims) != 2 or not all(0 <= d < num_dims for d in dims):
        raise ValueError(f"Expected two latent dims in [0, {num_dims}) but got {dims!r}")
    if images is not None:
        if image_shape is None:
            raise ValueError("Expected image_shape with images")
        images = _as_images(images, image_shape)
        if images.shape[0] != n:
            raise ValueError(f"Expected {n} images, one per data point, but got {len(images)}")
    if density is not None:
        grid_0, grid_1, log_density = (np.asarray(a, dtype=float) for a in density)
        if log_density.shape != (n, len(grid_0), len(grid_1)):
            raise ValueError(
                f"Expected log_density of shape ({n}, {len(grid_0)}, {len(grid_1)}) but got "
                f"{log_density.shape}"
            )
    rows = 2 if images is not None else 1
    fig = Figure(figsize=(2.4 * n, 1.6 * rows + 1.2), layout="constrained")
    ratios = [1.0, 1.8] if rows == 2 else [1.0]
    axes = np.asarray(fig.subplots(rows, n, squeeze=False, height_ratios=ratios))
    for i in range(n):
        if images is not None:
            _show(axes[0, i], images[i])
            axes[0, i].set_title(f"data point {i}", fontsize="small")
        ax = axes[-1, i]
        if density is not None:
            level = log_density[i] - log_density[i].max()
            ax.contour(grid_0, grid_1, np.exp(level).T, levels=6, colors="0.5", linewidths=0.8)
        for draws, label, color in (
            (reference, labels[0], "C0"),
            (approximation, labels[1], "C1"),
        ):
            z = draws[:max_draws, i]
            ax.scatter(z[:, dims[0]], z[:, dims[1]], s=3, alpha=0.35, color=color, label=label)
        ax.set_xlabel(f"z[{dims[0]}]", fontsize="small")
        ax.set_ylabel(f"z[{dims[1]}]", fontsize="small")
        ax.tick_params(labelsize="x-small")
    handles, names = axes[-1, 0].get_legend_handles_labels()
    if density is not None:
        names = [*names, "exact posterior (quadrature)"]
        handles = [*handles, axes[-1, 0].plot([], [], color="0.5")[0]]
    fig.legend(handles, names, loc="outside lower center", ncols=3, fontsize="small",
               markerscale=4)  # fmt: skip
    return fig


def plot_latent_map(z_means, labels, decoded, image_shape, extent):
    """The latent map of a 2-D VAE: guide means coloured by label, and a decoded grid.

    Parameters
    ----------
    z_means : array_like
        Guide means E_q[z|x] of the data points, shape ``(N, 2)``.
    labels : array_like or None
        Integer class of each point (e.g. the digit), shape ``(N,)``; None draws one
        colour.
    decoded : array_like
        Decoder means p_θ(x|z) at a g × g grid of z over ``extent``, shape
        ``(g*g, H*W)``, row-major from the top-left (z[1] decreasing down the rows,
        z[0] increasing along them).
    image_shape : tuple of int
        ``(H, W)``.
    extent : tuple of float
        ``(z0_min, z0_max, z1_min, z1_max)`` of the decoded grid.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: the scatter and the decoded grid.

    Raises
    ------
    ValueError
        If ``z_means`` is not ``(N, 2)``, labels do not match N, or ``decoded`` is not a
        square number of images.
    """
    if hasattr(z_means, "detach"):
        z_means = z_means.detach().cpu().numpy()
    z_means = np.asarray(z_means, dtype=float)
    if z_means.ndim != 2 or z_means.shape[1] != 2:
        raise ValueError(f"Expected z_means of shape (N, 2) but got {z_means.shape}")
    decoded = _as_images(decoded, image_shape, "decoded")
    side = math.isqrt(decoded.shape[0])
    if side * side != decoded.shape[0]:
        raise ValueError(f"Expected g*g decoded images but got {decoded.shape[0]}")
    fig = Figure(figsize=(10, 4.6), layout="constrained")
    ax_map, ax_grid = fig.subplots(1, 2)
    if labels is None:
        ax_map.scatter(z_means[:, 0], z_means[:, 1], s=6)
    else:
        labels = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels)
        if labels.shape != (len(z_means),):
            raise ValueError(f"Expected {len(z_means)} labels but got shape {labels.shape}")
        for value in np.unique(labels):
            keep = labels == value
            ax_map.scatter(z_means[keep, 0], z_means[keep, 1], s=6, label=str(value),
                           color=f"C{int(value) % 10}")  # fmt: skip
        ax_map.legend(fontsize="x-small", markerscale=2, ncols=2, title="label")
    ax_map.set_xlabel("z[0]")
    ax_map.set_ylabel("z[1]")
    ax_map.set_title("guide means E_q[z|x] of the data", fontsize="small")
    ax_grid.imshow(_mosaic(decoded, side, side), cmap="gray", vmin=0.0, vmax=1.0,
                   extent=extent, interpolation="nearest")  # fmt: skip
    ax_grid.set_xlabel("z[0]")
    ax_grid.set_ylabel("z[1]")
    ax_grid.set_title("decoder means at a grid of z", fontsize="small")
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
