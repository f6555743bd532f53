"""``python -m data.synthetic --out ROOT``: generate the synthetic dataset (:mod:`data.synthetic`)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from data.synthetic.lenses import render_lenses
from data.synthetic.rig import DATE
from data.synthetic.writer import DEFAULTS, drive_name, ensure_synthetic

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data.synthetic", description="Procedural synthetic driving sequences written in the KITTI raw layout.")
    ap.add_argument("--out", required=True, type=Path, help="dataset root to create")
    ap.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    ap.add_argument("--drives", type=int, default=DEFAULTS["drives"])
    ap.add_argument("--frames", type=int, default=DEFAULTS["frames"], help="frames per drive")
    ap.add_argument("--test-drives", type=int, default=DEFAULTS["test_drives"])
    ap.add_argument("--gt-every", type=int, default=DEFAULTS["gt_every"],
                    help="GT depth for every N-th training frame (test frames always have GT)")
    ap.add_argument("--lens-factors", type=float, nargs="*", default=[],
                    help="also render the test drives through lenses of these focal-length factors "
                         "(e.g. 0.75 1.5; data.synthetic.lenses)")
    args = ap.parse_args(argv)
    if any(f <= 0 for f in args.lens_factors):
        ap.error(f"--lens-factors must be > 0, got {args.lens_factors}")
    t0 = time.perf_counter()
    root = ensure_synthetic(args.out, args.seed, args.drives, args.frames, args.test_drives, args.gt_every,
                            verbose=True)
    print(f"dataset root: {root}  ({time.perf_counter() - t0:.1f} s)")
    print(f"  calibration: {root / DATE}/calib_cam_to_cam.txt, calib_velo_to_cam.txt")
    print(f"  drives:      {root / DATE}/{drive_name(1)} .. {drive_name(args.drives)}")
    print(f"  splits:      {root / 'splits'}/{{train,val,test}}_files.txt")
    for f, split in zip(args.lens_factors, render_lenses(root, args.lens_factors, verbose=True)):
        print(f"  lens x{f:g}:   {split}")
    return 0
