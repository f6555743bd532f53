"""Encoders from timm (``timm.create_model(name, features_only=True)``) and how they are run.

An encoder is a timm feature extractor: ``encoder(x)`` returns one feature map per stride of its
``feature_info``. The decoders need strides ``4, 8, 16, 32`` and take a stride-2 map when there is
one (ResNets, EfficientNets, HRNets; ConvNeXt starts at 4 and the decoder builds the missing 1/2
level itself). :func:`create_encoder` returns the timm module itself, so its parameter names are
timm's (for ResNets: ``conv1``, ``bn1``, ``layer1`` .. ``layer4``, torchvision's names, hence the
names of every earlier checkpoint), and an :class:`EncoderLayout` that :func:`encode` uses.

Conventions of :func:`encode`:

* input ``(B, C, H, W)`` in ``[0, 1]`` (``C = 3 x`` stacked frames), normalised inside with
  Monodepth2's ``(x - 0.45) / 0.225`` (ImageNet's mean and std averaged over the channels, what
  Monodepth2 feeds its ImageNet encoders: ``model.input_norm=imagenet``), or fed as it is
  (``normalize=False``, ``model.input_norm=none``: the DaB-Net authors' HRNet sees raw [0, 1] RGB);
* the feature at stride ``r`` has size ``ceil(H / r) x ceil(W / r)``. Encoders that produce exactly
  that at any size (ResNets, EfficientNets: padding ``k // 2``) run on the input as it is; the others
  (HRNet's fusions upsample by fixed factors and fail, ConvNeXt's patchify stem floors) get the
  input replicate-padded at the bottom and right to a multiple of their deepest stride and every
  feature cropped back to that size. Which of the two holds is measured once, at construction, by
  a forward pass at 65x95 (sizes that are odd at every stride) in eval mode.

**The authors' HRNet features** (``features="hrnet_concat"``, what ``model.decoder=diffnet`` builds on an
HRNet; docs/method.md §2b): the same timm modules and weights, run by :func:`hrnet_concat_features`
-- the stage-2, -3 and -4 outputs of every branch concatenated per resolution, the stem's second
convolution joining the 1/4 map, and the fusions' upsampling bilinear with ``align_corners=True`` to
the target branch's size (the DaB-Net / DIFFNet code; timm upsamples by nearest x2^k). For HRNet-W18:
64 @ 1/2, 64+18+18+18 = 118 @ 1/4, 108 @ 1/8, 144 @ 1/16, 144 @ 1/32. These run at any size
(``ceil(H / r)``), with no padding.

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

from common.errors import ConfigError
from depth.io.imagenet import MissingWeightsError

__all__ = ["EncoderLayout", "ARCH_OPTIONS", "FEATURE_KINDS", "create_encoder", "encode", "encoder_layout",
           "check_encoder_name", "hrnet_concat_channels", "hrnet_concat_features"]

MEAN, STD = 0.45, 0.225
# architecture-family prefix -> create_model options (see the module doc)
ARCH_OPTIONS: dict[str, dict] = {"resnet": {"zero_init_last": False}, "hrnet": {"feature_location": ""}}
PROBE_SIZE = (65, 95)
EXAMPLES = "resnet18, resnet50, hrnet_w18, efficientnet_b0, convnext_tiny"


@dataclass(frozen=True)
class EncoderLayout:
    """What the decoders need to know about an encoder.

    ``channels``/``reductions``: per feature map, finest first (strides ``(2,) 4, 8, 16, 32``);
    ``pad_to``: 0 when the encoder runs at any input size, else the multiple its input is padded to;
    ``features``: ``timm`` (the timm feature extractor's own maps) or ``hrnet_concat`` (the authors'
    concatenated HRNet maps, :func:`hrnet_concat_features`).
    """

    name: str
    channels: tuple[int, ...]
    reductions: tuple[int, ...]
    pad_to: int = 0
    features: str = "timm"


def _options(name: str) -> dict:
    arch, _ = split_model_name_tag(name)
    for prefix, options in ARCH_OPTIONS.items():
        if arch.startswith(prefix):
            return dict(options)
    return {}


def check_encoder_name(name: str, key: str = "model.encoder") -> None:
    """``ValueError`` naming ``key`` unless ``name`` is a timm model (with an optional known tag)."""
    if not isinstance(name, str) or not name or not timm.is_model(name):
        raise ConfigError(f"{key}: {name!r} is not a timm model name (e.g. {EXAMPLES}; "
                         f"timm.list_models() lists them all)")
    if split_model_name_tag(name)[1]:
        try:
            timm.models.get_pretrained_cfg(name)
        except RuntimeError as e:
            raise ConfigError(f"{key}: {name!r}: {e}") from None


def _layout_of(net: nn.Module, name: str, key: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    channels = tuple(int(c) for c in net.feature_info.channels())
    reductions = tuple(int(r) for r in net.feature_info.reduction())
    if reductions not in ((2, 4, 8, 16, 32), (4, 8, 16, 32)):
        raise ConfigError(f"{key}={name}: its features are at strides {list(reductions)}; the depth and pose "
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


FEATURE_KINDS = ("timm", "hrnet_concat")


def hrnet_concat_channels(timm_channels: tuple[int, ...]) -> tuple[int, ...]:
    """Channels of :func:`hrnet_concat_features` from timm's HRNet ``(stem, b0, b1, b2, b3)`` channels
    (``feature_location=""``): the 1/4 map adds the stem's 64-channel second convolution and the
    stage-2/3/4 branch 0, the 1/8 map stages 2-4 branch 1, the 1/16 map stages 3-4 branch 2."""
    stem, c0, c1, c2, c3 = timm_channels
    return (stem, 64 + 3 * c0, 3 * c1, 2 * c2, c3)


def _hrnet_module(module: nn.Module, xs: list[Tensor]) -> list[Tensor]:
    """One timm ``HighResolutionModule`` with the authors' fusion: a lower-resolution branch is
    1x1-conv + BN, then bilinearly resized (``align_corners=True``) to the target branch's size."""
    if module.num_branches == 1:
        return [module.branches[0](xs[0])]
    xs = [branch(x) for branch, x in zip(module.branches, xs)]
    out = []
    for i, layers in enumerate(module.fuse_layers):
        y = None
        for j, f in enumerate(layers):
            if j > i:  # timm: Sequential(conv, bn, nearest Upsample): skip its Upsample
                t = F.interpolate(f[1](f[0](xs[j])), size=tuple(xs[i].shape[-2:]), mode="bilinear",
                                  align_corners=True)
            else:  # identity, or stride-2 3x3 convs
                t = f(xs[j])
            y = t if y is None else y + t
        out.append(module.fuse_act(y))
    return out


