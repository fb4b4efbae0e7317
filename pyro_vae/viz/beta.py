"""A comparison of β (KL weight) schedules on the test set: bounds, rate–distortion, units.

``ax`` as in :mod:`pyro_vae.viz.style`; nats per data point.

References
----------
1. A. A. Alemi, B. Poole, I. Fischer, J. V. Dillon, R. A. Saurous, K. Murphy,
   "Fixing a Broken ELBO", ICML 2018.
2. S. R. Bowman, L. Vilnis, O. Vinyals, A. M. Dai, R. Jozefowicz, S. Bengio,
   "Generating Sentences from a Continuous Space", CoNLL 2016.
3. C. K. Sønderby, T. Raiko, L. Maaløe, S. K. Sønderby, O. Winther, "Ladder
   Variational Autoencoders", NIPS 2016.
"""

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .._checks import is_int
from ..results import BetaRow, as_rows
from .labels import UNITS
from .style import MARKERS, figure_legend, panels
from .training import wrap

__all__ = ["RATE_FLOOR", "plot_beta_schedules"]

_KEYS = ("test_log_px", "test_elbo", "test_kl", "test_reconstruction", "num_active", "z_dim")


def _schedule_table(rows):
    """Labels, value arrays by key, ±s.e. arrays by key (0 where absent), validated."""
    rows = as_rows(rows, BetaRow)
    values = {key: np.empty(len(rows)) for key in _KEYS}
    errors = {key: np.zeros(len(rows)) for key in _KEYS[:4]}
    for i, row in enumerate(rows):
        for key in _KEYS[:4]:
            estimate = row.test[key.removeprefix("test_")]
            values[key][i], errors[key][i] = estimate.mean, estimate.se or 0.0
        values["num_active"][i], values["z_dim"][i] = row.num_active, row.z_dim
        for key in _KEYS:
            if not math.isfinite(values[key][i]):
                raise ValueError(f"Expected a finite {key!r} for schedule {row.schedule!r}")
        num_active, z_dim = row.num_active, row.z_dim
        if not (is_int(num_active) and is_int(z_dim) and z_dim >= 1 and 0 <= num_active <= z_dim):
            raise ValueError(
                f"Expected integers 0 <= num_active <= z_dim, z_dim >= 1, for schedule "
                f"{row.schedule!r} but got num_active={num_active!r}, z_dim={z_dim!r}"
            )
    return [row.schedule for row in rows], values, errors


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


def plot_beta_schedules(rows: list, ax=None) -> Figure:
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
    rows : list of BetaRow or dict
        One per schedule (:class:`pyro_vae.results.BetaRow`, or its flat
        form) with ``"schedule"`` (label), ``"test_log_px"``,
        ``"test_elbo"``, ``"test_kl"`` (KL(q(z|x) ‖ p(z))) and ``"test_reconstruction"``
        (E_q log p(x|z); ELBO = reconstruction − KL), all means over the test set in
        nats per data point; ``"num_active"`` and ``"z_dim"`` (int); optionally
        ``"<key>_se"`` for the four ``test_`` keys (standard errors, nats).
    ax : None, Figure, Axes or sequence of Axes, optional
        Where to draw (:mod:`pyro_vae.viz.style`): panels (a), (b) and (c).

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
    width = max(13.0, 3.0 + 2.4 * num)
    fig, axes = panels(ax, (1, 3), (width, 5.6), width_ratios=[1.0, 1.15, 0.85])
    ax_bounds, ax_rd, ax_units = axes[0]
    # characters per line of a tick label: the narrowest panel's share, about 0.08 in each
    chars = max(8, int(0.2 * width / num / 0.08))
    ticks = [wrap(label, chars) for label in labels]

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
    figure_legend(
        fig,
        handles=ax_rd.containers,
        labels=labels,
        ncols=min(num, 4),
        fontsize="small",
        title="schedule",
        title_fontsize="small",
    )
    return fig
