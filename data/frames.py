"""Frames: the training-sample base class, on the image functions of :mod:`data.images` (reading,
the one resize to the network size, intrinsics), which this module re-exports.

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
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from common.errors import BadSampleError
from data.images import (IMAGE_EXTS, VIDEO_EXTS, decode_file, decode_resized, monodepth2_intrinsics, read_image,
                         resize_image, resize_intrinsics)
from data.samples import FrameSample

__all__ = [
    "IMAGE_EXTS", "VIDEO_EXTS", "BadSampleError", "decode_file", "read_image", "resize_image", "decode_resized",
    "frames_to_tensor", "monodepth2_intrinsics", "resize_intrinsics", "FrameSampleDataset",
]


def frames_to_tensor(frames) -> Tensor:
    """A sequence of ``H x W x 3`` uint8 images -> ``(N, 3, H, W)`` float32 tensor in ``[0, 1]``."""
    return torch.from_numpy(np.stack([np.asarray(f) for f in frames])).permute(0, 3, 1, 2).float().div_(255.0)


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
