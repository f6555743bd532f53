"""Convert between Monodepth2 model folders and this project's checkpoints.

    python -m depth.convert MONODEPTH2_FOLDER --output model.pt
    python -m depth.convert CHECKPOINT_OR_RUN --output FOLDER --to monodepth2

What is converted and how: :mod:`depth.io.convert` and docs/monodepth2.md. Exit status 2 for a bad
input (nothing is written then).
"""
from __future__ import annotations

import argparse
import sys

from depth.io.convert import FORMATS, convert

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m depth.convert", description="Convert between Monodepth2 model folders and this project's checkpoints.",
                                epilog="See docs/monodepth2.md.")
    p.add_argument("src", help="a Monodepth2 model folder, or a checkpoint file / run folder of this project")
    p.add_argument("--output", required=True, help="the checkpoint file, or the new Monodepth2 folder, to write")
    p.add_argument("--to", choices=FORMATS, default=None, help="output format (default: the other format of SRC)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        lines = convert(args.src, args.output, args.to)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
