"""The model seam: build the networks from a config, load a checkpoint, run the depth network on images.

* :func:`build_networks` is the only place the depth and pose networks are constructed; ImageNet
  weights (``model.pretrained``) are found by :func:`imagenet_weights` (:mod:`depth.imagenet`) and
  loaded by the encoders themselves (:func:`depth.networks.encoder.create_encoder`), nowhere else.
* :func:`load_model` turns any checkpoint into ``(Networks, Config)``: this project's checkpoints
  and Monodepth2 model folders (:mod:`depth.monodepth2`), recognised by their content.
* :func:`predict_disparities` is the one way from full-resolution images to disparities, used by
  the trainer's validation, ``evaluate.py``, ``python -m depth.predict``, ``python -m
  depth.export`` and ``bench/``. Images reach the network through :func:`network_input`, i.e.
  through :func:`data.frames.resize_image` (``INTER_AREA``), the resize of the training data.

Prediction callables: ``predict(x)`` takes ``(B, 3, h, w)`` float32 RGB in ``[0, 1]`` at the
network size and returns ``(B, 1, h, w)``: the depth network's sigmoid (``output="sigmoid"``,
mapped to scaled disparity with :func:`depth.geometry.disp_to_depth` and ``min_depth``/``max_depth``)
or an already scaled disparity (``output="disparity"``, e.g. an exported ONNX graph). Disparities
returned here are the *scaled* disparities ``1/depth`` that Monodepth2 saves and evaluates.
Windows are ``(top, bottom, left, right)`` in pixels (bottom/right exclusive).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor
from tqdm import tqdm

from data.frames import frames_to_tensor, resize_image
from depth.checkpoint import load_checkpoint
from depth.config import Config, from_dict
from depth.geometry import depth_to_sigmoid, disp_to_depth
from depth.imagenet import MissingWeightsError, find_imagenet_weights, fill_command
from depth.metrics import resize_linear
from depth.monodepth2 import from_monodepth2, monodepth2_folder
from depth.networks import DepthNet, PoseNet
from depth.networks.encoder import encoder_layout

__all__ = [
    "Networks", "build_networks", "init_seed", "imagenet_weights", "check_encoders",
    "load_model", "networks_from_checkpoint",
    "network_input", "predict_disparities", "batch_post_process_disparity", "centre_window",
    "zoom_post_process", "batched", "ZOOM_PP_FACTORS",
]

T = TypeVar("T")

ZOOM_PP_FACTORS = (2.0, 4.0 / 3.0)
OUTPUTS = ("sigmoid", "disparity")


# ----------------------------------------------------------------------------------------------
# Build and load
# ----------------------------------------------------------------------------------------------

class Networks(nn.Module):
    """The depth and the pose network as one module (what ``DistributedDataParallel`` wraps).

    ``forward(color_aug, depth_in, frame_ids)`` -> ``(disparities, pose_vectors)``: the depth net's
    sigmoids on ``depth_in`` (every trained scale, finest first) and one ``(axisangle,
    translation)`` per source frame, the pose net taking the jittered, never zoomed frames
    ``color_aug`` ``(B, F, 3, H, W)`` in temporal order (resized to ``model.pose_size`` inside
    :class:`depth.networks.PoseNet`). Checkpoints store ``depth_net`` and ``pose_net`` as two state
    dicts. ``pose_net`` is None for a loaded model that has none (a Monodepth2 folder without pose
    files); built networks always have one.
    """

    def __init__(self, depth_net: DepthNet, pose_net: PoseNet | None):
        super().__init__()
        self.depth_net, self.pose_net = depth_net, pose_net

    def forward(self, color_aug: Tensor, depth_in: Tensor, frame_ids: tuple[int, ...]):
        poses = []
        for i, f in enumerate(frame_ids[1:], 1):
            if f < 0:
                poses.append(self.pose_net(color_aug[:, i], color_aug[:, 0]))
            else:
                poses.append(self.pose_net(color_aug[:, 0], color_aug[:, i]))
        return self.depth_net.forward_scales(depth_in), poses


ENCODER_KEYS = ("encoder", "pose_encoder")


def check_encoders(cfg: Config) -> None:
    """``ValueError`` naming the key when ``model.encoder`` or ``model.pose_encoder`` is not a timm
    model whose features the decoders can use (checked without building any weights)."""
    m = cfg.model
    encoder_layout(m.encoder, 3, "model.encoder")
    encoder_layout(m.pose_encoder, 6, "model.pose_encoder")


def imagenet_weights(cfg: Config) -> dict[str, Path]:
    """The ImageNet weights files of both encoders (keys ``encoder``, ``pose_encoder``) when
    ``model.pretrained`` is true, else ``{}``; found as :mod:`depth.imagenet` says, the pose encoder
    sharing ``model.weights_path`` when it is the depth encoder's architecture.

    Raises :class:`depth.imagenet.MissingWeightsError` (one line: the places searched and the command
    that fills the cache) when any is missing, ``FileNotFoundError`` for a ``model.weights_path``
    that is not a file, ``ValueError`` for an unknown model name."""
    m = cfg.model
    if not m.pretrained:
        return {}
    names = {"encoder": m.encoder, "pose_encoder": m.pose_encoder}
    same_arch = m.encoder.split(".")[0] == m.pose_encoder.split(".")[0]
    sources = {}
    for key, name in names.items():
        try:
            path = m.weights_path if key == "encoder" or same_arch else ""
            sources[key] = find_imagenet_weights(name, path)
        except ValueError as e:
            raise ValueError(f"model.{key}: {e}") from None
    missing = {k: s for k, s in sources.items() if s.path is None}
    if missing:
        where = "; ".join(f"model.{k}={names[k]} ({s.name}): searched {', '.join(s.searched)}"
                          for k, s in missing.items())
        fill = fill_command(sorted({s.name for s in missing.values()}))
        raise MissingWeightsError(
            f"ImageNet weights not found (model.pretrained=true) -- {where}. On a machine with internet run "
            f"`{fill}` and copy its cache here (or set model.weights_path), or train from scratch with "
            f"model.pretrained=false")
    return {k: s.path for k, s in sources.items()}


def init_seed(seed: int, network: str) -> int:
    """The seed of ``network``'s (``depth_net`` | ``pose_net``) random initial weights at
    ``train.seed = seed``: each network draws from a generator of its own, so the pose net's
    initial weights do not depend on the depth net's architecture (ablation rows at one seed share
    one pose init) and building leaves the global generator as it was."""
    words = np.random.SeedSequence([seed % 2 ** 63, 0x1417, ("depth_net", "pose_net").index(network)])
    w = words.generate_state(2)
    return (int(w[0]) & 0x7FFF_FFFF) << 32 | int(w[1])


def build_networks(cfg: Config, pretrained: bool = False) -> Networks:
    """Both networks of ``cfg.model``, randomly initialised from :func:`init_seed` of
    ``train.seed`` (the same config gives the same weights, whatever the global random state).

    With ``pretrained`` and ``model.pretrained``, both encoders start from ImageNet weights
    (:func:`imagenet_weights`: ``model.weights_path`` or the torch / Hugging Face hub caches; a
    :class:`depth.imagenet.MissingWeightsError` when they are missing, never a silent scratch run).
    Loading a checkpoint builds with ``pretrained=False``: its weights replace them anyway.
    """
    m = cfg.model
    weights = imagenet_weights(cfg) if pretrained else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed(cfg.train.seed, "depth_net"))
        depth_net = DepthNet(m.encoder, weights.get("encoder"), scales=tuple(m.scales), dca=m.dca,
                             dca_dropout=m.dca_dropout)
        torch.manual_seed(init_seed(cfg.train.seed, "pose_net"))
        pose_net = PoseNet(m.pose_encoder, weights.get("pose_encoder"), rotation_scale=m.pose_rotation_scale,
                           translation_scale=m.pose_translation_scale,
                           input_size=tuple(m.pose_size) if m.pose_size else None)
    if m.init_depth > 0:
        depth_net.decoder.init_disparity(depth_to_sigmoid(m.init_depth, m.min_depth, m.max_depth))
    return Networks(depth_net, pose_net)


def networks_from_checkpoint(ckpt: dict) -> tuple[Networks, Config]:
    """``(networks in eval mode, Config)`` from a checkpoint dict of this project (``depth_net``,
    ``pose_net``, ``config``; see :mod:`depth.checkpoint`). ``pose_net: None`` (a converted model
    without a pose network) gives ``Networks.pose_net = None``."""
    missing = [k for k in ("depth_net", "pose_net", "config") if k not in ckpt]
    if missing:
        raise RuntimeError(f"checkpoint lacks {missing}: not written by this project?")
    cfg = from_dict(ckpt["config"])
    nets = build_networks(cfg)
    nets.depth_net.load_state_dict(ckpt["depth_net"])
    if ckpt["pose_net"] is None:
        nets.pose_net = None
    else:
        nets.pose_net.load_state_dict(ckpt["pose_net"])
    return nets.eval(), cfg


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Networks, Config]:
    """Any saved model as ``(networks in eval mode, Config)``, recognised by its content:

    * a Monodepth2 model folder -- a folder holding ``encoder.pth`` / ``depth.pth``, or one of its
      ``.pth`` files (:func:`depth.monodepth2.from_monodepth2`: the config records the network
      size, Monodepth2's intrinsics and stereo convention);
    * else a checkpoint file of this project or a run folder (its newest complete checkpoint,
      :func:`depth.checkpoint.load_checkpoint`).

    Raises ``FileNotFoundError`` / ``RuntimeError`` (:class:`depth.monodepth2.Monodepth2FormatError`
    is one) naming the file.
    """
    folder = monodepth2_folder(path)
    if folder is not None:
        return networks_from_checkpoint(from_monodepth2(folder, map_location))
    try:
        ckpt = load_checkpoint(path, map_location)
    except FileNotFoundError as e:
        if Path(path).is_dir():
            raise FileNotFoundError(
                f"{e} (nor is {path} a Monodepth2 model folder: no encoder.pth / depth.pth)") from None
        raise
    return networks_from_checkpoint(ckpt)


# ----------------------------------------------------------------------------------------------
# Run
# ----------------------------------------------------------------------------------------------

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


def centre_window(height: int, width: int, zoom: float) -> tuple[int, int, int, int]:
    """The centred ``1/zoom`` window ``(top, bottom, left, right)`` of a ``height x width`` image."""
    if not zoom >= 1.0:
        raise ValueError(f"zoom must be >= 1, got {zoom}")
    h = max(1, int(round(height / zoom)))
    w = max(1, int(round(width / zoom)))
    top = (height - h) // 2
    left = (width - w) // 2
    return top, top + h, left, left + w


def _crop(img: np.ndarray, win: tuple[int, int, int, int]) -> np.ndarray:
    t, b, l, r = win
    return img[t:b, l:r]


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


def _zoom_post_process(fwd: _Forward, images: Sequence[np.ndarray], size_wh: tuple[int, int],
                       zooms: Sequence[float]) -> np.ndarray:
    w_net, h_net = size_wh
    acc = fwd.images(images, size_wh).astype(np.float64)
    cnt = np.ones_like(acc)
    for z in zooms:
        crops = [_crop(im, centre_window(im.shape[0], im.shape[1], z)) for im in images]
        d = fwd.images(crops, size_wh)
        t, b, l, r = centre_window(h_net, w_net, z)
        for i in range(len(images)):
            acc[i, t:b, l:r] += resize_linear(d[i], (r - l, b - t))
            cnt[i, t:b, l:r] += 1
    return (acc / cnt).astype(np.float32)


def zoom_post_process(predict: Callable[[Tensor], Tensor], images: Sequence[np.ndarray],
                      size_wh: tuple[int, int], *, min_depth: float = 0.1, max_depth: float = 100.0,
                      zooms: Sequence[float] = ZOOM_PP_FACTORS, output: str = "sigmoid",
                      device: torch.device | str | None = None) -> np.ndarray:
    """The zoom post-processing (docs/method.md §4): the full-image prediction averaged, inside
    each centre window, with the predictions made on that window (cut from the full-resolution
    image and resized to the network size). Returns ``(N, h, w)`` scaled disparities."""
    return _zoom_post_process(_Forward(predict, min_depth, max_depth, output, device), images, size_wh, zooms)


def predict_disparities(predict: Callable[[Tensor], Tensor], images: Iterable[np.ndarray],
                        size_wh: tuple[int, int], *, min_depth: float = 0.1, max_depth: float = 100.0,
                        output: str = "sigmoid", post_process: str = "none", batch_size: int = 8,
                        zoom: float | None = None, progress: bool = False,
                        device: torch.device | str | None = None) -> np.ndarray:
    """Scaled disparities ``(N, h, w)`` float32 at the network size ``size_wh = (w, h)`` of
    full-resolution ``H x W x 3`` uint8 RGB images (read lazily, ``batch_size`` at a time).

    ``predict`` and ``output``: see the module doc; ``device``: where the batches go before
    ``predict`` (None: left on the CPU). ``post_process``: ``none``, ``flip`` (Monodepth2) or
    ``zoom`` (centre-crop averaging, :func:`zoom_post_process`). ``zoom``: predict on the centre
    ``1/zoom`` window of every image instead of the whole image.
    """
    if post_process not in ("none", "flip", "zoom"):
        raise ValueError(f"post_process must be none, flip or zoom, got {post_process!r}")
    fwd = _Forward(predict, min_depth, max_depth, output, device)
    if zoom is not None and zoom != 1:
        images = (_crop(im, centre_window(im.shape[0], im.shape[1], zoom)) for im in images)
    out: list[np.ndarray] = []
    with tqdm(desc="predict", unit="img", disable=not progress) as bar:
        for batch in batched(images, batch_size):
            if post_process == "zoom":
                out.append(_zoom_post_process(fwd, batch, size_wh, ZOOM_PP_FACTORS))
            else:
                out.append(fwd.images(batch, size_wh, flip=post_process == "flip"))
            bar.update(len(batch))
    if not out:
        return np.zeros((0, size_wh[1], size_wh[0]), np.float32)
    return np.concatenate(out).astype(np.float32)
