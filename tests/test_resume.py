"""Exact resume: a run killed with SIGKILL and resumed with ``train.py --resume`` ends with the
weights (and optimiser state) of the uninterrupted run, bit for bit on CPU; a kill while a
checkpoint is being written leaves the previous checkpoint loadable."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from depth.io.checkpoint import load_checkpoint, save_checkpoint
from tests.helpers import SMALL_NETS

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4  # 2 steps per epoch on the tiny split (5 samples, batch 2)


def _args(root: Path, out: Path) -> list[str]:
    return [str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "synthetic.yaml"),
            f"data.root={root}", f"data.split={root / 'splits'}", "data.synthetic.generate=false",
            "data.height=64", "data.width=64", "data.val_gt=none", "train.batch_size=2",
            f"train.max_steps={STEPS}", "train.num_workers=1", "train.progress=false", "train.log_every=1",
            "train.image_every=0", "train.val_every=0", "train.checkpoint_every=1",
            "train.keep_checkpoints=1",
            "train.deterministic=true", "train.device=cpu", "augment.zoom_prob=0.5", f"output.dir={out}", *SMALL_NETS]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def _run_and_kill(cmd: list[str], ckpt: Path, timeout: float = 240) -> None:
    """Start ``cmd``; SIGKILL it as soon as ``ckpt`` exists (it must still be running then)."""
    proc = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    t0 = time.time()
    try:
        while not ckpt.exists():
            if proc.poll() is not None:
                err = proc.stderr.read()[-2000:]
                raise AssertionError(f"exited ({proc.returncode}) before {ckpt.name}: {err}")
            if time.time() - t0 > timeout:
                raise AssertionError(f"timed out waiting for {ckpt}")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def _run(cmd: list[str]) -> None:
    r = subprocess.run([sys.executable, *cmd], cwd=ROOT, env=_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def test_sigkill_and_resume_is_bit_exact(tiny_synthetic, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    _run(_args(tiny_synthetic, full))

    # killed right after the first checkpoint: mid-epoch 0 (or a step later, wherever the kill lands)
    _run_and_kill(_args(tiny_synthetic, killed), killed / "checkpoints" / "step_00000001.pt")
    resumed_from = load_checkpoint(killed)["step"]
    assert 1 <= resumed_from < STEPS
    _run([str(ROOT / "train.py"), "--resume", str(killed)])

    a, b = load_checkpoint(full), load_checkpoint(killed)
    assert a["step"] == b["step"] == STEPS and a["epoch"] == b["epoch"]
    for net in ("depth_net", "pose_net"):
        for k, v in a[net].items():
            assert torch.equal(v, b[net][k]), (net, k)
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa[i][k], sb[i][k]), (i, k)
    assert a["scheduler"]["lr"] == b["scheduler"]["lr"] and "scaler" in a and "rng" in a


_WRITER = r"""
import sys, time, torch
sys.path.insert(0, sys.argv[3])
from depth.io.checkpoint import save_checkpoint
d, flag = sys.argv[1], sys.argv[2]
real_save = torch.save
def slow_save(obj, f, *a, **k):
    f.write(b"PK\x03\x04" + b"\0" * 1_000_000)   # half a checkpoint ...
    f.flush()
    open(flag, "w").close()
    time.sleep(60)                              # ... then the kill arrives
torch.save = slow_save
save_checkpoint({"depth_net": {"w": torch.ones(3) * 2}, "config": {}, "step": 2}, d, 2, keep=1)
"""


def test_kill_during_checkpoint_write_keeps_previous(tmp_path):
    d = tmp_path / "run" / "checkpoints"
    save_checkpoint({"depth_net": {"w": torch.ones(3)}, "config": {}, "step": 1}, d, 1, keep=1)
    flag = tmp_path / "writing"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(d), str(flag), str(ROOT)], cwd=ROOT)
    try:
        t0 = time.time()
        while not flag.exists():
            assert proc.poll() is None and time.time() - t0 < 60
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(d.glob(".*.tmp"))  # the half-written temp file is there ...
    ckpt = load_checkpoint(tmp_path / "run")  # ... and the previous checkpoint still loads
    assert ckpt["step"] == 1 and torch.equal(ckpt["depth_net"]["w"], torch.ones(3))
    # the next save cleans the debris up
    save_checkpoint({"depth_net": {"w": torch.ones(3) * 3}, "config": {}, "step": 3}, d, 3, keep=1)
    assert not list(d.glob(".*.tmp")) and load_checkpoint(d)["step"] == 3


def test_newer_step_file_than_last_is_preferred(tmp_path):
    """Killed between writing step_N.pt and relinking last.pt: the run folder resolves to step N."""
    d = tmp_path / "checkpoints"
    save_checkpoint({"depth_net": {}, "config": {}, "step": 1}, d, 1, keep=3)
    torch.save({"depth_net": {}, "config": {}, "step": 2}, d / "step_00000002.pt")
    assert load_checkpoint(tmp_path)["step"] == 2
    (d / "step_00000002.pt").write_bytes(b"garbage")  # unreadable newest: fall back to last.pt
    assert load_checkpoint(tmp_path)["step"] == 1
