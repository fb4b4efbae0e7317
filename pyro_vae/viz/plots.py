"""Figures: learning curves, bounds, images, and posteriors in the latent plane.

Every function builds a :class:`matplotlib.figure.Figure` directly (never pyplot),
so no backend or display is needed and importing this module changes no global
matplotlib state; :func:`save_figure` writes one as PNG atomically. The inputs are
those of :mod:`pyro_vae.experiments.report`.

Images are grey, black 0 to white 1 (digits are white strokes on black). Where
several are tiled into one picture, the 1-pixel gaps between them (and the empty
cells of a grid) are drawn in a blue (:data:`GAP_COLOR`) that no pixel value maps
to, so a separator cannot be mistaken for a stroke or for the background.
"""

import math
import os
import re

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullLocator
from matplotlib.transforms import ScaledTranslation

from .._checks import check_int, is_int
from .._io import atomic_path
from ..experiments.report import estimate_label

__all__ = [
    "GAP_COLOR",
    "MARKERS",
    "UNITS",
    "plot_bounds",
    "plot_image_grid",
    "plot_latent_map",
    "plot_posterior_draws",
    "plot_reconstructions",
    "plot_validation_curves",
    "save_figure",
]

GAP_COLOR = "#4f86c6"
"""Colour of the gaps between tiled images: a mid blue, unlike any grey of the images."""

_GRAY = matplotlib.colormaps["gray"].with_extremes(bad=GAP_COLOR)
_CURVE_LABELS = {"val_iwae": "validation L_k", "val_elbo": "validation ELBO"}
UNITS = "(nats per data point)"
"""Axis-label suffix of every per-point quantity in nats."""
MARKERS = ("o", "s", "D", "^", "v", "P", "X")
"""Marker shapes cycled over objectives, so lines differ beyond their colour."""
_DODGE_POINTS = 5.0  # horizontal offset between objectives in plot_bounds, in points


def _check_histories(histories, key, best_epochs):
    """Validate the arguments of :func:`plot_validation_curves`; return best_epochs."""
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
    best_epochs = {} if best_epochs is None else dict(best_epochs)
    for name, epoch in best_epochs.items():
        if name not in histories:
            raise ValueError(
                f"Expected the keys of best_epochs among the objectives {list(histories)} "
                f"but got {name!r}"
            )
        if epoch not in [r["epoch"] for r in histories[name]]:
            raise ValueError(
                f"Expected best_epochs[{name!r}] to be an epoch of its history but got {epoch!r}"
            )
    return best_epochs


def _curves(histories, key, best_epochs):
    """Per objective: epochs, the solid curve, the dashed ELBO (or None), the best epoch.

    Also returns whether ``key`` was in every record (else the solid curve is
    −train_loss).
    """
    validated = all(key in r for history in histories.values() for r in history)
    dashed = (
        validated
        and key != "val_elbo"
        and all("val_elbo" in r for history in histories.values() for r in history)
    )
    curves = {}
    for name, history in histories.items():
        epochs = np.array([r["epoch"] for r in history], dtype=float)
        solid = np.array([r[key] if validated else -r["train_loss"] for r in history], float)
        elbo = np.array([r["val_elbo"] for r in history], float) if dashed else None
        if name in best_epochs:
            best = float(best_epochs[name])
        elif validated and np.isfinite(solid).any():
            best = float(epochs[np.nanargmax(solid)])  # the first of ties, as fit does
        else:
            best = None
        curves[name] = (epochs, solid, elbo, best)
    return curves, validated


def _zoom_limits(curves):
    """x and y limits of the zoom panel of :func:`plot_validation_curves`."""
    starts, values, end = [], [], -math.inf
    for epochs, solid, elbo, best in curves.values():
        start = len(epochs) // 2
        if best is not None:
            start = min(start, int(np.flatnonzero(epochs == best)[0]))
        starts.append(epochs[start])
        end = max(end, epochs.max())
        values.extend(solid[start:])
        if elbo is not None:
            values.extend(elbo[start:])
    values = np.asarray(values)
    values = values[np.isfinite(values)]
    x0 = min(starts)
    margin = max(0.5, 0.02 * (end - x0))  # in epochs, so that end stars are not cut
    xlim = (x0 - margin, end + margin)
    if values.size == 0:
        return xlim, None
    low, high = float(values.min()), float(values.max())
    pad = 0.05 * (high - low) if high > low else 0.1
    return xlim, (low - pad, high + pad)


