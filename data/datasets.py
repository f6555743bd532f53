"""Build the datasets a training run needs from the ``data`` section of a config.

Takes the config's ``data``/``augment``/``train`` values (numbers and paths); returns datasets
and ground truth, never models.
"""
from __future__ import annotations

import hashlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import DataError, DatasetNotFound
from common.atomic import atomic_write
from data.config import AugmentConfig, DataConfig
from data.frames import FrameSampleDataset
from data.kitti import KittiImageSet, KittiRawDataset
from data.splits import BUILTIN_SPLITS_DIR, read_split_file, split_file
from data.synthetic import ensure_synthetic
from data.velodyne import benchmark_png_path, generate_depth_map, read_benchmark_png, velodyne_path
from data.video import build_video_data

__all__ = ["DatasetNotFound", "RunData", "build_run_data", "build_training_data", "load_validation_gt",
           "validation_list", "gt_cache_dir"]

KITTI_HELP = """\
No KITTI raw data found at data.root={root!r}.

To train on KITTI (about 175 GB):
  1. download the raw archives listed in data/splits/kitti_archives_to_download.txt (the calibration
     zips of each date and the *_sync drive zips) and unzip them into one folder, giving
     <root>/2011_09_26/calib_cam_to_cam.txt, <root>/2011_09_26/2011_09_26_drive_0001_sync/image_02/...
  2. optionally convert the PNGs to JPEG (both are read), as Monodepth2 suggests, to save space;
  3. run: python train.py --config configs/baseline_kitti_640x192.yaml data.root=/path/to/kitti_raw

To train without KITTI, on the project's own synthetic KITTI-format data:
  python train.py --config configs/synthetic.yaml
"""


def gt_cache_dir(data_cache_dir: str | Path | None = None) -> Path:
    """Where projected validation GT is cached: ``<data.cache_dir>/val_gt`` when set, else
    ``$XDG_CACHE_HOME/dabdepth/val_gt`` (``~/.cache/dabdepth/val_gt``)."""
    if data_cache_dir:
        return Path(data_cache_dir) / "val_gt"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dabdepth" / "val_gt"


