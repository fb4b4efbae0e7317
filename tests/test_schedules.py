import json
import math

import numpy as np
import pytest

from pyro_vae.train.schedules import (
    SCHEDULE_GRAMMAR,
    Schedule,
    anneal_down,
    as_schedule,
    constant,
    parse_schedule,
    warmup,
)


def values(schedule, epochs):
    return [schedule(t) for t in range(1, epochs + 1)]


def test_constant_is_the_same_beta_every_epoch():
    assert values(constant(4), 3) == [4.0, 4.0, 4.0]
    assert values(constant(0), 2) == [0.0, 0.0]
    assert all(type(v) is float for v in values(constant(np.int64(2)), 2))


def test_warmup_rises_linearly_over_its_epochs_then_stays_at_end():
    assert values(warmup(4), 7) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert values(warmup(1), 3) == [0.0, 1.0, 1.0]
    # the end points are exact, whatever rounding does in between
    w = warmup(10, start=0.1, end=2.0)
    assert w(1) == 0.1 and w(11) == 2.0 and w(1000) == 2.0
    steps = np.diff(values(w, 11))
    assert np.allclose(steps, 0.19, rtol=1e-12, atol=0)


def test_anneal_down_falls_linearly_to_end():
    assert values(anneal_down(4, 3), 5) == [4.0, 3.0, 2.0, 1.0, 1.0]
    assert values(anneal_down(2, 4, end=0), 6) == [2.0, 1.5, 1.0, 0.5, 0.0, 0.0]


@pytest.mark.parametrize(
    "schedule, text, spec, name, label",
    [
        (constant(4), "constant(beta=4)", "constant:4", "constant_4", "β=4"),
        (constant(0.5), "constant(beta=0.5)", "constant:0.5", "constant_0.5", "β=0.5"),
        (warmup(100), "warmup(epochs=100, start=0, end=1)", "warmup:100:0:1", "warmup_100",
         "β 0→1 over 100 epochs"),
        (warmup(10, 0.1, 2), "warmup(epochs=10, start=0.1, end=2)", "warmup:10:0.1:2",
         "warmup_10_0.1_2", "β 0.1→2 over 10 epochs"),
        (anneal_down(4, 100), "anneal_down(start=4, epochs=100, end=1)", "anneal_down:4:100:1",
         "anneal_down_4_100", "β 4→1 over 100 epochs"),
        (anneal_down(4, 100, 0.5), "anneal_down(start=4, epochs=100, end=0.5)",
         "anneal_down:4:100:0.5", "anneal_down_4_100_0.5", "β 4→0.5 over 100 epochs"),
    ],
)  # fmt: skip
def test_repr_spec_name_and_label(schedule, text, spec, name, label):
    assert repr(schedule) == text
    assert schedule.spec == spec and schedule.name == name and schedule.label == label
    assert parse_schedule(spec) == schedule  # the spec round-trips
    assert json.loads(json.dumps(spec)) == spec
    assert all(c.isalnum() or c in "_.-" for c in name)  # safe in file names


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("1", constant(1)),
        ("0.5", constant(0.5)),
        ("0", constant(0)),
        ("1e-3", constant(0.001)),
        ("constant:4", constant(4)),
        ("warmup:100", warmup(100)),
        ("warmup:100:0:1", warmup(100)),
        ("warmup:100:0.5", warmup(100, start=0.5)),
        (" Warmup : 3 ", warmup(3)),
        ("anneal_down:4:100", anneal_down(4, 100)),
        ("anneal_down:4:100:0.5", anneal_down(4, 100, end=0.5)),
    ],
)
def test_parse_schedule(spec, expected):
    parsed = parse_schedule(spec)
    assert parsed == expected and hash(parsed) == hash(expected)
    assert values(parsed, 120) == values(expected, 120)


@pytest.mark.parametrize(
    "schedule", [constant(1 / 3), warmup(7, 1e-9, 2 / 3), anneal_down(1e20, 3, 0.1 + 0.2)]
)
def test_every_spec_reads_back_exactly(schedule):
    # a checkpoint stores the spec: the resumed run must get the very same floats
    assert parse_schedule(schedule.spec) == schedule
    assert values(parse_schedule(schedule.spec), 9) == values(schedule, 9)


def test_schedules_with_other_arguments_differ():
    assert warmup(100) != warmup(101) and warmup(4) != anneal_down(4, 4)
    assert constant(1) != warmup(1, 1, 1)  # same values, another schedule
    assert constant(2) != 2.0


