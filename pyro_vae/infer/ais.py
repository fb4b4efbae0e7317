r"""log p_θ(x) by annealed importance sampling, and the BDMC sandwich on simulated data.

Annealed importance sampling (AIS; Neal 2001) moves draws of a start distribution q₀(z)
to the posterior p_θ(z|x) ∝ p(z) p_θ(x|z) through the geometric bridges

.. math::

    \log f_t(z) = (1 - \beta_t) \log q_0(z) + \beta_t \log p_\theta(x, z),
    \qquad 0 = \beta_0 < \beta_1 < \dots < \beta_T = 1,

with one HMC transition leaving f_t invariant after each bridge's weight update. Each
chain's weight

.. math::

    \log w = \sum_{t=1}^{T} (\beta_t - \beta_{t-1})
    \big[\log p_\theta(x, z_{t-1}) - \log q_0(z_{t-1})\big]

has E[w] = p_θ(x), so the log of the chains' mean weight is a stochastic lower bound on
log p_θ(x) (Jensen), whose bias vanishes as T grows. With T = 1 it is importance
sampling with q₀ as the proposal.

Run backwards from an exact posterior draw, from β = 1 down to β = 0, the same
construction gives weights of mean 1/p_θ(x): minus the log of their mean is a
stochastic *upper* bound. On data simulated from the model, where an exact posterior
draw is the z that generated x, the two bound log p(x) from both sides: bidirectional
Monte Carlo (BDMC; Grosse, Ghahramani & Adams 2015), whose gap bounds the error of
either estimate on such data (Wu et al. 2017).

The main interface: :func:`ais` (:class:`AISResult`) and :func:`bdmc`
(:class:`BDMCResult`).

References
----------
1. R. M. Neal, "Annealed importance sampling", Statistics and Computing 11:125–139, 2001.
2. R. B. Grosse, Z. Ghahramani, R. P. Adams, "Sandwiching the marginal likelihood using
   bidirectional Monte Carlo", arXiv:1511.02543, 2015.
3. Y. Wu, Y. Burda, R. Salakhutdinov, R. Grosse, "On the Quantitative Analysis of
   Decoder-Based Generative Models", ICLR 2017 (and its code, ``lxuechen/BDMC``).
4. R. M. Neal, "MCMC using Hamiltonian dynamics", in Handbook of Markov Chain Monte
   Carlo, ch. 5, Chapman & Hall/CRC, 2011.
"""

import contextlib
import functools
import math
import warnings
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from tqdm.auto import tqdm

from .._checks import check_int
from .._deprecation import renamed
from . import traces
from .evaluation import Summary
from .mcmc.hmc import HMCState, check_target_accept_prob, transition
from .traces import CHUNK_ROWS, check_inputs, check_seed, guide_moments, seeded

__all__ = [
    "ADAPT_BRIDGES",
    "ADAPT_CHAINS",
    "NUM_BRIDGES",
    "NUM_STEPS",
    "SCHEDULES",
    "STARTS",
    "AISResult",
    "BDMCResult",
    "ais",
    "annealing_schedule",
    "bdmc",
]

SCHEDULES = ("sigmoid", "linear")
"""The schedules of β of :func:`annealing_schedule`."""

STARTS = ("guide", "prior")
"""The start distributions q₀ of :func:`ais`: the guide q_φ(z|x), or the prior N(0, I)."""

NUM_BRIDGES = 500
"""Bridges T of :func:`ais` and :func:`bdmc` unless told (``num_bridges``)."""
NUM_STEPS = 10
"""Leapfrog steps L per HMC transition of :func:`ais` and :func:`bdmc` unless told."""

ADAPT_BRIDGES = 100
"""Bridges of the step-size adaptation pass (a short AIS run on the same kind of schedule)."""
ADAPT_CHAINS = 4
"""Chains per point of the adaptation pass unless told (at most ``num_chains``): 50
transitions × 4 chains of acceptance per point set its step size; more chains cost as
much as a longer run and moved the step sizes by about 1% on the digits."""

_ADAPT_GAIN = 0.5  # log ε moves by gain × (acceptance − target) per transition
_INITIAL_STEP_SIZE = 0.5  # whitened units: q₀ has unit scale in them
_STEP_SIZE_JITTER = 0.4  # each transition's step is ε × Uniform(1 − j, 1 + j)
_SIGMOID_HALF_WIDTH = 4.0  # the sigmoid schedule spans logits −4 … 4


