"""Write the small, vendored Sphinx (intersphinx) inventories in ``docs/_inventories``.

The documentation is built without network access, so ``docs/conf.py`` cannot download
the ``objects.inv`` of Pyro, PyTorch, ArviZ, NumPy and Python. This script writes a small
inventory for each of them instead: only the external objects that our docs and docstrings
reference (``:class:``/``:func:``/``:meth:``/``:mod:`` roles, numpydoc Parameters/Returns
types, Raises sections) and the calls made in ``examples/plot_*.py`` that sphinx-gallery
links to the documentation. Each entry is ``(name, "domain:role", uri)``, the ``uri``
relative to the project's base URL in :data:`PROJECTS` (paste that URL into
``intersphinx_mapping``); as in an inventory, ``$`` in the uri stands for the name
(``"generated/torch.save.html#$"``). Public aliases (``pyro.infer.SVI``) sit beside the names the
upstream site documents (``pyro.infer.svi.SVI``) and point to the same anchor.

Run ``python docs/_scripts/inventories.py [FOLDER]`` (default ``docs/_inventories``) after
editing :data:`ENTRIES`; it writes ``FOLDER/<project>.inv`` (Sphinx inventory version 2,
zlib-compressed, deterministic) and reads every file back with Sphinx's own loader
(:meth:`sphinx.util.inventory.InventoryFile.loads`). ``python -m sphinx.ext.intersphinx
docs/_inventories/pyro.inv`` prints one. Sphinx 9's own writer
(``InventoryFile.dump``) needs a built environment and builder, so :func:`inventory_bytes`
writes the same format by hand, as that writer does (``-`` for a display name equal to
the name).

Where each URL pattern was checked
----------------------------------
pyro (https://docs.pyro.ai/en/stable/)
    The ``docs/source/*.rst`` of pyro-ppl/pyro (commit ff6ae1c, release 1.9.1): the page
    of each object is the rst file whose ``automodule``/``autoclass``/``autofunction``
    documents it, and its anchor is the dotted name written there, e.g.
    ``inference_algos.rst`` ``.. automodule:: pyro.infer.svi`` gives
    ``inference_algos.html#pyro.infer.svi.SVI``; ``mcmc.rst`` (``pyro.infer.mcmc.txt``)
    ``.. autoclass:: pyro.infer.mcmc.api.MCMC`` and ``pyro.infer.mcmc.NUTS``;
    ``poutine.rst`` ``.. automodule:: pyro.poutine.handlers`` and
    ``.. autoclass:: pyro.poutine.Trace``; ``optimization.rst`` (``pyro.optim.txt``)
    ``.. automodule:: pyro.optim.pytorch_optimizers`` (``Adam`` is a function there);
    ``distributions.rst`` ``.. automodule:: pyro.distributions.torch``, whose generated
    docstring holds ``.. autoclass:: pyro.distributions.Normal`` etc.; ``primitives.rst``,
    ``parameters.rst``, ``ops.rst``, ``settings.rst``, ``infer.autoguide.rst``. Every
    anchor was then confirmed in the ``objects.inv`` of a local Sphinx build of those rst
    files against the installed pyro-ppl 1.9.2; page addresses such as
    https://docs.pyro.ai/en/stable/optimization.html were found with the docs search.
    Two entries are NOT in Pyro's own inventory (it has no ``pyro.poutine`` or
    ``pyro.distributions.transforms`` module target) and point to the page and section
    instead: ``pyro.poutine`` -> ``poutine.html``, ``pyro.distributions.transforms`` ->
    ``distributions.html#transforms``. ``pyro.set_rng_seed`` and ``pyro.util.*`` are not
    documented on docs.pyro.ai and are left out.
torch (https://docs.pytorch.org/docs/stable/)
    Pages found with the docs search at that address: ``generated/torch.manual_seed.html``,
    ``generated/torch.Generator.html``, ``generated/torch.nn.Module.html``,
    ``generated/torch.no_grad.html``, ``generated/torch.randperm.html``,
    ``generated/torch.randn.html``, ``generated/torch.set_num_threads.html``,
    ``generated/torch.save.html``, ``generated/torch.load.html``, ``random.html``
    (``torch.random.fork_rng``, ``torch.random.manual_seed``), and
    ``generated/torch.Generator.md`` linking ``../tensors.html#torch.Tensor``. Sources in
    pytorch/pytorch ``docs/source``: ``optim.md`` (``autosummary`` of ``Adam`` under
    ``torch.optim`` into ``generated/``), ``data.md`` (``autoclass:: DataLoader`` under
    ``torch.utils.data`` and ``autoclass:: torch.utils.data.distributed.DistributedSampler``
    on ``data.html``), ``tensor_attributes.rst`` (``.. class:: dtype``/``device`` under
    ``currentmodule:: torch``).
arviz (https://python.arviz.org/en/v0.23.0/)
    ``stable`` on python.arviz.org is ArviZ 1.x since v1.0.0 (2026-03-02), whose API
    differs, so the base is the versioned 0.23 site; ArviZ's own arviz-plots gallery links
    ``https://python.arviz.org/en/v0.23.0/api/generated/arviz.plot_lm.html``. Anchors from
    ``doc/source/api/{data,diagnostics,inference_data,plots,stats}.rst`` at tags v0.23.0
    and v0.23.4 (identical): ``autosummary`` under ``currentmodule:: arviz`` into
    ``api/generated/``, confirmed in a local Sphinx build of those files against the
    installed arviz 0.23.4.
numpy (https://numpy.org/doc/stable/)
    ``reference/generated/numpy.ndarray.html#numpy.ndarray`` (docs search, numpy.org
    devdocs); numpy/numpy ``doc/source/reference/random/generator.rst``
    (``autofunction:: default_rng`` and ``autoclass:: Generator`` under
    ``currentmodule:: numpy.random``, page ``reference/random/generator.html``, found with
    the docs search).
python (https://docs.python.org/3/)
    python/cpython ``Doc/library``: ``functions.rst`` (``.. class:: int``/``float``/
    ``bool``/``object``/``slice``, ``.. function:: callable``; its ``dict``/``list``/
    ``tuple``/``str`` entries are ``:noindex:``, so those live in ``stdtypes.rst``),
    ``constants.rst`` (``.. data:: None``), ``exceptions.rst``, ``os.rst``
    (``.. class:: PathLike``), ``pathlib.rst``, ``dataclasses.rst``,
    ``concurrent.futures.rst`` (``.. class:: ProcessPoolExecutor``), ``argparse.rst``
    (``.. method:: ArgumentParser.add_argument``).
"""

