"""PLY point clouds: the writer read back (binary and ASCII), malformed files named, and
python -m depth.predict --ply checked point by point against the back-projection formula."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from depth.config import Config
from depth.io.ply import read_ply, write_ply
from depth.predict import main
from tests.helpers import procedural_image, write_checkpoint

H, W = 40, 120


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = Config()
    cfg.data.height, cfg.data.width = 64, 192
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    write_checkpoint(path, cfg)
    return path


@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip(tmp_path, binary):
    rng = np.random.default_rng(0)
    pts = rng.normal(0, 10, (500, 3)).astype(np.float32)
    cols = rng.integers(0, 256, (500, 3)).astype(np.uint8)
    write_ply(tmp_path / "a.ply", pts, cols, binary=binary, comments=["units metres"])
    data = (tmp_path / "a.ply").read_bytes()
    head = data[:data.index(b"end_header")].decode()
    assert head.startswith("ply\nformat " + ("binary_little_endian" if binary else "ascii") + " 1.0\n")
    assert "element vertex 500\nproperty float x\nproperty float y\nproperty float z\n" \
           "property uchar red\nproperty uchar green\nproperty uchar blue\n" in head
    if binary:
        assert len(data) - (data.index(b"end_header\n") + len(b"end_header\n")) == 500 * 15
    got, gcol, comments = read_ply(tmp_path / "a.ply")
    np.testing.assert_array_equal(got, pts)  # %.9g keeps float32 exact in ASCII too
    np.testing.assert_array_equal(gcol, cols)
    assert comments == ["units metres"]


def test_ply_reader_names_bad_files(tmp_path):
    write_ply(tmp_path / "a.ply", np.zeros((10, 3)), np.zeros((10, 3), np.uint8))
    data = (tmp_path / "a.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[:-20])
    with pytest.raises(ValueError, match=f"{tmp_path / 'cut.ply'} is truncated"):
        read_ply(tmp_path / "cut.ply")
    (tmp_path / "no.ply").write_bytes(b"hello")
    with pytest.raises(ValueError, match="is not a PLY file"):
        read_ply(tmp_path / "no.ply")
    with pytest.raises(ValueError, match="colors must be"):
        write_ply(tmp_path / "b.ply", np.zeros((4, 3)), np.zeros((3, 3), np.uint8))


def _expected_points(depth, fx, fy, cx, cy):
    v, u = np.mgrid[0:depth.shape[0], 0:depth.shape[1]].astype(np.float64)
    z = depth.astype(np.float64)
    return np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], -1).reshape(-1, 3)


def test_predict_ply_is_the_back_projection(tmp_path, checkpoint, capsys):
    img = procedural_image(H, W, seed=4)
    cv2.imwrite(str(tmp_path / "frame.png"), img[:, :, ::-1])
    fx, fy, cx, cy = 100.0, 90.0, 61.5, 19.0
    assert main(["--checkpoint", str(checkpoint), str(tmp_path / "frame.png"), "--out", str(tmp_path / "o"),
                 "--quiet", "--ply", "--scale", "5.4", "--fx", str(fx), "--fy", str(fy), "--cx", str(cx),
                 "--cy", str(cy)]) == 0
    depth = np.load(tmp_path / "o" / "frame_depth.npy")
    pts, cols, comments = read_ply(tmp_path / "o" / "frame.ply")
    assert pts.shape == (H * W, 3)
    np.testing.assert_allclose(pts, _expected_points(depth, fx, fy, cx, cy), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(cols, img.reshape(-1, 3))  # RGB of each pixel, raster order
    assert "units 5.4 / disparity (--scale; metres if the factor is metric)" in comments
    assert any(c.startswith("intrinsics fx 100 fy 90 cx 61.5 cy 19") for c in comments)
    # no intrinsics: Monodepth2's KITTI intrinsics at the frame's size, said on stderr; ASCII on request
    capsys.readouterr()
    assert main(["--checkpoint", str(checkpoint), str(tmp_path / "frame.png"), "--out", str(tmp_path / "d"),
                 "--quiet", "--ply", "--ply-ascii"]) == 0
    assert "using Monodepth2's KITTI intrinsics" in capsys.readouterr().err
    assert (tmp_path / "d" / "frame.ply").read_bytes().startswith(b"ply\nformat ascii 1.0\n")
    depth = np.load(tmp_path / "d" / "frame_depth.npy")
    pts, _, comments = read_ply(tmp_path / "d" / "frame.ply")
    np.testing.assert_allclose(pts, _expected_points(depth, 0.58 * W, 1.92 * H, 0.5 * W, 0.5 * H), rtol=1e-5,
                               atol=1e-5)
    assert "units relative (monocular model, unknown scale)" in comments


def test_predict_ply_intrinsics_file_scaled_to_the_frame(tmp_path, checkpoint):
    """K stated for another size (a KITTI calib file, 1242 x 375) is rescaled to the frame's size."""
    img = procedural_image(H, W, seed=5)
    cv2.imwrite(str(tmp_path / "f.png"), img[:, :, ::-1])
    (tmp_path / "K.txt").write_text("P_rect_02: 721.5 0 609.6 44.9 0 721.5 172.9 0.2 0 0 1 0.003\n"
                                    "S_rect_02: 1242 375\n")
    assert main(["--checkpoint", str(checkpoint), str(tmp_path / "f.png"), "--out", str(tmp_path / "o"),
                 "--quiet", "--ply", "--intrinsics", str(tmp_path / "K.txt")]) == 0
    depth = np.load(tmp_path / "o" / "f_depth.npy")
    pts, _, _ = read_ply(tmp_path / "o" / "f.ply")
    sx, sy = W / 1242, H / 375
    np.testing.assert_allclose(pts, _expected_points(depth, 721.5 * sx, 721.5 * sy, 609.6 * sx, 172.9 * sy),
                               rtol=1e-5, atol=1e-5)


def test_predict_ply_bad_arguments(tmp_path, checkpoint, capsys):
    img = procedural_image(H, W)
    cv2.imwrite(str(tmp_path / "f.png"), img[:, :, ::-1])
    assert main(["--checkpoint", str(checkpoint), str(tmp_path / "f.png"), "--out", str(tmp_path / "o"),
                 "--quiet", "--ply", "--fx", "100"]) == 2
    assert "--ply: give all of --fx --fy --cx --cy" in capsys.readouterr().err
    assert main(["--checkpoint", str(checkpoint), str(tmp_path / "f.png"), "--out", str(tmp_path / "o"),
                 "--quiet", "--ply-ascii"]) == 2
    assert "--ply-ascii needs --ply" in capsys.readouterr().err