@dataclass
class AISResult:
    """Per-point log p(x) estimates of one direction of AIS.

    Attributes
    ----------
    log_px : torch.Tensor
        The estimate of log p_θ(x), nats per point, shape ``(B,)``: the log-mean-exp of
        ``log_weights`` over the chains (forward: a stochastic lower bound), or minus it
        (``direction="reverse"``: a stochastic upper bound).
    log_weights : torch.Tensor
        Each chain's log-weight, shape ``(num_chains, B)``, nats. Forward, exp of it has
        mean p_θ(x); reverse, mean 1/p_θ(x).
    acceptance : torch.Tensor
        Mean HMC acceptance probability over the chains and transitions, shape ``(B,)``.
    step_size : torch.Tensor
        The frozen leapfrog step size of each point, shape ``(B,)`` (whitened units, see
        :func:`ais`).
    ess : torch.Tensor
        Effective sample size of the chains' weights, (Σ w)² / Σ w², shape ``(B,)``,
        from 1 to ``num_chains``.
    direction : str
        ``"forward"`` (from q₀ to the posterior) or ``"reverse"`` (from an exact
        posterior draw back to q₀).
    """

    log_px: torch.Tensor
    log_weights: torch.Tensor
    acceptance: torch.Tensor
    step_size: torch.Tensor
    ess: torch.Tensor
    direction: str = "forward"

    @property
    def log_px_se(self) -> torch.Tensor:
        """Monte-Carlo s.e. of ``log_px`` per point, nats, shape ``(B,)``.

        The delta method: se_i = sd(w_i) / (mean(w_i) √C) over the C chains' weights of
        point i (the s.e. of the log of a mean of i.i.d. weights; reverse chains share
        their start, so theirs is a rough guide). NaN for one chain. Like every
        weight-based s.e. it is too small when the weights are heavy-tailed (a small
        ``ess``).
        """
        num_chains = self.log_weights.shape[0]
        if num_chains < 2:
            return torch.full_like(self.log_px, math.nan)
        w = (self.log_weights - self.log_weights.max(0).values).exp()
        return w.std(0) / (w.mean(0) * math.sqrt(num_chains))

    def summary(self) -> Summary:
        """Means over the points, nats per point.

        Returns
        -------
        pyro_vae.infer.evaluation.Summary
            A dict: ``"log_px"``: (mean, s.e.), the s.e. that of the mean of
            independent per-point errors, √(Σ se_i²) / B; ``"ess"`` and
            ``"acceptance"``: their means over the points (float). Printed, a table.
        """
        se = self.log_px_se
        num_chains = self.log_weights.shape[0]
        values = {
            "log_px": (self.log_px.mean().item(), se.square().sum().sqrt().item() / se.numel()),
            "ess": self.ess.mean().item(),
            "acceptance": self.acceptance.mean().item(),
        }
        notes = {
            "ess": f"chains (mean effective sample size of the weights, out of {num_chains})",
            "acceptance": "(mean HMC acceptance probability)",
        }
        return Summary(values, num_points=se.numel(), notes=notes)


@dataclass
class BDMCResult:
    """What :func:`bdmc` returns: both bounds on log p_θ(x) of simulated data.

    Attributes
    ----------
    x : torch.Tensor
        The simulated data x* ~ p_θ(x|z*), shape ``(num_points, x_dim)``.
    z : torch.Tensor
        The latents z* ~ N(0, I) that generated them, shape ``(num_points, z_dim)``:
        exact posterior draws, the reverse chains' start.
    forward : AISResult
        AIS from the prior to the posterior: a stochastic lower bound on log p(x*).
    reverse : AISResult
        AIS from z* back to the prior (``direction="reverse"``): a stochastic upper
        bound.
    """

    x: torch.Tensor
    z: torch.Tensor
    forward: AISResult
    reverse: AISResult

    @property
    def width(self) -> torch.Tensor:
        """Upper minus lower bound per point, nats, shape ``(num_points,)``."""
        return self.reverse.log_px - self.forward.log_px

    def summary(self) -> Summary:
        """Means over the points with their Monte-Carlo s.e., nats per point.

        Returns
        -------
        pyro_vae.infer.evaluation.Summary
            A dict of str to (float, float): ``"forward"``, ``"reverse"`` and
            ``"width"`` (reverse − forward per point, then averaged; its per-point s.e.
            √(se_f² + se_r²)), each (mean, s.e.) with s.e. √(Σ se_i²) / B.
        """
        num = self.x.shape[0]
        ses = {"forward": self.forward.log_px_se, "reverse": self.reverse.log_px_se}
        ses["width"] = (ses["forward"].square() + ses["reverse"].square()).sqrt()
        values = {"forward": self.forward.log_px, "reverse": self.reverse.log_px}
        values["width"] = self.width
        return Summary(
            {
                name: (values[name].mean().item(), ses[name].square().sum().sqrt().item() / num)
                for name in ("forward", "reverse", "width")
            },
            num_points=num,
        )


