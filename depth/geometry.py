"""Camera geometry: intrinsics, back-projection, projection, pose vectors, disparity <-> depth.

Conventions (the one place they are fixed):

* Pixel coordinates: ``u`` along the width (column), ``v`` along the height (row); the centre of
  pixel ``(col, row)`` is at ``(u, v) = (col, row)`` (integer centres, as OpenCV and KITTI's
  ``P_rect`` matrices use).
* Intrinsics ``K``: ``(B, 3, 3)`` float tensors in **pixels of the image they are used with**.
* Camera frame: x right, y down, z forward (metres).
* Poses: ``T_src_tgt`` is a ``(B, 4, 4)`` rigid transform that maps a point expressed in the
  target camera frame into the source camera frame: ``X_src = T_src_tgt @ X_tgt``.
* Sampling: pixel coordinates are normalised to ``[-1, 1]`` by ``(W - 1)`` and ``(H - 1)`` and
  sampled with ``grid_sample(..., align_corners=True)`` (see :func:`pixels_to_grid`).
* Depth maps are ``(B, 1, H, W)`` in metres.
"""
from __future__ import annotations

import kornia.geometry.conversions as kconv
import torch
from torch import Tensor

from depth.checks import check_shape

__all__ = [
    "scale_intrinsics",
    "crop_intrinsics",
    "backproject",
    "project",
    "pixels_to_grid",
    "pose_vector_to_matrix",
    "disp_to_depth",
    "depth_to_disp",
    "pixel_grid",
]


def scale_intrinsics(K: Tensor, sx: float | Tensor, sy: float | Tensor) -> Tensor:
    """Intrinsics of an image resized by factors ``sx`` (width) and ``sy`` (height).

    With integer pixel centres, resizing an image of width ``W`` to ``W' = sx * W`` maps
    ``u -> (u + 0.5) * sx - 0.5``. Monodepth2 and every KITTI loader in the community rescale
    with ``u -> u * sx`` instead (``cx' = cx * sx``); we follow the community so that models and
    numbers stay comparable. The difference is below half a pixel.
    """
    check_shape(K, "B 3 3", "K")
    S = torch.zeros_like(K)
    S[:, 0, 0] = torch.as_tensor(sx, dtype=K.dtype, device=K.device)
    S[:, 1, 1] = torch.as_tensor(sy, dtype=K.dtype, device=K.device)
    S[:, 2, 2] = 1.0
    return S @ K


def crop_intrinsics(K: Tensor, x0: Tensor, y0: Tensor, sx: Tensor, sy: Tensor) -> Tensor:
    """Intrinsics after cropping at integer offset ``(x0, y0)`` and resizing by ``(sx, sy)``.

    ``f' = f * s`` and ``c' = (c - offset) * s`` per axis; all arguments are ``(B,)`` tensors.
    """
    check_shape(K, "B 3 3", "K")
    out = K.clone()
    out[:, 0, 0] = K[:, 0, 0] * sx
    out[:, 1, 1] = K[:, 1, 1] * sy
    out[:, 0, 2] = (K[:, 0, 2] - x0) * sx
    out[:, 1, 2] = (K[:, 1, 2] - y0) * sy
    return out


_GRIDS: dict[tuple, Tensor] = {}


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """Homogeneous pixel coordinates ``(3, H*W)``: rows ``u``, ``v``, ``1`` in raster order. Built
    once per (size, device, dtype) and shared: treat it as read-only."""
    key = (int(height), int(width), torch.device(device) if device is not None else torch.device("cpu"), dtype)
    grid = _GRIDS.get(key)
    if grid is None:
        grid = _GRIDS[key] = _pixel_grid(*key)
    return grid


def _pixel_grid(height: int, width: int, device, dtype) -> Tensor:
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([u.reshape(-1), v.reshape(-1), torch.ones_like(u).reshape(-1)], 0)


