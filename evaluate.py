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
parses arguments and prints. Bad input (a file, a split line,
a checkpoint, an argument) stops with one line naming it and exit status 2; --debug adds the
traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # run from anywhere: the project's packages sit next to this file
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from common.atomic import atomic_write_text  # noqa: E402
from data.frames import BadSampleError  # noqa: E402
from data.kitti import KittiImageSet, odometry_frames  # noqa: E402
from data.splits import builtin_splits, missing_folders, read_split_file, split_file  # noqa: E402
from depth.cli import add_debug_flag, command_errors  # noqa: E402
from depth.eval.eigen import (  # noqa: E402
    eigen_metric_kwargs,
    gt_kind_for_split,
    load_disparities,
    per_image_csv,
    predict_for_gt,
)
from depth.eval.gt import choose_gt_format, evaluation_gt, export_gt, save_dense_gt, save_sparse_gt  # noqa: E402
from depth.eval.metrics import aggregate_metrics, compute_depth_metrics_per_image, format_metrics_table  # noqa: E402
from depth.eval.pose import load_odometry_poses, predict_relative_poses, snippet_ates  # noqa: E402
from depth.eval.scale import stereo_eval_scale  # noqa: E402
from depth.eval.protocols import DATASETS, kitti_protocol, protocol_line  # noqa: E402
from depth.eval.report import ReportView, write_report  # noqa: E402
from depth.eval.scoring import aggregate, align, format_table, per_image_csv as dataset_csv, score_per_image  # noqa: E402,E501
from depth.eval.sets import load_eval_set  # noqa: E402
from depth.inference import predict_disparities  # noqa: E402
from depth.model import open_model  # noqa: E402

JSON_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "n_images", "ratio_median", "ratio_std")


class EvalError(ValueError):
    """A user-facing error: printed as ``error: ...`` with exit status 2 (:mod:`depth.cli`)."""


