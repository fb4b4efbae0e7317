"""What every figure of :mod:`pyro_vae.viz` shares: markers, the panels to draw into.

Every ``plot_*`` function builds on a :class:`matplotlib.figure.Figure` directly (never
pyplot), so no backend or display is needed and no global matplotlib state changes. Its
``ax`` argument says where to draw: None creates a new figure; a
:class:`~matplotlib.figure.Figure` or :class:`~matplotlib.figure.SubFigure` receives the
function's panels; or the panels themselves, one :class:`~matplotlib.axes.Axes` (a
one-panel figure) or a sequence of them in the order the function documents. Titles and
legends of the whole figure go to the figure that holds the axes (a subfigure keeps them
apart from the rest of a larger figure).
"""

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, FigureBase
from matplotlib.layout_engine import ConstrainedLayoutEngine

__all__ = ["MARKERS", "figure_legend", "panels"]

MARKERS = ("o", "s", "D", "^", "v", "P", "X")
"""Marker shapes cycled over objectives, so lines differ beyond their colour."""


def panels(ax, shape: tuple, figsize: tuple, **subplots) -> tuple:
    """The figure and the ``shape`` array of axes a ``plot_*`` function draws into.

    Parameters
    ----------
    ax : None, Figure, SubFigure, Axes or sequence of Axes
        As the ``ax`` argument of the ``plot_*`` functions (module docstring).
    shape : tuple of int
        ``(rows, columns)`` of the panels.
    figsize : tuple of float
        Size in inches of a new figure.
    **subplots
        Passed to :meth:`~matplotlib.figure.Figure.subplots` (e.g. ``sharex``).

    Returns
    -------
    (matplotlib.figure.FigureBase, numpy.ndarray of Axes)
        The figure holding the axes, and the axes of shape ``shape``.

    Raises
    ------
    ValueError
        If ``ax`` is a sequence of other than ``rows × columns`` axes.
    """
    if ax is None:
        ax = Figure(figsize=figsize, layout="constrained")
    if isinstance(ax, FigureBase):
        return ax, np.asarray(ax.subplots(*shape, squeeze=False, **subplots))
    axes = np.empty(1, dtype=object)
    if isinstance(ax, Axes):
        axes[0] = ax
    else:
        axes = np.empty(len(ax), dtype=object)
        axes[:] = list(ax)
    if axes.size != math.prod(shape) or not all(isinstance(a, Axes) for a in axes):
        raise ValueError(
            f"Expected ax to be None, a Figure or {math.prod(shape)} matplotlib Axes but got {ax!r}"
        )
    return axes[0].figure, axes.reshape(shape)


def figure_legend(fig, **kwargs):
    """A legend below the panels: outside them with constrained layout, else inside."""
    engine = fig.get_layout_engine() if isinstance(fig, Figure) else None
    outside = isinstance(engine, ConstrainedLayoutEngine)
    return fig.legend(loc="outside lower center" if outside else "lower center", **kwargs)
