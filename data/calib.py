"""KITTI raw calibration files: parsing and the matrices the loaders and the evaluation need.

Files (per recording date): ``<root>/<date>/calib_cam_to_cam.txt`` (``S_rect_0i``, ``R_rect_00``,
``P_rect_0i``, ...) and ``calib_velo_to_cam.txt`` (``R``, ``T``). Every value line is
``key: numbers``; non-numeric lines such as ``calib_time`` are skipped.

A missing file or a missing key raises :class:`common.errors.DataError`; both name the
file (and the key).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from common.errors import DataError, IntrinsicsError


__all__ = [
    "CalibDict",
    "read_calib_file",
    "load_cam_to_cam",
    "load_velo_to_cam",
    "velo_to_cam",
    "rect_matrix",
    "projection_velo_to_image",
    "intrinsics_from_calib",
    "image_size_from_calib",
    "IntrinsicsError",
    "check_intrinsics",
    "MIN_FOCAL_PX",
]

MIN_FOCAL_PX = 4.0  # no camera has a focal length of a few pixels: such a K is not in pixels


def check_intrinsics(K, name: str, size: tuple[int, int] | None = None,
                     frame_size: tuple[int, int] | None = None) -> None:
    """Raise :class:`IntrinsicsError` naming ``name`` (a file or the keys the values came from) and the
    likely cause when ``K`` cannot be pixels of the frames: a focal length below
    :data:`MIN_FOCAL_PX` (values below 4 with the principal point within 0..1 look normalised, as
    Monodepth2 stores them), or a principal point outside the ``size`` (W, H) the K is stated for
    (else outside ``frame_size``: a K in pixels of bigger frames). A K stated for another size is
    rescaled per axis to the frames (:func:`data.frames.resize_intrinsics`), so ``frame_size`` is
    not compared with ``size``."""
    K = np.asarray(K, dtype=np.float64)
    fx, fy, cx, cy = (float(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    vals = f"fx {fx:g}, fy {fy:g}, cx {cx:g}, cy {cy:g}"
    if not np.isfinite([fx, fy, cx, cy]).all():
        raise IntrinsicsError(f"{name}: intrinsics are not finite ({vals})")
    if fx < MIN_FOCAL_PX or fy < MIN_FOCAL_PX:
        if 0 < fx < MIN_FOCAL_PX and 0 < fy < MIN_FOCAL_PX and 0 <= cx <= 1 and 0 <= cy <= 1:
            raise IntrinsicsError(f"{name}: {vals}: these look normalised (fractions of the image size, as "
                                  f"Monodepth2 stores them): multiply fx and cx by the width and fy and cy by "
                                  f"the height to give pixels")
        raise IntrinsicsError(f"{name}: {vals}: a focal length below {MIN_FOCAL_PX:g} pixels cannot be a "
                              f"camera's (intrinsics are in pixels of the frames)")
    ref = size or frame_size
    if ref is not None:
        w, h = ref
        if not (0 <= cx <= w and 0 <= cy <= h):
            what = "the size stated in the file" if size else "the frames"
            raise IntrinsicsError(f"{name}: principal point ({cx:g}, {cy:g}) lies outside the {w}x{h} image "
                                  f"({what}): intrinsics for another image size, or frames that were "
                                  f"cropped or resized?")


class CalibDict(dict):
    """``dict[str, np.ndarray]`` whose missing keys raise a :class:`common.errors.DataError` naming the file."""

    def __init__(self, path, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.path = str(path)

    def __missing__(self, key):
        raise DataError(f"calibration file {self.path} has no key {key!r} (keys: {sorted(self)})")

    def matrix(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        """The value of ``key`` reshaped to ``shape``; a wrong element count names file and key."""
        value = self[key]
        if value.size != int(np.prod(shape)):
            raise DataError(
                f"calibration file {self.path}: key {key!r} has {value.size} values, expected {shape}")
        return value.reshape(shape)


def read_calib_file(path: str | Path) -> CalibDict:
    """Parse a KITTI calibration text file into ``{key: float64 array}``.

    Lines without a ``:`` or whose value is not a list of numbers (``calib_time: 09-Jan-2012 ...``)
    are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"calibration file not found: {path}")
    data = CalibDict(path)
    for line in path.read_text().splitlines():
        if ":" not in line:
            continue
        key, value = line.split(":", 1)
        try:
            data[key.strip()] = np.array([float(x) for x in value.split()], dtype=np.float64)
        except ValueError:
            continue
    return data


