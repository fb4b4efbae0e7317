"""Markov chain Monte Carlo on the exact posterior p_θ(z|x), as Pyro and BlackJAX lay it out.

- :mod:`pyro_vae.infer.mcmc.hmc`: the batched HMC kernel over any potential U(z), many
  chains in lockstep (:class:`BatchedHMC`, one :func:`transition` without adaptation,
  :class:`HMCState`);
- :mod:`pyro_vae.infer.mcmc.adaptation`: its warm-up, Stan's windows
  (:func:`adaptation_windows`) of step-size dual averaging and diagonal mass-matrix
  estimation;
- :mod:`pyro_vae.infer.mcmc.nuts`: Pyro's NUTS on one data point, the reference
  (:func:`nuts_reference`);
- :mod:`pyro_vae.infer.mcmc.posterior`: :func:`sample_posterior`, the posterior draws of a
  VAE's latents as ArviZ ``InferenceData``.

The modules ``pyro_vae.infer.hmc``, ``pyro_vae.infer.nuts`` and
``pyro_vae.infer.posterior`` of 0.3.0 still give these names, with a FutureWarning.
"""

from .adaptation import adaptation_windows
from .hmc import BatchedHMC, HMCState, transition
from .nuts import nuts_reference
from .posterior import sample_posterior

__all__ = [
    "BatchedHMC",
    "HMCState",
    "adaptation_windows",
    "nuts_reference",
    "sample_posterior",
    "transition",
]
