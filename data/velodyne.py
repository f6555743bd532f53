"""Ground-truth depth from KITTI files: Velodyne scans -> depth maps, annotated PNGs.

Velodyne GT (the ``eigen`` protocol, docs/method.md §7): every point with Velodyne ``x >= 0`` is
projected with ``P_rect_0c @ R_rect_00 @ Tr_velo_to_cam`` into the ``S_rect_0c`` image; its pixel is
``(round(u) - 1, round(v) - 1)`` (NumPy rounding: half to even) and the value stored is the Velodyne
forward coordinate ``x`` (not camera z). Where several points land on one pixel:

* clean rule (default): the smallest depth wins;
* ``exact=True``: Monodepth2's ``generate_depth_map`` reproduced bit for bit. Its duplicate search
  uses the index ``row * (W - 1) + col - 1``, which also merges pixel ``(r, W-1)`` with
  ``(r+1, 0)``: the merged group's minimum is written at the pixel of its first point only, and
  other pixels of the group keep the last point written there. Both rules agree everywhere except
  at such merged pixels (first and last image column).

A map is either dense (``(H, W)`` float32, 0 = no depth) or row-compressed (:func:`gt_map` with
``sparse=True``: ``(row_ptr, cols, depths, H, W)``, valid pixels only, row by row, columns
ascending -- what :class:`depth.eval.gt.SparseGT` stores). The GT files made of them live on the
evaluation side (:mod:`depth.eval.gt`).
"""
from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import cv2
import numba
import numpy as np

from common.errors import DataError
from data.calib import image_size_from_calib, projection_velo_to_image
from data.images import decode_file

__all__ = [
    "load_velodyne_points",
    "velodyne_path",
    "benchmark_png_path",
    "read_benchmark_png",
    "generate_depth_map",
    "depth_map_from_points",
    "project_csr",
    "dense_to_csr",
    "csr_to_dense",
    "entry_fields",
    "gt_map",
]


# ----------------------------------------------------------------------------------------------
# Reading scans and annotated maps
# ----------------------------------------------------------------------------------------------

