"""Generative models p(z) p_θ(x|z) and amortized guides q_φ(z|x) as Pyro functions.

:class:`VAE` (:mod:`.vae`), :class:`LinearGaussianVAE` (:mod:`.linear_gaussian`), their
shared ``model`` and ``guide`` :class:`BaseVAE` (:mod:`.base`), the default guides'
networks (:mod:`.guides`) and the normalizing-flow guides (:mod:`.flows`).
"""

from .base import BaseVAE
from .flows import FLOWS, FlowEncoder, parse_guide
from .guides import Encoder, LinearEncoder
from .linear_gaussian import LinearGaussianVAE
from .vae import LIKELIHOODS, VAE

__all__ = [
    "FLOWS",
    "LIKELIHOODS",
    "VAE",
    "BaseVAE",
    "Encoder",
    "FlowEncoder",
    "LinearEncoder",
    "LinearGaussianVAE",
    "parse_guide",
]
