"""Figures of the "ELBO anatomy" sections of a comparison report.

The ELBO = E_q log p(x|z) − KL(q(z|x) ‖ p(z)) = log p(x) − KL(q(z|x) ‖ p(z|x)) can be
taken apart in several ways, one figure each:

- :func:`plot_aggregate_posterior`: the aggregate posterior q(z) = (1/N) Σ_n q(z|x_n)
  against the prior p(z) = N(0, I), whose mismatch the KL term pays for (Hoffman &
  Johnson, 2016);
- :func:`plot_active_units`: which latent dimensions carry information, by the
  activity A_d = Cov_x(E_q[z_d]) (Burda et al., 2016), and the KL each one costs;
- :func:`plot_gap_during_training`: log p(x), the ELBO and their gap
  KL(q(z|x) ‖ p(z|x)) along training;
- :func:`plot_beta_schedules`: a comparison of β (KL weight) schedules such as
  warm-up (Bowman et al., 2016; Sønderby et al., 2016), with the rate–distortion view
  of Alemi et al. (2018).

As in :mod:`pyro_vae.viz.plots`, every function builds a :class:`matplotlib.figure.Figure`
directly (never pyplot) and changes no global matplotlib state; write one with
:func:`pyro_vae.viz.plots.save_figure`. Bounds, KLs and gaps are in nats per data point.

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
import textwrap

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .._checks import check_int, is_int
from .plots import MARKERS, UNITS

__all__ = [
    "plot_active_units",
    "plot_aggregate_posterior",
    "plot_beta_schedules",
    "plot_gap_during_training",
]

_PRIOR_COLOR = "C3"
_PRIOR_RADII = (1.0, 2.0, 3.0)
_PRIOR_STYLES = ("-", "--", ":")
_MUTED_ALPHA = 0.3  # face opacity of the bars of inactive units
_FLOOR_RATIO = 1e-4  # activity floor on the log axis, as a fraction of the threshold
_GAP_KEYS = ("gap_log_px", "gap_elbo", "gap", "gap_se")
_SCHEDULE_KEYS = (
    "schedule",
    "test_log_px",
    "test_elbo",
    "test_kl",
    "test_reconstruction",
    "num_active",
    "z_dim",
)


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


def _wrap(text, width):
    """``text`` broken into lines of at most ``width`` characters, words kept whole."""
    return "\n".join(textwrap.wrap(text, width, break_long_words=False))


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
    """Half-width of the square shown: the 99.8 % quantile of |z_d| (max over d), ≥ 3.5."""
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


def plot_aggregate_posterior(z, labels=None, max_points=5000, dims=None):
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
    largest 99.8 % quantile of |z_d| over the dimensions, at least 3.5 (the 3 s.d.
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
    fig = Figure(figsize=(width * len(z), height + 0.6), layout="constrained")
    _legend_below(fig, handles)
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
    """Validate the arrays of :func:`plot_active_units`; return label -> (A, KL)."""
    if isinstance(activity, dict) != isinstance(kl, dict):
        raise ValueError("Expected activity and kl both to be arrays or both dicts")
    activity = _by_label(activity, "activity", 1)
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
        if kl[name].shape != values.shape:
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


def plot_active_units(activity, kl, threshold=0.01):
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
        ``(D,)``; a dict with the labels of ``activity`` in the same order.
    threshold : float, default 0.01
        A unit is active when A_d > ``threshold``.

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
    fig = Figure(
        figsize=(min(16.0, max(7.5, 2.5 + 0.16 * num_dims * (num + 1))), 6.6), layout="constrained"
    )
    ax_a, ax_kl = fig.subplots(2, 1, sharex=True)
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
    tops = sorted((float(k.max()) for _, k in units.values()), reverse=True)
    if len(tops) > 1 and tops[0] > KL_LOG_SPAN * max(tops[1], KL_FLOOR):
        # one run far above the others (β = 0: tens of nats per dimension) would hide
        # the rest on a linear axis
        ax_kl.set_yscale("log")
        ax_kl.set_ylim(KL_FLOOR, tops[0] * 2)
        kl_title += f" (log scale; KL < {KL_FLOOR:g} at the bottom)"
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
    fig.suptitle(_wrap(f"active units (A_d > {threshold:g}): " + ", ".join(counts), 110))
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
    fig.legend(
        handles=handles, loc="outside lower center", fontsize="small", ncols=min(len(handles), 4)
    )
    return fig


def _gap_series(histories):
    """Objective -> (epoch, log p(x), ELBO, gap, s.e.) arrays of the records with gaps."""
    if not isinstance(histories, dict) or not histories:
        raise ValueError(
            "Expected histories to be a non-empty dict of objective -> list of epoch "
            f"records but got {histories!r}"
        )
    series = {}
    for name, history in histories.items():
        rows = []
        for record in history:
            present = [key for key in _GAP_KEYS if key in record]
            if not present:
                continue
            for key in ("epoch", *_GAP_KEYS):
                if key not in record:
                    raise ValueError(
                        f"Expected key {key!r} in the epoch records of objective {name!r} "
                        f"that have {present} but got {sorted(record)}"
                    )
            rows.append([float(record[key]) for key in ("epoch", *_GAP_KEYS)])
        if rows:
            table = np.asarray(rows)
            series[name] = table[np.argsort(table[:, 0], kind="stable")].T
    if not series:
        raise ValueError(
            f"Expected epoch records with keys {list(_GAP_KEYS)} in some history but "
            f"none of {list(histories)} has any"
        )
    return series


def plot_gap_during_training(histories):
    """log p(x), the ELBO and their gap KL(q(z|x) ‖ p(z|x)) on a validation subset, by epoch.

    Three panels sharing the epoch axis, one colour per objective, a marker at each
    recorded epoch: the importance-sampling estimate of log p(x), the ELBO, and the
    gap log p(x) − ELBO = KL(q(z|x) ‖ p(z|x)) with a band of ±2 standard errors and a
    grey line at 0. A gap that grows means the guide falls behind the model; one that
    shrinks, that the guide catches up or that the model moves towards posteriors
    the guide can fit.

    Parameters
    ----------
    histories : dict of str to list of dict
        Objective label -> per-epoch records (as :attr:`pyro_vae.FitResult.history`),
        all with ``"epoch"``; the records with ``"gap_log_px"``, ``"gap_elbo"``,
        ``"gap"`` and ``"gap_se"`` (nats per data point, measured every few epochs on
        a fixed validation subset) are drawn, the others skipped, in epoch order. A
        history without such records is left out of the figure (and named under the
        legend).

    Returns
    -------
    matplotlib.figure.Figure
        Suptitle "log p(x), ELBO and their gap during training (validation subset)".
        ``fig.axes[0]`` (log p(x)), ``fig.axes[1]`` (ELBO) and ``fig.axes[2]`` (gap)
        share the x axis, epoch; y in nats per data point. In each, ``lines[i]`` is
        the i-th drawn objective (label = objective), x the recorded epochs, y
        ``"gap_log_px"``, ``"gap_elbo"`` or ``"gap"`` respectively;
        ``fig.axes[2].collections[i]`` is its band, from gap − 2 s.e. to gap + 2 s.e.,
        and ``fig.axes[2].lines[-1]`` the line at 0. The legend (``fig.legends[0]``)
        names the objectives.

    Raises
    ------
    ValueError
        If ``histories`` is not a non-empty dict, a record with some of the gap keys
        lacks another one or ``"epoch"``, or no history has any gap record.
    """
    series = _gap_series(histories)
    fig = Figure(figsize=(8.5, 8.4), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    for i, (name, (epoch, log_px, elbo, gap, se)) in enumerate(series.items()):
        style = {"color": f"C{i % 10}", "marker": MARKERS[i % len(MARKERS)], "ms": 4}
        axes[0].plot(epoch, log_px, label=name, **style)
        axes[1].plot(epoch, elbo, label=name, **style)
        axes[2].plot(epoch, gap, label=name, **style)
        axes[2].fill_between(
            epoch,
            gap - 2 * se,
            gap + 2 * se,
            color=style["color"],
            alpha=0.2,
            lw=0,
            label=f"{name} ±2 s.e.",
        )
    axes[2].axhline(0.0, color="0.5", lw=0.8)
    titles = (
        ("log p(x)", "log p(x), importance-sampling estimate"),
        ("ELBO", "ELBO"),
        ("gap", "gap log p(x) − ELBO = KL(q(z|x) ‖ p(z|x)), band ±2 s.e."),
    )
    for ax, (short, title) in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize="medium", loc="left")
        ax.set_ylabel(f"{short}\n{UNITS}")
        ax.grid(alpha=0.3)
    axes[2].set_xlabel("epoch")
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("log p(x), ELBO and their gap during training (validation subset)")
    handles = axes[0].get_lines()
    left_out = [name for name in histories if name not in series]
    legend = fig.legend(
        handles=handles, loc="outside lower center", fontsize="small", ncols=min(len(handles), 4)
    )
    if left_out:
        legend.set_title(
            _wrap("no gap records, not drawn: " + ", ".join(left_out), 100), prop={"size": "small"}
        )
    return fig


def _schedule_table(rows):
    """Labels, value arrays by key, ±s.e. arrays by key (0 where absent), validated."""
    if not rows:
        raise ValueError(f"Expected rows to be a non-empty list of dicts but got {rows!r}")
    labels = []
    values = {key: np.empty(len(rows)) for key in _SCHEDULE_KEYS[1:]}
    errors = {key: np.zeros(len(rows)) for key in _SCHEDULE_KEYS[1:5]}
    for i, row in enumerate(rows):
        label = str(row.get("schedule", f"rows[{i}]"))
        for key in _SCHEDULE_KEYS:
            if key not in row:
                raise ValueError(
                    f"Expected key {key!r} in the row of schedule {label!r}; it has {sorted(row)}"
                )
        labels.append(label)
        for key in _SCHEDULE_KEYS[1:]:
            values[key][i] = float(row[key])
            if not math.isfinite(values[key][i]):
                raise ValueError(f"Expected a finite {key!r} for schedule {label!r}")
        for key in errors:
            errors[key][i] = float(row.get(f"{key}_se", 0.0))
        num_active, z_dim = row["num_active"], row["z_dim"]
        if not (is_int(num_active) and is_int(z_dim) and z_dim >= 1 and 0 <= num_active <= z_dim):
            raise ValueError(
                f"Expected integers 0 <= num_active <= z_dim, z_dim >= 1, for schedule "
                f"{label!r} but got num_active={num_active!r}, z_dim={z_dim!r}"
            )
    return labels, values, errors


RATE_FLOOR = 1e-3
"""Lowest rate (nats per point) drawn on the log axis of :func:`plot_beta_schedules`."""


def _zoom_past_outliers(ax, x, *series):
    """Limit the y axis to the bulk of the values and name those far outside it.

    The values are sorted; where the largest gap between neighbours exceeds 3 times the
    range of the larger side, the smaller side is off scale: the axis spans the larger
    side (padded) and each off-scale value is written at the axis edge, so one run far
    from the others (β = 0: hundreds of nats) does not flatten the rest.
    """
    values = np.concatenate(series)
    order = np.sort(values)
    if len(order) < 3:
        return
    gaps = np.diff(order)
    i = int(gaps.argmax())
    low, high = order[: i + 1], order[i + 1 :]
    keep = high if len(high) >= len(low) else low
    if gaps[i] <= 3 * max(float(keep.max() - keep.min()), 1e-9):
        return
    pad = 0.15 * max(float(keep.max() - keep.min()), 0.5)
    bottom, top = float(keep.min()) - pad, float(keep.max()) + pad
    ax.set_ylim(bottom, top)
    for i, xi in enumerate(x):
        off = [float(data[i]) for data in series if not bottom <= data[i] <= top]
        if off:
            below = off[0] < bottom
            text = "\n".join(f"{value:.1f}" for value in off) + "\n(off scale)"
            ax.annotate(text, (xi, bottom if below else top), ha="center",
                        va="bottom" if below else "top", fontsize="x-small",
                        color="C3")  # fmt: skip


def plot_beta_schedules(rows):
    """Test-set summary of a comparison of β (KL weight) schedules.

    Training with β·KL in place of the KL, and β warmed up from 0 to 1 (Bowman et
    al., 2016; Sønderby et al., 2016), is meant to keep latent units from collapsing
    early. Three panels:

    (a) test log p(x) and ELBO per schedule, points with ±2 standard errors when the
        rows give them (the two are set 0.1 apart sideways);
    (b) rate–distortion (Alemi et al., 2018): the distortion
        D = −E_q log p(x|z) on x against the rate R = KL(q(z|x) ‖ p(z)) on y, one
        point (±2 s.e. both ways, when given) per schedule, in its own colour and
        marker, named in the legend below the panels. Since
        ELBO = −(D + R), points on a line of slope −1 have equal ELBOs; the dotted one
        goes through the best;
    (c) active units per schedule, a coloured bar of ``num_active`` inside a grey one
        of ``z_dim``, labelled ``"<num_active>/<z_dim>"``, in the colours of (b).

    Parameters
    ----------
    rows : list of dict
        One dict per schedule with ``"schedule"`` (label), ``"test_log_px"``,
        ``"test_elbo"``, ``"test_kl"`` (KL(q(z|x) ‖ p(z))) and ``"test_reconstruction"``
        (E_q log p(x|z); ELBO = reconstruction − KL), all means over the test set in
        nats per data point; ``"num_active"`` and ``"z_dim"`` (int); optionally
        ``"<key>_se"`` for the four ``test_`` keys (standard errors, nats).

    Returns
    -------
    matplotlib.figure.Figure
        Suptitle "β schedules on the test set: ...". ``fig.axes[0]`` (a):
        ``containers[0]`` and ``containers[1]`` are the
        :class:`~matplotlib.container.ErrorbarContainer` of log p(x) and of the ELBO,
        whose ``lines[0]`` has x data the schedule index ∓ 0.1 and y data the means;
        x tick labels are the schedules (wrapped to fit). ``fig.axes[1]`` (b):
        ``containers[i]`` is the point of ``rows[i]``, its ``lines[0]`` with
        x = −reconstruction and y = KL; the dotted line (in ``lines``) has a label
        starting ``"D + R ="``. ``fig.axes[2]`` (c): ``containers[0]`` holds the bars
        of ``z_dim``, ``containers[1]`` those of ``num_active``, at the schedule
        indices. The legend (``fig.legends[0]``) names the schedules.

    Raises
    ------
    ValueError
        If ``rows`` is empty, a row lacks a key (named), a value is not finite, or
        ``num_active`` and ``z_dim`` are not integers with 0 ≤ num_active ≤ z_dim,
        z_dim ≥ 1.

    References
    ----------
    1. A. A. Alemi, B. Poole, I. Fischer, J. V. Dillon, R. A. Saurous, K. Murphy,
       "Fixing a Broken ELBO", ICML 2018.
    2. S. R. Bowman, L. Vilnis, O. Vinyals, A. M. Dai, R. Jozefowicz, S. Bengio,
       "Generating Sentences from a Continuous Space", CoNLL 2016.
    3. C. K. Sønderby, T. Raiko, L. Maaløe, S. K. Sønderby, O. Winther, "Ladder
       Variational Autoencoders", NIPS 2016.
    """
    labels, values, errors = _schedule_table(rows)
    num = len(labels)
    x = np.arange(num, dtype=float)
    fig = Figure(figsize=(max(13.0, 3.0 + 2.4 * num), 5.6), layout="constrained")
    # characters per line of a tick label: the narrowest panel's share, about 0.08 in each
    chars = max(8, int(0.2 * fig.get_figwidth() / num / 0.08))
    ticks = [_wrap(label, chars) for label in labels]
    ax_bounds, ax_rd, ax_units = fig.subplots(1, 3, width_ratios=[1.0, 1.15, 0.85])

    for key, shift, label, style in (
        ("test_log_px", -0.1, "log p(x) (IS estimate)", {"fmt": "o", "color": "black"}),
        ("test_elbo", 0.1, "ELBO", {"fmt": "s", "color": "0.45", "mfc": "white"}),
    ):
        ax_bounds.errorbar(
            x + shift, values[key], yerr=2 * errors[key], capsize=4, ms=6, label=label, **style
        )
    ax_bounds.set_ylabel(f"test bound {UNITS}")
    ax_bounds.set_title("(a) log p(x) and ELBO (±2 s.e.)", fontsize="medium")
    ax_bounds.legend(fontsize="small")
    _zoom_past_outliers(ax_bounds, x, values["test_log_px"], values["test_elbo"])

    distortion, rate = -values["test_reconstruction"], values["test_kl"]
    for i, label in enumerate(labels):
        ax_rd.errorbar(
            distortion[i : i + 1],
            rate[i : i + 1],
            xerr=2 * errors["test_reconstruction"][i : i + 1],
            yerr=2 * errors["test_kl"][i : i + 1],
            fmt=MARKERS[i % len(MARKERS)],
            color=f"C{i % 10}",
            ms=8,
            capsize=3,
            label=label,
        )
    ax_rd.margins(0.15)
    # rates span orders of magnitude (β = 0: hundreds of nats; collapse: ~0.01)
    ax_rd.set_yscale("log")
    floor = RATE_FLOOR
    ax_rd.set_ylim(max(floor, 0.5 * float(rate.min())), 2 * float(rate.max()))
    xlim, ylim = ax_rd.get_xlim(), ax_rd.get_ylim()
    total = float((distortion + rate).min())
    line_x = np.linspace(xlim[0], min(xlim[1], total - floor), 200)
    ax_rd.plot(
        line_x,
        total - line_x,
        color="0.5",
        ls=":",
        label=f"D + R = {total:.2f}: ELBO of the best",
    )
    ax_rd.set_xlim(xlim)
    ax_rd.set_ylim(ylim)
    ax_rd.set_xlabel(f"distortion D = −E_q log p(x|z)\n{UNITS}")
    ax_rd.set_ylabel(f"rate R = KL(q(z|x) ‖ p(z))\n{UNITS}")
    ax_rd.set_title("(b) rate–distortion (Alemi et al. 2018)", fontsize="medium")
    ax_rd.legend(handles=ax_rd.lines[-1:], fontsize="small", loc="upper right")

    z_dim, num_active = values["z_dim"], values["num_active"]
    ax_units.bar(x, z_dim, 0.6, color="0.92", edgecolor="0.6", label="z_dim")
    bars = ax_units.bar(
        x, num_active, 0.6, color=[f"C{i % 10}" for i in range(num)], label="active units"
    )
    ax_units.bar_label(
        bars,
        [f"{a:.0f}/{d:.0f}" for a, d in zip(num_active, z_dim, strict=True)],
        fontsize="small",
        padding=2,
    )
    ax_units.set_ylim(0, z_dim.max() * 1.12)
    ax_units.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_units.set_ylabel("latent dimensions")
    ax_units.set_title("(c) active units out of z_dim", fontsize="medium")

    for ax in (ax_bounds, ax_units):
        ax.set_xticks(x, ticks, fontsize="small")
        ax.set_xlim(-0.6, num - 0.4)
    for ax in (ax_bounds, ax_rd, ax_units):
        ax.grid(alpha=0.3)
    fig.suptitle("β schedules on the test set: bounds, rate–distortion and active units")
    fig.legend(
        handles=ax_rd.containers,
        labels=labels,
        loc="outside lower center",
        ncols=min(num, 4),
        fontsize="small",
        title="schedule",
        title_fontsize="small",
    )
    return fig
