"""The learning rate as a pure function of the optimiser step and the epoch (so a resumed run
needs no scheduler state): step decay at ``optim.step_milestones`` (steps) or, when those are
empty, at ``optim.milestones`` (epochs), times ``optim.gamma`` per milestone passed, after a
linear warm-up from ``warmup_start_factor * lr`` over ``warmup_steps``."""
from __future__ import annotations

__all__ = ["learning_rate"]


def learning_rate(o, step: int, epoch: int) -> float:
    """The lr of optimiser step ``step`` (0-based) in epoch ``epoch`` under ``o`` (``cfg.optim``)."""
    if o.step_milestones:
        lr = o.lr * (o.gamma ** sum(step >= m for m in o.step_milestones))
    else:
        lr = o.lr * (o.gamma ** sum(epoch >= m for m in o.milestones))
    if o.warmup_steps and step < o.warmup_steps:
        f0 = o.warmup_start_factor
        lr *= f0 + (1 - f0) * step / o.warmup_steps
    return lr
