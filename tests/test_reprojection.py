"""Warping a source view into the target view; SSIM and the photometric error (docs/method.md §3)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depth.geometry import pose_vector_to_matrix
from depth.train.reprojection import photometric_error, ssim, warp

pytestmark = pytest.mark.usefixtures("one_thread")


H, W = 24, 40
FX = FY = 40.0
CX, CY = (W - 1) / 2, (H - 1) / 2

# (amplitude, wavelength px, direction rad, phase) per channel: smooth, non-periodic over the image
_WAVES = [
    [(0.20, 23.0, 0.3, 0.1), (0.10, 31.0, 1.9, 1.3), (0.08, 19.0, 4.0, 2.2)],
    [(0.18, 27.0, 0.9, 0.7), (0.12, 21.0, 2.6, 0.4), (0.06, 37.0, 5.1, 1.9)],
    [(0.15, 25.0, 1.4, 2.9), (0.11, 33.0, 3.3, 0.2), (0.09, 20.0, 5.8, 1.1)],
]


def texture(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Analytic RGB texture at real-valued pixel coordinates -> ``(3, *u.shape)`` in (0, 1)."""
    out = []
    for waves in _WAVES:
        c = np.full(np.shape(u), 0.5)
        for a, lam, th, ph in waves:
            c = c + a * np.cos(2 * np.pi * (u * np.cos(th) + v * np.sin(th)) / lam + ph)
        out.append(c)
    return np.stack(out)


def _grid():
    return np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64), indexing="xy")


def _K(fx=FX, fy=FY, cx=CX, cy=CY) -> torch.Tensor:
    return torch.tensor([[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]], dtype=torch.float64)


def _source() -> torch.Tensor:
    u, v = _grid()
    return torch.from_numpy(texture(u, v))[None]


def _translation(tx=0.0, ty=0.0, tz=0.0) -> torch.Tensor:
    T = torch.eye(4, dtype=torch.float64)[None].clone()
    T[0, :3, 3] = torch.tensor([tx, ty, tz], dtype=torch.float64)
    return T


# ---------------------------------------------------------------- smoke / exceptions


def test_warp_shape_dtype():
    src = torch.rand(2, 3, 8, 10)
    out = warp(src, torch.ones(2, 1, 8, 10) * 3, _K().float().repeat(2, 1, 1), torch.eye(4).repeat(2, 1, 1))
    assert out.shape == src.shape and out.dtype == src.dtype


def test_warp_size_mismatch_raises():
    with pytest.raises(ValueError, match="differ in size"):
        warp(torch.rand(1, 3, 8, 10), torch.ones(1, 1, 8, 9), _K(), torch.eye(4, dtype=torch.float64)[None])


# ---------------------------------------------------------------- grid normalisation


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identity_warp_returns_source(dtype):
    src = torch.rand(2, 3, H, W, dtype=dtype, generator=torch.Generator().manual_seed(0))
    depth = torch.rand(2, 1, H, W, dtype=dtype, generator=torch.Generator().manual_seed(1)) * 30 + 1
    K = _K().to(dtype).repeat(2, 1, 1)
    out = warp(src, depth, K, torch.eye(4, dtype=dtype).repeat(2, 1, 1))
    # project() divides by z + 1e-7: a relative coordinate bias of 1e-7 / z (1e-6 px here)
    torch.testing.assert_close(out, src, atol=1e-5, rtol=0)


