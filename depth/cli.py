"""One error style for every command: bad input is one line on stderr naming the culprit and
exit status 2; ``--debug`` adds the traceback.

    @command_errors                      # train.py, evaluate.py, python -m depth.predict / export / convert
    def main(argv: list[str] | None = None) -> int: ...

    main = parse_then_run(parse, "depth.commands.predict")   # the parser here, the work imported after it

Bad input is :class:`common.errors.InputError` and its subclasses (the tree is drawn in
:mod:`common.errors`): config values, dataset files, checkpoints, flags. Anything else -- a bare
``ValueError``, ``KeyError`` or ``OSError`` included -- is a defect (a check that is missing) and
keeps its traceback (exit status 1).
"""
from __future__ import annotations

import argparse
import functools
import importlib
import sys
import traceback
from collections.abc import Callable

from common.errors import InputError

__all__ = ["BAD_INPUT", "EXIT_BAD_INPUT", "add_debug_flag", "command_errors", "error_line", "parse_then_run"]

EXIT_BAD_INPUT = 2
BAD_INPUT: tuple[type[BaseException], ...] = (InputError,)
DEBUG_FLAG = "--debug"


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug``: show the traceback of a bad-input error (read by :func:`command_errors`)."""
    parser.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of an error")


def error_line(e: BaseException) -> str:
    """``error: <message>`` (the exception's name when it has no message)."""
    return f"error: {str(e).strip() or type(e).__name__}"


def command_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a command's ``main(argv=None) -> int``: bad input (:data:`BAD_INPUT`) prints
    :func:`error_line` (after the traceback with ``--debug`` in argv) and returns 2."""
    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        args = sys.argv[1:] if argv is None else list(argv)
        try:
            return main(argv)
        except BAD_INPUT as e:
            if DEBUG_FLAG in args:
                traceback.print_exc()
            print(error_line(e), file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
    return run


def parse_then_run(parse: Callable[[list[str] | None], argparse.Namespace],
                   module: str | Callable[[argparse.Namespace], str]) -> Callable[..., int]:
    """A command's ``main(argv=None) -> int``: ``parse(argv)``, then ``module.run(args)`` -- the module
    (in ``depth/commands/``) imported only after parsing, so ``--help`` and a bad flag answer without
    importing torch. ``module`` may be a function of the parsed arguments naming the module (e.g.
    ``evaluate.py``: scoring saved predictions needs no model). This is the one place the project
    defers imports. Errors as :func:`command_errors`."""
    @command_errors
    def main(argv: list[str] | None = None) -> int:
        args = parse(argv)
        name = module if isinstance(module, str) else module(args)
        return importlib.import_module(name).run(args)
    return main
