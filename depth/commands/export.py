"""``python -m depth.export`` once its arguments are parsed (the command's docstring: depth/export.py)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common.errors import InputError
from depth.config import to_dict
from depth.io.onnx_file import (
    INPUT_NAME,
    DepthExportModel,
    check_image,
    check_onnx_ops,
    export_onnx,
    git_commit,
    onnx_session,
    verify_onnx,
)
from depth.model import open_model

__all__ = ["run"]


def run(args) -> int:
    """``python -m depth.export`` with its parsed arguments (the command's docstring)."""
    loaded = open_model(args.checkpoint, map_location="cpu")
    for line in loaded.lines():
        print(line, file=sys.stderr, flush=True)
    nets, cfg = loaded.nets, loaded.cfg
    height = args.height or cfg.data.height
    width = args.width or cfg.data.width
    if height < 32 or width < 32:
        raise InputError(f"--height/--width must be >= 32, got {height}x{width}")
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
    proto = export_onnx(model, out, height, width, args.dynamic_batch, args.opset, metadata)
    ops = check_onnx_ops(proto)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {len(proto.graph.node)} nodes, "
          f"{time.perf_counter() - t0:.1f} s); ops: {', '.join(ops)}")

    image, source = check_image(args.image, height, width)  # a bad --image: BadSampleError naming it
    print(f"check image: {source}")
    gen = torch.Generator().manual_seed(0)
    inputs = {"check image": image, "random input": torch.rand(1, 3, height, width, generator=gen)}
    if args.dynamic_batch:
        inputs["random input, batch 3"] = torch.rand(3, 3, height, width, generator=gen)
    try:
        session = onnx_session(out, "cpu")
        diffs = verify_onnx(session, model, inputs)
    except Exception as e:
        print(f"FAILED: onnxruntime could not run {out}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    worst = max(diffs.values())
    for label, d in diffs.items():
        print(f"max abs diff onnxruntime vs PyTorch ({label}): {d:.3g}")
    if not np.isfinite(worst) or worst > args.atol:
        print(f"FAILED: max abs diff {worst:.3g} exceeds {args.atol:g}", file=sys.stderr)
        return 1
    print(f"OK: max abs diff {worst:.3g} <= {args.atol:g}")
    return 0

