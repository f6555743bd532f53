"""The depth network: ResNet encoder + (Monodepth2 | DCA) decoder."""
from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from depth.checks import check_shape
from depth.networks.decoder import DepthDecoder
from depth.networks.encoder import ResnetEncoder

__all__ = ["DepthNet"]


class DepthNet(nn.Module):
    """``forward(image) -> Tensor``: ``(B, 3, H, W)`` RGB in ``[0, 1]`` -> ``(B, 1, H, W)`` sigmoid.

    The sigmoid maps to scaled disparity and depth with :func:`depth.geometry.disp_to_depth`.
    :meth:`forward_scales` returns the sigmoids at every trained scale (finest first, scale s at
    1/2^s resolution) for the multi-scale loss; with ``dca=True`` there is a single scale.
    Batch-size agnostic; sizes not divisible by 32 work.
    """

    def __init__(self, num_layers: int = 18, pretrained: bool = False, scales=(0, 1, 2, 3),
                 dca: bool = False, weights_path: str | None = None, dca_dropout: float = 0.1):
        super().__init__()
        self.encoder = ResnetEncoder(num_layers, pretrained, 1, weights_path)
        self.decoder = DepthDecoder(self.encoder.num_ch_enc, tuple(scales), dca=dca, dca_dropout=dca_dropout)

    @property
    def scales(self) -> tuple[int, ...]:
        return self.decoder.scales

    def forward_scales(self, image: Tensor) -> list[Tensor]:
        check_shape(image, "B 3 H W", "image")
        return self.decoder(self.encoder(image), out_size=tuple(image.shape[-2:]))

    def forward(self, image: Tensor) -> Tensor:
        return self.forward_scales(image)[0]
