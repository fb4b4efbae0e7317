r"""Schedules of the KL weight β: the β-VAE, KL warm-up and its reverse.

:func:`pyro_vae.fit` trains the β-weighted objective

.. math::

    \mathcal L_\beta(x) = \mathbb E_{q_\phi(z|x)} \log p_\theta(x \mid z)
                          - \beta\, \mathrm{KL}(q_\phi(z \mid x) \,\|\, p(z)),

with β = ``schedule(epoch)`` in epoch 1, 2, …; β = 1 is the ELBO. A schedule is a
callable of the epoch (an integer ≥ 1) returning β ≥ 0 (a float). The three named ones:

=====================================  ======================================================
schedule                               β in epoch t
=====================================  ======================================================
:class:`constant` ``(beta)``           β for every t: the β-VAE (Higgins et al. 2017);
                                       β = 0 trains the reconstruction term alone
:class:`warmup` ``(epochs, 0, 1)``     start + (end − start) · min(t − 1, epochs) / epochs:
                                       KL warm-up from 0 up to 1 (Bowman et al. 2016;
                                       Sønderby et al. 2016)
:class:`anneal_down` ``(start, n)``    the same line from start > 1 down to 1: the
                                       reverse schedule
=====================================  ======================================================

So ``warmup(4)`` gives β = 0, 0.25, 0.5, 0.75 in epochs 1–4 and 1 from epoch 5 on: the
first ``epochs`` epochs are the warm-up, and the first one trains with β = ``start``.

Each schedule has a ``spec``, a string that :func:`parse_schedule` reads back into an
equal schedule (``"warmup:100:0:1"``, what a checkpoint's ``fit_config["beta"]``
holds), a ``name`` safe in file names (``"warmup_100"``) and a
``label`` for tables (``"β 0→1 over 100 epochs"``).

References
----------
1. I. Higgins, L. Matthey, A. Pal, C. Burgess, X. Glorot, M. Botvinick, S. Mohamed,
   A. Lerchner, "β-VAE: Learning basic visual concepts with a constrained variational
   framework", ICLR 2017.
2. S. R. Bowman, L. Vilnis, O. Vinyals, A. M. Dai, R. Jozefowicz, S. Bengio,
   "Generating sentences from a continuous space", CoNLL 2016.
3. C. K. Sønderby, T. Raiko, L. Maaløe, S. K. Sønderby, O. Winther, "Ladder
   variational autoencoders", NeurIPS 2016.
"""

import numbers

from .._checks import check_beta, check_int

__all__ = [
    "BURDA2016_STAGES",
    "LR_SCHEDULES",
    "SCHEDULE_GRAMMAR",
    "Schedule",
    "anneal_down",
    "as_schedule",
    "burda2016_lr_factor",
    "check_beta",
    "constant",
    "parse_schedule",
    "warmup",
]

SCHEDULE_GRAMMAR = (
    "BETA or constant:BETA (β fixed; 0 is the reconstruction term alone), "
    "warmup:EPOCHS[:START[:END]] (β rises linearly from START=0 to END=1 over the first "
    "EPOCHS epochs), anneal_down:START:EPOCHS[:END] (β falls linearly from START to END=1 "
    "over the first EPOCHS epochs); β >= 0"
)
"""One-line description of the schedule specs, for the CLI's ``--help``."""


LR_SCHEDULES = (None, "burda2016")
"""The learning-rate schedules of :func:`pyro_vae.fit` (``lr_schedule``): None, a constant
rate; ``"burda2016"``, :func:`burda2016_lr_factor`."""

BURDA2016_STAGES = 8
"""Stages of Burda et al.'s schedule: 3^0 + … + 3^7 = 3280 epochs."""


def burda2016_lr_factor(epoch):
    """The factor of the learning rate in ``epoch`` (1, 2, …) under Burda et al.'s schedule.

    Stage i = 0, 1, … lasts 3^i epochs at 10^(−i/7) times the initial rate (Burda,
    Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders", sec. 5: lr 0.001 ·
    10^(−i/7) for 3^i epochs, i = 0..7, 3280 epochs in all); the stages end after epochs 1,
    4, 13, 40, 121, 364, 1093 and 3280, and later epochs stay at the last stage's rate.
    The same as :class:`torch.optim.lr_scheduler.MultiStepLR` with those milestones and
    γ = 10^(−1/7), written in closed form so that a resumed run needs no scheduler state.

    Raises
    ------
    ValueError
        If ``epoch`` is not an integer ≥ 1.
    """
    check_int("epoch", epoch)
    stage, end = 0, 1
    while epoch > end and stage < BURDA2016_STAGES - 1:
        stage += 1
        end += 3**stage
    return 10.0 ** (-stage / 7)


