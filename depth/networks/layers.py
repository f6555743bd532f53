"""Small building blocks shared by the decoders."""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Conv3x3", "ConvBlock", "upsample_to", "full_precision", "sigmoid_head"]


class Conv3x3(nn.Module):
    """3x3 convolution on a reflection-padded input (output has the input's size).

    A feature map only 1 pixel tall or wide (the 1/32 level of an input under 64 pixels) cannot be
    reflected; it is padded by replication instead (the only case where the two differ in shape).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) < 2:
            return self.conv(F.pad(x, (1, 1, 1, 1), mode="replicate"))
        return self.conv(self.pad(x))


class ConvBlock(nn.Module):
    """``Conv3x3`` followed by ELU (Monodepth2's decoder block)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)
        self.nonlin = nn.ELU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.nonlin(self.conv(x))


def upsample_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour upsampling to an explicit size (x2 for sizes divisible by 32)."""
    return F.interpolate(x, size=size, mode="nearest")


def full_precision(x: Tensor):
    """A context that turns autocast off for ``x``'s device when it is on (else does nothing):
    what runs inside sees fp32 inputs only if the caller casts them (:func:`sigmoid_head`)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


def sigmoid_head(conv: nn.Module, x: Tensor) -> Tensor:
    """``sigmoid(conv(x))``, in fp32 under autocast too: a bf16 sigmoid keeps ~3 significant digits,
    too few for the small disparities of distant points. Without autocast exactly ``sigmoid(conv(x))``."""
    if not torch.is_autocast_enabled(x.device.type):
        return torch.sigmoid(conv(x))
    with full_precision(x):
        return torch.sigmoid(conv(x.float()))
