"""Stereo-only training (Monodepth2's S mode: data.frame_ids=[0], data.stereo=true) builds no pose
net: its checkpoints store ``pose_net: None``, it trains under DistributedDataParallel (an unused
pose net there would stop the second step: DDP expects every parameter's gradient), resumes, and
loads for predict and export."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from depth.config import load_config
from depth.io.checkpoint import load_checkpoint
from depth.model import build_networks, load_model

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
STEREO = ROOT / "configs" / "synthetic_stereo.yaml"


def _overrides(root: Path, out: Path, steps: int) -> list[str]:
    return [f"data.root={root}", f"data.split={root / 'splits'}", "data.synthetic.generate=false",
            "data.frame_ids=[0]", "data.height=64", "data.width=64", "data.val_gt=none", "data.cache_images=false",
            "train.batch_size=4", f"train.max_steps={steps}", "train.num_workers=0", "train.progress=false",
            "train.image_every=0", "train.val_every=0", "train.checkpoint_every=0", "train.device=cpu",
            "model.pretrained=false", f"output.dir={out}"]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def test_stereo_only_builds_no_pose_net(tiny_synthetic, tmp_path):
    cfg = load_config(STEREO, _overrides(tiny_synthetic, tmp_path, 1))
    assert build_networks(cfg).pose_net is None
    mono = load_config(STEREO, _overrides(tiny_synthetic, tmp_path, 1) + ["data.frame_ids=[0,-1,1]"])
    assert build_networks(mono).pose_net is not None


def test_stereo_only_trains_under_ddp_resumes_and_loads(tiny_synthetic, tmp_path):
    out = tmp_path / "s"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(ROOT / "train.py"), "--config", str(STEREO), *_overrides(tiny_synthetic, out, 2)],
                       capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 process(es) x 2" in r.stdout
    ckpt = load_checkpoint(out)
    assert ckpt["step"] == 2 and ckpt["pose_net"] is None and ckpt["sampler"]["world_size"] == 2
    n_depth = len([k for k, v in ckpt["depth_net"].items() if v.dtype.is_floating_point and "running" not in k
                   and "num_batches" not in k])
    assert len(ckpt["optimizer"]["state"]) == n_depth  # Adam holds the depth net's parameters alone

    # resumed (one process) to step 3
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--resume", str(out), "train.max_steps=3"],
                       capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = load_checkpoint(out)
    assert resumed["step"] == 3 and resumed["pose_net"] is None

    nets, cfg = load_model(out)
    assert nets.pose_net is None and cfg.data.frame_ids == [0]

    from depth.predict import main as predict
    frame = sorted((tiny_synthetic).rglob("image_02/data/*.png"))[0]
    assert predict(["--checkpoint", str(out), str(frame), "--out", str(tmp_path / "pred"), "--quiet"]) == 0
    saved = sorted((tmp_path / "pred").rglob("*.npy"))
    assert saved and np.isfinite(np.load(saved[0])).all()

    pytest.importorskip("onnxruntime")
    from depth.export import main as export
    assert export(["--checkpoint", str(out), "--output", str(tmp_path / "s.onnx")]) == 0
    assert (tmp_path / "s.onnx").stat().st_size > 0
