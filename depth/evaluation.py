"""The evaluation protocols on top of the model: Eigen-split scoring, the scale test, pose ATE.

Model-dependent functions take a ``predict`` callable (see :mod:`depth.model`: the depth network's
sigmoid on ``(B, 3, h, w)`` images in ``[0, 1]`` at the network size) and reach it through
:func:`depth.model.predict_disparities`, the resize and forward pass that training validation
uses too. Disparities here are the *scaled* disparities of :func:`depth.geometry.disp_to_depth`.

Windows are ``(top, bottom, left, right)`` in pixels (bottom/right exclusive).
"""
from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.arrays import open_array_file
from data.frames import frames_to_tensor, resize_image
from depth.geometry import pose_vector_to_matrix
from depth.metrics import METRIC_NAMES, aggregate_metrics, compute_depth_metrics, compute_depth_metrics_per_image
from depth.model import batched, centre_window, predict_disparities

__all__ = [
    "gt_kind_for_split",
    "eigen_metric_kwargs",
    "load_disparities",
    "predict_for_gt",
    "per_image_csv",
    "scale_robustness",
    "zoom_robustness",
    "RESOLUTION_FACTORS",
    "scaled_size",
    "resolution_curve",
    "dump_xyz",
    "compute_ate",
    "load_odometry_poses",
    "gt_local_poses",
    "snippet_ates",
    "predict_relative_poses",
]


# ----------------------------------------------------------------------------------------------
# Depth: the Eigen protocol
# ----------------------------------------------------------------------------------------------

def gt_kind_for_split(split: str | Path, gt_source: str = "auto") -> str:
    """``"velodyne"`` or ``"benchmark"`` GT for a split: ``gt_source`` unless ``auto``, which
    picks ``benchmark`` (annotated PNGs) for ``eigen_benchmark`` splits."""
    if gt_source not in ("auto", "velodyne", "benchmark"):
        raise ValueError(f"gt_source must be auto, velodyne or benchmark, got {gt_source!r}")
    if gt_source != "auto":
        return gt_source
    return "benchmark" if Path(str(split)).name.startswith("eigen_benchmark") else "velodyne"


def eigen_metric_kwargs(gt_kind: str = "velodyne", *, fixed_scale: float | None = None,
                        median_scaling: bool = True, min_depth: float = 1e-3,
                        max_depth: float = 80.0) -> dict:
    """Keyword arguments of :func:`depth.metrics.compute_depth_metrics` for the protocol of
    ``gt_kind``: velodyne GT (``eigen``) with the Garg crop and the ``min < gt < max`` mask,
    benchmark GT (``eigen_benchmark``) with neither (Monodepth2's rule). ``fixed_scale``
    (stereo models) replaces median scaling."""
    bench = gt_kind == "benchmark"
    return dict(median_scaling=median_scaling and fixed_scale is None, fixed_scale=fixed_scale,
                min_depth=min_depth, max_depth=max_depth, garg_crop=not bench, gt_range_mask=not bench)


def load_disparities(path: str | Path) -> np.ndarray:
    """Saved scaled disparities as ``(N, h, w)`` float32: an ``.npy`` of ``(N, h, w)`` or
    ``(N, 1, h, w)`` (Monodepth2's ``--ext_disp_to_eval`` format) or an ``.npz`` (key ``disp``,
    else its first array). Errors name the file."""
    d = open_array_file(path, "disparity file")
    if isinstance(d, np.lib.npyio.NpzFile):
        with d:
            key = "disp" if "disp" in d.files else d.files[0]
            d = d[key]
    if d.ndim == 4 and d.shape[1] == 1:
        d = d[:, 0]
    if d.ndim != 3:
        raise ValueError(f"disparities {path} must be an (N, h, w) array, got shape {d.shape}")
    return np.ascontiguousarray(d, dtype=np.float32)


def _gt_shapes(gt) -> list[tuple[int, int]]:
    return [tuple(s) for s in gt.shapes] if hasattr(gt, "shapes") else [tuple(np.shape(m)) for m in gt]


