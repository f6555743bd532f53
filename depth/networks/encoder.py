"""Encoders from timm (``timm.create_model(name, features_only=True)``) and how they are run.

An encoder is a timm feature extractor: ``encoder(x)`` returns one feature map per stride of its
``feature_info``. The decoders need strides ``4, 8, 16, 32`` and take a stride-2 map when there is
one (ResNets, EfficientNets, HRNets; ConvNeXt starts at 4 and the decoder builds the missing 1/2
level itself). :func:`create_encoder` returns the timm module itself, so its parameter names are
timm's (for ResNets: ``conv1``, ``bn1``, ``layer1`` .. ``layer4``, torchvision's names, hence the
names of every earlier checkpoint), and an :class:`EncoderLayout` that :func:`encode` uses.

Conventions of :func:`encode`:

* input ``(B, C, H, W)`` in ``[0, 1]`` (``C = 3 x`` stacked frames), normalised inside with
  Monodepth2's ``(x - 0.45) / 0.225`` for every encoder (ImageNet's mean and std averaged over the
  channels, what Monodepth2 and DIFFNet feed their ImageNet encoders);
* the feature at stride ``r`` has size ``ceil(H / r) x ceil(W / r)``. Encoders that produce exactly
  that at any size (ResNets, EfficientNets: padding ``k // 2``) run on the input as it is; the others
  (HRNet's fusions upsample by fixed factors and fail, ConvNeXt's patchify stem floors) get the
  input replicate-padded at the bottom and right to a multiple of their deepest stride and every
  feature cropped back to that size. Which of the two holds is measured once, at construction, by
  a forward pass at 65x95 (sizes that are odd at every stride) in eval mode.

Architecture options that differ from timm's defaults (:data:`ARCH_OPTIONS`): ResNets keep
torchvision's initialisation (``zero_init_last=False``: the network this project always built);
HRNets return their own multi-resolution branches (64-channel stem at 1/2, then 18/36/72/144
channels for HRNet-18, ``feature_location=""``), the features DIFFNet and DaB-Net decode, rather than
timm's channel-increase head.

ImageNet weights (a file found by :mod:`depth.io.imagenet`) load through timm's own pretrained path
(``pretrained_cfg_overlay=dict(file=...)``: its checkpoint filters, classifier removal and the
input-convolution adaptation to ``C`` channels -- repeated and scaled by ``3 / C``, Monodepth2's
"repeat and halve" for two frames). timm loads non-strictly for feature extractors, so the result is
checked: every parameter of the encoder must equal a tensor of the file (or its adapted input
convolution), else :class:`depth.io.imagenet.MissingWeightsError` names the layers left at random.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models import adapt_input_conv, load_state_dict, split_model_name_tag
from torch import Tensor

from depth.io.imagenet import MissingWeightsError

__all__ = ["EncoderLayout", "ARCH_OPTIONS", "create_encoder", "encode", "encoder_layout",
           "check_encoder_name"]

MEAN, STD = 0.45, 0.225
# architecture-family prefix -> create_model options (see the module doc)
ARCH_OPTIONS: dict[str, dict] = {"resnet": {"zero_init_last": False}, "hrnet": {"feature_location": ""}}
PROBE_SIZE = (65, 95)
EXAMPLES = "resnet18, resnet50, hrnet_w18, efficientnet_b0, convnext_tiny"


@dataclass(frozen=True)
class EncoderLayout:
    """What the decoders need to know about an encoder.

    ``channels``/``reductions``: per feature map, finest first (strides ``(2,) 4, 8, 16, 32``);
    ``pad_to``: 0 when the encoder runs at any input size, else the multiple its input is padded to.
    """

    name: str
    channels: tuple[int, ...]
    reductions: tuple[int, ...]
    pad_to: int = 0


def _options(name: str) -> dict:
    arch, _ = split_model_name_tag(name)
    for prefix, options in ARCH_OPTIONS.items():
        if arch.startswith(prefix):
            return dict(options)
    return {}


def check_encoder_name(name: str, key: str = "model.encoder") -> None:
    """``ValueError`` naming ``key`` unless ``name`` is a timm model (with an optional known tag)."""
    if not isinstance(name, str) or not name or not timm.is_model(name):
        raise ValueError(f"{key}: {name!r} is not a timm model name (e.g. {EXAMPLES}; "
                         f"timm.list_models() lists them all)")
    if split_model_name_tag(name)[1]:
        try:
            timm.models.get_pretrained_cfg(name)
        except RuntimeError as e:
            raise ValueError(f"{key}: {name!r}: {e}") from None


def _layout_of(net: nn.Module, name: str, key: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    channels = tuple(int(c) for c in net.feature_info.channels())
    reductions = tuple(int(r) for r in net.feature_info.reduction())
    if reductions not in ((2, 4, 8, 16, 32), (4, 8, 16, 32)):
        raise ValueError(f"{key}={name}: its features are at strides {list(reductions)}; the depth and pose "
                         f"decoders need strides 4, 8, 16, 32 (and optionally 2), e.g. {EXAMPLES}")
    return channels, reductions


def encoder_layout(name: str, in_chans: int = 3,
                   key: str = "model.encoder") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(channels, reductions)`` of encoder ``name`` without building its weights (meta device);
    ``ValueError`` naming ``key`` for an unknown name or an unusable feature layout."""
    check_encoder_name(name, key)
    with torch.device("meta"):
        net = timm.create_model(name, features_only=True, in_chans=in_chans, pretrained=False,
                                **_options(name))
    return _layout_of(net, name, key)


