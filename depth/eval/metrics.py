"""KITTI depth metrics (Eigen protocol) with fused, parallel numba kernels.

For every image, in one pass over the pixels that can count (docs/method.md §7):

1. the network-size disparity is resized to the GT size with OpenCV's ``INTER_LINEAR`` arithmetic
   (float32, half-pixel centres, horizontal then vertical) -- but only at the GT pixels that are
   scored, never for the whole map;
2. depth = 1 / disparity (float32, as Monodepth2); optionally times a fixed scale (stereo: 5.4);
3. mask: ``min_depth < gt < max_depth`` (or ``gt > 0`` with ``gt_range_mask=False``, Monodepth2's
   ``eigen_benchmark`` rule) and the Garg crop (rows ``0.40810811 H .. 0.99189189 H``, columns
   ``0.03594771 W .. 0.96405229 W``, truncated to integers as Monodepth2 does);
4. median scaling ``ratio = median(gt) / median(pred)`` (float64), clamp to ``[min_depth, max_depth]``;
5. abs rel, sq rel, RMSE, RMSE log, delta < 1.25, 1.25^2, 1.25^3, accumulated in float64.

Images run in parallel (``prange``); the kernels are cached on disk (``cache=True``), so only the
first run in a fresh environment pays the compile time.

GT may be a list / object array of ``(H_i, W_i)`` float maps (0 = invalid), an ``(N, H, W)`` array,
or a :class:`depth.eval.gt.SparseGT` (valid pixels only, the fast path).
"""
from __future__ import annotations

import math
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import prange

from common.errors import EvalError
from common.threads import keep_torch_threads
from depth.eval.gt import SparseGT
from depth.resample import bilinear_at, linear_tables

__all__ = [
    "METRIC_NAMES",
    "compute_depth_metrics",
    "compute_depth_metrics_per_image",
    "aggregate_metrics",
    "garg_crop_box",
    "format_metrics_table",
    "warmup",
]

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
_NCOL = 9  # 7 metrics, ratio, number of valid pixels

GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)


