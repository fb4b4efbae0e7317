"""Many runs in one pass: R models of one architecture and objective trained as one stack.

Researchers train every comparison over several seeds. Trained one after another, R runs
pay Pyro's tracing and the small matrices' overhead R times. :func:`fit_runs` trains them
as one set of stacked parameters (leading dimension R): :class:`StackedVAE` evaluates
the R encoders and decoders at once with batched matrix products, and its ``model`` and
``guide`` are still Pyro functions, the data plate inside an outer
``pyro.plate("runs", R)``, differentiated by the same ELBO classes as one run
(:func:`pyro_vae.infer.objectives.make_elbo`).

Each run stays the computation it is alone:

- its own initialization (the module it was built as), its own minibatch order and
  binarization draws (a generator seeded with its seed, as :func:`pyro_vae.fit`), and its
  own draws of z: the guide's ``"z"`` draws each run's standard-normal noise from a
  generator seeded with that run's seed, the numbers a single run draws from the global
  RNG after ``pyro.set_rng_seed(seed)`` (:class:`RunwiseNormal`);
- its own Adam state: Adam is elementwise, so one Adam on the stacked parameters is R
  Adams;
- its own loss (the ELBO's value read run by run, :func:`runwise_elbo`), validation
  curve, early stopping, best epoch and β schedule (:class:`~pyro_vae.train.training.Trainer`,
  one per run, on the run's own module, which holds the run's parameters after every
  epoch);
- and it ends as an ordinary single model: the modules given are trained in place, so
  checkpoints, evaluation and every estimator take them unchanged.

A stack of one is the single run bit for bit (``tests/test_stack.py``): the batched
linear layer takes its gradients with the same matrix products as ``torch.nn.Linear``
(:class:`_BatchedLinear`). In a stack of R > 1 the matrix products are batched and may
round differently in the last bits, so each run's losses agree with its single run to
float rounding over the first epochs, and drift apart as any two floating-point
trajectories of a chaotic optimization do.
"""

import math
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.kl import kl_divergence
from pyro.distributions.util import scale_and_mask
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .._device import check_device, on_device
from .._threads import torch_threads
from ..data import Dataset
from ..infer.objectives import _LogWeightELBO, make_elbo
from ..models.guides import ACTIVATIONS, Encoder
from ..models.vae import VAE, Decoder, likelihood_of
from .config import DEFAULT_LR, TrainConfig, with_overrides
from .schedules import burda2016_lr_factor, check_beta
from .state import FitResult
from .training import Trainer, training_data

__all__ = ["RunwiseNormal", "StackedVAE", "check_stackable", "fit_runs", "runwise_elbo"]