def _draw_curves(ax, curves, best_lines):
    """Draw the curves of :func:`_curves` on ``ax`` (dotted lines at the best epochs if asked)."""
    for i, (name, (epochs, solid, elbo, best)) in enumerate(curves.items()):
        color = f"C{i % 10}"
        few = len(epochs) < 30
        ax.plot(epochs, solid, color=color, marker="o" if few else None, ms=3, label=name)
        if elbo is not None:
            ax.plot(
                epochs,
                elbo,
                color=color,
                ls="--",
                marker="o" if few else None,
                ms=3,
                label=f"{name} ELBO",
            )
        if best is not None:
            ax.plot(
                [best],
                [solid[epochs == best][0]],
                ls="none",
                marker="*",
                ms=13,
                color=color,
                mec="black",
                mew=0.6,
                zorder=3,
                label=f"{name} best epoch",
            )
            if best_lines:
                ax.axvline(best, color=color, ls=":", lw=1.2, label=f"{name} best epoch line")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def plot_validation_curves(histories, key="val_iwae", best_epochs=None):
    """Validation bounds per epoch, whole run and late epochs, one colour per objective.

    Left panel: the whole run. Right panel: a zoom on the late epochs, where the
    objectives differ by tenths of a nat that the climb of the first epochs would
    squeeze flat. In both, each objective is drawn in one colour: the bound ``key``
    solid and, when ``key`` is ``"val_iwae"`` and the records have ``"val_elbo"``,
    the validation ELBO dashed, so the gap L_k − ELBO is seen during training. A star
    marks each run's best epoch (a dotted vertical line too in the zoom).

    If not every epoch record has ``key`` (no validation data), the training bound
    −``train_loss`` is drawn instead, for all objectives, so that the lines share one
    y axis; then there is no dashed line, and stars only for ``best_epochs``.

    Parameters
    ----------
    histories : dict of str to list of dict
        Objective label -> per-epoch records with ``"epoch"``, ``"train_loss"``
        (negative training bound, nats per data point) and optionally
        ``"val_elbo"``, ``"val_iwae"`` (nats per data point), as in
        :attr:`pyro_vae.FitResult.history`.
    key : {"val_iwae", "val_elbo"}, default "val_iwae"
        The validation bound drawn solid: L_k (k = ``fit``'s ``val_samples``) or the
        ELBO.
    best_epochs : dict of str to int, optional
        Objective label -> its best epoch (e.g. :attr:`pyro_vae.FitResult.best_epoch`),
        for some or all objectives. Default, and for objectives not in it: the
        first epoch with the highest ``key`` value (none without validation).

    Returns
    -------
    matplotlib.figure.Figure
        Two axes, ``fig.axes[0]`` the whole run and ``fig.axes[1]`` the zoom; x: epoch,
        y: nats per data point. Each holds, per objective in the order of
        ``histories``, lines labelled ``<objective>`` (solid), ``<objective> ELBO``
        (dashed, when drawn), ``<objective> best epoch`` (one star at the best epoch
        and its solid-curve value) and, in the zoom only, ``<objective> best epoch
        line`` (dotted, vertical). The zoom's x range runs from the earliest start of
        a run's second half (or of its best epoch, if earlier) to the last epoch,
        padded by 2 % (at least half an epoch); its y range spans, padded by 5 %, the
        finite values the curves take from each run's own start on, so earlier values
        may lie below it. The legend (in ``fig.legends[0]``) names the colours and the
        line styles.

    Raises
    ------
    ValueError
        If ``histories`` is empty, a history is empty or lacks ``"epoch"`` or
        ``"train_loss"``, ``key`` is not one of the above, or ``best_epochs`` names
        an unknown objective or an epoch not in its history.
    """
    best_epochs = _check_histories(histories, key, best_epochs)
    curves, validated = _curves(histories, key, best_epochs)
    fig = Figure(figsize=(11.0, 4.6), layout="constrained")
    whole, zoom = fig.subplots(1, 2)
    for ax in (whole, zoom):
        _draw_curves(ax, curves, best_lines=ax is zoom)
    xlim, ylim = _zoom_limits(curves)
    zoom.set_xlim(*xlim)
    if ylim is not None:
        zoom.set_ylim(*ylim)
    whole.set_title("whole run", fontsize="medium")
    zoom.set_title("zoom: second half of each run (and its best epoch)", fontsize="medium")
    solid_label = _CURVE_LABELS[key] if validated else "−train loss"
    dashed = any(elbo is not None for _, _, elbo, _ in curves.values())
    whole.set_ylabel(f"{'validation bound' if dashed else solid_label} {UNITS}")
    if validated:
        fig.suptitle("Validation bounds per epoch")
    else:
        fig.suptitle(f"Training bound per epoch (no {key!r} in the histories)")
    handles = [
        Line2D([], [], color=f"C{i % 10}", lw=2, label=name) for i, name in enumerate(curves)
    ]
    handles.append(Line2D([], [], color="black", label=f"solid: {solid_label}"))
    if dashed:
        handles.append(Line2D([], [], color="black", ls="--", label="dashed: validation ELBO"))
    if any(best is not None for *_, best in curves.values()):
        handles.append(
            Line2D(
                [],
                [],
                ls="none",
                marker="*",
                ms=11,
                color="0.6",
                mec="black",
                mew=0.6,
                label="star: best epoch",
            )
        )
    # at most 4 columns, so long objective names wrap into rows instead of off the page
    fig.legend(
        handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize="small"
    )
    return fig


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
    labels = [str(row.get("objective", f"rows[{i}]")) for i, row in enumerate(rows)]
    means = np.empty((len(rows), len(names)))
    errors = np.empty_like(means)
    for i, row in enumerate(rows):
        for j, name in enumerate(names):
            for key, out in ((f"test_{name}", means), (f"test_{name}_se", errors)):
                if key not in row:
                    raise ValueError(
                        f"Expected key {key!r} in the row of objective {labels[i]!r}; "
                        f"it has {sorted(row)}"
                    )
                out[i, j] = float(row[key])
                if not math.isfinite(out[i, j]):
                    raise ValueError(
                        f"Expected a finite {key!r} for objective {labels[i]!r} "
                        f"but got {row[key]!r}"
                    )
    return labels, means, errors


