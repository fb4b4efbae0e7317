"""The project's scripts (benchmarks, gallery examples, docs helpers) as modules, for tests."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_script(path):
    """The module of the script at ``path`` (relative to the repository root), executed."""
    path = ROOT / path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
