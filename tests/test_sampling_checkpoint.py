"""Resumable epoch sampler; atomic checkpoint writes, retention and loading."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from common.errors import CheckpointError
from common.atomic import atomic_write_dir, atomic_write_text
from depth.io.checkpoint import atomic_torch_save, load_checkpoint, save_checkpoint
from depth.train.sampling import ResumableSampler

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- sampler


def test_sampler_is_a_permutation_fixed_by_seed_and_epoch():
    a, b = ResumableSampler(20, seed=1), ResumableSampler(20, seed=1)
    a.set_epoch(3)
    b.set_epoch(3)
    order = list(a)
    assert sorted(order) == list(range(20)) and len(a) == 20
    assert list(b) == order  # another instance (another process) agrees
    assert list(a) == order  # iterating again too
    assert order == np.random.default_rng([1, 3]).permutation(20).tolist()


def test_sampler_differs_across_epochs_and_seeds():
    s = ResumableSampler(50, seed=0)
    orders = []
    for e in range(3):
        s.set_epoch(e)
        orders.append(list(s))
    assert orders[0] != orders[1] and orders[1] != orders[2]
    other = ResumableSampler(50, seed=1)
    assert list(other) != orders[0]


def test_sampler_resume_tail():
    s = ResumableSampler(17, seed=5)
    s.set_epoch(4)
    full = list(s)
    s.set_epoch(4, start=6)
    assert list(s) == full[6:] and len(s) == 11
    s.set_epoch(4, start=17)
    assert list(s) == [] and len(s) == 0
    s.set_epoch(5)  # a new epoch starts from the beginning again
    assert len(list(s)) == 17


def test_sampler_without_shuffle():
    s = ResumableSampler(5, shuffle=False)
    s.set_epoch(9)
    assert list(s) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("n", [8, 7])
def test_two_ranks_partition_the_padded_order(n):
    ranks = [ResumableSampler(n, seed=2, rank=r, world_size=2) for r in range(2)]
    for r in ranks:
        r.set_epoch(1)
    r0, r1 = list(ranks[0]), list(ranks[1])
    per_rank = -(-n // 2)
    assert len(r0) == len(r1) == per_rank == len(ranks[0])
    perm = np.random.default_rng([2, 1]).permutation(n).tolist()
    padded = perm + perm[: 2 * per_rank - n]
    assert r0 == padded[0::2] and r1 == padded[1::2]
    assert set(r0) | set(r1) == set(range(n))
    assert len(set(r0) & set(r1)) == 2 * per_rank - n  # only the padding repeats
    # resuming one rank skips its own first indices
    ranks[1].set_epoch(1, start=2)
    assert list(ranks[1]) == r1[2:]


@pytest.mark.parametrize("n,world", [(3, 8), (1, 4)])
def test_more_ranks_than_samples_every_rank_gets_its_share(n, world):
    """Padding longer than the split must wrap around (as DistributedSampler does): every rank has to
    yield ``len(sampler)`` indices, or ranks run different step counts and collective ops hang."""
    samplers = [ResumableSampler(n, seed=0, rank=r, world_size=world) for r in range(world)]
    got = [list(s) for s in samplers]
    assert [len(g) for g in got] == [len(s) for s in samplers] == [1] * world
    assert set().union(*map(set, got)) == set(range(n))


def test_empty_sampler_raises():
    with pytest.raises(ValueError, match="empty"):
        ResumableSampler(0)


# ---------------------------------------------------------------- atomic writes


def test_atomic_torch_save_roundtrip(tmp_path):
    p = tmp_path / "sub" / "x.pt"
    atomic_torch_save({"a": torch.arange(3)}, p)
    assert torch.equal(torch.load(p)["a"], torch.arange(3))
    assert [f.name for f in p.parent.iterdir()] == ["x.pt"]


def test_atomic_torch_save_failure_keeps_previous_file(tmp_path, monkeypatch):
    p = tmp_path / "model.pt"
    atomic_torch_save({"version": 1}, p)
    before = p.read_bytes()

    def partial_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", partial_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"version": 2}, p)
    monkeypatch.undo()
    assert p.read_bytes() == before
    assert torch.load(p) == {"version": 1}
    assert sorted(f.name for f in tmp_path.iterdir()) == ["model.pt"]  # no temp file left behind


def test_atomic_torch_save_interrupt_keeps_previous_file(tmp_path, monkeypatch):
    """A KeyboardInterrupt mid-write (Ctrl-C) is handled like any other failure."""
    p = tmp_path / "model.pt"
    atomic_torch_save({"version": 1}, p)

    def interrupted(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"version": 2}, p)
    monkeypatch.undo()
    assert torch.load(p) == {"version": 1}
    assert sorted(f.name for f in tmp_path.iterdir()) == ["model.pt"]


def test_atomic_write_text_failure_keeps_previous(tmp_path, monkeypatch):
    p = tmp_path / "metrics.json"
    atomic_write_text(p, "old")

    def failing_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        atomic_write_text(p, "new")
    monkeypatch.undo()
    assert p.read_text() == "old"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["metrics.json"]


def test_atomic_write_dir_whole_or_nothing(tmp_path):
    def two_files(folder):
        atomic_write_text(folder / "a.txt", "a")
        atomic_write_text(folder / "b.txt", "b")

    def fails_after_one(folder):
        atomic_write_text(folder / "a.txt", "a")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_dir(tmp_path / "model", fails_after_one)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temp folder
    (tmp_path / "model").mkdir()  # an empty folder may be filled
    atomic_write_dir(tmp_path / "model", two_files)
    assert sorted(f.name for f in (tmp_path / "model").iterdir()) == ["a.txt", "b.txt"]
    with pytest.raises(FileExistsError, match="not an empty folder"):
        atomic_write_dir(tmp_path / "model", two_files)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["model"]


# ---------------------------------------------------------------- retention / loading


def _state(step: int) -> dict:
    return {"depth_net": {"w": torch.tensor([float(step)])}, "config": {}, "step": step}


def test_save_checkpoint_keeps_newest_k_plus_last(tmp_path):
    for step in (100, 200, 300, 400, 500):
        path = save_checkpoint(_state(step), tmp_path, step, keep=2)
        assert path.name == f"step_{step:08d}.pt"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["last.pt", "step_00000400.pt", "step_00000500.pt"]
    assert torch.load(tmp_path / "last.pt")["step"] == 500
    assert torch.load(tmp_path / "step_00000400.pt")["step"] == 400


def test_save_checkpoint_ordering_is_numeric_not_lexicographic(tmp_path):
    for step in (9, 10, 11):
        save_checkpoint(_state(step), tmp_path, step, keep=1)
    assert sorted(p.name for p in tmp_path.glob("step_*.pt")) == ["step_00000011.pt"]


def test_save_checkpoint_leaves_foreign_files(tmp_path):
    (tmp_path / "step_best.pt").write_bytes(b"x")
    for step in (1, 2, 3):
        save_checkpoint(_state(step), tmp_path, step, keep=1)
    assert (tmp_path / "step_best.pt").exists()


def test_load_checkpoint_garbage_names_file(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(bad)
    assert str(bad) in str(e.value)


def test_load_checkpoint_missing_and_foreign(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {}}, foreign)
    with pytest.raises(CheckpointError, match="depth_net"):
        load_checkpoint(foreign)


def test_load_checkpoint_resolves_run_folder(tmp_path):
    save_checkpoint(_state(7), tmp_path / "run" / "checkpoints", 7)
    assert load_checkpoint(tmp_path / "run")["step"] == 7
    assert load_checkpoint(tmp_path / "run" / "checkpoints")["step"] == 7


def test_load_checkpoint_run_folder_falls_back_to_newest_readable(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    for step in (1, 2):
        save_checkpoint(_state(step), folder, step, keep=2)
    (folder / "last.pt").unlink()
    (folder / "last.pt").write_bytes(b"truncated")  # a damaged last.pt
    (folder / "step_00000002.pt").write_bytes(b"also damaged")
    assert load_checkpoint(tmp_path / "run")["step"] == 1
    # nothing readable: the error names the folder
    (folder / "step_00000001.pt").write_bytes(b"damaged")
    with pytest.raises(CheckpointError, match="checkpoints"):
        load_checkpoint(tmp_path / "run")
