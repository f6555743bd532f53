"""Self-supervised losses: minimum reprojection with auto-masking, edge-aware smoothness, and the
two recipes (``baseline`` = Monodepth2, ``dabnet`` = Jiang et al. 2022), docs/method.md §3.

All functions take tensors and numbers (no config objects). Images ``(B, 3, H, W)`` in
``[0, 1]``; disparities ``(B, 1, h, w)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from depth.geometry import disp_to_depth
from depth.registry import RECIPES
from depth.train.reprojection import photometric_error, warp

__all__ = [
    "min_reprojection",
    "smoothness_first_order",
    "smoothness_second_order",
    "LossTerms",
    "self_supervised_loss",
    "tie_break_noise",
]


def min_reprojection(reprojection: list[Tensor], identity: list[Tensor] | None = None,
                     noise: float = 1e-5, generator: torch.Generator | None = None,
                     tie_noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-pixel minimum over sources, with Monodepth2's auto-masking.

    Args:
        reprojection: per-source photometric errors of the warped sources, each ``(B, 1, H, W)``.
        identity: per-source errors of the *unwarped* sources, or None to disable auto-masking.
            ``noise * N(0, 1)`` is added to break ties (drawn from ``generator``), or ``tie_noise``
            where given (:func:`tie_break_noise`: drawn outside, e.g. of a compiled loss).
    Returns:
        ``(loss, mask)``: the mean of the per-pixel minimum, and a ``(B, 1, H, W)`` float mask of
        pixels won by a reprojection term (1) rather than an identity term (0).
    """
    rep = torch.cat(reprojection, 1)
    if identity is None:
        return rep.min(1, keepdim=True)[0].mean(), torch.ones_like(rep[:, :1])
    ident = torch.cat(identity, 1)
    if tie_noise is not None:
        ident = ident + tie_noise
    elif noise:
        ident = ident + noise * torch.randn(ident.shape, device=ident.device, dtype=ident.dtype,
                                            generator=generator)
    combined = torch.cat([ident, rep], 1)
    value, idx = combined.min(1, keepdim=True)
    return value.mean(), (idx >= ident.shape[1]).float()


def _grads(x: Tensor) -> tuple[Tensor, Tensor]:
    return x[:, :, :, :-1] - x[:, :, :, 1:], x[:, :, :-1, :] - x[:, :, 1:, :]


def smoothness_first_order(disp: Tensor, image: Tensor, edge_weight: float = 1.0,
                           normalise: bool = True) -> Tensor:
    """``mean |dx d| exp(-w |dx I|) + mean |dy d| exp(-w |dy I|)`` on ``d / mean(d)``.

    ``|dI|`` is averaged over colour channels; ``w = edge_weight`` (1 baseline, 0.5 dabnet).
    """
    if normalise:
        disp = disp / (disp.mean((2, 3), keepdim=True) + 1e-7)
    ddx, ddy = _grads(disp)
    idx, idy = _grads(image)
    wx = torch.exp(-edge_weight * idx.abs().mean(1, keepdim=True))
    wy = torch.exp(-edge_weight * idy.abs().mean(1, keepdim=True))
    return (ddx.abs() * wx).mean() + (ddy.abs() * wy).mean()


def smoothness_second_order(disp: Tensor, image: Tensor, edge_weight: float = 0.5,
                            normalise: bool = True) -> Tensor:
    """Second-order edge-aware smoothness (the dabnet ``smooth2``, docs/method.md §3), on ``d / mean(d)``:

    ``sum over (xx, xy, yx, yy) of mean |dd d| * exp(-w |dd I|)``, where each second-order
    disparity gradient is weighted by the **same** second-order image gradient (``|dd I|``
    averaged over colour channels). ``dxy`` is the y-difference of the x-difference (and ``dyx``
    the x-difference of the y-difference); forward differences, so ``dxx`` has width ``W - 2``.
    """
    if normalise:
        disp = disp / (disp.mean((2, 3), keepdim=True) + 1e-7)
    ddx, ddy = _grads(disp)
    idx, idy = _grads(image)
    total = 0.0
    for d_first, i_first in ((ddx, idx), (ddy, idy)):
        for d_second, i_second in zip(_grads(d_first), _grads(i_first)):
            weight = torch.exp(-edge_weight * i_second.abs().mean(1, keepdim=True))
            total = total + (d_second.abs() * weight).mean()
    return total


@dataclass
class LossTerms:
    """What :func:`self_supervised_loss` returns; ``total`` is the value to minimise."""

    total: Tensor
    photometric: Tensor
    smoothness: Tensor
    automask: Tensor  # (B, 1, H, W) pixels kept by auto-masking, at full resolution, finest scale
    depth: Tensor  # (B, 1, H, W) full-resolution depth from the finest output (detached)


