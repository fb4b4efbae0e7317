"""Generative models p(z) p_θ(x|z) and amortized guides q_φ(z|x) as Pyro functions.

The main interface is :class:`VAE`, the variational autoencoder of Kingma & Welling
(2014) written as in Pyro's ``examples/vae/vae.py``, and :class:`LinearGaussianVAE`,
probabilistic PCA (Tipping & Bishop 1999), whose log p(x) and posterior p(z|x) are
known in closed form and serve as the ground truth for every estimator. Both share
one ``model``/``guide`` body, :class:`BaseVAE`:

- ``model(x=None, num_data=None, subsample=None, batch_size=None, *, beta=1.0)``
  samples z ~ N(0, I) (site ``"z"``, event shape ``(z_dim,)``) and x ~ p_θ(x|z) (site
  ``"x"``, event shape ``(x_dim,)``), observed when x is given;
- ``guide(x, num_data=None, subsample=None, batch_size=None, *, beta=1.0)`` samples
  z ~ q_φ(z|x);

both inside ``pyro.plate("data", num_data, subsample=subsample)``: a minibatch's
log-density is scaled by ``num_data / batch`` and ``subsample`` holds the minibatch's
row indices in the data set (needed by per-data-point guides such as
``AutoNormal(vae.model, create_plates=vae.create_plates)``). ``beta`` weights the
site ``"z"`` in both, as Pyro's ``examples/dmm.py`` anneals its KL term, so that an
ELBO's KL(q ‖ p(z)) term is multiplied by β (:mod:`pyro_vae.train.schedules`). They work
unchanged with :class:`pyro.infer.SVI`, :class:`pyro.infer.Predictive`,
:mod:`pyro.poutine` and :class:`pyro.infer.MCMC`.

Parameters live in the module and are registered in Pyro's param store under a name
unique to the instance (``"VAE_3.decoder$$$fc_out.weight"``), so two models in one
process train independently with plain ``SVI``, without
``pyro.clear_param_store()``. This is the cheapest of Pyro's options measured here
(1.64× a hand-written torch step against 1.75× for ``PyroModule`` with
module-local parameters) and needs no global setting.

References
----------
1. D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
2. M. E. Tipping, C. M. Bishop, "Probabilistic Principal Component Analysis",
   J. R. Stat. Soc. B 61(3), 611–622, 1999.
3. G. Loaiza-Ganem, J. P. Cunningham, "The continuous Bernoulli: fixing a pervasive
   error in variational autoencoders", NeurIPS 2019.
4. I. Higgins et al., "β-VAE: Learning basic visual concepts with a constrained
   variational framework", ICLR 2017.
"""

import contextlib
import itertools
import math

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.util import is_validation_enabled
from torch import nn
from torch.distributions import Independent, Normal, kl_divergence
from torch.nn import functional as F

from .._checks import check_int, is_int
from ..train.schedules import check_beta

__all__ = ["LIKELIHOODS", "BaseVAE", "LinearGaussianVAE", "VAE"]

LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "gaussian")
_INSTANCE_IDS = itertools.count()


