r"""The trace core of the estimators: the user's guide and model traced on S particles.

Every Monte-Carlo estimator of :mod:`pyro_vae.infer` (:func:`pyro_vae.evaluate`, the
ELBO's decompositions and surgery, :func:`pyro_vae.active_units`,
:func:`pyro_vae.sample_guide`) reads q_φ(z|x), p(z) and p_θ(x|z) the same way: the
guide is traced under ``pyro.plate("particles", S, dim=-2)`` and the model replayed on
its draws, so that for S particles and a batch of B data points

.. math::

    \log w_s = \underbrace{\textstyle\sum_{\text{observed}} \log p(x \mid z_s)}_{
    \text{log-likelihood}} + \underbrace{\textstyle\sum_{\text{latent}} \log p(z_s)}_{
    \text{log-prior}} - \underbrace{\textstyle\sum_{\text{guide sites}}
    \log q(z_s \mid x)}_{\text{log-guide}},

each term of shape ``(S, B)`` in nats. The log-guide sums *every* sample site of the
guide, so a guide whose density sits on an auxiliary site (an autoguide's
``"z_unconstrained"``, with a ``Delta`` at ``"z"``) is counted whole; a guide with an
observed site (the model passed as the guide) is refused.

This module also holds the rules every estimator shares: one chunk size
(:data:`CHUNK_ROWS` particle-rows per pass, :func:`chunk_sizes`, :func:`chunks`), the
seeding context (:func:`seeded`), the param-store context
(:func:`param_store_as_found`) and the one boundary check of (vae, x, seed)
(:func:`check_inputs`); inner calls then run unchecked.

References
----------
1. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
"""

import contextlib
import ctypes
import ctypes.util
import inspect
import math
import statistics
from collections.abc import Iterator

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from .._checks import is_int
from .._device import check_device, on_device
from ..data import check_data

__all__ = [
    "CHUNK_ROWS",
    "check_inputs",
    "check_seed",
    "chunk_sizes",
    "chunks",
    "guide_moments",
    "log_joint",
    "log_density_terms",
    "log_importance_weights",
    "param_store_as_found",
    "release_freed_memory",
    "row_kwargs",
    "sample_sites",
    "seeded",
    "site_log_prob",
    "trace_particles",
]

CHUNK_ROWS = 2**17
"""Particle-rows (particles × data points) per pass of the model or the guide.

The one chunk size of the estimators: their memory grows with it (times x_dim plus the
networks' hidden widths), not with the number of data points."""


