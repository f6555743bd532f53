"""The files of ``python -m depth.predict``: which inputs become which outputs, and writing them.

Inputs: image files, folders (their images and videos, sorted, not recursive) and video files.
Output names: an image ``x.png`` gives ``DIR/x_*``; a folder ``.../f`` gives ``DIR/f/<stem>_*``; a
video ``v.mp4`` gives ``DIR/v/<frame:06d>_*``; clashing names get a ``_1``, ``_2`` ... suffix. Per
frame :func:`write_outputs` writes what ``save`` names: ``<prefix>_disp.png`` (input on top, magma
disparity below), ``<prefix>_depth.npy`` (float32 depth), ``<prefix>.ply`` (a coloured point cloud),
each atomically (temp file, then rename). A *sequence* is a video or the images of one input folder
(a single image is a sequence of one): it shares one colour range and, with ``--video-out``, one
``.mp4`` (:class:`VideoSink`, ``DIR/v.mp4`` or ``DIR/f.mp4``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

import torch

from common.atomic import atomic_write
from data.frames import IMAGE_EXTS, VIDEO_EXTS, monodepth2_intrinsics
from data.video import video_frame_count
from depth.eval.scale import frame_intrinsics
from depth.io.formats import SAVE_KINDS
from depth.geometry import backproject
from depth.io.ply import write_ply
from depth.visualize import input_beside_depth, side_by_side

__all__ = ["Job", "collect_jobs", "write_outputs", "point_cloud", "VideoSink", "SAVE_KINDS"]



@dataclass
class Job:
    """One input: an image or a video, and the output prefix (without ``_disp.png``)."""

    kind: str  # image | video
    path: Path
    prefix: Path  # image: DIR/.../stem ; video: DIR/.../videostem (frames go inside)
    frames: int = 1  # expected frames (videos: OpenCV's count, may be approximate)
    sequence: Path | None = None  # the sequence's output stem: DIR/v for a video, DIR/f for a folder


def _unique(prefix: Path, used: set[Path]) -> Path:
    out, i = prefix, 0
    while out in used:
        i += 1
        out = prefix.with_name(f"{prefix.name}_{i}")
    used.add(out)
    return out


def collect_jobs(inputs: list[str], out_dir: Path) -> tuple[list[Job], list[str]]:
    """Expand the command-line inputs into jobs; returns ``(jobs, errors)`` (errors name the file)."""
    jobs, errors, used = [], [], set()

    def add(path: Path, parent: Path, sequence: Path | None = None) -> None:
        if path.suffix.lower() in VIDEO_EXTS:
            prefix = _unique(parent / path.stem, used)
            jobs.append(Job("video", path, prefix, video_frame_count(path), sequence=prefix))
        else:
            prefix = _unique(parent / path.stem, used)
            jobs.append(Job("image", path, prefix, sequence=sequence or prefix))

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
                add(f, folder, folder)
        elif p.is_file():
            add(p, out_dir)
        else:
            errors.append(f"missing input: {p}")
    return jobs, errors


def point_cloud(depth: np.ndarray, rgb: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel of ``depth`` (``H x W``) back-projected with ``K`` (pixels of that map) by
    :func:`depth.geometry.backproject` (pixel ``(col, row)`` at ``u = col, v = row``): ``(H*W, 3)``
    float32 camera-frame points in raster order and their ``(H*W, 3)`` uint8 colours from ``rgb``."""
    d = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None, None]
    pts = backproject(d, torch.from_numpy(np.asarray(K, dtype=np.float32))[None])[0]
    return pts.reshape(3, -1).T.contiguous().numpy(), np.ascontiguousarray(rgb).reshape(-1, 3)


def write_outputs(prefix: Path, rgb: np.ndarray, disp: np.ndarray, depth: np.ndarray, ply=None,
                  save=("png", "npy"), vrange=None, bar=None) -> None:
    """What ``save`` names (a subset of :data:`SAVE_KINDS`; ``ply`` also when ``ply`` is given):
    ``<prefix>_disp.png`` (:func:`depth.visualize.side_by_side` of ``rgb`` and ``disp`` in the colour
    range ``vrange``, with the colour bar ``bar`` if given), ``<prefix>_depth.npy`` (``depth``) and
    ``<prefix>.ply``, each written atomically (renamed into place; not fsynced).
    ``ply``: ``(K_size or None, binary, comments)`` for ``<prefix>.ply``
    (:func:`point_cloud` with :func:`depth.eval.scale.frame_intrinsics` of ``K_size``, or
    Monodepth2's KITTI intrinsics scaled to the frame when ``K_size`` is None)."""
    if "png" in save:
        png = prefix.with_name(prefix.name + "_disp.png")
        picture = side_by_side(rgb, disp, vrange, bar)
        ok, data = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OSError(f"could not encode {png}")
        atomic_write(png, lambda f: f.write(data.tobytes()), fsync=False)
    if "npy" in save:
        atomic_write(prefix.with_name(prefix.name + "_depth.npy"), lambda f: np.save(f, depth), fsync=False)
    if ply is not None:
        K_size, binary, comments = ply
        K = (frame_intrinsics(K_size, rgb.shape) if K_size is not None
             else monodepth2_intrinsics(rgb.shape[1], rgb.shape[0]).astype(np.float64))
        pts, cols = point_cloud(depth, rgb, K)
        write_ply(prefix.with_name(prefix.name + ".ply"), pts, cols, binary=binary,
                  comments=[*comments, "intrinsics fx {:.6g} fy {:.6g} cx {:.6g} cy {:.6g} (pixels of this "
                            "frame)".format(K[0, 0], K[1, 1], K[0, 2], K[1, 2])])


class VideoSink:
    """An ``.mp4`` (OpenCV's ``mp4v``) of input | disparity side by side
    (:func:`depth.visualize.input_beside_depth`), written to a temporary name beside ``path`` and
    renamed into place by :meth:`close` (:meth:`abort` removes it): an interrupted run leaves no
    half-written video under the final name. Every frame is resized to the first frame's size."""

    def __init__(self, path: Path, fps: float):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.tmp{os.getpid()}.mp4")
        self.fps = fps if fps and fps > 0 else 10.0
        self.writer = None
        self.size = None
        self.frames = 0

    def write(self, rgb: np.ndarray, disp: np.ndarray, vrange=None, bar=None) -> None:
        frame = input_beside_depth(rgb, disp, vrange, bar)
        if self.writer is None:
            self.size = (frame.shape[1] // 2 * 2, frame.shape[0] // 2 * 2)  # even sides for mp4v
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
            if not self.writer.isOpened():
                raise OSError(f"OpenCV cannot write an mp4 video to {self.tmp}")
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> bool:
        """Finish the file and rename it into place; False (and nothing written) without frames."""
        if self.writer is None:
            return False
        self.writer.release()
        os.replace(self.tmp, self.path)
        return True

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.release()
        self.tmp.unlink(missing_ok=True)
