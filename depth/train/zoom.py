"""Zoom imitation: random centred crops resized back to the network size, with matching intrinsics.

Each zoomed sample of a batch gets one crop box ``[x0, y0, w, h]`` (integers, pixels of the
``H x W`` network-size image); the same box is applied to every frame of the sample and the crop is
resized back to ``H x W``. The intrinsics follow the **actual integer crop**:
``f_x' = f_x * W / w``, ``f_y' = f_y * H / h`` and ``c' = (c - offset) * scale``
(:func:`depth.geometry.crop_intrinsics`), which equals "c unchanged" only for a centred principal
point.

Sampling convention (what makes the intrinsics update exact):

* Pixel centres are integers (:mod:`depth.geometry`). Output pixel ``u'`` of the zoomed image shows
  the input image at ``u = x0 + u' * w / W`` (and ``v = y0 + v' * h / H``), i.e. the zoom maps
  ``u' = (u - x0) * W / w`` -- exactly the map that ``crop_intrinsics`` assumes (the community
  ``u * s`` convention that :func:`depth.geometry.scale_intrinsics` also uses).
* The resampling is a bilinear ``grid_sample(..., align_corners=True)`` at exactly those positions,
  so a pinhole image with intrinsics ``K`` becomes a pinhole image with intrinsics ``K'`` up to the
  bilinear interpolation of the texture only (a linear image ``I(u) = u`` is reproduced exactly).
  ``F.interpolate(crop, align_corners=False)`` would instead map ``u' = (u - x0 + 0.5) * W / w - 0.5``
  and need ``c' = (c - x0 + 0.5) * s - 0.5``; we do not use it.
* The sampled window is ``[x0, x0 + w - w / W]``: it starts at the crop's first pixel centre and
  stays inside the image (for ``w < W``, ``x0 + w <= W - 1``), so no padding is ever used.
* Un-zoomed samples (full box ``[0, 0, W, H]``) are returned bit-exactly unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from depth.checks import check_shape
from depth.geometry import crop_intrinsics

__all__ = ["sample_zoom_boxes", "full_boxes", "zoom_images", "zoom_intrinsics", "apply_zoom"]


def _check_size(height: int, width: int) -> None:
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"height and width must be >= 1, got {height}x{width}")


def full_boxes(batch_size: int, height: int, width: int, device=None) -> Tensor:
    """``(B, 4)`` int64 boxes ``[0, 0, W, H]`` (no zoom)."""
    _check_size(height, width)
    box = torch.tensor([0, 0, int(width), int(height)], dtype=torch.int64, device=device)
    return box.repeat(int(batch_size), 1)


def sample_zoom_boxes(batch_size: int, height: int, width: int, prob: float = 0.5, min_scale: float = 0.5,
                      generator: torch.Generator | None = None, device=None) -> Tensor:
    """Draw one centred zoom crop per sample.

    With probability ``prob`` a sample is zoomed: crop fractions ``s_x, s_y ~ U(min_scale, 1)`` are
    drawn **independently** (anisotropic zoom, ``r = 1 / s`` is not uniform), the crop size is
    ``w = round(s_x * W)``, ``h = round(s_y * H)`` (at least 1) and the crop is centred:
    ``x0 = (W - w) // 2``, ``y0 = (H - h) // 2``. Other samples get the full box ``[0, 0, W, H]``.

    Args:
        batch_size: number of samples ``B``.
        height, width: network-size image ``H x W`` in pixels.
        prob: probability of zooming a sample, in ``[0, 1]``.
        min_scale: smallest crop fraction, in ``(0, 1]``.
        generator: optional CPU ``torch.Generator`` for reproducible draws.
        device: device of the returned tensor (the draws are made on the CPU).
    Returns:
        ``(B, 4)`` int64 tensor of boxes ``[x0, y0, w_crop, h_crop]``.
    """
    _check_size(height, width)
    if int(batch_size) < 0:
        raise ValueError(f"batch_size must be >= 0, got {batch_size}")
    if not 0.0 <= float(prob) <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob}")
    if not 0.0 < float(min_scale) <= 1.0:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
    b = int(batch_size)
    zoom = torch.rand(b, generator=generator, dtype=torch.float64) < prob
    frac = min_scale + (1.0 - min_scale) * torch.rand(b, 2, generator=generator, dtype=torch.float64)
    size = torch.tensor([width, height], dtype=torch.float64)
    wh = torch.round(frac * size).to(torch.int64)
    wh = torch.minimum(wh.clamp(min=1), size.to(torch.int64))
    full = torch.tensor([width, height], dtype=torch.int64).expand(b, 2)
    wh = torch.where(zoom[:, None], wh, full)
    xy0 = (full - wh) // 2
    return torch.cat([xy0, wh], dim=1).to(device)


def _check_boxes(boxes: Tensor, batch_size: int, height: int, width: int) -> None:
    if not isinstance(boxes, Tensor):
        raise TypeError(f"boxes must be a Tensor, got {type(boxes)}")
    if boxes.dtype.is_floating_point or boxes.dtype.is_complex or boxes.dtype == torch.bool:
        raise TypeError(f"boxes must be an integer tensor (actual pixel crops), got {boxes.dtype}")
    check_shape(boxes, "B 4", "boxes", B=batch_size)
    x0, y0, w, h = boxes.unbind(1)
    ok = (x0 >= 0) & (y0 >= 0) & (w >= 1) & (h >= 1) & (x0 + w <= width) & (y0 + h <= height)
    if not bool(ok.all()):
        raise ValueError(f"boxes must lie inside the {height}x{width} image, got {boxes.tolist()}")


def _is_full(boxes: Tensor, height: int, width: int) -> Tensor:
    full = torch.tensor([0, 0, width, height], dtype=boxes.dtype, device=boxes.device)
    return (boxes == full).all(dim=1)


def zoom_images(images: Tensor, boxes: Tensor) -> Tensor:
    """Crop each sample's box and resize it back to ``H x W`` (bilinear).

    Output pixel ``(u', v')`` samples the input at ``(x0 + u' * w / W, y0 + v' * h / H)`` with
    ``grid_sample(..., align_corners=True)``: consistent with :func:`zoom_intrinsics` (see the module
    docstring). One batched ``grid_sample`` over the zoomed samples; full boxes are skipped and
    returned bit-exactly. Differentiable with respect to ``images``.

    Args:
        images: ``(B, C, H, W)`` or ``(B, F, C, H, W)`` (``F`` frames of a sample share the box);
            any floating dtype, any ``C`` (colour images, depth or disparity maps).
        boxes: ``(B, 4)`` integer ``[x0, y0, w_crop, h_crop]`` inside the ``H x W`` image.
    Returns:
        Tensor of the shape and dtype of ``images``.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a Tensor, got {type(images)}")
    check_shape(images, "B C H W | B F C H W", "images")
    if not images.dtype.is_floating_point:
        raise TypeError(f"images must be a floating point tensor, got {images.dtype}")
    b, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    # checked and selected where the boxes are (the trainer draws them on the CPU): no device sync
    _check_boxes(boxes, b, h, w)
    idx = torch.nonzero(~_is_full(boxes, h, w)).flatten()
    if idx.numel() == 0:
        return images.clone()
    bz = boxes[idx].to(images.device, non_blocking=True)
    idx = idx.to(images.device, non_blocking=True)
    n = bz.shape[0]
    gdtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    x0, y0, cw, ch = (t.to(gdtype) for t in bz.unbind(1))
    ar_u = torch.arange(w, device=images.device, dtype=gdtype)
    ar_v = torch.arange(h, device=images.device, dtype=gdtype)
    u = x0[:, None] + ar_u[None] * (cw / w)[:, None]  # n x W source columns
    v = y0[:, None] + ar_v[None] * (ch / h)[:, None]  # n x H source rows
    gu = u / max(w - 1, 1) * 2 - 1 if w > 1 else torch.zeros_like(u)
    gv = v / max(h - 1, 1) * 2 - 1 if h > 1 else torch.zeros_like(v)
    grid = torch.stack([gu[:, None, :].expand(n, h, w), gv[:, :, None].expand(n, h, w)], dim=-1)
    sel = images[idx]
    lead = sel.shape[1:-2]  # (C,) or (F, C)
    if images.dim() == 5:
        f = sel.shape[1]
        grid = grid[:, None].expand(n, f, h, w, 2).reshape(n * f, h, w, 2)
        flat = sel.reshape(n * f, sel.shape[2], h, w)
    else:
        flat = sel
    zoomed = F.grid_sample(flat, grid.to(images.dtype), mode="bilinear", padding_mode="border",
                           align_corners=True)
    out = images.clone()
    out[idx] = zoomed.reshape(n, *lead, h, w)
    return out


