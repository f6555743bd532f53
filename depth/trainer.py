"""The training loop: one optimiser step, logging, validation, checkpoints, resume.

The trainer receives datasets (it never reads files itself) and a resolved :class:`Config`.
A batch flows once, one way: frames -> (zoom imitation) -> depth net on the jittered target,
pose net on jittered un-zoomed pairs -> reprojection loss on un-jittered frames -> optimiser.
"""
from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from depth.checkpoint import (atomic_write_text, build_depth_net, build_pose_net, library_versions,
                              load_checkpoint, save_checkpoint)
from depth.config import Config, to_dict
from depth.geometry import disp_to_depth, pose_vector_to_matrix
from depth.losses import LossTerms, self_supervised_loss
from depth.sampling import ResumableSampler

__all__ = ["Trainer", "ValidationData", "colorize_disparity", "NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    pass


@dataclass
class ValidationData:
    """Images at the network size and their ground truth (metres, 0 = invalid) at native size."""

    images: Dataset  # items: (3, H, W) float tensors in [0, 1]
    gt_depths: list  # list of (H_i, W_i) float32 arrays, or a sparse GT object of depth.metrics


def colorize_disparity(disp: Tensor) -> np.ndarray:
    """``(1, H, W)`` disparity -> ``(3, H, W)`` uint8 magma image, normalised by its 95th percentile."""
    import cv2

    d = disp.detach().float().cpu().numpy()[0]
    vmax = np.percentile(d, 95) + 1e-8
    d8 = np.clip(d / vmax * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(d8, cv2.COLORMAP_MAGMA), cv2.COLOR_BGR2RGB).transpose(2, 0, 1)


def collate(samples: list[dict | None]) -> dict | None:
    samples = [s for s in samples if s is not None]
    if not samples:
        return None
    return {k: torch.stack([s[k] for s in samples]) if isinstance(samples[0][k], Tensor)
            else torch.tensor([s[k] for s in samples]) for k in samples[0]}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: Config, train_set: Dataset, val: ValidationData | None = None,
                 device: str | None = None, rank: int = 0, world_size: int = 1):
        self.cfg = cfg
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        dev = device or cfg.train.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(dev)
        seed_everything(cfg.train.seed)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.train_set, self.val = train_set, val
        self.depth_net = self._build(build_depth_net(cfg), pretrained=True).to(self.device)
        self.pose_net = self._build(build_pose_net(cfg), pretrained=True).to(self.device)
        params = list(self.depth_net.parameters()) + list(self.pose_net.parameters())
        self.optimizer = torch.optim.Adam(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.sampler = ResumableSampler(len(train_set), cfg.train.seed, True, rank, world_size)
        self.steps_per_epoch = len(self.sampler) // cfg.train.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"train.batch_size={cfg.train.batch_size} is larger than the training split "
                             f"({len(train_set)} samples)")
        self.step_count, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.out_dir = Path(cfg.output.dir)
        self.writer = None
        self.last_metrics: dict = {}
        self.skipped_steps = 0

    def _build(self, net: torch.nn.Module, pretrained: bool) -> torch.nn.Module:
        if pretrained and self.cfg.model.pretrained:
            from depth.networks.encoder import load_imagenet_weights

            state = load_imagenet_weights(self.cfg.model.num_layers, self.cfg.model.weights_path or None)
            if state is not None:
                enc = net.encoder
                n_in = enc.conv1.weight.shape[1] // 3
                state = dict(state)
                state.pop("fc.weight", None), state.pop("fc.bias", None)
                if n_in > 1:
                    state["conv1.weight"] = state["conv1.weight"].repeat(1, n_in, 1, 1) / n_in
                enc.load_state_dict(state)
        return net

    # -- learning rate --------------------------------------------------------------------------
    def lr_at(self, step: int, epoch: int) -> float:
        o = self.cfg.optim
        lr = o.lr * (o.gamma ** sum(epoch >= m for m in o.milestones))
        if o.warmup_steps and step < o.warmup_steps:
            f0 = o.warmup_start_factor
            lr *= f0 + (1 - f0) * step / o.warmup_steps
        return lr

    # -- one step ----------------------------------------------------------------------------
    def compute_loss(self, batch: dict, step: int | None = None) -> tuple[LossTerms, list[Tensor]]:
        """Forward both networks and the loss for one batch (no optimiser work)."""
        cfg = self.cfg
        color = batch["color"].to(self.device, non_blocking=True)  # B F 3 H W, un-jittered
        color_aug = batch["color_aug"].to(self.device, non_blocking=True)
        K = batch["K"].to(self.device).float()
        frame_ids = list(cfg.data.frame_ids)

        # poses from the jittered, never zoomed frames (temporal order; invert for past frames)
        poses = []
        for i, f in enumerate(frame_ids[1:], 1):
            if f < 0:
                aa, t = self.pose_net(color_aug[:, i], color_aug[:, 0])
            else:
                aa, t = self.pose_net(color_aug[:, 0], color_aug[:, i])
            poses.append(pose_vector_to_matrix(aa, t, invert=f < 0))
        if cfg.data.stereo:
            poses.append(batch["T_stereo"].to(self.device).float())

        depth_in = color_aug[:, 0]
        if cfg.augment.zoom_prob > 0:
            from depth.zoom import sample_zoom_boxes, zoom_images, zoom_intrinsics

            b, _, _, h, w = color.shape
            gen = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + (step or 0) * 7919 + self.rank)
            boxes = sample_zoom_boxes(b, h, w, cfg.augment.zoom_prob, cfg.augment.zoom_min_scale, gen)
            color = zoom_images(color, boxes.to(self.device))
            depth_in = zoom_images(depth_in, boxes.to(self.device))
            K = zoom_intrinsics(K, boxes.to(self.device), h, w)

        disparities = self.depth_net.forward_scales(depth_in)
        sources = [color[:, i] for i in range(1, color.shape[1])]
        terms = self_supervised_loss(
            disparities, color[:, 0], sources, K, poses, recipe=cfg.loss.recipe,
            min_depth=cfg.model.min_depth, max_depth=cfg.model.max_depth, ssim_weight=cfg.loss.ssim_weight,
            smoothness_weight=cfg.loss.smoothness_weight, automask=cfg.loss.automask,
            min_reprojection_loss=cfg.loss.min_reprojection)
        return terms, disparities

    def train_step(self, batch: dict) -> LossTerms | None:
        cfg = self.cfg
        lr = self.lr_at(self.step_count, self.epoch)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        # Per-step seeding makes dropout and auto-mask noise a function of the step alone.
        torch.manual_seed(cfg.train.seed * 1_000_003 + self.step_count * 7919 + self.rank)
        self.depth_net.train(), self.pose_net.train()
        terms, disparities = self.compute_loss(batch, self.step_count)
        if not torch.isfinite(terms.total):
            if cfg.train.nan_policy == "skip":
                self.optimizer.zero_grad(set_to_none=True)
                self.skipped_steps += 1
                return None
            raise NonFiniteLossError(
                f"non-finite loss ({terms.total.item()}) at step {self.step_count}; the last good checkpoint "
                f"is {self.out_dir / 'checkpoints' / 'last.pt'} (set train.nan_policy=skip to skip such steps)")
        self.optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        if cfg.optim.grad_clip > 0:
            params = list(self.depth_net.parameters()) + list(self.pose_net.parameters())
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        self.optimizer.step()
        self._last_batch = (batch, disparities)
        return terms

    # -- validation --------------------------------------------------------------------------
    @torch.no_grad()
    def predict_disparities(self, images: Dataset, batch_size: int = 8) -> np.ndarray:
        """Scaled disparities ``(N, H, W)`` float32 at the network size."""
        self.depth_net.eval()
        loader = DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=0)
        out = []
        for x in loader:
            sig = self.depth_net(x.to(self.device))
            disp, _ = disp_to_depth(sig, self.cfg.model.min_depth, self.cfg.model.max_depth)
            out.append(disp[:, 0].float().cpu().numpy())
        return np.concatenate(out)

    def validate(self) -> dict:
        if self.val is None:
            return {}
        from depth.metrics import compute_depth_metrics

        disp = self.predict_disparities(self.val.images)
        metrics = compute_depth_metrics(disp, self.val.gt_depths, median_scaling=not self.cfg.data.stereo,
                                        fixed_scale=None)
        self.last_metrics = {k: float(v) for k, v in metrics.items()}
        return self.last_metrics

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "depth_net": self.depth_net.state_dict(),
            "pose_net": self.pose_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "config": to_dict(self.cfg),
            "seed": self.cfg.train.seed,
            "versions": library_versions(),
            "step": self.step_count,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "metrics": self.last_metrics,
        }

    def save(self) -> Path | None:
        if not self.is_main:
            return None
        return save_checkpoint(self.state_dict(), self.out_dir / "checkpoints", self.step_count,
                               self.cfg.train.keep_checkpoints)

    def load_state(self, ckpt: dict) -> None:
        self.depth_net.load_state_dict(ckpt["depth_net"])
        self.pose_net.load_state_dict(ckpt["pose_net"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step_count, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        self.batch_in_epoch = int(ckpt.get("batch_in_epoch", 0))
        rng = ckpt.get("rng") or {}
        if "python" in rng:
            random.setstate(rng["python"])
            np.random.set_state(rng["numpy"])
            torch.set_rng_state(rng["torch"])
            if rng.get("cuda") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
        self.last_metrics = ckpt.get("metrics", {})

    def resume(self, path: str | Path) -> None:
        self.load_state(load_checkpoint(path, map_location=self.device))

    # -- logging -------------------------------------------------------------------------------
    def _log(self, terms: LossTerms, lr: float) -> None:
        if self.writer is None:
            return
        s = self.step_count
        self.writer.add_scalar("loss/total", terms.total.item(), s)
        self.writer.add_scalar("loss/photometric", terms.photometric.item(), s)
        self.writer.add_scalar("loss/smoothness", float(terms.smoothness.detach()), s)
        self.writer.add_scalar("loss/automask_kept", terms.automask.mean().item(), s)
        self.writer.add_scalar("lr", lr, s)

    def _log_images(self) -> None:
        if self.writer is None or not hasattr(self, "_last_batch"):
            return
        batch, disparities = self._last_batch
        self.writer.add_image("input/target", batch["color_aug"][0, 0], self.step_count)
        self.writer.add_image("disparity/scale0", colorize_disparity(disparities[0][0]), self.step_count)

    # -- the loop ------------------------------------------------------------------------------
    def total_steps(self) -> int:
        t = self.cfg.train
        return t.max_steps if t.max_steps > 0 else t.epochs * self.steps_per_epoch

    def fit(self) -> dict:
        cfg = self.cfg
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            import yaml

            atomic_write_text(self.out_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
            atomic_write_text(self.out_dir / "versions.json", json.dumps(library_versions(), indent=2))
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))
        total = self.total_steps()
        from tqdm import tqdm

        bar = tqdm(total=total, initial=self.step_count, disable=not (self.is_main and cfg.train.progress),
                   dynamic_ncols=True, desc="train", file=sys.stdout)
        t0 = time.time()
        while self.step_count < total:
            self.sampler.set_epoch(self.epoch, self.batch_in_epoch * cfg.train.batch_size)
            if hasattr(self.train_set, "set_epoch"):
                self.train_set.set_epoch(self.epoch)
            loader = DataLoader(self.train_set, batch_size=cfg.train.batch_size, sampler=self.sampler,
                                num_workers=cfg.train.num_workers, collate_fn=collate, drop_last=True,
                                pin_memory=self.device.type == "cuda",
                                persistent_workers=False)
            for batch in loader:
                if batch is None:
                    continue
                terms = self.train_step(batch)
                self.step_count += 1
                self.batch_in_epoch += 1
                bar.update(1)
                if terms is not None and self.is_main:
                    if self.step_count % cfg.train.log_every == 0 or self.step_count == 1:
                        self._log(terms, self.optimizer.param_groups[0]["lr"])
                        bar.set_postfix(loss=f"{terms.total.item():.4f}")
                    if cfg.train.image_every and self.step_count % cfg.train.image_every == 0:
                        self._log_images()
                if cfg.train.val_every and self.step_count % cfg.train.val_every == 0:
                    self._validate_and_log()
                if cfg.train.checkpoint_every and self.step_count % cfg.train.checkpoint_every == 0:
                    self.save()
                if self.step_count >= total:
                    break
            else:  # epoch finished: the scheduler steps at the end of the epoch
                self.epoch += 1
                self.batch_in_epoch = 0
                if not cfg.train.val_every:
                    self._validate_and_log()
                if not cfg.train.checkpoint_every:
                    self.save()
        bar.close()
        metrics = self._validate_and_log()
        self.save()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        result = {"steps": self.step_count, "epochs": self.epoch, "seconds": time.time() - t0,
                  "skipped_steps": self.skipped_steps, **metrics}
        if self.is_main:
            atomic_write_text(self.out_dir / "metrics.json", json.dumps(result, indent=2))
        return result

    def _validate_and_log(self) -> dict:
        if not self.is_main:
            return {}
        metrics = self.validate()
        if metrics and self.writer is not None:
            for k, v in metrics.items():
                self.writer.add_scalar(f"val/{k}", v, self.step_count)
            if self.cfg.train.image_every:
                self._log_images()
        return metrics
