"""Make3D, Cityscapes and NYUv2 evaluation: readers of the real file formats, the protocols' crops and
caps, metric values against hand-computed ones, and one clear line for a missing or malformed file."""
from __future__ import annotations

import json
import math
import shutil
import zipfile
from dataclasses import replace

import cv2
import numpy as np
import pytest
import scipy.io

import evaluate
from data.cityscapes import (CITYSCAPES_TEST_COUNT, CITYSCAPES_TEST_FILES, CityscapesTestSet,
                             disparity_to_depth, read_camera, read_cityscapes_split, read_disparity_png)
from data.frames import read_image
from data.make3d import Make3DTestSet, read_laser_depth
from data.nyuv2 import NYUv2TestSet
from depth.config import load_config
from depth.eval.protocols import (CITYSCAPES, MAKE3D, NYUV2, cityscapes_eval_box, kitti_protocol,
                                  make3d_gt_rows, make3d_input_window)
from depth.eval.scoring import score_per_image
from depth.eval.sets import load_eval_set
from depth.eval.metrics import compute_depth_metrics_per_image
from depth.inference import predict_disparities
from tests.evalset_fixtures import (CITY_FRAMES, CITY_HW, MAKE3D_IDS, NYU_FRAMES, nyu_frame, write_cityscapes,
                                    write_make3d, write_nyuv2)
from tests.helpers import write_checkpoint


def _h5py():
    return pytest.importorskip("h5py", reason="h5py (requirements.txt) writes and reads NYUv2's HDF5 file; "
                                              "it is not installed in this environment")


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def _eval(capsys, *args):
    rc = evaluate.main(["depth", "--no-progress", *map(str, args)])
    out = capsys.readouterr()
    return rc, out


# ------------------------------------------------------------------------------------------ Make3D
def test_make3d_reader_and_crops_on_real_layout(tmp_path):
    root = write_make3d(tmp_path / "make3d")
    s = Make3DTestSet(root)
    assert s.ids == sorted(MAKE3D_IDS) and len(s) == 3
    grid = scipy.io.loadmat(str(root / "Gridlaserdata" / f"depth_sph_corr-{s.ids[0]}.mat"))["Position3DGrid"]
    assert grid.shape == (55, 305, 4)
    np.testing.assert_array_equal(s.depth(0), grid[:, :, 3].astype(np.float32))  # the 4th channel, depth in m
    # Monodepth2's numbers at the real sizes: rows 710:1562 of the 2272 x 1704 photograph, laser rows 17:38
    assert make3d_input_window(2272, 1704) == (710, 1562, 0, 1704)
    assert make3d_gt_rows(55) == (17, 38)
    es = load_eval_set("make3d", root)
    full = read_image(root / "Test134" / f"img-{s.ids[1]}.jpg")
    assert full.shape[:2] == (64, 48)
    np.testing.assert_array_equal(es.images[1], full[20:44])  # 2:1 centre crop (24 of 64 rows)
    np.testing.assert_array_equal(es.gts[1], s.depth(1)[17:38])
    assert es.names == [f"img-{i}.jpg" for i in sorted(MAKE3D_IDS)]


def _make3d_case(tmp_path):
    """GT and disparities with hand-computed metrics (see the asserts)."""
    depths = [np.zeros((55, 305), np.float32) for _ in range(3)]
    d0 = depths[0]
    # view row 3 (src row 0), the columns either side of a nearest-resize step
    d0[20, 152], d0[20, 153] = 2.0, 4.0
    d0[27, 10] = 60.0  # view row 10 (src row 1), predicted 100 m -> capped at 70
    d0[27, 11] = 80.0  # beyond 70 m: not scored
    d0[5, 5], d0[40, 100] = 7.0, 9.0  # outside rows 17:38 (above / below the 2:1 crop): not scored
    depths[1][17, 0] = 5.0  # image 1: one pixel, predicted 10 m
    root = write_make3d(tmp_path / "make3d", depths)  # image 2: no GT pixel at all
    disp = np.full((3, 3, 4), 0.2, np.float32)
    disp[0, :, 1], disp[0, :, 2], disp[0, 1, 0] = 0.5, 0.25, 0.01
    disp[1] = 0.1
    # INTER_NEAREST from 4 to 305 columns: src = floor(x * 4 / 305): column 152 -> 1, 153 -> 2
    assert [int(np.floor(x * 4 / 305)) for x in (152, 153)] == [1, 2]
    assert tuple(sorted(MAKE3D_IDS)) == MAKE3D_IDS  # the set is sorted by id: image k is depths[k]
    np.save(tmp_path / "disp.npy", disp)
    return root