def _scan_key(root: Path, entries, scans: list[Path]) -> str:
    """A digest of what the projected maps depend on: every scan's and calibration file's path, size
    and mtime (a changed file gives a new key, so the cache never serves stale GT)."""
    h = hashlib.sha256(b"velodyne-gt v1")
    files = list(scans) + sorted({root / e.date / name for e in entries
                                  for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt")})
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _projected_gt(root: Path, entries, scans: list[Path], cache: Path | None) -> list[np.ndarray]:
    """Velodyne scans projected to GT maps (:func:`data.velodyne.generate_depth_map`), read from /
    written to ``cache`` (sparse: the valid pixels' flat indices and depths, one ``.npz``, written
    atomically) so a run projects its validation scans once, not at every start."""
    path = None
    if cache is not None:
        path = cache / f"{_scan_key(root, entries, scans)}.npz"
        if path.is_file():
            try:
                with np.load(path) as z:
                    shapes = z["shapes"]
                    out = []
                    for i, (h, w) in enumerate(shapes):
                        m = np.zeros(int(h) * int(w), np.float32)
                        m[z[f"idx{i}"]] = z[f"val{i}"]
                        out.append(m.reshape(int(h), int(w)))
                if len(out) == len(entries):
                    return out
            except (OSError, ValueError, KeyError):
                pass  # unreadable cache: project again and rewrite it
    maps = [generate_depth_map(root / e.date, p) for e, p in zip(entries, scans)]
    if path is not None:
        arrays = {"shapes": np.array([m.shape for m in maps], np.int64)}
        for i, m in enumerate(maps):
            flat = m.ravel()
            idx = np.flatnonzero(flat).astype(np.int32)
            arrays[f"idx{i}"], arrays[f"val{i}"] = idx, flat[idx]
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f: f.write(buf.getvalue()), fsync=False)
        except OSError as e:  # a read-only cache is not an error: the maps are already in memory
            print(f"validation GT: could not cache {path} ({e})", file=sys.stderr)
    return maps


def load_validation_gt(root: Path, entries, kind: str = "auto", cache_dir: str | Path | None = None
                       ) -> list[np.ndarray] | None:
    """GT depth maps (metres, 0 = invalid) for ``entries``: benchmark PNGs where present
    (``kind`` auto/benchmark), else projected velodyne scans (auto/velodyne; cached in ``cache_dir``,
    see :func:`_projected_gt`; None: not cached); None if neither."""
    if kind == "none" or not entries:
        return None
    bench = [benchmark_png_path(root, e.folder, e.frame, e.side) for e in entries]
    if kind in ("auto", "benchmark") and all(p.is_file() for p in bench):
        return [read_benchmark_png(p) for p in bench]
    if kind == "benchmark":
        missing = [str(p) for p in bench if not p.is_file()]
        raise DataError(f"data.val_gt=benchmark: {len(missing)} GT PNGs missing, e.g. {missing[:5]}")
    scans = [velodyne_path(root, e.folder, e.frame) for e in entries]
    if not all(p.is_file() for p in scans):
        if kind == "velodyne":
            missing = [str(p) for p in scans if not p.is_file()]
            raise DataError(f"data.val_gt=velodyne: {len(missing)} scans missing, e.g. {missing[:5]}")
        return None
    return _projected_gt(Path(root), entries, scans, None if cache_dir is None else Path(cache_dir))


def validation_list(split: str, which: str = "val") -> Path | None:
    """The frames training-time validation scores. ``which="val"`` (the default, ``data.val_split``):
    the split's own ``val_files.txt`` (``eigen_zhou``'s 4,424 frames of the training drives; never the
    test set); None when the split has none. ``which="test"``: its ``test_files.txt``, or Eigen's
    test list for the built-in training splits -- what the DaB-Net code validates on: it looks at the
    test set while training, so a checkpoint chosen by it is chosen on the test set."""
    try:
        return split_file(split, which)
    except DataError:
        if which == "test" and (BUILTIN_SPLITS_DIR / str(split)).is_dir():
            return BUILTIN_SPLITS_DIR / "eigen" / "test_files.txt"
        return None


@dataclass
class RunData:
    """What a training run reads: the training samples; validation frames with GT
    (``val_images``/``val_gt``, what :class:`depth.train.trainer.ValidationData` holds; None without
    GT); held-out samples for the validation loss when there is no GT (``val_samples``: the video
    dataset's held-out sequences or frames; else None)."""

    train_set: FrameSampleDataset
    val_images: KittiImageSet | None = None
    val_gt: list[np.ndarray] | None = None  # (H_i, W_i) metres, 0 = invalid: load_validation_gt
    val_samples: FrameSampleDataset | None = None


def build_training_data(data_cfg: DataConfig, augment_cfg: AugmentConfig, seed: int = 0, progress: bool = False,
                        cache_workers: int = 0):
    """``(train_set, val_images, val_gt)`` of :func:`build_run_data` (val parts None without GT)."""
    d = build_run_data(data_cfg, augment_cfg, seed, progress, cache_workers)
    return d.train_set, d.val_images, d.val_gt


def build_run_data(data_cfg: DataConfig, augment_cfg: AugmentConfig, seed: int = 0, progress: bool = False,
                   cache_workers: int = 0) -> RunData:
    """The datasets of a run (:class:`RunData`).

    ``val_images`` is a :class:`data.kitti.KittiImageSet` (full-resolution frames, read when used)
    and ``val_gt`` the matching GT maps. Video folders have no GT: their held-out samples are
    ``val_samples`` (:func:`data.video.build_video_data`).

    Before returning, the split is checked (target frames always, every frame with ``data.check``;
    the calibration of every date with ``data.intrinsics=calib``) and, with ``data.cache_dir``,
    the pre-resized image cache is built (once; later runs reuse it)."""
    if data_cfg.dataset == "video":
        train_set, val_samples = build_video_data(data_cfg, augment_cfg, seed)
        return RunData(train_set, val_samples=val_samples)
    root = Path(data_cfg.root)
    if data_cfg.synthetic.generate:
        s = data_cfg.synthetic
        ensure_synthetic(root, seed=s.seed, drives=s.drives, frames=s.frames, test_drives=s.test_drives,
                         verbose=True)
    if not root.is_dir():
        raise DatasetNotFound(KITTI_HELP.format(root=str(root)))
    entries = read_split_file(split_file(data_cfg.split, "train"))
    train_set = KittiRawDataset(
        root, entries, data_cfg.height, data_cfg.width, data_cfg.frame_ids, is_train=True,
        img_ext=data_cfg.img_ext, intrinsics=data_cfg.intrinsics, stereo=data_cfg.stereo,
        stereo_baseline=data_cfg.stereo_baseline,
        color_jitter_prob=augment_cfg.color_jitter_prob, brightness=augment_cfg.brightness,
        contrast=augment_cfg.contrast, saturation=augment_cfg.saturation, hue=augment_cfg.hue,
        flip_prob=augment_cfg.flip_prob, seed=seed, jitter_on=augment_cfg.color_jitter_on, **augment_cfg.frame_zoom(),
        cache_images=data_cfg.cache_images, cache_dir=data_cfg.cache_dir or None)
    check_files(train_set, full=data_cfg.check)
    if train_set.disk_cache is not None:
        paths = [p for i in range(len(train_set)) for p in train_set.paths(i)]
        report = train_set.disk_cache.build(paths, workers=cache_workers, progress=progress)
        if report["unreadable"]:
            print(f"image cache: {len(report['unreadable'])} files could not be decoded and were not cached, "
                  f"e.g. {report['unreadable'][:5]}", file=sys.stderr)
    val_images = val_gt = None
    which = data_cfg.val_split
    test_list = validation_list(data_cfg.split, which) if data_cfg.val_gt != "none" else None
    if test_list is None and data_cfg.val_gt != "none":
        print(f"validation: split {data_cfg.split!r} has no {which}_files.txt: no validation metrics "
              f"(data.val_split=test scores its test list instead)", file=sys.stderr)
    if test_list is not None:
        test_entries = read_split_file(test_list)
        if data_cfg.val_max_images and len(test_entries) > data_cfg.val_max_images:
            idx = np.linspace(0, len(test_entries) - 1, data_cfg.val_max_images).round().astype(int)
            test_entries = [test_entries[i] for i in idx]
        images = KittiImageSet(root, test_entries, data_cfg.img_ext)
        if all(images.path(i).is_file() for i in range(len(images))):
            val_gt = load_validation_gt(root, test_entries, data_cfg.val_gt,
                                        cache_dir=gt_cache_dir(data_cfg.cache_dir or None))
            val_images = images if val_gt is not None else None
    return RunData(train_set, val_images, val_gt)


def check_files(train_set: KittiRawDataset, full: bool = False) -> None:
    """Every target frame (with ``full``: every frame a sample reads) must exist; the error says
    how many are missing and lists the first five. With calibrated intrinsics, the calibration of
    every (date, camera) the split uses is read too, so a missing file or key (``P_rect_02``,
    ``S_rect_02``, ...) stops the run here, naming the file and the key, not mid-epoch."""
    missing = list(dict.fromkeys(
        str(p) for i in range(len(train_set))
        for p in (train_set.paths(i) if full else train_set.paths(i)[:1]) if not p.is_file()))
    if missing:
        raise DataError(f"{len(missing)} files of the training split are missing under "
                                f"{train_set.root}; first five:\n  " + "\n  ".join(missing[:5])
                                + ("" if full else "\n(only target frames were checked; data.check=true "
                                                   "checks every frame of every sample)"))
    if train_set.intrinsics == "calib":
        sides = {}
        for e in train_set.entries:
            sides.setdefault((e.date, e.side), e)
            if train_set.stereo:
                sides.setdefault((e.date, "r" if e.side == "l" else "l"), e)
        for (_, side), e in sides.items():
            train_set.calibration(e, side)