class _BatchedLinear(torch.autograd.Function):
    """y = x Wᵀ + b for R stacked layers: x ``(R, N, in)``, W ``(R, out, in)``, b ``(R, out)``.

    The backward pass takes the products ``torch.nn.functional.linear`` takes for one
    layer (∂W = gᵀx, ∂x = gW, ∂b = Σ g), batched, so a stack of one has the single
    layer's gradients bit for bit (``torch.baddbmm``'s own backward computes ∂W as
    (xᵀg)ᵀ, which rounds differently).
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_weight = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(1) if ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias


class RunwiseNormal(dist.Normal):
    """A Normal whose draws come run by run, each run's from its own generator.

    ``loc`` and ``scale`` have the runs at dim ``run_dim`` (default -3: ``(R, B,
    z_dim)`` under ``.to_event(1)``, or ``(K, R, B, z_dim)`` with K vectorized
    particles). :meth:`rsample` draws the standard-normal noise of run r, of the shape
    a single run draws, from ``generators[r]`` (``torch.empty(shape).normal_()``, as
    ``torch.distributions.Normal`` does from the global generator), then returns
    loc + ε · scale. Everything else (``log_prob``, KL, entropy) is the Normal's.
    """

    def __init__(self, loc, scale, generators, run_dim=-3, validate_args=None):
        super().__init__(loc, scale, validate_args=validate_args)
        self.generators, self.run_dim = list(generators), run_dim

    def expand(self, batch_shape, _instance=None):
        """The Normal expanded to ``batch_shape`` (as Pyro's plates expand a site's
        distribution), drawing from the same generators."""
        new = self._get_checked_instance(RunwiseNormal, _instance)
        new = super().expand(batch_shape, _instance=new)
        new.generators, new.run_dim = self.generators, self.run_dim
        return new

    def rsample(self, sample_shape=()):
        """loc + ε · scale, run r's ε from ``generators[r]``; shape ``sample_shape +
        batch_shape``.

        Raises
        ------
        ValueError
            If the draws do not have one run per generator at ``run_dim``.
        """
        shape = self._extended_shape(torch.Size(sample_shape))
        run = len(shape) + self.run_dim
        if shape[run] != len(self.generators):
            raise ValueError(
                f"Expected {len(self.generators)} runs at dim {self.run_dim} of the draws "
                f"but got shape {tuple(shape)}"
            )
        one = shape[:run] + shape[run + 1 :]
        eps = torch.stack(
            [
                torch.empty(one, dtype=self.loc.dtype, device=self.loc.device).normal_(generator=g)
                for g in self.generators
            ],
            dim=run,
        )
        return self.loc + eps * self.scale


def check_stackable(vaes) -> None:
    """Raise ``ValueError`` unless ``vaes`` can train as one stack.

    A stack takes :class:`pyro_vae.VAE` modules of one configuration (dimensions, widths,
    likelihood, activation) with the default diagonal encoder
    (:class:`~pyro_vae.models.guides.Encoder`) and decoder, on one device and dtype,
    none of them a subclass overriding ``model`` or ``guide``.

    Raises
    ------
    ValueError
        One line naming what differs or what a stack does not take.
    """
    vaes = list(vaes)
    if not vaes:
        raise ValueError("Expected at least one VAE to stack but got none")
    for i, vae in enumerate(vaes):
        if type(vae) is not VAE or type(vae.encoder) is not Encoder:
            what = type(vae).__name__ if type(vae) is not VAE else type(vae.encoder).__name__
            raise ValueError(
                f"Expected pyro_vae.VAE modules with the diagonal encoder to stack but run "
                f"{i} is a {what} (flow guides, custom encoders and other models train one "
                "run at a time: pyro_vae.fit)"
            )
        if type(vae.decoder) is not Decoder:
            raise ValueError(f"Expected run {i} to have pyro_vae's MLP decoder to stack")
    first = vaes[0]
    ref = next(first.parameters())
    for i, vae in enumerate(vaes[1:], start=1):
        if vae.config | {"name": None} != first.config | {"name": None}:
            raise ValueError(
                f"Expected every run to have one architecture to stack but run {i} is "
                f"{vae.config} and run 0 {first.config}"
            )
        p = next(vae.parameters())
        if (p.dtype, p.device) != (ref.dtype, ref.device):
            raise ValueError(
                f"Expected every run on one device and dtype to stack but run {i} is "
                f"{p.dtype} on {p.device} and run 0 {ref.dtype} on {ref.device}"
            )


class StackedVAE(nn.Module):
    """R :class:`pyro_vae.VAE` modules of one architecture as one module with stacked parameters.

    Every parameter of the R modules becomes one parameter with a leading dimension R
    (``encoder.hidden.0.weight`` of shape ``(R, 256, 64)``, stored under the name with
    dots written as ``"__"``); the networks run for all runs at once with batched matrix
    products (:class:`_BatchedLinear`). :meth:`model` and :meth:`guide` are Pyro
    functions of x with shape ``(R, B, x_dim)`` (run r's minibatch in row r): the
    single model's sites ``"z"`` and ``"x"`` inside ``pyro.plate("data", num_data)`` at
    dim -1, itself inside ``pyro.plate("runs", R)`` at dim -2, so an ELBO with
    ``max_plate_nesting=2`` (:func:`runwise_elbo`) sums R independent bounds and each
    run's parameters get their own gradient.

    Parameters
    ----------
    vaes : sequence of pyro_vae.VAE
        The runs (:func:`check_stackable`); their current parameters are copied.

    Raises
    ------
    ValueError
        As :func:`check_stackable`.
    """

    def __init__(self, vaes):
        super().__init__()
        check_stackable(vaes)
        first = vaes[0]
        self.num_runs, self.x_dim, self.z_dim = len(vaes), first.x_dim, first.z_dim
        self.likelihood = first.likelihood
        self.activation = ACTIVATIONS[first.decoder.activation]
        self.names = [name for name, _ in first.named_parameters()]
        self.stacked = nn.ParameterDict(
            {
                name.replace(".", "__"): nn.Parameter(
                    torch.stack([vae.get_parameter(name).detach() for vae in vaes]).clone()
                )
                for name in self.names
            }
        )
        self.num_hidden = len(first.encoder.hidden)
        self.generators = None  # the runs' generators of z draws (fit_runs sets them)

    def _param(self, name):
        return self.stacked[name.replace(".", "__")]

    def _linear(self, h, prefix):
        """Layer ``prefix`` (e.g. ``"encoder.fc_loc"``) of every run on h ``(R, N, in)``."""
        weight, bias = self._param(prefix + ".weight"), self._param(prefix + ".bias")
        return _BatchedLinear.apply(h, weight, bias)

    @torch.no_grad()
    def unstack_into(self, vaes, runs=None):
        """Copy run r's parameters into ``vaes[r]`` (for r in ``runs``, default all)."""
        for r in range(self.num_runs) if runs is None else runs:
            for name in self.names:
                vaes[r].get_parameter(name).copy_(self._param(name)[r])

    def encode(self, x):
        """The R guides' ``(loc, scale)``, each ``(R, B, z_dim)``, for x ``(R, B, x_dim)``."""
        h = x
        for i in range(self.num_hidden):
            h = self.activation(self._linear(h, f"encoder.hidden.{i}"))
        loc = self._linear(h, "encoder.fc_loc")
        scale = F.softplus(self._linear(h, "encoder.fc_scale")) + 1e-4
        return loc, scale

    def decode(self, z):
        """The R decoders' outputs ``(..., R, B, x_dim)`` for z ``(..., R, B, z_dim)``."""
        lead = z.shape[:-3]
        h = z.movedim(-3, 0).reshape(self.num_runs, -1, self.z_dim)
        for i in range(self.num_hidden):
            h = self.activation(self._linear(h, f"decoder.hidden.{i}"))
        out = self._linear(h, "decoder.fc_out")
        out = out.reshape(self.num_runs, *lead, z.shape[-2], self.x_dim)
        return out.movedim(0, -3)

    def likelihood_dist(self, z):
        """p_θ(x|z) of every run: batch shape ``z.shape[:-1]``, event ``(x_dim,)``."""
        log_scale = None
        if self.likelihood == "gaussian":
            log_scale = self._param("decoder.x_log_scale").unsqueeze(-2)  # (R, 1, x_dim)
        return likelihood_of(self.likelihood, self.decode(z), log_scale)

    def _plates(self, batch, num_data, device):
        """``pyro.plate("runs")`` at dim -2 and ``pyro.plate("data")`` at dim -1."""
        subsample = torch.arange(batch, device=device)  # the rows are in x already
        return (
            pyro.plate("runs", self.num_runs, dim=-2),
            pyro.plate("data", num_data or batch, subsample=subsample, dim=-1),
        )

    @staticmethod
    def _weight(beta):
        return VAE._site_weight(beta)

    def model(self, x, num_data=None, *, beta=1.0):
        """Pyro model p(z) p_θ(x|z) of every run, x of shape ``(R, B, x_dim)``.

        ``num_data`` is N of each run's data set (the minibatch is scaled by N/B);
        ``beta`` weights the site ``"z"`` as :meth:`pyro_vae.BaseVAE.model` does.
        """
        runs, data = self._plates(x.shape[1], num_data, x.device)
        with runs, data:
            zeros = x.new_zeros(self.num_runs, x.shape[1], self.z_dim)
            with self._weight(beta):
                z = pyro.sample("z", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))
            pyro.sample("x", self.likelihood_dist(z), obs=x)

    def guide(self, x, num_data=None, *, beta=1.0):
        """Pyro guide q_φ(z|x) of every run, x of shape ``(R, B, x_dim)``; each run's
        draws from its own generator (:class:`RunwiseNormal`)."""
        runs, data = self._plates(x.shape[1], num_data, x.device)
        with runs, data:
            loc, scale = self.encode(x)
            if self.generators is None:
                q = dist.Normal(loc, scale)
            else:
                q = RunwiseNormal(loc, scale, self.generators)
            with self._weight(beta):
                pyro.sample("z", q.to_event(1))