def _at_gt_size(images: Iterable[np.ndarray], shapes: list[tuple[int, int]]) -> Iterator[np.ndarray]:
    for i, (im, s) in enumerate(zip(images, shapes)):
        if tuple(im.shape[:2]) != s:
            raise ValueError(f"image {i} is {im.shape[0]}x{im.shape[1]} but its GT map is {s[0]}x{s[1]}: "
                             f"the scale test needs images at the GT resolution")
        yield im


def predict_for_gt(predict: Callable, images: Iterable[np.ndarray], gt, size_wh: tuple[int, int], *,
                   zoom: float | None = None, crop: float | None = None,
                   **predict_kwargs) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Disparities of ``images`` to score against ``gt`` (the same split, in order), plainly or
    for one half of the scale test (docs/method.md §7, last bullet).

    ``zoom=Z``: predict on the centre ``1/Z`` crop resized to the network size, scored on the
    same GT window; ``crop=Z``: predict on the full image, score its centre ``1/Z``. The Garg crop
    stays in full-image coordinates. Returns ``(disp, windows or None, pred_in_window)`` for
    :func:`depth.metrics.compute_depth_metrics`; ``predict_kwargs`` go to
    :func:`depth.model.predict_disparities`.
    """
    if zoom and crop:
        raise ValueError("zoom and crop are two different tests: give one of them")
    shapes = _gt_shapes(gt)
    if hasattr(images, "__len__") and len(images) != len(shapes):
        raise ValueError(f"{len(images)} images but {len(shapes)} GT maps")
    z = zoom or crop
    windows = None
    if z:
        windows = np.array([centre_window(h, w, z) for h, w in shapes], dtype=np.int64)
        images = _at_gt_size(images, shapes)
    disp = predict_disparities(predict, images, size_wh, zoom=zoom, **predict_kwargs)
    return disp, windows, bool(zoom)


def per_image_csv(per: dict, entries: Sequence | None = None) -> str:
    """CSV text of :func:`depth.metrics.compute_depth_metrics_per_image` output: one row per image
    with its split entry (folder, frame, side), valid pixel count, median ratio and the 7 metrics."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["index", "folder", "frame", "side", "n_valid", "ratio", *METRIC_NAMES])
    for i in range(len(per["n_valid"])):
        e = entries[i] if entries is not None and i < len(entries) else None
        w.writerow([i, e.folder if e else "", e.frame if e else "", e.side if e else "",
                    int(per["n_valid"][i]), f"{per['ratio'][i]:.9g}",
                    *(f"{per[k][i]:.9g}" for k in METRIC_NAMES)])
    return buf.getvalue()


def scale_robustness(predict: Callable, images: Sequence[np.ndarray], gt, size_wh: tuple[int, int],
                     zoom: float, mode: str = "zoom", *, post_process: str = "none",
                     batch_size: int = 8, min_depth: float = 0.1, max_depth: float = 100.0,
                     per_image: bool = False, **metric_kwargs) -> dict:
    """The paper's scale test: :func:`predict_for_gt` with ``zoom`` (``mode="zoom"``) or ``crop``
    (``mode="crop"``), scored with :func:`depth.metrics.compute_depth_metrics` (per image with
    ``per_image``); median scaling is per image as usual."""
    if mode not in ("zoom", "crop"):
        raise ValueError(f"mode must be 'zoom' or 'crop', got {mode!r}")
    disp, windows, in_window = predict_for_gt(
        predict, images, gt, size_wh, zoom=zoom if mode == "zoom" else None, crop=zoom if mode == "crop" else None,
        post_process=post_process, batch_size=batch_size, min_depth=min_depth, max_depth=max_depth)
    fn = compute_depth_metrics_per_image if per_image else compute_depth_metrics
    return fn(disp, gt, windows=windows, pred_in_window=in_window, **metric_kwargs)


