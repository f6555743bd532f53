"""depth/eval/eigen.py (scale tests, ATE), the post-processing of depth/model.py and the evaluate.py
command line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from depth.config import load_config
from depth.eval.gt import SparseGT, save_sparse_gt
from depth.eval.metrics import compute_depth_metrics
from depth.eval.pose import (
    compute_ate,
    dump_xyz,
    gt_local_poses,
    load_odometry_poses,
    snippet_ates,
)
from depth.eval.robustness import scale_robustness, zoom_robustness
from depth.inference import (
    batch_post_process_disparity,
    centre_window,
    predict_disparities,
    predict_relative_poses,
    zoom_post_process,
    zoom_window,
)
from tests import dabnet_reference
from tests.helpers import write_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_flip_post_process_matches_monodepth2_formula():
    rng = np.random.default_rng(0)
    l, r = rng.random((2, 3, 8, 40)).astype(np.float32)
    out = batch_post_process_disparity(l, r)
    w = 40
    ramp = 1.0 - np.clip(20 * (np.linspace(0, 1, w) - 0.05), 0, 1)
    expected = ramp[::-1] * l + ramp * r + (1 - ramp - ramp[::-1]) * 0.5 * (l + r)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(batch_post_process_disparity(l, l), l, rtol=1e-6)
    assert out[..., 0] == pytest.approx(r[..., 0]) and out[..., -1] == pytest.approx(l[..., -1])


def test_centre_window():
    assert centre_window(375, 1242, 2) == (93, 281, 310, 931)
    assert centre_window(100, 200, 1) == (0, 100, 0, 200)
    with pytest.raises(ValueError):
        centre_window(10, 10, 0.5)


def _const_predict(value):
    def predict(x):
        assert x.dim() == 4 and x.shape[1] == 3 and 0 <= float(x.min()) and float(x.max()) <= 1
        return torch.full((x.shape[0], 1, x.shape[2], x.shape[3]), value)
    return predict


def _brightness_predict(x):  # disparity follows the image: lets us see which pixels were used
    return x.mean(1, keepdim=True)


def test_zoom_post_process_averages_inside_windows():
    imgs = [np.full((60, 200, 3), 100, np.uint8)]
    d = zoom_post_process(_const_predict(0.25), imgs, (100, 30), min_depth=0.1, max_depth=100)
    expected = 0.01 + (10 - 0.01) * 0.25
    np.testing.assert_allclose(d, expected, rtol=1e-5)
    img = np.zeros((60, 200, 3), np.uint8)
    img[15:45, 50:150] = 255  # exactly the 2x centre window
    d = zoom_post_process(_brightness_predict, [img], (100, 30))
    full = predict_disparities(_brightness_predict, [img], (100, 30))
    t, b, l, r = centre_window(30, 100, 2)
    assert d[0, 0, 0] == pytest.approx(full[0, 0, 0])  # outside every window: the full prediction
    assert d[0, (t + b) // 2, (l + r) // 2] > full[0, (t + b) // 2, (l + r) // 2] - 1e-6


def test_zoom_post_process_hand_values_per_window():
    """A network whose constant output is the bright fraction of what it sees, on a network-size
    image bright exactly in its centre half: the full view sees 1/4 bright, the 2x zoom all bright,
    the 4/3 zoom 4/9 (the bright 16x48 of its 24x72 window). The authors' order (zoom_pp, then
    zoom_pp_twice) gives d/4 + z2/4 + z4/3 / 2 in the half window, (d + z4/3)/2 in the ring up to
    3/4, d outside -- hand values, so a no-op, a plain mean or a wrong window fails."""
    img = np.zeros((32, 96, 3), np.uint8)
    img[8:24, 24:72] = 255  # the centre half of a 32x96 image = the network size (no resize)
    mean_input = lambda x: x.mean((1, 2, 3), keepdim=True).expand(x.shape[0], 1, *x.shape[2:])  # noqa: E731
    lo, hi = 1 / 100, 1 / 0.1
    disp = lambda s: lo + (hi - lo) * s  # noqa: E731  (scaled disparity of a sigmoid output s)
    d = zoom_post_process(mean_input, [img], (96, 32), min_depth=0.1, max_depth=100)[0]
    assert d.shape == (32, 96)
    assert zoom_window(32, 96, 0.5) == (8, 24, 24, 72) and zoom_window(32, 96, 0.75) == (4, 28, 12, 84)
    full, two = disp(0.25), disp(1.0)
    crop = torch.from_numpy(img[4:28, 12:84]).permute(2, 0, 1)[None].float() / 255
    four_thirds = disp(float(F.interpolate(crop, (32, 96), mode="bilinear", align_corners=False).mean()))
    assert four_thirds == pytest.approx(disp(4 / 9), rel=2e-2)
    assert d[0, 0] == pytest.approx(full, rel=1e-5)  # outside both windows
    assert d[16, 14] == pytest.approx((full + four_thirds) / 2, rel=1e-5)  # in the ring
    assert d[16, 48] == pytest.approx(full / 4 + two / 4 + four_thirds / 2, rel=1e-5)  # in the half window


def test_zoom_post_process_equals_the_authors_zoom_pp_then_zoom_pp_twice():
    """--post-process zoom against tests/dabnet_reference.py's re-implementation of the authors'
    eval_depth_pp.py (zoom_pp at 0.5, zoom_pp_twice at 0.75, on the sigmoid, then disp_to_depth),
    with a network whose output depends on where and what it sees, at their sizes."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 3, padding=1),
                              torch.nn.Sigmoid()).eval()
    rng = np.random.default_rng(0)
    for h, w in ((192, 640), (64, 96)):
        imgs = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(2)]
        ours = predict_disparities(net, imgs, (w, h), post_process="zoom", min_depth=0.1, max_depth=100)
        x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            theirs = dabnet_reference.evaluate_zoom_pp(net, x)[:, 0].numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
        plain = predict_disparities(net, imgs, (w, h))
        assert np.abs(ours - plain).max() > 1e-3  # the post-processing changed something


