"""One error style for every command: bad input -> one line on stderr naming the culprit, exit
status 2, no traceback (``--debug`` shows it); a wrong ``--split`` says which split was tried and
how to choose another."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import evaluate
import train
from common.errors import DataError, InputError
from depth.cli import command_errors, error_line
from depth.config import load_config
from depth.export import main as export_main
from depth.predict import main as predict_main
from tests.helpers import procedural_image, write_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def truncated_checkpoint(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ckpt")
    write_checkpoint(d / "good.pt", load_config(overrides=["data.height=64", "data.width=64"]))
    data = (d / "good.pt").read_bytes()
    (d / "truncated.pt").write_bytes(data[: len(data) // 2])
    return d / "truncated.pt"


# ---------------------------------------------------------------- the helper


def test_command_errors_maps_bad_input_to_one_line_and_exit_2(capsys):
    @command_errors
    def main(argv=None):
        raise DataError("calibration file c.txt has no key 'P_rect_02'")

    assert main([]) == 2
    assert capsys.readouterr().err == "error: calibration file c.txt has no key 'P_rect_02'\n"
    assert main(["--debug"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith("error: calibration file c.txt has no key 'P_rect_02'\n")

    @command_errors
    def bug(argv=None):
        raise ZeroDivisionError("a defect, not bad input")

    with pytest.raises(ZeroDivisionError):  # defects keep their traceback (exit status 1)
        bug([])
    assert error_line(DataError("split file not found: x.txt")) == "error: split file not found: x.txt"


@pytest.mark.parametrize("error", [KeyError("P_rect_02"), ValueError("bad value"), FileNotFoundError("x.txt")])
def test_bare_builtin_errors_are_defects_not_bad_input(error):
    """Only the InputError tree is bad input: a bare KeyError / ValueError / OSError reaching a
    command is a missing check and keeps its traceback."""
    @command_errors
    def main(argv=None):
        raise error

    with pytest.raises(type(error)):
        main([])


def test_every_error_class_has_one_base_in_the_tree():
    """One base class for bad input, and no error class with two bases (common.errors)."""
    import common.errors as tree
    classes = [getattr(tree, n) for n in tree.__all__]
    assert all(issubclass(c, InputError) for c in classes)
    assert all(len(c.__bases__) == 1 for c in classes)
    for mod in ("depth", "data", "common"):
        for path in (ROOT / mod).rglob("*.py"):
            text = path.read_text()
            assert not re.search(r"^class \w+(Error|Refused|NotFound|Missing)\((?!RuntimeError\))", text, re.M) \
                or path.name == "errors.py", f"{path}: error classes belong to common/errors.py (or are runtime failures)"


# ---------------------------------------------------------------- evaluate.py


def test_evaluate_truncated_checkpoint(truncated_checkpoint, tiny_synthetic, capsys):
    rc = evaluate.main(["depth", "--checkpoint", str(truncated_checkpoint), "--data-path", str(tiny_synthetic),
                        "--split", str(tiny_synthetic / "splits"), "--no-progress"])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and f"checkpoint {truncated_checkpoint} could not be read" in line


@pytest.mark.parametrize("command", ["export-gt", "depth"])
def test_evaluate_malformed_split_line(command, tiny_synthetic, tmp_path, capsys):
    split = tmp_path / "split.txt"
    split.write_text("2030_01_01/2030_01_01_drive_0002_sync 1 l\n2030_01_01/2030_01_01_drive_0002_sync one l\n")
    extra = ["--out", str(tmp_path / "gt.npz")] if command == "export-gt" else \
        ["--disparities", str(tmp_path / "d.npy")]
    np.save(tmp_path / "d.npy", np.ones((2, 32, 32), np.float32))
    rc = evaluate.main([command, "--data-path", str(tiny_synthetic), "--split", str(split), "--no-progress", *extra])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and f"{split}:2: frame index must be an integer, got 'one'" in line
    assert not (tmp_path / "gt.npz").exists()


def test_evaluate_missing_gt_and_bad_pose_file(tmp_path, capsys):
    (tmp_path / "split.txt").write_text("d/x_sync 0 l\n")
    np.save(tmp_path / "d.npy", np.ones((1, 8, 8), np.float32))
    rc = evaluate.main(["depth", "--disparities", str(tmp_path / "d.npy"), "--gt", str(tmp_path / "no.npz"),
                        "--split", str(tmp_path / "split.txt")])
    assert rc == 2 and str(tmp_path / "no.npz") in _one_line(capsys.readouterr().err)
    (tmp_path / "pred.npy").write_text("not an array")
    (tmp_path / "poses.txt").write_text("1 0 0 0 0 1 0 0 0 0 1 0\n" * 6)
    rc = evaluate.main(["pose", "--pred-poses", str(tmp_path / "pred.npy"), "--poses", str(tmp_path / "poses.txt")])
    assert rc == 2
    _one_line(capsys.readouterr().err)


def test_evaluate_wrong_split_names_it_and_how_to_choose(tiny_synthetic, tmp_path, capsys):
    """The default --split eigen on the synthetic data (the quick-start mistake)."""
    np.save(tmp_path / "d.npy", np.ones((697, 8, 8), np.float32))
    rc = evaluate.main(["depth", "--disparities", str(tmp_path / "d.npy"), "--data-path", str(tiny_synthetic),
                        "--no-progress"])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2
    assert f"--split eigen ({ROOT / 'data' / 'splits' / 'eigen' / 'test_files.txt'}, 697 images)" in line
    assert f"28 drive folder(s) that {tiny_synthetic} does not hold (e.g. 2011_09_26/2011_09_26_drive_0002_sync)" \
        in line
    assert "a built-in one (eigen, eigen_benchmark, eigen_zhou, odom)" in line
    assert line.endswith(f"{tiny_synthetic} has its own test list: --split {tiny_synthetic / 'splits'}")
    rc = evaluate.main(["export-gt", "--data-path", str(tiny_synthetic), "--split", "eigen_benchmark",
                        "--out", str(tmp_path / "gt.npz")])
    assert rc == 2 and "--split eigen_benchmark (" in _one_line(capsys.readouterr().err)


def test_evaluate_subprocess_exit_status_and_debug(truncated_checkpoint, tiny_synthetic):
    """The process itself: exit status 2, one line, no traceback; --debug adds the traceback."""
    args = [sys.executable, str(ROOT / "evaluate.py"), "depth", "--checkpoint", str(truncated_checkpoint),
            "--data-path", str(tiny_synthetic), "--split", str(tiny_synthetic / "splits"), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert r.returncode == 2 and "could not be read" in _one_line(r.stderr)
    r = subprocess.run([*args, "--debug"], capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert r.returncode == 2 and "Traceback" in r.stderr and r.stderr.strip().splitlines()[-1].startswith("error: ")


# ---------------------------------------------------------------- train, predict, export


def test_train_resume_from_truncated_checkpoint(truncated_checkpoint, capsys):
    assert train.main(["--resume", str(truncated_checkpoint)]) == 2
    assert "could not be read" in _one_line(capsys.readouterr().err)


def test_predict_and_export_truncated_checkpoint(truncated_checkpoint, tmp_path, capsys):
    img = tmp_path / "f.png"
    cv2.imwrite(str(img), procedural_image(64, 96))
    assert predict_main(["--checkpoint", str(truncated_checkpoint), str(img), "--out", str(tmp_path / "o"),
                         "--quiet"]) == 2
    assert "could not be read" in _one_line(capsys.readouterr().err)
    assert export_main(["--checkpoint", str(truncated_checkpoint), "--output", str(tmp_path / "m.onnx")]) == 2
    assert "could not be read" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "m.onnx").exists()


# ---------------------------------------------------------------- one vocabulary, parsers first

HELP_COMMANDS = {"train.py": ["train.py"], "evaluate.py depth": ["evaluate.py", "depth"],
                 "depth.predict": ["-m", "depth.predict"], "depth.export": ["-m", "depth.export"],
                 "depth.convert": ["-m", "depth.convert"]}


@pytest.mark.parametrize("name", list(HELP_COMMANDS))
def test_help_imports_neither_torch_nor_timm(name):
    """--help is answered by the parser alone (depth/commands/ runs the command after parsing)."""
    args = HELP_COMMANDS[name]
    target = f"runpy.run_module({args[1]!r}, run_name='__main__')" if args[0] == "-m" else \
        f"runpy.run_path({args[0]!r}, run_name='__main__')"
    argv = [args[1] if args[0] == "-m" else args[0], *args[(2 if args[0] == "-m" else 1):], "--help"]
    code = (f"import runpy, sys\nsys.argv = {argv!r}\ntry:\n    {target}\nexcept SystemExit as e:\n    code = e.code\n"
            f"print('EXIT', code, 'torch' in sys.modules, 'timm' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "EXIT 0 False False", r.stdout[-500:] + r.stderr


def test_old_flag_spellings_still_parse():
    from depth.convert import _parser as convert_parser
    from depth.export import _parser as export_parser
    from depth.predict import _parser as predict_parser
    assert export_parser().parse_args(["--checkpoint", "c", "--output", "x.onnx"]).output == "x.onnx"
    assert export_parser().parse_args(["--checkpoint", "c", "--out", "x.onnx"]).output == "x.onnx"
    assert convert_parser().parse_args(["src", "--output", "o"]).output == "o"
    assert convert_parser().parse_args(["src", "--out", "o"]).output == "o"
    for flag in ("--quiet", "--no-progress"):
        assert predict_parser().parse_args(["--checkpoint", "c", "in.png", "--out", "d", flag]).quiet
    assert train.parse_args(["--no-progress"]).no_progress


def test_evaluate_device_cuda_without_cuda_is_one_line(truncated_checkpoint, tiny_synthetic, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: --device cuda is valid")
    good = truncated_checkpoint.with_name("good.pt")
    rc = evaluate.main(["depth", "--checkpoint", str(good), "--data-path", str(tiny_synthetic),
                        "--split", str(tiny_synthetic / "splits"), "--no-progress", "--device", "cuda"])
    assert rc == 2 and _one_line(capsys.readouterr().err) == "error: --device cuda requested but CUDA is not available"


def test_loader_workers_use_one_opencv_thread():
    """The training loader's workers start with one OpenCV thread; the in-process loader leaves the
    main process's OpenCV alone."""
    from depth.train.loader import one_thread_worker, training_loader
    from depth.train.placement import Placement
    from depth.train.sampling import ResumableSampler
    where = Placement(rank=0, world_size=1, device=torch.device("cpu"), batch_per_rank=2, amp_dtype=None,
                      channels_last=False, collective_device=None)
    sampler = ResumableSampler(4, 0, True, 0, 1, with_epoch=True)
    assert training_loader([None] * 4, sampler, where, num_workers=2).worker_init_fn is one_thread_worker
    assert training_loader([None] * 4, sampler, where, num_workers=0).worker_init_fn is None
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(4)
        one_thread_worker(0)
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
