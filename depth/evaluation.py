"""Eigen-protocol helpers: post-processing, scale-robustness tests and pose ATE.

Model-dependent functions take a ``predict`` callable: ``predict(images) -> sigmoid disparity``
with ``images`` a ``(B, 3, h, w)`` float tensor in ``[0, 1]`` at the network size and the result
``(B, 1, h, w)``. They never import network code. Disparities returned here are the *scaled*
disparities of :func:`depth.geometry.disp_to_depth` (what Monodepth2 saves and evaluates).

Windows are ``(top, bottom, left, right)`` in pixels (bottom/right exclusive).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

__all__ = [
    "batch_post_process_disparity",
    "centre_window",
    "resize_image",
    "images_to_tensor",
    "predict_disparities",
    "zoom_post_process",
    "scale_robustness",
    "zoom_robustness",
    "ZOOM_PP_FACTORS",
    "dump_xyz",
    "compute_ate",
    "load_odometry_poses",
    "gt_local_poses",
    "snippet_ates",
    "predict_relative_poses",
]

ZOOM_PP_FACTORS = (2.0, 4.0 / 3.0)


# ----------------------------------------------------------------------------------------------
# Post-processing
# ----------------------------------------------------------------------------------------------

def batch_post_process_disparity(l_disp: np.ndarray, r_disp: np.ndarray) -> np.ndarray:
    """Monodepth2's flip post-processing.

    ``l_disp``: ``(N, h, w)`` disparities of the images; ``r_disp``: disparities of the flipped
    images, flipped back. The left 5 % of the result comes from ``r_disp``, the right 5 % from
    ``l_disp``, a linear ramp joins them to the mean of both.
    """
    _, h, w = l_disp.shape
    m_disp = 0.5 * (l_disp + r_disp)
    l, _ = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    l_mask = (1.0 - np.clip(20 * (l - 0.05), 0, 1))[None, ...]
    r_mask = l_mask[:, :, ::-1]
    return (r_mask * l_disp + l_mask * r_disp + (1.0 - l_mask - r_mask) * m_disp).astype(l_disp.dtype)


def centre_window(height: int, width: int, zoom: float) -> tuple[int, int, int, int]:
    """The centred ``1/zoom`` window ``(top, bottom, left, right)`` of a ``height x width`` image."""
    if not zoom >= 1.0:
        raise ValueError(f"zoom must be >= 1, got {zoom}")
    h = max(1, int(round(height / zoom)))
    w = max(1, int(round(width / zoom)))
    top = (height - h) // 2
    left = (width - w) // 2
    return top, top + h, left, left + w


def resize_image(img: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` -> network size with PIL's LANCZOS filter (as Monodepth2)."""
    from PIL import Image

    if img.shape[1] == size_wh[0] and img.shape[0] == size_wh[1]:
        return img
    return np.asarray(Image.fromarray(img).resize(tuple(int(s) for s in size_wh), Image.LANCZOS))


def images_to_tensor(images: Sequence[np.ndarray]):
    """List of ``(h, w, 3)`` uint8 RGB -> ``(B, 3, h, w)`` float tensor in ``[0, 1]``."""
    import torch

    arr = np.stack([np.asarray(im) for im in images]).astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def _crop(img: np.ndarray, win) -> np.ndarray:
    t, b, l, r = win
    return img[t:b, l:r]


def _predict_scaled(predict, batch, min_depth, max_depth) -> np.ndarray:
    import torch

    from depth.geometry import disp_to_depth

    with torch.inference_mode():
        sig = predict(batch)
        disp, _ = disp_to_depth(sig, min_depth, max_depth)
    return disp[:, 0].float().cpu().numpy()


def _predict_resized(predict, images, size_wh, min_depth, max_depth, flip: bool) -> np.ndarray:
    import torch

    x = images_to_tensor([resize_image(im, size_wh) for im in images])
    if not flip:
        return _predict_scaled(predict, x, min_depth, max_depth)
    n = x.shape[0]
    d = _predict_scaled(predict, torch.cat([x, torch.flip(x, [3])], 0), min_depth, max_depth)
    return batch_post_process_disparity(d[:n], d[n:, :, ::-1])


def zoom_post_process(predict, images: Sequence[np.ndarray], size_wh: tuple[int, int], *,
                      min_depth: float = 0.1, max_depth: float = 100.0,
                      zooms: Sequence[float] = ZOOM_PP_FACTORS) -> np.ndarray:
    """The zoom post-processing (METHOD.md section 4): the full-image prediction averaged, inside
    each centre window, with the predictions made on that window (cut from the full-resolution
    image and resized to the network size). Returns ``(N, h, w)`` scaled disparities."""
    w_net, h_net = size_wh
    acc = _predict_resized(predict, images, size_wh, min_depth, max_depth, False).astype(np.float64)
    cnt = np.ones_like(acc)
    for z in zooms:
        crops = [_crop(im, centre_window(im.shape[0], im.shape[1], z)) for im in images]
        d = _predict_resized(predict, crops, size_wh, min_depth, max_depth, False)
        t, b, l, r = centre_window(h_net, w_net, z)
        from depth.metrics import resize_linear

        for i in range(len(images)):
            acc[i, t:b, l:r] += resize_linear(d[i], (r - l, b - t))
            cnt[i, t:b, l:r] += 1
    return (acc / cnt).astype(np.float32)