# ------------------------------------------------------------------ per-run losses


def _run_sum(value, num_runs):
    """``value`` (batch shape ``(..., R, B)``) summed over all but the runs, ``(R,)``.

    A stack of one sums everything in one reduction, as ``log_prob_sum`` does, so its
    value is the single run's bit for bit.
    """
    if not torch.is_tensor(value) or value.dim() < 2:
        value = torch.as_tensor(value)
        return value.sum().expand(num_runs) / num_runs
    if num_runs == 1:
        return value.sum().reshape(1)
    dims = [d for d in range(value.dim()) if d != value.dim() - 2]
    return value.sum(dims)


class _Runwise:
    """Mixin of :func:`runwise_elbo`: the loss of every run, ``per_run`` ``(R,)``, nats."""

    num_runs = 1

    def differentiable_loss(self, model, guide, *args, **kwargs):
        self._particles = []
        loss = super().differentiable_loss(model, guide, *args, **kwargs)
        self.per_run = self._per_run(loss.dtype)
        return loss


class _RunwiseLogWeight(_Runwise):
    """For the bounds of :class:`pyro_vae.infer.objectives._LogWeightELBO`."""

    def _total(self, per_point, plate_scale):
        self._particles.append(-(plate_scale * _run_sum(per_point.detach(), self.num_runs)))
        return super()._total(per_point, plate_scale)

    def _per_run(self, dtype):
        return self._particles[-1].to(dtype)


