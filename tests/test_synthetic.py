"""The synthetic KITTI-format generator: layout, determinism, calibration, and geometric consistency
(temporal and stereo warps with the true depth and poses, velodyne vs dense GT)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from common.errors import DataError
from data import synthetic as S
from data.calib import read_calib_file
from data.splits import read_split_file
from depth.geometry import backproject, project, scale_intrinsics
from depth.train.reprojection import warp

W, H = S.WIDTH, S.HEIGHT


def _read_calib(path: Path) -> dict[str, np.ndarray]:
    return read_calib_file(path)


@pytest.fixture(scope="module")
def ds(tiny_synthetic) -> Path:
    """The session's tiny dataset (conftest: 2 drives x 8 frames, the second for test)."""
    params = json.loads((tiny_synthetic / "synthetic.json").read_text())
    assert params["drives"] >= 2 and params["test_drives"] == 1 and params["frames"] >= 6
    return tiny_synthetic


def _params(root: Path) -> tuple[int, int, int]:
    p = json.loads((root / "synthetic.json").read_text())
    return p["drives"], p["frames"], p["gt_every"]


def _drive_dir(root: Path, drive: int) -> Path:
    return root / S.DATE / S.drive_name(drive)


def _img(root, drive, cam, i):
    path = _drive_dir(root, drive) / f"image_0{cam}" / "data" / f"{i:010d}.png"
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return bgr[..., ::-1].copy()


def _gt(root, drive, i):
    g = cv2.imread(str(_drive_dir(root, drive) / "proj_depth/groundtruth/image_02" / f"{i:010d}.png"),
                   cv2.IMREAD_UNCHANGED)
    assert g is not None and g.dtype == np.uint16 and g.shape == (H, W)
    return g.astype(np.float32) / 256.0


def _poses(root, drive):
    rows = np.loadtxt(_drive_dir(root, drive) / "poses_image_02.txt").reshape(-1, 3, 4)
    T = np.tile(np.eye(4), (len(rows), 1, 1))
    T[:, :3, :4] = rows
    return T


def _t(x):
    return torch.from_numpy(np.ascontiguousarray(x)).float().unsqueeze(0)


def _img_t(a):
    return torch.from_numpy(np.ascontiguousarray(a)).float().permute(2, 0, 1).unsqueeze(0) / 255.0


def test_layout(ds):
    DRIVES, FRAMES, GT_EVERY = _params(ds)
    day = ds / S.DATE
    assert (day / "calib_cam_to_cam.txt").is_file() and (day / "calib_velo_to_cam.txt").is_file()
    for drive in range(1, DRIVES + 1):
        d = _drive_dir(ds, drive)
        is_test = drive == DRIVES
        for sub in ("image_02", "image_03", "velodyne_points"):
            assert len((d / sub / "timestamps.txt").read_text().splitlines()) == FRAMES
        assert _poses(ds, drive).shape == (FRAMES, 4, 4)
        for i in range(FRAMES):
            for cam in (2, 3):
                img = cv2.imread(str(d / f"image_0{cam}/data/{i:010d}.png"), cv2.IMREAD_UNCHANGED)
                assert img.shape == (H, W, 3) and img.dtype == np.uint8
            pts = np.fromfile(d / f"velodyne_points/data/{i:010d}.bin", dtype=np.float32)
            assert pts.size > 0 and pts.size % 4 == 0 and np.isfinite(pts).all()
            pts = pts.reshape(-1, 4)
            assert (pts[:, 3] >= 0).all() and (pts[:, 3] <= 1).all()
            assert np.linalg.norm(pts[:, :3], axis=1).max() <= S.LIDAR_MAX_RANGE + 1e-3
            want_gt = (0 < i < FRAMES - 1) if is_test else (i % GT_EVERY == 0)
            assert (d / f"proj_depth/groundtruth/image_02/{i:010d}.png").is_file() == want_gt
    splits = {k: read_split_file(ds / "splits" / f"{k}_files.txt") for k in ("train", "val", "test")}
    assert splits["train"] and splits["test"]
    assert not {(e.folder, e.frame) for e in splits["val"]} & {(e.folder, e.frame) for e in splits["train"]}
    test_folder = f"{S.DATE}/{S.drive_name(DRIVES)}"
    for name, entries in splits.items():
        for e in entries:
            assert e.side == "l"
            assert (e.folder == test_folder) == (name == "test")
            for j in (e.frame - 1, e.frame, e.frame + 1):
                assert (ds / e.folder / "image_02" / "data" / f"{j:010d}.png").is_file()
            if name == "test":
                assert (ds / e.folder / "proj_depth/groundtruth/image_02" / f"{e.frame:010d}.png").is_file()
    assert len(splits["test"]) == FRAMES - 2
    assert len(splits["train"]) + len(splits["val"]) == (DRIVES - 1) * (FRAMES - 2)


