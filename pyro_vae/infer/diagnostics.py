r"""Diagnostics of importance-sampling estimates, computed with ArviZ.

This is the one module of :mod:`pyro_vae` that calls ArviZ (0.x: ArviZ 1.x has no
Pyro converter). ArviZ is imported when a diagnostic is first computed, not when
:mod:`pyro_vae` is imported, since it takes over a second to load.

The main interface is :func:`pareto_khat`: the Pareto shape k̂ of the upper tail of
the importance weights w_s = p(x, z_s) / q(z_s|x), per data point. It tells whether the
importance-sampling estimate of log p(x) and its delta-method standard error (see
:mod:`pyro_vae.infer.evaluation`) can be trusted: the variance of the weights, on which that
standard error rests, is finite only for k < 1/2.

References
----------
1. A. Vehtari, D. Simpson, A. Gelman, Y. Yao, J. Gabry, "Pareto Smoothed Importance
   Sampling", J. Mach. Learn. Res. 25(72):1–58, 2024 (arXiv:1507.02646, 2015).
2. Y. Yao, A. Vehtari, D. Simpson, A. Gelman, "Yes, but Did It Work?: Evaluating
   Variational Inference", ICML 2018.
3. A. Vehtari, A. Gelman, D. Simpson, B. Carpenter, P.-C. Bürkner, "Rank-Normalization,
   Folding, and Localization: An Improved R̂ for Assessing Convergence of MCMC",
   Bayesian Analysis 16(2):667–718, 2021.
4. M. Betancourt, "Diagnosing Suboptimal Cotangent Disintegrations in Hamiltonian
   Monte Carlo", arXiv:1604.00695, 2016.

It also packs posterior draws of many data points into an ArviZ ``InferenceData``
(:func:`posterior_inference_data`, and :func:`from_pyro` for a Pyro ``MCMC`` run) and
checks their convergence per data point (:func:`convergence_table`), for
:mod:`pyro_vae.infer.posterior`.
"""

import math
import warnings

import numpy as np
import torch

__all__ = [
    "ESS_BULK_MIN",
    "KHAT_GOOD",
    "KHAT_UNRELIABLE",
    "RHAT_MAX",
    "as_numpy",
    "convergence_table",
    "from_pyro",
    "pareto_khat",
    "posterior_inference_data",
    "tail_khat",
    "warn_unconverged",
]

KHAT_GOOD = 0.5
"""k̂ below which the weights have a finite variance: the central limit theorem holds, and
log p(x) with its delta-method standard error is reliable (Vehtari et al. 2024)."""

KHAT_UNRELIABLE = 0.7
"""k̂ above which log p(x) and its standard error are not to be trusted: the draws needed
for a useful estimate grow impractically, as q(z|x) misses mass of p(z|x) (Vehtari et
al. 2024). Between 0.5 and 0.7 the variance is infinite: the plain importance-sampling
estimate converges, slower than S^{−1/2}, and its delta-method standard error is
optimistic."""


RHAT_MAX = 1.01
"""Rank-normalized split-R̂ above which chains have not mixed (Vehtari et al. 2021)."""

ESS_BULK_MIN = 400
"""Bulk effective sample size below which R̂ and the Monte-Carlo standard errors are not
reliable (Vehtari et al. 2021 recommend 400, i.e. 100 per chain for 4 chains)."""


def _check_draws(name, draws):
    """A ValueError naming ``name`` unless ``draws`` is a floating-point ``(S, batch)``
    tensor with S ≥ 2 and batch ≥ 1."""
    if (
        not isinstance(draws, torch.Tensor)
        or not draws.is_floating_point()
        or draws.dim() != 2
        or draws.shape[0] < 2
        or draws.shape[1] == 0
    ):
        raise ValueError(
            f"Expected {name} to be a floating-point tensor of shape (S, batch) with S >= 2 "
            f"and batch >= 1 but got {_describe(draws)}"
        )


