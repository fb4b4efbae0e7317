import ast
import pathlib

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _python_block(path, marker):
    """The ``python`` code block of ``path`` that contains ``marker``."""
    blocks = [b.split("```")[0] for b in path.read_text().split("```python\n")[1:]]
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"expected one python block with {marker!r} in {path.name}"
    return found[0]


def test_readme_snippet_runs_verbatim():
    # The "use it from your own Pyro script" block, with 2 epochs instead of 100; its
    # draws come from the global RNG, which conftest seeds from PYRO_VAE_TEST_SEED.
    code = _python_block(README, "range(100)")
    namespace = {}
    exec(code.replace("range(100)", "range(2)"), namespace)
    assert namespace["samples"]["z"].shape == (10, 359, 8)
    assert namespace["samples"]["x"].shape == (10, 359, 64)
    log_px, se = namespace["result"].summary()["log_px"]
    assert -64 < log_px < 0 and 0 < se < 0.05


def test_readme_seeds_snippet_trains_each_run_as_alone():
    # "Many seeds in one pass": three runs as one stack, 2 epochs instead of 100; each run
    # is the run fit(vae, data, seed=s) trains alone (to float rounding)
    code = _python_block(README, "seeds=[0, 1, 2]")
    namespace = {}
    exec(code.replace("epochs=100", "epochs=2"), namespace)
    import torch

    from pyro_vae import VAE, fit

    runs, data = namespace["runs"], namespace["data"]
    assert [len(run.history) for run in runs] == [2, 2, 2]
    torch.manual_seed(2)
    alone = fit(VAE(x_dim=64, z_dim=8), data, seed=2, epochs=2, progress=False)
    for a, b in zip(alone.history, runs[2].history, strict=True):
        assert abs(a["val_iwae"] - b["val_iwae"]) < 1e-4 * abs(a["val_iwae"])


def test_home_page_snippet_runs(capsys):
    # The docs home page's "A first run" block, with 2 epochs instead of 100: it prints
    # log p(x) as (mean, s.e.) in nats per test point
    code = _python_block(README.parent / "docs" / "index.md", "epochs=100")
    exec(code.replace("epochs=100", "epochs=2, progress=False"), {})
    log_px, se = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1])
    assert -64 < log_px < 0 and 0 < se < 0.05


def test_posterior_docs_snippet_runs(tmp_path, monkeypatch, seed):
    # docs/posterior.md's first block, on a briefly trained 2-D VAE and 3 test digits
    import matplotlib

    matplotlib.use("Agg")
    import pyro_vae
    from pyro_vae.data import load_digits

    docs = README.parent / "docs" / "posterior.md"
    code = docs.read_text().split("```python\n")[1].split("```")[0]
    data = load_digits()
    vae = pyro_vae.VAE(64, z_dim=2, hidden_dims=(16,))
    pyro_vae.fit(vae, data, epochs=3, progress=False, seed=seed(0))
    monkeypatch.chdir(tmp_path)
    namespace = {"vae": vae, "x": data.test[:3]}
    exec(code, namespace)
    assert len(namespace["table"]) == 3
    assert (tmp_path / "posterior.nc").exists()
    assert namespace["exact"].kl_guide.shape == (3,)


def test_ais_docs_snippet_runs(seed):
    # docs/ais.md's first block on a briefly trained 2-D VAE and 3 test digits, with token
    # budgets (the snippet's bridges and points scaled down)
    import pyro_vae
    from pyro_vae.data import load_digits

    docs = README.parent / "docs" / "ais.md"
    code = docs.read_text().split("```python\n")[1].split("```")[0]
    small = code.replace("num_bridges=500", "num_bridges=5").replace(
        "num_points=100", "num_points=4"
    )
    assert small.count("num_bridges=5") == 2 and "num_points=4" in small
    data = load_digits()
    vae = pyro_vae.VAE(64, z_dim=2, hidden_dims=(16,))
    pyro_vae.fit(vae, data, epochs=3, progress=False, seed=seed(0))
    namespace = {"vae": vae, "x": data.test[:3]}
    exec(small, namespace)
    assert namespace["result"].log_px.shape == (3,)
    assert set(namespace["sandwich"].summary()) == {"forward", "reverse", "width"}


@pytest.mark.slow  # 25-110 s on 2 cores: CI runs it; the default suite stays under 10 min
def test_readme_report_from_python_snippet_writes_the_report(tmp_path, monkeypatch):
    # "The same from Python": compare(...).write_report, with 2 epochs, few samples and
    # 2 posterior points so that it runs in seconds; the report is written without the CLI.
    import matplotlib

    matplotlib.use("Agg")
    code = _python_block(README, "write_report")
    assert "TrainConfig(epochs=40)" in code and "seeds=[0])" in code
    code = code.replace("TrainConfig(epochs=40)", "TrainConfig(epochs=2)").replace(
        "seeds=[0])", "seeds=[0], num_samples=100, posterior_points=2)"
    )
    monkeypatch.chdir(tmp_path)
    exec(code, {})
    out = tmp_path / "results"
    for name in ("results.csv", "results.json", "report.md", "bounds.png"):
        assert (out / name).exists(), name
    assert len((out / "results.csv").read_text().strip().splitlines()) == 3  # header + 2


def test_readme_saving_and_loading_snippet_restores_the_model(tmp_path, monkeypatch):
    # "Saving and loading" through Pyro's param store, with 5 SVI steps instead of 300:
    # the model built again under its name holds the saved parameters.
    import torch

    code = _python_block(README, 'name="vae"')
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(code.replace("range(300)", "range(5)"), namespace)
    saved, restored = namespace["vae"].state_dict(), namespace["restored"].state_dict()
    assert saved.keys() == restored.keys()
    for key, value in saved.items():
        assert torch.equal(restored[key], value), key
    import pyro

    pyro.clear_param_store()


def _fresh_user_folders(tmp_path):
    """Environment of a machine that never ran the package: empty home and caches."""
    import os

    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        MPLCONFIGDIR=str(home / ".config" / "matplotlib"),
    )
    return env


def test_first_run_on_a_new_machine_collects_arviz_tests(tmp_path):
    # ArviZ 0.23 warns once a day on import (a date stamp in the user's cache folder); under
    # the project's warning filters (filterwarnings = error) a test file importing ArviZ at
    # module level must still collect and pass with empty user folders.
    import subprocess
    import sys

    test = tmp_path / "test_first_run.py"
    test.write_text("import arviz\n\n\ndef test_imported():\n    assert arviz.__version__\n")
    config = README.parent / "setup.cfg"
    env = _fresh_user_folders(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(config)]
        + ["--rootdir", str(tmp_path), str(test)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    # the stamp ArviZ keeps was written in the fresh cache: the warning did fire
    assert (tmp_path / "home" / ".cache" / "arviz" / "daily_warning").exists()


def test_ci_runs_the_readme_test_command_with_empty_user_folders():
    command = README.read_text().split("## Run the tests")[1].split("```bash\n")[1].splitlines()[0]
    assert command == "python -m pytest"
    ci = (README.parent / ".ci" / "run").read_text()
    # the command's logical line: continuation lines joined
    lines = ci.replace("\\\n", " ").splitlines()
    runs = [line for line in lines if line.strip().endswith(command)]
    assert runs, f"CI does not run {command!r}"
    for variable in ("HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR"):
        assert f'{variable}="$fresh_home' in runs[0], variable
    assert 'fresh_home="$(mktemp -d)"' in ci
