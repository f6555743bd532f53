"""``python -m depth.predict`` once its arguments are parsed (the command's docstring: depth/predict.py)."""
from __future__ import annotations

import sys
from itertools import groupby
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from common.errors import InputError
from data.calib import IntrinsicsError, check_intrinsics
from data.frames import BadSampleError, read_image
from data.video import read_intrinsics_file, video_frames
from depth.eval.scale import ground_scale
from depth.inference import TorchDepthRunner, predict_frame
from depth.io.onnx_file import OnnxDepthRunner
from depth.io.predictions import SAVE_KINDS, VideoSink, collect_jobs, write_outputs
from depth.visualize import colour_bar, disparity_range

__all__ = ["run", "RANGE_FRAMES"]

RANGE_FRAMES = 16  # frames spread over a sequence that fix its colour range


def _input_intrinsics(args) -> tuple[np.ndarray, tuple[int, int] | None]:
    """K (pixels of the input images) for --camera-height, and the size it refers to if stated."""
    if args.intrinsics:
        return read_intrinsics_file(args.intrinsics)
    vals = [args.fx, args.fy, args.cx, args.cy]
    if any(v is None for v in vals):
        raise InputError("--camera-height needs the camera intrinsics: --intrinsics FILE or all of "
                         "--fx --fy --cx --cy (pixels of the input images)")
    fx, fy, cx, cy = vals
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    check_intrinsics(K, "--fx/--fy/--cx/--cy")
    return K, None


def _intrinsics_name(args) -> str:
    return f"intrinsics file {args.intrinsics}" if args.intrinsics else "--fx/--fy/--cx/--cy"


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


def run(args) -> int:
    """``python -m depth.predict`` with its parsed arguments (the command's docstring)."""
    if args.scale is not None and not args.scale > 0:
        raise InputError(f"--scale must be > 0, got {args.scale}")
    save = {k.strip() for k in args.save.split(",") if k.strip()}
    if not save <= set(SAVE_KINDS):
        raise InputError(f"--save: unknown {sorted(save - set(SAVE_KINDS))}; expected a comma-separated subset "
                         f"of {','.join(SAVE_KINDS)}")
    if args.ply:
        save.add("ply")
    if not save and args.video_out is None:
        raise InputError("--save names nothing and there is no --video-out: nothing to write")
    if args.ply_ascii and "ply" not in save:
        raise InputError("--ply-ascii needs --ply (or ply in --save)")
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    if args.onnx and (args.height or args.width):
        raise InputError("--height/--width apply to --checkpoint only (an ONNX file has a fixed size)")
    runner = (OnnxDepthRunner(args.onnx, args.device, threads=args.threads or 0) if args.onnx
              else TorchDepthRunner(args.checkpoint, args.device, args.height, args.width))
    if isinstance(runner, TorchDepthRunner):  # which file (and step) the model is, any file skipped
        for line in runner.loaded.lines():
            print(line, file=sys.stderr, flush=True)
    stereo_units = False
    if args.camera_height is not None:
        if args.scale is not None:
            raise InputError("give --scale or --camera-height, not both")
        K_input = _input_intrinsics(args)
    elif args.scale is None and runner.stereo_scale:
        args.scale = runner.stereo_scale  # stereo-trained: the baseline fixes the metric scale
        stereo_units = True
    ply = None
    if "ply" in save:
        K_ply = None
        fxyz = [args.fx, args.fy, args.cx, args.cy]
        if args.intrinsics or any(v is not None for v in fxyz):
            if not args.intrinsics and any(v is None for v in fxyz):
                raise InputError("--ply: give all of --fx --fy --cx --cy (pixels of the input images) or "
                                 "--intrinsics FILE, or none of them for Monodepth2's KITTI intrinsics")
            K_ply = _input_intrinsics(args)
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
    for e in errors:  # an input that cannot be read is reported and skipped; the others are predicted
        print(f"error: {e}", file=sys.stderr)
    sequences = [(seq, list(group)) for seq, group in groupby(jobs, key=lambda j: j.sequence)]
    movies = {seq for seq, group in sequences if len(group) > 1 or group[0].kind == "video"}  # --video-out
    if args.video_out and len(movies) != 1:
        raise InputError(f"--video-out {args.video_out}: names one file but the inputs hold {len(movies)} "
                         "videos/folders; give --video-out alone for DIR/<name>.mp4 each")
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

