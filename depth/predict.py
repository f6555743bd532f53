"""Predict depth for images, folders of images and videos with a checkpoint or an exported ONNX file.

    python -m depth.predict (--checkpoint CKPT | --onnx model.onnx) INPUT... --out DIR
        [--scale S] [--device auto|cpu|cuda] [--height H --width W]

Every frame goes through :func:`depth.model.predict_disparities` (resized to the network's input
size with ``INTER_AREA``, as in training and evaluation), and its scaled disparity (``1/depth``,
docs/method.md §2) is resized back to the frame's own size (bilinear). Per frame two files are written:

* ``<name>_disp.png``: the input on top and the magma-coloured disparity below (same width; each
  panel has the input's size; colours normalised by the frame's 95th disparity percentile);
* ``<name>_depth.npy``: float32 ``H x W`` depth at the input's size. With ``--scale S`` it is
  ``S / disparity`` (e.g. metres, given the right factor for the model); without it, the raw
  network depth ``1 / disparity`` in ``[min_depth, max_depth]`` -- for monocular models this is
  relative depth, correct only up to an unknown scale factor (no median scaling is applied).

Inputs: image files, folders (their images and videos, sorted, not recursive) and video files
(decoded with OpenCV, one output pair per frame). Output names: an image ``x.png`` gives
``DIR/x_*``; a folder ``.../f`` gives ``DIR/f/<stem>_*``; a video ``v.mp4`` gives
``DIR/v/<frame:06d>_*``; clashing names get a ``_1``, ``_2`` ... suffix. A missing or unreadable
input is reported (naming the file) and skipped; the exit code is then 1 after all other inputs
were processed (2 for bad arguments or a model that cannot be loaded).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor
from tqdm import tqdm

from data.frames import IMAGE_EXTS, VIDEO_EXTS, BadSampleError, read_image
from data.video import read_intrinsics_file
from depth.cli import add_debug_flag, command_errors
from depth.export import onnx_session
from depth.model import load_model, predict_disparities
from depth.scale import camera_height_scale, stereo_scale
from depth.visualize import colorize_disparity

__all__ = ["TorchDepthRunner", "OnnxDepthRunner", "collect_jobs", "predict_frame", "side_by_side", "main"]


class InputError(RuntimeError):
    """An input that cannot be read; the message names the file."""


# --------------------------------------------------------------------------------------- runners
# A runner is a prediction callable of depth.model (network-size (N, 3, h, w) batch in [0, 1] ->
# (N, 1, h, w)) with what predict_disparities needs to run it: ``output`` ("sigmoid" or
# "disparity"), ``device`` (where batches go; None = CPU), ``width``/``height`` (network input
# size) and ``min_depth``/``max_depth``.

class TorchDepthRunner:
    """The depth network of a checkpoint (PyTorch); returns its sigmoid."""

    output = "sigmoid"

    def __init__(self, checkpoint: str | Path, device: str = "auto", height: int | None = None,
                 width: int | None = None):
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda requested but CUDA is not available")
        self.device = torch.device(device)
        nets, cfg = load_model(checkpoint, map_location="cpu")
        self.net = nets.depth_net.to(self.device).eval()
        self.height = int(height or cfg.data.height)
        self.width = int(width or cfg.data.width)
        self.min_depth, self.max_depth = cfg.model.min_depth, cfg.model.max_depth
        self.stereo_scale = stereo_scale(cfg)  # None for monocular models
        self.description = f"PyTorch checkpoint {checkpoint} on {self.device}"

    def __call__(self, x: Tensor) -> Tensor:
        return self.net(x)


class OnnxDepthRunner:
    """An exported ONNX file run with onnxruntime (size and output kind from its metadata);
    returns the scaled disparity."""

    output = "disparity"
    device = None  # onnxruntime takes CPU arrays whatever provider runs the graph

    def __init__(self, path: str | Path, device: str = "auto"):
        if not Path(path).is_file():
            raise RuntimeError(f"ONNX file not found: {path}")
        if device == "auto":
            device = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
        self.session = onnx_session(path, device)
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


# ---------------------------------------------------------------------------------------- inputs
@dataclass
class Job:
    """One input: an image or a video, and the output prefix (without ``_disp.png``)."""

    kind: str  # image | video
    path: Path
    prefix: Path  # image: DIR/.../stem ; video: DIR/.../videostem (frames go inside)
    frames: int = 1  # expected frames (videos: OpenCV's count, may be approximate)


def _unique(prefix: Path, used: set[Path]) -> Path:
    out, i = prefix, 0
    while out in used:
        i += 1
        out = prefix.with_name(f"{prefix.name}_{i}")
    used.add(out)
    return out


def _video_frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    try:
        return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))) if cap.isOpened() else 0
    finally:
        cap.release()


def collect_jobs(inputs: list[str], out_dir: Path) -> tuple[list[Job], list[str]]:
    """Expand the command-line inputs into jobs; returns ``(jobs, errors)`` (errors name the file)."""
    jobs, errors, used = [], [], set()

    def add(path: Path, parent: Path) -> None:
        if path.suffix.lower() in VIDEO_EXTS:
            jobs.append(Job("video", path, _unique(parent / path.stem, used), _video_frame_count(path)))
        else:
            jobs.append(Job("image", path, _unique(parent / path.stem, used)))

    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.iterdir()
                           if f.is_file() and f.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS)
            if not files:
                errors.append(f"{p}: folder holds no images or videos")
                continue
            folder = _unique(out_dir / (p.resolve().name or "input"), used)
            for f in files:
                add(f, folder)
        elif p.is_file():
            add(p, out_dir)
        else:
            errors.append(f"missing input: {p}")
    return jobs, errors


def _read_video(path: Path) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"corrupt or unreadable video: {path}")
    n = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            n += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    if n == 0:
        raise InputError(f"corrupt or unreadable video (no frame decoded): {path}")


# ------------------------------------------------------------------------------------- per frame
def side_by_side(rgb: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """Input (top) and magma disparity (bottom) of the same size: ``(2H, W, 3)`` uint8 RGB."""
    colour = colorize_disparity(torch.from_numpy(np.ascontiguousarray(disp[None], dtype=np.float32)))
    return np.concatenate([rgb, colour.transpose(1, 2, 0)], axis=0)


def predict_frame(runner, rgb: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``H x W x 3`` uint8 RGB -> (disparity, depth), float32 ``H x W`` at the frame's size.

    ``depth = scale / disparity`` when ``scale`` is given, else ``1 / disparity`` (relative)."""
    h0, w0 = rgb.shape[:2]
    disp = predict_disparities(runner, [rgb], (runner.width, runner.height), min_depth=runner.min_depth,
                               max_depth=runner.max_depth, output=runner.output, device=runner.device)[0]
    if disp.shape != (h0, w0):
        disp = cv2.resize(disp, (w0, h0), interpolation=cv2.INTER_LINEAR)
    disp = np.clip(disp, 1.0 / runner.max_depth, 1.0 / runner.min_depth)  # bilinear keeps the range
    depth = (1.0 if scale is None else float(scale)) / disp
    return disp, depth.astype(np.float32)


