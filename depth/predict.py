"""Predict depth for images, folders of images and videos with a checkpoint or an exported ONNX file.

    python -m depth.predict (--checkpoint CKPT | --onnx model.onnx) INPUT... --out DIR
        [--scale S] [--device auto|cpu|cuda] [--height H --width W] [--save png,npy,ply]
        [--ply [--ply-ascii]] [--video-out [FILE.mp4]] [--threads N]

Every frame goes through :func:`depth.inference.predict_disparities` (resized to the network's input
size with ``INTER_AREA``, as in training and evaluation), and its scaled disparity (``1/depth``,
docs/method.md §2) is resized back to the frame's own size (bilinear). Per frame the files named by
``--save`` are written (default ``png,npy``; ``--ply`` adds ``ply``):

* ``<name>_disp.png``: the input on top and the magma-coloured disparity below (same width; each
  panel has the input's size). One colour range per sequence (a video, or the images of one input
  folder): the minimum and 95th percentile of disparity over up to 16 frames spread over it
  (:func:`depth.visualize.disparity_range`), so a video does not flicker; where the scale is fixed
  (``--scale``, a stereo model) a colour bar right of the disparity reads depth in those units;
* ``<name>_depth.npy``: float32 ``H x W`` depth at the input's size. With ``--scale S`` it is
  ``S / disparity`` (e.g. metres, given the right factor for the model); without it, the raw
  network depth ``1 / disparity`` in ``[min_depth, max_depth]`` -- for monocular models this is
  relative depth, correct only up to an unknown scale factor (no median scaling is applied);
* with ``--ply``, ``<name>.ply``: every pixel back-projected with the frame's intrinsics (camera
  frame: x right, y down, z forward) and coloured by the input, binary little-endian (``--ply-ascii``:
  ASCII); in metres where a scale is known (a stereo model, ``--scale``, ``--camera-height``), else in
  the relative units of the ``.npy``. Intrinsics: ``--intrinsics`` or ``--fx --fy --cx --cy`` (pixels
  of the input), else Monodepth2's KITTI intrinsics scaled to the frame (said on stderr).

With ``--video-out`` every sequence is also written as ``DIR/<name>.mp4`` (input | disparity side by
side, the video's frame rate, 10 fps for a folder; ``--video-out FILE.mp4`` names the file when there
is one sequence). ``--threads N`` caps the threads of PyTorch, OpenCV and onnxruntime.

Inputs: image files, folders (their images and videos, sorted, not recursive) and video files
(decoded with OpenCV, one output pair per frame); output names: :mod:`depth.io.predictions`. A missing or unreadable
input is reported (naming the file) and skipped; the exit code is then 1 after all other inputs
were processed (2 for bad arguments or a model that cannot be loaded).
"""
from __future__ import annotations

import argparse
import sys

from depth.cli import add_debug_flag, parse_then_run


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
    for k, what in (("fx", "focal length x"), ("fy", "focal length y"), ("cx", "principal point x"),
                     ("cy", "principal point y")):
        p.add_argument(f"--{k}", type=float, default=None,
                       help=f"{what} in pixels of the input images (give all four, or --intrinsics)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA when available (onnxruntime: when it has the CUDA provider)")
    p.add_argument("--height", type=int, default=None, help="network input height (checkpoint only; default: training size)")
    p.add_argument("--width", type=int, default=None, help="network input width (checkpoint only; default: training size)")
    p.add_argument("--save", default="png,npy",
                   help="what to write per frame, comma-separated from png,npy,ply (default png,npy)")
    p.add_argument("--video-out", nargs="?", const="", default=None, metavar="FILE.mp4",
                   help="also write each video / folder as an mp4 of input | disparity (DIR/<name>.mp4, "
                        "or FILE.mp4 when there is one sequence)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for PyTorch, OpenCV and onnxruntime (default: their own)")
    p.add_argument("--ply", action="store_true",
                   help="also write <name>.ply per frame: a coloured point cloud back-projected with the "
                        "frame's intrinsics (--intrinsics or --fx/--fy/--cx/--cy, else Monodepth2's KITTI "
                        "intrinsics); metric where a scale is known (stereo model, --scale, --camera-height), "
                        "else relative")
    p.add_argument("--ply-ascii", action="store_true",
                   help="write the PLY files as ASCII (default binary little-endian)")
    p.add_argument("--no-progress", "--quiet", dest="quiet", action="store_true", help="no progress bar")
    add_debug_flag(p)
    return p


main = parse_then_run(lambda argv: _parser().parse_args(argv), "depth.commands.predict")


if __name__ == "__main__":
    sys.exit(main())
