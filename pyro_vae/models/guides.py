"""The default amortized guides' networks: ``encoder(x)`` returns q_φ(z|x).

Each module's ``forward(x)`` takes x of shape ``(batch, x_dim)`` and returns q_φ(z|x)
as a distribution with batch shape ``(batch,)`` and event shape ``(z_dim,)``, the
contract of ``VAE(..., encoder=...)`` and ``LinearGaussianVAE(..., encoder=...)``: any
module returning such a distribution (supporting ``rsample`` and ``log_prob``, e.g.
``MultivariateNormal(loc, scale_tril=...)``) can take their place.
"""

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "ACTIVATIONS",
    "ACTIVATIONS_IN_PLACE",
    "Encoder",
    "LinearEncoder",
    "check_activation",
    "check_guide_class",
]

ACTIVATIONS = {"softplus": F.softplus, "elu": F.elu, "relu": F.relu, "tanh": torch.tanh}
"""The hidden units of the MLPs of :class:`Encoder` and the decoder, by name: softplus (the
default), ELU (Cremer et al. 2018's networks), ReLU and tanh."""

ACTIVATIONS_IN_PLACE = {
    "softplus": lambda h: torch.ops.aten.softplus.out(h, 1.0, 20.0, out=h),
    "elu": lambda h: F.elu(h, inplace=True),
    "relu": torch.relu_,
    "tanh": torch.tanh_,
}
"""Each of :data:`ACTIVATIONS` written over its input: the same kernel, so the same
numbers (softplus with F.softplus's β = 1 and threshold 20). For passes without
gradients, whose hidden layers over S × batch draws would otherwise hold two buffers
at once (``tests/test_models.py`` checks the numbers)."""


def check_activation(activation):
    """``activation`` if it names one of :data:`ACTIVATIONS`, else a ValueError naming it."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"Expected activation in {tuple(ACTIVATIONS)} but got {activation!r}")
    return activation


class Encoder(nn.Module):
    """MLP mapping x of shape ``(batch, x_dim)`` to q_φ(z|x) = N(z_loc, diag z_scale²).

    Returns ``Normal(z_loc, z_scale).to_event(1)``: batch shape ``(batch,)``, event
    shape ``(z_dim,)``; z_scale = softplus(·) + 10⁻⁴. The hidden units are
    ``activation`` (:data:`ACTIVATIONS`; default softplus).
    """

    def __init__(self, x_dim, z_dim, hidden_dims, activation="softplus"):
        super().__init__()
        self.activation = check_activation(activation)
        dims = (x_dim, *hidden_dims)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False))
        self.fc_loc = nn.Linear(dims[-1], z_dim)
        self.fc_scale = nn.Linear(dims[-1], z_dim)

    def features(self, x):
        """The last hidden layer's output h(x), shape ``(batch, hidden_dims[-1])``."""
        h, act = x, ACTIVATIONS[self.activation]
        for layer in self.hidden:
            h = act(layer(h))
        return h

    def gaussian(self, h):
        """N(z_loc(h), diag z_scale(h)²) from the features h."""
        z_loc, z_scale = self.fc_loc(h), F.softplus(self.fc_scale(h)) + 1e-4
        return dist.Normal(z_loc, z_scale).to_event(1)

    def forward(self, x):
        return self.gaussian(self.features(x))


class LinearEncoder(nn.Module):
    """q(z|x) = N(Ax + c, diag s²): ``loc`` (nn.Linear), ``log_scale`` (z_dim,)."""

    def __init__(self, x_dim, z_dim):
        super().__init__()
        self.loc = nn.Linear(x_dim, z_dim)
        self.log_scale = nn.Parameter(torch.zeros(z_dim))

    def forward(self, x):
        z_loc = self.loc(x)
        return dist.Normal(z_loc, self.log_scale.exp().expand(z_loc.shape)).to_event(1)


def check_guide_class(q):
    """Raise ``ValueError`` for an encoder distribution whose batched draws are wrong.

    Pyro's :class:`~pyro.distributions.MixtureOfDiagNormals` (pyro-ppl 1.9) with a batch
    shape ``(batch,)``, asked for several draws at once (``q.sample((S,))``, as HMC's
    starting points and AIS's mass matrix are drawn), gives draw s of every row from the
    components of row s, and a size error when S exceeds the rows. The same mixture as
    :class:`~pyro.distributions.MixtureSameFamily` (torch's class as a Pyro
    distribution) draws right, so the message names it.

    Raises
    ------
    ValueError
        If ``q`` is a :class:`~pyro.distributions.MixtureOfDiagNormals`.
    """
    if isinstance(q, dist.MixtureOfDiagNormals):
        raise ValueError(
            "Expected the encoder's q(z|x) to draw batches right but got Pyro's "
            "MixtureOfDiagNormals, which draws the wrong components in batch mode (a Pyro "
            "bug); return pyro.distributions.MixtureSameFamily(Categorical(logits=logits), "
            "Normal(locs, scales).to_event(1)) (torch's MixtureSameFamily) instead"
        )
