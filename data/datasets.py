"""Build the datasets a training run needs from the ``data`` section of a config.

Takes the config's ``data``/``augment``/``train`` values (numbers and paths); returns datasets
and ground truth, never models.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data.kitti import KittiImageSet, KittiRawDataset
from data.splits import BUILTIN_SPLITS_DIR, read_split_file, split_file
from data.synthetic import ensure_synthetic
from data.velodyne import benchmark_png_path, generate_depth_map, read_benchmark_png, velodyne_path
from data.video import build_video_data

__all__ = ["DatasetNotFound", "RunData", "build_run_data", "build_training_data", "load_validation_gt"]

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


class DatasetNotFound(FileNotFoundError):
    pass


def load_validation_gt(root: Path, entries, kind: str = "auto") -> list[np.ndarray] | None:
    """GT depth maps (metres, 0 = invalid) for ``entries``: benchmark PNGs where present
    (``kind`` auto/benchmark), else projected velodyne scans (auto/velodyne); None if neither."""
    if kind == "none" or not entries:
        return None
    bench = [benchmark_png_path(root, e.folder, e.frame, e.side) for e in entries]
    if kind in ("auto", "benchmark") and all(p.is_file() for p in bench):
        return [read_benchmark_png(p) for p in bench]
    if kind == "benchmark":
        missing = [str(p) for p in bench if not p.is_file()]
        raise FileNotFoundError(f"data.val_gt=benchmark: {len(missing)} GT PNGs missing, e.g. {missing[:5]}")
    scans = [velodyne_path(root, e.folder, e.frame) for e in entries]
    if not all(p.is_file() for p in scans):
        if kind == "velodyne":
            missing = [str(p) for p in scans if not p.is_file()]
            raise FileNotFoundError(f"data.val_gt=velodyne: {len(missing)} scans missing, e.g. {missing[:5]}")
        return None
    return [generate_depth_map(root / e.date, p) for e, p in zip(entries, scans)]


def _validation_split(split: str) -> Path | None:
    """The test list used for validation metrics: the split's own test_files.txt, or eigen's
    for the built-in training splits."""
    try:
        return split_file(split, "test")
    except FileNotFoundError:
        if (BUILTIN_SPLITS_DIR / str(split)).is_dir():
            return BUILTIN_SPLITS_DIR / "eigen" / "test_files.txt"
        return None


@dataclass
class RunData:
    """What a training run reads: the training samples; validation frames with GT
    (``val_images``/``val_gt``, what :class:`depth.train.trainer.ValidationData` holds; None without
    GT); held-out samples for the validation loss when there is no GT (``val_samples``: the video
    dataset's held-out sequences or frames; else None)."""

    train_set: Any
    val_images: Any = None
    val_gt: Any = None
    val_samples: Any = None


def build_training_data(data_cfg, augment_cfg, seed: int = 0, progress: bool = False, cache_workers: int = 0):
    """``(train_set, val_images, val_gt)`` of :func:`build_run_data` (val parts None without GT)."""
    d = build_run_data(data_cfg, augment_cfg, seed, progress, cache_workers)
    return d.train_set, d.val_images, d.val_gt


def build_run_data(data_cfg, augment_cfg, seed: int = 0, progress: bool = False, cache_workers: int = 0) -> RunData:
    """The datasets of a run (:class:`RunData`).

    ``val_images`` is a :class:`data.kitti.KittiImageSet` (full-resolution frames, read when used)
    and ``val_gt`` the matching GT maps. Video folders have no GT: their held-out samples are
    ``val_samples`` (:func:`data.video.build_video_data`).

    Before returning, the split is checked (target frames always, every frame with ``data.check``;
    the calibration of every date with ``data.intrinsics=calib``) and, with ``data.cache_dir``,
    the pre-resized image cache is built (once; later runs reuse it)."""
    if getattr(data_cfg, "dataset", "kitti") == "video":
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
        flip_prob=augment_cfg.flip_prob, seed=seed,
        cache_images=data_cfg.cache_images, cache_dir=data_cfg.cache_dir or None)
    check_files(train_set, full=data_cfg.check)
    if train_set.disk_cache is not None:
        paths = [p for i in range(len(train_set)) for p in train_set.paths(i)]
        report = train_set.disk_cache.build(paths, workers=cache_workers, progress=progress)
        if report["unreadable"]:
            print(f"image cache: {len(report['unreadable'])} files could not be decoded and were not cached, "
                  f"e.g. {report['unreadable'][:5]}", file=sys.stderr)
    val_images = val_gt = None
    test_list = _validation_split(data_cfg.split) if data_cfg.val_gt != "none" else None
    if test_list is not None:
        test_entries = read_split_file(test_list)
        if data_cfg.val_max_images and len(test_entries) > data_cfg.val_max_images:
            idx = np.linspace(0, len(test_entries) - 1, data_cfg.val_max_images).round().astype(int)
            test_entries = [test_entries[i] for i in idx]
        images = KittiImageSet(root, test_entries, data_cfg.img_ext)
        if all(images.path(i).is_file() for i in range(len(images))):
            val_gt = load_validation_gt(root, test_entries, data_cfg.val_gt)
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
        raise FileNotFoundError(f"{len(missing)} files of the training split are missing under "
                                f"{train_set.root}; first five:\n  " + "\n  ".join(missing[:5])
                                + ("" if full else "\n(only target frames were checked; data.check=true "
                                                   "checks every frame of every sample)"))
    if getattr(train_set, "intrinsics", None) == "calib":
        sides = {}
        for e in train_set.entries:
            sides.setdefault((e.date, e.side), e)
            if train_set.stereo:
                sides.setdefault((e.date, "r" if e.side == "l" else "l"), e)
        for (_, side), e in sides.items():
            train_set._calib(e, side)
