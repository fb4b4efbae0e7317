"""Test-set bounds L_k against the number of importance samples k, per objective.

``ax`` as in :mod:`pyro_vae.viz.style`.

References
----------
1. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
"""

import math
import re

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from matplotlib.transforms import ScaledTranslation

from .._checks import check_int
from ..results import ObjectiveRow, as_rows
from .labels import UNITS, estimate_label
from .style import MARKERS, figure_legend, panels

__all__ = ["plot_bounds"]

_DODGE_POINTS = 5.0  # horizontal offset between objectives in plot_bounds, in points


def _bound_k(name, num_samples):
    """The number k of importance samples of estimate ``name`` (L_k)."""
    if name == "elbo":
        return 1
    if name == "log_px":
        return num_samples
    match = re.fullmatch(r"iwae_([1-9][0-9]*)", name)
    if match is None:
        raise ValueError(
            f"Expected names among 'elbo', 'iwae_<k>' (k >= 1) and 'log_px' but got {name!r}"
        )
    return int(match.group(1))


def _bound_table(rows, names):
    """Objective labels and the means and standard errors, shape (len(rows), len(names))."""
    labels = [row.objective for row in rows]
    means = np.empty((len(rows), len(names)))
    errors = np.empty_like(means)
    for i, row in enumerate(rows):
        for j, name in enumerate(names):
            estimate = row.need(name, se=True)
            means[i, j], errors[i, j] = estimate.mean, estimate.se
            for key, value in ((f"test_{name}", estimate.mean), (f"test_{name}_se", estimate.se)):
                if not math.isfinite(value):
                    raise ValueError(
                        f"Expected a finite {key!r} for objective {labels[i]!r} but got {value!r}"
                    )
    return labels, means, errors


