"""Running the depth network on images: the one way from full-resolution frames to disparities.

:func:`predict_disparities` is used by the trainer's validation, ``evaluate.py``, ``python -m
depth.predict``, ``python -m depth.export`` and ``bench/``. Images reach the network through
:func:`network_input`, i.e. through :func:`data.frames.resize_image` (``INTER_AREA``), the resize of
the training data.

Prediction callables: ``predict(x)`` takes ``(B, 3, h, w)`` float32 RGB in ``[0, 1]`` at the
network size and returns ``(B, 1, h, w)``: the depth network's sigmoid (``output="sigmoid"``,
mapped to scaled disparity with :func:`depth.geometry.disp_to_depth` and ``min_depth``/``max_depth``)
or an already scaled disparity (``output="disparity"``, e.g. an exported ONNX graph). Disparities
returned here are the *scaled* disparities ``1/depth`` that Monodepth2 saves and evaluates.
Windows are ``(top, bottom, left, right)`` in pixels (bottom/right exclusive).
"""
from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from common.errors import EvalError, InputError
from data.frames import frames_to_tensor, resize_image
from depth.eval.scale import stereo_scale
from depth.eval.windows import centre_window, crop_window
from depth.geometry import disp_to_depth, pose_vector_to_matrix
from depth.model import open_model

__all__ = [
    "network_input", "predict_disparities", "batch_post_process_disparity", "centre_window",
    "zoom_post_process", "zoom_window", "predict_for_gt", "predict_relative_poses", "resolve_device", "batched", "prefetched", "ZOOM_PP_SCALES", "TorchDepthRunner", "predict_frame",
]

T = TypeVar("T")

ZOOM_PP_SCALES = (0.5, 0.75)  # the authors' zoom_pp, then zoom_pp_twice (window fractions)
OUTPUTS = ("sigmoid", "disparity")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items, read lazily (the last list may be shorter)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items`` in order, produced by a background thread ahead of the consumer (``depth`` items
    queued, one more in the making): the next images are read and decoded (OpenCV and NumPy
    release the GIL) while the device works on the current ones. An exception raised producing an
    item is raised here, where that item would have come; a consumer that stops early (a break, or
    an error in its loop, which releases the generator) stops the producer."""
    box: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                box.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as e:  # noqa: BLE001 -- handed to the consumer, raised there
            put((end, e))

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = box.get()
            if item is end:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()


def network_input(images: Sequence[np.ndarray], size_wh: tuple[int, int]) -> Tensor:
    """Full-resolution ``H x W x 3`` uint8 RGB images -> the ``(B, 3, h, w)`` network input in
    ``[0, 1]`` at ``size_wh = (w, h)``, resized with :func:`data.frames.resize_image`."""
    return frames_to_tensor([resize_image(im, size_wh) for im in images])


def batch_post_process_disparity(l_disp: np.ndarray, r_disp: np.ndarray) -> np.ndarray:
    """Monodepth2's flip post-processing.

    ``l_disp``: ``(N, h, w)`` disparities of the images; ``r_disp``: disparities of the flipped
    images, flipped back. The left 5 % of the result comes from ``r_disp``, the right 5 % from
    ``l_disp``, a linear ramp joins them to the mean of both.
    """
    _, h, w = l_disp.shape
    m_disp = 0.5 * (l_disp + r_disp)
    l, _ = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    l_mask = (1.0 - np.clip(20 * (l - 0.05), 0, 1))[None, ...]
    r_mask = l_mask[:, :, ::-1]
    return (r_mask * l_disp + l_mask * r_disp + (1.0 - l_mask - r_mask) * m_disp).astype(l_disp.dtype)


class _Forward:
    """``predict`` with its output convention: network-size batch -> ``(B, h, w)`` scaled disparity."""

    def __init__(self, predict: Callable[[Tensor], Tensor], min_depth: float, max_depth: float, output: str,
                 device: torch.device | str | None):
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.predict, self.min_depth, self.max_depth = predict, min_depth, max_depth
        self.output, self.device = output, device

    def __call__(self, x: Tensor) -> np.ndarray:
        if self.device is not None:
            x = x.to(self.device)
        with torch.inference_mode():
            out = self.predict(x)
            if self.output == "sigmoid":
                out, _ = disp_to_depth(out, self.min_depth, self.max_depth)
        return out[:, 0].float().cpu().numpy()

    def images(self, images: Sequence[np.ndarray], size_wh: tuple[int, int], flip: bool = False) -> np.ndarray:
        """Disparities of full-resolution images; with ``flip``, Monodepth2's flip post-processing."""
        x = network_input(images, size_wh)
        if not flip:
            return self(x)
        n = x.shape[0]
        d = self(torch.cat([x, torch.flip(x, [3])], 0))
        return batch_post_process_disparity(d[:n], d[n:, :, ::-1])


def zoom_window(height: int, width: int, scale: float) -> tuple[int, int, int, int]:
    """The DaB-Net authors' centre window ``(top, bottom, left, right)`` of fraction ``scale`` of a
    ``height x width`` map: ``top = int((height - height * scale) / 2)``, ``bottom = height - top``
    (columns alike)."""
    top, left = int((height - height * scale) / 2), int((width - width * scale) / 2)
    return top, height - top, left, width - left


