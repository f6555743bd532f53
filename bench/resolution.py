"""Resolution robustness (the protocol of RA-Depth, Gao et al., ECCV 2022): each model, trained at
one size, run at 0.5x, 0.75x, 1x, 1.5x and 2x that size (both sides, the whole image) and scored
on the synthetic test drive against the same GT with the same protocol (Eigen, per-image median
scaling). Prints abs rel and δ1 per size and each size's abs rel relative to 1x: a flat curve
(all ~1.0) means the network does not depend on the pixel size of what it sees.

    python bench/resolution.py --ablation runs/ablation            # every finished ablation run
    python bench/resolution.py --checkpoint runs/synthetic [--checkpoint other_run ...]

The same curve is a column group of ``bench/ablation.py``; the library function is
``depth.eval.robustness.resolution_curve`` (``evaluate.py depth --height H --width W`` scores one size).
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data.kitti import KittiImageSet
from data.splits import read_split_file, split_file
from data.velodyne import benchmark_png_path, read_benchmark_png
from depth.config import Config, load_config
from depth.eval.robustness import RESOLUTION_FACTORS, resolution_curve
from depth.model import load_model

ROOT = Path(__file__).resolve().parents[1]


def score_resolution(net, cfg: Config, images, gt, factors: Sequence[float] = RESOLUTION_FACTORS) -> dict:
    """``{str(factor): {abs_rel, a1, abs_rel_vs_1x, size}}`` of one depth net (JSON-ready)."""
    curve = resolution_curve(net, images, gt, (cfg.data.width, cfg.data.height), factors,
                             min_depth=cfg.model.min_depth, max_depth=cfg.model.max_depth)
    return {str(f): {"abs_rel": m["abs_rel"], "a1": m["a1"], "abs_rel_vs_1x": m["abs_rel_vs_1x"],
                     "size": list(m["size"])} for f, m in curve.items()}


def curve_header(factors: Sequence[float]) -> str:
    return ("| model | " + " | ".join(f"{f:g}x" for f in factors) + " |\n|---|" + "---|" * len(factors))


def curve_cells(curves: list[dict], factors: Sequence[float], key: str = "abs_rel") -> list[str]:
    """One cell per factor: mean ± std of ``key`` over ``curves`` and, in brackets, the mean of
    abs rel relative to 1x (for ``abs_rel``)."""
    cells = []
    for f in factors:
        v = np.array([c[str(f)][key] for c in curves])
        cell = f"{v.mean():.4f} ± {v.std():.4f}" if len(v) > 1 else f"{v.mean():.4f}"
        if key == "abs_rel":
            cell += f" ({np.mean([c[str(f)]['abs_rel_vs_1x'] for c in curves]):.2f})"
        cells.append(cell)
    return cells


def _group(path: Path) -> str:
    """The ablation variant of a run folder ``<variant>_s<seed>`` (else the folder's name)."""
    m = re.fullmatch(r"(.+)_s\d+", path.name)
    return m.group(1) if m else path.name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ablation", type=Path, help="a bench/ablation.py --out folder: score its finished runs")
    ap.add_argument("--checkpoint", type=Path, action="append", default=[], help="a run folder or checkpoint")
    ap.add_argument("--factors", type=float, nargs="+", default=list(RESOLUTION_FACTORS))
    ap.add_argument("overrides", nargs="*", help="config overrides locating the synthetic data (data.root=...)")
    args = ap.parse_args()
    if 1.0 not in args.factors:
        ap.error("--factors must include 1 (the training size)")
    factors = sorted(args.factors)
    runs = list(args.checkpoint)
    if args.ablation:
        runs += sorted(p.parent for p in args.ablation.glob("*/metrics.json"))
    if not runs:
        ap.error("give --ablation DIR or --checkpoint PATH")

    cfg = load_config(ROOT / "configs" / "synthetic.yaml", args.overrides)
    root = Path(cfg.data.root)
    test = read_split_file(split_file(cfg.data.split, "test"))
    images = list(KittiImageSet(root, test))
    gt = [read_benchmark_png(benchmark_png_path(root, e.folder, e.frame, e.side)) for e in test]

    groups: dict[str, list[dict]] = {}
    for run in runs:
        nets, run_cfg = load_model(run)
        curve = score_resolution(nets.depth_net, run_cfg, images, gt, factors)
        groups.setdefault(_group(Path(run)) if args.ablation else str(run), []).append(curve)
        print(f"{run}: " + ", ".join(f"{f:g}x {curve[str(f)]['abs_rel']:.4f}" for f in factors), flush=True)

    sizes = {tuple(c[str(f)]["size"]) for cs in groups.values() for c in cs for f in factors}
    print(f"\n{len(test)} synthetic test frames; input sizes {sorted(sizes)}; mean ± std over runs")
    print("\nabs rel (relative to 1x)")
    print(curve_header(factors))
    for name, curves in groups.items():
        print(f"| {name} ({len(curves)}) | " + " | ".join(curve_cells(curves, factors)) + " |")
    print("\nδ1")
    print(curve_header(factors))
    for name, curves in groups.items():
        print(f"| {name} ({len(curves)}) | " + " | ".join(curve_cells(curves, factors, "a1")) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
