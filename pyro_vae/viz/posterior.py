"""Figures of posteriors in the latent plane: HMC and guide draws, the 2-D latent map.

``ax`` as in :mod:`pyro_vae.viz.style`.
"""

import math

import numpy as np
from matplotlib.figure import Figure

from .images import as_images, mosaic, show_image
from .style import figure_legend, panels

__all__ = ["plot_latent_map", "plot_posterior_draws"]


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
    ax=None,
) -> Figure:
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
    ax : None, Figure, Axes or sequence of Axes, optional
        Where to draw (:mod:`pyro_vae.viz.style`): with ``images``, the n image panels
        then the n draw panels; else the n draw panels.

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
        images = as_images(images, image_shape)
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
    ratios = [1.0, 1.8] if rows == 2 else [1.0]
    fig, axes = panels(ax, (rows, n), (2.4 * n, 1.6 * rows + 1.2), height_ratios=ratios)
    for i in range(n):
        if images is not None:
            show_image(axes[0, i], images[i])
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
    figure_legend(fig, handles=handles, labels=names, ncols=3, fontsize="small", markerscale=4)
    return fig


def plot_latent_map(z_means, labels, decoded, image_shape: tuple, extent: tuple, ax=None) -> Figure:
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
    ax : None, Figure, Axes or sequence of Axes, optional
        Where to draw (:mod:`pyro_vae.viz.style`): the scatter, then the decoded grid.

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
    decoded = as_images(decoded, image_shape, "decoded")
    side = math.isqrt(decoded.shape[0])
    if side * side != decoded.shape[0]:
        raise ValueError(f"Expected g*g decoded images but got {decoded.shape[0]}")
    fig, axes = panels(ax, (1, 2), (10, 4.6))
    ax_map, ax_grid = axes[0]
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
    show_image(ax_grid, mosaic(decoded, side, side), extent=extent)
    ax_grid.set_xlabel("z[0]")
    ax_grid.set_ylabel("z[1]")
    ax_grid.set_title("decoder means at a grid of z", fontsize="small")
    return fig
