"""The training objectives: ELBO estimators, built by name.

================  ========================================  =======================================
name              class                                     bound
================  ========================================  =======================================
``"trace"``       :class:`~pyro.infer.Trace_ELBO`           ELBO, Monte-Carlo KL (Kingma & Welling)
``"meanfield"``   :class:`~pyro.infer.TraceMeanField_ELBO`  ELBO, analytic KL(q ‖ p(z))
``"renyi"``       :class:`ScaledRenyiELBO`                  Rényi bound L_α (Li & Turner 2016);
                                                            α = 0 is the IWAE bound (Burda et al.)
``"pyro_renyi"``  :class:`~pyro.infer.RenyiELBO`            the same, with the minibatch scale
                                                            inside its log-sum-exp (for comparison)
``"stl"``         :class:`STL_ELBO`                         ELBO; guide gradient the path
                                                            derivative (Roeder et al. 2017)
``"dreg"``        :class:`DReG_IWAE`                        IWAE bound L_K; doubly reparameterized
                                                            guide gradient (Tucker et al. 2019)
``"iwae_stl"``    :class:`IWAE_STL`                         IWAE bound L_K; path-derivative guide
                                                            gradient (biased, for comparison)
================  ========================================  =======================================

:func:`make_elbo` builds an estimator from its name, :func:`parse_objective` reads the
CLI's ``"renyi:ALPHA:K"``-style specs (``make_elbo`` takes them too: ``"dreg:5"``) and
:func:`objective_label` names an objective in tables and figures. Every ``loss`` is the
negative bound in nats, summed over the data points of a minibatch and scaled by
``num_data / batch``; the last three estimators differ from Trace_ELBO and the IWAE bound
only in the guide's gradient.

References
----------
1. D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
2. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
3. Y. Li, R. E. Turner, "Rényi Divergence Variational Inference", NeurIPS 2016.
4. G. Roeder, Y. Wu, D. Duvenaud, "Sticking the Landing: Simple, Lower-Variance Gradient
   Estimators for Variational Inference", NeurIPS 2017.
5. G. Tucker, D. Lawson, S. Gu, C. J. Maddison, "Doubly Reparameterized Gradient
   Estimators for Monte Carlo Objectives", ICLR 2019.
"""

import math
import warnings

import torch
from pyro import poutine
from pyro.distributions.util import is_identically_zero, scale_and_mask
from pyro.infer import ELBO, JitTrace_ELBO, RenyiELBO, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.enum import get_importance_trace
from pyro.infer.util import is_validation_enabled
from pyro.poutine.util import site_is_subsample
from pyro.util import check_if_enumerated, warn_if_nan

__all__ = [
    "LOSSES",
    "OBJECTIVE_ALIASES",
    "OBJECTIVE_GRAMMAR",
    "DReG_IWAE",
    "IWAE_STL",
    "STL_ELBO",
    "ScaledRenyiELBO",
    "check_loss",
    "make_elbo",
    "objective_label",
    "parse_objective",
]

LOSSES = ("trace", "meanfield", "renyi", "pyro_renyi", "stl", "dreg", "iwae_stl")
RENYI_LOSSES = ("renyi", "pyro_renyi")
IWAE_LOSSES = ("dreg", "iwae_stl")  # the IWAE bound: K >= 2


def _check_alpha(alpha, stacklevel):
    """Raise for alpha == 1, warn (at ``stacklevel``) for alpha < 0."""
    if alpha == 1:
        raise ValueError(
            "Expected alpha != 1 for the Rényi bound: at alpha = 1 it is the ELBO, "
            "use loss='trace' (Trace_ELBO)"
        )
    if alpha < 0:
        warnings.warn(
            f"alpha={alpha} < 0: the Rényi objective is then no lower bound on log p(x)",
            stacklevel=stacklevel + 1,
        )


def _check_num_particles(num_particles, minimum=1, why=""):
    """Raise unless ``num_particles`` is an integer ≥ ``minimum`` (``why``: the reason)."""
    if isinstance(num_particles, bool) or not isinstance(num_particles, int):
        raise ValueError(f"Expected num_particles to be an integer but got {num_particles!r}")
    if num_particles < minimum:
        raise ValueError(f"Expected num_particles >= {minimum}{why} but got {num_particles}")


def _check_iwae_particles(name, num_particles):
    why = f" for {name} (the IWAE bound of K particles; K = 1 is the ELBO, use 'stl')"
    _check_num_particles(num_particles, 2, why)


def _is_subsampled(frame):
    return frame.full_size is not None and frame.full_size != frame.size


def _sum_keepdim(tensor, dims):
    """Sum ``tensor`` over those of the negative ``dims`` it has, keeping them."""
    dims = [d for d in dims if -tensor.dim() <= d]
    return tensor.sum(dims, keepdim=True) if dims else tensor


