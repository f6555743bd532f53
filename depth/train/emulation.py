"""The reference that multi-process runs are tested against: one optimiser step over several
micro-batches in one process, computed as ``DistributedDataParallel`` with one micro-batch per rank
computes it."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from data.samples import FrameBatch
from depth.train.losses import LossTerms
from depth.train.randomness import step_seed

if TYPE_CHECKING:
    from depth.train.trainer import Trainer

__all__ = ["emulated_ddp_step"]


def emulated_ddp_step(tr: Trainer, batches: list[FrameBatch]) -> list[LossTerms]:
    """One optimiser step of ``tr`` over ``len(batches)`` micro-batches: micro-batch ``r`` is seeded
    as rank ``r`` (dropout, zoom draws, auto-mask noise), the gradients are averaged, and BatchNorm
    running statistics end as rank 0's (DDP broadcasts rank 0's buffers at every forward). Not used
    by :meth:`Trainer.fit`."""
    n = len(batches)
    tr.begin_step()
    tr.optimizer.zero_grad(set_to_none=True)
    grads: list[Tensor | None] = [None] * len(tr.params)
    buffers = [b for m in tr.modules for b in m.buffers()]
    saved = None
    out = []
    for r, batch in enumerate(batches):
        torch.manual_seed(step_seed(tr.cfg.train.seed, tr.step_count, r))
        terms, _ = tr.compute_loss(batch, tr.step_count, rank=r, model=tr.nets)
        if r == 0:
            saved = [b.detach().clone() for b in buffers]
        terms.total.backward()
        for j, p in enumerate(tr.params):
            if p.grad is not None:
                grads[j] = p.grad / n if grads[j] is None else grads[j] + p.grad / n
        tr.optimizer.zero_grad(set_to_none=True)
        out.append(terms)
    with torch.no_grad():
        for b, s in zip(buffers, saved):
            b.copy_(s)
    for g, p in zip(grads, tr.params):
        p.grad = g
    tr.optimizer_step()
    return out
