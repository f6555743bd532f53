"""KITTI raw: intrinsics, the training dataset, the frame cache (frame paths, the frames of a split
and odometry frames live in :mod:`data.kitti_layout`, re-exported here).

Layout: ``<root>/<date>/<date>_drive_NNNN_sync/image_0{2,3}/data/%010d.{png,jpg}`` and the date's
``calib_cam_to_cam.txt``; odometry: ``<root>/sequences/NN/image_2/%06d.{png,jpg}``. A training
sample (:class:`KittiRawDataset`) is the :class:`data.samples.FrameSample` of
:class:`data.frames.FrameSampleDataset` -- uint8 ``color``, ``color_aug`` (or None), ``K`` (pixels of
the ``H x W`` network image), ``index``, the colour-jitter parameters ``jitter`` / ``jitter_order``
(or None) -- plus
``T_stereo``, the ``(4, 4)`` target -> stereo-partner transform (metres), when ``stereo=True``; the
stereo partner is the last frame of ``color``.

Randomness (flip, jitter) is drawn from ``(seed, epoch, index)`` so a sample is the same whatever
worker loads it (needed for exact resume).
"""
from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.atomic import atomic_write, atomic_write_text
from data.calib import intrinsics_from_calib
from data.frames import BadSampleError, FrameSampleDataset, monodepth2_intrinsics, read_image, resize_image
from data.frames import resize_intrinsics
from data.samples import FrameSample
from data.splits import SplitEntry
from data.kitti_layout import SIDE_TO_CAM, KittiImageSet, image_path, odometry_frames  # noqa: F401 (re-exported)

__all__ = [
    "image_path", "kitti_intrinsics", "KittiRawDataset", "ImageDiskCache", "KittiImageSet",
    "odometry_frames", "STEREO_BASELINE_KITTI",
]

# Metres between image_02 and image_03 (rounded, as Monodepth2). Training with this value as the
# stereo translation gives depth in metres (evaluation scale 1); Monodepth2 trains with 0.1 instead,
# so that its depth x 0.54 / 0.1 = 5.4 is metres (see depth.eval.scale.stereo_scale).
STEREO_BASELINE_KITTI = 0.54


def kitti_intrinsics(calib_dir: str | Path, side: str = "l") -> tuple[np.ndarray, tuple[int, int]]:
    """``(K, (W, H))`` of camera 02 (side l) or 03 (side r) from ``P_rect_0x`` / ``S_rect_0x``."""
    return intrinsics_from_calib(calib_dir, cam=SIDE_TO_CAM[side])


def _stereo_T(side: str, baseline: float) -> np.ndarray:
    """Target -> partner transform for a rectified pair: the partner of a left image sits
    ``baseline`` metres to the right, so points move by ``-baseline`` along x."""
    T = np.eye(4, dtype=np.float32)
    T[0, 3] = -baseline if side == "l" else baseline
    return T


class KittiRawDataset(FrameSampleDataset):
    """Training/validation triplets (and stereo partners) from a KITTI raw root."""

    def __init__(self, root: str | Path, entries: list[SplitEntry], height: int, width: int,
                 frame_ids=(0, -1, 1), *, is_train: bool = True, img_ext: str = "auto",
                 intrinsics: str = "calib", stereo: bool = False, stereo_baseline: float = STEREO_BASELINE_KITTI,
                 color_jitter_prob: float = 0.5, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2, hue: float = 0.1, flip_prob: float = 0.5, seed: int = 0,
                 cache_images: bool = False, cache_dir: str | Path | None = None, zoom_prob: float = 0.0,
                 zoom_min_scale: float = 0.5, jitter_on: str = "device"):
        if intrinsics not in ("calib", "monodepth2"):
            raise ValueError(f"intrinsics must be 'calib' or 'monodepth2', got {intrinsics!r}")
        super().__init__(height, width, len(list(frame_ids)) + int(stereo), is_train=is_train,
                         color_jitter_prob=color_jitter_prob, brightness=brightness, contrast=contrast,
                         saturation=saturation, hue=hue, flip_prob=flip_prob, seed=seed,
                         cache_images=cache_images, zoom_prob=zoom_prob, zoom_min_scale=zoom_min_scale,
                         jitter_on=jitter_on)
        self.root = Path(root)
        self.entries = list(entries)
        self.frame_ids = list(frame_ids)
        self.img_ext = img_ext
        self.intrinsics = intrinsics
        self.stereo = stereo
        self.stereo_baseline = stereo_baseline
        self._calib_cache: dict[tuple[str, str], tuple[np.ndarray, tuple[int, int]]] = {}
        self._lock = threading.Lock()
        # optional on-disk cache of pre-resized frames (built by data.datasets.build_training_data)
        self.disk_cache = ImageDiskCache(cache_dir, self.root, width, height) if cache_dir else None

    def __len__(self) -> int:
        return len(self.entries)

    # -- pieces -------------------------------------------------------------------------------
    def calibration(self, entry: SplitEntry, side: str):
        """``kitti_intrinsics`` of ``entry``'s date for camera ``side`` (read once per date and side;
        a missing file or key raises :class:`common.errors.DataError` naming it)."""
        key = (entry.date, side)
        with self._lock:
            if key not in self._calib_cache:
                self._calib_cache[key] = kitti_intrinsics(self.root / entry.date, side)
            return self._calib_cache[key]

    def intrinsics_for(self, entry: SplitEntry, side: str, image_size: tuple[int, int]) -> np.ndarray:
        """K at the network size for an image of ``image_size`` (W, H) on disk."""
        if self.intrinsics == "monodepth2":
            return monodepth2_intrinsics(self.width, self.height)
        K, _ = self.calibration(entry, side)
        return resize_intrinsics(K, image_size, (self.width, self.height))

    def _load(self, entry: SplitEntry, frame: int, side: str) -> tuple[np.ndarray, tuple[int, int]]:
        path = image_path(self.root, entry, side, self.img_ext, frame)
        return self.read_resized(path)

    def _decode_resized(self, path: Path) -> tuple[np.ndarray, tuple[int, int]]:
        hit = self.disk_cache.get(path) if self.disk_cache is not None else None
        return hit if hit is not None else super()._decode_resized(path)

    def paths(self, index: int) -> list[Path]:
        """Every image file sample ``index`` reads (for up-front split checks)."""
        e = self.entries[index]
        out = [image_path(self.root, e, e.side, self.img_ext, e.frame + f) for f in self.frame_ids]
        if self.stereo:
            out.append(image_path(self.root, e, "r" if e.side == "l" else "l", self.img_ext, e.frame))
        return out

    # -- sample -------------------------------------------------------------------------------
    def load_frames(self, index: int) -> tuple[list[np.ndarray], np.ndarray]:
        e = self.entries[index]
        frames, size = [], None
        for f in self.frame_ids:
            img, s = self._load(e, e.frame + f, e.side)
            size = size or s
            frames.append(img)
        if self.stereo:
            frames.append(self._load(e, e.frame, "r" if e.side == "l" else "l")[0])
        return frames, self.intrinsics_for(e, e.side, size)

    def __getitem__(self, index: int) -> FrameSample:
        flip, jitter, jitter_seed = self.draw(index)
        sample = self.build_sample(index, flip, jitter, jitter_seed)
        if self.stereo:
            # A flipped pair swaps which camera is on the left: the partner's offset changes sign.
            e = self.entries[index]
            side = e.side if not flip else ("r" if e.side == "l" else "l")
            sample.T_stereo = torch.from_numpy(_stereo_T(side, self.stereo_baseline))
        return sample


