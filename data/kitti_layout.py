"""Where the KITTI raw layout keeps its frames: image paths, the target frames of a split and the
frames of an odometry sequence, read with OpenCV and NumPy only (evaluation of saved predictions
imports this without torch; :mod:`data.kitti` re-exports every name).

Layout: ``<root>/<date>/<date>_drive_NNNN_sync/image_0{2,3}/data/%010d.{png,jpg}`` (side ``l`` is
camera 2, ``r`` camera 3); odometry: ``<root>/sequences/NN/image_2/%06d.{png,jpg}``. Frames are
``H x W x 3`` uint8 RGB at full resolution.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from common.errors import BadSampleError
from data.images import read_image
from data.splits import SplitEntry

__all__ = ["SIDE_TO_CAM", "image_path", "KittiImageSet", "odometry_frames"]

SIDE_TO_CAM = {"l": 2, "r": 3}


def image_path(root: str | Path, entry: SplitEntry, side: str | None = None, ext: str | None = None,
               frame: int | None = None) -> Path:
    """Path of a frame; ``ext`` None/"auto" finds png or jpg (png preferred)."""
    side = side or entry.side
    frame = entry.frame if frame is None else frame
    folder = Path(root) / entry.folder / f"image_0{SIDE_TO_CAM[side]}" / "data"
    if ext in (None, "auto"):
        for e in ("png", "jpg"):
            p = folder / f"{frame:010d}.{e}"
            if p.is_file():
                return p
        return folder / f"{frame:010d}.png"
    return folder / f"{frame:010d}.{ext}"


class KittiImageSet:
    """The target frames of split entries at full resolution, read when indexed or iterated:
    ``H x W x 3`` uint8 RGB (validation and evaluation input; the model resizes them with
    :func:`data.frames.resize_image`)."""

    def __init__(self, root: str | Path, entries: list[SplitEntry], img_ext: str = "auto"):
        self.root, self.entries, self.img_ext = Path(root), list(entries), img_ext

    def __len__(self) -> int:
        return len(self.entries)

    def path(self, index: int) -> Path:
        e = self.entries[index]
        return image_path(self.root, e, e.side, self.img_ext)

    def __getitem__(self, index: int) -> np.ndarray:
        return read_image(self.path(index))

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))


def odometry_frames(root: str | Path, sequence: int, count: int) -> Iterator[np.ndarray]:
    """Frames ``0 .. count-1`` of a KITTI odometry sequence (``sequences/NN/image_2``, png or jpg),
    read one at a time; a missing frame raises :class:`BadSampleError` naming both candidates."""
    folder = Path(root) / "sequences" / f"{int(sequence):02d}" / "image_2"
    for i in range(count):
        for ext in (".png", ".jpg"):
            p = folder / f"{i:06d}{ext}"
            if p.is_file():
                break
        else:
            raise BadSampleError(f"odometry frame {i} not found as {folder / f'{i:06d}'}.png or .jpg")
        yield read_image(p)
