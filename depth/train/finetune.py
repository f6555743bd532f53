"""Fine-tuning: ``model.init_from`` -- a saved model's weights copied into freshly built networks.

The source is anything :func:`depth.model.load_model` reads (a checkpoint, a run folder, a
Monodepth2 model folder). The copy happens after the networks are built (ImageNet weights
included) and before the optimiser sees a step: the run starts at step 0 with a fresh optimiser
(:class:`depth.train.trainer.Trainer`, not on resume).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from common.errors import CheckpointError, ConfigError
from depth.model import LoadedModel, Networks, open_model
from depth.networks import PoseNet

__all__ = ["init_networks", "open_init_from"]


def open_init_from(path: str | Path) -> LoadedModel:
    """``model.init_from``'s model (:func:`depth.model.open_model`); an unreadable, refused or
    foreign file is a :class:`common.errors.ConfigError` prefixed ``model.init_from:`` (named by the key)."""
    try:
        return open_model(path)
    except CheckpointError as e:
        raise ConfigError(f"model.init_from: {e}") from e


def _pose_scale_factor(src: PoseNet, dst: PoseNet) -> Tensor | None:
    """Per-output factors mapping ``src``'s ``pose_2`` to ``dst``'s scales (None: equal scales)."""
    r = src.decoder.rotation_scale / dst.decoder.rotation_scale
    t = src.decoder.translation_scale / dst.decoder.translation_scale
    return None if r == t == 1.0 else torch.tensor([r] * 3 + [t] * 3)


def init_networks(nets: Networks, path: str | Path, source: LoadedModel | None = None) -> str:
    """``model.init_from``: copy the weights (BatchNorm statistics included) of the model at
    ``path`` -- anything :func:`load_model` reads -- into freshly built ``nets``; returns a
    one-line summary of what was copied. ``source``: ``path``'s model already read
    (:func:`depth.model.open_model`).

    * depth net: the encoders must match tensor for tensor; decoder tensors with the same name are
      copied (a baseline model initialising a DCA model leaves the attention layers and the DCA
      head fresh, listed in the summary);
    * pose net: copied when the source has one with exactly the same tensors (its output scales
      folded in when ``model.pose_*_scale`` differ), else left as built (said in the summary).

    Raises ``ValueError`` naming the first few tensors whose shapes differ or that the encoders do
    not share, or (prefixed ``model.init_from:``) why :func:`load_model` cannot read ``path``;
    :class:`common.errors.CheckpointError` for a missing ``path``.
    """
    if source is None:
        source = open_init_from(path)
    src = source.nets
    ours, theirs = nets.depth_net.state_dict(), src.depth_net.state_dict()
    wrong = [f"{k} {tuple(v.shape)} in {path} vs {tuple(ours[k].shape)} here" for k, v in theirs.items()
             if k in ours and v.shape != ours[k].shape]
    if wrong:
        raise ConfigError(f"model.init_from: depth net tensors differ in shape: {'; '.join(wrong[:4])}"
                         + (f" and {len(wrong) - 4} more" if len(wrong) > 4 else ""))
    enc_missing = [k for k in ours if k.startswith("encoder.") and k not in theirs]
    enc_extra = [k for k in theirs if k.startswith("encoder.") and k not in ours]
    if enc_missing or enc_extra:
        raise ConfigError(f"model.init_from: {path} has another depth encoder: missing here "
                         f"{enc_missing[:4] or 'none'}, not in this model {enc_extra[:4] or 'none'} "
                         f"(check model.encoder)")
    with torch.no_grad():
        for k, v in theirs.items():
            if k in ours:
                ours[k].copy_(v)
    # fresh modules: decoder.convs.<conv> or decoder.<part> (decoder.dca, decoder.head)
    fresh = sorted({".".join(k.split(".")[:3 if k.startswith("decoder.convs.") else 2])
                    for k in ours if k not in theirs})
    summary = f"initialised from {path}: depth net {sum(k in ours for k in theirs)}/{len(ours)} tensors"
    if fresh:
        summary += f" (fresh: {', '.join(fresh)})"
    if nets.pose_net is None:  # stereo-only: no pose net here
        return summary
    if src.pose_net is None:
        return summary + "; pose net as built (the source has none)"
    mine, pose = nets.pose_net.state_dict(), src.pose_net.state_dict()
    odd = [k for k in mine if k not in pose or pose[k].shape != mine[k].shape] + [k for k in pose if k not in mine]
    if odd:
        return summary + f"; pose net as built (the source's differs: {', '.join(odd[:3])})"
    factor = _pose_scale_factor(src.pose_net, nets.pose_net)
    with torch.no_grad():
        for k, v in pose.items():
            if factor is not None and k.startswith("decoder.convs.pose_2."):
                v = v * factor.to(v.dtype).view(-1, *([1] * (v.ndim - 1)))
            mine[k].copy_(v)
    return summary + f"; pose net {len(mine)}/{len(mine)} tensors" + \
        (" (output scales folded in)" if factor is not None else "")
