"""Helpers shared by the tests (not part of the library)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from depth.config import Config, to_dict
from depth.model import Networks, build_networks


# Networks for tests that train and write checkpoints where the network's size is not under test:
# MobileNetV3-Small x0.5 encoders give 45 MB checkpoints (weights + Adam moments) against ResNet-18's
# 322 MB, keeping the suite's temporary folders small.
SMALL_NETS = ("model.encoder=mobilenetv3_small_050", "model.pose_encoder=mobilenetv3_small_050")


def procedural_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic synthetic road-like RGB image, ``H x W x 3`` uint8 (sky, ground, texture)."""
    rng = np.random.default_rng(seed)
    v = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    u = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    sky = np.stack([0.55 + 0.2 * (1 - v), 0.7 + 0.1 * (1 - v), 0.9 + 0 * v], -1) * np.ones_like(u)[..., None]
    ground = np.stack([0.35 + 0.3 * v, 0.33 + 0.28 * v, 0.3 + 0.25 * v], -1) * np.ones_like(u)[..., None]
    img = np.where((v < 0.45)[..., None], sky, ground)
    img = img + 0.08 * np.sin(40 * u * (v + 0.2))[..., None] + rng.normal(0, 0.03, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def write_checkpoint(path: Path, cfg: Config, seed: int = 0) -> Networks:
    """Randomly initialised networks of ``cfg`` (seeded), saved as a checkpoint of this project;
    returns them in eval mode."""
    torch.manual_seed(seed)
    nets = build_networks(cfg).eval()
    torch.save({"depth_net": nets.depth_net.state_dict(), "pose_net": nets.pose_net.state_dict(),
                "config": to_dict(cfg), "step": 0, "epoch": 0}, path)
    return nets


def use_sgd(trainer) -> None:
    """Replace ``trainer``'s optimiser by SGD without momentum over the same parameters (the lr
    schedule sets ``param_groups[...]["lr"]`` every step, so it applies unchanged): an update
    proportional to the gradient, unlike Adam's, which a constant gradient scale leaves unchanged."""
    trainer.optimizer = torch.optim.SGD(trainer.params, lr=trainer.cfg.optim.lr)
