"""Generative models p(z) p_θ(x|z) and amortized guides q_φ(z|x) as Pyro functions.

The main interface is :class:`VAE`, the variational autoencoder of Kingma & Welling
(2014) written as in Pyro's ``examples/vae/vae.py``, and :class:`LinearGaussianVAE`,
probabilistic PCA (Tipping & Bishop 1999), whose log p(x) and posterior p(z|x) are
known in closed form and serve as the ground truth for every estimator.

Both classes expose ``model(x, num_data=None)`` and ``guide(x, num_data=None)``: plain
Pyro model and guide functions with a latent site ``"z"`` (event shape ``(z_dim,)``)
and an observed site ``"x"`` (event shape ``(x_dim,)``) inside
``pyro.plate("data", size=num_data, subsample=...)`` over the rows of x (a minibatch
log-likelihood is scaled by ``num_data / len(x)``), so they work unchanged
with :class:`pyro.infer.SVI`, :class:`pyro.infer.Predictive` and :mod:`pyro.poutine`.

References
----------
1. D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
2. M. E. Tipping, C. M. Bishop, "Probabilistic Principal Component Analysis",
   J. R. Stat. Soc. B 61(3), 1999.
"""

import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import kl_divergence
from torch.nn import functional as F

__all__ = ["LinearGaussianVAE", "VAE"]

LIKELIHOODS = ("bernoulli", "gaussian")


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"Expected {name} to be an integer > 0 but got {value!r}")


def _data_plate(x, num_data):
    """``pyro.plate("data")`` over the rows of x, scaled by num_data / len(x).

    The subsample indices are given, so the plate draws no random numbers.
    """
    if num_data is None:
        num_data = x.shape[0]
    elif num_data < x.shape[0]:
        raise ValueError(f"Expected num_data >= the batch size {x.shape[0]} but got {num_data}")
    subsample = torch.arange(x.shape[0], device=x.device)
    return pyro.plate("data", num_data, subsample=subsample)


class Encoder(nn.Module):
    """MLP mapping x of shape ``(..., x_dim)`` to (z_loc, z_scale), each ``(..., z_dim)``."""

    def __init__(self, x_dim, z_dim, hidden_dims):
        super().__init__()
        dims = (x_dim, *hidden_dims)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False))
        self.fc_loc = nn.Linear(dims[-1], z_dim)
        self.fc_scale = nn.Linear(dims[-1], z_dim)

    def forward(self, x):
        h = x
        for layer in self.hidden:
            h = F.softplus(layer(h))
        return self.fc_loc(h), F.softplus(self.fc_scale(h)) + 1e-4


class Decoder(nn.Module):
    """MLP mapping z of shape ``(..., z_dim)`` to the likelihood's parameter ``(..., x_dim)``.

    For the Bernoulli likelihood the output is the logits; for the Gaussian one, the mean.
    """

    def __init__(self, x_dim, z_dim, hidden_dims):
        super().__init__()
        dims = (z_dim, *reversed(hidden_dims))
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False))
        self.fc_out = nn.Linear(dims[-1], x_dim)

    def forward(self, z):
        h = z
        for layer in self.hidden:
            h = F.softplus(layer(h))
        return self.fc_out(h)


