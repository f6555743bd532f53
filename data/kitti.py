"""KITTI raw dataset: split lines -> (frames, jittered frames, intrinsics) at the network size.

Layout: ``<root>/<date>/<date>_drive_NNNN_sync/image_0{2,3}/data/%010d.{png,jpg}`` and the date's
``calib_cam_to_cam.txt``. A sample holds, as float32 tensors in ``[0, 1]``:

* ``color``: ``(F, 3, H, W)`` un-jittered frames in the order of ``frame_ids`` (target first; the
  stereo partner last when ``stereo=True``) — what the loss compares;
* ``color_aug``: the same frames with one colour-jitter draw shared by all of them — what the
  networks see;
* ``K``: ``(3, 3)`` intrinsics in pixels of the ``H x W`` network image;
* ``T_stereo``: ``(4, 4)`` target -> stereo-partner transform (metres) when ``stereo=True``;
* ``index``: the sample's index in the split.

Randomness (flip, jitter) is drawn from ``(seed, epoch, index)`` so a sample is the same whatever
worker loads it (needed for exact resume).
"""
from __future__ import annotations

import threading
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from data.splits import SplitEntry

__all__ = [
    "image_path", "read_image", "kitti_intrinsics", "monodepth2_intrinsics", "resize_intrinsics",
    "KittiRawDataset", "KittiImageSet", "BadSampleError", "STEREO_BASELINE_KITTI",
]

SIDE_TO_CAM = {"l": 2, "r": 3}
STEREO_BASELINE_KITTI = 0.54  # metres between image_02 and image_03 (rounded, as Monodepth2)


class BadSampleError(RuntimeError):
    """A file of a sample is missing or unreadable; the message names the file."""


def image_path(root: str | Path, entry: SplitEntry, side: str | None = None, ext: str | None = None,
               frame: int | None = None) -> Path:
    """Path of a frame; ``ext`` None/"auto" finds png or jpg (png preferred)."""
    side = side or entry.side
    frame = entry.frame if frame is None else frame
    folder = Path(root) / entry.folder / f"image_0{SIDE_TO_CAM[side]}" / "data"
    if ext in (None, "auto"):
        for e in ("png", "jpg"):
            p = folder / f"{frame:010d}.{e}"
            if p.is_file():
                return p
        return folder / f"{frame:010d}.png"
    return folder / f"{frame:010d}.{ext}"


