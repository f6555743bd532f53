"""The synthetic velodyne: a 64-beam scan of the street (the KITTI HDL-64E's elevation range)."""
from __future__ import annotations

import numpy as np

from data.synthetic.render import cast_rays
from data.synthetic.rig import LIDAR_MAX_RANGE
from data.synthetic.scene import Scene

__all__ = ["simulate_lidar"]


def _lidar_dirs(beams: int = 64, azimuths: int = 1200) -> np.ndarray:
    el = np.deg2rad(np.linspace(2.0, -24.9, beams))
    az = np.linspace(np.pi, -np.pi, azimuths, endpoint=False)  # counter-clockwise from behind
    E, A = np.meshgrid(el, az, indexing="ij")
    return np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], -1).reshape(-1, 3)


_LIDAR_DIRS = _lidar_dirs()


def simulate_lidar(scene: Scene, T_world_velo: np.ndarray, max_range: float = LIDAR_MAX_RANGE) -> np.ndarray:
    """A 64-beam scan (elevation +2..-24.9 deg, 1200 azimuths) from the velodyne pose; returns
    ``(N, 4)`` float32 points x (forward), y (left), z (up), reflectance in the velodyne frame;
    rays without a return within ``max_range`` (sky) are dropped."""
    T = np.asarray(T_world_velo, dtype=np.float64)
    t, refl = cast_rays(scene, T[:3, 3], _LIDAR_DIRS, max_range, rotation=T[:3, :3])
    keep = t <= max_range
    out = np.empty((int(keep.sum()), 4), dtype=np.float32)
    out[:, :3] = _LIDAR_DIRS[keep] * t[keep, None]
    out[:, 3] = refl[keep]
    return out