class _LogWeightELBO(ELBO):
    """The shared core of the bounds built from per-point log weights.

    Traces model and guide (:meth:`_get_trace`), reads each trace pair's log weights with
    the minibatch scale N/B kept apart (:meth:`_log_weight`), stacks the particles
    (:meth:`_stack_particles`), and gives ``loss``, ``loss_and_grads`` and
    ``differentiable_loss`` from a subclass's ``_bound(model, guide, args, kwargs)``: a
    scalar whose value is the bound and whose gradient is the estimator's.
    """

    def _get_trace(self, model, guide, args, kwargs):
        model_trace, guide_trace = get_importance_trace(
            "flat", self.max_plate_nesting, model, guide, args, kwargs
        )
        if is_validation_enabled():
            check_if_enumerated(guide_trace)
        return model_trace, guide_trace

    def _log_weight(self, model_trace, guide_trace):
        """Log weights, the score-function terms and the plate scale N/B of one trace pair.

        Returns ``(log_model, log_guide, score_terms, plate_scale)``: Σ β_s log p_s over
        the model's sites and Σ β_s log q_s over the guide's (log w = log_model −
        log_guide), with their gradients (the pathwise one through reparameterized
        sites), per element of the plates shared by all sites (particles, data points);
        the sum of log q over the guide's non-reparameterized sites, whose gradient under
        the normalized weights completes the bound's (None if every site is
        reparameterized); and N/B.
        """
        sites = [
            (role, name, site)
            for role, trace in (("model", model_trace), ("guide", guide_trace))
            for name, site in trace.nodes.items()
            if site["type"] == "sample"
        ]
        if not sites:
            raise ValueError("Expected the model and guide to have sample sites but found none")
        # Plates by name: hashing Pyro's frames recomputes their keys (slow per step).
        stacks = [{f.name: f for f in site["cond_indep_stack"]} for _, _, site in sites]
        common = set.intersection(*(set(stack) for stack in stacks))
        for (role, name, _), stack in zip(sites, stacks, strict=True):
            for plate in stack.keys() - common:
                frame = stack[plate]
                if _is_subsampled(frame):
                    outside = next(
                        f"{r} site {n!r}"
                        for (r, n, _), other in zip(sites, stacks, strict=True)
                        if plate not in other
                    )
                    raise ValueError(
                        f"Expected subsampling only in plates that hold every sample site, "
                        f"but plate {frame.name!r} ({frame.size} of {frame.full_size}, "
                        f"scale {frame.full_size / frame.size:g}) holds {role} site "
                        f"{name!r} and not {outside}: its scale would not be shared by "
                        f"the whole log weight (use num_data=None or move the site)"
                    )
        plate_scale = math.prod(
            stacks[0][plate].full_size / stacks[0][plate].size
            for plate in sorted(common)  # one order in every process
            if _is_subsampled(stacks[0][plate])
        )
        sum_dims = sorted(
            {
                frame.dim
                for stack in stacks
                for plate, frame in stack.items()
                if plate not in common and frame.dim is not None
            }
        )

        log_model, log_guide, score_terms = 0.0, 0.0, None
        for role, _, site in sites:
            user_scale = site["scale"] / plate_scale
            log_p = scale_and_mask(site["unscaled_log_prob"], user_scale, site["mask"])
            log_p = _sum_keepdim(log_p, sum_dims)
            if role == "model":
                log_model = log_model + log_p
                continue
            log_guide = log_guide + log_p
            _, score_function, entropy_term = site["score_parts"]
            if not is_identically_zero(score_function):
                if not is_identically_zero(entropy_term):
                    raise NotImplementedError(
                        f"{type(self).__name__} does not support the partially reparameterized "
                        f"guide site {site['name']!r} (nor does RenyiELBO, pyro-ppl issue "
                        f"1222)"
                    )
                log_q = scale_and_mask(site["unscaled_log_prob"], 1.0, site["mask"])
                term = _sum_keepdim(log_q, sum_dims)
                score_terms = term if score_terms is None else score_terms + term
        return log_model, log_guide, score_terms, plate_scale

    def _stack_particles(self, tensors):
        """The per-trace ``tensors`` as one tensor and the dim of its particles.

        One vectorized trace holds the K particles at dim ``-max_plate_nesting``; K
        sequential traces are stacked at a new dim 0.
        """
        if self.vectorize_particles and self.num_particles > 1:
            return tensors[0], -self.max_plate_nesting
        return torch.stack(torch.broadcast_tensors(*tensors)), 0

    @staticmethod
    def _total(per_point, plate_scale):
        """The bound's value: ``plate_scale`` (N/B) times the sum of the per-point
        bounds (a stacked training reads it run by run: :mod:`pyro_vae.train.stack`)."""
        return plate_scale * per_point.sum()

    @torch.no_grad()
    def loss(self, model, guide, *args, **kwargs):
        """The negative bound, nats (float, no gradient)."""
        loss = -self._bound(model, guide, args, kwargs).item()
        warn_if_nan(loss, "loss")
        return loss

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """The loss (float) of :meth:`loss`; back-propagates the estimator's gradient."""
        bound = self._bound(model, guide, args, kwargs)
        if bound.requires_grad:
            (-bound).backward(retain_graph=self.retain_graph)
        loss = -bound.item()
        warn_if_nan(loss, "loss")
        return loss

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """The loss as a scalar tensor whose gradient is the estimator's."""
        loss = -self._bound(model, guide, args, kwargs)
        warn_if_nan(loss, "loss")
        return loss