def garg_crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of the Garg crop, exactly as Monodepth2 computes it."""
    c = np.array([GARG_CROP[0] * height, GARG_CROP[1] * height,
                  GARG_CROP[2] * width, GARG_CROP[3] * width]).astype(np.int32)
    return int(c[0]), int(c[1]), int(c[2]), int(c[3])


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _select(a, k, lo, hi):
    """The ``k``-th smallest of ``a[lo:hi + 1]`` (quickselect, median-of-three pivot; reorders ``a``)."""
    while hi > lo:
        mid = (lo + hi) >> 1
        x, y, z = a[lo], a[mid], a[hi]
        if x > y:
            x, y = y, x
        if y > z:
            y, z = z, y
        if x > y:
            x, y = y, x
        pivot = y
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return a[k]
    return a[k]


@numba.njit(cache=True, nogil=True)
def _kth_of_bucket(v, n, bits, key, rank, cand):
    c = 0
    for k in range(n):
        if (bits[k] >> 16) == key:
            cand[c] = v[k]
            c += 1
    return _select(cand, rank, 0, c - 1)


@numba.njit(cache=True, nogil=True)
def _median(v, n, f32, hist, cand):
    """``np.median(v[:n])`` for values that float32 holds exactly (GT and predicted depths are
    float32): the float32 bit patterns of non-negative numbers sort as the numbers do, so a
    histogram of their top 16 bits finds the bucket of each middle element, and a selection among
    that bucket's few members finds the element (3-4x faster than ``np.median`` on 20k values:
    ``bench/eval_speed.py``).
    ``hist`` (65536 int32) is zero on entry and on return; ``f32``, ``cand``: ``n`` scratch each."""
    for k in range(n):
        f32[k] = v[k]
    bits = f32[:n].view(np.uint32)
    kmin = 65535
    kmax = 0
    for k in range(n):
        key = bits[k] >> 16
        hist[key] += 1
        if key < kmin:
            kmin = key
        if key > kmax:
            kmax = key
    if kmax >= 0x8000:  # a negative value: bit order is not value order there
        hist[kmin:kmax + 1] = 0
        return np.median(v[:n])
    m1 = (n - 1) // 2
    m2 = n // 2
    cum = 0
    b1 = -1
    r1 = 0
    b2 = -1
    r2 = 0
    for key in range(kmin, kmax + 1):
        c = hist[key]
        if b1 < 0 and cum + c > m1:
            b1 = key
            r1 = m1 - cum
        if cum + c > m2:
            b2 = key
            r2 = m2 - cum
            break
        cum += c
    hist[kmin:kmax + 1] = 0
    x1 = _kth_of_bucket(v, n, bits, b1, r1, cand)
    if m2 == m1:
        return x1
    return 0.5 * (x1 + _kth_of_bucket(v, n, bits, b2, r2, cand))


@numba.njit(cache=True, nogil=True)
def _score(g, p, n, median_scaling, scale, lo, hi, row, f32, hist, cand):
    """Metrics of one image from its ``n`` valid (gt, float32 depth) pairs; writes ``row``."""
    row[8] = n
    if n == 0:
        for k in range(8):
            row[k] = np.nan
        return
    gv = g[:n]
    pv = p[:n]
    if scale != 1.0:
        for k in range(n):
            pv[k] = np.float64(np.float32(np.float32(pv[k]) * np.float32(scale)))
    ratio = np.nan
    if median_scaling:
        ratio = _median(gv, n, f32, hist, cand) / _median(pv, n, f32, hist, cand)
        for k in range(n):
            pv[k] = pv[k] * ratio
    s_abs = 0.0
    s_sq = 0.0
    s_se = 0.0
    s_log = 0.0
    c1 = 0
    c2 = 0
    c3 = 0
    for k in range(n):
        d = pv[k]
        if d < lo:
            d = lo
        elif d > hi:
            d = hi
        t = gv[k]
        e = t - d
        s_abs += abs(e) / t
        s_sq += e * e / t
        s_se += e * e
        le = math.log(t / d)
        s_log += le * le
        th = max(t / d, d / t)
        if th < 1.25:
            c1 += 1
        if th < 1.25 ** 2:
            c2 += 1
        if th < 1.25 ** 3:
            c3 += 1
    row[0] = s_abs / n
    row[1] = s_sq / n
    row[2] = math.sqrt(s_se / n)
    row[3] = math.sqrt(s_log / n)
    row[4] = c1 / n
    row[5] = c2 / n
    row[6] = c3 / n
    row[7] = ratio


@numba.njit(cache=True, nogil=True)
def _mask_box(h, w, win, garg):
    """Rows/cols that can count: the window intersected with the Garg crop (full-image coords)."""
    r0, r1, c0, c1 = win[0], win[1], win[2], win[3]
    if garg:
        r0 = max(r0, int(0.40810811 * h))
        r1 = min(r1, int(0.99189189 * h))
        c0 = max(c0, int(0.03594771 * w))
        c1 = min(c1, int(0.96405229 * w))
    return r0, r1, c0, c1


@numba.njit(cache=True, nogil=True)
def _tables_for(pred, h, w, win, pred_in_window):
    """Resize tables mapping GT pixel (r, c) -> prediction; offsets to subtract from (r, c)."""
    ph, pw = pred.shape
    if pred_in_window:
        yi0, yi1, yw0, yw1 = linear_tables(ph, win[1] - win[0], False)
        xi0, xi1, xw0, xw1 = linear_tables(pw, win[3] - win[2], True)
        return yi0, yi1, yw0, yw1, xi0, xi1, xw0, xw1, win[0], win[2]
    yi0, yi1, yw0, yw1 = linear_tables(ph, h, False)
    xi0, xi1, xw0, xw1 = linear_tables(pw, w, True)
    return yi0, yi1, yw0, yw1, xi0, xi1, xw0, xw1, 0, 0


@numba.njit(cache=True, nogil=True)
def _image_dense(pred, gt, win, pred_in_window, garg, range_mask, lo, hi, median_scaling, scale,
                 g, p, row, f32, hist, cand):
    h, w = gt.shape
    yi0, yi1, yw0, yw1, xi0, xi1, xw0, xw1, oy, ox = _tables_for(pred, h, w, win, pred_in_window)
    r0, r1, c0, c1 = _mask_box(h, w, win, garg)
    n = 0
    for r in range(r0, r1):
        for c in range(c0, c1):
            t = gt[r, c]
            if range_mask:
                ok = t > lo and t < hi
            else:
                ok = t > 0
            if ok:
                disp = bilinear_at(pred, r - oy, c - ox, yi0, yi1, yw0, yw1, xi0, xi1, xw0, xw1)
                g[n] = t
                p[n] = np.float32(1.0) / disp
                n += 1
    _score(g, p, n, median_scaling, scale, lo, hi, row, f32, hist, cand)


# _image_sparse repeats _image_dense's inner test-and-append on purpose: the same lines as one
# inlined njit helper measured 40x slower on dense maps (bench/eval_speed.py: 0.28 s -> 11.3 s)
@numba.njit(cache=True, nogil=True)
def _image_sparse(pred, h, w, base, row_ptr, cols, depths, win, pred_in_window, garg, range_mask,
                  lo, hi, median_scaling, scale, g, p, row, f32, hist, cand):
    """``row_ptr``: this image's ``H + 1`` row offsets (relative to ``base``)."""
    yi0, yi1, yw0, yw1, xi0, xi1, xw0, xw1, oy, ox = _tables_for(pred, h, w, win, pred_in_window)
    r0, r1, c0, c1 = _mask_box(h, w, win, garg)
    n = 0
    for r in range(max(r0, 0), min(r1, h)):
        for k in range(base + row_ptr[r], base + row_ptr[r + 1]):
            c = np.int64(cols[k])
            if c < c0 or c >= c1:
                continue
            t = depths[k]
            if range_mask:
                ok = t > lo and t < hi
            else:
                ok = t > 0
            if ok:
                disp = bilinear_at(pred, r - oy, c - ox, yi0, yi1, yw0, yw1, xi0, xi1, xw0, xw1)
                g[n] = t
                p[n] = np.float32(1.0) / disp
                n += 1
    _score(g, p, n, median_scaling, scale, lo, hi, row, f32, hist, cand)


