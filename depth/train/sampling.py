"""A resumable, shardable epoch sampler, and the dataset view the training loader reads through.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone, so a run resumed at
``(epoch, batch)`` sees exactly the samples the uninterrupted run would have; with several
processes each rank takes every ``world_size``-th index of the same permutation
(DistributedSampler semantics, padded to a multiple of the world size).

With ``with_epoch=True`` the sampler yields ``(epoch, index)`` pairs and :class:`EpochIndexed`
hands the epoch to the dataset inside whichever loader worker reads the sample: a sample's
augmentation is a function of ``(seed, epoch, index)`` even with persistent workers, whose copy
of the dataset never sees the main process's ``set_epoch``.
"""
from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset, Sampler

from data.samples import BadSample

__all__ = ["ResumableSampler", "EpochIndexed"]


class ResumableSampler(Sampler):
    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, with_epoch: bool = False):
        if num_samples <= 0:
            raise ValueError("the training split is empty")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.num_samples, self.seed, self.shuffle = num_samples, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.with_epoch = with_epoch
        self.epoch = 0
        self.start = 0  # number of this rank's indices to skip (resume mid-epoch)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    @property
    def per_rank(self) -> int:
        """Indices each rank sees per epoch (the split padded to a multiple of the world size)."""
        return -(-self.num_samples // self.world_size)

    def epoch_order(self, epoch: int) -> np.ndarray:
        order = (np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
                 if self.shuffle else np.arange(self.num_samples))
        # pad by wrapping around (as often as needed when there are more ranks than samples)
        order = np.resize(order, self.per_rank * self.world_size)
        return order[self.rank::self.world_size]

    def __len__(self) -> int:
        return max(0, self.per_rank - self.start)

    def __iter__(self):
        indices = self.epoch_order(self.epoch)[self.start:].tolist()
        if self.with_epoch:
            epoch = self.epoch
            return iter([(epoch, i) for i in indices])
        return iter(indices)


class EpochIndexed(Dataset):
    """``view[(epoch, index)]`` -> ``dataset[index]`` with the dataset set to ``epoch`` first.

    With ``skip_errors`` (a tuple of exception types, e.g. ``(data.frames.BadSampleError,)``), a
    sample that raises one of them comes back as a :class:`data.samples.BadSample` for
    :func:`data.samples.collate` to drop and count, instead of stopping the run.
    """

    def __init__(self, dataset: Dataset, skip_errors: tuple = ()):
        self.dataset = dataset
        self.skip_errors = tuple(skip_errors)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (None, key)
        ds = self.dataset
        if epoch is not None and hasattr(ds, "set_epoch") and getattr(ds, "epoch", None) != epoch:
            ds.set_epoch(epoch)
        if not self.skip_errors:
            return self.dataset[index]
        try:
            return self.dataset[index]
        except self.skip_errors as e:
            return BadSample(f"sample {index}: {e}")
