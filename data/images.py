"""Images on disk, with nothing but OpenCV and NumPy (importing it costs no torch): the file
endings read as images and videos, decoding with errors that name the file, the one resize to the
network size, and intrinsics that follow a resize. :mod:`data.frames` builds the training samples
on these and re-exports them.

Conventions: an image is ``H x W x 3`` uint8 RGB (OpenCV decodes BGR; :func:`read_image` converts);
sizes are ``(W, H)`` tuples (OpenCV's order); intrinsics are in pixels of the image they go with.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from common.errors import BadSampleError, DataError

__all__ = ["IMAGE_EXTS", "VIDEO_EXTS", "decode_file", "read_image", "resize_image", "decode_resized",
           "monodepth2_intrinsics", "resize_intrinsics"]


# File name endings (lower case) read as images and as videos, everywhere in the project.
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def decode_file(path: str | Path, flags: int, what: str) -> np.ndarray:
    """``cv2.imread(path, flags)``; :class:`common.errors.DataError` ``"missing <what>: <path>"`` or
    ``"corrupt or unreadable <what>: <path>"`` instead of OpenCV's silent ``None``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing {what}: {path}")
    img = cv2.imread(str(path), flags)
    if img is None:
        raise DataError(f"corrupt or unreadable {what}: {path}")
    return img


def read_image(path: str | Path) -> np.ndarray:
    """``H x W x 3`` uint8 RGB; a missing or undecodable file raises :class:`BadSampleError`."""
    try:
        img = decode_file(path, cv2.IMREAD_COLOR, "image")
    except DataError as e:
        raise BadSampleError(str(e)) from None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resize_image(img: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """An image at ``size_wh = (W, H)``: OpenCV's ``INTER_AREA`` (pixel-area averaging), the
    image itself when it already has that size.

    This is **the** resize between a frame and the network: training, validation, evaluation,
    prediction and the export check all call it, so a network is scored on inputs made exactly as
    its training inputs were (validation and ``evaluate.py depth`` agree to 1e-6 on the same
    checkpoint, images and GT). Monodepth2 uses PIL's Lanczos filter in both its training and its
    evaluation loader; this project's loaders decode and resize with OpenCV, and ``INTER_AREA`` is
    OpenCV's anti-aliased downscale, so it is the filter used on every side here.
    """
    w, h = int(size_wh[0]), int(size_wh[1])
    if img.shape[0] == h and img.shape[1] == w:
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def decode_resized(path: str | Path, size_wh: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`read_image` + :func:`resize_image`; also the image's ``(W, H)`` on disk (for its
    intrinsics)."""
    img = read_image(path)
    return resize_image(img, size_wh), (img.shape[1], img.shape[0])


def monodepth2_intrinsics(width: int, height: int) -> np.ndarray:
    """Monodepth2's fixed KITTI intrinsics (fx=0.58 W, fy=1.92 H, centred principal point)."""
    return np.array([[0.58 * width, 0, 0.5 * width], [0, 1.92 * height, 0.5 * height], [0, 0, 1]],
                    dtype=np.float32)


def resize_intrinsics(K: np.ndarray, src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """Rescale pixel intrinsics from ``src_size`` (W, H) to ``dst_size`` (W, H): row 0 by the width
    ratio, row 1 by the height ratio (the community convention, see depth.geometry)."""
    K = np.asarray(K, dtype=np.float64).copy()
    K[0] *= dst_size[0] / src_size[0]
    K[1] *= dst_size[1] / src_size[1]
    return K.astype(np.float32)
