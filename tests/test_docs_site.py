"""The docs site's inputs that can break without a Sphinx build: the vendored intersphinx
inventories (``docs/_scripts/inventories.py``) and the README sections the user guide's
pages include. CI's ``sphinx-build -W`` checks the rest."""

import pathlib
import re

import pytest
from _scripts import load_script

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Named in our docs, but not documented on the upstream sites (so not in the inventories).
UNDOCUMENTED_UPSTREAM = {"pyro.set_rng_seed", "pyro.util.get_rng_state"}


def _inventories():
    return load_script(ROOT / "docs" / "_scripts" / "inventories.py")


def _external_targets():
    """Every Pyro, PyTorch, ArviZ and NumPy object a role in our docstrings or pages names."""
    role = re.compile(
        r":(?:class|func|meth|mod|attr|obj|data|exc):`~?((?:pyro|torch|arviz|numpy)\.[\w.]+)`"
    )
    files = [*ROOT.glob("pyro_vae/**/*.py"), *ROOT.glob("docs/*.md"), *ROOT.glob("examples/*.py")]
    return {name for f in files for name in role.findall(f.read_text())}


def test_every_external_object_our_docs_name_is_in_the_inventories():
    inventories = _inventories()
    listed = {name for entries in inventories.ENTRIES.values() for name, _, _ in entries}
    targets = _external_targets()
    assert len(targets) > 20  # the scan finds the references
    assert targets - listed - UNDOCUMENTED_UPSTREAM == set()


def test_inventories_load_back_with_sphinx(tmp_path):
    pytest.importorskip("sphinx", reason="needs the docs extra")
    inventories = _inventories()
    counts = inventories.verify(pathlib.Path(inventories.write(tmp_path)[0]).parent)
    assert set(counts) == {"pyro", "torch", "arviz", "numpy", "python"}
    assert min(counts.values()) >= 4


def test_guide_pages_include_readme_sections_that_exist():
    readme = (ROOT / "README.md").read_text()
    markers = []
    for page in (ROOT / "docs" / "guide").glob("*.md"):
        markers += re.findall(r'^(?:start-after|end-before): "([^"]+)"$', page.read_text(), re.M)
    assert len(markers) >= 10
    for marker in markers:
        assert readme.count(marker + "\n") == 1, marker
