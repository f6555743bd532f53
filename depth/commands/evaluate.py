"""``python evaluate.py`` once its arguments are parsed: ``export-gt``, ``depth`` (KITTI Eigen,
Make3D, Cityscapes, NYUv2, with the report) and ``pose`` (docstring of evaluate.py).

This module scores; it imports NumPy, numba and OpenCV but not torch, so scoring saved predictions
(``depth --disparities``, ``pose --pred-poses``) starts in a fraction of a second. With
``--checkpoint`` evaluate.py runs :mod:`depth.commands.evaluate_model` instead, which opens the
model and hands it to :func:`run` here (``open_model``): the predictions come from it, the scoring
is this module's.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from common.errors import EvalError
from common.arrays import open_array_file
from common.atomic import atomic_write_text
from data.kitti_layout import KittiImageSet
from data.splits import builtin_splits, missing_folders, read_split_file, split_file
from depth.eval.eigen import eigen_metric_kwargs, gt_kind_for_split, load_disparities, per_image_csv
from depth.eval.gt import choose_gt_format, evaluation_gt, export_gt, save_dense_gt, save_sparse_gt
from depth.eval.metrics import aggregate_metrics, compute_depth_metrics_per_image, format_metrics_table
from depth.eval.pose import load_odometry_poses, snippet_ates
from depth.eval.scale import stereo_eval_scale
from depth.eval.protocols import kitti_protocol, protocol_line
from depth.eval.report import ReportView, write_report
from depth.eval.scoring import aggregate, align, format_table, per_image_csv as dataset_csv, score_per_image  # noqa: E501
from depth.eval.sets import load_eval_set

if TYPE_CHECKING:  # the model path, for annotations only
    from depth.commands.evaluate_model import EvalModel

OpenModel = Callable[..., "EvalModel"]  # (checkpoint, device) -> EvalModel

ROOT = Path(__file__).resolve().parent

JSON_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "n_images", "ratio_median", "ratio_std")


def _json_clean(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


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

def cmd_export_gt(args, open_model: OpenModel | None = None) -> int:
    """The GT file of a split (no model: ``open_model`` is the sub-commands' common signature)."""
    entries = read_split_file(split_file(args.split, "test"))
    _check_split_matches_data(args, entries)
    mode = gt_kind_for_split(args.split, args.gt_source)
    gt = export_gt(args.data_path, entries, mode=mode, exact=args.exact_monodepth2,
                   progress=not args.no_progress, workers=args.workers)
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
        index = write_report(args.report, run=run, metric_names=proto.metrics, per_abs_rel=per["abs_rel"],
                             names=names, view=view, n=args.report_n)
        print(f"report: {index}")
    return 0


def _depth_dataset(args, model: EvalModel | None, scale) -> int:
    """``--dataset make3d|cityscapes|nyuv2``: the set's protocol (depth/eval/protocols.py)."""
    if args.zoom or args.crop:
        raise EvalError("--zoom/--crop (the scale test) are for --dataset kitti")
    if args.gt_source != "auto" or args.exact_monodepth2:
        raise EvalError("--gt-source and --exact-monodepth2 are for --dataset kitti (velodyne GT)")
    if not args.data_path:
        raise EvalError(f"--dataset {args.dataset} needs --data-path (the dataset folder: images and GT)")
    es = load_eval_set(args.dataset, args.data_path, split=args.split, gt=args.gt)
    proto = es.protocol.with_range(args.min_depth, args.max_depth)
    size = None
    if args.disparities:
        disp = load_disparities(args.disparities)
        if len(disp) != len(es):
            raise EvalError(f"{args.disparities} holds {len(disp)} disparity maps but the {args.dataset} "
                            f"test set under {args.data_path} has {len(es)} images")
    else:
        size = model.input_size(args.width, args.height)
        disp = model.disparities(es.images, size, post_process=args.post_process, batch_size=args.batch_size,
                                 progress=not args.no_progress)
    kw = dict(fixed_scale=scale, median_scaling=not args.no_median_scaling)
    per = score_per_image(disp, es.gts, proto, **kw)
    m = aggregate(per, proto.metrics)
    line = protocol_line(proto, n_images=len(es), network_size=size,
                         trained_size=model.trained_size if model else None,
                         scaling=_scaling(args, scale), post_process=args.post_process)

    def view(i):
        gt = es.gts[i]
        return ReportView(es.images[i], disp[i], gt, align(disp[i], gt, proto, **kw),
                          proto.eval_box(*gt.shape))
    return _finish_depth(args, proto=proto, title=f"{args.dataset} {proto.split}", line=line, per=per,
                         metrics=m, names=es.names, csv_text=dataset_csv(per, es.names, proto.metrics),
                         view=view, size=size, scale=scale)


def cmd_depth(args, open_model: OpenModel | None = None) -> int:
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
    model = _open(open_model, args.checkpoint, args.device) if args.checkpoint else None
    cfg = model.cfg if model else None
    scale = stereo_eval_scale(cfg, args.stereo_scale, where=f"--stereo: {args.checkpoint}") if args.stereo else None
    if args.dataset != "kitti":
        return _depth_dataset(args, model, scale)
    args.split = args.split or "eigen"
    lo = 1e-3 if args.min_depth is None else args.min_depth
    hi = 80.0 if args.max_depth is None else args.max_depth
    mode = gt_kind_for_split(args.split, args.gt_source)
    size = None
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
        size = model.input_size(args.width, args.height)
        disp, windows, in_window = model.disparities_for_gt(
            KittiImageSet(args.data_path, entries), gt, size, zoom=args.zoom, crop=args.crop,
            post_process=args.post_process, batch_size=args.batch_size, progress=not args.no_progress)
    kwargs = eigen_metric_kwargs(mode, fixed_scale=scale, median_scaling=not args.no_median_scaling,
                                 min_depth=lo, max_depth=hi)
    per = compute_depth_metrics_per_image(disp, gt, windows=windows, pred_in_window=in_window, **kwargs)
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
                         trained_size=model.trained_size if model else None,
                         scaling=_scaling(args, scale), post_process=args.post_process, extra_crop=extra)
    images = KittiImageSet(args.data_path, entries) if args.data_path else None

    def view(i):
        g = gt.dense(i) if hasattr(gt, "dense") else np.asarray(gt[i], np.float32)
        a = align(disp[i], g, proto, fixed_scale=scale, median_scaling=not args.no_median_scaling)
        return ReportView(images[i] if images is not None else None, disp[i], g, a, proto.eval_box(*g.shape))
    names = [f"{e.folder} {e.frame} {e.side}" for e in entries]
    return _finish_depth(args, proto=proto, title=title, line=line, per=per, metrics=m, names=names,
                         csv_text=per_image_csv(per, entries), view=view, size=size, scale=scale)


