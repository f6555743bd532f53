"""Preemption: SIGTERM / SIGUSR1 / SIGINT stop ``train.py`` after the current step with a checkpoint
of that step and exit status 0; ``--resume`` then ends at the uninterrupted run's weights."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from depth.config import load_config, to_dict
from depth.io.checkpoint import load_checkpoint, save_checkpoint
from depth.train.preemption import StopRequest
from tests.helpers import SMALL_NETS

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ROOT / "tests" / "train_hooks.py"
STEPS = 12  # 2 steps per epoch on the tiny split (5 samples, batch 2): the stop at step 5 lands mid-epoch


def _args(root: Path, out: Path, steps: int = STEPS, workers: int = 1) -> list[str]:
    return ["--config", str(ROOT / "configs" / "synthetic.yaml"),
            f"data.root={root}", f"data.split={root / 'splits'}", "data.synthetic.generate=false",
            "data.height=64", "data.width=64", "data.val_gt=none", "train.batch_size=2",
            f"train.max_steps={steps}", f"train.num_workers={workers}", "train.progress=false", "train.log_every=1",
            "train.image_every=0", "train.val_every=0", "train.checkpoint_every=1000",
            "train.deterministic=true", "train.device=cpu", "augment.zoom_prob=0.5", *SMALL_NETS,
            f"output.dir={out}"]  # small encoders: what is under test is the stop and the resume, not the size


def _env(**extra):
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)


def _stopped_run(args: list[str], tmp_path: Path, sig: int, at: int, launcher: tuple = (), **env
                 ) -> subprocess.CompletedProcess:
    """Run train.py (hooked: rank 0 waits after step ``at``), send ``sig`` to rank 0's process once it
    waits, return the result."""
    flag = tmp_path / f"paused-{at}"
    proc = subprocess.Popen([sys.executable, *launcher, str(HOOKS), *args], cwd=ROOT, text=True,
                            env=_env(HOOK_PAUSE_AT=str(at), HOOK_FLAG=str(flag), **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        t0 = time.time()
        while not flag.exists():
            if proc.poll() is not None:
                raise AssertionError(f"exited ({proc.returncode}) before step {at}: {proc.stderr.read()[-2000:]}")
            assert time.time() - t0 < 240, "timed out"
            time.sleep(0.02)
        os.kill(int(flag.read_text()), sig)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _run(args: list[str]) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_sigterm_stops_with_a_checkpoint_and_resume_matches_the_uninterrupted_run(tiny_synthetic, tmp_path):
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    _run(_args(tiny_synthetic, full))

    # a second signal (SIGUSR1) arrives while the stop's checkpoint is being written: ignored
    r = _stopped_run(_args(tiny_synthetic, stopped), tmp_path, signal.SIGTERM, at=5, HOOK_SIGNAL_IN_SAVE="SIGUSR1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stopped by SIGTERM after step 5" in r.stdout and "--resume" in r.stdout
    ckpt = load_checkpoint(stopped)
    assert ckpt["step"] == 5 and ckpt["epoch"] == 2 and ckpt["batch_in_epoch"] == 1
    assert [p.name for p in (stopped / "checkpoints").glob("step_*.pt")] == ["step_00000005.pt"]
    assert not list((stopped / "checkpoints").glob(".*.tmp"))
    assert not (stopped / "metrics.json").exists()  # not finished: what a requeue script checks

    r = _run(["--resume", str(stopped)])
    assert "resumed at step 5" in r.stdout and (stopped / "metrics.json").is_file()
    a, b = load_checkpoint(full), load_checkpoint(stopped)
    assert a["step"] == b["step"] == STEPS and a["epoch"] == b["epoch"]
    for net in ("depth_net", "pose_net"):
        for k, v in a[net].items():
            if v.dtype.is_floating_point:
                assert (v - b[net][k]).abs().max() <= 1e-6, (net, k)
            else:
                assert torch.equal(v, b[net][k]), (net, k)
    # the weights moved between the stop and the end: the comparison is not of step-5 weights
    w = next(k for k, v in a["depth_net"].items() if k.startswith("encoder.") and v.dim() == 4)  # the first conv
    assert (ckpt["depth_net"][w] - a["depth_net"][w]).abs().max() > 1e-5


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGUSR1], ids=["SIGINT", "SIGUSR1"])
def test_sigint_and_sigusr1_stop_the_same_way(tiny_synthetic, tmp_path, sig):
    out = tmp_path / "run"
    r = _stopped_run(_args(tiny_synthetic, out, steps=4, workers=0), tmp_path, sig, at=2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"stopped by {signal.Signals(sig).name} after step 2" in r.stdout
    assert load_checkpoint(out)["step"] == 2 and not (out / "metrics.json").exists()


def test_stop_request_records_the_first_signal_and_a_second_ctrl_c_aborts():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGUSR1)  # a second request: ignored
        time.sleep(0.01)
        assert stop.requested and stop.name == "SIGTERM"
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert stop.name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
    assert {s: signal.getsignal(s) for s in before} == before


def test_resume_auto_starts_fresh_then_continues_a_stopped_run(tiny_synthetic, tmp_path):
    full, auto = tmp_path / "full", tmp_path / "auto" / "run"
    steps = 4
    _run(_args(tiny_synthetic, full, steps=steps, workers=0))
    args = _args(tiny_synthetic, auto, steps=steps, workers=0) + ["train.resume=auto"]
    # a nonexistent folder: a new run (step 0), stopped after step 1 (the first epoch is half done)
    r = _stopped_run(args, tmp_path, signal.SIGTERM, at=1)
    assert r.returncode == 0 and "resuming" not in r.stdout and "stopped by SIGTERM after step 1" in r.stdout
    assert load_checkpoint(auto)["step"] == 1
    # the same command again (a requeued job): continues from the newest checkpoint
    r = _run(args)
    assert f"train.resume=auto: resuming from {auto / 'checkpoints'}" in r.stdout and "resumed at step 1" in r.stdout
    a, b = load_checkpoint(full), load_checkpoint(auto)
    assert a["step"] == b["step"] == steps
    for net in ("depth_net", "pose_net"):
        for k, v in a[net].items():
            assert (v.double() - b[net][k].double()).abs().max() <= 1e-6, (net, k)


def test_resume_auto_refuses_another_config(tiny_synthetic, tmp_path):
    out = tmp_path / "run"
    cfg = load_config(ROOT / "configs" / "synthetic.yaml", _args(tiny_synthetic, out)[2:])
    save_checkpoint({"depth_net": {}, "pose_net": {}, "config": to_dict(cfg), "step": 3}, out / "checkpoints", 3)
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), *_args(tiny_synthetic, out), "train.resume=auto",
                        "optim.lr=0.001", "train.num_workers=0"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    line = r.stderr.strip().splitlines()[-1]
    assert "train.resume=auto" in line and "optim.lr: 0.0003 -> 0.001" in line and "num_workers" not in line
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), *_args(tiny_synthetic, tmp_path / "new"),
                        "train.resume=auto", "output.overwrite=true"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "train.resume" in r.stderr and "output.overwrite" in r.stderr


def test_two_processes_stop_after_the_same_step_when_one_is_signalled(tiny_synthetic, tmp_path):
    """Only rank 0 gets SIGTERM, while it waits after step 2: rank 1 has gone on to step 3's
    collective, which carries rank 0's request -- both stop after step 3, with rank 0's checkpoint."""
    out = tmp_path / "ddp"
    args = _args(tiny_synthetic, out, steps=8, workers=0) + ["train.batch_size=4", "data.cache_images=false"]
    r = _stopped_run(args, tmp_path, signal.SIGTERM, at=2,
                     launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "2 process(es) x 2" in r.stdout and "stopped by SIGTERM after step 3" in r.stdout
    ckpt = load_checkpoint(out)
    assert ckpt["step"] == 3 and ckpt["sampler"]["world_size"] == 2 and not (out / "metrics.json").exists()
