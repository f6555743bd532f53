"""Intrinsics that cannot be pixels of the frames they describe stop before any work, with one
line naming the file (or keys) and the likely cause: training on own videos, KITTI calibration
files and ``depth.predict --intrinsics`` / ``--fx --fy --cx --cy``."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import train
from data.calib import IntrinsicsError, check_intrinsics, intrinsics_from_calib
from data.synthetic.writer import calib_cam_to_cam_text
from data.video import parse_intrinsics_text
from depth.config import load_config
from depth.predict import main as predict_main
from tests.helpers import procedural_image, write_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def _K(fx, fy, cx, cy):
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_check_intrinsics_causes():
    check_intrinsics(_K(721.5, 721.5, 609.6, 172.9), "ok", (1242, 375), (1242, 375))
    check_intrinsics(_K(360, 360, 305, 86), "ok, stated for another size", (1242, 375), (621, 188))
    with pytest.raises(IntrinsicsError, match=r"^k.txt: fx 0.58, fy 1.92, cx 0.5, cy 0.5: these look normalised.*"
                                              r"multiply fx and cx by the width and fy and cy by the height"):
        check_intrinsics(_K(0.58, 1.92, 0.5, 0.5), "k.txt")
    with pytest.raises(IntrinsicsError, match="below 4 pixels"):
        check_intrinsics(_K(2.0, 700, 300, 100), "k.txt")
    with pytest.raises(IntrinsicsError, match=r"principal point \(609.6, 172.9\) lies outside the 320x96 image "
                                              r"\(the frames\)"):
        check_intrinsics(_K(721.5, 721.5, 609.6, 172.9), "k.txt", None, (320, 96))
    check_intrinsics(_K(721.5, 721.5, 609.6, 172.9), "stated size: rescaled per axis", (1242, 375), (640, 480))


def test_intrinsics_file_checked_when_parsed():
    with pytest.raises(IntrinsicsError, match="seq/intrinsics.txt: .*look normalised"):
        parse_intrinsics_text("0.58 1.92 0.5 0.5\n", "seq/intrinsics.txt")
    with pytest.raises(IntrinsicsError, match="outside the 1242x375 image \\(the size stated in the file\\)"):
        parse_intrinsics_text("fx: 700\nfy: 700\ncx: 1500\ncy: 180\nsize: 1242 375\n", "k.txt")


def test_kitti_calib_with_normalised_projection(tmp_path):
    date = tmp_path / "2030_01_01"
    date.mkdir()
    text = calib_cam_to_cam_text(_K(0.58, 1.92, 0.5, 0.5))
    (date / "calib_cam_to_cam.txt").write_text(text)
    with pytest.raises(IntrinsicsError, match=f"calibration file {date / 'calib_cam_to_cam.txt'} \\(P_rect_02\\): "
                                              f".*look normalised"):
        intrinsics_from_calib(date)


def test_train_on_own_video_stops_on_normalised_intrinsics(tmp_path, capsys):
    seq = tmp_path / "seq"
    seq.mkdir()
    for i in range(4):
        cv2.imwrite(str(seq / f"{i:06d}.jpg"), procedural_image(96, 320, seed=i))
    (seq / "intrinsics.txt").write_text("0.58 1.92 0.5 0.5\n")
    args = ["--config", "configs/custom_video.yaml", f"data.root={tmp_path}", "model.pretrained=false",
            f"output.dir={tmp_path / 'run'}"]
    assert train.main(args) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(seq / "intrinsics.txt") in line and "look normalised" in line
    # pixels of a bigger image than the frames: the principal point is outside them
    (seq / "intrinsics.txt").write_text("721.5 721.5 609.6 172.9\n")
    assert train.main(args) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(seq / "intrinsics.txt") in line and "outside the 320x96 image (the frames)" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.fixture(scope="module")
def model_and_image(tmp_path_factory):
    d = tmp_path_factory.mktemp("predict")
    write_checkpoint(d / "m.pt", load_config(overrides=["data.height=64", "data.width=64"]))
    cv2.imwrite(str(d / "f.png"), procedural_image(64, 96)[..., ::-1])
    return d / "m.pt", d / "f.png"


def test_predict_intrinsics_checked(model_and_image, tmp_path, capsys):
    ckpt, img = model_and_image
    k = tmp_path / "k.txt"
    k.write_text("0.58 1.92 0.5 0.5\n")
    base = ["--checkpoint", str(ckpt), str(img), "--out", str(tmp_path / "o"), "--quiet"]
    assert predict_main([*base, "--camera-height", "1.65", "--intrinsics", str(k)]) == 2
    line = _one_line(capsys.readouterr().err.split("\n", 1)[1])  # after the "loaded ..." line
    assert str(k) in line and "look normalised" in line
    # KITTI pixels for a 96x64 frame: the principal point lies outside the frame
    assert predict_main([*base, "--ply", "--fx", "721.5", "--fy", "721.5", "--cx", "609.6", "--cy", "172.9"]) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: --fx/--fy/--cx/--cy: principal point (609.6, 172.9) lies outside the 96x64 "
                           "image"), err
    assert not list((tmp_path / "o").glob("*.ply"))
    # pixels of this frame: fine
    assert predict_main([*base, "--ply", "--fx", "60", "--fy", "60", "--cx", "48", "--cy", "32"]) == 0
    assert len(list((tmp_path / "o").glob("*.ply"))) == 1
