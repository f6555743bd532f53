"""A resumable, shardable epoch sampler.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone, so a run resumed at
``(epoch, batch)`` sees exactly the samples the uninterrupted run would have; with several
processes each rank takes every ``world_size``-th index of the same permutation
(DistributedSampler semantics, padded to a multiple of the world size).
"""
from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler

__all__ = ["ResumableSampler"]


class ResumableSampler(Sampler[int]):
    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1):
        if num_samples <= 0:
            raise ValueError("the training split is empty")
        self.num_samples, self.seed, self.shuffle = num_samples, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0  # number of this rank's indices to skip (resume mid-epoch)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def epoch_order(self, epoch: int) -> np.ndarray:
        order = (np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
                 if self.shuffle else np.arange(self.num_samples))
        per_rank = -(-self.num_samples // self.world_size)
        pad = per_rank * self.world_size - self.num_samples
        if pad:
            order = np.concatenate([order, order[:pad]])
        return order[self.rank::self.world_size]

    def __len__(self) -> int:
        return -(-self.num_samples // self.world_size) - self.start

    def __iter__(self):
        return iter(self.epoch_order(self.epoch)[self.start:].tolist())
