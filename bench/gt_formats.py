#!/usr/bin/env python
"""GT file formats: size on disk and load time of the sparse file, the compressed dense file
(Monodepth2's gt_depths.npz) and, as the reference, the uncompressed dense maps; and what
``evaluate.py export-gt --format auto`` picks.

    python bench/gt_formats.py --data-path .cache/synthetic_kitti --split .cache/synthetic_kitti/splits
    python bench/gt_formats.py --data-path .cache/synthetic_kitti --split .cache/synthetic_kitti/splits \\
        --gt-source benchmark                        # the synthetic dense maps
    python bench/gt_formats.py --data-path KITTI_RAW --split eigen

Measured figures are in docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from data.splits import read_split_file, split_file
from depth.eval.gt import choose_gt_format, export_gt, load_gt, save_dense_gt, save_sparse_gt

MIB = 2 ** 20


def _best_load(path: Path, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        load_gt(path)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-path", required=True)
    ap.add_argument("--split", required=True, help="a built-in split, a split folder or a .txt file")
    ap.add_argument("--gt-source", choices=["velodyne", "benchmark"], default="velodyne")
    ap.add_argument("--repeats", type=int, default=3, help="load-time repeats (best is reported)")
    args = ap.parse_args()

    entries = read_split_file(split_file(args.split, "test"))
    gt = export_gt(args.data_path, entries, mode=args.gt_source, progress=False)
    n_pixels = sum(h * w for h, w in gt.shapes)
    valid = int(gt.img_ptr[-1]) / n_pixels
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {"sparse (uncompressed)": Path(tmp) / "sparse.npz",
                 "dense, compressed (Monodepth2)": Path(tmp) / "dense.npz",
                 "dense, uncompressed (reference)": Path(tmp) / "dense_raw.npz"}
        save_sparse_gt(files["sparse (uncompressed)"], gt)
        save_dense_gt(files["dense, compressed (Monodepth2)"], gt, compressed=True)
        save_dense_gt(files["dense, uncompressed (reference)"], gt, compressed=False)
        ref = files["dense, uncompressed (reference)"].stat().st_size
        for name, path in files.items():
            size = path.stat().st_size
            rows.append((name, size / MIB, size / ref, _best_load(path, args.repeats)))
    print(f"\n{len(gt)} {args.gt_source} maps from {args.data_path} (split {args.split}), "
          f"{100 * valid:.1f} % of the pixels valid; export-gt --format auto picks: {choose_gt_format(gt)}\n")
    print("| file | MiB | / uncompressed dense | load s (best of %d) |" % args.repeats)
    print("|---|---|---|---|")
    for name, mib, rel, load in rows:
        print(f"| {name} | {mib:.2f} | {rel:.3f} | {load:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
