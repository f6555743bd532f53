"""Robustness tests of a depth model: the paper's scale test (zoom vs crop) and the resolution
curve (RA-Depth's protocol). Scored with :mod:`depth.eval.metrics` through
:func:`depth.inference.predict_for_gt` and :func:`depth.inference.predict_disparities`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from depth.inference import predict_for_gt
from depth.eval.metrics import aggregate_metrics, compute_depth_metrics, compute_depth_metrics_per_image
from depth.inference import predict_disparities

__all__ = ["scale_robustness", "zoom_robustness", "RESOLUTION_FACTORS", "scaled_size", "resolution_curve"]


def scale_robustness(predict: Callable, images: Sequence[np.ndarray], gt, size_wh: tuple[int, int],
                     zoom: float, mode: str = "zoom", *, post_process: str = "none",
                     batch_size: int = 8, min_depth: float = 0.1, max_depth: float = 100.0,
                     per_image: bool = False, **metric_kwargs) -> dict:
    """The paper's scale test: :func:`predict_for_gt` with ``zoom`` (``mode="zoom"``) or ``crop``
    (``mode="crop"``), scored with :func:`depth.eval.metrics.compute_depth_metrics` (per image with
    ``per_image``); median scaling is per image as usual."""
    if mode not in ("zoom", "crop"):
        raise ValueError(f"mode must be 'zoom' or 'crop', got {mode!r}")
    disp, windows, in_window = predict_for_gt(
        predict, images, gt, size_wh, zoom=zoom if mode == "zoom" else None, crop=zoom if mode == "crop" else None,
        post_process=post_process, batch_size=batch_size, min_depth=min_depth, max_depth=max_depth)
    fn = compute_depth_metrics_per_image if per_image else compute_depth_metrics
    return fn(disp, gt, windows=windows, pred_in_window=in_window, **metric_kwargs)


def zoom_robustness(predict: Callable, images: Sequence[np.ndarray], gt, size_wh: tuple[int, int],
                    zoom: float = 2.0, **kwargs) -> dict:
    """Both halves of the scale test and what they say about apparent size.

    Returns ``zoom_abs_rel`` and ``crop_abs_rel`` (:func:`scale_robustness` in each mode), their
    ``gap`` (zoom - crop) and ``depth_shift``: the median over images of
    ``median(zoomed depth) / median(cropped depth)`` on the same GT pixels (the ratio of the two
    per-image median-scaling factors, crop / zoom). Per-image median scaling hides a global
    change of predicted depth, so the gap alone cannot see a network that reads depth from
    apparent size; ``depth_shift`` can: ``1`` = zooming leaves the predicted depth unchanged (the
    camera zoomed, the scene did not move), ``1/zoom`` = depth follows apparent size. Keyword
    arguments go to :func:`scale_robustness` except ``per_image`` (set here); without median
    scaling ``depth_shift`` is NaN.
    """
    zoomed = scale_robustness(predict, images, gt, size_wh, zoom, "zoom", per_image=True, **kwargs)
    cropped = scale_robustness(predict, images, gt, size_wh, zoom, "crop", per_image=True, **kwargs)
    z, c = aggregate_metrics(zoomed), aggregate_metrics(cropped)
    ok = np.isfinite(zoomed["ratio"]) & np.isfinite(cropped["ratio"])  # NaN: no valid pixel
    shift = float(np.median(cropped["ratio"][ok] / zoomed["ratio"][ok])) if ok.any() else float("nan")
    return {"zoom_abs_rel": z["abs_rel"], "crop_abs_rel": c["abs_rel"], "gap": z["abs_rel"] - c["abs_rel"],
            "depth_shift": shift}


RESOLUTION_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)


def scaled_size(size_wh: tuple[int, int], factor: float) -> tuple[int, int]:
    """``(w, h)`` times ``factor`` on both sides, rounded to whole pixels (at least 1). The result
    need not be divisible by 32: the networks upsample to each skip's size."""
    if not factor > 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    w, h = size_wh
    return max(1, int(round(w * factor))), max(1, int(round(h * factor)))


def resolution_curve(predict: Callable, images: Sequence[np.ndarray], gt, size_wh: tuple[int, int],
                     factors: Sequence[float] = RESOLUTION_FACTORS, *, post_process: str = "none",
                     batch_size: int = 8, min_depth: float = 0.1, max_depth: float = 100.0,
                     **metric_kwargs) -> dict[float, dict]:
    """Resolution robustness (the protocol of RA-Depth, Gao et al., ECCV 2022): the network
    trained at ``size_wh`` is run at ``factor x`` that size (both sides, the whole image, same
    field of view) and scored against the same GT with the same protocol (``metric_kwargs`` go
    to :func:`depth.eval.metrics.compute_depth_metrics`; per-image median scaling by default).

    Returns ``{factor: metrics}``; each entry also holds ``size`` ``(w, h)`` and, when ``1.0`` is
    among the factors, ``abs_rel_vs_1x`` = abs rel / abs rel at the training size. ``images`` must
    be re-iterable (a sequence), as every factor reads them again.
    """
    curve: dict[float, dict] = {}
    for f in factors:
        size = scaled_size(size_wh, f)
        disp = predict_disparities(predict, images, size, post_process=post_process, batch_size=batch_size,
                                   min_depth=min_depth, max_depth=max_depth)
        curve[float(f)] = {**compute_depth_metrics(disp, gt, **metric_kwargs), "size": size}
    if 1.0 in curve:
        ref = curve[1.0]["abs_rel"]
        for m in curve.values():
            m["abs_rel_vs_1x"] = m["abs_rel"] / ref
    return curve
