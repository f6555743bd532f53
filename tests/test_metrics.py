"""depth/eval/metrics.py against an independent plain-numpy implementation of the Eigen protocol."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from depth.eval.gt import SparseGT
from depth.eval.metrics import (
    METRIC_NAMES,
    compute_depth_metrics,
    compute_depth_metrics_per_image,
    garg_crop_box,
    markdown_metrics_table,
)
from depth.resample import resize_linear


def _numpy_reference(preds, gts, *, median=True, scale=1.0, garg=True, range_mask=True, windows=None,
                     pred_in_window=False):
    """Plain numpy, Monodepth2's loop (float64 after 1/disp); cv2 unoptimised for the resize."""
    prev = cv2.useOptimized()
    cv2.setUseOptimized(False)
    try:
        rows, ratios = [], []
        for i, (p, g) in enumerate(zip(preds, gts)):
            H, W = g.shape
            t, b, l, r = windows[i] if windows is not None else (0, H, 0, W)
            if pred_in_window:
                disp = np.zeros((H, W), np.float32)
                disp[t:b, l:r] = cv2.resize(p, (r - l, b - t))
            else:
                disp = cv2.resize(p, (W, H))
            with np.errstate(divide="ignore"):
                depth = (1 / disp).astype(np.float32)
            mask = (g > 1e-3) & (g < 80) if range_mask else g > 0
            if garg:
                ct, cb, cl, cr = garg_crop_box(H, W)
                crop = np.zeros_like(mask)
                crop[ct:cb, cl:cr] = True
                mask &= crop
            win = np.zeros_like(mask)
            win[t:b, l:r] = True
            mask &= win
            d = depth[mask]
            if scale != 1.0:
                d = d * np.float32(scale)
            d = d.astype(np.float64)
            gt = g[mask].astype(np.float64)
            if median:
                ratio = np.median(gt) / np.median(d)
                ratios.append(ratio)
                d = d * ratio
            d = np.clip(d, 1e-3, 80)
            th = np.maximum(gt / d, d / gt)
            rows.append([np.mean(np.abs(gt - d) / gt), np.mean((gt - d) ** 2 / gt), np.sqrt(np.mean((gt - d) ** 2)),
                         np.sqrt(np.mean((np.log(gt) - np.log(d)) ** 2)), (th < 1.25).mean(),
                         (th < 1.25 ** 2).mean(), (th < 1.25 ** 3).mean()])
        return np.array(rows), np.array(ratios)
    finally:
        cv2.setUseOptimized(prev)


def _random_data(n=6, seed=0, shapes=((375, 1242), (370, 1226), (376, 1241)), net=(48, 160), density=0.05):
    rng = np.random.default_rng(seed)
    gts = []
    for i in range(n):
        h, w = shapes[i % len(shapes)]
        g = np.where(rng.random((h, w)) < density, rng.uniform(0.5, 90.0, (h, w)), 0).astype(np.float32)
        gts.append(g)
    preds = (rng.random((n,) + net) * 0.3 + 0.01).astype(np.float32)
    return preds, gts