def annealing_schedule(
    num_bridges: int | None = None, schedule: str = "sigmoid", *, num_steps: int | None = None
) -> list[float]:
    """β_0 = 0 < β_1 < … < β_T = 1 for T = ``num_bridges`` bridges.

    Parameters
    ----------
    num_bridges : int
        T ≥ 1 (required).
    schedule : {"sigmoid", "linear"}, default "sigmoid"
        ``"sigmoid"``: σ(s) at T + 1 equally spaced s from −4 to 4, rescaled to [0, 1]
        (Wu et al. 2017, ``lxuechen/BDMC``): denser steps near both ends, where the
        bridges change fastest. ``"linear"``: equally spaced β.
    num_steps : int, optional
        The old name of ``num_bridges``, accepted for one release with a FutureWarning.

    Returns
    -------
    list of float
        T + 1 values, the first exactly 0 and the last exactly 1.

    Raises
    ------
    ValueError
        If ``num_bridges`` is not a positive integer (or both it and ``num_steps`` are
        given) or ``schedule`` is unknown.
    """
    num_bridges = renamed("annealing_schedule()", "num_steps", num_steps, "num_bridges",
                          num_bridges, None, check=_check_count)  # fmt: skip
    check_int("num_bridges", num_bridges)
    _check_schedule(schedule)
    grid = torch.linspace(0.0, 1.0, num_bridges + 1, dtype=torch.float64)
    if schedule == "sigmoid":
        grid = torch.sigmoid(_SIGMOID_HALF_WIDTH * (2 * grid - 1))
        grid = (grid - grid[0]) / (grid[-1] - grid[0])
    betas = grid.tolist()
    betas[0], betas[-1] = 0.0, 1.0
    return betas


def _check_schedule(schedule):
    if schedule not in SCHEDULES:
        raise ValueError(f"Expected schedule in {SCHEDULES} but got {schedule!r}")


def _check_model(vae, purpose):
    for attr in ("likelihood_dist", "encode", "frozen"):
        if not callable(getattr(vae, attr, None)):
            raise ValueError(
                f"Expected vae to be a pyro_vae BaseVAE (prior N(0, I), likelihood_dist, "
                f"encode) for {purpose} but got {type(vae).__name__}"
            )


def _check_count(value, name):
    check_int(name, value)


def _checked_config(where, num_bridges, num_chains, num_steps, adapt_chains, target_accept_prob,
                    schedule, old):  # fmt: skip
    """The run's settings, each checked (ValueError naming the argument), from the new
    keywords and the old ones in ``old`` (``leapfrog_steps``, ``target_accept``)."""
    num_bridges, num_steps = _bridges_and_steps(where, num_bridges, num_steps,
                                                old["leapfrog_steps"])  # fmt: skip
    target_accept_prob = renamed(where, "target_accept", old["target_accept"],
                                 "target_accept_prob", target_accept_prob, 0.65,
                                 check=check_target_accept_prob, stacklevel=3)  # fmt: skip
    for name, value in (("num_bridges", num_bridges), ("num_chains", num_chains),
                        ("num_steps", num_steps)):  # fmt: skip
        check_int(name, value)
    if adapt_chains is not None:
        check_int("adapt_chains", adapt_chains)
    target_accept_prob = check_target_accept_prob(target_accept_prob)
    _check_schedule(schedule)
    return _Config(num_bridges, num_chains, adapt_chains or min(ADAPT_CHAINS, num_chains),
                   schedule, num_steps, target_accept_prob)  # fmt: skip


