"""Training: minibatch stochastic optimization of a bound, validation, checkpoints, resume.

:func:`fit` is a short loop over named steps around a :class:`TrainingState`: one epoch
(:meth:`Trainer.train_epoch`), validation (:meth:`Trainer.validate`), checkpoint
(:meth:`Trainer.save`) and the stopping rule (:meth:`Trainer.should_stop`, the
:class:`~pyro_vae.train.state.EarlyStopping` that Lightning shares). Each step takes the
gradient of the objective's ``differentiable_loss`` (Pyro's ELBO classes, built by
:func:`pyro_vae.infer.objectives.make_elbo`) on the user's ``vae.model`` and
``vae.guide`` and applies :class:`torch.optim.Adam` to ``vae.parameters()``: the
fastest Pyro path measured here (``docs/guide/performance.md``), whose optimizer state
is keyed by the module, not by param-store names. The settings are a
:class:`~pyro_vae.train.config.TrainConfig`; the checkpoint file is
:mod:`pyro_vae.train.checkpoints`.

Two measurements ride along. A β schedule (:mod:`pyro_vae.train.schedules`) weights the KL
term of the training objective epoch by epoch (``fit(beta=...)``, the β-VAE and KL
warm-up), while validation keeps the true bound (β = 1). And ``fit(gap_every=n)``
records, every n epochs, log p(x), the ELBO and the gap log p(x) − ELBO =
KL(q(z|x) ‖ p(z|x)) on a fixed validation subset (:meth:`Trainer.track_gap`), to
answer whether log p(x) can rise while the guide falls further from the posterior.
"""

import copy
import math
import os
import time

import pyro
import torch
from tqdm.auto import tqdm

