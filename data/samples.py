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
from data.color_jitter import color_jitter

__all__ = ["FrameSample", "FrameBatch", "BadSample", "BadBatchError", "collate"]


@dataclass
class FrameSample:
    """One training sample (CPU tensors): ``color`` ``(F, 3, H, W)`` uint8 un-jittered frames, the
    target first, in the order of ``data.frame_ids`` (the stereo partner last); ``color_aug`` the
    same frames jittered in the loader (uint8), or None when the networks see ``color`` itself
    (no jitter drawn, or the jitter runs on the device); ``jitter`` ``(4,)`` float32 and
    ``jitter_order`` ``(4,)`` int64 the colour-jitter parameters the device applies to the
    networks' frames (:mod:`data.color_jitter`), or None; ``K`` ``(3, 3)`` intrinsics in pixels of
    the ``H x W`` frames; ``index`` the sample's index; ``T_stereo`` ``(4, 4)`` target ->
    stereo-partner transform, or None without stereo; ``depth_in`` ``(3, H, W)`` uint8 the depth
    network's input where it is not the target of :meth:`network_frames` (zoom from the source
    frame: ``color`` and ``K`` are then the zoomed view, :meth:`network_frames` the un-zoomed frames
    of the pose network), else None. ``sample["color"]`` reads a field by name too."""

    color: Tensor
    color_aug: Tensor | None
    K: Tensor
    index: int
    T_stereo: Tensor | None = None
    depth_in: Tensor | None = None
    jitter: Tensor | None = None
    jitter_order: Tensor | None = None

    def __getitem__(self, name: str):
        if name not in self.keys():
            raise KeyError(name)
        return getattr(self, name)

    def keys(self):
        """The fields it holds (the optional ones only when set), as a dict's keys view (set-like)."""
        return dict.fromkeys(f.name for f in fields(self)
                             if not (f.name in _OPTIONAL and getattr(self, f.name) is None)).keys()

    def network_frames(self) -> Tensor:
        """The frames the networks see, before any jitter on the device: ``color_aug`` or ``color``."""
        return self.color if self.color_aug is None else self.color_aug

    def images(self) -> tuple[Tensor, Tensor]:
        """``(color, color_aug)`` ``(F, 3, H, W)`` float32 in ``[0, 1]`` on the CPU, the colour jitter
        applied: what the training device computes from this sample (for inspection and tests)."""
        color, color_aug, _ = collate([self]).network_images("cpu")
        return color[0], color_aug[0]


_OPTIONAL = ("color_aug", "T_stereo", "depth_in", "jitter", "jitter_order")


@dataclass(frozen=True)
class BadSample:
    """Stands in for a sample that could not be read; ``message`` names the sample and the file."""

    message: str


