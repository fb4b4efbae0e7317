r"""Exact log p(x) and posterior p_θ(z|x) of a VAE with one or two latents, by quadrature.

With z_dim ≤ 2 the marginal likelihood

.. math:: \log p_\theta(x) = \log \int p_\theta(x \mid z)\, p(z)\, dz

is a one- or two-dimensional integral: a grid of the decoder's log-likelihood evaluated
per data point gives it, the posterior's mean and covariance and the guide's gap
KL(q_φ(z|x) ‖ p_θ(z|x)) = log p(x) − ELBO (Kingma & Welling 2014, eq. 1) to a stated
tolerance, with no Monte-Carlo error. It is the ground truth for a *nonlinear* VAE, where
:class:`pyro_vae.LinearGaussianVAE` has closed forms: the yardstick against which the
importance-sampling estimates of :func:`pyro_vae.evaluate` are checked.

The main interface is :func:`quadrature_posterior`, returning a
:class:`QuadraturePosterior`; :func:`log_joint_grid` evaluates log p(x, z) on a grid of
one's choosing (for contour plots of the exact posterior).

References
----------
1. L. N. Trefethen, J. A. C. Weideman, "The exponentially convergent trapezoidal rule",
   SIAM Review 56(3), 385–458, 2014.
2. D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
"""

import contextlib
import math
import numbers
import warnings
from dataclasses import dataclass

import torch
from torch import special
from torch.distributions import Independent, Normal

from .._checks import is_int
from ..data import check_data
from . import traces
from .traces import guide_moments

__all__ = ["QuadraturePosterior", "log_joint_grid", "quadrature_posterior"]

_MAX_LISTED = 10  # indices named in the non-convergence warning
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_GUIDE_DRAWS = 4096  # draws placing the first box for a guide without mean or stddev
_NOISE_ULPS = 1024  # log q − log p(x, z) within 1024 ulps of its mean: rounding, not tail
_EPS64 = torch.finfo(torch.float64).eps


@dataclass(frozen=True)
class QuadraturePosterior:
    """Per-point results of :func:`quadrature_posterior`.

    All tensors are float64 on the model's device; B data points, D = z_dim.

    Attributes
    ----------
    log_px : torch.Tensor
        log p_θ(x), nats per data point, shape ``(B,)``.
    mean : torch.Tensor
        Posterior mean E[z | x], shape ``(B, D)``.
    cov : torch.Tensor
        Posterior covariance Cov[z | x], shape ``(B, D, D)``.
    kl_guide : torch.Tensor
        KL(q_φ(z|x) ‖ p_θ(z|x)) = log p(x) − ELBO, nats per data point, shape ``(B,)``.
    error : torch.Tensor
        The error estimate, nats, shape ``(B,)``: the larger of max(abs(Δ log_px),
        abs(Δ kl_guide)) between the last two grid refinements and the part of the KL's
        integral beyond the box, extrapolated from its outermost cells (see
        :func:`quadrature_posterior`, Notes); inf where the last grid did not refine the
        one before.
    converged : torch.Tensor
        Boolean, shape ``(B,)``: ``error < tol`` and ``tail_mass < tol``. Where False,
        ``kl_guide`` and ``log_px`` are known only to within ``error``.
    num_points : torch.Tensor
        Grid points per axis of the final grid (int64), shape ``(B,)``; the grid has
        ``num_points ** D`` cells.
    lower, upper : torch.Tensor
        Corners of the final integration box, shape ``(B, D)``.
    half_width : torch.Tensor
        Distance from the posterior mean to the nearer box edge along each axis, in
        posterior standard deviations, shape ``(B, D)``.
    tail_mass : torch.Tensor
        The larger of the posterior's and the guide's probability outside the box,
        shape ``(B,)``: the mass truncated, which refinement does not see (the guide's
        exact, the posterior's extrapolated from the outermost cells; see Notes of
        :func:`quadrature_posterior`).
    """

    log_px: torch.Tensor
    mean: torch.Tensor
    cov: torch.Tensor
    kl_guide: torch.Tensor
    error: torch.Tensor
    converged: torch.Tensor
    num_points: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    half_width: torch.Tensor
    tail_mass: torch.Tensor


