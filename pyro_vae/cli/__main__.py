"""``python -m pyro_vae.cli``: the ``pyro-vae`` command."""

from . import main

raise SystemExit(main())
