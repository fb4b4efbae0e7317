"""Figures of the "ELBO anatomy" sections of a comparison report.

The ELBO = E_q log p(x|z) − KL(q(z|x) ‖ p(z)) = log p(x) − KL(q(z|x) ‖ p(z|x)) can be
taken apart in several ways, one figure each:

- :func:`plot_aggregate_posterior`: the aggregate posterior q(z) = (1/N) Σ_n q(z|x_n)
  against the prior p(z) = N(0, I), whose mismatch the KL term pays for (Hoffman &
  Johnson, 2016);
- :func:`plot_active_units`: which latent dimensions carry information, by the
  activity A_d = Cov_x(E_q[z_d]) (Burda et al., 2016), and the KL each one costs;
- :func:`pyro_vae.viz.beta.plot_beta_schedules`: a comparison of β (KL weight)
  schedules such as warm-up (Bowman et al., 2016; Sønderby et al., 2016), with the
  rate–distortion view of Alemi et al. (2018).

(:func:`pyro_vae.viz.training.plot_gap_during_training` draws the gap along training.)
``ax`` as in :mod:`pyro_vae.viz.style`; write a figure with
:func:`pyro_vae.viz.images.save_figure`. Bounds, KLs and gaps are in nats per data point.

References
----------
1. M. D. Hoffman, M. J. Johnson, "ELBO surgery: yet another way to carve up the
   variational evidence lower bound", NIPS Workshop on Advances in Approximate
   Bayesian Inference, 2016.
2. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders",
   ICLR 2016.
3. A. A. Alemi, B. Poole, I. Fischer, J. V. Dillon, R. A. Saurous, K. Murphy,
   "Fixing a Broken ELBO", ICML 2018.
4. S. R. Bowman, L. Vilnis, O. Vinyals, A. M. Dai, R. Jozefowicz, S. Bengio,
   "Generating Sentences from a Continuous Space", CoNLL 2016.
5. C. K. Sønderby, T. Raiko, L. Maaløe, S. K. Sønderby, O. Winther, "Ladder
   Variational Autoencoders", NIPS 2016.
"""

import math
import numbers

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure, FigureBase
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .._checks import check_int, is_int
from .labels import UNITS
from .style import figure_legend, panels
from .training import wrap

__all__ = [
    "plot_active_units",
    "plot_aggregate_posterior",
    "plot_gap_split",
]

_PRIOR_COLOR = "C3"

_PRIOR_RADII = (1.0, 2.0, 3.0)

_PRIOR_STYLES = ("-", "--", ":")

_MUTED_ALPHA = 0.3  # face opacity of the bars of inactive units

_FLOOR_RATIO = 1e-4  # activity floor on the log axis, as a fraction of the threshold


