"""Metric scale for depth predictions.

A monocular model predicts depth up to one unknown factor; three ways to turn it into metres:

* **median ratio** (:func:`median_scale`): ``median(gt) / median(pred)`` on valid pixels -- needs
  ground truth; this is the per-image scaling of the Eigen protocol, and the median over a test
  set of the ratios is a usable fixed factor for the same camera (``evaluate.py depth`` prints it);
* **stereo** (:func:`stereo_scale`): a model trained with a stereo partner (``data.stereo=true``)
  learns depth in the units of the stereo translation it was trained with. With
  ``data.stereo_baseline`` (the translation the loss used) and ``data.stereo_baseline_metric`` (the
  rig's baseline in metres) the factor to metres is ``stereo_baseline_metric / stereo_baseline``:
  1 with this project's default (0.54 / 0.54: depth is already metric), 5.4 with Monodepth2's
  convention (trained with 0.1 on KITTI's 0.54 m rig);
* **camera height** (:func:`camera_height_scale`): the ground in the lower band of the image is
  back-projected with ``K``, a plane is fitted robustly (RANSAC, then least squares on the inliers)
  and the depth is scaled so that the camera sits ``camera_height`` metres above it (KITTI: 1.65 m).
  Needs a flat, visible ground and the right ``K``; no ground truth.

Camera frame as in :mod:`depth.geometry`: x right, y down, z forward; the ground is below the
camera, so its normal points along +y (down) when the camera is level.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.errors import EvalError
from depth.config import Config

__all__ = ["median_scale", "median_scale_ratios", "stereo_scale", "stereo_eval_scale", "MONODEPTH2_STEREO_SCALE",
           "GroundPlane", "backproject_band", "fit_ground_plane", "camera_height_scale", "camera_height_scale_many",
           "ground_scale"]


# --------------------------------------------------------------------------------------- median ratio
def median_scale(pred_depth: np.ndarray, gt_depth: np.ndarray, mask: np.ndarray | None = None,
                 min_depth: float = 1e-3, max_depth: float = 80.0) -> float:
    """``median(gt) / median(pred)`` over pixels with ``min_depth < gt < max_depth`` (and ``mask``);
    both maps at the same size. NaN when no pixel is valid."""
    pred = np.asarray(pred_depth, dtype=np.float64)
    gt = np.asarray(gt_depth, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and GT {gt.shape} differ in size")
    valid = (gt > min_depth) & (gt < max_depth) & np.isfinite(pred) & (pred > 0)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    if not valid.any():
        return float("nan")
    return float(np.median(gt[valid]) / np.median(pred[valid]))


def median_scale_ratios(pred_depths, gt_depths, **kwargs) -> tuple[float, float, np.ndarray]:
    """Per-image ratios of :func:`median_scale`; returns ``(median, std(ratios / median), ratios)``
    (the two numbers Monodepth2 prints). The median is a fixed factor for ``predict --scale``."""
    ratios = np.array([median_scale(p, g, **kwargs) for p, g in zip(pred_depths, gt_depths)])
    ok = ratios[np.isfinite(ratios)]
    if ok.size == 0:
        return float("nan"), float("nan"), ratios
    med = float(np.median(ok))
    return med, float(np.std(ok / med)), ratios


# ---------------------------------------------------------------------------------------- stereo
def stereo_scale(cfg: Config) -> float | None:
    """Factor from a stereo-trained model's depth to metres; ``None`` for a monocular model
    (``data.stereo`` false).

    ``data.stereo_baseline_metric / data.stereo_baseline``. A checkpoint's config saved before
    these keys existed loads with their defaults (0.54, the metric baseline it trained with: factor 1)."""
    d = cfg.data
    if not d.stereo:
        return None
    if not (d.stereo_baseline > 0 and d.stereo_baseline_metric > 0):
        raise EvalError(f"stereo baselines must be > 0, got stereo_baseline={d.stereo_baseline}, "
                         f"stereo_baseline_metric={d.stereo_baseline_metric}")
    return float(d.stereo_baseline_metric) / float(d.stereo_baseline)


MONODEPTH2_STEREO_SCALE = 5.4  # Monodepth2's STEREO_SCALE_FACTOR: trained with 0.1 on KITTI's 0.54 m rig


def stereo_eval_scale(cfg: Config | None, override: float | None = None, where: str = "") -> float:
    """The fixed scale of a stereo evaluation (``evaluate.py depth --stereo``): ``override`` when
    given, else the model's :func:`stereo_scale` (:class:`common.errors.EvalError` for a monocular
    model, its message prefixed ``where: ``), else -- saved disparities of no known model --
    Monodepth2's 5.4."""
    if override is not None:
        return float(override)
    if cfg is None:
        return MONODEPTH2_STEREO_SCALE
    factor = stereo_scale(cfg)
    if factor is None:
        raise EvalError(f"{where + ': ' if where else ''}the model was trained without stereo (data.stereo=false): "
                        f"it has no stereo scale")
    return factor


