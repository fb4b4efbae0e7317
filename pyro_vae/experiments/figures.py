"""The figures of a comparison's report: which ones, their captions, and what they show.

:func:`report_figures` draws every figure of a :class:`~pyro_vae.experiments.compare.Comparison`
in the order the report shows them: learning curves, bounds, the ELBO's anatomy (aggregate
posterior, active units, the gap during training, β schedules), reconstructions and samples
for image data, and per objective the guide against the exact posterior (and, for 2-D
latents, the latent map with a decoded grid). :func:`posterior_figures` draws those of one
guide check, for ``pyro-vae posterior`` too. The figures come from :mod:`pyro_vae.viz`.
"""

import re

import numpy as np
import torch
from matplotlib.figure import Figure

from ..infer.quadrature import log_joint_grid
from ..infer.traces import guide_moments
from ..viz import anatomy, beta, bounds, images, posterior, training
from ..viz.images import save_figure

__all__ = ["posterior_figures", "report_figures", "save_figure", "slugs"]

_RECONSTRUCTIONS = "reconstructions: decoder mean at one draw z ~ q(z|x)"


def _slug(label):
    """A file-name part for an objective label, e.g. ``RenyiELBO_alpha_-0.5_K_5``.

    Letters, digits, ``.`` and ``-`` are kept (so α = 0.5 and α = −0.5 differ).
    """
    return re.sub(r"[^A-Za-z0-9.\-]+", "_", label).strip("_")


def slugs(labels) -> dict:
    """Distinct file-name parts for distinct labels (a suffix where two would collide).

    Returns
    -------
    dict of str to str
        Label -> file-name part, e.g. ``"RenyiELBO(alpha=0, K=5)"`` ->
        ``"RenyiELBO_alpha_0_K_5"``.
    """
    out, seen = {}, set()
    for label in labels:
        slug = base = _slug(label) or "objective"
        i = 2
        while slug in seen:
            slug, i = f"{base}_{i}", i + 1
        seen.add(slug)
        out[label] = slug
    return out


def report_figures(result) -> list[tuple[str, str, Figure]]:
    """Every figure of a comparison's report, ``(file name, caption, figure)`` in order.

    Parameters
    ----------
    result : pyro_vae.experiments.compare.Comparison
        What :func:`~pyro_vae.experiments.compare.compare` returned. The
        reconstructions and the samples from each model draw from the global RNG.

    Returns
    -------
    list of (str, str, matplotlib.figure.Figure)
        Image figures (reconstructions, samples, latent maps) only when the data are
        square images (``result.data.image_shape``).
    """
    best_epochs = {row.objective: row.best_epoch[0] for row in result.rows}
    figures = [
        (
            "validation_curves.png",
            "Validation bounds per epoch (solid L_50, dashed ELBO; star: best epoch)",
            training.plot_validation_curves(result.histories, best_epochs=best_epochs),
        ),
        (
            "bounds.png",
            "Test-set bounds L_k against k, and their distance below log p(x) (±2 MC s.e.)",
            bounds.plot_bounds(result.rows, num_samples=result.meta["num_samples"]),
        ),
        *_anatomy_figures(result),
    ]
    names = slugs(result.models)
    data = result.data
    if data.image_shape is not None:
        figures += _image_figures(result, names)
    for label, check in result.checks.items():
        for name, fig in posterior_figures(check, data, names[label]).items():
            caption = "Latent map" if name.startswith("latent_map") else "Posterior vs guide"
            figures.append((name, f"{caption}: {label}", fig))
    return figures


def _anatomy_figures(result):
    """Aggregate posterior, active units, the gap during training and the β summary."""
    figures = [
        (
            "aggregate_posterior.png",
            "Aggregate posterior q(z) against the prior p(z)",
            anatomy.plot_aggregate_posterior(
                {label: z.cpu() for label, z in result.aggregate.items()}
            ),
        ),
        (
            "active_units.png",
            "Activity and KL per latent dimension (active units: A_d > 0.01)",
            anatomy.plot_active_units(
                {row.objective: row.activity for row in result.rows},
                {row.objective: row.kl_per_dim for row in result.rows},
            ),
        ),
    ]
    if any("approximation_gap" in row.estimates for row in result.gap_rows):
        figures.append(
            (
                "gap_split.png",
                "Where the gap comes from: approximation and amortization gaps",
                anatomy.plot_gap_split(result.gap_rows),
            )
        )
    if any("gap" in record for history in result.histories.values() for record in history):
        figures.append(
            (
                "gap_during_training.png",
                "log p(x), ELBO and their gap during training (validation subset)",
                training.plot_gap_during_training(result.histories),
            )
        )
    if result.beta_rows:
        figures.append(
            (
                "beta_schedules.png",
                "β schedules: bounds, rate–distortion and active units",
                beta.plot_beta_schedules(result.beta_rows),
            )
        )
        figures.append(
            (
                "active_units_beta.png",
                "Activity and KL per latent dimension under each β schedule",
                anatomy.plot_active_units(
                    {row.schedule: row.activity for row in result.beta_rows},
                    {row.schedule: row.kl_per_dim for row in result.beta_rows},
                ),
            )
        )
    return figures


