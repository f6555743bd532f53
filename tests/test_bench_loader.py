"""bench/loader.py runs both pipelines through the project's collate (a smoke test of the bench) and
counts the bytes of a batch."""
from __future__ import annotations

from bench.loader import PILReference, batch_bytes, measure
from data.kitti import KittiRawDataset
from data.splits import read_split_file


def test_loader_bench_pipelines_and_batch_bytes(tiny_synthetic):
    entries = read_split_file(tiny_synthetic / "splits" / "train_files.txt")
    h, w = 64, 192
    for ds in (KittiRawDataset(tiny_synthetic, entries, h, w, seed=0), PILReference(tiny_synthetic, entries, h, w, "png")):
        assert measure(ds, 2, 0, 4) > 0
        # color and color_aug: 2 samples x 3 frames x 3 x H x W float32; K 2 x 3 x 3 float32; index int64
        assert batch_bytes(ds, 2) == 2 * 2 * 3 * 3 * h * w * 4 + 2 * 9 * 4 + 2 * 8
