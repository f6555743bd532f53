"""Why scratch training stalls, and what makes it fast: short runs of the synthetic preset from
scratch with one change at a time, validated every ``--every`` steps.

Reference: ``monodepth2`` = the synthetic preset with Monodepth2's initialisation and optimiser
(pose outputs x0.01, default depth-head init, Adam 1e-4 constant, no warm-up): the values the
KITTI presets keep, as they start from ImageNet weights. Each other variant changes that:

* ``pose_t0.1``     pose translation output x0.1 instead of x0.01;
* ``init1_t0.5``    depth heads start at depth 1.0 (``model.init_depth``) + translation x0.5;
* ``init1_t2``      ... + translation x2;
* ``lr3e-4``        Adam 3e-4 after a 50-step warm-up from lr/3;
* ``t0.1_lr3e-4``   translation x0.1 + lr 3e-4 with warm-up;
* ``preset``        ``configs/synthetic.yaml`` as it is (init_depth 1, translation x0.1, lr 3e-4
  with warm-up, x0.1 at step 700).

Per variant it prints abs rel at each validation and the mean |translation| the pose net
predicts (training units) over the first and the last 10 steps, and the median GT / predicted
depth ratio at the end (the network's unit in metres). Warps move pixels by about f |t| / depth:
the true motion is about 1 m per frame at a ~14 m median depth on this street (|t| / depth ~ 0.07);
Monodepth2's initialisation starts near 0.002 / 0.2 = 0.01.

    python bench/scratch.py [--variants monodepth2 preset] [--steps 300] [--every 100]

Results go to ``--out``/<variant>.json after every validation; a rerun skips variants whose file
holds the requested steps. Single seed: differences below ~0.02 abs rel are within run-to-run
noise at these budgets.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from common.atomic import atomic_write_text
from data.datasets import build_training_data
from depth.config import load_config
from depth.train.trainer import Trainer, ValidationData

ROOT = Path(__file__).resolve().parents[1]

MONODEPTH2 = ["model.init_depth=0", "model.pose_translation_scale=0.01", "optim.lr=1e-4",
              "optim.warmup_steps=0", "optim.step_milestones=[]", "optim.milestones=[1000]"]
VARIANTS = {
    "monodepth2": MONODEPTH2,
    "pose_t0.1": MONODEPTH2 + ["model.pose_translation_scale=0.1"],
    "init1_t0.5": MONODEPTH2 + ["model.init_depth=1.0", "model.pose_translation_scale=0.5"],
    "init1_t2": MONODEPTH2 + ["model.init_depth=1.0", "model.pose_translation_scale=2.0"],
    "lr3e-4": MONODEPTH2 + ["optim.lr=3e-4", "optim.warmup_steps=50"],
    "t0.1_lr3e-4": MONODEPTH2 + ["model.pose_translation_scale=0.1", "optim.lr=3e-4", "optim.warmup_steps=50"],
    "preset": [],
}


def run(name: str, steps: int, every: int, out: Path, extra: list[str]) -> dict:
    cfg = load_config(ROOT / "configs" / "synthetic.yaml", [
        *VARIANTS[name], *extra, f"train.max_steps={steps}", f"train.val_every={every}",
        f"train.checkpoint_every={steps}", "train.image_every=0", "train.progress=false",
        f"output.dir={out / name}", "output.overwrite=true"])
    train_set, val_images, val_gt = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
    trainer = Trainer(cfg, train_set, ValidationData(val_images, val_gt))
    trace = {"variant": name, "overrides": VARIANTS[name] + extra, "steps": steps, "val": [], "t": []}
    trainer.pose_net.register_forward_hook(lambda m, i, o: trace["t"].append(o[1].detach().abs().mean().item()))
    validate = trainer.validate
    t0 = time.time()

    def traced_validate() -> dict:
        metrics = validate()
        trace["val"].append({"step": trainer.step_count, "abs_rel": metrics["abs_rel"], "a1": metrics["a1"],
                             "ratio_median": metrics["ratio_median"], "seconds": time.time() - t0})
        atomic_write_text(out / f"{name}.json", json.dumps(trace))
        print(f"{name} step {trainer.step_count}: abs rel {metrics['abs_rel']:.4f}", flush=True)
        return metrics

    trainer.validate = traced_validate
    trainer.fit()
    trace["done"] = True
    atomic_write_text(out / f"{name}.json", json.dumps(trace))
    return trace


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("runs/scratch_bench"))
    ap.add_argument("overrides", nargs="*", help="extra overrides for every variant")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    traces = []
    for name in args.variants:
        f = args.out / f"{name}.json"
        old = json.loads(f.read_text()) if f.is_file() else None
        traces.append(old if old and old.get("done") and old["steps"] == args.steps
                      else run(name, args.steps, args.every, args.out, args.overrides))
    checkpoints = sorted({v["step"] for t in traces for v in t["val"]})
    print("\nsynthetic street, 192x64, batch 6, from scratch, seed 0; abs rel at each step "
          "(prior 'per-pixel mean training depth': 0.198)")
    print("| variant | " + " | ".join(f"@{s}" for s in checkpoints) + " | mean abs(t), steps 1-10 | mean abs(t), last 10 | "
          "median GT / predicted depth at the end |")
    print("|---|" + "---|" * (len(checkpoints) + 3))
    for t in traces:
        by_step = {v["step"]: v["abs_rel"] for v in t["val"]}
        cells = [f"{by_step[s]:.3f}" if s in by_step else "—" for s in checkpoints]
        ts = np.array(t["t"])  # two pose calls per step (sources -1 and +1)
        ratio = t["val"][-1]["ratio_median"] if t["val"] else float("nan")
        print(f"| {t['variant']} | " + " | ".join(cells) + f" | {ts[:20].mean():.4f} | {ts[-20:].mean():.4f} | "
              f"{ratio:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