def _bridges_and_steps(where, num_bridges, num_steps, leapfrog_steps):
    """(bridges T, leapfrog steps L) from the keywords, old meanings included.

    ``num_steps`` without ``num_bridges`` counts bridges, as it did before the rename
    (FutureWarning); ``leapfrog_steps`` is the old name of ``num_steps``.
    """
    if num_bridges is None and num_steps is not None:
        check_int("num_steps", num_steps)
        warnings.warn(
            f"{where}: num_steps= without num_bridges= counts the AIS bridges in this "
            "release, as it did before; pass num_bridges= instead (from the next release "
            "num_steps= is the leapfrog steps per HMC transition, as in sample_posterior)",
            FutureWarning,
            stacklevel=4,
        )
        num_bridges, num_steps = num_steps, None
    num_steps = renamed(where, "leapfrog_steps", leapfrog_steps, "num_steps", num_steps, None,
                        check=_check_count, stacklevel=4)  # fmt: skip
    return (NUM_BRIDGES if num_bridges is None else num_bridges,
            NUM_STEPS if num_steps is None else num_steps)  # fmt: skip


def ais(
    vae,
    x,
    num_bridges=None,
    num_chains=16,
    seed=0,
    start="guide",
    schedule="sigmoid",
    num_steps=None,
    target_accept_prob=0.65,
    adapt_chains=None,
    progress=False,
    *,
    leapfrog_steps=None,
    target_accept=None,
) -> AISResult:
    r"""log p_θ(x) per point by annealed importance sampling (Neal 2001).

    Each of ``num_chains`` chains per data point starts at z₀ ~ q₀ and crosses the
    bridges f_t (module docstring): at bridge t its log-weight gains
    (β_t − β_{t−1}) [log p_θ(x, z_{t−1}) − log q₀(z_{t−1})], then one HMC transition
    leaving f_t invariant moves it (potential −log f_t, ``num_steps`` leapfrog
    steps, a Metropolis accept/reject; :func:`pyro_vae.infer.hmc.transition`). The
    estimate is the log of the chains' mean weight. All chains of all points run at once,
    as a tensor ``(num_chains, rows, z_dim)``, over blocks of rows of x with
    ``num_chains × rows`` at most :data:`~pyro_vae.infer.traces.CHUNK_ROWS`.

    *Step sizes are adapted on a separate pass, then frozen.* An adaptive step size
    would make the transitions depend on the chains' past and the weights biased, so
    each point's step size ε is first tuned on its own chains (``adapt_chains`` of them)
    during a separate AIS run of :data:`ADAPT_BRIDGES` bridges of the same schedule
    (log ε moves by ½ (acceptance − ``target_accept_prob``) after each transition; ε is then
    the geometric mean over the pass's second half), and held fixed for the run whose
    weights are returned. That run's every transition uses ε × Uniform(0.6, 1.4), a
    jitter drawn independently of the chains (Neal 2011, sec. 5.4.2.2), which leaves
    each f_t invariant and avoids trajectories of a period's length on Gaussian-like
    targets.

    .. warning:: Before this release ``num_steps`` counted the bridges and
       ``leapfrog_steps`` the leapfrog steps. For one release ``num_steps`` given
       without ``num_bridges`` keeps its old meaning, the bridges (with a
       FutureWarning): pass ``num_bridges`` to count bridges, and then ``num_steps``
       is the leapfrog steps. Positional calls are unchanged (the third argument
       counts bridges, the eighth leapfrog steps).

    Parameters
    ----------
    vae : pyro_vae.BaseVAE
        The model, held fixed (:meth:`~pyro_vae.models.base.BaseVAE.frozen`): prior
        N(0, I), ``likelihood_dist``; with ``start="guide"``, ``encode``.
    x : torch.Tensor
        Data, shape ``(B, x_dim)``, moved to the model's device (AIS runs where the
        model's parameters are).
    num_bridges : int, default :data:`NUM_BRIDGES` (500)
        Bridges T ≥ 1; T = 1 is importance sampling with q₀ as the proposal.
    num_chains : int, default 16
        Chains C per data point.
    seed : int or None, default 0
        Seed of every draw (the global RNG state is restored). Per block of rows the
        draws are, in order: the C starting points z₀ ~ q₀ (``q0.sample((C,))``), the
        adaptation pass, the run's transitions.
    start : {"guide", "prior"}, default "guide"
        q₀: the guide ``vae.encode(x)``, or the prior N(0, I). With the guide, HMC's
        mass matrix is M = diag(1/s²) for the guide's s.d. s (its own, or of 4096 draws),
        with the prior M = I; either way fixed, so each f_t stays invariant.
    schedule : {"sigmoid", "linear"}, default "sigmoid"
        The β of :func:`annealing_schedule`.
    num_steps : int, default :data:`NUM_STEPS` (10)
        Leapfrog steps L per transition, as everywhere in the package (see the
        warning above for this release).
    target_accept_prob : float, default 0.65
        The mean acceptance probability the step-size adaptation aims at, in (0, 1)
        (Pyro's and NumPyro's name).
    adapt_chains : int, optional
        Chains per point of the adaptation pass; default the smaller of
        :data:`ADAPT_CHAINS` and ``num_chains``.
    progress : bool, default False
        Show a progress bar over the bridges.
    leapfrog_steps, target_accept : optional
        The old names of ``num_steps`` and ``target_accept_prob``, accepted for one
        release with a FutureWarning.

    Returns
    -------
    AISResult
        ``log_px`` ``(B,)`` in nats per point, ``log_weights`` ``(C, B)``, ``acceptance``,
        ``step_size`` and ``ess`` ``(B,)``; ``summary()`` gives the mean with its s.e.

    Raises
    ------
    ValueError
        For bad data or ``seed`` (as :func:`pyro_vae.evaluate`), a ``vae`` that is not a
        :class:`~pyro_vae.BaseVAE`, a count that is not a positive integer, an unknown
        ``start`` or ``schedule``, ``target_accept_prob`` outside (0, 1), or a keyword
        given under both its new and its old name.

    Warns
    -----
    FutureWarning
        For an old keyword (``leapfrog_steps``, ``target_accept``, or ``num_steps``
        without ``num_bridges``).

    See Also
    --------
    bdmc : both bounds on data simulated from the model.
    pyro_vae.evaluate : importance sampling with the guide (IWAE bounds).

    Examples
    --------
    >>> result = ais(vae, data.test[:100], num_bridges=500)
    >>> result.summary()["log_px"]  # (mean, s.e.), nats per point
    """
    _check_model(vae, "AIS")
    old = {"leapfrog_steps": leapfrog_steps, "target_accept": target_accept}
    config = _checked_config("ais()", num_bridges, num_chains, num_steps, adapt_chains,
                             target_accept_prob, schedule, old)  # fmt: skip
    if start not in STARTS:
        raise ValueError(f"Expected start in {STARTS} but got {start!r}")
    x = check_inputs(vae, x, seed)
    with _held_fixed(vae, x.device, seed), _bar(config, x.shape[0], 1, progress) as bar:
        parts = [
            _ais_block(vae, x[rows], start, config, bar)[0] for rows in _blocks(x.shape[0], config)
        ]
    return _collect(parts, "forward")