def test_flip_post_process_in_predict():
    imgs = [np.random.default_rng(1).integers(0, 255, (30, 100, 3), dtype=np.uint8) for _ in range(3)]
    plain = predict_disparities(_brightness_predict, imgs, (100, 30))
    flip = predict_disparities(_brightness_predict, imgs, (100, 30), post_process="flip", batch_size=2)
    assert flip.shape == plain.shape == (3, 30, 100)
    # a brightness "network" is flip-equivariant: post-processing changes nothing
    np.testing.assert_allclose(flip, plain, rtol=1e-5)


def _leaning_predict(x):
    """Not flip-equivariant: half the brightness plus a left-to-right ramp (0 at the left edge)."""
    ramp = torch.linspace(0, 1, x.shape[-1]).view(1, 1, 1, -1)
    return 0.5 * x.mean(1, keepdim=True) + 0.5 * ramp


def test_flip_post_process_with_a_network_that_is_not_flip_symmetric():
    """Monodepth2's flip post-processing, by hand in numpy: l = prediction, r = prediction of the
    mirrored image mirrored back, out = r_mask * l + l_mask * r + (1 - l_mask - r_mask) * (l + r) / 2
    with l_mask = 1 - clip(20 (x - 0.05), 0, 1) over x = linspace(0, 1, w), r_mask = l_mask mirrored.
    A network that leans one way makes l and r differ, so a no-op, a missing mirror-back or
    swapped masks each fail."""
    imgs = [np.random.default_rng(4).integers(0, 255, (30, 100, 3), dtype=np.uint8) for _ in range(2)]
    got = predict_disparities(_leaning_predict, imgs, (100, 30), post_process="flip", min_depth=0.1,
                              max_depth=100)
    lo, hi = 1 / 100, 1 / 0.1
    x = np.linspace(0, 1, 100)
    l_mask = 1.0 - np.clip(20 * (x - 0.05), 0, 1)
    r_mask = l_mask[::-1]
    for img, out in zip(imgs, got):
        bright = img.astype(np.float64).mean(2) / 255.0
        l_sig = 0.5 * bright + 0.5 * x  # on the image
        r_sig = (0.5 * bright[:, ::-1] + 0.5 * x)[:, ::-1]  # on the mirrored image, mirrored back
        l, r = lo + (hi - lo) * l_sig, lo + (hi - lo) * r_sig
        expected = r_mask * l + l_mask * r + (1 - l_mask - r_mask) * 0.5 * (l + r)
        np.testing.assert_allclose(out, expected, rtol=1e-5)
        assert np.abs(l - r).mean() > 0.2 * np.abs(l).mean()  # the case is not symmetric