def test_make3d_metrics_hand_computed(tmp_path, capsys):
    root = _make3d_case(tmp_path)
    rc, out = _eval(capsys, "--dataset", "make3d", "--data-path", root, "--disparities",
                    tmp_path / "disp.npy", "--no-median-scaling", "--json", tmp_path / "m.json")
    assert rc == 0, out.err
    m = json.loads((tmp_path / "m.json").read_text())
    # image 0: (2 vs 2), (4 vs 4), (60 vs min(100, 70)); image 1: (5 vs 10); image 2: nothing -> left out
    l10 = math.log10
    assert m["n_images"] == 2
    assert m["abs_rel"] == pytest.approx(((10 / 60) / 3 + 1.0) / 2, rel=1e-12)
    assert m["sq_rel"] == pytest.approx(((100 / 60) / 3 + 25 / 5) / 2, rel=1e-12)
    assert m["rmse"] == pytest.approx((math.sqrt(100 / 3) + 5.0) / 2, rel=1e-12)
    assert m["rmse_log10"] == pytest.approx((math.sqrt(l10(60 / 70) ** 2 / 3) + l10(2)) / 2, rel=1e-9)
    assert set(m) == {"protocol", "abs_rel", "sq_rel", "rmse", "rmse_log10", "n_images", "ratio_median",
                      "ratio_std"}
    assert m["protocol"].startswith("make3d Test134 | 3 images (the official set has 134) | input saved "
                                    "disparities | crop C1") and "| scaling none |" in m["protocol"]
    assert "0 < gt < 70 m, prediction clamped to [0, 70] m" in m["protocol"]
    assert "disparity INTER_NEAREST to the GT" in m["protocol"] and f"protocol: {m['protocol']}" in out.out
    assert "rmse_log10" in out.out and "abs_rel" in out.out
    # median scaling: image 0 ratio median(2,4,60)/median(2,4,100) = 1, image 1 ratio 0.5 -> exact
    rc, out = _eval(capsys, "--dataset", "make3d", "--data-path", root, "--disparities",
                    tmp_path / "disp.npy", "--json", tmp_path / "med.json", "--per-image", tmp_path / "p.csv")
    assert rc == 0, out.err
    med = json.loads((tmp_path / "med.json").read_text())
    assert med["abs_rel"] == pytest.approx((10 / 60) / 3 / 2, rel=1e-12)
    assert med["ratio_median"] == pytest.approx(0.75) and "| scaling median per image |" in med["protocol"]
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "index,name,n_valid,ratio,abs_rel,sq_rel,rmse,rmse_log10" and len(rows) == 4
    assert rows[1].startswith(f"0,img-{MAKE3D_IDS[0]}.jpg,3,1,")
    assert rows[3].startswith(f"2,img-{MAKE3D_IDS[2]}.jpg,0,")


def test_make3d_nearest_resize_is_what_makes_the_zero_errors(tmp_path):
    """The same case scored with a bilinear resize gives non-zero errors at the step: the test
    above can tell the two resizes apart."""
    root = _make3d_case(tmp_path)
    es = load_eval_set("make3d", root)
    disp = np.load(tmp_path / "disp.npy")
    near = score_per_image(disp, es.gts, MAKE3D, median_scaling=False)
    lin = score_per_image(disp, es.gts, replace(MAKE3D, resize="linear"), median_scaling=False)
    assert near["abs_rel"][0] == pytest.approx((10 / 60) / 3, rel=1e-12)
    assert lin["abs_rel"][0] > near["abs_rel"][0] + 0.05