@torch.no_grad()
def quadrature_posterior(vae, x, tol=1e-5, half_width=8.0, initial_points=16, max_points=2**18):
    r"""log p_θ(x), the posterior's moments and KL(q_φ ‖ p_θ(z|x)) by grid quadrature.

    For each data point a D-dimensional grid (D = z_dim ≤ 2) of n equal cells per axis
    covers a box around the posterior; the midpoint rule integrates over it. The guide
    q_φ(z|x) is ``vae.encode(x)``, any distribution (its ``log_prob`` gives log q); the
    first grid spans its mean ± ``half_width`` s.d. per axis (from the distribution's
    ``mean`` and ``stddev``, or from 4096 draws where it has none); each later grid
    doubles n and spans the union of that box and the previous grid's posterior mean
    ± ``half_width`` posterior s.d. per axis (so the guide's mass, which KL(q ‖ p)
    weighs, stays covered); where ``tol`` or more of the posterior or the guide lay
    outside the previous box, the box grows (see Notes). A point has converged when
    log p(x) and the KL change by less than ``tol`` from the previous grid, less
    than ``tol`` of the posterior and of the guide lies outside its box, and the KL's
    integrand beyond the box adds less than ``tol`` nats (a heavy-tailed guide's may
    not: refinement then stops, unconverged, with that tail in ``error``).

    Parameters
    ----------
    vae : pyro_vae.models.base.BaseVAE
        A model with ``x_dim``, ``z_dim`` 1 or 2, a N(0, I) prior, ``likelihood_dist(z)`` and
        ``encode(x)``, e.g. :class:`pyro_vae.VAE` or :class:`pyro_vae.LinearGaussianVAE`,
        whose ``guide`` is BaseVAE's own (q(z|x) = ``encode(x)``).
    x : torch.Tensor
        Data, shape ``(B, x_dim)``.
    tol : float, default 1e-5
        Target error in nats for log p(x) and the KL, per data point. With a float32
        decoder keep it above the rounding of log p(x|z), about 1e-7 abs(log p(x|z)).
    half_width : float, default 8.0
        Half-width of the box in standard deviations (of the guide and of the
        posterior) per axis; mass beyond ±8 s.d. of a Gaussian is about 1e-15.
    initial_points : int, default 16
        Grid points per axis of the first grid (≥ 4).
    max_points : int, default 2**18
        Largest number of grid points per data point (``n ** D``): refinement stops
        there and warns.

    Returns
    -------
    QuadraturePosterior
        ``log_px``, ``kl_guide``, ``error`` ``(B,)`` in nats; ``mean`` ``(B, D)``;
        ``cov`` ``(B, D, D)``; grid diagnostics. Float64.

    Raises
    ------
    ValueError
        If ``vae`` lacks ``x_dim``, ``z_dim``, ``encode`` or ``likelihood_dist``; if
        z_dim is not 1 or 2; if ``vae`` overrides ``guide`` (its q(z|x) is not
        ``encode()``'s: use :func:`pyro_vae.evaluate`, which traces the guide); for
        bad data (as :func:`pyro_vae.data.check_data`: not a non-empty ``(B, x_dim)``
        matrix, NaN/inf, non-binary for a Bernoulli likelihood); if ``tol`` or
        ``half_width`` is not a finite number > 0, ``initial_points`` not an integer
        ≥ 4, or ``max_points`` not an integer ≥ ``initial_points ** z_dim``.

    Warns
    -----
    RuntimeWarning
        Naming the data points whose estimates had not converged to ``tol`` when the
        grid reached ``max_points``, or whose KL has more than ``tol`` beyond the box
        (their ``converged`` is False).

    See Also
    --------
    pyro_vae.evaluate : log p(x) and the gap by importance sampling, for any z_dim.
    pyro_vae.LinearGaussianVAE.exact_log_likelihood : the closed form for the linear model.

    Notes
    -----
    With grid nodes z_i (cell centres), cell area ΔA = Π_k h_k and the log joint
    ℓ_i = log p(z_i) + log p_θ(x|z_i), per data point:

    .. math::

        \log p(x) &\approx \operatorname{logsumexp}_i \ell_i + \log \Delta A, \\
        w_i &= e^{\ell_i} / \textstyle\sum_j e^{\ell_j}, \quad
        \mathbb E[z \mid x] \approx \textstyle\sum_i w_i z_i, \quad
        \mathrm{Cov}[z \mid x] \approx \textstyle\sum_i w_i (z_i - \bar z)(z_i - \bar z)^\top, \\
        \mathrm{KL}(q \,\|\, p(z \mid x)) &= \mathbb E_q[\log q(z \mid x) - \log p(x, z)]
        + \log p(x) \approx \textstyle\sum_i u_i \bigl(\log q(z_i \mid x) - \ell_i\bigr)
        + \log p(x), \quad u_i = q(z_i \mid x) / \textstyle\sum_j q(z_j \mid x).

    The weights u are normalized on the grid, so the KL is zero up to the error of
    log p(x) when q = p(z|x). For an integrand that is analytic and negligible at the
    box edges, the midpoint (equivalently trapezoid) rule converges exponentially in
    n (Trefethen & Weideman 2014, sec. 5): doubling n at least squares a relative
    error below 1, so ``error``, the change between the last two grids, bounds the
    error of the coarser grid and overstates that of the reported, finer one. ``error``
    is inf where the last grid's cells are not at most 0.6 times as wide as the
    previous grid's (its box grew as fast as n), since two grids of the same nodes
    agree whatever their error.

    The KL also loses what its integrand q (log q − ℓ) holds beyond the box, which the
    grid-normalized u hide: for a Student-t guide with ν degrees of freedom log q − ℓ
    grows as z²/2 where q falls as abs(z)^(−ν−1), so that part falls only as the box's
    half-width^(2−ν). It is extrapolated from the outermost two rings of cells as a
    power law (:func:`_power_tail`; asymptotically exact for such a tail, an
    overstatement for a lighter one) and enters ``error``. Growing the box would not
    help: with ν = 3 each factor 10 in accuracy needs a box 10 times wider, with cells
    ever coarser for the posterior; a Student-t guide with ν ≤ 2 has an infinite
    KL(q ‖ p(z|x)), and ``error`` is inf.

    Refinement does not see mass outside the box; ``tail_mass`` estimates it. For a
    guide with independent coordinates of known CDF (a diagonal Normal) it is exact,
    1 − Π_k [Φ((u_k − μ_k)/σ_k) − Φ((l_k − μ_k)/σ_k)]; for any other guide it is
    extrapolated from the outermost cells as for the posterior. For the posterior,
    with m₀ and m₁ the posterior masses of the outermost two rings of cells and
    r = m₀/m₁, the rings beyond would hold m₀ r/(1 − r) (inf if r ≥ 1): exact for a
    tail decaying like exp(−a t), an overstatement for a Gaussian one. Where it
    is ``tol`` or more, the box grows for the next grid: if the box held the posterior
    mean ± ``half_width`` s.d., that point's half-width in s.d. doubles for all later
    grids (heavy tails); if not (the posterior lies partly outside, near the edge, and
    its truncated s.d. understates it), the box also spans the posterior mean ± the
    last box's width, so a posterior far from the guide is reached in a few grids. A
    second mode far from both the guide and the modes found stays unseen. The grid is
    axis-aligned: a strongly correlated posterior, or a guide far from or much narrower
    than the posterior, needs more points.

    The decoder and the guide's ``log_prob`` run in the parameters' dtype on nodes
    rounded to it; the prior and all sums are float64 at those same nodes. The model runs in
    eval mode, restored afterwards, and Pyro's param store is not touched.

    References
    ----------
    1. L. N. Trefethen, J. A. C. Weideman, "The exponentially convergent trapezoidal
       rule", SIAM Review 56(3), 385–458, 2014.
    2. D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (eq. 1:
       log p(x) = KL(q ‖ p(z|x)) + ELBO).

    Examples
    --------
    >>> data = pyro_vae.data.load_digits(binarize="static")
    >>> vae = pyro_vae.VAE(64, z_dim=2, hidden_dims=(64,))
    >>> result = pyro_vae.fit(vae, data, epochs=30, progress=False)
    >>> post = quadrature_posterior(vae, data.test[:10])
    >>> post.log_px, post.kl_guide  # nats per point, each within post.error
    """
    _check_vae(vae)
    _check_settings(vae.z_dim, tol, half_width, initial_points, max_points)
    x = check_data(x, vae, "x")
    with _eval_mode(vae):
        q_loc, q_scale = _guide_moments(vae.encode(x), x.device)
        out, n = _refine(vae, x, q_loc, q_scale, tol, half_width, initial_points, max_points)
    if not out["converged"].all():
        bad = (~out["converged"]).nonzero().flatten().tolist()
        listed = ", ".join(map(str, bad[:_MAX_LISTED])) + (", …" if len(bad) > _MAX_LISTED else "")
        warnings.warn(
            f"quadrature_posterior did not converge to tol={tol:g} nats for {len(bad)} of "
            f"{x.shape[0]} data points (indices {listed}) with up to {n} points per axis "
            f"(max_points={max_points}), or their KL has more than tol beyond the box (a "
            "heavy-tailed guide); their error estimates are in .error",
            RuntimeWarning,
            stacklevel=3,
        )
    distance = torch.minimum(out["mean"] - out["lower"], out["upper"] - out["mean"])
    return QuadraturePosterior(half_width=distance / _std(out["cov"]), **out)


