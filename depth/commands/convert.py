"""``python -m depth.convert`` once its arguments are parsed (the command's docstring: depth/convert.py)."""
from __future__ import annotations

from depth.io.convert import convert

__all__ = ["run"]


def run(args) -> int:
    """Convert ``args.src`` into ``args.output`` (``--to``: the format) and print what was written."""
    print("\n".join(convert(args.src, args.output, args.to)))
    return 0
