"""The shared Pyro ``model`` and ``guide`` of the VAEs: :class:`BaseVAE`.

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
``pyro.clear_param_store()``: the cheapest of Pyro's options (``docs/guide/pyro.md``
compares it with ``PyroModule`` and module-local parameters), needing no global setting.
A model built with ``name="vae"`` registers as ``"vae.decoder$$$..."`` in every
process, so Pyro's own round trip works: ``pyro.get_param_store().save(path)``, then in
a new process ``VAE(..., name="vae")`` and ``pyro.get_param_store().load(path)``; the
model takes the stored values at its next ``model``/``guide`` call (``pyro.module(...,
update_module_params=True)``) or :func:`pyro_vae.fit`. Two live models with one name
share their parameters, as two ``pyro.param`` calls with one name do.

The module layout: :mod:`.base` (:class:`BaseVAE`, the shared ``model`` and
``guide``), :mod:`.guides` (the default amortized guides' networks), :mod:`.vae`
(:class:`VAE`) and :mod:`.linear_gaussian` (:class:`LinearGaussianVAE`).

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
import re
import warnings
import weakref

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.util import is_validation_enabled
from torch import nn

from .._checks import check_beta, check_int, is_int

__all__ = ["BaseVAE"]

_INSTANCE_IDS = itertools.count()

_NAMES_BUILT = set()
"""Every param-store prefix a model of this process was built with (names of dead
models too): a stored prefix outside it was loaded from elsewhere."""

_MODEL_KEY = re.compile(r"^(.+)\.(encoder|decoder)\$\$\$")


def _check_name(name):
    """``name`` as a param-store prefix, or a ValueError naming it."""
    if name is None:
        return None
    if not isinstance(name, str) or not name or "$$$" in name:
        raise ValueError(
            "Expected name to be None or a non-empty string without '$$$' (Pyro's "
            f"module/parameter divider) but got {name!r}"
        )
    return name


class BaseVAE(nn.Module):
    """The shared Pyro ``model`` and ``guide`` of a VAE with a N(0, I) prior.

    A subclass sets ``x_dim``, ``z_dim``, an ``encoder`` module whose ``forward(x)``
    for x of shape ``(batch, x_dim)`` returns q_φ(z|x) as a distribution with batch
    shape ``(batch,)`` and event shape ``(z_dim,)``, a ``decoder`` module holding the
    parameters of p_θ(x|z), and :meth:`likelihood_dist`. A subclass may override
    :meth:`guide` (a flow on top of the encoder, say): the estimators of
    :mod:`pyro_vae.infer` trace whatever ``guide`` samples, and those that need
    q(z|x) as one distribution refuse it (:meth:`require_encoder_guide`).
    """

    def __init__(self, x_dim, z_dim, name=None):
        super().__init__()
        check_int("x_dim", x_dim)
        check_int("z_dim", z_dim)
        self.x_dim, self.z_dim = x_dim, z_dim
        self._name = _check_name(name)
        self._set_pyro_name(self._name)

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_owned", None)  # weak references: rebuilt by __setstate__
        return state

    def __setstate__(self, state):
        # A copy (copy.deepcopy, pickle) owns new tensors: give it a name of its own,
        # or two models would share one set of parameters in Pyro's store.
        super().__setstate__(state)
        self._name = None
        self._set_pyro_name(None)

    def _set_pyro_name(self, name):
        self._pyro_name = name or f"{type(self).__name__}_{next(_INSTANCE_IDS)}"
        _NAMES_BUILT.add(self._pyro_name)
        self._register = True
        self._store_checked = False
        self._owned = weakref.WeakValueDictionary()  # id -> tensor this model registered

    @property
    def name(self):
        """The name given to the constructor (str or None: a per-instance name)."""
        return self._name

    @property
    def pyro_name(self):
        """Prefix of this instance's names in Pyro's param store (str).

        The constructor's ``name`` if given, else ``"<class>_<n>"``, unique in the process.
        """
        return self._pyro_name

    def _pyro_module(self, part):
        """Register the encoder's or decoder's parameters with ``pyro.param``, as
        ``pyro.module`` does, keeping module and param store one set of tensors.

        Per parameter: a name the store lacks gets the module's tensor; a stored tensor
        this model registered before, since replaced in the module (``.to("cuda")``,
        ``load_state_dict(..., assign=True)``), gives way to the module's; a stored
        tensor the model never had (``pyro.get_param_store().load``, another live model
        of the same name) replaces the module's, as ``pyro.module(...,
        update_module_params=True)`` would.
        """
        if not self._store_checked:
            self._warn_foreign_names()
        module = self._modules[part]
        prefix = f"{self._pyro_name}.{part}$$$"
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            key = prefix + name
            stored = pyro.param(key, param)  # the store's tensor, registered if new
            if stored is not param:
                if self._owned.get(id(stored)) is stored:  # ours, since replaced
                    pyro.get_param_store()[key] = param
                    pyro.param(key, param)  # the trace's param site: the module's tensor
                else:
                    param = self._take_stored(module, name, key, param, stored)
                    if param is not stored:  # converted to the module's dtype and device
                        pyro.param(key, param)
            if self._owned.get(id(param)) is not param:
                self._owned[id(param)] = param

    def _take_stored(self, module, name, key, param, stored):
        """Make the store's value under ``key`` the module's parameter ``name``."""
        if stored.shape != param.shape:
            raise ValueError(
                f"Expected Pyro's param store to hold {key!r} of shape "
                f"{tuple(param.shape)}, as this {type(self).__name__} has, but it holds "
                f"{tuple(stored.shape)}: the store was saved from another architecture; "
                "build the model as it was saved, or pyro.clear_param_store()"
            )
        new = stored
        if not isinstance(stored, nn.Parameter) or (stored.dtype, stored.device) != (
            param.dtype,
            param.device,
        ):
            new = nn.Parameter(stored.detach().to(param))
            pyro.get_param_store()[key] = new
        owner, _, leaf = name.rpartition(".")
        module.get_submodule(owner).register_parameter(leaf, new)
        return new

    def _warn_foreign_names(self):
        """Once per model: warn when Pyro's param store holds a VAE's parameters under a
        name no model of this process was built with (loaded: this model ignores them)."""
        prefixes = {m.group(1) for m in map(_MODEL_KEY.match, pyro.get_param_store().keys()) if m}
        foreign = sorted(prefixes - _NAMES_BUILT)
        if foreign:
            more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
            warnings.warn(
                f"Pyro's param store holds the parameters of a model named {foreign[0]!r}"
                f"{more}, which no model of this process was built with, and this "
                f"{type(self).__name__} registers as {self._pyro_name!r}, so it does not read "
                f"them: to restore them, build it as {type(self).__name__}(..., "
                f"name={foreign[0]!r}); or save and load with torch.save(vae.state_dict()) "
                "or pyro_vae.save_checkpoint",
                UserWarning,
                stacklevel=4,
            )
        self._store_checked = True

    def load_param_store(self):
        """Take the values Pyro's param store holds under this model's names, if any.

        What :meth:`model` and :meth:`guide` do at every call; for a loop that skips
        registration (:meth:`skip_param_store`, :func:`pyro_vae.fit`), which calls
        it once before training. A no-op when the store holds none of its names.

        Returns
        -------
        BaseVAE
            ``self``.

        Raises
        ------
        ValueError
            If the store holds one of this model's names with another shape.
        """
        store = pyro.get_param_store()
        prefix = f"{self._pyro_name}."
        if any(key.startswith(prefix) for key in store.keys()):
            for part in ("encoder", "decoder"):
                self._pyro_module(part)
        return self

    def likelihood_dist(self, z):
        """p_θ(x|z) with batch shape ``z.shape[:-1]`` and event shape ``(x_dim,)``."""
        raise NotImplementedError

    def _reference(self):
        """A parameter of the decoder, whose dtype and device the model's tensors take.

        Looked up on every call (a few microseconds): a cached one would go stale when
        ``load_state_dict(..., assign=True)`` or ``.to`` replaces the parameter objects.
        """
        return next(self.decoder.parameters())

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
        if is_validation_enabled():
            binary = self._needs_binary_data()
            bad = ((x != 0) & (x != 1)) if binary else ~torch.isfinite(x)
            if bad.any():
                finite = torch.isfinite(x)
                if not finite.all():
                    raise ValueError(
                        f"Expected x to hold finite values but it holds "
                        f"{int((~finite).sum())} NaN or inf value(s), the first in row "
                        f"{int((~finite).any(1).nonzero()[0])}"
                    )
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
            self._pyro_module("decoder")
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
            self._pyro_module("encoder")
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
        gradients (``benchmarks/bench_speed.py`` measures it). ``SVI`` and
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
        ``log_prob`` and ``entropy`` are those of the guide unless a subclass
        overrides :meth:`guide` (see :attr:`encoder_is_guide`).
        """
        x = self._check_x(x)
        q = self.encoder(x)
        self._check_guide_dist(q, x.shape[0])
        return q

    @property
    def encoder_is_guide(self):
        """Whether :meth:`guide` is BaseVAE's own, so that :meth:`encode` is q_φ(z|x) (bool).

        False for a subclass that overrides ``guide`` (e.g. a conditional flow on top of
        the encoder's draws): its q(z|x) is whatever that method samples.
        """
        return type(self).guide is BaseVAE.guide

    def require_encoder_guide(self, purpose):
        """Raise ``ValueError`` naming ``purpose`` unless :attr:`encoder_is_guide`.

        For the computations that need q(z|x) as one distribution (a grid's log q, a
        closed-form KL): they would silently read :meth:`encode`'s distribution, not
        the guide that was trained.
        """
        if not self.encoder_is_guide:
            raise ValueError(
                f"Expected a vae whose guide is BaseVAE's own (q(z|x) = encode(x)) for "
                f"{purpose}, but {type(self).__name__} overrides guide, whose q(z|x) is "
                "not encode()'s; estimate log p(x) and the gap with pyro_vae.evaluate, "
                "which traces the guide"
            )

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
