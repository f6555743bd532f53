"""ONNX files of the depth network: the exported graph, its export and check, running it.

The command is ``python -m depth.export`` (:mod:`depth.export`); ``python -m depth.predict --onnx``
runs a file through :class:`OnnxDepthRunner`.

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

The command checks every file it writes: every node must be a standard ONNX operator
(:func:`check_onnx_ops`: no ATen/Python fallback nodes or custom domains), onnxruntime (CPU) must
load it, and its outputs must match the PyTorch model (:func:`verify_onnx`) on random input and on
a check image (:func:`check_image`: resized with :func:`depth.inference.network_input`, the resize
of training, evaluation and prediction, else a smooth colour ramp).

Exporter: ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` + onnxscript). The TorchScript
exporter cannot export the DCA decoder (its pooling kernel sizes are computed from feature shapes).
"""
from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
from torch import Tensor

from common.errors import CheckpointError, InputError, UnsupportedOpError
from common.atomic import atomic_write_bytes
from data.frames import read_image
from depth.geometry import disp_to_depth
from depth.io.formats import ONNX_ATOL, ONNX_INPUT_NAME, ONNX_OPSET, ONNX_OUTPUT_KINDS
from depth.inference import network_input

__all__ = ["DepthExportModel", "export_onnx", "check_onnx_ops", "verify_onnx", "onnx_session", "git_commit",
           "check_image", "UnsupportedOpError", "OnnxDepthRunner", "DEFAULT_ATOL", "DEFAULT_OPSET",
           "OUTPUT_KINDS", "INPUT_NAME"]

DEFAULT_ATOL, DEFAULT_OPSET, OUTPUT_KINDS, INPUT_NAME = ONNX_ATOL, ONNX_OPSET, ONNX_OUTPUT_KINDS, ONNX_INPUT_NAME
ROOT = Path(__file__).resolve().parents[2]
# The default ONNX domain; every node of the exported graph must be in it.
STANDARD_DOMAINS = ("", "ai.onnx")
FALLBACK_OPS = ("ATen", "PythonOp", "ATenOp")


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
    the image at ``path`` through :func:`depth.inference.network_input`, else a smooth colour ramp."""
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
            raise InputError("onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu) -- "
                             "use --device cpu")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if not Path(path).is_file():
        raise CheckpointError(f"ONNX file not found: {path}")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as e:  # onnxruntime's own errors (Fail, InvalidGraph, ...) for a file it cannot read
        raise CheckpointError(f"{path}: onnxruntime cannot load it ({type(e).__name__}: {e})") from None


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


class OnnxDepthRunner:
    """An exported ONNX file run with onnxruntime (size and output kind from its metadata);
    returns the scaled disparity."""

    output = "disparity"
    device = None  # onnxruntime takes CPU arrays whatever provider runs the graph

    def __init__(self, path: str | Path, device: str = "auto", threads: int = 0):
        if not Path(path).is_file():
            raise RuntimeError(f"ONNX file not found: {path}")
        if device == "auto":
            device = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
        self.session = onnx_session(path, device, threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        self.height = int(meta.get("height") or shape[2])
        self.width = int(meta.get("width") or shape[3])
        self.output_kind = meta.get("output_kind", "disparity")
        if self.output_kind not in ("disparity", "depth"):
            raise RuntimeError(f"{path}: unknown output_kind {self.output_kind!r} in its metadata")
        self.min_depth = float(meta.get("min_depth", 0.1))
        self.max_depth = float(meta.get("max_depth", 100.0))
        self.stereo_scale = None
        self.description = f"ONNX {path} ({self.output_kind}) on {self.session.get_providers()[0]}"

    def __call__(self, x: Tensor) -> Tensor:
        out = self.session.run(None, {self.input_name: x.numpy().astype(np.float32)})[0]
        return torch.from_numpy(out if self.output_kind == "disparity" else 1.0 / out)
