"""Validation during training: Eigen depth metrics on frames with ground truth, scored exactly as
``evaluate.py depth`` scores them, or, without GT, the photometric loss on held-out samples."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from data.samples import collate
from depth.config import Config
from depth.eval.metrics import compute_depth_metrics
from depth.eval.scale import stereo_scale
from depth.inference import predict_disparities

__all__ = ["ValidationData", "Validation"]


@dataclass
class ValidationData:
    """Validation frames at full resolution and their ground truth (metres, 0 = invalid) at the
    same size; scored exactly as ``evaluate.py depth`` scores them (:meth:`Validation.run`)."""

    images: Sequence[np.ndarray]  # H_i x W_i x 3 uint8 RGB, e.g. a data.kitti.KittiImageSet (read lazily)
    gt_depths: list  # list of (H_i, W_i) float32 arrays, or a sparse GT object of depth.eval.metrics


class Validation:
    """What a run validates on (``val``: frames with GT, else ``val_samples``: held-out training-kind
    samples) and the last metrics (``last_metrics``; stored in checkpoints) with the step they were
    taken at (``validated_at``: a step is validated once)."""

    def __init__(self, cfg: Config, val: ValidationData | None, val_samples: Dataset | None, batch: int):
        self.cfg, self.val, self.batch = cfg, val, batch
        self.val_samples = val_samples if val_samples is not None and len(val_samples) > 0 else None
        self.last_metrics: dict = {}
        self.validated_at: int | None = None

    def once(self, step: int, is_main: bool, log, score: Callable[[], dict]) -> dict:
        """``score()`` at ``step`` on rank 0, logged (``log``: a :class:`depth.train.run_log.RunLog`),
        unless this step was scored already (then its metrics); ``{}`` on other ranks."""
        if not is_main:
            return {}
        if self.validated_at == step:  # e.g. val_every hit the last step
            return self.last_metrics
        self.validated_at = step
        metrics = score()
        log.validation(metrics, step)
        return metrics

    def run(self, depth_net: nn.Module, modules: list[nn.Module], device: torch.device,
            loss: Callable) -> dict:
        """Eigen metrics of ``depth_net`` on the validation frames
        (:func:`depth.inference.predict_disparities` and :func:`depth.eval.metrics.compute_depth_metrics`
        as ``evaluate.py depth`` runs them: Garg crop, ``1e-3 < gt < 80``; stereo-trained models at
        their baseline's fixed scale, others median-scaled). Without GT frames, :meth:`loss_on_samples`
        with ``loss`` (the trainer's ``compute_loss``); without either, ``{}``."""
        if self.val is None:
            if self.val_samples is not None:
                self.last_metrics = self.loss_on_samples(modules, loss)
                return self.last_metrics
            return {}
        depth_net.eval()
        m = self.cfg.model
        disp = predict_disparities(depth_net, self.val.images, (self.cfg.data.width, self.cfg.data.height),
                                   min_depth=m.min_depth, max_depth=m.max_depth, device=device)
        factor = stereo_scale(self.cfg)
        metrics = compute_depth_metrics(disp, self.val.gt_depths, median_scaling=factor is None,
                                        fixed_scale=factor)
        self.last_metrics = {k: float(v) for k, v in metrics.items()}
        return self.last_metrics

    @torch.no_grad()
    def loss_on_samples(self, modules: list[nn.Module], loss: Callable) -> dict:
        """``loss(batch)`` (the trainer's loss at step 0, rank 0, no zoom imitation, unwrapped
        networks) on every held-out sample in order, without gradients and with the networks in
        eval mode: the mean over samples of the total loss (``val_loss``) and of its photometric
        term (``val_photometric``), plus ``n_val_samples``. Leaves the global random state alone."""
        for mod in modules:
            mod.eval()
        totals, photometric, n = 0.0, 0.0, 0
        indices = list(range(len(self.val_samples)))
        for start in range(0, len(indices), self.batch):
            batch = collate([self.val_samples[i] for i in indices[start:start + self.batch]])
            terms = loss(batch)
            totals += float(terms.total) * len(batch)
            photometric += float(terms.photometric) * len(batch)
            n += len(batch)
        return {"val_loss": totals / n, "val_photometric": photometric / n, "n_val_samples": float(n)}
