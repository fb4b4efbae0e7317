r"""Normalizing-flow guides: an amortized Gaussian pushed through conditional transforms.

:class:`FlowEncoder` is the guide network of ``VAE(..., encoder="iaf:2")``: the MLP of
:class:`~pyro_vae.models.guides.Encoder` gives features h(x) and a Gaussian base
N(μ(h), diag σ(h)²); K of Pyro's conditional transforms, each conditioned on h (the
context), push the base's draws forward,

.. math::

    z_0 \sim \mathcal N(\mu_\phi(x), \mathrm{diag}\,\sigma_\phi(x)^2), \quad
    z_k = f_k(z_{k-1}; h_\phi(x)), \quad
    \log q_\phi(z_K \mid x) = \log \mathcal N(z_0) - \sum_k \log
    \left|\det \frac{\partial f_k}{\partial z_{k-1}}\right|,

the inverse autoregressive flow of Kingma et al. (2016) with the encoder's hidden
features as context, and the flow guides of Cremer, Li & Duvenaud (2018). Flows
(:data:`FLOWS`), from :mod:`pyro.distributions.transforms`:

- ``"iaf"``: :func:`~pyro.distributions.transforms.conditional_affine_autoregressive`
  (affine autoregressive, the IAF), a reversing permutation between layers;
- ``"coupling"``: :func:`~pyro.distributions.transforms.conditional_affine_coupling`
  (RealNVP's affine coupling; needs z_dim ≥ 2), a reversing permutation between layers;
- ``"spline"``: :func:`~pyro.distributions.transforms.conditional_spline` (elementwise
  linear rational splines, Dolatabadi et al. 2020, whose knots depend on h).

The guide is a :class:`~pyro.distributions.TransformedDistribution` with batch shape
``(batch,)`` and event shape ``(z_dim,)``: ``rsample`` draws reparameterized z and
``log_prob`` scores them. Pyro's transforms cache their last (input, output) pair, so
scoring the z just drawn costs no inverse; scoring other z (a grid, HMC draws) runs the
inverse, exact for all three flows (K passes of the autoregressive network for the IAF).
Planar and radial flows have no inverse (pyro #2718) and are not offered. A new
distribution, with fresh caches, is built at every call, so no cached value outlives a
step (pyro #1885). The transforms are submodules of the encoder, so ``pyro.module``
registers their parameters with the model's.

References
----------
1. D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling, "Improved
   Variational Inference with Inverse Autoregressive Flow", NeurIPS 2016.
2. C. Cremer, X. Li, D. Duvenaud, "Inference Suboptimality in Variational Autoencoders",
   ICML 2018.
3. L. Dinh, J. Sohl-Dickstein, S. Bengio, "Density estimation using Real NVP", ICLR 2017.
4. H. M. Dolatabadi, S. Erfani, C. Leckie, "Invertible Generative Modeling using Linear
   Rational Splines", AISTATS 2020.
"""

import warnings

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import (
    Permute,
    conditional_affine_autoregressive,
    conditional_affine_coupling,
    conditional_spline,
)
from torch import nn

from .._checks import is_int
from .guides import Encoder

__all__ = ["FLOWS", "GUIDE_GRAMMAR", "FlowEncoder", "FlowGuide", "parse_guide"]

FLOWS = ("iaf", "coupling", "spline")
"""The flows of :class:`FlowEncoder`."""

GUIDE_GRAMMAR = (
    "diagonal (a diagonal Gaussian, the default) or FLOW[:K] with FLOW in iaf, coupling, "
    "spline and K >= 1 transforms (default 2)"
)
"""The guide specs :func:`parse_guide` reads, for error messages and ``--help``."""

_MAKERS = {
    "iaf": conditional_affine_autoregressive,
    "coupling": conditional_affine_coupling,
    "spline": conditional_spline,
}


