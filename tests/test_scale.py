"""Metric-scale helpers: median ratio, camera-height ground-plane scale."""
from __future__ import annotations

import numpy as np
import pytest

from data.calib import intrinsics_from_calib
from data.splits import read_split_file, split_file
from data.velodyne import benchmark_png_path, read_benchmark_png
from depth.eval.scale import (
    backproject_band,
    camera_height_scale,
    camera_height_scale_many,
    fit_ground_plane,
    median_scale,
    median_scale_ratios,
)

K = np.array([[120.0, 0, 100.0], [0, 120.0, 30.0], [0, 0, 1]])  # 192x64, principal point off-centre
H, W = 64, 192


def _ground_depth(height=1.65, pitch_deg=3.0, roll_deg=1.0, far=80.0):
    """Depth (camera z) of a flat ground ``height`` below a camera pitched down by ``pitch_deg``;
    pixels above the horizon see a wall at ``far``."""
    p, r = np.radians(pitch_deg), np.radians(roll_deg)
    Rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    Rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    n = Rz @ Rx @ np.array([0.0, 1.0, 0.0])  # ground normal in the camera frame (down)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.linalg.inv(K) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    nd = n @ rays
    z = np.where(nd > 1e-6, height / np.maximum(nd, 1e-6), far)
    return np.minimum(z, far).reshape(H, W), n


def test_median_scale():
    gt = np.array([[0.0, 2.0], [4.0, 100.0]])
    pred = np.array([[1.0, 1.0], [2.0, 1.0]])
    assert median_scale(pred, gt) == pytest.approx(3.0 / 1.5)  # 0 and >= 80 m are not valid
    med, std, ratios = median_scale_ratios([pred, 2 * pred], [gt, gt])
    assert ratios.tolist() == pytest.approx([2.0, 1.0]) and med == pytest.approx(1.5)
    assert np.isnan(median_scale(pred, np.zeros_like(gt)))


@pytest.mark.parametrize("scale", [0.05, 0.3, 7.0])
def test_camera_height_scale_on_a_tilted_ground_with_obstacles(scale):
    depth, n = _ground_depth()
    rng = np.random.default_rng(0)
    depth = depth * (1 + 0.01 * rng.standard_normal(depth.shape))
    depth[45:60, 20:60] = 6.0  # a car in the band
    depth[40:64, 150:192] = 4.0  # a wall at the right
    s, plane = camera_height_scale(depth * scale, K, 1.65)
    assert s == pytest.approx(1 / scale, rel=0.01)
    assert np.degrees(np.arccos(plane.normal @ n)) < 1.0
    assert 0.5 < plane.inlier_fraction < 0.9


def test_ground_plane_needs_a_ground():
    wall = np.full((H, W), 5.0)  # a fronto-parallel wall: normal along z, beyond the tilt limit
    with pytest.raises(ValueError, match="tilt"):
        fit_ground_plane(backproject_band(wall, K))
    with pytest.raises(ValueError, match="too few"):
        camera_height_scale(np.zeros((H, W)), K, 1.65)
    with pytest.raises(ValueError, match="camera_height"):
        camera_height_scale(wall, K, 0.0)


def test_camera_height_scale_on_synthetic_gt(tiny_synthetic):
    """The synthetic street's camera is 1.65 m above the road: a GT map shrunk 5x is scaled back."""
    Kc, _ = intrinsics_from_calib(tiny_synthetic / "2030_01_01", cam=2)
    entries = read_split_file(split_file(tiny_synthetic / "splits", "test"))
    gts = [read_benchmark_png(benchmark_png_path(tiny_synthetic, e.folder, e.frame, e.side)) for e in entries]
    med, per = camera_height_scale_many([g / 5.0 for g in gts], Kc, 1.65)
    assert med == pytest.approx(5.0, rel=0.03), per
    assert np.all(np.abs(per / 5.0 - 1) < 0.05), per
