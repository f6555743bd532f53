#!/usr/bin/env python
"""KITTI evaluation: GT export, depth metrics (Eigen protocol), pose ATE.

    python evaluate.py export-gt --data-path ROOT --split eigen --out gt_eigen.npz
    python evaluate.py depth --disparities disps.npy --split eigen --gt gt_eigen.npz --json m.json
    python evaluate.py depth --checkpoint run/ --data-path ROOT --split eigen --post-process flip
    python evaluate.py pose --checkpoint run/ --odometry-path ODOM_ROOT --sequence 09

See docs/evaluation.md. The logic lives in data/velodyne.py, depth/metrics.py and
depth/evaluation.py; this file only parses arguments and prints.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

from common.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class EvalError(Exception):
    """A user-facing error: printed as ``error: ...`` with exit status 2."""


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

def _split_entries(split: str):
    from data.splits import read_split_file, split_file

    return read_split_file(split_file(split, "test"))


def _gt_mode(split: str, gt_source: str) -> str:
    if gt_source != "auto":
        return gt_source
    return "benchmark" if Path(str(split)).name.startswith("eigen_benchmark") else "velodyne"


def _entry_line(e) -> str:
    return f"{e.folder} {e.frame} {e.side}"


def _json_clean(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _load_disparities(path: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise EvalError(f"disparity file not found: {p}")
    try:
        d = np.load(p, allow_pickle=False)
    except Exception as e:
        raise EvalError(f"could not read disparities {p}: {type(e).__name__}: {e}") from None
    if isinstance(d, np.lib.npyio.NpzFile):
        with d:
            key = "disp" if "disp" in d.files else d.files[0]
            d = d[key]
    if d.ndim == 4 and d.shape[1] == 1:
        d = d[:, 0]
    if d.ndim != 3:
        raise EvalError(f"disparities {p} must be an (N, h, w) array, got shape {d.shape}")
    return np.ascontiguousarray(d, dtype=np.float32)


def _get_gt(args, entries):
    from data.velodyne import export_gt, load_gt

    if args.gt:
        try:
            gt = load_gt(args.gt)
        except (FileNotFoundError, ValueError) as e:
            raise EvalError(str(e)) from None
        stored = getattr(gt, "entries", None)
        if stored is not None and entries is not None and len(stored) == len(entries):
            want = [_entry_line(e) for e in entries]
            bad = [i for i, (a, b) in enumerate(zip(stored, want)) if a != b]
            if bad:
                i = bad[0]
                raise EvalError(f"GT file {args.gt} was made for another split: entry {i} is "
                                f"{stored[i]!r}, the split has {want[i]!r}")
        return gt
    if not args.data_path:
        raise EvalError("give --gt GT.npz or --data-path (to export the GT on the fly)")
    mode = _gt_mode(args.split, args.gt_source)
    try:
        return export_gt(args.data_path, entries, mode=mode, exact=args.exact_monodepth2,
                         progress=not args.no_progress)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise EvalError(str(e).strip("'\"")) from None


def _read_split_images(data_path: str, entries):
    from data.kitti import image_path, read_image

    for e in entries:
        yield read_image(image_path(data_path, e))


# ----------------------------------------------------------------------------------------------
# Subcommands
# ----------------------------------------------------------------------------------------------

def cmd_export_gt(args) -> int:
    from data.velodyne import export_gt, save_dense_gt, save_sparse_gt

    entries = _split_entries(args.split)
    mode = _gt_mode(args.split, args.gt_source)
    try:
        gt = export_gt(args.data_path, entries, mode=mode, exact=args.exact_monodepth2,
                       progress=not args.no_progress, workers=args.workers)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise EvalError(str(e).strip("'\"")) from None
    if args.format == "dense":
        save_dense_gt(args.out, gt, compressed=True)
    else:
        save_sparse_gt(args.out, gt)
    n_valid = int(gt.img_ptr[-1])
    dense_mb = sum(int(h) * int(w) for h, w in gt.shapes) * 4 / 2 ** 20
    print(f"wrote {args.out}: {len(gt)} maps ({mode}{', Monodepth2-exact' if args.exact_monodepth2 else ''}), "
          f"{n_valid} valid pixels ({100.0 * n_valid / max(1, dense_mb * 2 ** 20 / 4):.2f} %), "
          f"{args.format} file {Path(args.out).stat().st_size / 2 ** 20:.1f} MiB "
          f"(dense maps: {dense_mb:.1f} MiB)")
    return 0


def _stereo_factor(args) -> float:
    """Fixed scale for --stereo: from the checkpoint's training baseline (metric / training units),
    or Monodepth2's 5.4 for external --disparities (or --stereo-scale)."""
    if args.stereo_scale is not None:
        return float(args.stereo_scale)
    if args.checkpoint:
        from depth.checkpoint import load_checkpoint
        from depth.scale import stereo_scale

        factor = stereo_scale(load_checkpoint(args.checkpoint)["config"])
        if factor is None:
            raise EvalError(f"--stereo: {args.checkpoint} was trained without stereo (data.stereo=false)")
        return factor
    return 5.4


