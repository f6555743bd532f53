"""Velodyne GT export (data/velodyne.py) on the real drive-0060 scans, the benchmark PNG reader on
the real annotated maps, and the GT file formats."""
from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest

from common.errors import DataError
import evaluate
from data.calib import read_calib_file
from data.velodyne import _dedupe_monodepth2, generate_depth_map, load_velodyne_points, read_benchmark_png
from depth.eval.gt import SparseGT, choose_gt_format, export_gt, load_gt, save_dense_gt, save_sparse_gt

DRIVE = "2011_09_26/2011_09_26_drive_0060_sync"
FRAMES = (0, 4, 9)


def _independent_projection(calib_dir, scan):
    """Plain numpy: P_rect_02 @ R_rect_00 @ [R|T], x >= 0, round-1 pixels, velodyne x, min per pixel."""
    cc = read_calib_file(calib_dir / "calib_cam_to_cam.txt")
    vc = read_calib_file(calib_dir / "calib_velo_to_cam.txt")
    Tr = np.eye(4)
    Tr[:3, :3] = vc["R"].reshape(3, 3)
    Tr[:3, 3] = vc["T"]
    R = np.eye(4)
    R[:3, :3] = cc["R_rect_00"].reshape(3, 3)
    P = cc["P_rect_02"].reshape(3, 4) @ R @ Tr
    w, h = cc["S_rect_02"].astype(int)
    pts = np.fromfile(scan, dtype=np.float32).reshape(-1, 4).astype(np.float64)
    pts = pts[pts[:, 0] >= 0]
    hom = np.c_[pts[:, :3], np.ones(len(pts))]
    uvw = hom @ P.T
    u = np.round(uvw[:, 0] / uvw[:, 2]) - 1
    v = np.round(uvw[:, 1] / uvw[:, 2]) - 1
    ok = (u >= 0) & (v >= 0) & (u < w) & (v < h)
    depth = np.full((h, w), np.inf)
    np.minimum.at(depth, (v[ok].astype(int), u[ok].astype(int)), pts[ok, 0])
    depth[np.isinf(depth)] = 0
    return depth.astype(np.float32)


def _monodepth2(calib_dir, scan):
    """Monodepth2's generate_depth_map(calib_dir, scan, 2, vel_depth=True), verbatim logic."""
    cc = read_calib_file(calib_dir / "calib_cam_to_cam.txt")
    vc = read_calib_file(calib_dir / "calib_velo_to_cam.txt")
    velo2cam = np.vstack((np.hstack((vc["R"].reshape(3, 3), vc["T"][..., None])), [0, 0, 0, 1.0]))
    im_shape = cc["S_rect_02"][::-1].astype(np.int32)
    R = np.eye(4)
    R[:3, :3] = cc["R_rect_00"].reshape(3, 3)
    P = np.dot(np.dot(cc["P_rect_02"].reshape(3, 4), R), velo2cam)
    velo = np.fromfile(scan, dtype=np.float32).reshape(-1, 4)
    velo[:, 3] = 1.0
    velo = velo[velo[:, 0] >= 0, :]
    im = np.dot(P, velo.T).T
    im[:, :2] = im[:, :2] / im[:, 2][..., None]
    im[:, 2] = velo[:, 0]
    im[:, 0] = np.round(im[:, 0]) - 1
    im[:, 1] = np.round(im[:, 1]) - 1
    ok = (im[:, 0] >= 0) & (im[:, 1] >= 0) & (im[:, 0] < im_shape[1]) & (im[:, 1] < im_shape[0])
    im = im[ok]
    depth = np.zeros(im_shape[:2])
    depth[im[:, 1].astype(int), im[:, 0].astype(int)] = im[:, 2]
    inds = im[:, 1] * (depth.shape[1] - 1) + im[:, 0] - 1
    for dd in [k for k, c in Counter(inds).items() if c > 1]:
        pts = np.where(inds == dd)[0]
        depth[int(im[pts[0], 1]), int(im[pts[0], 0])] = im[pts, 2].min()
    depth[depth < 0] = 0
    return depth.astype(np.float32)


