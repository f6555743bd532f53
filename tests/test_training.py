"""Training: a short CPU run on tiny synthetic data lowers the loss; train.py CLI behaviour."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from data.datasets import build_training_data
from data.samples import collate
from depth.config import load_config
from depth.eval.metrics import compute_depth_metrics
from depth.train.trainer import Trainer, ValidationData

ROOT = Path(__file__).resolve().parents[1]


def _cfg(root: Path, out: Path, *extra: str):
    return load_config(ROOT / "configs" / "synthetic.yaml", [
        f"data.root={root}", f"data.split={root / 'splits'}", "data.synthetic.generate=false",
        "train.batch_size=2", "train.num_workers=0", "train.progress=false", f"output.dir={out}",
        "train.log_every=10", "train.image_every=0", "train.val_every=0", "train.checkpoint_every=0", *extra])


def _fixed_batch(train_set, n=4):
    train_set.set_epoch(0)
    return collate([train_set[i] for i in range(n)])


@torch.no_grad()
def _loss_on(trainer: Trainer, batch) -> float:
    torch.manual_seed(0)
    return trainer.compute_loss(batch, step=0)[0].total.item()


@pytest.mark.parametrize("extra", [(), ("model.dca=true", "augment.zoom_prob=0.5", "loss.recipe=dabnet")],
                         ids=["baseline", "dca_zoom_dabnet"])
def test_short_training_lowers_loss(tiny_synthetic, tmp_path, extra):
    # Monodepth2's initialisation and no warm-up: over 30 steps at batch 2 the preset's scratch
    # initialisation (pose translation x0.5) had not yet lowered the fixed-batch loss at step 30 (0.146 -> 0.153)
    # one checkpoint, at the end (each is 322 MB with ResNet-18 encoders: the suite's temporary space)
    cfg = _cfg(tiny_synthetic, tmp_path / "run", "train.max_steps=30", "optim.lr=3e-4", "optim.warmup_steps=0",
               "train.checkpoint_every=30", "train.keep_checkpoints=1",
               "model.init_depth=0", "model.pose_translation_scale=0.01",
               "augment.color_jitter_prob=0", "augment.flip_prob=0", *extra)
    train_set, val_images, val_gt = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
    trainer = Trainer(cfg, train_set, ValidationData(val_images, val_gt))
    batch = _fixed_batch(train_set)
    before = _loss_on(trainer, batch)
    result = trainer.fit()
    after = _loss_on(trainer, batch)
    assert after < 0.9 * before, (before, after)
    assert result["steps"] == 30
    # validation ran on the split's val frames (never its test drive) with the Eigen metrics; 30 steps
    # on 14 samples do not yet beat the constant prediction there (0.469 vs 0.467, measured): that is
    # test_default_recipe_beats_the_constant_prediction's (slow) job
    assert result["n_images"] == len(val_gt) > 0 and np.isfinite(result["abs_rel"])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["step"] == 30 and set(ckpt["depth_net"]) == set(trainer.depth_net.state_dict())
    assert ckpt["config"]["model"]["dca"] == ("model.dca=true" in extra)
    assert "torch" in ckpt["versions"] and ckpt["seed"] == cfg.train.seed
    assert (tmp_path / "run" / "config.yaml").is_file()


def _run_train(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_cli_unknown_key_says_did_you_mean():
    r = _run_train("--config", str(ROOT / "configs" / "synthetic.yaml"), "train.batchsize=4")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0] == "error: command line: unknown config key 'train.batchsize' (did you mean train.batch_size?)"
    assert lines[1].startswith("  keys of section train: ") and "train.max_steps" in lines[1]
    assert len(lines) == 2 and "data.root" not in r.stderr


def test_cli_bad_value_stops_before_work(tmp_path):
    r = _run_train("--config", str(ROOT / "configs" / "synthetic.yaml"), "optim.lr=-1",
                   f"output.dir={tmp_path / 'run'}")
    assert r.returncode == 2 and "optim.lr" in r.stderr
    assert not (tmp_path / "run").exists()


def test_cli_without_kitti_explains(tmp_path):
    # (without model.pretrained=false the missing ImageNet weights would be reported first)
    r = _run_train(f"data.root={tmp_path / 'nothing'}", f"output.dir={tmp_path / 'run'}", "model.pretrained=false")
    assert r.returncode == 2
    assert "No KITTI raw data found" in r.stderr and "configs/synthetic.yaml" in r.stderr


def test_cli_trains_and_resumes(tiny_synthetic, tmp_path):
    common = [f"data.root={tiny_synthetic}", f"data.split={tiny_synthetic / 'splits'}",
              "data.synthetic.generate=false", "train.batch_size=2", "train.progress=false",
              f"output.dir={tmp_path / 'run'}", "train.val_every=0", "train.image_every=0"]
    r = _run_train("--config", str(ROOT / "configs" / "synthetic.yaml"), *common, "train.max_steps=2")
    assert r.returncode == 0, r.stderr[-2000:]
    r = _run_train("--resume", str(tmp_path / "run"), "train.max_steps=4")
    assert r.returncode == 0, r.stderr[-2000:]
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)["step"] == 4


@pytest.mark.slow
def test_default_recipe_beats_the_constant_prediction(tmp_path_factory):
    """The README's main job, shortened: the synthetic preset on the full default street for
    STEPS_TO_LEARN steps must beat, on the held-out drive, the constant prediction under the same
    protocol (median scaling makes a constant the mean-depth prior) -- a trainer whose warp, pose
    convention or loss is broken stays at the prior."""
    from data.synthetic import generate

    root = generate(tmp_path_factory.mktemp("street"), seed=0)
    cfg = load_config(ROOT / "configs" / "synthetic.yaml", [
        f"data.root={root}", f"data.split={root / 'splits'}", "data.synthetic.generate=false",
        f"train.max_steps={STEPS_TO_LEARN}", "train.progress=false", "train.image_every=0", "train.val_every=0",
        "train.checkpoint_every=0", f"output.dir={tmp_path_factory.mktemp('run')}"])
    train_set, val_images, val_gt = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
    result = Trainer(cfg, train_set, ValidationData(val_images, val_gt)).fit()
    constant = compute_depth_metrics(np.ones((len(val_gt), cfg.data.height, cfg.data.width), np.float32), val_gt)
    print(f"abs rel after {STEPS_TO_LEARN} steps {result['abs_rel']:.4f}, constant {constant['abs_rel']:.4f}")
    assert result["abs_rel"] < 0.85 * constant["abs_rel"], (result["abs_rel"], constant["abs_rel"])


STEPS_TO_LEARN = 300
