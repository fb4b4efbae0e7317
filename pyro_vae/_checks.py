"""Argument checks shared by the public entry points (messages name the argument)."""

import numbers

__all__ = ["check_int", "is_int"]


def is_int(value):
    """Whether ``value`` is an integer (Python or NumPy), not a bool (bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name, value, minimum=1):
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer ≥ ``minimum``."""
    if not is_int(value) or value < minimum:
        bound = "> 0" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"Expected {name} to be an integer {bound} but got {value!r}")
