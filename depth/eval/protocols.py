"""The community evaluation protocols of KITTI, Make3D, Cityscapes and NYUv2, and the one line that
states them.

A protocol is what happens between a predicted disparity and the numbers, in this order:

1. **input crop** (image, before the network): Make3D's centre 2:1 crop, Cityscapes without its
   bottom quarter (the ego car); the crop is resized to the network size with
   :func:`data.frames.resize_image` like every network input;
2. **GT view**: the part of the GT map that the cropped input covers (Make3D's centre rows,
   Cityscapes' top three quarters); the predicted (scaled) disparity is resized to the GT view's
   size with OpenCV's ``INTER_LINEAR`` or ``INTER_NEAREST`` (``resize``), then depth = 1/disparity;
3. **evaluation box** inside the view (:meth:`Protocol.eval_box`, ``(top, bottom, left, right)``,
   bottom/right exclusive) and the GT range ``min_depth < gt < max_depth``;
4. **scaling**: per-image median ``median(gt) / median(pred)``, or a fixed factor (stereo), or none;
5. **clamp** of the scaled prediction to ``clamp``; the metrics over the valid pixels, then the mean
   over images (:mod:`depth.eval.scoring`).

Sources (docs/evaluation.md cites them in full):

* KITTI Eigen / Eigen benchmark: Monodepth2 ``evaluate_depth.py`` (Garg crop, ``1e-3 < gt < 80``;
  benchmark GT ``gt > 0``, no crop).
* Make3D: Monodepth2's Make3D code (nianticlabs/monodepth2 issue #89, the comment with the code
  the authors used; also mrharicot/monodepth #189): image rows ``(2272 - 852) // 2 ..`` (a 2:1 crop
  of the 1704 x 2272 photographs), GT rows ``17:38`` of the 55-row laser grid, prediction resized
  to ``305 x 21`` with ``INTER_NEAREST``, ``0 < gt < 70``, median scaling, prediction capped at 70,
  metrics abs rel, sq rel, RMSE and the RMSE of log10 (Monodepth2's table column "log10").
* Cityscapes: ManyDepth ``evaluate_depth.py`` and ``cityscapes_evaldataset.py``: the input image
  without its bottom 25 % (``h * 3 // 4`` rows), GT cut to ``round(0.75 h)`` rows, the prediction
  resized (``INTER_LINEAR``) to that, both cropped to rows ``256:``, columns ``192:1856`` ("the
  middle 50 %"), ``1e-3 < gt < 80``, median scaling, clamp ``[1e-3, 80]``, the 7 KITTI metrics.
* NYUv2: the Eigen crop ``[45:471, 41:601]`` of the 480 x 640 maps (BTS ``bts_eval.py``, AdaBins),
  ``0.1 < gt < 10``, median scaling and clamp ``[0.1, 10]`` as the self-supervised indoor methods
  (P2Net, StructDepth ``nyuv2_eval_depth.py``), metrics including log10 (mean absolute log10 error).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from common.errors import EvalError
from depth.eval import DATASETS
from depth.eval.metrics import METRIC_NAMES, garg_crop_box

__all__ = ["DATASETS", "ALL_METRICS", "Protocol", "kitti_protocol", "MAKE3D", "CITYSCAPES", "NYUV2",
           "protocol_for", "make3d_input_window", "make3d_gt_rows", "cityscapes_input_rows",
           "cityscapes_gt_rows", "cityscapes_eval_box", "nyu_eval_box", "protocol_line"]

# every metric a protocol may report; ``log10`` = mean |log10 gt - log10 pred| (NYUv2 papers),
# ``rmse_log10`` = sqrt(mean((log10 gt - log10 pred)^2)) (Monodepth2's Make3D column "log10")
ALL_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "rmse_log10", "a1", "a2", "a3")

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Protocol:
    """One dataset's protocol (module doc). Depths in metres; boxes ``(top, bottom, left, right)``
    in pixels of the GT view, bottom/right exclusive."""

    dataset: str
    split: str
    min_depth: float  # GT mask: min_depth < gt < max_depth
    max_depth: float
    clamp: tuple[float, float]  # the scaled prediction is clamped to this
    resize: str  # "linear" | "nearest": disparity -> GT view (OpenCV arithmetic)
    metrics: tuple[str, ...]
    input_crop: str  # what of each image the network sees (text of the protocol line)
    crop: str  # the GT view and the evaluation box (text of the protocol line)
    eval_box: Callable[[int, int], Box]
    official_count: int | None = None
    source: str = ""

    def with_range(self, min_depth: float | None = None, max_depth: float | None = None) -> "Protocol":
        """The protocol with the GT range and the clamp moved to ``min_depth`` / ``max_depth``
        (``evaluate.py depth --min-depth/--max-depth``); ``None`` keeps a bound."""
        lo = self.min_depth if min_depth is None else float(min_depth)
        hi = self.max_depth if max_depth is None else float(max_depth)
        c0 = self.clamp[0] if min_depth is None else float(min_depth)
        c1 = self.clamp[1] if max_depth is None else float(max_depth)
        if not hi > lo:
            raise EvalError(f"--max-depth ({hi:g}) must be larger than --min-depth ({lo:g})")
        return replace(self, min_depth=lo, max_depth=hi, clamp=(c0, c1))


# ------------------------------------------------------------------------------------------- KITTI
def kitti_protocol(split: str, gt_kind: str, min_depth: float = 1e-3, max_depth: float = 80.0) -> Protocol:
    """Monodepth2's KITTI protocol for velodyne GT (Garg crop, ``min < gt < max``) or benchmark GT
    (``gt > 0``, no crop); both clamp the prediction to ``[min_depth, max_depth]``. Scored by the
    numba kernels of :mod:`depth.eval.metrics`; this object states it and drives the report pictures."""
    bench = gt_kind == "benchmark"
    return Protocol(
        "kitti", f"{split} ({gt_kind} GT)", 0.0 if bench else min_depth, np.inf if bench else max_depth,
        (min_depth, max_depth), "linear", METRIC_NAMES, "the whole image",
        "none (benchmark rule: every gt > 0)" if bench
        else "Garg, rows 0.408-0.992 H and columns 0.036-0.964 W",
        (lambda h, w: (0, h, 0, w)) if bench else garg_crop_box,
        697 if split == "eigen" else 652 if split == "eigen_benchmark" else None,
        "Monodepth2 evaluate_depth.py")


# ------------------------------------------------------------------------------------------ Make3D
MAKE3D_IMAGE_HW = (2272, 1704)  # the Test134 photographs (H, W)
MAKE3D_CROP_FRACTION = (MAKE3D_IMAGE_HW[1] // 2) / MAKE3D_IMAGE_HW[0]  # 852 / 2272 = 0.375 of the height


def make3d_input_window(height: int, width: int) -> Box:
    """The centre 2:1 crop of a Make3D photograph: ``width // 2`` rows from ``(height - width // 2)
    // 2`` (rows 710:1562 of 2272 x 1704), all columns."""
    ch = width // 2
    if ch < 1 or ch > height:
        raise EvalError(f"a Make3D image must be taller than half its width (portrait 1704 x 2272), got "
                         f"{width} x {height}")
    top = (height - ch) // 2
    return top, top + ch, 0, width


