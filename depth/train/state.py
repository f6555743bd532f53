"""What a checkpoint of a training run holds and how a run is restored from one, and the run's
training time over its sittings.

A checkpoint stores the networks, optimiser and scaler states with the run's positions: step,
epoch, batch in the epoch (the sampler's position), the global generators (plain values:
:func:`depth.train.randomness.rng_states`), the last validation metrics and the training seconds so
far. Everything else a step draws is a function of ``(seed, step, rank)``, a sample's augmentation
of ``(seed, epoch, index)``, the lr of ``(step, epoch)``: a resumed run repeats the uninterrupted one.
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from depth.config import to_dict
from depth.io import checkpoint as checkpoint_files
from depth.io.checkpoint import library_versions
from depth.train.randomness import rng_states, set_rng_states

if TYPE_CHECKING:
    from depth.train.trainer import Trainer

__all__ = ["SittingClock", "Checkpoints", "NonFiniteLossError", "LateFiniteCheck", "snapshot_buffers"]


def snapshot_buffers(modules) -> Callable[[], None]:
    """Copy the modules' buffers (BatchNorm statistics); the returned function puts them back."""
    buffers = [b for m in modules for b in m.buffers()]
    saved = [b.detach().clone() for b in buffers]

    def restore() -> None:
        with torch.no_grad():
            for buf, old in zip(buffers, saved):
                buf.copy_(old)
    return restore


class NonFiniteLossError(RuntimeError):
    """The loss went NaN or infinite (``train.nan_policy=stop``): a failed run, not bad input; the
    message names the last good checkpoint (:meth:`Checkpoints.nonfinite`)."""


class SittingClock:
    """Seconds spent training over every sitting of a run (a resumed run adds its earlier ones)."""

    def __init__(self, before: float = 0.0):
        self.before = before  # the earlier sittings' seconds
        self.started: float | None = None  # time.time() when this sitting began

    def start(self) -> float:
        self.started = time.time()
        return self.started

    def seconds(self) -> float:
        return self.before + (time.time() - self.started if self.started is not None else 0.0)


