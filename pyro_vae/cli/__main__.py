"""``python -m pyro_vae.cli``: the ``pyro-vae`` command."""

from . import main

if __name__ == "__main__":  # importing it (Sphinx's autosummary does) runs nothing
    raise SystemExit(main())
