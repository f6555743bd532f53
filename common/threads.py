"""Keeping torch's CPU thread count across numba's parallel kernels.

numba's OpenMP threading layer sets the calling thread's OpenMP thread count to numba's own
(``NUMBA_NUM_THREADS``, by default every core of the machine) when it starts its threads, at the
first ``parallel=True`` kernel of the process, and torch's CPU kernels run on that same OpenMP
runtime: after one evaluation or one synthetic render, a process limited to ``OMP_NUM_THREADS=1``
(or ``torch.set_num_threads``) would train on every core. :func:`keep_torch_threads` around each
such kernel restores torch's count, whichever kernel comes first.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["keep_torch_threads"]


@contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Run the block, then give torch back the intra-op thread count it had before it. Does nothing
    (and imports nothing) in a process that has not imported torch: there is nothing to keep."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if torch is not None and torch.get_num_threads() != before:
            torch.set_num_threads(before)
