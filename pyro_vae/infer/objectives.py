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
================  ========================================  =======================================

:func:`make_elbo` builds an estimator from its name, :func:`parse_objective` reads the
CLI's ``"renyi:ALPHA:K"``-style specs and :func:`objective_label` names an objective in
tables and figures. Every ``loss`` is the negative bound in nats, summed over the data
points of a minibatch and scaled by ``num_data / batch``.

References
----------
1. D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
2. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
3. Y. Li, R. E. Turner, "Rényi Divergence Variational Inference", NeurIPS 2016.
"""

import math
import warnings

import torch
from pyro.distributions.util import is_identically_zero, scale_and_mask
from pyro.infer import ELBO, JitTrace_ELBO, RenyiELBO, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.enum import get_importance_trace
from pyro.infer.util import is_validation_enabled
from pyro.util import check_if_enumerated, warn_if_nan

__all__ = [
    "LOSSES",
    "OBJECTIVE_ALIASES",
    "OBJECTIVE_GRAMMAR",
    "ScaledRenyiELBO",
    "check_loss",
    "make_elbo",
    "objective_label",
    "parse_objective",
]

LOSSES = ("trace", "meanfield", "renyi", "pyro_renyi")
RENYI_LOSSES = ("renyi", "pyro_renyi")


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


def _check_num_particles(num_particles):
    if isinstance(num_particles, bool) or not isinstance(num_particles, int):
        raise ValueError(f"Expected num_particles to be an integer but got {num_particles!r}")
    if num_particles < 1:
        raise ValueError(f"Expected num_particles >= 1 but got {num_particles}")


def _is_subsampled(frame):
    return frame.full_size is not None and frame.full_size != frame.size


def _sum_keepdim(tensor, dims):
    """Sum ``tensor`` over those of the negative ``dims`` it has, keeping them."""
    dims = [d for d in dims if -tensor.dim() <= d]
    return tensor.sum(dims, keepdim=True) if dims else tensor


class ScaledRenyiELBO(ELBO):
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

    def _get_trace(self, model, guide, args, kwargs):
        model_trace, guide_trace = get_importance_trace(
            "flat", self.max_plate_nesting, model, guide, args, kwargs
        )
        if is_validation_enabled():
            check_if_enumerated(guide_trace)
        return model_trace, guide_trace

    def _log_weight(self, model_trace, guide_trace):
        """Log weights, the score-function terms and the plate scale N/B of one trace pair.

        Returns ``(log_weight, score_terms, plate_scale)``: log w with its gradient
        (the pathwise one through reparameterized sites, −∇ log q at the others), per
        element of the plates shared by all sites (particles, data points); the sum of
        log q / (1 − α) over the guide's non-reparameterized sites, whose gradient
        under the normalized weights completes the bound's (None if every site is
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

        log_weight, score_terms = 0.0, None
        for role, _, site in sites:
            user_scale = site["scale"] / plate_scale
            log_p = scale_and_mask(site["unscaled_log_prob"], user_scale, site["mask"])
            log_p = _sum_keepdim(log_p, sum_dims)
            if role == "model":
                log_weight = log_weight + log_p
                continue
            log_weight = log_weight - log_p
            _, score_function, entropy_term = site["score_parts"]
            if not is_identically_zero(score_function):
                if not is_identically_zero(entropy_term):
                    raise NotImplementedError(
                        f"ScaledRenyiELBO does not support the partially reparameterized "
                        f"guide site {site['name']!r} (nor does RenyiELBO, pyro-ppl issue "
                        f"1222)"
                    )
                log_q = scale_and_mask(site["unscaled_log_prob"], 1.0, site["mask"])
                term = _sum_keepdim(log_q, sum_dims) / (1.0 - self.alpha)
                score_terms = term if score_terms is None else score_terms + term
        return log_weight, score_terms, plate_scale

    def _bound(self, model, guide, args, kwargs):
        """The bound (N/B) Σ_i L_{α,K}(x_i) as a scalar whose gradient is the bound's.

        Its value is the bound; its gradient is (N/B) Σ_i Σ_k w̄_ik ∇ log w_ik (plus the
        score-function terms), the normalized weights w̄ = softmax((1 − α) log w) over
        the K particles being the derivative of the log-sum-exp (Li & Turner 2016,
        eq. 7).
        """
        triples = [
            self._log_weight(model_trace, guide_trace)
            for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs)
        ]
        plate_scale = triples[0][2]
        if self.vectorize_particles and self.num_particles > 1:
            log_weight, score_terms, _ = triples[0]
            dim = -self.max_plate_nesting
        else:
            log_weight = torch.stack(torch.broadcast_tensors(*(t[0] for t in triples)))
            score_terms = None
            if triples[0][1] is not None:
                score_terms = torch.stack(torch.broadcast_tensors(*(t[1] for t in triples)))
            dim = 0
        scaled = (1.0 - self.alpha) * log_weight
        log_norm = torch.logsumexp(scaled, dim, keepdim=True)
        log_mean = (log_norm - math.log(self.num_particles)) / (1.0 - self.alpha)
        bound = plate_scale * log_mean.sum()
        if score_terms is not None and score_terms.requires_grad:
            weights = (scaled - log_norm).detach().exp()  # softmax over the particles
            surrogate = (weights * score_terms).sum()
            bound = bound + plate_scale * (surrogate - surrogate.detach())
        return bound

    @torch.no_grad()
    def loss(self, model, guide, *args, **kwargs):
        """Estimate of −(N/B) Σ_batch L_{α,K}, nats (float, no gradient)."""
        loss = -self._bound(model, guide, args, kwargs).item()
        warn_if_nan(loss, "loss")
        return loss

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """The loss (float) of :meth:`loss`; back-propagates its gradient."""
        bound = self._bound(model, guide, args, kwargs)
        if bound.requires_grad:
            (-bound).backward(retain_graph=self.retain_graph)
        loss = -bound.item()
        warn_if_nan(loss, "loss")
        return loss

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """The loss as a scalar tensor whose gradient is the negative bound's."""
        loss = -self._bound(model, guide, args, kwargs)
        warn_if_nan(loss, "loss")
        return loss


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
        not an integer ≥ 1, ``alpha == 1`` with a Rényi loss, or ``jit=True`` with a
        loss other than ``"trace"``.
    """
    if isinstance(loss, ELBO):
        raise ValueError(_elbo_object_message(loss))
    if loss not in LOSSES:
        raise ValueError(
            f"Expected loss to be one of {', '.join(map(repr, LOSSES))} but got {loss!r}"
        )
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
             (TraceMeanField_ELBO, "meanfield"), (Trace_ELBO, "trace"))  # fmt: skip
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
    """Build an ELBO estimator by name.

    Particles are vectorized (one pass of the model over a ``num_particles`` plate at
    dim -2), which needs the static model structure of :class:`pyro_vae.VAE`.

    Parameters
    ----------
    loss : {"trace", "meanfield", "renyi", "pyro_renyi"}, default "trace"
        ``"trace"`` → :class:`pyro.infer.Trace_ELBO`; ``"meanfield"`` →
        :class:`pyro.infer.TraceMeanField_ELBO` (analytic KL(q ‖ p(z))); ``"renyi"`` →
        :class:`ScaledRenyiELBO` (α = 0 is the IWAE bound); ``"pyro_renyi"`` →
        :class:`pyro.infer.RenyiELBO`, kept for comparison (see the warning below).
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
        As :func:`check_loss`.

    Warns
    -----
    UserWarning
        For ``alpha < 0``: the Rényi objective is then no lower bound on log p(x).

    .. warning:: :class:`~pyro.infer.RenyiELBO` (``"pyro_renyi"``) applies the
       subsampling scale ``num_data / batch`` *inside* its log-sum-exp over particles,
       so with ``num_data > batch`` it does not estimate the scaled Rényi/IWAE bound;
       :class:`ScaledRenyiELBO` (``"renyi"``) applies it outside.
    """
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
    with warnings.catch_warnings():  # check_loss warned at our caller already
        warnings.simplefilter("ignore", UserWarning)
        return ScaledRenyiELBO(alpha=alpha, **common)


def objective_label(loss, alpha=0.0, num_particles=1):
    """Human-readable name of an objective, e.g. ``"RenyiELBO(alpha=0, K=5)"`` (str).

    :class:`ScaledRenyiELBO` is ``"RenyiELBO(...)"`` and Pyro's own is
    ``"pyro.RenyiELBO(...)"``.
    """
    if loss == "renyi":
        return f"RenyiELBO(alpha={alpha:g}, K={num_particles})"
    if loss == "pyro_renyi":
        return f"pyro.RenyiELBO(alpha={alpha:g}, K={num_particles})"
    name = "Trace_ELBO" if loss == "trace" else "TraceMeanField_ELBO"
    return name if num_particles == 1 else f"{name}(K={num_particles})"


OBJECTIVE_ALIASES = {
    "trace_elbo": "trace",
    "tracemeanfield_elbo": "meanfield",
    "renyielbo": "renyi",
}
"""Pyro's class names (lower-cased) accepted by :func:`parse_objective`, and the loss
each stands for; ``RenyiELBO`` is the package's scaled Rényi bound."""