@numba.njit(cache=True, parallel=True)
def _metrics_dense_kernel(preds, gts, windows, pred_in_window, garg, range_mask, lo, hi,
                          median_scaling, scale, maxn, nchunks):
    n_img = len(gts)
    out = np.empty((n_img, _NCOL), dtype=np.float64)
    gbuf = np.empty((nchunks, maxn), dtype=np.float64)
    pbuf = np.empty((nchunks, maxn), dtype=np.float64)
    fbuf = np.empty((nchunks, maxn), dtype=np.float32)
    cbuf = np.empty((nchunks, maxn), dtype=np.float64)
    hbuf = np.zeros((nchunks, 65536), dtype=np.int32)
    for j in prange(nchunks):  # images dealt round-robin; one scratch buffer per chunk
        for i in range(j, n_img, nchunks):
            _image_dense(preds[i], gts[i], windows[i], pred_in_window, garg, range_mask, lo, hi,
                         median_scaling, scale, gbuf[j], pbuf[j], out[i], fbuf[j], hbuf[j], cbuf[j])
    return out


@numba.njit(cache=True, parallel=True)
def _metrics_sparse_kernel(preds, heights, widths, img_ptr, row_off, row_ptr, cols, depths, windows,
                           pred_in_window, garg, range_mask, lo, hi, median_scaling, scale, maxn,
                           nchunks):
    n_img = heights.shape[0]
    out = np.empty((n_img, _NCOL), dtype=np.float64)
    gbuf = np.empty((nchunks, maxn), dtype=np.float64)
    pbuf = np.empty((nchunks, maxn), dtype=np.float64)
    fbuf = np.empty((nchunks, maxn), dtype=np.float32)
    cbuf = np.empty((nchunks, maxn), dtype=np.float64)
    hbuf = np.zeros((nchunks, 65536), dtype=np.int32)
    for j in prange(nchunks):
        for i in range(j, n_img, nchunks):
            h = heights[i]
            rp = row_ptr[row_off[i]: row_off[i] + h + 1]
            _image_sparse(preds[i], h, widths[i], img_ptr[i], rp, cols, depths, windows[i],
                          pred_in_window, garg, range_mask, lo, hi, median_scaling, scale,
                          gbuf[j], pbuf[j], out[i], fbuf[j], hbuf[j], cbuf[j])
    return out


