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
from data.color_jitter import IDENTITY, draw_color_jitter
from data.images import (IMAGE_EXTS, VIDEO_EXTS, decode_file, decode_resized, monodepth2_intrinsics, read_image,
                         resize_image, resize_intrinsics)
from data.samples import FrameSample

_ZOOM_STREAM = 1  # the fourth seed word of FrameSampleDataset.draw_zoom

__all__ = [
    "IMAGE_EXTS", "VIDEO_EXTS", "BadSampleError", "decode_file", "read_image", "resize_image", "decode_resized",
    "frames_to_tensor", "frames_to_uint8", "monodepth2_intrinsics", "resize_intrinsics", "FrameSampleDataset",
]


def frames_to_tensor(frames) -> Tensor:
    """A sequence of ``H x W x 3`` uint8 images -> ``(N, 3, H, W)`` float32 tensor in ``[0, 1]``."""
    return frames_to_uint8(frames).float().div_(255.0)


def frames_to_uint8(frames) -> Tensor:
    """A sequence of ``H x W x 3`` uint8 images -> ``(N, 3, H, W)`` uint8 tensor (how training frames
    travel to the device: a quarter of float32's bytes). One copy (the stack of the images); the
    tensor keeps their layout, channels innermost (strides ``(3HW, 1, 3W, 3)``: the move of the
    channels to the front is a view, not a transpose copy); batches keep that layout
    (:func:`data.samples.collate`) and so do the float frames made from them on the device."""
    return torch.from_numpy(np.stack([np.asarray(f) for f in frames])).permute(0, 3, 1, 2)


