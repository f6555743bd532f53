"""The synthetic street's dense GT depth against the analytic depth of the road plane.

The generator's other tests check its outputs against each other (warps with the GT depth and the
written poses, the velodyne against the dense GT). Those agree even when the rig itself is off, e.g.
a camera rendered 5% higher than the 1.65 m the rig claims, or with another focal length than the
calibration file's: every output moves together. Here the road's depth is computed independently,
from the rig's documented numbers (KITTI's: camera 0 1.65 m above the road, camera 02 0.06 m to
its left, ``P_rect_02`` of 2011_09_26) and compared with the written GT PNGs.

A pixel ``(u, v)`` looks along ``d = R K^-1 (u, v, 1)`` in the world (x right, y down, the road at
``y = 0``); the camera centre is at height ``h``, so the ray meets the road at ``t = h / d_y`` and,
the camera-frame direction having ``z = 1``, ``t`` is the pixel's depth. With zero pitch and roll
that is ``z = f_y h / (v - c_y)``; the drives pitch and roll slightly (below 0.01 rad, which moves
the far road by up to 15%), so ``R`` is the orientation written in ``poses_image_02.txt``. The
height is never read from the generator: a change of the rendered camera height or focal length
by 5% moves the road by metres where the tolerance is one GT quantisation step (1/256 m).

Which pixels are road, without the ray caster: the street puts nothing on the road but parked cars
along its edges, whose inner sides are at least ``road_half_width - 2.125 >= 3.875`` m from the
centre line (road half width 6..7.2 m, cars 1.65..1.85 m wide about ``road_half_width - 1.05``),
and the curbs beyond; a camera within 3.5 m of the centre line sees the road everywhere inside
``|x| < 3.5`` m (the segment from the camera to such a ground point stays within that strip), up to
30 m ahead (the street's end wall is 100 m beyond the last camera).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from data.calib import read_calib_file

# the rig's documented numbers (KITTI 2011_09_26, camera 02), not read from the generator
FX = FY = 721.5377
CX, CY = 609.5593, 172.854
CAMERA_HEIGHT = 1.65  # camera 0 above the road, metres
CAMERA_02_X = -0.06  # camera 02 along camera 0's x axis, metres
WIDTH, HEIGHT = 1242, 375
LANE_HALF_WIDTH = 3.5  # metres either side of the centre line with nothing standing on the road
MAX_RANGE = 30.0  # metres ahead
QUANTUM = 1.0 / 256.0  # the GT PNGs store round(depth * 256)


def _gt_frames(root: Path) -> list[tuple[Path, int]]:
    """Every (drive folder, frame) with a dense GT PNG."""
    out = []
    for png in sorted(root.glob("*/*_sync/proj_depth/groundtruth/image_02/*.png")):
        out.append((png.parents[3], int(png.stem)))
    return out


def _read_gt(folder: Path, frame: int) -> np.ndarray:
    path = folder / "proj_depth/groundtruth/image_02" / f"{frame:010d}.png"
    g = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert g is not None and g.dtype == np.uint16 and g.shape == (HEIGHT, WIDTH)
    return g.astype(np.float64) / 256.0


def _pose(folder: Path, frame: int) -> np.ndarray:
    rows = np.loadtxt(folder / "poses_image_02.txt").reshape(-1, 3, 4)
    return rows[frame]


def _road_depth(R: np.ndarray, camera_x: float, fy: float = FY, height: float = CAMERA_HEIGHT):
    """The analytic road depth of every pixel of camera 02 with orientation ``R`` (camera to world)
    and centre ``camera_x`` along the world x, and the mask of lane pixels (``|x| < 3.5`` m, depth
    below 30 m)."""
    # camera 02's centre: camera 0's (1.65 m above the road) moved 0.06 m along its own x axis
    centre_y = -height + R[1, 0] * CAMERA_02_X
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    rays = np.stack([(u - CX) / FX, (v - CY) / fy, np.ones_like(u)], -1) @ R.T
    down = rays[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(down > 1e-9, -centre_y / down, np.inf)
        lane = np.isfinite(t) & (t < MAX_RANGE) & (np.abs(camera_x + t * rays[..., 0]) < LANE_HALF_WIDTH)
    return t, lane


def test_calibration_file_states_the_rig_numbers(tiny_synthetic):
    """The calibration the dataset ships is the rig this test assumes (so the comparison below
    checks the images' depth against the numbers every consumer reads)."""
    cam = read_calib_file(tiny_synthetic / "2030_01_01" / "calib_cam_to_cam.txt")
    P2 = np.asarray(cam["P_rect_02"], dtype=np.float64).reshape(3, 4)
    assert np.asarray(cam["S_rect_02"]).tolist() == [WIDTH, HEIGHT]
    assert (P2[0, 0], P2[1, 1], P2[0, 2], P2[1, 2]) == pytest.approx((FX, FY, CX, CY), rel=1e-9)
    assert P2[0, 3] / P2[0, 0] == pytest.approx(-CAMERA_02_X, abs=1e-6)


def test_road_depth_matches_the_plane(tiny_synthetic):
    """On every GT frame of both drives, every lane pixel's GT depth equals the analytic road
    depth to within one quantisation step (measured: at most half a step, 0.00195 m, on 74,000 to
    85,000 lane pixels per frame). The written pose agrees with the rig's height (its camera-02
    centre is 1.65 m above the road, up to the roll of the 0.06 m offset). A 5% error in the camera
    height or the focal length would put every lane pixel more than 25 steps off (measured on the
    first frame: at least 71, median about 100)."""
    frames = _gt_frames(tiny_synthetic)
    assert len(frames) >= 8
    for folder, frame in frames:
        pose = _pose(folder, frame)
        R, centre = pose[:, :3], pose[:, 3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-8)
        assert abs(centre[0]) < LANE_HALF_WIDTH, "the camera must drive inside the lane strip"
        depth, lane = _road_depth(R, centre[0])
        assert lane.sum() > 50_000, (folder.name, frame, int(lane.sum()))
        gt = _read_gt(folder, frame)
        err = np.abs(gt[lane] - depth[lane])
        assert err.max() <= QUANTUM, (folder.name, frame, float(err.max()), np.unravel_index(
            np.argmax(np.where(lane, np.abs(gt - depth), 0)), gt.shape))
        centre_y = -CAMERA_HEIGHT + R[1, 0] * CAMERA_02_X
        assert centre[1] == pytest.approx(centre_y, abs=1e-6), (folder.name, frame)
    # the check's sensitivity: the depths of a camera 5% higher, or with a 5% longer focal length
    folder, frame = frames[0]
    pose = _pose(folder, frame)
    gt = _read_gt(folder, frame)
    for kw in (dict(height=1.05 * CAMERA_HEIGHT), dict(fy=1.05 * FY)):
        wrong, lane = _road_depth(pose[:, :3], pose[0, 3], **kw)
        assert np.abs(gt[lane] - wrong[lane]).min() > 25 * QUANTUM, kw
