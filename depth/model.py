"""The model seam: build the networks from a config, load any saved model.

* :func:`build_networks` is the only place the depth and pose networks are constructed; ImageNet
  weights (``model.pretrained``) are found by :func:`imagenet_weights` (:mod:`depth.io.imagenet`) and
  loaded by the encoders themselves (:func:`depth.networks.encoder.create_encoder`), nowhere else.
* :func:`load_model` turns any checkpoint into ``(Networks, Config)``: this project's checkpoints,
  Monodepth2 model folders (:mod:`depth.io.monodepth2`) and the DaB-Net authors' checkpoints
  (:mod:`depth.io.dabnet`), recognised by their content.

Running the depth network on images is :mod:`depth.inference`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from common.errors import CheckpointError, ConfigError
from depth.config import Config, from_dict, resolve_input_norm
from depth.geometry import depth_to_sigmoid
from depth.io.checkpoint import find_checkpoint
from depth.io.dabnet import dabnet_file, from_dabnet
from depth.io.imagenet import MissingWeightsError, fill_command, find_imagenet_weights
from depth.io.monodepth2 import from_monodepth2, monodepth2_folder
from depth.networks import DepthNet, PoseNet
from depth.networks.encoder import encoder_layout

__all__ = ["LoadedModel", "open_model", "Networks", "build_networks", "needs_pose_net", "init_seed",
           "imagenet_weights", "check_encoders",
           "load_model", "networks_from_checkpoint"]


# ----------------------------------------------------------------------------------------------
# Build and load
# ----------------------------------------------------------------------------------------------

class Networks(nn.Module):
    """The depth and the pose network as one module (what ``DistributedDataParallel`` wraps).

    ``forward(color_aug, depth_in, frame_ids)`` -> ``(disparities, pose_vectors)``: the depth net's
    sigmoids on ``depth_in`` (every trained scale, finest first) and one ``(axisangle,
    translation)`` per source frame (``pose_stacked``: from one pose-net call on all pairs stacked
    along the batch, ``train.pose_stacked``), the pose net taking the jittered, never zoomed frames
    ``color_aug`` ``(B, F, 3, H, W)`` in temporal order (resized to ``model.pose_size`` inside
    :class:`depth.networks.PoseNet`). Checkpoints store ``depth_net`` and ``pose_net`` as two state
    dicts. ``pose_net`` is None for a model that needs none -- stereo-only training
    (``data.frame_ids=[0]``, :func:`needs_pose_net`) -- and for a loaded model that has none (a
    Monodepth2 folder without pose files); its checkpoints store ``pose_net: None``.
    """

    def __init__(self, depth_net: DepthNet, pose_net: PoseNet | None):
        super().__init__()
        self.depth_net, self.pose_net = depth_net, pose_net

    def forward(self, color_aug: Tensor, depth_in: Tensor, frame_ids: tuple[int, ...],
                pose_stacked: bool = False):
        # each pair in temporal order: (earlier, later)
        pairs = [(color_aug[:, i], color_aug[:, 0]) if f < 0 else (color_aug[:, 0], color_aug[:, i])
                 for i, f in enumerate(frame_ids[1:], 1)]
        if pose_stacked and len(pairs) > 1:  # train.pose_stacked: one call, pairs along the batch
            axisangle, translation = self.pose_net(torch.cat([a for a, _ in pairs]), torch.cat([b for _, b in pairs]))
            poses = list(zip(axisangle.chunk(len(pairs)), translation.chunk(len(pairs))))
        else:
            poses = [self.pose_net(a, b) for a, b in pairs]
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
    ``model.pretrained`` is true, else ``{}``; found as :mod:`depth.io.imagenet` says, the pose encoder
    sharing ``model.weights_path`` when it is the depth encoder's architecture.

    Raises :class:`depth.io.imagenet.MissingWeightsError` (one line: the places searched and the command
    that fills the cache) when any is missing, :class:`~common.errors.MissingWeightsError` for a ``model.weights_path``
    that is not a file, :class:`~common.errors.ConfigError` for an unknown model name."""
    m = cfg.model
    if not m.pretrained:
        return {}
    names = {"encoder": m.encoder, "pose_encoder": m.pose_encoder}
    if not needs_pose_net(cfg):  # stereo-only: no pose net to initialise
        del names["pose_encoder"]
    same_arch = m.encoder.split(".")[0] == m.pose_encoder.split(".")[0]
    sources = {}
    for key, name in names.items():
        try:
            path = m.weights_path if key == "encoder" or same_arch else ""
            sources[key] = find_imagenet_weights(name, path)
        except ConfigError as e:  # a name timm has no weights of: say which key named it
            raise ConfigError(f"model.{key}: {e}") from None
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


def needs_pose_net(cfg: Config) -> bool:
    """Whether ``cfg`` trains with temporal source frames (``data.frame_ids`` beyond ``[0]``), which
    the pose net relates to the target; stereo-only training (``[0]`` + ``data.stereo``) has none."""
    return len(cfg.data.frame_ids) > 1