def _metric_kwargs(args, mode: str) -> dict:
    bench = mode == "benchmark"
    if args.stereo and not hasattr(args, "_stereo_factor"):
        args._stereo_factor = _stereo_factor(args)
    return dict(median_scaling=not (args.stereo or args.no_median_scaling),
                fixed_scale=args._stereo_factor if args.stereo else None, min_depth=args.min_depth,
                max_depth=args.max_depth, garg_crop=not bench, gt_range_mask=not bench)


def _write_per_image(path: str, entries, per: dict) -> None:
    from depth.metrics import METRIC_NAMES

    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["index", "folder", "frame", "side", "n_valid", "ratio", *METRIC_NAMES])
    for i in range(len(per["n_valid"])):
        e = entries[i] if entries is not None and i < len(entries) else None
        w.writerow([i, e.folder if e else "", e.frame if e else "", e.side if e else "",
                    int(per["n_valid"][i]), f"{per['ratio'][i]:.9g}",
                    *(f"{per[k][i]:.9g}" for k in METRIC_NAMES)])
    atomic_write_text(Path(path), buf.getvalue())


def cmd_depth(args) -> int:
    from depth.metrics import aggregate_metrics, compute_depth_metrics_per_image, format_metrics_table

    if bool(args.checkpoint) == bool(args.disparities):
        raise EvalError("give exactly one of --checkpoint and --disparities")
    if args.zoom and args.crop:
        raise EvalError("--zoom and --crop are two different tests: give one of them")
    entries = _split_entries(args.split)
    mode = _gt_mode(args.split, args.gt_source)
    kwargs = _metric_kwargs(args, mode)
    windows, pred_in_window = None, False

    if args.disparities:
        if args.zoom or args.crop or args.post_process != "none":
            raise EvalError("--zoom, --crop and --post-process need a model (--checkpoint)")
        disp = _load_disparities(args.disparities)
        if len(disp) != len(entries):
            raise EvalError(f"{args.disparities} holds {len(disp)} disparity maps but split "
                            f"{args.split!r} has {len(entries)} images")
        gt = _get_gt(args, entries)
    else:
        gt = _get_gt(args, entries)
        disp, windows, pred_in_window = _predict_with_checkpoint(args, entries, gt)

    if len(disp) != len(gt):
        raise EvalError(f"{len(disp)} predictions but {len(gt)} GT maps: predictions and GT must come "
                        f"from the same split, in the same order")
    per = compute_depth_metrics_per_image(disp, gt, windows=windows, pred_in_window=pred_in_window, **kwargs)
    m = aggregate_metrics(per)
    title = f"split {args.split} ({mode} GT)"
    if args.zoom:
        title += f", zoom x{args.zoom}"
    if args.crop:
        title += f", crop x{args.crop}"
    if args.stereo:
        title += f", stereo scale {args._stereo_factor:g}"
    print(f"-> {title}, post-process {args.post_process}")
    print(format_metrics_table(m))
    if args.json:
        keys = ["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "n_images", "ratio_median",
                "ratio_std"]
        atomic_write_text(Path(args.json), json.dumps(_json_clean({k: m[k] for k in keys}), indent=2) + "\n")
    if args.per_image:
        _write_per_image(args.per_image, entries, per)
    return 0


def _predict_with_checkpoint(args, entries, gt):
    from depth.checkpoint import load_depth_net
    from depth.evaluation import centre_window, predict_disparities

    if not args.data_path:
        raise EvalError("--checkpoint needs --data-path (the images)")
    model, cfg = load_depth_net(args.checkpoint, map_location="cpu")
    model.eval()
    size_wh = (int(cfg["data"]["width"]), int(cfg["data"]["height"]))
    min_d, max_d = float(cfg["model"]["min_depth"]), float(cfg["model"]["max_depth"])
    try:
        images = list(_read_split_images(args.data_path, entries))
    except (FileNotFoundError, RuntimeError) as e:
        raise EvalError(str(e)) from None
    shapes = gt.shapes if hasattr(gt, "shapes") else [np.shape(g) for g in gt]
    if len(images) != len(shapes):
        raise EvalError(f"{len(images)} images but {len(shapes)} GT maps")
    z = args.zoom or args.crop
    windows = None
    if z:
        for im, s in zip(images, shapes):
            if tuple(im.shape[:2]) != tuple(s):
                raise EvalError(f"image size {im.shape[:2]} differs from its GT size {s}: "
                                f"--zoom/--crop need images at the GT resolution")
        windows = np.array([centre_window(h, w, z) for h, w in shapes], dtype=np.int64)
    disp = predict_disparities(model, images, size_wh, post_process=args.post_process,
                               batch_size=args.batch_size, min_depth=min_d, max_depth=max_d,
                               zoom=args.zoom, progress=not args.no_progress)
    return disp, windows, bool(args.zoom)


