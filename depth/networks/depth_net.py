"""The depth network: a timm encoder + the (Monodepth2 | DCA | DIFFNet) decoder."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn
import torch.nn.functional as F
from timm.models import split_model_name_tag
from torch import Tensor

from common.errors import ConfigError
from depth.checks import check_shape
from depth.networks.encoder import create_encoder, encode
from depth.registry import DECODERS

__all__ = ["DepthNet", "DECODERS", "INPUT_NORMS", "default_input_norm"]

INPUT_NORMS = ("imagenet", "none")


def _is_hrnet(encoder: str) -> bool:
    return split_model_name_tag(encoder)[0].startswith("hrnet")


def default_input_norm(encoder: str, decoder: str) -> str:
    """``none`` for the DaB-Net authors' pair (an HRNet with a decoder that takes ``hrnet_features``,
    e.g. ``diffnet``: raw [0, 1] RGB in), else ``imagenet`` (Monodepth2's ``(x - 0.45) / 0.225``)."""
    return "none" if DECODERS.get(decoder).hrnet_features and _is_hrnet(encoder) else "imagenet"


class DepthNet(nn.Module):
    """``forward(image) -> Tensor``: ``(B, 3, H, W)`` RGB in ``[0, 1]`` -> ``(B, 1, H, W)`` sigmoid.

    ``encoder`` is a timm model name (:mod:`depth.networks.encoder`; ``weights``: an ImageNet state
    dict file for it, None = random initialisation). The sigmoid maps to scaled disparity and depth
    with :func:`depth.geometry.disp_to_depth`. :meth:`forward_scales` returns the sigmoids at every
    trained scale (finest first, scale s at 1/2^s resolution) for the multi-scale loss; with
    ``dca=True`` or ``decoder="diffnet"`` there is a single scale. Batch-size agnostic; sizes not
    divisible by 32 work.

    ``decoder``: ``monodepth2`` (:class:`~depth.networks.decoder.DepthDecoder`, with the project's DCA
    when ``dca``) or ``diffnet`` (:class:`~depth.networks.diffnet.DiffNetDecoder`, the DaB-Net authors'
    decoder and, when ``dca``, their DCA and head; on an HRNet the encoder gives their concatenated
    features, ``features="hrnet_concat"``). The DIFFNet network runs on the input replicate-padded at
    the bottom and right to a multiple of 32 and its output is cropped back (at multiples of 32 it
    is the authors' network as it is). ``input_norm``: ``imagenet`` or ``none`` (raw [0, 1] RGB).
    """

    def __init__(self, encoder: str = "resnet18", weights: Path | str | None = None, scales=(0, 1, 2, 3),
                 dca: bool = False, dca_dropout: float = 0.1, decoder: str = "monodepth2",
                 input_norm: str = "imagenet"):
        super().__init__()
        decoder_cls = DECODERS.get(decoder)  # ConfigError naming model.decoder for an unknown name
        if input_norm not in INPUT_NORMS:
            raise ConfigError(f"model.input_norm: {' | '.join(INPUT_NORMS)}, got {input_norm!r}")
        self.decoder_kind, self.input_norm = decoder, input_norm
        self.input_multiple = int(decoder_cls.input_multiple)
        features = "hrnet_concat" if decoder_cls.hrnet_features and _is_hrnet(encoder) else "timm"
        self.encoder, self.layout = create_encoder(encoder, 3, weights, key="model.encoder", features=features)
        self.decoder = decoder_cls(list(self.layout.channels), tuple(scales), dca=dca, dca_dropout=dca_dropout)

    @property
    def scales(self) -> tuple[int, ...]:
        return self.decoder.scales

    def _encode(self, image: Tensor) -> list[Tensor]:
        return encode(self.encoder, self.layout, image, normalize=self.input_norm == "imagenet")

    def features(self, image: Tensor) -> list[Tensor]:
        """The encoder's feature maps of ``image`` (finest first; :func:`depth.networks.encoder.encode`)."""
        check_shape(image, "B 3 H W", "image")
        return self._encode(image)

    def forward_scales(self, image: Tensor) -> list[Tensor]:
        if self.input_multiple > 1:
            check_shape(image, "B 3 H W", "image")
            h, w = image.shape[-2:]
            ph, pw = -h % self.input_multiple, -w % self.input_multiple
            x = F.pad(image, (0, pw, 0, ph), mode="replicate") if ph or pw else image
            out = self.decoder(self._encode(x))
            return [o[..., :h, :w] for o in out] if ph or pw else out
        return self.decoder(self.features(image), out_size=tuple(image.shape[-2:]))

    def forward(self, image: Tensor) -> Tensor:
        return self.forward_scales(image)[0]