def _calib_dir(calib_dir: str | Path) -> Path:
    return Path(calib_dir)


@lru_cache(maxsize=64)
def _cached(path: str, mtime: float) -> CalibDict:
    return read_calib_file(path)


def _read_cached(path: Path) -> CalibDict:
    if not path.is_file():
        raise DataError(f"calibration file not found: {path}")
    return _cached(str(path), path.stat().st_mtime)


def load_cam_to_cam(path: str | Path) -> CalibDict:
    """``calib_cam_to_cam.txt`` (a file, or the date folder holding it)."""
    path = Path(path)
    if path.suffix != ".txt":
        path = path / "calib_cam_to_cam.txt"
    return _read_cached(path)


def load_velo_to_cam(path: str | Path) -> CalibDict:
    """``calib_velo_to_cam.txt`` (a file, or the date folder holding it)."""
    path = Path(path)
    if path.suffix != ".txt":
        path = path / "calib_velo_to_cam.txt"
    return _read_cached(path)


def velo_to_cam(calib_dir: str | Path) -> np.ndarray:
    """4x4 rigid transform Velodyne -> (unrectified) camera 0, from ``R`` and ``T``."""
    c = load_velo_to_cam(_calib_dir(calib_dir))
    T = np.eye(4)
    T[:3, :3] = c.matrix("R", (3, 3))
    T[:3, 3] = c.matrix("T", (3,))
    return T


def rect_matrix(calib_dir: str | Path) -> np.ndarray:
    """4x4 homogeneous ``R_rect_00`` (rectifying rotation of camera 0)."""
    c = load_cam_to_cam(_calib_dir(calib_dir))
    R = np.eye(4)
    R[:3, :3] = c.matrix("R_rect_00", (3, 3))
    return R


def projection_velo_to_image(calib_dir: str | Path, cam: int = 2) -> np.ndarray:
    """3x4 matrix ``P_rect_0{cam} @ R_rect_00 @ Tr_velo_to_cam`` (Velodyne -> rectified pixels).

    Multiplied in the same order as Monodepth2 (``(P @ R) @ Tr``) so that projected coordinates
    agree with it bit for bit.
    """
    c = load_cam_to_cam(_calib_dir(calib_dir))
    P = c.matrix(f"P_rect_0{cam}", (3, 4))
    return np.dot(np.dot(P, rect_matrix(calib_dir)), velo_to_cam(calib_dir))


def image_size_from_calib(calib_dir: str | Path, cam: int = 2) -> tuple[int, int]:
    """``(W, H)`` of the rectified image of camera ``cam`` (``S_rect_0{cam}``)."""
    c = load_cam_to_cam(_calib_dir(calib_dir))
    s = c.matrix(f"S_rect_0{cam}", (2,))
    return int(s[0]), int(s[1])


def intrinsics_from_calib(calib_dir: str | Path, cam: int = 2) -> tuple[np.ndarray, tuple[int, int]]:
    """``(K, (W, H))``: the 3x3 rectified intrinsics of camera ``cam`` in pixels of the full
    ``S_rect`` image, and that image size."""
    c = load_cam_to_cam(_calib_dir(calib_dir))
    P = c.matrix(f"P_rect_0{cam}", (3, 4))
    K, size = P[:, :3].copy(), image_size_from_calib(calib_dir, cam)
    check_intrinsics(K, f"calibration file {c.path} (P_rect_0{cam})", size)
    return K, size
