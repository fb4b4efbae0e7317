r"""The signal-to-noise ratio of an objective's stochastic gradient: :func:`gradient_snr`.

Rainforth et al. (2018) showed that as the IWAE bound tightens with K, the SNR of the
encoder's gradient falls as :math:`O(1/\sqrt K)` while the decoder's rises as
:math:`O(\sqrt K)`. :func:`gradient_snr` measures it at fixed parameters for any Pyro
``ELBO`` whose ``loss_and_grads`` writes the parameters' ``.grad``.

References
----------
1. T. Rainforth, A. R. Kosiorek, T. A. Le, C. J. Maddison, M. Igl, F. Wood, Y. W. Teh,
   "Tighter Variational Bounds are Not Necessarily Better", ICML 2018.
2. B. Efron, C. Stein, "The jackknife estimate of variance", Ann. Statist. 9(3), 1981.
"""

import math
from dataclasses import dataclass, field

import pyro
import torch
from pyro import poutine
from pyro.infer import ELBO

from .._checks import is_int
from .evaluation import Summary
from .objectives import make_elbo, parse_objective
from .traces import check_inputs, check_seed, param_store_as_found, seeded

__all__ = ["GradientSNR", "gradient_snr"]

NUM_BATCHES = 10
"""Batches of draws (draw i goes to batch i mod 10) of the jackknife s.e."""

GROUPS = ("encoder", "decoder")


@dataclass
class GradientSNR:
    """What :func:`gradient_snr` returns: the moments of the stochastic gradient.

    Attributes
    ----------
    mean : dict of str to torch.Tensor
        Per parameter (named as in ``vae.named_parameters()`` where ``vae`` is a module,
        else as in Pyro's param store): E[g], the parameter's shape, float64, in nats per
        unit of the (unconstrained) parameter, summed over the data points as the loss is.
    std : dict of str to torch.Tensor
        sd[g] (with the 1/(n − 1) variance), same shapes.
    groups : dict of str to tuple of str
        ``"encoder"`` (the guide's parameters) and ``"decoder"`` (the model's, less the
        guide's) to their parameter names.
    num_draws : int
        Gradient draws n.
    median_snr : dict of str to float
        Per group, the median over its coordinates of ``|E[g]| / sd[g]``.
    median_snr_se : dict of str to float
        Its Monte-Carlo s.e. (delete-a-batch jackknife, see :func:`gradient_snr`); nan
        with fewer than 3 draws.
    objective : str
        The objective, as given or its class name.
    num_points : int
        Data points in the batch x.
    """

    mean: dict
    std: dict
    groups: dict
    num_draws: int
    median_snr: dict
    median_snr_se: dict
    objective: str = field(default="")
    num_points: int | None = None

    @property
    def snr(self):
        """``|E[g]| / sd[g]`` per parameter (dict of str to tensor, the parameter's shape);
        nan where the gradient is always 0, inf where it is constant and not 0."""
        return {name: _snr(self.mean[name], self.std[name]) for name in self.mean}

    def group_snr(self, group):
        """The SNR of every coordinate of ``group`` (``"encoder"`` or ``"decoder"``),
        flattened and concatenated in parameter order: a tensor of shape ``(coordinates,)``."""
        snr = self.snr
        return torch.cat([snr[name].flatten() for name in self.groups[group]])

    def summary(self) -> Summary:
        """The median SNR of each group with its Monte-Carlo s.e.

        Returns
        -------
        pyro_vae.infer.evaluation.Summary
            A dict: ``"encoder"`` and ``"decoder"``, each (median over the group's
            coordinates of ``|E[g]| / sd[g]``, its s.e.), dimensionless; a group without
            parameters is left out. Printed, a table.
        """
        notes = {group: f"(no s.e. with {self.num_draws} draws)" for group in GROUPS}
        values = {
            group: (self.median_snr[group], self.median_snr_se[group])
            for group in GROUPS
            if self.groups.get(group)
        }
        return Summary(
            values,
            notes=notes,
            unit="gradient SNR, median over coordinates",
            num_points=self.num_points,
        )