def zoom_robustness(predict: Callable, images: Sequence[np.ndarray], gt, size_wh: tuple[int, int],
                    zoom: float = 2.0, **kwargs) -> dict:
    """Both halves of the scale test and what they say about apparent size.

    Returns ``zoom_abs_rel`` and ``crop_abs_rel`` (:func:`scale_robustness` in each mode), their
    ``gap`` (zoom - crop) and ``depth_shift``: the median over images of
    ``median(zoomed depth) / median(cropped depth)`` on the same GT pixels (the ratio of the two
    per-image median-scaling factors, crop / zoom). Per-image median scaling hides a global
    change of predicted depth, so the gap alone cannot see a network that reads depth from
    apparent size; ``depth_shift`` can: ``1`` = zooming leaves the predicted depth unchanged (the
    camera zoomed, the scene did not move), ``1/zoom`` = depth follows apparent size. Keyword
    arguments go to :func:`scale_robustness` except ``per_image`` (set here); without median
    scaling ``depth_shift`` is NaN.
    """
    zoomed = scale_robustness(predict, images, gt, size_wh, zoom, "zoom", per_image=True, **kwargs)
    cropped = scale_robustness(predict, images, gt, size_wh, zoom, "crop", per_image=True, **kwargs)
    z, c = aggregate_metrics(zoomed), aggregate_metrics(cropped)
    ok = np.isfinite(zoomed["ratio"]) & np.isfinite(cropped["ratio"])  # NaN: no valid pixel
    shift = float(np.median(cropped["ratio"][ok] / zoomed["ratio"][ok])) if ok.any() else float("nan")
    return {"zoom_abs_rel": z["abs_rel"], "crop_abs_rel": c["abs_rel"], "gap": z["abs_rel"] - c["abs_rel"],
            "depth_shift": shift}


RESOLUTION_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)


def scaled_size(size_wh: tuple[int, int], factor: float) -> tuple[int, int]:
    """``(w, h)`` times ``factor`` on both sides, rounded to whole pixels (at least 1). The result
    need not be divisible by 32: the networks upsample to each skip's size."""
    if not factor > 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    w, h = size_wh
    return max(1, int(round(w * factor))), max(1, int(round(h * factor)))


def resolution_curve(predict: Callable, images: Sequence[np.ndarray], gt, size_wh: tuple[int, int],
                     factors: Sequence[float] = RESOLUTION_FACTORS, *, post_process: str = "none",
                     batch_size: int = 8, min_depth: float = 0.1, max_depth: float = 100.0,
                     **metric_kwargs) -> dict[float, dict]:
    """Resolution robustness (the protocol of RA-Depth, Gao et al., ECCV 2022): the network
    trained at ``size_wh`` is run at ``factor x`` that size (both sides, the whole image, same
    field of view) and scored against the same GT with the same protocol (``metric_kwargs`` go
    to :func:`depth.metrics.compute_depth_metrics`; per-image median scaling by default).

    Returns ``{factor: metrics}``; each entry also holds ``size`` ``(w, h)`` and, when ``1.0`` is
    among the factors, ``abs_rel_vs_1x`` = abs rel / abs rel at the training size. ``images`` must
    be re-iterable (a sequence), as every factor reads them again.
    """
    curve: dict[float, dict] = {}
    for f in factors:
        size = scaled_size(size_wh, f)
        disp = predict_disparities(predict, images, size, post_process=post_process, batch_size=batch_size,
                                   min_depth=min_depth, max_depth=max_depth)
        curve[float(f)] = {**compute_depth_metrics(disp, gt, **metric_kwargs), "size": size}
    if 1.0 in curve:
        ref = curve[1.0]["abs_rel"]
        for m in curve.values():
            m["abs_rel_vs_1x"] = m["abs_rel"] / ref
    return curve


# ----------------------------------------------------------------------------------------------
# Pose: ATE over 5-frame snippets (SfMLearner / Monodepth2 evaluate_pose.py)
# ----------------------------------------------------------------------------------------------

def dump_xyz(source_to_target_transformations: Sequence[np.ndarray]) -> np.ndarray:
    """Camera positions of a snippet, starting at the origin, chaining the relative transforms."""
    xyzs = []
    cam_to_world = np.eye(4)
    xyzs.append(cam_to_world[:3, 3])
    for T in source_to_target_transformations:
        cam_to_world = np.dot(cam_to_world, T)
        xyzs.append(cam_to_world[:3, 3])
    return np.array(xyzs)


