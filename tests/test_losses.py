"""Minimum reprojection with auto-masking, edge-aware smoothness and the two loss recipes (docs/method.md §3)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depth.train.losses import (
    LossTerms,
    min_reprojection,
    self_supervised_loss,
    smoothness_first_order,
    smoothness_second_order,
)

pytestmark = pytest.mark.usefixtures("one_thread")


H, W = 32, 48
FX = FY = 40.0
CX, CY = (W - 1) / 2, (H - 1) / 2

# ---------------------------------------------------------------- min reprojection / auto-masking


def test_min_reprojection_without_automask():
    r1 = torch.tensor([[[[0.1, 0.5], [0.3, 0.9]]]])
    r2 = torch.tensor([[[[0.2, 0.4], [0.6, 0.1]]]])
    loss, mask = min_reprojection([r1, r2])
    assert loss.item() == pytest.approx((0.1 + 0.4 + 0.3 + 0.1) / 4)
    assert mask.shape == (1, 1, 2, 2) and mask.eq(1).all()


def test_min_reprojection_automask_marks_identity_winners():
    r1 = torch.tensor([[[[0.10, 0.50], [0.30, 0.90]]]])
    r2 = torch.tensor([[[[0.20, 0.40], [0.60, 0.80]]]])
    i1 = torch.tensor([[[[0.05, 0.60], [0.70, 0.95]]]])  # wins at (0, 0)
    i2 = torch.tensor([[[[0.50, 0.45], [0.20, 0.70]]]])  # wins at (1, 0) and (1, 1)
    loss, mask = min_reprojection([r1, r2], [i1, i2], noise=0.0)
    per_pixel_min = np.minimum.reduce([r1.numpy(), r2.numpy(), i1.numpy(), i2.numpy()])
    assert loss.item() == pytest.approx(per_pixel_min.mean())
    assert mask[0, 0].tolist() == [[0.0, 1.0], [0.0, 0.0]]
    # the default tie-breaking noise (1e-5) does not change clear decisions
    loss_n, mask_n = min_reprojection([r1, r2], [i1, i2], generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask_n, mask)
    assert loss_n.item() == pytest.approx(loss.item(), abs=1e-4)


def test_min_reprojection_noise_breaks_ties_towards_either_side():
    """Exact ties (static scene): the noise decides, so about half the pixels are masked."""
    r = torch.full((1, 1, 40, 40), 0.3)
    _, mask = min_reprojection([r], [r.clone()], generator=torch.Generator().manual_seed(0))
    assert 0.3 < mask.mean().item() < 0.7


def test_min_reprojection_batch_shape():
    rep = [torch.rand(2, 1, 3, 4) for _ in range(2)]
    loss, mask = min_reprojection(rep, [torch.rand(2, 1, 3, 4) for _ in range(2)])
    assert loss.dim() == 0 and mask.shape == (2, 1, 3, 4)


# ---------------------------------------------------------------- smoothness


def test_smoothness_first_order_ramp_constant_image():
    w = 4
    d = torch.arange(1.0, w + 1, dtype=torch.float64).view(1, 1, 1, w).expand(1, 1, 3, w).clone()
    img = torch.full((1, 3, 3, w), 0.4, dtype=torch.float64)
    # d / mean(d) = d / 2.5: every horizontal step is 1 / 2.5; vertical steps are 0
    expected = 1 / 2.5
    assert smoothness_first_order(d, img).item() == pytest.approx(expected, rel=1e-6)
    # without normalisation the step is 1
    assert smoothness_first_order(d, img, normalise=False).item() == pytest.approx(1.0)
    # a vertical ramp adds the same amount in y; the normalisation is scale-invariant
    d2 = d + torch.arange(3.0, dtype=torch.float64).view(1, 1, 3, 1)
    mean = d2.mean().item()
    assert smoothness_first_order(5 * d2, img).item() == pytest.approx(2 / mean, rel=1e-6)


def test_smoothness_first_order_edge_weight():
    """An image edge between columns 1 and 2 down-weights the disparity step there by exp(-w |dI|)."""
    d = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64).view(1, 1, 1, 4).expand(1, 1, 2, 4).clone()
    img = torch.zeros(1, 3, 2, 4, dtype=torch.float64)
    img[:, 0, :, 2:] = 0.9  # |dI| averaged over RGB = 0.3 at the edge
    img[:, 1, :, 2:] = 0.0
    img[:, 2, :, 2:] = 0.0
    step = 1 / 2.5
    for wgt in (1.0, 0.5):
        expected = step * (1 + math.exp(-wgt * 0.3) + 1) / 3  # mean over the 3 horizontal differences
        assert smoothness_first_order(d, img, edge_weight=wgt).item() == pytest.approx(expected, rel=1e-6)


def test_smoothness_second_order_quadratic_ramp():
    w = 5
    x = torch.arange(w, dtype=torch.float64)
    d = ((x + 1) ** 2).view(1, 1, 1, w).expand(1, 1, 4, w).clone()  # 1, 4, 9, 16, 25
    img = torch.full((1, 3, 4, w), 0.2, dtype=torch.float64)
    # second difference of (x+1)^2 is 2 everywhere; normalised by mean = 11
    assert smoothness_second_order(d, img).item() == pytest.approx(2 / 11, rel=1e-6)
    # a linear ramp has zero second-order smoothness but not zero first-order smoothness
    lin = (x + 1).view(1, 1, 1, w).expand(1, 1, 4, w).clone()
    assert smoothness_second_order(lin, img).item() == pytest.approx(0.0, abs=1e-12)
    assert smoothness_first_order(lin, img).item() > 0.1


def test_smoothness_second_order_mixed_term():
    """d = u * v: dxx = dyy = 0, dxy = dyx = 1 (before normalisation)."""
    v, u = torch.meshgrid(torch.arange(4.0, dtype=torch.float64), torch.arange(5.0, dtype=torch.float64),
                          indexing="ij")
    d = (u * v)[None, None]
    img = torch.zeros(1, 3, 4, 5, dtype=torch.float64)
    assert smoothness_second_order(d, img, normalise=False).item() == pytest.approx(2.0)


def test_smoothness_second_order_weighted_by_same_order_image_gradient():
    """dxx of d = (x+1)^2 is 2; the image I = a x^2 (all channels) has Ixx = 2a everywhere but a
    first-order gradient that grows with x: the weight must be exp(-0.5 * 2a), hand-computed."""
    w, a = 6, 0.1
    x = torch.arange(w, dtype=torch.float64)
    d = ((x + 1) ** 2).view(1, 1, 1, w).expand(1, 1, 4, w).clone()
    img = (a * x ** 2).view(1, 1, 1, w).expand(1, 3, 4, w).clone()
    expected = 2 * math.exp(-0.5 * 2 * a)  # only dxx is non-zero
    assert smoothness_second_order(d, img, 0.5, normalise=False).item() == pytest.approx(expected, rel=1e-12)


def test_smoothness_second_order_mixed_term_weighted_by_mixed_image_gradient():
    """d = u v and I = b u v: dxy = dyx = 1 and Ixy = Iyx = b (Ix = b v varies by row), so the
    value is 2 exp(-0.5 b); weighting by first-order gradients would give a row-dependent mean."""
    b = 0.3
    v, u = torch.meshgrid(torch.arange(4.0, dtype=torch.float64), torch.arange(5.0, dtype=torch.float64),
                          indexing="ij")
    d = (u * v)[None, None]
    img = (b * u * v)[None, None].expand(1, 3, 4, 5).clone()
    expected = 2 * math.exp(-0.5 * b)
    assert smoothness_second_order(d, img, 0.5, normalise=False).item() == pytest.approx(expected, rel=1e-12)


def test_dabnet_smoothness_is_smooth1_plus_smooth2_times_weight():
    """dabnet: smoothness = 1e-3 * (smooth1 + smooth2), equal term weights, edge coefficient 0.5."""
    torch.manual_seed(0)
    target = torch.rand(2, 3, 16, 24, dtype=torch.float64)
    sources = [torch.rand(2, 3, 16, 24, dtype=torch.float64)]
    disp = torch.rand(2, 1, 16, 24, dtype=torch.float64) * 0.5 + 0.2
    K = torch.tensor([[20.0, 0, 12], [0, 20, 8], [0, 0, 1]], dtype=torch.float64).expand(2, 3, 3)
    T = torch.eye(4, dtype=torch.float64).expand(2, 4, 4).clone()
    terms = self_supervised_loss([disp], target, sources, K, [T], recipe="dabnet", smoothness_weight=1e-3)
    s1 = smoothness_first_order(disp, target, 0.5)
    s2 = smoothness_second_order(disp, target, 0.5)
    assert terms.smoothness.item() == pytest.approx(1e-3 * (s1 + s2).item(), rel=1e-12)
    assert s2.item() > 0.1 * s1.item()  # both terms matter in this case


# ---------------------------------------------------------------- self-supervised loss on a synthetic pair


def _texture(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    waves = [[(0.2, 17.0, 0.3, 0.1), (0.12, 23.0, 1.9, 1.3)], [(0.18, 19.0, 0.9, 0.7), (0.1, 29.0, 2.6, 0.4)],
             [(0.15, 21.0, 1.4, 2.9), (0.11, 25.0, 3.3, 0.2)]]
    out = []
    for ws in waves:
        c = np.full(np.shape(u), 0.5)
        for a, lam, th, ph in ws:
            c = c + a * np.cos(2 * np.pi * (u * np.cos(th) + v * np.sin(th)) / lam + ph)
        out.append(c)
    return np.stack(out)


def _sigmoid_for_depth(depth: float, min_depth=0.1, max_depth=100.0) -> float:
    """Invert disp_to_depth: disp = 1/max + (1/min - 1/max) * s."""
    return (1 / depth - 1 / max_depth) / (1 / min_depth - 1 / max_depth)


def _synthetic_pair(Z=5.0, tx=0.3):
    """Fronto-parallel plane at depth Z; source -1 / +1 translated by -tx / +tx along x."""
    v, u = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    shift = FX * tx / Z
    target = torch.from_numpy(_texture(u, v))[None].float()
    # X_src = X_tgt + t: target pixel u sees source pixel u + fx * t / Z, so source(u') = texture(u' - shift)
    src_plus = torch.from_numpy(_texture(u - shift, v))[None].float()
    src_minus = torch.from_numpy(_texture(u + shift, v))[None].float()
    K = torch.tensor([[[FX, 0, CX], [0, FY, CY], [0, 0, 1]]])
    T_plus = torch.eye(4)[None].clone()
    T_plus[0, 0, 3] = tx
    T_minus = torch.eye(4)[None].clone()
    T_minus[0, 0, 3] = -tx
    return target, [src_minus, src_plus], K, [T_minus, T_plus]


def _disparities(depth: float, n_scales=4):
    s = _sigmoid_for_depth(depth)
    return [torch.full((1, 1, H // 2 ** i, W // 2 ** i), s) for i in range(n_scales)]


@pytest.mark.parametrize("recipe", ["baseline", "dabnet"])
def test_true_depth_and_pose_beat_wrong_depth(recipe):
    target, sources, K, poses = _synthetic_pair()
    true = self_supervised_loss(_disparities(5.0), target, sources, K, poses, recipe=recipe, automask=False)
    wrong = self_supervised_loss(_disparities(1.5), target, sources, K, poses, recipe=recipe, automask=False)
    assert isinstance(true, LossTerms)
    assert true.photometric.item() < 0.02
    assert wrong.photometric.item() > 5 * true.photometric.item()
    # the recovered depth is the true one; constant disparities are perfectly smooth
    torch.testing.assert_close(true.depth, torch.full((1, 1, H, W), 5.0), rtol=1e-4, atol=0)
    assert true.smoothness.item() == pytest.approx(0.0, abs=1e-9)
    assert true.total.item() == pytest.approx(true.photometric.item() + true.smoothness.item())
    # with auto-masking the true geometry keeps most pixels (reprojection beats identity)
    masked = self_supervised_loss(_disparities(5.0), target, sources, K, poses, recipe=recipe)
    assert masked.automask.shape == (1, 1, H, W)
    assert masked.automask.mean().item() > 0.8
    wrong_masked = self_supervised_loss(_disparities(1.5), target, sources, K, poses, recipe=recipe)
    assert wrong_masked.photometric.item() > 3 * masked.photometric.item()


def test_pose_direction_matters():
    """Swapping the two sources' poses (a sign error in the -1 frame's transform) raises the loss."""
    target, sources, K, poses = _synthetic_pair()
    good = self_supervised_loss(_disparities(5.0), target, sources, K, poses, automask=False)
    bad = self_supervised_loss(_disparities(5.0), target, sources, K, poses[::-1], automask=False)
    assert bad.photometric.item() > 5 * good.photometric.item()


def test_baseline_smoothness_hand_value():
    """One full-resolution scale: smoothness = 1e-3 * (step / mean) for a horizontal ramp on a flat image."""
    target = torch.full((1, 3, 4, 6), 0.5)
    disp = torch.linspace(0.2, 0.7, 6).view(1, 1, 1, 6).expand(1, 1, 4, 6).clone()
    K = torch.tensor([[[5.0, 0, 2.5], [0, 5.0, 1.5], [0, 0, 1]]])
    out = self_supervised_loss([disp], target, [target.clone()], K, [torch.eye(4)[None]])
    step, mean = 0.1, 0.45
    assert out.smoothness.item() == pytest.approx(1e-3 * step / mean, rel=1e-4)


def test_baseline_smoothness_over_scales_hand_value():
    """Four scales: smoothness = mean over s of 1e-3 / 2^s * (step_s / mean_s), each scale's ramp on the
    image at that scale (flat here, so no edge weighting). Pins Monodepth2's ``/ 2**s`` weights and
    the average over scales: without the ``2**s`` it is 2.0x this value, without the average 4x."""
    h, w = 16, 48
    target = torch.full((1, 3, h, w), 0.5, dtype=torch.float64)
    disps, expected = [], 0.0
    for s in range(4):
        ws = w // 2 ** s
        disps.append(torch.linspace(0.2, 0.7, ws, dtype=torch.float64).view(1, 1, 1, ws)
                     .expand(1, 1, h // 2 ** s, ws).clone())
        expected += 1e-3 / 2 ** s * (0.5 / (ws - 1)) / 0.45 / 4
    K = torch.tensor([[[30.0, 0, 24], [0, 30.0, 8], [0, 0, 1]]], dtype=torch.float64)
    out = self_supervised_loss(disps, target, [target.clone()], K, [torch.eye(4, dtype=torch.float64)[None]],
                               recipe="baseline", smoothness_weight=1e-3)
    assert out.smoothness.item() == pytest.approx(expected, rel=1e-5)  # (mean + 1e-7 in the normalisation)


def test_dabnet_uses_only_first_disparity():
    target, sources, K, poses = _synthetic_pair()
    disps = _disparities(5.0)
    nan_rest = [disps[0]] + [torch.full_like(d, float("nan")) for d in disps[1:]]
    full = self_supervised_loss(nan_rest, target, sources, K, poses, recipe="dabnet")
    single = self_supervised_loss(disps[:1], target, sources, K, poses, recipe="dabnet")
    assert torch.isfinite(full.total)
    torch.testing.assert_close(full.total, single.total)
    # the baseline averages over every scale: the NaN scales propagate
    assert torch.isnan(self_supervised_loss(nan_rest, target, sources, K, poses, recipe="baseline").total)


def test_baseline_averages_over_scales():
    """A wrong coarse scale raises the baseline loss (all scales count) but not the dabnet loss."""
    target, sources, K, poses = _synthetic_pair()
    good = _disparities(5.0)
    mixed = good[:1] + _disparities(1.5)[1:]
    b_good = self_supervised_loss(good, target, sources, K, poses, automask=False).photometric.item()
    b_mixed = self_supervised_loss(mixed, target, sources, K, poses, automask=False).photometric.item()
    assert b_mixed > 3 * b_good
    d_good = self_supervised_loss(good, target, sources, K, poses, recipe="dabnet", automask=False).total
    d_mixed = self_supervised_loss(mixed, target, sources, K, poses, recipe="dabnet", automask=False).total
    torch.testing.assert_close(d_good, d_mixed)


def test_loss_gradient_flows_to_disparity():
    target, sources, K, poses = _synthetic_pair()
    disps = [d.clone().requires_grad_() for d in _disparities(3.0)]
    self_supervised_loss(disps, target, sources, K, poses).total.backward()
    assert all(d.grad is not None and d.grad.abs().sum() > 0 for d in disps)


def test_bad_recipe_and_mismatched_poses_raise():
    target, sources, K, poses = _synthetic_pair()
    with pytest.raises(ValueError, match="recipe"):
        self_supervised_loss(_disparities(5.0), target, sources, K, poses, recipe="monodepth3")
    with pytest.raises(ValueError, match="poses"):
        self_supervised_loss(_disparities(5.0), target, sources, K, poses[:1])
