"""pyro_vae: variational autoencoders in Pyro, to see and measure what a bound does.

The main interface: :class:`VAE` and :class:`LinearGaussianVAE` (whose ``model`` and
``guide`` are plain Pyro functions), :func:`fit` (training with ``pyro.infer.SVI``)
and :func:`evaluate` (held-out ELBO, IWAE bounds and log p(x) by importance sampling).
"""

from .evaluation import Evaluation, evaluate, log_importance_weights
from .models import VAE, LinearGaussianVAE
from .objectives import make_elbo
from .training import FitResult, fit, load_checkpoint, save_checkpoint

__version__ = "0.1.0"

__all__ = [
    "Evaluation",
    "FitResult",
    "LinearGaussianVAE",
    "VAE",
    "evaluate",
    "fit",
    "load_checkpoint",
    "log_importance_weights",
    "make_elbo",
    "save_checkpoint",
]