class ScaledRenyiELBO(_LogWeightELBO):
    r"""Rényi bound L_α (IWAE at α = 0) with the minibatch scale outside the log-sum-exp.

    For a minibatch of B of the N data points, K particles z_ik ~ q(z | x_i) per point,
    and a scale β_s ≥ 0 per sample site s (1 unless set by :func:`pyro.poutine.scale`):

    .. math::

        \log w_{ik} = \sum_{s \in \mathrm{model}} \beta_s \log p_s
                    - \sum_{s \in \mathrm{guide}} \beta_s \log q_s ,

        \mathcal L_{\alpha,K}(x_i) = \frac{1}{1-\alpha} \Big(
            \log \sum_{k=1}^{K} e^{(1-\alpha) \log w_{ik}} - \log K \Big),

        \mathrm{loss} = -\frac{N}{B} \sum_{i=1}^{B} \mathcal L_{\alpha,K}(x_i),

    in nats. For 0 ≤ α < 1, E[L_{α,K}(x)] ≤ log p(x) and it increases with K (Burda et
    al. 2016; Li & Turner 2016); α = 0 is the IWAE bound, α → 1 the ELBO. Under uniform
    subsampling the loss is an unbiased estimate of −Σ_{n=1}^N E[L_{α,K}(x_n)].

    The log-densities are the sites' *unscaled* ones (``site["unscaled_log_prob"]``). A
    subsampled plate (``pyro.plate("data", N, subsample=...)``) contributes its scale
    N/B once, outside the log-sum-exp; any further factor of ``site["scale"]`` is the
    user's β_s and weights that site's log-density inside log w (e.g. ``poutine.scale``
    on the latent site of model and guide for a β-weighted KL term). Log weights are
    kept per element of the plates shared by all sites (per data point) and summed over
    the others, so a global latent outside the data plate gives one joint weight per
    particle, which is only valid without subsampling.

    Gradients come from RenyiELBO's surrogate, Σ_k softmax_k((1 − α) log w_ik) ∇ log w_ik,
    the exact gradient of L_{α,K} for reparameterized guide sites. A non-reparameterized
    guide site s adds the score term 1/(1 − α) · log q_s(z_ik) under the same weights
    (net α/(1 − α) · log q_s for β_s = 1, as :class:`~pyro.infer.RenyiELBO`). That is the
    gradient of the K → ∞ bound: biased for finite K, and zero at α = 0, where the limit
    log p(x) does not depend on q, so such a guide site learns nothing from the IWAE bound.

    Parameters
    ----------
    alpha : float, default 0.0
        Order α ≠ 1 of the Rényi divergence; 0 is the IWAE bound.
    num_particles : int, default 2
        K, particles per data point.
    max_plate_nesting : int, default 1
        Number of nested plates of the model (the data plate, at dim -1); the particles
        take the next dim to the left.
    vectorize_particles : bool, default True
        Draw the K particles in one vectorized pass (needs a static model structure);
        ``False`` runs model and guide K times.
    strict_enumeration_warning : bool, default True
        As for :class:`pyro.infer.ELBO`.

    Raises
    ------
    ValueError
        For ``alpha == 1`` or ``num_particles`` not an integer ≥ 1. ``loss`` and its
        siblings raise it if a subsampled plate does not hold every sample site (its N/B
        would not be shared by the whole log weight).
    NotImplementedError
        From ``loss_and_grads`` and ``differentiable_loss`` for a partially
        reparameterized guide site (as RenyiELBO).

    Warns
    -----
    UserWarning
        For ``alpha < 0``: the objective is then no lower bound on log p(x).

    See Also
    --------
    pyro.infer.RenyiELBO : the same bound with the subsample scale inside the log-sum-exp.
    pyro_vae.infer.evaluation.evaluate : L_K estimated from many draws, for held-out data.

    Notes
    -----
    **A KL weight β ≠ 1** (``vae.model``/``vae.guide`` called with ``beta``, which
    scales the site ``"z"`` of both; :mod:`pyro_vae.train.schedules`) gives tempered
    importance weights, per data point with z_k ~ q(z|x):

    .. math::

        \mathcal L^\beta_{\alpha,K}(x) = \frac{1}{1-\alpha} \log \frac1K
            \sum_{k=1}^K \Big[ p(x \mid z_k)
            \Big(\frac{p(z_k)}{q(z_k \mid x)}\Big)^{\beta} \Big]^{1-\alpha},

    and the loss −(N/B) Σ_batch L^β_{α,K}(x_i), with N/B still outside the log-sum-exp.
    For K = 1 (or α → 1) it is the β-VAE objective E_q log p(x|z) − β KL(q ‖ p(z))
    (Higgins et al. 2017); at α = 0 it tends as K → ∞ to
    log ∫ p(x|z) p(z)^β q(z|x)^{1−β} dz = log p(x) + log E_{p(z|x)}[(p(z)/q(z|x))^{β−1}],
    which depends on q. So it is no bound on log p(x) except at β = 1 (and at K = 1
    with β > 1, the ELBO minus (β − 1) KL(q ‖ p(z))): with β = 0 it is
    log E_q p(x|z), which a q concentrated where p(x|z) is largest pushes above
    log p(x). Judge such a model by its held-out log p(x) (:func:`pyro_vae.evaluate`),
    not by this loss.

    Minibatch training needs the N/B outside: E[(N/B) Σ_batch L(x_i)] = Σ_all L(x_n)
    under uniform subsampling. ``loss`` returns a float without a graph;
    ``loss_and_grads`` also calls ``backward`` on the surrogate, for
    :class:`pyro.infer.SVI`; ``differentiable_loss`` returns a scalar tensor equal to
    the loss whose gradient is the surrogate's, for a ``torch.optim`` optimizer, and
    ``elbo(model, guide)`` wraps it as a :class:`torch.nn.Module`.

    .. warning:: :class:`pyro.infer.RenyiELBO` multiplies each ``log p`` by the plate
       scale N/B *inside* the log-sum-exp (pyro-ppl issue 3104), i.e. it optimizes
       Σ_i log mean_k w_ik^{N/B}, a tempered objective that is not N/B times the bound.
       The two agree only for N = B or when all weights of a point are equal (the guide
       is the exact posterior). NumPyro fixed its version in pyro-ppl/numpyro PR 1608,
       the design followed here.

    References
    ----------
    1. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders",
       ICLR 2016.
    2. Y. Li, R. E. Turner, "Rényi Divergence Variational Inference", NeurIPS 2016.
    3. I. Higgins et al., "β-VAE: Learning basic visual concepts with a constrained
       variational framework", ICLR 2017.

    Examples
    --------
    >>> x = pyro_vae.data.make_linear_gaussian(200, x_dim=10, z_dim=2).x
    >>> vae = pyro_vae.LinearGaussianVAE(x_dim=10, z_dim=2)
    >>> svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}),
    ...                      ScaledRenyiELBO(alpha=0.0, num_particles=5))
    >>> loss = svi.step(x[:10], num_data=len(x))  # −(N/B) Σ_batch L_{0,5}, nats
    """

    def __init__(
        self,
        alpha=0.0,
        num_particles=2,
        max_plate_nesting=1,
        vectorize_particles=True,
        strict_enumeration_warning=True,
    ):
        _check_alpha(alpha, stacklevel=2)
        _check_num_particles(num_particles)
        self.alpha = alpha
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=vectorize_particles,
            strict_enumeration_warning=strict_enumeration_warning,
        )

    def _bound(self, model, guide, args, kwargs):
        """The bound (N/B) Σ_i L_{α,K}(x_i) as a scalar whose gradient is the bound's.

        Its value is the bound; its gradient is (N/B) Σ_i Σ_k w̄_ik ∇ log w_ik (plus the
        score-function terms), the normalized weights w̄ = softmax((1 − α) log w) over
        the K particles being the derivative of the log-sum-exp (Li & Turner 2016,
        eq. 7).
        """
        parts = [
            self._log_weight(model_trace, guide_trace)
            for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs)
        ]
        plate_scale = parts[0][3]
        log_weight, dim = self._stack_particles([p[0] - p[1] for p in parts])
        score_terms = None
        if parts[0][2] is not None:
            score_terms, _ = self._stack_particles([p[2] for p in parts])
            score_terms = score_terms / (1.0 - self.alpha)
        scaled = (1.0 - self.alpha) * log_weight
        log_norm = torch.logsumexp(scaled, dim, keepdim=True)
        log_mean = (log_norm - math.log(self.num_particles)) / (1.0 - self.alpha)
        bound = self._total(log_mean, plate_scale)
        if score_terms is not None and score_terms.requires_grad:
            weights = (scaled - log_norm).detach().exp()  # softmax over the particles
            surrogate = (weights * score_terms).sum()
            bound = bound + plate_scale * (surrogate - surrogate.detach())
        return bound


