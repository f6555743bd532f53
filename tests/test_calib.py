"""KITTI calibration parsing (data/calib.py) on the real 2011_09_26 files and on broken copies."""
from __future__ import annotations

import numpy as np
import pytest

from common.errors import DataError
from data.calib import (intrinsics_from_calib, load_cam_to_cam, projection_velo_to_image, read_calib_file,
                        velo_to_cam)


def test_read_cam_to_cam_skips_non_numeric(kitti_sample):
    c = read_calib_file(kitti_sample / "2011_09_26" / "calib_cam_to_cam.txt")
    assert "calib_time" not in c
    assert c["P_rect_02"].shape == (12,)
    assert c["S_rect_02"].tolist() == [1242.0, 375.0]
    assert c["R_rect_00"].dtype == np.float64


def test_intrinsics_and_projection(kitti_sample):
    calib = kitti_sample / "2011_09_26"
    K, (w, h) = intrinsics_from_calib(calib, cam=2)
    assert (w, h) == (1242, 375)
    assert K.shape == (3, 3) and K[2, 2] == 1.0
    assert 700 < K[0, 0] < 750 and abs(K[0, 0] - K[1, 1]) < 1e-9
    T = velo_to_cam(calib)
    assert T.shape == (4, 4) and np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-5)
    cc = load_cam_to_cam(calib)
    R = np.eye(4)
    R[:3, :3] = cc["R_rect_00"].reshape(3, 3)
    expected = cc["P_rect_02"].reshape(3, 4) @ R @ T
    np.testing.assert_allclose(projection_velo_to_image(calib, 2), expected, rtol=0, atol=1e-9)
    # a point 10 m ahead of the car lands near the image centre column
    uvw = projection_velo_to_image(calib, 2) @ np.array([10.0, 0.0, 0.0, 1.0])
    assert 500 < uvw[0] / uvw[2] < 750


def test_missing_file_and_key_are_named(tmp_path, kitti_sample):
    with pytest.raises(DataError, match="calib_cam_to_cam.txt"):
        intrinsics_from_calib(tmp_path)
    src = (kitti_sample / "2011_09_26" / "calib_cam_to_cam.txt").read_text().splitlines()
    (tmp_path / "calib_cam_to_cam.txt").write_text("\n".join(l for l in src if not l.startswith("P_rect_02")))
    with pytest.raises(DataError, match=r"calib_cam_to_cam\.txt.*P_rect_02"):
        intrinsics_from_calib(tmp_path, cam=2)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "calib_velo_to_cam.txt").write_text("calib_time: 15-Mar-2012 11:37:16\nR: 1 0 0\nT: 0 0 0\n")
    with pytest.raises(ValueError, match=r"calib_velo_to_cam\.txt.*'R'"):
        velo_to_cam(bad)
