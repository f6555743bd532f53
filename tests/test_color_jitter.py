"""Colour jitter on the device (data.color_jitter): numerics against torchvision's functional
ColorJitter operations applied one sample at a time (an independent implementation), the
parameter draw, identity samples, shapes and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from data.color_jitter import BRIGHTNESS, CONTRAST, HUE, IDENTITY, SATURATION, color_jitter, draw_color_jitter

TV_OPS = {BRIGHTNESS: TF.adjust_brightness, CONTRAST: TF.adjust_contrast, SATURATION: TF.adjust_saturation,
          HUE: TF.adjust_hue}


def _reference(image: torch.Tensor, factors, order) -> torch.Tensor:
    """torchvision's operations on one ``(3, H, W)`` image in the sample's order."""
    for op in order:
        image = TV_OPS[int(op)](image, float(factors[int(op)]))
    return image


def _params(n: int, seed: int = 0):
    draws = [draw_color_jitter(seed * 100 + i, 0.2, 0.2, 0.2, 0.1) for i in range(n)]
    return (torch.from_numpy(np.stack([f for f, _ in draws])), torch.from_numpy(np.stack([o for _, o in draws])))


# ---------------------------------------------------------------- numerics


def test_matches_torchvision_per_sample_and_frame():
    torch.manual_seed(0)
    images = torch.rand(6, 3, 3, 24, 32)  # B F 3 H W
    factors, order = _params(6)
    assert len({tuple(o.tolist()) for o in order}) > 1  # several orders in one batch
    out = color_jitter(images, factors, order)
    for i in range(6):
        for f in range(3):
            want = _reference(images[i, f], factors[i], order[i])
            torch.testing.assert_close(out[i, f], want, atol=3e-5, rtol=0)
    assert (out - images).abs().mean() > 1e-3


def test_order_matters_and_is_followed():
    """Contrast before or after brightness gives different images: the order is the sample's."""
    torch.manual_seed(1)
    image = torch.rand(1, 3, 16, 16) * 0.5 + 0.5  # bright: 1.2 x clamps
    factors = torch.tensor([[1.2, 0.8, 1.0, 0.0]])
    a = color_jitter(image, factors, torch.tensor([[BRIGHTNESS, CONTRAST, SATURATION, HUE]]))
    b = color_jitter(image, factors, torch.tensor([[CONTRAST, BRIGHTNESS, SATURATION, HUE]]))
    # by hand: brightness then contrast = (1.2 x - m') 0.8 + m' with m' = 1.2 m; the other way round
    # (0.8 x + 0.2 m) 1.2 -- equal without clamping; clamping at 1 separates them for bright pixels
    gray = (0.299 * image[0, 0] + 0.587 * image[0, 1] + 0.114 * image[0, 2]).mean()
    by_hand_a = ((image * 1.2).clamp(0, 1) * 0.8 + 0.2 * ((image * 1.2).clamp(0, 1)[0, 0] * 0.299 +
                 (image * 1.2).clamp(0, 1)[0, 1] * 0.587 + (image * 1.2).clamp(0, 1)[0, 2] * 0.114).mean()).clamp(0, 1)
    by_hand_b = ((image * 0.8 + 0.2 * gray).clamp(0, 1) * 1.2).clamp(0, 1)
    torch.testing.assert_close(a, by_hand_a, atol=1e-6, rtol=0)
    torch.testing.assert_close(b, by_hand_b, atol=1e-6, rtol=0)
    assert not torch.allclose(a, b)


def test_identity_samples_are_untouched_and_others_are_not():
    torch.manual_seed(2)
    images = torch.rand(3, 2, 3, 8, 8)
    factors, order = _params(3, seed=1)
    factors[1] = torch.tensor(IDENTITY)
    before = images.clone()
    out = color_jitter(images, factors, order)
    assert torch.equal(images, before)  # the input is never modified in place
    assert torch.equal(out[1], images[1])  # bit-exact: no HSV round trip for a sample without jitter
    assert not torch.equal(out[0], images[0]) and not torch.equal(out[2], images[2])
    all_identity = torch.tensor([IDENTITY] * 3)
    assert color_jitter(images, all_identity, order) is images  # nothing to do: nothing done


def test_four_dimensional_batch_equals_one_frame_of_five():
    torch.manual_seed(3)
    images = torch.rand(4, 3, 12, 20)
    factors, order = _params(4, seed=2)
    torch.testing.assert_close(color_jitter(images, factors, order),
                               color_jitter(images[:, None], factors, order)[:, 0], atol=0, rtol=0)


def test_contrast_mean_is_each_frames_own():
    """Two frames of one sample share the parameters but not the contrast mean (torchvision's rule)."""
    dark, bright = torch.full((3, 4, 4), 0.2), torch.full((3, 4, 4), 0.6)
    dark[:, 0, 0] = bright[:, 0, 0] = 0.4
    factors = torch.tensor([[1.0, 0.5, 1.0, 0.0]])
    order = torch.tensor([[CONTRAST, BRIGHTNESS, SATURATION, HUE]])
    out = color_jitter(torch.stack([dark, bright])[None], factors, order)[0]
    for frame, src in zip(out, (dark, bright)):
        m = src.mean()
        torch.testing.assert_close(frame, 0.5 * src + 0.5 * m)


# ---------------------------------------------------------------- the draw


def test_draw_ranges_determinism_and_order():
    draws = [draw_color_jitter(s, 0.2, 0.3, 0.4, 0.1) for s in range(400)]
    f = np.stack([d[0] for d in draws])
    assert f.dtype == np.float32 and f.shape == (400, 4)
    for k, (lo, hi) in enumerate(((0.8, 1.2), (0.7, 1.3), (0.6, 1.4), (-0.1, 0.1))):
        assert lo <= f[:, k].min() and f[:, k].max() <= hi
        assert f[:, k].min() < lo + 0.05 * (hi - lo) and f[:, k].max() > hi - 0.05 * (hi - lo)  # the whole range
    orders = {tuple(d[1].tolist()) for d in draws}
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders) and len(orders) == 24
    a, b = draw_color_jitter(7, 0.2, 0.2, 0.2, 0.1), draw_color_jitter(7, 0.2, 0.2, 0.2, 0.1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # a range above 1 cannot draw a negative factor (torchvision: max(0, 1 - v))
    assert min(draw_color_jitter(s, 1.5, 0, 0, 0)[0][0] for s in range(200)) >= 0


# ---------------------------------------------------------------- shapes and bad input


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 1, 4, 4), (2, 2, 4, 4, 4)])
def test_bad_image_shape(shape):
    factors, order = _params(2)
    with pytest.raises(ValueError, match="images: expected"):
        color_jitter(torch.rand(shape), factors, order)


def test_bad_parameter_shape_and_dtype():
    factors, order = _params(2)
    with pytest.raises(ValueError, match=r"factors and order: expected \(3, 4\)"):
        color_jitter(torch.rand(3, 3, 4, 4), factors, order)
    with pytest.raises(TypeError, match="floating-point"):
        color_jitter(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), factors, order)