from __future__ import annotations

import os
import re
import sys
import zlib

from pyro_vae._io import atomic_path

#: project -> (name written in the inventory header, version, base URL the URIs are
#: relative to, i.e. the first element of its ``intersphinx_mapping`` entry).
PROJECTS = {
    "pyro": ("Pyro", "1.9", "https://docs.pyro.ai/en/stable/"),
    "torch": ("PyTorch", "stable", "https://docs.pytorch.org/docs/stable/"),
    "arviz": ("ArviZ", "0.23", "https://python.arviz.org/en/v0.23.0/"),
    "numpy": ("NumPy", "stable", "https://numpy.org/doc/stable/"),
    "python": ("Python", "3", "https://docs.python.org/3/"),
}

_CLS, _FN, _METH, _MOD = "py:class", "py:function", "py:method", "py:module"
_EXC, _DATA, _TERM = "py:exception", "py:data", "std:term"

_INFER = "inference_algos.html#"
_POUTINE = "poutine.html#"


def _alias(names, role, uri):
    """The same target under several names (the documented one and its public aliases)."""
    return [(name, role, uri) for name in names]


#: project -> [(name, "domain:role", uri relative to the project's base URL), ...]
ENTRIES = {
    # Base: https://docs.pyro.ai/en/stable/ (Pyro 1.9)
    "pyro": [
        *_alias(["pyro.infer.svi.SVI", "pyro.infer.SVI"], _CLS, _INFER + "pyro.infer.svi.SVI"),
        *_alias(
            ["pyro.infer.svi.SVI.step", "pyro.infer.SVI.step"],
            _METH,
            _INFER + "pyro.infer.svi.SVI.step",
        ),
        *_alias(["pyro.infer.elbo.ELBO", "pyro.infer.ELBO"], _CLS, _INFER + "pyro.infer.elbo.ELBO"),
        *_alias(
            ["pyro.infer.trace_elbo.Trace_ELBO", "pyro.infer.Trace_ELBO"],
            _CLS,
            _INFER + "pyro.infer.trace_elbo.Trace_ELBO",
        ),
        *_alias(
            ["pyro.infer.trace_elbo.JitTrace_ELBO", "pyro.infer.JitTrace_ELBO"],
            _CLS,
            _INFER + "pyro.infer.trace_elbo.JitTrace_ELBO",
        ),
        *_alias(
            [
                "pyro.infer.trace_mean_field_elbo.TraceMeanField_ELBO",
                "pyro.infer.TraceMeanField_ELBO",
            ],
            _CLS,
            _INFER + "pyro.infer.trace_mean_field_elbo.TraceMeanField_ELBO",
        ),
        *_alias(
            ["pyro.infer.renyi_elbo.RenyiELBO", "pyro.infer.RenyiELBO"],
            _CLS,
            _INFER + "pyro.infer.renyi_elbo.RenyiELBO",
        ),
        *_alias(
            ["pyro.infer.predictive.Predictive", "pyro.infer.Predictive"],
            _CLS,
            _INFER + "pyro.infer.predictive.Predictive",
        ),
        *_alias(
            ["pyro.infer.mcmc.api.MCMC", "pyro.infer.mcmc.MCMC", "pyro.infer.MCMC"],
            _CLS,
            "mcmc.html#pyro.infer.mcmc.api.MCMC",
        ),
        *_alias(
            ["pyro.infer.mcmc.NUTS", "pyro.infer.NUTS"], _CLS, "mcmc.html#pyro.infer.mcmc.NUTS"
        ),
        ("pyro.infer.autoguide.AutoNormal", _CLS, "infer.autoguide.html#$"),
        *_alias(
            ["pyro.primitives.sample", "pyro.sample"], _FN, "primitives.html#pyro.primitives.sample"
        ),
        *_alias(
            ["pyro.primitives.param", "pyro.param"], _FN, "primitives.html#pyro.primitives.param"
        ),
        *_alias(
            ["pyro.primitives.module", "pyro.module"], _FN, "primitives.html#pyro.primitives.module"
        ),
        *_alias(
            ["pyro.primitives.plate", "pyro.plate"], _CLS, "primitives.html#pyro.primitives.plate"
        ),
        *_alias(
            ["pyro.primitives.get_param_store", "pyro.get_param_store"],
            _FN,
            "primitives.html#pyro.primitives.get_param_store",
        ),
        *_alias(
            ["pyro.primitives.clear_param_store", "pyro.clear_param_store"],
            _FN,
            "primitives.html#pyro.primitives.clear_param_store",
        ),
        ("pyro.settings.set", _FN, "settings.html#$"),
        # Not in Pyro's own inventory (no module target on that page): the page itself.
        ("pyro.poutine", _MOD, "poutine.html"),
        *_alias(
            ["pyro.poutine.handlers.trace", "pyro.poutine.trace"],
            _FN,
            _POUTINE + "pyro.poutine.handlers.trace",
        ),
        *_alias(
            ["pyro.poutine.handlers.scale", "pyro.poutine.scale"],
            _FN,
            _POUTINE + "pyro.poutine.handlers.scale",
        ),
        *_alias(
            ["pyro.poutine.handlers.mask", "pyro.poutine.mask"],
            _FN,
            _POUTINE + "pyro.poutine.handlers.mask",
        ),
        *_alias(
            ["pyro.poutine.handlers.uncondition", "pyro.poutine.uncondition"],
            _FN,
            _POUTINE + "pyro.poutine.handlers.uncondition",
        ),
        ("pyro.poutine.Trace", _CLS, _POUTINE + "pyro.poutine.Trace"),
        *_alias(
            ["pyro.optim.pytorch_optimizers.Adam", "pyro.optim.Adam"],
            _FN,
            "optimization.html#pyro.optim.pytorch_optimizers.Adam",
        ),
        ("pyro.params.param_store.ParamStoreDict", _CLS, "parameters.html#$"),
        ("pyro.params.param_store.ParamStoreDict.scope", _METH, "parameters.html#$"),
        ("pyro.params.param_store.ParamStoreDict.save", _METH, "parameters.html#$"),
        ("pyro.params.param_store.ParamStoreDict.load", _METH, "parameters.html#$"),
        ("pyro.ops.integrator.velocity_verlet", _FN, "ops.html#$"),
        ("pyro.ops.dual_averaging.DualAveraging", _CLS, "ops.html#$"),
        ("pyro.ops.welford.WelfordCovariance", _CLS, "ops.html#$"),
        ("pyro.distributions.Normal", _CLS, "distributions.html#$"),
        ("pyro.distributions.Bernoulli", _CLS, "distributions.html#$"),
        ("pyro.distributions.MultivariateNormal", _CLS, "distributions.html#$"),
        ("pyro.distributions.TransformedDistribution", _CLS, "distributions.html#$"),
        ("pyro.distributions.MixtureSameFamily", _CLS, "distributions.html#$"),
        # distributions.rst: ".. autoclass:: pyro.distributions.MixtureOfDiagNormals"
        ("pyro.distributions.MixtureOfDiagNormals", _CLS, "distributions.html#$"),
        # Not in Pyro's own inventory (no module target): the "Transforms" section.
        ("pyro.distributions.transforms", _MOD, "distributions.html#transforms"),
        (
            "pyro.distributions.transforms.conditional_affine_autoregressive",
            _FN,
            "distributions.html#$",
        ),
        ("pyro.distributions.transforms.conditional_affine_coupling", _FN, "distributions.html#$"),
        ("pyro.distributions.transforms.conditional_spline", _FN, "distributions.html#$"),
    ],
    # Base: https://docs.pytorch.org/docs/stable/
    "torch": [
        ("torch.Tensor", _CLS, "tensors.html#$"),
        ("torch.device", _CLS, "tensor_attributes.html#$"),
        ("torch.dtype", _CLS, "tensor_attributes.html#$"),
        ("torch.Generator", _CLS, "generated/torch.Generator.html#$"),
        ("torch.nn.Module", _CLS, "generated/torch.nn.Module.html#$"),
        ("torch.nn.Module.state_dict", _METH, "generated/torch.nn.Module.html#$"),
        ("torch.optim.Adam", _CLS, "generated/torch.optim.Adam.html#$"),
        (
            "torch.optim.lr_scheduler.MultiStepLR",
            _CLS,
            "generated/torch.optim.lr_scheduler.MultiStepLR.html#$",
        ),
        ("torch.manual_seed", _FN, "generated/torch.manual_seed.html#$"),
        ("torch.random.manual_seed", _FN, "random.html#$"),
        ("torch.random.fork_rng", _FN, "random.html#$"),
        ("torch.no_grad", _CLS, "generated/torch.no_grad.html#$"),
        ("torch.randperm", _FN, "generated/torch.randperm.html#$"),
        ("torch.randn", _FN, "generated/torch.randn.html#$"),
        ("torch.set_num_threads", _FN, "generated/torch.set_num_threads.html#$"),
        ("torch.save", _FN, "generated/torch.save.html#$"),
        ("torch.load", _FN, "generated/torch.load.html#$"),
        ("torch.utils.data.DataLoader", _CLS, "data.html#$"),
        ("torch.utils.data.distributed.DistributedSampler", _CLS, "data.html#$"),
    ],
    # Base: https://python.arviz.org/en/v0.23.0/ (ArviZ 0.23; "stable" is ArviZ 1.x)
    "arviz": [
        ("arviz.InferenceData", _CLS, "api/generated/arviz.InferenceData.html#$"),
        *[
            (f"arviz.{name}", _FN, f"api/generated/arviz.{name}.html#arviz.{name}")
            for name in (
                "from_pyro",
                "from_netcdf",
                "summary",
                "ess",
                "rhat",
                "bfmi",
                "psislw",
                "plot_pair",
                "plot_rank",
                "plot_ppc",
                "plot_trace",
            )
        ],
    ],
    # Base: https://numpy.org/doc/stable/
    "numpy": [
        ("numpy.ndarray", _CLS, "reference/generated/numpy.ndarray.html#$"),
        ("numpy.random.Generator", _CLS, "reference/random/generator.html#$"),
        ("numpy.random.default_rng", _FN, "reference/random/generator.html#$"),
        # numpydoc writes "array_like" in a type as :term:`numpy:array_like`; the term is
        # in numpy/numpy doc/source/glossary.rst, its id Sphinx's make_id("term-array_like")
        ("array_like", _TERM, "glossary.html#term-array_like"),
    ],
    # Base: https://docs.python.org/3/
    "python": [
        *[
            (name, _CLS, f"library/functions.html#{name}")
            for name in ("int", "float", "bool", "object", "slice")
        ],
        ("callable", _FN, "library/functions.html#$"),
        *[
            (name, _CLS, f"library/stdtypes.html#{name}")
            for name in ("str", "list", "tuple", "dict")
        ],
        ("None", _DATA, "library/constants.html#$"),
        *[
            (name, _EXC, f"library/exceptions.html#{name}")
            for name in (
                "ValueError",
                "TypeError",
                "RuntimeError",
                "FileNotFoundError",
                "FloatingPointError",
                "NotImplementedError",
            )
        ],
        ("os.PathLike", _CLS, "library/os.html#$"),
        ("pathlib.Path", _CLS, "library/pathlib.html#$"),
        ("dataclasses.replace", _FN, "library/dataclasses.html#$"),
        ("concurrent.futures.ProcessPoolExecutor", _CLS, "library/concurrent.futures.html#$"),
        ("argparse.ArgumentParser", _CLS, "library/argparse.html#$"),
        ("argparse.ArgumentParser.add_argument", _METH, "library/argparse.html#$"),
        ("argparse.ArgumentParser.parse_args", _METH, "library/argparse.html#$"),
        # numpydoc writes "sequence", "iterable" and "mapping" in a type as glossary terms
        # (:term:`python:sequence`); CPython's Doc/glossary.rst
        ("sequence", _TERM, "glossary.html#term-sequence"),
        ("iterable", _TERM, "glossary.html#term-iterable"),
        ("mapping", _TERM, "glossary.html#term-mapping"),
    ],
}

_HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_FOLDER = os.path.join(os.path.dirname(_HERE), "_inventories")


def _check_entries(project, entries):
    seen = set()
    for name, role, uri in entries:
        if (role, name) in seen:
            raise ValueError(f"{project}: {role} {name} listed twice")
        seen.add((role, name))
        if not re.fullmatch(r"[a-z]+:[a-z]+", role) or re.search(r"\s", name + uri):
            raise ValueError(f"{project}: malformed entry {(name, role, uri)}")


def inventory_bytes(project):
    """The ``objects.inv`` of ``project``: Sphinx inventory version 2, as
    ``sphinx.util.inventory.InventoryFile.dump`` writes it."""
    title, version, _base = PROJECTS[project]
    entries = ENTRIES[project]
    _check_entries(project, entries)
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {title}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    lines = []
    for name, role, uri in sorted(entries, key=lambda e: (e[1], e[0])):
        priority = 0 if role == _MOD else 1
        lines.append(f"{name} {role} {priority} {uri} -\n")  # "-": displayed as the name
    return header.encode() + zlib.compress("".join(lines).encode(), 9)


def write(folder=DEFAULT_FOLDER):
    """Write ``folder/<project>.inv`` for every project of :data:`ENTRIES`; return the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for project in ENTRIES:
        path = os.path.join(folder, f"{project}.inv")
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # nothing half-written
            f.write(inventory_bytes(project))
        paths.append(path)
    return paths


def verify(folder=DEFAULT_FOLDER):
    """Read every inventory back with Sphinx's loader; check each entry's full URL."""
    from sphinx.util.inventory import InventoryFile

    for project, entries in ENTRIES.items():
        base = PROJECTS[project][2]
        with open(os.path.join(folder, f"{project}.inv"), "rb") as f:
            data = InventoryFile.loads(f.read(), uri=base).data
        loaded = {
            (role, name): item.uri for role, items in data.items() for name, item in items.items()
        }
        expected = {(role, name): base + uri.replace("$", name) for name, role, uri in entries}
        if loaded != expected:
            raise AssertionError(f"{project}.inv does not load back as written")
    return {project: len(entries) for project, entries in ENTRIES.items()}


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_FOLDER
    for path in write(out):
        print("wrote", os.path.relpath(path))
    try:
        counts = verify(out)
    except ImportError:
        print("sphinx is not installed: inventories not read back")
    else:
        print("read back with sphinx.util.inventory:", counts)
