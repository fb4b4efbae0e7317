r"""Pyro's NUTS run per data point: the reference the batched HMC sampler is tested against.

:func:`nuts_reference` runs :class:`pyro.infer.NUTS` (Hoffman & Gelman 2014; Pyro's
defaults: multinomial sampling, diagonal mass matrix adapted in Stan's windows) on the
model conditioned on one data point at a time, one chain at a time, and records per
iteration what Pyro's public API gives: the draws, the step size, the divergences and,
through the kernel's public ``potential_fn``, the number of leapfrog steps and log p(x, z).
It is slow and serves as a reference; :func:`pyro_vae.sample_posterior` with
``method="nuts"`` calls it.

References
----------
1. M. D. Hoffman, A. Gelman, "The No-U-Turn Sampler: Adaptively Setting Path Lengths
   in Hamiltonian Monte Carlo", J. Mach. Learn. Res. 15:1593–1623, 2014.
2. M. Betancourt, "A Conceptual Introduction to Hamiltonian Monte Carlo",
   arXiv:1701.02434, 2017 (multinomial sampling).
"""

import math
from collections.abc import Callable

import torch
from pyro.infer import MCMC, NUTS

from ..._deprecation import renamed
from .hmc import check_target_accept_prob

__all__ = ["nuts_reference"]


class _CountingNUTS(NUTS):
    """Pyro's NUTS whose ``potential_fn`` counts its calls: one per leapfrog step.

    After :meth:`setup` (which builds the potential from the model and runs the initial
    step-size search), every call of ``potential_fn`` during a post-warm-up ``sample`` is
    one leapfrog step of the tree; ``potential_energy`` evaluates U without counting.
    """

    def setup(self, warmup_steps, *args, **kwargs):
        super().setup(warmup_steps, *args, **kwargs)
        self.potential_energy = self.potential_fn
        self.evaluations = 0

        def counted(params):
            self.evaluations += 1
            return self.potential_energy(params)

        self.potential_fn = counted


class _Recorder:
    """``hook_fn`` of :class:`pyro.infer.MCMC`: per post-warm-up iteration, the statistics."""

    def __init__(self, warmup_steps):
        self.warmup_steps = warmup_steps
        self.calls = 0
        self.records = {k: [] for k in ("step_size", "n_steps", "diverging", "lp", "tree_depth")}

    def __call__(self, kernel, params, stage, i):
        self.calls += 1
        n_steps, kernel.evaluations = kernel.evaluations, 0
        if self.calls <= self.warmup_steps:
            return
        draw = self.calls - self.warmup_steps - 1
        rec = self.records
        rec["step_size"].append(float(kernel.step_size))
        rec["n_steps"].append(n_steps)
        # a tree of depth d has at most 2^d − 1 leapfrog steps (fewer when it stops early)
        rec["tree_depth"].append(math.ceil(math.log2(n_steps + 1)))
        rec["diverging"].append(draw in kernel.diagnostics()["divergences"])
        rec["lp"].append(-float(kernel.potential_energy(params)))


def nuts_reference(
    model: Callable,
    x: torch.Tensor,
    z0: torch.Tensor,
    num_samples: int,
    warmup_steps: int,
    target_accept_prob: float = 0.8,
    progress: bool = False,
    *,
    target_accept: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pyro's NUTS on p(z | x_i) ∝ p(z) p(x_i | z), one chain and one data point at a time.

    Parameters
    ----------
    model : callable
        ``model(x)`` with one latent site ``"z"`` of event shape ``(z_dim,)`` and observed
        sites in the data plate, as :meth:`pyro_vae.models.base.BaseVAE.model`; its
        parameters are held fixed by the caller.
    x : torch.Tensor
        Data points, shape ``(B, x_dim)``.
    z0 : torch.Tensor
        Starting points, shape ``(chains, B, z_dim)``: chain c of point i starts at
        ``z0[c, i]``.
    num_samples : int
        Draws kept per chain.
    warmup_steps : int
        Adaptation iterations per chain (Pyro's windowed step-size and diagonal
        mass-matrix adaptation), discarded.
    target_accept_prob : float, default 0.8
        NUTS's ``target_accept_prob``: the step-size adaptation's target.
    progress : bool, default False
        Show Pyro's progress bar.
    target_accept : float, optional
        The old name of ``target_accept_prob``, accepted for one release with a
        FutureWarning.

    Returns
    -------
    z : torch.Tensor
        Draws, shape ``(chains, num_samples, B, z_dim)``.
    stats : dict of str to torch.Tensor
        Each of shape ``(chains, num_samples, B)``: ``"step_size"`` (the adapted step),
        ``"n_steps"`` (leapfrog steps of the iteration's tree), ``"tree_depth"``
        (⌈log₂(n_steps + 1)⌉: the doublings for a full tree), ``"diverging"`` (bool,
        from the kernel's ``diagnostics()``) and ``"lp"`` (log p(x_i, z) at the draw,
        nats, recomputed with the kernel's potential).

    Raises
    ------
    ValueError
        If both ``target_accept_prob`` and ``target_accept`` are given.

    Notes
    -----
    Pyro's public API does not expose per-iteration energies or acceptance
    probabilities (``NUTS.logging()`` gives only a running mean, rounded), so, unlike
    the batched sampler's, these statistics hold no ``energy`` (ArviZ's BFMI is not
    available) and no ``acceptance_rate``. Random draws: all from torch's global
    generator, chain by chain and, within a chain, point by point.
    """
    target_accept_prob = renamed("nuts_reference()", "target_accept", target_accept,
                                 "target_accept_prob", target_accept_prob, 0.8,
                                 check=check_target_accept_prob)  # fmt: skip
    num_chains, batch = z0.shape[:2]
    draws, records = [], []
    for c in range(num_chains):
        for i in range(batch):
            kernel = _CountingNUTS(model, target_accept_prob=target_accept_prob)
            recorder = _Recorder(warmup_steps)
            mcmc = MCMC(
                kernel,
                num_samples=num_samples,
                warmup_steps=warmup_steps,
                initial_params={"z": z0[c, i : i + 1]},
                hook_fn=recorder,
                disable_progbar=not progress,
            )
            mcmc.run(x[i : i + 1])
            draws.append(mcmc.get_samples()["z"][:, 0])
            records.append(recorder.records)
    shape = (num_chains, batch)
    z = torch.stack(draws).reshape(*shape, num_samples, -1).transpose(1, 2)
    stats = {}
    for key in records[0]:
        table = torch.tensor([rec[key] for rec in records])
        stats[key] = table.reshape(*shape, num_samples).transpose(1, 2)
    return z, stats