@pytest.mark.parametrize("mode", ["zoom", "crop"])
def test_scale_robustness_modes(mode):
    rng = np.random.default_rng(2)
    imgs = [rng.integers(0, 255, (60, 200, 3), dtype=np.uint8) for _ in range(2)]
    gts = [np.where(rng.random((60, 200)) < 0.3, rng.uniform(1, 70, (60, 200)), 0).astype(np.float32)
           for _ in range(2)]
    res = scale_robustness(_brightness_predict, imgs, gts, (100, 30), 2.0, mode=mode, garg_crop=False)
    wins = np.array([centre_window(60, 200, 2.0)] * 2)
    if mode == "crop":
        disp = predict_disparities(_brightness_predict, imgs, (100, 30))
    else:
        disp = predict_disparities(_brightness_predict, imgs, (100, 30), zoom=2.0)
    ref = compute_depth_metrics(disp, gts, windows=wins, pred_in_window=(mode == "zoom"), garg_crop=False)
    assert res == pytest.approx(ref)


def _ramp_scene(n=2):
    rng = np.random.default_rng(3)
    rows = np.linspace(40, 210, 60)[:, None, None]  # brightness encodes the scene row
    imgs = [np.broadcast_to(rows, (60, 200, 3)).astype(np.uint8).copy() for _ in range(n)]
    gts = [np.where(rng.random((60, 200)) < 0.5, rng.uniform(1, 70, (60, 200)), 0).astype(np.float32)
           for _ in range(n)]
    return imgs, gts


def test_zoom_robustness_content_network_is_zoom_invariant():
    imgs, gts = _ramp_scene()
    res = zoom_robustness(_brightness_predict, imgs, gts, (100, 30), 2.0, garg_crop=False)
    # depth is a function of what is seen, not of how large it looks: zooming changes nothing
    assert res["depth_shift"] == pytest.approx(1.0, abs=0.02)
    assert abs(res["gap"]) < 0.02
    assert res["gap"] == pytest.approx(res["zoom_abs_rel"] - res["crop_abs_rel"])
    ref = scale_robustness(_brightness_predict, imgs, gts, (100, 30), 2.0, mode="zoom", garg_crop=False)
    assert res["zoom_abs_rel"] == pytest.approx(ref["abs_rel"])


def test_zoom_robustness_sees_a_network_that_reads_apparent_size():
    imgs, gts = _ramp_scene()

    def size_predict(x):  # constant disparity proportional to how large the ramp looks (2x when zoomed 2x)
        spread = x.mean(1).amax((1, 2)) - x.mean(1).amin((1, 2))
        return (0.05 / spread).view(-1, 1, 1, 1).expand(-1, 1, x.shape[2], x.shape[3])

    res = zoom_robustness(size_predict, imgs, gts, (100, 30), 2.0, garg_crop=False, min_depth=0.1, max_depth=100.0)
    # hand-computed: spread 170/255 full, ~85/255 zoomed; disp = 0.01 + 9.99 * 0.05 / spread
    full = 0.01 + 9.99 * 0.05 / (170 / 255)
    zoomed = 0.01 + 9.99 * 0.05 / (85 / 255)
    assert res["depth_shift"] == pytest.approx(full / zoomed, abs=0.02)  # ~0.5: depth follows apparent size
    assert abs(res["gap"]) < 1e-3  # ...which per-image median scaling hides from the gap


def test_ate_perfect_and_known_perturbation():
    gt_xyz = np.array([[0, 0, k] for k in range(5)], float)
    assert compute_ate(gt_xyz, gt_xyz) == 0.0
    assert compute_ate(gt_xyz, 2.5 * gt_xyz) == pytest.approx(0.0, abs=1e-12)  # one scale per snippet
    pred = gt_xyz.copy()
    pred[4, 0] = 1.0  # last position off by 1 m sideways
    s = 30.0 / 31.0  # least-squares scale sum(g.p)/sum(p.p)
    expected = np.sqrt(30 * (s - 1) ** 2 + s ** 2) / 5  # hand-computed: = sqrt(930)/155
    assert compute_ate(gt_xyz, pred) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(np.sqrt(930) / 155)


def test_predict_relative_poses_pairs_consecutive_frames_in_batches():
    frames = [np.full((30, 100, 3), 10 * i, np.uint8) for i in range(5)]
    seen = []

    def pose_predict(a, b):  # translation x = brightness step from a to b; no rotation
        seen.append(a.shape[0])
        assert a.shape[1:] == b.shape[1:] == (3, 12, 40)
        step = (b.mean((1, 2, 3)) - a.mean((1, 2, 3))) * 25.5
        return torch.zeros(a.shape[0], 3), torch.stack([step, 0 * step, 0 * step], 1)

    T = predict_relative_poses(pose_predict, iter(frames), (40, 12), batch_size=3)
    assert T.shape == (4, 4, 4) and seen == [3, 1]
    np.testing.assert_allclose(T[:, 0, 3], 1.0, rtol=1e-5)
    np.testing.assert_allclose(T[:, :3, :3], np.broadcast_to(np.eye(3), (4, 3, 3)), atol=1e-6)
    assert predict_relative_poses(pose_predict, frames[:1], (40, 12)).shape == (0, 4, 4)


