"""File writing and provenance: atomic writes (a temporary file, then a rename) and
the versions of the libraries behind a result."""

import contextlib
import os
import platform
import tempfile

__all__ = ["atomic_path", "versions"]


def versions():
    """Versions of Python and of the libraries behind a result (dict of str)."""
    from importlib.metadata import PackageNotFoundError, version

    from ._version import __version__

    found = {"python": platform.python_version(), "pyro_vae": __version__}
    for name in ("torch", "pyro-ppl", "arviz", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched, so
    nothing half-written is ever visible under ``path``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; give the file ordinary permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
