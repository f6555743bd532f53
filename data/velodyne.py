"""Ground-truth depth for KITTI evaluation: Velodyne scans -> depth maps, annotated PNGs, GT files.

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

GT files:

* sparse (default, :class:`SparseGT`): valid pixels only, stored row-compressed per image
  (``uint16`` column + ``float32`` depth per point, one ``int32`` offset per row), an uncompressed
  ``.npz`` about 20x smaller than the dense maps and much faster to load;
* dense: Monodepth2's ``gt_depths.npz`` (key ``data``; an object array of ``float32`` maps, or a
  stacked array when every map has the same size). Both are read by :func:`load_gt`.

Every file is written atomically (temporary file in the same folder, then ``os.replace``).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numba
import numpy as np
from tqdm import tqdm

from common.arrays import open_array_file
from common.atomic import atomic_write
from data.calib import image_size_from_calib, projection_velo_to_image
from data.frames import decode_file

__all__ = [
    "load_velodyne_points",
    "velodyne_path",
    "benchmark_png_path",
    "read_benchmark_png",
    "generate_depth_map",
    "depth_map_from_points",
    "SparseGT",
    "choose_gt_format",
    "save_sparse_gt",
    "save_dense_gt",
    "load_gt",
    "export_gt",
    "check_gt_matches_split",
    "evaluation_gt",
    "SPARSE_FORMAT",
]

SPARSE_FORMAT = "sparse-gt-v1"


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
        raise FileNotFoundError(f"velodyne scan not found: {path}") from None
    if size == 0 or size % 16:
        raise ValueError(f"velodyne scan {path} is truncated or corrupt: {size} bytes is not a "
                         f"positive multiple of 16 (4 float32 per point)")
    pts = np.fromfile(path, dtype=np.float32)
    if pts.size * 4 != size:
        raise ValueError(f"velodyne scan {path}: read {pts.size * 4} of {size} bytes")
    pts = pts.reshape(-1, 4)
    if check_finite and not np.isfinite(pts[:, :3]).all():
        raise ValueError(f"velodyne scan {path} is corrupt: it holds non-finite coordinates")
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
        raise ValueError(f"annotated depth map {path} must be a single-channel uint16 PNG, "
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
def _csr_to_dense(row_ptr, cols, vals, height, width):
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


def _project_clean_sparse(points, P, size_wh, name="scan"):
    width, height = int(size_wh[0]), int(size_wh[1])
    if width > 65535:
        raise ValueError(f"images wider than 65535 pixels are not supported ({width})")
    rp, c, v, bad = _project_clean_csr(points, P, _scratch(height, width))
    if bad:
        raise ValueError(f"velodyne {name} is corrupt: {bad} points have non-finite coordinates")
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
        rp, c, v, h, w = _project_clean_sparse(pts, P, (width, height))
        return _csr_to_dense(rp, c, v, h, w)
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
def _dense_to_csr(depth):
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


@dataclass
class SparseGT:
    """Valid GT pixels of N images, row-compressed.

    Image ``i`` (``heights[i]`` x ``widths[i]``) owns points ``img_ptr[i]:img_ptr[i+1]`` of
    ``cols``/``depths`` and row offsets ``row_ptr[row_off[i] : row_off[i] + heights[i] + 1]``
    (relative to ``img_ptr[i]``); row ``r`` holds points ``img_ptr[i] + row_ptr[row_off[i] + r]``
    up to the next row's offset.
    """

    heights: np.ndarray  # int32 (N,)
    widths: np.ndarray  # int32 (N,)
    img_ptr: np.ndarray  # int64 (N+1,)
    row_ptr: np.ndarray  # int32 (sum(H_i + 1),)
    cols: np.ndarray  # uint16 (P,)
    depths: np.ndarray  # float32 (P,)
    entries: np.ndarray | None = None  # optional split lines the maps were made from

    def __post_init__(self):
        self.heights = np.ascontiguousarray(self.heights, dtype=np.int32)
        self.widths = np.ascontiguousarray(self.widths, dtype=np.int32)
        self.img_ptr = np.ascontiguousarray(self.img_ptr, dtype=np.int64)
        self.row_ptr = np.ascontiguousarray(self.row_ptr, dtype=np.int32)
        self.cols = np.ascontiguousarray(self.cols, dtype=np.uint16)
        self.depths = np.ascontiguousarray(self.depths, dtype=np.float32)
        n = len(self.heights)
        if len(self.widths) != n or len(self.img_ptr) != n + 1:
            raise ValueError("SparseGT: heights, widths and img_ptr disagree on the image count")
        if len(self.row_ptr) != int(self.heights.sum()) + n:
            raise ValueError("SparseGT: row_ptr length does not match the image heights")
        if len(self.cols) != len(self.depths) or self.img_ptr[-1] != len(self.depths):
            raise ValueError("SparseGT: point arrays do not match img_ptr")
        self.row_off = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(self.heights.astype(np.int64) + 1, out=self.row_off[1:])

    def __len__(self) -> int:
        return len(self.heights)

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return list(zip(self.heights.tolist(), self.widths.tolist()))

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.heights, self.widths, self.img_ptr, self.row_ptr,
                                      self.cols, self.depths))

    def __getitem__(self, i: int) -> np.ndarray:
        return self.dense(i)

    def dense(self, i: int) -> np.ndarray:
        """Image ``i`` as a dense ``(H, W)`` float32 map (0 = invalid)."""
        if i < 0:
            i += len(self)
        h, w = int(self.heights[i]), int(self.widths[i])
        rp = self.row_ptr[self.row_off[i]: self.row_off[i] + h + 1]
        a = self.img_ptr[i]
        out = np.zeros((h, w), dtype=np.float32)
        rows = np.repeat(np.arange(h), np.diff(rp))
        out[rows, self.cols[a + rp[0]: a + rp[-1]]] = self.depths[a + rp[0]: a + rp[-1]]
        return out

    def to_dense_list(self) -> list[np.ndarray]:
        return [self.dense(i) for i in range(len(self))]

    @classmethod
    def from_parts(cls, parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]],
                   entries=None) -> "SparseGT":
        """From per-image ``(row_ptr, cols, depths, H, W)``."""
        n = len(parts)
        counts = np.array([len(p[2]) for p in parts], dtype=np.int64)
        img_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=img_ptr[1:])
        cat = (lambda xs, dt: np.concatenate(xs).astype(dt, copy=False) if xs else np.zeros(0, dt))
        return cls(
            heights=np.array([p[3] for p in parts], dtype=np.int32),
            widths=np.array([p[4] for p in parts], dtype=np.int32),
            img_ptr=img_ptr,
            row_ptr=cat([p[0] for p in parts], np.int32),
            cols=cat([p[1] for p in parts], np.uint16),
            depths=cat([p[2] for p in parts], np.float32),
            entries=None if entries is None else np.asarray(entries, dtype=str),
        )

    @classmethod
    def from_dense(cls, maps: Iterable[np.ndarray], entries=None) -> "SparseGT":
        parts = []
        for m in maps:
            m = np.ascontiguousarray(m, dtype=np.float32)
            if m.ndim != 2:
                raise ValueError(f"GT maps must be 2-D, got shape {m.shape}")
            if m.shape[1] > 65535:
                raise ValueError(f"GT maps wider than 65535 pixels are not supported ({m.shape})")
            rp, c, v = _dense_to_csr(m)
            parts.append((rp, c, v, m.shape[0], m.shape[1]))
        return cls.from_parts(parts, entries)


def _atomic_npz(path: Path, arrays: dict, compressed: bool) -> None:
    atomic_write(path, lambda f: (np.savez_compressed if compressed else np.savez)(f, **arrays))


def choose_gt_format(gt: SparseGT) -> str:
    """``"sparse"`` or ``"dense"``: the file format ``evaluate.py export-gt --format auto`` writes.

    The sparse file stores 6 bytes per valid pixel (``uint16`` column + ``float32`` depth) plus 4
    per row, uncompressed; the dense one 4 bytes per pixel before ``np.savez_compressed``. Dense
    wins whenever the sparse arrays outgrow the uncompressed dense maps (more than about 2/3 of the
    pixels valid: dense GT such as the synthetic maps), since compression only shrinks it further.
    Otherwise (velodyne GT, ~5 % valid; annotated PNGs, ~20 %) sparse is chosen: it reads without
    decompression or pickle, although the compressed dense file can be a little smaller on disk
    (measured sizes: docs/evaluation.md)."""
    dense_bytes = sum(int(h) * int(w) for h, w in gt.shapes) * 4
    return "dense" if gt.nbytes > dense_bytes else "sparse"


def save_sparse_gt(path: str | Path, gt: SparseGT) -> None:
    """Write a sparse GT file (uncompressed ``.npz``: loading it is a plain read)."""
    arrays = dict(format=np.array(SPARSE_FORMAT), heights=gt.heights, widths=gt.widths,
                  img_ptr=gt.img_ptr, row_ptr=gt.row_ptr, cols=gt.cols, depths=gt.depths)
    if gt.entries is not None:
        arrays["entries"] = np.asarray(gt.entries, dtype=str)
    _atomic_npz(Path(path), arrays, compressed=False)


def save_dense_gt(path: str | Path, maps: Sequence[np.ndarray] | SparseGT, compressed: bool = True) -> None:
    """Write Monodepth2's ``gt_depths.npz`` (key ``data``): a stacked float32 array when every map
    has the same size, else an object array of float32 maps (what Monodepth2's export produced)."""
    if isinstance(maps, SparseGT):
        maps = maps.to_dense_list()
    maps = [np.asarray(m, dtype=np.float32) for m in maps]
    if maps and all(m.shape == maps[0].shape for m in maps):
        data = np.stack(maps)
    else:
        data = np.empty(len(maps), dtype=object)
        for i, m in enumerate(maps):
            data[i] = m
    _atomic_npz(Path(path), {"data": data}, compressed=compressed)


def load_gt(path: str | Path) -> SparseGT | list[np.ndarray] | np.ndarray:
    """Read a GT file: a :class:`SparseGT`, or Monodepth2's dense maps (a list of float32 maps, or
    an ``(N, H, W)`` array when stacked)."""
    path = Path(path)
    z = open_array_file(path, "GT file")
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"GT file {path} is a plain .npy array, not an .npz file (sparse GT or Monodepth2's "
                         f"gt_depths.npz)")
    with z:
        keys = set(z.files)
        if "format" in keys:
            fmt = str(z["format"])
            if fmt != SPARSE_FORMAT:
                raise ValueError(f"GT file {path}: unknown format {fmt!r} (expected {SPARSE_FORMAT!r})")
            return SparseGT(z["heights"], z["widths"], z["img_ptr"], z["row_ptr"], z["cols"],
                            z["depths"], z["entries"] if "entries" in keys else None)
        if "data" not in keys:
            raise ValueError(f"GT file {path} has neither sparse GT arrays nor Monodepth2's 'data' key "
                             f"(keys: {sorted(keys)})")
    # Monodepth2's file: the maps may be an object array, which needs pickle. Only open it this way
    # for files you trust.
    with np.load(path, allow_pickle=True, encoding="latin1", fix_imports=True) as z:
        data = z["data"]
    if data.dtype == object:
        return [np.asarray(m, dtype=np.float32) for m in data]
    if data.ndim != 3:
        raise ValueError(f"GT file {path}: 'data' must hold 2-D maps, got shape {data.shape}")
    return data if data.dtype == np.float32 else data.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------