def compute_ate(gtruth_xyz: np.ndarray, pred_xyz_o: np.ndarray) -> float:
    """ATE of one snippet as the community computes it: align the first positions, fit one scale
    by least squares, and return ``sqrt(sum of squared errors) / n_frames``."""
    offset = gtruth_xyz[0] - pred_xyz_o[0]
    pred_xyz = pred_xyz_o + offset[None, :]
    denom = np.sum(pred_xyz ** 2)
    scale = np.sum(gtruth_xyz * pred_xyz) / denom if denom > 0 else 0.0
    alignment_error = pred_xyz * scale - gtruth_xyz
    return float(np.sqrt(np.sum(alignment_error ** 2)) / gtruth_xyz.shape[0])


def load_odometry_poses(path: str | Path) -> np.ndarray:
    """KITTI odometry GT (12 numbers a line, 3x4 ``[R|t]``) as ``(N, 4, 4)`` float64."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"odometry pose file not found: {path}")
    a = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if a.shape[1] != 12:
        raise ValueError(f"odometry pose file {path}: expected 12 numbers per line, got {a.shape[1]}")
    T = np.zeros((len(a), 4, 4))
    T[:, :3, :] = a.reshape(-1, 3, 4)
    T[:, 3, 3] = 1.0
    return T


def gt_local_poses(global_poses: np.ndarray) -> np.ndarray:
    """Relative transforms ``inv(inv(G[i-1]) @ G[i])`` for i >= 1: frame i-1 -> frame i, the
    convention of the pose network (``X_i = T @ X_{i-1}``)."""
    return np.stack([np.linalg.inv(np.dot(np.linalg.inv(global_poses[i - 1]), global_poses[i]))
                     for i in range(1, len(global_poses))]) if len(global_poses) > 1 else np.zeros((0, 4, 4))


def snippet_ates(pred_poses: np.ndarray, global_gt_poses: np.ndarray, track_length: int = 5) -> np.ndarray:
    """ATE of every snippet of ``track_length`` frames (Monodepth2's evaluate_pose.py loop).

    ``pred_poses[i]``: predicted 4x4 transform frame i -> frame i+1 (``N-1`` of them for ``N`` GT
    poses). Snippets start at every frame; the last ones are shorter, as in the reference code.
    """
    pred_poses = np.asarray(pred_poses, dtype=np.float64)
    gt_local = gt_local_poses(np.asarray(global_gt_poses, dtype=np.float64))
    if len(pred_poses) != len(gt_local):
        raise ValueError(f"{len(pred_poses)} predicted relative poses but {len(gt_local)} GT relative "
                         f"poses ({len(global_gt_poses)} frames): they must match")
    num_frames = len(global_gt_poses)
    ates = []
    for i in range(0, num_frames - 1):
        local_xyzs = dump_xyz(pred_poses[i:i + track_length - 1])
        gt_local_xyzs = dump_xyz(gt_local[i:i + track_length - 1])
        ates.append(compute_ate(gt_local_xyzs, local_xyzs))
    return np.array(ates)


def predict_relative_poses(pose_predict: Callable, frames: Iterable[np.ndarray], size_wh: tuple[int, int],
                           batch_size: int = 8, progress: bool = False) -> np.ndarray:
    """``(N-1, 4, 4)`` transforms frame i -> frame i+1 from consecutive full-resolution RGB frames.

    ``pose_predict(frame_a, frame_b)`` takes two ``(B, 3, h, w)`` tensors in ``[0, 1]`` and returns
    ``(axisangle (B, 3), translation (B, 3))`` of the transform a -> b (Monodepth2's convention).
    Frames are resized with :func:`data.frames.resize_image`, the resize of every other path.
    """
    out = []
    pairs = itertools.pairwise(resize_image(im, size_wh) for im in frames)  # (frame i, frame i+1)
    with tqdm(desc="pose", unit="pair", disable=not progress) as bar, torch.inference_mode():
        for batch in batched(pairs, batch_size):
            frames_a, frames_b = zip(*batch)
            aa, t = pose_predict(frames_to_tensor(frames_a), frames_to_tensor(frames_b))
            out.append(pose_vector_to_matrix(aa.reshape(-1, 3), t.reshape(-1, 3)).double().cpu().numpy())
            bar.update(len(batch))
    return np.concatenate(out) if out else np.zeros((0, 4, 4))
