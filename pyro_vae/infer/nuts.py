"""Moved to :mod:`pyro_vae.infer.mcmc` in 0.4.0: its names import from here until the
next release, each with a FutureWarning naming its new module."""

from .._deprecation import moved_module

__getattr__ = moved_module(__name__, "pyro_vae.infer.mcmc.nuts")
