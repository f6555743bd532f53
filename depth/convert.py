"""Convert between Monodepth2 model folders and this project's checkpoints.

    python -m depth.convert MONODEPTH2_FOLDER --output model.pt
    python -m depth.convert CHECKPOINT_OR_RUN --output FOLDER --to monodepth2

What is converted and how: :mod:`depth.io.convert` and docs/monodepth2.md. Exit status 2 for a bad
input (nothing is written then).
"""
from __future__ import annotations

import argparse
import sys

from depth.cli import add_debug_flag, parse_then_run
from depth.io.formats import CONVERT_FORMATS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m depth.convert", description="Convert between Monodepth2 model folders and this project's checkpoints.",
                                epilog="See docs/monodepth2.md.")
    p.add_argument("src", help="a Monodepth2 model folder, or a checkpoint file / run folder of this project")
    p.add_argument("--out", "--output", dest="output", required=True, help="the checkpoint file, or the new Monodepth2 folder, to write")
    p.add_argument("--to", choices=CONVERT_FORMATS, default=None, help="output format (default: the other format of SRC)")
    add_debug_flag(p)
    return p


main = parse_then_run(lambda argv: _parser().parse_args(argv), "depth.commands.convert")


if __name__ == "__main__":
    sys.exit(main())