def chunk_sizes(num_rows: int, num_samples: int) -> tuple[int, int]:
    """Data rows and particles per pass for S = ``num_samples`` draws of each row.

    Rows first: as many rows as fit with all S particles, at least one; then as many
    particles as fit with those rows. Either way at most :data:`CHUNK_ROWS`
    particle-rows per pass, unless one row or one particle alone exceeds it.

    Returns
    -------
    rows, samples : int
    """
    rows = max(1, min(num_rows, CHUNK_ROWS // num_samples))
    samples = max(1, min(num_samples, CHUNK_ROWS // rows))
    return rows, samples


def chunks(
    num_rows: int, num_samples: int, release_last: bool = True
) -> Iterator[tuple[slice, list[int]]]:
    """The passes of :func:`chunk_sizes`, in the order their draws are made.

    After each block of rows the freed memory goes back to the operating system
    (:func:`release_freed_memory`), so the peak is that of one block; after the last
    block only with ``release_last``. A caller that runs again soon (the per-epoch
    validation of :func:`pyro_vae.fit`) passes False: its next call would take the same
    pages back, one page fault each (about 4700 for 180 points × 50 draws).

    Yields
    ------
    rows : slice
        A block of consecutive data rows.
    particles : list of int
        The particles of each pass over that block, summing to ``num_samples``.
    """
    rows, samples = chunk_sizes(num_rows, num_samples)
    counts = [min(samples, num_samples - s) for s in range(0, num_samples, samples)]
    for start in range(0, num_rows, rows):
        yield slice(start, min(start + rows, num_rows)), counts
        if release_last or start + rows < num_rows:
            release_freed_memory()


def _takes_rows(fn):
    """Whether ``fn`` accepts ``num_data`` and ``subsample`` keywords (bool)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    names = {p.name for p in params}
    return any(p.kind is p.VAR_KEYWORD for p in params) or {"num_data", "subsample"} <= names


def row_kwargs(model, guide, x, kwargs):
    """A function of a block of rows giving the keyword arguments of its pass.

    When ``model`` takes ``num_data`` and ``subsample`` and ``guide`` takes them too (the
    package's models; an autoguide, whose ``forward`` takes any keyword), each pass over
    ``x[rows]`` is told the rows it holds: ``num_data`` = the data's size and
    ``subsample`` = the rows' indices (sliced from the caller's ``subsample`` if given),
    so that a guide with one set of parameters per data point
    (``AutoNormal(vae.model, create_plates=vae.create_plates)``) reads the rows of the
    block. The traced log-densities are unscaled, so this changes no estimate of a
    model and guide that ignore the indices.
    """
    told = "num_data" in kwargs and "subsample" not in kwargs  # the caller's own plate size
    if told or not (_takes_rows(model) and _takes_rows(guide)):
        return lambda rows: kwargs
    num_rows = x.shape[0]
    subsample = kwargs.get("subsample")
    if subsample is None:
        subsample = torch.arange(num_rows, device=x.device)
    num_data = kwargs.get("num_data", num_rows)
    return lambda rows: {**kwargs, "num_data": num_data, "subsample": subsample[rows]}


def _load_malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl)."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


_MALLOC_TRIM = _load_malloc_trim()


def release_freed_memory():
    """Hand the C heap's free pages back to the operating system (glibc only).

    Called by :func:`chunks` after each block of rows. A pass allocates tensors of
    CHUNK_ROWS × x_dim numbers, under glibc's largest mmap threshold (32 MiB) for
    x_dim = 64, which after the first pass come from the heap; freed, they stay
    resident wherever a live allocation sits above them, so without a trim the peak
    memory grows with the number of blocks. ``malloc_trim(0)`` returns those pages, so
    the peak is that of one pass (``benchmarks/bench_speed.py`` measures it). A no-op
    where the C library has no ``malloc_trim``.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device | None = None):
    """Seed torch's RNGs inside, restore the global RNG state on exit.

    Forks the CPU generator and, for a CUDA ``device``, that device's (not every
    visible GPU's), then calls ``torch.manual_seed(seed)``. ``seed=None`` uses the
    global RNG as it is, unforked.
    """
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def log_joint(vae, x, z):
    """log p(z) + log p_θ(x|z) of a :class:`~pyro_vae.BaseVAE` (prior N(0, I)), in nats.

    ``z`` of shape ``(..., B, z_dim)`` for x ``(B, x_dim)``; returns ``(..., B)``. The
    model's density written out from ``likelihood_dist``, without tracing (the hot loop
    of per-point fits and AIS).
    """
    log_prior = -0.5 * z.square().sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
    return log_prior + vae.likelihood_dist(z).log_prob(x)


_NORMAL_IQR = 2 * statistics.NormalDist().inv_cdf(0.75)
"""The interquartile range of N(0, 1), ≈ 1.349."""


def guide_moments(q, device=None, num_draws=4096, seed=0):
    """Location and scale of a guide q(z|x) per axis, each ``(batch, z_dim)``.

    The distribution's own mean and standard deviation (``q.mean``, ``q.stddev``) where
    it has them and they are finite. Else from ``num_draws`` draws, seeded by ``seed``
    with the global RNG state left as found (``device``: q's device, for seeding its
    CUDA generator): their mean and standard deviation where q has no closed form (a
    flow guide's :class:`~pyro.distributions.TransformedDistribution`); their median
    and IQR / 1.349 (the interquartile range scaled to a Normal's s.d.) where q's
    moments are infinite or undefined (a Student-t guide of df ≤ 2), so that a
    heavy-tailed guide still gives HMC a finite mass matrix and a grid a finite width.
    """
    try:
        mean, std = q.mean, q.stddev
    except NotImplementedError:
        mean = std = None
    if mean is not None and bool(torch.isfinite(mean).all() & torch.isfinite(std).all()):
        return mean, std
    with torch.no_grad(), seeded(seed, device):
        draws = q.sample((num_draws,))
    if mean is None:
        return draws.mean(0), draws.std(0)
    ordered = draws.sort(0).values  # torch.quantile refuses more than 2**24 numbers
    lower, median, upper = (ordered[round(p * (num_draws - 1))] for p in (0.25, 0.5, 0.75))
    return median, (upper - lower) / _NORMAL_IQR


@contextlib.contextmanager
def param_store_as_found():
    """Context manager: on exit, delete the names added to Pyro's global param store.

    Unlike :meth:`pyro.params.param_store.ParamStoreDict.scope`, the user's own
    parameters stay visible inside (a model reading ``pyro.param`` gets their values).
    """
    store = pyro.get_param_store()
    before = set(store.keys())
    try:
        yield
    finally:
        for name in [name for name in store.keys() if name not in before]:
            del store[name]


def check_seed(seed):
    """Raise ``ValueError`` unless ``seed`` is an integer or None."""
    if seed is not None and not is_int(seed):
        raise ValueError(f"Expected seed to be an integer or None but got {seed!r}")


def check_inputs(vae, x, seed, device=None, *, place=False):
    """The boundary check of an estimator's (vae, x, seed): x, checked and placed.

    Parameters
    ----------
    vae : object with ``model`` and ``guide``
        Callables taking ``(x, **kwargs)``. With ``x_dim``, x is checked against it
        (:func:`pyro_vae.data.check_data`: width, finite values, binary for a
        Bernoulli likelihood) and cast to the parameters' dtype and device.
    x : torch.Tensor
        Data, shape ``(batch, ...)``, batch ≥ 1.
    seed : int or None
    device : str or torch.device, optional
        With ``place``: where to run; None leaves the model where it is (its
        parameters' device, :mod:`pyro_vae._device`).
    place : bool, default False
        Move a ``vae`` that is an ``nn.Module`` with parameters to a given ``device`` in
        place (:func:`pyro_vae._device.on_device`, which also refuses half precision);
        for any other ``vae``, move x when ``device`` is given.

    Returns
    -------
    torch.Tensor
        x, on the model's dtype and device.

    Raises
    ------
    ValueError
        If ``vae`` lacks a callable ``model`` or ``guide``, for bad data, a bad
        ``seed`` or ``device``, or parameters that are not float32 or float64.
    """
    if not (callable(getattr(vae, "model", None)) and callable(getattr(vae, "guide", None))):
        raise ValueError(
            f"Expected vae to have callable model and guide but got {type(vae).__name__}"
        )
    if place:
        if isinstance(vae, torch.nn.Module) and any(True for _ in vae.parameters()):
            on_device(vae, device)
        elif device is not None and isinstance(x, torch.Tensor):
            x = x.to(check_device(device))
    if hasattr(vae, "x_dim"):
        x = check_data(x, vae, "x")
    elif not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(
            f"Expected x to be a torch.Tensor of shape (batch, ...) with batch >= 1 but got "
            f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
        )
    check_seed(seed)
    return x


def sample_sites(trace):
    """``(name, site)`` of the trace's sample sites, plates' subsample sites left out."""
    return [
        (name, site)
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    ]


def site_log_prob(name, site, shape, role="model"):
    """``site["fn"].log_prob(site["value"])``, or a ValueError unless of ``shape``.

    ``shape`` is ``(particles, data)``. ``role`` (``"model"`` or ``"guide"``) picks the
    message: a model site outside the data plate; a guide site with one value for the
    whole batch (a global-latent autoguide); a guide site with another number of rows (a
    per-data-point guide not told which rows it sees).
    """
    log_p = site["fn"].log_prob(site["value"])
    if log_p.shape == shape:
        return log_p
    got = tuple(log_p.shape)
    expected = (
        f"Expected the {role}'s site {name!r} to have a log-density of shape "
        f"{tuple(shape)} (particles, data) but got {got}"
    )
    if role == "guide" and (log_p.dim() < 2 or got[-1] == 1):
        raise ValueError(
            f"{expected}: the guide draws one latent for the whole batch (a global-latent "
            "autoguide such as AutoDiagonalNormal, AutoMultivariateNormal or AutoIAFNormal), "
            "whose density does not split into one term per data point, so per-point "
            "importance weights, log p(x) and the gap are undefined; use a per-data-point "
            "guide: the VAE's own, or AutoNormal(vae.model, create_plates=vae.create_plates)"
        )
    if role == "guide":
        raise ValueError(
            f"{expected}: the guide draws {got[-1]} rows (one per data point it was built "
            f"on) where this pass holds {shape[-1]} rows of x, and it was not told which "
            "rows they are; build it as AutoNormal(vae.model, "
            "create_plates=vae.create_plates), which reads their indices (subsample), and "
            "evaluate it on the data it was fit to"
        )
    raise ValueError(f"{expected}: put every sample site of the model in the data plate")


def trace_particles(model, guide, x, num_samples=None, **kwargs):
    """The guide's trace and the model's, replayed on it, under S particles if given.

    Parameters
    ----------
    model, guide : callable
        Pyro model and guide taking ``(x, **kwargs)``.
    x : torch.Tensor
        Data, shape ``(batch, ...)``.
    num_samples : int, optional
        S: with it both run inside ``pyro.plate("particles", S, dim=-2)``, so every
        site in a data plate at dim -1 draws ``(S, batch)`` values.

    Returns
    -------
    guide_trace, model_trace : pyro.poutine.Trace

    Raises
    ------
    ValueError
        If the guide has an observed sample site: a guide proposes latents, and one
        that observes x (the model passed as the guide) would make every weight 1.
    """
    plate = contextlib.nullcontext()
    if num_samples:
        plate = pyro.plate("particles", num_samples, dim=-2)
    with plate:
        guide_trace = poutine.trace(guide).get_trace(x, **kwargs)
        observed = [name for name, site in sample_sites(guide_trace) if site["is_observed"]]
        if observed:
            raise ValueError(
                f"Expected a guide with latent sample sites only but its sites {observed} "
                "are observed: was the model passed as the guide?"
            )
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, **kwargs)
    return guide_trace, model_trace


def log_density_terms(guide_trace, model_trace, shape):
    """Log-likelihood, log-prior and log-guide of the traces, each of ``shape``, nats.

    ``"log_likelihood"`` sums the model's observed sites, ``"log_prior"`` its latent
    sites, ``"log_guide"`` every sample site of the guide (auxiliary sites included).
    Each site's log-density must have ``shape`` (:func:`site_log_prob`).
    """
    terms = {"log_likelihood": 0.0, "log_prior": 0.0, "log_guide": 0.0}
    model_sites = sample_sites(model_trace)
    if not any(site["is_observed"] for _, site in model_sites):
        raise ValueError(
            "Expected the model to observe x at a sample site (obs=x) but none of its sites "
            f"{[name for name, _ in model_sites]} is observed: was the guide passed as the "
            "model?"
        )
    # The guide first: a model replayed on a guide's wrongly shaped draws inherits them.
    for trace, role in ((guide_trace, "guide"), (model_trace, "model")):
        for name, site in sample_sites(trace):
            log_p = site_log_prob(name, site, shape, role)
            if role == "guide":
                key = "log_guide"
            else:
                key = "log_likelihood" if site["is_observed"] else "log_prior"
            terms[key] = terms[key] + log_p
    return terms


def log_importance_weights(model, guide, x, num_samples, **kwargs):
    """Per-point log-density terms of S joint draws z ~ q(z|x), traced with Pyro.

    Parameters
    ----------
    model, guide : callable
        Pyro model and guide taking ``(x, **kwargs)``, with every sample site inside a
        plate at dim -1 over the rows of x.
    x : torch.Tensor
        Data, shape ``(batch, x_dim)``.
    num_samples : int
        S, draws per data point.

    Returns
    -------
    dict of torch.Tensor
        ``"log_likelihood"`` (Σ over observed sites of log p(x|z)), ``"log_prior"``
        (Σ over latent model sites of log p(z)) and ``"log_guide"`` (Σ over every guide
        sample site of log q, auxiliary sites included), each of shape
        ``(num_samples, batch)`` in nats, unscaled by any subsampling.

    Raises
    ------
    ValueError
        If a site's log-density does not have shape ``(num_samples, batch)``, or the
        guide has an observed site.

    See Also
    --------
    pyro_vae.evaluate : the estimates made from these terms.
    """
    guide_trace, model_trace = trace_particles(model, guide, x, num_samples, **kwargs)
    return log_density_terms(guide_trace, model_trace, torch.Size((num_samples, x.shape[0])))