OBJECTIVE_GRAMMAR = (
    "trace[:K] (Trace_ELBO, K particles, default 1), meanfield[:K] "
    "(TraceMeanField_ELBO, analytic KL), renyi:ALPHA:K (Rényi bound of order ALPHA != 1 "
    "with K particles; ALPHA=0 is the IWAE bound), iwae:K (= renyi:0:K), "
    "pyro_renyi:ALPHA:K (Pyro's own RenyiELBO); Pyro's class names Trace_ELBO, "
    "TraceMeanField_ELBO and RenyiELBO are accepted for trace, meanfield and renyi"
)
"""One-line description of the objective specs, used by the CLI's ``--help``."""


def parse_objective(spec):
    """Parse an objective spec into ``(loss, alpha, num_particles)``.

    Specs: ``"trace"``, ``"meanfield"`` (optionally ``":K"`` particles),
    ``"renyi:ALPHA:K"``, ``"pyro_renyi:ALPHA:K"``, and ``"iwae:K"`` for ``"renyi:0:K"``.
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
        if name in ("trace", "meanfield") and len(args) <= 1:
            loss, alpha, k = name, 0.0, int(args[0]) if args else 1
        elif name in RENYI_LOSSES and len(args) == 2:
            loss, alpha, k = name, float(args[0]), int(args[1])
        elif name == "iwae" and len(args) == 1:
            loss, alpha, k = "renyi", 0.0, int(args[0])
        else:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"Expected an objective spec, one of {OBJECTIVE_GRAMMAR}; but got {spec!r}"
        ) from None
    check_loss(loss, alpha, k)
    return loss, alpha, k
