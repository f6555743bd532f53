"""Resolution robustness (RA-Depth protocol): a network run at sizes other than the trained one,
scored against the same GT with the same protocol; ``evaluate.py depth --height/--width``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluate
from data.kitti import KittiImageSet
from data.splits import read_split_file, split_file
from data.velodyne import benchmark_png_path, read_benchmark_png
from depth.config import load_config
from depth.eval.gt import save_dense_gt
from depth.eval.metrics import compute_depth_metrics
from depth.eval.robustness import RESOLUTION_FACTORS, resolution_curve, scaled_size
from depth.inference import predict_disparities
from tests.helpers import write_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_scaled_size():
    assert [scaled_size((192, 64), f) for f in RESOLUTION_FACTORS] == [
        (96, 32), (144, 48), (192, 64), (288, 96), (384, 128)]
    assert scaled_size((640, 192), 0.75) == (480, 144)
    with pytest.raises(ValueError, match="factor"):
        scaled_size((192, 64), 0.0)


def _scene(n=3, h=60, w=180):
    """GT depth that depends on the relative row only (a ground plane seen head-on), and images."""
    v = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h
    gt = np.broadcast_to(5.0 + 40.0 * (1.0 - v), (h, w)).astype(np.float32)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]
    return images, [gt.copy() for _ in range(n)]


def _relative_row_predictor(x: torch.Tensor) -> torch.Tensor:
    """A content-reading network stand-in: the sigmoid is a function of the relative row (the
    true disparity of the scene above), whatever the input size."""
    b, _, h, _ = x.shape
    v = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    disp = 1.0 / (5.0 + 40.0 * (1.0 - v))  # metres^-1 = scaled disparity
    sig = (disp - 0.01) / (10.0 - 0.01)
    return sig.view(1, 1, h, 1).expand(b, 1, h, x.shape[-1])


def _pixel_row_predictor(x: torch.Tensor) -> torch.Tensor:
    """A size-reading stand-in: the sigmoid follows the absolute row index in pixels; it is the
    true disparity at the trained height of 32 rows and wrong at any other."""
    b, _, h, w = x.shape
    v = ((torch.arange(h, dtype=torch.float32) + 0.5) / 32).clamp(max=1.0)
    sig = (1.0 / (5.0 + 40.0 * (1.0 - v)) - 0.01) / (10.0 - 0.01)
    return sig.view(1, 1, h, 1).expand(b, 1, h, w)


def test_resolution_curve_flat_for_content_reading_predictor():
    images, gt = _scene()
    curve = resolution_curve(_relative_row_predictor, images, gt, (64, 32), garg_crop=False)
    assert list(curve) == list(RESOLUTION_FACTORS)
    assert [c["size"] for c in curve.values()] == [(32, 16), (48, 24), (64, 32), (96, 48), (128, 64)]
    for f, m in curve.items():
        assert m["abs_rel"] < 0.01, f  # bilinear resizing of a smooth function: nearly exact
        assert m["abs_rel_vs_1x"] == pytest.approx(m["abs_rel"] / curve[1.0]["abs_rel"])


def test_resolution_curve_sees_a_size_reading_predictor():
    images, gt = _scene()
    curve = resolution_curve(_pixel_row_predictor, images, gt, (64, 32), garg_crop=False)
    assert curve[1.0]["abs_rel_vs_1x"] == 1.0
    assert curve[1.0]["abs_rel"] < 0.01  # right at the trained size
    assert curve[2.0]["abs_rel"] > 0.2 and curve[0.5]["abs_rel"] > 0.1  # wrong elsewhere
    assert curve[2.0]["abs_rel_vs_1x"] > 20


def test_resolution_curve_entry_is_the_plain_protocol_at_that_size():
    images, gt = _scene()
    curve = resolution_curve(_pixel_row_predictor, images, gt, (64, 32), factors=(0.75,), garg_crop=False)
    disp = predict_disparities(_pixel_row_predictor, images, (48, 24))
    expected = compute_depth_metrics(disp, gt, garg_crop=False)
    for k in ("abs_rel", "sq_rel", "rmse", "a1"):
        assert curve[0.75][k] == expected[k]
    assert "abs_rel_vs_1x" not in curve[0.75]  # no 1x reference asked for


def test_cli_height_width_runs_at_other_sizes(tiny_synthetic, tmp_path, capsys):
    """``evaluate.py depth --height 48 --width 144`` (not multiples of 32) scores the network at
    that input size: the same numbers as the library's resolution curve at 0.75x."""
    cfg = load_config(ROOT / "configs" / "synthetic.yaml", [
        f"data.root={tiny_synthetic}", f"data.split={tiny_synthetic / 'splits'}", "data.synthetic.generate=false"])
    nets = write_checkpoint(tmp_path / "model.pt", cfg, seed=3)
    entries = read_split_file(split_file(cfg.data.split, "test"))
    gt = [read_benchmark_png(benchmark_png_path(tiny_synthetic, e.folder, e.frame, e.side)) for e in entries]
    save_dense_gt(tmp_path / "gt.npz", gt)
    split = tmp_path / "split.txt"
    split.write_text("".join(f"{e.folder} {e.frame} {e.side}\n" for e in entries))
    rc = evaluate.main(["depth", "--checkpoint", str(tmp_path / "model.pt"), "--data-path", str(tiny_synthetic),
                        "--split", str(split), "--gt", str(tmp_path / "gt.npz"), "--height", "48", "--width", "144",
                        "--json", str(tmp_path / "m.json"), "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "network input 144x48 (trained at 192x64)" in out.out
    got = json.loads((tmp_path / "m.json").read_text())
    images = list(KittiImageSet(tiny_synthetic, entries))
    curve = resolution_curve(nets.depth_net, images, gt, (192, 64), factors=(0.75, 1.0))
    for k in ("abs_rel", "sq_rel", "rmse", "a1"):
        assert got[k] == pytest.approx(curve[0.75][k], rel=1e-6), k
    # a different input size (an untrained net is nearly constant, so the difference is small)
    assert abs(got["abs_rel"] - curve[1.0]["abs_rel"]) > 1e-3 * abs(got["abs_rel"] - curve[0.75]["abs_rel"]) + 1e-6


def test_cli_height_width_needs_a_model(tmp_path, capsys):
    np.save(tmp_path / "d.npy", np.ones((2, 8, 8), np.float32))
    rc = evaluate.main(["depth", "--disparities", str(tmp_path / "d.npy"), "--gt", str(tmp_path / "gt.npz"),
                        "--height", "48"])
    assert rc == 2
    assert "--height/--width" in capsys.readouterr().err
