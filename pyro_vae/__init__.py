"""pyro_vae: variational autoencoders in Pyro, to see and measure what a bound does.

The main interface: :class:`VAE` and :class:`LinearGaussianVAE` (whose ``model`` and
``guide`` are plain Pyro functions, with their shared :class:`BaseVAE`),
:class:`ScaledRenyiELBO` and :func:`make_elbo` (the Rényi and IWAE bounds with the
minibatch scale where it belongs, and the factory of every objective, for a Pyro ``SVI``
loop), :func:`fit` (training, with resume) with its :class:`TrainConfig`, and
:func:`save_checkpoint` / :func:`load_checkpoint`; :func:`evaluate` (held-out ELBO,
IWAE bounds and log p(x) by importance sampling, with Pareto k̂), :func:`paired_difference`
(comparing two models on the same points); :func:`sample_posterior` (batched HMC draws
of p_θ(z|x) for many points at once, as ArviZ ``InferenceData``), :func:`sample_guide`,
:func:`compare_posteriors` and :func:`quadrature_posterior` (exact log p(x), posterior
and gap for 2-D latents); :func:`from_pyro` (a Pyro ``MCMC`` run of ``vae.model`` in the
package's ArviZ layout); :func:`inference_gaps` and :func:`fit_local_guides` (the
approximation and amortization gaps, with per-data-point optimal guides); :func:`ais` and
:func:`bdmc` (log p(x) by annealed importance sampling, and the BDMC sandwich on
simulated data); :func:`gradient_snr` (the signal-to-noise ratio of an objective's
stochastic gradient for the encoder and the decoder, Rainforth et al. 2018).

Everything else lives in its subpackage, which exports its public names:
:mod:`pyro_vae.data` (data sets, ``load_dataset``), :mod:`pyro_vae.models`,
:mod:`pyro_vae.train`, :mod:`pyro_vae.infer`, :mod:`pyro_vae.experiments` (the main
job, ``compare``), :mod:`pyro_vae.viz` (the ``plot_*`` figures) and
:mod:`pyro_vae.results`.
"""

import importlib
import warnings

from ._version import __version__ as __version__
from .infer import (
    ScaledRenyiELBO,
    ais,
    bdmc,
    compare_posteriors,
    evaluate,
    fit_local_guides,
    from_pyro,
    gradient_snr,
    inference_gaps,
    make_elbo,
    paired_difference,
    quadrature_posterior,
    sample_guide,
    sample_posterior,
)
from .models import VAE, BaseVAE, LinearGaussianVAE
from .train import TrainConfig, fit, load_checkpoint, save_checkpoint

__all__ = [
    "VAE",
    "BaseVAE",
    "LinearGaussianVAE",
    "ScaledRenyiELBO",
    "TrainConfig",
    "ais",
    "bdmc",
    "compare_posteriors",
    "evaluate",
    "fit",
    "fit_local_guides",
    "from_pyro",
    "gradient_snr",
    "inference_gaps",
    "load_checkpoint",
    "make_elbo",
    "paired_difference",
    "quadrature_posterior",
    "sample_guide",
    "sample_posterior",
    "save_checkpoint",
]

# Names the top level exported in 0.3.0 that moved down to their subpackage: importable
# from here for one more release, with a FutureWarning naming the subpackage.
_MOVED = {
    "DEFAULT_THREADS": "pyro_vae.train",
    "MAIN_JOB": "pyro_vae.train",
    "AISResult": "pyro_vae.infer",
    "BDMCResult": "pyro_vae.infer",
    "Evaluation": "pyro_vae.infer",
    "FitResult": "pyro_vae.train",
    "InferenceGaps": "pyro_vae.infer",
    "QuadraturePosterior": "pyro_vae.infer",
    "Trainer": "pyro_vae.train",
    "TrainingState": "pyro_vae.train",
    "active_units": "pyro_vae.infer",
    "anneal_down": "pyro_vae.train",
    "constant": "pyro_vae.train",
    "elbo_decompositions": "pyro_vae.infer",
    "elbo_surgery": "pyro_vae.infer",
    "log_importance_weights": "pyro_vae.infer",
    "log_joint_grid": "pyro_vae.infer",
    "pareto_khat": "pyro_vae.infer",
    "parse_objective": "pyro_vae.infer",
    "parse_schedule": "pyro_vae.train",
    "warmup": "pyro_vae.train",
}


def __getattr__(name):
    """The names that moved to a subpackage, for one release, with a FutureWarning."""
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"pyro_vae.{name} is deprecated; import it from {home}", FutureWarning, stacklevel=2
    )
    return getattr(importlib.import_module(home), name)