def build_networks(cfg: Config, pretrained: bool = False) -> Networks:
    """Both networks of ``cfg.model`` (no pose net when :func:`needs_pose_net` says no), randomly initialised from :func:`init_seed` of
    ``train.seed`` (the same config gives the same weights, whatever the global random state).

    With ``pretrained`` and ``model.pretrained``, both encoders start from ImageNet weights
    (:func:`imagenet_weights`: ``model.weights_path`` or the torch / Hugging Face hub caches; a
    :class:`depth.io.imagenet.MissingWeightsError` when they are missing, never a silent scratch run).
    Loading a checkpoint builds with ``pretrained=False``: its weights replace them anyway.
    """
    m = cfg.model
    weights = imagenet_weights(cfg) if pretrained else {}
    resolve_input_norm(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed(cfg.train.seed, "depth_net"))
        depth_net = DepthNet(m.encoder, weights.get("encoder"), scales=tuple(m.scales), dca=m.dca,
                             dca_dropout=m.dca_dropout, decoder=m.decoder, input_norm=m.input_norm)
        pose_net = None
        if needs_pose_net(cfg):
            torch.manual_seed(init_seed(cfg.train.seed, "pose_net"))
            pose_net = PoseNet(m.pose_encoder, weights.get("pose_encoder"), rotation_scale=m.pose_rotation_scale,
                               translation_scale=m.pose_translation_scale,
                               input_size=tuple(m.pose_size) if m.pose_size else None,
                               antialias=m.pose_decoder != "featdepth")
    if m.init_depth > 0:
        depth_net.decoder.init_disparity(depth_to_sigmoid(m.init_depth, m.min_depth, m.max_depth))
    return Networks(depth_net, pose_net)


def networks_from_checkpoint(ckpt: dict) -> tuple[Networks, Config]:
    """``(networks in eval mode, Config)`` from a checkpoint dict of this project (``depth_net``,
    ``pose_net``, ``config``; see :mod:`depth.io.checkpoint`). ``pose_net: None`` (a converted model
    without a pose network, a stereo-only run) gives ``Networks.pose_net = None``; a stereo-only
    model's checkpoint that holds pose weights anyway (written before stereo-only runs had no pose
    net) loads without them."""
    missing = [k for k in ("depth_net", "pose_net", "config") if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint lacks {missing}: not written by this project?")
    cfg = from_dict(ckpt["config"])
    nets = build_networks(cfg)
    nets.depth_net.load_state_dict(ckpt["depth_net"])
    if ckpt["pose_net"] is None or nets.pose_net is None:
        nets.pose_net = None
    else:
        nets.pose_net.load_state_dict(ckpt["pose_net"])
    return nets.eval(), cfg


@dataclass
class LoadedModel:
    """A model read by :func:`open_model`: the networks (eval mode) and config, the file (or
    Monodepth2 folder) actually read, its training step (``None``: not recorded) and the files of
    a run folder skipped as unreadable (``"path (reason)"``)."""

    nets: Networks
    cfg: Config
    path: Path
    step: int | None
    skipped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What a command prints when it loads the model: a warning per skipped checkpoint, then
        ``loaded runs/x/checkpoints/last.pt (step 1200)``."""
        out = [f"warning: skipped an unreadable checkpoint: {s}" for s in self.skipped]
        step = f"step {self.step}" if self.step is not None else "no step recorded"
        return out + [f"loaded {self.path} ({step})"]


def open_model(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Any saved model as a :class:`LoadedModel`, recognised by its content:

    * a Monodepth2 model folder -- a folder holding ``encoder.pth`` / ``depth.pth``, or one of its
      ``.pth`` files (:func:`depth.io.monodepth2.from_monodepth2`: the config records the network
      size, Monodepth2's intrinsics and stereo convention);
    * a checkpoint file of the DaB-Net authors' code (``state_dict`` with ``DepthEncoder.*`` keys;
      :func:`depth.io.dabnet.from_dabnet`, read with ``weights_only=True``);
    * else a checkpoint file of this project or a run folder (its newest complete checkpoint,
      :func:`depth.io.checkpoint.find_checkpoint`; unreadable newer ones are listed in ``skipped``).

    Every file is read with ``weights_only=True``. Raises :class:`common.errors.CheckpointError`
    (or its :class:`~common.errors.Monodepth2FormatError`, :class:`~common.errors.DabnetFormatError`,
    :class:`~common.errors.CheckpointRefused`) naming the file.
    """
    folder = monodepth2_folder(path)
    if folder is not None:
        nets, cfg = networks_from_checkpoint(from_monodepth2(folder, map_location))
        return LoadedModel(nets, cfg, Path(folder), None)
    if dabnet_file(path):
        nets, cfg = networks_from_checkpoint(from_dabnet(path, map_location))
        return LoadedModel(nets, cfg, Path(path), None)
    try:
        found = find_checkpoint(path, map_location)
    except CheckpointError as e:
        if Path(path).is_dir():
            raise CheckpointError(
                f"{e} (nor is {path} a Monodepth2 model folder: no encoder.pth / depth.pth)") from None
        raise
    nets, cfg = networks_from_checkpoint(found.state)
    step = found.state.get("step")
    return LoadedModel(nets, cfg, found.path, int(step) if isinstance(step, int) else None, found.skipped)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Networks, Config]:
    """``(networks in eval mode, Config)`` of :func:`open_model`."""
    m = open_model(path, map_location)
    return m.nets, m.cfg