# ---------------------------------------------------------------------------------- ground plane
@dataclass
class GroundPlane:
    """Plane ``normal . X = height`` in camera coordinates: ``normal`` unit, pointing from the camera
    towards the plane (about +y for a level camera); ``height`` > 0 is the camera's distance to it."""

    normal: np.ndarray
    height: float
    inliers: int
    n_points: int

    @property
    def inlier_fraction(self) -> float:
        return self.inliers / max(1, self.n_points)

    @property
    def tilt_deg(self) -> float:
        """Angle between the normal and the camera's down axis (+y)."""
        return float(np.degrees(np.arccos(np.clip(self.normal[1], -1.0, 1.0))))


def backproject_band(depth: np.ndarray, K: np.ndarray, band: tuple[float, float] = (0.6, 1.0),
                     columns: tuple[float, float] = (0.0, 1.0), max_points: int = 20000,
                     seed: int = 0) -> np.ndarray:
    """Points ``(N, 3)`` of the rows ``band`` (fractions of the height, top to bottom) and columns
    ``columns`` of ``depth`` (``H x W``), back-projected with ``K`` (pixels of that map, integer
    pixel centres); invalid depths (non-finite, <= 0) are skipped; at most ``max_points``, drawn
    evenly at random."""
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must be an H x W map, got shape {depth.shape}")
    h, w = depth.shape
    r0, r1 = int(np.floor(band[0] * h)), int(np.ceil(band[1] * h))
    c0, c1 = int(np.floor(columns[0] * w)), int(np.ceil(columns[1] * w))
    if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
        raise ValueError(f"band {band} / columns {columns} select no pixels of a {w}x{h} map")
    v, u = np.mgrid[r0:r1, c0:c1]
    z = depth[r0:r1, c0:c1]
    ok = np.isfinite(z) & (z > 0)
    u, v, z = u[ok].astype(np.float64), v[ok].astype(np.float64), z[ok]
    if z.size > max_points:
        idx = np.random.default_rng(seed).choice(z.size, size=max_points, replace=False)
        u, v, z = u[idx], v[idx], z[idx]
    Kinv = np.linalg.inv(np.asarray(K, dtype=np.float64))
    rays = Kinv @ np.stack([u, v, np.ones_like(u)])
    return (rays * z).T


def _plane_from_svd(pts: np.ndarray) -> tuple[np.ndarray, float]:
    c = pts.mean(0)
    _, _, vt = np.linalg.svd(pts - c, full_matrices=False)
    n = vt[-1]
    h = float(n @ c)
    if h < 0:
        n, h = -n, -h
    return n, h