@pytest.mark.parametrize(
    "spec", ["", "warmup", "warmup:1.5", "warmup:1:2:3:4", "anneal_down:4", "constant",
             "constant:1:2", "cosine:10", "beta=4", "1,5"],
)  # fmt: skip
def test_parse_schedule_lists_the_grammar_for_a_malformed_spec(spec):
    with pytest.raises(ValueError) as info:
        parse_schedule(spec)
    assert SCHEDULE_GRAMMAR in str(info.value) and repr(spec) in str(info.value)


@pytest.mark.parametrize(
    "spec, name",
    [
        ("-1", "beta"),
        ("nan", "beta"),
        ("inf", "beta"),
        ("constant:-0.5", "beta"),
        ("warmup:0", "epochs"),
        ("warmup:-3", "epochs"),
        ("warmup:10:-1", "start"),
        ("warmup:10:0:inf", "end"),
        ("warmup:10:2:1", "start <= end"),
        ("anneal_down:0.5:10", "start >= end"),
    ],
)
def test_parse_schedule_names_the_bad_value(spec, name):
    with pytest.raises(ValueError, match=name):
        parse_schedule(spec)


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: constant(-1), "beta"),
        (lambda: constant(True), "beta"),
        (lambda: constant("4"), "beta"),
        (lambda: constant(math.nan), "beta"),
        (lambda: warmup(0), "epochs"),
        (lambda: warmup(2.5), "epochs"),
        (lambda: warmup(10, start=-0.1), "start"),
        (lambda: warmup(10, end=math.inf), "end"),
        (lambda: warmup(10, start=2), "anneal_down"),
        (lambda: anneal_down(0.5, 10), "warmup"),
        (lambda: anneal_down(4, True), "epochs"),
    ],
)
def test_constructors_name_the_bad_argument(build, name):
    with pytest.raises(ValueError, match=name):
        build()


@pytest.mark.parametrize("epoch", [0, -1, 1.0, True, "1"])
def test_epochs_count_from_one(epoch):
    with pytest.raises(ValueError, match="epoch"):
        warmup(4)(epoch)


def test_as_schedule():
    assert as_schedule(2) == constant(2) and as_schedule(0.0) == constant(0)
    assert as_schedule("warmup:5") == warmup(5)
    w = warmup(5)
    assert as_schedule(w) is w

    def mine(epoch):
        return 1.0 / epoch

    assert as_schedule(mine) is mine and not isinstance(mine, Schedule)
    for bad in (-1, math.inf, None, [1.0], True, constant):
        with pytest.raises(ValueError, match="beta"):
            as_schedule(bad)


def test_burda2016_learning_rate_stages():
    # Burda et al. (2016, sec. 5): stage i lasts 3^i epochs at 10^(-i/7) of the first rate
    from pyro_vae.train.schedules import burda2016_lr_factor

    ends = [1, 4, 13, 40, 121, 364, 1093, 3280]
    stage_of = {}
    start = 1
    for i, end in enumerate(ends):
        assert end - start + 1 == 3**i
        for epoch in range(start, end + 1):
            stage_of[epoch] = i
        start = end + 1
    for epoch, i in stage_of.items():
        assert burda2016_lr_factor(epoch) == 10.0 ** (-i / 7), epoch
    assert burda2016_lr_factor(5000) == 10.0 ** (-7 / 7)
    with pytest.raises(ValueError, match="Expected epoch to be an integer > 0"):
        burda2016_lr_factor(0)


def test_fit_steps_at_the_scheduled_learning_rate(seed):
    # the rate Adam used in each epoch is the schedule's, and resuming keeps to it
    import torch

    from pyro_vae import VAE, fit

    x = (torch.rand(40, 64, generator=torch.Generator().manual_seed(seed(0))) < 0.3).float()
    seen = []
    step = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    torch.optim.Adam.step = spy
    try:
        result = fit(
            VAE(64, z_dim=2, hidden_dims=(8,)), x, epochs=6, batch_size=40, lr=0.01,
            lr_schedule="burda2016", adam_eps=1e-4, progress=False, seed=seed(1),
        )  # fmt: skip
    finally:
        torch.optim.Adam.step = step
    stages = [0, 1, 1, 1, 2, 2]
    assert seen == [0.01 * 10.0 ** (-i / 7) for i in stages]
    assert result.config["lr_schedule"] == "burda2016" and result.config["adam_eps"] == 1e-4
    with pytest.raises(ValueError, match="Expected lr_schedule in"):
        fit(VAE(64, z_dim=2), x, epochs=1, lr_schedule="burda", progress=False)