@dataclass
class FrameBatch:
    """A stack of training samples (all tensors on the CPU until :meth:`to`).

    ``color``: ``(B, F, 3, H, W)`` un-jittered frames, uint8 (from the loader) or float in
    ``[0, 1]``, the target first, in the order of ``data.frame_ids`` (the stereo partner last) --
    what the loss compares. ``color_aug``: the frames the networks see when they differ from
    ``color`` before the device's jitter (jittered in the loader, or the un-zoomed frames of zoom
    from the source frame), else None. ``K``: ``(B, 3, 3)`` intrinsics in pixels of the ``H x W``
    frames. ``index``: ``(B,)`` sample indices. ``T_stereo``: ``(B, 4, 4)`` target ->
    stereo-partner transforms, or None without stereo. ``depth_in``: ``(B, 3, H, W)`` the depth
    network's input where it is not the networks' target frame (zoom from the source frame,
    :class:`FrameSample`), else None. ``jitter``/``jitter_order``: ``(B, 4)`` the colour jitter
    :meth:`network_images` applies on the device, or None. ``bad_samples``: messages of the samples
    dropped from this batch. ``B`` may be 0 when every sample was bad.
    """

    color: Tensor
    color_aug: Tensor | None
    K: Tensor
    index: Tensor
    T_stereo: Tensor | None = None
    bad_samples: list[str] = field(default_factory=list)
    depth_in: Tensor | None = None
    jitter: Tensor | None = None
    jitter_order: Tensor | None = None

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def _map(self, fn) -> FrameBatch:
        """A copy with ``fn`` applied to every tensor field."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return FrameBatch(**{k: fn(v) if isinstance(v, Tensor) else v for k, v in values.items()})

    def head(self, n: int = 1) -> FrameBatch:
        """The first ``n`` samples (views of every field, the jitter parameters included)."""
        return self._map(lambda t: t[:n])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> FrameBatch:
        """The tensors on ``device``; the jitter parameters stay where they are (the host decides
        from them which sample takes which operation, :func:`data.color_jitter.color_jitter`)."""
        keep = {"jitter", "jitter_order"}
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return FrameBatch(**{k: v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) and k not in keep
                             else v for k, v in values.items()})

    def pin_memory(self) -> FrameBatch:
        """Called by ``DataLoader(pin_memory=True)``: page-locked copies for asynchronous transfer."""
        return self._map(lambda t: t.pin_memory())

    def network_images(self, device: torch.device | str,
                       non_blocking: bool = True) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(color, color_aug, depth_in)`` as float32 in ``[0, 1]`` on ``device``: the loss's
        un-jittered frames, the networks' jittered frames (``(B, F, 3, H, W)`` each) and the depth
        network's input where it is not ``color_aug[:, 0]`` (else None). uint8 frames are
        converted there; the jitter runs there (:func:`data.color_jitter.color_jitter`)."""
        color = _as_float(self.color.to(device, non_blocking=non_blocking))
        color_aug = color if self.color_aug is None else _as_float(self.color_aug.to(device, non_blocking=non_blocking))
        depth_in = None if self.depth_in is None else _as_float(self.depth_in.to(device, non_blocking=non_blocking))
        if self.jitter is not None:
            color_aug = color_jitter(color_aug, self.jitter, self.jitter_order)
            if depth_in is not None:
                depth_in = color_jitter(depth_in, self.jitter, self.jitter_order)
        return color, color_aug, depth_in


def _as_float(t: Tensor) -> Tensor:
    """uint8 frames -> float32 in ``[0, 1]``; float frames as float32."""
    return t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()


def _stack(tensors: list[Tensor]) -> Tensor:
    """``torch.stack`` that keeps the samples' memory layout (frames: channels innermost,
    :func:`data.frames.frames_to_uint8`) for every rank: the new batch dimension outermost, the
    others in the samples' own stride order. In a loader worker the batch is stacked straight into
    shared memory (as ``default_collate``), so it reaches the training process without another copy;
    either way a batch from a worker is the batch the training process would have stacked, stride
    for stride."""
    first = tensors[0]
    physical = sorted(range(first.dim()), key=lambda d: -first.stride(d))  # outermost first
    views = [t.permute(physical) for t in tensors]
    if get_worker_info() is None:
        out = torch.stack(views)
    else:
        storage = first._typed_storage()._new_shared(first.numel() * len(tensors), device=first.device)
        out = first.new(storage).resize_(len(tensors), *views[0].shape)
        torch.stack(views, out=out)
    return out.permute(0, *(1 + physical.index(d) for d in range(first.dim())))


def _stack_field(good: list[FrameSample], name: str) -> Tensor | None:
    """The field stacked over the samples; None when the first sample has none."""
    if getattr(good[0], name) is None:
        return None
    return _stack([getattr(s, name) for s in good])


def collate(samples: list) -> FrameBatch:
    """Stack the :class:`FrameSample` objects into a :class:`FrameBatch`; ``None`` samples are dropped, and
    so are :class:`BadSample` markers, whose messages go to ``bad_samples``. ``color_aug`` is
    stacked when any sample has one (the others contribute their ``color``)."""
    bad = [s.message for s in samples if isinstance(s, BadSample)]
    good = [s for s in samples if s is not None and not isinstance(s, BadSample)]
    if not good:
        empty = torch.empty(0)
        return FrameBatch(empty, None, empty, torch.empty(0, dtype=torch.int64), bad_samples=bad)
    color_aug = (_stack([s.network_frames() for s in good]) if any(s.color_aug is not None for s in good)
                 else None)
    return FrameBatch(_stack([s.color for s in good]), color_aug, _stack([s.K for s in good]),
                      torch.tensor([s.index for s in good]), _stack_field(good, "T_stereo"), bad,
                      _stack_field(good, "depth_in"), _stack_field(good, "jitter"),
                      _stack_field(good, "jitter_order"))