def plot_bounds(rows, names=("elbo", "iwae_5", "iwae_50", "log_px"), num_samples=5000):
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
    rows : list of dict
        One dict per objective with ``"objective"``, and ``"test_<name>"`` (mean,
        nats per data point) and ``"test_<name>_se"`` (its standard error, nats)
        for each of ``names``.
    names : sequence of str, default ("elbo", "iwae_5", "iwae_50", "log_px")
        The estimates to draw: ``"elbo"`` (k = 1), ``"iwae_<k>"`` and ``"log_px"``
        (k = ``num_samples``); drawn in increasing k.
    num_samples : int, default 5000
        K, the number of importance samples of the log p(x) estimate.

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
    if not rows:
        raise ValueError(f"Expected rows to be a non-empty list of dicts but got {rows!r}")
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

    fig = Figure(figsize=(11.0 if gap_panel else 6.4, 4.8), layout="constrained")
    axes = fig.subplots(1, 2 if gap_panel else 1, squeeze=False)[0]
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
    fig.legend(
        handles=axes[0].containers,
        labels=labels,
        loc="outside lower center",
        ncols=min(len(rows), 4),
        fontsize="small",
        title="training objective",
        title_fontsize="small",
    )
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
        or not all(is_int(d) and d > 0 for d in image_shape)
        or image_shape[0] * image_shape[1] != images.shape[1]
    ):
        raise ValueError(
            f"Expected image_shape (H, W) with H*W equal to the width of {name}, "
            f"{images.shape[1]}, but got {tuple(image_shape)}"
        )
    return images.reshape(-1, *image_shape)


def _mosaic(images, nrows, ncols):
    """Tile (n, H, W) images into an (nrows*(H+1)-1, ncols*(W+1)-1) array.

    The 1-pixel gaps and the cells beyond n are NaN, drawn in :data:`GAP_COLOR` by
    :func:`_show`.
    """
    n, height, width = images.shape
    out = np.full((nrows * (height + 1) - 1, ncols * (width + 1) - 1), np.nan)
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = r * (height + 1), c * (width + 1)
        out[top : top + height, left : left + width] = images[i]
    return out


def _show(ax, mosaic, extent=None):
    """Grey image, black 0 to white 1, NaN (gaps) in :data:`GAP_COLOR`.

    Without ticks, unless ``extent`` places the image in data coordinates.
    """
    ax.imshow(mosaic, cmap=_GRAY, vmin=0.0, vmax=1.0, interpolation="nearest", extent=extent)
    if extent is None:
        ax.set_xticks([])
        ax.set_yticks([])


def plot_image_grid(images, image_shape, nrows=None, title=None):
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
        Title of the figure.

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
    images = _as_images(images, image_shape)
    n = images.shape[0]
    if nrows is None:
        nrows = math.ceil(n / math.ceil(math.sqrt(n)))
    if not is_int(nrows) or not 1 <= nrows <= n:
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


def plot_reconstructions(data, reconstructions, image_shape, n=10, title=None):
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
    data = _as_images(data, image_shape, "data")
    if not isinstance(reconstructions, dict):
        reconstructions = {"reconstruction": reconstructions}
    if not reconstructions:
        raise ValueError("Expected reconstructions to be an array or a non-empty dict")
    rows = {"data": data}
    for label, images in reconstructions.items():
        name = f"reconstructions[{label!r}]"
        images = _as_images(images, image_shape, name)
        if images.shape != data.shape:
            raise ValueError(
                f"Expected {name} of the same shape as data, {data.shape[0]} images, "
                f"but got {images.shape[0]}"
            )
        rows[str(label)] = images
    n = min(n, data.shape[0])
    height, width = data.shape[1:]
    mosaic = _mosaic(np.concatenate([images[:n] for images in rows.values()]), len(rows), n)
    scale = min(0.8, 9.0 / n)  # inches per image, at most 9 inches wide
    fig = Figure(figsize=(n * scale + 1.6, len(rows) * scale + 0.6), layout="constrained")
    ax = fig.add_subplot()
    _show(ax, mosaic)
    centres = [r * (height + 1) + (height - 1) / 2 for r in range(len(rows))]
    ax.set_yticks(centres, list(rows), fontsize="medium")
    ax.tick_params(axis="y", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(title or "Reconstructions: decoder mean at one draw z ~ q(z|x)", fontsize="medium")
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
    _show(ax_grid, _mosaic(decoded, side, side), extent=extent)
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