def test_integer_shift_is_exact():
    """fx * tx / Z = 1 px: target column u samples source column u + 1 exactly (align_corners=True)."""
    src = torch.rand(1, 3, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    depth = torch.full((1, 1, H, W), 4.0, dtype=torch.float64)
    out = warp(src, depth, _K(), _translation(tx=0.1))
    torch.testing.assert_close(out[..., :-1], src[..., 1:], atol=1e-5, rtol=0)
    # border padding: the last column, whose sample falls one pixel outside, repeats the border
    torch.testing.assert_close(out[..., -1], src[..., -1], atol=1e-5, rtol=0)
    # a half-pixel convention error (align_corners=False) would be off by up to half a pixel
    assert (out[..., :-1] - src[..., :-1]).abs().mean() > 0.05


# ---------------------------------------------------------------- true depth and pose reproduce the target


def test_fronto_parallel_plane_translation():
    Z, tx = 5.0, 0.3
    shift = FX * tx / Z  # 2.4 px
    u, v = _grid()
    target = texture(u + shift, v)  # independent forward model: the image shifts by fx*tx/Z
    out = warp(_source(), torch.full((1, 1, H, W), Z, dtype=torch.float64), _K(), _translation(tx=tx))
    interior = (slice(None), slice(None), slice(0, W - math.ceil(shift) - 1))
    err = (out[0].numpy() - target)[interior]
    assert np.abs(err).max() < 0.01
    assert np.abs(err).mean() < 0.003
    # the same warp with a wrong depth is far worse
    wrong = warp(_source(), torch.full((1, 1, H, W), 2.0, dtype=torch.float64), _K(), _translation(tx=tx))
    assert np.abs(wrong[0].numpy() - target)[interior].mean() > 10 * np.abs(err).mean()


def test_slanted_plane_general_motion():
    """A slanted plane (inverse depth linear in u, v) seen after a rotation + translation."""
    u, v = _grid()
    inv_depth = 0.2 + 0.004 * (v - CY) + 0.002 * (u - CX)  # plane: n . X = 1
    Zt = 1.0 / inv_depth
    axisangle = np.array([0.01, -0.02, 0.015])
    t = np.array([0.08, -0.03, 0.15])
    # independent forward model: written-out Rodrigues, pinhole maths per pixel
    theta = np.linalg.norm(axisangle)
    k = axisangle / theta
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    R = np.eye(3) + np.sin(theta) * Kx + (1 - np.cos(theta)) * Kx @ Kx
    X = np.stack([(u - CX) / FX * Zt, (v - CY) / FY * Zt, Zt])
    Xs = np.einsum("ij,jhw->ihw", R, X) + t[:, None, None]
    us = FX * Xs[0] / Xs[2] + CX
    vs = FY * Xs[1] / Xs[2] + CY
    target = texture(us, vs)
    inside = (us >= 0) & (us <= W - 1) & (vs >= 0) & (vs <= H - 1)
    assert inside.mean() > 0.6  # the test must look at most of the image

    T = pose_vector_to_matrix(torch.from_numpy(axisangle)[None], torch.from_numpy(t)[None])
    out = warp(_source(), torch.from_numpy(Zt)[None, None], _K(), T)[0].numpy()
    err = np.abs(out - target)[:, inside]
    assert err.max() < 0.01
    assert err.mean() < 0.003
    # the inverse transform (a classic sign error) does not reproduce the target
    T_bad = pose_vector_to_matrix(torch.from_numpy(axisangle)[None], torch.from_numpy(t)[None], invert=True)
    bad = warp(_source(), torch.from_numpy(Zt)[None, None], _K(), T_bad)[0].numpy()
    assert np.abs(bad - target)[:, inside].mean() > 10 * err.mean()


def test_separate_source_intrinsics():
    """T = I, source camera with twice the focal length: target(u) = source(cx + 2 (u - cx))."""
    u, v = _grid()
    target = texture(CX + 2 * (u - CX), CY + 2 * (v - CY))
    depth = torch.full((1, 1, H, W), 7.0, dtype=torch.float64)
    out = warp(_source(), depth, _K(), torch.eye(4, dtype=torch.float64)[None], K_src=_K(2 * FX, 2 * FY))
    inside = (np.abs(u - CX) * 2 <= CX) & (np.abs(v - CY) * 2 <= CY)
    assert np.abs(out[0].numpy() - target)[:, inside].max() < 0.01


def test_gradcheck_warp():
    g = torch.Generator().manual_seed(0)
    src = torch.rand(1, 2, 3, 4, dtype=torch.float64, generator=g).requires_grad_()
    depth = torch.full((1, 1, 3, 4), 3.0, dtype=torch.float64).requires_grad_()
    K = torch.tensor([[[2.0, 0, 1.5], [0, 2.0, 1.0], [0, 0, 1]]], dtype=torch.float64)
    T = _translation(tx=0.37, ty=0.11)  # non-integer sample positions (away from bilinear kinks)
    assert torch.autograd.gradcheck(lambda s, d: warp(s, d, K, T), (src, depth))


# ---------------------------------------------------------------- SSIM


def _ssim_numpy(x: np.ndarray, y: np.ndarray, c1=0.01 ** 2, c2=0.03 ** 2) -> np.ndarray:
    """Per-pixel SSIM by explicit loops: reflection padding, 3x3 box window, population moments."""
    xp, yp = np.pad(x, 1, mode="reflect"), np.pad(y, 1, mode="reflect")
    out = np.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            a = xp[i:i + 3, j:j + 3].ravel()
            b = yp[i:i + 3, j:j + 3].ravel()
            mx, my = a.mean(), b.mean()
            vx = ((a - mx) ** 2).mean()
            vy = ((b - my) ** 2).mean()
            cxy = ((a - mx) * (b - my)).mean()
            out[i, j] = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return out


def test_ssim_identical_is_one():
    x = torch.rand(2, 3, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(ssim(x, x), torch.ones_like(x))


def test_ssim_shape():
    assert ssim(torch.rand(2, 3, 5, 7), torch.rand(2, 3, 5, 7)).shape == (2, 3, 5, 7)


def test_ssim_constant_images_closed_form():
    a, b = 0.5, 0.25
    x = torch.full((1, 1, 3, 3), a, dtype=torch.float64)
    out = ssim(x, torch.full_like(x, b))
    c1 = 0.01 ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # variances vanish: the C2 factors cancel
    torch.testing.assert_close(out, torch.full_like(out, expected))


def test_ssim_3x3_hand_example_centre():
    """3x3 image: the centre pixel's window is the whole image (no padding involved)."""
    x = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]])
    y = np.array([[0.9, 0.8, 0.7], [0.6, 0.5, 0.4], [0.3, 0.2, 0.1]])
    # hand: mu_x = mu_y = 0.5; var_x = var_y = 0.06666..; cov = -0.06666..
    var = 0.6 / 9
    c1, c2 = 1e-4, 9e-4
    expected = (2 * 0.25 + c1) * (-2 * var + c2) / ((0.5 + c1) * (2 * var + c2))
    out = ssim(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None])
    assert out[0, 0, 1, 1].item() == pytest.approx(expected, rel=1e-9)


