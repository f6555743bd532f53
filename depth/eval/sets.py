"""Evaluation sets of Make3D, Cityscapes and NYUv2: the readers of :mod:`data` with the protocol's
input crop and GT view applied (:mod:`depth.eval.protocols`), read lazily.

``EvalSet.images[i]``: ``H x W x 3`` uint8 RGB, exactly what goes to the network (it is then
resized to the network size by :func:`depth.inference.predict_disparities`); ``EvalSet.gts[i]``: the
float32 GT view in metres (0 = no GT) that the prediction is resized to and scored against.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from common.errors import EvalError
from data.cityscapes import CityscapesTestSet, read_cityscapes_split
from data.make3d import Make3DTestSet
from data.nyuv2 import NYUv2TestSet
from depth.eval.protocols import (CITYSCAPES, MAKE3D, NYUV2, Protocol, cityscapes_gt_rows,
                                  cityscapes_input_rows, make3d_gt_rows, make3d_input_window)

__all__ = ["LazyMaps", "EvalSet", "load_eval_set"]


class LazyMaps:
    """A read-only sequence of ``n`` arrays made by ``read(i)`` when indexed (re-iterable)."""

    def __init__(self, n: int, read: Callable[[int], np.ndarray]):
        self._n, self._read = n, read

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> np.ndarray:
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return self._read(i % self._n)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self._read(i) for i in range(self._n))


@dataclass
class EvalSet:
    protocol: Protocol
    names: list[str]
    images: LazyMaps
    gts: LazyMaps

    def __len__(self) -> int:
        return len(self.names)


def _make3d(root: Path) -> EvalSet:
    s = Make3DTestSet(root)

    def image(i):
        im = s.image(i)
        t, b, l, r = make3d_input_window(*im.shape[:2])
        return np.ascontiguousarray(im[t:b, l:r])

    def gt(i):
        d = s.depth(i)
        t, b = make3d_gt_rows(d.shape[0])
        return np.ascontiguousarray(d[t:b])

    return EvalSet(MAKE3D, s.names, LazyMaps(len(s), image), LazyMaps(len(s), gt))


def _cityscapes(root: Path, split: str | None, gt: str | None) -> EvalSet:
    entries = read_cityscapes_split(split) if split else None
    s = CityscapesTestSet(root, entries, gt)

    def image(i):
        im = s.image(i)
        return np.ascontiguousarray(im[:cityscapes_input_rows(im.shape[0])])

    def depth(i):
        d = s.depth(i)
        return np.ascontiguousarray(d[:cityscapes_gt_rows(d.shape[0])])

    p = CITYSCAPES if not split else replace(CITYSCAPES, split=f"test ({split})", official_count=None)
    return EvalSet(p, s.names, LazyMaps(len(s), image), LazyMaps(len(s), depth))


def _nyuv2(root: Path, split: str | None) -> EvalSet:
    s = NYUv2TestSet(root, split)
    p = NYUV2 if not split else replace(NYUV2, split=f"Eigen test ({split})")
    return EvalSet(p, s.names, LazyMaps(len(s), s.image), LazyMaps(len(s), s.depth))


def load_eval_set(dataset: str, data_path: str | Path, *, split: str | None = None,
                  gt: str | None = None) -> EvalSet:
    """The test set of ``dataset`` (``make3d``, ``cityscapes``, ``nyuv2``) under ``data_path``.

    ``split``: Cityscapes, a ``<city> <frame>`` list instead of ManyDepth's; NYUv2, a ``splits.mat``
    other than ``DATA_PATH/splits.mat``; Make3D has none. ``gt``: Cityscapes, ManyDepth's
    ``gt_depths`` folder or zip instead of the disparity PNGs. Files are checked to exist here;
    a missing or malformed one is an error naming it."""
    root = Path(data_path)
    if not root.exists():
        raise EvalError(f"--data-path {root} does not exist")
    if dataset == "make3d":
        if split or gt:
            raise EvalError("Make3D takes neither --split nor --gt: the test set is every Test134/img-*.jpg "
                             "with its Gridlaserdata file")
        return _make3d(root)
    if dataset == "cityscapes":
        return _cityscapes(root, split, gt)
    if dataset == "nyuv2":
        if gt:
            raise EvalError("NYUv2 takes no --gt: the GT is the depths of nyu_depth_v2_labeled.mat")
        return _nyuv2(root, split)
    raise EvalError(f"unknown dataset {dataset!r}: make3d, cityscapes or nyuv2 (KITTI has its own path)")
