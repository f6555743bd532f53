"""``loss.recipe=dabnet``: the DaB-Net authors' loss (Jiang et al. 2022; docs/method.md §3) -- the
finest output only, Charbonnier L1, first + second order smoothness with equal weights, each
gradient weighted by ``exp(-0.5 |dI|)`` of the image gradient of the same order and direction."""
from __future__ import annotations

from torch import Tensor

from depth.train.losses import smoothness_first_order, smoothness_second_order
from depth.train.recipes import LossRecipe, register_recipe


@register_recipe("dabnet")
class Dabnet(LossRecipe):
    finest_only = True
    charbonnier = True

    def smoothness(self, disp: Tensor, target: Tensor, scale: int, weight: float) -> Tensor:
        # smooth1 + smooth2 with equal weights; 0.5 is the edge coefficient, not a term weight
        return weight * (smoothness_first_order(disp, target, 0.5) + smoothness_second_order(disp, target, 0.5))
