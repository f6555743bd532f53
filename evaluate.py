#!/usr/bin/env python
"""Evaluation: KITTI GT export, depth metrics (KITTI Eigen, Make3D, Cityscapes, NYUv2), pose ATE.

    python evaluate.py export-gt --data-path ROOT --split eigen --out gt_eigen.npz
    python evaluate.py depth --disparities disps.npy --split eigen --gt gt_eigen.npz --json m.json
    python evaluate.py depth --checkpoint run/ --data-path ROOT --split eigen --post-process flip
    python evaluate.py depth --checkpoint run/ --dataset make3d|cityscapes|nyuv2 --data-path DIR --report rep/
    python evaluate.py pose --checkpoint run/ --odometry-path ODOM_ROOT --sequence 09

Every depth run prints one protocol line (dataset and split, images, input size, crop, depth caps,
scaling, post-processing, test-time resizes), also stored in --json.

--checkpoint also takes a Monodepth2 model folder (encoder.pth, depth.pth, ...: docs/monodepth2.md).

See docs/evaluation.md. The logic lives in data/velodyne.py, depth/model.py, depth/eval/metrics.py,
depth/eval/eigen.py and the rest of depth/eval/ (the other datasets' protocols, the protocol line, the
report; their files are read by data/make3d.py, data/cityscapes.py, data/nyuv2.py); this file only
parses arguments (depth/commands/evaluate.py runs them). Bad input (a file, a split line,
a checkpoint, an argument) stops with one line naming it and exit status 2; --debug adds the
traceback.
"""
from __future__ import annotations

import argparse
import sys