def test_ssim_4x4_matches_loops_with_reflection_padding():
    g = np.random.default_rng(0)
    x, y = g.random((2, 3, 4, 4))
    out = ssim(torch.from_numpy(x)[None], torch.from_numpy(y)[None])[0].numpy()
    for c in range(3):
        np.testing.assert_allclose(out[c], _ssim_numpy(x[c], y[c]), rtol=1e-9, atol=1e-12)


def test_ssim_reflection_not_replicate_padding():
    """A corner pixel's window with reflection padding uses rows/cols 1 (not 0) as the mirror."""
    x = np.zeros((4, 4))
    x[1, 1] = 1.0  # only visible to the corner through reflection (it is mirrored 4 times)
    y = np.zeros((4, 4))
    out = ssim(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None])[0, 0].numpy()
    mx = 4 / 9
    vx = 4 / 9 - mx ** 2
    expected = (0 + 1e-4) * (0 + 9e-4) / ((mx ** 2 + 1e-4) * (vx + 9e-4))
    assert out[0, 0] == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------- photometric error


def _const(values, h=4, w=5):
    return torch.tensor(values, dtype=torch.float64).view(1, 3, 1, 1).expand(1, 3, h, w).clone()


def test_photometric_error_constant_images():
    a, b = [0.5, 0.2, 0.9], [0.3, 0.2, 0.6]
    pe = photometric_error(_const(a), _const(b))
    assert pe.shape == (1, 1, 4, 5) and pe.dtype == torch.float32
    c1 = 1e-4
    dssim = np.mean([(1 - (2 * p * q + c1) / (p * p + q * q + c1)) / 2 for p, q in zip(a, b)])
    l1 = np.mean([abs(p - q) for p, q in zip(a, b)])
    expected = 0.85 * dssim + 0.15 * l1
    # computed in float32: E[x^2] - E[x]^2 cancels to ~1e-7, against C2 = 9e-4
    torch.testing.assert_close(pe, torch.full_like(pe, expected), atol=1e-4, rtol=0)


def test_photometric_error_charbonnier():
    a, b = [0.5, 0.2, 0.9], [0.3, 0.2, 0.6]
    pe = photometric_error(_const(a), _const(b), charbonnier=True)
    c1 = 1e-4
    dssim = np.mean([(1 - (2 * p * q + c1) / (p * p + q * q + c1)) / 2 for p, q in zip(a, b)])
    charb = np.mean([math.sqrt((p - q) ** 2 + 1e-6) for p, q in zip(a, b)])
    torch.testing.assert_close(pe, torch.full_like(pe, 0.85 * dssim + 0.15 * charb), atol=1e-4, rtol=0)
    # without the SSIM term the Charbonnier value is checked tightly
    pe0 = photometric_error(_const(a), _const(b), alpha=0.0, charbonnier=True)
    torch.testing.assert_close(pe0, torch.full_like(pe0, charb), atol=1e-7, rtol=0)
    # identical images: SSIM term 0, Charbonnier floor sqrt(1e-6) = 1e-3
    same = photometric_error(_const(a), _const(a), charbonnier=True)
    torch.testing.assert_close(same, torch.full_like(same, 0.15 * 1e-3), atol=1e-8, rtol=0)


def test_photometric_error_alpha_zero_is_l1():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 4, 5, generator=g), torch.rand(2, 3, 4, 5, generator=g)
    torch.testing.assert_close(photometric_error(x, y, alpha=0.0), (x - y).abs().mean(1, keepdim=True))


def test_photometric_error_matches_loops():
    g = np.random.default_rng(1)
    x, y = g.random((2, 3, 4, 4))
    pe = photometric_error(torch.from_numpy(x)[None], torch.from_numpy(y)[None], alpha=0.85)[0, 0].numpy()
    dssim = np.mean([np.clip((1 - _ssim_numpy(x[c], y[c])) / 2, 0, 1) for c in range(3)], 0)
    expected = 0.85 * dssim + 0.15 * np.abs(x - y).mean(0)
    np.testing.assert_allclose(pe, expected, atol=1e-6)


def test_photometric_error_half_precision_input():
    x = torch.rand(1, 3, 4, 4)
    pe16 = photometric_error(x.half(), x.half())
    assert pe16.dtype == torch.float32
    assert pe16.abs().max().item() < 1e-4