class _PathDerivativeELBO(_LogWeightELBO):
    r"""A bound whose guide gradient is a path derivative: log q's parameters held fixed.

    The base of :class:`STL_ELBO`, :class:`IWAE_STL` and :class:`DReG_IWAE`. Each step
    draws z = g_φ(ε, x) from the guide, then scores model and guide again at z̄, the
    draws detached (fresh leaves): the guide is replayed on z̄, so its distribution is
    rebuilt by its own code and scores z̄ with its own ``log_prob`` (a flow runs its
    inverse: Pyro's transforms would answer the z they sampled from their cache, with
    no derivative in z). That gives log w̄_k = log p_θ(x, z̄_k) − log q_φ(z̄_k | x) with
    a gradient in θ, in φ (the score, never used) and in z̄ (the path). A subclass sets
    the bound per data point from the log weights (``_per_point``) and the weights c_k
    of the path term (``_path_weights``). The surrogate whose gradient is returned is

    .. math::

        \frac NB \sum_i \Big[ \mathcal L_i\big(\log p_\theta(x_i, \bar z_{i\cdot})
            - \mathrm{sg}\log q(\bar z_{i\cdot})\big)
            + \sum_k \mathrm{sg}\Big(c_{ik} \frac{\partial \log \bar w_{ik}}
            {\partial \bar z_{ik}}\Big) \cdot z_{ik} \Big],

    sg the stop-gradient: the first term reaches only θ (z̄ is detached, log q stopped),
    the second only φ (through z = g_φ(ε, x); ∂ log w̄/∂z̄ is taken at fixed θ and φ),
    so each parameter set gets its own estimator, whatever holds the parameters
    (``pyro.module``, :meth:`pyro_vae.BaseVAE.skip_param_store`, an autoguide). This
    differentiates log q_φ̄(z) in z without detaching any parameter: detaching them
    would need to know where every guide keeps its own (under ``skip_param_store`` the
    trace has no param sites; a flow's sit in its transforms, behind a cache), while the
    draws are always the guide's sample sites. The cost over the plain bound: one more
    pass of the guide and a backward pass to z̄.
    """

    def __init__(
        self,
        num_particles=1,
        max_plate_nesting=1,
        vectorize_particles=True,
        strict_enumeration_warning=True,
    ):
        self._check_particles(num_particles)
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=vectorize_particles,
            strict_enumeration_warning=strict_enumeration_warning,
        )

    @staticmethod
    def _check_particles(num_particles):
        _check_num_particles(num_particles)

    def _get_trace(self, model, guide, args, kwargs):
        """Model and guide traced at the guide's draws detached: ``(model_trace,
        guide_trace, draws)``, ``draws`` a list of ``(z, z̄)`` (z with its path to φ, z̄
        a leaf of the same value; empty without autograd)."""
        sampled = poutine.trace(guide).get_trace(*args, **kwargs)
        scored, draws = poutine.Trace(), []
        for name, site in sampled.nodes.items():
            if site["type"] != "sample":
                continue
            value = site["value"]
            if not (site["is_observed"] or site_is_subsample(site)):
                if not site["fn"].has_rsample:
                    raise ValueError(
                        f"Expected every guide sample site to be reparameterized for "
                        f"{type(self).__name__} (a path derivative needs z = g(eps, phi)) "
                        f"but site {name!r} draws from {type(site['fn']).__name__}, "
                        f"which has no rsample"
                    )
                if torch.is_grad_enabled():
                    draws.append((value, value.detach().requires_grad_()))
                    value = draws[-1][1]
            scored.add_node(name, **{**site, "value": value})
        model_trace, guide_trace = super()._get_trace(
            model, poutine.replay(guide, trace=scored), args, kwargs
        )
        return model_trace, guide_trace, draws

    def _bound(self, model, guide, args, kwargs):
        """The bound (N/B) Σ_i L_i as a scalar whose gradient is the estimator's."""
        parts, draws = [], []
        for model_trace, guide_trace, trace_draws in self._get_traces(model, guide, args, kwargs):
            parts.append(self._log_weight(model_trace, guide_trace))
            draws.extend(trace_draws)
        plate_scale = parts[0][3]
        log_model, dim = self._stack_particles([p[0] for p in parts])
        log_guide, _ = self._stack_particles([p[1] for p in parts])
        log_weight = log_model - log_guide
        bound = self._total(self._per_point(log_weight.detach(), dim), plate_scale)
        if not draws:  # no autograd (loss), or a guide without latent sites
            return bound
        surrogate = plate_scale * self._per_point(log_model - log_guide.detach(), dim).sum()
        weights = plate_scale * self._path_weights(log_weight.detach(), dim)
        slopes = torch.autograd.grad(
            (weights * log_weight).sum(),
            [leaf for _, leaf in draws],
            retain_graph=True,
            allow_unused=True,
        )
        for (z, _), slope in zip(draws, slopes, strict=True):
            if slope is not None and z.requires_grad:
                surrogate = surrogate + (slope * z).sum()
        return bound + (surrogate - surrogate.detach())


