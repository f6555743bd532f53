"""Through other lenses: does a model's depth follow apparent size, or the geometry?

The synthetic test drive is rendered again through lenses of other focal lengths (same poses and
scene, intrinsics in the calibration files: ``python -m data.synthetic --lens-factors 0.75 1.5``,
data/synthetic/lenses.py). Every finished run of ``bench/ablation.py`` in ``--out`` is scored on
each lens through the one prediction path (``depth.inference.predict_disparities``), dense GT, Eigen
protocol (Garg crop, 80 m cap):

* **median**: abs rel and δ1 with per-image median scaling (what the ablation table reports);
* **fixed**: one scale per model, the median of the per-image ratios on the training lens (x1),
  applied unchanged to every lens -- what a deployed model that was scaled once would give;
* **scale ratio**: the lens' median ratio / the x1 lens' ratio; 1 = the model's depth follows the
  geometry (it predicts the true depth through every lens, so one scale serves all). A network that
  reads depth from apparent size predicts a scene f times nearer through an f-times longer lens
  (ratio about f: 1.5 at x1.5, 0.75 at x0.75); so does one that predicts the same depth map
  whatever it sees (measured: an untrained network gives 0.76 / 1.43), because the narrower view
  holds farther scene. A model that has detached depth from apparent size keeps ratio 1 and its
  fixed error across lenses;
* stereo-trained runs (``stereo``, ``zoom_stereo``: metric depth from the stereo baseline) are
  also scored with **no scaling at all** (``metric``: their stereo factor only).

    python bench/cameras.py [--variants ...] [--seeds 0 1 2] [--lens-factors 0.75 1.5] [--network exact] \
        --out runs/ablation data.root=... data.split=...      (overrides after a one-value flag)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from bench.ablation import BASE, NETWORKS, VARIANTS, _cell, finished, run_name
from common.atomic import atomic_write_text
from data.kitti import KittiImageSet
from data.splits import read_split_file
from data.synthetic.lenses import render_lenses
from data.velodyne import benchmark_png_path, read_benchmark_png
from depth.config import load_config
from depth.eval.metrics import compute_depth_metrics
from depth.eval.scale import stereo_scale
from depth.inference import predict_disparities
from depth.model import load_model

SCORE_FILE = "cameras.json"


def lens_sets(root: Path, factors: list[float]) -> dict[float, tuple[KittiImageSet, list[np.ndarray]]]:
    """``{factor: (images, dense GT maps)}`` of the test drive through each lens."""
    out = {}
    for f, split in zip(factors, render_lenses(root, factors, verbose=True)):
        entries = read_split_file(split)
        gt = [read_benchmark_png(benchmark_png_path(root, e.folder, e.frame, e.side)) for e in entries]
        out[f] = (KittiImageSet(root, entries), gt)
    return out


def score_run(run_dir: Path, lenses) -> dict:
    """``{str(factor): {median_abs_rel, median_a1, ratio, scale_ratio, fixed_abs_rel, fixed_a1
    [, metric_abs_rel, metric_a1]}}`` of one run."""
    nets, cfg = load_model(run_dir)
    net, size = nets.depth_net, (cfg.data.width, cfg.data.height)
    kw = dict(min_depth=cfg.model.min_depth, max_depth=cfg.model.max_depth)
    disp = {f: predict_disparities(net, images, size, **kw) for f, (images, _) in lenses.items()}
    med = {f: compute_depth_metrics(disp[f], lenses[f][1]) for f in lenses}
    s1 = med[1.0]["ratio_median"]
    metric = stereo_scale(cfg)
    out = {}
    for f in lenses:
        fixed = compute_depth_metrics(disp[f], lenses[f][1], median_scaling=False, fixed_scale=s1)
        row = {"median_abs_rel": med[f]["abs_rel"], "median_a1": med[f]["a1"], "ratio": med[f]["ratio_median"],
               "scale_ratio": med[f]["ratio_median"] / s1, "fixed_abs_rel": fixed["abs_rel"],
               "fixed_a1": fixed["a1"]}
        if metric is not None:
            m = compute_depth_metrics(disp[f], lenses[f][1], median_scaling=False, fixed_scale=metric)
            row.update(metric_abs_rel=m["abs_rel"], metric_a1=m["a1"])
        out[str(f)] = row
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"), help="the ablation's folder")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--lens-factors", type=float, nargs="+", default=[0.75, 1.5],
                    help="focal-length factors besides the training lens (x1)")
    ap.add_argument("--network", choices=list(NETWORKS), default="project",
                    help="score the rows run on this network (bench/ablation.py --network; rows <variant>-exact)")
    ap.add_argument("--rescore", action="store_true", help="score runs that already have cameras.json")
    ap.add_argument("overrides", nargs="*", help="data.root=... data.split=... (as given to bench/ablation.py)")
    args = ap.parse_args()
    factors = [1.0] + sorted(f for f in args.lens_factors if f != 1.0)
    cfg = load_config(BASE, args.overrides)
    lenses = lens_sets(Path(cfg.data.root), factors)
    rows: dict[str, list[dict]] = {}
    for name in (run_name(v, args.network) for v in args.variants):
        for seed in args.seeds:
            run = args.out / f"{name}_s{seed}"
            meta = run / "score.json"
            if not meta.is_file() or not finished(run, json.loads(meta.read_text())["steps"]):
                continue
            f = run / SCORE_FILE
            if args.rescore or not f.is_file() or set(json.loads(f.read_text())) != {str(x) for x in factors}:
                atomic_write_text(f, json.dumps(score_run(run, lenses), indent=2))
                print(f"{name} seed {seed}: scored", flush=True)
            rows.setdefault(name, []).append(json.loads(f.read_text()))
    if not rows:
        print(f"no finished runs in {args.out}")
        return 1
    others = factors[1:]
    print(f"\nsynthetic test drive through lenses x{' x'.join(f'{f:g}' for f in factors)}; "
          "mean ± std over seeds")
    print("| variant | seeds | abs rel x1 (median) | " + " | ".join(
        f"abs rel x{f:g} median / fixed | scale ratio x{f:g}" for f in others) + " | fixed abs rel x1 |")
    print("|---|---|---|" + "---|---|" * len(others) + "---|")
    for name, rs in rows.items():
        cells = [_cell([r["1.0"]["median_abs_rel"] for r in rs])]
        for f in others:
            k = str(f)
            cells += [f"{_cell([r[k]['median_abs_rel'] for r in rs])} / {_cell([r[k]['fixed_abs_rel'] for r in rs])}",
                      _cell([r[k]["scale_ratio"] for r in rs])]
        cells.append(_cell([r["1.0"]["fixed_abs_rel"] for r in rs]))
        print(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    metric = {n: rs for n, rs in rows.items() if "metric_abs_rel" in rs[0]["1.0"]}
    if metric:
        print("\nStereo-trained runs, metric depth with no scaling at all (abs rel / δ1):")
        print("| variant | seeds | " + " | ".join(f"x{f:g}" for f in factors) + " |")
        print("|---|---|" + "---|" * len(factors))
        for name, rs in metric.items():
            print(f"| {name} | {len(rs)} | " + " | ".join(
                f"{_cell([r[str(f)]['metric_abs_rel'] for r in rs])} / {_cell([r[str(f)]['metric_a1'] for r in rs])}"
                for f in factors) + " |")
    atomic_write_text(args.out / "cameras.json", json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
