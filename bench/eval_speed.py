#!/usr/bin/env python
"""Evaluation speed: numpy reference loop vs numba kernels vs the GT-read floor; GT export speed;
whole-process ``evaluate.py depth --disparities`` vs the reference reading a dense GT file.

    python bench/eval_speed.py                 # 697 synthetic 375x1242 GT maps (~5 % valid)
    python bench/eval_speed.py --n 100 --skip-process --skip-cold-compile    # quick

Numbers measured on the development machine are in docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numba
import numpy as np

from depth.eval.gt import SparseGT, export_gt, save_dense_gt, save_sparse_gt
from depth.eval.metrics import _median, compute_depth_metrics

ROOT = Path(__file__).resolve().parents[1]

MIN_DEPTH, MAX_DEPTH = 1e-3, 80.0
NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


# ----------------------------------------------------------------------------------------------
# References (Monodepth2 style, written here for comparison only)
# ----------------------------------------------------------------------------------------------

def compute_errors(gt, pred):
    thresh = np.maximum((gt / pred), (pred / gt))
    a1 = (thresh < 1.25).mean()
    a2 = (thresh < 1.25 ** 2).mean()
    a3 = (thresh < 1.25 ** 3).mean()
    rmse = np.sqrt(((gt - pred) ** 2).mean())
    rmse_log = np.sqrt(((np.log(gt) - np.log(pred)) ** 2).mean())
    abs_rel = np.mean(np.abs(gt - pred) / gt)
    sq_rel = np.mean(((gt - pred) ** 2) / gt)
    return abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3


def reference_loop(pred_disps, gt_depths):
    """Monodepth2's evaluate_depth loop (eigen), accumulating in float64 after 1/disp."""
    errors, ratios = [], []
    for i in range(pred_disps.shape[0]):
        gt_depth = gt_depths[i]
        gt_height, gt_width = gt_depth.shape[:2]
        pred_disp = cv2.resize(pred_disps[i], (gt_width, gt_height))
        pred_depth = 1 / pred_disp
        mask = np.logical_and(gt_depth > MIN_DEPTH, gt_depth < MAX_DEPTH)
        crop = np.array([0.40810811 * gt_height, 0.99189189 * gt_height,
                         0.03594771 * gt_width, 0.96405229 * gt_width]).astype(np.int32)
        crop_mask = np.zeros(mask.shape)
        crop_mask[crop[0]:crop[1], crop[2]:crop[3]] = 1
        mask = np.logical_and(mask, crop_mask)
        pred_depth = pred_depth[mask].astype(np.float64)
        gt_depth = gt_depth[mask].astype(np.float64)
        ratio = np.median(gt_depth) / np.median(pred_depth)
        ratios.append(ratio)
        pred_depth *= ratio
        pred_depth[pred_depth < MIN_DEPTH] = MIN_DEPTH
        pred_depth[pred_depth > MAX_DEPTH] = MAX_DEPTH
        errors.append(compute_errors(gt_depth, pred_depth))
    return np.array(errors).mean(0), np.array(ratios)