def plot_bounds(
    rows: list,
    names: tuple = ("elbo", "iwae_5", "iwae_50", "log_px"),
    num_samples: int = 5000,
    ax=None,
) -> Figure:
    """Test-set bounds L_k against the number of importance samples k, per objective.

    L_1 is the ELBO, L_k the IWAE bound with k samples (Burda et al., 2016), and the
    log-likelihood estimate log p(x) ≈ L_K with K = ``num_samples``; for a fixed model
    E[L_k] rises with k towards log p(x). Left panel: each objective's estimates as
    points joined by a line (one colour and marker per objective) on a log-k axis,
    with ±2 Monte-Carlo standard-error bars. Right panel (when ``"log_px"`` is among
    ``names``): L_k − log p(x), the distance of each bound below the same model's
    log p(x) estimate, with a line at 0; at k = 1 it is minus the gap
    log p(x) − ELBO = KL(q(z|x) ‖ p(z|x)). Objectives are offset sideways by a few
    points (in display space only) so that equal values stay apart.

    Parameters
    ----------
    rows : list of ObjectiveRow or dict
        One per objective (:class:`pyro_vae.results.ObjectiveRow`, or its
        flat form with ``"objective"``, ``"test_<name>"`` and ``"test_<name>_se"``),
        with the mean (nats per data point) and its standard error for each of
        ``names``.
    names : sequence of str, default ("elbo", "iwae_5", "iwae_50", "log_px")
        The estimates to draw: ``"elbo"`` (k = 1), ``"iwae_<k>"`` and ``"log_px"``
        (k = ``num_samples``); drawn in increasing k.
    num_samples : int, default 5000
        K, the number of importance samples of the log p(x) estimate.
    ax : None, Figure, Axes or sequence of Axes, optional
        Where to draw (:mod:`pyro_vae.viz.style`): the bounds panel, then, with
        ``"log_px"`` among several names, the distance panel.

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[0]``: x the k of ``names`` (log scale, ticks labelled with k and the
        estimate, e.g. ``"1\\n(ELBO)"``), y nats per data point; ``ax.containers[i]``
        is the :class:`~matplotlib.container.ErrorbarContainer` of ``rows[i]``, whose
        ``lines[0]`` has x data the sorted k and y data the means, and whose
        ``lines[2][0]`` segments span mean ± 2 s.e. ``fig.axes[1]`` (with
        ``"log_px"`` only): ``lines[i]`` has x the k < K and y the differences
        L_k − log p(x) of ``rows[i]``, ``lines[len(rows)]`` is the line at 0. The
        legend (``fig.legends[0]``) names the objectives.

    Raises
    ------
    ValueError
        If ``rows`` or ``names`` is empty, a name is not of the forms above, two names
        have the same k, ``num_samples`` is not an integer ≥ 1, a row lacks one of the
        keys (named), or a value is not finite.

    References
    ----------
    1. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders",
       ICLR 2016.
    """
    check_int("num_samples", num_samples)
    rows = as_rows(rows, ObjectiveRow)
    if not names:
        raise ValueError(f"Expected names to be a non-empty sequence but got {names!r}")
    ks = [_bound_k(name, num_samples) for name in names]
    if len(set(ks)) != len(ks):
        raise ValueError(
            f"Expected names with distinct k but got k = {ks} for {tuple(names)} "
            f"(num_samples={num_samples})"
        )
    names = [name for _, name in sorted(zip(ks, names, strict=True))]
    ks = sorted(ks)
    x = np.asarray(ks, dtype=float)
    labels, means, errors = _bound_table(rows, names)
    gap_panel = "log_px" in names and len(names) > 1

    fig, axes = panels(ax, (1, 2 if gap_panel else 1), (11.0 if gap_panel else 6.4, 4.8))
    axes = axes[0]
    for i, label in enumerate(labels):
        shift = (i - (len(rows) - 1) / 2) * _DODGE_POINTS / 72
        style = {"color": f"C{i % 10}", "marker": MARKERS[i % len(MARKERS)], "ms": 6}
        bars = axes[0].errorbar(
            x,
            means[i],
            yerr=2 * errors[i],
            capsize=5,
            capthick=1.3,
            elinewidth=1.3,
            label=label,
            **style,
        )
        artists = [bars.lines[0], *bars.lines[1], *bars.lines[2]]
        if gap_panel:
            log_px = means[i, names.index("log_px")]
            keep = [j for j, name in enumerate(names) if name != "log_px"]
            artists += axes[1].plot(x[keep], means[i, keep] - log_px, **style)
        for artist in artists:  # after autoscaling, which ignores offset transforms
            offset = ScaledTranslation(shift, 0, fig.dpi_scale_trans)
            artist.set_transform(artist.axes.transData + offset)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(ks, [f"{k}\n({estimate_label(n)})" for k, n in zip(ks, names, strict=True)])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlim(ks[0] / 1.6, ks[-1] * 1.6)
        ax.set_xlabel("number of importance samples k (log scale)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"test bound L_k {UNITS}")
    axes[0].set_title(
        "Test-set bounds L_k (error bars: ±2 MC s.e.,\nhidden where smaller than the marker)",
        fontsize="medium",
    )
    if gap_panel:
        axes[1].axhline(0.0, color="black", lw=1.0, label=f"log p(x) (K={num_samples})")
        axes[1].annotate(
            f"log p(x) ≈ L_{num_samples}",
            (1.0, 0.0),
            xytext=(-4, -4),
            xycoords=("axes fraction", "data"),
            textcoords="offset points",
            ha="right",
            va="top",
            fontsize="small",
        )
        axes[1].set_ylabel(f"L_k − log p(x) {UNITS}")
        axes[1].set_title(
            "Distance below the objective's own log p(x)\n(at k = 1: −(log p(x) − ELBO), the gap)",
            fontsize="medium",
        )
    figure_legend(
        fig,
        handles=axes[0].containers,
        labels=labels,
        ncols=min(len(rows), 4),
        fontsize="small",
        title="training objective",
        title_fontsize="small",
    )
    return fig
