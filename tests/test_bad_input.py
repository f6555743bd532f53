"""Bad input stops early and clearly (or is skipped and counted where a policy asks for it):
missing split files, corrupt images mid-epoch, truncated velodyne scans, calibration without a
key, non-finite losses, out-of-range config values."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.errors import DataError
from data.datasets import build_training_data
from data.frames import BadSampleError
from data.velodyne import load_velodyne_points
from depth.config import ConfigError, load_config
from depth.io.checkpoint import load_checkpoint
from depth.train.trainer import NonFiniteLossError, Trainer
from tests.helpers import SMALL_NETS
from depth.commands.train import skipped_errors

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
DRIVE = "2030_01_01/2030_01_01_drive_0001_sync"


def _clone(src: Path, dst: Path, copy: tuple[str, ...] = ()) -> Path:
    """A symlink copy of a dataset; the files under ``copy`` (relative paths) are real copies
    (so a test can damage them)."""
    for p in src.rglob("*"):
        if p.is_file():
            q = dst / p.relative_to(src)
            q.parent.mkdir(parents=True, exist_ok=True)
            if str(p.relative_to(src)) in copy:
                shutil.copyfile(p, q)
            else:
                os.symlink(p, q)
    return dst


def _overrides(root: Path, out: Path, *extra: str) -> list[str]:
    return [f"data.root={root}", f"data.split={root / 'splits'}", "data.synthetic.generate=false",
            "data.height=64", "data.width=64", "data.val_gt=none", "data.cache_images=false",
            "train.batch_size=2", "train.num_workers=0", "train.progress=false", "train.image_every=0",
            "train.val_every=0", "train.checkpoint_every=0", "train.device=cpu", *SMALL_NETS,
            f"output.dir={out}", *extra]  # small encoders: the networks' size is not under test (45 MB checkpoints)


def _cfg(root: Path, out: Path, *extra: str):
    return load_config(ROOT / "configs" / "synthetic.yaml", _overrides(root, out, *extra))


def _train_py(*args: str):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))


# ---------------------------------------------------------------- missing files in the split


def test_missing_files_listed_before_any_work(tiny_synthetic, tmp_path):
    root = _clone(tiny_synthetic, tmp_path / "data")
    lines = (root / "splits" / "train_files.txt").read_text()
    (root / "splits" / "train_files.txt").unlink()
    bogus = "".join(f"{DRIVE} {100 + i} l\n" for i in range(7))
    (root / "splits" / "train_files.txt").write_text(lines + bogus)
    out = tmp_path / "run"
    r = _train_py("--config", str(ROOT / "configs" / "synthetic.yaml"),
                  *_overrides(root, out, "data.check=true"))
    assert r.returncode == 2, r.stderr[-2000:]
    assert "files of the training split are missing" in r.stderr
    # 7 targets + their neighbours 100..107 (frame 99 and 107 of the outer ones): counted, 5 listed
    listed = [line for line in r.stderr.splitlines() if line.strip().startswith(str(root))]
    assert len(listed) == 5 and "0000000100.png" in r.stderr
    n = int(r.stderr.split("error: ")[1].split()[0])
    assert n == len({100 + i + d for i in range(7) for d in (-1, 0, 1)})
    assert not out.exists()


def test_missing_neighbour_found_by_full_check_only(tiny_synthetic, tmp_path):
    root = _clone(tiny_synthetic, tmp_path / "data")
    first = (root / "splits" / "train_files.txt").read_text().split()[:2]
    frame = int(first[1]) + 1
    gone = root / first[0] / "image_02" / "data" / f"{frame:010d}.png"
    gone.unlink()
    cfg = _cfg(root, tmp_path / "run")
    build_training_data(cfg.data, cfg.augment)  # target frames only: passes
    cfg = _cfg(root, tmp_path / "run", "data.check=true")
    with pytest.raises(DataError, match="1 files of the training split") as e:
        build_training_data(cfg.data, cfg.augment)
    assert str(gone) in str(e.value)


# ---------------------------------------------------------------- corrupt image mid-epoch


def _corrupt_neighbour(tiny_synthetic: Path, tmp_path: Path) -> tuple[Path, Path]:
    entries = (tiny_synthetic / "splits" / "train_files.txt").read_text().split("\n")
    folder, frame, _ = entries[0].split()
    rel = f"{folder}/image_02/data/{int(frame) + 1:010d}.png"
    root = _clone(tiny_synthetic, tmp_path / "data", copy=(rel,))
    (root / rel).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)  # a PNG header and nothing else
    return root, root / rel


def test_corrupt_image_mid_epoch_names_the_file(tiny_synthetic, tmp_path):
    root, bad = _corrupt_neighbour(tiny_synthetic, tmp_path)
    cfg = _cfg(root, tmp_path / "run", "train.max_steps=2", "train.num_workers=1")
    train_set, _, _ = build_training_data(cfg.data, cfg.augment)  # the file exists: passes the check
    trainer = Trainer(cfg, train_set)
    with pytest.raises(BadSampleError, match="corrupt or unreadable image") as e:
        trainer.fit()
    assert str(bad) in str(e.value)


def test_corrupt_image_skipped_and_counted(tiny_synthetic, tmp_path, capsys):
    root, bad = _corrupt_neighbour(tiny_synthetic, tmp_path)
    # every sample reading the bad frame (as target or neighbour) is dropped when drawn
    users = {i for i, line in enumerate((root / "splits" / "train_files.txt").read_text().splitlines())
             if abs(int(line.split()[1]) - int(bad.stem)) <= 1}
    cfg = _cfg(root, tmp_path / "run", "train.max_steps=4", "data.on_bad_sample=skip")
    train_set, _, _ = build_training_data(cfg.data, cfg.augment)
    trainer = Trainer(cfg, train_set, skip_errors=skipped_errors(cfg))  # as train.py builds it
    result = trainer.fit()
    assert result["steps"] == 4  # two epochs of 2 steps (5 samples, batch 2, the last one dropped)
    drawn = sum(len(users & set(trainer.sampler.epoch_order(e)[:4].tolist())) for e in range(2))
    assert drawn > 0 and result["bad_samples"] == drawn
    err = capsys.readouterr().err
    assert "epoch 0: skipped" in err and str(bad) in err


# ---------------------------------------------------------------- velodyne and calibration


def test_truncated_velodyne_scan(tiny_synthetic, tmp_path):
    scan = next((tiny_synthetic / DRIVE / "velodyne_points" / "data").glob("*.bin"))
    bad = tmp_path / scan.name
    bad.write_bytes(scan.read_bytes()[:-6])
    with pytest.raises(ValueError, match="truncated") as e:
        load_velodyne_points(bad)
    assert str(bad) in str(e.value)
    assert load_velodyne_points(scan).shape[1] == 4


def test_truncated_velodyne_scan_in_validation_gt(tiny_synthetic, tmp_path):
    test_line = (tiny_synthetic / "splits" / "test_files.txt").read_text().split("\n")[0].split()
    rel = f"{test_line[0]}/velodyne_points/data/{int(test_line[1]):010d}.bin"
    root = _clone(tiny_synthetic, tmp_path / "data", copy=(rel,))
    (root / rel).write_bytes((root / rel).read_bytes()[:-6])
    cfg = _cfg(root, tmp_path / "run", "data.val_gt=velodyne")
    with pytest.raises(ValueError, match="truncated") as e:
        build_training_data(cfg.data, cfg.augment)
    assert rel in str(e.value)


def test_calib_without_key_stops_at_start(tiny_synthetic, tmp_path):
    rel = "2030_01_01/calib_cam_to_cam.txt"
    root = _clone(tiny_synthetic, tmp_path / "data", copy=(rel,))
    text = (root / rel).read_text().splitlines()
    (root / rel).write_text("\n".join(line for line in text if not line.startswith("P_rect_02")) + "\n")
    out = tmp_path / "run"
    r = _train_py("--config", str(ROOT / "configs" / "synthetic.yaml"), *_overrides(root, out))
    assert r.returncode == 2
    assert "P_rect_02" in r.stderr and str(root / rel) in r.stderr
    assert not out.exists()


# ---------------------------------------------------------------- non-finite loss


def _poison(trainer: Trainer, at_step: int) -> None:
    real = trainer.compute_loss

    def compute_loss(batch, step=None, **kw):
        terms, disp = real(batch, step, **kw)
        if step == at_step:
            terms.total = terms.total * float("nan")
        return terms, disp

    trainer.compute_loss = compute_loss


def test_nan_loss_stops_with_step_and_keeps_last_checkpoint(tiny_synthetic, tmp_path):
    cfg = _cfg(tiny_synthetic, tmp_path / "run", "train.max_steps=4", "train.checkpoint_every=2")
    train_set, _, _ = build_training_data(cfg.data, cfg.augment)
    trainer = Trainer(cfg, train_set)
    _poison(trainer, at_step=2)  # the third optimiser step
    with pytest.raises(NonFiniteLossError, match="at step 3") as e:
        trainer.fit()
    assert "last.pt" in str(e.value)
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["step"] == 2
    for k, v in trainer.depth_net.named_parameters():  # the bad step changed no weight
        assert torch.equal(v, ckpt["depth_net"][k]), k


def test_nan_loss_read_one_step_late_stops_before_a_checkpoint_of_its_weights(tiny_synthetic, tmp_path):
    """The CUDA path of ``nan_policy=error`` (LateFiniteCheck, forced on here): the loss of a step is
    read when the next begins, so the bad step has updated the weights -- but the run stops, naming
    that step, before any checkpoint holds them."""
    from depth.train.state import LateFiniteCheck
    cfg = _cfg(tiny_synthetic, tmp_path / "run", "train.max_steps=4", "train.checkpoint_every=3")
    train_set, _, _ = build_training_data(cfg.data, cfg.augment)
    trainer = Trainer(cfg, train_set)
    assert not trainer.late_check.enabled  # the CPU reads every step at once
    trainer.late_check = LateFiniteCheck(True)
    _poison(trainer, at_step=2)  # the third optimiser step; a checkpoint is due after it
    with pytest.raises(NonFiniteLossError, match="at step 3"):
        trainer.fit()
    assert trainer.step_count == 3 and not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_nan_loss_skip_policy_counts(tiny_synthetic, tmp_path):
    cfg = _cfg(tiny_synthetic, tmp_path / "run", "train.max_steps=3", "train.nan_policy=skip")
    train_set, _, _ = build_training_data(cfg.data, cfg.augment)
    trainer = Trainer(cfg, train_set)
    _poison(trainer, at_step=1)
    trainer.compute_loss_real = trainer.compute_loss
    seen = {}

    def spy(batch, step=None, **kw):  # BatchNorm statistics before the poisoned step
        if step == 1:
            seen["before"] = {k: v.clone() for k, v in trainer.depth_net.state_dict().items()}
        if step == 2:
            seen["after"] = {k: v.clone() for k, v in trainer.depth_net.state_dict().items()}
        return trainer.compute_loss_real(batch, step, **kw)

    trainer.compute_loss = spy
    result = trainer.fit()
    for k, v in seen["before"].items():  # the skipped step left weights and statistics as they were
        assert torch.equal(v, seen["after"][k]), k
    assert result["steps"] == 3 and result["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in trainer.depth_net.parameters())
    assert load_checkpoint(tmp_path / "run")["skipped_steps"] == 1


# ---------------------------------------------------------------- config values


@pytest.mark.parametrize("override, key", [("optim.lr=-1e-4", "optim.lr"), ("data.height=100", "data.height"),
                                           ("data.width=650", "data.width"), ("train.batch_size=0",
                                                                               "train.batch_size")])
def test_out_of_range_config_values(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(ROOT / "configs" / "synthetic.yaml", [override])


def test_odd_size_stops_cli_before_work(tmp_path):
    r = _train_py("--config", str(ROOT / "configs" / "synthetic.yaml"), "data.height=100",
                  f"output.dir={tmp_path / 'run'}")
    assert r.returncode == 2 and "data.height" in r.stderr and "multiple of 32" in r.stderr
    assert not (tmp_path / "run").exists()


def test_sync_bn_is_a_no_op_for_one_process(tiny_synthetic, tmp_path):
    cfg = _cfg(tiny_synthetic, tmp_path / "run", "train.sync_bn=true")
    train_set, _, _ = build_training_data(cfg.data, cfg.augment)
    trainer = Trainer(cfg, train_set)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in trainer.depth_net.modules())