def monodepth2_generate_depth_map(calib_dir, velo_filename, cam=2, vel_depth=True):
    """Monodepth2's kitti_utils.generate_depth_map, for the export comparison."""
    def read_calib_file(path):
        float_chars = set("0123456789.e+- ")
        data = {}
        with open(path, "r") as f:
            for line in f.readlines():
                key, value = line.split(":", 1)
                value = value.strip()
                data[key] = value
                if float_chars.issuperset(value):
                    try:
                        data[key] = np.array(list(map(float, value.split(" "))))
                    except ValueError:
                        pass
        return data

    cam2cam = read_calib_file(os.path.join(calib_dir, "calib_cam_to_cam.txt"))
    velo2cam = read_calib_file(os.path.join(calib_dir, "calib_velo_to_cam.txt"))
    velo2cam = np.hstack((velo2cam["R"].reshape(3, 3), velo2cam["T"][..., np.newaxis]))
    velo2cam = np.vstack((velo2cam, np.array([0, 0, 0, 1.0])))
    im_shape = cam2cam["S_rect_02"][::-1].astype(np.int32)
    R_cam2rect = np.eye(4)
    R_cam2rect[:3, :3] = cam2cam["R_rect_00"].reshape(3, 3)
    P_rect = cam2cam["P_rect_0" + str(cam)].reshape(3, 4)
    P_velo2im = np.dot(np.dot(P_rect, R_cam2rect), velo2cam)
    velo = np.fromfile(velo_filename, dtype=np.float32).reshape(-1, 4)
    velo[:, 3] = 1.0
    velo = velo[velo[:, 0] >= 0, :]
    velo_pts_im = np.dot(P_velo2im, velo.T).T
    velo_pts_im[:, :2] = velo_pts_im[:, :2] / velo_pts_im[:, 2][..., np.newaxis]
    if vel_depth:
        velo_pts_im[:, 2] = velo[:, 0]
    velo_pts_im[:, 0] = np.round(velo_pts_im[:, 0]) - 1
    velo_pts_im[:, 1] = np.round(velo_pts_im[:, 1]) - 1
    val_inds = (velo_pts_im[:, 0] >= 0) & (velo_pts_im[:, 1] >= 0)
    val_inds = val_inds & (velo_pts_im[:, 0] < im_shape[1]) & (velo_pts_im[:, 1] < im_shape[0])
    velo_pts_im = velo_pts_im[val_inds, :]
    depth = np.zeros((im_shape[:2]))
    depth[velo_pts_im[:, 1].astype(int), velo_pts_im[:, 0].astype(int)] = velo_pts_im[:, 2]
    m, n = depth.shape
    inds = velo_pts_im[:, 1] * (n - 1) + velo_pts_im[:, 0] - 1
    dupe_inds = [item for item, count in Counter(inds).items() if count > 1]
    for dd in dupe_inds:
        pts = np.where(inds == dd)[0]
        x_loc = int(velo_pts_im[pts[0], 0])
        y_loc = int(velo_pts_im[pts[0], 1])
        depth[y_loc, x_loc] = velo_pts_im[pts, 2].min()
    depth[depth < 0] = 0
    return depth


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

def synthetic(n, seed=0, density=0.05, shape=(375, 1242), net=(192, 640)):
    rng = np.random.default_rng(seed)
    gts = []
    for _ in range(n):
        m = np.zeros(shape, np.float32)
        idx = np.flatnonzero(rng.random(m.size, dtype=np.float32) < density)
        m.reshape(-1)[idx] = rng.uniform(1.0, 90.0, idx.size).astype(np.float32)
        gts.append(m)
    preds = (rng.random((n,) + net, dtype=np.float32) * 0.3 + 0.01).astype(np.float32)
    return gts, preds


def best_of(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def rel_diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def row(name, seconds, note=""):
    print(f"  {name:<58} {seconds:8.3f} s  {note}")


# ----------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------

def bench_metrics(args, gts, preds, tmp: Path):
    print(f"\n== depth metrics: {len(gts)} GT maps {gts[0].shape[0]}x{gts[0].shape[1]}, "
          f"predictions {preds.shape[2]}x{preds.shape[1]}, {numba_threads()} numba threads ==")
    if not args.skip_cold_compile:
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp / "numba_cold"))
        code = ("import time; t=time.perf_counter(); "
                "from depth.eval.metrics import warmup; warmup(); print(time.perf_counter()-t)")
        t = float(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                                 text=True).stdout.split()[-1])
        row("numba compile, cold cache (both GT kinds, separate process)", t)
    t, _ = best_of(lambda: compute_depth_metrics(preds[:2], gts[:2]), 1)
    row("numba first call in this process (kernels from the cache)", t)

    floor, _ = best_of(lambda: [g.max() for g in gts], args.repeat)
    row("floor: read every GT map once (numpy max)", floor)
    t_ref, (ref, ref_ratios) = best_of(lambda: reference_loop(preds, gts), args.repeat)
    row("numpy reference loop (Monodepth2 style, cv2.resize)", t_ref)
    t_nb, m = best_of(lambda: compute_depth_metrics(preds, gts), args.repeat)
    row("numba, dense GT maps (list)", t_nb, f"{t_nb / floor:.2f}x floor, {t_ref / t_nb:.1f}x faster than numpy")
    t_conv, sparse = best_of(lambda: SparseGT.from_dense(gts), 1)
    row("  (one-off) dense -> sparse GT conversion", t_conv)
    t_sp, ms = best_of(lambda: compute_depth_metrics(preds, sparse), args.repeat)
    row("numba, sparse GT", t_sp, f"{t_sp / floor:.2f}x floor, {t_ref / t_sp:.1f}x faster than numpy")

    cv2.setUseOptimized(False)
    ref_exact, _ = reference_loop(preds, gts)
    cv2.setUseOptimized(True)
    ours = [m[k] for k in NAMES]
    print(f"  agreement: max rel diff vs numpy ref {rel_diff(ours, ref):.1e} (cv2 optimised resize), "
          f"{rel_diff(ours, ref_exact):.1e} (cv2 unoptimised); dense vs sparse "
          f"{rel_diff(ours, [ms[k] for k in NAMES]):.1e}; ratio median {m['ratio_median']:.6f} vs "
          f"{np.median(ref_ratios):.6f}")
    dense_bytes = sum(g.nbytes for g in gts)
    print(f"  GT size: dense {dense_bytes / 2 ** 20:.0f} MiB, sparse {sparse.nbytes / 2 ** 20:.0f} MiB "
          f"({dense_bytes / sparse.nbytes:.1f}x smaller)")
    return sparse, t_ref