class ImageDiskCache:
    """Pre-resized training frames on disk: ``<cache_dir>/<W>x<H>_area/<path under root>.npy``.

    Each entry is the exact ``H x W x 3`` uint8 array the loader would compute (cv2 decode +
    ``INTER_AREA`` resize), so cached and uncached training are bit-identical; ``index.json``
    maps every cached source file to its original ``(W, H)`` (for the intrinsics) and its size and
    mtime (a changed source is re-cached). :meth:`build` fills the cache once, in threads, with a
    progress bar; a file that cannot be decoded is left out (the loader then reports it as a bad
    sample). About ``W*H*3`` bytes per frame (369 kB at 640x192).
    """

    VERSION = 1

    def __init__(self, cache_dir: str | Path, root: str | Path, width: int, height: int):
        self.root = Path(root)
        self.width, self.height = width, height
        self.folder = Path(cache_dir) / f"{width}x{height}_area"
        self.index_path = self.folder / "index.json"
        self.entries: dict[str, list] = {}
        if self.index_path.is_file():
            try:
                data = json.loads(self.index_path.read_text())
                if data.get("version") == self.VERSION:
                    self.entries = data.get("entries", {})
            except (OSError, ValueError):
                self.entries = {}

    def _key(self, path: Path) -> str | None:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return None

    def _file(self, key: str) -> Path:
        return self.folder / (key + ".npy")

    def get(self, path: Path) -> tuple[np.ndarray, tuple[int, int]] | None:
        key = self._key(path)
        meta = self.entries.get(key) if key is not None else None
        if meta is None:
            return None
        try:
            img = np.load(self._file(key))
        except (OSError, ValueError):
            return None
        if img.shape != (self.height, self.width, 3):
            return None
        return img, (int(meta[0]), int(meta[1]))

    def _save_index(self) -> None:
        atomic_write_text(self.index_path, json.dumps({"version": self.VERSION, "width": self.width,
                                                       "height": self.height, "entries": self.entries}),
                          fsync=False)

    def build(self, paths, workers: int = 0, progress: bool = True) -> dict:
        """Cache every readable file of ``paths`` not cached yet (or changed since). Returns
        ``{"cached": n_new, "present": n_already, "unreadable": [paths]}``."""
        todo, present = [], 0
        for p in dict.fromkeys(Path(x) for x in paths):
            key = self._key(p)
            if key is None:
                continue
            try:
                st = p.stat()
            except OSError:
                continue  # missing: reported by the split check / the loader
            meta = self.entries.get(key)
            if meta is not None and meta[2:] == [st.st_size, st.st_mtime_ns] and self._file(key).is_file():
                present += 1
            else:
                todo.append((p, key, st))
        unreadable: list[str] = []
        if not todo:
            return {"cached": 0, "present": present, "unreadable": unreadable}

        def one(item):
            p, key, st = item
            try:
                img = read_image(p)
            except BadSampleError:
                return key, None, str(p)
            size = [img.shape[1], img.shape[0]]
            img = np.ascontiguousarray(resize_image(img, (self.width, self.height)))
            atomic_write(self._file(key), lambda f: np.save(f, img), fsync=False)
            return key, size + [st.st_size, st.st_mtime_ns], None

        n_threads = max(1, workers or (os.cpu_count() or 1))
        with ThreadPoolExecutor(n_threads) as pool, \
                tqdm(total=len(todo), desc=f"caching {self.width}x{self.height} frames", disable=not progress,
                     dynamic_ncols=True) as bar:
            for i, (key, meta, bad) in enumerate(pool.map(one, todo)):
                if bad is not None:
                    unreadable.append(bad)
                else:
                    self.entries[key] = meta
                bar.update(1)
                if (i + 1) % 2000 == 0:
                    self._save_index()
        self._save_index()
        return {"cached": len(todo) - len(unreadable), "present": present, "unreadable": unreadable}
