"""GT files for KITTI evaluation: the sparse container, reading and writing, and the export.

GT files:

* sparse (default, :class:`SparseGT`): valid pixels only, stored row-compressed per image
  (``uint16`` column + ``float32`` depth per point, one ``int32`` offset per row), an uncompressed
  ``.npz`` about 20x smaller than the dense maps and much faster to load;
* dense: Monodepth2's ``gt_depths.npz`` (key ``data``; an object array of ``float32`` maps, or a
  stacked array when every map has the same size). Both are read by :func:`load_gt`.

The maps themselves come from the KITTI files (:mod:`data.velodyne`: projected Velodyne scans or
annotated PNGs). Every file is written atomically (temporary file in the same folder, then
``os.replace``).
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

from common.errors import EvalError
from common.arrays import open_array_file
from common.atomic import atomic_write
from data.velodyne import dense_to_csr, entry_fields, gt_map

__all__ = ["SparseGT", "choose_gt_format", "save_sparse_gt", "save_dense_gt", "load_gt", "export_gt",
           "check_gt_matches_split", "evaluation_gt", "SPARSE_FORMAT"]

SPARSE_FORMAT = "sparse-gt-v1"


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
            rp, c, v = dense_to_csr(m)
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


# what an object array of numpy arrays pickles to (numpy 1.x and 2.x module paths); nothing else loads
_NUMPY_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _NUMPY_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


def _read_npz_member_safely(path: Path, key: str) -> np.ndarray:
    """``np.load(path)[key]`` without running code: plain arrays as numpy reads them; an object
    array (Monodepth2's ``gt_depths.npz`` of maps of several sizes) through an unpickler that only
    builds numpy arrays and dtypes. A pickle naming anything else raises ValueError naming the file."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as f:
        raw = io.BytesIO(f.read())
    version = np.lib.format.read_magic(raw)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read_header(raw)
    if not dtype.hasobject:
        raw.seek(0)
        return np.lib.format.read_array(raw, allow_pickle=False)
    try:
        arr = _NumpyOnlyUnpickler(raw, encoding="latin1", fix_imports=True).load()
    except pickle.UnpicklingError as e:
        raise EvalError(f"GT file {path}: refused: its '{key}' pickle would build {e}, not numpy arrays "
                         f"(a file that can run code when loaded)") from None
    except Exception as e:  # truncated / corrupt pickle
        raise EvalError(f"GT file {path}: unreadable '{key}' object array ({type(e).__name__}: {e})") from None
    if not isinstance(arr, np.ndarray):
        raise EvalError(f"GT file {path}: '{key}' is a {type(arr).__name__}, not an array of depth maps")
    return arr


def load_gt(path: str | Path) -> SparseGT | list[np.ndarray] | np.ndarray:
    """Read a GT file: a :class:`SparseGT`, or Monodepth2's dense maps (a list of float32 maps, or
    an ``(N, H, W)`` array when stacked)."""
    path = Path(path)
    z = open_array_file(path, "GT file")
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise EvalError(f"GT file {path} is a plain .npy array, not an .npz file (sparse GT or Monodepth2's "
                         f"gt_depths.npz)")
    with z:
        keys = set(z.files)
        if "format" in keys:
            fmt = str(z["format"])
            if fmt != SPARSE_FORMAT:
                raise EvalError(f"GT file {path}: unknown format {fmt!r} (expected {SPARSE_FORMAT!r})")
            return SparseGT(z["heights"], z["widths"], z["img_ptr"], z["row_ptr"], z["cols"],
                            z["depths"], z["entries"] if "entries" in keys else None)
        if "data" not in keys:
            raise EvalError(f"GT file {path} has neither sparse GT arrays nor Monodepth2's 'data' key "
                             f"(keys: {sorted(keys)})")
    # Monodepth2's file: the maps may be an object array, stored as a pickle: read through an
    # unpickler that builds numpy arrays and nothing else (a planted object is refused, never run)
    data = _read_npz_member_safely(path, "data")
    if data.dtype == object:
        return [np.asarray(m, dtype=np.float32) for m in data]
    if data.ndim != 3:
        raise EvalError(f"GT file {path}: 'data' must hold 2-D maps, got shape {data.shape}")
    return data if data.dtype == np.float32 else data.astype(np.float32)


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
        return gt_map(root, e, mode, exact, sparse=not dense)

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
    folder, frame, side = entry_fields(e)
    return f"{folder} {frame} {side}"


def check_gt_matches_split(gt, entries: Sequence, source: str | Path = "GT") -> None:
    """A GT file that stores its split lines (:class:`SparseGT` from :func:`export_gt`) must have
    been made for ``entries``: a ``ValueError`` names the first entry that differs."""
    stored = getattr(gt, "entries", None)
    if stored is None or len(stored) != len(entries):
        return
    for i, (have, want) in enumerate(zip(stored, map(_entry_line, entries))):
        if have != want:
            raise EvalError(f"GT file {source} was made for another split: entry {i} is {have!r}, "
                             f"the split has {want!r}")


def evaluation_gt(entries: Sequence, *, gt_path: str | Path | None = None, data_path: str | Path | None = None,
                  mode: str = "velodyne", exact: bool = False, progress: bool = True):
    """The GT to score ``entries`` against: the file ``gt_path`` (checked against the split with
    :func:`check_gt_matches_split`), else exported from the KITTI root ``data_path`` with
    :func:`export_gt`. Missing or bad files raise :class:`common.errors.InputError` subclasses naming them."""
    if gt_path:
        gt = load_gt(gt_path)
        check_gt_matches_split(gt, entries, gt_path)
        return gt
    if not data_path:
        raise EvalError("give a GT file or the KITTI root (to export the GT on the fly)")
    return export_gt(data_path, entries, mode=mode, exact=exact, progress=progress)