def read_image(path: str | Path) -> np.ndarray:
    """``H x W x 3`` uint8 RGB; a missing or undecodable file raises :class:`BadSampleError`."""
    path = Path(path)
    if not path.is_file():
        raise BadSampleError(f"missing image: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise BadSampleError(f"corrupt or unreadable image: {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


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


def kitti_intrinsics(calib_dir: str | Path, side: str = "l") -> tuple[np.ndarray, tuple[int, int]]:
    """``(K, (W, H))`` of camera 02 (side l) or 03 (side r) from ``P_rect_0x`` / ``S_rect_0x``."""
    from data.calib import intrinsics_from_calib

    return intrinsics_from_calib(calib_dir, cam=SIDE_TO_CAM[side])


def _stereo_T(side: str, baseline: float) -> np.ndarray:
    """Target -> partner transform for a rectified pair: the partner of a left image sits
    ``baseline`` metres to the right, so points move by ``-baseline`` along x."""
    T = np.eye(4, dtype=np.float32)
    T[0, 3] = -baseline if side == "l" else baseline
    return T


class KittiRawDataset(Dataset):
    """Training/validation triplets (and stereo partners) from a KITTI raw root."""

    def __init__(self, root: str | Path, entries: list[SplitEntry], height: int, width: int,
                 frame_ids=(0, -1, 1), *, is_train: bool = True, img_ext: str = "auto",
                 intrinsics: str = "calib", stereo: bool = False, stereo_baseline: float = STEREO_BASELINE_KITTI,
                 color_jitter_prob: float = 0.5, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2, hue: float = 0.1, flip_prob: float = 0.5, seed: int = 0,
                 cache_images: bool = False):
        self.root = Path(root)
        self.entries = list(entries)
        self.height, self.width = height, width
        self.frame_ids = list(frame_ids)
        self.is_train = is_train
        self.img_ext = img_ext
        if intrinsics not in ("calib", "monodepth2"):
            raise ValueError(f"intrinsics must be 'calib' or 'monodepth2', got {intrinsics!r}")
        self.intrinsics = intrinsics
        self.stereo = stereo
        self.stereo_baseline = stereo_baseline
        self.flip_prob = flip_prob if is_train else 0.0
        self.jitter_prob = color_jitter_prob if is_train else 0.0
        n_frames = len(self.frame_ids) + int(stereo)
        self._jitter = A.Compose(
            [A.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, p=1.0)],
            additional_targets={f"image{i}": "image" for i in range(1, n_frames)})
        self.seed = seed
        self.epoch = 0
        self._calib_cache: dict[tuple[str, str], tuple[np.ndarray, tuple[int, int]]] = {}
        self._lock = threading.Lock()
        # decoded + resized frames, keyed by path (per process: each loader worker has its own)
        self._image_cache: dict[Path, tuple[np.ndarray, tuple[int, int]]] | None = {} if cache_images else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    # -- pieces -------------------------------------------------------------------------------
    def _calib(self, entry: SplitEntry, side: str):
        key = (entry.date, side)
        with self._lock:
            if key not in self._calib_cache:
                self._calib_cache[key] = kitti_intrinsics(self.root / entry.date, side)
            return self._calib_cache[key]

    def intrinsics_for(self, entry: SplitEntry, side: str, image_size: tuple[int, int]) -> np.ndarray:
        """K at the network size for an image of ``image_size`` (W, H) on disk."""
        if self.intrinsics == "monodepth2":
            return monodepth2_intrinsics(self.width, self.height)
        K, _ = self._calib(entry, side)
        return resize_intrinsics(K, image_size, (self.width, self.height))

    def _load(self, entry: SplitEntry, frame: int, side: str) -> tuple[np.ndarray, tuple[int, int]]:
        path = image_path(self.root, entry, side, self.img_ext, frame)
        if self._image_cache is not None and path in self._image_cache:
            return self._image_cache[path]
        img = read_image(path)
        size = (img.shape[1], img.shape[0])
        img = cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_AREA)
        if self._image_cache is not None:
            self._image_cache[path] = (img, size)
        return img, size

    def paths(self, index: int) -> list[Path]:
        """Every image file sample ``index`` reads (for up-front split checks)."""
        e = self.entries[index]
        out = [image_path(self.root, e, e.side, self.img_ext, e.frame + f) for f in self.frame_ids]
        if self.stereo:
            out.append(image_path(self.root, e, "r" if e.side == "l" else "l", self.img_ext, e.frame))
        return out

    # -- sample -------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict:
        e = self.entries[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        flip = rng.random() < self.flip_prob
        jitter = rng.random() < self.jitter_prob
        jitter_seed = int(rng.integers(0, 2 ** 31 - 1))

        frames, size = [], None
        for f in self.frame_ids:
            img, s = self._load(e, e.frame + f, e.side)
            size = size or s
            frames.append(img)
        other = "r" if e.side == "l" else "l"
        if self.stereo:
            frames.append(self._load(e, e.frame, other)[0])
        K = self.intrinsics_for(e, e.side, size)

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

        def to_tensor(imgs):
            return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div_(255.0)

        sample = {"color": to_tensor(frames), "color_aug": to_tensor(frames_aug) if jitter else None,
                  "K": torch.from_numpy(K), "index": index}
        if sample["color_aug"] is None:
            sample["color_aug"] = sample["color"]
        if self.stereo:
            # A flipped pair swaps which camera is on the left: the partner's offset changes sign.
            side = e.side if not flip else other
            sample["T_stereo"] = torch.from_numpy(_stereo_T(side, self.stereo_baseline))
        return sample


class KittiImageSet(Dataset):
    """Single frames at the network size (evaluation / validation input): ``(3, H, W)`` float."""

    def __init__(self, root: str | Path, entries: list[SplitEntry], height: int, width: int,
                 img_ext: str = "auto"):
        self.root, self.entries = Path(root), list(entries)
        self.height, self.width, self.img_ext = height, width, img_ext

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> torch.Tensor:
        e = self.entries[index]
        img = read_image(image_path(self.root, e, e.side, self.img_ext))
        img = cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(img).permute(2, 0, 1).float().div_(255.0)
