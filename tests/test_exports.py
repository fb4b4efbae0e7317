"""The import surface: the top level keeps the main interface, each subpackage exports its
public names, and the names that moved down still import from the top level for one
release, with a FutureWarning naming their new home."""

import importlib
import re
import subprocess
import sys
import warnings

import pytest

import pyro_vae

# The top level's interface, as its docstring names it.
TOP_LEVEL = {
    "VAE", "BaseVAE", "LinearGaussianVAE", "ScaledRenyiELBO", "make_elbo", "fit", "TrainConfig",
    "load_checkpoint", "save_checkpoint", "evaluate", "paired_difference", "sample_posterior",
    "sample_guide", "compare_posteriors", "quadrature_posterior", "from_pyro", "inference_gaps",
    "fit_local_guides", "ais", "bdmc",
}  # fmt: skip

# Names the top level gained after 0.3.0.
ADDED = {"gradient_snr"}
INTERFACE = TOP_LEVEL | ADDED

# Every other name of the 0.3.0 top level, with the subpackage that exports it now.
MOVED = {
    "DEFAULT_THREADS": "pyro_vae.train",
    "MAIN_JOB": "pyro_vae.train",
    "FitResult": "pyro_vae.train",
    "Trainer": "pyro_vae.train",
    "TrainingState": "pyro_vae.train",
    "anneal_down": "pyro_vae.train",
    "constant": "pyro_vae.train",
    "parse_schedule": "pyro_vae.train",
    "warmup": "pyro_vae.train",
    "AISResult": "pyro_vae.infer",
    "BDMCResult": "pyro_vae.infer",
    "Evaluation": "pyro_vae.infer",
    "InferenceGaps": "pyro_vae.infer",
    "QuadraturePosterior": "pyro_vae.infer",
    "active_units": "pyro_vae.infer",
    "elbo_decompositions": "pyro_vae.infer",
    "elbo_surgery": "pyro_vae.infer",
    "log_importance_weights": "pyro_vae.infer",
    "log_joint_grid": "pyro_vae.infer",
    "pareto_khat": "pyro_vae.infer",
    "parse_objective": "pyro_vae.infer",
}

SUBPACKAGES = (
    "pyro_vae.models",
    "pyro_vae.train",
    "pyro_vae.infer",
    "pyro_vae.experiments",
    "pyro_vae.viz",
)


def test_the_0_3_top_level_is_split_in_two():
    # the 41 names of the 0.3.0 __all__: each either stays or moved, none lost
    assert len(TOP_LEVEL) + len(MOVED) == 41
    assert not TOP_LEVEL & set(MOVED)
    assert set(pyro_vae.__all__) == INTERFACE
    assert len(pyro_vae.__all__) == len(INTERFACE)


@pytest.mark.parametrize("name", sorted(MOVED))
def test_a_moved_name_warns_and_is_the_object_at_its_new_home(name):
    home = importlib.import_module(MOVED[name])
    assert name in home.__all__
    with pytest.warns(FutureWarning) as record:
        old = getattr(pyro_vae, name)
    assert old is getattr(home, name)
    message = f"pyro_vae.{name} is deprecated; import it from {MOVED[name]}"
    assert [str(w.message) for w in record] == [message]
    assert record[0].filename == __file__  # points at the user's line
    assert name not in pyro_vae.__all__


def test_from_import_of_a_moved_name_warns():
    with pytest.warns(FutureWarning, match=r"pyro_vae\.Trainer .* from pyro_vae\.train$"):
        from pyro_vae import Trainer
    from pyro_vae.train import Trainer as new

    assert Trainer is new


def test_star_import_gives_the_interface_without_warnings():
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec("from pyro_vae import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == INTERFACE
    assert all(namespace[name] is getattr(pyro_vae, name) for name in INTERFACE)


def test_the_docstring_names_exactly_the_interface():
    named = set(re.findall(r":(?:class|func):`(\w+)`", pyro_vae.__doc__))
    assert named == INTERFACE
    assert re.fullmatch(r"\d+\.\d+\.\d+", pyro_vae.__version__)


def test_other_missing_names_raise_attribute_error_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="has no attribute 'compare'"):
            pyro_vae.compare  # noqa: B018
        assert not hasattr(pyro_vae, "Trainerr")
        from pyro_vae import data  # a submodule still imports through the fallback

    assert data.load_dataset is importlib.import_module("pyro_vae.data").load_dataset


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_a_subpackage_exports_its_own_names(package):
    module = importlib.import_module(package)
    names = module.__all__
    assert len(names) == len(set(names))
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(f"from {package} import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(names)
    for name in names:
        obj = getattr(module, name)
        # a public name of one of the package's modules (or of a private top-level one)
        homes = [
            m
            for m, mod in list(sys.modules.items())
            if m.startswith((package + ".", "pyro_vae._"))
            and name in getattr(mod, "__all__", ())
            and getattr(mod, name) is obj
        ]
        assert homes, name
        if isinstance(obj, type) or callable(obj):
            assert obj.__module__ in homes, (name, obj.__module__)


def test_each_top_level_name_is_its_subpackage_export():
    homes = [importlib.import_module(p) for p in SUBPACKAGES if p != "pyro_vae.experiments"]
    for name in INTERFACE:
        exported = [getattr(home, name) for home in homes if name in home.__all__]
        assert exported == [getattr(pyro_vae, name)], name


def test_the_names_the_issue_promises():
    from pyro_vae.data import load_dataset
    from pyro_vae.experiments import compare
    from pyro_vae.infer import evaluate
    from pyro_vae.train import fit
    from pyro_vae.viz import plot_bounds

    assert evaluate is pyro_vae.evaluate and fit is pyro_vae.fit
    assert compare.__module__ == "pyro_vae.experiments.compare"
    assert plot_bounds.__module__ == "pyro_vae.viz.bounds"
    assert load_dataset.__module__ == "pyro_vae.data"


@pytest.mark.parametrize(
    ("attribute", "function"),
    [("pyro_vae.infer.ais", "ais"), ("pyro_vae.experiments.compare", "compare")],
)
def test_a_function_named_as_its_module_shadows_it_only_as_an_attribute(attribute, function):
    package, _, name = attribute.rpartition(".")
    module = importlib.import_module(attribute)
    assert getattr(importlib.import_module(package), name) is getattr(module, function)
    assert module.__name__ == attribute and callable(module.__dict__[function])


def test_every_subpackage_imports_first_without_a_cycle_and_pyro_vae_stays_light():
    # Importing any pyro_vae.X runs pyro_vae/__init__.py (models, infer, train) first; the
    # subpackages it does not import may then come first in either order, each tried on an
    # empty slate of pyro_vae modules (a cycle shows only in the order that trips it).
    code = """
import sys
for first in sys.argv[1:]:
    for name in [m for m in sys.modules if m == "pyro_vae" or m.startswith("pyro_vae.")]:
        del sys.modules[name]
    __import__(first)
    if first == "pyro_vae":
        heavy = {"matplotlib", "arviz", "lightning", "pyro_vae.experiments", "pyro_vae.viz"}
        assert not heavy & set(sys.modules), heavy & set(sys.modules)
"""
    firsts = ["pyro_vae", "pyro_vae.experiments", "pyro_vae.viz", "pyro_vae.cli"]
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code, *firsts], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