def bdmc(
    vae,
    num_points=100,
    num_bridges=None,
    num_chains=16,
    seed=0,
    schedule="sigmoid",
    num_steps=None,
    target_accept_prob=0.65,
    adapt_chains=None,
    progress=False,
    *,
    leapfrog_steps=None,
    target_accept=None,
) -> BDMCResult:
    r"""Bidirectional Monte Carlo: lower and upper bounds on log p_θ(x) of simulated data.

    Draws z* ~ N(0, I) and x* ~ p_θ(x|z*) (binary x for a Bernoulli likelihood), so that
    z* is an exact draw of p_θ(z|x*). Then, per point (Grosse, Ghahramani & Adams 2015;
    ``lxuechen/BDMC``):

    - *forward*: :func:`ais` from the prior (``start="prior"``) to the posterior; its
      log-mean-exp of the weights is a stochastic lower bound on log p(x*);
    - *reverse*: every chain starts at z* and anneals from β = 1 down to β = 0 on the
      reversed schedule, each bridge adding (β_{t−1} − β_t) [log p_θ(x*, z) − log p(z)]
      (= −(β_t − β_{t−1}) log p_θ(x*|z)) to its log-weight before a transition leaving
      f_{t−1} invariant. E[exp(log-weight)] = 1/p(x*), so −logmeanexp of the reverse
      log-weights is a stochastic upper bound on log p(x*).

    Both directions use the same frozen step sizes, tuned once on a separate forward
    pass (see :func:`ais`). The width, upper minus lower bound, bounds the error of
    either estimate on data like x* (Wu et al. 2017) and shrinks to 0 as ``num_bridges``
    grows. The data are simulated on the model's device.

    Parameters
    ----------
    vae : pyro_vae.BaseVAE
        The model (held fixed): prior N(0, I) and ``likelihood_dist``.
    num_points : int, default 100
        Simulated points.
    num_bridges : int, default :data:`NUM_BRIDGES` (500)
        Bridges T of each direction.
    num_chains : int, default 16
        Chains per point and direction.
    seed : int or None, default 0
        Seed of every draw (the global RNG state is restored): z*, x*, then per block
        of rows the forward starting points, the adaptation pass, the forward and the
        reverse transitions.
    schedule : {"sigmoid", "linear"}, default "sigmoid"
    num_steps : int, default :data:`NUM_STEPS` (10)
    target_accept_prob : float, default 0.65
    adapt_chains : int, optional
    progress : bool, default False
    leapfrog_steps, target_accept : optional
        As for :func:`ais`, whose warning on ``num_steps`` holds here too: without
        ``num_bridges`` it counts bridges for this release.

    Returns
    -------
    BDMCResult
        ``x``, ``z``, ``forward`` and ``reverse`` (:class:`AISResult`); ``summary()``
        gives (mean, s.e.) of both bounds and of the width, nats per point.

    Raises
    ------
    ValueError
        For a count that is not a positive integer, a bad ``seed``, an unknown
        ``schedule``, ``target_accept_prob`` outside (0, 1), a ``vae`` that is not a
        :class:`~pyro_vae.BaseVAE`, or a keyword given under both its names.

    Warns
    -----
    FutureWarning
        For an old keyword, as :func:`ais`.

    Examples
    --------
    >>> sandwich = bdmc(vae, num_points=100, num_bridges=1000)
    >>> sandwich.summary()["width"]  # (mean, s.e.), nats per point
    """
    _check_model(vae, "BDMC")
    check_int("num_points", num_points)
    old = {"leapfrog_steps": leapfrog_steps, "target_accept": target_accept}
    config = _checked_config("bdmc()", num_bridges, num_chains, num_steps, adapt_chains,
                             target_accept_prob, schedule, old)  # fmt: skip
    check_seed(seed)
    ref = next(vae.parameters())
    with _held_fixed(vae, ref.device, seed), _bar(config, num_points, 2, progress) as bar:
        z = torch.randn(num_points, vae.z_dim, dtype=ref.dtype, device=ref.device)
        x = vae.likelihood_dist(z).sample()
        forward, reverse = [], []
        for rows in _blocks(num_points, config):
            parts = _ais_block(vae, x[rows], "prior", config, bar, z_exact=z[rows])
            forward.append(parts[0])
            reverse.append(parts[1])
    return BDMCResult(x, z, _collect(forward, "forward"), _collect(reverse, "reverse"))