def test_calibration(ds):
    cam = _read_calib(ds / S.DATE / "calib_cam_to_cam.txt")
    P2 = np.asarray(cam["P_rect_02"]).reshape(3, 4)
    P3 = np.asarray(cam["P_rect_03"]).reshape(3, 4)
    assert np.asarray(cam["S_rect_02"]).tolist() == [1242.0, 375.0]
    assert P2[0, 0] == pytest.approx(721.5377) and P2[1, 1] == pytest.approx(721.5377)
    assert P2[0, 2] == pytest.approx(609.5593) and P2[1, 2] == pytest.approx(172.854)
    assert P2[0, 3] / P2[0, 0] == pytest.approx(0.06, abs=1e-6)
    assert (P2[0, 3] - P3[0, 3]) / P2[0, 0] == pytest.approx(0.54, abs=1e-6)
    np.testing.assert_allclose(np.asarray(cam["R_rect_00"]).reshape(3, 3), np.eye(3))
    for key in ("K_00", "D_03", "R_01", "T_02", "S_03", "P_rect_00"):
        assert key in cam
    velo = _read_calib(ds / S.DATE / "calib_velo_to_cam.txt")
    R = np.asarray(velo["R"]).reshape(3, 3)
    T = np.asarray(velo["T"])
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-5)
    assert R @ np.array([1.0, 0, 0]) == pytest.approx([0, 0, 1], abs=0.02)  # velo forward = camera z
    assert R @ np.array([0, 0, 1.0]) == pytest.approx([0, -1, 0], abs=0.02)  # velo up = camera -y
    assert T[2] == pytest.approx(-0.27, abs=0.02) and T[1] == pytest.approx(-0.08, abs=0.02)
    assert "delta_f" in velo and "delta_c" in velo


def test_deterministic(tmp_path):
    kw = dict(drives=1, frames=3, test_drives=0, gt_every=1)
    a = S.generate(tmp_path / "a", seed=11, **kw)
    b = S.generate(tmp_path / "b", seed=11, **kw)
    c = S.generate(tmp_path / "c", seed=12, **kw)
    rel = [f"{S.DATE}/{S.drive_name(1)}/image_02/data/{1:010d}.png",
           f"{S.DATE}/{S.drive_name(1)}/velodyne_points/data/{2:010d}.bin",
           f"{S.DATE}/{S.drive_name(1)}/proj_depth/groundtruth/image_02/{0:010d}.png",
           f"{S.DATE}/{S.drive_name(1)}/poses_image_02.txt"]
    for r in rel:
        assert (a / r).read_bytes() == (b / r).read_bytes(), r
        assert (a / r).read_bytes() != (c / r).read_bytes(), r


def _warp_errors(target, source, depth, K, T_src_tgt, smooth=None):
    """Mean |warped - target| and |source - target| over non-sky pixels that land inside the source
    (and where ``smooth`` is true, if given)."""
    tgt, src = _img_t(target), _img_t(source)
    d = _t(depth).unsqueeze(0)
    Kt, Tt = _t(K), _t(T_src_tgt)
    warped = warp(src, d.clamp(min=1e-3), Kt, Tt)
    uv = project(backproject(d.clamp(min=1e-3), Kt), Kt, Tt)[0]
    h, w = depth.shape
    valid = (d[0, 0] > 0) & (uv[0] >= 0) & (uv[0] <= w - 1) & (uv[1] >= 0) & (uv[1] <= h - 1)
    if smooth is not None:
        valid &= torch.from_numpy(smooth)
    assert valid.float().mean() > 0.5
    e_warp = (warped - tgt).abs().mean(1)[0][valid].mean().item()
    e_id = (src - tgt).abs().mean(1)[0][valid].mean().item()
    return e_warp, e_id


@pytest.mark.parametrize("size", [None, (256, 80), (192, 64)])
def test_temporal_warp_reproduces_frame(ds, size):
    drive, t = _params(ds)[0], 2  # test drive: every inner frame has GT
    T = _poses(ds, drive)
    T_src_tgt = np.linalg.inv(T[t + 1]) @ T[t]
    target, source, depth = _img(ds, drive, 2, t), _img(ds, drive, 2, t + 1), _gt(ds, drive, t)
    K = S.K_RECT.copy()
    smooth = None
    if size is not None:
        w, h = size
        target = cv2.resize(target, size, interpolation=cv2.INTER_AREA)
        source = cv2.resize(source, size, interpolation=cv2.INTER_AREA)
        # a low-res pixel mixes several surfaces at depth edges: judge only pixels whose full-res
        # footprint has one depth (within 5%)
        k = np.ones((int(np.ceil(H / h)) + 1, int(np.ceil(W / w)) + 1), np.uint8)
        lo = cv2.resize(cv2.erode(depth, k), size, interpolation=cv2.INTER_NEAREST)
        hi = cv2.resize(cv2.dilate(depth, k), size, interpolation=cv2.INTER_NEAREST)
        smooth = (lo > 0) & (hi < 1.05 * lo)
        depth = cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST)
        K = scale_intrinsics(_t(K), w / W, h / H)[0].numpy()
    e_warp, e_id = _warp_errors(target, source, depth, K, T_src_tgt, smooth)
    assert e_id > 0.02, "consecutive frames should differ"
    assert e_warp < 0.3 * e_id, (e_warp, e_id)


