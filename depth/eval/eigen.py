"""The Eigen-split protocol: which GT a split uses, the metric arguments, saved disparities and the
per-image CSV. NumPy only: scoring saved disparities imports no torch (the predictions to score,
plainly or for the scale test, are :func:`depth.inference.predict_for_gt`).

Disparities here are the *scaled* disparities of :func:`depth.geometry.disp_to_depth`.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.errors import EvalError
from common.arrays import open_array_file
from depth.eval.metrics import METRIC_NAMES

__all__ = ["gt_kind_for_split", "eigen_metric_kwargs", "load_disparities", "per_image_csv"]


def gt_kind_for_split(split: str | Path, gt_source: str = "auto") -> str:
    """``"velodyne"`` or ``"benchmark"`` GT for a split: ``gt_source`` unless ``auto``, which
    picks ``benchmark`` (annotated PNGs) for ``eigen_benchmark`` splits."""
    if gt_source not in ("auto", "velodyne", "benchmark"):
        raise ValueError(f"gt_source must be auto, velodyne or benchmark, got {gt_source!r}")
    if gt_source != "auto":
        return gt_source
    return "benchmark" if Path(str(split)).name.startswith("eigen_benchmark") else "velodyne"


def eigen_metric_kwargs(gt_kind: str = "velodyne", *, fixed_scale: float | None = None,
                        median_scaling: bool = True, min_depth: float = 1e-3,
                        max_depth: float = 80.0) -> dict:
    """Keyword arguments of :func:`depth.eval.metrics.compute_depth_metrics` for the protocol of
    ``gt_kind``: velodyne GT (``eigen``) with the Garg crop and the ``min < gt < max`` mask,
    benchmark GT (``eigen_benchmark``) with neither (Monodepth2's rule). ``fixed_scale``
    (stereo models) replaces median scaling."""
    bench = gt_kind == "benchmark"
    return dict(median_scaling=median_scaling and fixed_scale is None, fixed_scale=fixed_scale,
                min_depth=min_depth, max_depth=max_depth, garg_crop=not bench, gt_range_mask=not bench)


def load_disparities(path: str | Path) -> np.ndarray:
    """Saved scaled disparities as ``(N, h, w)`` float32: an ``.npy`` of ``(N, h, w)`` or
    ``(N, 1, h, w)`` (Monodepth2's ``--ext_disp_to_eval`` format) or an ``.npz`` (key ``disp``,
    else its first array). Errors name the file."""
    d = open_array_file(path, "disparity file")
    if isinstance(d, np.lib.npyio.NpzFile):
        with d:
            key = "disp" if "disp" in d.files else d.files[0]
            d = d[key]
    if d.ndim == 4 and d.shape[1] == 1:
        d = d[:, 0]
    if d.ndim != 3:
        raise EvalError(f"disparities {path} must be an (N, h, w) array, got shape {d.shape}")
    return np.ascontiguousarray(d, dtype=np.float32)


def per_image_csv(per: dict, entries: Sequence | None = None) -> str:
    """CSV text of :func:`depth.eval.metrics.compute_depth_metrics_per_image` output: one row per image
    with its split entry (folder, frame, side), valid pixel count, median ratio and the 7 metrics."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["index", "folder", "frame", "side", "n_valid", "ratio", *METRIC_NAMES])
    for i in range(len(per["n_valid"])):
        e = entries[i] if entries is not None and i < len(entries) else None
        w.writerow([i, e.folder if e else "", e.frame if e else "", e.side if e else "",
                    int(per["n_valid"][i]), f"{per['ratio'][i]:.9g}",
                    *(f"{per[k][i]:.9g}" for k in METRIC_NAMES)])
    return buf.getvalue()
