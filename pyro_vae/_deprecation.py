"""Old names of arguments and attributes, accepted for one release with a FutureWarning."""

import warnings

__all__ = ["moved_module", "renamed", "warn_renamed"]


def warn_renamed(where, old, new, stacklevel=3):
    """Warn (FutureWarning) that ``old`` in ``where`` is now called ``new``.

    ``stacklevel`` counts from this function: 3 points at the caller of the function
    that calls it.
    """
    warnings.warn(
        f"{where}: {old} is deprecated and will be removed in the next release; use {new}",
        FutureWarning,
        stacklevel=stacklevel,
    )


def renamed(where, old, old_value, new, new_value, default, check=None, stacklevel=2):
    """The value of a renamed keyword: ``new_value``, or ``old_value`` if it was given.

    Parameters
    ----------
    where : str
        The function, for the messages (``"ais()"``).
    old, new : str
        The old and the new keyword.
    old_value : object
        The old keyword's value; None when not given.
    new_value : object
        The new keyword's value.
    default : object
        The new keyword's default: a ``new_value`` other than it counts as given.
    check : callable, optional
        ``check(old_value, old)``, called on a given ``old_value`` before the warning,
        so that a bad value gets the ValueError that names the keyword the caller used.
    stacklevel : int, default 2
        As :func:`warnings.warn`'s, counted from the function that calls this one: 2
        points at its caller.

    Returns
    -------
    object
        ``old_value`` (with a FutureWarning) when given, else ``new_value``.

    Raises
    ------
    ValueError
        If both keywords were given, or from ``check``.
    """
    if old_value is None:
        return new_value
    if new_value is not default and (default is None or new_value != default):
        raise ValueError(
            f"Expected one of {new}= and its old name {old}= in {where} but got both "
            f"({new}={_short(new_value)}, {old}={_short(old_value)})"
        )
    if check is not None:
        check(old_value, old)
    warn_renamed(where, f"{old}=", f"{new}=", stacklevel=stacklevel + 2)
    return old_value


def _short(value):
    """A one-line description of a value: a tensor by its shape."""
    shape = getattr(value, "shape", None)
    return f"<{type(value).__name__} of shape {tuple(shape)}>" if shape is not None else repr(value)


def moved_module(old, *new):
    """A module ``__getattr__`` for a module that moved: each public name of the modules
    ``new`` (dotted paths, searched in order), with a FutureWarning naming its new home.

    Parameters
    ----------
    old : str
        The old module's name (its ``__name__``).
    *new : str
        The modules its names now live in.
    """
    import importlib

    def __getattr__(name):
        for path in new:
            module = importlib.import_module(path)
            if not name.startswith("__") and hasattr(module, name):
                value = getattr(module, name)
                home = getattr(value, "__module__", None) or path
                package = home.rpartition(".")[0]  # the public home where it exports the name
                if name in getattr(importlib.import_module(package), "__all__", ()):
                    home = package
                warn_renamed(old, name, f"{home}.{name}", stacklevel=3)
                return value
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    return __getattr__