def _entry_fields(e):
    if hasattr(e, "folder"):
        return e.folder, int(e.frame), getattr(e, "side", "l")
    folder, frame, *rest = e
    return folder, int(frame), (rest[0] if rest else "l")


@lru_cache(maxsize=64)
def _projection(calib_dir: str, cam: int):
    return projection_velo_to_image(calib_dir, cam), image_size_from_calib(calib_dir, cam)


def _one_map(root: Path, entry, mode: str, exact: bool, sparse: bool):
    """GT of one split entry: a dense map, or with ``sparse`` its ``(row_ptr, cols, depths, H, W)``."""
    folder, frame, side = _entry_fields(entry)
    if mode == "benchmark":
        m = read_benchmark_png(benchmark_png_path(root, folder, frame, side))
    else:
        cam = 2 if side == "l" else 3
        P, size = _projection(str(root / folder.split("/")[0]), cam)
        path = velodyne_path(root, folder, frame)
        if not exact:
            pts = load_velodyne_points(path, check_finite=False)
            rp, c, v, h, w = _project_clean_sparse(pts, P, size, name=f"scan {path}")
            return (rp, c, v, h, w) if sparse else _csr_to_dense(rp, c, v, h, w)
        m = depth_map_from_points(load_velodyne_points(path), P, size, exact=True)
    if not sparse:
        return m
    rp, c, v = _dense_to_csr(np.ascontiguousarray(m, dtype=np.float32))
    return rp, c, v, m.shape[0], m.shape[1]


