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
from itertools import groupby
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from data.calib import IntrinsicsError, check_intrinsics
from data.frames import BadSampleError, read_image
from data.video import read_intrinsics_file, video_frames
from depth.cli import add_debug_flag, command_errors
from depth.eval.scale import ground_scale
from depth.inference import TorchDepthRunner, predict_frame
from depth.io.onnx_file import OnnxDepthRunner
from depth.io.predictions import SAVE_KINDS, VideoSink, collect_jobs, write_outputs
from depth.visualize import colour_bar, disparity_range

__all__ = ["main", "RANGE_FRAMES"]

RANGE_FRAMES = 16  # frames spread over a sequence that fix its colour range


class InputError(RuntimeError):
    """An input that cannot be read; the message names the file."""


def _input_intrinsics(args) -> tuple[np.ndarray, tuple[int, int] | None]:
    """K (pixels of the input images) for --camera-height, and the size it refers to if stated."""
    if args.intrinsics:
        return read_intrinsics_file(args.intrinsics)
    vals = [args.fx, args.fy, args.cx, args.cy]
    if any(v is None for v in vals):
        raise ValueError("--camera-height needs the camera intrinsics: --intrinsics FILE or all of "
                         "--fx --fy --cx --cy (pixels of the input images)")
    fx, fy, cx, cy = vals
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    check_intrinsics(K, "--fx/--fy/--cx/--cy")
    return K, None


def _intrinsics_name(args) -> str:
    return f"intrinsics file {args.intrinsics}" if args.intrinsics else "--fx/--fy/--cx/--cy"


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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_debug_flag(p)
    return p


def _sequence_frames(group, errors, wanted=None, bar=None):
    """``(index, job, frame_in_job, rgb)`` over a sequence's jobs, in order (``index`` counts the
    sequence's frames). With ``wanted``, only those indices are yielded and images outside it are not
    read; a failing input ends its job: its message goes to ``errors`` (``None``: dropped)."""
    index = 0
    for job in group:
        if bar is not None:
            bar.set_postfix_str(job.path.name, refresh=False)
        try:
            if job.kind == "image":
                if wanted is None or index in wanted:
                    yield index, job, 0, read_image(job.path)
                index += 1
            else:
                n = 0
                for n, rgb in enumerate(video_frames(job.path), start=1):
                    if wanted is None or index in wanted:
                        yield index, job, n - 1, rgb
                    index += 1
                if bar is not None and n < job.frames:
                    bar.total -= job.frames - n
                    bar.refresh()
        except (BadSampleError, InputError, OSError, ValueError) as e:
            if errors is not None:
                msg = str(e) if str(job.path) in str(e) else f"{job.path}: {e}"
                errors.append(msg)
                tqdm.write(f"error: {msg}", file=sys.stderr)