@pytest.fixture(scope="module")
def scans(kitti_sample):
    calib = kitti_sample / "2011_09_26"
    paths = [kitti_sample / DRIVE / "velodyne_points" / "data" / f"{f:010d}.bin" for f in FRAMES]
    return calib, paths


def test_clean_export_equals_independent_numpy(scans):
    calib, paths = scans
    for p in paths:
        ours = generate_depth_map(calib, p)
        ref = _independent_projection(calib, p)
        assert ours.dtype == np.float32 and ours.shape == (375, 1242)
        np.testing.assert_array_equal(ours, ref)
        n = np.count_nonzero(ours)
        assert 14000 < n < 17000, n  # README: 15 187 - 16 333 projected points per frame
        assert 2.5 < ours[ours > 0].min() and ours.max() < 80


def test_exact_mode_is_monodepth2_and_differs_only_at_merged_pixels(scans):
    calib, paths = scans
    for p in paths:
        exact = generate_depth_map(calib, p, exact=True)
        np.testing.assert_array_equal(exact, _monodepth2(calib, p))
        clean = generate_depth_map(calib, p)
        rows, cols = np.nonzero(exact != clean)
        # Monodepth2's index row*(W-1)+col-1 only merges (r, W-1) with (r+1, 0)
        assert np.all((cols == 0) | (cols == exact.shape[1] - 1))


def test_duplicate_quirk_on_constructed_points():
    h, w = 4, 5
    uc = np.array([w - 1, 0, 2, 2], np.float64)  # (1, W-1) and (2, 0) share Monodepth2's index
    vc = np.array([1, 2, 3, 3], np.float64)
    d = np.array([7.0, 3.0, 9.0, 6.0])
    exact = _dedupe_monodepth2(uc, vc, d, h, w)
    assert exact[1, w - 1] == 3.0  # first point's pixel gets the merged minimum
    assert exact[2, 0] == 3.0
    assert exact[3, 2] == 6.0  # a true duplicate: the nearest point


def test_export_gt_sparse_dense_roundtrip(scans, kitti_sample, tmp_path):
    calib, paths = scans
    entries = [(DRIVE, f, "l") for f in FRAMES]
    gt = export_gt(kitti_sample, entries, progress=False)
    assert len(gt) == 3 and gt.shapes == [(375, 1242)] * 3
    for i, p in enumerate(paths):
        np.testing.assert_array_equal(gt.dense(i), generate_depth_map(calib, p))
    save_sparse_gt(tmp_path / "gt.npz", gt)
    save_dense_gt(tmp_path / "dense.npz", gt)
    assert sorted(os.listdir(tmp_path)) == ["dense.npz", "gt.npz"]  # no temporary files left
    back = load_gt(tmp_path / "gt.npz")
    assert isinstance(back, SparseGT) and list(back.entries) == [f"{DRIVE} {f} l" for f in FRAMES]
    dense = load_gt(tmp_path / "dense.npz")
    for i in range(3):
        np.testing.assert_array_equal(back.dense(i), dense[i])
    dense_bytes = 3 * 375 * 1242 * 4
    assert back.nbytes * 15 < dense_bytes  # ~20x smaller on real scans


def test_dense_file_with_mixed_sizes_is_an_object_array(tmp_path):
    maps = [np.eye(4, dtype=np.float32) * 3, np.ones((2, 3), np.float32)]
    save_dense_gt(tmp_path / "g.npz", maps, compressed=False)
    with np.load(tmp_path / "g.npz", allow_pickle=True) as z:
        assert z["data"].dtype == object  # what Monodepth2's loader expects
    back = load_gt(tmp_path / "g.npz")
    assert [m.shape for m in back] == [(4, 4), (2, 3)]
    sp = SparseGT.from_dense(maps)
    for a, b in zip(sp.to_dense_list(), maps):
        np.testing.assert_array_equal(a, b)