def self_supervised_loss(
    disparities: list[Tensor],
    target: Tensor,
    sources: list[Tensor],
    K: Tensor,
    T_src_tgt: list[Tensor],
    *,
    recipe: str = "baseline",
    min_depth: float = 0.1,
    max_depth: float = 100.0,
    ssim_weight: float = 0.85,
    smoothness_weight: float = 1e-3,
    automask: bool = True,
    min_reprojection_loss: bool = True,
    K_sources: list[Tensor | None] | None = None,
    noise_generator: torch.Generator | None = None,
    tie_noise: list[Tensor] | None = None,
) -> LossTerms:
    """The photometric reprojection loss of one batch.

    Args:
        disparities: sigmoid outputs finest first; entry ``s`` has resolution 1/2^s (baseline) or a
            single full-resolution entry (dabnet).
        target: ``(B, 3, H, W)`` un-jittered target frame; ``sources``: the un-jittered sources.
        K: ``(B, 3, 3)`` target intrinsics at ``H x W``; ``T_src_tgt``: one ``(B, 4, 4)`` per source.
        recipe: a name of :data:`depth.train.recipes.RECIPES` (``loss.recipe``): ``"baseline"``
            (Monodepth2: every scale upsampled to full resolution, L1, first-order smoothness with
            weight ``smoothness_weight / 2^s`` on the image at scale s, loss averaged over scales),
            ``"dabnet"`` (finest output only, Charbonnier L1, first + second order smoothness,
            ``smooth1 + smooth2`` with equal weights, each gradient weighted by ``exp(-0.5 |dI|)`` of
            the image gradient of the same order and direction), or one registered in a new file.
        K_sources: optional per-source intrinsics (stereo rigs with different cameras).
        noise_generator: generator of the auto-masking tie-break noise (default: torch's global one).
        tie_noise: that noise drawn beforehand, one tensor per scale (:func:`tie_break_noise`, the
            same numbers as ``noise_generator`` would give): no generator inside, so ``torch.compile``
            traces the loss in one graph.
    """
    rules = RECIPES.get(recipe)()
    if len(sources) != len(T_src_tgt):
        raise ValueError(f"{len(sources)} sources but {len(T_src_tgt)} poses")
    h, w = target.shape[-2:]
    charbonnier = rules.charbonnier
    if rules.finest_only:
        disparities = disparities[:1]
    K_sources = K_sources or [None] * len(sources)

    # every source in one batched call (one warp, one SSIM per scale): sources stacked on the batch
    n_src = len(sources)
    same_K = all(k is None for k in K_sources)
    target_n = target.repeat(n_src, 1, 1, 1)
    sources_n = torch.cat(sources, 0)

    def per_source(err: Tensor) -> list[Tensor]:
        return list(err.chunk(n_src, 0))

    identity = None
    if automask:
        identity = per_source(photometric_error(sources_n, target_n, ssim_weight, charbonnier))

    photo_total, smooth_total, extra_total = 0.0, 0.0, None
    mask0 = depth0 = None
    for scale, disp in enumerate(disparities):
        disp_full = disp if disp.shape[-2:] == (h, w) else F.interpolate(
            disp, (h, w), mode="bilinear", align_corners=False)
        _, depth = disp_to_depth(disp_full, min_depth, max_depth)
        if same_K:
            warped = warp(sources_n, depth.repeat(n_src, 1, 1, 1), K.repeat(n_src, 1, 1), torch.cat(T_src_tgt, 0))
            reprojection = per_source(photometric_error(warped, target_n, ssim_weight, charbonnier))
        else:  # per-source intrinsics (a rig with different cameras)
            reprojection = [
                photometric_error(warp(src, depth, K, T, Ks), target, ssim_weight, charbonnier)
                for src, T, Ks in zip(sources, T_src_tgt, K_sources)
            ]
        if not min_reprojection_loss:  # Monodepth2's --avg_reprojection ablation
            reprojection = [torch.cat(reprojection, 1).mean(1, keepdim=True)]
            ident = None if identity is None else [torch.cat(identity, 1).mean(1, keepdim=True)]
        else:
            ident = identity
        photo, mask = min_reprojection(reprojection, ident, generator=noise_generator,
                                       tie_noise=None if tie_noise is None else tie_noise[scale])
        smooth = rules.smoothness(disp, target, scale, smoothness_weight)
        more = rules.extra(disp, depth, target, scale)
        if more is not None:
            extra_total = more if extra_total is None else extra_total + more
        photo_total = photo_total + photo
        smooth_total = smooth_total + smooth
        if scale == 0:
            mask0, depth0 = mask, depth.detach()
    n = len(disparities)
    photo_total = photo_total / n
    smooth_total = smooth_total / n
    total = photo_total + smooth_total
    if extra_total is not None:  # a recipe's further terms (LossRecipe.extra), averaged over scales alike
        total = total + extra_total / n
    return LossTerms(total, photo_total, smooth_total, mask0, depth0)


def tie_break_noise(target: Tensor, n_sources: int, n_scales: int, *, recipe: str = "baseline",
                    automask: bool = True, min_reprojection_loss: bool = True,
                    generator: torch.Generator | None = None, noise: float = 1e-5) -> list[Tensor] | None:
    """The auto-masking tie-break noise :func:`self_supervised_loss` would draw from ``generator``,
    in its order and shapes: one ``(B, n_sources or 1, H, W)`` tensor per scale it scores (the finest
    only for recipes that score one), None without auto-masking. Pass it as ``tie_noise``."""
    if not automask or not noise:
        return None
    if RECIPES.get(recipe)().finest_only:
        n_scales = min(n_scales, 1)
    b, _, h, w = target.shape
    shape = (b, n_sources if min_reprojection_loss else 1, h, w)
    return [noise * torch.randn(shape, device=target.device, dtype=target.dtype, generator=generator)
            for _ in range(n_scales)]
