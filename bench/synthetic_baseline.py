"""Does the geometry learn? The README's train command against a trivial depth prior.

Runs ``python train.py --config configs/synthetic.yaml`` (data generation included when the cache
is empty; pass --fresh to regenerate it), then scores on the synthetic test frames with the Eigen
protocol (per-image median scaling, Garg crop, 80 m cap):

* the trained model's final validation (``metrics.json`` of the run), and
* the prior: the per-pixel mean of the training frames' GT depth maps, median-scaled the same way.

Prints both and their ratio; the acceptance is ratio <= 0.7.

    python bench/synthetic_baseline.py [--fresh] [--run-dir runs/synthetic_bench] [key=value ...]
    python bench/synthetic_baseline.py --no-train --run-dir runs/synthetic   # score an existing run
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from data.splits import read_split_file, split_file
from data.velodyne import benchmark_png_path, read_benchmark_png
from depth.config import load_config
from depth.eval.metrics import compute_depth_metrics, markdown_metrics_table

ROOT = Path(__file__).resolve().parents[1]


def training_gt_maps(root: Path, split: str) -> list[np.ndarray]:
    """GT maps of the training frames that have one (the generator writes every k-th)."""
    maps = []
    for e in read_split_file(split_file(split, "train")):
        p = benchmark_png_path(root, e.folder, e.frame, e.side)
        if p.is_file():
            maps.append(read_benchmark_png(p))
    if not maps:
        raise SystemExit(f"no training GT maps under {root}")
    return maps


def mean_depth_prior(maps: list[np.ndarray], max_depth: float = 80.0) -> np.ndarray:
    """Per-pixel mean of valid depths (0 = invalid); pixels never valid get ``max_depth``."""
    stack = np.stack(maps).astype(np.float64)
    valid = stack > 0
    count = valid.sum(0)
    mean = np.where(count > 0, stack.sum(0) / np.maximum(count, 1), max_depth)
    return mean.astype(np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "synthetic.yaml"))
    ap.add_argument("--run-dir", default="runs/synthetic_bench", help="run folder (training replaces a run there)")
    ap.add_argument("--fresh", action="store_true", help="delete the synthetic data cache first")
    ap.add_argument("--no-train", action="store_true", help="only score the existing run in --run-dir")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    overrides = [f"output.dir={args.run_dir}", *args.overrides]
    cfg = load_config(args.config, overrides)
    root = Path(cfg.data.root)
    seconds = None
    if not args.no_train:
        if args.fresh and root.exists():
            shutil.rmtree(root)
        t0 = time.time()
        subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", args.config, *overrides,
                        "output.overwrite=true"],
                       check=True, cwd=ROOT)
        seconds = time.time() - t0
    run = json.loads((Path(args.run_dir) / "metrics.json").read_text())

    test = read_split_file(split_file(cfg.data.split, "test"))
    gt = [read_benchmark_png(benchmark_png_path(root, e.folder, e.frame, e.side)) for e in test]
    prior_depth = mean_depth_prior(training_gt_maps(root, cfg.data.split))
    prior_disp = np.repeat((1.0 / prior_depth)[None], len(gt), 0)
    prior = compute_depth_metrics(prior_disp, gt, median_scaling=True)

    print(f"\nsynthetic test frames: {len(gt)} (model validated on {run.get('n_images')})")
    if seconds is not None:
        print(f"train command wall time: {seconds / 60:.1f} min (steps: {run['steps']})")
    print(markdown_metrics_table({f"model ({run['steps']} steps)": run, "prior: mean training depth": prior}))
    ratio = run["abs_rel"] / prior["abs_rel"]
    print(f"\nabs rel ratio model / prior = {ratio:.3f}  (acceptance: <= 0.70)  "
          f"{'PASS' if ratio <= 0.7 else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
