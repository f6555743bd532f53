"""The project's registries: the names registered in each are the valid values of its config key.

* :data:`DECODERS` (``model.decoder``; ``@register_decoder``): depth decoders, found in the
  modules of ``depth/networks/`` (contract below);
* :data:`RECIPES` (``loss.recipe``; ``@register_recipe``): loss recipes, found in
  ``depth/train/recipes/`` (contract: :class:`depth.train.recipes.LossRecipe`);
* encoders are timm's registry (``model.encoder`` is any ``timm.list_models()`` name; a new one
  registers with timm's ``@register_model``); ablation variants: ``bench/ablation.py``'s
  ``@register_variant``.

This module imports no implementation: the registries import their packages on first lookup.

Decoders
--------

A decoder is an ``nn.Module`` class registered with ``@register_decoder("name")`` in any module of
``depth/networks/`` (a new file there is found without other edits: :class:`common.registry.Registry`).
Its contract with :class:`depth.networks.depth_net.DepthNet`:

* ``__init__(num_ch_enc, scales, *, dca, dca_dropout)``: the encoder maps' channels (finest first,
  strides 2 .. 32), the scales ``model.scales`` asks for, DCA on/off and its dropout;
* ``scales``: the scales it outputs (finest first; scale s at 1/2^s of the input);
* ``forward(features, out_size) -> list[Tensor]``: sigmoid disparities, one per scale, finest first;
* ``disparity_heads()`` and ``init_disparity(sigmoid)`` (the heads' biases: ``model.init_disparity``);
* class attributes: ``input_multiple`` (the input is replicate-padded at the bottom and right to a
  multiple of it and the outputs cropped back; 1 = none) and ``hrnet_features`` (on an HRNet
  encoder: the concatenated per-resolution features and raw [0, 1] RGB input, as the DaB-Net
  authors feed their decoder).

docs/extending.md walks through adding one.
"""
from __future__ import annotations

from common.registry import Registry

__all__ = ["DECODERS", "register_decoder", "RECIPES", "register_recipe"]

DECODERS: Registry = Registry("model.decoder", "decoder", discover="depth.networks")
register_decoder = DECODERS.register
RECIPES: Registry = Registry("loss.recipe", "loss recipe", discover="depth.train.recipes")
register_recipe = RECIPES.register
