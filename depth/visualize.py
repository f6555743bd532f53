"""Pictures for people: colourised disparity maps (TensorBoard, predict), a colour bar, and the
panels of predict's PNGs and videos.

Colour convention: magma, mapped linearly from a range ``(vmin, vmax)`` of disparity (black at
``vmin``, white from ``vmax`` up), as Monodepth2's ``test_simple.py`` does with ``vmin`` the map's
minimum and ``vmax`` its 95th percentile. A sequence (a video, a folder of frames) uses one range for
all its frames (:func:`disparity_range` over frames spread over it), so its colours do not flicker.
"""
from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = ["colorize_disparity", "disparity_range", "colour_bar", "side_by_side", "input_beside_depth"]

# pixels taken from each frame by disparity_range (a regular subsample: the percentile of ~20k values)
_RANGE_SAMPLES = 20_000


def disparity_range(disps: Iterable[np.ndarray]) -> tuple[float, float]:
    """``(vmin, vmax)`` over one or more disparity maps: the minimum and the 95th percentile of their
    pooled values (each map regularly subsampled to about 20k pixels, so every frame weighs the same).
    One map gives exactly :func:`colorize_disparity`'s own range up to that subsampling."""
    pooled, vmin = [], np.inf
    for d in disps:
        flat = np.asarray(d, dtype=np.float32).ravel()
        pooled.append(flat[::max(1, flat.size // _RANGE_SAMPLES)])
        vmin = min(vmin, float(flat.min()))  # the minimum is exact, not subsampled
    if not pooled:
        raise ValueError("disparity_range needs at least one map")
    return vmin, max(float(np.percentile(np.concatenate(pooled), 95)), vmin + 1e-8)


def _magma(d8: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.applyColorMap(d8, cv2.COLORMAP_MAGMA), cv2.COLOR_BGR2RGB)


def colorize_disparity(disp: Tensor, vrange: tuple[float, float] | None = None) -> np.ndarray:
    """``(1, H, W)`` disparity -> ``(3, H, W)`` uint8 magma image, mapped linearly from ``vrange``
    (default: this map's minimum and 95th percentile)."""
    d = disp.detach().float().cpu().numpy()[0]
    if vrange is None:
        vmin = float(d.min())
        vmax = max(float(np.percentile(d, 95)), vmin + 1e-8)
    else:
        vmin, vmax = float(vrange[0]), max(float(vrange[1]), float(vrange[0]) + 1e-8)
    d8 = np.clip((d - vmin) / (vmax - vmin) * 255, 0, 255).astype(np.uint8)
    return _magma(d8).transpose(2, 0, 1)


def colour_bar(height: int, vrange: tuple[float, float], scale: float | None = None,
               width: int = 64) -> np.ndarray:
    """A vertical magma bar ``(height, width, 3)`` uint8 RGB for ``vrange``: near (``vmax``, white) at
    the top, far (``vmin``, black) at the bottom. With ``scale`` (depth = ``scale / disparity``, e.g.
    metres) five ticks are labelled with their depth; without it the ends read "near" and "far"."""
    vmin, vmax = float(vrange[0]), max(float(vrange[1]), float(vrange[0]) + 1e-8)
    ramp = np.linspace(255, 0, max(2, height)).astype(np.uint8)[:, None]
    bar = np.zeros((height, width, 3), np.uint8)
    strip = min(16, width)
    bar[:, :strip] = _magma(np.repeat(ramp, strip, axis=1))
    font, fs = cv2.FONT_HERSHEY_SIMPLEX, max(0.25, min(0.4, height / 400))
    if scale is None:
        labels = [(0, "near"), (height - 1, "far")]
    else:
        labels = []
        for t in np.linspace(0.0, 1.0, 5):
            row = int(round(t * (height - 1)))
            disp = vmax - t * (vmax - vmin)
            labels.append((row, f"{scale / max(disp, 1e-12):.3g}m"))
    for row, text in labels:
        y = int(np.clip(row + 4, 9, height - 2))
        cv2.line(bar, (strip, row), (strip + 3, row), (255, 255, 255), 1)
        cv2.putText(bar, text, (strip + 5, y), font, fs, (255, 255, 255), 1, cv2.LINE_AA)
    return bar


def _colour(disp: np.ndarray, vrange) -> np.ndarray:
    colour = colorize_disparity(torch.from_numpy(np.ascontiguousarray(disp[None], dtype=np.float32)), vrange)
    return colour.transpose(1, 2, 0)


def side_by_side(rgb: np.ndarray, disp: np.ndarray, vrange: tuple[float, float] | None = None,
                 bar: np.ndarray | None = None) -> np.ndarray:
    """Input (top) and magma disparity (bottom) of the same size: ``(2H, W, 3)`` uint8 RGB; with
    ``bar`` (:func:`colour_bar` of height ``H``) the bar stands right of the disparity (``W + bar
    width`` wide, black beside the input)."""
    colour = _colour(disp, vrange)
    if bar is None:
        return np.concatenate([rgb, colour], axis=0)
    top = np.concatenate([rgb, np.zeros((rgb.shape[0], bar.shape[1], 3), np.uint8)], axis=1)
    return np.concatenate([top, np.concatenate([colour, bar], axis=1)], axis=0)


def input_beside_depth(rgb: np.ndarray, disp: np.ndarray, vrange: tuple[float, float] | None = None,
                       bar: np.ndarray | None = None) -> np.ndarray:
    """Input (left) | magma disparity (right) [| ``bar``]: ``(H, 2W [+ bar width], 3)`` uint8 RGB
    (a frame of ``--video-out``)."""
    parts = [rgb, _colour(disp, vrange)] + ([] if bar is None else [bar])
    return np.concatenate(parts, axis=1)