@numba.njit(cache=True)
def _repeat_np_median(v, reps):
    s = 0.0
    for _ in range(reps):
        s += np.median(v)
    return s


@numba.njit(cache=True)
def _repeat_hist_median(v, reps, f32, hist, cand):
    s = 0.0
    for _ in range(reps):
        s += _median(v, v.size, f32, hist, cand)
    return s


def bench_median(n=20000, reps=1000):
    """The kernels' median (float32 bit-pattern histogram) against numba's ``np.median``."""
    v = np.exp(np.random.default_rng(0).uniform(0, np.log(80), n)).astype(np.float32).astype(np.float64)
    f32, hist, cand = np.empty(n, np.float32), np.zeros(65536, np.int32), np.empty(n)
    assert _repeat_hist_median(v, 1, f32, hist, cand) == _repeat_np_median(v, 1)
    t_np, _ = best_of(lambda: _repeat_np_median(v, reps), 3)
    t_h, _ = best_of(lambda: _repeat_hist_median(v, reps, f32, hist, cand), 3)
    print(f"\n== one median of {n} depths (numba, one thread) ==")
    print(f"  {'np.median':<58} {1e3 * t_np / reps:8.3f} ms")
    print(f"  {'histogram of float32 bits + selection (the kernels)':<58} {1e3 * t_h / reps:8.3f} ms  "
          f"{t_np / t_h:.1f}x faster")


def numba_threads():
    return numba.get_num_threads()


def bench_export(args):
    root = Path(args.kitti_sample)
    calib = root / "2011_09_26"
    drive = "2011_09_26/2011_09_26_drive_0060_sync"
    scans = sorted((root / drive / "velodyne_points" / "data").glob("*.bin"))
    if not scans:
        print(f"\n== GT export: skipped (no velodyne scans under {root / drive}) ==")
        return
    entries = [(drive, int(p.stem), "l") for p in scans] * args.export_repeat
    print(f"\n== GT export: {len(entries)} real scans (drive 0060, {len(scans)} scans x {args.export_repeat}) ==")
    export_gt(root, entries[:2], progress=False)  # kernels from the cache
    t_md2, _ = best_of(lambda: [monodepth2_generate_depth_map(str(calib), str(root / drive / "velodyne_points"
                                                                             / "data" / f"{e[1]:010d}.bin"))
                                for e in entries], 1)
    row("Monodepth2-style numpy generate_depth_map", t_md2, f"{1e3 * t_md2 / len(entries):.2f} ms/scan")
    for workers in (1, None):
        t, _ = best_of(lambda: export_gt(root, entries, progress=False, workers=workers), args.repeat)
        label = "1 thread" if workers == 1 else "threads = CPUs"
        row(f"numba export, clean rule, sparse ({label})", t,
            f"{1e3 * t / len(entries):.2f} ms/scan, {t_md2 / t:.1f}x faster")
    t, _ = best_of(lambda: export_gt(root, entries, progress=False, exact=True), 1)
    row("numba export, --exact-monodepth2", t, f"{1e3 * t / len(entries):.2f} ms/scan, {t_md2 / t:.1f}x faster")
    t_read, _ = best_of(lambda: [np.fromfile(root / drive / "velodyne_points" / "data" / f"{e[1]:010d}.bin",
                                             np.float32) for e in entries], args.repeat)
    row("floor: read the scans (np.fromfile)", t_read)