def parse_guide(spec, z_dim=None):
    """Read a guide spec: ``"diagonal"`` or ``"FLOW[:K]"``.

    Parameters
    ----------
    spec : str
        ``"diagonal"``, or a flow of :data:`FLOWS` with optional transform count,
        ``"iaf"`` (= ``"iaf:2"``), ``"coupling:4"``, ``"spline:1"``.
    z_dim : int, optional
        The latent dimension, to refuse ``"coupling"`` for z_dim 1.

    Returns
    -------
    spec : str
        The canonical spec (``"diagonal"`` or ``"FLOW:K"``).
    flow : str or None
        The flow, None for ``"diagonal"``.
    num_transforms : int
        K (0 for ``"diagonal"``).

    Raises
    ------
    ValueError
        For anything else (one line naming the spec and the grammar), or
        ``"coupling"`` with z_dim 1 (a coupling layer splits z in two parts).
    """
    expected = f"Expected a guide spec, {GUIDE_GRAMMAR}, but got {spec!r}"
    if not isinstance(spec, str):
        raise ValueError(expected)
    if spec == "diagonal":
        return "diagonal", None, 0
    name, _, count = spec.partition(":")
    if name not in FLOWS:
        raise ValueError(expected)
    if count:
        if not count.isdigit() or int(count) < 1:
            raise ValueError(expected)
        num_transforms = int(count)
    else:
        num_transforms = 2
    if name == "coupling" and z_dim is not None and z_dim < 2:
        raise ValueError(
            f"Expected z_dim >= 2 for the guide {spec!r} (a coupling layer transforms one "
            f"part of z given the other) but got z_dim={z_dim}; use iaf or spline"
        )
    return f"{name}:{num_transforms}", name, num_transforms


class FlowGuide(dist.TransformedDistribution):
    """q_φ(z|x) of a flow guide: a :class:`~pyro.distributions.TransformedDistribution`
    whose ``mean`` and ``variance`` say how to estimate them.

    Neither has a closed form; both raise ``NotImplementedError`` (as torch's class does,
    so that callers falling back to draws still do) with a message naming the estimate
    from draws, where torch's says nothing.
    """

    @property
    def mean(self):
        raise NotImplementedError(_NO_CLOSED_FORM.format("mean", "mean"))

    @property
    def variance(self):
        raise NotImplementedError(_NO_CLOSED_FORM.format("variance", "var"))


_NO_CLOSED_FORM = (
    "A flow guide's q(z|x) has no closed-form {0} (a TransformedDistribution): estimate it "
    "from draws, q.sample((1000,)).{1}(0)"
)


class FlowEncoder(Encoder):
    """The encoder's Gaussian through K conditional transforms with context h(x).

    Parameters
    ----------
    x_dim, z_dim : int
        Data and latent dimensions.
    hidden_dims : tuple of int
        Hidden widths of the MLP; the last is the context dimension of the transforms.
    flow : {"iaf", "coupling", "spline"}, default "iaf"
    num_transforms : int, default 2
        K, the number of transforms.
    activation : str, default "softplus"
        The MLP's hidden units (:data:`~pyro_vae.models.guides.ACTIVATIONS`).

    Raises
    ------
    ValueError
        For an unknown flow, K not a positive integer, or ``"coupling"`` with z_dim 1.

    Notes
    -----
    ``forward(x)`` for x of shape ``(batch, x_dim)`` returns q_φ(z|x) as a
    :class:`FlowGuide` (a :class:`~pyro.distributions.TransformedDistribution`) with
    batch shape ``(batch,)`` and event shape ``(z_dim,)``. The transforms' hidden widths
    are Pyro's defaults (10·z_dim; two layers of 10·z_dim for the spline's network).
    """

    def __init__(
        self, x_dim, z_dim, hidden_dims, flow="iaf", num_transforms=2, activation="softplus"
    ):
        if not is_int(num_transforms) or num_transforms < 1:
            raise ValueError(
                f"Expected num_transforms to be a positive integer but got {num_transforms!r}"
            )
        self.spec, _, _ = parse_guide(f"{flow}:{num_transforms}", z_dim)
        super().__init__(x_dim, z_dim, hidden_dims, activation)
        self.flow, context_dim = flow, hidden_dims[-1]
        with warnings.catch_warnings():
            # z_dim 1: Pyro suggests a plain affine map, which the IAF layer then is
            warnings.filterwarnings("ignore", "ConditionalAutoRegressiveNN input_dim = 1")
            self.transforms = nn.ModuleList(
                _MAKERS[flow](z_dim, context_dim) for _ in range(num_transforms)
            )
        self.register_buffer("order", torch.arange(z_dim - 1, -1, -1))

    def forward(self, x):
        h = self.features(x)
        parts = []
        for i, transform in enumerate(self.transforms):
            if i and self.flow != "spline":  # elementwise splines need no permutation
                parts.append(Permute(self.order))
            parts.append(transform.condition(h))
        return FlowGuide(self.gaussian(h), parts)