def make3d_gt_rows(height: int) -> tuple[int, int]:
    """Rows of the laser grid that the 2:1 image crop covers: the centre ``round(0.375 H)`` rows,
    ``17:38`` of the 55-row grid as in Monodepth2's code."""
    n = int(round(height * MAKE3D_CROP_FRACTION))
    top = (height - n) // 2
    return top, top + n


MAKE3D = Protocol(
    "make3d", "Test134", 0.0, 70.0, (0.0, 70.0), "nearest", ("abs_rel", "sq_rel", "rmse", "rmse_log10"),
    "the centre 2:1 crop of each image (852 of 2272 rows)",
    "C1, the laser rows under the 2:1 image crop (17:38 of 55) and all columns",
    lambda h, w: (0, h, 0, w), 134, "Monodepth2 Make3D code (monodepth2 issue #89)")


# -------------------------------------------------------------------------------------- Cityscapes
def cityscapes_input_rows(height: int) -> int:
    """Rows of a Cityscapes image the network sees: ``height * 3 // 4`` (768 of 1024), from the top."""
    return height * 3 // 4


def cityscapes_gt_rows(height: int) -> int:
    """Rows of a Cityscapes GT map kept: ``round(0.75 * height)`` (768 of 1024), from the top."""
    return int(round(height * 0.75))


