"""Pose network: a separate ResNet encoder on two stacked frames and Monodepth2's pose decoder."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from depth.networks.encoder import ResnetEncoder

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
    """

    def __init__(self, num_layers: int = 18, pretrained: bool = False, weights_path: str | None = None,
                 rotation_scale: float = 0.01, translation_scale: float = 0.01):
        super().__init__()
        self.encoder = ResnetEncoder(num_layers, pretrained, num_input_images=2, weights_path=weights_path)
        self.decoder = PoseDecoder(self.encoder.num_ch_enc[-1], rotation_scale, translation_scale)

    def forward(self, frame_a: Tensor, frame_b: Tensor) -> tuple[Tensor, Tensor]:
        return self.decoder(self.encoder(torch.cat([frame_a, frame_b], 1))[-1])
