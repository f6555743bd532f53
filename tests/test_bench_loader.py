"""bench/loader.py runs its pipelines through the project's collate (a smoke test of the bench) and
counts the bytes of a batch."""
from __future__ import annotations

from bench.loader import PILReference, batch_bytes, measure
from data.kitti import KittiRawDataset
from data.splits import read_split_file


def test_loader_bench_pipelines_and_batch_bytes(tiny_synthetic):
    entries = read_split_file(tiny_synthetic / "splits" / "train_files.txt")
    h, w = 64, 192
    frames = 2 * 3 * 3 * h * w  # 2 samples x 3 frames x 3 x H x W
    k_index = 2 * 9 * 4 + 2 * 8  # K float32, index int64
    expected = {
        # uint8 frames + the jitter's parameters (2 x 4 float32, 2 x 4 int64)
        "device": (KittiRawDataset(tiny_synthetic, entries, h, w, seed=0), frames + k_index + 2 * 4 * 4 + 2 * 4 * 8),
        # uint8 frames twice (jittered in the loader)
        "loader": (KittiRawDataset(tiny_synthetic, entries, h, w, seed=0, jitter_on="loader", color_jitter_prob=1.0),
                   2 * frames + k_index),
        # the Monodepth2-style reference: float32 frames twice
        "reference": (PILReference(tiny_synthetic, entries, h, w, "png"), 2 * 4 * frames + k_index),
    }
    for name, (ds, n_bytes) in expected.items():
        assert measure(ds, 2, 0, 4) > 0, name
        assert batch_bytes(ds, 2) == n_bytes, name