def cmd_pose(args, open_model: OpenModel | None = None) -> int:
    seq = int(args.sequence)
    poses_path = Path(args.poses) if args.poses else Path(args.odometry_path or ".") / "poses" / f"{seq:02d}.txt"
    gt_poses = load_odometry_poses(poses_path)
    if bool(args.checkpoint) == bool(args.pred_poses):
        raise EvalError("give exactly one of --checkpoint and --pred-poses")
    if args.pred_poses:
        pred = open_array_file(args.pred_poses, "--pred-poses file")
        if pred.ndim != 3 or pred.shape[1:] != (4, 4):
            raise EvalError(f"{args.pred_poses}: expected (N, 4, 4) relative poses, got {pred.shape}")
    else:
        if not args.odometry_path:
            raise EvalError("--checkpoint needs --odometry-path (sequences/NN/image_2/*.png|jpg)")
        model = _open(open_model, args.checkpoint, "cpu")
        pred = model.relative_poses(args.odometry_path, seq, len(gt_poses), batch_size=args.batch_size,
                                    progress=not args.no_progress)
    ates = snippet_ates(pred, gt_poses, track_length=5)
    res = {"ate_mean": float(np.mean(ates)), "ate_std": float(np.std(ates)), "n_snippets": int(len(ates)),
           "sequence": f"{seq:02d}"}
    print(f"\n   Trajectory error (sequence {seq:02d}, {len(ates)} 5-frame snippets): "
          f"{res['ate_mean']:0.3f}, std: {res['ate_std']:0.3f}\n")
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(res, indent=2) + "\n")
    return 0


def _open(open_model: OpenModel | None, checkpoint: str, device: str) -> EvalModel:
    if open_model is None:  # a defect: evaluate.py sends --checkpoint to depth.commands.evaluate_model
        raise RuntimeError("depth.commands.evaluate scores saved predictions; a --checkpoint needs "
                           "depth.commands.evaluate_model.run")
    return open_model(checkpoint, device)


COMMANDS = {"export-gt": cmd_export_gt, "depth": cmd_depth, "pose": cmd_pose}


def run(args, open_model: OpenModel | None = None) -> int:
    """The sub-command ``args.command`` with the parsed arguments (:func:`evaluate.build_parser`);
    ``open_model(checkpoint, device)`` opens ``--checkpoint`` (the model path's
    :class:`depth.commands.evaluate_model.EvalModel`), called only after the arguments are checked."""
    for name in ("zoom", "crop"):
        z = getattr(args, name, None)
        if z is not None and not z >= 1.0:
            raise EvalError(f"--{name} must be >= 1, got {z}")
    return COMMANDS[args.command](args, open_model)
