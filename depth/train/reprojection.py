"""Warping a source view into the target view, and the photometric error between images.

Images are ``(B, 3, H, W)`` floats in ``[0, 1]``. Geometry conventions: :mod:`depth.geometry`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from depth.geometry import backproject, pixels_to_grid, project

__all__ = ["warp", "ssim", "photometric_error"]


def warp(source: Tensor, depth: Tensor, K: Tensor, T_src_tgt: Tensor,
         K_src: Tensor | None = None) -> Tensor:
    """Resample ``source`` into the target view.

    Every target pixel is back-projected with its ``depth`` and ``K^-1``, moved by ``T_src_tgt``
    into the source camera, projected with ``K_src`` (default: ``K``) and the source is sampled
    there bilinearly (``align_corners=True``, border padding, as Monodepth2).

    Args:
        source: ``(B, C, H, W)`` source image.
        depth: ``(B, 1, H, W)`` target depth, metres.
        K: ``(B, 3, 3)`` target intrinsics (pixels of this ``H x W``).
        T_src_tgt: ``(B, 4, 4)`` target-to-source transform.
    Returns:
        ``(B, C, H, W)`` warped source.
    """
    if source.shape[-2:] != depth.shape[-2:]:
        raise ValueError(f"source {tuple(source.shape)} and depth {tuple(depth.shape)} differ in size")
    points = backproject(depth, K)
    uv = project(points, K if K_src is None else K_src, T_src_tgt)
    grid = pixels_to_grid(uv).to(source.dtype)
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)


def ssim(x: Tensor, y: Tensor, c1: float = 0.01 ** 2, c2: float = 0.03 ** 2) -> Tensor:
    """Per-pixel SSIM with a 3x3 box window on reflection-padded images (Monodepth2's SSIM).

    Returns ``(B, C, H, W)``; 1 where the images agree. Not kornia's SSIM (Gaussian window).
    """
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x = F.avg_pool2d(x, 3, 1)
    mu_y = F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x ** 2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y ** 2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    den = (mu_x ** 2 + mu_y ** 2 + c1) * (sigma_x + sigma_y + c2)
    return num / den


def photometric_error(pred: Tensor, target: Tensor, alpha: float = 0.85,
                      charbonnier: bool = False, eps: float = 1e-6) -> Tensor:
    """``alpha * clamp((1 - SSIM) / 2, 0, 1) + (1 - alpha) * L1``, each averaged over channels.

    With ``charbonnier=True`` the L1 term is ``sqrt(diff^2 + eps)`` (the dabnet recipe).
    Returns ``(B, 1, H, W)``. Computed in float32 whatever the input dtype.
    """
    pred = pred.float()
    target = target.float()
    diff = pred - target
    l1 = torch.sqrt(diff * diff + eps) if charbonnier else diff.abs()
    l1 = l1.mean(1, keepdim=True)
    if alpha == 0:
        return l1
    dssim = torch.clamp((1 - ssim(pred, target)) / 2, 0, 1).mean(1, keepdim=True)
    return alpha * dssim + (1 - alpha) * l1
