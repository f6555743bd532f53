"""Scoring predicted disparities against GT maps with a :class:`depth.eval.protocols.Protocol`.

Plain NumPy + OpenCV, one image at a time, in the reference implementations' arithmetic: the
scaled disparity is resized to the GT view with ``cv2.resize`` (``INTER_LINEAR`` or
``INTER_NEAREST``), depth = 1/disparity in float32, pixels inside the evaluation box with
``min_depth < gt < max_depth`` count, a fixed factor multiplies the float32 depth, median scaling
``median(gt) / median(pred)`` and the clamp follow, and every metric is accumulated in float64.
KITTI's Eigen metrics have fused numba kernels (:mod:`depth.eval.metrics`); this module scores the other
datasets and draws the per-pixel errors of the report for all of them (tested to agree with the
kernels).
"""
from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from common.errors import EvalError
from depth.eval.protocols import ALL_METRICS, Protocol

__all__ = ["Aligned", "align", "errors", "score_per_image", "aggregate", "format_table", "per_image_csv"]


@dataclass
class Aligned:
    """One image under a protocol: ``gt`` / ``pred`` the valid pixels (float64 metres, the
    prediction scaled and clamped), ``ratio`` the median ratio (NaN without median scaling),
    ``mask`` ``(H, W)`` the valid pixels in the GT view, ``pred_view`` ``(H, W)`` float32 the scaled
    and clamped prediction over the whole view (for pictures; ``None`` with ``view=False``)."""

    gt: np.ndarray
    pred: np.ndarray
    ratio: float
    mask: np.ndarray
    pred_view: np.ndarray | None


def align(disp: np.ndarray, gt: np.ndarray, p: Protocol, *, fixed_scale: float | None = None,
          median_scaling: bool = True, view: bool = True) -> Aligned:
    """Steps 2-5 of the protocol (module doc) for one ``(h, w)`` scaled disparity and its
    ``(H, W)`` GT view (0 = no GT). ``view=False`` skips ``pred_view`` (left ``None``): scoring
    needs the valid pixels only."""
    disp = np.ascontiguousarray(np.squeeze(disp), dtype=np.float32)
    gt = np.asarray(gt, dtype=np.float32)
    if disp.ndim != 2 or gt.ndim != 2:
        raise ValueError(f"expected 2-D disparity and GT maps, got {disp.shape} and {gt.shape}")
    H, W = gt.shape
    interp = cv2.INTER_NEAREST if p.resize == "nearest" else cv2.INTER_LINEAR
    d = disp if disp.shape == (H, W) else cv2.resize(disp, (W, H), interpolation=interp)
    t, b, l, r = p.eval_box(H, W)
    box = gt[t:b, l:r]
    inside = (box > p.min_depth) & (box < p.max_depth)
    mask = np.zeros((H, W), bool)
    mask[t:b, l:r] = inside
    g = box[inside].astype(np.float64)
    depth = np.float32(1.0) / d[t:b, l:r][inside]  # float32, as the references
    if fixed_scale is not None:
        depth = depth * np.float32(fixed_scale)
    pr = depth.astype(np.float64)
    ratio = float("nan")
    scale = 1.0
    if median_scaling and g.size:
        ratio = float(np.median(g) / np.median(pr))
        scale = ratio
    pr = np.clip(pr * scale, p.clamp[0], p.clamp[1])
    full = None
    if view:
        whole = np.float32(1.0) / d
        if fixed_scale is not None:
            whole = whole * np.float32(fixed_scale)
        full = np.clip(whole.astype(np.float64) * scale, p.clamp[0], p.clamp[1]).astype(np.float32)
    return Aligned(g, pr, ratio, mask, full)


