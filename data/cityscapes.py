"""Cityscapes test set (Cordts et al., CVPR 2016) for depth evaluation: images, disparity GT.

Layout under the data root (the official ``leftImg8bit_trainvaltest``, ``disparity_trainvaltest``
and ``camera_trainvaltest`` archives unpacked into it)::

    ROOT/leftImg8bit/test/<city>/<frame>_leftImg8bit.png   2048 x 1024 RGB
    ROOT/disparity/test/<city>/<frame>_disparity.png       uint16 PNG
    ROOT/camera/test/<city>/<frame>_camera.json            {"extrinsic": {"baseline": m, ...},
                                                            "intrinsic": {"fx": px, ...}}

(``ROOT/<archive name>/camera/...`` and ``ROOT/<archive name>/disparity/...``, as ManyDepth's
loader reads them, are found too.)

Disparity PNGs (the dataset's README): for a pixel value ``p > 0`` the disparity is
``(p - 1) / 256`` pixels; ``p = 0`` is an invalid measurement. Depth in metres is
``baseline * fx / disparity`` with the frame's camera file; here ``p = 0`` and ``p = 1`` (zero
disparity: infinitely far) are both 0 = no GT.

The test list is ManyDepth's ``splits/cityscapes/test_files.txt`` (1525 ``<city> <frame>`` lines,
``data/eval_splits/cityscapes_test_files.txt``), in that order, because ManyDepth's precomputed GT
(``gt_depths_cityscapes.zip``: ``gt_depths/NNN_depth.npy``, ``NNN`` = the zero-padded line index,
one full-resolution float depth map in metres each) is numbered by it; :class:`ManyDepthGT` reads
that folder or the zip itself. The crops of the protocol are in :mod:`depth.eval.protocols`.
"""
from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.errors import DataError
from data.images import decode_file, read_image
from data.splits import split_lines

__all__ = ["CITYSCAPES_TEST_FILES", "CITYSCAPES_TEST_COUNT", "CityscapesEntry", "read_cityscapes_split",
           "image_path", "disparity_path", "camera_path", "read_disparity_png", "read_camera",
           "disparity_to_depth", "ManyDepthGT", "CityscapesTestSet"]

CITYSCAPES_TEST_FILES = Path(__file__).resolve().parent / "eval_splits" / "cityscapes_test_files.txt"
CITYSCAPES_TEST_COUNT = 1525
_GT_NAME = re.compile(r"(\d+)_depth\.npy")


@dataclass(frozen=True)
class CityscapesEntry:
    city: str
    frame: str  # <city>_<sequence>_<frame number>, e.g. berlin_000000_000019


def read_cityscapes_split(path: str | Path = CITYSCAPES_TEST_FILES) -> list[CityscapesEntry]:
    """``<city> <frame>`` lines; a malformed line is reported with its file and line number."""
    path = Path(path)
    out = []
    for lineno, raw, parts in split_lines(path, "Cityscapes split file"):
        if len(parts) != 2 or not parts[1].startswith(parts[0] + "_"):
            raise DataError(f"{path}:{lineno}: expected '<city> <city>_<seq>_<frame>', got {raw!r}")
        out.append(CityscapesEntry(parts[0], parts[1]))
    if not out:
        raise DataError(f"Cityscapes split file {path} lists no frames")
    return out


def _find(root: Path, kind: str, archive: str, rel: Path) -> Path:
    """``ROOT/<kind>/<rel>``, else ``ROOT/<archive>/<kind>/<rel>``; the first when neither exists."""
    first = root / kind / rel
    if first.exists():
        return first
    second = root / archive / kind / rel
    return second if second.exists() else first


def image_path(root: str | Path, e: CityscapesEntry) -> Path:
    return _find(Path(root), "leftImg8bit", "leftImg8bit_trainvaltest",
                 Path("test") / e.city / f"{e.frame}_leftImg8bit.png")


def disparity_path(root: str | Path, e: CityscapesEntry) -> Path:
    return _find(Path(root), "disparity", "disparity_trainvaltest",
                 Path("test") / e.city / f"{e.frame}_disparity.png")


def camera_path(root: str | Path, e: CityscapesEntry) -> Path:
    return _find(Path(root), "camera", "camera_trainvaltest",
                 Path("test") / e.city / f"{e.frame}_camera.json")


def read_disparity_png(path: str | Path) -> np.ndarray:
    """Disparity in pixels, float32 ``H x W``: ``(p - 1) / 256`` for ``p > 0``, 0 where ``p = 0``."""
    p = decode_file(path, cv2.IMREAD_UNCHANGED, "Cityscapes disparity map")
    if p.dtype != np.uint16 or p.ndim != 2:
        raise DataError(f"Cityscapes disparity map {path} must be a single-channel 16-bit PNG, "
                         f"got {p.dtype} with shape {p.shape}")
    d = (p.astype(np.float32) - 1.0) / 256.0
    d[p == 0] = 0.0
    return d