class STL_ELBO(_PathDerivativeELBO):
    r"""The ELBO with the sticking-the-landing guide gradient (Roeder, Wu & Duvenaud 2017).

    For a minibatch of B of N points and K draws z_ik = g_φ(ε_ik, x_i) per point,

    .. math::

        \mathrm{loss} = -\frac NB \sum_{i=1}^B \frac1K \sum_{k=1}^K \log w_{ik},
        \quad \log w_{ik} = \log p_\theta(x_i, z_{ik}) - \log q_\phi(z_{ik} \mid x_i),

        \hat\nabla_\theta = \frac NB \sum_{i,k} \frac1K \nabla_\theta
            \log p_\theta(x_i, z_{ik}), \qquad
        \hat\nabla_\phi = \frac NB \sum_{i,k} \frac1K
            \frac{\partial \log w_{ik}}{\partial z_{ik}}
            \frac{\partial z_{ik}}{\partial \phi},

    in nats: the value and the model gradient are :class:`~pyro.infer.Trace_ELBO`'s
    on the same draws; the guide gradient drops the score term −∇_φ log q_φ(z)|_z
    (zero in expectation) from the reparameterization gradient, i.e. it differentiates
    log q_φ̄(z) with the guide's parameters φ̄ = φ held fixed while z keeps its path to
    φ (the path derivative, eq. 8 of the paper). It is unbiased, and zero on every
    draw when q(z|x) = p(z|x), where log w = log p(x) does not depend on z.

    Parameters
    ----------
    num_particles : int, default 1
        K, draws per data point (averaged, as Trace_ELBO's particles).
    max_plate_nesting : int, default 1
        Nested plates of the model (the data plate at dim -1).
    vectorize_particles : bool, default True
        Draw the K particles in one vectorized pass.

    Raises
    ------
    ValueError
        For ``num_particles`` not an integer ≥ 1; from ``loss`` and its siblings for a
        guide sample site without ``rsample`` (the path derivative needs
        z = g_φ(ε, x)), and as :class:`ScaledRenyiELBO` for subsampling a plate that
        does not hold every site.

    See Also
    --------
    DReG_IWAE : the IWAE bound with the doubly reparameterized guide gradient.
    IWAE_STL : the IWAE bound with this guide gradient.
    pyro.infer.Trace_ELBO : the same bound and model gradient.

    Notes
    -----
    ``loss`` and ``loss_and_grads`` return the negative bound (float), and
    ``differentiable_loss`` a scalar tensor of that value whose gradient is the one
    above (value ``bound.detach()`` plus a surrogate minus itself detached), so SVI and a
    torch optimizer step the same estimator. A subsampled data plate (``num_data``)
    scales by N/B as :class:`ScaledRenyiELBO`, and a KL weight β scales log p(z) and
    log q(z|x) inside log w (the β-VAE objective). Log q at the draws is computed by
    replaying the guide on them, detached; a flow guide then runs its inverse (z_dim
    passes of the network for an IAF) rather than reading its cache.

    .. warning:: The estimator is the ELBO's gradient only in expectation over ε, with
       q_φ(z|x) reparameterized; the guide's log-density must be differentiable in z.

    References
    ----------
    1. G. Roeder, Y. Wu, D. Duvenaud, "Sticking the Landing: Simple, Lower-Variance
       Gradient Estimators for Variational Inference", NeurIPS 2017.

    Examples
    --------
    >>> svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}),
    ...                      pyro_vae.make_elbo("stl"))
    """

    @staticmethod
    def _per_point(log_weight, dim):
        return log_weight.mean(dim)

    def _path_weights(self, log_weight, dim):
        return torch.full_like(log_weight, 1.0 / log_weight.shape[dim])


