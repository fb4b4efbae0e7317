"""Generative models p(z) p_θ(x|z) and amortized guides q_φ(z|x) as Pyro functions.

:class:`VAE` (:mod:`.vae`), :class:`LinearGaussianVAE` (:mod:`.linear_gaussian`), their
shared ``model`` and ``guide`` :class:`BaseVAE` (:mod:`.base`) and the default guides'
networks (:mod:`.guides`).
"""

from .base import BaseVAE
from .guides import Encoder, LinearEncoder
from .linear_gaussian import LinearGaussianVAE
from .vae import LIKELIHOODS, VAE

__all__ = ["LIKELIHOODS", "VAE", "BaseVAE", "Encoder", "LinearEncoder", "LinearGaussianVAE"]
