"""Collectives run on their process group's device (CUDA for NCCL, CPU for gloo) and only through
``depth.train.distributed.all_reduce_``.

No NCCL here: a gloo group of one process, the trainer told that its collective device is the
lazy device (another device than the CPU its counters live on), and ``torch.distributed.all_reduce``
replaced by one that rejects any tensor not on that device -- the CPU tensor an NCCL group refuses.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from data.datasets import build_training_data
from depth.config import load_config
from depth.train import distributed as collectives
from depth.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def lazy_device() -> torch.device:
    """The lazy (TorchScript) device: a second device on a CPU-only machine (initialised once)."""
    try:
        import torch._lazy
        import torch._lazy.ts_backend
        torch._lazy.ts_backend.init()
        torch.zeros(1).to("lazy").cpu()
    except Exception as e:  # pragma: no cover - depends on the torch build
        pytest.skip(f"no lazy device in this torch ({type(e).__name__}: {e})")
    return torch.device("lazy", 0)


@pytest.fixture
def gloo_group(tmp_path):
    """A default process group of one process (gloo, a file store)."""
    assert not dist.is_initialized()
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


class _StrictAllReduce:
    """``torch.distributed.all_reduce`` that accepts tensors on ``device`` only (recording them),
    then reduces a CPU copy with gloo and writes the result back."""

    def __init__(self, device: torch.device, real):
        self.device, self.real, self.calls = device, real, []

    def __call__(self, tensor, op=dist.ReduceOp.SUM, group=None, async_op=False):
        if tensor.device != self.device:
            raise RuntimeError(f"collective got a tensor on {tensor.device}; the group reduces {self.device} only")
        self.calls.append((tensor.device, op, tensor.cpu().tolist()))
        cpu = tensor.cpu()
        self.real(cpu, op=op, group=group)
        tensor.copy_(cpu.to(tensor.device))


def test_collective_device_of_gloo_is_cpu(gloo_group):
    assert collectives.collective_device() == torch.device("cpu")
    t = torch.tensor([3, 4])
    assert collectives.all_reduce_(t) is t and t.tolist() == [3, 4]


def test_all_reduce_moves_the_tensor_to_the_device_and_back(gloo_group, lazy_device, monkeypatch):
    strict = _StrictAllReduce(lazy_device, dist.all_reduce)
    monkeypatch.setattr(dist, "all_reduce", strict)
    t = torch.tensor([5, 7], dtype=torch.int64)
    out = collectives.all_reduce_(t, dist.ReduceOp.MAX, device=lazy_device)
    assert out is t and t.device.type == "cpu" and t.tolist() == [5, 7]
    assert strict.calls == [(lazy_device, dist.ReduceOp.MAX, [5, 7])]
    with pytest.raises(RuntimeError, match="collective got a tensor on cpu"):
        collectives.all_reduce_(t, device="cpu")  # the strict fake really rejects other devices


def test_training_across_an_epoch_sends_collectives_to_the_group_device(tiny_synthetic, tmp_path, gloo_group,
                                                                        lazy_device, monkeypatch):
    steps = 3  # 2 steps per epoch (5 samples, batch 2): the end of epoch 0 and the end of fit
    cfg = load_config(ROOT / "configs" / "synthetic.yaml", [
        f"data.root={tiny_synthetic}", f"data.split={tiny_synthetic / 'splits'}", "data.synthetic.generate=false",
        "data.height=64", "data.width=64", "data.val_gt=none", "train.batch_size=2", f"train.max_steps={steps}",
        "train.num_workers=0", "train.progress=false", "train.image_every=0", "train.val_every=0",
        "train.checkpoint_every=100", "train.device=cpu", f"output.dir={tmp_path / 'run'}"])
    train_set, _, _ = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
    trainer = Trainer(cfg, train_set)
    assert trainer.collective_device == torch.device("cpu")  # what the gloo group reduces
    trainer.where.collective_device = lazy_device  # as if it were an NCCL group: not the counters' CPU
    strict = _StrictAllReduce(lazy_device, dist.all_reduce)
    monkeypatch.setattr(dist, "all_reduce", strict)
    result = trainer.fit()
    assert result["steps"] == steps and result["epochs"] == 1
    assert strict.calls and {c[0] for c in strict.calls} == {lazy_device}
    # one agreement per step (non-finite loss, stop request) and the bad-sample count at the end of
    # epoch 0 and at the end of the run
    per_step = [c for c in strict.calls if c[1] == dist.ReduceOp.MIN]
    counts = [c for c in strict.calls if c[1] == dist.ReduceOp.SUM]
    assert len(per_step) == steps and len(counts) == 2 and all(c[2] == [0] for c in counts)


COLLECTIVE = re.compile(r"\b(?:dist|distributed)\s*\.\s*(all_reduce|all_gather\w*|broadcast\w*|reduce\w*|"
                        r"gather|scatter\w*|all_to_all\w*)\s*\(")


def test_no_collective_outside_the_helper():
    """Every collective goes through depth.train.distributed (which puts tensors on the group's device)."""
    helper = ROOT / "depth" / "train" / "distributed.py"
    offenders = []
    for folder in ("depth", "data", "common", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path != helper:
                offenders += [f"{path.relative_to(ROOT)}:{m.group(0)}" for m in COLLECTIVE.finditer(path.read_text())]
    for path in sorted(ROOT.glob("*.py")):
        offenders += [f"{path.name}:{m.group(0)}" for m in COLLECTIVE.finditer(path.read_text())]
    assert offenders == []
    assert COLLECTIVE.search("torch.distributed.all_reduce(t)") and COLLECTIVE.search("dist.broadcast(x, 0)")
    assert COLLECTIVE.search(helper.read_text())  # the helper itself is the one place