def bench_process(args, gts, preds, sparse, tmp: Path):
    n = len(gts)
    print(f"\n== whole process: {n} images ==")
    pred_path, sparse_path, dense_path = tmp / "disp.npy", tmp / "gt_sparse.npz", tmp / "gt_dense.npz"
    np.save(pred_path, preds)
    save_sparse_gt(sparse_path, sparse)
    t = time.perf_counter()
    save_dense_gt(dense_path, gts, compressed=args.dense_compressed)
    print(f"  dense GT file ({'compressed' if args.dense_compressed else 'uncompressed'} npz, key 'data'): "
          f"{dense_path.stat().st_size / 2 ** 20:.0f} MiB written in {time.perf_counter() - t:.1f} s; "
          f"sparse GT file: {sparse_path.stat().st_size / 2 ** 20:.0f} MiB")
    split = tmp / "split.txt"
    split.write_text("".join(f"synthetic/drive {i} l\n" for i in range(n)))
    ref_cmd = [sys.executable, str(Path(__file__).resolve()), "--_reference-process", str(dense_path), str(pred_path)]
    our_cmd = [sys.executable, str(ROOT / "evaluate.py"), "depth", "--disparities", str(pred_path),
               "--gt", str(sparse_path), "--split", str(split)]
    our_dense_cmd = our_cmd[:-4] + ["--gt", str(dense_path), "--split", str(split)]
    for label, cmd in (("numpy reference process (np.load dense + loop)", ref_cmd),
                       ("evaluate.py depth --disparities, sparse GT", our_cmd),
                       ("evaluate.py depth --disparities, dense GT file", our_dense_cmd)):
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t)
        row(label, min(times))
        if label.startswith("numpy"):
            t_ref_proc = min(times)
        else:
            print(f"  {'':<58} {'':8}    = {min(times) / t_ref_proc:.2f}x the reference process")


def reference_process(gt_path, pred_path):
    gts = np.load(gt_path, fix_imports=True, encoding="latin1", allow_pickle=True)["data"]
    preds = np.load(pred_path)
    errors, _ = reference_loop(preds, gts)
    print(("&{: 8.3f}  " * 7).format(*errors.tolist()))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=697, help="number of synthetic GT maps (default 697)")
    p.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    p.add_argument("--kitti-sample", default=str(ROOT.parent / "shared" / "kitti_sample"))
    p.add_argument("--export-repeat", type=int, default=5, help="passes over the real scans")
    p.add_argument("--skip-process", action="store_true", help="skip the whole-process comparison")
    p.add_argument("--skip-export", action="store_true")
    p.add_argument("--skip-cold-compile", action="store_true")
    p.add_argument("--dense-compressed", action="store_true",
                   help="write the dense GT compressed, as Monodepth2 does (slow to write and to read)")
    p.add_argument("--_reference-process", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._reference_process:
        reference_process(*args._reference_process)
        return
    with tempfile.TemporaryDirectory(prefix="eval_speed_") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        gts, preds = synthetic(args.n)
        print(f"synthetic data: {args.n} maps in {time.perf_counter() - t:.1f} s; "
              f"{np.mean([np.count_nonzero(g) for g in gts[:20]]) / gts[0].size * 100:.1f} % valid")
        sparse, _ = bench_metrics(args, gts, preds, tmp)
        bench_median()
        if not args.skip_export:
            bench_export(args)
        if not args.skip_process:
            bench_process(args, gts, preds, sparse, tmp)


if __name__ == "__main__":
    main()