def load_velodyne_points(path: str | Path, check_finite: bool = True) -> np.ndarray:
    """A KITTI ``.bin`` scan as ``(N, 4)`` float32 (x forward, y left, z up, reflectance).

    A missing, empty, truncated (size not a multiple of 16 bytes) or (with ``check_finite``)
    non-finite scan raises an error naming the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"velodyne scan not found: {path}") from None
    if size == 0 or size % 16:
        raise DataError(f"velodyne scan {path} is truncated or corrupt: {size} bytes is not a "
                         f"positive multiple of 16 (4 float32 per point)")
    pts = np.fromfile(path, dtype=np.float32)
    if pts.size * 4 != size:
        raise DataError(f"velodyne scan {path}: read {pts.size * 4} of {size} bytes")
    pts = pts.reshape(-1, 4)
    if check_finite and not np.isfinite(pts[:, :3]).all():
        raise DataError(f"velodyne scan {path} is corrupt: it holds non-finite coordinates")
    return pts


def velodyne_path(root: str | Path, folder: str, frame: int) -> Path:
    return Path(root) / folder / "velodyne_points" / "data" / f"{int(frame):010d}.bin"


def benchmark_png_path(root: str | Path, folder: str, frame: int, side: str = "l") -> Path:
    cam = "image_02" if side == "l" else "image_03"
    return Path(root) / folder / "proj_depth" / "groundtruth" / cam / f"{int(frame):010d}.png"


def read_benchmark_png(path: str | Path) -> np.ndarray:
    """KITTI depth-benchmark annotation: uint16 PNG, depth in metres = value / 256 (0 = none)."""
    img = decode_file(path, cv2.IMREAD_UNCHANGED, "annotated depth map")
    if img.dtype != np.uint16 or img.ndim != 2:
        raise DataError(f"annotated depth map {path} must be a single-channel uint16 PNG, "
                         f"got {img.dtype} with shape {img.shape}")
    return img.astype(np.float32) / 256.0


# ----------------------------------------------------------------------------------------------
# Projection kernels
# ----------------------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _project_clean_csr(pts, P, scratch):
    """Fused projection, clean rule (per pixel the smallest Velodyne x), straight to CSR.

    ``scratch`` is an ``(H, W)`` float32 buffer filled with +inf; it is left filled with +inf.
    Returns ``(row_ptr, cols, depths, n_nonfinite)``.
    """
    height, width = scratch.shape
    p00, p01, p02, p03 = P[0, 0], P[0, 1], P[0, 2], P[0, 3]
    p10, p11, p12, p13 = P[1, 0], P[1, 1], P[1, 2], P[1, 3]
    p20, p21, p22, p23 = P[2, 0], P[2, 1], P[2, 2], P[2, 3]
    n_pts = pts.shape[0]
    touched = np.empty(n_pts, dtype=np.int64)  # pixels in order of first hit
    nt = 0
    bad = 0
    for i in range(n_pts):
        xf = pts[i, 0]
        x = np.float64(xf)
        y = np.float64(pts[i, 1])
        z = np.float64(pts[i, 2])
        if not (np.isfinite(x) and np.isfinite(y) and np.isfinite(z)):
            bad += 1
            continue
        if not x >= 0.0:
            continue
        w = p20 * x + p21 * y + p22 * z + p23
        u = (p00 * x + p01 * y + p02 * z + p03) / w
        v = (p10 * x + p11 * y + p12 * z + p13) / w
        uc = np.rint(u) - 1.0
        vc = np.rint(v) - 1.0
        if uc >= 0.0 and vc >= 0.0 and uc < width and vc < height:
            r = int(vc)
            c = int(uc)
            old = scratch[r, c]
            if xf < old:
                scratch[r, c] = xf
                if old == np.inf:
                    touched[nt] = r * width + c
                    nt += 1
    # counting sort of the touched pixels by row (columns keep their first-hit order), then sort
    # each row's few columns so that the layout equals a dense -> CSR conversion.
    row_ptr = np.zeros(height + 1, dtype=np.int32)
    for k in range(nt):
        r = touched[k] // width
        c = touched[k] - r * width
        if scratch[r, c] > 0:  # a point at x == 0 exactly stores 0, i.e. "no depth"
            row_ptr[r + 1] += 1
    for r in range(height):
        row_ptr[r + 1] += row_ptr[r]
    n = row_ptr[height]
    fill = row_ptr[:height].copy()
    cols = np.empty(n, dtype=np.uint16)
    for k in range(nt):
        r = touched[k] // width
        c = touched[k] - r * width
        if scratch[r, c] > 0:
            cols[fill[r]] = c
            fill[r] += 1
    vals = np.empty(n, dtype=np.float32)
    for r in range(height):
        a = row_ptr[r]
        b = row_ptr[r + 1]
        if b - a > 1:
            cols[a:b] = np.sort(cols[a:b])
        for k in range(a, b):
            vals[k] = scratch[r, cols[k]]
    for k in range(nt):
        r = touched[k] // width
        scratch[r, touched[k] - r * width] = np.inf
    return row_ptr, cols, vals, bad


@numba.njit(cache=True, nogil=True)
def csr_to_dense(row_ptr, cols, vals, height, width):
    """The dense ``(height, width)`` float32 map (0 = no depth) of row-compressed GT."""
    out = np.zeros((height, width), dtype=np.float32)
    for r in range(height):
        for k in range(row_ptr[r], row_ptr[r + 1]):
            out[r, cols[k]] = vals[k]
    return out


_SCRATCH = threading.local()


def _scratch(height: int, width: int) -> np.ndarray:
    """A per-thread +inf buffer reused between scans (the kernel leaves it as it found it)."""
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.shape != (height, width):
        buf = np.full((height, width), np.inf, dtype=np.float32)
        _SCRATCH.buf = buf
    return buf


def project_csr(points: np.ndarray, P: np.ndarray, size_wh: tuple[int, int], name: str = "scan"):
    """The clean-rule depth map of ``points`` (``(N, 4)`` float32) projected with the 3x4 ``P``
    (float64) into a ``size_wh = (W, H)`` image, row-compressed: ``(row_ptr, cols, depths, H, W)``;
    ``name`` names the scan in errors."""
    width, height = int(size_wh[0]), int(size_wh[1])
    if width > 65535:
        raise ValueError(f"images wider than 65535 pixels are not supported ({width})")
    rp, c, v, bad = _project_clean_csr(points, P, _scratch(height, width))
    if bad:
        raise DataError(f"velodyne {name} is corrupt: {bad} points have non-finite coordinates")
    return rp, c, v, height, width


@numba.njit(cache=True, nogil=True)
def _dedupe_monodepth2(uc, vc, d, height, width):
    """Monodepth2's assignment + duplicate resolution for already-filtered points (in order)."""
    depth = np.zeros((height, width), dtype=np.float64)
    n = uc.shape[0]
    inds = np.empty(n, dtype=np.int64)
    for i in range(n):
        r = int(vc[i])
        c = int(uc[i])
        depth[r, c] = d[i]  # numpy fancy assignment: the last point written wins
        inds[i] = r * (width - 1) + c - 1
    order = np.argsort(inds, kind="mergesort")  # stable: a group's first entry is its first point
    i = 0
    while i < n:
        j = i + 1
        k0 = inds[order[i]]
        while j < n and inds[order[j]] == k0:
            j += 1
        if j - i > 1:
            first = order[i]
            m = d[first]
            for k in range(i + 1, j):
                if d[order[k]] < m:
                    m = d[order[k]]
            depth[int(vc[first]), int(uc[first])] = m
        i = j
    out = np.zeros((height, width), dtype=np.float32)
    for r in range(height):
        for c in range(width):
            if depth[r, c] > 0.0:
                out[r, c] = np.float32(depth[r, c])
    return out


