"""Stereo / mono+stereo training: the stereo source warped with true depth and the baseline
reproduces the target (also for flipped samples), and the baseline convention (training units vs
metres) travels from the config to the dataset and to the evaluation scale."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from data.datasets import build_training_data
from data.kitti import KittiRawDataset
from data.samples import collate
from data.splits import SplitEntry, read_split_file, split_file
from data.velodyne import benchmark_png_path, read_benchmark_png
from depth.config import from_dict, load_config, to_dict
from depth.eval.scale import stereo_scale
from depth.geometry import backproject, project
from depth.train.reprojection import photometric_error, warp
from depth.train.trainer import Trainer

H, W = 128, 416


def _gt_entry(root):
    """A test-drive entry (every test frame has dense GT) and its GT at the network size."""
    e = read_split_file(split_file(root / "splits", "test"))[2]
    gt = read_benchmark_png(benchmark_png_path(root, e.folder, e.frame, e.side))
    return e, cv2.resize(gt, (W, H), interpolation=cv2.INTER_NEAREST)


def _errors(sample, depth: np.ndarray, T: torch.Tensor | None = None):
    """Mean photometric error of the stereo partner warped into the target (valid GT pixels whose
    projection lands inside the partner), and of the unwarped partner, for comparison."""
    color = sample.images()[0][None]  # float32 in [0, 1], as the device sees it
    target, partner = color[:, 0], color[:, -1]
    d = torch.from_numpy(np.where(depth > 0, depth, 1e3).astype(np.float32))[None, None]
    T = sample["T_stereo"][None] if T is None else T[None]
    K = sample["K"][None]
    warped = warp(partner, d, K, T)
    uv = project(backproject(d, K), K, T)[0]
    inside = (uv[0] >= 0) & (uv[0] <= W - 1) & (uv[1] >= 0) & (uv[1] <= H - 1)
    valid = torch.from_numpy(depth > 0) & inside
    pe = photometric_error(warped, target)[0, 0]
    pe_id = photometric_error(partner, target)[0, 0]
    return float(pe[valid].mean()), float(pe_id[valid].mean())


def _dataset(root, e, **kw):
    return KittiRawDataset(root, [e], H, W, frame_ids=[0, -1, 1], is_train=True, stereo=True,
                           color_jitter_prob=0.0, **kw)


def test_stereo_warp_with_true_depth_reproduces_target(tiny_synthetic):
    e, gt = _gt_entry(tiny_synthetic)
    s = _dataset(tiny_synthetic, e, flip_prob=0.0)[0]
    assert s["color"].shape[0] == 4  # [0, -1, 1] + the stereo partner last
    assert s["T_stereo"][0, 3].item() == pytest.approx(-0.54)
    err, err_id = _errors(s, gt)
    assert err < 0.06 and err < 0.4 * err_id, (err, err_id)
    # the wrong baseline (or sign) does not explain the pair
    wrong = s["T_stereo"].clone()
    wrong[0, 3] = 0.54
    assert _errors(s, gt, wrong)[0] > 2 * err
    half = s["T_stereo"].clone()
    half[0, 3] = -0.27
    assert _errors(s, gt, half)[0] > 1.5 * err


def test_flipped_stereo_sample_keeps_photometric_error_small(tiny_synthetic):
    e, gt = _gt_entry(tiny_synthetic)
    plain = _dataset(tiny_synthetic, e, flip_prob=0.0)[0]
    s = _dataset(tiny_synthetic, e, flip_prob=1.0)[0]
    torch.testing.assert_close(s["color"], plain["color"].flip(-1))
    assert s["T_stereo"][0, 3].item() == pytest.approx(0.54)  # the partner is now on the left
    assert s["K"][0, 2].item() == pytest.approx(W - 1 - plain["K"][0, 2].item())
    err, err_id = _errors(s, gt[:, ::-1].copy())
    err_plain, _ = _errors(plain, gt)
    assert err < 0.06 and err < 0.4 * err_id and err < 1.3 * err_plain, (err, err_id, err_plain)
    unflipped_sign = s["T_stereo"].clone()
    unflipped_sign[0, 3] = -0.54
    assert _errors(s, gt[:, ::-1].copy(), unflipped_sign)[0] > 2 * err


def test_right_image_as_target_uses_the_opposite_sign(tiny_synthetic):
    e, _ = _gt_entry(tiny_synthetic)
    s = _dataset(tiny_synthetic, SplitEntry(e.folder, e.frame, "r"), flip_prob=0.0)[0]
    assert s["T_stereo"][0, 3].item() == pytest.approx(0.54)


def test_baseline_convention_config_to_dataset_and_eval_scale(tiny_synthetic):
    cfg = load_config("configs/synthetic_stereo.yaml",
                      [f"data.root={tiny_synthetic}", f"data.split={tiny_synthetic / 'splits'}",
                       "data.synthetic.generate=false", "data.val_gt=none"])
    assert cfg.data.stereo and cfg.data.frame_ids == [0, -1, 1]
    assert stereo_scale(cfg) == pytest.approx(27.0)  # the preset: 0.02 in the loss, 27 m per unit
    assert stereo_scale(from_dict(to_dict(cfg))) == pytest.approx(27.0)  # as stored in a checkpoint
    train_set, _, _ = build_training_data(cfg.data, cfg.augment, 0)
    assert train_set[0]["T_stereo"].abs()[0, 3].item() == pytest.approx(0.02)
    for baseline, factor in ((0.1, 5.4), (0.54, 1.0)):  # Monodepth2's convention; metric units
        cfg_b = load_config("configs/synthetic_stereo.yaml",
                            [f"data.root={tiny_synthetic}", f"data.split={tiny_synthetic / 'splits'}",
                             "data.synthetic.generate=false", "data.val_gt=none", f"data.stereo_baseline={baseline}"])
        assert stereo_scale(cfg_b) == pytest.approx(factor)
        train_set, _, _ = build_training_data(cfg_b.data, cfg_b.augment, 0)
        assert train_set[0]["T_stereo"].abs()[0, 3].item() == pytest.approx(baseline)
    # monocular models have no stereo scale; old checkpoints without the keys trained with 0.54
    assert stereo_scale(load_config(None, [])) is None
    assert stereo_scale(from_dict({"data": {"stereo": True}})) == pytest.approx(1.0)
    # S mode: frame_ids [0] + stereo
    assert load_config(None, ["data.frame_ids=[0]", "data.stereo=true"]).data.frame_ids == [0]


def test_ms_training_step_is_finite(tiny_synthetic):
    cfg = load_config("configs/synthetic_stereo.yaml",
                      [f"data.root={tiny_synthetic}", f"data.split={tiny_synthetic / 'splits'}",
                       "data.synthetic.generate=false", "data.val_gt=none", "train.batch_size=2",
                       "data.height=64", "data.width=192"])
    train_set, _, _ = build_training_data(cfg.data, cfg.augment, 0)
    trainer = Trainer(cfg, train_set, device="cpu")
    terms, _ = trainer.compute_loss(collate([train_set[0], train_set[1]]))
    assert torch.isfinite(terms.total)
