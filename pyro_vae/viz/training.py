"""Figures of training: validation bounds per epoch, and the gap log p(x) − ELBO along it.

:func:`plot_validation_curves` draws each run's validation bounds (whole run and a zoom
on the late epochs); :func:`plot_gap_during_training` the importance-sampling log p(x),
the ELBO and their gap KL(q(z|x) ‖ p(z|x)) measured every few epochs. Bounds are in nats
per data point. ``ax`` as in :mod:`pyro_vae.viz.style`.
"""

import math
import textwrap

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .labels import UNITS
from .style import MARKERS, figure_legend, panels

__all__ = ["plot_gap_during_training", "plot_validation_curves"]

_CURVE_LABELS = {"val_iwae": "validation L_k", "val_elbo": "validation ELBO"}
_GAP_KEYS = ("gap_log_px", "gap_elbo", "gap", "gap_se")


def wrap(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters, words kept whole."""
    return "\n".join(textwrap.wrap(text, width, break_long_words=False))


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


def plot_validation_curves(
    histories: dict, key: str = "val_iwae", best_epochs: dict | None = None, ax=None
) -> Figure:
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
    ax : None, Figure, Axes or sequence of Axes, optional
        Where to draw (:mod:`pyro_vae.viz.style`): the whole-run panel, then the zoom.

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
    fig, axes = panels(ax, (1, 2), (11.0, 4.6))
    whole, zoom = axes[0]
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
    figure_legend(fig, handles=handles, ncols=min(len(handles), 4), fontsize="small")
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


def plot_gap_during_training(histories: dict, ax=None) -> Figure:
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
    ax : None, Figure, Axes or sequence of Axes, optional
        Where to draw (:mod:`pyro_vae.viz.style`): the log p(x), ELBO and gap panels, in this order.

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
    fig, axes = panels(ax, (3, 1), (8.5, 8.4), sharex=True)
    axes = axes[:, 0]
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
    legend = figure_legend(fig, handles=handles, fontsize="small", ncols=min(len(handles), 4))
    if left_out:
        legend.set_title(
            wrap("no gap records, not drawn: " + ", ".join(left_out), 100), prop={"size": "small"}
        )
    return fig