def test_make3d_missing_and_malformed_files(tmp_path, capsys):
    root = write_make3d(tmp_path / "make3d")
    np.save(tmp_path / "d.npy", np.full((3, 4, 8), 0.1, np.float32))
    args = ("--dataset", "make3d", "--data-path", root, "--disparities", tmp_path / "d.npy")
    mat = root / "Gridlaserdata" / f"depth_sph_corr-{MAKE3D_IDS[1]}.mat"
    good = mat.read_bytes()
    mat.unlink()
    rc, out = _eval(capsys, *args)
    assert rc == 2 and f"missing Make3D laser depth file: {mat}" in _one_line(out.err)
    mat.write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 10)
    rc, out = _eval(capsys, *args)
    assert rc == 2 and f"corrupt or unreadable Make3D laser depth file {mat}" in _one_line(out.err)
    scipy.io.savemat(str(mat), {"depthMap": np.zeros((55, 305))})
    rc, out = _eval(capsys, *args)
    assert rc == 2 and f"{mat} has no variable 'Position3DGrid'" in _one_line(out.err)
    scipy.io.savemat(str(mat), {"Position3DGrid": np.zeros((55, 305, 3))})
    rc, out = _eval(capsys, *args)
    assert rc == 2 and "must be a numeric rows x cols x 4 array" in _one_line(out.err)
    mat.write_bytes(good)
    assert read_laser_depth(mat).shape == (55, 305)
    shutil.rmtree(root / "Test134")
    rc, out = _eval(capsys, *args)
    assert rc == 2 and f"Make3D: {root / 'Test134'} not found" in _one_line(out.err)


def test_make3d_checkpoint_feeds_the_crop_to_the_network(tmp_path, capsys):
    """End to end with a model: evaluate.py's numbers equal predicting on the 2:1 crops by hand."""

    root = write_make3d(tmp_path / "make3d")
    cfg = load_config(overrides=["data.height=64", "data.width=128"])
    nets = write_checkpoint(tmp_path / "ck.pt", cfg)
    rc, out = _eval(capsys, "--dataset", "make3d", "--data-path", root, "--checkpoint", tmp_path / "ck.pt",
                    "--json", tmp_path / "m.json")
    assert rc == 0, out.err
    m = json.loads((tmp_path / "m.json").read_text())
    es = load_eval_set("make3d", root)
    crops = [read_image(root / "Test134" / n)[20:44] for n in es.names]
    disp = predict_disparities(nets.depth_net, crops, (128, 64), min_depth=cfg.model.min_depth,
                               max_depth=cfg.model.max_depth)
    ref = score_per_image(disp, es.gts, MAKE3D)
    assert m["abs_rel"] == pytest.approx(float(np.mean(ref["abs_rel"])), rel=1e-6)
    assert "| input the centre 2:1 crop of each image (852 of 2272 rows), network 128x64 |" in m["protocol"]
    assert "resize image INTER_AREA to 128x64, disparity INTER_NEAREST to the GT" in m["protocol"]


# -------------------------------------------------------------------------------------- Cityscapes
def _city_raw():
    raw = np.zeros(CITY_HW, np.uint16)
    raw[40, 100] = 513  # (513 - 1) / 256 = 2 px -> 0.2 m * 100 px / 2 = 10 m   (inside the box)
    raw[50, 200] = 257  # 1 px -> 20 m                                         (inside the box)
    raw[60, 30] = 1  # zero disparity (infinitely far): no GT
    raw[10, 100] = raw[40, 10] = raw[40, 240] = 513  # above row 32, left of column 24, right of 232
    raw[100, 100] = 513  # the bottom 25 % (ego car)
    return raw