class _RunwiseTrace(_Runwise):
    """For :class:`pyro.infer.Trace_ELBO`: its value, Σ log p − Σ log q per particle
    accumulated in float64 as Pyro accumulates ``torch_item``s."""

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        out = super()._differentiable_loss_particle(model_trace, guide_trace)
        elbo = 0
        for role, trace in ((1, model_trace), (-1, guide_trace)):
            for site in trace.nodes.values():
                if site["type"] == "sample":
                    run = _run_sum(site["log_prob"].detach(), self.num_runs).double()
                    elbo = elbo + run if role == 1 else elbo - run
        self._particles.append(-elbo)
        return out

    def _per_run(self, dtype):
        loss = 0.0
        for value in self._particles:
            loss = loss + value / self.num_particles
        return loss.to(dtype)


class _RunwiseMeanField(_Runwise):
    """For :class:`pyro.infer.TraceMeanField_ELBO`: its value with the analytic KL, as
    pyro 1.9's ``trace_mean_field_elbo.py`` accumulates it."""

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        out = super()._differentiable_loss_particle(model_trace, guide_trace)
        elbo, runs = 0, self.num_runs
        with torch.no_grad():
            for name, model_site in model_trace.nodes.items():
                if model_site["type"] != "sample":
                    continue
                if model_site["is_observed"]:
                    elbo = elbo + _run_sum(model_site["log_prob"], runs)
                    continue
                guide_site = guide_trace.nodes[name]
                try:
                    kl = kl_divergence(guide_site["fn"], model_site["fn"])
                    kl = scale_and_mask(kl, scale=guide_site["scale"], mask=guide_site["mask"])
                    elbo = elbo - _run_sum(kl, runs)
                except NotImplementedError:
                    entropy = guide_site["score_parts"].entropy_term
                    elbo = elbo + _run_sum(model_site["log_prob"], runs) - _run_sum(entropy, runs)
            for name, guide_site in guide_trace.nodes.items():
                if guide_site["type"] == "sample" and name not in model_trace.nodes:
                    elbo = elbo - _run_sum(guide_site["score_parts"].entropy_term, runs)
        self._particles.append(-elbo)
        return out

    def _per_run(self, dtype):
        loss = 0.0
        for value in self._particles:
            loss = loss + value.double() / self.num_particles
        return loss.to(dtype)