class FrameSampleDataset(Dataset):
    """What every training dataset shares: the per-sample random draws (flip, one colour-jitter draw
    for all frames) from ``(seed, epoch, index)`` and the packing of frames + K into a sample.

    Subclasses implement ``__len__`` and :meth:`load_frames`, which returns the un-augmented
    ``H x W x 3`` uint8 frames at the network size (target first) and ``K`` for that size.

    A sample is a :class:`data.samples.FrameSample` (what :func:`data.samples.collate` stacks into
    a :class:`data.samples.FrameBatch`); stereo datasets set its ``T_stereo``. Its frames are uint8.
    ``jitter_on`` says where the colour jitter runs: ``device`` (the sample carries the drawn
    parameters, :mod:`data.color_jitter` applies them to the batch on the training device) or
    ``loader`` (albumentations' ``ColorJitter`` on the uint8 frames here, shipped as a second set
    of frames ``color_aug``).
    """

    def __init__(self, height: int, width: int, n_frames: int, *, is_train: bool = True,
                 color_jitter_prob: float = 0.5, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2, hue: float = 0.1, flip_prob: float = 0.5, seed: int = 0,
                 cache_images: bool = False, zoom_prob: float = 0.0, zoom_min_scale: float = 0.5,
                 jitter_on: str = "device"):
        if jitter_on not in ("device", "loader"):
            raise ValueError(f"jitter_on must be 'device' or 'loader', got {jitter_on!r}")
        self.height, self.width = height, width
        # zoom from the source frame (augment.zoom_source=frame; 0 = off, e.g. network-size zoom)
        self.zoom_prob = zoom_prob if is_train else 0.0
        self.zoom_min_scale = zoom_min_scale
        self.is_train = is_train
        self.flip_prob = flip_prob if is_train else 0.0
        self.jitter_prob = color_jitter_prob if is_train else 0.0
        self.jitter_on = jitter_on
        self.jitter_ranges = (brightness, contrast, saturation, hue)
        self._jitter = A.Compose(  # the loader's jitter; with jitter_on=device only its parameters are drawn here
            [A.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, p=1.0)],
            additional_targets={f"image{i}": "image" for i in range(1, n_frames)}) if jitter_on == "loader" else None
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
        """Flip (all frames; ``cx' = W - 1 - cx``) and jitter (one draw for all frames) -> the sample:
        with ``jitter_on=device`` the drawn parameters (identity when ``jitter`` is false), with
        ``loader`` the jittered uint8 frames as ``color_aug`` (None when ``jitter`` is false)."""
        if flip:
            frames = [np.ascontiguousarray(f[:, ::-1]) for f in frames]
            K = K.copy()
            K[0, 2] = self.width - 1 - K[0, 2]
        sample = FrameSample(color=frames_to_uint8(frames), color_aug=None,
                             K=torch.from_numpy(np.ascontiguousarray(K, dtype=np.float32)), index=index)
        if self.jitter_on == "device" and self.jitter_prob > 0:
            factors, order = (draw_color_jitter(jitter_seed, *self.jitter_ranges) if jitter else
                              (np.asarray(IDENTITY, dtype=np.float32), np.arange(4, dtype=np.int64)))
            sample.jitter, sample.jitter_order = torch.from_numpy(factors), torch.from_numpy(order)
        elif jitter:
            self._jitter.set_random_seed(jitter_seed)
            out = self._jitter(image=frames[0], **{f"image{i}": fr for i, fr in enumerate(frames[1:], 1)})
            sample.color_aug = frames_to_uint8([out["image"]] + [out[f"image{i}"] for i in range(1, len(frames))])
        return sample

    def draw_zoom(self, index: int) -> tuple[float, float] | None:
        """Zoom from the source frame: the crop fractions ``(s_x, s_y)`` of sample ``index`` in the
        current epoch, each ``~ U(zoom_min_scale, 1)`` (drawn independently, as the network-size zoom
        of :func:`depth.train.zoom.sample_zoom_boxes`), or None for an un-zoomed sample. Its own
        stream of ``(seed, epoch, index)``: the flip and jitter draws are unchanged by it."""
        if self.zoom_prob <= 0:
            return None
        rng = np.random.default_rng([self.seed, self.epoch, index, _ZOOM_STREAM])
        if not rng.random() < self.zoom_prob:
            return None
        lo = self.zoom_min_scale
        return float(rng.uniform(lo, 1.0)), float(rng.uniform(lo, 1.0))

    def zoomed_frames(self, index: int, K: np.ndarray, fractions: tuple[float, float]
                      ) -> tuple[list[np.ndarray], np.ndarray]:
        """The frames of sample ``index`` zoomed from their full-resolution files: one centred box
        ``w = round(s_x W_f)``, ``h = round(s_y H_f)`` (``x0 = (W_f - w) // 2``, ``y0 = (H_f - h) // 2``,
        pixels of the ``W_f x H_f`` file) for every frame, cropped and resized once to the network size
        with :func:`resize_image` -- no upsampled pixels while the crop is larger than the network
        image. ``K`` is the network-size intrinsics of the un-zoomed frames (:func:`resize_intrinsics`
        of the file's, inverted here to the file's own); returned with the intrinsics of the zoomed
        view, exact for OpenCV's resize, which maps pixel centres: ``u' + 0.5 = (u - x0 + 0.5) W / w``,
        i.e. ``f' = f W / w`` and ``c' = (c - x0 + 0.5) W / w - 0.5`` (a render through that camera
        matches the zoomed view better than the ``u * s`` convention of :func:`resize_intrinsics`,
        which the un-zoomed frames keep: tests/test_zoom_source.py)."""
        size = (self.width, self.height)
        out, box = [], None
        for path in self.paths(index):
            full = read_image(path)
            hf, wf = full.shape[:2]
            if box is None:
                w = max(1, int(round(fractions[0] * wf)))
                h = max(1, int(round(fractions[1] * hf)))
                box = ((wf - w) // 2, (hf - h) // 2, w, h, wf, hf)
            elif (wf, hf) != box[4:]:
                raise BadSampleError(f"{path} is {wf}x{hf} but the first frame of sample {index} is "
                                     f"{box[4]}x{box[5]}: one zoom box needs frames of one size")
            x0, y0, w, h = box[:4]
            out.append(resize_image(full[y0:y0 + h, x0:x0 + w], size))
        x0, y0, w, h, wf, hf = box
        K_file = resize_intrinsics(K, size, (wf, hf)).astype(np.float64)
        Kz = K_file.copy()
        for row, offset, scale in ((0, x0, self.width / w), (1, y0, self.height / h)):
            Kz[row, row] = K_file[row, row] * scale
            Kz[row, 2] = (K_file[row, 2] - offset + 0.5) * scale - 0.5
        return out, Kz.astype(np.float32)

    def build_sample(self, index: int, flip: bool, jitter: bool, jitter_seed: int) -> FrameSample:
        """Load, flip, jitter -> the sample; with zoom from the source frame also the zoomed view:
        ``color`` and ``K`` become the zoomed frames (what the loss compares) and ``depth_in`` their
        target (the depth network's input, jittered with the sample's parameters), while
        ``color_aug`` stays un-zoomed (the pose network's pairs, as with the network-size zoom).
        Flip and jitter are the sample's, for both."""
        frames, K = self.load_frames(index)
        sample = self.make_sample(index, frames, K, flip, jitter, jitter_seed)
        if self.zoom_prob > 0:
            fractions = self.draw_zoom(index)
            if fractions is None:
                sample.depth_in = sample.network_frames()[0]
            else:
                zoomed = self.make_sample(index, *self.zoomed_frames(index, K, fractions), flip, jitter, jitter_seed)
                sample.depth_in = zoomed.network_frames()[0]
                if sample.color_aug is None:  # the un-zoomed frames go on to the pose network
                    sample.color_aug = sample.color
                sample.color, sample.K = zoomed.color, zoomed.K
        return sample

    def paths(self, index: int) -> list[Path]:
        """The image files of sample ``index``, in the order of :meth:`load_frames`."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> FrameSample:
        flip, jitter, jitter_seed = self.draw(index)
        return self.build_sample(index, flip, jitter, jitter_seed)

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
