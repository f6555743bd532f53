"""Run folders are never lost: ``--resume DIR`` continues in DIR (a copied run leaves the original
byte-identical), a new run into a folder holding checkpoints stops before any work (exit 2,
nothing changed) unless ``output.overwrite=true``, and the checkpoint resumed from is named."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from data.datasets import build_training_data
from depth.config import load_config
from depth.io.checkpoint import CheckpointError, find_checkpoint, load_checkpoint, save_checkpoint
from depth.train.run_dir import (
    RunExistsError,
    check_run_dir,
    clear_checkpoints,
    conflicting_checkpoints,
    run_dir_of,
)
from depth.train.trainer import Trainer
from tests.helpers import SMALL_NETS

ROOT = Path(__file__).resolve().parents[1]


def _overrides(data: Path, out: Path, *extra: str) -> list[str]:
    return [f"data.root={data}", f"data.split={data / 'splits'}", "data.synthetic.generate=false",
            "data.height=64", "data.width=64", "data.val_gt=none", "train.batch_size=2", "train.num_workers=0",
            "train.progress=false", "train.image_every=0", "train.val_every=0", "train.checkpoint_every=1",
            "train.keep_checkpoints=2", "train.device=cpu", f"output.dir={out}", *SMALL_NETS, *extra]


def _train_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))


def _snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _step_files(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("step_*.pt"))


@pytest.fixture(scope="module")
def finished_run(tiny_synthetic, tmp_path_factory) -> Path:
    """A finished 2-step run made by train.py (checkpoints at steps 1 and 2)."""
    run = tmp_path_factory.mktemp("runs") / "a"
    r = _train_py("--config", str(ROOT / "configs" / "synthetic.yaml"),
                  *_overrides(tiny_synthetic, run, "train.max_steps=2"))
    assert r.returncode == 0, r.stderr[-3000:]
    return run


def test_resume_a_copy_continues_in_the_copy_and_leaves_the_original_identical(finished_run, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(finished_run, copy)
    before = _snapshot(finished_run)
    (copy / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")  # damaged in the copy only
    r = _train_py("--resume", str(copy), "train.max_steps=3")
    assert r.returncode == 0, r.stderr[-3000:]
    assert _snapshot(finished_run) == before  # the original, byte for byte
    # the copy continued: from its newest readable checkpoint, named; the unreadable one is named too
    assert f"resuming from {copy / 'checkpoints' / 'step_00000002.pt'} (step 2) in {copy}" in r.stdout
    assert "skipped an unreadable checkpoint" in r.stderr and str(copy / "checkpoints" / "last.pt") in r.stderr
    assert load_checkpoint(copy)["step"] == 3 and _step_files(copy) == ["step_00000002.pt", "step_00000003.pt"]
    saved = yaml.safe_load((copy / "config.yaml").read_text())
    assert saved["output"]["dir"] == str(copy) and load_checkpoint(copy)["config"]["output"]["dir"] == str(copy)
    # metrics.json's seconds: both sittings (the one that wrote step 2 and this one), not the last only
    before_resume = float(load_checkpoint(copy / "checkpoints" / "step_00000002.pt")["train_seconds"])
    metrics = json.loads((copy / "metrics.json").read_text())
    assert before_resume > 0 and metrics["seconds_this_sitting"] > 0
    assert metrics["seconds"] == pytest.approx(before_resume + metrics["seconds_this_sitting"], abs=0.5)
    assert metrics["seconds"] > metrics["seconds_this_sitting"] + 0.5 * before_resume


def test_resume_of_a_finished_run_trains_nothing_and_says_how_to_continue(finished_run):
    before = _snapshot(finished_run)
    r = _train_py("--resume", str(finished_run))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"the run in {finished_run} is already finished: train.max_steps=2" in r.stdout
    assert f"python train.py --resume {finished_run} train.max_steps=4" in r.stdout
    assert "training " not in r.stdout and "abs_rel" not in r.stdout  # no training, no re-validation
    assert _snapshot(finished_run) == before


def test_resume_of_a_folder_without_checkpoints_names_it_and_the_fresh_run(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = _train_py("--resume", str(empty))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: no checkpoint in {empty} ")
    assert f"python train.py --config PRESET output.dir={empty}" in lines[0]
    assert list(empty.iterdir()) == []


def test_second_run_into_a_finished_folder_exits_2_and_changes_nothing(finished_run, tiny_synthetic):
    before = _snapshot(finished_run)
    r = _train_py("--config", str(ROOT / "configs" / "synthetic.yaml"),
                  *_overrides(tiny_synthetic, finished_run, "train.max_steps=1"))
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: run folder {finished_run} holds the checkpoints")
    assert f"--resume {finished_run}" in lines[0] and f"output.dir={finished_run}-2" in lines[0]
    assert "output.overwrite=true" in lines[0]
    assert "training" not in r.stdout  # stopped before any work
    assert _snapshot(finished_run) == before


def test_overwrite_replaces_the_earlier_run(finished_run, tiny_synthetic, tmp_path):
    run = tmp_path / "a"
    shutil.copytree(finished_run, run)
    r = _train_py("--config", str(ROOT / "configs" / "synthetic.yaml"),
                  *_overrides(tiny_synthetic, run, "train.max_steps=1", "train.seed=5", "output.overwrite=true"))
    assert r.returncode == 0, r.stderr[-3000:]
    # only the new run's checkpoint is left: the earlier, later step 2 would otherwise win on load
    assert _step_files(run) == ["step_00000001.pt"]
    ckpt = load_checkpoint(run)
    assert ckpt["step"] == 1 and ckpt["seed"] == 5


def test_resume_debug_flag_and_missing_folder(tmp_path):
    r = _train_py("--resume", str(tmp_path / "nothing"))
    assert r.returncode == 2 and r.stderr.strip() == f"error: checkpoint not found: {tmp_path / 'nothing'}"
    r = _train_py("--resume", str(tmp_path / "nothing"), "--debug")
    assert r.returncode == 2 and "Traceback" in r.stderr and "checkpoint not found" in r.stderr


# ---------------------------------------------------------------- the pieces, in process


def _fake_run(run: Path, steps: tuple[int, ...]) -> None:
    for s in steps:
        save_checkpoint({"depth_net": {}, "config": {}, "step": s}, run / "checkpoints", s, keep=10)


def test_conflicting_checkpoints_and_clear(tmp_path):
    run = tmp_path / "run"
    assert conflicting_checkpoints(run) == [] and check_run_dir(run) is None  # a new folder is fine
    _fake_run(run, (2, 4, 6))
    (run / "metrics.json").write_text("{}")
    (run / "tensorboard").mkdir()
    names = [p.name for p in conflicting_checkpoints(run)]
    assert names == ["step_00000002.pt", "step_00000004.pt", "step_00000006.pt", "last.pt"]
    assert [p.name for p in conflicting_checkpoints(run, start_step=4)] == ["step_00000006.pt"]
    assert conflicting_checkpoints(run, start_step=6) == []
    with pytest.raises(RunExistsError, match="holds checkpoints later than step 2"):
        check_run_dir(run, start_step=2)
    check_run_dir(run, start_step=2, overwrite=True)
    clear_checkpoints(run, start_step=4)  # a resume at 4 drops the other continuation's step 6 only
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt", "step_00000002.pt",
                                                                       "step_00000004.pt"]
    assert (run / "metrics.json").is_file()
    clear_checkpoints(run)  # a new run: everything of the earlier one
    assert list((run / "checkpoints").iterdir()) == [] and not (run / "metrics.json").exists()
    assert not (run / "tensorboard").exists()


def test_run_dir_of_resume_arguments(tmp_path):
    run = tmp_path / "run"
    _fake_run(run, (1,))
    assert run_dir_of(run) == run
    assert run_dir_of(run / "checkpoints") == run
    assert run_dir_of(run / "checkpoints" / "step_00000001.pt") == run
    loose = tmp_path / "model.pt"
    loose.write_bytes(b"")
    assert run_dir_of(loose) == tmp_path


def test_find_checkpoint_names_what_it_read_and_skipped(tmp_path):
    run = tmp_path / "run"
    _fake_run(run, (1, 2))
    found = find_checkpoint(run)
    assert found.path == run / "checkpoints" / "last.pt" and found.state["step"] == 2 and found.skipped == []
    (run / "checkpoints" / "step_00000003.pt").write_bytes(b"truncated")
    found = find_checkpoint(run)
    assert found.state["step"] == 2 and found.path.name == "last.pt"
    assert len(found.skipped) == 1 and "step_00000003.pt could not be read" in found.skipped[0]
    for p in (run / "checkpoints").iterdir():
        p.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        find_checkpoint(run)


def test_trainer_fit_refuses_a_folder_with_checkpoints(tiny_synthetic, tmp_path, one_thread):
    """The guard is in the trainer too (bench scripts and notebooks use it directly)."""
    run = tmp_path / "run"
    _fake_run(run, (7,))
    cfg = load_config(ROOT / "configs" / "synthetic.yaml", _overrides(tiny_synthetic, run, "train.max_steps=1"))
    train_set, _, _ = build_training_data(cfg.data, cfg.augment)
    with pytest.raises(RunExistsError, match="output.overwrite=true"):
        Trainer(cfg, train_set).fit()
    assert [p.name for p in (run / "checkpoints").iterdir()] != [] and not (run / "config.yaml").exists()
    # resumed at step 7 (as load_state does), the run's own checkpoints are no conflict
    trainer = Trainer(cfg, train_set)
    trainer.load_state({**trainer.state_dict(), "step": 7, "epoch": 0, "batch_in_epoch": 0})
    trainer.cfg.train.max_steps = 8
    assert trainer.fit()["steps"] == 8
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=False)["step"] == 8


def test_progress_bar_loss_is_at_most_a_few_steps_old(tiny_synthetic, tmp_path, monkeypatch):
    """With log_every far above the run's length the bar still shows a recent loss: the steps at
    which it was set are never more than PROGRESS_LOSS_EVERY apart (and include the last ones)."""
    import depth.train.run_log as run_log

    shown: list[int] = []

    class RecordingBar(run_log.tqdm):
        def set_postfix(self, *args, **kwargs):
            shown.append(self.n)
            return super().set_postfix(*args, **kwargs)

    monkeypatch.setattr(run_log, "tqdm", RecordingBar)
    cfg = load_config(ROOT / "configs" / "synthetic.yaml",
                      _overrides(tiny_synthetic, tmp_path / "r", "train.max_steps=7", "train.log_every=250",
                                 "train.progress=true", "train.checkpoint_every=0"))
    train_set, _, _ = build_training_data(cfg.data, cfg.augment)
    Trainer(cfg, train_set).fit()
    every = run_log.PROGRESS_LOSS_EVERY
    assert shown and shown[0] == 1 and 7 - shown[-1] < every
    assert max(b - a for a, b in zip(shown, shown[1:])) <= every
