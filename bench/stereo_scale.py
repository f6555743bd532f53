"""Does mono+stereo (MS) training learn metric scale? Fixed stereo scale versus median scaling.

Trains ``configs/synthetic_stereo.yaml`` (the synthetic street's image_02 / image_03 pairs, 0.54 m
apart, frames [0, -1, 1] + stereo) unless --no-train, then predicts every synthetic test frame with
the final checkpoint and scores it with the project's metrics (Eigen protocol: Garg crop, 80 m cap)
two ways:

* ``--stereo``: depth x the scale implied by the training baseline
  (``depth.eval.scale.stereo_scale``: stereo_baseline_metric / stereo_baseline), no median scaling;
* median scaling per image (how monocular models are scored).

Prints both abs rel figures, their ratio (acceptance: fixed / median <= 1.5) and the median ratio
GT / prediction (1.0 = perfectly metric).

    python bench/stereo_scale.py [--run-dir runs/synthetic_stereo] [key=value ...]
    python bench/stereo_scale.py --no-train --run-dir runs/synthetic_stereo
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from data.kitti import KittiImageSet
from data.splits import read_split_file, split_file
from data.velodyne import benchmark_png_path, read_benchmark_png
from depth.config import load_config
from depth.eval.metrics import compute_depth_metrics, markdown_metrics_table
from depth.eval.scale import stereo_scale
from depth.inference import predict_disparities
from depth.model import load_model

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "synthetic_stereo.yaml"))
    ap.add_argument("--run-dir", default="runs/synthetic_stereo", help="run folder (training replaces a run there)")
    ap.add_argument("--no-train", action="store_true", help="only score the existing run in --run-dir")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    overrides = [f"output.dir={args.run_dir}", *args.overrides]
    load_config(args.config, overrides)  # a bad key stops here, before any training
    seconds = None
    if not args.no_train:
        t0 = time.time()
        subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", args.config, *overrides,
                        "output.overwrite=true"],
                       check=True, cwd=ROOT)
        seconds = time.time() - t0

    nets, saved = load_model(Path(args.run_dir) / "checkpoints", map_location="cpu")
    scale = stereo_scale(saved)
    if scale is None:
        raise SystemExit(f"{args.run_dir} was not trained with data.stereo=true")
    root = Path(saved.data.root)
    test = read_split_file(split_file(saved.data.split, "test"))
    gt = [read_benchmark_png(benchmark_png_path(root, e.folder, e.frame, e.side)) for e in test]
    disp = predict_disparities(nets.depth_net, KittiImageSet(root, test), (saved.data.width, saved.data.height),
                               min_depth=saved.model.min_depth, max_depth=saved.model.max_depth)
    fixed = compute_depth_metrics(disp, gt, median_scaling=False, fixed_scale=scale)
    median = compute_depth_metrics(disp, gt, median_scaling=True)

    print(f"\nsynthetic test frames: {len(gt)}; run {args.run_dir} (steps: {saved.train.max_steps}, "
          f"stereo_baseline {saved.data.stereo_baseline} -> fixed scale {scale:g})")
    if seconds is not None:
        print(f"train command wall time: {seconds / 60:.1f} min")
    print(markdown_metrics_table({f"--stereo (x{scale:g}, no median scaling)": fixed, "median scaling": median}))
    print(f"\nmedian ratio GT / (scaled) prediction: {median['ratio_median'] / scale:.3f} "
          f"(std {median['ratio_std']:.3f}); 1.0 = metric")
    ratio = fixed["abs_rel"] / median["abs_rel"]
    print(f"abs rel fixed / median = {ratio:.3f}  (acceptance: <= 1.5)  {'PASS' if ratio <= 1.5 else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