def test_snippet_ates_on_real_odometry_poses(kitti_sample, tmp_path):
    gt = load_odometry_poses(kitti_sample / "odometry_poses" / "09.txt")[:40]
    local = gt_local_poses(gt)
    assert len(local) == 39
    ates = snippet_ates(local, gt)
    assert len(ates) == 39 and np.max(ates) < 1e-9
    pred = local.copy()
    pred[:, :3, 3] *= 0.37  # a global scale: still perfect with per-snippet scale
    assert np.max(snippet_ates(pred, gt)) < 1e-9
    pred = local.copy()
    pred[10, 0, 3] += 0.5
    ates = snippet_ates(pred, gt)
    assert np.all(ates[11:] < 1e-9) and np.all(ates[7:11] > 1e-3)  # snippets holding step 10 only
    first = dump_xyz(pred[7:11])
    assert ates[7] == pytest.approx(compute_ate(dump_xyz(local[7:11]), first))
    with pytest.raises(ValueError, match="must match"):
        snippet_ates(local[:-1], gt)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def test_cli_depth_disparities_on_generated_gt(tmp_path):
    rng = np.random.default_rng(3)
    n = 5
    gts = [np.where(rng.random((120, 400)) < 0.05, rng.uniform(1, 90, (120, 400)), 0).astype(np.float32)
           for _ in range(n)]
    gt = SparseGT.from_dense(gts, entries=[f"d/x_sync {i} l" for i in range(n)])
    save_sparse_gt(tmp_path / "gt.npz", gt)
    (tmp_path / "split.txt").write_text("".join(f"d/x_sync {i} l\n" for i in range(n)))
    disp = (rng.random((n, 32, 96)) * 0.3 + 0.01).astype(np.float32)
    np.save(tmp_path / "disp.npy", disp)
    r = _run("depth", "--disparities", tmp_path / "disp.npy", "--gt", tmp_path / "gt.npz", "--split",
             tmp_path / "split.txt", "--json", tmp_path / "m.json", "--per-image", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr
    assert "abs_rel" in r.stdout and "Scaling ratios" in r.stdout
    got = json.loads((tmp_path / "m.json").read_text())
    ref = compute_depth_metrics(disp, gts)
    # the protocol line, printed and stored: velodyne rules, 5 saved disparity maps, median scaling
    line = got.pop("protocol")
    assert f"protocol: {line}" in r.stdout
    assert line.startswith(f"kitti {tmp_path / 'split.txt'} (velodyne GT) | 5 images | input saved disparities | "
                           f"crop Garg") and "| depth 0.001 < gt < 80 m" in line
    assert "| scaling median per image | post-process none | resize disparity INTER_LINEAR to the GT" in line
    assert set(got) == {"abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "n_images", "ratio_median",
                        "ratio_std"}
    for k, v in got.items():
        assert v == pytest.approx(ref[k], rel=1e-12), k
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert len(lines) == n + 1 and lines[0].startswith("index,folder,frame,side,n_valid,ratio,abs_rel")
    # count mismatch: a clear error, exit status 2
    np.save(tmp_path / "short.npy", disp[:3])
    r = _run("depth", "--disparities", tmp_path / "short.npy", "--gt", tmp_path / "gt.npz", "--split",
             tmp_path / "split.txt")
    assert r.returncode == 2 and "holds 3 disparity maps but split" in r.stderr
    # GT made for another split
    (tmp_path / "other.txt").write_text("".join(f"d/y_sync {i} l\n" for i in range(n)))
    r = _run("depth", "--disparities", tmp_path / "disp.npy", "--gt", tmp_path / "gt.npz", "--split",
             tmp_path / "other.txt")
    assert r.returncode == 2 and "made for another split" in r.stderr


def test_scoring_saved_disparities_imports_no_torch(tmp_path):
    """``depth --disparities`` runs the scoring module alone (evaluate.command_module): no torch, no
    networks; ``--checkpoint`` picks the model path."""
    import evaluate
    rng = np.random.default_rng(4)
    gts = [np.where(rng.random((60, 200)) < 0.1, rng.uniform(1, 70, (60, 200)), 0).astype(np.float32)
           for _ in range(3)]
    save_sparse_gt(tmp_path / "gt.npz", SparseGT.from_dense(gts, entries=[f"d/x_sync {i} l" for i in range(3)]))
    (tmp_path / "split.txt").write_text("".join(f"d/x_sync {i} l\n" for i in range(3)))
    np.save(tmp_path / "disp.npy", (rng.random((3, 32, 96)) * 0.3 + 0.01).astype(np.float32))
    argv = ["depth", "--disparities", str(tmp_path / "disp.npy"), "--gt", str(tmp_path / "gt.npz"),
            "--split", str(tmp_path / "split.txt"), "--json", str(tmp_path / "m.json")]
    code = (f"import sys, evaluate\nrc = evaluate.main({argv!r})\n"
            f"print('RC', rc, [m for m in ('torch', 'timm', 'kornia', 'albumentations') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.stdout.strip().splitlines()[-1] == "RC 0 []", r.stdout[-800:] + r.stderr[-800:]
    assert json.loads((tmp_path / "m.json").read_text())["n_images"] == 3
    parse = evaluate.build_parser().parse_args
    assert evaluate.command_module(parse(argv)) == "depth.commands.evaluate"
    assert evaluate.command_module(parse(["depth", "--checkpoint", "c.pt", "--data-path", "d"])) == \
        "depth.commands.evaluate_model"
    assert evaluate.command_module(parse(["pose", "--pred-poses", "p.npy"])) == "depth.commands.evaluate"
    assert evaluate.command_module(parse(["export-gt", "--data-path", "d", "--out", "g.npz"])) == \
        "depth.commands.evaluate"


def test_cli_export_gt_and_on_the_fly_gt(kitti_sample, tmp_path):
    split = tmp_path / "split.txt"
    split.write_text("".join(f"2011_09_26/2011_09_26_drive_0060_sync {i} l\n" for i in (0, 5)))
    r = _run("export-gt", "--data-path", kitti_sample, "--split", split, "--out", tmp_path / "gt.npz",
             "--no-progress")
    assert r.returncode == 0, r.stderr
    r = _run("export-gt", "--data-path", kitti_sample, "--split", split, "--out", tmp_path / "dense.npz",
             "--format", "dense", "--exact-monodepth2", "--no-progress")
    assert r.returncode == 0, r.stderr
    np.save(tmp_path / "disp.npy", np.full((2, 48, 160), 0.05, np.float32))
    outs = []
    for gt_args in (["--gt", tmp_path / "gt.npz"], ["--gt", tmp_path / "dense.npz"],
                    ["--data-path", kitti_sample, "--no-progress"]):
        r = _run("depth", "--disparities", tmp_path / "disp.npy", "--split", split, "--json",
                 tmp_path / "m.json", *gt_args)
        assert r.returncode == 0, r.stderr
        outs.append(json.loads((tmp_path / "m.json").read_text()))
    assert outs[0] == outs[2]
    assert outs[0]["abs_rel"] == pytest.approx(outs[1]["abs_rel"], rel=1e-4)  # exact vs clean GT
    assert outs[0]["n_images"] == 2


def test_cli_pose_with_external_predictions(kitti_sample, tmp_path):
    lines = (kitti_sample / "odometry_poses" / "10.txt").read_text().splitlines()[:30]
    (tmp_path / "poses.txt").write_text("\n".join(lines) + "\n")
    gt = load_odometry_poses(tmp_path / "poses.txt")
    np.save(tmp_path / "pred.npy", gt_local_poses(gt))
    r = _run("pose", "--pred-poses", tmp_path / "pred.npy", "--poses", tmp_path / "poses.txt",
             "--sequence", "10", "--json", tmp_path / "a.json")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "a.json").read_text())
    assert res["ate_mean"] < 1e-9 and res["n_snippets"] == 29


@pytest.mark.slow
def test_cli_depth_with_checkpoint(kitti_sample, tmp_path):
    """An untrained network end to end: images -> prediction -> metrics (values are meaningless)."""
    write_checkpoint(tmp_path / "ck.pt", load_config(overrides=["data.height=64", "data.width=192"]))
    split = tmp_path / "split.txt"
    split.write_text("".join(f"2011_09_26/2011_09_26_drive_0060_sync {i} l\n" for i in (0, 5)))
    results = {}
    for name, extra in (("zoompp", ["--post-process", "zoom"]), ("zoom", ["--zoom", "2"]),
                        ("crop", ["--crop", "2", "--post-process", "flip"])):
        r = _run("depth", "--checkpoint", tmp_path / "ck.pt", "--data-path", kitti_sample, "--split", split,
                 "--no-progress", "--json", tmp_path / f"{name}.json", *extra)
        assert r.returncode == 0, r.stderr
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())
        assert results[name]["n_images"] == 2 and np.isfinite(results[name]["abs_rel"])
    assert results["zoom"] != results["crop"]
