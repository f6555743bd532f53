"""Training-time validation scores the split's val frames, never its test list (unless asked), with
GT projected from their scans once and cached."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from data.datasets import build_run_data, gt_cache_dir, load_validation_gt, validation_list
from data.splits import BUILTIN_SPLITS_DIR, read_split_file
from data.velodyne import benchmark_png_path, generate_depth_map, read_benchmark_png, velodyne_path
from depth.config import Config, ConfigError, load_config
ROOT = Path(__file__).resolve().parents[1]


def _cfg(root, *extra):
    return load_config(ROOT / "configs" / "synthetic.yaml", [
        f"data.root={root}", f"data.split={root / 'splits'}", "data.synthetic.generate=false",
        "data.height=64", "data.width=64", "data.cache_images=false", *extra])


def _keys(entries):
    return [(e.folder, e.frame, e.side) for e in entries]


def test_validation_uses_val_files_and_never_the_test_list(tiny_synthetic):
    val = read_split_file(tiny_synthetic / "splits" / "val_files.txt")
    test = read_split_file(tiny_synthetic / "splits" / "test_files.txt")
    assert val and test and not set(_keys(val)) & set(_keys(test))
    cfg = _cfg(tiny_synthetic, "data.val_split=val")
    data = build_run_data(cfg.data, cfg.augment)
    assert _keys(data.val_images.entries) == _keys(val)
    # the GT of the val frames: their benchmark PNGs where all exist, else their scans projected
    pngs = [benchmark_png_path(tiny_synthetic, e.folder, e.frame, e.side) for e in val]
    expected = ([read_benchmark_png(p) for p in pngs] if all(p.is_file() for p in pngs) else
                [generate_depth_map(tiny_synthetic / e.date, velodyne_path(tiny_synthetic, e.folder, e.frame))
                 for e in val])
    for got, want in zip(data.val_gt, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    test_data = build_run_data(_cfg(tiny_synthetic, "data.val_split=test").data, _cfg(tiny_synthetic).augment)
    assert _keys(test_data.val_images.entries) == _keys(test)


def test_builtin_training_splits_validate_on_their_val_list():
    assert Config().data.val_split == "val"
    assert load_config(ROOT / "configs" / "dabnet_kitti_1024x320.yaml").data.val_split == "val"
    assert validation_list("eigen_zhou") == BUILTIN_SPLITS_DIR / "eigen_zhou" / "val_files.txt"
    assert validation_list("eigen_zhou", "test") == BUILTIN_SPLITS_DIR / "eigen" / "test_files.txt"
    assert validation_list("eigen") is None  # a test-only split has no val list
    with pytest.raises(ConfigError, match="data.val_split"):
        load_config(ROOT / "configs" / "synthetic.yaml", ["data.val_split=eigen"])


def test_projected_gt_is_cached_once_and_refreshed_when_a_scan_changes(tiny_synthetic, tmp_path):
    entries = read_split_file(tiny_synthetic / "splits" / "val_files.txt")[:1] + \
        read_split_file(tiny_synthetic / "splits" / "train_files.txt")[:2]
    cache = tmp_path / "cache"
    first = load_validation_gt(tiny_synthetic, entries, "velodyne", cache_dir=cache)
    files = list(cache.glob("*.npz"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again = load_validation_gt(tiny_synthetic, entries, "velodyne", cache_dir=cache)
    for a, b in zip(first, again):
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert files[0].stat().st_mtime_ns == stamp  # read, not rewritten
    # a touched scan is a new key: projected again, a second file
    scan = velodyne_path(tiny_synthetic, entries[0].folder, entries[0].frame)
    st = scan.stat()
    try:
        os.utime(scan, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        load_validation_gt(tiny_synthetic, entries, "velodyne", cache_dir=cache)
        assert len(list(cache.glob("*.npz"))) == 2
    finally:
        os.utime(scan, ns=(st.st_atime_ns, st.st_mtime_ns))
    # a corrupt cache file is projected again, not an error
    files[0].write_bytes(b"broken")
    np.testing.assert_array_equal(load_validation_gt(tiny_synthetic, entries, "velodyne", cache_dir=cache)[1],
                                  first[1])


def test_cache_folder_follows_data_cache_dir(tmp_path, monkeypatch):
    assert gt_cache_dir(tmp_path) == tmp_path / "val_gt"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert gt_cache_dir(None) == tmp_path / "xdg" / "dabdepth" / "val_gt"
