"""The depth network: a timm encoder + the (Monodepth2 | DCA) decoder."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn
from torch import Tensor

from depth.checks import check_shape
from depth.networks.decoder import DepthDecoder
from depth.networks.encoder import create_encoder, encode

__all__ = ["DepthNet"]


class DepthNet(nn.Module):
    """``forward(image) -> Tensor``: ``(B, 3, H, W)`` RGB in ``[0, 1]`` -> ``(B, 1, H, W)`` sigmoid.

    ``encoder`` is a timm model name (:mod:`depth.networks.encoder`; ``weights``: an ImageNet state
    dict file for it, None = random initialisation). The sigmoid maps to scaled disparity and depth
    with :func:`depth.geometry.disp_to_depth`. :meth:`forward_scales` returns the sigmoids at every
    trained scale (finest first, scale s at 1/2^s resolution) for the multi-scale loss; with
    ``dca=True`` there is a single scale. Batch-size agnostic; sizes not divisible by 32 work.
    """

    def __init__(self, encoder: str = "resnet18", weights: Path | str | None = None, scales=(0, 1, 2, 3),
                 dca: bool = False, dca_dropout: float = 0.1):
        super().__init__()
        self.encoder, self.layout = create_encoder(encoder, 3, weights, key="model.encoder")
        self.decoder = DepthDecoder(list(self.layout.channels), tuple(scales), dca=dca,
                                    dca_dropout=dca_dropout)

    @property
    def scales(self) -> tuple[int, ...]:
        return self.decoder.scales

    def features(self, image: Tensor) -> list[Tensor]:
        """The encoder's feature maps of ``image`` (finest first; :func:`depth.networks.encoder.encode`)."""
        check_shape(image, "B 3 H W", "image")
        return encode(self.encoder, self.layout, image)

    def forward_scales(self, image: Tensor) -> list[Tensor]:
        return self.decoder(self.features(image), out_size=tuple(image.shape[-2:]))

    def forward(self, image: Tensor) -> Tensor:
        return self.forward_scales(image)[0]
