"""Export the depth network to a single ONNX file and verify it against PyTorch with onnxruntime.

    python -m depth.export --checkpoint CKPT --output model.onnx [--height H --width W]
        [--output-kind disparity|depth] [--dynamic-batch] [--opset N] [--image PATH]

The graph takes one float32 tensor ``image`` ``(N, 3, H, W)``: RGB in ``[0, 1]`` (the ImageNet-style
normalisation of the encoder is inside the graph) and returns one float32 tensor ``(N, 1, H, W)``
named after ``--output-kind``:

* ``disparity``: the scaled disparity ``1/depth`` of :func:`depth.geometry.disp_to_depth`, in
  ``[1/max_depth, 1/min_depth]`` -- never the raw sigmoid;
* ``depth``: ``1 / disparity``, in ``[min_depth, max_depth]`` (relative for monocular models).

``N`` is fixed to 1 unless ``--dynamic-batch`` is given. The weights are embedded in the file (no
side ``.onnx.data``), which is written atomically (temp file + rename). Metadata keys:
``output_kind``, ``height``, ``width``, ``min_depth``, ``max_depth``, ``config`` (JSON),
``commit``, plus ``input_name``, ``output_name``, ``dynamic_batch`` and ``opset``.

After writing, the file is **always** checked: every node must be a standard ONNX operator
(no ATen/Python fallback nodes or custom domains), onnxruntime (CPU) must load it, and its outputs
must match the PyTorch model to ``--atol`` (default 1e-4, max abs difference) on random input and
on a check image: ``--image`` (resized with :func:`depth.model.network_input`, the resize of
training, evaluation and prediction), else a smooth colour ramp. Exit code 0 when the check
passes, 1 when it fails, 2 on bad arguments.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` + onnxscript). The TorchScript
exporter cannot export the DCA decoder (its pooling kernel sizes are computed from feature shapes).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
from torch import Tensor

from common.atomic import atomic_write_bytes
from data.frames import read_image
from depth.cli import add_debug_flag, command_errors
from depth.config import to_dict
from depth.geometry import disp_to_depth
from depth.model import load_model, network_input

__all__ = ["DepthExportModel", "export_onnx", "check_onnx_ops", "verify_onnx", "git_commit",
           "check_image", "UnsupportedOpError", "main"]

DEFAULT_ATOL = 1e-4
DEFAULT_OPSET = 20
OUTPUT_KINDS = ("disparity", "depth")
INPUT_NAME = "image"
ROOT = Path(__file__).resolve().parents[1]
# The default ONNX domain; every node of the exported graph must be in it.
STANDARD_DOMAINS = ("", "ai.onnx")
FALLBACK_OPS = ("ATen", "PythonOp", "ATenOp")


class UnsupportedOpError(RuntimeError):
    """The exported graph holds a node that is not a standard ONNX operator."""


class DepthExportModel(nn.Module):
    """The depth network with the sigmoid -> disparity/depth mapping: the graph that is exported.

    ``forward(image (N, 3, H, W) in [0, 1]) -> (N, 1, H, W)`` scaled disparity or depth.
    """

    def __init__(self, net: nn.Module, output_kind: str = "disparity", min_depth: float = 0.1,
                 max_depth: float = 100.0):
        super().__init__()
        if output_kind not in OUTPUT_KINDS:
            raise ValueError(f"output_kind must be one of {OUTPUT_KINDS}, got {output_kind!r}")
        self.net = net
        self.output_kind = output_kind
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)

    def forward(self, image: Tensor) -> Tensor:
        disp, depth = disp_to_depth(self.net(image), self.min_depth, self.max_depth)
        return disp if self.output_kind == "disparity" else depth


def git_commit(repo: str | Path = ROOT) -> str:
    """``git rev-parse HEAD`` of the project, or ``"unknown"``."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(repo), capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else "unknown"


