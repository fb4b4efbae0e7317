"""Sphinx configuration of the pyro_vae documentation site.

Build: ``pip install -c constraints.txt -e ".[docs]"`` then
``sphinx-build -W -b html docs docs/_build/html``.
"""

import importlib
import os
import re
import sys

from sphinx.ext import autosummary as _autosummary
from sphinx.ext.autosummary import generate as _autosummary_generate

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("."))  # gallery_argv

import torch  # noqa: E402

import pyro_vae  # noqa: E402

# The gallery and the theory page run in this process: one torch thread, as the CLI, runs
# these small networks about 3 times faster than two on 2 cores (benchmarks/bench_threads.py).
torch.set_num_threads(pyro_vae.train.DEFAULT_THREADS)

project = "pyro_vae"
author = "the pyro_vae developers"
copyright = "2026, the pyro_vae developers"
release = pyro_vae.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    # MathJax 3 served from the built site, not a CDN: the math renders offline too.
    "sphinx-mathjax-offline",
    "numpydoc",
    "myst_parser",
    "sphinx_copybutton",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_scripts", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip"]  # fmt: skip

# The gallery: every examples/plot_*.py runs during the build with the budget of
# gallery_argv.BUDGETS and its figures are shown (as NumPyro's, sphinx-gallery).
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "reset_argv": "gallery_argv.reset_argv",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "matplotlib_animations": False,
}

# Links to Pyro, PyTorch, ArviZ, NumPy and Python. The build has no network, so their
# inventories are small ones written from docs/_scripts/inventories.py (each entry's page
# and anchor checked against the upstream docs' sources) when the build starts.
sys.path.insert(0, os.path.abspath("_scripts"))
import inventories  # noqa: E402

intersphinx_mapping = {
    project: (base, os.path.join("_inventories", f"{project}.inv"))
    for project, (_title, _version, base) in inventories.PROJECTS.items()
}
intersphinx_timeout = 5

# API reference: numpydoc renders the docstrings; autosummary writes one page per module.
autosummary_generate = True
templates_path = ["_templates"]


def _exports():
    """Each subpackage's exports, by the name they are documented under (their module's),
    relative to the subpackage.

    A subpackage's page (``_templates/autosummary/module.rst``) lists its ``__all__`` and
    links each name to its module's page, so every object is documented once.
    """
    exports = {}
    for package in ("pyro_vae.models", "pyro_vae.train", "pyro_vae.infer",
                    "pyro_vae.experiments", "pyro_vae.viz"):  # fmt: skip
        module = importlib.import_module(package)
        names = []
        for name in module.__all__:
            obj = getattr(module, name)
            homes = [m for m in sorted(sys.modules) if m.startswith(package + ".")
                     and getattr(sys.modules[m], name, None) is obj
                     and name in getattr(sys.modules[m], "__all__", ())]  # fmt: skip
            home = obj.__module__ if isinstance(obj, type) or callable(obj) else None
            home = home if home in homes else (homes or [package])[0]
            names.append(f"{home}.{name}".removeprefix(package + "."))  # relative to it
        exports[package] = names
    return exports


autosummary_context = {"exports": _exports()}


def _submodules_first(import_by_name):
    """``pyro_vae.infer.ais`` (and ``pyro_vae.experiments.compare``) is a module whose
    package exports the function of the same name; autosummary reads a dotted name as an
    attribute first, which would give the module's page to the function. Here a name
    that is a pyro_vae module is read as that module."""

    def wrapped(name, prefixes=(None,)):
        for prefix in prefixes:
            full = f"{prefix}.{name}" if prefix else name
            if full.startswith("pyro_vae.") and full in sys.modules:
                return full, sys.modules[full], None, full
        return import_by_name(name, prefixes)

    return wrapped


_autosummary.import_by_name = _autosummary_generate.import_by_name = _submodules_first(
    _autosummary.import_by_name
)
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Parameter and return types link to their documentation (here or through intersphinx).
numpydoc_xref_param_type = True
numpydoc_xref_aliases = {
    "Tensor": "torch.Tensor",
    "torch.Tensor": "torch.Tensor",
    "InferenceData": "arviz.InferenceData",
    "ndarray": "numpy.ndarray",
    "Path": "pathlib.Path",
    "bool": "bool",  # numpydoc's default is a label the vendored Python inventory lacks
    # the package's own classes, named short in the types of its docstrings
    "pyro_vae.BaseVAE": "pyro_vae.models.base.BaseVAE",
    "VAE": "pyro_vae.models.vae.VAE",
    "LinearGaussianVAE": "pyro_vae.models.linear_gaussian.LinearGaussianVAE",
    "Dataset": "pyro_vae.data.Dataset",
    "TrainConfig": "pyro_vae.train.config.TrainConfig",
    "TrainingState": "pyro_vae.train.state.TrainingState",
    "EarlyStopping": "pyro_vae.train.state.EarlyStopping",
    "Evaluation": "pyro_vae.infer.evaluation.Evaluation",
    "LocalGuides": "pyro_vae.infer.local.LocalGuides",
    "QuadraturePosterior": "pyro_vae.infer.quadrature.QuadraturePosterior",
    "GuideCheck": "pyro_vae.experiments.guide_check.GuideCheck",
    "DEFAULT_OBJECTIVES": "pyro_vae.experiments.compare.DEFAULT_OBJECTIVES",
    **{
        name: f"pyro_vae.results.{name}"
        for name in ("GapRow", "Pair", "SandwichRow", "ObjectiveRow", "BetaRow", "Agreement")
    },
}
# prose in the types ("object with model and guide", "one of ...") stays text
numpydoc_xref_ignore = {"optional", "default", "or", "of", "shape", "and", "one", "a", "the",
                        "to", "with"}  # fmt: skip

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
# The guide pages include sections of the README, whose "###" subsections follow the page's
# own "#" title; MyST's check of consecutive heading levels does not apply to them.
suppress_warnings = ["myst.header"]

html_theme = "pydata_sphinx_theme"
html_title = f"pyro_vae {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 5,
    "icon_links": [],
}
html_static_path = []


def _computed_pages(app):
    """Pages whose content the build computes (not pasted): the bad-inputs table and the
    theory page (its models are trained here; ``PYRO_VAE_DOCS_THEORY=0`` skips it and
    keeps the last computed page)."""
    import bad_inputs
    import theory

    computed = os.path.join(app.srcdir, "computed")
    bad_inputs.write(os.path.join(computed, "bad_inputs.md"))
    page = os.path.join(computed, "theory.md")
    if os.environ.get("PYRO_VAE_DOCS_THEORY") != "0" or not os.path.exists(page):
        theory.write(computed)


_INITIAL_ITEM = re.compile(r"^(\s*\d+\.\s+)([A-Z])\.(\s)")


def _escape_initials(app, what, name, obj, options, lines):
    """A numbered reference that opens with an initial ("1. R. M. Neal, ...") is read by
    docutils as a second, alphabetic list starting at R; escape the initial's period."""
    lines[:] = [_INITIAL_ITEM.sub(r"\1\2\\.\3", line) for line in lines]


def _write_inventories(app, config):
    """The vendored inventories, written before intersphinx reads them (builder-inited)."""
    inventories.write(os.path.join(app.srcdir, "_inventories"))


def setup(app):
    app.connect("config-inited", _write_inventories)
    app.connect("builder-inited", _computed_pages)
    app.connect("autodoc-process-docstring", _escape_initials)
