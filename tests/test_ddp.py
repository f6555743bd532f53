"""Multi-process training: torchrun + DistributedDataParallel (gloo on CPU) against one process.

Two ranks with a global batch of 4 (2 per rank) must end with the weights of one process that,
at every step, averages the gradients of the same two half-batches (each seeded as its rank) and
takes one Adam step; BatchNorm statistics are per process in both (DDP broadcasts rank 0's
buffers at every forward, so they end as rank 0's: the reference keeps those too).
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

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
STEPS = 2


def _overrides(root: Path, out: Path) -> list[str]:
    return [f"data.root={root}", f"data.split={root / 'splits'}", "data.synthetic.generate=false",
            "data.height=64", "data.width=64", "data.val_gt=none", "data.cache_images=false",
            "train.batch_size=4", f"train.max_steps={STEPS}", "train.num_workers=0", "train.progress=false",
            "train.log_every=1", "train.image_every=0", "train.val_every=0", "train.checkpoint_every=0",
            "train.device=cpu", "augment.zoom_prob=0.5", "model.dca=true", f"output.dir={out}"]


def test_two_process_gloo_equals_one_process_averaging_half_batches(tiny_synthetic, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "synthetic.yaml"),
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

    for name in ("depth_net", "pose_net"):
        ref = getattr(trainer, name).state_dict()
        assert set(ref) == set(ddp[name])
        for k, v in ref.items():
            if v.dtype.is_floating_point:
                diff = (v - ddp[name][k]).abs().max()
                assert torch.allclose(v, ddp[name][k], rtol=0, atol=1e-5), (name, k, diff)
            else:
                assert torch.equal(v, ddp[name][k]), (name, k)
    # and the run really moved the weights (the comparison is not between two initialisations)
    fresh = Trainer(cfg, train_set, world_size=1, rank=0)
    w0 = fresh.depth_net.state_dict()["encoder.conv1.weight"]
    assert (w0 - ddp["depth_net"]["encoder.conv1.weight"]).abs().max() > 1e-5


def test_global_batch_must_divide_by_world_size(tiny_synthetic):
    cfg = load_config(ROOT / "configs" / "synthetic.yaml", _overrides(tiny_synthetic, Path("unused"))
                      + ["train.batch_size=3"])
    train_set, _, _ = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
    with pytest.raises(ValueError, match="global batch"):
        Trainer(cfg, train_set, world_size=2, rank=0)
