"""The package's main job and the checks it runs: train one VAE per objective, judge all
on held-out log p(x), and check each guide against the exact posterior.

The public names, each defined in the module named here:

- :func:`compare` (:mod:`.compare`), returning a :class:`Comparison` (``.summary()``,
  ``.figures()``, ``.write_report(out_dir)``); :data:`DEFAULT_OBJECTIVES`, the objectives
  it compares unless told otherwise;
- :func:`check_guide` (:mod:`.guide_check`), returning a :class:`GuideCheck`: a trained
  guide's draws against HMC (and quadrature) draws of the exact posterior.

The rest serves these and the CLI: the runs and their worker processes (:mod:`.runs`,
:mod:`.workers`), the report's tables, figures and files (:mod:`.tables`,
:mod:`.figures`, :mod:`.report`), and the CLI's train, evaluate and AIS jobs
(:mod:`.jobs`). Importing it imports Matplotlib; ``import pyro_vae`` does not.

The attribute ``pyro_vae.experiments.compare`` is the function :func:`compare`; its
module is ``sys.modules["pyro_vae.experiments.compare"]``.
"""

from .compare import DEFAULT_OBJECTIVES, Comparison, compare
from .guide_check import GuideCheck, check_guide

__all__ = ["DEFAULT_OBJECTIVES", "Comparison", "GuideCheck", "check_guide", "compare"]