@dataclass(frozen=True)
class _Config:
    num_bridges: int
    num_chains: int
    adapt_chains: int
    schedule: str
    num_steps: int
    target_accept_prob: float


def _blocks(num_rows, config):
    """Slices of rows with at most CHUNK_ROWS chain-rows each."""
    rows = max(1, CHUNK_ROWS // max(config.num_chains, config.adapt_chains))
    return [slice(s, min(s + rows, num_rows)) for s in range(0, num_rows, rows)]


def _bar(config, num_rows, directions, progress):
    """A progress bar over every bridge of every pass and block."""
    bridges = ADAPT_BRIDGES + directions * config.num_bridges
    total = len(_blocks(num_rows, config)) * bridges
    return tqdm(total=total, disable=not progress, leave=False, desc="AIS")


@contextlib.contextmanager
def _held_fixed(vae, device, seed):
    """θ frozen, no autograd graph, Pyro's validation off, a seeded forked RNG."""
    with (
        vae.frozen(),
        torch.no_grad(),
        pyro.validation_enabled(False),  # a diverging leapfrog may reach inf or NaN
        seeded(seed, device),
    ):
        yield


def _start_dist(vae, x, start):
    """q₀ with batch shape ``(B,)`` and event shape ``(z_dim,)``."""
    if start == "guide":
        return vae.encode(x)
    zeros = x.new_zeros(x.shape[0], vae.z_dim)
    return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)


def _log_bridge(log_joint, log_q0, beta, z):
    """log f_β(z) = (1 − β) log q₀(z) + β log p(x, z), and both terms; each ``(C, B)``."""
    lj, lq = log_joint(z), log_q0(z)
    if beta == 1:
        return lj, lj, lq
    if beta == 0:
        return lq, lj, lq
    return (1 - beta) * lq + beta * lj, lj, lq