class Checkpoints:
    """The checkpoints of one run in ``run_dir/checkpoints``: the state a trainer saves
    (:meth:`state`), writing it (:meth:`save`, rank 0 only, ``keep`` step files kept) and restoring
    a trainer from one (:meth:`restore`)."""

    def __init__(self, run_dir: str | Path, keep: int):
        self.folder = Path(run_dir) / "checkpoints"
        self.keep = keep
        self.saved_step = -1  # the step of the last checkpoint this sitting wrote

    def path_of(self, step: int) -> Path:
        return self.folder / f"step_{step:08d}.pt"

    def holds(self, step: int) -> bool:
        """True when this sitting wrote ``step``'s checkpoint and it is on disk."""
        return self.saved_step == step and self.path_of(step).is_file()

    def nonfinite(self, value: float, step: int) -> NonFiniteLossError:
        """The error of a non-finite loss at the step after ``step`` completed steps."""
        last = self.folder / "last.pt"
        where = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written before it"
        return NonFiniteLossError(f"non-finite loss ({value}) at step {step + 1} (after {step} completed steps); "
                                  f"{where} (set train.nan_policy=skip to skip such steps)")

    @staticmethod
    def state(tr: Trainer) -> dict:
        o = tr.cfg.optim
        return {
            "depth_net": tr.depth_net.state_dict(),
            "pose_net": tr.pose_net.state_dict() if tr.pose_net is not None else None,
            "optimizer": tr.optimizer.state_dict(),
            # the lr is a pure function of (step, epoch): Trainer.lr_at; stored for the record
            "scheduler": {"type": "lr_at(step, epoch)", "lr": tr.lr_at(tr.step_count, tr.epoch),
                          "base_lr": o.lr, "milestones": list(o.milestones),
                          "step_milestones": list(o.step_milestones), "gamma": o.gamma,
                          "warmup_steps": o.warmup_steps, "warmup_start_factor": o.warmup_start_factor},
            "scaler": tr.scaler.state_dict(),
            "config": to_dict(tr.cfg),
            "seed": tr.cfg.train.seed,
            "versions": library_versions(),
            "step": tr.step_count,
            "epoch": tr.epoch,
            "batch_in_epoch": tr.batch_in_epoch,
            "sampler": {"epoch": tr.epoch, "batch_in_epoch": tr.batch_in_epoch,
                        "samples_per_rank_done": tr.batch_in_epoch * tr.batch_per_rank,
                        "world_size": tr.world_size, "global_batch": tr.cfg.train.batch_size},
            "skipped_steps": tr.skipped_steps,
            "bad_samples": tr.bad_samples.total,
            "rng": rng_states(),
            "metrics": tr.last_metrics,
            "train_seconds": tr.clock.seconds(),
        }

    def save(self, tr: Trainer) -> Path | None:
        """Write ``tr``'s checkpoint of its current step (rank 0; None elsewhere)."""
        if not tr.is_main:
            return None
        path = checkpoint_files.save_checkpoint(self.state(tr), self.folder, tr.step_count, self.keep)
        self.saved_step = tr.step_count
        return path

    @staticmethod
    def restore(tr: Trainer, ckpt: dict) -> None:
        """Load ``ckpt`` (a :meth:`state`) into ``tr``: weights, optimiser, scaler, positions, RNG."""
        tr.depth_net.load_state_dict(ckpt["depth_net"])
        if tr.pose_net is not None:
            tr.pose_net.load_state_dict(ckpt["pose_net"])
        tr.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler") and tr.scaler.is_enabled():
            tr.scaler.load_state_dict(ckpt["scaler"])
        tr.step_count, tr.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        tr.batch_in_epoch = int(ckpt.get("batch_in_epoch", 0))
        saved_world = (ckpt.get("sampler") or {}).get("world_size", tr.world_size)
        if saved_world != tr.world_size and tr.batch_in_epoch:
            warnings.warn(f"resuming mid-epoch with {tr.world_size} processes from a run with {saved_world}: "
                          f"the rest of epoch {tr.epoch} is re-sharded, so the run will not repeat the "
                          f"original exactly", stacklevel=3)
        tr.skipped_steps = int(ckpt.get("skipped_steps", 0))
        tr.bad_samples.total = int(ckpt.get("bad_samples", 0))
        set_rng_states(ckpt.get("rng") or {})
        tr.validation.last_metrics = ckpt.get("metrics", {})
        tr.clock.before = float(ckpt.get("train_seconds", 0.0))
        tr.resumed_at = tr.step_count


class LateFiniteCheck:
    """``train.nan_policy=error`` on CUDA without a host-device sync inside the step: each step's
    loss is copied to pinned host memory behind an event (:meth:`put`) and read when the next step
    begins, before a checkpoint or a validation, and at the end (:meth:`check`) -- by then the copy
    has long finished. A non-finite loss still stops the run before any checkpoint holds the
    weights it produced; the error names its step. Disabled (``enabled=False``: the CPU, where
    reading the loss costs nothing, and multi-process runs, whose ranks decide together), the
    trainer checks every step at once."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.pending: tuple[torch.Tensor, object, int] | None = None

    def put(self, loss: torch.Tensor, completed_steps: int) -> None:
        if loss.is_cuda:
            host = torch.empty(1, dtype=torch.float32, pin_memory=True)
            host.copy_(loss.detach().float().reshape(1), non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:  # (tests run the same logic on the CPU)
            host, event = loss.detach().float().reshape(1).clone(), None
        self.pending = (host, event, completed_steps)

    def check(self, checkpoints: Checkpoints) -> None:
        if self.pending is None:
            return
        host, event, steps = self.pending
        self.pending = None
        if event is not None:
            event.synchronize()
        value = float(host[0])
        if not math.isfinite(value):
            raise checkpoints.nonfinite(value, steps)