def _input_intrinsics(args) -> tuple[np.ndarray, tuple[int, int] | None]:
    """K (pixels of the input images) for --camera-height, and the size it refers to if stated."""
    if args.intrinsics:
        return read_intrinsics_file(args.intrinsics)
    vals = [args.fx, args.fy, args.cx, args.cy]
    if any(v is None for v in vals):
        raise ValueError("--camera-height needs the camera intrinsics: --intrinsics FILE or all of "
                         "--fx --fy --cx --cy (pixels of the input images)")
    fx, fy, cx, cy = vals
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64), None


def ground_scale(depth: np.ndarray, K_size: tuple[np.ndarray, tuple[int, int] | None], shape,
                 camera_height: float) -> float:
    """Factor putting the ground plane of ``depth`` (at the input's size) ``camera_height`` below."""
    K, size = K_size
    K = np.asarray(K, dtype=np.float64).copy()
    if size is not None and tuple(size) != (shape[1], shape[0]):
        K[0] *= shape[1] / size[0]
        K[1] *= shape[0] / size[1]
    return camera_height_scale(depth, K, camera_height)[0]


def _write_outputs(prefix: Path, rgb: np.ndarray, disp: np.ndarray, depth: np.ndarray) -> None:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    png = prefix.with_name(prefix.name + "_disp.png")
    if not cv2.imwrite(str(png), cv2.cvtColor(side_by_side(rgb, disp), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {png}")
    np.save(prefix.with_name(prefix.name + "_depth.npy"), depth)


# ------------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m depth.predict",
        description="Depth for images, folders of images and videos (OpenCV); writes <name>_disp.png "
                    "(input on top, magma disparity below) and <name>_depth.npy per frame, at the input's size.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint file, run folder or Monodepth2 model folder (PyTorch)")
    src.add_argument("--onnx", help="an ONNX file written by python -m depth.export (onnxruntime)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, video files")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--scale", type=float, default=None,
                   help="depth.npy = SCALE / disparity (e.g. a known metric factor). Without it the .npy holds "
                        "the raw network depth 1/disparity: relative for monocular models (unknown scale, "
                        "no median scaling)")
    p.add_argument("--camera-height", type=float, default=None,
                   help="metric scale per frame from a flat ground: fit a plane to the lower image band of "
                        "the predicted depth and scale so it lies CAMERA_HEIGHT metres below the camera "
                        "(needs the intrinsics: --intrinsics or --fx/--fy/--cx/--cy, in pixels of the input)")
    p.add_argument("--intrinsics", default=None,
                   help="intrinsics file (fx fy cx cy | 3x3 K | KITTI calib) in pixels of the input images")
    for k in ("fx", "fy", "cx", "cy"):
        p.add_argument(f"--{k}", type=float, default=None)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA when available (onnxruntime: when it has the CUDA provider)")
    p.add_argument("--height", type=int, default=None, help="network input height (checkpoint only; default: training size)")
    p.add_argument("--width", type=int, default=None, help="network input width (checkpoint only; default: training size)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_debug_flag(p)
    return p


@command_errors(extra=(InputError,))
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.scale is not None and not args.scale > 0:
        print(f"error: --scale must be > 0, got {args.scale}", file=sys.stderr)
        return 2
    if args.onnx and (args.height or args.width):
        print("error: --height/--width apply to --checkpoint only (an ONNX file has a fixed size)", file=sys.stderr)
        return 2
    try:
        runner = (OnnxDepthRunner(args.onnx, args.device) if args.onnx
                  else TorchDepthRunner(args.checkpoint, args.device, args.height, args.width))
    except Exception as e:  # a missing/unreadable model, an unavailable device: one line, exit 2
        raise InputError(str(e)) from e
    if args.camera_height is not None:
        if args.scale is not None:
            print("error: give --scale or --camera-height, not both", file=sys.stderr)
            return 2
        try:
            K_input = _input_intrinsics(args)
        except (ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    elif args.scale is None and runner.stereo_scale:
        args.scale = runner.stereo_scale  # stereo-trained: the baseline fixes the metric scale
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs, errors = collect_jobs(args.inputs, out_dir)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    depth_note = f"scale x {args.scale:g} / disparity" if args.scale is not None else \
        "raw network depth 1/disparity (relative, unknown scale)"
    if args.camera_height is not None:
        depth_note = f"metric depth, scaled per frame so the ground lies {args.camera_height:g} m below the camera"

    def predict(rgb):
        if args.camera_height is None:
            return predict_frame(runner, rgb, args.scale)
        disp, depth = predict_frame(runner, rgb, None)
        return disp, (depth * ground_scale(depth, K_input, rgb.shape, args.camera_height)).astype(np.float32)
    print(f"{runner.description}; input {runner.width}x{runner.height}; .npy = {depth_note}", file=sys.stderr)
    written = 0
    with tqdm(total=sum(j.frames for j in jobs), unit="frame", disable=args.quiet or None,
              dynamic_ncols=True) as bar:
        for job in jobs:
            bar.set_postfix_str(job.path.name, refresh=False)
            try:
                if job.kind == "image":
                    rgb = read_image(job.path)
                    disp, depth = predict(rgb)
                    _write_outputs(job.prefix, rgb, disp, depth)
                    written += 1
                    bar.update(1)
                else:
                    n = 0
                    for n, rgb in enumerate(_read_video(job.path), start=1):
                        disp, depth = predict(rgb)
                        _write_outputs(job.prefix / f"{n - 1:06d}", rgb, disp, depth)
                        written += 1
                        if n <= job.frames:
                            bar.update(1)
                    if n < job.frames:
                        bar.total -= job.frames - n
                        bar.refresh()
            except (BadSampleError, InputError, OSError, ValueError) as e:
                msg = str(e) if str(job.path) in str(e) else f"{job.path}: {e}"
                errors.append(msg)
                tqdm.write(f"error: {msg}", file=sys.stderr)
    print(f"wrote {written} frame(s) to {out_dir}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} input(s) failed:", file=sys.stderr)
        for e in errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
