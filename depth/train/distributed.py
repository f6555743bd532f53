"""Collectives of a multi-process run, on the device their process group can use.

NCCL moves only CUDA tensors and gloo only CPU ones (gloo's CUDA support is partial and absent
for some ops), so a CPU tensor handed to an NCCL all-reduce fails -- at the end of the first epoch
of every multi-GPU run, the day a collective was written with ``torch.tensor([n])``. Every
collective of the trainer goes through :func:`all_reduce_`, which moves its tensor to the group's
device (:func:`collective_device`) and the result back where the caller's tensor lives; the
tests check that no other ``torch.distributed.all_reduce`` call exists in the project.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["is_distributed", "collective_device", "all_reduce_"]


def is_distributed() -> bool:
    """True when a default process group is initialised (any world size)."""
    return dist.is_available() and dist.is_initialized()


def collective_device(group=None) -> torch.device:
    """The device whose tensors ``group``'s (default: the default group's) backend reduces: the
    current CUDA device for NCCL, the CPU for gloo (and any other backend)."""
    backend = str(dist.get_backend(group)).lower()
    if "nccl" in backend:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_(tensor: Tensor, op=dist.ReduceOp.SUM, device: torch.device | str | None = None,
                group=None) -> Tensor:
    """``torch.distributed.all_reduce`` of ``tensor`` in place, run on ``device`` (default
    :func:`collective_device` of ``group``): the tensor is copied there when it lives elsewhere and
    the result copied back. Returns ``tensor`` (on its own device, holding the reduced values)."""
    device = torch.device(device) if device is not None else collective_device(group)
    work = tensor if tensor.device == device else tensor.to(device)
    dist.all_reduce(work, op=op, group=group)
    if work is not tensor:
        tensor.copy_(work.to(tensor.device))
    return tensor

