"""The tests' base seed: read from PYRO_VAE_TEST_SEED, shown in the header, checked."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from conftest import STRIDE

PROBE = """
def test_probe(seed):
    print("SEEDS", seed(0), seed(7))
"""


def _pytest(tmp_path, value):
    (tmp_path / "test_probe.py").write_text(PROBE)
    shutil.copy(pathlib.Path(__file__).with_name("conftest.py"), tmp_path)
    env = {**os.environ, "PYRO_VAE_TEST_SEED": value}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("value", ["3"])
def test_seeds_are_the_tests_own_plus_the_base_times_the_stride(tmp_path, value):
    out = _pytest(tmp_path, value)
    assert out.returncode == 0, out.stdout + out.stderr
    base = int(value)
    assert f"base seed PYRO_VAE_TEST_SEED={base}" in out.stdout
    assert f"SEEDS {STRIDE * base} {STRIDE * base + 7}" in out.stdout


@pytest.mark.parametrize("value", ["x", "-1"])
def test_a_bad_base_seed_is_a_usage_error_naming_it(tmp_path, value):
    out = _pytest(tmp_path, value)
    assert out.returncode == pytest.ExitCode.USAGE_ERROR
    assert f"PYRO_VAE_TEST_SEED={value!r}: expected an integer from 0 to" in out.stderr