def test_cityscapes_disparity_camera_and_depth(tmp_path):
    root = write_cityscapes(tmp_path / "cs", [_city_raw(), _city_raw()])
    city, frame = CITY_FRAMES[0]
    d = read_disparity_png(root / "disparity" / "test" / city / f"{frame}_disparity.png")
    assert d[40, 100] == 2.0 and d[50, 200] == 1.0 and d[60, 30] == 0.0 and d[0, 0] == 0.0
    b, fx = read_camera(root / "camera" / "test" / city / f"{frame}_camera.json")
    assert (b, fx) == (0.2, 100.0)
    z = disparity_to_depth(d, b, fx)
    assert z[40, 100] == pytest.approx(10.0) and z[50, 200] == pytest.approx(20.0)
    assert z[60, 30] == 0.0 and z[0, 0] == 0.0  # p = 1 (zero disparity) and p = 0 (invalid): no GT
    # ManyDepth's crop at the real size, and at this 1/8 size
    assert cityscapes_eval_box(768, 2048) == (256, 768, 192, 1856)
    assert cityscapes_eval_box(96, 256) == (32, 96, 24, 232)
    es = load_eval_set("cityscapes", root, split=str(root / "test_files.txt"))
    assert es.images[0].shape == (96, 256, 3) and es.gts[0].shape == (96, 256)
    np.testing.assert_array_equal(es.images[1], read_image(
        root / "leftImg8bit" / "test" / CITY_FRAMES[1][0] / f"{CITY_FRAMES[1][1]}_leftImg8bit.png")[:96])
    lines = read_cityscapes_split()
    assert len(lines) == CITYSCAPES_TEST_COUNT == 1525 and lines[0].frame == "leverkusen_000039_000019"
    assert CITYSCAPES_TEST_FILES.read_text().count("\n") == 1525


def test_cityscapes_metrics_hand_computed_and_manydepth_gt(tmp_path, capsys):
    root = write_cityscapes(tmp_path / "cs", [_city_raw(), _city_raw()])
    np.save(tmp_path / "d.npy", np.full((2, 24, 64), 0.05, np.float32))
    common = ("--dataset", "cityscapes", "--data-path", root, "--split", root / "test_files.txt",
              "--disparities", tmp_path / "d.npy")
    rc, out = _eval(capsys, *common, "--json", tmp_path / "m.json")
    assert rc == 0, out.err
    m = json.loads((tmp_path / "m.json").read_text())
    # only (10 m, 20 m) count; median scaling puts the constant prediction at 15 m
    assert m["abs_rel"] == pytest.approx((5 / 10 + 5 / 20) / 2, rel=1e-12)
    assert m["sq_rel"] == pytest.approx((25 / 10 + 25 / 20) / 2, rel=1e-12)
    assert m["rmse"] == pytest.approx(5.0, rel=1e-12)
    want = math.sqrt((math.log(10 / 15) ** 2 + math.log(20 / 15) ** 2) / 2)
    assert m["rmse_log"] == pytest.approx(want, rel=1e-12)
    assert (m["a1"], m["a2"], m["a3"]) == (0.0, 1.0, 1.0)  # 1.5 and 1.33: not < 1.25, both < 1.5625
    assert m["n_images"] == 2 and m["ratio_median"] == pytest.approx(15 / 20)
    assert m["protocol"].startswith(f"cityscapes test ({root / 'test_files.txt'}) | 2 images | input saved")
    assert "1e-3" not in m["protocol"] and "0.001 < gt < 80 m" in m["protocol"]
    # ManyDepth's precomputed GT (full-resolution NNN_depth.npy in split order), as a folder and a zip
    gt = tmp_path / "splits" / "cityscapes" / "gt_depths"
    gt.mkdir(parents=True)
    for i, (city, frame) in enumerate(CITY_FRAMES):
        png = root / "disparity" / "test" / city / f"{frame}_disparity.png"
        np.save(gt / f"{i:03d}_depth.npy", disparity_to_depth(read_disparity_png(png), 0.2, 100.0))
    with zipfile.ZipFile(tmp_path / "gt_depths_cityscapes.zip", "w") as z:
        for p in sorted(gt.iterdir()):
            z.write(p, f"gt_depths/{p.name}")
    for source in (gt.parent, gt, tmp_path / "gt_depths_cityscapes.zip"):
        shutil.rmtree(root / "disparity", ignore_errors=True)  # not needed with ManyDepth's GT
        rc, out = _eval(capsys, *common, "--gt", source, "--json", tmp_path / "g.json")
        assert rc == 0, out.err
        assert json.loads((tmp_path / "g.json").read_text()) == m