def predict_disparities(predict: Callable, images: Iterable[np.ndarray], size_wh: tuple[int, int], *,
                        post_process: str = "none", batch_size: int = 8, min_depth: float = 0.1,
                        max_depth: float = 100.0, zoom: float | None = None,
                        progress: bool = False) -> np.ndarray:
    """Scaled disparities ``(N, h, w)`` float32 of full-resolution RGB uint8 images.

    ``post_process``: ``none``, ``flip`` (Monodepth2) or ``zoom`` (centre-crop averaging).
    ``zoom``: predict on the centre ``1/zoom`` window of every image instead of the whole image.
    """
    if post_process not in ("none", "flip", "zoom"):
        raise ValueError(f"post_process must be none, flip or zoom, got {post_process!r}")
    out = []
    batch: list[np.ndarray] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="predict", unit="img")

    def flush():
        if not batch:
            return
        if post_process == "zoom":
            out.append(zoom_post_process(predict, batch, size_wh, min_depth=min_depth, max_depth=max_depth))
        else:
            out.append(_predict_resized(predict, batch, size_wh, min_depth, max_depth, post_process == "flip"))
        if bar is not None:
            bar.update(len(batch))
        batch.clear()

    for im in images:
        if zoom is not None and zoom != 1:
            im = _crop(im, centre_window(im.shape[0], im.shape[1], zoom))
        batch.append(im)
        if len(batch) == batch_size:
            flush()
    flush()
    if bar is not None:
        bar.close()
    if not out:
        return np.zeros((0, size_wh[1], size_wh[0]), np.float32)
    return np.concatenate(out).astype(np.float32)


def scale_robustness(predict: Callable, images: Sequence[np.ndarray], gt, size_wh: tuple[int, int],
                     zoom: float, mode: str = "zoom", *, post_process: str = "none",
                     batch_size: int = 8, min_depth: float = 0.1, max_depth: float = 100.0,
                     per_image: bool = False, **metric_kwargs) -> dict:
    """The paper's scale test (METHOD.md section 7, last bullet).

    ``mode="zoom"``: predict on the centre ``1/zoom`` crop resized to the network size and score it
    against the same GT window. ``mode="crop"``: predict on the full image and score the centre
    ``1/zoom`` of that prediction on the same window. The Garg crop stays in full-image
    coordinates; median scaling is per image as usual.
    """
    from depth.metrics import compute_depth_metrics, compute_depth_metrics_per_image

    if mode not in ("zoom", "crop"):
        raise ValueError(f"mode must be 'zoom' or 'crop', got {mode!r}")
    shapes = gt.shapes if hasattr(gt, "shapes") else [np.shape(m) for m in gt]
    if len(images) != len(shapes):
        raise ValueError(f"{len(images)} images but {len(shapes)} GT maps")
    for im, (h, w) in zip(images, shapes):
        if im.shape[:2] != (h, w):
            raise ValueError(f"image size {im.shape[:2]} differs from its GT map size {(h, w)}")
    windows = np.array([centre_window(h, w, zoom) for h, w in shapes], dtype=np.int64)
    disp = predict_disparities(predict, images, size_wh, post_process=post_process, batch_size=batch_size,
                               min_depth=min_depth, max_depth=max_depth,
                               zoom=zoom if mode == "zoom" else None)
    fn = compute_depth_metrics_per_image if per_image else compute_depth_metrics
    return fn(disp, gt, windows=windows, pred_in_window=(mode == "zoom"), **metric_kwargs)


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
    from depth.metrics import aggregate_metrics

    zoomed = scale_robustness(predict, images, gt, size_wh, zoom, "zoom", per_image=True, **kwargs)
    cropped = scale_robustness(predict, images, gt, size_wh, zoom, "crop", per_image=True, **kwargs)
    z, c = aggregate_metrics(zoomed), aggregate_metrics(cropped)
    ok = np.isfinite(zoomed["ratio"]) & np.isfinite(cropped["ratio"])  # NaN: no valid pixel
    shift = float(np.median(cropped["ratio"][ok] / zoomed["ratio"][ok])) if ok.any() else float("nan")
    return {"zoom_abs_rel": z["abs_rel"], "crop_abs_rel": c["abs_rel"], "gap": z["abs_rel"] - c["abs_rel"],
            "depth_shift": shift}


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
    """
    import torch

    from depth.geometry import pose_vector_to_matrix

    out = []
    prev = None
    pairs_a: list[np.ndarray] = []
    pairs_b: list[np.ndarray] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="pose", unit="pair")

    def flush():
        if not pairs_a:
            return
        with torch.inference_mode():
            aa, t = pose_predict(images_to_tensor(pairs_a), images_to_tensor(pairs_b))
            out.append(pose_vector_to_matrix(aa.reshape(-1, 3), t.reshape(-1, 3)).double().cpu().numpy())
        if bar is not None:
            bar.update(len(pairs_a))
        pairs_a.clear()
        pairs_b.clear()

    for im in frames:
        cur = resize_image(im, size_wh)
        if prev is not None:
            pairs_a.append(prev)
            pairs_b.append(cur)
            if len(pairs_a) == batch_size:
                flush()
        prev = cur
    flush()
    if bar is not None:
        bar.close()
    return np.concatenate(out) if out else np.zeros((0, 4, 4))
