"""What feeds a GPU, checked on the CPU: the loss traces into one graph for ``train.compile``, its
tie-break noise drawn outside equals the generator's, ``train.compile`` compiles the networks in
place, ``train.num_workers=auto``, and worker batches built in shared memory."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from common.errors import ConfigError
from data.samples import FrameSample, collate
from depth.config import load_config
from depth.train import loader as loader_module
from depth.train.losses import self_supervised_loss, tie_break_noise
from depth.train.trainer import Trainer
from tests.helpers import SMALL_NETS

ROOT = Path(__file__).resolve().parents[1]
B, H, W = 2, 32, 96


def _inputs():
    torch.manual_seed(0)
    disp = [torch.rand(B, 1, H // 2 ** s, W // 2 ** s) * 0.5 + 0.1 for s in range(4)]
    target = torch.rand(B, 3, H, W)
    sources = [torch.rand(B, 3, H, W) for _ in range(2)]
    K = torch.tensor([[0.58 * W, 0, W / 2], [0, 1.92 * H, H / 2], [0, 0, 1]]).expand(B, 3, 3).contiguous()
    T = torch.eye(4).expand(B, 4, 4).clone()
    T[:, 0, 3] = 0.1
    return disp, target, sources, K, [T, T.inverse()]


@pytest.mark.parametrize("recipe,min_rep", [("baseline", True), ("baseline", False), ("dabnet", True)])
def test_tie_noise_drawn_outside_equals_the_generators(recipe, min_rep):
    disp, target, sources, K, poses = _inputs()
    kw = dict(recipe=recipe, min_reprojection_loss=min_rep)
    inside = self_supervised_loss(disp, target, sources, K, poses, noise_generator=torch.Generator().manual_seed(5), **kw)
    noise = tie_break_noise(target, len(sources), len(disp), generator=torch.Generator().manual_seed(5), **kw)
    outside = self_supervised_loss(disp, target, sources, K, poses, tie_noise=noise, **kw)
    assert torch.equal(inside.total, outside.total) and torch.equal(inside.automask, outside.automask)
    # where identity and reprojection tie (sources = the target, no motion), the noise decides
    tied = [target.clone(), target.clone()]
    still = [torch.eye(4).expand(B, 4, 4)] * 2
    masks = [self_supervised_loss(disp, target, tied, K, still, tie_noise=tie_break_noise(
        target, 2, len(disp), generator=torch.Generator().manual_seed(seed), **kw), **kw).automask for seed in (5, 6)]
    assert not torch.equal(masks[0], masks[1])
    assert tie_break_noise(target, 2, 4, automask=False) is None


@pytest.mark.parametrize("recipe", ["baseline", "dabnet"])
def test_the_loss_traces_without_a_graph_break(recipe):
    """``train.compile`` compiles the loss; a graph break would leave parts of it eager."""
    disp, target, sources, K, poses = _inputs()
    noise = tie_break_noise(target, len(sources), len(disp), recipe=recipe, generator=torch.Generator().manual_seed(0))
    torch._dynamo.reset()
    explained = torch._dynamo.explain(self_supervised_loss)(disp, target, sources, K, poses, recipe=recipe,
                                                            tie_noise=noise)
    assert explained.graph_break_count == 0, [str(r.reason)[:200] for r in explained.break_reasons]
    assert explained.graph_count == 1
    # with the generator inside, tracing breaks (why the trainer draws the noise outside)
    torch._dynamo.reset()
    with_gen = torch._dynamo.explain(self_supervised_loss)(disp, target, sources, K, poses, recipe=recipe,
                                                           noise_generator=torch.Generator().manual_seed(0))
    assert with_gen.graph_break_count > 0
    torch._dynamo.reset()


def test_train_compile_compiles_in_place_and_keeps_checkpoint_keys(tmp_path):
    cfg = load_config(ROOT / "configs" / "synthetic.yaml", [
        "train.device=cpu", f"output.dir={tmp_path / 'run'}", "data.synthetic.generate=false", *SMALL_NETS])
    plain = Trainer(cfg, train_set=[None] * 64)
    compiled = Trainer(load_config(ROOT / "configs" / "synthetic.yaml", [
        "train.device=cpu", f"output.dir={tmp_path / 'run2'}", "data.synthetic.generate=false", "train.compile=true",
        *SMALL_NETS]), train_set=[None] * 64)
    for a, b in ((plain.depth_net, compiled.depth_net), (plain.pose_net, compiled.pose_net)):
        assert a._compiled_call_impl is None and b._compiled_call_impl is not None
        assert list(a.state_dict()) == list(b.state_dict())  # no _orig_mod. prefix in checkpoints
    assert plain.objective.loss is self_supervised_loss and compiled.objective.loss is not self_supervised_loss


def test_num_workers_auto_counts_the_cores_of_this_process(monkeypatch):
    monkeypatch.setattr(loader_module.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert loader_module.resolve_num_workers("auto") == 15
    assert loader_module.resolve_num_workers("auto", local_ranks=4) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert loader_module.resolve_num_workers("auto") == 1
    monkeypatch.setattr(loader_module.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert loader_module.resolve_num_workers("auto") == 0
    assert loader_module.resolve_num_workers(3) == 3
    assert load_config(ROOT / "configs" / "synthetic.yaml", ["train.num_workers=auto"]).train.num_workers == "auto"
    assert load_config(ROOT / "configs" / "synthetic.yaml", ["train.num_workers=2"]).train.num_workers == 2
    for bad in ("-1", "many"):
        with pytest.raises(ConfigError, match="train.num_workers"):
            load_config(ROOT / "configs" / "synthetic.yaml", [f"train.num_workers={bad}"])


class _Samples(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        # uint8 frames with channels innermost, as data.frames.frames_to_uint8 makes them
        c = torch.arange(3 * 8 * 8 * 3, dtype=torch.uint8).add(i).view(3, 8, 8, 3).permute(0, 3, 1, 2)
        return FrameSample(color=c, color_aug=c + 1, K=torch.eye(3), index=i, depth_in=c[0] + 2)


def _collate_and_report(samples):
    batch = collate(samples)
    return batch, batch.color.is_shared(), batch.color_aug.is_shared(), batch.K.is_shared()


def test_worker_batches_are_built_in_shared_memory():
    """In a loader worker the batch is stacked straight into shared memory (no second copy when it
    travels to the training process); in the main process it is an ordinary tensor."""
    batch, *shared = next(iter(DataLoader(_Samples(), batch_size=4, num_workers=1, collate_fn=_collate_and_report)))
    assert shared == [True, True, True]
    assert torch.equal(batch.color[:, 0, 0, 0, 0], torch.arange(4, dtype=torch.uint8))
    assert torch.equal(batch.color_aug, batch.color + 1)
    here = collate([_Samples()[i] for i in range(4)])
    assert not here.color.is_shared() and torch.equal(here.color, batch.color)
    # the same memory layout as in the main process (channels innermost): the networks and the loss
    # get the same strides, so training rounds alike with and without workers
    assert batch.color.stride() == here.color.stride() == (576, 192, 1, 24, 3)
    # every rank keeps it, the depth network's (3, H, W) input too
    assert batch.depth_in.stride() == here.depth_in.stride() == (192, 1, 24, 3)
    assert torch.equal(batch.depth_in, batch.color[:, 0] + 2)


def test_disparity_heads_and_attention_run_in_fp32_under_autocast():
    """Under bf16 autocast the sigmoid heads and the DCA attention compute in fp32 (and without
    autocast they are the plain ops)."""
    from depth.networks.cross_attention import _AttentionBranch
    from depth.networks.layers import sigmoid_head
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 1, 3, padding=1)
    x = torch.randn(2, 8, 16, 16) * 4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = sigmoid_head(conv, x)
        plain = torch.sigmoid(conv(x))
    assert y.dtype == torch.float32 and plain.dtype == torch.bfloat16
    ref = torch.sigmoid(conv(x))
    assert (y - ref).abs().max() < 1e-6 < (plain.float() - ref).abs().max()
    assert torch.equal(sigmoid_head(conv, x), ref)
    branch = _AttentionBranch(8, 8, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        o = branch(x, x)
    assert o.dtype == torch.float32
