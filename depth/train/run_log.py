"""What a run shows while it trains: TensorBoard scalars and images in ``run_dir/tensorboard`` and
the progress bar (rank 0 only; every method is a no-op elsewhere)."""
from __future__ import annotations

import sys
from pathlib import Path

from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from data.samples import FrameBatch
from depth.train.losses import LossTerms
from depth.visualize import colorize_disparity

__all__ = ["RunLog", "PROGRESS_LOSS_EVERY"]

PROGRESS_LOSS_EVERY = 5  # steps between updates of the progress bar's loss (each is one host sync)


class RunLog:
    """TensorBoard and the progress bar of one run. ``enabled``: this process logs (rank 0);
    ``progress``: show the bar; ``log_every``: steps between loss scalars (the bar's loss is at most
    :data:`PROGRESS_LOSS_EVERY` steps old); ``image_every``: steps between images (0: none)."""

    def __init__(self, enabled: bool, progress: bool, log_every: int, image_every: int):
        self.enabled, self.log_every, self.image_every = enabled, log_every, image_every
        self.show_bar = enabled and progress
        self.bar_every = min(log_every, PROGRESS_LOSS_EVERY) if self.show_bar else 0
        self.writer: SummaryWriter | None = None
        self.bar: tqdm | None = None
        self.last_images: tuple[FrameBatch, Tensor] | None = None  # the last step's target and disparity

    def open(self, run_dir: Path, total: int, initial: int) -> None:
        """Start TensorBoard in ``run_dir`` and the bar at step ``initial`` of ``total``."""
        if self.enabled:
            self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        self.bar = tqdm(total=total, initial=initial, disable=not self.show_bar, dynamic_ncols=True,
                        desc="train", file=sys.stdout)

    def wants_images(self) -> bool:
        return bool(self.image_every) and self.enabled

    def keep_images(self, batch: FrameBatch, disparity: Tensor) -> None:
        """Remember a step's batch and its scale-0 disparity (detached) for :meth:`images`."""
        self.last_images = (batch, disparity[:1].detach())

    def step(self, step: int, terms: LossTerms | None, lr: float) -> None:
        """After optimiser step ``step``: the bar, the loss scalars, the images when due."""
        if self.bar is not None:
            self.bar.update(1)
        if terms is None or not self.enabled:
            return
        if self.writer is not None and (step % self.log_every == 0 or step == 1):
            self.writer.add_scalar("loss/total", terms.total.item(), step)
            self.writer.add_scalar("loss/photometric", terms.photometric.item(), step)
            self.writer.add_scalar("loss/smoothness", float(terms.smoothness.detach()), step)
            self.writer.add_scalar("loss/automask_kept", terms.automask.mean().item(), step)
            self.writer.add_scalar("lr", lr, step)
        if self.bar_every and (step % self.bar_every == 0 or step == 1):
            self.bar.set_postfix(loss=f"{terms.total.item():.4f}", refresh=False)
        if self.image_every and step % self.image_every == 0:
            self.images(step)

    def images(self, step: int) -> None:
        if self.writer is None or self.last_images is None:
            return
        batch, disparity = self.last_images
        self.writer.add_image("input/target", batch.head(1).network_images("cpu")[1][0, 0], step)
        self.writer.add_image("disparity/scale0", colorize_disparity(disparity[0]), step)

    def validation(self, metrics: dict, step: int) -> None:
        if metrics and self.writer is not None:
            for k, v in metrics.items():
                self.writer.add_scalar(f"val/{k}", v, step)
            if self.image_every:
                self.images(step)

    def scalar(self, name: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(name, value, step)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def close(self) -> None:
        self.close_bar()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None
