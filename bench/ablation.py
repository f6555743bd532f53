"""What each engine buys: baseline, +zoom, +DCA, +both on the synthetic data, same CPU budget.

Each variant is trained from scratch for the same number of steps (same data, batch, size) with
several seeds, then scored on the synthetic test drive (Eigen protocol, median scaling):

* abs rel / sq rel / RMSE / δ1 on the full image, and
* the zoom-robustness gap (docs/method.md §7): abs rel when predicting on the 2x centre zoom minus abs rel
  of the full-image prediction cropped to the same window. A scale-invariant model has gap ~ 0;
* the zoom depth shift (``depth.evaluation.zoom_robustness``): median over images of
  median(zoomed depth) / median(cropped depth) on the same GT pixels. Per-image median scaling
  removes any global depth change from the gap; the shift shows it: 1 = zooming does not move the
  predicted scene, 0.5 = depth follows apparent size (the bias zoom imitation is meant to remove).

    python bench/ablation.py [--steps 300] [--seeds 0 1] [--variants baseline zoom dca zoom_dca]
    python bench/ablation.py --no-train --seeds 0 1   # rescore the checkpoints already in --out

lr schedule: the preset's (constant in configs/synthetic.yaml); ``--decay-at F`` drops it by
``optim.gamma`` after the fraction F of the steps (``optim.step_milestones``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.atomic import atomic_write_text  # noqa: E402
from data.datasets import build_training_data  # noqa: E402
from data.kitti import image_path  # noqa: E402
from data.frames import read_image  # noqa: E402
from data.splits import read_split_file, split_file  # noqa: E402
from data.synthetic import ensure_synthetic  # noqa: E402
from data.velodyne import benchmark_png_path, read_benchmark_png  # noqa: E402
from depth.config import load_config  # noqa: E402
from depth.evaluation import zoom_robustness  # noqa: E402
from depth.metrics import compute_depth_metrics  # noqa: E402
from depth.model import load_model, predict_disparities  # noqa: E402
from depth.trainer import Trainer, ValidationData  # noqa: E402

VARIANTS = {
    "baseline": [],
    "zoom": ["augment.zoom_prob=0.5"],
    "dca": ["model.dca=true"],
    "zoom_dca": ["augment.zoom_prob=0.5", "model.dca=true"],
}
COLS = ("abs_rel", "sq_rel", "rmse", "a1", "gap", "depth_shift")


def variant_config(name: str, seed: int, steps: int, decay_at: float | None, extra: list[str], out: Path):
    return load_config(ROOT / "configs" / "synthetic.yaml", [
        f"train.seed={seed}", f"train.max_steps={steps}", f"output.dir={out / f'{name}_s{seed}'}",
        "output.overwrite=true",  # a rerun of the bench replaces its own runs
        *([f"optim.step_milestones=[{int(round(decay_at * steps))}]"] if decay_at else []),
        # validate and save once, at the end (0 would mean "every epoch": a few steps here)
        f"train.val_every={steps}", f"train.checkpoint_every={steps}", "train.image_every=0", "train.progress=false",
        *VARIANTS[name], *extra])


def score(net, cfg, test_images, test_gt, full: dict | None = None) -> dict:
    """Full-image metrics (unless given: the trainer's validation on the same frames computes the
    same numbers) and the zoom-robustness figures of one trained net."""
    net = net.eval()
    size = (cfg.data.width, cfg.data.height)
    kw = dict(min_depth=cfg.model.min_depth, max_depth=cfg.model.max_depth)
    if full is None:
        full = compute_depth_metrics(predict_disparities(net, test_images, size, **kw), test_gt)
    return {**{k: full[k] for k in ("abs_rel", "sq_rel", "rmse", "a1")},
            **zoom_robustness(net, test_images, test_gt, size, 2.0, **kw)}


def run_variant(name: str, seed: int, steps: int, decay_at: float | None, extra: list[str], out: Path, test_images,
                test_gt, train: bool = True) -> dict:
    cfg = variant_config(name, seed, steps, decay_at, extra, out)
    if not train:
        nets, _ = load_model(Path(cfg.output.dir) / "checkpoints", map_location="cpu")
        return {**score(nets.depth_net, cfg, test_images, test_gt), "seconds": float("nan")}
    train_set, val_images, val_gt = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
    trainer = Trainer(cfg, train_set, ValidationData(val_images, val_gt))
    t0 = time.time()
    result = trainer.fit()  # validation = the synthetic test frames
    seconds = time.time() - t0
    return {**score(trainer.depth_net, cfg, test_images, test_gt, full=result), "seconds": seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--decay-at", type=float, default=None,
                    help="lr *= optim.gamma after this fraction of --steps (Monodepth2: 0.75); "
                         "default: the preset's schedule (constant lr in configs/synthetic.yaml)")
    ap.add_argument("--out", type=Path, default=Path("runs/ablation_bench"))
    ap.add_argument("--no-train", action="store_true",
                    help="score the checkpoints of an earlier run in --out (same --steps/--seeds) instead of training")
    ap.add_argument("overrides", nargs="*", help="extra config overrides for every run")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    cfg = load_config(ROOT / "configs" / "synthetic.yaml", args.overrides)
    if cfg.data.synthetic.generate:
        s = cfg.data.synthetic
        ensure_synthetic(cfg.data.root, s.seed, s.drives, s.frames, s.test_drives, verbose=True)
    root = Path(cfg.data.root)
    test = read_split_file(split_file(cfg.data.split, "test"))
    test_images = [read_image(image_path(root, e)) for e in test]
    test_gt = [read_benchmark_png(benchmark_png_path(root, e.folder, e.frame, e.side)) for e in test]

    rows: dict[str, list[dict]] = {name: [] for name in args.variants}
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:  # seed-major: an interrupted run still compares every variant
        for name in args.variants:
            r = run_variant(name, seed, args.steps, args.decay_at, args.overrides, args.out, test_images, test_gt,
                            train=not args.no_train)
            rows[name].append({"seed": seed, **r})
            print(f"{name:9s} seed {seed}: " + ", ".join(f"{k}={v:.4f}" for k, v in r.items()), flush=True)
            atomic_write_text(args.out / ("ablation_rescored.json" if args.no_train else "ablation.json"),
                              json.dumps(rows, indent=2))

    print(f"\n{len(test)} synthetic test frames; {args.steps} steps per run at {cfg.data.width}x{cfg.data.height}, "
          f"batch {cfg.train.batch_size}, seeds {args.seeds}; mean ± std over seeds")
    print("| variant | abs rel | sq rel | RMSE | δ1 | zoom gap (2x zoom − crop abs rel) | zoom depth shift (1 = invariant) "
          "| s/run |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rs in rows.items():
        cells = []
        for k in COLS:
            v = np.array([r[k] for r in rs])
            cells.append(f"{v.mean():.4f} ± {v.std():.4f}")
        print(f"| {name} | " + " | ".join(cells) + f" | {np.mean([r['seconds'] for r in rs]):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