def _runs_at_any_size(net: nn.Module, in_chans: int, reductions: tuple[int, ...]) -> bool:
    """True when ``net`` gives ``ceil(size / r)`` features at :data:`PROBE_SIZE` (eval mode, no grad)."""
    h, w = PROBE_SIZE
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            feats = net(torch.zeros(1, in_chans, h, w))
        return all(tuple(f.shape[-2:]) == (math.ceil(h / r), math.ceil(w / r))
                   for f, r in zip(feats, reductions))
    except RuntimeError:
        return False
    finally:
        net.train(was_training)


@contextlib.contextmanager
def _quiet_timm_loader():
    """timm logs the classifier keys it drops at WARNING; the load is checked here instead."""
    logger = logging.getLogger("timm.models._builder")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _fingerprint(t: Tensor) -> tuple[tuple[int, ...], bytes]:
    data = t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return tuple(t.shape), hashlib.sha1(data).digest()


def _check_loaded(net: nn.Module, name: str, weights: Path, in_chans: int) -> None:
    """Every parameter of ``net`` must be a tensor of the file ``weights`` (or its input conv adapted
    to ``in_chans``); else :class:`MissingWeightsError` naming what was left at random."""
    state = load_state_dict(str(weights))
    prints = set()
    for t in state.values():
        if not (isinstance(t, Tensor) and torch.is_floating_point(t)):
            continue
        prints.add(_fingerprint(t))
        if in_chans != 3 and t.ndim == 4 and t.shape[1] == 3:
            prints.add(_fingerprint(adapt_input_conv(in_chans, t)))
    params = list(net.named_parameters())
    missing = [n for n, p in params if _fingerprint(p) not in prints]
    if missing:
        raise MissingWeightsError(
            f"{weights}: {len(missing)} of the {len(params)} parameters of {name} are not in this file "
            f"(e.g. {', '.join(missing[:3])}): not a state dict of timm.create_model('{name}')?")


def create_encoder(name: str, in_chans: int = 3, weights: Path | str | None = None,
                   key: str = "model.encoder") -> tuple[nn.Module, EncoderLayout]:
    """The timm feature extractor ``name`` taking ``in_chans`` channels and its layout.

    ``weights``: an ImageNet state dict file (see :mod:`depth.io.imagenet`), loaded and checked as the
    module doc says; None: timm's random initialisation (with :data:`ARCH_OPTIONS`).
    Raises ``ValueError`` (naming ``key``) for an unknown name or feature layout."""
    check_encoder_name(name, key)
    overlay = {"file": str(weights)} if weights is not None else None
    try:
        with _quiet_timm_loader():
            net = timm.create_model(name, features_only=True, in_chans=in_chans,
                                    pretrained=weights is not None, pretrained_cfg_overlay=overlay,
                                    **_options(name))
    except RuntimeError as e:  # a weights file whose tensors have other shapes (the name is checked)
        if weights is None:
            raise
        first = str(e).strip().splitlines()[0][:300]
        raise MissingWeightsError(f"{weights}: not ImageNet weights of {name} ({first})") from None
    channels, reductions = _layout_of(net, name, key)
    if weights is not None:
        _check_loaded(net, name, Path(weights), in_chans)
    pad_to = 0 if _runs_at_any_size(net, in_chans, reductions) else reductions[-1]
    return net, EncoderLayout(name, channels, reductions, pad_to)


def encode(encoder: nn.Module, layout: EncoderLayout, x: Tensor) -> list[Tensor]:
    """Feature maps of ``x`` ``(B, C, H, W)`` in ``[0, 1]``, finest first, the one at stride ``r``
    of size ``ceil(H / r) x ceil(W / r)`` (see the module doc for normalisation and padding)."""
    x = (x - MEAN) / STD
    h, w = x.shape[-2:]
    m = layout.pad_to
    if m and (h % m or w % m):
        x = F.pad(x, (0, -w % m, 0, -h % m), mode="replicate")
        return [f[..., :math.ceil(h / r), :math.ceil(w / r)] for f, r in zip(encoder(x), layout.reductions)]
    return list(encoder(x))
