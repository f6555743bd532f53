"""Pictures for people: colourised disparity maps (TensorBoard, predict)."""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = ["colorize_disparity", "side_by_side"]


def colorize_disparity(disp: Tensor) -> np.ndarray:
    """``(1, H, W)`` disparity -> ``(3, H, W)`` uint8 magma image, mapped linearly from its minimum
    (black) to its 95th percentile (white), as Monodepth2's ``test_simple.py`` does."""
    d = disp.detach().float().cpu().numpy()[0]
    vmin = float(d.min())
    vmax = max(float(np.percentile(d, 95)), vmin + 1e-8)
    d8 = np.clip((d - vmin) / (vmax - vmin) * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(d8, cv2.COLORMAP_MAGMA), cv2.COLOR_BGR2RGB).transpose(2, 0, 1)


def side_by_side(rgb: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """Input (top) and magma disparity (bottom) of the same size: ``(2H, W, 3)`` uint8 RGB."""
    colour = colorize_disparity(torch.from_numpy(np.ascontiguousarray(disp[None], dtype=np.float32)))
    return np.concatenate([rgb, colour.transpose(1, 2, 0)], axis=0)
