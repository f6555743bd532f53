"""Monodepth2's U-Net depth decoder, optionally ending in dynamic cross-attention (DCA).

Baseline: levels 4..0 (nearest upsampling to the skip's size, 3x3 conv + ELU with reflection
padding, skip concatenation, channels 256, 128, 64, 32, 16); sigmoid disparity heads at the
requested scales (scale s has resolution 1/2^s of the input).

Encoder features: five maps at strides 2, 4, 8, 16, 32 (``num_ch_enc`` of length 5: ResNet,
EfficientNet, HRNet), or four at strides 4, 8, 16, 32 (length 4: ConvNeXt). Level ``i`` (1..4)
concatenates the encoder map at stride ``2^i``; without a stride-2 map, level 1 is the 1/4 level
upsampled to ``ceil(H / 2) x ceil(W / 2)`` with no skip. The deepest map (stride 32) feeds level 4.

DCA (``dca=True``): levels 4..1 give X16, X8, X4, X2 (256, 128, 64, 32 channels at 1/16 .. 1/2);
:class:`~depth.networks.cross_attention.DynamicCrossAttention` fuses them with per-image branch
weights from the deepest encoder feature and :class:`~depth.networks.cross_attention.DCAHead`
produces a single full-resolution sigmoid disparity (docs/method.md §5).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from depth.networks.cross_attention import DCAHead, DynamicCrossAttention
from depth.networks.layers import Conv3x3, ConvBlock, sigmoid_head, upsample_to
from depth.registry import register_decoder

__all__ = ["DepthDecoder"]

NUM_CH_DEC = (16, 32, 64, 128, 256)


@register_decoder("monodepth2")
class DepthDecoder(nn.Module):
    """Monodepth2's U-Net decoder (one sigmoid per scale of ``scales``), or with ``dca`` the
    project's dynamic cross-attention and head (one full-resolution output)."""

    input_multiple = 1  # any input size (skips are resized to their partners)
    hrnet_features = False

    def __init__(self, num_ch_enc: list[int], scales: tuple[int, ...] = (0, 1, 2, 3), dca: bool = False,
                 dca_dropout: float = 0.1):
        super().__init__()
        self.num_ch_enc = list(num_ch_enc)
        if len(self.num_ch_enc) not in (4, 5):
            raise ValueError(f"num_ch_enc must give 5 (strides 2..32) or 4 (strides 4..32) encoder channels, "
                             f"got {self.num_ch_enc}")
        # decoder level i (1..4) -> channels of the encoder map at stride 2^i (0: no such map)
        first = 6 - len(self.num_ch_enc)
        self.skip_channels = {i: (self.num_ch_enc[i - first] if i >= first else 0) for i in range(1, 5)}
        self.dca_enabled = dca
        self.scales = (0,) if dca else tuple(sorted(scales))
        if any(s not in range(4) for s in self.scales):
            raise ValueError(f"model.scales must be a subset of 0..3, got {scales}")
        lowest = 1 if dca else 0
        convs = {}
        for i in range(4, lowest - 1, -1):
            c_in = self.num_ch_enc[-1] if i == 4 else NUM_CH_DEC[i + 1]
            convs[f"upconv_{i}_0"] = ConvBlock(c_in, NUM_CH_DEC[i])
            c_in = NUM_CH_DEC[i] + (self.skip_channels[i] if i > 0 else 0)
            convs[f"upconv_{i}_1"] = ConvBlock(c_in, NUM_CH_DEC[i])
        if not dca:
            for s in self.scales:
                convs[f"dispconv_{s}"] = Conv3x3(NUM_CH_DEC[s], 1)
        self.convs = nn.ModuleDict(convs)
        if dca:
            self.dca = DynamicCrossAttention(channels=(NUM_CH_DEC[2], NUM_CH_DEC[3], NUM_CH_DEC[4]),
                                             x2_channels=NUM_CH_DEC[1], enc_channels=self.num_ch_enc[-1],
                                             dropout=dca_dropout)
            self.head = DCAHead(NUM_CH_DEC[1])

    def disparity_heads(self) -> list[nn.Conv2d]:
        """The convolutions whose outputs go through the sigmoid (one per scale, or the DCA head's)."""
        if self.dca_enabled:
            return [self.head.disp.conv]
        return [self.convs[f"dispconv_{s}"].conv for s in self.scales]

    def init_disparity(self, sigmoid: float) -> None:
        """Set the disparity heads' biases to ``logit(sigmoid)`` so that an untrained network
        outputs about ``sigmoid`` everywhere (PyTorch's default init gives ~0.5)."""
        if not 0.0 < sigmoid < 1.0:
            raise ValueError(f"sigmoid must be in (0, 1), got {sigmoid}")
        with torch.no_grad():
            for conv in self.disparity_heads():
                conv.bias.fill_(math.log(sigmoid / (1.0 - sigmoid)))

    def forward(self, features: list[Tensor], out_size: tuple[int, int] | None = None) -> list[Tensor]:
        """Encoder features (strides (2,) 4 .. 32, finest first) -> sigmoid disparities, one per scale,
        finest first.

        ``out_size`` is the input image size (H, W); needed for sizes not divisible by 32.
        """
        if len(features) != len(self.num_ch_enc):
            raise ValueError(f"expected {len(self.num_ch_enc)} encoder features, got {len(features)}")
        first = 6 - len(features)  # the decoder level of features[0]
        if out_size is None:
            f = 2 ** first
            out_size = (features[0].shape[-2] * f, features[0].shape[-1] * f)
        skips = {i: features[i - first] for i in range(first, 5)}
        x = features[-1]
        levels: dict[int, Tensor] = {}
        outputs: dict[int, Tensor] = {}
        lowest = 1 if self.dca_enabled else 0
        for i in range(4, lowest - 1, -1):
            x = self.convs[f"upconv_{i}_0"](x)
            if i in skips:
                size = tuple(skips[i].shape[-2:])
            elif i > 0:  # no stride-2 encoder map: the 1/2 level is ceil(size / 2)
                size = (-(-out_size[0] // 2), -(-out_size[1] // 2))
            else:
                size = tuple(out_size)
            x = upsample_to(x, tuple(size))
            if i in skips:
                x = torch.cat([x, skips[i]], 1)
            x = self.convs[f"upconv_{i}_1"](x)
            levels[i] = x
            if not self.dca_enabled and i in self.scales:
                outputs[i] = sigmoid_head(self.convs[f"dispconv_{i}"], x)
        if self.dca_enabled:
            y = self.dca(levels[1], levels[2], levels[3], levels[4], features[-1])
            return [self.head(y, out_size)]
        return [outputs[s] for s in self.scales]