def export_gt(data_path: str | Path, entries: Sequence, mode: str = "velodyne", exact: bool = False,
              progress: bool = True, workers: int | None = None, dense: bool = False):
    """GT for every split entry, in order: a :class:`SparseGT` (or a list of dense maps with
    ``dense=True``).

    ``mode``: ``"velodyne"`` (``eigen``: projected scans) or ``"benchmark"`` (``eigen_benchmark``:
    annotated PNGs). The numba kernels release the GIL, so scans are processed by ``workers``
    threads (default: the number of CPUs, at most 4).
    """
    if mode not in ("velodyne", "benchmark"):
        raise ValueError(f"mode must be 'velodyne' or 'benchmark', got {mode!r}")
    root = Path(data_path)
    entries = list(entries)
    workers = workers or max(1, min(4, os.cpu_count() or 1))

    def work(e):
        return _one_map(root, e, mode, exact, sparse=not dense)

    bar = tqdm(total=len(entries), desc=f"export GT ({mode}{', exact' if exact else ''})", unit="img",
               disable=not progress)
    results = []
    try:
        if workers == 1:
            for e in entries:
                results.append(work(e))
                bar.update(1)
        else:
            with ThreadPoolExecutor(workers) as ex:
                for r in ex.map(work, entries):
                    results.append(r)
                    bar.update(1)
    finally:
        bar.close()
    if dense:
        return results
    return SparseGT.from_parts(results, entries=[_entry_line(e) for e in entries])