@command_errors(extra=(InputError,))
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.scale is not None and not args.scale > 0:
        print(f"error: --scale must be > 0, got {args.scale}", file=sys.stderr)
        return 2
    save = {k.strip() for k in args.save.split(",") if k.strip()}
    if not save <= set(SAVE_KINDS):
        print(f"error: --save: unknown {sorted(save - set(SAVE_KINDS))}; expected a comma-separated subset "
              f"of {','.join(SAVE_KINDS)}", file=sys.stderr)
        return 2
    if args.ply:
        save.add("ply")
    if not save and args.video_out is None:
        print("error: --save names nothing and there is no --video-out: nothing to write", file=sys.stderr)
        return 2
    if args.ply_ascii and "ply" not in save:
        print("error: --ply-ascii needs --ply (or ply in --save)", file=sys.stderr)
        return 2
    if args.threads is not None:
        if args.threads < 1:
            print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    if args.onnx and (args.height or args.width):
        print("error: --height/--width apply to --checkpoint only (an ONNX file has a fixed size)", file=sys.stderr)
        return 2
    try:
        runner = (OnnxDepthRunner(args.onnx, args.device, threads=args.threads or 0) if args.onnx
                  else TorchDepthRunner(args.checkpoint, args.device, args.height, args.width))
    except Exception as e:  # a missing/unreadable model, an unavailable device: one line, exit 2
        raise InputError(str(e)) from e
    if isinstance(runner, TorchDepthRunner):  # which file (and step) the model is, any file skipped
        for line in runner.loaded.lines():
            print(line, file=sys.stderr, flush=True)
    stereo_units = False
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
        stereo_units = True
    ply = None
    if "ply" in save:
        K_ply = None
        fxyz = [args.fx, args.fy, args.cx, args.cy]
        if args.intrinsics or any(v is not None for v in fxyz):
            if not args.intrinsics and any(v is None for v in fxyz):
                print("error: --ply: give all of --fx --fy --cx --cy (pixels of the input images) or "
                      "--intrinsics FILE, or none of them for Monodepth2's KITTI intrinsics", file=sys.stderr)
                return 2
            try:
                K_ply = _input_intrinsics(args)
            except (ValueError, FileNotFoundError) as e:
                print(f"error: --ply: {e}", file=sys.stderr)
                return 2
        else:
            print("--ply: no intrinsics given (--intrinsics or --fx --fy --cx --cy): using Monodepth2's "
                  "KITTI intrinsics fx = 0.58 W, fy = 1.92 H, centred principal point", file=sys.stderr)
        if args.camera_height is not None:
            units = f"metres (ground {args.camera_height:g} m below the camera)"
        elif stereo_units:
            units = f"metres (stereo model, x{args.scale:g})"
        elif args.scale is not None:
            units = f"{args.scale:g} / disparity (--scale; metres if the factor is metric)"
        else:
            units = "relative (monocular model, unknown scale)"
        ply = (K_ply, not args.ply_ascii, ["dabdepth depth.predict point cloud",
                                           "camera frame: x right, y down, z forward", f"units {units}"])
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs, errors = collect_jobs(args.inputs, out_dir)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    sequences = [(seq, list(group)) for seq, group in groupby(jobs, key=lambda j: j.sequence)]
    movies = {seq for seq, group in sequences if len(group) > 1 or group[0].kind == "video"}  # --video-out
    if args.video_out and len(movies) != 1:
        print(f"error: --video-out {args.video_out}: names one file but the inputs hold {len(movies)} "
              "videos/folders; give --video-out alone for DIR/<name>.mp4 each", file=sys.stderr)
        return 2
    depth_note = f"scale x {args.scale:g} / disparity" if args.scale is not None else \
        "raw network depth 1/disparity (relative, unknown scale)"
    if args.camera_height is not None:
        depth_note = f"metric depth, scaled per frame so the ground lies {args.camera_height:g} m below the camera"

    given_K = K_input if args.camera_height is not None else (ply[0] if ply is not None else None)
    checked_sizes: set[tuple[int, int]] = set()

    def predict(rgb):
        size = (rgb.shape[1], rgb.shape[0])
        if given_K is not None and size not in checked_sizes:  # the K against the frames it describes
            check_intrinsics(given_K[0], _intrinsics_name(args), given_K[1], size)
            checked_sizes.add(size)
        if args.camera_height is None:
            return predict_frame(runner, rgb, args.scale)
        disp, depth = predict_frame(runner, rgb, None)
        return disp, (depth * ground_scale(depth, K_input, rgb.shape, args.camera_height)).astype(np.float32)
    print(f"{runner.description}; input {runner.width}x{runner.height}; .npy = {depth_note}", file=sys.stderr)
    written = 0
    with tqdm(total=sum(j.frames for j in jobs), unit="frame", disable=args.quiet or None,
              dynamic_ncols=True) as bar:
        for seq, group in sequences:
            # the colour range: frames spread over the sequence, predicted once and kept for the pass below
            n_expected = sum(j.frames for j in group)
            wanted = set(np.linspace(0, max(n_expected - 1, 0), min(max(n_expected, 1), RANGE_FRAMES))
                         .round().astype(int).tolist())
            cache = {}
            for i, _, _, rgb in _sequence_frames(group, None, wanted):
                try:
                    cache[i] = predict(rgb)
                except IntrinsicsError:
                    raise
                except (BadSampleError, InputError, OSError, ValueError):
                    pass  # reported, naming the input, when the pass below reaches this frame
            vrange = disparity_range(d for d, _ in cache.values()) if cache else None
            bars = {}
            sink = None
            if args.video_out is not None and seq in movies:
                fps = 10.0
                if group[0].kind == "video":
                    cap = cv2.VideoCapture(str(group[0].path))
                    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
                    cap.release()
                sink = VideoSink(Path(args.video_out) if args.video_out else seq.with_name(seq.name + ".mp4"), fps)
            failed: set[int] = set()  # jobs (by id) whose frame failed: the rest of that input is skipped
            try:
                for i, job, k, rgb in _sequence_frames(group, errors, bar=bar):
                    if id(job) in failed:
                        continue
                    try:
                        disp, depth = cache.pop(i) if i in cache else predict(rgb)
                        colour_bar_ = None
                        if args.scale is not None and vrange is not None:
                            h = rgb.shape[0]
                            colour_bar_ = bars.get(h)
                            if colour_bar_ is None:
                                colour_bar_ = bars[h] = colour_bar(h, vrange, args.scale)
                        prefix = job.prefix if job.kind == "image" else job.prefix / f"{k:06d}"
                        if save:
                            write_outputs(prefix, rgb, disp, depth, ply, save=save, vrange=vrange, bar=colour_bar_)
                        if sink is not None:
                            sink.write(rgb, disp, vrange, colour_bar_)
                    except IntrinsicsError:
                        raise  # the same K for every input: stop (one line, exit 2)
                    except (BadSampleError, InputError, OSError, ValueError) as e:
                        failed.add(id(job))
                        msg = str(e) if str(job.path) in str(e) else f"{job.path}: {e}"
                        errors.append(msg)
                        tqdm.write(f"error: {msg}", file=sys.stderr)
                        continue
                    written += 1
                    if job.kind == "image" or k < job.frames:
                        bar.update(1)
            except BaseException:
                if sink is not None:
                    sink.abort()
                raise
            if sink is not None and sink.close():
                tqdm.write(f"wrote {sink.path} ({sink.frames} frames)", file=sys.stderr)
    print(f"wrote {written} frame(s) to {out_dir}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} input(s) failed:", file=sys.stderr)
        for e in errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
