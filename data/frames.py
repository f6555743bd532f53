"""Frames: reading images, the one resize to the network size, and the training-sample base class.

Every path that feeds the networks uses these functions: the training datasets (KITTI raw, video
folders), validation, ``evaluate.py``, ``python -m depth.predict`` and ``python -m depth.export``.

Conventions:

* an image is ``H x W x 3`` uint8 RGB (OpenCV decodes BGR; :func:`read_image` converts);
* sizes are ``(W, H)`` tuples (OpenCV's order) and intrinsics are in pixels of the image they go
  with; :func:`resize_intrinsics` rescales them with the image;
* a network input is a ``(N, 3, H, W)`` float32 tensor in ``[0, 1]`` (:func:`frames_to_tensor`).
"""
from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from common.errors import BadSampleError, DataError
from data.samples import FrameSample


__all__ = [
    "IMAGE_EXTS", "VIDEO_EXTS", "BadSampleError", "decode_file", "read_image", "resize_image", "decode_resized",
    "frames_to_tensor", "monodepth2_intrinsics", "resize_intrinsics", "FrameSampleDataset",
]

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


def frames_to_tensor(frames) -> Tensor:
    """A sequence of ``H x W x 3`` uint8 images -> ``(N, 3, H, W)`` float32 tensor in ``[0, 1]``."""
    return torch.from_numpy(np.stack([np.asarray(f) for f in frames])).permute(0, 3, 1, 2).float().div_(255.0)


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


class FrameSampleDataset(Dataset):
    """What every training dataset shares: the per-sample random draws (flip, one colour-jitter draw
    for all frames) from ``(seed, epoch, index)`` and the packing of frames + K into a sample.

    Subclasses implement ``__len__`` and :meth:`load_frames`, which returns the un-augmented
    ``H x W x 3`` uint8 frames at the network size (target first) and ``K`` for that size.

    A sample is a :class:`data.samples.FrameSample` (what :func:`data.samples.collate` stacks into
    a :class:`data.samples.FrameBatch`); stereo datasets set its ``T_stereo``.
    """

    def __init__(self, height: int, width: int, n_frames: int, *, is_train: bool = True,
                 color_jitter_prob: float = 0.5, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2, hue: float = 0.1, flip_prob: float = 0.5, seed: int = 0,
                 cache_images: bool = False):
        self.height, self.width = height, width
        self.is_train = is_train
        self.flip_prob = flip_prob if is_train else 0.0
        self.jitter_prob = color_jitter_prob if is_train else 0.0
        self._jitter = A.Compose(
            [A.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, p=1.0)],
            additional_targets={f"image{i}": "image" for i in range(1, n_frames)})
        self.seed = seed
        self.epoch = 0
        # decoded + resized frames, keyed by path (per process: each loader worker has its own)
        self._image_cache: dict[Path, tuple[np.ndarray, tuple[int, int]]] | None = {} if cache_images else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load_frames(self, index: int) -> tuple[list[np.ndarray], np.ndarray]:
        raise NotImplementedError

    def draw(self, index: int) -> tuple[bool, bool, int]:
        """``(flip, jitter, jitter_seed)`` of sample ``index`` in the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        flip = rng.random() < self.flip_prob
        jitter = rng.random() < self.jitter_prob
        return flip, jitter, int(rng.integers(0, 2 ** 31 - 1))

    def make_sample(self, index: int, frames: list[np.ndarray], K: np.ndarray, flip: bool, jitter: bool,
                    jitter_seed: int) -> FrameSample:
        """Flip (all frames; ``cx' = W - 1 - cx``) and jitter (one draw for all frames) -> the sample."""
        if flip:
            frames = [np.ascontiguousarray(f[:, ::-1]) for f in frames]
            K = K.copy()
            K[0, 2] = self.width - 1 - K[0, 2]
        if jitter:
            self._jitter.set_random_seed(jitter_seed)
            out = self._jitter(image=frames[0], **{f"image{i}": fr for i, fr in enumerate(frames[1:], 1)})
            frames_aug = [out["image"]] + [out[f"image{i}"] for i in range(1, len(frames))]
        else:
            frames_aug = frames
        color = frames_to_tensor(frames)
        return FrameSample(color=color, color_aug=frames_to_tensor(frames_aug) if jitter else color,
                           K=torch.from_numpy(np.ascontiguousarray(K, dtype=np.float32)), index=index)

    def __getitem__(self, index: int) -> FrameSample:
        flip, jitter, jitter_seed = self.draw(index)
        frames, K = self.load_frames(index)
        return self.make_sample(index, frames, K, flip, jitter, jitter_seed)

    def _decode_resized(self, path: Path) -> tuple[np.ndarray, tuple[int, int]]:
        """:func:`decode_resized` at the network size (subclasses may serve it from a disk cache)."""
        return decode_resized(path, (self.width, self.height))

    def read_resized(self, path: Path) -> tuple[np.ndarray, tuple[int, int]]:
        """:meth:`_decode_resized`, kept in memory when the dataset was made with ``cache_images``."""
        cache = self._image_cache
        if cache is not None and path in cache:
            return cache[path]
        out = self._decode_resized(path)
        if cache is not None:
            cache[path] = out
        return out
