"""Torch's intra-op thread count, set for the duration of a call and restored."""

import contextlib

import torch

from ._checks import check_int

__all__ = ["DEFAULT_THREADS", "torch_threads"]

DEFAULT_THREADS = 1
"""Threads of ``pyro-vae`` and :func:`pyro_vae.experiments.compare.compare` unless told otherwise.

Chosen from ``benchmarks/bench_threads.py`` on a 2-core machine: for networks this
small one thread is as fast as two on an idle machine and several times faster, and far
more predictable, when another process competes for the cores (see the README)."""


@contextlib.contextmanager
def torch_threads(num_threads):
    """Run the block with ``torch.set_num_threads(num_threads)``; restore afterwards.

    Parameters
    ----------
    num_threads : int or None
        Threads for torch's intra-op parallelism; None leaves the setting alone.

    Raises
    ------
    ValueError
        If ``num_threads`` is neither None nor an integer > 0.
    """
    if num_threads is None:
        yield torch.get_num_threads()
        return
    check_int("num_threads", num_threads)
    before = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield num_threads
    finally:
        torch.set_num_threads(before)
