"""Where the ImageNet weights of an encoder come from, found without touching the network.

An encoder is named by its timm model name (``model.encoder``, ``model.pose_encoder``), optionally
with a pretrained tag (``hrnet_w18.ms_in1k``). A bare name takes timm's default tag, except where
timm holds torchvision's own ImageNet weights for the architecture (tag ``tv_in1k``: ``resnet18``,
``resnet34``, ``resnet50``, ...): those are the weights Monodepth2 starts from, so bare ResNet names
take them and torchvision's cached files load unchanged.

Places, in order (nothing is ever downloaded):

1. ``model.weights_path`` when set (a file of ``timm.create_model(name).state_dict()`` or
   torchvision's equivalent; ``.pth``/``.bin``/``.safetensors``). It is the only place looked at
   then, and it serves the pose encoder too when that is the same architecture;
2. torch's hub cache, ``$TORCH_HOME/hub/checkpoints/<file of the weights' URL>`` (what torchvision
   and older timm releases download);
3. the Hugging Face hub cache (``$HF_HOME/hub/models--timm--<name.tag>``: what
   ``timm.create_model(name, pretrained=True)`` downloads).

When none holds them, :class:`MissingWeightsError` names every place searched and the one command
that fills the cache on a machine with internet (the cache folder can then be copied over).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
import torch
from huggingface_hub import constants as hf_constants
from timm.models import get_pretrained_cfg, split_model_name_tag
from common.errors import ConfigError, MissingWeightsError


__all__ = ["MissingWeightsError", "WeightsSource", "weights_name", "find_imagenet_weights", "fill_command"]

TORCHVISION_TAG = "tv_in1k"
HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights of one encoder were found (``path``) and the places that were looked at."""

    name: str  # the timm name with its pretrained tag, e.g. resnet18.tv_in1k
    path: Path | None
    searched: tuple[str, ...]


def weights_name(name: str) -> str:
    """``name`` with the pretrained tag whose weights are used: the given tag, else ``tv_in1k``
    where timm has torchvision's weights for the architecture, else timm's default tag.
    Raises ``ValueError`` for an unknown model or tag."""
    arch, tag = split_model_name_tag(name)
    if tag:
        candidates = [name]
    else:
        candidates = [f"{arch}.{TORCHVISION_TAG}", arch]
    for candidate in candidates:
        try:
            cfg = get_pretrained_cfg(candidate)
        except RuntimeError:  # an unknown tag
            cfg = None
        if cfg is not None:
            return f"{arch}.{cfg.tag}" if cfg.tag else arch
    raise ConfigError(f"{name!r}: timm has no pretrained weights of that name")


def _torch_hub_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])


def _hf_cache_folder(repo_id: str) -> Path:
    return Path(hf_constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))


def find_imagenet_weights(name: str, weights_path: str = "") -> WeightsSource:
    """Where the ImageNet weights of encoder ``name`` are (see the module doc for the order).

    Returns a :class:`WeightsSource` whose ``path`` is None when no place holds them; raises
    :class:`common.errors.MissingWeightsError` when ``weights_path`` is set and is not a file."""
    if weights_path:
        p = Path(weights_path).expanduser()
        if not p.is_file():
            raise MissingWeightsError(f"model.weights_path: no such file {p}")
        return WeightsSource(name, p, (f"model.weights_path={p}",))
    tagged = weights_name(name)
    cfg = get_pretrained_cfg(tagged)
    searched: list[str] = ["model.weights_path (not set)"]
    if cfg.file:
        f = Path(cfg.file)
        searched.append(str(f))
        if f.is_file():
            return WeightsSource(tagged, f, tuple(searched))
    if cfg.url:
        f = _torch_hub_file(cfg.url)
        searched.append(str(f))
        if f.is_file():
            return WeightsSource(tagged, f, tuple(searched))
    if cfg.hf_hub_id:
        names = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_FILENAMES
        searched.append(str(_hf_cache_folder(cfg.hf_hub_id)))
        for filename in names:
            hit = huggingface_hub.try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(hit, str) and Path(hit).is_file():
                return WeightsSource(tagged, Path(hit), tuple(searched))
    return WeightsSource(tagged, None, tuple(searched))


def fill_command(names: list[str]) -> str:
    """The one shell command that downloads the weights of ``names`` (tagged timm names) into the
    caches searched here."""
    if len(names) == 1:
        body = f"timm.create_model('{names[0]}', pretrained=True)"
    else:
        body = "[timm.create_model(n, pretrained=True) for n in (" + ", ".join(f"'{n}'" for n in names) + ")]"
    return f'python -c "import timm; {body}"'