from depth.cli import add_debug_flag, parse_then_run
from depth.eval import DATASETS


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    add_debug_flag(p)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, split_help="eigen | eigen_benchmark | a split folder | a split .txt file (default eigen)",
               split_default="eigen"):
        sp.add_argument("--split", default=split_default, help=split_help)
        sp.add_argument("--gt-source", choices=["auto", "velodyne", "benchmark"], default="auto",
                        help="velodyne scans or annotated PNGs (auto: benchmark for eigen_benchmark)")
        sp.add_argument("--exact-monodepth2", action="store_true",
                        help="reproduce Monodepth2's duplicate-pixel quirk bit for bit")
        sp.add_argument("--no-progress", action="store_true", help="no progress bars")
        add_debug_flag(sp)

    e = sub.add_parser("export-gt", help="velodyne scans / annotated PNGs -> GT file")
    e.add_argument("--data-path", required=True, help="KITTI raw root")
    e.add_argument("--out", required=True, help="output .npz")
    e.add_argument("--format", choices=["auto", "sparse", "dense"], default="auto",
                   help="sparse (valid pixels only) or dense (Monodepth2's gt_depths.npz); auto (default):\n"
                        "sparse unless the maps are dense enough for the dense file to be smaller")
    e.add_argument("--workers", type=int, default=None, help="threads (default: CPUs, at most 4)")
    common(e)

    d = sub.add_parser("depth", help="depth metrics on a test split (KITTI, Make3D, Cityscapes, NYUv2)")
    d.add_argument("--dataset", choices=DATASETS, default="kitti",
                   help="kitti (default; --split eigen|eigen_benchmark), make3d (DATA_PATH/Test134 +\n"
                        "Gridlaserdata), cityscapes (DATA_PATH/leftImg8bit, disparity, camera), nyuv2\n"
                        "(DATA_PATH/nyu_depth_v2_labeled.mat + splits.mat); each with its protocol\n"
                        "(docs/evaluation.md)")
    d.add_argument("--checkpoint", help="checkpoint file, run folder or Monodepth2 model folder")
    d.add_argument("--disparities", help="(N, h, w) .npy of scaled disparities (Monodepth2's "
                                         "--ext_disp_to_eval format), in split order")
    d.add_argument("--data-path",
                   help="KITTI raw root (images; GT when --gt is not given), or the --dataset folder")
    d.add_argument("--gt", help="kitti: GT file from export-gt (sparse) or Monodepth2's gt_depths.npz;\n"
                                "cityscapes: ManyDepth's gt_depths folder or gt_depths_cityscapes.zip")
    d.add_argument("--post-process", choices=["none", "flip", "zoom"], default="none",
                   help="none (default); flip: Monodepth2's flip post-processing; zoom: the DaB-Net\n"
                        "authors' zoom post-processing (docs/evaluation.md)")
    d.add_argument("--height", type=int, default=None, metavar="H",
                   help="run the network at this input height instead of the trained one (resolution\n"
                        "robustness: same GT, same protocol; any size >= 16, not only multiples of 32)")
    d.add_argument("--width", type=int, default=None, metavar="W", help="input width, as --height")
    d.add_argument("--stereo", action="store_true",
                   help="fixed scale, no median scaling: the checkpoint's stereo_baseline_metric / stereo_baseline "
                        "(1 for metric-baseline training, 5.4 for Monodepth2 models), 5.4 for external --disparities")
    d.add_argument("--stereo-scale", type=float, default=None, help="override the --stereo factor")
    d.add_argument("--no-median-scaling", action="store_true", help="score depths as predicted")
    d.add_argument("--zoom", type=float, default=None, metavar="Z",
                   help="predict on the centre 1/Z crop and score it on the same GT crop")
    d.add_argument("--crop", type=float, default=None, metavar="Z",
                   help="predict on the full image, score its centre 1/Z on the same GT crop")
    d.add_argument("--min-depth", type=float, default=None,
                   help="GT range and prediction clamp (default: the protocol's; KITTI 1e-3 .. 80)")
    d.add_argument("--max-depth", type=float, default=None, help="as --min-depth (Make3D 70, NYUv2 10)")
    d.add_argument("--batch-size", type=int, default=8, help="images per network call (default 8)")
    d.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the network runs: auto = CUDA when available (default), cpu, cuda")
    d.add_argument("--json", help="write the metrics as JSON")
    d.add_argument("--per-image", help="write per-image metrics as CSV")
    d.add_argument("--report", metavar="DIR",
                   help="write DIR/index.html: metrics, protocol line, per-image abs rel histogram, the\n"
                        "worst and best images (input, disparity, GT, error); runs at several\n"
                        "--height/--width into the same DIR add a resolution curve")
    d.add_argument("--report-n", type=int, default=4, metavar="N", help="worst and best images in the report")
    common(d, split_help="kitti: eigen | eigen_benchmark | a split folder | a split .txt file (default\n"
                         "eigen); cityscapes: a '<city> <frame>' list (default ManyDepth's 1525 test\n"
                         "frames); nyuv2: a splits.mat (default DATA_PATH/splits.mat, testNdxs)",
           split_default=None)

    q = sub.add_parser("pose", help="ATE on KITTI odometry (5-frame snippets)")
    q.add_argument("--checkpoint", help="checkpoint file, run folder or Monodepth2 model folder")
    q.add_argument("--pred-poses", help="(N-1, 4, 4) .npy of predicted transforms frame i -> i+1")
    q.add_argument("--odometry-path", help="KITTI odometry root (sequences/, poses/)")
    q.add_argument("--sequence", default="09", help="09 or 10 (any sequence with GT poses works)")
    q.add_argument("--poses", help="GT pose file (default ODOMETRY_PATH/poses/NN.txt)")
    q.add_argument("--batch-size", type=int, default=8, help="frame pairs per network call (default 8)")
    q.add_argument("--json", help="write ATE mean/std as JSON")
    q.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_debug_flag(q)
    return p


def command_module(args: argparse.Namespace) -> str:
    """The module that runs ``args``: with ``--checkpoint`` the model path
    (``depth.commands.evaluate_model``: torch, the networks), else the scoring alone
    (``depth.commands.evaluate``: NumPy and numba, no torch)."""
    return "depth.commands.evaluate_model" if getattr(args, "checkpoint", None) else "depth.commands.evaluate"


main = parse_then_run(lambda argv: build_parser().parse_args(argv), command_module)


if __name__ == "__main__":
    sys.exit(main())