def _zoom_post_process(fwd: _Forward, images: Sequence[np.ndarray], size_wh: tuple[int, int],
                       scales: Sequence[float]) -> np.ndarray:
    x = network_input(images, size_wh)
    h, w = x.shape[-2:]
    disp = torch.from_numpy(fwd(x))[:, None]
    for s in scales:  # in order: each step averages into what the previous ones left
        t, b, l, r = zoom_window(h, w, s)
        zoomed = F.interpolate(x[:, :, t:b, l:r], (h, w), mode="bilinear", align_corners=False)
        z = F.interpolate(torch.from_numpy(fwd(zoomed))[:, None], (b - t, r - l), mode="bilinear",
                          align_corners=False)
        disp[:, :, t:b, l:r] = (disp[:, :, t:b, l:r] + z) / 2
    return disp[:, 0].numpy()


def zoom_post_process(predict: Callable[[Tensor], Tensor], images: Sequence[np.ndarray],
                      size_wh: tuple[int, int], *, min_depth: float = 0.1, max_depth: float = 100.0,
                      scales: Sequence[float] = ZOOM_PP_SCALES, output: str = "sigmoid",
                      device: torch.device | str | None = None) -> np.ndarray:
    """The DaB-Net authors' zoom post-processing (their ``zoom_pp`` then ``zoom_pp_twice``, on by
    default in their evaluation script; docs/method.md §4), on the network input ``x`` of each image:
    for each ``s`` of ``scales`` in order (0.5, then 0.75), the centre window of fraction ``s``
    (:func:`zoom_window`) of ``x`` is upsampled to the network size (bilinear, ``align_corners=False``),
    predicted, resized back to the window (bilinear) and averaged with what the disparity holds
    there. Inside the 0.5 window the result is ``d/4 + z2/4 + z4/3 / 2``, in the ring up to 0.75
    ``(d + z4/3) / 2``, outside ``d``. Averaging scaled disparities equals averaging the sigmoids
    (the map between them is affine). Returns ``(N, h, w)`` scaled disparities."""
    return _zoom_post_process(_Forward(predict, min_depth, max_depth, output, device), images, size_wh, scales)


def predict_disparities(predict: Callable[[Tensor], Tensor], images: Iterable[np.ndarray],
                        size_wh: tuple[int, int], *, min_depth: float = 0.1, max_depth: float = 100.0,
                        output: str = "sigmoid", post_process: str = "none", batch_size: int = 8,
                        zoom: float | None = None, progress: bool = False,
                        device: torch.device | str | None = None) -> np.ndarray:
    """Scaled disparities ``(N, h, w)`` float32 at the network size ``size_wh = (w, h)`` of
    full-resolution ``H x W x 3`` uint8 RGB images (read lazily, ``batch_size`` at a time, the
    next batch read by a background thread while this one is predicted: :func:`prefetched`).

    ``predict`` and ``output``: see the module doc; ``device``: where the batches go before
    ``predict`` (None: left on the CPU). ``post_process``: ``none``, ``flip`` (Monodepth2) or
    ``zoom`` (centre-crop averaging, :func:`zoom_post_process`). ``zoom``: predict on the centre
    ``1/zoom`` window of every image instead of the whole image.
    """
    if post_process not in ("none", "flip", "zoom"):
        raise ValueError(f"post_process must be none, flip or zoom, got {post_process!r}")
    fwd = _Forward(predict, min_depth, max_depth, output, device)
    if zoom is not None and zoom != 1:
        images = (crop_window(im, centre_window(im.shape[0], im.shape[1], zoom)) for im in images)
    out: list[np.ndarray] = []
    with tqdm(desc="predict", unit="img", disable=not progress) as bar:
        for batch in prefetched(batched(images, batch_size)):  # the next batch is read meanwhile
            if post_process == "zoom":
                out.append(_zoom_post_process(fwd, batch, size_wh, ZOOM_PP_SCALES))
            else:
                out.append(fwd.images(batch, size_wh, flip=post_process == "flip"))
            bar.update(len(batch))
    if not out:
        return np.zeros((0, size_wh[1], size_wh[0]), np.float32)
    return np.concatenate(out).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Runners: a prediction callable with what predict_disparities needs to run it
# ----------------------------------------------------------------------------------------------
# A runner is a prediction callable (network-size (N, 3, h, w) batch in [0, 1] -> (N, 1, h, w))
# with ``output`` ("sigmoid" or "disparity"), ``device`` (where batches go; None = CPU),
# ``width``/``height`` (network input size), ``min_depth``/``max_depth``, ``stereo_scale`` (the
# metric factor of a stereo-trained model, else None) and ``description``. The ONNX one is
# :class:`depth.io.onnx_file.OnnxDepthRunner`.

def _gt_shapes(gt) -> list[tuple[int, int]]:
    return [tuple(s) for s in gt.shapes] if hasattr(gt, "shapes") else [tuple(np.shape(m)) for m in gt]