def backproject(depth: Tensor, K: Tensor) -> Tensor:
    """Lift every pixel to a 3-D point in its camera frame.

    Args:
        depth: ``(B, 1, H, W)`` metres.
        K: ``(B, 3, 3)`` intrinsics of that image.
    Returns:
        ``(B, 3, H, W)`` points ``depth * K^-1 [u, v, 1]^T``.
    """
    check_shape(depth, "B 1 H W", "depth")
    check_shape(K, "B 3 3", "K")
    b, _, h, w = depth.shape
    pix = pixel_grid(h, w, depth.device, depth.dtype)  # 3 x HW
    # inv_ex: no error check, so no device sync (an intrinsics matrix is invertible)
    rays = torch.linalg.inv_ex(K.to(depth.dtype))[0] @ pix  # B x 3 x HW
    return (rays * depth.reshape(b, 1, h * w)).reshape(b, 3, h, w)


def project(points: Tensor, K: Tensor, T: Tensor | None = None, eps: float = 1e-7) -> Tensor:
    """Project points (optionally moved by ``T`` first) to pixel coordinates.

    Args:
        points: ``(B, 3, H, W)`` points in the frame ``T`` maps from.
        K: ``(B, 3, 3)`` intrinsics of the destination camera.
        T: optional ``(B, 4, 4)`` transform applied to the points before projecting.
    Returns:
        ``(B, 2, H, W)`` pixel coordinates ``(u, v)`` in the destination image.
    """
    check_shape(K, "B 3 3", "K")
    b, _, h, w = points.shape
    X = points.reshape(b, 3, h * w)
    if T is not None:
        check_shape(T, "B 4 4", "T")
        X = T[:, :3, :3] @ X + T[:, :3, 3:]
    x = K.to(X.dtype) @ X
    uv = x[:, :2] / (x[:, 2:3] + eps)
    return uv.reshape(b, 2, h, w)


def pixels_to_grid(uv: Tensor) -> Tensor:
    """``(B, 2, H, W)`` pixel coordinates -> ``(B, H, W, 2)`` grid for ``grid_sample``.

    Normalises by ``(W - 1)`` and ``(H - 1)``: use with ``align_corners=True``.
    """
    _, _, h, w = uv.shape
    u = uv[:, 0] / (w - 1) * 2 - 1
    v = uv[:, 1] / (h - 1) * 2 - 1
    return torch.stack([u, v], dim=-1)


def pose_vector_to_matrix(axisangle: Tensor, translation: Tensor, invert: bool = False) -> Tensor:
    """Rigid transform from an axis-angle rotation and a translation (Monodepth2's convention).

    ``T = [R | t]`` with ``R = exp([axisangle]_x)``; with ``invert=True`` returns
    ``T^-1 = [R^T | -R^T t]``. Inputs ``(B, 3)``; output ``(B, 4, 4)``.
    """
    check_shape(axisangle, "* 3", "axisangle")
    check_shape(translation, "* 3", "translation")
    axisangle = axisangle.reshape(-1, 3)
    translation = translation.reshape(-1, 3)
    R = kconv.axis_angle_to_rotation_matrix(axisangle)
    t = translation.unsqueeze(-1)
    if invert:
        R = R.transpose(1, 2)
        t = -R @ t
    T = torch.zeros(axisangle.shape[0], 4, 4, dtype=axisangle.dtype, device=axisangle.device)
    T[:, :3, :3] = R
    T[:, :3, 3:] = t
    T[:, 3, 3] = 1.0
    return T


def disp_to_depth(sigmoid: Tensor, min_depth: float = 0.1, max_depth: float = 100.0):
    """Network sigmoid output -> (scaled disparity, depth), Monodepth2's mapping.

    ``disp = 1/max_depth + (1/min_depth - 1/max_depth) * sigmoid``; ``depth = 1 / disp``.
    The "disparity" everywhere else in the project means this scaled ``disp``.
    """
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    disp = min_disp + (max_disp - min_disp) * sigmoid
    return disp, 1.0 / disp


def depth_to_sigmoid(depth: float, min_depth: float = 0.1, max_depth: float = 100.0) -> float:
    """The network sigmoid that :func:`disp_to_depth` maps to ``depth`` (its inverse), for
    ``min_depth < depth < max_depth``."""
    if not min_depth < depth < max_depth:
        raise ValueError(f"depth must lie strictly between {min_depth} and {max_depth}, got {depth}")
    return (1.0 / depth - 1.0 / max_depth) / (1.0 / min_depth - 1.0 / max_depth)


def depth_to_disp(depth: Tensor) -> Tensor:
    """Inverse depth; the scaled disparity of a depth map."""
    return 1.0 / depth