def depth_map_from_points(points: np.ndarray, P_velo2im: np.ndarray, size_wh: tuple[int, int],
                          exact: bool = False) -> np.ndarray:
    """Depth map ``(H, W)`` float32 (0 = no point) of a Velodyne scan; see the module docstring."""
    width, height = int(size_wh[0]), int(size_wh[1])
    P = np.ascontiguousarray(P_velo2im, dtype=np.float64)
    if P.shape != (3, 4):
        raise ValueError(f"P_velo2im must be 3x4, got {P.shape}")
    pts = np.ascontiguousarray(points, dtype=np.float32)
    if not exact:
        rp, c, v, h, w = project_csr(pts, P, (width, height))
        return csr_to_dense(rp, c, v, h, w)
    # Monodepth2's arithmetic, literally: homogeneous float64 points, np.dot, divide, round - 1.
    velo = pts[pts[:, 0] >= 0].copy()
    velo[:, 3] = 1.0
    im = np.dot(P, velo.T).T
    im[:, :2] = im[:, :2] / im[:, 2][..., np.newaxis]
    im[:, 2] = velo[:, 0]
    im[:, 0] = np.round(im[:, 0]) - 1
    im[:, 1] = np.round(im[:, 1]) - 1
    with np.errstate(invalid="ignore"):
        val = (im[:, 0] >= 0) & (im[:, 1] >= 0) & (im[:, 0] < width) & (im[:, 1] < height)
    im = im[val]
    return _dedupe_monodepth2(np.ascontiguousarray(im[:, 0]), np.ascontiguousarray(im[:, 1]),
                              np.ascontiguousarray(im[:, 2]), height, width)


def generate_depth_map(calib_dir: str | Path, velo_filename: str | Path, cam: int = 2,
                       exact: bool = False) -> np.ndarray:
    """GT depth map of one scan in the rectified image of camera ``cam`` (float32, 0 = none)."""
    P = projection_velo_to_image(calib_dir, cam)
    size = image_size_from_calib(calib_dir, cam)
    return depth_map_from_points(load_velodyne_points(velo_filename), P, size, exact=exact)


# ----------------------------------------------------------------------------------------------
# Sparse GT
# ----------------------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def dense_to_csr(depth):
    """``(row_ptr, cols, depths)`` of the pixels ``> 0`` of a 2-D float32 map, row by row."""
    h, w = depth.shape
    n = 0
    for r in range(h):
        for c in range(w):
            if depth[r, c] > 0:
                n += 1
    row_ptr = np.empty(h + 1, dtype=np.int32)
    cols = np.empty(n, dtype=np.uint16)
    vals = np.empty(n, dtype=np.float32)
    k = 0
    for r in range(h):
        row_ptr[r] = k
        for c in range(w):
            d = depth[r, c]
            if d > 0:
                cols[k] = c
                vals[k] = d
                k += 1
    row_ptr[h] = k
    return row_ptr, cols, vals


# ----------------------------------------------------------------------------------------------
# The GT of one split entry
# ----------------------------------------------------------------------------------------------

def entry_fields(e) -> tuple[str, int, str]:
    """``(folder, frame, side)`` of a split entry: a :class:`data.splits.SplitEntry` or a
    ``(folder, frame[, side])`` tuple (side ``l`` when absent)."""
    if hasattr(e, "folder"):
        return e.folder, int(e.frame), getattr(e, "side", "l")
    folder, frame, *rest = e
    return folder, int(frame), (rest[0] if rest else "l")


@lru_cache(maxsize=64)
def _projection(calib_dir: str, cam: int):
    return projection_velo_to_image(calib_dir, cam), image_size_from_calib(calib_dir, cam)


def gt_map(root: str | Path, entry, mode: str = "velodyne", exact: bool = False, sparse: bool = False):
    """GT of one split entry under the KITTI root ``root``: ``mode`` ``"velodyne"`` (the projected
    scan, :func:`depth_map_from_points`) or ``"benchmark"`` (the annotated PNG); a dense ``(H, W)``
    float32 map, or with ``sparse`` its ``(row_ptr, cols, depths, H, W)``."""
    root = Path(root)
    folder, frame, side = entry_fields(entry)
    if mode == "benchmark":
        m = read_benchmark_png(benchmark_png_path(root, folder, frame, side))
    else:
        cam = 2 if side == "l" else 3
        P, size = _projection(str(root / folder.split("/")[0]), cam)
        path = velodyne_path(root, folder, frame)
        if not exact:
            pts = load_velodyne_points(path, check_finite=False)
            rp, c, v, h, w = project_csr(pts, P, size, name=f"scan {path}")
            return (rp, c, v, h, w) if sparse else csr_to_dense(rp, c, v, h, w)
        m = depth_map_from_points(load_velodyne_points(path), P, size, exact=True)
    if not sparse:
        return m
    rp, c, v = dense_to_csr(np.ascontiguousarray(m, dtype=np.float32))
    return rp, c, v, m.shape[0], m.shape[1]