_RUNWISE = {}


def runwise_elbo(loss="trace", alpha=0.0, num_particles=1, num_runs=1):
    """The ELBO of :func:`pyro_vae.infer.objectives.make_elbo` for a stack of ``num_runs`` runs.

    The same class and computation, with the particles one plate further out
    (``max_plate_nesting`` 2: the runs' plate at dim -2, the data's at -1), and after
    each ``differentiable_loss`` the attribute ``per_run``: the loss of every run,
    shape ``(num_runs,)``, nats (the negative bound, scaled by N/B as the single run's
    loss; the loss returned is their sum, whose gradient in run r's parameters is run
    r's own).

    Raises
    ------
    ValueError
        As :func:`~pyro_vae.infer.objectives.make_elbo`, and for ``loss="pyro_renyi"``:
        Pyro's RenyiELBO sums the log weights of every plate, runs included.
    """
    if loss == "pyro_renyi":
        raise ValueError(
            "Expected a loss whose bound is a sum over the runs' plate to stack but got "
            "loss='pyro_renyi' (Pyro's RenyiELBO joins every plate in one weight); use "
            "loss='renyi' or train the runs one at a time"
        )
    elbo = make_elbo(loss, alpha, num_particles)
    base = type(elbo)
    if base not in _RUNWISE:
        if issubclass(base, _LogWeightELBO):
            mixin = _RunwiseLogWeight
        elif issubclass(base, TraceMeanField_ELBO):
            mixin = _RunwiseMeanField
        elif issubclass(base, Trace_ELBO):
            mixin = _RunwiseTrace
        else:  # pragma: no cover - make_elbo returns one of the above
            raise ValueError(f"Expected an ELBO that a stack can read run by run but got {base}")
        _RUNWISE[base] = type(f"Runwise{base.__name__}", (mixin, base), {})
    runwise = object.__new__(_RUNWISE[base])
    runwise.__dict__.update(elbo.__dict__)
    runwise.max_plate_nesting += 1
    runwise.num_runs = num_runs
    return runwise


# ------------------------------------------------------------------ training


