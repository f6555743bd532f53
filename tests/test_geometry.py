"""Camera geometry: intrinsics, back-projection / projection, pose vectors, disparity <-> depth."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depth.geometry import (backproject, crop_intrinsics, depth_to_disp, depth_to_sigmoid, disp_to_depth, pixel_grid,
                            pixels_to_grid, pose_vector_to_matrix, project, scale_intrinsics)

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_K(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    g = np.random.default_rng(seed)
    K = np.zeros((batch, 3, 3))
    for b in range(batch):
        K[b] = [[g.uniform(20, 80), 0, g.uniform(0.3, 0.7) * width],
                [0, g.uniform(20, 80), g.uniform(0.3, 0.7) * height],
                [0, 0, 1]]
    return torch.from_numpy(K)


def _random_rigid(batch: int, seed: int = 0) -> torch.Tensor:
    """Random proper rotations (QR of a Gaussian matrix, det fixed to +1) and translations."""
    g = np.random.default_rng(seed)
    T = np.tile(np.eye(4), (batch, 1, 1))
    for b in range(batch):
        q, r = np.linalg.qr(g.normal(size=(3, 3)))
        q = q * np.sign(np.diag(r))
        if np.linalg.det(q) < 0:
            q[:, 0] = -q[:, 0]
        T[b, :3, :3] = q
        T[b, :3, 3] = g.uniform(-0.5, 0.5, 3)
    return torch.from_numpy(T)


def _uv_grid(batch: int, height: int, width: int) -> torch.Tensor:
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    return torch.from_numpy(np.stack([u, v])[None].repeat(batch, 0))


# ---------------------------------------------------------------- smoke / shapes


def test_pixel_grid_raster_order():
    g = pixel_grid(2, 3, dtype=torch.float64)
    expected = [[0, 1, 2, 0, 1, 2], [0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    assert g.tolist() == expected


def test_backproject_project_shapes():
    depth = torch.rand(2, 1, 5, 7) + 1
    K = _random_K(2, 5, 7).float()
    pts = backproject(depth, K)
    assert pts.shape == (2, 3, 5, 7)
    uv = project(pts, K, torch.eye(4).expand(2, 4, 4))
    assert uv.shape == (2, 2, 5, 7)
    assert pixels_to_grid(uv).shape == (2, 5, 7, 2)


# ---------------------------------------------------------------- numerical correctness


def test_backproject_matches_pinhole_formula():
    h, w = 4, 6
    depth = torch.rand(2, 1, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 5 + 1
    K = _random_K(2, h, w, seed=3)
    pts = backproject(depth, K).numpy()
    for b in range(2):
        fx, fy, cx, cy = K[b, 0, 0].item(), K[b, 1, 1].item(), K[b, 0, 2].item(), K[b, 1, 2].item()
        for v in range(h):
            for u in range(w):
                z = depth[b, 0, v, u].item()
                expected = [(u - cx) * z / fx, (v - cy) * z / fy, z]
                np.testing.assert_allclose(pts[b, :, v, u], expected, rtol=1e-12)


def test_roundtrip_identity_pose():
    b, h, w = 2, 6, 9
    depth = torch.rand(b, 1, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 50 + 0.5
    K = _random_K(b, h, w)
    uv = project(backproject(depth, K), K)
    torch.testing.assert_close(uv, _uv_grid(b, h, w), atol=1e-6, rtol=0)
    uv_T = project(backproject(depth, K), K, torch.eye(4, dtype=torch.float64).expand(b, 4, 4))
    torch.testing.assert_close(uv_T, _uv_grid(b, h, w), atol=1e-6, rtol=0)


def test_roundtrip_random_rigid_applied_then_inverted():
    b, h, w = 2, 6, 9
    depth = torch.rand(b, 1, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 20 + 2
    K = _random_K(b, h, w, seed=5)
    T = _random_rigid(b, seed=7)
    pts = backproject(depth, K)
    # move the points by T by hand (plain numpy), then project them back through T^-1
    X = pts.reshape(b, 3, -1).numpy()
    moved = np.einsum("bij,bjn->bin", T[:, :3, :3].numpy(), X) + T[:, :3, 3:].numpy()
    moved = torch.from_numpy(moved).reshape(b, 3, h, w)
    T_inv = torch.from_numpy(np.linalg.inv(T.numpy()))
    uv = project(moved, K, T_inv)
    torch.testing.assert_close(uv, _uv_grid(b, h, w), atol=1e-6, rtol=0)


def test_project_with_T_matches_numpy():
    b, h, w = 1, 3, 4
    g = np.random.default_rng(11)
    pts = torch.from_numpy(g.uniform(-2, 2, (b, 3, h, w)))
    pts[:, 2] = pts[:, 2].abs() + 3
    K = _random_K(b, h, w, seed=2)
    T = _random_rigid(b, seed=4)
    T[:, :3, 3] = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    uv = project(pts, K, T).numpy()
    Kn, Tn = K[0].numpy(), T[0].numpy()
    for v in range(h):
        for u in range(w):
            Xs = Tn[:3, :3] @ pts[0, :, v, u].numpy() + Tn[:3, 3]
            expected = [Kn[0, 0] * Xs[0] / Xs[2] + Kn[0, 2], Kn[1, 1] * Xs[1] / Xs[2] + Kn[1, 2]]
            np.testing.assert_allclose(uv[0, :, v, u], expected, rtol=1e-6)  # project adds eps=1e-7 to z


def test_pixels_to_grid_corners_align_corners_true():
    h, w = 5, 8
    grid = pixels_to_grid(_uv_grid(1, h, w))
    assert grid[0, 0, 0].tolist() == [-1.0, -1.0]
    assert grid[0, h - 1, w - 1].tolist() == [1.0, 1.0]
    assert grid[0, 0, w - 1].tolist() == [1.0, -1.0]
    # pixel centres are evenly spaced by 2 / (W - 1)
    np.testing.assert_allclose(np.diff(grid[0, 0, :, 0].numpy()), 2 / (w - 1))


@pytest.mark.parametrize("theta", [0.0, 0.3, -1.2, 2.5])
def test_pose_vector_rz_written_out(theta):
    c, s = math.cos(theta), math.sin(theta)
    t = [0.5, -1.0, 2.0]
    aa = torch.tensor([[0.0, 0.0, theta]], dtype=torch.float64)
    tr = torch.tensor([t], dtype=torch.float64)
    T = pose_vector_to_matrix(aa, tr)
    expected = torch.tensor([[c, -s, 0, t[0]], [s, c, 0, t[1]], [0, 0, 1, t[2]], [0, 0, 0, 1]],
                            dtype=torch.float64)
    torch.testing.assert_close(T[0], expected, atol=1e-12, rtol=0)
    T_inv = pose_vector_to_matrix(aa, tr, invert=True)
    # the inverse written out: [R^T | -R^T t]
    Rt = expected[:3, :3].T
    exp_inv = torch.eye(4, dtype=torch.float64)
    exp_inv[:3, :3] = Rt
    exp_inv[:3, 3] = -Rt @ torch.tensor(t, dtype=torch.float64)
    torch.testing.assert_close(T_inv[0], exp_inv, atol=1e-12, rtol=0)
    torch.testing.assert_close(T @ T_inv, torch.eye(4, dtype=torch.float64)[None], atol=1e-12, rtol=0)


def test_pose_vector_general_axis_matches_rodrigues():
    g = np.random.default_rng(0)
    aa = g.normal(size=(3, 3)) * 0.7
    tr = g.normal(size=(3, 3))
    T = pose_vector_to_matrix(torch.from_numpy(aa), torch.from_numpy(tr)).numpy()
    for b in range(3):
        theta = np.linalg.norm(aa[b])
        k = aa[b] / theta
        Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        R = np.eye(3) + math.sin(theta) * Kx + (1 - math.cos(theta)) * Kx @ Kx
        np.testing.assert_allclose(T[b, :3, :3], R, atol=1e-10)
        np.testing.assert_allclose(T[b, :3, 3], tr[b], atol=1e-12)
        np.testing.assert_allclose(T[b, 3], [0, 0, 0, 1])
    T_inv = pose_vector_to_matrix(torch.from_numpy(aa), torch.from_numpy(tr), invert=True).numpy()
    np.testing.assert_allclose(T_inv, np.linalg.inv(T), atol=1e-10)


def test_pose_vector_zero_is_identity():
    T = pose_vector_to_matrix(torch.zeros(2, 3), torch.zeros(2, 3))
    torch.testing.assert_close(T, torch.eye(4).expand(2, 4, 4))


def test_scale_intrinsics_hand_values():
    K = torch.tensor([[[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]]],
                     dtype=torch.float64)
    out = scale_intrinsics(K, 0.5, 0.25)
    expected = torch.tensor([[[360.76885, 0.0, 304.77965], [0.0, 180.384425, 43.2135], [0.0, 0.0, 1.0]]],
                            dtype=torch.float64)
    torch.testing.assert_close(out, expected, atol=1e-9, rtol=0)
    # per-sample factors as tensors
    K2 = K.repeat(2, 1, 1)
    sx = torch.tensor([1.0, 2.0], dtype=torch.float64)
    sy = torch.tensor([1.0, 3.0], dtype=torch.float64)
    out2 = scale_intrinsics(K2, sx, sy)
    torch.testing.assert_close(out2[0], K[0])
    assert out2[1, 0, 0].item() == pytest.approx(2 * 721.5377)
    assert out2[1, 1, 2].item() == pytest.approx(3 * 172.854)


def test_crop_intrinsics_hand_values():
    K = torch.tensor([[[100.0, 0.0, 50.0], [0.0, 80.0, 30.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    x0, y0, sx, sy = (torch.tensor([v]) for v in (10.0, 6.0, 2.0, 1.5))
    out = crop_intrinsics(K, x0, y0, sx, sy)
    expected = torch.tensor([[[200.0, 0.0, 80.0], [0.0, 120.0, 36.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    torch.testing.assert_close(out, expected)
    assert K[0, 0, 0].item() == 100.0  # input untouched


def test_disp_to_depth_endpoints():
    disp, depth = disp_to_depth(torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64))
    assert depth[0].item() == pytest.approx(100.0)
    assert depth[1].item() == pytest.approx(0.1)
    assert disp[0].item() == pytest.approx(0.01)
    assert disp[1].item() == pytest.approx(10.0)
    assert disp[2].item() == pytest.approx(0.01 + 0.5 * 9.99)
    torch.testing.assert_close(depth * disp, torch.ones(3, dtype=torch.float64))
    _, d2 = disp_to_depth(torch.tensor([0.0, 1.0]), min_depth=1.0, max_depth=80.0)
    assert d2.tolist() == pytest.approx([80.0, 1.0])
    assert depth_to_disp(torch.tensor([4.0])).item() == 0.25


@pytest.mark.parametrize("depth", [0.15, 1.0, 14.0, 99.0])
def test_depth_to_sigmoid_inverts_disp_to_depth(depth):
    s = depth_to_sigmoid(depth, 0.1, 100.0)
    assert 0 < s < 1
    _, d = disp_to_depth(torch.tensor([s], dtype=torch.float64), 0.1, 100.0)
    assert d.item() == pytest.approx(depth, rel=1e-12)
    with pytest.raises(ValueError, match="strictly between"):
        depth_to_sigmoid(0.1, 0.1, 100.0)


# ---------------------------------------------------------------- exceptions


def test_bad_shapes_raise():
    K = torch.eye(3)[None]
    with pytest.raises(ValueError, match="depth"):
        backproject(torch.rand(1, 4, 5), K)
    with pytest.raises(ValueError, match="depth"):
        backproject(torch.rand(1, 2, 4, 5), K)
    with pytest.raises(ValueError, match="K"):
        backproject(torch.rand(1, 1, 4, 5), torch.eye(3))
    with pytest.raises(ValueError, match="K"):
        project(torch.rand(1, 3, 4, 5), torch.eye(4)[None])
    with pytest.raises(ValueError, match="T"):
        project(torch.rand(1, 3, 4, 5), K, torch.eye(4)[None, :3])
    with pytest.raises(ValueError, match="K"):
        scale_intrinsics(torch.eye(3), 1.0, 1.0)
    with pytest.raises(ValueError, match="K"):
        crop_intrinsics(torch.eye(2)[None], torch.zeros(1), torch.zeros(1), torch.ones(1), torch.ones(1))
    with pytest.raises(ValueError, match=r"axisangle must have shape \(\*, 3\)"):
        pose_vector_to_matrix(torch.zeros(1, 4), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="translation"):
        pose_vector_to_matrix(torch.zeros(1, 3), torch.zeros(1, 2))


# ---------------------------------------------------------------- gradcheck


def test_gradcheck_backproject():
    depth = (torch.rand(1, 1, 2, 3, dtype=torch.float64) + 1).requires_grad_()
    K = _random_K(1, 2, 3).requires_grad_()
    assert torch.autograd.gradcheck(backproject, (depth, K))


def test_gradcheck_project():
    pts = torch.rand(1, 3, 2, 3, dtype=torch.float64)
    pts[:, 2] += 2
    pts.requires_grad_()
    K = _random_K(1, 2, 3).requires_grad_()
    T = _random_rigid(1, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, k, t: project(p, k, t), (pts, K, T))


def test_gradcheck_pose_vector():
    aa = (torch.rand(1, 3, dtype=torch.float64) * 0.5 + 0.1).requires_grad_()
    tr = torch.rand(1, 3, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, t: pose_vector_to_matrix(a, t, invert=True), (aa, tr))
