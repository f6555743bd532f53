"""The training loader: batches of this rank's shard in the sampler's order, and the count of the
samples dropped from them (``data.on_bad_sample=skip``)."""
from __future__ import annotations

import os
import sys

import cv2
from torch.utils.data import DataLoader, Dataset

from data.samples import BadBatchError, FrameBatch, collate
from depth.train.placement import Placement
from depth.train.run_log import RunLog
from depth.train.sampling import EpochIndexed, ResumableSampler

__all__ = ["training_loader", "one_thread_worker", "resolve_num_workers", "BadSamples"]


def one_thread_worker(worker_id: int) -> None:
    """A loader worker decodes and resizes with one OpenCV thread: the workers are the parallelism
    (OpenCV's own pool in every worker would oversubscribe the cores)."""
    cv2.setNumThreads(1)


def resolve_num_workers(value: int | str, local_ranks: int | None = None) -> int:
    """``train.num_workers``: a count as given; ``auto`` = the cores this process may run on
    (``os.sched_getaffinity``, else ``os.cpu_count``) shared by the ``local_ranks`` processes of this
    node (default ``LOCAL_WORLD_SIZE``, 1), less one for the process itself, at least 0."""
    if value != "auto":
        return int(value)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    ranks = local_ranks if local_ranks is not None else int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, cores // max(1, ranks) - 1)


def training_loader(train_set: Dataset, sampler: ResumableSampler, where: Placement, num_workers: int,
                    skip_errors: tuple[type[BaseException], ...] = ()) -> DataLoader:
    """``where.batch_per_rank`` samples per batch, whole batches only, workers kept across epochs
    (each with one OpenCV thread); a sample raising one of ``skip_errors`` is dropped by
    :func:`data.samples.collate`."""
    return DataLoader(EpochIndexed(train_set, skip_errors), batch_size=where.batch_per_rank, sampler=sampler,
                      num_workers=num_workers, collate_fn=collate, drop_last=True,
                      pin_memory=where.device.type == "cuda", persistent_workers=num_workers > 0,
                      prefetch_factor=2 if num_workers > 0 else None,
                      worker_init_fn=one_thread_worker if num_workers > 0 else None)


class BadSamples:
    """Dropped samples: this epoch's on this rank (``epoch``) and the run's over every rank
    (``total``, stored in checkpoints)."""

    def __init__(self, where: Placement):
        self.where = where
        self.epoch = 0
        self.total = 0

    def keep(self, batch: FrameBatch, epoch: int, batch_in_epoch: int) -> FrameBatch | None:
        """Count the batch's dropped samples (the first one is named on stderr); None when none is
        left. With several processes an empty batch stops the run (:class:`BadBatchError`)."""
        bad = batch.bad_samples
        if bad:
            if self.epoch == 0 and self.where.is_main:
                print(f"data.on_bad_sample=skip: skipping {bad[0]}", file=sys.stderr)
            self.epoch += len(bad)
        if len(batch) > 0:
            return batch
        if self.where.world_size > 1:
            raise BadBatchError(f"rank {self.where.rank}: every sample of a batch at epoch {epoch}, batch "
                                f"{batch_in_epoch} was bad; with several processes such a batch "
                                f"stops the run (first: {bad[0] if bad else '?'})")
        return None

    def end_epoch(self, epoch: int, log: RunLog, step: int) -> None:
        """Add the epoch's count over every rank (a collective when a process group is up) to the
        total; said on stderr and logged when non-zero."""
        n = self.where.all_reduce([self.epoch])[0] if self.where.collectives else self.epoch
        if n and self.where.is_main:
            print(f"epoch {epoch}: skipped {n} bad samples (data.on_bad_sample=skip)", file=sys.stderr)
            log.scalar("data/bad_samples", n, step)
        self.total += n
        self.epoch = 0
