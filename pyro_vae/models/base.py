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
a new process ``VAE(..., name="vae")`` and ``pyro.get_param_store().load(path)``.

One rule holds for every door (:meth:`BaseVAE.load_param_store`): the model's
parameters are its own tensors; values the store holds under its names that are not
those tensors are copied into them in place before the model's next use (any run of
its networks, ``model``/``guide``, ``state_dict``, saving, pickling, ``frozen``), and an
explicit ``load_state_dict`` or :func:`pyro_vae.load_checkpoint` puts the model's
tensors back in the store, so the last load wins. Two live models with one name share
their values, as two ``pyro.param`` calls with one name do.

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
from .guides import check_guide_class

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


def _after_load_state_dict(module, incompatible_keys):
    """``load_state_dict`` post-hook of :class:`BaseVAE`: the loaded values win over the
    store's (a module-level function, so the model stays picklable)."""
    module._push_to_store()


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
        # an explicit load (this model's or a parent module's load_state_dict) wins over
        # what Pyro's store holds under this model's names
        self.register_load_state_dict_post_hook(_after_load_state_dict)

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if name in ("encoder", "decoder") and isinstance(value, nn.Module):
            # whatever runs the networks takes the store's values first
            value.register_forward_pre_hook(self._sync_on_use)

    def __getstate__(self):
        self.load_param_store()  # a copy holds the values the model computes with
        for param in self.parameters():
            # Pyro's store leaves a weak reference on each tensor it hands out (it
            # cannot be pickled); Pyro sets it again at the tensor's next use.
            param.__dict__.pop("unconstrained", None)
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
        self._register = True  # model and guide register the networks (pyro.module)
        self._sync_live = True  # every use reads the store (off inside skip/frozen)
        self._store_checked = False
        self._owned = weakref.WeakValueDictionary()  # id -> tensor this model put in the store

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

    def _store_keys(self, parts=("encoder", "decoder")):
        """(name in Pyro's param store, parameter) of the networks' parameters."""
        for part in parts:
            prefix = f"{self._pyro_name}.{part}$$$"
            for name, param in self._modules[part].named_parameters():
                yield prefix + name, param

    def _pyro_module(self, part):
        """Register the encoder's or decoder's parameters with ``pyro.param``, as
        ``pyro.module`` does, after :meth:`load_param_store`: the trace's param sites and
        the store then hold the module's own tensors (those that require grad)."""
        if self._sync_live:
            self.load_param_store()
        for key, param in self._store_keys((part,)):
            if param.requires_grad:
                pyro.param(key, param)
                self._owned[id(param)] = param

    def _sync_on_use(self, *_):
        """Forward pre-hook of the encoder and decoder: :meth:`load_param_store`, except
        inside :meth:`skip_param_store` and :meth:`frozen` (which read it on entry)."""
        if self._sync_live:
            self.load_param_store()

    def load_param_store(self):
        """Copy into the model's own tensors the values Pyro's param store holds under its names.

        The one rule of saving and loading: the model's parameters are its own tensors,
        and Pyro's param store is kept in step with them. A value the store holds under
        one of this model's names that is not the model's own tensor (put there by
        ``pyro.get_param_store().load`` or ``set_state``, or by a live model of the same
        name) is copied *in place* into the model's tensor, which then takes its place in
        the store; so a torch optimizer made earlier and every reference stay valid. An
        explicit load (``load_state_dict``, :func:`pyro_vae.load_checkpoint`) puts the
        model's tensors back in the store, so whichever load came last wins.

        Called before every use: when the encoder or decoder runs (a forward pre-hook),
        by :meth:`model` and :meth:`guide`, ``state_dict()`` (so
        :func:`pyro_vae.save_checkpoint`), pickling and copying, and on entering
        :meth:`frozen` and :meth:`skip_param_store`. Call it yourself only before reading
        a parameter tensor directly (``vae.decoder.fc_out.weight``) after a store load.
        A no-op when the store holds none of its names (a few microseconds).

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
        stored_params = dict(store.named_parameters())
        if not stored_params:
            return self
        if not self._store_checked:
            self._warn_foreign_names(stored_params)
        for key, param in self._store_keys():
            stored = stored_params.get(key)
            if stored is None or stored is param:
                continue
            if self._owned.get(id(stored)) is not stored:  # a value from outside the model
                self._copy_stored(key, param, stored)
            self._put_in_store(store, key, param)  # else ours, since replaced in the module
        return self

    def _copy_stored(self, key, param, stored):
        """Copy the store's value under ``key`` into the module's tensor ``param``, in place."""
        if stored.shape != param.shape:
            raise ValueError(
                f"Expected Pyro's param store to hold {key!r} of shape "
                f"{tuple(param.shape)}, as this {type(self).__name__} has, but it holds "
                f"{tuple(stored.shape)}: the store was saved from another architecture; "
                "build the model as it was saved, or pyro.clear_param_store()"
            )
        with torch.no_grad():
            param.copy_(stored)  # to the module's dtype and device

    def _put_in_store(self, store, key, param):
        """Make the module's tensor ``param`` the store's value under ``key``."""
        requires_grad = param.requires_grad
        del store[key]  # also forgets the replaced tensor's name
        store[key] = param  # Pyro's setter turns requires_grad on: put back below
        param.requires_grad_(requires_grad)
        self._owned[id(param)] = param

    def _push_to_store(self):
        """After an explicit load: the module's tensors replace, in the store, whatever
        it holds under this model's names (names it lacks stay unregistered)."""
        store = pyro.get_param_store()
        stored_params = dict(store.named_parameters())
        for key, param in self._store_keys():
            stored = stored_params.get(key)
            if stored is not None and stored is not param:
                self._put_in_store(store, key, param)

    def _warn_foreign_names(self, stored_params):
        """Once per model, when the store first holds anything: warn when it holds no
        parameter of this model but a VAE's parameters under a name no model of this
        process was built with (loaded from elsewhere: this model does not read them)."""
        self._store_checked = True
        prefixes = {m.group(1) for m in map(_MODEL_KEY.match, stored_params) if m}
        foreign = sorted(prefixes - _NAMES_BUILT)
        if not foreign or self._pyro_name in prefixes:
            return
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        warnings.warn(
            f"Pyro's param store holds the parameters of a model named {foreign[0]!r}"
            f"{more}, which no model of this process was built with, and none under this "
            f"{type(self).__name__}'s name {self._pyro_name!r}, so it does not read them: to "
            f"restore them, build it as {type(self).__name__}(..., name={foreign[0]!r}); or "
            "save and load with pyro_vae.save_checkpoint / load_checkpoint",
            UserWarning,
            stacklevel=5,
        )

    def state_dict(self, *args, **kwargs):
        """:meth:`torch.nn.Module.state_dict` after :meth:`load_param_store`."""
        self.load_param_store()
        return super().state_dict(*args, **kwargs)

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
        them outside this context. The store's values are read once, on entry
        (:meth:`load_param_store`).

        Examples
        --------
        >>> optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
        >>> with vae.skip_param_store():
        ...     loss = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
        ...     loss.backward()
        ...     optimizer.step()
        """
        self.load_param_store()
        register, live = self._register, self._sync_live
        self._register = self._sync_live = False
        try:
            yield self
        finally:
            self._register, self._sync_live = register, live

    @contextlib.contextmanager
    def frozen(self):
        """Hold every parameter fixed: no gradients, eval mode; restored on exit.

        ``pyro.module`` then registers nothing, so MCMC on ``vae.model`` conditioned on
        x samples p_θ(z|x) with θ fixed, and ``NUTS(..., jit_compile=True)`` works
        (it cannot trace tensors that require grad). The store's values are read once,
        on entry (:meth:`load_param_store`): NUTS samples the model as restored.

        Examples
        --------
        >>> with vae.frozen():
        ...     MCMC(NUTS(vae.model, jit_compile=True), 500, warmup_steps=500).run(x)
        """
        self.load_param_store()
        flags = [p.requires_grad for p in self.parameters()]
        training, live = self.training, self._sync_live
        self.requires_grad_(False).eval()
        self._sync_live = False  # θ is fixed: read the store once, on entry
        try:
            yield self
        finally:
            for p, flag in zip(self.parameters(), flags, strict=True):
                p.requires_grad_(flag)
            self.train(training)
            self._sync_live = live

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
        check_guide_class(q)
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
