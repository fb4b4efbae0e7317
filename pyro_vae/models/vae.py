"""The variational autoencoder p(z) p_θ(x|z) with an MLP decoder: :class:`VAE`.

Written as in Pyro's ``examples/vae/vae.py`` (Kingma & Welling 2014); ``model`` and
``guide`` are :class:`~pyro_vae.models.base.BaseVAE`'s, the guide's network is
:class:`~pyro_vae.models.guides.Encoder` unless one is passed as ``encoder``.

References
----------
1. D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
2. G. Loaiza-Ganem, J. P. Cunningham, "The continuous Bernoulli: fixing a pervasive
   error in variational autoencoders", NeurIPS 2019.
"""

import pyro.distributions as dist
import torch
from torch import nn

from .._checks import is_int
from .base import BaseVAE
from .flows import FlowEncoder, parse_guide
from .guides import ACTIVATIONS, ACTIVATIONS_IN_PLACE, Encoder, check_activation
from .linear_gaussian import LinearGaussianVAE

# LinearGaussianVAE is re-exported for the callers of ``pyro_vae.models.vae`` before the split.
__all__ = ["LIKELIHOODS", "VAE", "Decoder", "LinearGaussianVAE"]

LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "gaussian")


class Decoder(nn.Module):
    """MLP mapping z of shape ``(..., z_dim)`` to the likelihood's parameter ``(..., x_dim)``.

    The output is the logits (Bernoulli, continuous Bernoulli) or the mean (Gaussian);
    ``x_log_scale``, the Gaussian's learned per-pixel log-scale, is ``None`` otherwise.
    """

    def __init__(self, x_dim, z_dim, hidden_dims, learn_scale=False, activation="softplus"):
        super().__init__()
        self.activation = check_activation(activation)
        dims = (z_dim, *reversed(hidden_dims))
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False))
        self.fc_out = nn.Linear(dims[-1], x_dim)
        self.x_log_scale = nn.Parameter(torch.zeros(x_dim)) if learn_scale else None

    def forward(self, z):
        # Without gradients the activation overwrites the layer's output (same numbers):
        # one hidden buffer of S × batch rows, not two, whose release and page faults
        # cost the per-epoch validation more than the activation itself.
        table = ACTIVATIONS if torch.is_grad_enabled() else ACTIVATIONS_IN_PLACE
        h, act = z, table[self.activation]
        for layer in self.hidden:
            h = act(layer(h))
        return self.fc_out(h)


def likelihood_of(likelihood, out, x_log_scale=None):
    """p_θ(x|z) from the decoder's output ``out`` (``(..., x_dim)``): event shape ``(x_dim,)``.

    ``likelihood`` is one of :data:`LIKELIHOODS`; ``out`` the logits (Bernoulli, continuous
    Bernoulli) or the mean (Gaussian, whose log-scale ``x_log_scale`` broadcasts with it).
    """
    if likelihood == "bernoulli":
        # Binary x is checked in model(); no per-step support check here.
        return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
    if likelihood == "continuous_bernoulli":
        return dist.ContinuousBernoulli(logits=out).to_event(1)
    return dist.Normal(out, x_log_scale.exp()).to_event(1)


def _check_hidden_dims(hidden_dims):
    """``hidden_dims`` (an int or a sequence of ints > 0) as a non-empty tuple."""
    if is_int(hidden_dims):
        hidden_dims = (hidden_dims,)
    expected = "Expected hidden_dims to be a positive integer or a non-empty sequence of them"
    if isinstance(hidden_dims, (str, bytes)) or not hasattr(hidden_dims, "__iter__"):
        raise ValueError(f"{expected} but got {hidden_dims!r}")
    widths = tuple(hidden_dims)
    if not widths or not all(is_int(w) and w > 0 for w in widths):
        raise ValueError(f"{expected} but got {hidden_dims!r}")
    return tuple(int(w) for w in widths)


