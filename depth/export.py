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
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from depth.cli import add_debug_flag, command_errors
from depth.config import to_dict
from depth.io.onnx_file import (
    DEFAULT_ATOL,
    DEFAULT_OPSET,
    INPUT_NAME,
    OUTPUT_KINDS,
    DepthExportModel,
    UnsupportedOpError,
    check_image,
    check_onnx_ops,
    export_onnx,
    git_commit,
    onnx_session,
    verify_onnx,
)
from depth.model import open_model

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m depth.export",
        description="Export the depth network to ONNX (one file) and verify it with onnxruntime.",
        epilog="The graph takes 'image' (N x 3 x H x W float32 RGB in [0, 1]; normalisation is inside) "
               "and returns N x 1 x H x W scaled disparity (1/depth) or depth. The export is always "
               "checked against PyTorch; exit code 1 when the max abs difference exceeds --atol.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file, run folder (its newest checkpoint) or Monodepth2 model folder")
    p.add_argument("--output", required=True, help="the .onnx file to write")
    p.add_argument("--height", type=int, default=None, help="input height (default: the training height)")
    p.add_argument("--width", type=int, default=None, help="input width (default: the training width)")
    p.add_argument("--output-kind", choices=OUTPUT_KINDS, default="disparity",
                   help="disparity: scaled disparity 1/depth (default); depth: 1/disparity")
    p.add_argument("--dynamic-batch", action="store_true", help="make the batch dimension dynamic (default: 1)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--image", default=None,
                   help="real image for the check (default: a smooth colour ramp; random input is always checked)")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL, help=f"max abs difference allowed (default {DEFAULT_ATOL:g})")
    add_debug_flag(p)
    return p


@command_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        loaded = open_model(args.checkpoint, map_location="cpu")
    except (FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in loaded.lines():
        print(line, file=sys.stderr, flush=True)
    nets, cfg = loaded.nets, loaded.cfg
    height = args.height or cfg.data.height
    width = args.width or cfg.data.width
    if height < 32 or width < 32:
        print(f"error: --height/--width must be >= 32, got {height}x{width}", file=sys.stderr)
        return 2
    if height % 32 or width % 32:
        print(f"warning: {height}x{width} is not a multiple of 32 (the network was trained on multiples of 32)",
              file=sys.stderr)
    min_depth, max_depth = float(cfg.model.min_depth), float(cfg.model.max_depth)
    model = DepthExportModel(nets.depth_net, args.output_kind, min_depth, max_depth).eval()
    metadata = {
        "output_kind": args.output_kind,
        "height": str(height),
        "width": str(width),
        "min_depth": repr(min_depth),
        "max_depth": repr(max_depth),
        "config": json.dumps(to_dict(cfg), sort_keys=True),
        "commit": git_commit(),
        "input_name": INPUT_NAME,
        "output_name": args.output_kind,
        "dynamic_batch": "true" if args.dynamic_batch else "false",
        "opset": str(args.opset),
    }
    out = Path(args.output)
    print(f"exporting {'DCA' if cfg.model.dca else 'baseline'} depth net at {height}x{width} "
          f"({args.output_kind}, opset {args.opset}, batch {'dynamic' if args.dynamic_batch else 1}) -> {out}")
    t0 = time.perf_counter()
    try:
        proto = export_onnx(model, out, height, width, args.dynamic_batch, args.opset, metadata)
    except UnsupportedOpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    ops = check_onnx_ops(proto)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {len(proto.graph.node)} nodes, "
          f"{time.perf_counter() - t0:.1f} s); ops: {', '.join(ops)}")

    try:
        image, source = check_image(args.image, height, width)
    except Exception as e:  # a bad --image names the file
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"check image: {source}")
    gen = torch.Generator().manual_seed(0)
    inputs = {"check image": image, "random input": torch.rand(1, 3, height, width, generator=gen)}
    if args.dynamic_batch:
        inputs["random input, batch 3"] = torch.rand(3, 3, height, width, generator=gen)
    try:
        session = onnx_session(out, "cpu")
        diffs = verify_onnx(session, model, inputs)
    except Exception as e:
        print(f"error: onnxruntime could not run {out}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    worst = max(diffs.values())
    for label, d in diffs.items():
        print(f"max abs diff onnxruntime vs PyTorch ({label}): {d:.3g}")
    if not np.isfinite(worst) or worst > args.atol:
        print(f"FAILED: max abs diff {worst:.3g} exceeds {args.atol:g}", file=sys.stderr)
        return 1
    print(f"OK: max abs diff {worst:.3g} <= {args.atol:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
