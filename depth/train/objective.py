"""The training objective of one batch: zoom imitation, both networks' forward, and the
self-supervised loss (the part of a step a new loss or recipe changes).

A batch flows once, one way: frames -> (zoom imitation) -> depth net on the jittered target, pose
net on jittered un-zoomed pairs -> reprojection loss on un-jittered frames. The networks may run
under autocast; the loss (SSIM, exp, log, warping) always runs in fp32.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from data.samples import FrameBatch
from depth.config import Config
from depth.geometry import pose_vector_to_matrix
from depth.train.losses import LossTerms, self_supervised_loss, tie_break_noise
from depth.train.placement import Placement
from depth.train.randomness import stream_seed
from depth.train.zoom import sample_zoom_boxes, zoom_images, zoom_intrinsics

__all__ = ["Objective"]


class Objective:
    """``objective(model, batch, step, rank, zoom)`` -> ``(LossTerms, disparities)`` for ``cfg`` on
    ``where``'s device; ``model`` is :class:`depth.model.Networks` or the DDP module around it."""

    def __init__(self, cfg: Config, where: Placement):
        self.cfg, self.where = cfg, where
        # train.compile: the loss traced into one graph (its tie-break noise is drawn outside it)
        self.loss = torch.compile(self_supervised_loss) if cfg.train.compile else self_supervised_loss

    def zoom_boxes(self, step: int, rank: int, batch: int, height: int, width: int) -> Tensor:
        """The zoom-imitation crop boxes of step ``step`` on rank ``rank`` (CPU, ``(batch, 4)``),
        drawn from the ``zoom`` stream alone (:func:`depth.train.randomness.stream_seed`)."""
        a = self.cfg.augment
        gen = torch.Generator().manual_seed(stream_seed(self.cfg.train.seed, step, rank, "zoom"))
        return sample_zoom_boxes(batch, height, width, a.zoom_prob, a.zoom_min_scale, gen)

    def __call__(self, model: nn.Module, batch: FrameBatch, step: int, rank: int,
                 zoom: bool = True) -> tuple[LossTerms, list[Tensor]]:
        """Forward both networks and the loss (no optimiser work). ``rank`` picks the zoom draw and
        the auto-mask noise; ``zoom=False`` skips zoom imitation (validation)."""
        cfg, device = self.cfg, self.where.device
        # B F 3 H W float on the device: un-jittered (the loss's), jittered (the networks'); zoom from
        # the source frame came zoomed from the dataset (batch.depth_in, batch.color, batch.K)
        color, color_aug, depth_in = batch.network_images(device)
        K = batch.K.to(device, non_blocking=True).float()
        frame_ids = tuple(cfg.data.frame_ids)
        if depth_in is None:
            depth_in = color_aug[:, 0]
        if zoom and cfg.augment.zoom_prob > 0 and cfg.augment.zoom_source == "network":
            b, _, _, h, w = color.shape
            boxes = self.zoom_boxes(step, rank, b, h, w)  # on the CPU: zoom checks them without a device sync
            color = zoom_images(color, boxes)
            depth_in = zoom_images(depth_in, boxes)
            K = zoom_intrinsics(K, boxes, h, w)
        if self.where.channels_last:
            depth_in = depth_in.contiguous(memory_format=torch.channels_last)
        with self.where.autocast():
            disparities, pose_vectors = model(color_aug, depth_in, frame_ids,
                                              pose_stacked=cfg.train.pose_stacked)
        disparities = [d.float() for d in disparities]
        poses = [pose_vector_to_matrix(aa.float(), t.float(), invert=f < 0)
                 for (aa, t), f in zip(pose_vectors, frame_ids[1:])]
        if cfg.data.stereo:
            poses.append(batch.T_stereo.to(device).float())
        sources = [color[:, i] for i in range(1, color.shape[1])]
        noise = torch.Generator(device=device).manual_seed(stream_seed(cfg.train.seed, step, rank, "automask"))
        tie_noise = tie_break_noise(color[:, 0], len(sources), len(disparities), recipe=cfg.loss.recipe,
                                    automask=cfg.loss.automask, min_reprojection_loss=cfg.loss.min_reprojection,
                                    generator=noise)
        terms = self.loss(
            disparities, color[:, 0], sources, K, poses, recipe=cfg.loss.recipe,
            min_depth=cfg.model.min_depth, max_depth=cfg.model.max_depth, ssim_weight=cfg.loss.ssim_weight,
            smoothness_weight=cfg.loss.smoothness_weight, automask=cfg.loss.automask,
            min_reprojection_loss=cfg.loss.min_reprojection, tie_noise=tie_noise)
        return terms, disparities
