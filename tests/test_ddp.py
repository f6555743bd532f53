"""Multi-process training: torchrun + DistributedDataParallel (gloo on CPU) against one process.

Two ranks with a global batch of 4 (2 per rank) must end with the weights of one process that,
at every step, averages the gradients of the same two half-batches (each seeded as its rank) and
takes one optimiser step; BatchNorm statistics are per process in both (DDP broadcasts rank 0's
buffers at every forward, so they end as rank 0's: the reference keeps those too). Both sides use
plain SGD (``tests.helpers.use_sgd``; in the torchrun processes through ``tests/train_hooks.py``,
``HOOK_OPTIMIZER=sgd``): Adam's update is invariant to a constant
gradient scale, so under Adam a run that summed the ranks' gradients instead of averaging them
would end at the same weights; under SGD it moves them twice as far.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data.datasets import build_training_data
from data.samples import collate
from depth.config import load_config
from depth.io.checkpoint import load_checkpoint
from depth.train.sampling import ResumableSampler
from depth.train.trainer import Trainer
from tests.helpers import use_sgd

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
STEPS = 2


def _overrides(root: Path, out: Path) -> list[str]:
    return [f"data.root={root}", f"data.split={root / 'splits'}", "data.synthetic.generate=false",
            "data.height=64", "data.width=64", "data.val_gt=none", "data.cache_images=false",
            "train.batch_size=4", f"train.max_steps={STEPS}", "train.num_workers=0", "train.progress=false",
            "train.log_every=1", "train.image_every=0", "train.val_every=0", "train.checkpoint_every=0",
            "train.device=cpu", "augment.zoom_prob=0.5", "model.dca=true", f"output.dir={out}",
            # an lr for plain SGD (the comparison's optimiser): updates far above float32 rounding
            "optim.lr=0.5", "optim.warmup_steps=0"]


def test_two_process_gloo_equals_one_process_averaging_half_batches(tiny_synthetic, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), HOOK_OPTIMIZER="sgd")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(ROOT / "tests" / "train_hooks.py"), "--config", str(ROOT / "configs" / "synthetic.yaml"),
                        *_overrides(tiny_synthetic, out)],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # rank 0 alone reports and writes checkpoints
    assert r.stdout.count("training ") == 1 and "global batch 4 = 2 process(es) x 2" in r.stdout
    ddp = load_checkpoint(out)
    assert ddp["step"] == STEPS and ddp["sampler"]["world_size"] == 2

    # the single-process reference on the same half-batches
    cfg = load_config(ROOT / "configs" / "synthetic.yaml", _overrides(tiny_synthetic, tmp_path / "ref"))
    train_set, _, _ = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
    trainer = Trainer(cfg, train_set, world_size=1, rank=0)
    w0 = {name: {k: v.clone() for k, v in getattr(trainer, name).state_dict().items()}
          for name in ("depth_net", "pose_net")}
    use_sgd(trainer)
    shards = [ResumableSampler(len(train_set), cfg.train.seed, True, r, 2) for r in range(2)]
    per_rank = 2
    steps_per_epoch = shards[0].per_rank // per_rank
    for step in range(STEPS):
        epoch, b = divmod(step, steps_per_epoch)
        train_set.set_epoch(epoch)
        halves = [collate([train_set[i] for i in s.epoch_order(epoch)[b * per_rank:(b + 1) * per_rank]])
                  for s in shards]
        trainer.step_count, trainer.epoch = step, epoch
        trainer.train_step_emulated(halves)

    params = {name: {k for k, _ in getattr(trainer, name).named_parameters()} for name in ("depth_net", "pose_net")}
    moved = []
    for name in ("depth_net", "pose_net"):
        ref = getattr(trainer, name).state_dict()
        assert set(ref) == set(ddp[name])
        for k, v in ref.items():
            if k in params[name]:  # a weight: compare the updates, which SGD makes proportional to the gradient
                d_ref, d_ddp = v - w0[name][k], ddp[name][k] - w0[name][k]
                scale = float(d_ref.abs().max())
                assert torch.allclose(d_ddp, d_ref, rtol=0, atol=1e-3 * scale + 1e-7), \
                    (name, k, float((d_ddp - d_ref).abs().max()), scale)
                moved.append(scale)
            elif v.dtype.is_floating_point:  # BatchNorm statistics
                assert torch.allclose(v, ddp[name][k], rtol=0, atol=1e-5), (name, k)
            else:
                assert torch.equal(v, ddp[name][k]), (name, k)
    # the runs really moved the weights: a summed gradient would be off by the update itself,
    # 1000x the tolerance above
    assert sorted(moved)[len(moved) // 2] > 1e-6 and max(moved) > 1e-3


def test_global_batch_must_divide_by_world_size(tiny_synthetic):
    cfg = load_config(ROOT / "configs" / "synthetic.yaml", _overrides(tiny_synthetic, Path("unused"))
                      + ["train.batch_size=3"])
    train_set, _, _ = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
    with pytest.raises(ValueError, match="global batch"):
        Trainer(cfg, train_set, world_size=2, rank=0)