def _entry_line(e) -> str:
    folder, frame, side = _entry_fields(e)
    return f"{folder} {frame} {side}"


def check_gt_matches_split(gt, entries: Sequence, source: str | Path = "GT") -> None:
    """A GT file that stores its split lines (:class:`SparseGT` from :func:`export_gt`) must have
    been made for ``entries``: a ``ValueError`` names the first entry that differs."""
    stored = getattr(gt, "entries", None)
    if stored is None or len(stored) != len(entries):
        return
    for i, (have, want) in enumerate(zip(stored, map(_entry_line, entries))):
        if have != want:
            raise ValueError(f"GT file {source} was made for another split: entry {i} is {have!r}, "
                             f"the split has {want!r}")


def evaluation_gt(entries: Sequence, *, gt_path: str | Path | None = None, data_path: str | Path | None = None,
                  mode: str = "velodyne", exact: bool = False, progress: bool = True):
    """The GT to score ``entries`` against: the file ``gt_path`` (checked against the split with
    :func:`check_gt_matches_split`), else exported from the KITTI root ``data_path`` with
    :func:`export_gt`. Missing files raise ``FileNotFoundError``, bad ones ``ValueError``."""
    if gt_path:
        gt = load_gt(gt_path)
        check_gt_matches_split(gt, entries, gt_path)
        return gt
    if not data_path:
        raise ValueError("give a GT file or the KITTI root (to export the GT on the fly)")
    try:
        return export_gt(data_path, entries, mode=mode, exact=exact, progress=progress)
    except KeyError as e:  # a calibration key
        raise ValueError(str(e).strip("'\"")) from None