def _as_array(value, name, ndim):
    """``value`` (tensor or array_like) as a finite float array with ``ndim`` axes."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=float)
    if array.ndim != ndim or array.size == 0:
        shape = "(D,)" if ndim == 1 else "(S, D)"
        raise ValueError(f"Expected {name} of shape {shape}, non-empty, but got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"Expected finite values in {name}")
    return array


def _by_label(value, name, ndim):
    """Label -> array, in order; a single array gets the label None."""
    if not isinstance(value, dict):
        return {None: _as_array(value, name, ndim)}
    if not value:
        raise ValueError(f"Expected {name} to be an array or a non-empty dict but got {{}}")
    return {str(k): _as_array(v, f"{name}[{k!r}]", ndim) for k, v in value.items()}


def _prior_circles(ax, color):
    """The 1, 2 and 3 s.d. circles of N(0, I) in the plane, labelled "prior <r> s.d."."""
    angle = np.linspace(0.0, 2 * math.pi, 181)
    for radius, style in zip(_PRIOR_RADII, _PRIOR_STYLES, strict=True):
        ax.plot(
            radius * np.cos(angle),
            radius * np.sin(angle),
            color=color,
            ls=style,
            lw=1.2,
            label=f"prior {radius:g} s.d.",
        )


def _limit(z):
    """Half-width of the square shown: the 99.8 % quantile of ``|z_d|`` (max over d), ≥ 3.5."""
    return 1.05 * max(3.5, float(np.quantile(np.abs(z), 0.998, axis=0).max()))


def _projection(fig, ax, z, dims, limit, classes, max_points):
    """The draws on ``dims``: density image (or scatter by class) and the prior's circles."""
    x, y = z[:, dims[0]], z[:, dims[1]]
    if classes is None:
        density, _, _ = np.histogram2d(
            x, y, bins=40, range=[[-limit, limit], [-limit, limit]], density=True
        )
        image = ax.imshow(
            density.T,
            origin="lower",
            extent=(-limit, limit, -limit, limit),
            cmap="Blues",
            interpolation="nearest",
        )
        fig.colorbar(image, ax=ax, shrink=0.8, label="density of q(z) (per unit area)")
        _prior_circles(ax, _PRIOR_COLOR)
    else:
        keep = np.linspace(0, len(z) - 1, min(len(z), max_points)).round().astype(int)
        for i, value in enumerate(np.unique(classes)):
            chosen = keep[classes[keep] == value]
            ax.scatter(
                x[chosen], y[chosen], s=4, alpha=0.5, color=f"C{i % 10}", lw=0, label=str(value)
            )
        _prior_circles(ax, "black")
        ax.legend(
            handles=ax.collections,
            title="class",
            fontsize="x-small",
            markerscale=3,
            title_fontsize="x-small",
            loc="center left",
            bbox_to_anchor=(1.02, 0.5),
        )
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xlabel(f"z[{dims[0]}]")
    ax.set_ylabel(f"z[{dims[1]}]")


def _marginal(ax, values, limit):
    """Histogram (density) of one latent dimension with the N(0, 1) density over it."""
    heights, edges = np.histogram(values, bins=40, range=(-limit, limit), density=True)
    ax.stairs(heights, edges, fill=True, color="C0", alpha=0.5, label="q(z_d) histogram")
    grid = np.linspace(-limit, limit, 201)
    prior = np.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi)
    ax.plot(grid, prior, color=_PRIOR_COLOR, lw=1.2, label="N(0, 1) density")
    ax.set_ylim(0.0, 1.1 * max(heights.max(), prior.max()))
    ax.set_yticks([])
    step = max(1, math.floor(0.8 * limit))
    ax.set_xticks([-step, 0, step])
    ax.tick_params(labelsize="x-small")


def _posterior_handles(z, labels):
    """Legend entries of :func:`plot_aggregate_posterior`."""
    color = _PRIOR_COLOR if labels is None else "black"
    handles = [
        Line2D([], [], color=color, ls=style, label=f"prior N(0, I) {r:g} s.d.")
        for r, style in zip(_PRIOR_RADII, _PRIOR_STYLES, strict=True)
    ]
    if any(draws.shape[1] != 2 for draws in z.values()):
        handles.append(Patch(color="C0", alpha=0.5, label="histogram of z_d (density)"))
        handles.append(Line2D([], [], color=_PRIOR_COLOR, label="prior N(0, 1) density"))
    return handles