class VAE(nn.Module):
    r"""Variational autoencoder with a diagonal-Gaussian amortized guide.

    Generative model and guide, per data point:

    .. math::

        p(z) = \mathcal N(0, I), \quad
        p_\theta(x \mid z) = \prod_d \mathrm{Bernoulli}(x_d; \sigma(f_\theta(z)_d))
        \ \text{or}\ \mathcal N(x; f_\theta(z), \mathrm{diag}\, s^2), \quad
        q_\phi(z \mid x) = \mathcal N(\mu_\phi(x), \mathrm{diag}\, \sigma_\phi(x)^2).

    Parameters
    ----------
    x_dim : int
        Data dimension D (64 for the 8×8 digits, 784 for MNIST).
    z_dim : int, default 8
        Latent dimension.
    hidden_dims : tuple of int, default (256,)
        Hidden layer widths of the encoder; the decoder mirrors them. Softplus units.
    likelihood : {"bernoulli", "gaussian"}, default "bernoulli"
        ``"bernoulli"`` takes x in [0, 1] (binary, or grey levels as in Pyro's VAE
        example); ``"gaussian"`` has a learned per-pixel scale and takes any real x.

    Raises
    ------
    ValueError
        If a dimension is not a positive integer or the likelihood is unknown.

    Examples
    --------
    >>> vae = VAE(x_dim=64, z_dim=2)
    >>> svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}),
    ...                      pyro.infer.Trace_ELBO())
    >>> loss = svi.step(torch.zeros(10, 64))  # nats, summed over the 10 points
    """

    def __init__(self, x_dim, z_dim=8, hidden_dims=(256,), likelihood="bernoulli"):
        super().__init__()
        _check_positive_int("x_dim", x_dim)
        _check_positive_int("z_dim", z_dim)
        hidden_dims = tuple(hidden_dims)
        if not hidden_dims:
            raise ValueError("Expected hidden_dims to name at least one layer width")
        for width in hidden_dims:
            _check_positive_int("hidden_dims[i]", width)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"Expected likelihood in {LIKELIHOODS} but got {likelihood!r}")
        self.x_dim, self.z_dim = x_dim, z_dim
        self.hidden_dims = hidden_dims
        self.likelihood = likelihood
        self.encoder = Encoder(x_dim, z_dim, hidden_dims)
        self.decoder = Decoder(x_dim, z_dim, hidden_dims)
        if likelihood == "gaussian":
            self.x_log_scale = nn.Parameter(torch.zeros(x_dim))

    @property
    def config(self):
        """Constructor arguments, enough to rebuild the module (dict)."""
        return {
            "class": type(self).__name__,
            "x_dim": self.x_dim,
            "z_dim": self.z_dim,
            "hidden_dims": list(self.hidden_dims),
            "likelihood": self.likelihood,
        }

    def likelihood_dist(self, z):
        """p_θ(x|z) with batch shape ``z.shape[:-1]`` and event shape ``(x_dim,)``."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            # validate_args=False admits grey levels in [0, 1], as Pyro's VAE example.
            return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
        return dist.Normal(out, self.x_log_scale.exp()).to_event(1)

    def model(self, x, num_data=None):
        """Pyro model p(z) p_θ(x|z) for a batch x of shape ``(batch, x_dim)``.

        ``num_data`` (default: the batch size) is the size of the full data set, so
        that the log-likelihood of a minibatch is scaled by ``num_data / batch``.
        """
        pyro.module("decoder", self.decoder)
        if self.likelihood == "gaussian":
            pyro.param("x_log_scale", self.x_log_scale)
        with _data_plate(x, num_data):
            z_loc = x.new_zeros(x.shape[0], self.z_dim)
            z_scale = x.new_ones(x.shape[0], self.z_dim)
            z = pyro.sample("z", dist.Normal(z_loc, z_scale).to_event(1))
            pyro.sample("x", self.likelihood_dist(z), obs=x)

    def guide(self, x, num_data=None):
        """Pyro guide q_φ(z|x) for a batch x of shape ``(batch, x_dim)``."""
        pyro.module("encoder", self.encoder)
        with _data_plate(x, num_data):
            z_loc, z_scale = self.encoder(x)
            pyro.sample("z", dist.Normal(z_loc, z_scale).to_event(1))

    @torch.no_grad()
    def encode(self, x):
        """Guide parameters (z_loc, z_scale), each of shape ``(batch, z_dim)``."""
        return self.encoder(x)

    @torch.no_grad()
    def decode(self, z):
        """Mean of p_θ(x|z), shape ``(batch, x_dim)``: pixel probabilities or means."""
        mean = self.decoder(z)
        return torch.sigmoid(mean) if self.likelihood == "bernoulli" else mean

    @torch.no_grad()
    def reconstruct(self, x):
        """Decoder mean at one draw z ~ q_φ(z|x); shape ``(batch, x_dim)``."""
        z_loc, z_scale = self.encoder(x)
        return self.decode(dist.Normal(z_loc, z_scale).sample())

    @torch.no_grad()
    def sample(self, n):
        """Decoder means at n draws z ~ p(z) (new data, not reconstructions); ``(n, x_dim)``."""
        _check_positive_int("n", n)
        return self.decode(torch.randn(n, self.z_dim))


class LinearGaussianVAE(nn.Module):
    r"""Probabilistic PCA as a VAE: the closed-form ground truth.

    .. math::

        p(z) = \mathcal N(0, I_q), \quad p(x \mid z) = \mathcal N(W z + b, \sigma^2 I_D),
        \quad q_\phi(z \mid x) = \mathcal N(A x + c, \mathrm{diag}\, s^2).

    The marginal is p(x) = N(b, W Wᵀ + σ² I) and the posterior is
    p(z|x) = N(M⁻¹ Wᵀ (x − b), σ² M⁻¹) with M = Wᵀ W + σ² I (Tipping & Bishop 1999,
    eqs. 6–7). With a diagonal guide the posterior is reachable exactly when WᵀW is
    diagonal, as at the maximum-likelihood solution of :meth:`fit_maximum_likelihood`.

    Parameters
    ----------
    x_dim : int
        Data dimension D.
    z_dim : int
        Latent dimension q (q < D for the maximum-likelihood fit).
    noise_scale : float, default 1.0
        Initial observation noise σ (> 0).

    Raises
    ------
    ValueError
        If a dimension is not a positive integer or ``noise_scale`` is not > 0.
    """

    def __init__(self, x_dim, z_dim, noise_scale=1.0):
        super().__init__()
        _check_positive_int("x_dim", x_dim)
        _check_positive_int("z_dim", z_dim)
        if not noise_scale > 0:
            raise ValueError(f"Expected noise_scale > 0 but got {noise_scale!r}")
        self.x_dim, self.z_dim = x_dim, z_dim
        self.weight = nn.Parameter(torch.randn(x_dim, z_dim) / math.sqrt(z_dim))
        self.bias = nn.Parameter(torch.zeros(x_dim))
        self.log_noise_scale = nn.Parameter(torch.tensor(math.log(noise_scale)))
        self.guide_loc = nn.Linear(x_dim, z_dim)
        self.guide_log_scale = nn.Parameter(torch.zeros(z_dim))

    @property
    def config(self):
        """Constructor arguments, enough to rebuild the module (dict)."""
        return {"class": type(self).__name__, "x_dim": self.x_dim, "z_dim": self.z_dim}

    @property
    def noise_scale(self):
        """Observation noise σ (scalar tensor)."""
        return self.log_noise_scale.exp()

    def likelihood_dist(self, z):
        """p(x|z) = N(Wz + b, σ²I), batch shape ``z.shape[:-1]``, event ``(x_dim,)``."""
        loc = z @ self.weight.T + self.bias
        return dist.Normal(loc, self.noise_scale.expand(self.x_dim)).to_event(1)

    def model(self, x, num_data=None):
        """Pyro model p(z) p(x|z) for x of shape ``(batch, x_dim)``; see :meth:`VAE.model`."""
        pyro.module("ppca", self)
        with _data_plate(x, num_data):
            z_loc = x.new_zeros(x.shape[0], self.z_dim)
            z_scale = x.new_ones(x.shape[0], self.z_dim)
            z = pyro.sample("z", dist.Normal(z_loc, z_scale).to_event(1))
            pyro.sample("x", self.likelihood_dist(z), obs=x)

    def guide(self, x, num_data=None):
        """Pyro guide q_φ(z|x) = N(Ax + c, diag s²) for x of shape ``(batch, x_dim)``."""
        pyro.module("ppca", self)
        with _data_plate(x, num_data):
            z_loc, z_scale = self.encoder(x)
            pyro.sample("z", dist.Normal(z_loc, z_scale).to_event(1))

    def encoder(self, x):
        """Guide parameters (z_loc, z_scale), each ``(batch, z_dim)``."""
        z_scale = self.guide_log_scale.exp().expand(x.shape[:-1] + (self.z_dim,))
        return self.guide_loc(x), z_scale

    @torch.no_grad()
    def encode(self, x):
        """Guide parameters (z_loc, z_scale), each ``(batch, z_dim)``."""
        return self.encoder(x)

    @torch.no_grad()
    def exact_log_likelihood(self, x):
        """Closed-form log p(x) = log N(x; b, WWᵀ + σ²I), nats per point, shape ``(batch,)``."""
        cov_diag = self.noise_scale.square().expand(self.x_dim)
        marginal = dist.LowRankMultivariateNormal(self.bias, self.weight, cov_diag)
        return marginal.log_prob(x)

    @torch.no_grad()
    def exact_posterior(self, x):
        """Closed-form p(z|x) = N(M⁻¹Wᵀ(x − b), σ²M⁻¹), batch shape ``(batch,)``.

        Returns a :class:`pyro.distributions.MultivariateNormal` with event shape
        ``(z_dim,)`` (Tipping & Bishop 1999, eq. 7).
        """
        noise_var = self.noise_scale.square()
        m = self.weight.T @ self.weight + noise_var * torch.eye(self.z_dim)
        m_inv = torch.linalg.inv(m)
        loc = (x - self.bias) @ (m_inv @ self.weight.T).T
        return dist.MultivariateNormal(loc, covariance_matrix=noise_var * m_inv)

    @torch.no_grad()
    def exact_posterior_kl(self, x):
        """Closed-form KL(q_φ(z|x) ‖ p(z|x)) in nats per point, shape ``(batch,)``.

        By the ELBO decomposition log p(x) = ELBO + KL(q ‖ p(z|x)), this is the gap.
        """
        z_loc, z_scale = self.encoder(x)
        q = dist.MultivariateNormal(z_loc, scale_tril=torch.diag_embed(z_scale))
        return kl_divergence(q, self.exact_posterior(x))

    @torch.no_grad()
    def fit_maximum_likelihood(self, x):
        """Set W, b, σ to the closed-form maximum-likelihood fit and q to p(z|x).

        Tipping & Bishop (1999), eqs. 7–8: b = mean(x), σ² = the mean of the
        D − q smallest eigenvalues of the sample covariance S, W = U_q (Λ_q − σ²I)^{1/2}.
        The guide is then set to the exact posterior, which is diagonal since WᵀW is.

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
        if x.dim() != 2 or x.shape[1] != self.x_dim or x.shape[0] < 2:
            raise ValueError(
                f"Expected x of shape (num_data >= 2, {self.x_dim}) but got {tuple(x.shape)}"
            )
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
        self.set_guide_to_posterior()
        return self

    @torch.no_grad()
    def set_guide_to_posterior(self):
        """Set q_φ(z|x) to N(M⁻¹Wᵀ(x − b), diag(σ² M⁻¹)): exact when WᵀW is diagonal."""
        noise_var = self.noise_scale.square()
        m_inv = torch.linalg.inv(self.weight.T @ self.weight + noise_var * torch.eye(self.z_dim))
        proj = m_inv @ self.weight.T
        self.guide_loc.weight.copy_(proj)
        self.guide_loc.bias.copy_(-proj @ self.bias)
        self.guide_log_scale.copy_(0.5 * (noise_var * m_inv.diagonal()).log())
        return self


def check_data(x, vae, name="data"):
    """Validate a data matrix for ``vae``; return it as a float32 tensor.

    Raises
    ------
    ValueError
        If x is not a non-empty 2-D matrix of width ``vae.x_dim``, holds NaN or inf,
        or, for a Bernoulli likelihood, values outside [0, 1].
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"Expected {name} to be a torch.Tensor but got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(
            f"Expected {name} of shape (num_data, {vae.x_dim}) but got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"Expected {name} to hold at least one data point but it is empty")
    if x.shape[1] != vae.x_dim:
        raise ValueError(f"Expected {name} of width x_dim={vae.x_dim} but got width {x.shape[1]}")
    x = x.float()
    if not torch.isfinite(x).all():
        raise ValueError(f"Expected {name} to hold finite values but found NaN or inf")
    if getattr(vae, "likelihood", None) == "bernoulli" and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"Expected {name} in [0, 1] for the Bernoulli likelihood but got values in "
            f"[{x.min().item():g}, {x.max().item():g}]"
        )
    return x
