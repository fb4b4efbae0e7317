"""The training objectives: Pyro's ELBO estimators, built by name.

=============  ==============================  =======================================
name           Pyro class                      bound
=============  ==============================  =======================================
``"trace"``    :class:`~pyro.infer.Trace_ELBO`  ELBO, Monte-Carlo KL (Kingma & Welling)
``"meanfield"`` :class:`~pyro.infer.TraceMeanField_ELBO`  ELBO, analytic KL(q ‖ p(z))
``"renyi"``    :class:`~pyro.infer.RenyiELBO`  Rényi bound L_α (Li & Turner 2016);
                                               α = 0 is the IWAE bound (Burda et al.)
=============  ==============================  =======================================

References
----------
1. D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
2. Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
3. Y. Li, R. E. Turner, "Rényi Divergence Variational Inference", NeurIPS 2016.
"""

import warnings

from pyro.infer import JitTrace_ELBO, RenyiELBO, Trace_ELBO, TraceMeanField_ELBO

__all__ = ["LOSSES", "make_elbo", "objective_label"]

LOSSES = ("trace", "meanfield", "renyi")


def check_objective(loss, alpha=0.0, num_particles=1):
    """Validate an objective's arguments; raise ``ValueError`` naming the bad one."""
    if loss not in LOSSES:
        raise ValueError(
            f"Expected loss to be one of {', '.join(map(repr, LOSSES))} but got {loss!r}"
        )
    if isinstance(num_particles, bool) or not isinstance(num_particles, int):
        raise ValueError(f"Expected num_particles to be an integer but got {num_particles!r}")
    if num_particles < 1:
        raise ValueError(f"Expected num_particles >= 1 but got {num_particles}")
    if loss == "renyi":
        if alpha == 1:
            raise ValueError(
                "Expected alpha != 1 for the Rényi bound: at alpha = 1 it is the ELBO, "
                "use loss='trace' (Trace_ELBO)"
            )
        if alpha < 0:
            warnings.warn(
                f"alpha={alpha} < 0: the Rényi objective is then no lower bound on log p(x)",
                stacklevel=3,
            )


def make_elbo(loss="trace", alpha=0.0, num_particles=1, jit=False):
    """Build Pyro's ELBO estimator by name.

    Particles are vectorized (one pass of the model over a ``num_particles`` plate at
    dim -2), which needs the static model structure of :class:`pyro_vae.VAE`.

    Parameters
    ----------
    loss : {"trace", "meanfield", "renyi"}, default "trace"
        ``"trace"`` → :class:`pyro.infer.Trace_ELBO`; ``"meanfield"`` →
        :class:`pyro.infer.TraceMeanField_ELBO` (analytic KL(q ‖ p(z))); ``"renyi"`` →
        :class:`pyro.infer.RenyiELBO` (α = 0 is the IWAE bound).
    alpha : float, default 0.0
        Order α of the Rényi bound (``loss="renyi"`` only); α ≠ 1.
    num_particles : int, default 1
        Samples z ~ q(z|x) per data point (k of the IWAE bound).
    jit : bool, default False
        Use :class:`pyro.infer.JitTrace_ELBO` for ``"trace"`` (the fastest Pyro path
        here); ignored for the other losses (``JitTraceMeanField_ELBO`` is slower than
        no JIT on CPU, and there is no JIT Rényi bound).

    Returns
    -------
    pyro.infer.ELBO
        Its ``loss`` is the negative bound in nats, summed over the data points (scaled
        by ``num_data / batch`` inside a subsampled plate).

    Raises
    ------
    ValueError
        For an unknown ``loss`` (the message lists the valid names), ``num_particles``
        < 1, or ``alpha == 1`` with ``loss="renyi"``.

    Warns
    -----
    UserWarning
        For ``alpha < 0``: the Rényi objective is then an upper, not a lower, bound.

    .. warning:: :class:`~pyro.infer.RenyiELBO` applies a subsampling scale *inside* its
       log-sum-exp over particles, so with ``num_data > batch`` it does not estimate the
       scaled IWAE bound; :func:`pyro_vae.fit` therefore trains Rényi bounds on unscaled
       minibatches.
    """
    check_objective(loss, alpha, num_particles)
    common = {
        "num_particles": num_particles,
        "vectorize_particles": num_particles > 1,
        "max_plate_nesting": 1,
    }
    if loss == "trace":
        return (JitTrace_ELBO if jit else Trace_ELBO)(**common)
    if loss == "meanfield":
        return TraceMeanField_ELBO(**common)
    return RenyiELBO(alpha=alpha, **common)


def objective_label(loss, alpha=0.0, num_particles=1):
    """Human-readable name of an objective, e.g. ``"RenyiELBO(alpha=0, K=5)"`` (str)."""
    if loss == "trace":
        name = "Trace_ELBO"
    elif loss == "meanfield":
        name = "TraceMeanField_ELBO"
    else:
        return f"RenyiELBO(alpha={alpha:g}, K={num_particles})"
    return name if num_particles == 1 else f"{name}(K={num_particles})"
