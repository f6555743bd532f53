"""The synthetic rig: image size and intrinsics, the four cameras and the velodyne, and the numbers
exactly as the calibration files write them (so that the files and the rendering agree bit for bit).

Camera frames follow :mod:`depth.geometry` (x right, y down, z forward). Camera 02 sits 0.06 m left
of camera 0, camera 03 0.48 m right of it (baseline 0.54 m); the velodyne is 0.27 m behind and
0.08 m above camera 0.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["DATE", "WIDTH", "HEIGHT", "K_RECT", "CAM_POS_X", "CAM_HEIGHT", "MAX_GT_DEPTH", "LIDAR_MAX_RANGE",
           "FRAME_RATE", "T_CAM0_VELO", "cam_offsets", "velo_to_cam", "calib_number", "as_written",
           "rot_x", "rot_y", "rot_z", "make_T"]

DATE = "2030_01_01"
WIDTH, HEIGHT = 1242, 375
# Values exactly as written to calib_cam_to_cam.txt (6 significant digits), so that the files and
# the rendering agree bit for bit.
FX = FY = 7.215377e02
CX, CY = 6.095593e02, 1.728540e02
K_RECT = np.array([[FX, 0.0, CX], [0.0, FY, CY], [0.0, 0.0, 1.0]])
# Camera centres in the (rectified) camera-0 frame, metres along x.
CAM_POS_X = {0: 0.0, 1: 0.54, 2: -0.06, 3: 0.48}
CAM_HEIGHT = 1.65  # camera 0 above the ground
MAX_GT_DEPTH = 255.0  # uint16 / 256 limit
LIDAR_MAX_RANGE = 120.0
FRAME_RATE = 10.0


def calib_number(v: float) -> str:
    """``v`` as the calibration files write it (``%.6e``)."""
    return f"{float(v) + 0.0:.6e}"  # + 0.0 turns -0.0 into 0.0


def as_written(a: np.ndarray) -> np.ndarray:
    """Values as they read back from a file written with ``%.6e``."""
    return np.array([float(calib_number(x)) for x in np.asarray(a, dtype=np.float64).ravel()]).reshape(np.shape(a))


def rot_x(a: float) -> np.ndarray:
    """Rotation by ``a`` radians about x (3x3 float64); :func:`rot_y`, :func:`rot_z` likewise."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def velo_to_cam() -> tuple[np.ndarray, np.ndarray]:
    """R, T of calibvelo_to_cam.txt: ``X_cam0 = R @ X_velo + T`` (rounded as written)."""
    axes = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # velo (fwd,left,up) -> cam
    R = rot_x(0.0085) @ rot_y(-0.0041) @ rot_z(0.0023) @ axes
    T = np.array([-0.0041, -0.0790, -0.2710])  # velo origin in cam-0 coordinates
    return as_written(R), as_written(T)


def make_T(R, t) -> np.ndarray:
    """The 4x4 rigid transform ``[R | t]``."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


T_CAM0_VELO = make_T(*velo_to_cam())


def cam_offsets(cam: int) -> np.ndarray:
    """``T_cam0_camI``: pose of camera ``cam`` (0..3) in the rectified camera-0 frame."""
    T = np.eye(4)
    T[0, 3] = CAM_POS_X[cam]
    return T


