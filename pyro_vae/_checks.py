"""Argument checks shared by the public entry points (messages name the argument)."""

import math
import numbers

__all__ = ["check_beta", "check_int", "is_int"]


def is_int(value):
    """Whether ``value`` is an integer (Python or NumPy), not a bool (bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name, value, minimum=1):
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer ≥ ``minimum``."""
    if not is_int(value) or value < minimum:
        bound = "> 0" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"Expected {name} to be an integer {bound} but got {value!r}")


def check_beta(name, value):
    """A KL weight β as a float, checked.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : float
        β: a real number (Python or NumPy), finite and ≥ 0.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Naming ``name``, if ``value`` is negative, NaN, infinite, a bool, a tensor or
        not a number.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"Expected {name} to be a finite number >= 0 but got {value!r}")
    return float(value)
