"""OpenCV's ``INTER_LINEAR`` resize of a 2-D float map, reproduced bit for bit in numba.

One place for the arithmetic (half-pixel centres, float32 weights, horizontal then vertical; the
border rules of OpenCV's ``resizeGeneric``): the metric kernels of :mod:`depth.eval.metrics` sample
the interpolation at the GT pixels only (:func:`linear_tables`, :func:`bilinear_at`);
:func:`resize_linear` resizes a whole map with it (the reference the kernels are tested against).
"""
from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["resize_linear", "linear_tables", "bilinear_at"]


@numba.njit(cache=True, nogil=True)
def linear_tables(src: int, dst: int, clamp_weights: bool):
    """OpenCV INTER_LINEAR source indices and float32 weights along one axis.

    Columns (``clamp_weights=True``): out-of-range positions snap to the border with weight 0 on
    the second tap. Rows: the weight is kept and only the row index is clamped (OpenCV's
    ``resizeGeneric`` does this), so border rows are ``S0*b0 + S0*b1`` in float32.
    """
    i0 = np.empty(dst, dtype=np.int64)
    i1 = np.empty(dst, dtype=np.int64)
    w0 = np.empty(dst, dtype=np.float32)
    w1 = np.empty(dst, dtype=np.float32)
    scale = 1.0 / (np.float64(dst) / np.float64(src))
    for d in range(dst):
        f = np.float32((d + 0.5) * scale - 0.5)
        s = int(math.floor(f))
        f = np.float32(f - np.float32(s))
        if clamp_weights:
            if s < 0:
                f = np.float32(0.0)
                s = 0
            if s >= src - 1:
                f = np.float32(0.0)
                s = src - 1
            i0[d] = s
            i1[d] = min(s + 1, src - 1)
        else:
            i0[d] = min(max(s, 0), src - 1)
            i1[d] = min(max(s + 1, 0), src - 1)
        w0[d] = np.float32(1.0) - f
        w1[d] = f
    return i0, i1, w0, w1


@numba.njit(cache=True, nogil=True, inline="always")
def bilinear_at(pred, r, c, yi0, yi1, yw0, yw1, xi0, xi1, xw0, xw1):
    x0 = xi0[c]
    x1 = xi1[c]
    a0 = xw0[c]
    a1 = xw1[c]
    h0 = pred[yi0[r], x0] * a0 + pred[yi0[r], x1] * a1
    h1 = pred[yi1[r], x0] * a0 + pred[yi1[r], x1] * a1
    return h0 * yw0[r] + h1 * yw1[r]


@numba.njit(cache=True, nogil=True)
def _resize_linear_kernel(src, out_h, out_w):
    h, w = src.shape
    yi0, yi1, yw0, yw1 = linear_tables(h, out_h, False)
    xi0, xi1, xw0, xw1 = linear_tables(w, out_w, True)
    out = np.empty((out_h, out_w), dtype=np.float32)
    for r in range(out_h):
        for c in range(out_w):
            out[r, c] = bilinear_at(src, r, c, yi0, yi1, yw0, yw1, xi0, xi1, xw0, xw1)
    return out



def resize_linear(src: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(src, size_wh, interpolation=cv2.INTER_LINEAR)`` for a 2-D float32 map."""
    src = np.ascontiguousarray(src, dtype=np.float32)
    if src.ndim != 2:
        raise ValueError(f"resize_linear expects a 2-D map, got shape {src.shape}")
    return _resize_linear_kernel(src, int(size_wh[1]), int(size_wh[0]))
