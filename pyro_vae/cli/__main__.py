"""``python -m pyro_vae.cli``: the ``pyro-vae`` command (run only as ``__main__``)."""

if __name__ == "__main__":  # importing it (Sphinx's autosummary does) runs nothing
    from . import main

    raise SystemExit(main())