class BaseVAE(nn.Module):
    """The shared Pyro ``model`` and ``guide`` of a VAE with a N(0, I) prior.

    A subclass sets ``x_dim``, ``z_dim``, an ``encoder`` module mapping x of shape
    ``(batch, x_dim)`` to (z_loc, z_scale), each ``(batch, z_dim)``, a ``decoder``
    module holding the parameters of p_θ(x|z), and :meth:`likelihood_dist`.
    """

    def __init__(self, x_dim, z_dim):
        super().__init__()
        check_int("x_dim", x_dim)
        check_int("z_dim", z_dim)
        self.x_dim, self.z_dim = x_dim, z_dim
        self._pyro_name = f"{type(self).__name__}_{next(_INSTANCE_IDS)}"
        self._register = True

    def __setstate__(self, state):
        # A copy (copy.deepcopy, pickle) owns new tensors: give it a name of its own.
        super().__setstate__(state)
        self.__dict__.pop("_reference_cache", None)
        self._pyro_name = f"{type(self).__name__}_{next(_INSTANCE_IDS)}"
        self._register = True

    @property
    def pyro_name(self):
        """Prefix of this instance's names in Pyro's param store (str)."""
        return self._pyro_name

    def likelihood_dist(self, z):
        """p_θ(x|z) with batch shape ``z.shape[:-1]`` and event shape ``(x_dim,)``."""
        raise NotImplementedError

    def _reference(self):
        """A parameter of the decoder, whose dtype and device the model's tensors take.

        Cached (finding it walks the module tree: 20 µs, called twice per ELBO
        evaluation); the cache is dropped when the decoder is replaced, and by
        ``_apply`` (``.to``, ``.double``), which may swap the parameter objects.
        """
        decoder = self._modules["decoder"]
        cached = self.__dict__.get("_reference_cache")
        if cached is None or cached[0] is not decoder:
            cached = (decoder, next(decoder.parameters()))
            self.__dict__["_reference_cache"] = cached
        return cached[1]

    def _apply(self, fn, recurse=True):
        self.__dict__.pop("_reference_cache", None)
        return super()._apply(fn, recurse)

    def _check_x(self, x, ref=None):
        """x as a ``(batch, x_dim)`` tensor of the parameters' dtype and device."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(
                f"Expected x to be a torch.Tensor of shape (batch, {self.x_dim}) but got "
                f"{type(x).__name__}"
            )
        if x.dim() != 2 or x.shape[1] != self.x_dim:
            raise ValueError(
                f"Expected x of shape (batch, x_dim={self.x_dim}) but got {tuple(x.shape)}"
                + ("; use x.unsqueeze(0) for one data point" if x.dim() == 1 else "")
            )
        ref = self._reference() if ref is None else ref
        x = x.to(dtype=ref.dtype, device=ref.device)
        if is_validation_enabled() and self._needs_binary_data():
            if ((x != 0) & (x != 1)).any():
                raise ValueError(
                    "Expected binary x (0 or 1) for the Bernoulli likelihood: values "
                    "strictly between 0 and 1 give a cross-entropy, not a log-likelihood "
                    "(Loaiza-Ganem & Cunningham 2019). Binarize the data, or use "
                    "likelihood='continuous_bernoulli' or 'gaussian'"
                )
        return x

    def _needs_binary_data(self):
        return getattr(self, "likelihood", None) == "bernoulli"

    def create_plates(self, x=None, num_data=None, subsample=None, batch_size=None, *, beta=1.0):
        """The ``pyro.plate("data", num_data, subsample=subsample)`` of :meth:`model`.

        Takes the model's arguments (``beta`` is ignored). Pass it to an autoguide so
        that a per-data-point guide trained on minibatches updates the rows named by
        ``subsample``: ``AutoNormal(vae.model, create_plates=vae.create_plates)``
        (without it the autoguide draws its own random subsample indices).

        .. warning:: An autoguide does not weight its own ``"z"`` site by ``beta``:
           with ``beta`` ≠ 1 only the model's log p(z) is weighted, so
           ``Trace_ELBO`` estimates E_q log p(x|z) + β E_q log p(z) − E_q log q(z|x)
           and ``TraceMeanField_ELBO`` (which scales the analytic KL by the *guide*
           site's scale) ignores β. For the β-weighted KL term, call the autoguide
           inside ``poutine.scale(scale=beta)`` (``poutine.mask(mask=False)`` for
           β = 0) from a guide function of your own.

        Returns
        -------
        pyro.plate

        Raises
        ------
        ValueError
            As :meth:`model`.
        """
        ref = self._reference()
        if x is not None:
            x = self._check_x(x, ref)
        return self._plate(x, num_data, subsample, batch_size, ref)

    def _plate(self, x, num_data, subsample, batch_size, ref):
        """``pyro.plate("data")`` of size num_data over the given rows (``ref``: a
        parameter, for the device)."""
        if x is not None:
            batch = x.shape[0]
        elif subsample is not None:
            batch = len(subsample)
        elif batch_size is not None:
            if not is_int(batch_size) or batch_size < 1:
                raise ValueError(
                    f"Expected batch_size to be an integer >= 1 but got {batch_size!r}"
                )
            batch = batch_size
        else:
            batch = num_data if num_data is not None else 1
        if num_data is None:
            num_data = batch
        elif not is_int(num_data) or num_data < batch:
            raise ValueError(
                f"Expected num_data to be an integer >= the batch size {batch} but got {num_data!r}"
            )
        if subsample is None:
            subsample = torch.arange(batch, device=ref.device)
        else:
            if not isinstance(subsample, torch.Tensor) or subsample.shape != (batch,):
                raise ValueError(
                    f"Expected subsample to be a tensor of {batch} row indices (one per row "
                    f"of x) but got {subsample!r}"
                )
            if is_validation_enabled() and (subsample.min() < 0 or subsample.max() >= num_data):
                raise ValueError(
                    f"Expected subsample indices in [0, num_data={num_data}) but got values "
                    f"in [{int(subsample.min())}, {int(subsample.max())}]"
                )
        return pyro.plate("data", num_data, subsample=subsample, device=ref.device)

    def model(self, x=None, num_data=None, subsample=None, batch_size=None, *, beta=1.0):
        """Pyro model p(z) p_θ(x|z), vectorized over data points.

        Parameters
        ----------
        x : torch.Tensor or None
            Observed data of shape ``(batch, x_dim)``, cast to the parameters' dtype and
            device. ``None`` samples x from the model (prior predictive).
        num_data : int, optional
            Size N of the full data set: the log-density of the batch is scaled by
            N / batch. Default: the batch size (no scaling).
        subsample : torch.Tensor, optional
            Row indices of the batch in the data set, shape ``(batch,)`` (long); default
            ``arange(batch)``.
        batch_size : int, optional
            Number of points to sample when ``x`` and ``subsample`` are ``None``
            (default ``num_data``, else 1).
        beta : float, default 1.0
            Weight β ≥ 0 of the site ``"z"`` (keyword only): log p(z) is multiplied
            by β, on top of the minibatch scale. The guide must be called with the
            same β (every ELBO passes its arguments to both).

        Raises
        ------
        ValueError
            If x is not ``(batch, x_dim)``, ``num_data`` is not an integer ≥ the batch,
            ``subsample`` does not hold one index per row, ``beta`` is not a finite
            number ≥ 0, or (with Pyro's validation on) a Bernoulli likelihood is given
            non-binary x.

        Notes
        -----
        β is applied as Pyro's ``examples/dmm.py`` anneals its KL term: the site
        ``"z"`` of model *and* guide sits in ``poutine.scale(scale=beta)``
        (``poutine.mask(mask=False)`` for β = 0, since ``poutine.scale`` takes only
        β > 0; no handler for β = 1, so the trace is the unweighted one). With the
        sites' scales, per data point:

        - :class:`~pyro.infer.Trace_ELBO` estimates
          E_q log p(x|z) − β E_q[log q(z|x) − log p(z)], the β-VAE objective
          (Higgins et al. 2017), with the Monte-Carlo KL;
        - :class:`~pyro.infer.TraceMeanField_ELBO` computes the analytic
          KL(q ‖ p(z)) and multiplies it by the *guide* site's scale (β · N/B; the
          model site's scale is not read, pyro 1.9 ``trace_mean_field_elbo.py``), so
          the same objective with the exact KL;
        - :class:`pyro_vae.ScaledRenyiELBO` weights the site inside each log weight,
          log w = log p(x|z) + β (log p(z) − log q(z|x)), with N/B outside the
          log-sum-exp: a tempered-weight objective, a bound on log p(x) only for β = 1
          (see its docstring). Pyro's :class:`~pyro.infer.RenyiELBO` would multiply
          N/B into the same weights, so :func:`pyro_vae.fit` refuses it with β ≠ 1.

        ``beta`` is keyword-only and a Python number, never a tensor, so that
        :class:`~pyro.infer.JitTrace_ELBO` stays correct: Pyro's JIT hashes keyword
        arguments and traces one graph per distinct value, each with its β as a
        constant (a schedule of n distinct values compiles n times).
        """
        ref = self._reference()
        if x is not None:
            x = self._check_x(x, ref)
        weight = self._site_weight(beta)
        if self._register:
            pyro.module(f"{self._pyro_name}.decoder", self.decoder)
        with self._plate(x, num_data, subsample, batch_size, ref) as rows:
            z_loc = ref.new_zeros(len(rows), self.z_dim)
            z_scale = ref.new_ones(len(rows), self.z_dim)
            with weight:
                z = pyro.sample("z", dist.Normal(z_loc, z_scale).to_event(1))
            pyro.sample("x", self.likelihood_dist(z), obs=x)

    def guide(self, x, num_data=None, subsample=None, batch_size=None, *, beta=1.0):
        """Pyro guide q_φ(z|x) = N(μ_φ(x), diag σ_φ(x)²) for x of shape ``(batch, x_dim)``.

        Takes the model's arguments (``batch_size`` is ignored: the guide needs x);
        ``beta`` weights log q(z|x) as the model's ``beta`` weights log p(z).

        Raises
        ------
        ValueError
            As :meth:`model`, and if x is ``None``.
        """
        if x is None:
            raise ValueError(
                "Expected x for the amortized guide q(z|x) but got None; to sample new x "
                "use the model alone (prior predictive)"
            )
        ref = self._reference()
        x = self._check_x(x, ref)
        weight = self._site_weight(beta)
        if self._register:
            pyro.module(f"{self._pyro_name}.encoder", self.encoder)
        with self._plate(x, num_data, subsample, None, ref):
            q = self.encoder(x)
            if is_validation_enabled():
                self._check_guide_dist(q, x.shape[0])
            with weight:
                pyro.sample("z", q)

    @staticmethod
    def _site_weight(beta):
        """The handler that weights the site ``"z"`` by β (a context manager)."""
        beta = check_beta("beta", beta)
        if beta == 1:
            return contextlib.nullcontext()
        if beta == 0:  # poutine.scale takes only scale > 0
            return poutine.mask(mask=False)
        return poutine.scale(scale=beta)

    @contextlib.contextmanager
    def skip_param_store(self):
        """Model and guide skip ``pyro.module`` inside this context; restored on exit.

        For a loop that steps a torch optimizer on ``vae.parameters()`` itself (as
        :func:`pyro_vae.fit` and the Lightning module do, and Pyro's
        ``examples/svi_lightning.py``): the ELBO's ``differentiable_loss`` then
        differentiates the module's own parameters, and registering them in Pyro's
        param store on every call is overhead with no effect on the loss or its
        gradients (about 0.1 ms per call, a tenth of a training step at batch 128,
        measured with ``benchmarks/bench_speed.py``). ``SVI`` and
        ``pyro.infer.JitTrace_ELBO`` collect parameters from the param store: use
        them outside this context.

        Examples
        --------
        >>> optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
        >>> with vae.skip_param_store():
        ...     loss = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
        ...     loss.backward()
        ...     optimizer.step()
        """
        register = self._register
        self._register = False
        try:
            yield self
        finally:
            self._register = register

    @contextlib.contextmanager
    def frozen(self):
        """Hold every parameter fixed: no gradients, eval mode; restored on exit.

        ``pyro.module`` then registers nothing, so MCMC on ``vae.model`` conditioned on
        x samples p_θ(z|x) with θ fixed, and ``NUTS(..., jit_compile=True)`` works
        (it cannot trace tensors that require grad).

        Examples
        --------
        >>> with vae.frozen():
        ...     MCMC(NUTS(vae.model, jit_compile=True), 500, warmup_steps=500).run(x)
        """
        flags = [p.requires_grad for p in self.parameters()]
        training = self.training
        self.requires_grad_(False).eval()
        try:
            yield self
        finally:
            for p, flag in zip(self.parameters(), flags, strict=True):
                p.requires_grad_(flag)
            self.train(training)

    @torch.no_grad()
    def encode(self, x):
        """The guide q_φ(z|x) as a distribution: batch shape ``(batch,)``, event ``(z_dim,)``.

        What the encoder module returns (for :class:`VAE` by default a diagonal Normal,
        ``Normal(z_loc, z_scale).to_event(1)``); its ``mean``, ``sample``,
        ``log_prob`` and ``entropy`` are those of the guide.
        """
        x = self._check_x(x)
        q = self.encoder(x)
        self._check_guide_dist(q, x.shape[0])
        return q

    def _check_guide_dist(self, q, batch):
        """A ValueError unless the encoder's output q is a distribution over z per row."""
        expected = f"batch shape ({batch},) and event shape ({self.z_dim},)"
        if not isinstance(q, torch.distributions.Distribution):
            raise ValueError(
                f"Expected the encoder to return q(z|x) as a torch Distribution with "
                f"{expected} but got {type(q).__name__}"
            )
        if q.batch_shape != (batch,) or q.event_shape != (self.z_dim,):
            raise ValueError(
                f"Expected the encoder's q(z|x) to have {expected} but got batch shape "
                f"{tuple(q.batch_shape)} and event shape {tuple(q.event_shape)}; use "
                f".to_event(1) on a per-dimension distribution"
            )

    @torch.no_grad()
    def decode(self, z):
        """Mean of p_θ(x|z), shape ``(batch, x_dim)``."""
        return self.likelihood_dist(z).mean

    @torch.no_grad()
    def reconstruct(self, x):
        """Decoder mean at one draw z ~ q_φ(z|x); shape ``(batch, x_dim)``."""
        return self.decode(self.encode(x).sample())

    @torch.no_grad()
    def sample(self, n):
        """Decoder means at n draws z ~ p(z) (new data, not reconstructions); ``(n, x_dim)``."""
        check_int("n", n)
        ref = self._reference()
        return self.decode(torch.randn(n, self.z_dim, dtype=ref.dtype, device=ref.device))


class Encoder(nn.Module):
    """MLP mapping x of shape ``(batch, x_dim)`` to q_φ(z|x) = N(z_loc, diag z_scale²).

    Returns ``Normal(z_loc, z_scale).to_event(1)``: batch shape ``(batch,)``, event
    shape ``(z_dim,)``; z_scale = softplus(·) + 10⁻⁴.
    """

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
        z_loc, z_scale = self.fc_loc(h), F.softplus(self.fc_scale(h)) + 1e-4
        return dist.Normal(z_loc, z_scale).to_event(1)


class Decoder(nn.Module):
    """MLP mapping z of shape ``(..., z_dim)`` to the likelihood's parameter ``(..., x_dim)``.

    The output is the logits (Bernoulli, continuous Bernoulli) or the mean (Gaussian);
    ``x_log_scale``, the Gaussian's learned per-pixel log-scale, is ``None`` otherwise.
    """

    def __init__(self, x_dim, z_dim, hidden_dims, learn_scale=False):
        super().__init__()
        dims = (z_dim, *reversed(hidden_dims))
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False))
        self.fc_out = nn.Linear(dims[-1], x_dim)
        self.x_log_scale = nn.Parameter(torch.zeros(x_dim)) if learn_scale else None

    def forward(self, z):
        h = z
        for layer in self.hidden:
            h = F.softplus(layer(h))
        return self.fc_out(h)