def check_image(path: str | Path | None, height: int, width: int) -> tuple[Tensor, str]:
    """The ``(1, 3, height, width)`` network input the export is checked on, and where it came from:
    the image at ``path`` through :func:`depth.model.network_input`, else a smooth colour ramp."""
    if path is not None:
        return network_input([read_image(path)], (width, height)), f"image {path}"
    v = torch.linspace(0.0, 1.0, height)[:, None].expand(height, width)
    u = torch.linspace(0.0, 1.0, width)[None, :].expand(height, width)
    ramp = torch.stack([u, v, 0.5 * (1.0 - u * v)])[None]
    return ramp, "colour ramp (no --image given)"


def check_onnx_ops(model_proto) -> list[str]:
    """Sorted op types of the graph; raises :class:`UnsupportedOpError` for nodes outside the
    standard ONNX domain (ATen/Python fallbacks, custom or local-function ops)."""
    bad, ops = [], set()

    def visit(graph):
        for node in graph.node:
            ops.add(node.op_type)
            if node.domain not in STANDARD_DOMAINS or node.op_type in FALLBACK_OPS:
                bad.append(f"{node.domain or 'ai.onnx'}::{node.op_type} ({node.name})")
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    visit(attr.g)
                for g in attr.graphs:
                    visit(g)

    visit(model_proto.graph)
    if bad:
        raise UnsupportedOpError("the exported graph has non-standard ops onnxruntime may not run: "
                                 + ", ".join(sorted(set(bad))[:20]))
    return sorted(ops)


def export_onnx(model: DepthExportModel, path: str | Path, height: int, width: int,
                dynamic_batch: bool = False, opset: int = DEFAULT_OPSET,
                metadata: dict[str, str] | None = None):
    """Export ``model`` to ``path`` (single file, weights embedded, written atomically).

    Returns the ``onnx.ModelProto`` that was written. Raises :class:`UnsupportedOpError` when the
    graph holds non-standard ops (nothing is written then).
    """
    model = model.eval().cpu()
    # torch.export specialises a batch of 1 to a constant: trace with 2 when the batch is dynamic.
    example = torch.rand(2 if dynamic_batch else 1, 3, height, width, generator=torch.Generator().manual_seed(0))
    dynamic_shapes = {"image": {0: torch.export.Dim("batch", min=1, max=1024)}} if dynamic_batch else None
    with warnings.catch_warnings():
        # the DCA module keeps its last branch weights as a plain attribute (a diagnostic, not a buffer)
        warnings.filterwarnings("ignore", message=r".*was assigned during export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        with torch.no_grad():
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                output_names=[model.output_kind], dynamic_shapes=dynamic_shapes, optimize=True,
                external_data=False, verbose=False, report=False,
            )
    proto = program.model_proto
    check_onnx_ops(proto)
    del proto.metadata_props[:]
    for k, v in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(k), str(v)
    onnx.checker.check_model(proto)
    atomic_write_bytes(Path(path), proto.SerializeToString())
    return proto


def onnx_session(path: str | Path, device: str = "cpu", threads: int = 0):
    """An onnxruntime session; ``device="cuda"`` uses the CUDA provider when onnxruntime has it."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = int(threads)
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError("onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu) -- "
                               "use --device cpu")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


def verify_onnx(session, torch_fn, inputs: dict[str, Tensor]) -> dict[str, float]:
    """Max abs difference between ``torch_fn(x)`` and the ONNX session's output, per named input."""
    name = session.get_inputs()[0].name
    diffs = {}
    for label, x in inputs.items():
        with torch.inference_mode():
            ref = torch_fn(x).float().cpu().numpy()
        out = session.run(None, {name: x.cpu().numpy().astype(np.float32)})[0]
        if out.shape != ref.shape:
            raise RuntimeError(f"{label}: ONNX output shape {out.shape} != PyTorch {ref.shape}")
        diffs[label] = float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64))))
    return diffs


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
        nets, cfg = load_model(args.checkpoint, map_location="cpu")
    except (FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
