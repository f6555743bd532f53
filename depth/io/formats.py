"""The names in the contracts of the files the commands write, in a module light enough for their
argument parsers (it imports nothing): what ``depth.predict --save`` may name, the exported ONNX
graph's input and output kinds with the export's defaults, and the formats ``depth.convert``
converts between."""
from __future__ import annotations

__all__ = ["SAVE_KINDS", "ONNX_INPUT_NAME", "ONNX_OUTPUT_KINDS", "ONNX_OPSET", "ONNX_ATOL", "CONVERT_FORMATS"]

SAVE_KINDS = ("png", "npy", "ply")  # what depth.predict --save may name
ONNX_INPUT_NAME = "image"  # N x 3 x H x W float32 RGB in [0, 1]
ONNX_OUTPUT_KINDS = ("disparity", "depth")  # the graph's one output, named after its kind
ONNX_OPSET = 20  # depth.export --opset default
ONNX_ATOL = 1e-4  # depth.export --atol default: max abs difference onnxruntime vs PyTorch
CONVERT_FORMATS = ("checkpoint", "monodepth2")  # depth.convert --to
