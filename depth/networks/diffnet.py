"""The DIFFNet depth decoder of the DaB-Net authors (``model.decoder=diffnet``, docs/method.md §2b).

Four fusion stages ``S(h, s)`` (:class:`SEFusion`, the authors' ``ChannelWiseAttention``): nearest
x2 of the deeper map ``h``, concatenation with the skip ``s``, squeeze-excitation (global average,
bias-free 1x1 conv ``C -> C // 16``, ReLU, bias-free 1x1 conv back, sigmoid, multiply), then a 3x3
convolution with zero padding and bias, ReLU:

    X16 = S(F4, F3) -> 256,  X8 = S(X16, F2) -> 128,  X4 = S(X8, F1) -> 64,  X2 = S(X4, F0) -> 32

(``F0 .. F4``: the encoder maps at strides 2 .. 32). Then one full-resolution sigmoid disparity:

* ``dca=True`` (the released DaB-Net model): ``Dropout2d(dca_dropout)`` on X2 and dynamic
  cross-attention (:class:`~depth.networks.cross_attention.DynamicCrossAttention` with the authors'
  branch-weight layers, ``weight_net="conv3x3"``, weights from F4), then the head;
* ``dca=False`` (the authors' decoder without DCA): the head on X2 (no dropout).

Head (:class:`DiffNetHead`): 3x3 conv 32 -> 16 (zero padding, **no bias**) + ELU, nearest x2,
3x3 conv 16 -> 16 (zero padding, no bias) + ELU, 3x3 conv 16 -> 1 (zero padding, with bias), sigmoid.

Every upsampling is exactly x2, as in the authors' code, so the features must come from an input
whose sides are multiples of 32; :class:`~depth.networks.depth_net.DepthNet` pads other inputs (the
authors' network fails on them: a skip concatenation of mismatched sizes).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from depth.networks.cross_attention import DynamicCrossAttention
from depth.networks.layers import sigmoid_head
from depth.registry import register_decoder

__all__ = ["SEFusion", "DiffNetHead", "DiffNetDecoder", "DIFFNET_CHANNELS", "DIVISOR"]

DIFFNET_CHANNELS = (32, 64, 128, 256)  # X2, X4, X8, X16
HEAD_CHANNELS = 16
SE_RATIO = 16
DIVISOR = 32  # the input size must be a multiple of this


def _up2(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class SEFusion(nn.Module):
    """``forward(high, skip)``: nearest x2 of ``high``, concat ``skip``, squeeze-excitation, 3x3 conv
    (zero padding, bias) + ReLU (the authors' ``ChannelWiseAttention``)."""

    def __init__(self, high_channels: int, skip_channels: int, out_channels: int, ratio: int = SE_RATIO):
        super().__init__()
        c = int(high_channels) + int(skip_channels)
        self.high_channels, self.skip_channels = int(high_channels), int(skip_channels)
        self.squeeze = nn.Conv2d(c, c // ratio, 1, bias=False)
        self.excite = nn.Conv2d(c // ratio, c, 1, bias=False)
        self.conv = nn.Conv2d(c, out_channels, 3, padding=1)

    def forward(self, high: Tensor, skip: Tensor) -> Tensor:
        up = _up2(high)
        if up.shape[-2:] != skip.shape[-2:]:
            raise ValueError(f"DIFFNet decoder: a {tuple(high.shape[-2:])} map upsampled x2 does not match its "
                             f"{tuple(skip.shape[-2:])} skip: the input size must be a multiple of {DIVISOR}")
        x = torch.cat([up, skip], 1)
        s = torch.sigmoid(self.excite(F.relu(self.squeeze(x.mean(dim=(2, 3), keepdim=True)))))
        return F.relu(self.conv(s * x))


class DiffNetHead(nn.Module):
    """``(B, 32, h, w) -> (B, 1, 2h, 2w)`` sigmoid disparity (module doc)."""

    def __init__(self, in_channels: int = DIFFNET_CHANNELS[0], mid_channels: int = HEAD_CHANNELS):
        super().__init__()
        self.conv0 = nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=False)
        self.conv1 = nn.Conv2d(mid_channels, mid_channels, 3, padding=1, bias=False)
        self.disp = nn.Conv2d(mid_channels, 1, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.elu(self.conv1(_up2(F.elu(self.conv0(x)))))
        return sigmoid_head(self.disp, x)


@register_decoder("diffnet")
class DiffNetDecoder(nn.Module):
    """Encoder maps at strides 2, 4, 8, 16, 32 (``num_ch_enc``: their channels) -> ``[disparity]``
    (one scale whatever ``scales`` asks for)."""

    input_multiple = DIVISOR  # the authors' network runs at multiples of 32
    hrnet_features = True  # on an HRNet: their concatenated features, raw RGB in

    def __init__(self, num_ch_enc: list[int], scales: tuple[int, ...] = (0,), *, dca: bool = True,
                 dca_dropout: float = 0.1):
        super().__init__()
        self.num_ch_enc = [int(c) for c in num_ch_enc]
        if len(self.num_ch_enc) != 5:
            raise ValueError(f"model.decoder=diffnet needs encoder maps at strides 2, 4, 8, 16, 32 (5 maps), got "
                             f"{len(self.num_ch_enc)} with channels {self.num_ch_enc} (e.g. hrnet_w18, resnet18)")
        c0, c1, c2, c3, c4 = self.num_ch_enc
        x2, x4, x8, x16 = DIFFNET_CHANNELS
        self.dca_enabled = bool(dca)
        self.scales = (0,)
        self.stage16 = SEFusion(c4, c3, x16)
        self.stage8 = SEFusion(x16, c2, x8)
        self.stage4 = SEFusion(x8, c1, x4)
        self.stage2 = SEFusion(x4, c0, x2)
        if self.dca_enabled:
            self.dca = DynamicCrossAttention(channels=(x4, x8, x16), x2_channels=x2, enc_channels=c4,
                                             dropout=dca_dropout, weight_net="conv3x3")
        self.head = DiffNetHead(x2)

    def disparity_heads(self) -> list[nn.Conv2d]:
        return [self.head.disp]

    def init_disparity(self, sigmoid: float) -> None:
        """Set the head's bias to ``logit(sigmoid)`` (see :meth:`DepthDecoder.init_disparity`)."""
        if not 0.0 < sigmoid < 1.0:
            raise ValueError(f"sigmoid must be in (0, 1), got {sigmoid}")
        with torch.no_grad():
            self.head.disp.bias.fill_(math.log(sigmoid / (1.0 - sigmoid)))

    def levels(self, features: list[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(X2, X4, X8, X16)`` of the encoder maps (finest first)."""
        if len(features) != 5:
            raise ValueError(f"expected 5 encoder features, got {len(features)}")
        f0, f1, f2, f3, f4 = features
        x16 = self.stage16(f4, f3)
        x8 = self.stage8(x16, f2)
        x4 = self.stage4(x8, f1)
        return self.stage2(x4, f0), x4, x8, x16

    def forward(self, features: list[Tensor], out_size: tuple[int, int] | None = None) -> list[Tensor]:
        """Encoder maps -> ``[sigmoid disparity at twice the 1/2 map's size]``; ``out_size`` is accepted
        for the decoders' common call and must be that size when given."""
        x2, x4, x8, x16 = self.levels(features)
        y = self.dca(x2, x4, x8, x16, features[-1]) if self.dca_enabled else x2
        disp = self.head(y)
        if out_size is not None and tuple(disp.shape[-2:]) != tuple(out_size):
            raise ValueError(f"DIFFNet decoder: output {tuple(disp.shape[-2:])} for an input of {tuple(out_size)}: "
                             f"the input size must be a multiple of {DIVISOR}")
        return [disp]