class _StackTrainer:
    """The epochs of R runs as one stack; a :class:`Trainer` per run for the rest."""

    def __init__(self, vaes, trainers, config, device):
        self.vaes, self.trainers, self.config = vaes, trainers, config
        self.stack = StackedVAE(vaes)
        first = trainers[0].config
        self.elbo = runwise_elbo(first["loss"], first["alpha"], first["num_particles"], len(vaes))
        self.optimizer = torch.optim.Adam(
            self.stack.parameters(), lr=first["lr"], eps=first.get("adam_eps", 1e-8)
        )
        # z draws: each run's stream after pyro.set_rng_seed(seed), as a single run
        self.stack.generators = [
            torch.Generator(device=device).manual_seed(t.config["seed"]) for t in trainers
        ]
        self.active = list(range(len(vaes)))

    def train_epoch(self, epoch):
        """One epoch of every run; returns their records (one dict per run)."""
        first = self.trainers[0]
        beta = check_beta(f"beta (the schedule's value at epoch {epoch})", first.schedule(epoch))
        if first.config.get("lr_schedule") == "burda2016":
            for group in self.optimizer.param_groups:
                group["lr"] = first.config["lr"] * burda2016_lr_factor(epoch)
        ref = next(self.stack.parameters())
        xs, orders = [], []
        for trainer in self.trainers:
            train = trainer.train
            if isinstance(train, Dataset):
                x = train.train_epoch(trainer.generator).to(dtype=ref.dtype, device=ref.device)
            else:
                x = train
            xs.append(x)
            orders.append(torch.randperm(x.shape[0], generator=trainer.generator).to(x.device))
        num_data, batch_size = xs[0].shape[0], first.config["batch_size"]
        each_step = first.check_each_step
        if each_step is None:
            each_step = ref.device.type == "cpu"
        losses, sizes = [], []
        splits = zip(*(order.split(batch_size) for order in orders), strict=True)
        for step, rows in enumerate(splits, start=1):
            xb = torch.stack([x[r] for x, r in zip(xs, rows, strict=True)])
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.elbo.differentiable_loss(
                self.stack.model, self.stack.guide, xb, num_data, beta=beta
            )
            loss.backward()
            per_run = self.elbo.per_run
            if each_step:
                per_run = per_run.tolist()
                self._check_finite([per_run], epoch, step)
            self.optimizer.step()
            losses.append(per_run)
            sizes.append(len(rows[0]))
        if not each_step:
            losses = torch.stack(losses).tolist()
            self._check_finite(losses, epoch, 1, late=True)
        records = []
        for r in range(len(self.trainers)):
            total = sum(v[r] * n / num_data for v, n in zip(losses, sizes, strict=True))
            records.append({"epoch": epoch, "beta": beta, "train_loss": total / num_data})
        self.stack.unstack_into(self.vaes, self.active)
        return records

    def _check_finite(self, losses, epoch, first_step, late=False):
        for step, values in enumerate(losses, start=first_step):
            for r in self.active:
                if not math.isfinite(values[r]):
                    trainer = self.trainers[r]
                    when = " (checked at the end of the epoch)" if late else ""
                    raise FloatingPointError(
                        f"Non-finite loss {values[r]} in the run of seed "
                        f"{trainer.config['seed']} at epoch {epoch}, step {step}{when}: lower "
                        f"the learning rate (lr={trainer.config['lr']:g})"
                    )


