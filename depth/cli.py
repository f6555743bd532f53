"""One error style for every command: bad input is one line on stderr naming the culprit and
exit status 2; ``--debug`` adds the traceback.

    @command_errors                      # train.py, evaluate.py, python -m depth.predict / export
    def main(argv: list[str] | None = None) -> int: ...

Bad input is what the project raises for a file, a value or a key that cannot be used: config
errors and other ``ValueError``\\s, missing or unreadable files (``OSError``), missing keys
(``KeyError``: a calibration file without ``P_rect_02``), unreadable checkpoints
(:class:`depth.io.checkpoint.CheckpointError`), bad frames (:class:`data.frames.BadSampleError`,
:class:`data.samples.BadBatchError`) and the command's own input errors (``extra`` types). Anything
else is a defect and keeps its traceback (exit status 1).
"""
from __future__ import annotations

import argparse
import functools
import sys
import traceback
from collections.abc import Callable

from data.frames import BadSampleError
from data.samples import BadBatchError
from depth.io.checkpoint import CheckpointError

__all__ = ["BAD_INPUT", "EXIT_BAD_INPUT", "add_debug_flag", "command_errors", "error_line"]

EXIT_BAD_INPUT = 2
BAD_INPUT: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError, CheckpointError, BadSampleError,
                                              BadBatchError)
DEBUG_FLAG = "--debug"


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug``: show the traceback of a bad-input error (read by :func:`command_errors`)."""
    parser.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of an error")


def error_line(e: BaseException) -> str:
    """``error: <message>``; a ``KeyError``'s message without the quotes ``str()`` adds."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args and isinstance(e.args[0], str) else str(e)
    return f"error: {msg.strip() or type(e).__name__}"


def command_errors(main: Callable[..., int] | None = None, *, extra: tuple[type[BaseException], ...] = ()):
    """Wrap a command's ``main(argv=None) -> int``: a bad-input exception (``BAD_INPUT`` or
    ``extra``) prints :func:`error_line` (after the traceback with ``--debug`` in argv) and returns 2."""
    caught = BAD_INPUT + tuple(extra)

    def wrap(fn: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(fn)
        def run(argv: list[str] | None = None) -> int:
            args = sys.argv[1:] if argv is None else list(argv)
            try:
                return fn(argv)
            except caught as e:
                if DEBUG_FLAG in args:
                    traceback.print_exc()
                print(error_line(e), file=sys.stderr, flush=True)
                return EXIT_BAD_INPUT
        return run

    return wrap(main) if main is not None else wrap