def _arviz():
    """ArviZ, imported on first use without its import-time FutureWarning.

    ArviZ 0.23 warns on import that 1.0 will change its API: a notice to ArviZ's own
    users, not about a call of this package, and an error under
    ``-W error::FutureWarning`` in the user's tests. Other warnings are kept.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning
        )
        import arviz
    return arviz


def pareto_khat(log_weights):
    r"""Pareto k̂ of the importance weights of each data point (PSIS).

    Fits a generalized Pareto distribution to the largest M = min(S/5, 3√S) weights of
    each column, as Pareto-smoothed importance sampling does, with
    :func:`arviz.psislw`.

    Parameters
    ----------
    log_weights : torch.Tensor
        Log importance weights log w_s = log p(x, z_s) − log q(z_s|x), z_s ~ q(z|x),
        shape ``(S, batch)`` (draws first, as from
        :func:`pyro_vae.log_importance_weights`); nats. Any constant shift of a column
        leaves its k̂ unchanged.

    Returns
    -------
    torch.Tensor
        k̂ per data point, shape ``(batch,)``, float64 on the input's device. ``inf``
        where no tail can be fitted: S ≤ 20 (a tail of at most 4 draws), or ties in the
        tail; ``-inf`` where a column is constant up to rounding (log w_s all within
        1024 ulps of the input's dtype of each other, relative to max abs(log w_s)): the
        estimate is exact there, and the lightest tail there is.

    Raises
    ------
    ValueError
        If ``log_weights`` is not a floating-point tensor of shape ``(S, batch)`` with
        S ≥ 2 and batch ≥ 1, or holds NaN or +inf (−inf, a weight of zero, is allowed).

    See Also
    --------
    pyro_vae.evaluate : reports k̂ as ``values["khat"]`` next to the log p(x) it judges.
    KHAT_GOOD, KHAT_UNRELIABLE : the thresholds 0.5 and 0.7.

    Notes
    -----
    If the weights have a tail P(w > t) ∝ t^{−1/k}, the moments E[w^r] exist for
    r < 1/k. So for k < 1/2 the variance of w is finite and

    .. math:: \log \hat p(x) = \log \frac{1}{S} \sum_s w_s

    is asymptotically normal with the delta-method standard error √(1/ESS − 1/S);
    for 1/2 ≤ k < 1 the estimate is consistent but its error falls slower than
    S^{−1/2} and is underestimated; for k ≥ 1 the mean of w is infinite in the tail's
    model, and the estimate is not to be trusted. A diagonal-Gaussian guide narrower
    than the posterior has k = 1 − s²/σ² for scale ratio s/σ: weights grow as
    exp(z²/2 (1/s² − 1/σ²)) where q has thinner tails than p(z|x).

    The threshold at which k̂ itself can be estimated reliably falls with S as
    min(1 − 1/log₁₀ S, 0.7) (Vehtari et al. 2024): 0.57 at S = 200, 0.7 from S ≈ 2200.

    ArviZ smooths along the last axis, hence the transpose to ``(batch, S)``.

    References
    ----------
    1. A. Vehtari, D. Simpson, A. Gelman, Y. Yao, J. Gabry, "Pareto Smoothed Importance
       Sampling", J. Mach. Learn. Res. 25(72):1–58, 2024.

    Examples
    --------
    Weights uniform on (0, 1) are bounded (k = −1); Pareto weights w = u^{−0.9},
    u ~ U(0, 1), have k = 0.9:

    >>> u = torch.rand(5000, 2)
    >>> pareto_khat(u.log()) < KHAT_GOOD
    tensor([True, True])
    >>> pareto_khat(-0.9 * u.log()) > KHAT_UNRELIABLE
    tensor([True, True])
    """
    _check_draws("log_weights", log_weights)
    if torch.isnan(log_weights).any() or (log_weights == math.inf).any():
        raise ValueError("Expected log_weights without NaN or +inf but found some")
    arviz = _arviz()

    columns = log_weights.detach().to("cpu", torch.float64).T.numpy()
    constant = (columns == columns[:, :1]).all(axis=1) | _rounding_noise(log_weights)
    khat = np.full(columns.shape[0], -np.inf)
    if not constant.all():
        _, fitted = arviz.psislw(columns[~constant].copy())
        khat[~constant] = np.asarray(fitted, dtype=np.float64).reshape(-1)
    return torch.from_numpy(khat).to(log_weights.device)


def tail_khat(draws):
    r"""Pareto k̂ of the heavier tail of Monte-Carlo draws whose mean is reported.

    The mean of draws f_s has the central-limit standard error std(f)/√S only if f has a
    finite variance. A generalized Pareto distribution is fitted to each tail of f, as
    Vehtari et al. (2024, sec. 3.1) do for a plain Monte-Carlo estimate E[f]: to the
    largest M = min(S/5, 3√S) of f − median(f), and of median(f) − f
    (:func:`pareto_khat` of their logarithms); the larger k̂ of the two is returned.

    Parameters
    ----------
    draws : torch.Tensor
        Draws f_s, shape ``(S, batch)`` (draws first), in any unit; e.g. the log
        importance weights log w_s, whose mean is the ELBO (nats).

    Returns
    -------
    torch.Tensor
        k̂ per column, shape ``(batch,)``, float64 on the input's device: below 0.5
        (:data:`KHAT_GOOD`) the variance is finite and std/√S is a standard error;
        from 0.5 it is infinite, and from 1 so is the mean. ``inf`` where a draw is
        ±inf or no tail can be fitted (S ≤ 20, ties), ``-inf`` where the column is
        constant up to rounding (as :func:`pareto_khat`).

    Raises
    ------
    ValueError
        If ``draws`` is not a floating-point tensor of shape ``(S, batch)`` with S ≥ 2
        and batch ≥ 1, or holds NaN.

    See Also
    --------
    pareto_khat : the upper tail of the importance weights exp(log w), for log p(x).

    Notes
    -----
    For draws with a tail P(abs(f) > t) ∝ t^{−1/k}, E abs(f)^r exists for r < 1/k, so the
    variance needs k < 1/2. The two tails are fitted apart since they can differ: the
    ELBO's draws log p(x, z) − log q(z|x) of a Student-t guide with ν degrees of freedom
    have a light right tail and a left tail of index k = 2/ν (the −z²/2 of the prior).

    References
    ----------
    1. A. Vehtari, D. Simpson, A. Gelman, Y. Yao, J. Gabry, "Pareto Smoothed Importance
       Sampling", J. Mach. Learn. Res. 25(72):1–58, 2024.

    Examples
    --------
    Normal draws have light tails; Cauchy draws have k = 1 in both:

    >>> tail_khat(torch.randn(5000, 2)) < KHAT_GOOD
    tensor([True, True])
    >>> tail_khat(torch.distributions.Cauchy(0.0, 1.0).sample((5000, 2))) > KHAT_GOOD
    tensor([True, True])
    """
    _check_draws("draws", draws)
    if torch.isnan(draws).any():
        raise ValueError("Expected draws without NaN but found some")
    infinite = ~torch.isfinite(draws).all(0)
    constant = torch.as_tensor(_rounding_noise(draws), device=draws.device) & ~infinite
    khat = torch.where(infinite, math.inf, -math.inf).double()
    fit = ~(infinite | constant)
    if fit.any():
        columns = draws.detach()[:, fit].double()
        centred = columns - columns.median(0).values
        tails = torch.cat([centred.clamp(min=0).log(), (-centred).clamp(min=0).log()], 1)
        right, left = pareto_khat(tails).chunk(2)
        khat[fit] = torch.maximum(right, left)
    return khat


def _describe(value):
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _rounding_noise(log_weights):
    """Columns whose log-weights differ by no more than rounding errors, shape (batch,).

    An exact guide computes log w = log p(x) up to a few ulps, which quantizes the
    weights into a handful of values: ties in the tail, and k̂ = inf from ArviZ.
    """
    log_weights = log_weights.detach()
    spread = log_weights.max(0).values - log_weights.min(0).values
    magnitude = log_weights.abs().max(0).values.clamp(min=1.0)
    resolution = _CONSTANT_ULPS * torch.finfo(log_weights.dtype).eps * magnitude
    return (torch.isfinite(spread) & (spread <= resolution)).cpu().numpy()


_CONSTANT_ULPS = 1024  # float32: log w within ≈ 1e-4 |log w| nats counts as constant


def posterior_inference_data(z, sample_stats, x, x_pred=None, datum=None, attrs=None):
    """Posterior draws of B data points as an ArviZ ``InferenceData``.

    Parameters
    ----------
    z : numpy.ndarray
        Draws of the latent, shape ``(chain, draw, B, D)``.
    sample_stats : dict of str to numpy.ndarray
        Per-draw statistics, each of shape ``(chain, draw, B)`` (e.g. ``diverging``,
        ``energy``, ``step_size``, ``n_steps``, ``acceptance_rate``, ``lp``,
        ``log_weight``).
    x : numpy.ndarray
        The observed data points, shape ``(B, P)``.
    x_pred : numpy.ndarray, optional
        Posterior predictive draws, shape ``(chain, draw, B, P)``.
    datum : array-like, optional
        Labels of the B data points; default ``0, …, B − 1``.
    attrs : dict, optional
        Attributes of the ``posterior`` group (e.g. ``method``, ``sampling_time``).

    Returns
    -------
    arviz.InferenceData
        ``posterior.z`` with dims ``(chain, draw, datum, latent)``, ``sample_stats``
        with dims ``(chain, draw, datum)``, ``observed_data.x`` with dims
        ``(datum, pixel)`` and, given ``x_pred``, ``posterior_predictive.x`` with dims
        ``(chain, draw, datum, pixel)``; coordinates ``datum``, ``latent`` = 0, …, D − 1
        and ``pixel`` = 0, …, P − 1.

    Raises
    ------
    ValueError
        If the shapes disagree.
    """
    arviz = _arviz()

    z = np.asarray(z)
    if z.ndim != 4 or x.ndim != 2 or x.shape[0] != z.shape[2]:
        raise ValueError(
            f"Expected z of shape (chain, draw, B, D) and x of shape (B, P) but got "
            f"{z.shape} and {x.shape}"
        )
    for name, value in sample_stats.items():
        if np.shape(value) != z.shape[:3]:
            raise ValueError(
                f"Expected sample_stats[{name!r}] of shape {z.shape[:3]} (chain, draw, B) "
                f"but got {np.shape(value)}"
            )
    coords = {
        "datum": np.arange(z.shape[2]) if datum is None else np.asarray(datum),
        "latent": np.arange(z.shape[3]),
        "pixel": np.arange(x.shape[1]),
    }
    dims = {"z": ["datum", "latent"], "x": ["datum", "pixel"]}
    dims.update({name: ["datum"] for name in sample_stats})
    return arviz.from_dict(
        posterior={"z": z},
        sample_stats=dict(sample_stats),
        observed_data={"x": x},
        posterior_predictive=None if x_pred is None else {"x": x_pred},
        coords=coords,
        dims=dims,
        posterior_attrs=attrs,
    )


def convergence_table(idata):
    """Per data point: worst R̂, smallest bulk ESS and the divergences of ``posterior.z``.

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``posterior.z`` of dims ``(chain, draw, datum, latent)`` and, optionally,
        ``sample_stats.diverging`` of dims ``(chain, draw, datum)``.

    Returns
    -------
    dict of str to numpy.ndarray
        Each of shape ``(B,)``: ``"rhat_max"``, the largest rank-normalized split-R̂
        over latent dimensions (:func:`arviz.rhat`); ``"ess_bulk_min"``, the smallest
        bulk ESS (draws; :func:`arviz.ess`); ``"divergences"``, the number of divergent
        transitions after warm-up (0 without ``diverging``); with
        ``sample_stats.energy``, ``"bfmi_min"``, the smallest over chains of the
        energy Bayesian fraction of missing information (:func:`arviz.bfmi` of the
        datum's ``(chain, draw)`` energies; below 0.3 the momentum resampling explores
        the energy distribution poorly, Betancourt 2016). :func:`arviz.bfmi` on the
        whole ``InferenceData`` fails, as it reads one ``(chain, draw)`` array.

    See Also
    --------
    RHAT_MAX, ESS_BULK_MIN : the thresholds, 1.01 and 400 (Vehtari et al. 2021).
    """
    arviz = _arviz()

    z = idata.posterior["z"]
    rhat = arviz.rhat(idata, var_names=["z"])["z"].max("latent")
    ess = arviz.ess(idata, var_names=["z"], method="bulk")["z"].min("latent")
    stats = getattr(idata, "sample_stats", None)
    if stats is not None and "diverging" in stats:
        divergences = stats["diverging"].sum(("chain", "draw")).values.astype(np.int64)
    else:
        divergences = np.zeros(z.sizes["datum"], dtype=np.int64)
    table = {
        "rhat_max": rhat.transpose("datum").values,
        "ess_bulk_min": ess.transpose("datum").values,
        "divergences": divergences,
    }
    if stats is not None and "energy" in stats:
        energy = stats["energy"].transpose("chain", "draw", "datum").values
        table["bfmi_min"] = np.array(
            [arviz.bfmi(energy[:, :, i]).min() for i in range(energy.shape[2])], dtype=float
        )
    return table


def from_pyro(mcmc, datum=None):
    """A Pyro ``MCMC`` run of ``vae.model`` as ``InferenceData`` with the package's dims.

    :func:`arviz.from_pyro` names the dims of ``z`` ``(chain, draw, z_dim_0, z_dim_1)``;
    this gives the layout of :func:`pyro_vae.sample_posterior` and
    :func:`pyro_vae.sample_guide`, so that NUTS draws, the package's HMC draws and the
    guide's draws compare directly (:func:`pyro_vae.compare_posteriors`,
    :func:`arviz.summary` per datum).

    Parameters
    ----------
    mcmc : pyro.infer.MCMC
        A finished run on ``vae.model`` conditioned on x of shape ``(B, x_dim)`` (e.g.
        ``MCMC(NUTS(vae.model), ...).run(x)`` inside ``vae.frozen()``), with one latent
        site ``"z"`` of shape ``(B, z_dim)`` and the observed site ``"x"``.
    datum : array-like, optional
        Labels of the B data points; default ``0, …, B − 1``.

    Returns
    -------
    arviz.InferenceData
        ``posterior.z`` with dims ``(chain, draw, datum, latent)``,
        ``sample_stats.diverging`` with dims ``(chain, draw, datum)`` (one chain moves
        all B points jointly, so a divergent transition counts for every datum) and
        ``observed_data.x`` with dims ``(datum, pixel)``; ``posterior.attrs["method"]``
        is ``"pyro.infer.MCMC"``.

    Raises
    ------
    ValueError
        If ``mcmc`` is not an MCMC run (has no ``get_samples``: the model passed
        instead of the run, say), or the run has no ``"z"`` of shape
        ``(chain, draw, B, D)`` or no observed ``"x"`` of B rows.
    """
    if not callable(getattr(mcmc, "get_samples", None)):
        raise ValueError(
            "Expected mcmc to be a finished pyro.infer.MCMC run (MCMC(NUTS(vae.model), "
            f"...).run(x), then from_pyro(mcmc)) but got {type(mcmc).__name__}; for the "
            "package's own sampler use pyro_vae.sample_posterior(vae, x)"
        )
    arviz = _arviz()

    samples = mcmc.get_samples(group_by_chain=True)
    z = samples.get("z")
    if z is None or z.dim() != 4:
        found = {name: tuple(value.shape) for name, value in samples.items()}
        raise ValueError(
            "Expected an MCMC run of vae.model with a latent site 'z' of shape "
            f"(chain, draw, B, z_dim) but got sites {found}"
        )
    idata = arviz.from_pyro(mcmc, log_likelihood=False)
    observed = getattr(idata, "observed_data", None)
    if observed is None or "x" not in observed or observed["x"].shape[0] != z.shape[2]:
        raise ValueError(
            f"Expected the MCMC run to observe x with {z.shape[2]} rows at the site 'x'"
        )
    diverging = idata.sample_stats["diverging"].transpose("chain", "draw").values
    stats = {"diverging": np.broadcast_to(diverging[:, :, None], tuple(z.shape[:3])).copy()}
    return posterior_inference_data(
        as_numpy(z),
        stats,
        observed["x"].values,
        datum=datum,
        attrs={"method": "pyro.infer.MCMC"},
    )


def as_numpy(value):
    """A tensor (detached, on the CPU) or array-like as a NumPy array."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