def _format(value):
    """A number as the shortest string that reads back to it: ``4.0`` -> ``"4"``."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)


class Schedule:
    """Base class of the named schedules: β as a function of the epoch.

    A subclass sets ``_args``, the ``(name, value)`` pairs of its constructor, and
    implements :meth:`value`. Schedules are equal when their class and arguments are.
    """

    _args = ()

    def value(self, epoch):
        """β in ``epoch`` (float), with ``epoch`` already checked."""
        raise NotImplementedError

    def __call__(self, epoch):
        """β ≥ 0 in ``epoch`` (an integer ≥ 1), a float.

        Raises
        ------
        ValueError
            If ``epoch`` is not an integer ≥ 1.
        """
        check_int("epoch", epoch)
        return self.value(epoch)

    @property
    def spec(self):
        """The string :func:`parse_schedule` reads back into this schedule (str)."""
        return ":".join([type(self).__name__, *(_format(v) for _, v in self._args)])

    @property
    def name(self):
        """A file-name-safe name, e.g. ``"warmup_100"`` (str; defaults left out)."""
        return "_".join([type(self).__name__, *(_format(v) for v in self._shown())])

    def _shown(self):
        """The values in :attr:`name`: the required arguments, and the optional ones
        only where they differ from their defaults."""
        return [value for _, value in self._args]

    def __repr__(self):
        args = ", ".join(f"{key}={_format(value)}" for key, value in self._args)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self._args == other._args

    def __hash__(self):
        return hash((type(self).__name__, self._args))


class constant(Schedule):
    """β fixed at every epoch: the β-VAE (Higgins et al. 2017).

    β > 1 weighs the KL term up (a guide closer to the prior, often more disentangled
    and blurrier); β < 1 weighs it down; β = 0 drops it, leaving the reconstruction
    term E_q log p(x|z) alone: an autoencoder with a stochastic encoder, whose q(z|x)
    is free to move away from p(z). β = 1 is the ELBO.

    Parameters
    ----------
    beta : float
        β ≥ 0, finite.

    Raises
    ------
    ValueError
        If ``beta`` is not a finite number ≥ 0.

    Examples
    --------
    >>> constant(4)(10)
    4.0
    >>> constant(4).spec, constant(4).name, constant(4).label
    ('constant:4', 'constant_4', 'β=4')
    """

    def __init__(self, beta):
        self.beta = check_beta("beta", beta)
        self._args = (("beta", self.beta),)

    def value(self, epoch):
        return self.beta

    @property
    def label(self):
        """For tables: ``"β=4"`` (str)."""
        return f"β={_format(self.beta)}"


class _Linear(Schedule):
    """β = start + (end − start) · min(t − 1, epochs) / epochs in epoch t."""

    def __init__(self, start, epochs, end):
        check_int("epochs", epochs)
        self.epochs = int(epochs)
        self.start = check_beta("start", start)
        self.end = check_beta("end", end)

    def value(self, epoch):
        done = min(epoch - 1, self.epochs)  # exact at both ends
        return (self.start * (self.epochs - done) + self.end * done) / self.epochs

    @property
    def label(self):
        """For tables: ``"β 0→1 over 100 epochs"`` (str)."""
        return f"β {_format(self.start)}→{_format(self.end)} over {self.epochs} epochs"


class warmup(_Linear):
    """KL warm-up: β rises linearly from ``start`` to ``end`` over the first ``epochs``.

    β = start + (end − start) · min(t − 1, epochs) / epochs in epoch t: ``start`` in the
    first epoch, ``end`` from epoch ``epochs + 1`` on. Starting with the KL term off lets
    the decoder learn to use z before the KL term pulls q(z|x) to the prior, a remedy
    for posterior collapse (Bowman et al. 2016, "KL cost annealing"; Sønderby et al.
    2016, "warm-up", linear from 0 to 1 over the first epochs).

    Parameters
    ----------
    epochs : int
        Length of the warm-up in epochs, ≥ 1.
    start : float, default 0.0
        β in the first epoch, ≥ 0.
    end : float, default 1.0
        β after the warm-up, ≥ ``start``.

    Raises
    ------
    ValueError
        If ``epochs`` is not an integer ≥ 1, ``start`` or ``end`` is not a finite
        number ≥ 0, or ``start > end`` (use :class:`anneal_down`).

    Examples
    --------
    >>> [warmup(4)(t) for t in range(1, 7)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    >>> warmup(100), warmup(100).spec, warmup(100).name
    (warmup(epochs=100, start=0, end=1), 'warmup:100:0:1', 'warmup_100')
    """

    def __init__(self, epochs, start=0.0, end=1.0):
        super().__init__(start, epochs, end)
        if self.start > self.end:
            raise ValueError(
                f"Expected start <= end for a warm-up but got start={start!r}, end={end!r}; "
                "for a decreasing β use anneal_down(start, epochs, end)"
            )
        self._args = (("epochs", self.epochs), ("start", self.start), ("end", self.end))

    def _shown(self):
        if (self.start, self.end) == (0.0, 1.0):
            return [self.epochs]
        return [self.epochs, self.start, self.end]


class anneal_down(_Linear):
    """The reverse schedule: β falls linearly from ``start`` to ``end`` over ``epochs``.

    β = start + (end − start) · min(t − 1, epochs) / epochs in epoch t: ``start`` in the
    first epoch, ``end`` (by default 1, the ELBO) from epoch ``epochs + 1`` on. A large
    β early holds q(z|x) near the prior while the decoder is weak, then the weight
    relaxes to the ELBO's; it is :class:`warmup` run backwards, one of the schedules
    tried against posterior collapse (a β-VAE that ends on the true bound).

    Parameters
    ----------
    start : float
        β in the first epoch, ≥ ``end``.
    epochs : int
        Length of the annealing in epochs, ≥ 1.
    end : float, default 1.0
        β after the annealing, ≥ 0.

    Raises
    ------
    ValueError
        If ``epochs`` is not an integer ≥ 1, ``start`` or ``end`` is not a finite
        number ≥ 0, or ``start < end`` (use :class:`warmup`).

    Examples
    --------
    >>> [anneal_down(4, 3)(t) for t in range(1, 6)]
    [4.0, 3.0, 2.0, 1.0, 1.0]
    >>> anneal_down(4, 3).spec, anneal_down(4, 3).name
    ('anneal_down:4:3:1', 'anneal_down_4_3')
    """

    def __init__(self, start, epochs, end=1.0):
        super().__init__(start, epochs, end)
        if self.start < self.end:
            raise ValueError(
                f"Expected start >= end to anneal down but got start={start!r}, end={end!r}; "
                "for an increasing β use warmup(epochs, start, end)"
            )
        self._args = (("start", self.start), ("epochs", self.epochs), ("end", self.end))

    def _shown(self):
        if self.end == 1.0:
            return [self.start, self.epochs]
        return [self.start, self.epochs, self.end]


_PARSERS = {
    "constant": (constant, (float,), 1),
    "warmup": (warmup, (int, float, float), 1),
    "anneal_down": (anneal_down, (float, int, float), 2),
}


def parse_schedule(spec):
    """Read a β schedule from a spec string (the CLI's ``--beta``).

    Specs (:data:`SCHEDULE_GRAMMAR`): a number, ``"constant:BETA"``,
    ``"warmup:EPOCHS[:START[:END]]"``, ``"anneal_down:START:EPOCHS[:END]"``. Every
    schedule's ``spec`` reads back into an equal schedule.

    Parameters
    ----------
    spec : str
        E.g. ``"0.5"``, ``"constant:4"``, ``"warmup:100"``, ``"warmup:100:0:1"``,
        ``"anneal_down:4:100"``; surrounding whitespace is ignored.

    Returns
    -------
    Schedule
        A :class:`constant`, :class:`warmup` or :class:`anneal_down`.

    Raises
    ------
    ValueError
        If the spec is malformed (the message lists the grammar) or a value is invalid
        (the message names it).

    Examples
    --------
    >>> parse_schedule("warmup:100")
    warmup(epochs=100, start=0, end=1)
    >>> parse_schedule("2")
    constant(beta=2)
    """
    expected = f"Expected a schedule spec, one of {SCHEDULE_GRAMMAR}; but got {spec!r}"
    if not isinstance(spec, str):
        raise ValueError(expected)
    parts = [part.strip() for part in spec.strip().split(":")]
    name, args = parts[0].lower(), parts[1:]
    try:
        if not args and name not in _PARSERS:
            cls, kinds, values = constant, (float,), [float(name)]
        else:
            cls, kinds, required = _PARSERS[name]
            if not required <= len(args) <= len(kinds):
                raise ValueError
            values = [kind(text) for kind, text in zip(kinds, args, strict=False)]
    except (ValueError, KeyError):
        raise ValueError(expected) from None
    _check_spec_epochs(spec, name, args, kinds, values)
    return cls(*values)


def _check_spec_epochs(spec, name, args, kinds, values):
    """A ValueError naming the spec's EPOCHS (not ``epochs``, an argument of ``fit``)
    unless it is ≥ 1."""
    for i, (kind, value) in enumerate(zip(kinds, values, strict=False)):
        if kind is int and value < 1:
            example = ":".join([name, *args[:i], "10", *args[i + 1 :]])
            raise ValueError(
                f"Expected EPOCHS of the β schedule spec {spec!r} (the epochs β takes to go "
                f"from START to END) to be an integer >= 1 but got {value}; e.g. {example!r}"
            )


def as_schedule(beta):
    """A β schedule from what :func:`pyro_vae.fit` accepts as ``beta``.

    Parameters
    ----------
    beta : float, str or callable
        A number (β fixed: :class:`constant`), a spec string (:func:`parse_schedule`),
        a :class:`Schedule`, or any callable of the epoch returning β ≥ 0.

    Returns
    -------
    callable
        The schedule; a callable that is not a :class:`Schedule` is returned as is.

    Raises
    ------
    ValueError
        If ``beta`` is a negative or non-finite number, a malformed spec, or none of
        the above.
    """
    if isinstance(beta, Schedule) or (callable(beta) and not isinstance(beta, type)):
        return beta
    if isinstance(beta, str):
        return parse_schedule(beta)
    if isinstance(beta, numbers.Real) and not isinstance(beta, bool):
        return constant(check_beta("beta", beta))
    raise ValueError(
        f"Expected beta to be a number >= 0, a schedule spec ({SCHEDULE_GRAMMAR}) or a "
        f"callable of the epoch but got {beta!r}"
    )
