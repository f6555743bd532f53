"""Export the depth network to a single ONNX file and verify it against PyTorch with onnxruntime.

    python -m depth.export --checkpoint CKPT --output model.onnx [--height H --width W]
        [--output-kind disparity|depth] [--dynamic-batch] [--opset N] [--image PATH]

The graph, its metadata and the exporter: :mod:`depth.io.onnx_file`. After writing, the file is
**always** checked: every node must be a standard ONNX operator, onnxruntime (CPU) must load it,
and its outputs must match the PyTorch model to ``--atol`` (default 1e-4, max abs difference) on
random input and on a check image (``--image``, else a smooth colour ramp). Exit code 0 when the
check passes, 1 when it fails, 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import sys

from depth.cli import add_debug_flag, parse_then_run
from depth.io.formats import ONNX_ATOL, ONNX_OPSET, ONNX_OUTPUT_KINDS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m depth.export",
        description="Export the depth network to ONNX (one file) and verify it with onnxruntime.",
        epilog="The graph takes 'image' (N x 3 x H x W float32 RGB in [0, 1]; normalisation is inside) "
               "and returns N x 1 x H x W scaled disparity (1/depth) or depth. The export is always "
               "checked against PyTorch; exit code 1 when the max abs difference exceeds --atol.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file, run folder (its newest checkpoint) or Monodepth2 model folder")
    p.add_argument("--out", "--output", dest="output", required=True, help="the .onnx file to write")
    p.add_argument("--height", type=int, default=None, help="input height (default: the training height)")
    p.add_argument("--width", type=int, default=None, help="input width (default: the training width)")
    p.add_argument("--output-kind", choices=ONNX_OUTPUT_KINDS, default="disparity",
                   help="disparity: scaled disparity 1/depth (default); depth: 1/disparity")
    p.add_argument("--dynamic-batch", action="store_true", help="make the batch dimension dynamic (default: 1)")
    p.add_argument("--opset", type=int, default=ONNX_OPSET, help=f"ONNX opset (default {ONNX_OPSET})")
    p.add_argument("--image", default=None,
                   help="real image for the check (default: a smooth colour ramp; random input is always checked)")
    p.add_argument("--atol", type=float, default=ONNX_ATOL, help=f"max abs difference allowed (default {ONNX_ATOL:g})")
    add_debug_flag(p)
    return p


main = parse_then_run(lambda argv: _parser().parse_args(argv), "depth.commands.export")


if __name__ == "__main__":
    sys.exit(main())
