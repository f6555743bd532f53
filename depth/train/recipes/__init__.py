"""Loss recipes by name: ``loss.recipe``'s valid values are the names registered here.

A recipe is a :class:`LossRecipe` subclass registered with ``@register_recipe("name")`` in a module
of this package (a new file here is found without other edits). :func:`depth.train.losses.self_supervised_loss`
keeps what every recipe shares -- warping each source with each scale's depth, the per-pixel
minimum over sources, auto-masking, the mean over scales -- and asks the recipe for the rest:

* ``finest_only``: supervise the finest output alone (single-scale decoders);
* ``charbonnier``: the photometric L1 as a Charbonnier penalty;
* :meth:`LossRecipe.smoothness`: the smoothness term of one scale;
* :meth:`LossRecipe.extra`: any further term of one scale (default none), added to the total.

docs/extending.md walks through adding a loss term as a recipe in one new file.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from depth.registry import RECIPES, register_recipe

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["LossRecipe", "RECIPES", "register_recipe"]


class LossRecipe:
    """What a recipe decides; subclasses override the class attributes and methods they change."""

    finest_only = False  # supervise disparities[0] alone
    charbonnier = False  # photometric L1 as sqrt(x^2 + eps^2)

    def smoothness(self, disp: Tensor, target: Tensor, scale: int, weight: float) -> Tensor:
        """The smoothness term of ``disp`` (``(B, 1, h, w)`` sigmoid at scale ``scale``) against the
        un-jittered ``target`` frame at full resolution; ``weight`` is ``loss.smoothness_weight``."""
        raise NotImplementedError

    def extra(self, disp: Tensor, depth: Tensor, target: Tensor, scale: int) -> Tensor | None:
        """A further term of scale ``scale`` (``depth``: its full-resolution depth, metres), added to
        the total and averaged over scales like the others; None (the default): no term."""
        return None
