"""``loss.recipe=baseline``: Monodepth2's loss (docs/method.md §3) -- every scale upsampled to full
resolution, plain L1 inside SSIM+L1, first-order edge-aware smoothness weighted
``smoothness_weight / 2^s`` on the image at scale s."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from depth.train.losses import smoothness_first_order
from depth.train.recipes import LossRecipe, register_recipe


@register_recipe("baseline")
class Baseline(LossRecipe):
    def smoothness(self, disp: Tensor, target: Tensor, scale: int, weight: float) -> Tensor:
        h, w = target.shape[-2:]
        image_s = target if disp.shape[-2:] == (h, w) else F.interpolate(target, disp.shape[-2:], mode="area")
        return smoothness_first_order(disp, image_s, 1.0) * weight / (2 ** scale)