def test_cityscapes_prediction_is_resized_to_the_cut_gt(tmp_path, capsys):
    """ManyDepth's order: the disparity of the top-75 % input is resized to the top-75 % GT (96 x 256
    here), not to the full map; checked against cv2.resize at the two GT pixels."""
    root = write_cityscapes(tmp_path / "cs", [_city_raw(), _city_raw()])
    disp = np.linspace(0.02, 0.2, 24, dtype=np.float32)[None, :, None] * np.ones((2, 24, 64), np.float32)
    np.save(tmp_path / "d.npy", disp)
    rc, out = _eval(capsys, "--dataset", "cityscapes", "--data-path", root, "--split",
                    root / "test_files.txt", "--disparities", tmp_path / "d.npy", "--no-median-scaling",
                    "--json", tmp_path / "m.json")
    assert rc == 0, out.err
    up = cv2.resize(disp[0], (256, 96), interpolation=cv2.INTER_LINEAR)
    pred = np.clip(1.0 / up[[40, 50], [100, 200]].astype(np.float32), 1e-3, 80).astype(np.float64)
    want = float(np.mean(np.abs(np.array([10.0, 20.0]) - pred) / np.array([10.0, 20.0])))
    assert json.loads((tmp_path / "m.json").read_text())["abs_rel"] == pytest.approx(want, rel=1e-6)
    wrong = cv2.resize(disp[0], (256, 128), interpolation=cv2.INTER_LINEAR)  # resized to the uncut map
    pw = 1.0 / wrong[[40, 50], [100, 200]]
    assert abs(float(np.mean(np.abs(np.array([10.0, 20.0]) - pw) / np.array([10.0, 20.0]))) - want) > 1e-3


def test_cityscapes_missing_and_malformed_files(tmp_path, capsys):
    root = write_cityscapes(tmp_path / "cs")
    np.save(tmp_path / "d.npy", np.full((2, 24, 64), 0.05, np.float32))
    args = ("--dataset", "cityscapes", "--data-path", root, "--disparities", tmp_path / "d.npy")
    # the default split is ManyDepth's 1525 frames, which this folder does not hold
    rc, out = _eval(capsys, *args)
    assert rc == 2
    assert "missing Cityscapes file:" in _one_line(out.err) and "leverkusen_000039_000019" in out.err
    args += ("--split", root / "test_files.txt")
    city, frame = CITY_FRAMES[1]
    cam = root / "camera" / "test" / city / f"{frame}_camera.json"
    cam.write_text(json.dumps({"intrinsic": {"fx": 100.0}}))
    rc, out = _eval(capsys, *args)
    assert rc == 2
    assert f"Cityscapes camera file {cam}: expected a number at extrinsic.baseline" in _one_line(out.err)
    cam.write_text("{not json")
    rc, out = _eval(capsys, *args)
    assert rc == 2 and f"Cityscapes camera file {cam} is not valid JSON" in _one_line(out.err)
    cam.unlink()
    rc, out = _eval(capsys, *args)
    assert rc == 2 and f"missing Cityscapes file: {cam}" in _one_line(out.err)
    write_cityscapes(root)
    png = root / "disparity" / "test" / city / f"{frame}_disparity.png"
    cv2.imwrite(str(png), np.zeros(CITY_HW, np.uint8))
    rc, out = _eval(capsys, *args)
    assert rc == 2
    assert f"Cityscapes disparity map {png} must be a single-channel 16-bit PNG" in _one_line(out.err)
    (tmp_path / "gt").mkdir()
    np.save(tmp_path / "gt" / "000_depth.npy", np.zeros(CITY_HW, np.float32))
    rc, out = _eval(capsys, *args, "--gt", tmp_path / "gt")
    assert rc == 2 and "no 001_depth.npy (1 of 2 maps missing" in _one_line(out.err)
    (tmp_path / "gt" / "001_depth.npy").write_bytes(b"garbage")
    rc, out = _eval(capsys, *args, "--gt", tmp_path / "gt")
    assert rc == 2 and f"corrupt or unreadable Cityscapes GT map {tmp_path / 'gt' / '001_depth.npy'}" in \
        _one_line(out.err)
    (tmp_path / "bad.txt").write_text("berlin\n")
    rc, out = _eval(capsys, "--dataset", "cityscapes", "--data-path", root, "--disparities",
                    tmp_path / "d.npy", "--split", tmp_path / "bad.txt")
    assert rc == 2
    assert f"{tmp_path / 'bad.txt'}:1: expected '<city> <city>_<seq>_<frame>'" in _one_line(out.err)