class IWAE_STL(_PathDerivativeELBO):
    r"""The IWAE bound L_K with the sticking-the-landing guide gradient.

    .. math::

        \mathrm{loss} = -\frac NB \sum_{i=1}^B \Big(\log \sum_{k=1}^K w_{ik}
            - \log K\Big), \qquad
        \hat\nabla_\phi = \frac NB \sum_{i,k} \tilde w_{ik}
            \frac{\partial \log w_{ik}}{\partial z_{ik}}
            \frac{\partial z_{ik}}{\partial \phi},

    w̃_ik = w_ik / Σ_k w_ik the normalized weights; the model gradient is IWAE's,
    Σ_k w̃_ik ∇_θ log p_θ(x_i, z_ik). Roeder et al. (2017, sec. 5.2) apply the path
    derivative to the IWAE bound this way; Tucker et al. (2019) show that it is biased
    for ∇_φ L_K (it drops a term that is not zero in expectation for K > 1) and
    correct it with :class:`DReG_IWAE`. Kept for comparison.

    Parameters
    ----------
    num_particles : int, default 2
        K ≥ 2, draws per data point.
    max_plate_nesting, vectorize_particles, strict_enumeration_warning
        As :class:`STL_ELBO`.

    Raises
    ------
    ValueError
        For ``num_particles`` not an integer ≥ 2, and as :class:`STL_ELBO`.

    See Also
    --------
    DReG_IWAE : the unbiased doubly reparameterized gradient of the same bound.
    ScaledRenyiELBO : the same bound (α = 0) with the reparameterization gradient.

    References
    ----------
    1. G. Roeder, Y. Wu, D. Duvenaud, "Sticking the Landing: Simple, Lower-Variance
       Gradient Estimators for Variational Inference", NeurIPS 2017.
    2. G. Tucker, D. Lawson, S. Gu, C. J. Maddison, "Doubly Reparameterized Gradient
       Estimators for Monte Carlo Objectives", ICLR 2019.
    """

    _weight_power = 1

    def __init__(self, num_particles=2, **kwargs):
        super().__init__(num_particles, **kwargs)

    def _check_particles(self, num_particles):
        _check_iwae_particles(type(self).__name__, num_particles)

    @staticmethod
    def _per_point(log_weight, dim):
        return torch.logsumexp(log_weight, dim) - math.log(log_weight.shape[dim])

    def _path_weights(self, log_weight, dim):
        return torch.softmax(log_weight, dim) ** self._weight_power


class DReG_IWAE(IWAE_STL):
    r"""The IWAE bound L_K with the doubly reparameterized guide gradient (Tucker et al. 2019).

    For a minibatch of B of N points and K draws z_ik = g_φ(ε_ik, x_i) per point,

    .. math::

        \mathrm{loss} = -\frac NB \sum_{i=1}^B \Big(\log \sum_{k=1}^K w_{ik}
            - \log K\Big), \quad w_{ik} = \frac{p_\theta(x_i, z_{ik})}
            {q_\phi(z_{ik} \mid x_i)},

        \hat\nabla_\theta = \frac NB \sum_{i,k} \tilde w_{ik} \nabla_\theta
            \log p_\theta(x_i, z_{ik}), \qquad
        \hat\nabla_\phi = \frac NB \sum_{i,k} \tilde w_{ik}^2
            \frac{\partial \log w_{ik}}{\partial z_{ik}}
            \frac{\partial z_{ik}}{\partial \phi},

    in nats, w̃_ik = w_ik / Σ_k w_ik: the value and the model gradient are the IWAE
    bound's (:class:`ScaledRenyiELBO` at α = 0) on the same draws; the guide gradient
    is eq. 5 of the paper, the IWAE reparameterization gradient with its score term
    E[Σ_k w̃_k ∂ log w_k/∂φ] rewritten by reparameterizing it a second time, so it is
    unbiased for ∇_φ L_K, with a smaller variance, and its signal-to-noise ratio does
    not vanish as K grows (Rainforth et al. 2018). ∂ log w/∂z is taken with the guide's
    parameters fixed (log q_φ̄(z)); it is zero on every draw when q(z|x) = p(z|x).

    Parameters
    ----------
    num_particles : int, default 2
        K ≥ 2, draws per data point (K = 1 is :class:`STL_ELBO`).
    max_plate_nesting : int, default 1
        Nested plates of the model (the data plate at dim -1); the particles take the
        next dim to the left.
    vectorize_particles : bool, default True
        Draw the K particles in one vectorized pass.

    Raises
    ------
    ValueError
        For ``num_particles`` not an integer ≥ 2; from ``loss`` and its siblings for a
        guide sample site without ``rsample``, and as :class:`ScaledRenyiELBO` for
        subsampling a plate that does not hold every site.

    See Also
    --------
    ScaledRenyiELBO : the same bound (α = 0) with the reparameterization gradient.
    IWAE_STL : the same bound with the (biased) sticking-the-landing guide gradient.
    STL_ELBO : the ELBO with the path-derivative guide gradient.

    Notes
    -----
    The surrogate differentiated is (N/B) Σ_i [logsumexp_k(log p_θ(x_i, z̄_ik) −
    sg log q(z̄_ik)) + Σ_k sg(w̃_ik² ∂ log w̄_ik/∂z̄_ik) · z_ik] (sg: stop-gradient,
    z̄ the draws detached), so its θ-part reaches only the model's parameters and its
    φ-part only the guide's; ``differentiable_loss`` returns it shifted to the bound's
    value. Minibatch scale and β as :class:`STL_ELBO`.

    References
    ----------
    1. G. Tucker, D. Lawson, S. Gu, C. J. Maddison, "Doubly Reparameterized Gradient
       Estimators for Monte Carlo Objectives", ICLR 2019.
    2. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders",
       ICLR 2016.
    3. T. Rainforth et al., "Tighter Variational Bounds are Not Necessarily Better",
       ICML 2018.

    Examples
    --------
    >>> svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}),
    ...                      pyro_vae.make_elbo("dreg:5"))
    """

    _weight_power = 2


