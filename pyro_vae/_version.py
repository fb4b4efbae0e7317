"""The package version (one place: setup.cfg reads it, results record it)."""

__version__ = "0.4.0"