def _check(res, ref_rows, ref_ratios, tol=1e-6):
    for k, name in enumerate(METRIC_NAMES):
        assert res[name] == pytest.approx(ref_rows[:, k].mean(), rel=tol, abs=1e-12), name
    if len(ref_ratios):
        med = np.median(ref_ratios)
        assert res["ratio_median"] == pytest.approx(med, rel=tol)
        assert res["ratio_std"] == pytest.approx(np.std(ref_ratios / med), rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("gt_kind", ["list", "sparse"])
def test_metrics_equal_numpy_reference(gt_kind):
    preds, gts = _random_data()
    gt = gts if gt_kind == "list" else SparseGT.from_dense(gts)
    res = compute_depth_metrics(preds, gt)
    rows, ratios = _numpy_reference(preds, gts)
    _check(res, rows, ratios)
    assert res["n_images"] == len(gts)
    assert set(res) == set(METRIC_NAMES) | {"n_images", "ratio_median", "ratio_std"}


def test_stacked_gt_stereo_scale_and_benchmark_rule():
    preds, gts = _random_data(n=4, shapes=((120, 400),))
    stacked = np.stack(gts)
    rows, _ = _numpy_reference(preds, gts, median=False, scale=5.4)
    res = compute_depth_metrics(preds, stacked, median_scaling=False, fixed_scale=5.4)
    _check(res, rows, [])
    assert np.isnan(res["ratio_median"])
    rows, ratios = _numpy_reference(preds, gts, garg=False, range_mask=False)
    for gt in (stacked, SparseGT.from_dense(gts)):
        _check(compute_depth_metrics(preds, gt, garg_crop=False, gt_range_mask=False), rows, ratios)


@pytest.mark.parametrize("pred_in_window", [False, True])
def test_windows_match_manual_crop(pred_in_window):
    preds, gts = _random_data(n=3)
    windows = np.array([(g.shape[0] // 4, 3 * g.shape[0] // 4, g.shape[1] // 4, 3 * g.shape[1] // 4)
                        for g in gts])
    rows, ratios = _numpy_reference(preds, gts, windows=windows, pred_in_window=pred_in_window)
    for gt in (gts, SparseGT.from_dense(gts)):
        res = compute_depth_metrics(preds, gt, windows=windows, pred_in_window=pred_in_window)
        _check(res, rows, ratios)


def test_per_image_and_list_predictions_of_mixed_sizes():
    preds, gts = _random_data(n=4)
    per = compute_depth_metrics_per_image(preds, SparseGT.from_dense(gts))
    rows, ratios = _numpy_reference(preds, gts)
    np.testing.assert_allclose(per["abs_rel"], rows[:, 0], rtol=1e-9)
    np.testing.assert_allclose(per["ratio"], ratios, rtol=1e-9)
    assert per["n_valid"].dtype == np.int64 and np.all(per["n_valid"] > 1000)
    mixed = [preds[0], preds[1][:, :100], preds[2][:40], preds[3]]
    rows, ratios = _numpy_reference(mixed, gts)
    for gt in (gts, SparseGT.from_dense(gts)):
        _check(compute_depth_metrics(mixed, gt), rows, ratios)


def test_resize_matches_cv2():
    rng = np.random.default_rng(1)
    for (h, w), (W, H) in [((192, 640), (1242, 375)), ((64, 192), (1226, 370)), ((320, 1024), (1241, 376)),
                           ((5, 7), (13, 11))]:
        src = (rng.random((h, w)) * 0.3 + 0.01).astype(np.float32)
        ours = resize_linear(src, (W, H))
        # OpenCV's optimised build (SIMD) rounds differently: agree to 1e-5 ...
        np.testing.assert_allclose(ours, cv2.resize(src, (W, H)), rtol=0, atol=1e-5)
        prev = cv2.useOptimized()
        cv2.setUseOptimized(False)
        try:  # ... and bit for bit with its plain C++ path
            np.testing.assert_array_equal(ours, cv2.resize(src, (W, H)))
        finally:
            cv2.setUseOptimized(prev)


def test_count_mismatch_is_a_clear_error():
    preds, gts = _random_data(n=3)
    with pytest.raises(ValueError, match="2 predictions but 3 GT maps"):
        compute_depth_metrics(preds[:2], gts)
    with pytest.raises(ValueError, match="3 predictions but 2 GT maps"):
        compute_depth_metrics(preds, SparseGT.from_dense(gts[:2]))


def test_image_without_valid_gt_is_left_out():
    preds, gts = _random_data(n=3)
    gts[1] = np.zeros_like(gts[1])
    with pytest.warns(UserWarning, match="1 image"):
        res = compute_depth_metrics(preds, SparseGT.from_dense(gts))
    assert res["n_images"] == 2
    rows, ratios = _numpy_reference([preds[0], preds[2]], [gts[0], gts[2]])
    _check(res, rows, ratios)


def test_perfect_prediction():
    _, gts = _random_data(n=2, shapes=((60, 200),), density=0.3)
    g = np.stack(gts)
    disp = np.where(g > 0, 1.0 / np.maximum(g, 1e-3), 0.1).astype(np.float32) * 0.5
    res = compute_depth_metrics(disp, g, garg_crop=False)  # same size: no resize, exact up to scale
    assert res["abs_rel"] < 1e-6 and res["a1"] == 1.0
    assert res["ratio_median"] == pytest.approx(0.5, rel=1e-6)


def test_markdown_metrics_table_rows_and_values():
    a = {k: i + 0.5 for i, k in enumerate(METRIC_NAMES)}
    lines = markdown_metrics_table({"model": a, "a longer label": {k: 0.0 for k in METRIC_NAMES}}).splitlines()
    assert len(lines) == 4 and lines[0].split("|")[2].strip() == "abs_rel"
    assert [c.strip() for c in lines[2].split("|")[1:-1]] == ["model"] + [f"{i + 0.5:.4f}" for i in range(7)]
    assert len({len(line) for line in lines}) == 1  # columns aligned


def test_garg_crop_constants_are_monodepth2s():
    """Monodepth2's evaluate_depth.py: crop = [0.40810811, 0.99189189, 0.03594771, 0.96405229] x
    (H, H, W, W) cast to int32; at KITTI's 375x1242 that is rows 153:371, columns 44:1197 (pinned
    here, since the reference above reuses the project's box)."""
    assert garg_crop_box(375, 1242) == (153, 371, 44, 1197)
    assert garg_crop_box(370, 1226) == (151, 366, 44, 1181)
    assert garg_crop_box(64, 192) == (26, 63, 6, 185)


@pytest.mark.parametrize("n", [1, 2, 3, 8, 101, 20000, 20001])
def test_histogram_median_equals_numpy_median(n):
    """The kernels' median (float32 bit-pattern histogram + selection) is np.median exactly: odd and
    even counts, heavy ties, values spanning many exponents, and negatives (its fallback)."""
    from depth.eval.metrics import _median
    rng = np.random.default_rng(n)
    f32, hist, cand = np.empty(n, np.float32), np.zeros(65536, np.int32), np.empty(n)
    cases = [rng.uniform(1, 80, n), np.round(rng.uniform(1, 5, n)), np.exp(rng.uniform(-3, 9, n)),
             np.full(n, 7.25), rng.uniform(-2, 2, n)]
    for v in cases:
        v = v.astype(np.float32).astype(np.float64)
        got = _median(v, n, f32, hist, cand)
        assert got == np.median(v)
        assert not hist.any()  # left zeroed for the next image
    v = rng.uniform(1, 80, n + 5).astype(np.float32).astype(np.float64)  # only the first n count
    assert _median(v, n, np.empty(n + 5, np.float32), hist, np.empty(n + 5)) == np.median(v[:n])
