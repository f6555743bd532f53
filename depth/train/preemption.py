"""Stop requests: SIGTERM, SIGUSR1 (SLURM's warning before the time limit, ``--signal=USR1@120``)
and SIGINT (Ctrl-C) ask the trainer to stop after the current optimiser step.

:class:`StopRequest` only records the first signal (a handler never interrupts the step or a
checkpoint being written); :meth:`depth.train.trainer.Trainer.fit` polls it after every step --
the ranks of a multi-process run agree on it in the step's collective, so all of them stop at the
same step -- and rank 0 writes a checkpoint of that step (atomically) before ``train.py`` exits 0.
A second SIGTERM/SIGUSR1 is ignored; a second Ctrl-C raises ``KeyboardInterrupt`` as usual (the
checkpoint being written, if any, is a temp file until complete, so the previous one stays).
"""
from __future__ import annotations

import signal
import threading

__all__ = ["STOP_SIGNALS", "StopRequest"]

STOP_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGTERM", "SIGUSR1", "SIGINT")) if s is not None)


class StopRequest:
    """The first stop signal received while installed (:meth:`install` / use as a context manager)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def request(self, signum: int = signal.SIGTERM) -> None:
        """Record a stop request (what the signal handlers call)."""
        if self.signum is None:
            self.signum = int(signum)

    def _handle(self, signum, frame) -> None:
        self.request(signum)
        if signum == signal.SIGINT:  # the next Ctrl-C aborts as usual
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def install(self) -> StopRequest:
        """Handle :data:`STOP_SIGNALS` (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def uninstall(self) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous.clear()

    def __enter__(self) -> StopRequest:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()
