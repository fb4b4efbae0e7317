"""pyro_vae: variational autoencoders in Pyro, to see and measure what a bound does.

The main interface: :class:`VAE` and :class:`LinearGaussianVAE` (whose ``model`` and
``guide`` are plain Pyro functions), :class:`ScaledRenyiELBO` (the Rényi and IWAE
bounds with the minibatch scale where it belongs), :func:`fit` (training, with resume)
and :func:`evaluate` (held-out ELBO, IWAE bounds and log p(x) by importance sampling,
with Pareto k̂), :func:`paired_difference` (comparing two models on the same points).
"""

__version__ = "0.2.0"

from .diagnostics import pareto_khat  # noqa: E402
from .evaluation import (  # noqa: E402
    Evaluation,
    evaluate,
    log_importance_weights,
    paired_difference,
)
from .models import VAE, BaseVAE, LinearGaussianVAE  # noqa: E402
from .objectives import ScaledRenyiELBO, make_elbo, parse_objective  # noqa: E402
from .training import (  # noqa: E402
    FitResult,
    Trainer,
    TrainingState,
    fit,
    load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "BaseVAE",
    "Evaluation",
    "FitResult",
    "LinearGaussianVAE",
    "ScaledRenyiELBO",
    "Trainer",
    "TrainingState",
    "VAE",
    "evaluate",
    "fit",
    "load_checkpoint",
    "log_importance_weights",
    "make_elbo",
    "paired_difference",
    "pareto_khat",
    "parse_objective",
    "save_checkpoint",
]
