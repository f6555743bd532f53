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
    "FrameSampleDataset", "KittiRawDataset", "ImageDiskCache", "KittiImageSet", "BadSampleError", "STEREO_BASELINE_KITTI",
]

SIDE_TO_CAM = {"l": 2, "r": 3}
# Metres between image_02 and image_03 (rounded, as Monodepth2). Training with this value as the
# stereo translation gives depth in metres (evaluation scale 1); Monodepth2 trains with 0.1 instead,
# so that its depth x 0.54 / 0.1 = 5.4 is metres (see depth.scale.stereo_scale).
STEREO_BASELINE_KITTI = 0.54


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


class FrameSampleDataset(Dataset):
    """What every training dataset shares: the per-sample random draws (flip, one colour-jitter draw
    for all frames) from ``(seed, epoch, index)`` and the packing of frames + K into a sample dict.

    Subclasses implement ``__len__`` and :meth:`load_frames`, which returns the un-augmented
    ``H x W x 3`` uint8 frames at the network size (target first) and ``K`` for that size.
    """

    def __init__(self, height: int, width: int, n_frames: int, *, is_train: bool = True,
                 color_jitter_prob: float = 0.5, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2, hue: float = 0.1, flip_prob: float = 0.5, seed: int = 0):
        self.height, self.width = height, width
        self.is_train = is_train
        self.flip_prob = flip_prob if is_train else 0.0
        self.jitter_prob = color_jitter_prob if is_train else 0.0
        self._jitter = A.Compose(
            [A.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, p=1.0)],
            additional_targets={f"image{i}": "image" for i in range(1, n_frames)})
        self.seed = seed
        self.epoch = 0

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
                    jitter_seed: int) -> dict:
        """Flip (all frames; ``cx' = W - 1 - cx``) and jitter (one draw for all frames) -> sample dict."""
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

        color = to_tensor(frames)
        return {"color": color, "color_aug": to_tensor(frames_aug) if jitter else color,
                "K": torch.from_numpy(np.ascontiguousarray(K, dtype=np.float32)), "index": index}

    def __getitem__(self, index: int) -> dict:
        flip, jitter, jitter_seed = self.draw(index)
        frames, K = self.load_frames(index)
        return self.make_sample(index, frames, K, flip, jitter, jitter_seed)

    def _decode_resized(self, path: Path) -> tuple[np.ndarray, tuple[int, int]]:
        """Decode ``path`` and resize to the network size (INTER_AREA); also its size on disk."""
        img = read_image(path)
        size = (img.shape[1], img.shape[0])
        return cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_AREA), size

    def read_resized(self, path: Path) -> tuple[np.ndarray, tuple[int, int]]:
        """:meth:`_decode_resized`, kept in memory when the subclass set ``self._image_cache``."""
        cache = getattr(self, "_image_cache", None)
        if cache is not None and path in cache:
            return cache[path]
        out = self._decode_resized(path)
        if cache is not None:
            cache[path] = out
        return out


class KittiRawDataset(FrameSampleDataset):
    """Training/validation triplets (and stereo partners) from a KITTI raw root."""

    def __init__(self, root: str | Path, entries: list[SplitEntry], height: int, width: int,
                 frame_ids=(0, -1, 1), *, is_train: bool = True, img_ext: str = "auto",
                 intrinsics: str = "calib", stereo: bool = False, stereo_baseline: float = STEREO_BASELINE_KITTI,
                 color_jitter_prob: float = 0.5, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2, hue: float = 0.1, flip_prob: float = 0.5, seed: int = 0,
                 cache_images: bool = False, cache_dir: str | Path | None = None):
        if intrinsics not in ("calib", "monodepth2"):
            raise ValueError(f"intrinsics must be 'calib' or 'monodepth2', got {intrinsics!r}")
        super().__init__(height, width, len(list(frame_ids)) + int(stereo), is_train=is_train,
                         color_jitter_prob=color_jitter_prob, brightness=brightness, contrast=contrast,
                         saturation=saturation, hue=hue, flip_prob=flip_prob, seed=seed)
        self.root = Path(root)
        self.entries = list(entries)
        self.frame_ids = list(frame_ids)
        self.img_ext = img_ext
        self.intrinsics = intrinsics
        self.stereo = stereo
        self.stereo_baseline = stereo_baseline
        self._calib_cache: dict[tuple[str, str], tuple[np.ndarray, tuple[int, int]]] = {}
        self._lock = threading.Lock()
        # decoded + resized frames, keyed by path (per process: each loader worker has its own)
        self._image_cache: dict[Path, tuple[np.ndarray, tuple[int, int]]] | None = {} if cache_images else None
        # optional on-disk cache of pre-resized frames (built by data.datasets.build_training_data)
        self.disk_cache = ImageDiskCache(cache_dir, self.root, width, height) if cache_dir else None

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

    def __getitem__(self, index: int) -> dict:
        flip, jitter, jitter_seed = self.draw(index)
        frames, K = self.load_frames(index)
        sample = self.make_sample(index, frames, K, flip, jitter, jitter_seed)
        if self.stereo:
            # A flipped pair swaps which camera is on the left: the partner's offset changes sign.
            e = self.entries[index]
            side = e.side if not flip else ("r" if e.side == "l" else "l")
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
            import json

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
        import json
        import os
        import tempfile

        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".index.", suffix=".tmp", dir=self.folder)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": self.VERSION, "width": self.width, "height": self.height,
                       "entries": self.entries}, f)
        os.replace(tmp, self.index_path)

    def build(self, paths, workers: int = 0, progress: bool = True) -> dict:
        """Cache every readable file of ``paths`` not cached yet (or changed since). Returns
        ``{"cached": n_new, "present": n_already, "unreadable": [paths]}``."""
        import os
        from concurrent.futures import ThreadPoolExecutor

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
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                return key, None, str(p)
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            size = [img.shape[1], img.shape[0]]
            img = cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_AREA)
            out = self._file(key)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(img))
            os.replace(tmp, out)
            return key, size + [st.st_size, st.st_mtime_ns], None

        from tqdm import tqdm

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