def fit_runs(
    vaes,
    data,
    config: TrainConfig | None = None,
    *,
    seeds,
    validation=None,
    gap_runs=None,
    **overrides,
):
    """Train R runs of one architecture and objective as one stack (the runs of R seeds).

    Run r is what ``fit(vaes[r], data, config, seed=seeds[r])`` computes (module
    docstring): its initialization is ``vaes[r]``'s parameters, its minibatches, its
    binarization draws and its draws of z come from its seed, it has its own Adam
    state, validation curve, best epoch and early stopping; the stack trains until every
    run has stopped or ``epochs`` is reached. The modules are trained in place and end
    as :func:`pyro_vae.fit` leaves its module (the best epoch's parameters with
    ``restore_best``). Afterwards the global RNGs are as the last run's
    :func:`pyro_vae.fit` would leave them (Python's and NumPy's seeded with
    ``seeds[-1]``, torch's where that run's draws ended).

    Parameters
    ----------
    vaes : sequence of pyro_vae.VAE
        R ≥ 1 modules of one architecture with the diagonal encoder
        (:func:`check_stackable`), each initialized as its run starts (for runs
        reproducible from their seeds: ``torch.manual_seed(seed); VAE(...)``).
    data : Dataset or torch.Tensor
        As :func:`pyro_vae.fit`; every run trains on the same data.
    config : TrainConfig, optional
        As :func:`pyro_vae.fit`; its ``seed`` is replaced by each run's.
    seeds : sequence of int
        One training seed per module (distinct integers).
    validation : torch.Tensor or False, optional
        As :func:`pyro_vae.fit`.
    gap_runs : sequence of int, optional
        With ``gap_every``, the indices of the runs that track the gap (default: every
        run); the others train without it (the main job reads the first seed's only).
    **overrides
        Settings of ``config`` to change, as :func:`pyro_vae.fit`.

    Returns
    -------
    list of FitResult
        One per run, in the order of ``vaes``; ``train_time`` and ``cpu_time`` are the
        whole stack's (the runs trained together), ``num_runs`` is R.

    Raises
    ------
    ValueError
        As :func:`pyro_vae.fit`; as :func:`check_stackable`; if ``seeds`` is not a
        sequence of distinct integers, one per module; for ``loss="pyro_renyi"``
        (:func:`runwise_elbo`).
    FloatingPointError
        If a run's loss is NaN or inf; the message names its seed, epoch and step.
    """
    vaes = list(vaes)
    given = seeds
    seeds = list(seeds) if isinstance(seeds, (list, tuple, range)) else None
    if (
        seeds is None
        or len(seeds) != len(vaes)
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise ValueError(
            f"Expected seeds to be {len(vaes)} distinct integers, one per module, but got {given!r}"
        )
    config = with_overrides(config, overrides).validate()
    device = check_device(config.device)
    for vae in vaes:
        on_device(vae, device)
        vae.load_param_store()
    check_stackable(vaes)
    train, validation = training_data(vaes[0], data, validation)
    if config.gap_every is not None and validation is None:
        raise ValueError(
            f"Expected validation data for gap_every={config.gap_every!r} (the gap is "
            "measured on the first gap_points validation points) but there are none"
        )
    lr = DEFAULT_LR if config.lr is None else config.lr
    gap_runs = range(len(vaes)) if gap_runs is None else set(gap_runs)
    trainers = [
        Trainer(vae, train, validation,
                config.replace(seed=seed, gap_every=config.gap_every if r in gap_runs else None)
                .record(lr), config.schedule)
        for r, (vae, seed) in enumerate(zip(vaes, seeds, strict=True))
    ]  # fmt: skip
    stack = _StackTrainer(vaes, trainers, config, device)
    results = [FitResult(config=t.config) for t in trainers]
    with torch_threads(config.num_threads) as threads:
        _train_stack(stack, results, config.progress)
    for result in results:
        result.num_threads = threads
    pyro.set_rng_seed(seeds[-1])
    last = stack.stack.generators[-1]
    if device.type == "cpu":
        torch.set_rng_state(last.get_state())
    else:
        torch.cuda.set_rng_state(last.get_state(), device)
    return results


def _train_stack(stack, results, progress):
    """The epoch loop of :func:`fit_runs`; fills ``results``."""
    trainers = stack.trainers
    epochs = stack.config.epochs
    start, cpu_start = time.perf_counter(), time.process_time()
    label = f"{trainers[0].config['objective']} ×{len(trainers)}"
    bar = tqdm(total=epochs, desc=label, disable=not progress)
    with pyro.get_param_store().scope(), pyro.validation_enabled(False):
        for epoch in range(1, epochs + 1):
            records = stack.train_epoch(epoch)
            for r in list(stack.active):
                if trainers[r].end_epoch(records[r], start):
                    results[r].stopped_early = True
                    stack.active.remove(r)
            bar.update()
            if not stack.active:
                break
    bar.close()
    for trainer, result in zip(trainers, results, strict=True):
        trainer.finish()
        result.history = trainer.state.history
        result.best_epoch = trainer.state.best_epoch
        result.train_time = time.perf_counter() - start
        result.cpu_time = time.process_time() - cpu_start
        result.num_runs = len(trainers)