def _hrnet_stage(stage: nn.Module, xs: list[Tensor]) -> list[Tensor]:
    for module in stage:
        xs = _hrnet_module(module, xs)
    return xs


def hrnet_concat_features(net: nn.Module, x: Tensor) -> list[Tensor]:
    """The authors' five HRNet maps (module doc) of a timm HRNet feature extractor built with
    ``feature_location=""``; ``x`` as the network sees it (already normalised or not)."""
    x = net.act1(net.bn1(net.conv1(x)))
    f0 = x
    stem = net.act2(net.bn2(net.conv2(x)))
    x = net.layer1(stem)
    y2 = _hrnet_stage(net.stage2, [t(x) for t in net.transition1])
    xs = [y2[i] if isinstance(t, nn.Identity) else t(y2[-1]) for i, t in enumerate(net.transition2)]
    y3 = _hrnet_stage(net.stage3, xs)
    xs = [y3[i] if isinstance(t, nn.Identity) else t(y3[-1]) for i, t in enumerate(net.transition3)]
    y4 = _hrnet_stage(net.stage4, xs)
    return [f0, torch.cat([stem, y2[0], y3[0], y4[0]], 1), torch.cat([y2[1], y3[1], y4[1]], 1),
            torch.cat([y3[2], y4[2]], 1), y4[3]]


def create_encoder(name: str, in_chans: int = 3, weights: Path | str | None = None,
                   key: str = "model.encoder", features: str = "timm") -> tuple[nn.Module, EncoderLayout]:
    """The timm feature extractor ``name`` taking ``in_chans`` channels and its layout.

    ``features="hrnet_concat"`` (HRNets only): the same module, its layout that of
    :func:`hrnet_concat_features` (see the module doc).

    ``weights``: an ImageNet state dict file (see :mod:`depth.io.imagenet`), loaded and checked as the
    module doc says; None: timm's random initialisation (with :data:`ARCH_OPTIONS`).
    Raises ``ValueError`` (naming ``key``) for an unknown name or feature layout."""
    check_encoder_name(name, key)
    if features not in FEATURE_KINDS:
        raise ValueError(f"features must be one of {FEATURE_KINDS}, got {features!r}")
    if features == "hrnet_concat" and not split_model_name_tag(name)[0].startswith("hrnet"):
        raise ConfigError(f"{key}={name}: the concatenated HRNet features need an HRNet (e.g. hrnet_w18)")
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
    if features == "hrnet_concat":
        return net, EncoderLayout(name, hrnet_concat_channels(channels), reductions, 0, features)
    pad_to = 0 if _runs_at_any_size(net, in_chans, reductions) else reductions[-1]
    return net, EncoderLayout(name, channels, reductions, pad_to)


def encode(encoder: nn.Module, layout: EncoderLayout, x: Tensor, normalize: bool = True) -> list[Tensor]:
    """Feature maps of ``x`` ``(B, C, H, W)`` in ``[0, 1]``, finest first, the one at stride ``r``
    of size ``ceil(H / r) x ceil(W / r)`` (see the module doc for normalisation and padding).
    ``normalize=False``: ``x`` goes in as it is (``model.input_norm=none``, the authors' HRNet)."""
    if normalize:
        x = (x - MEAN) / STD
    if layout.features == "hrnet_concat":
        return hrnet_concat_features(encoder, x)
    h, w = x.shape[-2:]
    m = layout.pad_to
    if m and (h % m or w % m):
        x = F.pad(x, (0, -w % m, 0, -h % m), mode="replicate")
        return [f[..., :math.ceil(h / r), :math.ceil(w / r)] for f, r in zip(encoder(x), layout.reductions)]
    return list(encoder(x))