def gradient_snr(vae, x, objective, num_draws=100, seed=0, **kwargs) -> GradientSNR:
    r"""The SNR of an objective's stochastic gradient, per coordinate, at fixed parameters.

    Draws the gradient g of ``objective`` ``num_draws`` times on the same x (each draw:
    zero the gradients, ``elbo.loss_and_grads(vae.model, vae.guide, x, **kwargs)``, read
    the parameters' ``.grad``) and accumulates E[g] and Var[g] per coordinate with
    Welford's update in float64.

    Parameters
    ----------
    vae : object with ``model`` and ``guide``
        A :class:`~pyro_vae.BaseVAE` or any Pyro model and guide registering their
        parameters with ``pyro.param``/``pyro.module``. Encoder = the parameters of the
        guide's trace, decoder = those of the model's trace that the guide lacks.
    x : torch.Tensor
        A fixed batch, shape ``(batch, x_dim)``: the SNR is that of the minibatch
        gradient on this batch (the loss is summed over its points, so g is too).
    objective : str or pyro.infer.ELBO
        An objective spec of :func:`~pyro_vae.infer.parse_objective` (``"trace"``,
        ``"iwae:5"``, ``"renyi:0.5:5"``, ...), built with
        :func:`~pyro_vae.make_elbo`, or any ELBO object.
    num_draws : int, default 100
        Gradient draws n ≥ 2. Coordinates whose true SNR is below about 1/√n are
        not resolved: their estimate is that of noise, ``|N(0, 1)| / √n``.
    seed : int or None, default 0
        Seed of the draws; the global RNG state is restored on exit. None: the global
        RNG as it is.
    **kwargs
        Passed to the model and guide (``num_data``, ``beta``, ...).

    Returns
    -------
    GradientSNR
        E[g], sd[g] per parameter and the median SNR of encoder and decoder with its
        s.e.; ``.summary()`` maps ``"encoder"`` and ``"decoder"`` to (median, s.e.).

    Raises
    ------
    ValueError
        If ``num_draws`` is not an integer ≥ 2, x is not ``(batch, x_dim)`` (as
        :func:`~pyro_vae.infer.traces.check_inputs`), ``objective`` is neither a valid
        spec nor an ELBO, the seed is not an integer or None, the model and guide
        register no parameters, or no parameter receives a gradient.

    See Also
    --------
    pyro_vae.evaluate : the bounds these objectives estimate.

    Notes
    -----
    Rainforth et al. (2018, eq. 3) define the signal-to-noise ratio of a gradient
    estimator Δ per coordinate as

    .. math::

        \mathrm{SNR} = \left| \frac{\mathbb E[\Delta]}{\sigma[\Delta]} \right|,

    estimated here by ``|mean| / (sample s.d.)`` of the n draws. Each group's number is the
    (lower, ``torch.nanmedian``) median over its coordinates; coordinates whose gradient
    is always 0 (nan SNR: a dead unit) are left out of it.

    The s.e. of the median is a delete-a-batch jackknife (Efron & Stein 1981): draw i
    goes to batch i mod 10 (fewer batches when n < 10), the median is recomputed
    without each batch from the batches' running moments (the parallel form of
    Welford's update), and se² = (G − 1)/G Σ_b (θ_(b) − θ̄)². The median over many
    coordinates is a smooth function of the draws' means, where the jackknife holds.

    Memory O(parameters) (the G batches' mean and sum of squared deviations, float64,
    2G copies of the parameters); time O(``num_draws`` × one ``loss_and_grads``). The
    parameters' values are not changed; their ``.grad`` and Pyro's param store are left
    as found.

    Examples
    --------
    >>> result = gradient_snr(vae, data.test[:100], "iwae:10", num_draws=200)
    >>> print(result.summary())
    """
    if not is_int(num_draws) or num_draws < 2:
        raise ValueError(f"Expected num_draws to be an integer >= 2 but got {num_draws!r}")
    check_seed(seed)
    x = check_inputs(vae, x, seed)
    elbo, label = _elbo(objective)
    with param_store_as_found(), seeded(seed, x.device):
        params, groups = _parameter_groups(vae, x, kwargs)
        grads_before = {name: p.grad for name, p in params.items()}
        try:
            moments = _draw_moments(elbo, vae, x, kwargs, params, num_draws)
        finally:
            for name, p in params.items():
                p.grad = grads_before[name]
    counts, means, m2s = moments
    mean, std = _combine(counts, means, m2s)
    median, se = {}, {}
    for group, names in groups.items():
        median[group] = _median_snr(mean, std, names)
        se[group] = _jackknife_se(counts, means, m2s, names)
    shapes = {name: p.shape for name, p in params.items()}
    return GradientSNR(
        mean={name: mean[name].reshape(shapes[name]) for name in params},
        std={name: std[name].reshape(shapes[name]) for name in params},
        groups={group: tuple(names) for group, names in groups.items()},
        num_draws=num_draws,
        median_snr=median,
        median_snr_se=se,
        objective=label,
        num_points=x.shape[0],
    )