# ----------------------------------------------------------------------------------------------
# Python API
# ----------------------------------------------------------------------------------------------

def _nchunks(n: int) -> int:
    """Images are dealt round-robin to this many chunks, one scratch buffer each."""
    return max(1, min(n, numba.get_num_threads() * 4))


def _is_sparse(gt) -> bool:
    return hasattr(gt, "row_ptr") and hasattr(gt, "img_ptr")


def _as_pred_container(pred_disp):
    """(N, h, w) float32 array, or a list of 2-D float32 maps (sizes may differ)."""
    if isinstance(pred_disp, np.ndarray) and pred_disp.dtype != object:
        if pred_disp.ndim == 4 and pred_disp.shape[1] == 1:
            pred_disp = pred_disp[:, 0]
        if pred_disp.ndim != 3:
            raise ValueError(f"predictions must be (N, h, w) disparities, got shape {pred_disp.shape}")
        return np.ascontiguousarray(pred_disp, dtype=np.float32)
    maps = [np.ascontiguousarray(np.squeeze(m), dtype=np.float32) for m in pred_disp]
    for m in maps:
        if m.ndim != 2:
            raise ValueError(f"each prediction must be a 2-D disparity map, got shape {m.shape}")
    return maps


def _as_gt_container(gt):
    if isinstance(gt, np.ndarray) and gt.dtype != object:
        if gt.ndim != 3:
            raise ValueError(f"dense GT must be (N, H, W), got shape {gt.shape}")
        return np.ascontiguousarray(gt, dtype=np.float32)
    maps = [np.ascontiguousarray(m, dtype=np.float32) for m in gt]
    for m in maps:
        if m.ndim != 2:
            raise ValueError(f"each GT map must be 2-D, got shape {m.shape}")
    return maps


_TLS = threading.local()


def _thread_buffers(maxn: int):
    bufs = getattr(_TLS, "bufs", None)
    if bufs is None or bufs[0].shape[0] < maxn:
        bufs = (np.empty(maxn, np.float64), np.empty(maxn, np.float64), np.empty(maxn, np.float32),
                np.zeros(65536, np.int32), np.empty(maxn, np.float64))
        _TLS.bufs = bufs
    return bufs


