"""Loading a model never runs code: every checkpoint, run folder and Monodepth2 file is read with
``torch.load(weights_only=True)``; a pickle that would build any other Python object is refused
with one line naming the file (exit status 2) by every command that loads a model. Checkpoints in
the format written before the RNG states were stored as plain values still load and resume."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from depth.config import load_config
from depth.io.checkpoint import CheckpointRefused, load_checkpoint, plain_values, save_checkpoint
from depth.train.trainer import rng_states, set_rng_states
from tests.helpers import SMALL_NETS, procedural_image, write_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["data.height=64", "data.width=64"]


class _Payload:
    """Unpickling this runs ``touch MARKER`` (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _plant(path: Path, marker: Path, state: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**(state or {"config": {}, "step": 7}), "depth_net": _Payload(marker)}, path)
    return path


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def _train_overrides(root: Path, out: Path) -> list[str]:
    return [str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "synthetic.yaml"), f"data.root={root}",
            f"data.split={root / 'splits'}", "data.synthetic.generate=false", *SMALL, "data.val_gt=none",
            "train.batch_size=2", "train.max_steps=1", "train.num_workers=0", "train.progress=false",
            "train.image_every=0", "train.val_every=0", "train.checkpoint_every=0", "train.device=cpu",
            f"output.dir={out}", *SMALL_NETS]