from .._checks import check_int
from .._device import check_device, on_device
from .._threads import torch_threads
from ..data import Dataset, check_data
from ..infer.evaluation import evaluate_bounds
from ..infer.objectives import make_elbo
from .checkpoints import (
    check_resumed_run,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import DEFAULT_LR, TrainConfig, with_overrides
from .schedules import Schedule, burda2016_lr_factor, check_beta, constant, parse_schedule
from .state import EarlyStopping, FitResult, TrainingState

__all__ = ["Trainer", "check_run_io", "fit", "training_data"]

_SHOWN = ("train_loss", "val_elbo", "val_iwae")  # in the progress bar


def check_run_io(config: TrainConfig, checkpoint, checkpoint_every, resume) -> None:
    """Raise ``ValueError`` for a run's checkpoint arguments that do not fit ``config``.

    Raises
    ------
    ValueError
        If ``checkpoint_every`` is neither None nor an integer > 0, or ``beta`` is a
        plain callable with ``checkpoint`` or ``resume`` (a checkpoint stores the
        schedule's spec).
    """
    if checkpoint_every is not None:
        check_int("checkpoint_every", checkpoint_every)
    if not isinstance(config.schedule, Schedule) and (checkpoint is not None or resume is not None):
        raise ValueError(
            f"Expected beta to be a number, a spec string or a pyro_vae.train.schedules schedule "
            f"with checkpoint or resume (a checkpoint stores its spec) but got {config.beta!r}"
        )


class Trainer:
    """The steps of :func:`fit` around a :class:`TrainingState` (see the module docstring).

    ``config`` is the run's record (:meth:`TrainConfig.record
    <pyro_vae.train.config.TrainConfig.record>`, :attr:`FitResult.config`), already
    validated; ``train`` is a :class:`~pyro_vae.data.Dataset` or a checked tensor,
    ``validation`` a checked tensor or None; ``schedule`` is the β schedule (default:
    read from ``config["beta"]``, a spec string, else β = 1).
    """

    check_each_step = None
    """Read each step's loss back and check it before the update (bool); None: on the
    CPU, where that costs nothing, and once per epoch on other devices."""

    def __init__(
        self,
        vae: torch.nn.Module,
        train: Dataset | torch.Tensor,
        validation: torch.Tensor | None,
        config: dict,
        schedule=None,
    ) -> None:
        self.vae, self.train, self.validation, self.config = vae, train, validation, config
        if schedule is None:
            spec = config.get("beta")
            schedule = parse_schedule(spec) if spec is not None else constant(1.0)
        self.schedule = schedule
        self.elbo = make_elbo(config["loss"], config["alpha"], config["num_particles"])
        eps = config.get("adam_eps", 1e-8)
        self.optimizer = torch.optim.Adam(vae.parameters(), lr=config["lr"], eps=eps)
        self.generator = torch.Generator().manual_seed(config["seed"])
        self.stopping = EarlyStopping(config["monitor"], config["patience"], config["restore_best"])
        self.state = TrainingState()

    def train_epoch(self, epoch):
        """One pass over the shuffled training data at β = ``schedule(epoch)``.

        Returns
        -------
        dict
            The epoch's record: ``epoch``, ``beta`` and ``train_loss``.

        Raises
        ------
        ValueError
            If the schedule's β is not a finite number ≥ 0.
        FloatingPointError
            If a minibatch loss is NaN or inf. On the CPU each step's loss is checked
            before its update, so the parameters are left at the last step before it;
            on another device the losses stay there and are checked once, at the end
            of the epoch (reading a number back each step would wait for the device's
            queue), so the parameters are those after the epoch's last step.
        """
        beta = check_beta(f"beta (the schedule's value at epoch {epoch})", self.schedule(epoch))
        if self.config.get("lr_schedule") == "burda2016":
            for group in self.optimizer.param_groups:
                group["lr"] = self.config["lr"] * burda2016_lr_factor(epoch)
        train = self.train
        if isinstance(train, Dataset):
            ref = next(self.vae.parameters())
            x = train.train_epoch(self.generator).to(dtype=ref.dtype, device=ref.device)
        else:
            x = train
        num_data, batch_size = x.shape[0], self.config["batch_size"]
        order = torch.randperm(num_data, generator=self.generator).to(x.device)
        each_step = self.check_each_step
        if each_step is None:
            each_step = x.device.type == "cpu"
        losses, sizes = [], []
        for step, rows in enumerate(order.split(batch_size), start=1):
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._loss_and_grads(x[rows], num_data, rows, beta)
            if each_step:
                loss = float(loss)
                self._check_finite([loss], epoch, step)
            self.optimizer.step()
            losses.append(loss)
            sizes.append(len(rows))
        if not each_step:
            losses = torch.stack([torch.as_tensor(v, device=x.device) for v in losses]).tolist()
            self._check_finite(losses, epoch, 1, late=True)
        total = sum(v * n / num_data for v, n in zip(losses, sizes, strict=True))
        return {"epoch": epoch, "beta": beta, "train_loss": total / num_data}

    def _check_finite(self, losses, epoch, first_step, late=False):
        """Raise FloatingPointError at the first non-finite loss in ``losses``."""
        for step, value in enumerate(losses, start=first_step):
            if not math.isfinite(value):
                when = " (checked at the end of the epoch)" if late else ""
                raise FloatingPointError(
                    f"Non-finite loss {value} at epoch {epoch}, step {step}{when}: lower the "
                    f"learning rate (lr={self.config['lr']:g}) or clip gradients "
                    "(e.g. pyro.optim.ClippedAdam with SVI); the last checkpoint, if any, "
                    f"holds epoch {self.state.epoch}"
                )

    def _loss_and_grads(self, xb, num_data, rows, beta):
        """The minibatch loss (nats, scaled by N/B: a float, or a detached 0-dim tensor
        that stays on the device); gradients left in ``.grad``."""
        args = (self.vae.model, self.vae.guide, xb)
        kwargs = {"num_data": num_data, "subsample": rows, "beta": beta}
        if not hasattr(self.elbo, "differentiable_loss"):  # pyro.infer.RenyiELBO
            # Back-propagates only when the traces hold param sites: keep pyro.module.
            return self.elbo.loss_and_grads(*args, **kwargs)
        with self.vae.skip_param_store():
            loss = self.elbo.differentiable_loss(*args, **kwargs)
        loss.backward()
        return loss.detach()

    def validate(self, record):
        """Add the validation ELBO and IWAE bound to ``record`` and update the best epoch.

        The numbers of :func:`pyro_vae.infer.evaluation.evaluate_unchecked` with
        ``val_samples`` draws per point, seeded with the run's ``seed``, computed by
        :func:`pyro_vae.infer.evaluation.evaluate_bounds` (bit for bit the same, without
        Pyro's traces for the package's models).
        """
        if self.validation is not None:
            k, seed = self.config["val_samples"], self.config["seed"]
            summary = evaluate_bounds(self.vae, self.validation, k, (k,), seed).summary()
            record["val_elbo"] = summary["elbo"][0]
            record["val_iwae"] = summary[f"iwae_{k}"][0]
        self.stopping.update(self.state, record, self.vae)

    def gap_due(self, epoch, stopping):
        """Whether :meth:`track_gap` runs after ``epoch`` (bool): every ``gap_every``
        epochs, at the last epoch and at the epoch where ``patience`` stops the run."""
        every = self.config["gap_every"]
        if every is None:
            return False
        return epoch % every == 0 or epoch == self.config["epochs"] or stopping

    def track_gap(self, record):
        """Add log p(x), the ELBO and the gap on the gap subset to ``record``.

        Estimates, with :func:`pyro_vae.infer.evaluation.evaluate_bounds` (the numbers of
        :func:`~pyro_vae.infer.evaluation.evaluate_unchecked`) on the first
        ``gap_points`` validation points and ``gap_samples`` draws z ~ q(z|x) per point,
        seeded with the run's ``seed`` (the same draws of the standard normal at every
        call, and the global RNG state restored, so training draws the same numbers as
        without it): ``gap_log_px`` (the importance-sampling estimate L_K of log p(x)),
        ``gap_elbo``, ``gap`` = gap_log_px − gap_elbo, the estimate of
        KL(q(z|x) ‖ p(z|x)), all means over the points in nats per point, and
        ``gap_se``, the Monte-Carlo s.e. of the mean gap (delta method on the shared
        draws, :func:`pyro_vae.infer.evaluation.point_estimates`).
        """
        config = self.config
        x = self.validation[: config["gap_points"]]
        summary = evaluate_bounds(
            self.vae, x, config["gap_samples"], (), config["seed"], log_px=True
        ).summary()
        record["gap_log_px"] = summary["log_px"][0]
        record["gap_elbo"] = summary["elbo"][0]
        record["gap"] = record["gap_log_px"] - record["gap_elbo"]
        record["gap_se"] = summary["gap"][1]

    def end_epoch(self, record, start):
        """After the epoch of ``record``: validate, track the gap when due, time and
        record it (``wall_time``: seconds since ``start``, a ``time.perf_counter()``);
        returns whether ``patience`` stops the run now (bool)."""
        self.validate(record)
        stop = self.should_stop()
        if self.gap_due(record["epoch"], stop):
            self.track_gap(record)
        record["wall_time"] = time.perf_counter() - start
        self.state.history.append(record)
        self.state.epoch = record["epoch"]
        return stop

    def should_stop(self):
        """Whether ``patience`` epochs passed without a better monitored bound (bool)."""
        return self.stopping.should_stop(self.state)

    def finish(self):
        """Load the best epoch's parameters (with ``restore_best``)."""
        self.vae.load_state_dict(self.stopping.final_state(self.state, self.vae))

    def resumable(self):
        """What :meth:`restore` needs to continue after the last completed epoch (dict)."""
        return {
            "state": dict(vars(self.state)),
            "model_state": copy.deepcopy(self.vae.state_dict()),
            "optimizer_state": copy.deepcopy(self.optimizer.state_dict()),
            "rng_state": rng_state(self.generator),
        }

    def save(self, path, data_spec=None, resumable=None):
        """Write a checkpoint that :func:`fit` can resume from (atomically)."""
        resumable = resumable or self.resumable()
        save_checkpoint(path, self.vae, self.config, self.state, resumable, data_spec)

    def restore(self, checkpoint):
        """Continue from a checkpoint written by :meth:`save`.

        Raises
        ------
        ValueError
            If the checkpoint holds no training state, or was written by a run with
            another model or with other values of the run-defining arguments
            (``loss``, ``alpha``, ``num_particles``, ``batch_size``, ``seed``,
            ``val_samples``, ``monitor``, ``beta``; a checkpoint without ``beta``
            was trained with β = 1).
        """
        resumable = checkpoint.get("training_state")
        if not resumable:
            raise ValueError("Expected a checkpoint written by fit(checkpoint=...) to resume")
        check_resumed_run(
            checkpoint["model_config"], checkpoint["fit_config"], self.vae, self.config
        )
        self.vae.load_state_dict(resumable["model_state"])
        self.optimizer.load_state_dict(resumable["optimizer_state"])
        for group in self.optimizer.param_groups:
            group["lr"] = self.config["lr"]
        self.state = TrainingState(**resumable["state"])
        set_rng_state(resumable["rng_state"], self.generator)


def fit(
    vae: torch.nn.Module,
    data: Dataset | torch.Tensor,
    config: TrainConfig | None = None,
    *,
    validation: torch.Tensor | bool | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: str | os.PathLike | None = None,
    seeds: list[int] | None = None,
    **overrides,
) -> FitResult | list[FitResult]:
    """Train a VAE's model and guide by stochastic gradient ascent on a bound.

    Each epoch shuffles the training data (redrawing it for dynamic binarization) and
    takes one Adam step per minibatch on the objective's ``differentiable_loss`` of
    ``vae.model``/``vae.guide`` called with ``num_data=N`` and the minibatch's row
    indices as ``subsample``, so every bound is the data set's bound scaled from the
    minibatch (N/B); then it estimates the validation ELBO and IWAE bound L_k
    (k = ``val_samples``) with :func:`pyro_vae.evaluate` on fixed draws.

    With a β schedule, epoch t trains with model and guide called with
    ``beta=schedule(t)``, which weights the KL(q ‖ p(z)) term by β (the β-VAE of
    Higgins et al. 2017, KL warm-up of Bowman et al. 2016 and Sønderby et al. 2016;
    :meth:`pyro_vae.BaseVAE.model` says what each objective then computes). The
    validation bounds stay the true bounds at β = 1: a run is judged on log p(x)'s
    bound, not on the weighted objective it trained. Hence only the epochs trained at
    β = 1 are candidates for the best epoch and count towards ``patience``
    (:meth:`pyro_vae.train.state.EarlyStopping.update`): during a warm-up the best
    epoch is chosen once β has reached 1, and a run at a constant β ≠ 1 (β = 0:
    reconstruction only) returns its last epoch, as ``FitResult.best_epoch`` says.

    The loop is the fast path through Pyro's ELBO classes: the objective's
    ``differentiable_loss`` and :class:`torch.optim.Adam` on ``vae.parameters()``
    (as Pyro's ``examples/svi_lightning.py``), with Pyro's validation off (the data
    are checked once, here) and model and guide inside
    :meth:`~pyro_vae.models.base.BaseVAE.skip_param_store` (no ``pyro.module``
    registration per step; Pyro's own ``RenyiELBO``, which back-propagates only
    through registered parameters, keeps it). It computes the same loss and
    gradients as ``SVI`` with the same ELBO (tested). ``benchmarks/bench_speed.py``
    measures it against a hand-written PyTorch loop (``docs/guide/performance.md``). The
    user's Pyro param store is left as found (the run happens in
    :meth:`pyro.params.param_store.ParamStoreDict.scope`). The global RNGs are seeded
    with ``seed`` via :func:`pyro.set_rng_seed` (a fresh run only). The module's
    initial parameters are *not* drawn here: they were drawn when ``vae`` was built, so
    for a run that is reproducible from its seed, seed before building the module
    (``torch.manual_seed(seed); vae = VAE(...)``), as ``pyro-vae train --seed`` does.

    **Many runs in one pass**: ``fit([vae_0, ..., vae_R-1], data, config, seeds=[s_0,
    ..., s_R-1])`` trains R modules of one architecture (the runs of R seeds) as one
    stack of parameters (:func:`pyro_vae.train.stack.fit_runs`), each run the
    computation ``fit(vae_r, data, config, seed=s_r)`` makes (bit for bit for R = 1, to
    float rounding otherwise), at a fraction of R separate runs' time, and returns one
    :class:`FitResult` per run.

    Parameters
    ----------
    vae : VAE or LinearGaussianVAE, or a list of VAE
        The module; trained in place. A list (with ``seeds``): the runs of a stack.
    data : Dataset or torch.Tensor
        A :class:`pyro_vae.data.Dataset` (its ``validation`` split is used unless
        ``validation`` is given) or a tensor of shape ``(num_data, x_dim)``.
    config : TrainConfig, optional
        The run's settings (default ``TrainConfig()``, whose defaults are listed
        below); :data:`pyro_vae.MAIN_JOB` holds those of the package's main job.
    validation : torch.Tensor or False, optional
        Validation data ``(num_val, x_dim)``; default the Dataset's validation split;
        ``False`` turns validation off.
    checkpoint : str or os.PathLike, optional
        Where to write the checkpoint (atomically): every ``checkpoint_every`` epochs
        and at the end. It holds the module, Adam's state, the RNG states, the
        history, the best epoch and state and the early-stopping counter.
    checkpoint_every : int, optional
        Epochs between checkpoints (default: only at the end).
    resume : str or os.PathLike, optional
        A checkpoint of an interrupted run to continue; with the same arguments the
        result equals that of an uninterrupted run, bit for bit (same seed, CPU).
    seeds : list of int, optional
        With a list of modules, the training seed of each (replacing ``seed``); see
        :func:`pyro_vae.train.stack.fit_runs`. A stack writes no checkpoint: save each
        trained module with :func:`pyro_vae.save_checkpoint`.
    **overrides
        Settings that replace those of ``config`` (:meth:`TrainConfig.replace
        <pyro_vae.train.config.TrainConfig.replace>`), by the names of its fields:
    loss : {"trace", "meanfield", "renyi", "pyro_renyi", "stl", "dreg", "iwae_stl"}, default "trace"
        The objective; see :func:`pyro_vae.infer.objectives.make_elbo`.
    alpha : float, default 0.0
        Rényi order (``loss="renyi"``); 0 is the IWAE bound.
    num_particles : int, default 1
        Samples per data point (the IWAE k).
    epochs : int, default 100
        Total number of passes over the training data (a resumed run counts the
        epochs already done).
    batch_size : int, default 128
        Minibatch size B.
    lr : float, optional
        Adam learning rate; default 1e-3 for a new run and the checkpoint's for a
        resumed one (a given ``lr`` replaces the saved one).
    seed : int, default 0
        Training seed: shuffling, dynamic binarization draws, z draws. Not the split.
    progress : bool, default True
        Show a tqdm progress bar with the running loss.
    val_samples : int, default 50
        Draws per validation point (the k of the monitored IWAE bound).
    monitor : {"iwae", "elbo"}, default "iwae"
        Validation bound that selects the best epoch and drives ``patience``.
    patience : int, optional
        Stop after this many epochs at β = 1 without a better monitored bound.
    restore_best : bool, default True
        Load the best epoch's parameters at the end (needs validation data): the best
        among the epochs trained at β = 1, else the last epoch's.
    num_threads : int, optional
        Torch threads during the run (restored afterwards); default: torch's current
        setting. One thread is the package's default in the CLI and
        :func:`pyro_vae.experiments.compare.compare` (:data:`pyro_vae.DEFAULT_THREADS`): for
        networks
        this small it is about as fast as two and far steadier on a busy machine.
    beta : float, str or callable, default 1.0
        The KL weight β ≥ 0 per epoch: a number (:class:`pyro_vae.train.schedules.constant`;
        0 trains the reconstruction term alone), a schedule of
        :mod:`pyro_vae.train.schedules` (``warmup(100)``, ``anneal_down(4, 100)``), its spec
        string (``"warmup:100"``), or any callable of the epoch (an integer ≥ 1)
        returning β ≥ 0; only the first three can be checkpointed. The history
        records each epoch's β. ``loss="pyro_renyi"`` takes only β = 1.
    gap_every : int, optional
        Every ``gap_every`` epochs, at the last epoch and at an early stop, record
        log p(x), the ELBO and the gap log p(x) − ELBO = KL(q(z|x) ‖ p(z|x)) on the
        first ``gap_points`` validation points (:meth:`Trainer.track_gap`); needs
        validation data. Default: never.
    gap_points : int, default 100
        Validation points of the gap subset (all of them if there are fewer).
    gap_samples : int, default 500
        Importance samples K per point behind ``gap_log_px`` (≥ 2).
    device : str or torch.device, optional
        Where to train: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; default CUDA when
        PyTorch sees a GPU, else the CPU (``fit`` is an entry point, which chooses a
        device; the estimators then run where the model is: :mod:`pyro_vae._device`).
        ``vae`` is moved there in place and stays there; the data are moved there (a
        dynamically binarized data set is drawn on the CPU, from the seeded
        generator, and moved once per epoch). The precision is that of ``vae``'s
        parameters: float32, or float64 after ``vae.double()``.
        A resumed run is bit for bit the uninterrupted one on the CPU only (CUDA
        kernels need not be deterministic).

    Returns
    -------
    FitResult or list of FitResult
        History per epoch, best epoch, wall and CPU time, threads; one per module for a
        list of modules.

    Raises
    ------
    ValueError
        For bad data (NaN/inf, wrong width, empty, non-binary for a Bernoulli
        likelihood); any setting that :meth:`TrainConfig.validate
        <pyro_vae.train.config.TrainConfig.validate>` refuses (an unknown loss,
        ``num_particles`` < 1, ``alpha == 1`` with the Rényi bound, ``epochs``,
        ``batch_size``, ``patience``, ``num_threads`` not integers > 0, ``lr`` ≤ 0, a
        ``beta`` that is negative, non-finite or a malformed spec, β ≠ 1 with
        ``loss="pyro_renyi"`` (Pyro's RenyiELBO puts N/B inside the same weights,
        pyro-ppl issue 3104), ``gap_every``, ``gap_points`` not integers > 0,
        ``gap_samples`` not an integer ≥ 2, a ``device`` that is not ``"cpu"``,
        ``"cuda"``, ``"cuda:N"`` or a torch.device, or is CUDA where PyTorch sees no
        GPU); a ``resume`` checkpoint of another model or run; a plain callable
        ``beta`` with ``checkpoint`` or ``resume``; a schedule value that is not a
        finite number ≥ 0 (at that epoch); ``gap_every`` without validation data;
        parameters that are not float32 or float64.
    TypeError
        For an override that is not a setting, or a ``config`` that is not a
        :class:`TrainConfig`.
    FloatingPointError
        If a loss is NaN or inf; the message names the epoch and step.

    Notes
    -----
    **Cost of** ``gap_every``: each measurement draws ``gap_points × gap_samples``
    particles (50 000 by default, 5.5 times the 180 × 50 of the per-epoch
    validation): one measurement costs about as much as several epochs' validation.

    **Bias of the gap**: log p(x) is estimated by L_K = log (1/K) Σ_k w_k, which is
    biased low by about se²/2 per point, se² = 1/ESS − 1/K (the delta method of
    :func:`pyro_vae.infer.evaluation.point_estimates`); the ELBO estimate is unbiased, so
    the recorded gap is biased low by the same amount. With a guide far from the
    posterior (small ESS) a moderate K understates the gap; ``gap_se`` is the
    Monte-Carlo error around that biased value. The draws are the same at every
    measurement (seed ``seed``), so changes between epochs are changes of the model
    and guide, not of the draws.
    """
    if seeds is not None or isinstance(vae, (list, tuple)):
        return _fit_stack(vae, data, config, validation, checkpoint, resume, seeds, overrides)
    config = with_overrides(config, overrides).validate()
    check_run_io(config, checkpoint, checkpoint_every, resume)
    on_device(vae, check_device(config.device))  # an entry point: None is CUDA if seen
    vae.load_param_store()  # a named model restored with pyro.get_param_store().load
    train, validation = training_data(vae, data, validation)
    if config.gap_every is not None and validation is None:
        raise ValueError(
            f"Expected validation data for gap_every={config.gap_every!r} (the gap is "
            "measured on the first gap_points validation points) but there are none"
        )
    resumed = load_checkpoint(resume)[1] if resume is not None else None
    lr = config.lr
    if lr is None:
        lr = resumed["fit_config"]["lr"] if resumed else DEFAULT_LR
    record = config.record(lr)
    data_spec = data.spec if isinstance(data, Dataset) else None
    trainer = Trainer(vae, train, validation, record, config.schedule)
    if resumed is not None:
        trainer.restore(resumed)
    else:
        pyro.set_rng_seed(config.seed)

    result = FitResult(config=record)
    with torch_threads(config.num_threads) as threads:
        _train(trainer, result, checkpoint, checkpoint_every, data_spec, config.progress)
    result.num_threads = threads
    return result


def _fit_stack(vaes, data, config, validation, checkpoint, resume, seeds, overrides):
    """:func:`fit` of a list of modules: :func:`pyro_vae.train.stack.fit_runs`."""
    from .stack import fit_runs  # the stack builds on this module

    if not isinstance(vaes, (list, tuple)) or seeds is None:
        raise ValueError(
            "Expected a list of modules with seeds=[...] (one seed each) to train runs as "
            f"one stack but got vae={type(vaes).__name__} and seeds={seeds!r}"
        )
    if checkpoint is not None or resume is not None:
        raise ValueError(
            "Expected no checkpoint or resume with a list of modules (a stack writes no "
            f"checkpoint) but got checkpoint={checkpoint!r}, resume={resume!r}"
        )
    return fit_runs(vaes, data, config, seeds=seeds, validation=validation, **overrides)


def _train(trainer, result, checkpoint, checkpoint_every, data_spec, progress):
    """The epoch loop of :func:`fit`; fills ``result``."""
    config = trainer.config
    epochs = config["epochs"]
    start, cpu_start = time.perf_counter(), time.process_time()
    bar = tqdm(
        total=epochs, initial=trainer.state.epoch, desc=config["objective"], disable=not progress
    )
    with pyro.get_param_store().scope(), pyro.validation_enabled(False):
        for epoch in range(trainer.state.epoch + 1, epochs + 1):
            record = trainer.train_epoch(epoch)
            stop = trainer.end_epoch(record, start)
            bar.update()
            bar.set_postfix({k: f"{record[k]:.2f}" for k in _SHOWN if k in record})
            if checkpoint is not None and checkpoint_every and epoch % checkpoint_every == 0:
                trainer.save(checkpoint, data_spec)
            if stop:
                result.stopped_early = True
                break
    bar.close()
    last = trainer.resumable() if checkpoint is not None else None
    trainer.finish()
    if checkpoint is not None:
        trainer.save(checkpoint, data_spec, resumable=last)
    result.history = trainer.state.history
    result.best_epoch = trainer.state.best_epoch
    result.train_time = time.perf_counter() - start
    result.cpu_time = time.process_time() - cpu_start


def training_data(vae, data, validation):
    """Check the data once; return (train, validation) for :class:`Trainer`."""
    if isinstance(data, Dataset):
        check_data(data.train, vae, "data")
        train = data
        if validation is None and len(data.validation):
            validation = data.validation
    else:
        train = check_data(data, vae, "data")
    if validation is False or validation is None:
        return train, None
    return train, check_data(validation, vae, "validation")