def check_loss(loss, alpha=0.0, num_particles=1, jit=False, stacklevel=2):
    """Validate an objective's arguments; raise ``ValueError`` naming the bad one.

    Warns for ``alpha < 0`` with a Rényi loss, ``stacklevel`` frames above this
    function (2: at its caller's caller). The KL weight β is checked with the training
    settings (:func:`pyro_vae.train.config.check_objective`).

    Raises
    ------
    ValueError
        For an unknown ``loss`` (the message lists the valid names; for an ELBO object,
        the name and settings to pass instead), ``num_particles``
        not an integer ≥ 1 (≥ 2 for ``"dreg"`` and ``"iwae_stl"``), ``alpha == 1`` with a
        Rényi loss, or ``jit=True`` with a loss other than ``"trace"``.
    """
    if isinstance(loss, ELBO):
        raise ValueError(_elbo_object_message(loss))
    if loss not in LOSSES:
        raise ValueError(
            f"Expected loss to be one of {', '.join(map(repr, LOSSES))} but got {loss!r}"
        )
    if loss in IWAE_LOSSES:
        _check_iwae_particles(f"loss={loss!r}", num_particles)
    else:
        _check_num_particles(num_particles)
    if jit and loss != "trace":
        raise ValueError(
            f"Expected jit=False for loss={loss!r}: only loss='trace' has a JIT version "
            f"(JitTrace_ELBO), but got jit={jit!r}"
        )
    if loss in RENYI_LOSSES:
        _check_alpha(alpha, stacklevel=stacklevel + 1)


def _elbo_object_message(elbo):
    """What to pass instead of an ELBO object as ``loss`` (one line)."""
    names = ((ScaledRenyiELBO, "renyi"), (RenyiELBO, "pyro_renyi"),
             (TraceMeanField_ELBO, "meanfield"), (Trace_ELBO, "trace"), (STL_ELBO, "stl"),
             (DReG_IWAE, "dreg"), (IWAE_STL, "iwae_stl"))  # fmt: skip
    name = next((name for cls, name in names if isinstance(elbo, cls)), None)
    settings = [f"loss={name!r}"] if name else []
    if getattr(elbo, "num_particles", 1) != 1:
        settings.append(f"num_particles={elbo.num_particles}")
    if name in RENYI_LOSSES:
        settings.append(f"alpha={elbo.alpha:g}")
    instead = f"pass {', '.join(settings)}" if settings else "pass one of these names"
    return (
        f"Expected loss to be the name of an objective, one of {', '.join(map(repr, LOSSES))}, "
        f"but got a {type(elbo).__name__} object; the package builds the ELBO itself: "
        f"{instead}, or step your own ELBO with pyro.infer.SVI(vae.model, vae.guide, "
        "optimizer, elbo)"
    )


def make_elbo(loss="trace", alpha=0.0, num_particles=1, jit=False):
    """Build an ELBO estimator by name or from an objective spec (``"dreg:5"``).

    Particles are vectorized (one pass of the model over a ``num_particles`` plate at
    dim -2), which needs the static model structure of :class:`pyro_vae.VAE`.

    Parameters
    ----------
    loss : str, default "trace"
        ``"trace"`` → :class:`pyro.infer.Trace_ELBO`; ``"meanfield"`` →
        :class:`pyro.infer.TraceMeanField_ELBO` (analytic KL(q ‖ p(z))); ``"renyi"`` →
        :class:`ScaledRenyiELBO` (α = 0 is the IWAE bound); ``"pyro_renyi"`` →
        :class:`pyro.infer.RenyiELBO`, kept for comparison (see the warning below);
        ``"stl"`` → :class:`STL_ELBO`; ``"dreg"`` → :class:`DReG_IWAE` and
        ``"iwae_stl"`` → :class:`IWAE_STL` (K ≥ 2). Or an objective spec of
        :func:`parse_objective` (``"dreg:5"``, ``"stl"``, ``"iwae:5"``, ``"Trace_ELBO"``),
        which carries its own α and K: then ``alpha`` and ``num_particles`` must be
        left at their defaults.
    alpha : float, default 0.0
        Order α of the Rényi bound (Rényi losses only); α ≠ 1.
    num_particles : int, default 1
        Samples z ~ q(z|x) per data point (K of the IWAE bound).
    jit : bool, default False
        Use :class:`pyro.infer.JitTrace_ELBO` for ``"trace"`` (the fastest Pyro path
        here). The other losses have no JIT version.

    Returns
    -------
    pyro.infer.ELBO
        Its ``loss`` is the negative bound in nats, summed over the data points (scaled
        by ``num_data / batch`` inside a subsampled plate).

    Raises
    ------
    ValueError
        As :func:`check_loss` and :func:`parse_objective`; for a spec given with
        ``alpha`` or ``num_particles``.

    Warns
    -----
    UserWarning
        For ``alpha < 0``: the Rényi objective is then no lower bound on log p(x).

    .. warning:: :class:`~pyro.infer.RenyiELBO` (``"pyro_renyi"``) applies the
       subsampling scale ``num_data / batch`` *inside* its log-sum-exp over particles,
       so with ``num_data > batch`` it does not estimate the scaled Rényi/IWAE bound;
       :class:`ScaledRenyiELBO` (``"renyi"``) applies it outside.
    """
    if isinstance(loss, str) and loss not in LOSSES and _is_spec(loss):
        if alpha != 0.0 or num_particles != 1:
            raise ValueError(
                f"Expected alpha and num_particles at their defaults with the objective spec "
                f"loss={loss!r}, which sets them, but got alpha={alpha!r}, "
                f"num_particles={num_particles!r}"
            )
        loss, alpha, num_particles = parse_objective(loss)
    check_loss(loss, alpha, num_particles, jit)
    common = {
        "num_particles": num_particles,
        "vectorize_particles": num_particles > 1,
        "max_plate_nesting": 1,
    }
    if loss == "trace":
        return (JitTrace_ELBO if jit else Trace_ELBO)(**common)
    if loss == "meanfield":
        return TraceMeanField_ELBO(**common)
    if loss == "pyro_renyi":
        return RenyiELBO(alpha=alpha, **common)
    if loss in _PATH_DERIVATIVE_CLASSES:
        return _PATH_DERIVATIVE_CLASSES[loss](**common)
    with warnings.catch_warnings():  # check_loss warned at our caller already
        warnings.simplefilter("ignore", UserWarning)
        return ScaledRenyiELBO(alpha=alpha, **common)