def cmd_pose(args) -> int:
    from depth.evaluation import load_odometry_poses, predict_relative_poses, snippet_ates

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
        from data.kitti import read_image
        from depth.checkpoint import load_pose_net

        model, cfg = load_pose_net(args.checkpoint)
        model.eval()
        size_wh = (int(cfg["data"]["width"]), int(cfg["data"]["height"]))
        img_dir = Path(args.odometry_path) / "sequences" / f"{seq:02d}" / "image_2"

        def frames():
            for i in range(len(gt_poses)):
                for ext in (".png", ".jpg"):
                    p = img_dir / f"{i:06d}{ext}"
                    if p.is_file():
                        break
                else:
                    raise EvalError(f"odometry frame {i} not found as {img_dir / f'{i:06d}'}.png or .jpg")
                yield read_image(p)

        pred = predict_relative_poses(model, frames(), size_wh, batch_size=args.batch_size,
                                      progress=not args.no_progress)
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
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--split", default="eigen",
                        help="eigen | eigen_benchmark | a split folder | a split .txt file (default eigen)")
        sp.add_argument("--gt-source", choices=["auto", "velodyne", "benchmark"], default="auto",
                        help="velodyne scans or annotated PNGs (auto: benchmark for eigen_benchmark)")
        sp.add_argument("--exact-monodepth2", action="store_true",
                        help="reproduce Monodepth2's duplicate-pixel quirk bit for bit")
        sp.add_argument("--no-progress", action="store_true", help="no progress bars")

    e = sub.add_parser("export-gt", help="velodyne scans / annotated PNGs -> GT file")
    e.add_argument("--data-path", required=True, help="KITTI raw root")
    e.add_argument("--out", required=True, help="output .npz")
    e.add_argument("--format", choices=["sparse", "dense"], default="sparse",
                   help="sparse (valid pixels only, default) or dense (Monodepth2's gt_depths.npz)")
    e.add_argument("--workers", type=int, default=None, help="threads (default: CPUs, at most 4)")
    common(e)
    e.set_defaults(func=cmd_export_gt)

    d = sub.add_parser("depth", help="depth metrics on a test split")
    d.add_argument("--checkpoint", help="checkpoint file or run folder")
    d.add_argument("--disparities", help="(N, h, w) .npy of scaled disparities (Monodepth2's "
                                         "--ext_disp_to_eval format), in split order")
    d.add_argument("--data-path", help="KITTI raw root (images; GT when --gt is not given)")
    d.add_argument("--gt", help="GT file from export-gt (sparse) or Monodepth2's gt_depths.npz")
    d.add_argument("--post-process", choices=["none", "flip", "zoom"], default="none")
    d.add_argument("--stereo", action="store_true",
                   help="fixed scale, no median scaling: the checkpoint's stereo_baseline_metric / stereo_baseline "
                        "(1 for metric-baseline training), 5.4 for external --disparities (Monodepth2)")
    d.add_argument("--stereo-scale", type=float, default=None, help="override the --stereo factor")
    d.add_argument("--no-median-scaling", action="store_true", help="score depths as predicted")
    d.add_argument("--zoom", type=float, default=None, metavar="Z",
                   help="predict on the centre 1/Z crop and score it on the same GT crop")
    d.add_argument("--crop", type=float, default=None, metavar="Z",
                   help="predict on the full image, score its centre 1/Z on the same GT crop")
    d.add_argument("--min-depth", type=float, default=1e-3)
    d.add_argument("--max-depth", type=float, default=80.0)
    d.add_argument("--batch-size", type=int, default=8)
    d.add_argument("--json", help="write the metrics as JSON")
    d.add_argument("--per-image", help="write per-image metrics as CSV")
    common(d)
    d.set_defaults(func=cmd_depth)

    q = sub.add_parser("pose", help="ATE on KITTI odometry (5-frame snippets)")
    q.add_argument("--checkpoint", help="checkpoint file or run folder")
    q.add_argument("--pred-poses", help="(N-1, 4, 4) .npy of predicted transforms frame i -> i+1")
    q.add_argument("--odometry-path", help="KITTI odometry root (sequences/, poses/)")
    q.add_argument("--sequence", default="09", help="09 or 10 (any sequence with GT poses works)")
    q.add_argument("--poses", help="GT pose file (default ODOMETRY_PATH/poses/NN.txt)")
    q.add_argument("--batch-size", type=int, default=8)
    q.add_argument("--json", help="write ATE mean/std as JSON")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=cmd_pose)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("zoom", "crop"):
        z = getattr(args, name, None)
        if z is not None and not z >= 1.0:
            print(f"error: --{name} must be >= 1, got {z}", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except EvalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
