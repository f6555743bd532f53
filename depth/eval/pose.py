"""Pose evaluation: ATE over 5-frame snippets of KITTI odometry (SfMLearner / Monodepth2
``evaluate_pose.py``). NumPy only; the relative poses a pose network predicts are
:func:`depth.inference.predict_relative_poses`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.errors import EvalError

__all__ = ["dump_xyz", "compute_ate", "load_odometry_poses", "gt_local_poses", "snippet_ates"]


def dump_xyz(source_to_target_transformations: Sequence[np.ndarray]) -> np.ndarray:
    """Camera positions of a snippet, starting at the origin, chaining the relative transforms."""
    xyzs = []
    cam_to_world = np.eye(4)
    xyzs.append(cam_to_world[:3, 3])
    for T in source_to_target_transformations:
        cam_to_world = np.dot(cam_to_world, T)
        xyzs.append(cam_to_world[:3, 3])
    return np.array(xyzs)


def compute_ate(gtruth_xyz: np.ndarray, pred_xyz_o: np.ndarray) -> float:
    """ATE of one snippet as the community computes it: align the first positions, fit one scale
    by least squares, and return ``sqrt(sum of squared errors) / n_frames``."""
    offset = gtruth_xyz[0] - pred_xyz_o[0]
    pred_xyz = pred_xyz_o + offset[None, :]
    denom = np.sum(pred_xyz ** 2)
    scale = np.sum(gtruth_xyz * pred_xyz) / denom if denom > 0 else 0.0
    alignment_error = pred_xyz * scale - gtruth_xyz
    return float(np.sqrt(np.sum(alignment_error ** 2)) / gtruth_xyz.shape[0])


def load_odometry_poses(path: str | Path) -> np.ndarray:
    """KITTI odometry GT (12 numbers a line, 3x4 ``[R|t]``) as ``(N, 4, 4)`` float64."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"odometry pose file not found: {path}")
    a = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if a.shape[1] != 12:
        raise EvalError(f"odometry pose file {path}: expected 12 numbers per line, got {a.shape[1]}")
    T = np.zeros((len(a), 4, 4))
    T[:, :3, :] = a.reshape(-1, 3, 4)
    T[:, 3, 3] = 1.0
    return T


def gt_local_poses(global_poses: np.ndarray) -> np.ndarray:
    """Relative transforms ``inv(inv(G[i-1]) @ G[i])`` for i >= 1: frame i-1 -> frame i, the
    convention of the pose network (``X_i = T @ X_{i-1}``)."""
    return np.stack([np.linalg.inv(np.dot(np.linalg.inv(global_poses[i - 1]), global_poses[i]))
                     for i in range(1, len(global_poses))]) if len(global_poses) > 1 else np.zeros((0, 4, 4))


def snippet_ates(pred_poses: np.ndarray, global_gt_poses: np.ndarray, track_length: int = 5) -> np.ndarray:
    """ATE of every snippet of ``track_length`` frames (Monodepth2's evaluate_pose.py loop).

    ``pred_poses[i]``: predicted 4x4 transform frame i -> frame i+1 (``N-1`` of them for ``N`` GT
    poses). Snippets start at every frame; the last ones are shorter, as in the reference code.
    """
    pred_poses = np.asarray(pred_poses, dtype=np.float64)
    gt_local = gt_local_poses(np.asarray(global_gt_poses, dtype=np.float64))
    if len(pred_poses) != len(gt_local):
        raise EvalError(f"{len(pred_poses)} predicted relative poses but {len(gt_local)} GT relative "
                         f"poses ({len(global_gt_poses)} frames): they must match")
    num_frames = len(global_gt_poses)
    ates = []
    for i in range(0, num_frames - 1):
        local_xyzs = dump_xyz(pred_poses[i:i + track_length - 1])
        gt_local_xyzs = dump_xyz(gt_local[i:i + track_length - 1])
        ates.append(compute_ate(gt_local_xyzs, local_xyzs))
    return np.array(ates)
