"""``torchrun --max-restarts 1 ... train.resume=auto``: a worker killed with SIGKILL after the first
checkpoint; torchrun restarts both, they continue from that checkpoint, and the run ends at the
weights of an uninterrupted two-process run (train.deterministic=true)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _args(root: Path, out: Path) -> list[str]:
    return ["train.py", "--config", "configs/synthetic.yaml", f"data.root={root}", f"data.split={root / 'splits'}",
            "data.synthetic.generate=false", "data.height=64", "data.width=64", "data.cache_images=false",
            "data.val_gt=none", "train.batch_size=2", "train.max_steps=12", "train.num_workers=0",
            "train.deterministic=true", "train.device=cpu", "train.checkpoint_every=4", "train.image_every=0",
            "train.val_every=0", "train.progress=false", "train.log_every=4", f"output.dir={out}"]


def _torchrun(*extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *extra]


@pytest.mark.slow
def test_killed_worker_is_restarted_and_the_run_resumes_to_the_uninterrupted_weights(tiny_synthetic, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref = subprocess.run(_torchrun() + _args(tiny_synthetic, tmp_path / "ref"), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    out = tmp_path / "killed"
    log = open(tmp_path / "killed.log", "w")
    agent = subprocess.Popen(_torchrun("--max-restarts", "1") + _args(tiny_synthetic, out) + ["train.resume=auto"],
                             cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        t0 = time.time()
        while not (out / "checkpoints" / "step_00000004.pt").is_file():
            assert agent.poll() is None and time.time() - t0 < 300, "no checkpoint at step 4"
            time.sleep(0.2)
        workers = subprocess.run(["pgrep", "-P", str(agent.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) == 2, workers
        os.kill(int(workers[-1]), 9)
        assert agent.wait(timeout=600) == 0, (tmp_path / "killed.log").read_text()[-3000:]
    finally:
        if agent.poll() is None:
            agent.kill()
        log.close()
    text = (tmp_path / "killed.log").read_text()
    assert "train.resume=auto: resuming from" in text and "resumed at step" in text
    a = torch.load(tmp_path / "ref" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 12
    for net in ("depth_net", "pose_net"):
        for k, v in a[net].items():
            torch.testing.assert_close(b[net][k], v, rtol=0, atol=1e-6, msg=f"{net}.{k}")
