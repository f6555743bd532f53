"""NYU Depth v2 labelled set (Silberman et al., ECCV 2012) and its official test split.

Files in the data folder::

    ROOT/nyu_depth_v2_labeled.mat   MATLAB v7.3 = HDF5 (2.8 GB): 1449 RGB-D frames, 480 x 640
    ROOT/splits.mat                 MATLAB v5: trainNdxs (795 x 1), testNdxs (654 x 1), one-based

HDF5 stores MATLAB arrays with their axes reversed (MATLAB is column-major): the MATLAB
``images`` (480 x 640 x 3 x 1449, uint8) reads in h5py as ``(1449, 3, 640, 480)`` and ``depths``
(480 x 640 x 1449, metres, the in-painted dense maps) as ``(1449, 640, 480)``. So frame ``k`` is
``images[k].transpose(2, 1, 0)`` (``480 x 640 x 3`` RGB) and ``depths[k].T`` (``480 x 640``).

The test set is Eigen et al.'s 654 frames, ``testNdxs - 1`` (zero-based) in the order of
``splits.mat``. HDF5 is read with h5py; ``splits.mat`` with ``scipy.io.loadmat`` (also accepted
as v7.3/HDF5). The crop and depth range of the protocol are in :mod:`depth.eval.protocols`.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from common.errors import DataError

__all__ = ["NYU_TEST_COUNT", "LABELED_FILE", "SPLITS_FILE", "read_test_indices", "NYUv2TestSet"]

NYU_TEST_COUNT = 654
LABELED_FILE = "nyu_depth_v2_labeled.mat"
SPLITS_FILE = "splits.mat"
TEST_KEY = "testNdxs"


def _h5py():
    try:
        import h5py
    except ImportError:  # a declared dependency (requirements.txt); say so instead of a traceback
        raise ImportError("reading nyu_depth_v2_labeled.mat (MATLAB v7.3 = HDF5) needs h5py: "
                          "pip install -r requirements.txt") from None
    return h5py


def read_test_indices(path: str | Path, count: int | None = None) -> np.ndarray:
    """Zero-based test indices from ``splits.mat`` (``testNdxs``, one-based, MATLAB v5 or v7.3).

    Indices must be integers in ``1..count`` (``count`` = frames of the labelled file, when given),
    without repeats; anything else is an error naming the file."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing NYUv2 split file: {path} (the official splits.mat with testNdxs)")
    try:
        idx = scipy.io.loadmat(str(path), variable_names=[TEST_KEY]).get(TEST_KEY)
    except NotImplementedError:  # scipy's answer to a v7.3 (HDF5) file
        h5py = _h5py()
        try:
            with h5py.File(path, "r") as f:
                idx = np.asarray(f[TEST_KEY]) if TEST_KEY in f else None
        except OSError as e:
            raise DataError(f"corrupt or unreadable NYUv2 split file {path}: {e}") from None
    except Exception as e:  # scipy raises ValueError/TypeError/MatReadError for garbage
        raise DataError(f"corrupt or unreadable NYUv2 split file {path}: not a MATLAB .mat "
                         f"({type(e).__name__}: {e})") from None
    if idx is None:
        raise DataError(f"NYUv2 split file {path} has no variable {TEST_KEY!r}")
    idx = np.asarray(idx)
    flat = idx.reshape(-1)
    if flat.size == 0 or not np.issubdtype(flat.dtype, np.number) or not np.all(flat == np.round(flat)):
        raise DataError(f"NYUv2 split file {path}: {TEST_KEY} must hold integer (one-based) frame indices")
    flat = flat.astype(np.int64)
    hi = count if count is not None else np.iinfo(np.int64).max
    bad = flat[(flat < 1) | (flat > hi)]
    if bad.size:
        raise DataError(f"NYUv2 split file {path}: {TEST_KEY} index {int(bad[0])} is outside 1..{count} "
                         f"(one-based indices into the labelled file)")
    if len(np.unique(flat)) != len(flat):
        raise DataError(f"NYUv2 split file {path}: {TEST_KEY} repeats frame indices")
    return flat - 1


class NYUv2TestSet:
    """The test frames of ``nyu_depth_v2_labeled.mat``, read from the HDF5 file when indexed.

    ``image(i)``: ``480 x 640 x 3`` uint8 RGB; ``depth(i)``: ``480 x 640`` float32 metres (the
    ``depths`` maps); ``i`` counts test frames, ``frames[i]`` is the zero-based frame in the file.
    A missing file, a file that is not HDF5, or ``images``/``depths`` of the wrong shape is an
    error naming the file and dataset."""

    def __init__(self, labeled: str | Path, splits: str | Path | None = None):
        h5py = _h5py()
        self.path = Path(labeled)
        if self.path.is_dir():
            self.path = self.path / LABELED_FILE
        if not self.path.is_file():
            raise DataError(f"missing NYUv2 labelled file: {self.path}")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as e:
            raise DataError(f"corrupt or unreadable NYUv2 labelled file {self.path}: not MATLAB v7.3/HDF5 "
                             f"({e})") from None
        for key in ("images", "depths"):
            if key not in self._f:
                raise DataError(f"NYUv2 labelled file {self.path} has no dataset {key!r}")
        self._images, self._depths = self._f["images"], self._f["depths"]
        si, sd = self._images.shape, self._depths.shape
        if len(si) != 4 or si[1] != 3 or len(sd) != 3 or sd != (si[0], si[2], si[3]):
            raise DataError(f"NYUv2 labelled file {self.path}: expected images (N, 3, W, H) and depths "
                             f"(N, W, H) as MATLAB v7.3 stores them, got images {si} and depths {sd}")
        n = si[0]
        split_path = Path(splits) if splits else self.path.parent / SPLITS_FILE
        self.frames = read_test_indices(split_path, n)
        self.split_path = split_path

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def names(self) -> list[str]:
        return [f"frame {k + 1:04d}" for k in self.frames]  # one-based, as testNdxs and MATLAB count

    def image(self, i: int) -> np.ndarray:
        img = np.asarray(self._images[int(self.frames[i])])
        if img.dtype != np.uint8:
            raise DataError(f"NYUv2 labelled file {self.path}: images must be uint8, got {img.dtype}")
        return np.ascontiguousarray(img.transpose(2, 1, 0))

    def depth(self, i: int) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(self._depths[int(self.frames[i])], dtype=np.float32).T)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.image(i) for i in range(len(self)))

    def close(self) -> None:
        self._f.close()