def _json_clean(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _load_model(path: str):
    """The model of ``--checkpoint``; says which file (and step) it is, and any file skipped."""
    try:
        loaded = open_model(path, map_location="cpu")
    except (FileNotFoundError, RuntimeError) as e:
        raise EvalError(str(e)) from None
    for line in loaded.lines():
        print(line, file=sys.stderr, flush=True)
    return loaded.nets, loaded.cfg


def _check_split_matches_data(args, entries) -> None:
    """Stop before any work when the split names drive folders that ``--data-path`` lacks, saying
    which split was tried and how to choose another."""
    missing = missing_folders(entries, args.data_path)
    if not missing:
        return
    root = Path(args.data_path)
    msg = (f"--split {args.split} ({split_file(args.split, 'test')}, {len(entries)} images) names "
           f"{len(missing)} drive folder(s) that {root} does not hold (e.g. {missing[0]}); choose the split with "
           f"--split: a built-in one ({', '.join(builtin_splits())}), a folder with test_files.txt, or a "
           f"split .txt file")
    own = root / "splits" / "test_files.txt"
    if own.is_file():
        msg += f"; {root} has its own test list: --split {own.parent}"
    raise EvalError(msg)


# ----------------------------------------------------------------------------------------------
# Subcommands
# ----------------------------------------------------------------------------------------------

def cmd_export_gt(args) -> int:
    entries = read_split_file(split_file(args.split, "test"))
    _check_split_matches_data(args, entries)
    mode = gt_kind_for_split(args.split, args.gt_source)
    try:
        gt = export_gt(args.data_path, entries, mode=mode, exact=args.exact_monodepth2,
                       progress=not args.no_progress, workers=args.workers)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise EvalError(str(e).strip("'\"")) from None
    fmt = choose_gt_format(gt) if args.format == "auto" else args.format
    if fmt == "dense":
        save_dense_gt(args.out, gt, compressed=True)
    else:
        save_sparse_gt(args.out, gt)
    n_valid = int(gt.img_ptr[-1])
    dense_mb = sum(int(h) * int(w) for h, w in gt.shapes) * 4 / 2 ** 20
    print(f"wrote {args.out}: {len(gt)} maps ({mode}{', Monodepth2-exact' if args.exact_monodepth2 else ''}), "
          f"{n_valid} valid pixels ({100.0 * n_valid / max(1, dense_mb * 2 ** 20 / 4):.2f} %), "
          f"{fmt} file{' (auto)' if args.format == 'auto' else ''} "
          f"{Path(args.out).stat().st_size / 2 ** 20:.1f} MiB "
          f"(dense maps: {dense_mb:.1f} MiB)")
    return 0


def _scaling(args, scale) -> str:
    if scale is not None:
        return f"fixed x{scale:g} (stereo)"
    return "none" if args.no_median_scaling else "median per image"


def _finish_depth(args, *, proto, title, line, per, metrics, names, csv_text, view, size, scale) -> int:
    """Print the protocol line and the table; write --json, --per-image and --report."""
    print(f"-> {title}")
    print(f"protocol: {line}")
    print(format_table(metrics, proto.metrics) if args.dataset != "kitti" else format_metrics_table(metrics))
    if args.json:
        keys = JSON_KEYS if args.dataset == "kitti" else (*proto.metrics, "n_images", "ratio_median",
                                                           "ratio_std")
        out = _json_clean({"protocol": line, **{k: metrics[k] for k in keys}})
        atomic_write_text(Path(args.json), json.dumps(out, indent=2) + "\n")
    if args.per_image:
        atomic_write_text(Path(args.per_image), csv_text)
    if args.report:
        model = str(Path(args.checkpoint).resolve()) if args.checkpoint else f"disparities {args.disparities}"
        run = {"title": f"{title}: {model}", "protocol": line, "size": list(size) if size else None,
               "metrics": {**{k: metrics[k] for k in proto.metrics}, "n_images": metrics["n_images"],
                           "ratio_median": metrics["ratio_median"], "ratio_std": metrics["ratio_std"]},
               "series": {"dataset": args.dataset, "split": proto.split, "model": model,
                          "post_process": args.post_process, "scaling": _scaling(args, scale)}}
        try:
            index = write_report(args.report, run=run, metric_names=proto.metrics, per_abs_rel=per["abs_rel"],
                                 names=names, view=view, n=args.report_n)
        except (FileExistsError, ValueError, BadSampleError) as e:
            raise EvalError(str(e)) from None
        print(f"report: {index}")
    return 0


def _depth_dataset(args, nets, cfg, scale) -> int:
    """``--dataset make3d|cityscapes|nyuv2``: the set's protocol (depth/eval/protocols.py)."""
    if args.zoom or args.crop:
        raise EvalError("--zoom/--crop (the scale test) are for --dataset kitti")
    if args.gt_source != "auto" or args.exact_monodepth2:
        raise EvalError("--gt-source and --exact-monodepth2 are for --dataset kitti (velodyne GT)")
    if not args.data_path:
        raise EvalError(f"--dataset {args.dataset} needs --data-path (the dataset folder: images and GT)")
    try:
        es = load_eval_set(args.dataset, args.data_path, split=args.split, gt=args.gt)
        proto = es.protocol.with_range(args.min_depth, args.max_depth)
        size = None
        if args.disparities:
            disp = load_disparities(args.disparities)
            if len(disp) != len(es):
                raise EvalError(f"{args.disparities} holds {len(disp)} disparity maps but the {args.dataset} "
                                f"test set under {args.data_path} has {len(es)} images")
        else:
            size = (args.width or cfg.data.width, args.height or cfg.data.height)
            disp = predict_disparities(nets.depth_net, es.images, size, min_depth=cfg.model.min_depth,
                                       max_depth=cfg.model.max_depth, post_process=args.post_process,
                                       batch_size=args.batch_size, progress=not args.no_progress)
        kw = dict(fixed_scale=scale, median_scaling=not args.no_median_scaling)
        per = score_per_image(disp, es.gts, proto, **kw)
    except (FileNotFoundError, ValueError, KeyError, BadSampleError, ImportError) as e:
        raise EvalError(e.args[0] if isinstance(e, KeyError) and e.args else str(e)) from None
    m = aggregate(per, proto.metrics)
    line = protocol_line(proto, n_images=len(es), network_size=size,
                         trained_size=(cfg.data.width, cfg.data.height) if cfg else None,
                         scaling=_scaling(args, scale), post_process=args.post_process)

    def view(i):
        gt = es.gts[i]
        return ReportView(es.images[i], disp[i], gt, align(disp[i], gt, proto, **kw),
                          proto.eval_box(*gt.shape))
    return _finish_depth(args, proto=proto, title=f"{args.dataset} {proto.split}", line=line, per=per,
                         metrics=m, names=es.names, csv_text=dataset_csv(per, es.names, proto.metrics),
                         view=view, size=size, scale=scale)


def cmd_depth(args) -> int:
    if bool(args.checkpoint) == bool(args.disparities):
        raise EvalError("give exactly one of --checkpoint and --disparities")
    if args.zoom and args.crop:
        raise EvalError("--zoom and --crop are two different tests: give one of them")
    if args.disparities and (args.zoom or args.crop or args.post_process != "none"):
        raise EvalError("--zoom, --crop and --post-process need a model (--checkpoint)")
    if args.disparities and (args.height or args.width):
        raise EvalError("--height/--width set the network input size: they need a model (--checkpoint)")
    for name in ("height", "width"):
        if getattr(args, name) is not None and getattr(args, name) < 16:
            raise EvalError(f"--{name} must be at least 16 pixels, got {getattr(args, name)}")
    if args.report and (args.zoom or args.crop):
        raise EvalError("--report shows the plain evaluation: leave out --zoom/--crop")
    if args.report_n < 1:
        raise EvalError(f"--report-n must be at least 1, got {args.report_n}")
    if args.checkpoint and not args.data_path:
        raise EvalError("--checkpoint needs --data-path (the images)")
    if not (args.gt or args.data_path):
        raise EvalError("give --gt GT.npz or --data-path (to export the GT on the fly)")
    nets, cfg = _load_model(args.checkpoint) if args.checkpoint else (None, None)
    try:
        scale = stereo_eval_scale(cfg, args.stereo_scale) if args.stereo else None
    except ValueError as e:
        raise EvalError(f"--stereo: {args.checkpoint}: {e}") from None
    if args.dataset != "kitti":
        return _depth_dataset(args, nets, cfg, scale)
    args.split = args.split or "eigen"
    lo = 1e-3 if args.min_depth is None else args.min_depth
    hi = 80.0 if args.max_depth is None else args.max_depth
    mode = gt_kind_for_split(args.split, args.gt_source)
    size = None
    try:
        entries = read_split_file(split_file(args.split, "test"))
        if args.data_path:
            _check_split_matches_data(args, entries)
        gt = evaluation_gt(entries, gt_path=args.gt, data_path=args.data_path, mode=mode,
                           exact=args.exact_monodepth2, progress=not args.no_progress)
        if args.disparities:
            disp, windows, in_window = load_disparities(args.disparities), None, False
            if len(disp) != len(entries):
                raise EvalError(f"{args.disparities} holds {len(disp)} disparity maps but split "
                                f"{args.split!r} has {len(entries)} images")
        else:
            size = (args.width or cfg.data.width, args.height or cfg.data.height)
            disp, windows, in_window = predict_for_gt(
                nets.depth_net, KittiImageSet(args.data_path, entries), gt, size,
                zoom=args.zoom, crop=args.crop, min_depth=cfg.model.min_depth, max_depth=cfg.model.max_depth,
                post_process=args.post_process, batch_size=args.batch_size, progress=not args.no_progress)
        kwargs = eigen_metric_kwargs(mode, fixed_scale=scale, median_scaling=not args.no_median_scaling,
                                     min_depth=lo, max_depth=hi)
        per = compute_depth_metrics_per_image(disp, gt, windows=windows, pred_in_window=in_window, **kwargs)
    except (FileNotFoundError, ValueError, BadSampleError) as e:
        raise EvalError(str(e)) from None
    m = aggregate_metrics(per)
    title = f"split {args.split} ({mode} GT)"
    extra = None
    if args.zoom:
        title += f", zoom x{args.zoom}"
        extra = f"the scale test: prediction on the centre 1/{args.zoom:g} of the image, scored there"
    if args.crop:
        title += f", crop x{args.crop}"
        extra = f"the scale test: the centre 1/{args.crop:g} of the full-image prediction"
    if args.stereo:
        title += f", stereo scale {scale:g}"
    if args.checkpoint and (args.height or args.width):
        title += f", network input {size[0]}x{size[1]} (trained at {cfg.data.width}x{cfg.data.height})"
    title += f", post-process {args.post_process}"
    proto = kitti_protocol(str(args.split), mode, lo, hi)
    line = protocol_line(proto, n_images=len(entries), network_size=size,
                         trained_size=(cfg.data.width, cfg.data.height) if cfg else None,
                         scaling=_scaling(args, scale), post_process=args.post_process, extra_crop=extra)
    images = KittiImageSet(args.data_path, entries) if args.data_path else None

    def view(i):
        g = gt.dense(i) if hasattr(gt, "dense") else np.asarray(gt[i], np.float32)
        a = align(disp[i], g, proto, fixed_scale=scale, median_scaling=not args.no_median_scaling)
        return ReportView(images[i] if images is not None else None, disp[i], g, a, proto.eval_box(*g.shape))
    names = [f"{e.folder} {e.frame} {e.side}" for e in entries]
    return _finish_depth(args, proto=proto, title=title, line=line, per=per, metrics=m, names=names,
                         csv_text=per_image_csv(per, entries), view=view, size=size, scale=scale)


def cmd_pose(args) -> int:
    seq = int(args.sequence)
    poses_path = Path(args.poses) if args.poses else Path(args.odometry_path or ".") / "poses" / f"{seq:02d}.txt"
    try:
        gt_poses = load_odometry_poses(poses_path)
    except (FileNotFoundError, ValueError) as e:
        raise EvalError(str(e)) from None
    if bool(args.checkpoint) == bool(args.pred_poses):
        raise EvalError("give exactly one of --checkpoint and --pred-poses")
    if args.pred_poses:
        pred = np.load(args.pred_poses)
        if pred.ndim != 3 or pred.shape[1:] != (4, 4):
            raise EvalError(f"{args.pred_poses}: expected (N, 4, 4) relative poses, got {pred.shape}")
    else:
        if not args.odometry_path:
            raise EvalError("--checkpoint needs --odometry-path (sequences/NN/image_2/*.png|jpg)")
        nets, cfg = _load_model(args.checkpoint)
        if nets.pose_net is None:
            raise EvalError(f"{args.checkpoint}: the model has no pose network (a Monodepth2 folder needs "
                            f"pose_encoder.pth and pose.pth)")
        try:
            pred = predict_relative_poses(nets.pose_net, odometry_frames(args.odometry_path, seq, len(gt_poses)),
                                          (cfg.data.width, cfg.data.height), batch_size=args.batch_size,
                                          progress=not args.no_progress)
        except BadSampleError as e:
            raise EvalError(str(e)) from None
    try:
        ates = snippet_ates(pred, gt_poses, track_length=5)
    except ValueError as e:
        raise EvalError(str(e)) from None
    res = {"ate_mean": float(np.mean(ates)), "ate_std": float(np.std(ates)), "n_snippets": int(len(ates)),
           "sequence": f"{seq:02d}"}
    print(f"\n   Trajectory error (sequence {seq:02d}, {len(ates)} 5-frame snippets): "
          f"{res['ate_mean']:0.3f}, std: {res['ate_std']:0.3f}\n")
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(res, indent=2) + "\n")
    return 0


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
    e.set_defaults(func=cmd_export_gt)

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
    d.add_argument("--post-process", choices=["none", "flip", "zoom"], default="none")
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
    d.add_argument("--batch-size", type=int, default=8)
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
    d.set_defaults(func=cmd_depth)

    q = sub.add_parser("pose", help="ATE on KITTI odometry (5-frame snippets)")
    q.add_argument("--checkpoint", help="checkpoint file, run folder or Monodepth2 model folder")
    q.add_argument("--pred-poses", help="(N-1, 4, 4) .npy of predicted transforms frame i -> i+1")
    q.add_argument("--odometry-path", help="KITTI odometry root (sequences/, poses/)")
    q.add_argument("--sequence", default="09", help="09 or 10 (any sequence with GT poses works)")
    q.add_argument("--poses", help="GT pose file (default ODOMETRY_PATH/poses/NN.txt)")
    q.add_argument("--batch-size", type=int, default=8)
    q.add_argument("--json", help="write ATE mean/std as JSON")
    q.add_argument("--no-progress", action="store_true")
    add_debug_flag(q)
    q.set_defaults(func=cmd_pose)
    return p


@command_errors
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("zoom", "crop"):
        z = getattr(args, name, None)
        if z is not None and not z >= 1.0:
            raise EvalError(f"--{name} must be >= 1, got {z}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