@torch.no_grad()
def log_joint_grid(vae, x, *axes):
    r"""log p(z) + log p_θ(x|z) on the grid spanned by ``axes``, for each data point.

    The unnormalized log posterior log p_θ(z|x) + log p_θ(x): contours of it show
    the exact posterior of a one- or two-latent model (subtract the maximum before
    exponentiating).

    Parameters
    ----------
    vae : pyro_vae.models.base.BaseVAE
        A model with ``z_dim`` 1 or 2 and a N(0, I) prior, as :func:`quadrature_posterior`.
    x : torch.Tensor
        Data, shape ``(B, x_dim)``.
    *axes : array_like
        ``z_dim`` one-dimensional arrays of grid coordinates, of lengths G0 (, G1).

    Returns
    -------
    torch.Tensor
        Float64, shape ``(B, G0)`` or ``(B, G0, G1)``, nats: entry ``[b, i, j]`` is at
        z = (axes[0][i], axes[1][j]). On the model's device.

    Raises
    ------
    ValueError
        As :func:`quadrature_posterior` for ``vae`` and x; if the number of axes is not
        z_dim, or an axis is not a non-empty one-dimensional array of finite numbers.

    See Also
    --------
    quadrature_posterior : the normalized posterior, its moments and log p(x).
    """
    _check_vae(vae)
    x = check_data(x, vae, "x")
    if len(axes) != vae.z_dim:
        raise ValueError(
            f"Expected axes to hold z_dim={vae.z_dim} arrays of grid coordinates but got "
            f"{len(axes)}"
        )
    axes = [torch.as_tensor(a, dtype=torch.float64, device=x.device) for a in axes]
    for k, a in enumerate(axes):
        if a.dim() != 1 or a.numel() == 0 or not torch.isfinite(a).all():
            raise ValueError(
                f"Expected axes[{k}] to be a non-empty 1-D array of finite numbers but got "
                f"shape {tuple(a.shape)}"
            )
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, vae.z_dim)
    group = max(1, traces.CHUNK_ROWS // grid.shape[0])
    with _eval_mode(vae):
        parts = [
            _log_joint(vae, xg, grid[:, None, :].expand(-1, xg.shape[0], -1))[0]
            for xg in x.split(group)
        ]
    return torch.cat(parts, 1).T.reshape(x.shape[0], *(a.numel() for a in axes))


def _refine(vae, x, q_loc, q_scale, tol, half_width, initial_points, max_points):
    """Grids of initial_points, 2×, 4×, … points per axis until each point converges.

    Returns the per-point results (a dict of the :class:`QuadraturePosterior` fields but
    ``half_width``) and the last grid's points per axis.
    """
    num_data, z_dim = q_loc.shape
    out = {
        "log_px": q_loc.new_full((num_data,), math.nan),
        "mean": q_loc.new_full((num_data, z_dim), math.nan),
        "cov": q_loc.new_full((num_data, z_dim, z_dim), math.nan),
        "kl_guide": q_loc.new_full((num_data,), math.nan),
        "error": q_loc.new_full((num_data,), math.inf),
        "converged": torch.zeros(num_data, dtype=torch.bool, device=q_loc.device),
        "num_points": torch.zeros(num_data, dtype=torch.long, device=q_loc.device),
        "lower": q_loc.new_full((num_data, z_dim), math.nan),
        "upper": q_loc.new_full((num_data, z_dim), math.nan),
        "tail_mass": q_loc.new_full((num_data,), math.nan),
    }
    active = torch.arange(num_data, device=q_loc.device)
    reach = q_loc.new_full((num_data, 1), half_width)  # box half-width in s.d., grows
    lower, upper = q_loc - reach * q_scale, q_loc + reach * q_scale
    previous, n = None, initial_points
    while True:
        stats = _grid_statistics(vae, x[active], q_loc[active], q_scale[active], lower, upper, n)
        stats.update(lower=lower, upper=upper, cell=(upper - lower) / n, num_points=n)
        change = _change(stats, previous)
        stats["error"] = torch.maximum(change, stats["kl_tail"])
        resolved = (change < tol) & (stats["tail_mass"] < tol)
        stats["converged"] = resolved & (stats["kl_tail"] < tol)
        for key in out:
            out[key][active] = stats[key]
        pending = ~resolved  # a finer grid does not shrink the KL's part beyond the box
        if not pending.any() or (2 * n) ** z_dim > max_points:
            return out, n
        active = active[pending]
        previous = {key: value[pending] for key, value in stats.items() if key != "num_points"}
        lower, upper, reach = _next_box(
            previous, q_loc[active], q_scale[active], reach[pending], tol
        )
        n *= 2


def _change(stats, previous):
    """max(|Δ log p(x)|, |Δ KL|) from the previous grid, or inf where there is none or
    the new grid's cells are not at most 0.6 times as wide on every axis: a grid that
    doubled its points but also widened its box can repeat the same nodes, and no
    change then measures the error."""
    if previous is None:
        return torch.full_like(stats["log_px"], math.inf)
    change = torch.maximum(
        (stats["log_px"] - previous["log_px"]).abs(),
        (stats["kl_guide"] - previous["kl_guide"]).abs(),
    ).nan_to_num(math.inf)
    refined = (stats["cell"] <= 0.6 * previous["cell"]).all(-1)
    return torch.where(refined, change, math.inf)


def _check_vae(vae):
    """Raise unless vae is a model with one or two latents."""
    for attr in ("x_dim", "z_dim", "encode", "likelihood_dist", "parameters"):
        if not hasattr(vae, attr):
            raise ValueError(
                "Expected vae to be a pyro_vae model with x_dim, z_dim, encode and "
                f"likelihood_dist but got {type(vae).__name__} without {attr!r}"
            )
    if vae.z_dim not in (1, 2):
        raise ValueError(
            f"Expected vae.z_dim to be 1 or 2 for grid quadrature (the grid grows as "
            f"points**z_dim) but got z_dim={vae.z_dim!r}; estimate log p(x) by importance "
            "sampling with pyro_vae.evaluate instead"
        )
    if callable(getattr(vae, "require_encoder_guide", None)):
        vae.require_encoder_guide("grid quadrature")


def _guide_moments(q, device):
    """The guide's mean and s.d. per axis, float64 ``(B, D)``: the distribution's own,
    else those of draws (seeded, the global RNG left as found)."""
    mean, std = guide_moments(q, device, _GUIDE_DRAWS)
    return mean.double(), std.double()


def _check_settings(z_dim, tol, half_width, initial_points, max_points):
    """Validate the grid settings of :func:`quadrature_posterior`."""
    for name, value in (("tol", tol), ("half_width", half_width)):
        if not _is_real(value) or not 0 < value < math.inf:
            raise ValueError(f"Expected {name} to be a finite number > 0 but got {value!r}")
    if not is_int(initial_points) or initial_points < 4:
        raise ValueError(
            f"Expected initial_points to be an integer >= 4 but got {initial_points!r}"
        )
    smallest = initial_points**z_dim
    if not is_int(max_points) or max_points < smallest:
        raise ValueError(
            f"Expected max_points to be an integer >= initial_points**z_dim = {smallest} but "
            f"got {max_points!r}"
        )


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _std(cov):
    """Marginal standard deviations, ``(..., D)``, from covariances ``(..., D, D)``."""
    return cov.diagonal(dim1=-2, dim2=-1).clamp(min=0).sqrt()


@contextlib.contextmanager
def _eval_mode(module):
    """Put every submodule in eval mode; restore each one's own flag on exit."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def _next_box(stats, q_loc, q_scale, reach, tol):
    """Corners ``(A, D)`` of the next grid's box, and its ``reach``, from the last grid.

    The union of q's mean ± reach guide s.d. and the posterior mean ± reach posterior
    s.d. Where ``tol`` or more of the posterior or the guide lay outside the last
    box: if the last box held the posterior's mean ± reach s.d., the tails are
    heavier than reach s.d. allow and ``reach`` (``(A, 1)``) doubles for all later
    grids; if not, the posterior lies (partly) outside the box, whose truncated s.d.
    understates it, and the box also spans the posterior mean ± the last box's width,
    so that a posterior far from the guide is reached in a few grids.
    """
    mean, post_sd = stats["mean"], _std(stats["cov"])
    spill = (stats["tail_mass"] >= tol)[:, None]
    held = (mean - reach * post_sd >= stats["lower"]) & (mean + reach * post_sd <= stats["upper"])
    held = held.all(-1, keepdim=True)
    reach = torch.where(spill & held, 2 * reach, reach)
    lower = torch.minimum(q_loc - reach * q_scale, mean - reach * post_sd)
    upper = torch.maximum(q_loc + reach * q_scale, mean + reach * post_sd)
    width = stats["upper"] - stats["lower"]
    lower = torch.where(spill & ~held, torch.minimum(lower, mean - width), lower)
    upper = torch.where(spill & ~held, torch.maximum(upper, mean + width), upper)
    return lower, upper, reach


def _grid_statistics(vae, x, q_loc, q_scale, lower, upper, n):
    """:func:`_group_statistics` over groups of data points, ≤ ``CHUNK_ROWS`` rows each."""
    group = max(1, traces.CHUNK_ROWS // n ** q_loc.shape[-1])
    parts = [
        _group_statistics(vae, *(t[s : s + group] for t in (x, q_loc, q_scale, lower, upper)), n)
        for s in range(0, x.shape[0], group)
    ]
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


def _group_statistics(vae, x, q_loc, q_scale, lower, upper, n):
    """Midpoint-rule estimates on an n-per-axis grid over each point's box.

    x ``(G, x_dim)``; q_loc, q_scale, lower, upper ``(G, D)``. Returns float64
    ``log_px``, ``kl_guide``, ``kl_tail`` (the KL's part beyond the box, extrapolated),
    ``tail_mass`` ``(G,)``, ``mean`` ``(G, D)`` and ``cov`` ``(G, D, D)``.
    """
    z_dim = q_loc.shape[-1]
    index = torch.cartesian_prod(*[torch.arange(n, device=x.device)] * z_dim).reshape(-1, z_dim)
    cell = (upper - lower) / n
    nodes = lower + (index[:, None, :] + 0.5) * cell  # (P, G, D), P = n**D
    log_joint, nodes = _log_joint(vae, x, nodes)
    log_norm = log_joint.logsumexp(0)
    weights = (log_joint - log_norm).exp()  # posterior mass per cell, (P, G)
    log_px = log_norm + cell.log().sum(-1)
    mean = torch.einsum("pg,pgi->gi", weights, nodes)
    centred = nodes - mean
    cov = torch.einsum("pg,pgi,pgj->gij", weights, centred, centred)
    q = vae.encode(x)
    log_q = q.log_prob(nodes.to(x.dtype)).double()
    guide_weights = log_q.softmax(0)  # q(z_i|x), normalized on the grid
    integrand = log_q - log_joint
    expected = (guide_weights * integrand).sum(0)
    kl_guide = expected + log_px
    ring = torch.minimum(index, n - 1 - index).amin(-1)  # cells from the box's edge
    deviation = (integrand - expected).abs()
    rounding = _NOISE_ULPS * torch.finfo(x.dtype).eps * integrand.abs().amax(0)
    excess = guide_weights * torch.where(deviation > rounding, deviation, 0.0)  # per cell
    outer = excess[ring == 0].sum(0)
    kl_tail = _power_tail(outer, excess[ring == 1].sum(0), n)
    # rings holding a sum's rounding of the whole (an underflowing tail) extrapolate noise
    kl_tail = torch.where(outer > _NOISE_ULPS * _EPS64 * excess.sum(0), kl_tail, 0.0)
    if isinstance(q, Independent) and isinstance(q.base_dist, Normal):
        guide_tail = _gaussian_mass_outside(q_loc, q_scale, lower, upper)
    else:
        guide_tail = _tail_beyond(guide_weights[ring == 0].sum(0), guide_weights[ring == 1].sum(0))
    return {
        "log_px": log_px,
        "mean": mean,
        "cov": cov,
        "kl_guide": kl_guide,
        "kl_tail": kl_tail,
        "tail_mass": torch.maximum(
            _tail_beyond(weights[ring == 0].sum(0), weights[ring == 1].sum(0)), guide_tail
        ),
    }


def _log_joint(vae, x, nodes):
    """log p(z) + log p_θ(x|z) at ``nodes`` ``(P, G, D)`` for x ``(G, x_dim)``.

    The decoder sees the nodes rounded to x's dtype, in calls of at most
    ``CHUNK_ROWS`` rows; returns the log joint ``(P, G)`` and the rounded nodes, both
    float64, the prior evaluated at the rounded nodes.
    """
    nodes = nodes.to(x.dtype)
    log_lik = torch.empty(nodes.shape[:2], dtype=torch.float64, device=x.device)
    step = max(1, traces.CHUNK_ROWS // x.shape[0])
    for s in range(0, nodes.shape[0], step):
        log_lik[s : s + step] = vae.likelihood_dist(nodes[s : s + step]).log_prob(x).double()
    nodes = nodes.double()
    return log_lik - (0.5 * nodes.square() + _HALF_LOG_2PI).sum(-1), nodes


def _tail_beyond(outer, inner):
    """Mass beyond the box by geometric extrapolation of its two outermost rings.

    With ring masses decaying by r = outer / inner per ring, the rings beyond hold
    outer · r / (1 − r): for a tail decaying like exp(−a t) this is the exact
    ρ_edge / a, and it overstates a Gaussian tail, whose decay rate grows outward.
    Where the mass does not decay (r ≥ 1) it is inf; where the outer ring underflows, 0.
    """
    ratio = outer / inner
    tail = torch.where(ratio < 1, outer * ratio / (1 - ratio), math.inf)
    return torch.where(outer > 0, tail, 0.0)


def _power_tail(outer, inner, n):
    """What lies beyond the box by power-law extrapolation of its two outermost rings.

    With the ring t cells from the box's centre holding ∝ t^(−a), the rings at
    t₀ = n/2 − 1/2 and t₁ = n/2 − 3/2 give a = log(inner/outer) / log(t₀/t₁), and the
    rest beyond the edge n/2 is outer · (n/2) / (a − 1): asymptotically exact for a
    power-law tail (a Student-t guide's), where the geometric :func:`_tail_beyond`
    understates it by (a − 1)/a, and above it for an exponential one. inf where
    a ≤ 1 (the tail's integral diverges); 0 where the outer ring is 0.
    """
    decay = (inner / outer).log() / math.log((n - 1) / (n - 3))
    tail = torch.where(decay > 1, outer * (n / 2) / (decay - 1), math.inf)
    return torch.where(outer > 0, tail, 0.0)


def _gaussian_mass_outside(loc, scale, lower, upper):
    """Mass of N(loc, diag scale²) outside the box [lower, upper], ``(G,)``."""
    outside = special.ndtr((lower - loc) / scale) + special.ndtr((loc - upper) / scale)
    return -torch.expm1(torch.log1p(-outside).sum(-1))