def fit_ground_plane(points: np.ndarray, *, rel_threshold: float = 0.05, iterations: int = 300,
                     max_tilt_deg: float = 30.0, refine_steps: int = 3, min_points: int = 50,
                     seed: int = 0) -> GroundPlane:
    """Robust plane through ``points`` ``(N, 3)`` (camera frame, any common scale).

    RANSAC over ``iterations`` 3-point hypotheses whose normal is within ``max_tilt_deg`` of the
    camera's down axis and which pass below the camera; a point is an inlier when its distance to
    the plane is below ``rel_threshold`` x the camera's height above that plane (a threshold that
    scales with the unknown depth scale). The best hypothesis is refined by least squares (SVD) on
    its inliers, ``refine_steps`` times. Raises ``ValueError`` when no plausible plane is found.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {pts.shape}")
    n_pts = len(pts)
    if n_pts < max(3, min_points):
        raise ValueError(f"{n_pts} valid points in the ground band: too few to fit a plane")
    rng = np.random.default_rng(seed)
    cos_max = np.cos(np.radians(max_tilt_deg))
    idx = rng.integers(0, n_pts, size=(iterations, 3))
    p0, p1, p2 = pts[idx[:, 0]], pts[idx[:, 1]], pts[idx[:, 2]]
    normals = np.cross(p1 - p0, p2 - p0)
    norm = np.linalg.norm(normals, axis=1)
    good = norm > 1e-12
    normals[good] /= norm[good, None]
    heights = np.einsum("ij,ij->i", normals, p0)
    flip = heights < 0
    normals[flip] *= -1
    heights[flip] *= -1
    good &= (heights > 0) & (normals[:, 1] >= cos_max)
    if not good.any():
        raise ValueError("no ground-plane hypothesis within the tilt limit: is the ground visible in the band?")
    normals, heights = normals[good], heights[good]
    # inlier counts, in chunks to bound memory
    counts = np.empty(len(heights), dtype=np.int64)
    for s in range(0, len(heights), 64):
        res = np.abs(pts @ normals[s:s + 64].T - heights[s:s + 64])
        counts[s:s + 64] = (res < rel_threshold * heights[s:s + 64]).sum(0)
    best = int(np.argmax(counts))
    n, h = normals[best], float(heights[best])
    inl = np.abs(pts @ n - h) < rel_threshold * h
    for _ in range(refine_steps):
        if inl.sum() < 3:
            break
        n_new, h_new = _plane_from_svd(pts[inl])
        if h_new <= 0 or n_new[1] < cos_max:
            break
        n, h = n_new, h_new
        inl = np.abs(pts @ n - h) < rel_threshold * h
    return GroundPlane(normal=n, height=h, inliers=int(inl.sum()), n_points=n_pts)


def camera_height_scale(depth: np.ndarray, K: np.ndarray, camera_height: float, *,
                        band: tuple[float, float] = (0.6, 1.0), columns: tuple[float, float] = (0.0, 1.0),
                        rel_threshold: float = 0.05, max_tilt_deg: float = 30.0, max_points: int = 20000,
                        seed: int = 0) -> tuple[float, GroundPlane]:
    """Scale factor ``s`` such that ``s * depth`` puts the fitted ground plane ``camera_height``
    metres below the camera; returns ``(s, plane)`` (``plane`` in the units of ``depth``).

    ``depth``: ``H x W`` (any consistent scale, e.g. a monocular model's ``1 / disparity``); ``K``:
    intrinsics in pixels of that map (for a network-size prediction, the network-size K). ``band``:
    the rows searched for the ground (fractions of the height; the default lower 40 % holds mostly
    road for a forward-looking car camera).
    """
    if not camera_height > 0:
        raise ValueError(f"camera_height must be > 0, got {camera_height}")
    pts = backproject_band(depth, K, band, columns, max_points, seed)
    plane = fit_ground_plane(pts, rel_threshold=rel_threshold, max_tilt_deg=max_tilt_deg, seed=seed)
    return float(camera_height) / plane.height, plane


def camera_height_scale_many(depths, K, camera_height: float, **kwargs) -> tuple[float, np.ndarray]:
    """One factor for several frames of the same camera: the median of the per-frame
    :func:`camera_height_scale` factors (frames where no plane is found are skipped). ``K`` is one
    matrix for all frames or one per frame. Returns ``(median, per-frame factors with NaN for
    failures)``."""
    depths = list(depths)
    Ks = [K] * len(depths) if np.asarray(K).ndim == 2 else list(K)
    out = np.full(len(depths), np.nan)
    for i, (d, k) in enumerate(zip(depths, Ks)):
        try:
            out[i] = camera_height_scale(d, k, camera_height, **kwargs)[0]
        except ValueError:
            pass
    ok = out[np.isfinite(out)]
    if ok.size == 0:
        raise ValueError("no ground plane found in any frame")
    return float(np.median(ok)), out


def frame_intrinsics(K_size: tuple[np.ndarray, tuple[int, int] | None], shape) -> np.ndarray:
    """``K`` (pixels) for a frame of ``shape`` ``(H, W, ...)``: rescaled from the size ``(W, H)``
    it was stated for, when one was stated (rows 0/1 by the width/height ratio), else as given."""
    K, size = K_size
    K = np.asarray(K, dtype=np.float64).copy()
    if size is not None and tuple(size) != (shape[1], shape[0]):
        K[0] *= shape[1] / size[0]
        K[1] *= shape[0] / size[1]
    return K


def ground_scale(depth: np.ndarray, K_size: tuple[np.ndarray, tuple[int, int] | None], shape,
                 camera_height: float) -> float:
    """Factor putting the ground plane of ``depth`` (at the input's size) ``camera_height`` below."""
    return camera_height_scale(depth, frame_intrinsics(K_size, shape), camera_height)[0]