def _is_spec(loss):
    """Whether ``loss`` (a str) reads as an objective spec rather than a loss name."""
    return ":" in loss or loss.strip().lower().replace("-", "_") in {*OBJECTIVE_ALIASES, *LOSSES}


def objective_label(loss, alpha=0.0, num_particles=1):
    """Human-readable name of an objective, e.g. ``"RenyiELBO(alpha=0, K=5)"`` (str).

    :class:`ScaledRenyiELBO` is ``"RenyiELBO(...)"`` and Pyro's own is
    ``"pyro.RenyiELBO(...)"``; the path-derivative estimators are named by their class,
    ``"STL_ELBO"``, ``"STL_ELBO(K=5)"``, ``"DReG_IWAE(K=5)"``, ``"IWAE_STL(K=5)"``.
    """
    if loss in IWAE_LOSSES:
        return f"{_PATH_DERIVATIVE_CLASSES[loss].__name__}(K={num_particles})"
    if loss == "renyi":
        return f"RenyiELBO(alpha={alpha:g}, K={num_particles})"
    if loss == "pyro_renyi":
        return f"pyro.RenyiELBO(alpha={alpha:g}, K={num_particles})"
    names = {"trace": "Trace_ELBO", "meanfield": "TraceMeanField_ELBO", "stl": "STL_ELBO"}
    name = names[loss]
    return name if num_particles == 1 else f"{name}(K={num_particles})"


OBJECTIVE_ALIASES = {
    "trace_elbo": "trace",
    "tracemeanfield_elbo": "meanfield",
    "renyielbo": "renyi",
    "stl_elbo": "stl",
    "dreg_iwae": "dreg",
    "iwae-stl": "iwae_stl",
}
"""Class names (lower-cased) accepted by :func:`parse_objective`, and the loss each
stands for; ``RenyiELBO`` is the package's scaled Rényi bound; ``iwae-stl`` is
``iwae_stl``."""

OBJECTIVE_GRAMMAR = (
    "trace[:K] (Trace_ELBO, K particles, default 1), meanfield[:K] "
    "(TraceMeanField_ELBO, analytic KL), renyi:ALPHA:K (Rényi bound of order ALPHA != 1 "
    "with K particles; ALPHA=0 is the IWAE bound), iwae:K (= renyi:0:K), "
    "pyro_renyi:ALPHA:K (Pyro's own RenyiELBO), stl[:K] (STL_ELBO: the ELBO with the "
    "sticking-the-landing guide gradient), dreg:K (DReG_IWAE: the IWAE bound, K >= 2, "
    "with the doubly reparameterized guide gradient), iwae-stl:K (IWAE_STL); Pyro's "
    "class names Trace_ELBO, TraceMeanField_ELBO and RenyiELBO are accepted for trace, "
    "meanfield and renyi, and STL_ELBO and DReG_IWAE for stl and dreg"
)
"""One-line description of the objective specs, used by the CLI's ``--help``."""

_SPEC_FORMS = {
    "dreg": "'dreg:K' (K an integer >= 2, the IWAE bound's particles)",
    "iwae_stl": "'iwae-stl:K' (K an integer >= 2, the IWAE bound's particles)",
    "stl": "'stl' or 'stl:K' (K an integer >= 1 particles)",
}
"""The form of the specs whose errors name it (the others list the whole grammar)."""


def parse_objective(spec):
    """Parse an objective spec into ``(loss, alpha, num_particles)``.

    Specs: ``"trace"``, ``"meanfield"``, ``"stl"`` (optionally ``":K"`` particles),
    ``"renyi:ALPHA:K"``, ``"pyro_renyi:ALPHA:K"``, ``"iwae:K"`` for ``"renyi:0:K"``,
    ``"dreg:K"`` and ``"iwae-stl:K"`` (K ≥ 2).
    Pyro's class names are aliases (:data:`OBJECTIVE_ALIASES`, any case):
    ``"Trace_ELBO"``, ``"TraceMeanField_ELBO:K"``, ``"RenyiELBO:ALPHA:K"``.

    Parameters
    ----------
    spec : str
        The spec, e.g. ``"iwae:5"``; surrounding whitespace is ignored.

    Returns
    -------
    tuple of (str, float, int)
        The arguments ``loss, alpha, num_particles`` of :func:`make_elbo`.

    Raises
    ------
    ValueError
        If the spec is malformed or its values are invalid (see :func:`make_elbo`).
    """
    parts = str(spec).strip().split(":")
    name, args = parts[0].strip(), [a.strip() for a in parts[1:]]
    name = OBJECTIVE_ALIASES.get(name.lower(), name.lower())
    try:
        if name in ("trace", "meanfield", "stl") and len(args) <= 1:
            loss, alpha, k = name, 0.0, int(args[0]) if args else 1
        elif name in RENYI_LOSSES and len(args) == 2:
            loss, alpha, k = name, float(args[0]), int(args[1])
        elif name == "iwae" and len(args) == 1:
            loss, alpha, k = "renyi", 0.0, int(args[0])
        elif name in IWAE_LOSSES and len(args) == 1:
            loss, alpha, k = name, 0.0, int(args[0])
        else:
            raise ValueError
    except ValueError:
        if name in _SPEC_FORMS:
            raise ValueError(
                f"Expected objective spec to read {_SPEC_FORMS[name]} but got {spec!r}"
            ) from None
        raise ValueError(
            f"Expected an objective spec, one of {OBJECTIVE_GRAMMAR}; but got {spec!r}"
        ) from None
    check_loss(loss, alpha, k)
    return loss, alpha, k


_PATH_DERIVATIVE_CLASSES = {"stl": STL_ELBO, "dreg": DReG_IWAE, "iwae_stl": IWAE_STL}