def test_planted_pickle_is_refused_by_every_command(tiny_synthetic, tmp_path):
    marker = tmp_path / "MARKER"
    evil = _plant(tmp_path / "evil.pt", marker)
    run = tmp_path / "run"
    _plant(run / "checkpoints" / "last.pt", marker)
    m2 = tmp_path / "m2"
    _plant(m2 / "encoder.pth", marker, {"height": 64, "width": 64})
    torch.save({}, m2 / "depth.pth")
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), procedural_image(64, 64)[..., ::-1])
    commands = {
        "evaluate": ([str(ROOT / "evaluate.py"), "depth", "--checkpoint", str(evil), "--data-path",
                      str(tiny_synthetic), "--split", str(tiny_synthetic / "splits"), "--no-progress"], evil),
        "predict": (["-m", "depth.predict", "--checkpoint", str(evil), str(image), "--out", str(tmp_path / "p")],
                    evil),
        "predict monodepth2": (["-m", "depth.predict", "--checkpoint", str(m2), str(image), "--out",
                                str(tmp_path / "p2")], m2 / "encoder.pth"),
        "export": (["-m", "depth.export", "--checkpoint", str(evil), "--output", str(tmp_path / "m.onnx")], evil),
        "init_from": ([*_train_overrides(tiny_synthetic, tmp_path / "ft"), f"model.init_from={evil}"], evil),
        "resume": ([str(ROOT / "train.py"), "--resume", str(run)], run / "checkpoints" / "last.pt"),
    }
    procs = {name: subprocess.Popen([sys.executable, *cmd], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name, (cmd, _) in commands.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (name, proc.returncode, err[-2000:])
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, (name, err)
        named = commands[name][1]
        assert f"{named} refused" in lines[0] and "posix.system" in lines[0], (name, lines[0])
    assert not marker.exists()


def test_refused_file_is_not_skipped_in_a_run_folder(tmp_path):
    """A run folder whose last.pt is a planted pickle stops; it does not fall back to an older step."""
    d = tmp_path / "run" / "checkpoints"
    save_checkpoint({"depth_net": {"w": torch.ones(1)}, "config": {}, "step": 1}, d, 1, keep=3)
    (d / "last.pt").unlink()
    _plant(d / "last.pt", tmp_path / "MARKER", {"config": {}, "step": 2})
    with pytest.raises(CheckpointRefused, match="last.pt refused"):
        load_checkpoint(tmp_path / "run")
    assert not (tmp_path / "MARKER").exists()


def _old_format_state(state: dict) -> dict:
    """``state`` as the trainer saved it before RNG states were plain values: the raw tuples of
    random.getstate() / np.random.get_state() (an ndarray key) and torch.__version__ (a TorchVersion)."""
    old = dict(state)
    old["rng"] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                  "cuda": None}
    old["versions"] = {**state.get("versions", {}), "torch": torch.__version__}
    return old


def test_new_checkpoint_loads_with_plain_weights_only(tiny_synthetic, tmp_path):
    """A checkpoint the trainer writes needs no safe globals (checked in a fresh process)."""
    r = subprocess.run([sys.executable, *_train_overrides(tiny_synthetic, tmp_path / "run"),
                        "train.checkpoint_every=1"], cwd=ROOT, env=_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    code = ("import sys, torch; c = torch.load(sys.argv[1], weights_only=True); "
            "assert not torch.serialization.get_unsafe_globals_in_checkpoint(sys.argv[1]); "
            "print(c['step'], sorted(c['rng']), type(c['versions']['torch']).__name__)")
    r = subprocess.run([sys.executable, "-c", code, str(last)], capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["1", "['cuda',", "'numpy',", "'python',", "'torch']", "str"]


def test_save_checkpoint_refuses_objects(tmp_path):
    with pytest.raises(TypeError, match=r"checkpoint\['rng'\]\['numpy'\]\[1\] is a numpy.ndarray"):
        save_checkpoint({"depth_net": {}, "config": {}, "rng": {"numpy": np.random.get_state()}}, tmp_path, 1)
    assert not list(tmp_path.glob("*.pt"))


def test_rng_states_round_trip_and_read_the_old_form():
    random.seed(5), np.random.seed(6), torch.manual_seed(7)
    new, raw = rng_states(), _old_format_state({})["rng"]
    read_back = plain_values(raw)  # the old form as a legacy file is read: the key array as a list
    want = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    for saved in (new, raw, read_back):
        set_rng_states(saved)
        assert (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == want


def test_old_format_checkpoint_loads_and_resumes(tiny_synthetic, tmp_path):
    """A run folder in the old format (the trainer's checkpoint, RNG as pickled numpy/TorchVersion
    objects) resumes, and the continued run ends exactly where the uninterrupted one does."""
    full, old = tmp_path / "full", tmp_path / "old"
    for out, steps in ((full, 2), (old, 1)):
        args = [a if not a.startswith("train.max_steps=") else f"train.max_steps={steps}"
                for a in _train_overrides(tiny_synthetic, out)]
        r = subprocess.run([sys.executable, *args, "train.checkpoint_every=1", "train.deterministic=true"],
                           cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    last = old / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    rng = state["rng"]
    version, internal, gauss = rng["python"]
    n = rng["numpy"]
    state["rng"] = {"python": (version, tuple(internal), gauss), "torch": rng["torch"], "cuda": None,
                    "numpy": (n["bit_generator"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                              n["cached_gaussian"])}
    state["versions"]["torch"] = torch.__version__
    for f in (last, *old.glob("checkpoints/step_*.pt")):
        f.unlink()
    torch.save(state, old / "checkpoints" / "step_00000001.pt")
    os.link(old / "checkpoints" / "step_00000001.pt", last)
    needs = torch.serialization.get_unsafe_globals_in_checkpoint(last)
    assert "numpy.ndarray" in needs and "torch.torch_version.TorchVersion" in needs  # really the old form
    loaded = load_checkpoint(old)
    assert loaded["step"] == 1 and isinstance(loaded["rng"]["numpy"][1], list)
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--resume", str(old), "train.max_steps=2"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = load_checkpoint(full), load_checkpoint(old)
    assert a["step"] == b["step"] == 2
    for net in ("depth_net", "pose_net"):
        for k, v in a[net].items():
            assert torch.equal(v, b[net][k]), (net, k)


def test_old_format_allow_list_is_narrow(tmp_path):
    """Old-format files may name numpy's array rebuilder and TorchVersion, nothing else."""
    cfg = load_config(overrides=SMALL)
    write_checkpoint(tmp_path / "ok.pt", cfg)
    state = torch.load(tmp_path / "ok.pt", weights_only=True)
    state["extra"] = {"when": np.datetime64("2024-01-01")}  # numpy, but not on the list
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(CheckpointRefused, match="other.pt refused"):
        load_checkpoint(tmp_path / "other.pt")


class _PlantedCommand:
    """Pickles to a call of os.system (what a planted GT file would carry)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_monodepth2_gt_object_array_reads_without_running_code(tmp_path):
    """Monodepth2's gt_depths.npz holds an object array (maps of several sizes): it is read through
    an unpickler that builds numpy arrays only; a planted object is refused, naming the file."""
    from depth.eval.gt import load_gt
    maps = [np.random.default_rng(0).random((5, 7), dtype=np.float32), np.ones((6, 8), np.float32)]
    data = np.empty(2, dtype=object)
    data[0], data[1] = maps
    np.savez_compressed(tmp_path / "gt.npz", data=data)
    got = load_gt(tmp_path / "gt.npz")
    assert len(got) == 2 and all(g.dtype == np.float32 and (g == m).all() for g, m in zip(got, maps))
    marker = tmp_path / "ran"
    data[1] = _PlantedCommand(marker)
    np.savez_compressed(tmp_path / "planted.npz", data=data)
    with pytest.raises(ValueError, match=r"planted\.npz.*refused.*system"):
        load_gt(tmp_path / "planted.npz")
    assert not marker.exists()
    # through the command: one line, exit 2, and the command never ran
    np.save(tmp_path / "disp.npy", np.ones((2, 8, 16), np.float32))
    split = tmp_path / "split.txt"
    split.write_text("2011_09_26/2011_09_26_drive_0001_sync 1 l\n2011_09_26/2011_09_26_drive_0001_sync 2 l\n")
    r = subprocess.run([sys.executable, "evaluate.py", "depth", "--disparities", str(tmp_path / "disp.npy"),
                        "--gt", str(tmp_path / "planted.npz"), "--split", str(split)],
                       capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 2, r.stderr
    assert "planted.npz" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists()