def _image_figures(result, names):
    """Reconstructions of the first 10 test points, and 40 samples from each model."""
    data = result.data
    x = data.test[:10]
    figures = [
        (
            "reconstructions.png",
            "Reconstructions (top: test data; one row per objective)",
            images.plot_reconstructions(
                x,
                {label: vae.reconstruct(x) for label, vae in result.models.items()},
                data.image_shape,
                title=_RECONSTRUCTIONS,
            ),
        )
    ]
    if result.beta_models:
        figures.append(
            (
                "reconstructions_beta.png",
                "Reconstructions under each β schedule (top: test data)",
                images.plot_reconstructions(
                    x,
                    {label: vae.reconstruct(x) for label, vae in result.beta_models.items()},
                    data.image_shape,
                    title=f"β schedules, {result.meta['beta_objective']}: {_RECONSTRUCTIONS}",
                ),
            )
        )
    for label, vae in result.models.items():
        figures.append(
            (
                f"samples_{names[label]}.png",
                f"Samples from the model: {label}",
                images.plot_image_grid(
                    vae.sample(40),
                    data.image_shape,
                    nrows=4,
                    title=f"decoder means at z ~ p(z): {label}",
                ),
            )
        )
    return figures


def posterior_figures(check, data, slug: str, num_points: int = 4) -> dict[str, Figure]:
    """Figures of one guide check: draws in the latent plane, and the 2-D latent map.

    Parameters
    ----------
    check : pyro_vae.experiments.guide_check.GuideCheck
        The check, its module on the CPU.
    data : pyro_vae.data.Dataset
        The data whose first test points were checked.
    slug : str
        File-name part: ``posterior_<slug>.png`` and ``latent_map_<slug>.png``.
    num_points : int, default 4
        Data points drawn (the first ones).

    Returns
    -------
    dict of str to matplotlib.figure.Figure
        ``posterior_<slug>.png``: posterior and guide draws of the first points (with
        the exact posterior's contours for 2-D latents); ``latent_map_<slug>.png`` for
        a 2-D latent and image data: the guide means of the test split and a 15 × 15
        grid of decoder means.
    """
    n = min(num_points, check.posterior.posterior.sizes["datum"])
    reference = _draws(check.posterior, n)
    guide = _draws(check.guide, n)
    x = data.test[:n]
    density = None
    if check.exact is not None and reference.shape[-1] == 2:
        lows = np.minimum(reference.min((0, 1)), guide.min((0, 1)))
        highs = np.maximum(reference.max((0, 1)), guide.max((0, 1)))
        grids = [np.linspace(lo, hi, 81) for lo, hi in zip(lows, highs, strict=True)]
        density = (*grids, log_joint_grid(check.vae, x, *grids).cpu().numpy())
    figures = {
        f"posterior_{slug}.png": posterior.plot_posterior_draws(
            reference, guide, x if data.image_shape else None, data.image_shape, density
        )
    }
    if check.vae.z_dim == 2 and data.image_shape is not None:
        figures[f"latent_map_{slug}.png"] = _latent_map(check.vae, data)
    return figures


def _latent_map(vae, data, side=15):
    """The latent map of a 2-D VAE: guide means of the test split, a decoded grid."""
    means = guide_moments(vae.encode(data.test))[0]
    low, high = means.min(0).values - 0.5, means.max(0).values + 0.5
    z0, z1 = (torch.linspace(lo, hi, side) for lo, hi in zip(low, high, strict=True))
    # rows from the top: z[1] decreasing; columns: z[0] increasing
    grid = torch.stack(torch.meshgrid(z1.flip(0), z0, indexing="ij"), -1).flip(-1)
    decoded = vae.decode(grid.reshape(-1, 2).to(means.dtype))
    labels = data.labels["test"] if data.labels else None
    extent = (low[0].item(), high[0].item(), low[1].item(), high[1].item())
    return posterior.plot_latent_map(means, labels, decoded, data.image_shape, extent)


def _draws(idata, n):
    """Draws of z for the first n data points as an array (S, n, D)."""
    z = idata.posterior["z"].isel(datum=slice(0, n))
    return z.stack(sample=("chain", "draw")).transpose("sample", "datum", "latent").values
