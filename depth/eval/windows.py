"""Image windows ``(top, bottom, left, right)`` in pixels (bottom/right exclusive): the centre
window of the scale test. NumPy only (scoring saved predictions imports it without torch)."""
from __future__ import annotations

import numpy as np

__all__ = ["centre_window", "crop_window"]


def centre_window(height: int, width: int, zoom: float) -> tuple[int, int, int, int]:
    """The centred ``1/zoom`` window ``(top, bottom, left, right)`` of a ``height x width`` image."""
    if not zoom >= 1.0:
        raise ValueError(f"zoom must be >= 1, got {zoom}")
    h = max(1, int(round(height / zoom)))
    w = max(1, int(round(width / zoom)))
    top = (height - h) // 2
    left = (width - w) // 2
    return top, top + h, left, left + w


def crop_window(img: np.ndarray, win: tuple[int, int, int, int]) -> np.ndarray:
    """``img[top:bottom, left:right]`` (a view)."""
    t, b, l, r = win
    return img[t:b, l:r]