def _potential(log_joint, log_q0, beta, z):
    """U(z) = −log f_β(z), shape ``(C, B)`` (differentiated by HMC's leapfrog)."""
    return -_log_bridge(log_joint, log_q0, beta, z)[0]


def _state_at(log_joint, log_q0, beta, z):
    """The HMC state of f_β at z and the terms log p(x, z), log q₀(z), each ``(C, B)``."""
    with torch.enable_grad():
        z_ = z.detach().requires_grad_()
        log_f, lj, lq = _log_bridge(log_joint, log_q0, beta, z_)
        (grad,) = torch.autograd.grad(log_f.sum(), z_)
    return HMCState(z.detach(), -log_f.detach(), -grad), lj.detach(), lq.detach()


def _anneal(log_joint, log_q0, z, betas, step_size, inverse_mass_matrix, config, bar,
            adapt=False):  # fmt: skip
    """One AIS pass of the chains z ``(C, B, z_dim)`` along ``betas`` (either direction).

    Returns the log-weights ``(C, B)``, the mean acceptance ``(B,)`` and the step sizes
    ``(B,)``: the given ones, or with ``adapt`` the adapted ones.
    """
    log_w = z.new_zeros(z.shape[:-1])
    acceptance = z.new_zeros(z.shape[1])
    log_eps, history = step_size.log(), []
    inverse_mass_matrix = inverse_mass_matrix.expand_as(z)
    for previous, beta in zip(betas[:-1], betas[1:], strict=True):
        state, lj, lq = _state_at(log_joint, log_q0, beta, z)
        log_w = log_w + (beta - previous) * (lj - lq)  # at z_{t−1}, before the move
        jitter = 1 + _STEP_SIZE_JITTER * (2 * torch.rand_like(log_w) - 1)
        potential = functools.partial(_potential, log_joint, log_q0, beta)
        with torch.enable_grad():  # for HMC's gradients of U only: z holds no graph
            state, stats = transition(potential, state, log_eps.exp() * jitter,
                                      config.num_steps, inverse_mass_matrix)  # fmt: skip
        z = state.z
        rate = stats["acceptance_rate"].mean(0)
        acceptance += rate
        if adapt:
            log_eps = log_eps + _ADAPT_GAIN * (rate - config.target_accept_prob)
            history.append(log_eps)
        bar.update(1)
    if adapt:
        log_eps = torch.stack(history[len(history) // 2 :]).mean(0)
    return log_w, acceptance / (len(betas) - 1), log_eps.exp()


def _ais_block(vae, x, start, config, bar, z_exact=None):
    """Forward AIS of one block of rows (and reverse AIS from ``z_exact`` if given)."""
    q0 = _start_dist(vae, x, start)
    z0 = q0.sample((config.num_chains,))  # first: num_bridges=1 is IS with these draws
    if start == "guide":
        inverse_mass_matrix = guide_moments(q0, x.device)[1].square()
    else:
        inverse_mass_matrix = torch.ones_like(z0[0])
    log_joint = functools.partial(traces.log_joint, vae, x)
    log_q0 = q0.log_prob
    step_size = torch.full_like(z0[0, :, 0], _INITIAL_STEP_SIZE)
    adapt_betas = annealing_schedule(ADAPT_BRIDGES, config.schedule)
    z_adapt = q0.sample((config.adapt_chains,))
    *_, step_size = _anneal(log_joint, log_q0, z_adapt, adapt_betas, step_size,
                            inverse_mass_matrix, config, bar, adapt=True)  # fmt: skip
    betas = annealing_schedule(config.num_bridges, config.schedule)
    passes = [(z0, betas)]
    if z_exact is not None:
        passes.append((z_exact.expand_as(z0).clone(), betas[::-1]))
    return [
        _anneal(log_joint, log_q0, z, path, step_size, inverse_mass_matrix, config, bar)
        for z, path in passes
    ]


def _collect(parts, direction):
    """An AISResult from the blocks' (log-weights, acceptance, step sizes)."""
    log_w = torch.cat([p[0] for p in parts], dim=1)
    log_mean = torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])
    w = (log_w - log_w.max(0).values).exp()
    return AISResult(
        log_px=log_mean if direction == "forward" else -log_mean,
        log_weights=log_w,
        acceptance=torch.cat([p[1] for p in parts]),
        step_size=torch.cat([p[2] for p in parts]),
        ess=w.sum(0).square() / w.square().sum(0),
        direction=direction,
    )