def _at_gt_size(images: Iterable[np.ndarray], shapes: list[tuple[int, int]]) -> Iterator[np.ndarray]:
    for i, (im, s) in enumerate(zip(images, shapes)):
        if tuple(im.shape[:2]) != s:
            raise EvalError(f"image {i} is {im.shape[0]}x{im.shape[1]} but its GT map is {s[0]}x{s[1]}: "
                             f"the scale test needs images at the GT resolution")
        yield im


def predict_for_gt(predict: Callable, images: Iterable[np.ndarray], gt, size_wh: tuple[int, int], *,
                   zoom: float | None = None, crop: float | None = None,
                   **predict_kwargs) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Disparities of ``images`` to score against ``gt`` (the same split, in order), plainly or
    for one half of the scale test (docs/method.md §7, last bullet).

    ``zoom=Z``: predict on the centre ``1/Z`` crop resized to the network size, scored on the
    same GT window; ``crop=Z``: predict on the full image, score its centre ``1/Z``. The Garg crop
    stays in full-image coordinates. Returns ``(disp, windows or None, pred_in_window)`` for
    :func:`depth.eval.metrics.compute_depth_metrics`; ``predict_kwargs`` go to
    :func:`depth.inference.predict_disparities`.
    """
    if zoom and crop:
        raise ValueError("zoom and crop are two different tests: give one of them")
    shapes = _gt_shapes(gt)
    if hasattr(images, "__len__") and len(images) != len(shapes):
        raise EvalError(f"{len(images)} images but {len(shapes)} GT maps")
    z = zoom or crop
    windows = None
    if z:
        windows = np.array([centre_window(h, w, z) for h, w in shapes], dtype=np.int64)
        images = _at_gt_size(images, shapes)
    disp = predict_disparities(predict, images, size_wh, zoom=zoom, **predict_kwargs)
    return disp, windows, bool(zoom)


def predict_relative_poses(pose_predict: Callable, frames: Iterable[np.ndarray], size_wh: tuple[int, int],
                           batch_size: int = 8, progress: bool = False) -> np.ndarray:
    """``(N-1, 4, 4)`` transforms frame i -> frame i+1 from consecutive full-resolution RGB frames.

    ``pose_predict(frame_a, frame_b)`` takes two ``(B, 3, h, w)`` tensors in ``[0, 1]`` and returns
    ``(axisangle (B, 3), translation (B, 3))`` of the transform a -> b (Monodepth2's convention).
    Frames are resized with :func:`data.frames.resize_image`, the resize of every other path.
    """
    out = []
    pairs = itertools.pairwise(resize_image(im, size_wh) for im in frames)  # (frame i, frame i+1)
    with tqdm(desc="pose", unit="pair", disable=not progress) as bar, torch.inference_mode():
        for batch in prefetched(batched(pairs, batch_size)):
            frames_a, frames_b = zip(*batch)
            aa, t = pose_predict(frames_to_tensor(frames_a), frames_to_tensor(frames_b))
            out.append(pose_vector_to_matrix(aa.reshape(-1, 3), t.reshape(-1, 3)).double().cpu().numpy())
            bar.update(len(batch))
    return np.concatenate(out) if out else np.zeros((0, 4, 4))


def resolve_device(device: str) -> torch.device:
    """``--device``: ``auto`` = CUDA when available, else the CPU; ``cuda`` without CUDA is bad input."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda requested but CUDA is not available")
    return torch.device(device)


class TorchDepthRunner:
    """The depth network of a checkpoint (PyTorch); returns its sigmoid."""

    output = "sigmoid"

    def __init__(self, checkpoint: str | Path, device: str = "auto", height: int | None = None,
                 width: int | None = None):
        self.device = resolve_device(device)
        self.loaded = open_model(checkpoint, map_location="cpu")  # .lines(): what was read
        nets, cfg = self.loaded.nets, self.loaded.cfg
        self.net = nets.depth_net.to(self.device).eval()
        self.height = int(height or cfg.data.height)
        self.width = int(width or cfg.data.width)
        self.min_depth, self.max_depth = cfg.model.min_depth, cfg.model.max_depth
        self.stereo_scale = stereo_scale(cfg)  # None for monocular models
        self.description = f"PyTorch checkpoint {checkpoint} on {self.device}"

    def __call__(self, x: Tensor) -> Tensor:
        return self.net(x)


def predict_frame(runner, rgb: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``H x W x 3`` uint8 RGB -> (disparity, depth), float32 ``H x W`` at the frame's size.

    ``depth = scale / disparity`` when ``scale`` is given, else ``1 / disparity`` (relative)."""
    h0, w0 = rgb.shape[:2]
    disp = predict_disparities(runner, [rgb], (runner.width, runner.height), min_depth=runner.min_depth,
                               max_depth=runner.max_depth, output=runner.output, device=runner.device)[0]
    if disp.shape != (h0, w0):
        disp = cv2.resize(disp, (w0, h0), interpolation=cv2.INTER_LINEAR)
    disp = np.clip(disp, 1.0 / runner.max_depth, 1.0 / runner.min_depth)  # bilinear keeps the range
    depth = (1.0 if scale is None else float(scale)) / disp
    return disp, depth.astype(np.float32)