# ------------------------------------------------------------------------------------------- NYUv2
def test_nyuv2_reader_transposes_hdf5_and_uses_one_based_split(tmp_path):

    h5py = _h5py()
    root = write_nyuv2(tmp_path / "nyu")
    s = NYUv2TestSet(root)
    assert list(s.frames) == [2, 0] and s.names == ["frame 0003", "frame 0001"]
    for i, k in enumerate((2, 0)):
        img, depth = nyu_frame(k)
        got = s.image(i)
        assert got.shape == (480, 640, 3) and got.dtype == np.uint8
        np.testing.assert_array_equal(got, img)
        np.testing.assert_array_equal(s.depth(i), depth)
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "r") as f:  # laid out as MATLAB v7.3 does it
        assert f["images"].shape == (NYU_FRAMES, 3, 640, 480) and f["depths"].shape == (NYU_FRAMES, 640, 480)
    assert (root / "nyu_depth_v2_labeled.mat").read_bytes()[:10] == b"MATLAB 7.3"


def test_nyuv2_metrics_hand_computed(tmp_path, capsys):
    def case():
        d = np.zeros((480, 640), np.float32)
        d[100, 100], d[200, 300], d[300, 500] = 2.0, 4.0, 3.0  # inside the Eigen crop
        d[10, 10], d[100, 620], d[475, 100] = 1.0, 9.0, 5.0  # outside rows 45:471 / columns 41:601
        d[150, 150], d[150, 151] = 12.0, 0.05  # outside 0.1 .. 10 m
        return d

    _h5py()
    root = write_nyuv2(tmp_path / "nyu", depths={2: case(), 0: case()})
    np.save(tmp_path / "d.npy", np.full((2, 48, 64), 0.25, np.float32))
    rc, out = _eval(capsys, "--dataset", "nyuv2", "--data-path", root, "--disparities", tmp_path / "d.npy",
                    "--json", tmp_path / "m.json")
    assert rc == 0, out.err
    m = json.loads((tmp_path / "m.json").read_text())
    l10 = math.log10
    assert m["abs_rel"] == pytest.approx((1 / 2 + 1 / 4) / 3, rel=1e-12)  # 3 m after median scaling
    assert m["log10"] == pytest.approx((abs(l10(2 / 3)) + abs(l10(4 / 3))) / 3, rel=1e-9)
    assert m["rmse"] == pytest.approx(math.sqrt(2 / 3), rel=1e-12)
    assert m["a1"] == pytest.approx(1 / 3) and m["a2"] == pytest.approx(1.0)
    assert set(m) == {"protocol", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "a1", "a2", "a3",
                      "n_images", "ratio_median", "ratio_std"}
    assert m["protocol"].startswith("nyuv2 Eigen test (splits.mat testNdxs) | 2 images (the official set "
                                    "has 654)")
    assert "crop Eigen, rows 45:471 and columns 41:601 of 480x640" in m["protocol"]
    assert "0.1 < gt < 10 m, prediction clamped to [0.1, 10] m" in m["protocol"]


def test_nyuv2_missing_and_malformed_files(tmp_path, capsys):
    h5py = _h5py()
    root = write_nyuv2(tmp_path / "nyu", test=(3, 9))
    np.save(tmp_path / "d.npy", np.full((2, 48, 64), 0.25, np.float32))
    args = ("--dataset", "nyuv2", "--data-path", root, "--disparities", tmp_path / "d.npy")
    rc, out = _eval(capsys, *args)
    assert rc == 2 and f"NYUv2 split file {root / 'splits.mat'}: testNdxs index 9 is outside 1..4" in \
        _one_line(out.err)
    scipy.io.savemat(str(root / "splits.mat"), {"trainNdxs": np.array([[1.0]])})
    rc, out = _eval(capsys, *args)
    assert rc == 2
    assert f"NYUv2 split file {root / 'splits.mat'} has no variable 'testNdxs'" in _one_line(out.err)
    (root / "splits.mat").unlink()
    rc, out = _eval(capsys, *args)
    assert rc == 2 and f"missing NYUv2 split file: {root / 'splits.mat'}" in _one_line(out.err)
    (root / "nyu_depth_v2_labeled.mat").write_bytes(b"MATLAB 5.0 MAT-file, not HDF5" + b"\0" * 200)
    rc, out = _eval(capsys, *args)
    assert rc == 2 and f"corrupt or unreadable NYUv2 labelled file {root / 'nyu_depth_v2_labeled.mat'}" in \
        _one_line(out.err)
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as f:
        f.create_dataset("images", (2, 3, 640, 480), np.uint8)
        f.create_dataset("depths", (2, 480, 640), np.float32)  # not transposed: wrong
    rc, out = _eval(capsys, *args)
    assert rc == 2 and "expected images (N, 3, W, H) and depths (N, W, H)" in _one_line(out.err)
    (root / "nyu_depth_v2_labeled.mat").unlink()
    rc, out = _eval(capsys, *args)
    assert rc == 2
    assert f"missing NYUv2 labelled file: {root / 'nyu_depth_v2_labeled.mat'}" in _one_line(out.err)


