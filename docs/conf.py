"""Sphinx configuration of the pyro_vae documentation site.

Build: ``pip install -c constraints.txt -e ".[docs]"`` then
``sphinx-build -W -b html docs docs/_build/html``.
"""

import os
import re
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("."))  # gallery_argv

import torch  # noqa: E402

import pyro_vae  # noqa: E402

# The gallery and the theory page run in this process: one torch thread, as the CLI, runs
# these small networks about 3 times faster than two on 2 cores (benchmarks/bench_threads.py).
torch.set_num_threads(pyro_vae.DEFAULT_THREADS)

project = "pyro_vae"
author = "the pyro_vae developers"
copyright = "2026, the pyro_vae developers"
release = pyro_vae.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
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

# API reference: numpydoc renders the docstrings; autosummary writes one page per name.
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

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
    sys.path.insert(0, os.path.join(app.srcdir, "_scripts"))
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


def setup(app):
    app.connect("builder-inited", _computed_pages)
    app.connect("autodoc-process-docstring", _escape_initials)
