"""Colour jitter on the training device: parameters drawn per sample in the dataset (so a sample is
the same whatever the worker or resume point), applied to the batch with kornia where the batch is.

The operations and their parameters are torchvision's ``ColorJitter`` (what Monodepth2 trains
with), applied in a random order per sample, one draw for all frames of a sample:

* brightness ``b``: ``x b``;
* contrast ``c``: ``x c + m (1 - c)``, ``m`` the mean of the image's grey levels
  (``0.299 R + 0.587 G + 0.114 B``);
* saturation ``s``: ``x s + g (1 - s)``, ``g`` the pixel's grey level;
* hue ``h`` (a fraction of a turn, ``[-0.5, 0.5]``): the HSV hue shifted by ``h``;

each followed by a clamp to ``[0, 1]``. Parameters travel as ``factors`` ``(B, 4)`` float32
``(b, c, s, h)`` and ``order`` ``(B, 4)`` int64, a permutation of ``BRIGHTNESS, CONTRAST,
SATURATION, HUE`` (``order[i, k]`` is the ``k``-th operation of sample ``i``); a sample without
jitter has the identity factors :data:`IDENTITY` and is returned untouched.
"""
from __future__ import annotations

import math

import kornia.enhance as KE
import numpy as np
import torch
from torch import Tensor

__all__ = ["BRIGHTNESS", "CONTRAST", "SATURATION", "HUE", "IDENTITY", "draw_color_jitter", "color_jitter"]

BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)
IDENTITY = (1.0, 1.0, 1.0, 0.0)


def draw_color_jitter(seed: int, brightness: float, contrast: float, saturation: float,
                      hue: float) -> tuple[np.ndarray, np.ndarray]:
    """``(factors, order)`` of one sample from ``seed``: brightness, contrast and saturation factors
    ``~ U(max(0, 1 - v), 1 + v)``, hue ``~ U(-hue, hue)``, and a random order of the four
    (torchvision's ``ColorJitter.get_params``). ``factors`` ``(4,)`` float32, ``order`` ``(4,)`` int64."""
    rng = np.random.default_rng(seed)
    factors = [rng.uniform(max(0.0, 1.0 - v), 1.0 + v) for v in (brightness, contrast, saturation)]
    factors.append(rng.uniform(-hue, hue))
    return np.asarray(factors, dtype=np.float32), rng.permutation(4).astype(np.int64)


def _apply(op: int, x: Tensor, f: Tensor) -> Tensor:
    """Operation ``op`` on ``(N, 3, H, W)`` images with per-image factors ``f`` ``(N,)``."""
    if op == BRIGHTNESS:
        return KE.adjust_brightness_accumulative(x, f)
    if op == CONTRAST:
        return KE.adjust_contrast_with_mean_subtraction(x, f)
    if op == SATURATION:
        return KE.adjust_saturation_with_gray_subtraction(x, f)
    return KE.adjust_hue(x, f * (2.0 * math.pi))  # kornia's hue is in radians


def color_jitter(images: Tensor, factors: Tensor, order: Tensor) -> Tensor:
    """Jitter each sample of ``images`` with its parameters -> a new tensor of the same shape.

    ``images``: ``(B, 3, H, W)`` or ``(B, F, 3, H, W)`` float in ``[0, 1]`` (all ``F`` frames of a
    sample get its parameters; the contrast mean is each frame's own). ``factors`` ``(B, 4)`` and
    ``order`` ``(B, 4)`` as in the module docstring. Which samples take which operation is decided
    from ``factors``/``order`` on the host -- keep them on the CPU (the loader's) and the device
    sees no synchronisation: each sample is processed exactly by its four operations, grouped by
    (position, operation) with index tensors sent asynchronously.
    """
    if images.dim() not in (4, 5) or images.shape[-3] != 3:
        raise ValueError(f"images: expected (B, 3, H, W) or (B, F, 3, H, W), got {tuple(images.shape)}")
    b = images.shape[0]
    if tuple(factors.shape) != (b, 4) or tuple(order.shape) != (b, 4):
        raise ValueError(f"factors and order: expected ({b}, 4) each, got {tuple(factors.shape)} and "
                         f"{tuple(order.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images: expected a floating-point tensor in [0, 1], got {images.dtype}")
    host_f, host_o = factors.detach().cpu(), order.cpu()
    jittered = [i for i in range(b) if tuple(host_f[i].tolist()) != IDENTITY]
    if not jittered:
        return images
    x = images if images.dim() == 5 else images[:, None]
    n_frames = x.shape[1]
    out = x.clone()
    f_dev = factors.to(images.device, images.dtype, non_blocking=True)
    for position in range(4):
        for op in range(4):
            rows = [i for i in jittered if int(host_o[i, position]) == op]
            if not rows:
                continue
            idx = torch.tensor(rows, dtype=torch.int64).to(images.device, non_blocking=True)
            sub = out.index_select(0, idx).flatten(0, 1)  # (n F, 3, H, W)
            f = f_dev.index_select(0, idx)[:, op].repeat_interleave(n_frames)
            out.index_copy_(0, idx, _apply(op, sub, f).view(len(rows), n_frames, *x.shape[2:]))
    return out if images.dim() == 5 else out[:, 0]