def read_camera(path: str | Path) -> tuple[float, float]:
    """``(baseline in metres, fx in pixels)`` of a Cityscapes camera file
    (``extrinsic.baseline``, ``intrinsic.fx``); errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing Cityscapes camera file: {path}")
    try:
        cam = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"Cityscapes camera file {path} is not valid JSON: {e}") from None
    vals = []
    for section, key in (("extrinsic", "baseline"), ("intrinsic", "fx")):
        try:
            v = float(cam[section][key])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"Cityscapes camera file {path}: expected a number at {section}.{key}") from None
        if not v > 0:
            raise DataError(f"Cityscapes camera file {path}: {section}.{key} must be > 0, got {v}")
        vals.append(v)
    return vals[0], vals[1]


def disparity_to_depth(disparity: np.ndarray, baseline: float, fx: float) -> np.ndarray:
    """``baseline * fx / disparity`` in metres (float32) where ``disparity > 0``, else 0."""
    d = np.asarray(disparity, dtype=np.float32)
    out = np.zeros_like(d)
    ok = d > 0
    out[ok] = np.float32(baseline * fx) / d[ok]
    return out


class ManyDepthGT:
    """ManyDepth's precomputed Cityscapes GT: ``NNN_depth.npy`` files (``NNN`` = split line index,
    zero-padded to 3 digits) in a folder, in its ``gt_depths/`` subfolder, or in a zip of them
    (``gt_depths_cityscapes.zip`` as downloaded). ``gt[i]`` is the float32 ``H x W`` depth map of
    line ``i`` in metres (0 = no GT)."""

    def __init__(self, path: str | Path, count: int):
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_file() and zipfile.is_zipfile(self.path):
            self._zip = zipfile.ZipFile(self.path)
            names = {int(m.group(1)): n for n in self._zip.namelist()
                     if (m := _GT_NAME.fullmatch(Path(n).name))}
        elif self.path.is_dir():
            folder = self.path / "gt_depths" if (self.path / "gt_depths").is_dir() else self.path
            names = {int(m.group(1)): str(p) for p in folder.iterdir() if (m := _GT_NAME.fullmatch(p.name))}
            self.path = folder
        else:
            raise DataError(f"Cityscapes GT {self.path} not found: expected ManyDepth's gt_depths "
                                    f"folder (NNN_depth.npy files) or gt_depths_cityscapes.zip")
        missing = [i for i in range(count) if i not in names]
        if missing:
            raise DataError(f"Cityscapes GT {path}: no {missing[0]:03d}_depth.npy ({len(missing)} "
                                    f"of {count} maps missing; the files are numbered by the split's line "
                                    f"order)")
        self._names = names
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> np.ndarray:
        name = self._names[i]
        where = f"{self.path}:{name}" if self._zip else name
        try:
            if self._zip is not None:
                with self._zip.open(name) as f:
                    a = np.load(f, allow_pickle=False)
            else:
                a = np.load(name, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f"corrupt or unreadable Cityscapes GT map {where}: {e}") from None
        a = np.squeeze(a)
        if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
            raise DataError(f"Cityscapes GT map {where} must be a 2-D numeric depth map, got {a.dtype} "
                             f"{a.shape}")
        return np.ascontiguousarray(a, dtype=np.float32)


class CityscapesTestSet:
    """Images and GT of a Cityscapes split (default: ManyDepth's 1525 test frames), read when
    indexed. ``image(i)``: ``H x W x 3`` uint8 RGB at full resolution; ``depth(i)``: metric depth
    from the disparity PNG and camera file, or from ``gt`` (:class:`ManyDepthGT`) when given.
    Every image (and, without ``gt``, every disparity and camera file) is checked to exist when the
    set is made: a missing one is an error naming it, before any work."""

    def __init__(self, root: str | Path, entries: list[CityscapesEntry] | None = None,
                 gt: str | Path | None = None):
        self.root = Path(root)
        self.entries = list(entries) if entries is not None else read_cityscapes_split()
        self.gt = ManyDepthGT(gt, len(self.entries)) if gt else None
        for e in self.entries:
            needed = [image_path(self.root, e)]
            if self.gt is None:
                needed += [disparity_path(self.root, e), camera_path(self.root, e)]
            for p in needed:
                if not p.is_file():
                    raise DataError(f"missing Cityscapes file: {p} (split line {e.city} {e.frame})")

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> list[str]:
        return [e.frame for e in self.entries]

    def image(self, i: int) -> np.ndarray:
        return read_image(image_path(self.root, self.entries[i]))

    def depth(self, i: int) -> np.ndarray:
        if self.gt is not None:
            return self.gt[i]
        e = self.entries[i]
        baseline, fx = read_camera(camera_path(self.root, e))
        return disparity_to_depth(read_disparity_png(disparity_path(self.root, e)), baseline, fx)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.image(i) for i in range(len(self)))
