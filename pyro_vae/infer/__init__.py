"""Inference on a trained VAE: objectives, held-out estimators, posterior sampling, gaps.

The public names, each defined in the module named here:

- the training objectives (:mod:`.objectives`): :class:`ScaledRenyiELBO`, the
  path-derivative estimators :class:`STL_ELBO`, :class:`DReG_IWAE` and
  :class:`IWAE_STL`, :func:`make_elbo`, :func:`parse_objective`;
- held-out bounds and log p(x) by importance sampling (:mod:`.evaluation`,
  :mod:`.traces`, :mod:`.diagnostics`): :func:`evaluate` returning an
  :class:`Evaluation`, :func:`paired_difference`, :func:`log_importance_weights`,
  :func:`pareto_khat`;
- the ELBO taken apart (:mod:`.anatomy`, :mod:`.surgery`): :func:`elbo_decompositions`,
  :func:`elbo_surgery`, :func:`active_units`;
- the exact posterior p_θ(z|x): HMC draws (:mod:`.posterior`, :mod:`.hmc`)
  :func:`sample_posterior` and :class:`BatchedHMC`; guide draws and their comparison
  (:mod:`.posterior_checks`) :func:`sample_guide`, :func:`compare_posteriors`,
  :func:`gaussian_w2`; quadrature for 2-D latents (:mod:`.quadrature`)
  :func:`quadrature_posterior` returning a :class:`QuadraturePosterior`,
  :func:`log_joint_grid`; a Pyro ``MCMC`` run in the same layout (:mod:`.diagnostics`)
  :func:`from_pyro`;
- the approximation and amortization gaps (:mod:`.gaps`, :mod:`.local`):
  :func:`inference_gaps` returning :class:`InferenceGaps`, :func:`fit_local_guides`
  returning :class:`LocalGuides`;
- log p(x) by annealed importance sampling (:mod:`.ais`): :func:`ais` returning an
  :class:`AISResult`, :func:`bdmc` returning a :class:`BDMCResult`,
  :func:`annealing_schedule`;
- the signal-to-noise ratio of an objective's stochastic gradient, per encoder and
  decoder coordinate (:mod:`.gradients`): :func:`gradient_snr` returning a
  :class:`GradientSNR`.

The attribute ``pyro_vae.infer.ais`` is the function :func:`ais`; its module is
``sys.modules["pyro_vae.infer.ais"]`` (``importlib.import_module("pyro_vae.infer.ais")``).
"""

from .ais import AISResult, BDMCResult, ais, annealing_schedule, bdmc
from .anatomy import ElboDecompositions, elbo_decompositions
from .diagnostics import from_pyro, pareto_khat
from .evaluation import Evaluation, evaluate, paired_difference
from .gaps import InferenceGaps, inference_gaps
from .gradients import GradientSNR, gradient_snr
from .local import LocalGuides, fit_local_guides
from .mcmc import BatchedHMC, sample_posterior
from .objectives import (
    IWAE_STL,
    STL_ELBO,
    DReG_IWAE,
    ScaledRenyiELBO,
    make_elbo,
    parse_objective,
)
from .posterior_checks import compare_posteriors, gaussian_w2, sample_guide
from .quadrature import QuadraturePosterior, log_joint_grid, quadrature_posterior
from .surgery import ActiveUnits, ElboSurgery, active_units, elbo_surgery
from .traces import log_importance_weights

__all__ = [
    "AISResult",
    "ActiveUnits",
    "BDMCResult",
    "BatchedHMC",
    "DReG_IWAE",
    "ElboDecompositions",
    "ElboSurgery",
    "Evaluation",
    "GradientSNR",
    "IWAE_STL",
    "InferenceGaps",
    "LocalGuides",
    "QuadraturePosterior",
    "STL_ELBO",
    "ScaledRenyiELBO",
    "active_units",
    "ais",
    "annealing_schedule",
    "bdmc",
    "compare_posteriors",
    "elbo_decompositions",
    "elbo_surgery",
    "evaluate",
    "fit_local_guides",
    "from_pyro",
    "gaussian_w2",
    "gradient_snr",
    "inference_gaps",
    "log_importance_weights",
    "log_joint_grid",
    "make_elbo",
    "paired_difference",
    "pareto_khat",
    "parse_objective",
    "quadrature_posterior",
    "sample_guide",
    "sample_posterior",
]
