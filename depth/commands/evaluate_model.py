"""``python evaluate.py ... --checkpoint``: the model path. :class:`EvalModel` opens the checkpoint
on the device and makes the predictions that :mod:`depth.commands.evaluate` scores; every check,
metric and output is that module's (evaluate.py runs it alone, without torch, for saved
predictions).
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from common.errors import EvalError
from data.kitti_layout import odometry_frames
from depth.commands import evaluate as scoring
from depth.inference import predict_disparities, predict_for_gt, predict_relative_poses, resolve_device
from depth.model import open_model

__all__ = ["EvalModel", "run"]


class EvalModel:
    """The networks of ``checkpoint`` on ``device`` (``auto | cpu | cuda``); says on stderr which file
    (and step) it read, and any file skipped. Disparities are the scaled disparities of
    :func:`depth.inference.predict_disparities`."""

    def __init__(self, checkpoint: str | Path, device: str = "auto"):
        self.device = resolve_device(device)
        loaded = open_model(checkpoint, map_location="cpu")
        for line in loaded.lines():
            print(line, file=sys.stderr, flush=True)
        self.checkpoint = str(checkpoint)
        self.nets = loaded.nets.to(self.device)
        self.cfg = loaded.cfg

    @property
    def trained_size(self) -> tuple[int, int]:
        """``(width, height)`` the model was trained at."""
        return self.cfg.data.width, self.cfg.data.height

    def input_size(self, width: int | None, height: int | None) -> tuple[int, int]:
        """``(width, height)`` of the network input: ``--width/--height`` where given, else the trained size."""
        trained_w, trained_h = self.trained_size
        return width or trained_w, height or trained_h

    def _depth_kwargs(self) -> dict:
        return dict(min_depth=self.cfg.model.min_depth, max_depth=self.cfg.model.max_depth, device=self.device)

    def disparities(self, images: Iterable[np.ndarray], size: tuple[int, int], **kwargs) -> np.ndarray:
        """``(N, h, w)`` disparities of full-resolution frames (:func:`depth.inference.predict_disparities`)."""
        return predict_disparities(self.nets.depth_net, images, size, **self._depth_kwargs(), **kwargs)

    def disparities_for_gt(self, images: Sequence[np.ndarray], gt, size: tuple[int, int], **kwargs):
        """``(disp, windows, pred_in_window)`` to score against ``gt`` (:func:`depth.inference.predict_for_gt`)."""
        return predict_for_gt(self.nets.depth_net, images, gt, size, **self._depth_kwargs(), **kwargs)

    def relative_poses(self, odometry_path: str | Path, sequence: int, count: int, **kwargs) -> np.ndarray:
        """``(count - 1, 4, 4)`` transforms frame i -> i+1 of an odometry sequence."""
        if self.nets.pose_net is None:
            raise EvalError(f"{self.checkpoint}: the model has no pose network (a Monodepth2 folder needs "
                            f"pose_encoder.pth and pose.pth)")
        return predict_relative_poses(self.nets.pose_net, odometry_frames(odometry_path, sequence, count),
                                      self.trained_size, **kwargs)


def run(args) -> int:
    """:func:`depth.commands.evaluate.run` with the model of ``--checkpoint``."""
    return scoring.run(args, open_model=EvalModel)
