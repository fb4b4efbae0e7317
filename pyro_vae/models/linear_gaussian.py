r"""Probabilistic PCA as a VAE, the closed-form ground truth: :class:`LinearGaussianVAE`.

Its log p(x) and posterior p(z|x) are known in closed form (Tipping & Bishop 1999) and
serve as the reference for every estimator of :mod:`pyro_vae.infer`.

References
----------
1. M. E. Tipping, C. M. Bishop, "Probabilistic Principal Component Analysis",
   J. R. Stat. Soc. B 61(3), 611–622, 1999.
"""

import math

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from .base import BaseVAE
from .guides import LinearEncoder

__all__ = ["LinearDecoder", "LinearGaussianVAE"]


class LinearDecoder(nn.Module):
    """Parameters of p(x|z) = N(Wz + b, σ²I): ``weight`` (x_dim, z_dim), ``bias``, σ."""

    def __init__(self, x_dim, z_dim, noise_scale):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(x_dim, z_dim) / math.sqrt(z_dim))
        self.bias = nn.Parameter(torch.zeros(x_dim))
        self.log_noise_scale = nn.Parameter(torch.tensor(math.log(noise_scale)))


class LinearGaussianVAE(BaseVAE):
    r"""Probabilistic PCA as a VAE: the closed-form ground truth.

    .. math::

        p(z) = \mathcal N(0, I_q), \quad p(x \mid z) = \mathcal N(W z + b, \sigma^2 I_D),
        \quad q_\phi(z \mid x) = \mathcal N(A x + c, \mathrm{diag}\, s^2).

    The marginal is p(x) = N(b, W Wᵀ + σ² I) and the posterior is
    p(z|x) = N(M⁻¹ Wᵀ (x − b), σ² M⁻¹) with M = Wᵀ W + σ² I (Tipping & Bishop 1999,
    sec. 3.1 and eq. 6). With a diagonal guide the posterior is reachable exactly when
    WᵀW is diagonal, as at the maximum-likelihood solution of
    :meth:`fit_maximum_likelihood`.

    Parameters
    ----------
    x_dim : int
        Data dimension D.
    z_dim : int
        Latent dimension q (q < D for the maximum-likelihood fit).
    noise_scale : float, default 1.0
        Initial observation noise σ (> 0).
    encoder : torch.nn.Module, optional
        The guide's network, as for :class:`pyro_vae.VAE`: ``encoder(x)`` returns
        q_φ(z|x) with batch shape ``(batch,)`` and event shape ``(z_dim,)`` (e.g. a
        full-covariance ``MultivariateNormal``, which can equal p(z|x) for any W).
        Default: :class:`~pyro_vae.models.guides.LinearEncoder`, the diagonal
        N(Ax + c, diag s²) of the formula above.
    name : str, optional
        Prefix of the model's names in Pyro's param store, as for :class:`pyro_vae.VAE`.

    Raises
    ------
    ValueError
        If a dimension is not a positive integer, ``noise_scale`` is not > 0 or
        ``encoder`` is not an ``nn.Module``.
    """

    def __init__(self, x_dim, z_dim, noise_scale=1.0, encoder=None, name=None):
        super().__init__(x_dim, z_dim, name)
        if not noise_scale > 0:
            raise ValueError(f"Expected noise_scale > 0 but got {noise_scale!r}")
        if encoder is not None and not isinstance(encoder, nn.Module):
            raise ValueError(
                "Expected encoder to be None or a torch.nn.Module whose forward(x) returns "
                f"q(z|x) as a distribution but got {type(encoder).__name__}"
            )
        self.decoder = LinearDecoder(x_dim, z_dim, noise_scale)
        self.encoder = LinearEncoder(x_dim, z_dim) if encoder is None else encoder

    @property
    def config(self):
        """Constructor arguments, enough to rebuild the module (dict)."""
        config = {"class": type(self).__name__, "x_dim": self.x_dim, "z_dim": self.z_dim}
        if self.name is not None:
            config["name"] = self.name
        return config

    @property
    def weight(self):
        """W, shape ``(x_dim, z_dim)`` (the decoder's parameter)."""
        self._sync_on_use()
        return self.decoder.weight

    @property
    def bias(self):
        """b, shape ``(x_dim,)``."""
        self._sync_on_use()
        return self.decoder.bias

    @property
    def log_noise_scale(self):
        """log σ (scalar parameter)."""
        self._sync_on_use()
        return self.decoder.log_noise_scale

    @property
    def noise_scale(self):
        """Observation noise σ (scalar tensor)."""
        self._sync_on_use()
        return self.decoder.log_noise_scale.exp()

    @property
    def guide_loc(self):
        """The guide's mean Ax + c as an ``nn.Linear(x_dim, z_dim)`` (default encoder only)."""
        return self._linear_encoder("guide_loc").loc

    @property
    def guide_log_scale(self):
        """The guide's log s, shape ``(z_dim,)`` (default encoder only)."""
        return self._linear_encoder("guide_log_scale").log_scale

    def _linear_encoder(self, what):
        if not isinstance(self.encoder, LinearEncoder):
            raise ValueError(
                f"Expected the default LinearEncoder for {what} but the encoder is "
                f"{type(self.encoder).__name__}; set its parameters on the module itself"
            )
        self._sync_on_use()
        return self.encoder

    def likelihood_dist(self, z):
        """p(x|z) = N(Wz + b, σ²I), batch shape ``z.shape[:-1]``, event ``(x_dim,)``."""
        loc = z @ self.weight.T + self.bias
        return dist.Normal(loc, self.noise_scale.expand(self.x_dim)).to_event(1)

    def _float64(self):
        """W, b and σ² in float64: the closed forms are computed in float64 and cast
        to the model's dtype at the end, so the ground truth is the most exact number
        (in float32 the Cholesky and log-determinant are off by ~1e-5 nats)."""
        return (
            self.weight.double(),
            self.bias.double(),
            self.log_noise_scale.double().exp().square(),
        )

    def _precision_factor(self):
        """M = WᵀW + σ²I and σ² in float64, for the posterior (Tipping & Bishop 1999, eq. 6)."""
        weight, _, noise_var = self._float64()
        eye = torch.eye(self.z_dim, dtype=torch.float64, device=weight.device)
        return weight.T @ weight + noise_var * eye, noise_var

    @torch.no_grad()
    def exact_log_likelihood(self, x):
        """Closed-form log p(x) = log N(x; b, WWᵀ + σ²I), nats per point, shape ``(batch,)``.

        Computed in float64, returned in the model's dtype.
        """
        x = self._check_x(x)
        weight, bias, noise_var = self._float64()
        marginal = dist.LowRankMultivariateNormal(bias, weight, noise_var.expand(self.x_dim))
        return marginal.log_prob(x.double()).to(x.dtype)

    def _exact_posterior64(self, x):
        """p(z|x) in float64 (x already checked)."""
        weight, bias, noise_var = self._float64()
        m, _ = self._precision_factor()
        m_inv = torch.linalg.inv(m)
        loc = (x.double() - bias) @ (m_inv @ weight.T).T
        return dist.MultivariateNormal(loc, covariance_matrix=noise_var * m_inv)

    @torch.no_grad()
    def exact_posterior(self, x):
        """Closed-form p(z|x) = N(M⁻¹Wᵀ(x − b), σ²M⁻¹), batch shape ``(batch,)``.

        Returns a :class:`pyro.distributions.MultivariateNormal` with event shape
        ``(z_dim,)`` (Tipping & Bishop 1999, eq. 6), on the parameters' dtype and device
        (computed in float64).
        """
        x = self._check_x(x)
        posterior = self._exact_posterior64(x)
        return dist.MultivariateNormal(
            posterior.loc.to(x.dtype), scale_tril=posterior.scale_tril.to(x.dtype)
        )

    @torch.no_grad()
    def exact_posterior_kl(self, x):
        """Closed-form KL(q_φ(z|x) ‖ p(z|x)) in nats per point, shape ``(batch,)``.

        By the ELBO decomposition log p(x) = ELBO + KL(q ‖ p(z|x)), this is the gap.
        Computed in float64 from the guide's parameters, returned in the model's dtype.

        Raises
        ------
        ValueError
            If x does not fit the model, a subclass overrides :meth:`guide` (its q(z|x)
            is not the encoder's), or the encoder's distribution is not Gaussian.
        """
        self.require_encoder_guide("the closed-form KL(q(z|x) || p(z|x))")
        x = self._check_x(x)
        q = self.encode(x)
        if isinstance(q, Independent) and isinstance(q.base_dist, Normal):
            q = dist.MultivariateNormal(
                q.base_dist.loc.double(), scale_tril=torch.diag_embed(q.stddev.double())
            )
        elif isinstance(q, MultivariateNormal):
            q = dist.MultivariateNormal(q.loc.double(), scale_tril=q.scale_tril.double())
        else:  # another Gaussian (LowRankMultivariateNormal): in the model's dtype
            try:
                return kl_divergence(q, self.exact_posterior(x))
            except NotImplementedError:
                raise ValueError(
                    "Expected a Gaussian guide (Normal(...).to_event(1) or "
                    "MultivariateNormal) for the closed-form KL but the encoder returns "
                    f"{type(q).__name__}"
                ) from None
        return kl_divergence(q, self._exact_posterior64(x)).to(x.dtype)

    @torch.no_grad()
    def fit_maximum_likelihood(self, x):
        """Set W, b, σ to the closed-form maximum-likelihood fit and q to p(z|x).

        Tipping & Bishop (1999), eqs. 7–8: b = mean(x), σ² = the mean of the
        D − q smallest eigenvalues of the sample covariance S, W = U_q (Λ_q − σ²I)^{1/2}.
        The default guide (:class:`~pyro_vae.models.guides.LinearEncoder`) is then set
        to the exact posterior, which is diagonal since WᵀW is; another encoder is left
        as it is.

        Parameters
        ----------
        x : torch.Tensor
            Data of shape ``(num_data, x_dim)``, num_data ≥ 2 and x_dim > z_dim.

        Returns
        -------
        LinearGaussianVAE
            ``self``.

        Raises
        ------
        ValueError
            If x has the wrong shape or z_dim ≥ x_dim.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.x_dim:
            raise ValueError(
                f"Expected x of shape (num_data >= 2, {self.x_dim}) but got "
                f"{tuple(getattr(x, 'shape', ()))}"
            )
        if x.shape[0] < 2:
            raise ValueError(f"Expected x with num_data >= 2 rows but got {x.shape[0]}")
        if self.z_dim >= self.x_dim:
            raise ValueError(
                f"Expected z_dim < x_dim for the maximum-likelihood fit but got "
                f"z_dim={self.z_dim}, x_dim={self.x_dim}"
            )
        x = x.double()
        mean = x.mean(0)
        cov = (x - mean).T @ (x - mean) / x.shape[0]
        evals, evecs = torch.linalg.eigh(cov)
        evals, evecs = evals.flip(0), evecs.flip(1)
        noise_var = evals[self.z_dim :].mean()
        weight = evecs[:, : self.z_dim] * (evals[: self.z_dim] - noise_var).sqrt()
        self.bias.copy_(mean)
        self.weight.copy_(weight)
        self.log_noise_scale.copy_(noise_var.sqrt().log())
        if isinstance(self.encoder, LinearEncoder):
            self.set_guide_to_posterior()
        return self

    @torch.no_grad()
    def set_guide_to_posterior(self):
        """Set q_φ(z|x) to N(M⁻¹Wᵀ(x − b), diag(σ² M⁻¹)): exact when WᵀW is diagonal.

        Raises
        ------
        ValueError
            If the encoder is not the default :class:`~pyro_vae.models.guides.LinearEncoder`.
        """
        weight, bias, _ = self._float64()
        m, noise_var = self._precision_factor()
        m_inv = torch.linalg.inv(m)
        proj = m_inv @ weight.T
        self.guide_loc.weight.copy_(proj)
        self.guide_loc.bias.copy_(-proj @ bias)
        self.guide_log_scale.copy_(0.5 * (noise_var * m_inv.diagonal()).log())
        return self