class VAE(BaseVAE):
    r"""Variational autoencoder with a diagonal-Gaussian amortized guide.

    Generative model and guide, per data point:

    .. math::

        p(z) = \mathcal N(0, I), \quad
        p_\theta(x \mid z) = \prod_d \mathrm{Bernoulli}(x_d; \sigma(f_\theta(z)_d))
        \ \text{or}\ \mathcal{CB}(x_d; \sigma(f_\theta(z)_d))
        \ \text{or}\ \mathcal N(x_d; f_\theta(z)_d, s_d^2), \quad
        q_\phi(z \mid x) = \mathcal N(\mu_\phi(x), \mathrm{diag}\, \sigma_\phi(x)^2).

    Parameters
    ----------
    x_dim : int
        Data dimension D (64 for the 8×8 digits, 784 for MNIST).
    z_dim : int, default 8
        Latent dimension.
    hidden_dims : tuple of int, default (256,)
        Hidden layer widths of the encoder; the decoder mirrors them. Softplus units.
    likelihood : {"bernoulli", "continuous_bernoulli", "gaussian"}, default "bernoulli"
        ``"bernoulli"`` takes binary x: grey levels in (0, 1) would make its
        log-density a cross-entropy, not a log-likelihood, and are refused (with
        Pyro's validation on, as by default); ``"continuous_bernoulli"`` (Loaiza-Ganem
        & Cunningham 2019) is the normalized density for x in [0, 1];
        ``"gaussian"`` has a learned per-pixel scale and takes any real x.
    encoder : torch.nn.Module, optional
        The guide's network: ``encoder(x)`` for x of shape ``(batch, x_dim)`` returns
        q_φ(z|x) as a distribution with batch shape ``(batch,)`` and event shape
        ``(z_dim,)`` supporting ``rsample`` and ``log_prob`` (e.g.
        ``MultivariateNormal(loc, scale_tril=...)``). Default: an MLP with the widths
        ``hidden_dims`` returning ``Normal(z_loc, z_scale).to_event(1)``. Every
        estimator of the package reads the guide through this distribution.

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

    def __init__(self, x_dim, z_dim=8, hidden_dims=(256,), likelihood="bernoulli", encoder=None):
        super().__init__(x_dim, z_dim)
        if encoder is not None and not isinstance(encoder, nn.Module):
            raise ValueError(
                "Expected encoder to be None or a torch.nn.Module whose forward(x) returns "
                f"q(z|x) as a distribution but got {type(encoder).__name__}"
            )
        hidden_dims = tuple(hidden_dims)
        if not hidden_dims:
            raise ValueError("Expected hidden_dims to name at least one layer width")
        for width in hidden_dims:
            check_int("hidden_dims[i]", width)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"Expected likelihood in {LIKELIHOODS} but got {likelihood!r}")
        self.hidden_dims = hidden_dims
        self.likelihood = likelihood
        self.encoder = Encoder(x_dim, z_dim, hidden_dims) if encoder is None else encoder
        self.decoder = Decoder(x_dim, z_dim, hidden_dims, learn_scale=likelihood == "gaussian")

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

    @property
    def x_log_scale(self):
        """Learned per-pixel log-scale of the Gaussian likelihood, ``(x_dim,)`` (or None)."""
        return self.decoder.x_log_scale

    def likelihood_dist(self, z):
        """p_θ(x|z) with batch shape ``z.shape[:-1]`` and event shape ``(x_dim,)``."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            # Binary x is checked in model(); no per-step support check here.
            return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
        if self.likelihood == "continuous_bernoulli":
            return dist.ContinuousBernoulli(logits=out).to_event(1)
        return dist.Normal(out, self.decoder.x_log_scale.exp()).to_event(1)


