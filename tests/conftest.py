import pyro
import pytest


@pytest.fixture(autouse=True)
def _reset_pyro():
    """Fresh parameter store and a fixed seed before each test (as Pyro's conftest)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
