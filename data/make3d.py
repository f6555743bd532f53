"""Make3D test set (Saxena et al., PAMI 2009): the ``Test134`` images and their laser depth maps.

Layout under the data root (the two archives of the Make3D site, unpacked side by side)::

    ROOT/Test134/img-<id>.jpg                   1704 x 2272 (W x H) RGB photographs, portrait
    ROOT/Gridlaserdata/depth_sph_corr-<id>.mat  MATLAB v5 file, variable Position3DGrid

``Position3DGrid`` is a ``55 x 305 x 4`` array (rows top to bottom, columns left to right, as
MATLAB and ``scipy.io.loadmat`` index it): channel 0 = vertical position (Y), 1 = horizontal (X),
2 = projective depth (Z), 3 = depth along the ray in metres -- the channel every published
Make3D evaluation scores (``[:, :, 3]`` in Python, ``(:, :, 4)`` in MATLAB). The laser grid
covers the photograph's field of view at 55 x 305 samples (its aspect is not the image's).

The test set is every ``img-*.jpg`` of ``Test134`` in sorted order (134 in the official archive);
the id of ``img-<id>.jpg`` names its laser file. This module only reads files; the evaluation
protocol (2:1 centre crop, C1 region, 70 m cap) is :mod:`depth.eval.protocols`.

MATLAB v5 ``.mat`` files are read with ``scipy.io.loadmat`` (the reference reader of the format).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from common.errors import DataError
from data.images import read_image

__all__ = ["MAKE3D_TEST_COUNT", "LASER_KEY", "LASER_DEPTH_CHANNEL", "laser_path", "read_laser_depth",
           "Make3DTestSet"]

MAKE3D_TEST_COUNT = 134
LASER_KEY = "Position3DGrid"
LASER_DEPTH_CHANNEL = 3
IMAGE_DIR, LASER_DIR = "Test134", "Gridlaserdata"
IMAGE_PREFIX, LASER_PREFIX = "img-", "depth_sph_corr-"


def laser_path(root: str | Path, image_id: str) -> Path:
    return Path(root) / LASER_DIR / f"{LASER_PREFIX}{image_id}.mat"


def read_laser_depth(path: str | Path) -> np.ndarray:
    """The laser depth map of one ``depth_sph_corr-<id>.mat``: ``Position3DGrid[:, :, 3]`` as a
    float32 ``(rows, cols)`` array in metres (``55 x 305`` in the official files).

    A missing file, a file that is not a MATLAB v5 ``.mat``, a missing ``Position3DGrid`` or one
    that is not ``rows x cols x 4`` raises an error naming the file."""
    import scipy.io  # MATLAB v5 reader; imported here so that KITTI-only use does not pay for it

    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing Make3D laser depth file: {path}")
    try:
        mat = scipy.io.loadmat(str(path), variable_names=[LASER_KEY])
    except NotImplementedError:  # scipy's answer to an HDF5 (v7.3) file
        raise DataError(f"Make3D laser depth file {path} is a MATLAB v7.3 file; expected MATLAB v5 "
                         f"(as in the Make3D archive)") from None
    except Exception as e:  # scipy raises ValueError/TypeError/MatReadError for garbage
        raise DataError(f"corrupt or unreadable Make3D laser depth file {path}: not a MATLAB v5 .mat "
                         f"({type(e).__name__}: {e})") from None
    if LASER_KEY not in mat:
        raise DataError(f"Make3D laser depth file {path} has no variable {LASER_KEY!r}")
    grid = np.asarray(mat[LASER_KEY])
    if grid.ndim != 3 or grid.shape[2] != 4 or not np.issubdtype(grid.dtype, np.number):
        raise DataError(f"Make3D laser depth file {path}: {LASER_KEY} must be a numeric rows x cols x 4 "
                         f"array, got {grid.dtype} {grid.shape}")
    return np.ascontiguousarray(grid[:, :, LASER_DEPTH_CHANNEL], dtype=np.float32)


class Make3DTestSet:
    """The test images of ``ROOT/Test134`` (sorted) and their laser maps, read when indexed.

    ``image(i)``: ``H x W x 3`` uint8 RGB at full resolution; ``depth(i)``: the laser depth map
    (:func:`read_laser_depth`). A missing ``Test134`` folder, an empty one, or an image without
    its laser file is an error naming the path (checked when the set is made, before any work)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        folder = self.root / IMAGE_DIR
        if not folder.is_dir():
            raise DataError(f"Make3D: {folder} not found (expected ROOT/{IMAGE_DIR}/img-<id>.jpg and "
                                    f"ROOT/{LASER_DIR}/{LASER_PREFIX}<id>.mat)")
        self.images = sorted(p for p in folder.iterdir()
                             if p.name.startswith(IMAGE_PREFIX) and p.suffix.lower() == ".jpg")
        if not self.images:
            raise DataError(f"Make3D: {folder} holds no {IMAGE_PREFIX}<id>.jpg images")
        self.ids = [p.stem[len(IMAGE_PREFIX):] for p in self.images]
        for i in self.ids:
            if not laser_path(self.root, i).is_file():
                raise DataError(f"missing Make3D laser depth file: {laser_path(self.root, i)} "
                                        f"(for {folder / (IMAGE_PREFIX + i + '.jpg')})")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.images]

    def image(self, i: int) -> np.ndarray:
        return read_image(self.images[i])

    def depth(self, i: int) -> np.ndarray:
        return read_laser_depth(laser_path(self.root, self.ids[i]))

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.image(i) for i in range(len(self)))