def zoom_intrinsics(K: Tensor, boxes: Tensor, height: int, width: int) -> Tensor:
    """Intrinsics of the zoomed images: ``crop_intrinsics`` with the actual integer crop.

    ``f_x' = f_x * W / w``, ``f_y' = f_y * H / h``, ``c_x' = (c_x - x0) * W / w``,
    ``c_y' = (c_y - y0) * H / h`` (``u' = (u - x0) * W / w``, the map :func:`zoom_images`
    realises). Full boxes leave ``K`` unchanged.

    Args:
        K: ``(B, 3, 3)`` intrinsics in pixels of the ``height x width`` image.
        boxes: ``(B, 4)`` integer ``[x0, y0, w_crop, h_crop]``.
    Returns:
        ``(B, 3, 3)`` intrinsics in pixels of the zoomed ``height x width`` image.
    """
    check_shape(K, "B 3 3", "K")
    _check_size(height, width)
    _check_boxes(boxes, K.shape[0], height, width)
    dtype = K.dtype if K.dtype.is_floating_point else torch.float32
    bx = boxes.to(device=K.device, dtype=dtype)
    x0, y0, cw, ch = bx.unbind(1)
    return crop_intrinsics(K.to(dtype), x0, y0, width / cw, height / ch)


def apply_zoom(color: Tensor, K: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Zoom images and their intrinsics together.

    Args:
        color: ``(B, C, H, W)`` or ``(B, F, C, H, W)`` images (all frames of a sample share ``K``).
        K: ``(B, 3, 3)`` intrinsics in pixels of ``H x W``.
        boxes: ``(B, 4)`` integer boxes, e.g. from :func:`sample_zoom_boxes`.
    Returns:
        ``(zoomed images, zoomed K)``.
    """
    check_shape(color, "B C H W | B F C H W", "color")
    h, w = color.shape[-2:]
    return zoom_images(color, boxes), zoom_intrinsics(K, boxes, h, w)