def _elbo(objective):
    """(the ELBO object, its label) of a spec or an ELBO."""
    if isinstance(objective, ELBO):
        return objective, type(objective).__name__
    if isinstance(objective, str):
        return make_elbo(*parse_objective(objective)), objective
    raise ValueError(
        f"Expected objective to be an objective spec (str) or a pyro.infer.ELBO but got "
        f"{type(objective).__name__}"
    )


def _parameter_groups(vae, x, kwargs):
    """The leaf tensors by name, and ``{"encoder": names, "decoder": names}``.

    Traces the guide and the model (on the guide's draws) for their param sites; the
    tensors are the param store's unconstrained values, the leaves ``.grad`` lands on.
    """
    guide_trace = poutine.trace(vae.guide).get_trace(x, **kwargs)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x, **kwargs)
    stored = dict(pyro.get_param_store().named_parameters())
    module_names = {}
    if isinstance(vae, torch.nn.Module):
        module_names = {id(p): name for name, p in vae.named_parameters()}
    params, groups = {}, {group: [] for group in GROUPS}
    for group, trace in (("encoder", guide_trace), ("decoder", model_trace)):
        for site in trace.nodes.values():
            if site["type"] != "param" or site["name"] not in stored:
                continue
            tensor = stored[site["name"]]
            name = module_names.get(id(tensor), site["name"])
            if name not in params:
                params[name] = tensor
                groups[group].append(name)
    if not params:
        raise ValueError(
            "Expected the model and guide to register parameters (pyro.param or "
            "pyro.module) that require grad but found none"
        )
    return params, groups


def _draw_moments(elbo, vae, x, kwargs, params, num_draws):
    """Per batch b of draws: counts ``(G,)`` and, per parameter, the running mean and sum
    of squared deviations of the flattened gradient, each ``(G, numel)`` float64."""
    num_batches = min(NUM_BATCHES, num_draws)
    counts = torch.zeros(num_batches, dtype=torch.float64)
    means = {n: torch.zeros(num_batches, p.numel(), dtype=torch.float64) for n, p in params.items()}
    m2s = {n: torch.zeros_like(m) for n, m in means.items()}
    for draw in range(num_draws):
        for p in params.values():
            p.grad = None
        elbo.loss_and_grads(vae.model, vae.guide, x, **kwargs)
        if draw == 0 and all(p.grad is None for p in params.values()):
            raise ValueError(
                f"Expected {type(elbo).__name__}.loss_and_grads to set the parameters' .grad "
                "but it set none (do they require grad?)"
            )
        b = draw % num_batches
        counts[b] += 1
        for name, p in params.items():
            g = p.grad.detach().flatten().double() if p.grad is not None else 0.0
            delta = g - means[name][b]
            means[name][b] += delta / counts[b]
            m2s[name][b] += delta * (g - means[name][b])
    return counts, means, m2s


def _combine(counts, means, m2s, keep=None):
    """Mean and sample s.d. per parameter (flattened) of the batches in ``keep``
    (a boolean mask of shape ``(G,)``; default all), by the parallel Welford update."""
    keep = torch.ones_like(counts, dtype=torch.bool) if keep is None else keep
    n = counts[keep]
    total = n.sum()
    mean, std = {}, {}
    for name in means:
        m = means[name][keep]
        pooled = (n[:, None] * m).sum(0) / total
        m2 = m2s[name][keep].sum(0) + (n[:, None] * (m - pooled).square()).sum(0)
        mean[name] = pooled
        std[name] = (m2 / (total - 1)).sqrt() if total > 1 else torch.full_like(m2, math.nan)
    return mean, std


def _snr(mean, std):
    """``|mean| / std``; nan where both are 0."""
    return mean.abs() / std


def _median_snr(mean, std, names):
    """The nan-ignoring median over the coordinates of ``names`` of ``|mean| / std`` (float)."""
    if not names:
        return math.nan
    snr = torch.cat([_snr(mean[name], std[name]) for name in names])
    return float(torch.nanmedian(snr))


def _jackknife_se(counts, means, m2s, names):
    """Delete-a-batch jackknife s.e. of the median SNR of ``names`` (float; nan if fewer
    than 3 draws or 2 batches)."""
    num_batches = counts.numel()
    if not names or num_batches < 2 or counts.sum() < 3:
        return math.nan
    subset = {name: means[name] for name in names}
    estimates = []
    for b in range(num_batches):
        keep = torch.arange(num_batches) != b
        mean, std = _combine(counts, subset, {name: m2s[name] for name in names}, keep)
        estimates.append(_median_snr(mean, std, names))
    estimates = torch.tensor(estimates, dtype=torch.float64)
    spread = (estimates - estimates.mean()).square().sum()
    return float(((num_batches - 1) / num_batches * spread).sqrt())