def _run_threads(fn, n: int) -> None:
    """``fn(i)`` for every image on a thread pool (the per-image kernels release the GIL)."""
    workers = max(1, min(n, numba.get_num_threads()))
    if workers == 1:
        for i in range(n):
            fn(i)
        return
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(fn, range(n), chunksize=max(1, n // (workers * 8))))


def _windows(shapes, windows) -> np.ndarray:
    n = len(shapes)
    if windows is None:
        out = np.zeros((n, 4), dtype=np.int64)
        for i, (h, w) in enumerate(shapes):
            out[i] = (0, h, 0, w)
        return out
    out = np.ascontiguousarray(windows, dtype=np.int64)
    if out.shape == (4,):
        out = np.repeat(out[None], n, 0)
    if out.shape != (n, 4):
        raise ValueError(f"windows must be (N, 4) = (top, bottom, left, right), got {out.shape}")
    for i, (h, w) in enumerate(shapes):
        t, b, l, r = out[i]
        if not (0 <= t < b <= h and 0 <= l < r <= w):
            raise ValueError(f"window {tuple(out[i])} of image {i} is outside its {h}x{w} GT map")
    return out


def compute_depth_metrics_per_image(pred_disp, gt, *, median_scaling: bool = True,
                                    fixed_scale: float | None = None, min_depth: float = 1e-3,
                                    max_depth: float = 80.0, garg_crop: bool = True,
                                    gt_range_mask: bool = True, windows=None,
                                    pred_in_window: bool = False) -> dict:
    """Per-image metrics: ``{name: (N,) float64}`` for the 7 metrics, ``ratio`` and ``n_valid``.

    Args:
        pred_disp: ``(N, h, w)`` float32 scaled disparity (or a list of 2-D maps of any size).
        gt: list / object array / ``(N, H, W)`` array of dense GT maps (0 = invalid), or a
            ``SparseGT``.
        median_scaling: per-image median scaling (monocular models).
        fixed_scale: multiply predicted depth by this first (stereo models: 5.4).
        min_depth, max_depth: GT range of the mask and clamp range of the prediction.
        garg_crop: apply the Garg crop (``eigen``); ``False`` for ``eigen_benchmark``.
        gt_range_mask: mask ``min_depth < gt < max_depth``; ``False``: ``gt > 0`` (benchmark rule).
        windows: optional ``(N, 4)`` ``(top, bottom, left, right)`` GT windows; only pixels inside
            count (the Garg crop stays in full-image coordinates).
        pred_in_window: the prediction covers the window only (``--zoom``), not the full image.
    """
    preds = _as_pred_container(pred_disp)
    n_pred = len(preds)
    sparse = _is_sparse(gt)
    n_gt = len(gt)
    if n_pred != n_gt:
        raise EvalError(f"{n_pred} predictions but {n_gt} GT maps: the predictions and the GT must "
                         f"come from the same split, in the same order")
    scale = 1.0 if fixed_scale is None else float(fixed_scale)
    flags = (bool(pred_in_window), bool(garg_crop), bool(gt_range_mask), float(min_depth),
             float(max_depth), bool(median_scaling), scale)
    out = np.full((n_gt, _NCOL), np.nan)
    if n_gt == 0:
        pass
    elif sparse:
        shapes = list(zip(gt.heights.tolist(), gt.widths.tolist()))
        wins = _windows(shapes, windows)
        maxn = max(1, int(np.diff(gt.img_ptr).max()))
        if isinstance(preds, np.ndarray):
            with keep_torch_threads():  # numba's OpenMP launch would leave torch on its thread count
                out = _metrics_sparse_kernel(preds, gt.heights, gt.widths, gt.img_ptr, gt.row_off, gt.row_ptr,
                                             gt.cols, gt.depths, wins, *flags, maxn, _nchunks(n_gt))
        else:
            def one(i):
                g, p, f32, hist, cand = _thread_buffers(maxn)
                h = int(gt.heights[i])
                rp = gt.row_ptr[gt.row_off[i]: gt.row_off[i] + h + 1]
                _image_sparse(preds[i], h, int(gt.widths[i]), gt.img_ptr[i], rp, gt.cols, gt.depths,
                              wins[i], *flags, g, p, out[i], f32, hist, cand)
            _run_threads(one, n_gt)
    else:
        gts = _as_gt_container(gt)
        shapes = [m.shape for m in gts]
        wins = _windows(shapes, windows)
        boxes = [garg_crop_box(h, w) if garg_crop else (0, h, 0, w) for h, w in set(shapes)]
        maxn = max(1, max((b - t) * (r - l) for t, b, l, r in boxes))
        if isinstance(preds, np.ndarray) and isinstance(gts, np.ndarray):
            with keep_torch_threads():
                out = _metrics_dense_kernel(preds, gts, wins, *flags, maxn, _nchunks(n_gt))
        else:
            def one(i):
                g, p, f32, hist, cand = _thread_buffers(maxn)
                _image_dense(preds[i], gts[i], wins[i], *flags, g, p, out[i], f32, hist, cand)
            _run_threads(one, n_gt)
    res = {name: out[:, k] for k, name in enumerate(METRIC_NAMES)}
    res["ratio"] = out[:, 7]
    res["n_valid"] = out[:, 8].astype(np.int64)
    return res


def aggregate_metrics(per_image: dict) -> dict:
    """Mean over images with at least one valid pixel; ratio median and ``std(ratios / median)``
    as Monodepth2 prints them (NaN without median scaling)."""
    valid = per_image["n_valid"] > 0
    n_empty = int((~valid).sum())
    if n_empty:
        warnings.warn(f"{n_empty} image(s) have no valid GT pixel and are left out of the means",
                      stacklevel=3)
    res = {}
    for name in METRIC_NAMES:
        v = per_image[name][valid]
        res[name] = float(np.mean(v)) if len(v) else float("nan")
    res["n_images"] = int(valid.sum())
    ratios = per_image["ratio"][valid]
    ratios = ratios[np.isfinite(ratios)]
    if len(ratios):
        med = float(np.median(ratios))
        res["ratio_median"] = med
        res["ratio_std"] = float(np.std(ratios / med))
    else:
        res["ratio_median"] = float("nan")
        res["ratio_std"] = float("nan")
    return res


def compute_depth_metrics(pred_disp, gt, *, median_scaling: bool = True, fixed_scale: float | None = None,
                          min_depth: float = 1e-3, max_depth: float = 80.0, garg_crop: bool = True,
                          gt_range_mask: bool = True, windows=None, pred_in_window: bool = False) -> dict:
    """Eigen-protocol metrics averaged over images.

    Returns ``{abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3, n_images, ratio_median, ratio_std}``.
    Arguments as :func:`compute_depth_metrics_per_image`.
    """
    per = compute_depth_metrics_per_image(
        pred_disp, gt, median_scaling=median_scaling, fixed_scale=fixed_scale, min_depth=min_depth,
        max_depth=max_depth, garg_crop=garg_crop, gt_range_mask=gt_range_mask, windows=windows,
        pred_in_window=pred_in_window)
    return aggregate_metrics(per)


def format_metrics_table(m: dict) -> str:
    """Monodepth2's table: a header row and a row of the 7 metrics (``&``-separated)."""
    head = ("{:>8} | " * 7).format(*METRIC_NAMES)
    row = ("&{: 8.3f}  " * 7).format(*[m[k] for k in METRIC_NAMES]) + "\\\\"
    lines = [head, row]
    if np.isfinite(m.get("ratio_median", float("nan"))):
        lines.insert(0, " Scaling ratios | med: {:0.3f} | std: {:0.3f}".format(m["ratio_median"],
                                                                          m["ratio_std"]))
    lines.append(f" images: {m['n_images']}")
    return "\n".join(lines)


def markdown_metrics_table(rows: dict[str, dict]) -> str:
    """A markdown table of the 7 metrics, one row per ``{label: metrics}`` entry (4 decimals)."""
    w = max(len(label) for label in rows)
    lines = [f"| {'':{w}s} | " + " | ".join(f"{k:>8s}" for k in METRIC_NAMES) + " |",
             "|" + "-" * (w + 2) + "|" + "|".join("-" * 10 for _ in METRIC_NAMES) + "|"]
    lines += [f"| {label:{w}s} | " + " | ".join(f"{m[k]:8.4f}" for k in METRIC_NAMES) + " |"
              for label, m in rows.items()]
    return "\n".join(lines)


def warmup() -> None:
    """Compile (or load from the cache) the kernels on a tiny problem."""
    gt = np.zeros((1, 8, 8), np.float32)
    gt[0, 5:, 2:6] = 5.0
    pred = np.full((1, 4, 4), 0.2, np.float32)
    compute_depth_metrics(pred, gt)
    compute_depth_metrics(pred, SparseGT.from_dense(gt))