MAX_NAMED = 10
"""Most data points a warning names; the rest are counted."""


def warn_unconverged(checks, labels, what):
    """Warn, naming the data points whose MCMC checks fail R̂, bulk ESS or divergences.

    Parameters
    ----------
    checks : dict of str to numpy.ndarray
        ``rhat_max``, ``ess_bulk_min`` and ``divergences`` per data point, shape ``(B,)``
        (:func:`convergence_table`).
    labels : array-like
        The data points' labels, length B.
    what : str
        What is checked, the warning's subject (e.g. ``"The reference"``).
    """
    bad = (
        (checks["rhat_max"] > RHAT_MAX)
        | (checks["ess_bulk_min"] < ESS_BULK_MIN)
        | (checks["divergences"] > 0)
    )
    if bad.any():
        failing = [str(v) for v in np.asarray(labels)[bad]]
        named = ", ".join(failing[:MAX_NAMED])
        if len(failing) > MAX_NAMED:
            named += f" and {len(failing) - MAX_NAMED} more"
        warnings.warn(
            f"{what} of {int(bad.sum())} data point(s) fail R̂ <= {RHAT_MAX}, "
            f"bulk ESS >= {ESS_BULK_MIN} or no divergences, and are not to be "
            f"trusted: datum {named} (see compare_posteriors or arviz.summary)",
            UserWarning,
            stacklevel=3,
        )