def cityscapes_eval_box(height: int, width: int) -> Box:
    """ManyDepth's crop of the 768 x 2048 GT view, rows ``256:``, columns ``192:1856``, as fractions
    (``height // 3``, ``width * 3 // 32``) so that it is exact at that size."""
    left = width * 3 // 32
    return height // 3, height, left, width - left


CITYSCAPES = Protocol(
    "cityscapes", "test (ManyDepth's 1525)", 1e-3, 80.0, (1e-3, 80.0), "linear", METRIC_NAMES,
    "the top 75 % of each image (768 of 1024 rows; the ego car cut)",
    "GT without its bottom 25 %, then rows 256:768 and columns 192:1856 of the 768x2048 view",
    cityscapes_eval_box, 1525, "ManyDepth evaluate_depth.py")


# ------------------------------------------------------------------------------------------- NYUv2
NYU_HW = (480, 640)
NYU_EIGEN_CROP = (45, 471, 41, 601)


def nyu_eval_box(height: int, width: int) -> Box:
    """The Eigen crop ``[45:471, 41:601]``, defined on the 480 x 640 maps only."""
    if (height, width) != NYU_HW:
        raise EvalError(f"the NYUv2 Eigen crop is defined on 480x640 maps, got a {height}x{width} GT map")
    return NYU_EIGEN_CROP


NYUV2 = Protocol(
    "nyuv2", "Eigen test (splits.mat testNdxs)", 0.1, 10.0, (0.1, 10.0), "linear",
    ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "a1", "a2", "a3"), "the whole 640x480 image",
    "Eigen, rows 45:471 and columns 41:601 of 480x640", nyu_eval_box, 654,
    "BTS bts_eval.py (crop); StructDepth nyuv2_eval_depth.py (median scaling)")

_BY_NAME = {"make3d": MAKE3D, "cityscapes": CITYSCAPES, "nyuv2": NYUV2}


def protocol_for(dataset: str) -> Protocol:
    """The protocol of ``make3d``, ``cityscapes`` or ``nyuv2`` (KITTI's: :func:`kitti_protocol`)."""
    try:
        return _BY_NAME[dataset]
    except KeyError:
        raise EvalError(f"unknown dataset {dataset!r}: one of {', '.join(DATASETS)}") from None


# ------------------------------------------------------------------------------ the protocol line
def protocol_line(p: Protocol, *, n_images: int, network_size: tuple[int, int] | None,
                  trained_size: tuple[int, int] | None = None, scaling: str = "median",
                  post_process: str = "none", extra_crop: str | None = None) -> str:
    """One line stating everything that decides the numbers: dataset and split, image count (and
    the official count when it differs), input size, crop, depth caps, scaling, post-processing and
    the test-time resizes. ``network_size`` ``(w, h)``, ``None`` for saved disparities;
    ``scaling``: ``"median"``, ``"fixed x5.4"`` or ``"none"``."""
    count = f"{n_images} images"
    if p.official_count is not None and n_images != p.official_count:
        count += f" (the official set has {p.official_count})"
    if network_size is not None:
        w, h = network_size
        net = f"network {w}x{h}"
        if trained_size is not None and tuple(trained_size) != (w, h):
            net += f" (trained at {trained_size[0]}x{trained_size[1]})"
        inp = f"{p.input_crop}, {net}"
        resize = f"image INTER_AREA to {w}x{h}, disparity INTER_{p.resize.upper()} to the GT"
    else:
        inp = "saved disparities"
        resize = f"disparity INTER_{p.resize.upper()} to the GT"
    crop = p.crop + (f"; {extra_crop}" if extra_crop else "")
    hi = "inf" if not np.isfinite(p.max_depth) else f"{p.max_depth:g}"
    caps = f"{p.min_depth:g} < gt < {hi} m, prediction clamped to [{p.clamp[0]:g}, {p.clamp[1]:g}] m"
    return (f"{p.dataset} {p.split} | {count} | input {inp} | crop {crop} | depth {caps} | "
            f"scaling {scaling} | post-process {post_process} | resize {resize}")