def _legend_below(fig, handles):
    """A figure legend in a strip added at the bottom (subfigures do not make room for it).

    The figure grows by the strip's height; the number of legend columns is what its
    width holds at about 0.07 inch per character of the longest label.
    """
    width, height = fig.get_size_inches()
    longest = max(len(handle.get_label()) for handle in handles)
    ncols = max(1, min(len(handles), int(width // (0.7 + 0.07 * longest))))
    strip = 0.25 * math.ceil(len(handles) / ncols) + 0.15  # inches, at font size "small"
    fig.set_size_inches(width, height + strip)
    fraction = strip / (height + strip)
    fig.get_layout_engine().set(rect=(0.0, fraction, 1.0, 1.0 - fraction))
    fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.0),
        ncols=ncols,
        fontsize="small",
        frameon=False,
    )


def _check_posterior_args(z, labels, max_points, dims):
    """Validate the arguments of :func:`plot_aggregate_posterior`; return z and labels."""
    check_int("max_points", max_points)
    z = _by_label(z, "z", 2)
    if labels is not None:
        if hasattr(labels, "cpu"):
            labels = labels.cpu()
        labels = np.asarray(labels)
        for name, draws in z.items():
            if labels.shape != (len(draws),):
                where = "z" if name is None else f"z[{name!r}]"
                raise ValueError(
                    f"Expected labels of shape ({len(draws)},), one per draw of {where}, "
                    f"but got {labels.shape}"
                )
    if dims is not None:
        dims = tuple(dims)
        for name, draws in z.items():
            num_dims = draws.shape[1]
            if (
                len(dims) != 2
                or not all(is_int(d) and 0 <= d < num_dims for d in dims)
                or dims[0] == dims[1]
            ):
                where = "z" if name is None else f"z[{name!r}]"
                raise ValueError(
                    f"Expected dims to be two distinct latent dims in [0, {num_dims}) of "
                    f"{where} but got {dims!r}"
                )
    return z, labels, dims


def plot_aggregate_posterior(
    z, labels=None, max_points: int = 5000, dims: tuple | None = None, ax=None
) -> Figure:
    """The aggregate posterior q(z) = (1/N) Σ_n q(z|x_n) against the prior p(z) = N(0, I).

    The KL term of the ELBO, averaged over the data, is
    I(x; z) + KL(q(z) ‖ p(z)) (Hoffman & Johnson, 2016). Where q(z) leaves holes in the
    prior, or spills outside it, z drawn from the prior land where the decoder was
    not trained, and samples from the model suffer. Draws z ~ q(z|x_n), pooled over n,
    are draws of q(z).

    One column of panels per entry of ``z`` (e.g. per training objective), titled by
    its label and the number of draws:

    - D = 2: the normalized 2-D histogram of the draws (40 × 40 bins, colour bar in
      density per unit area), with the prior's 1, 2 and 3 s.d. circles over it;
    - D ≥ 3: that panel for the projection on two dimensions (by default the two of
      largest variance; its title says which), above a grid of small panels, one per
      dimension, each the histogram of z_d (40 bins, density) with the N(0, 1)
      density over it;
    - D = 1: the one histogram panel.

    Both axes of the 2-D panel, and the x axes of the histograms, span ±r, with r the
    largest 99.8 % quantile of abs(z_d) over the dimensions, at least 3.5 (the 3 s.d.
    circle), plus 5 %; the rare draws beyond are left out of the histograms, which are
    normalized over the draws inside.

    Parameters
    ----------
    z : torch.Tensor, array_like or dict of str to array_like
        Draws of q(z), shape ``(S, D)`` (e.g. one draw z ~ q(z|x_n) per test point, or
        several), or label -> such an array (S and D may differ between labels).
    labels : array_like, optional
        A class per draw (e.g. the digit of x_n), shape ``(S,)``, the same for every
        entry of ``z``. When given, the 2-D panel is a scatter of the draws coloured by
        class (one colour per distinct value, in sorted order) instead of a density.
    max_points : int, default 5000
        At most this many draws are scattered (with ``labels``), evenly spaced through
        the S draws; the histograms always use all draws.
    dims : tuple of int, optional
        The two latent dimensions of the 2-D panel, for every entry of ``z``. Default:
        (0, 1) for D = 2, the two of largest variance (largest on x) for D ≥ 3.
    ax : None, Figure or SubFigure, optional
        Where to draw: None makes a new figure (sized for the panels, the legend in a
        strip below them); a Figure or SubFigure receives one subfigure per entry of
        ``z`` and the legend at its bottom. Axes cannot be given: each column is a grid
        of its own.

    Returns
    -------
    matplotlib.figure.Figure
        Suptitle "aggregate posterior q(z) vs prior p(z)". ``fig.subfigs[j]`` is the
        column of the j-th entry of ``z``, its suptitle the label and the number of
        draws. When D ≥ 2 its ``axes[0]`` is the 2-D panel: x label ``"z[i]"``, y label
        ``"z[j]"`` for the dims shown; without ``labels`` its ``images[0]`` holds the
        density array, shape (40, 40), rows along z[j], over ``get_extent()``; with
        ``labels``, one scatter per class in ``collections``, named by the panel's
        own legend; in both, ``lines`` labelled ``"prior 1 s.d."``, ``"prior 2 s.d."``
        and ``"prior 3 s.d."`` are the circles. Then, for D ≠ 2, one axes per
        dimension d in order, titled ``"z[d]"``, whose ``patches[0]`` is the histogram
        (a :class:`~matplotlib.patches.StepPatch`, ``get_data()`` giving the densities
        and bin edges) and whose ``lines[0]`` is the N(0, 1) density. The colour bar's
        axes come last. The legend (``fig.legends[0]``, in a strip at the bottom)
        names the prior's circles and, for D ≠ 2, the histogram and density.

    Raises
    ------
    ValueError
        If an array is not 2-D and non-empty or has non-finite values, ``z`` is an
        empty dict, ``labels`` does not have one entry per draw, ``max_points`` is not
        an integer ≥ 1, or ``dims`` is not two distinct dims of every entry.

    References
    ----------
    1. M. D. Hoffman, M. J. Johnson, "ELBO surgery: yet another way to carve up the
       variational evidence lower bound", NIPS Workshop on Advances in Approximate
       Bayesian Inference, 2016.
    """
    z, labels, dims = _check_posterior_args(z, labels, max_points, dims)
    layouts = {}
    for name, draws in z.items():
        num_dims = draws.shape[1]
        cols = min(num_dims, max(3, math.ceil(math.sqrt(num_dims)))) if num_dims != 2 else 0
        rows = math.ceil(num_dims / cols) if cols else 0
        layouts[name] = (cols, rows)
    width = max(4.6, *(0.75 * cols for cols, _ in layouts.values()))
    height = max(
        (width - 0.9 if draws.shape[1] > 1 else 0.0) + rows * (0.75 * width / max(cols, 1))
        for draws, (cols, rows) in zip(z.values(), layouts.values(), strict=True)
    )
    handles = _posterior_handles(z, labels)
    if ax is None:
        fig = Figure(figsize=(width * len(z), height + 0.6), layout="constrained")
        _legend_below(fig, handles)
    elif isinstance(ax, FigureBase):
        fig = ax
        figure_legend(fig, handles=handles, fontsize="small", frameon=False)
    else:
        raise ValueError(f"Expected ax to be None, a Figure or a SubFigure but got {ax!r}")
    columns = fig.subfigures(1, len(z), squeeze=False)[0]
    for column, (name, draws) in zip(columns, z.items(), strict=True):
        num_dims = draws.shape[1]
        cols, rows = layouts[name]
        limit = _limit(draws)
        head = f"{len(draws)} draws" if name is None else f"{name}  ({len(draws)} draws)"
        column.suptitle(head, fontsize="medium")
        project = num_dims >= 2
        grid = column.add_gridspec(
            int(project) + rows,
            max(cols, 1),
            height_ratios=[width - 0.9] * project + [0.75 * width / max(cols, 1)] * rows,
        )
        projection = column.add_subplot(grid[0, :]) if project else None
        marginals = [
            column.add_subplot(grid[int(project) + d // cols, d % cols])
            for d in range(num_dims if cols else 0)
        ]
        for d, ax in enumerate(marginals):
            _marginal(ax, draws[:, d], limit)
            ax.set_title(f"z[{d}]", fontsize="x-small", pad=2)
        if project:
            shown = dims
            if shown is None and num_dims == 2:
                shown = (0, 1)
            elif shown is None:
                largest = np.argsort(-draws.var(axis=0), kind="stable")[:2]
                shown = (int(largest[0]), int(largest[1]))
            _projection(column, projection, draws, shown, limit, labels, max_points)
            if num_dims > 2:
                why = "largest variance" if dims is None else "chosen"
                projection.set_title(
                    f"projection on z[{shown[0]}], z[{shown[1]}] ({why})", fontsize="small"
                )
    fig.suptitle("aggregate posterior q(z) vs prior p(z)")
    return fig


def _check_threshold(threshold):
    if (
        not isinstance(threshold, numbers.Real)
        or isinstance(threshold, bool)
        or not math.isfinite(threshold)
        or threshold <= 0
    ):
        raise ValueError(f"Expected threshold to be a finite number > 0 but got {threshold!r}")


def _check_units(activity, kl):
    """Validate the arrays of :func:`plot_active_units`; return label -> (A, KL or None)."""
    if isinstance(activity, dict) != isinstance(kl, dict):
        raise ValueError("Expected activity and kl both to be arrays or both dicts")
    activity = _by_label(activity, "activity", 1)
    if isinstance(kl, dict):  # None: a guide without per-dimension KL (a flow)
        known = _by_label({k: v for k, v in kl.items() if v is not None} or {"": [0.0]}, "kl", 1)
        kl = {str(k): None if v is None else known[str(k)] for k, v in kl.items()}
    else:
        kl = _by_label(kl, "kl", 1)
    if list(activity) != list(kl):
        raise ValueError(
            f"Expected the same labels, in the same order, in activity and kl but got "
            f"{list(activity)} and {list(kl)}"
        )
    units = {}
    for name, values in activity.items():
        where = "" if name is None else f"[{name!r}]"
        if (values < 0).any():
            raise ValueError(f"Expected activity{where} ≥ 0 (a variance) but got {values.min()}")
        if kl[name] is not None and kl[name].shape != values.shape:
            raise ValueError(
                f"Expected kl{where} of the shape of activity{where}, {values.shape}, "
                f"but got {kl[name].shape}"
            )
        units[name] = (values, kl[name])
    return units


KL_LOG_SPAN = 30
""":func:`plot_active_units` draws the KL on a log axis when one run's largest KL
exceeds this many times every other run's."""

KL_FLOOR = 1e-3
"""Lowest KL (nats per point) shown on that log axis."""


def plot_active_units(activity, kl, threshold: float = 0.01, ax=None) -> Figure:
    """Activity and KL per latent dimension; a unit is active when A_d > ``threshold``.

    The activity of dimension d is A_d = Cov_x(E_q[z_d | x]), the variance over the
    data of the guide's mean (Burda et al., 2016): a unit whose posterior mean does
    not move with x carries no information about it, and its KL(q(z_d|x) ‖ p(z_d))
    is then near 0 (a "collapsed" unit). Burda et al. call a unit active when
    A_d > 10⁻².

    Top panel: A_d as bars on a log axis, with a dashed line at ``threshold``; bars at
    or below it (inactive units) have a muted face. Activities below the floor
    ``threshold`` × 10⁻⁴ (e.g. exactly 0, which a log axis cannot show) are drawn at
    the floor, and the panel's title says so. Bottom panel: the average
    KL(q(z_d|x) ‖ p(z_d)) per dimension (nats per data point), the bars muted alike.
    With several runs, bars are grouped per dimension, one colour per label.

    Parameters
    ----------
    activity : array_like or dict of str to array_like
        A_d, shape ``(D,)``, non-negative; or label -> such an array (D may differ).
    kl : array_like or dict of str to array_like
        KL(q(z_d|x) ‖ p(z_d)) averaged over the data, nats per data point, shape
        ``(D,)``; a dict with the labels of ``activity`` in the same order, whose value
        is None for a guide without per-dimension marginals (a flow guide): its
        activity is drawn, its KL bars are left out and the KL panel's title says so.
    threshold : float, default 0.01
        A unit is active when A_d > ``threshold``.
    ax : None, Figure, Axes or sequence of Axes, optional
        Where to draw (:mod:`pyro_vae.viz.style`): the activity panel, then the KL one.

    Returns
    -------
    matplotlib.figure.Figure
        Suptitle ``"active units (A_d > <threshold>): <label>: <n>/<D>, ..."`` (no
        labels for a single array). ``fig.axes[0]`` (log y axis, ``"activity"`` in
        its y label) and ``fig.axes[1]`` (KL) share the x axis, latent dimension d;
        ``ax.containers[i]`` holds the bars of the i-th label, at x = d offset by
        (i − (n−1)/2) × 0.8/n for n labels; in ``fig.axes[0]`` each bar spans from
        the bottom of the axis to max(A_d, floor) (its ``get_y() + get_height()``),
        in ``fig.axes[1]`` from 0 to the KL. The face alpha is 1 for active units and
        0.3 for the others. ``fig.axes[0].lines[0]`` is the dashed threshold line;
        the title of ``fig.axes[0]`` names the floor when a value was raised to it. The
        legend (``fig.legends[0]``) names the labels, the muted face and the line.

    Raises
    ------
    ValueError
        If an array is not 1-D and non-empty or not finite, an activity is negative,
        one argument is a dict and the other not, the labels differ, a KL array's
        shape differs from its activity's, or ``threshold`` is not a number > 0.

    References
    ----------
    1. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders",
       ICLR 2016.
    """
    _check_threshold(threshold)
    units = _check_units(activity, kl)
    floor = threshold * _FLOOR_RATIO
    bottom = floor / 3
    num = len(units)
    width = 0.8 / num
    num_dims = max(len(a) for a, _ in units.values())
    figsize = (min(16.0, max(7.5, 2.5 + 0.16 * num_dims * (num + 1))), 6.6)
    fig, axes = panels(ax, (2, 1), figsize, sharex=True)
    ax_a, ax_kl = axes[:, 0]
    counts = []
    for i, (name, (values, kls)) in enumerate(units.items()):
        color = f"C{i % 10}"
        active = values > threshold
        faces = [to_rgba(color, 1.0 if on else _MUTED_ALPHA) for on in active]
        x = np.arange(len(values)) + (i - (num - 1) / 2) * width
        shown = np.maximum(values, floor)
        ax_a.bar(
            x,
            shown - bottom,
            width,
            bottom=bottom,
            color=faces,
            edgecolor=color,
            lw=0.8,
            label=name,
        )
        if kls is not None:
            ax_kl.bar(x, kls, width, color=faces, edgecolor=color, lw=0.8, label=name)
        counts.append(
            f"{active.sum()}/{len(values)}"
            if name is None
            else f"{name}: {active.sum()}/{len(values)}"
        )
    ax_a.set_yscale("log")
    top = max(threshold, *(a.max() for a, _ in units.values()))
    ax_a.set_ylim(bottom, top * 4)
    ax_a.axhline(threshold, color="black", ls="--", lw=1.0, label=f"threshold {threshold:g}")
    title = "activity A_d per latent dimension"
    if any((a < floor).any() for a, _ in units.values()):
        title += f"; A_d < {floor:g} (e.g. 0, which a log axis cannot show) drawn at {floor:g}"
    ax_a.set_title(title, fontsize="medium", loc="left")
    ax_a.set_ylabel("A_d = Cov_x(E_q[z_d])\n(log scale)")
    kl_title = "KL(q(z_d|x) ‖ p(z_d)) per latent dimension"
    tops = sorted((float(k.max()) for _, k in units.values() if k is not None), reverse=True)
    if len(tops) > 1 and tops[0] > KL_LOG_SPAN * max(tops[1], KL_FLOOR):
        # one run far above the others (β = 0: tens of nats per dimension) would hide
        # the rest on a linear axis
        ax_kl.set_yscale("log")
        ax_kl.set_ylim(KL_FLOOR, tops[0] * 2)
        kl_title += f" (log scale; KL < {KL_FLOOR:g} at the bottom)"
    missing = [str(name) for name, (_, k) in units.items() if k is None]
    if missing:
        kl_title += f"; not drawn for {', '.join(missing)} (no per-dimension marginals)"
    ax_kl.set_title(kl_title, fontsize="medium", loc="left")
    ax_kl.set_ylabel(f"KL {UNITS}")
    ax_kl.set_xlabel("latent dimension d")
    if num_dims <= 32:
        ax_kl.set_xticks(range(num_dims))
    else:
        ax_kl.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_kl.set_xlim(-0.6, num_dims - 0.4)
    for ax in (ax_a, ax_kl):
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(wrap(f"active units (A_d > {threshold:g}): " + ", ".join(counts), 110))
    if num == 1 and None in units:
        handles = [Patch(facecolor="C0", edgecolor="C0", label=f"active (A_d > {threshold:g})")]
    else:
        handles = [
            Patch(facecolor=f"C{i % 10}", edgecolor=f"C{i % 10}", label=name)
            for i, name in enumerate(units)
        ]
    handles.append(
        Patch(
            facecolor=to_rgba("0.4", _MUTED_ALPHA),
            edgecolor="0.4",
            label=f"muted: inactive (A_d ≤ {threshold:g})",
        )
    )
    handles.append(Line2D([], [], color="black", ls="--", label=f"threshold {threshold:g}"))
    figure_legend(fig, handles=handles, fontsize="small", ncols=min(len(handles), 4))
    return fig


def plot_gap_split(gap_rows, ax=None) -> Figure:
    """Each objective's gap as stacked bars: approximation gap below, amortization above.

    The inference gap log p(x) − L[q] = (log p(x) − L[q*]) + (L[q*] − L[q]) (Cremer, Li &
    Duvenaud 2018), with q* the per-point optimum of the amortized guide's family; error
    bars are ± one Monte-Carlo s.e. of each part; a dot marks the gap that a per-point
    flow leaves, log p(x) − L[q*_flow], where it was fitted.

    Parameters
    ----------
    gap_rows : list of pyro_vae.results.GapRow
        As :attr:`pyro_vae.experiments.compare.Comparison.gap_rows`; rows without the
        split are skipped.
    ax : None, Figure or Axes, optional
        Where to draw (:mod:`pyro_vae.viz.style`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .style import figure_legend, panels

    rows = [row for row in gap_rows if "approximation_gap" in row.estimates]
    fig, axes = panels(ax, (1, 1), (1.6 + 1.3 * max(len(rows), 1), 4.2))
    axis = axes[0, 0]
    positions = np.arange(len(rows))
    approx = [row.estimates["approximation_gap"] for row in rows]
    amort = [row.estimates["amortization_gap"] for row in rows]
    axis.bar(positions, [e.mean for e in approx], 0.6, yerr=[e.se or 0 for e in approx],
             color="C0", label="approximation gap  log p(x) − L[q*]")  # fmt: skip
    axis.bar(positions, [e.mean for e in amort], 0.6, bottom=[e.mean for e in approx],
             yerr=[e.se or 0 for e in amort], color="C1",
             label="amortization gap  L[q*] − L[q]")  # fmt: skip
    flows = [(i, row) for i, row in enumerate(rows) if "elbo_local_flow" in row.estimates]
    if flows:
        axis.plot([i for i, _ in flows],
                  [r.estimates["log_px"].mean - r.estimates["elbo_local_flow"].mean
                   for _, r in flows],
                  "kD", label="log p(x) − L[q*] of a per-point flow")  # fmt: skip
    axis.set_xticks(positions, [row.objective for row in rows], rotation=20, ha="right")
    axis.set_ylabel(f"gap {UNITS}")
    axis.axhline(0, color="0.5", lw=0.8)
    if isinstance(ax, Axes):  # a user's axes: the legend inside them
        axis.legend(fontsize="small")
    else:  # a figure of our own or of the user's: below the panels
        figure_legend(fig, fontsize="small")
    return fig
