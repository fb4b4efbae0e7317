"""Shared test set-up: the base seed, a fresh parameter store before each test.

Every test that draws random numbers takes its seeds from the ``seed`` fixture:
``seed(n)`` is the test's own seed ``n`` plus ``STRIDE`` times the base seed read once
from the environment variable ``PYRO_VAE_TEST_SEED`` (default 0). The stride exceeds
every seed a test uses, so two base seeds never share a stream and a sweep over base
seeds runs every statistical test on fresh random numbers::

    PYRO_VAE_TEST_SEED=3 python -m pytest

A statistical test must pass for every base seed: its tolerance comes from a
Monte-Carlo standard error, its budget from what converges with a margin.
"""

import os

import pyro
import pyro.distributions as dist
import pytest
import torch

STRIDE = 10_000  # larger than any test's own seed
MAX_BASE_SEED = 100_000


def _base_seed():
    text = os.environ.get("PYRO_VAE_TEST_SEED", "0")
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_BASE_SEED:  # numpy's legacy seed (pyro.set_rng_seed) < 2**32
        raise pytest.UsageError(
            f"PYRO_VAE_TEST_SEED={text!r}: expected an integer from 0 to {MAX_BASE_SEED}"
        )
    return value


BASE_SEED = 0


def pytest_configure(config):
    global BASE_SEED
    BASE_SEED = _base_seed()


def pytest_report_header(config):
    return f"pyro_vae tests: base seed PYRO_VAE_TEST_SEED={BASE_SEED}"


@pytest.fixture(scope="session")
def seed():
    """The seed of a test's own stream ``n``: ``seed(n) = n + STRIDE * PYRO_VAE_TEST_SEED``."""

    def offset(n=0):
        if not 0 <= n < STRIDE:
            raise ValueError(f"seed(n): expected 0 <= n < {STRIDE}, got {n}")
        return n + STRIDE * BASE_SEED

    return offset


@pytest.fixture(scope="session")
def digits_vae_2d(seed):
    """A 64-64-2 Bernoulli VAE trained for 30 epochs on the static binarized digits (stream
    0), shared by the tests that check it against quadrature, and the test digits."""
    from pyro_vae import VAE, fit
    from pyro_vae.data import load_digits

    pyro.set_rng_seed(seed(0))
    data = load_digits(binarize="static")
    vae = VAE(64, z_dim=2, hidden_dims=(64,))
    fit(vae, data, epochs=30, progress=False, seed=seed(0))
    return vae, data.test


class StudentTEncoder(torch.nn.Module):
    """q(z|x) = Student-t(ν) per coordinate at p(z|x)'s mean, scaled by its marginal s.d.

    For a :class:`pyro_vae.LinearGaussianVAE` in float64: a guide with the right centre
    and width but heavier tails than the posterior, through the encoder seam.
    """

    def __init__(self, vae, df):
        super().__init__()
        weight, noise_var = vae.weight.detach().double(), vae.noise_scale.detach().double() ** 2
        eye = torch.eye(weight.shape[1], dtype=torch.float64)
        inverse = torch.linalg.inv(weight.T @ weight + noise_var * eye)
        self.df = df
        self.register_buffer("proj", inverse @ weight.T)  # (Tipping & Bishop 1999, eq. 6)
        self.register_buffer("offset", vae.bias.detach().double())
        self.register_buffer("scale", (noise_var * inverse.diagonal()).sqrt())

    def forward(self, x):
        loc = (x - self.offset) @ self.proj.T
        return dist.StudentT(self.df, loc, self.scale.expand(loc.shape)).to_event(1)


@pytest.fixture(scope="session")
def student_t_encoder():
    """The class :class:`StudentTEncoder`: ``StudentTEncoder(vae, df)``."""
    return StudentTEncoder


@pytest.fixture(autouse=True)
def _reset_pyro():
    """Fresh parameter store and the base seed before each test (as Pyro's conftest)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(STRIDE * BASE_SEED)
    yield