def test_stereo_warp_reproduces_left(ds):
    cam = _read_calib(ds / S.DATE / "calib_cam_to_cam.txt")
    P2 = np.asarray(cam["P_rect_02"]).reshape(3, 4)
    P3 = np.asarray(cam["P_rect_03"]).reshape(3, 4)
    T_src_tgt = np.eye(4)
    T_src_tgt[0, 3] = (P3[0, 3] - P2[0, 3]) / P2[0, 0]  # X_cam3 = X_cam2 - 0.54 m along x
    assert T_src_tgt[0, 3] == pytest.approx(-0.54, abs=1e-6)
    drive, t = _params(ds)[0], 3
    e_warp, e_id = _warp_errors(_img(ds, drive, 2, t), _img(ds, drive, 3, t), _gt(ds, drive, t),
                                P2[:, :3], T_src_tgt)
    assert e_warp < 0.3 * e_id, (e_warp, e_id)


def test_velodyne_matches_dense_gt(ds):
    cam = _read_calib(ds / S.DATE / "calib_cam_to_cam.txt")
    velo = _read_calib(ds / S.DATE / "calib_velo_to_cam.txt")
    P2 = np.asarray(cam["P_rect_02"]).reshape(3, 4)
    R_rect = np.eye(4)
    R_rect[:3, :3] = np.asarray(cam["R_rect_00"]).reshape(3, 3)
    Tr = np.eye(4)
    Tr[:3, :3] = np.asarray(velo["R"]).reshape(3, 3)
    Tr[:3, 3] = np.asarray(velo["T"])
    drive, t = _params(ds)[0], 3
    pts = np.fromfile(_drive_dir(ds, drive) / f"velodyne_points/data/{t:010d}.bin", np.float32).reshape(-1, 4)
    pts = pts[pts[:, 0] >= 0]
    X = np.concatenate([pts[:, :3], np.ones((len(pts), 1), np.float32)], 1).astype(np.float64)
    p = (P2 @ R_rect @ Tr @ X.T).T
    z = p[:, 2]
    u = np.round(p[:, 0] / z).astype(int)
    v = np.round(p[:, 1] / z).astype(int)
    inside = (z > 0.5) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    gt = _gt(ds, drive, t)
    g = gt[v[inside], u[inside]]
    ok = g > 0
    assert ok.sum() > 5000
    rel = np.abs(g[ok] - z[inside][ok]) / z[inside][ok]
    assert np.median(rel) < 0.01, np.median(rel)
    assert np.mean(rel < 0.02) > 0.8


def test_render_api_depth_and_sky():
    seed = S.drive_seed(0, 1)
    poses = S.drive_trajectory(seed, 5)
    scene = S.build_scene(seed, length=float(poses[-1, 2, 3]) + 100.0)
    K = S.K_RECT.copy()
    K[:2] *= 0.25
    rgb, depth = S.render(scene, poses[0], K, 94, 310)
    assert rgb.shape == (94, 310, 3) and rgb.dtype == np.uint8 and depth.dtype == np.float32
    assert (depth[:5] == 0).any(), "sky expected at the top"
    assert (depth[-1] > 0).all() and (depth[-1] < 10).all(), "ground expected at the bottom"
    # the bottom-centre pixel sees flat ground: depth = height / ray slope
    slope = (93 - K[1, 2]) / K[1, 1]
    assert depth[-1, 155] == pytest.approx(S.CAM_HEIGHT / slope, rel=0.03)


def test_ensure_synthetic(tmp_path):
    kw = dict(seed=5, drives=1, frames=3, test_drives=0, gt_every=1)
    root = tmp_path / "data"
    assert S.ensure_synthetic(root, **kw) == root.resolve()
    marker = root / "synthetic.json"
    stamp = marker.stat().st_mtime_ns
    assert [p.name for p in tmp_path.iterdir()] == ["data"], "no temporary folder left behind"
    S.ensure_synthetic(root, **kw)
    assert marker.stat().st_mtime_ns == stamp, "second call must not regenerate"
    with pytest.raises(DataError, match="different parameters"):
        S.ensure_synthetic(root, **{**kw, "seed": 6})
    other = tmp_path / "other"
    other.mkdir()
    (other / "user_file.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a synthetic dataset"):
        S.ensure_synthetic(other, **kw)
    assert (other / "user_file.txt").read_text() == "keep me"
