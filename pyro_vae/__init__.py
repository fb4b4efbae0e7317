"""pyro_vae: variational autoencoders in Pyro, to see and measure what a bound does.

The main interface: :class:`VAE` and :class:`LinearGaussianVAE` (whose ``model`` and
``guide`` are plain Pyro functions), :class:`ScaledRenyiELBO` (the Rényi and IWAE
bounds with the minibatch scale where it belongs), :func:`fit` (training, with resume)
and :func:`evaluate` (held-out ELBO, IWAE bounds and log p(x) by importance sampling,
with Pareto k̂), :func:`paired_difference` (comparing two models on the same points);
:func:`sample_posterior` (batched HMC draws of p_θ(z|x) for many points at once, as
ArviZ ``InferenceData``), :func:`sample_guide`, :func:`compare_posteriors` and
:func:`quadrature_posterior` (exact log p(x), posterior and gap for 2-D latents);
:func:`from_pyro` (a Pyro ``MCMC`` run of ``vae.model`` in the package's ArviZ layout);
:func:`inference_gaps` and :func:`fit_local_guides` (the approximation and amortization
gaps, with per-data-point optimal guides); :func:`ais` and :func:`bdmc` (log p(x) by annealed
importance sampling, and the BDMC sandwich on simulated data).
"""

from ._threads import DEFAULT_THREADS  # noqa: E402
from ._version import __version__ as __version__  # noqa: E402
from .infer.ais import AISResult, BDMCResult, ais, bdmc  # noqa: E402
from .infer.anatomy import active_units, elbo_decompositions, elbo_surgery  # noqa: E402
from .infer.diagnostics import from_pyro, pareto_khat  # noqa: E402
from .infer.evaluation import Evaluation, evaluate, paired_difference  # noqa: E402
from .infer.gaps import InferenceGaps, inference_gaps  # noqa: E402
from .infer.local import fit_local_guides  # noqa: E402
from .infer.objectives import ScaledRenyiELBO, make_elbo, parse_objective  # noqa: E402
from .infer.posterior import sample_posterior  # noqa: E402
from .infer.posterior_checks import compare_posteriors, sample_guide  # noqa: E402
from .infer.quadrature import QuadraturePosterior, log_joint_grid, quadrature_posterior  # noqa: E402
from .infer.traces import log_importance_weights  # noqa: E402
from .models import VAE, BaseVAE, LinearGaussianVAE  # noqa: E402
from .train.checkpoints import load_checkpoint, save_checkpoint  # noqa: E402
from .train.config import MAIN_JOB, TrainConfig  # noqa: E402
from .train.schedules import anneal_down, constant, parse_schedule, warmup  # noqa: E402
from .train.state import FitResult, TrainingState  # noqa: E402
from .train.training import Trainer, fit  # noqa: E402

__all__ = [
    "DEFAULT_THREADS",
    "AISResult",
    "BDMCResult",
    "BaseVAE",
    "Evaluation",
    "FitResult",
    "InferenceGaps",
    "LinearGaussianVAE",
    "MAIN_JOB",
    "QuadraturePosterior",
    "ScaledRenyiELBO",
    "TrainConfig",
    "Trainer",
    "TrainingState",
    "VAE",
    "active_units",
    "ais",
    "anneal_down",
    "bdmc",
    "compare_posteriors",
    "constant",
    "elbo_decompositions",
    "elbo_surgery",
    "evaluate",
    "fit",
    "fit_local_guides",
    "from_pyro",
    "inference_gaps",
    "load_checkpoint",
    "log_importance_weights",
    "log_joint_grid",
    "make_elbo",
    "paired_difference",
    "pareto_khat",
    "parse_objective",
    "parse_schedule",
    "quadrature_posterior",
    "sample_guide",
    "sample_posterior",
    "save_checkpoint",
    "warmup",
]