class LinearDecoder(nn.Module):
    """Parameters of p(x|z) = N(Wz + b, σ²I): ``weight`` (x_dim, z_dim), ``bias``, σ."""

    def __init__(self, x_dim, z_dim, noise_scale):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(x_dim, z_dim) / math.sqrt(z_dim))
        self.bias = nn.Parameter(torch.zeros(x_dim))
        self.log_noise_scale = nn.Parameter(torch.tensor(math.log(noise_scale)))


class LinearEncoder(nn.Module):
    """q(z|x) = N(Ax + c, diag s²): ``loc`` (nn.Linear), ``log_scale`` (z_dim,)."""

    def __init__(self, x_dim, z_dim):
        super().__init__()
        self.loc = nn.Linear(x_dim, z_dim)
        self.log_scale = nn.Parameter(torch.zeros(z_dim))

    def forward(self, x):
        z_loc = self.loc(x)
        return dist.Normal(z_loc, self.log_scale.exp().expand(z_loc.shape)).to_event(1)


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

    Raises
    ------
    ValueError
        If a dimension is not a positive integer or ``noise_scale`` is not > 0.
    """

    def __init__(self, x_dim, z_dim, noise_scale=1.0):
        super().__init__(x_dim, z_dim)
        if not noise_scale > 0:
            raise ValueError(f"Expected noise_scale > 0 but got {noise_scale!r}")
        self.decoder = LinearDecoder(x_dim, z_dim, noise_scale)
        self.encoder = LinearEncoder(x_dim, z_dim)

    @property
    def config(self):
        """Constructor arguments, enough to rebuild the module (dict)."""
        return {"class": type(self).__name__, "x_dim": self.x_dim, "z_dim": self.z_dim}

    @property
    def weight(self):
        """W, shape ``(x_dim, z_dim)`` (the decoder's parameter)."""
        return self.decoder.weight

    @property
    def bias(self):
        """b, shape ``(x_dim,)``."""
        return self.decoder.bias

    @property
    def log_noise_scale(self):
        """log σ (scalar parameter)."""
        return self.decoder.log_noise_scale

    @property
    def noise_scale(self):
        """Observation noise σ (scalar tensor)."""
        return self.decoder.log_noise_scale.exp()

    @property
    def guide_loc(self):
        """The guide's mean Ax + c as an ``nn.Linear(x_dim, z_dim)``."""
        return self.encoder.loc

    @property
    def guide_log_scale(self):
        """The guide's log s, shape ``(z_dim,)``."""
        return self.encoder.log_scale

    def likelihood_dist(self, z):
        """p(x|z) = N(Wz + b, σ²I), batch shape ``z.shape[:-1]``, event ``(x_dim,)``."""
        loc = z @ self.weight.T + self.bias
        return dist.Normal(loc, self.noise_scale.expand(self.x_dim)).to_event(1)

    def _precision_factor(self):
        """M = WᵀW + σ²I and σ², for the posterior (Tipping & Bishop 1999, eq. 6)."""
        noise_var = self.noise_scale.square()
        eye = torch.eye(self.z_dim, dtype=self.weight.dtype, device=self.weight.device)
        return self.weight.T @ self.weight + noise_var * eye, noise_var

    @torch.no_grad()
    def exact_log_likelihood(self, x):
        """Closed-form log p(x) = log N(x; b, WWᵀ + σ²I), nats per point, shape ``(batch,)``."""
        x = self._check_x(x)
        cov_diag = self.noise_scale.square().expand(self.x_dim)
        marginal = dist.LowRankMultivariateNormal(self.bias, self.weight, cov_diag)
        return marginal.log_prob(x)

    @torch.no_grad()
    def exact_posterior(self, x):
        """Closed-form p(z|x) = N(M⁻¹Wᵀ(x − b), σ²M⁻¹), batch shape ``(batch,)``.

        Returns a :class:`pyro.distributions.MultivariateNormal` with event shape
        ``(z_dim,)`` (Tipping & Bishop 1999, eq. 6), on the parameters' dtype and device.
        """
        x = self._check_x(x)
        m, noise_var = self._precision_factor()
        m_inv = torch.linalg.inv(m)
        loc = (x - self.bias) @ (m_inv @ self.weight.T).T
        return dist.MultivariateNormal(loc, covariance_matrix=noise_var * m_inv)

    @torch.no_grad()
    def exact_posterior_kl(self, x):
        """Closed-form KL(q_φ(z|x) ‖ p(z|x)) in nats per point, shape ``(batch,)``.

        By the ELBO decomposition log p(x) = ELBO + KL(q ‖ p(z|x)), this is the gap.
        """
        q = self.encode(x)
        if isinstance(q, Independent) and isinstance(q.base_dist, Normal):
            q = dist.MultivariateNormal(q.base_dist.loc, scale_tril=torch.diag_embed(q.stddev))
        try:
            return kl_divergence(q, self.exact_posterior(x))
        except NotImplementedError:
            raise ValueError(
                "Expected a Gaussian guide (Normal(...).to_event(1) or MultivariateNormal) "
                f"for the closed-form KL but the encoder returns {type(q).__name__}"
            ) from None

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
        self.set_guide_to_posterior()
        return self

    @torch.no_grad()
    def set_guide_to_posterior(self):
        """Set q_φ(z|x) to N(M⁻¹Wᵀ(x − b), diag(σ² M⁻¹)): exact when WᵀW is diagonal."""
        m, noise_var = self._precision_factor()
        m_inv = torch.linalg.inv(m)
        proj = m_inv @ self.weight.T
        self.guide_loc.weight.copy_(proj)
        self.guide_loc.bias.copy_(-proj @ self.bias)
        self.guide_log_scale.copy_(0.5 * (noise_var * m_inv.diagonal()).log())
        return self
