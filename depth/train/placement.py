"""Where a run computes: its rank among the processes, the device, the per-rank batch, mixed
precision, and the networks as the step calls them (SyncBatchNorm, channels_last, DDP).

Multi-process training (``torchrun``): when ``torch.distributed`` is initialised with a world size
above one, both networks are wrapped together in one ``DistributedDataParallel`` (one forward, one
backward, gradients averaged over ranks). ``train.batch_size`` is the **global** batch; each rank
loads ``batch_size / world_size`` samples of its shard of the epoch (:func:`check_global_batch`,
the one place that checks it). Only rank 0 logs, validates, shows progress and writes checkpoints.

Mixed precision (CUDA only): the networks run under ``torch.autocast`` (bf16 where supported,
else fp16 with a ``GradScaler``); the loss (SSIM, exp, log, warping) always runs in fp32.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from depth.config import Config, ConfigError
from depth.train.distributed import all_reduce_, collective_device, is_distributed

__all__ = ["Placement", "place", "check_global_batch", "apply_determinism", "resolve_amp", "wrap_networks"]


@dataclass
class Placement:
    """One process's share of a run: ``rank`` of ``world_size``, its ``device``, the samples it
    loads per step (``batch_per_rank``), the autocast dtype (None = fp32) and whether the networks
    run channels_last. ``collective_device``: where its collectives reduce (None without a process
    group)."""

    rank: int
    world_size: int
    device: torch.device
    batch_per_rank: int
    amp_dtype: torch.dtype | None
    channels_last: bool
    collective_device: torch.device | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def collectives(self) -> bool:
        """True whenever a process group is up (any world size): every rank takes part in them."""
        return self.collective_device is not None

    def autocast(self):
        """The networks' autocast context (a no-op in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def all_reduce(self, values: list[int], op=torch.distributed.ReduceOp.SUM) -> list[int]:
        """All-reduce a few integers over the ranks (one collective on the group's device)."""
        t = torch.tensor(values, dtype=torch.int64)
        return [int(v) for v in all_reduce_(t, op, self.collective_device).tolist()]


def check_global_batch(batch_size: int, world_size: int) -> int:
    """The per-rank batch of the global ``train.batch_size``; :class:`ConfigError` when the processes
    cannot share it evenly."""
    if batch_size % world_size:
        raise ConfigError(f"train.batch_size: the global batch ({batch_size}) must be divisible by the "
                          f"number of processes ({world_size})")
    return batch_size // world_size


def place(cfg: Config, device: str | None = None, rank: int | None = None,
          world_size: int | None = None) -> Placement:
    """This process's :class:`Placement` (rank and world size default to the process group's;
    ``device`` to ``train.device``, ``auto`` = CUDA when available). Also applies
    ``train.deterministic``."""
    dist = is_distributed()
    if rank is None:
        rank = torch.distributed.get_rank() if dist else 0
    if world_size is None:
        world_size = torch.distributed.get_world_size() if dist else 1
    t = cfg.train
    batch_per_rank = check_global_batch(t.batch_size, world_size)
    if world_size > 1 and not dist:
        raise RuntimeError("world_size > 1 needs torch.distributed initialised (run under torchrun)")
    dev = device or t.device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(dev)
    if dev.type == "cuda" and dev.index is None and world_size > 1:
        dev = torch.device("cuda", torch.cuda.current_device())
    return Placement(rank=rank, world_size=world_size, device=dev, batch_per_rank=batch_per_rank,
                     amp_dtype=resolve_amp(t.amp, dev), channels_last=bool(t.channels_last) and dev.type == "cuda",
                     collective_device=collective_device() if dist else None)


def apply_determinism(cfg: Config, device: torch.device) -> None:
    """``train.deterministic``: deterministic kernels (warn-only), no cuDNN autotuning; otherwise
    cuDNN autotunes its convolutions on CUDA (the input size is fixed in training)."""
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None = full fp32).

    ``auto``: bf16 on CUDA devices that support it, else fp16 (with a GradScaler); off on CPU.
    Explicit ``bf16``/``fp16`` on a CPU run are ignored with a warning (CPU autocast is not used:
    its gradients drift from fp32, see the docs)."""
    if amp == "off":
        return None
    if device.type != "cuda":
        if amp in ("bf16", "fp16"):
            warnings.warn(f"train.amp={amp} is for CUDA; training in fp32 on {device.type}", stacklevel=2)
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def wrap_networks(nets: nn.Module, where: Placement, sync_bn: bool) -> tuple[nn.Module, nn.Module]:
    """``(nets, model)``: the networks converted for ``where`` (SyncBatchNorm with ``sync_bn`` over
    several processes, channels_last) and the module the step calls (``nets`` itself, or the one
    ``DistributedDataParallel`` around both networks)."""
    if where.world_size > 1 and sync_bn:
        if where.device.type != "cuda":
            raise ConfigError("train.sync_bn=true needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel); "
                              "on CPU every process keeps its own BatchNorm statistics")
        nets = nn.SyncBatchNorm.convert_sync_batchnorm(nets)
    if where.channels_last:
        nets = nets.to(memory_format=torch.channels_last)
    if where.world_size == 1:
        return nets, nets
    ids = [where.device.index] if where.device.type == "cuda" else None
    return nets, DistributedDataParallel(nets, device_ids=ids, output_device=ids[0] if ids else None)
