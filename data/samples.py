"""The training sample and batch: what a dataset returns (:class:`FrameSample`), what the loader
hands the trainer (:class:`FrameBatch`), and the marker of a sample that was skipped.

Samples are the :class:`FrameSample` of :class:`data.frames.FrameSampleDataset`; :func:`collate`
stacks them into a :class:`FrameBatch`. A sample that raised one of the errors the trainer was told to skip comes
out of :class:`depth.train.sampling.EpochIndexed` as a :class:`BadSample`; :func:`collate` drops it and
lists its message in ``FrameBatch.bad_samples``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import Tensor
from torch.utils.data import get_worker_info

from common.errors import BadBatchError

__all__ = ["FrameSample", "FrameBatch", "BadSample", "BadBatchError", "collate"]


@dataclass
class FrameSample:
    """One training sample (CPU tensors): ``color`` ``(F, 3, H, W)`` un-jittered frames in ``[0, 1]``,
    the target first, in the order of ``data.frame_ids`` (the stereo partner last); ``color_aug``
    the same frames with the sample's colour jitter; ``K`` ``(3, 3)`` intrinsics in pixels of the
    ``H x W`` frames; ``index`` the sample's index; ``T_stereo`` ``(4, 4)`` target -> stereo-partner
    transform, or None without stereo; ``depth_in`` ``(3, H, W)`` the depth network's input where it
    is not ``color_aug[0]`` (zoom from the source frame: ``color`` and ``K`` are then the zoomed view,
    ``color_aug`` the un-zoomed jittered frames of the pose network), else None.
    ``sample["color"]`` reads a field by name too."""

    color: Tensor
    color_aug: Tensor
    K: Tensor
    index: int
    T_stereo: Tensor | None = None
    depth_in: Tensor | None = None

    def __getitem__(self, name: str):
        if name not in self.keys():
            raise KeyError(name)
        return getattr(self, name)

    def keys(self):
        """The fields it holds (``T_stereo`` only with stereo), as a dict's keys view (set-like)."""
        return dict.fromkeys(f.name for f in fields(self)
                             if not (f.name in ("T_stereo", "depth_in") and getattr(self, f.name) is None)).keys()


@dataclass(frozen=True)
class BadSample:
    """Stands in for a sample that could not be read; ``message`` names the sample and the file."""

    message: str


@dataclass
class FrameBatch:
    """A stack of training samples (all tensors on the CPU until :meth:`to`).

    ``color``: ``(B, F, 3, H, W)`` un-jittered frames in ``[0, 1]``, the target first, in the order
    of ``data.frame_ids`` (the stereo partner last) -- what the loss compares. ``color_aug``: the
    same frames with each sample's colour jitter -- what the networks see. ``K``: ``(B, 3, 3)``
    intrinsics in pixels of the ``H x W`` frames. ``index``: ``(B,)`` sample indices.
    ``T_stereo``: ``(B, 4, 4)`` target -> stereo-partner transforms, or None without stereo.
    ``depth_in``: ``(B, 3, H, W)`` the depth network's input where it is not ``color_aug[:, 0]``
    (zoom from the source frame, :class:`FrameSample`), else None.
    ``bad_samples``: messages of the samples dropped from this batch. ``B`` may be 0 when every
    sample was bad.
    """

    color: Tensor
    color_aug: Tensor
    K: Tensor
    index: Tensor
    T_stereo: Tensor | None = None
    bad_samples: list[str] = field(default_factory=list)
    depth_in: Tensor | None = None

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def _map(self, fn) -> FrameBatch:
        """A copy with ``fn`` applied to every tensor field."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return FrameBatch(**{k: fn(v) if isinstance(v, Tensor) else v for k, v in values.items()})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> FrameBatch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> FrameBatch:
        """Called by ``DataLoader(pin_memory=True)``: page-locked copies for asynchronous transfer."""
        return self._map(lambda t: t.pin_memory())


def _stack(tensors: list[Tensor]) -> Tensor:
    """``torch.stack``; in a loader worker straight into shared memory (as ``default_collate``), so
    the batch reaches the training process without another copy."""
    if get_worker_info() is None:
        return torch.stack(tensors)
    first = tensors[0]
    storage = first._typed_storage()._new_shared(first.numel() * len(tensors), device=first.device)
    out = first.new(storage).resize_(len(tensors), *first.shape)
    return torch.stack(tensors, out=out)


def collate(samples: list) -> FrameBatch:
    """Stack the :class:`FrameSample` objects into a :class:`FrameBatch`; ``None`` samples are dropped, and
    so are :class:`BadSample` markers, whose messages go to ``bad_samples``."""
    bad = [s.message for s in samples if isinstance(s, BadSample)]
    good = [s for s in samples if s is not None and not isinstance(s, BadSample)]
    if not good:
        empty = torch.empty(0)
        return FrameBatch(empty, empty, empty, torch.empty(0, dtype=torch.int64), bad_samples=bad)
    stereo = good[0].T_stereo is not None
    depth_in = good[0].depth_in is not None
    return FrameBatch(_stack([s.color for s in good]), _stack([s.color_aug for s in good]),
                      _stack([s.K for s in good]), torch.tensor([s.index for s in good]),
                      _stack([s.T_stereo for s in good]) if stereo else None, bad,
                      _stack([s.depth_in for s in good]) if depth_in else None)