class VAE(BaseVAE):
    r"""Variational autoencoder with an amortized guide: a diagonal Gaussian or a flow.

    Generative model and guide, per data point:

    .. math::

        p(z) = \mathcal N(0, I), \quad
        p_\theta(x \mid z) = \prod_d \mathrm{Bernoulli}(x_d; \sigma(f_\theta(z)_d))
        \ \text{or}\ \mathcal{CB}(x_d; \sigma(f_\theta(z)_d))
        \ \text{or}\ \mathcal N(x_d; f_\theta(z)_d, s_d^2), \quad
        q_\phi(z \mid x) = \mathcal N(\mu_\phi(x), \mathrm{diag}\, \sigma_\phi(x)^2)
        \ \text{(or that Gaussian through a flow,}\ ``encoder``\text{)}.

    Parameters
    ----------
    x_dim : int
        Data dimension D (64 for the 8×8 digits, 784 for MNIST).
    z_dim : int, default 8
        Latent dimension.
    hidden_dims : int or tuple of int, default (256,)
        Hidden layer widths of the encoder (an int: one layer); the decoder mirrors
        them.
    likelihood : {"bernoulli", "continuous_bernoulli", "gaussian"}, default "bernoulli"
        ``"bernoulli"`` takes binary x: grey levels in (0, 1) would make its
        log-density a cross-entropy, not a log-likelihood, and are refused (with
        Pyro's validation on, as by default); ``"continuous_bernoulli"`` (Loaiza-Ganem
        & Cunningham 2019) is the normalized density for x in [0, 1];
        ``"gaussian"`` has a learned per-pixel scale and takes any real x.
    encoder : str or torch.nn.Module, default "diagonal"
        The guide's network. A spec (:func:`~pyro_vae.models.flows.parse_guide`):
        ``"diagonal"``, an MLP with the widths ``hidden_dims`` returning
        ``Normal(z_loc, z_scale).to_event(1)``; ``"iaf:K"``, ``"coupling:K"`` or
        ``"spline:K"``, that Gaussian through K conditional transforms with the MLP's
        last hidden layer as context (:class:`~pyro_vae.models.flows.FlowEncoder`,
        Kingma et al. 2016). Or a module: ``encoder(x)`` for x of shape
        ``(batch, x_dim)`` returns q_φ(z|x) as a distribution with batch shape
        ``(batch,)`` and event shape ``(z_dim,)`` supporting ``rsample`` and
        ``log_prob`` (e.g. ``MultivariateNormal(loc, scale_tril=...)``). Every
        estimator of the package reads the guide through this distribution.
    activation : {"softplus", "elu", "relu", "tanh"}, default "softplus"
        The hidden units of the encoder's and the decoder's MLPs
        (:data:`~pyro_vae.models.guides.ACTIVATIONS`).
    name : str, optional
        Prefix of the model's names in Pyro's param store (``"vae"`` →
        ``"vae.decoder$$$fc_out.weight"``), the same in every process, so that
        ``pyro.get_param_store().save``/``load`` restore the model (README, "Saving
        and loading"). Default: a name unique to the instance (``"VAE_3"``), so two
        models never share parameters; two live models given one name do share them.

    Raises
    ------
    ValueError
        If a dimension is not a positive integer, ``hidden_dims`` is neither a
        positive integer nor a non-empty sequence of them, the likelihood is unknown,
        ``encoder`` is not a module or ``name`` is not a non-empty string.

    Examples
    --------
    >>> vae = VAE(x_dim=64, z_dim=2)
    >>> svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}),
    ...                      pyro.infer.Trace_ELBO())
    >>> loss = svi.step(torch.zeros(10, 64))  # nats, summed over the 10 points
    """

    def __init__(
        self,
        x_dim,
        z_dim=8,
        hidden_dims=(256,),
        likelihood="bernoulli",
        encoder="diagonal",
        name=None,
        activation="softplus",
    ):
        super().__init__(x_dim, z_dim, name)
        check_activation(activation)
        if encoder is None:
            encoder = "diagonal"
        if isinstance(encoder, str):
            self.guide_spec, flow, num_transforms = parse_guide(encoder, z_dim)
        elif isinstance(encoder, nn.Module):
            self.guide_spec = None
        else:
            raise ValueError(
                "Expected encoder to be a guide spec (str) or a torch.nn.Module whose "
                f"forward(x) returns q(z|x) as a distribution but got {type(encoder).__name__}"
            )
        hidden_dims = _check_hidden_dims(hidden_dims)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"Expected likelihood in {LIKELIHOODS} but got {likelihood!r}")
        self.hidden_dims = hidden_dims
        self.likelihood = likelihood
        if self.guide_spec is None:
            self.encoder = encoder
        elif flow is None:
            self.encoder = Encoder(x_dim, z_dim, hidden_dims, activation)
        else:
            self.encoder = FlowEncoder(
                x_dim, z_dim, hidden_dims, flow, num_transforms, activation=activation
            )
        self.decoder = Decoder(
            x_dim, z_dim, hidden_dims, learn_scale=likelihood == "gaussian", activation=activation
        )

    @property
    def config(self):
        """Constructor arguments, enough to rebuild the module (dict; ``name`` only if
        given, ``encoder`` only for a flow guide; a module passed as ``encoder`` is not
        recorded)."""
        config = {
            "class": type(self).__name__,
            "x_dim": self.x_dim,
            "z_dim": self.z_dim,
            "hidden_dims": list(self.hidden_dims),
            "likelihood": self.likelihood,
        }
        if self.guide_spec not in (None, "diagonal"):
            config["encoder"] = self.guide_spec
        if self.decoder.activation != "softplus":
            config["activation"] = self.decoder.activation
        if self.name is not None:
            config["name"] = self.name
        return config

    @property
    def x_log_scale(self):
        """Learned per-pixel log-scale of the Gaussian likelihood, ``(x_dim,)`` (or None)."""
        return self.decoder.x_log_scale

    def likelihood_dist(self, z):
        """p_θ(x|z) with batch shape ``z.shape[:-1]`` and event shape ``(x_dim,)``."""
        return likelihood_of(self.likelihood, self.decoder(z), self.decoder.x_log_scale)