def test_dataset_arguments_that_do_not_apply(tmp_path, capsys):
    root = write_make3d(tmp_path / "make3d")
    np.save(tmp_path / "d.npy", np.full((3, 4, 8), 0.1, np.float32))
    rc, out = _eval(capsys, "--dataset", "make3d", "--disparities", tmp_path / "d.npy", "--gt",
                    tmp_path / "x")
    assert rc == 2 and "--dataset make3d needs --data-path" in _one_line(out.err)
    rc, out = _eval(capsys, "--dataset", "make3d", "--data-path", root, "--disparities", tmp_path / "d.npy",
                    "--split", "eigen")
    assert rc == 2 and "Make3D takes neither --split nor --gt" in _one_line(out.err)
    rc, out = _eval(capsys, "--dataset", "nyuv2", "--data-path", root, "--disparities", tmp_path / "d.npy",
                    "--gt-source", "velodyne")
    assert rc == 2 and "--gt-source and --exact-monodepth2 are for --dataset kitti" in _one_line(out.err)
    np.save(tmp_path / "short.npy", np.full((2, 4, 8), 0.1, np.float32))
    rc, out = _eval(capsys, "--dataset", "make3d", "--data-path", root, "--disparities",
                    tmp_path / "short.npy")
    assert rc == 2 and "holds 2 disparity maps but the make3d test set" in _one_line(out.err)


# ------------------------------------------------------------------------- one scorer, two engines
@pytest.mark.parametrize("kind", ["velodyne", "benchmark"])
def test_numpy_scorer_agrees_with_the_kitti_kernels(kind):
    """The NumPy scorer (other datasets, report pictures) and the numba Eigen kernels are two
    implementations of the KITTI protocol: they agree per image."""
    rng = np.random.default_rng(5)
    gts = [np.where(rng.random((120, 400)) < 0.1, rng.uniform(0.5, 95, (120, 400)), 0).astype(np.float32)
           for _ in range(6)]
    disp = (rng.random((6, 32, 96)) * 0.3 + 0.01).astype(np.float32)
    p = kitti_protocol("eigen", kind)
    ours = score_per_image(disp, gts, p)
    bench = kind == "benchmark"
    ref = compute_depth_metrics_per_image(disp, gts, garg_crop=not bench, gt_range_mask=not bench)
    np.testing.assert_array_equal(ours["n_valid"], ref["n_valid"])
    for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "ratio"):
        np.testing.assert_allclose(ours[k], ref[k], rtol=2e-5, err_msg=k)


def test_protocol_constants_match_their_sources():
    assert (CITYSCAPES.min_depth, CITYSCAPES.max_depth, CITYSCAPES.clamp) == (1e-3, 80.0, (1e-3, 80.0))
    assert (MAKE3D.min_depth, MAKE3D.max_depth, MAKE3D.resize) == (0.0, 70.0, "nearest")
    assert NYUV2.eval_box(480, 640) == (45, 471, 41, 601)
    assert (NYUV2.min_depth, NYUV2.max_depth) == (0.1, 10.0)
    with pytest.raises(ValueError, match="480x640"):
        NYUV2.eval_box(240, 320)
    assert CityscapesTestSet.__doc__ and MAKE3D.metrics == ("abs_rel", "sq_rel", "rmse", "rmse_log10")
