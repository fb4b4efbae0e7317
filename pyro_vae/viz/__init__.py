"""Figures, built on a :class:`matplotlib.figure.Figure` without pyplot state; every
``plot_*`` takes ``ax=`` (where to draw, as :mod:`.style` says) and returns the figure.

The public names, each defined in the module named here:

- training (:mod:`.training`): :func:`plot_validation_curves`,
  :func:`plot_gap_during_training`;
- bounds of a comparison (:mod:`.bounds`): :func:`plot_bounds`;
- images (:mod:`.images`): :func:`plot_image_grid`, :func:`plot_reconstructions`, and
  :func:`save_figure`, which writes any figure atomically;
- the posterior (:mod:`.posterior`): :func:`plot_posterior_draws`,
  :func:`plot_latent_map`;
- the ELBO's anatomy (:mod:`.anatomy`, :mod:`.beta`): :func:`plot_aggregate_posterior`,
  :func:`plot_active_units`, :func:`plot_gap_split`, :func:`plot_beta_schedules`.

Importing it imports Matplotlib; ``import pyro_vae`` does not.
"""

from .anatomy import plot_active_units, plot_aggregate_posterior, plot_gap_split
from .beta import plot_beta_schedules
from .bounds import plot_bounds
from .images import plot_image_grid, plot_reconstructions, save_figure
from .posterior import plot_latent_map, plot_posterior_draws
from .training import plot_gap_during_training, plot_validation_curves

__all__ = [
    "plot_active_units",
    "plot_aggregate_posterior",
    "plot_beta_schedules",
    "plot_bounds",
    "plot_gap_during_training",
    "plot_gap_split",
    "plot_image_grid",
    "plot_latent_map",
    "plot_posterior_draws",
    "plot_reconstructions",
    "plot_validation_curves",
    "save_figure",
]
