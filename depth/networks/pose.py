"""Pose network: a separate ResNet encoder on two stacked frames and Monodepth2's pose decoder."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from depth.checks import check_shape
from depth.networks.encoder import create_encoder, encode

__all__ = ["PoseDecoder", "PoseNet"]


class PoseDecoder(nn.Module):
    """1x1 conv 512->256, ReLU, two 3x3 conv 256 + ReLU, 1x1 conv -> 6, spatial mean, then the
    axis-angle part times ``rotation_scale`` and the translation part times ``translation_scale``
    (Monodepth2: 0.01 for both)."""

    def __init__(self, in_channels: int, rotation_scale: float = 0.01, translation_scale: float = 0.01):
        super().__init__()
        self.rotation_scale, self.translation_scale = float(rotation_scale), float(translation_scale)
        self.convs = nn.ModuleDict({
            "squeeze": nn.Conv2d(in_channels, 256, 1),
            "pose_0": nn.Conv2d(256, 256, 3, 1, 1),
            "pose_1": nn.Conv2d(256, 256, 3, 1, 1),
            "pose_2": nn.Conv2d(256, 6, 1),
        })
        self.relu = nn.ReLU()

    def forward(self, feature: Tensor) -> tuple[Tensor, Tensor]:
        x = self.relu(self.convs["squeeze"](feature))
        x = self.relu(self.convs["pose_0"](x))
        x = self.relu(self.convs["pose_1"](x))
        x = self.convs["pose_2"](x).mean(dim=(2, 3))
        return x[:, :3] * self.rotation_scale, x[:, 3:] * self.translation_scale


class PoseNet(nn.Module):
    """``forward(frame_a, frame_b) -> (axisangle, translation)``, each ``(B, 3)``.

    Frames are ``(B, 3, H, W)`` in ``[0, 1]``, given in temporal order. The pair's output, turned
    into a matrix by :func:`depth.geometry.pose_vector_to_matrix`, is the transform that maps points
    of ``frame_a``'s camera into ``frame_b``'s camera (``T_b_a``); invert it for the reverse.
    Batch-size agnostic.

    ``encoder``: a timm model name taking the two frames stacked (6 channels; ImageNet ``weights``
    have their input convolution repeated and halved). ``input_size`` ``(h, w)``: the size at which
    the net sees the frames; frames of another size are resized inside ``forward`` (bilinear,
    ``align_corners=False``, ``antialias=True`` -- an area-like filter when shrinking, as the data's
    ``INTER_AREA`` resize; ``antialias=False``: plain bilinear, as the DaB-Net authors' pose net
    resizes, ``model.pose_decoder=featdepth``). None: the frames' own size. Every caller (training, ``evaluate.py pose``)
    therefore feeds the pose net at the same size.
    """

    def __init__(self, encoder: str = "resnet18", weights: Path | str | None = None,
                 rotation_scale: float = 0.01, translation_scale: float = 0.01,
                 input_size: tuple[int, int] | None = None, antialias: bool = True):
        super().__init__()
        self.antialias = bool(antialias)
        self.encoder, self.layout = create_encoder(encoder, 6, weights, key="model.pose_encoder")
        self.decoder = PoseDecoder(self.layout.channels[-1], rotation_scale, translation_scale)
        if input_size is not None and (len(input_size) != 2 or min(input_size) < 1):
            raise ValueError(f"input_size must be (h, w) > 0, got {input_size}")
        self.input_size = tuple(int(s) for s in input_size) if input_size is not None else None

    def pair_input(self, frame_a: Tensor, frame_b: Tensor) -> Tensor:
        """The ``(B, 6, h, w)`` stacked pair the encoder sees (resized to ``input_size``)."""
        check_shape(frame_a, "B 3 H W", "frame_a")
        check_shape(frame_b, "B 3 H W", "frame_b", B=frame_a.shape[0], H=frame_a.shape[2], W=frame_a.shape[3])
        x = torch.cat([frame_a, frame_b], 1)
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False,
                              antialias=self.antialias)
        return x

    def forward(self, frame_a: Tensor, frame_b: Tensor) -> tuple[Tensor, Tensor]:
        return self.decoder(encode(self.encoder, self.layout, self.pair_input(frame_a, frame_b))[-1])
