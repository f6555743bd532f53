"""ResNet encoders (torchvision) returning the five feature maps at 1/2 .. 1/32 resolution."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torchvision.models as tvm
from torch import Tensor

__all__ = ["ResnetEncoder", "load_imagenet_weights"]

_RESNETS = {18: (tvm.resnet18, "ResNet18_Weights"), 34: (tvm.resnet34, "ResNet34_Weights"),
            50: (tvm.resnet50, "ResNet50_Weights")}


def load_imagenet_weights(num_layers: int, weights_path: str | None = None) -> dict | None:
    """ImageNet state dict for a torchvision ResNet, without touching the network.

    Looks at ``weights_path`` (a ``.pth`` state dict) first, then torch's hub cache
    (``$TORCH_HOME/hub/checkpoints``). Returns None (with a warning) when neither has it: the
    project runs offline and then trains from scratch.
    """
    if weights_path:
        p = Path(weights_path)
        if not p.is_file():
            raise FileNotFoundError(f"model.weights_path: no such file {p}")
        return torch.load(p, map_location="cpu", weights_only=True)
    weights_enum = getattr(tvm, _RESNETS[num_layers][1]).IMAGENET1K_V1
    cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights_enum.url)
    if cache.is_file():
        return torch.load(cache, map_location="cpu", weights_only=True)
    warnings.warn(
        f"ImageNet weights for ResNet-{num_layers} not found at {cache} (offline?); training from "
        f"scratch. Download {weights_enum.url} there or set model.weights_path.", stacklevel=2)
    return None


class ResnetEncoder(nn.Module):
    """ResNet-18/34/50 taking ``num_input_images`` stacked RGB frames.

    Input ``(B, 3 * num_input_images, H, W)`` in ``[0, 1]``; normalised inside with
    ``(x - 0.45) / 0.225`` (Monodepth2). Output: list of 5 features at 1/2, 1/4, 1/8, 1/16,
    1/32 resolution with ``num_ch_enc`` channels (64, 64, 128, 256, 512 for ResNet-18).
    For several input images, ImageNet ``conv1`` weights are repeated and divided by the count.
    """

    def __init__(self, num_layers: int = 18, pretrained: bool = False, num_input_images: int = 1,
                 weights_path: str | None = None):
        super().__init__()
        if num_layers not in _RESNETS:
            raise ValueError(f"model.num_layers must be one of {sorted(_RESNETS)}, got {num_layers}")
        net = _RESNETS[num_layers][0](weights=None)
        if num_input_images > 1:
            net.conv1 = nn.Conv2d(3 * num_input_images, 64, 7, 2, 3, bias=False)
        if pretrained:
            state = load_imagenet_weights(num_layers, weights_path)
            if state is not None:
                if num_input_images > 1:
                    state = dict(state)
                    state["conv1.weight"] = state["conv1.weight"].repeat(1, num_input_images, 1, 1) / num_input_images
                net.load_state_dict(state)
        del net.fc
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.num_ch_enc = [64, 64, 128, 256, 512] if num_layers < 50 else [64, 256, 512, 1024, 2048]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = (x - 0.45) / 0.225
        f0 = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(f0))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f0, f1, f2, f3, f4]
