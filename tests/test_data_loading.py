"""Training data loading: the pre-resized disk cache and persistent loader workers change nothing."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from data.kitti import KittiRawDataset
from data.samples import collate
from data.splits import read_split_file
from depth.train.sampling import EpochIndexed, ResumableSampler


def _dataset(root, **kw):
    entries = read_split_file(root / "splits" / "train_files.txt")
    return KittiRawDataset(root, entries, 64, 96, seed=3, **kw)


def test_disk_cache_is_bit_identical_and_built_once(tiny_synthetic, tmp_path):
    plain = _dataset(tiny_synthetic)
    cached = _dataset(tiny_synthetic, cache_dir=tmp_path / "cache")
    paths = [p for i in range(len(cached)) for p in cached.paths(i)]
    first = cached.disk_cache.build(paths, progress=False)
    assert first["cached"] == len(set(paths)) and not first["unreadable"]
    again = _dataset(tiny_synthetic, cache_dir=tmp_path / "cache").disk_cache.build(paths, progress=False)
    assert again["cached"] == 0 and again["present"] == len(set(paths))
    for ds in (plain, cached):
        ds.set_epoch(1)
    for i in range(len(plain)):
        a, b = plain[i], cached[i]
        assert a.keys() == b.keys()
        for k in ("color", "jitter", "jitter_order", "K"):
            assert torch.equal(a[k], b[k]), (i, k)
    assert any(cached.disk_cache.get(p) is not None for p in paths)


def test_persistent_workers_follow_the_epoch(tiny_synthetic):
    ds = _dataset(tiny_synthetic)
    sampler = ResumableSampler(len(ds), seed=0, shuffle=False, with_epoch=True)
    loader = DataLoader(EpochIndexed(ds), batch_size=len(ds), sampler=sampler, num_workers=1,
                        persistent_workers=True, collate_fn=collate)
    for epoch in (0, 1, 2):
        sampler.set_epoch(epoch)
        got = next(iter(loader))
        ds.set_epoch(epoch)
        want = collate([ds[i] for i in range(len(ds))])
        for k in ("color", "jitter", "jitter_order"):  # flip and jitter of this epoch
            assert torch.equal(getattr(got, k), getattr(want, k)), (epoch, k)