def errors(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Every metric of :data:`depth.eval.protocols.ALL_METRICS` for valid pixel pairs (float64)."""
    if gt.size == 0:
        return {k: float("nan") for k in ALL_METRICS}
    ratio = gt / pred
    thresh = np.maximum(ratio, 1.0 / ratio)
    diff = gt - pred
    lg = np.log(ratio)
    l10 = lg / np.log(10.0)
    return {"abs_rel": float(np.mean(np.abs(diff) / gt)), "sq_rel": float(np.mean(diff ** 2 / gt)),
            "rmse": float(np.sqrt(np.mean(diff ** 2))), "rmse_log": float(np.sqrt(np.mean(lg ** 2))),
            "log10": float(np.mean(np.abs(l10))), "rmse_log10": float(np.sqrt(np.mean(l10 ** 2))),
            "a1": float(np.mean(thresh < 1.25)), "a2": float(np.mean(thresh < 1.25 ** 2)),
            "a3": float(np.mean(thresh < 1.25 ** 3))}


def score_per_image(disps: Sequence[np.ndarray], gts: Sequence[np.ndarray], p: Protocol, *,
                    fixed_scale: float | None = None, median_scaling: bool = True) -> dict[str, np.ndarray]:
    """Per-image metrics ``{name: (N,) float64}`` for every metric, ``ratio`` and ``n_valid``
    (int64). ``disps`` and ``gts`` in the same order (``gts`` may be read lazily); a count
    mismatch is an error."""
    n = len(disps)
    if n != len(gts):
        raise EvalError(f"{n} disparity maps but {len(gts)} GT maps: predictions and GT must come from the "
                         f"same test set, in the same order")
    out = {k: np.full(n, np.nan) for k in (*ALL_METRICS, "ratio")}
    out["n_valid"] = np.zeros(n, np.int64)
    for i in range(n):
        a = align(disps[i], gts[i], p, fixed_scale=fixed_scale, median_scaling=median_scaling, view=False)
        for k, v in errors(a.gt, a.pred).items():
            out[k][i] = v
        out["ratio"][i] = a.ratio
        out["n_valid"][i] = a.gt.size
    return out


def aggregate(per: dict[str, np.ndarray], names: Sequence[str] = ALL_METRICS) -> dict:
    """Means over the images with a valid pixel, ``n_images``, and the ratio median and
    ``std(ratios / median)`` (NaN without median scaling), as Monodepth2 prints them."""
    valid = per["n_valid"] > 0
    if (~valid).any():
        warnings.warn(f"{int((~valid).sum())} image(s) have no valid GT pixel and are left out of the means",
                      stacklevel=2)
    res = {k: float(np.mean(per[k][valid])) if valid.any() else float("nan") for k in names}
    res["n_images"] = int(valid.sum())
    ratios = per["ratio"][valid]
    ratios = ratios[np.isfinite(ratios)]
    med = float(np.median(ratios)) if ratios.size else float("nan")
    res["ratio_median"] = med
    res["ratio_std"] = float(np.std(ratios / med)) if ratios.size else float("nan")
    return res


def format_table(m: dict, names: Sequence[str]) -> str:
    """Monodepth2's printout for the metrics ``names``: ratio line, header, ``&``-separated row."""
    lines = []
    if np.isfinite(m.get("ratio_median", float("nan"))):
        lines.append(f" Scaling ratios | med: {m['ratio_median']:0.3f} | std: {m['ratio_std']:0.3f}")
    lines.append(("{:>10} | " * len(names)).format(*names))
    lines.append(("&{: 10.3f}  " * len(names)).format(*[m[k] for k in names]) + "\\\\")
    lines.append(f" images: {m['n_images']}")
    return "\n".join(lines)


def per_image_csv(per: dict[str, np.ndarray], names: Sequence[str], metrics: Sequence[str]) -> str:
    """CSV text, one row per image: index, name, valid pixel count, median ratio, ``metrics``."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["index", "name", "n_valid", "ratio", *metrics])
    for i in range(len(per["n_valid"])):
        w.writerow([i, names[i] if i < len(names) else "", int(per["n_valid"][i]), f"{per['ratio'][i]:.9g}",
                    *(f"{per[k][i]:.9g}" for k in metrics)])
    return buf.getvalue()
