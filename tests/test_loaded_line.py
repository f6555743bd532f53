"""No silent substitutions: every command that loads a model says which file and step it loaded,
and a run folder whose newest checkpoints are unreadable says which it skipped (a warning line)."""
from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import torch

import evaluate
import train
from depth.config import load_config
from depth.export import main as export_main
from depth.io.checkpoint import save_checkpoint
from depth.predict import main as predict_main
from tests.helpers import procedural_image, write_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["data.height=64", "data.width=64"]


@pytest.fixture(scope="module")
def run_with_bad_newest(tmp_path_factory) -> Path:
    """A run folder with steps 3 and 5: step 5 (last.pt and its step file) unreadable."""
    run = tmp_path_factory.mktemp("run")
    write_checkpoint(run / "model.pt", load_config(overrides=SMALL))
    state = torch.load(run / "model.pt", weights_only=True)
    d = run / "checkpoints"
    for step in (3, 5):
        save_checkpoint({**state, "step": step}, d, step, keep=3)
    for name in ("last.pt", "step_00000005.pt"):
        (d / name).unlink()
        (d / name).write_bytes(b"PK\x03\x04 truncated")
    return run


def _fallback_lines(err: str, run: Path) -> list[str]:
    d = run / "checkpoints"
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning: skipped an unreadable checkpoint")]
    assert len(warnings) == 2 and f"{d / 'last.pt'} could not be read" in warnings[0], err
    assert f"{d / 'step_00000005.pt'} could not be read" in warnings[1], err
    return warnings


def test_evaluate_says_what_it_loaded(run_with_bad_newest, tiny_synthetic, capsys):
    rc = evaluate.main(["depth", "--checkpoint", str(run_with_bad_newest), "--data-path", str(tiny_synthetic),
                        "--split", str(tiny_synthetic / "splits"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    _fallback_lines(err, run_with_bad_newest)
    assert f"loaded {run_with_bad_newest / 'checkpoints' / 'step_00000003.pt'} (step 3)\n" in err


def test_predict_and_export_say_what_they_loaded(run_with_bad_newest, tmp_path, capsys):
    img = tmp_path / "f.png"
    cv2.imwrite(str(img), procedural_image(64, 64)[..., ::-1])
    assert predict_main(["--checkpoint", str(run_with_bad_newest), str(img), "--out", str(tmp_path / "o"),
                         "--quiet"]) == 0
    err = capsys.readouterr().err
    _fallback_lines(err, run_with_bad_newest)
    assert f"loaded {run_with_bad_newest / 'checkpoints' / 'step_00000003.pt'} (step 3)\n" in err
    assert predict_main(["--checkpoint", str(run_with_bad_newest / "model.pt"), str(img), "--out",
                         str(tmp_path / "o2"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"loaded {run_with_bad_newest / 'model.pt'} (step 0)\n" in err and "warning" not in err
    # export: the line comes before anything else is checked (here a too small --height)
    assert export_main(["--checkpoint", str(run_with_bad_newest), "--output", str(tmp_path / "m.onnx"),
                        "--height", "16"]) == 2
    err = capsys.readouterr().err
    _fallback_lines(err, run_with_bad_newest)
    assert f"loaded {run_with_bad_newest / 'checkpoints' / 'step_00000003.pt'} (step 3)\n" in err


def test_monodepth2_folder_says_no_step(tmp_path, capsys):
    from tests.monodepth2_reference import make_folder
    folder = tmp_path / "m2"
    make_folder(folder, height=64, width=64, pose=False)
    img = tmp_path / "f.png"
    cv2.imwrite(str(img), procedural_image(64, 64)[..., ::-1])
    assert predict_main(["--checkpoint", str(folder), str(img), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert f"loaded {folder} (no step recorded)\n" in capsys.readouterr().err


def test_init_from_says_what_it_loaded_before_the_data(run_with_bad_newest, tmp_path, capsys):
    """model.init_from is read (and said) before any data: a missing data root stops after the line."""
    rc = train.main(["--config", str(ROOT / "configs" / "synthetic.yaml"), *SMALL,
                     f"data.root={tmp_path / 'no_data'}", f"data.split={tmp_path / 'no_data' / 'splits'}",
                     "data.synthetic.generate=false", "train.device=cpu", f"output.dir={tmp_path / 'ft'}",
                     f"model.init_from={run_with_bad_newest}"])
    out, err = capsys.readouterr()
    assert rc == 2 and "error: No KITTI raw data found" in err, err
    _fallback_lines(err, run_with_bad_newest)
    assert f"loaded {run_with_bad_newest / 'checkpoints' / 'step_00000003.pt'} (step 3)\n" in out