def test_benchmark_png_reader(kitti_sample):
    base = kitti_sample / "2011_09_26" / "2011_09_26_drive_0001_sync" / "proj_depth" / "groundtruth" / "image_02"
    for f in (5, 50, 100):
        d = read_benchmark_png(base / f"{f:010d}.png")
        assert d.dtype == np.float32 and d.shape == (375, 1242)
        v = d[d > 0]
        assert 0.18 < v.size / d.size < 0.22  # README: 18-21 % valid
        assert 5.0 < v.min() and v.max() < 85.0  # README: 5.1-84.9 m
        assert np.all(np.mod(v * 256, 1) == 0)  # uint16 / 256
    gt = export_gt(kitti_sample, [("2011_09_26/2011_09_26_drive_0001_sync", 5, "l")], mode="benchmark",
                   progress=False)
    np.testing.assert_array_equal(gt.dense(0), read_benchmark_png(base / "0000000005.png"))


def test_broken_scans_are_named(tmp_path, kitti_sample):
    with pytest.raises(DataError, match="missing.bin"):
        load_velodyne_points(tmp_path / "missing.bin")
    bad = tmp_path / "0000000001.bin"
    bad.write_bytes(np.arange(10, dtype=np.float32).tobytes())  # 40 bytes, not a multiple of 16
    with pytest.raises(ValueError, match="0000000001.bin"):
        load_velodyne_points(bad)
    nan = tmp_path / "nan.bin"
    nan.write_bytes(np.array([[np.nan, 0, 0, 0]] * 2, np.float32).tobytes())
    with pytest.raises(ValueError, match="nan.bin"):
        load_velodyne_points(nan)
    with pytest.raises(DataError, match="calib_cam_to_cam.txt"):
        export_gt(tmp_path, [("2011_09_26/x_sync", 3, "l")], progress=False)
    calib = tmp_path / "2011_09_26"
    calib.mkdir()
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt"):
        (calib / name).write_text((kitti_sample / "2011_09_26" / name).read_text())
    with pytest.raises(DataError, match=r"velodyne_points.data.0000000003\.bin"):
        export_gt(tmp_path, [("2011_09_26/x_sync", 3, "l")], progress=False)


def test_auto_gt_format_is_dense_exactly_when_sparse_outgrows_the_maps():
    """Sparse bytes = 6 per valid pixel + 4 per row (+1 per image) + 16 per image; dense = 4 per pixel."""
    h, w, n = 20, 30, 2

    def gt_with(valid: int) -> SparseGT:
        maps = []
        for _ in range(n):
            m = np.zeros(h * w, np.float32)
            m[:valid] = 5.0
            maps.append(m.reshape(h, w))
        return SparseGT.from_dense(maps)

    dense_bytes = n * h * w * 4
    # sparse bytes = n * (6 valid + 4 (h + 1)) + n * 8 (heights, widths) + 8 (n + 1): solve for valid
    fixed = n * 4 * (h + 1) + n * 8 + 8 * (n + 1)
    tie = (dense_bytes - fixed) // (6 * n)
    assert gt_with(tie).nbytes <= dense_bytes < gt_with(tie + 1).nbytes
    assert choose_gt_format(gt_with(tie)) == "sparse" and choose_gt_format(gt_with(tie + 1)) == "dense"
    assert tie / (h * w) == pytest.approx(2 / 3, abs=0.05)  # "about 2/3 of the pixels valid"
    assert choose_gt_format(gt_with(int(0.05 * h * w))) == "sparse"  # velodyne-like
    assert choose_gt_format(gt_with(h * w)) == "dense"


def test_export_gt_auto_format_on_synthetic_scans_and_dense_maps(tiny_synthetic, tmp_path):
    split = tiny_synthetic / "splits"
    for source, kind in (("velodyne", SparseGT), ("benchmark", np.ndarray)):
        out = tmp_path / f"{source}.npz"
        assert evaluate.main(["export-gt", "--data-path", str(tiny_synthetic), "--split", str(split),
                              "--gt-source", source, "--out", str(out), "--no-progress"]) == 0
        assert isinstance(load_gt(out), kind), source
