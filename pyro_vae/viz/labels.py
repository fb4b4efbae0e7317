"""Names and units shared by the figures and the report's tables, so that they agree."""

__all__ = ["UNITS", "estimate_label"]

UNITS = "(nats per data point)"
"""Axis-label suffix of every per-point quantity in nats."""

_LABELS = {
    "elbo": "ELBO",
    "log_px": "log p(x)",
    "gap": "gap",
    "kl": "KL(q‖p(z))",
    "reconstruction": "reconstruction",
}


def estimate_label(name: str) -> str:
    """Display name of an estimate: ``"iwae_5"`` -> ``"IWAE-5"``, ``"kl"`` -> ``"KL(q‖p(z))"``.

    Used by the report's tables (:mod:`pyro_vae.experiments.report`) and the figures.
    """
    if name.startswith("iwae_"):
        return f"IWAE-{name[len('iwae_') :]}"
    return _LABELS.get(name, name)
