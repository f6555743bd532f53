"""Zoom imitation: crop boxes, image resampling and the matching intrinsics (docs/method.md §4)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depth.geometry import backproject, pose_vector_to_matrix, project
from depth.train.reprojection import warp
from depth.train.zoom import apply_zoom, full_boxes, sample_zoom_boxes, zoom_images, zoom_intrinsics

H, W = 96, 320


def _kitti_K(batch: int = 1, cx_frac: float = 0.5, dtype=torch.float64) -> torch.Tensor:
    K = torch.tensor([[0.58 * W, 0.0, cx_frac * W], [0.0, 1.92 * H, 0.5 * H], [0.0, 0.0, 1.0]], dtype=dtype)
    return K.expand(batch, 3, 3).clone()


def _smooth_texture(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """``(1, 3, H, W)`` float64 sum of random plane waves (wavelengths 20..60 px), values in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                          indexing="ij")
    out = torch.zeros(3, height, width, dtype=torch.float64)
    for c in range(3):
        for _ in range(6):
            lam, theta, phase = (torch.rand(3, generator=g, dtype=torch.float64) * torch.tensor(
                [40.0, 2 * math.pi, 2 * math.pi], dtype=torch.float64)).tolist()
            lam += 20.0
            out[c] += torch.cos(2 * math.pi * (u * math.cos(theta) + v * math.sin(theta)) / lam + phase)
    return (0.5 + out / 12)[None]


# ---------------------------------------------------------------- smoke / shapes


def test_sample_zoom_boxes_smoke():
    boxes = sample_zoom_boxes(8, H, W, generator=torch.Generator().manual_seed(0))
    assert boxes.shape == (8, 4) and boxes.dtype == torch.int64


def test_full_boxes():
    assert full_boxes(3, H, W).tolist() == [[0, 0, W, H]] * 3


@pytest.mark.parametrize("shape", [(2, 3, H, W), (2, 3, 3, H, W), (2, 1, H, W)])
def test_zoom_images_shapes_and_dtype(shape):
    x = torch.rand(shape)
    boxes = torch.tensor([[40, 10, 240, 76], [0, 0, W, H]])
    out = zoom_images(x, boxes)
    assert out.shape == x.shape and out.dtype == x.dtype


def test_frames_share_the_crop():
    x = torch.rand(2, 3, 3, H, W)
    boxes = torch.tensor([[40, 10, 240, 76], [80, 24, 160, 48]])
    out = zoom_images(x, boxes)
    for f in range(3):
        torch.testing.assert_close(out[:, f], zoom_images(x[:, f], boxes), rtol=0, atol=0)


def test_apply_zoom():
    x = torch.rand(2, 3, 3, H, W)
    K = _kitti_K(2, dtype=torch.float32)
    boxes = torch.tensor([[40, 10, 240, 76], [0, 0, W, H]])
    xz, Kz = apply_zoom(x, K, boxes)
    assert torch.equal(xz, zoom_images(x, boxes))
    assert torch.equal(Kz, zoom_intrinsics(K, boxes, H, W))


# ---------------------------------------------------------------- box statistics


def test_box_statistics():
    n = 20000
    boxes = sample_zoom_boxes(n, 192, 640, generator=torch.Generator().manual_seed(1))
    x0, y0, w, h = boxes.unbind(1)
    zoomed = (w != 640) | (h != 192)
    assert abs(zoomed.double().mean().item() - 0.5) < 0.02
    # centred crops, inside the image
    assert torch.equal(x0, (640 - w) // 2) and torch.equal(y0, (192 - h) // 2)
    assert bool((w >= 1).all() and (h >= 1).all() and (x0 + w <= 640).all() and (y0 + h <= 192).all())
    # un-zoomed samples are exactly the full box
    assert (boxes[~zoomed] == torch.tensor([0, 0, 640, 192])).all()
    sx, sy = w[zoomed] / 640.0, h[zoomed] / 192.0
    assert sx.min() >= 0.5 and sx.max() <= 1.0 and sy.min() >= 0.5 and sy.max() <= 1.0
    # uniform fractions (mean 0.75, var 1/48) drawn independently per axis
    assert abs(sx.mean().item() - 0.75) < 0.01 and abs(sy.mean().item() - 0.75) < 0.01
    assert abs(sx.var().item() - 1 / 48) < 0.002
    corr = torch.corrcoef(torch.stack([sx, sy]))[0, 1].item()
    assert abs(corr) < 0.05
    # anisotropic: x and y fractions differ
    assert (sx - sy).abs().mean() > 0.1


def test_box_probability_extremes_and_reproducibility():
    assert torch.equal(sample_zoom_boxes(50, H, W, prob=0.0), full_boxes(50, H, W))
    b = sample_zoom_boxes(200, H, W, prob=1.0, generator=torch.Generator().manual_seed(2))
    assert ((b[:, 2] < W) | (b[:, 3] < H)).float().mean() > 0.95
    b1 = sample_zoom_boxes(16, H, W, generator=torch.Generator().manual_seed(3))
    b2 = sample_zoom_boxes(16, H, W, generator=torch.Generator().manual_seed(3))
    assert torch.equal(b1, b2)
    assert sample_zoom_boxes(0, H, W).shape == (0, 4)


# ---------------------------------------------------------------- exceptions


def test_exceptions():
    x = torch.rand(2, 3, H, W)
    good = full_boxes(2, H, W)
    with pytest.raises(ValueError):
        sample_zoom_boxes(2, H, W, prob=1.5)
    with pytest.raises(ValueError):
        sample_zoom_boxes(2, H, W, min_scale=0.0)
    with pytest.raises(ValueError):
        sample_zoom_boxes(2, 0, W)
    with pytest.raises(ValueError):
        zoom_images(torch.rand(3, H, W), good[:1])
    with pytest.raises(ValueError):
        zoom_images(x, good[:1])  # batch mismatch
    with pytest.raises(ValueError):
        zoom_images(x, good[:, :3])
    with pytest.raises(TypeError):
        zoom_images(x, good.float())
    with pytest.raises(TypeError):
        zoom_images(x.to(torch.uint8), good)
    with pytest.raises(ValueError):
        zoom_images(x, torch.tensor([[200, 0, 200, H], [0, 0, W, H]]))  # outside the image
    with pytest.raises(ValueError):
        zoom_intrinsics(torch.eye(3), good[:1], H, W)
    with pytest.raises(ValueError):
        apply_zoom(torch.rand(3, H, W), _kitti_K(2), good)


# ---------------------------------------------------------------- numerical correctness


def test_full_box_is_bit_exact():
    x = torch.rand(3, 2, 3, H, W)
    boxes = torch.tensor([[0, 0, W, H], [40, 10, 240, 76], [0, 0, W, H]])
    out = zoom_images(x, boxes)
    assert torch.equal(out[0], x[0]) and torch.equal(out[2], x[2])
    assert not torch.equal(out[1], x[1])
    assert torch.equal(zoom_images(x, full_boxes(3, H, W)), x)
    K = _kitti_K(3)
    assert torch.equal(zoom_intrinsics(K, full_boxes(3, H, W), H, W), K)


@pytest.mark.parametrize("box", [[40, 10, 240, 76], [81, 25, 159, 47], [0, 30, W, 37], [7, 3, 201, 90]])
def test_sampling_convention_on_a_linear_image(box):
    """Zoomed pixel ``u'`` shows the input at ``u = x0 + u' * w / W`` (``u' = (u - x0) W / w``)."""
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                          indexing="ij")
    ramp = torch.stack([u, v])[None]
    out = zoom_images(ramp, torch.tensor([box]))
    x0, y0, w, h = box
    expected_u = x0 + torch.arange(W, dtype=torch.float64) * w / W
    expected_v = y0 + torch.arange(H, dtype=torch.float64) * h / H
    torch.testing.assert_close(out[0, 0], expected_u.expand(H, W), rtol=0, atol=1e-9)
    torch.testing.assert_close(out[0, 1], expected_v[:, None].expand(H, W), rtol=0, atol=1e-9)
    # the same map as the intrinsics: a 3-D point projects to u with K and to u' with K'
    K = _kitti_K(1, cx_frac=0.3)
    Kz = zoom_intrinsics(K, torch.tensor([box]), H, W)
    X = torch.tensor([[[1.3], [-0.4], [7.0]]], dtype=torch.float64)
    p, pz = K @ X, Kz @ X
    p, pz = p[:, :2, 0] / p[:, 2:, 0], pz[:, :2, 0] / pz[:, 2:, 0]
    torch.testing.assert_close(pz[0, 0], (p[0, 0] - x0) * W / w)
    torch.testing.assert_close(pz[0, 1], (p[0, 1] - y0) * H / h)


def test_zoom_intrinsics_values():
    K = _kitti_K(1, cx_frac=0.3)
    box = torch.tensor([[41, 11, 239, 75]])
    Kz = zoom_intrinsics(K, box, H, W)
    sx, sy = W / 239, H / 75
    expected = torch.tensor([[0.58 * W * sx, 0, (0.3 * W - 41) * sx], [0, 1.92 * H * sy, (0.5 * H - 11) * sy],
                             [0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(Kz[0], expected)


def _warp_errors(cx_frac: float, box: list[int]) -> dict[str, float]:
    """Photometric error of re-warping the zoomed scene with several candidate intrinsics.

    The target is synthesised from a smooth source texture, a slanted-plane depth and a known pose;
    target, source and depth are zoomed with the same box; the zoomed source is warped with the
    zoomed depth and each candidate ``K'`` and compared to the zoomed target on pixels that project
    well inside the source.
    """
    K = _kitti_K(1, cx_frac)
    source = _smooth_texture(H, W)
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                          indexing="ij")
    depth = (1.0 / (0.08 + 0.05 * v / H + 0.02 * u / W))[None, None]  # a plane, 7.7 .. 12.5 m
    T = pose_vector_to_matrix(torch.tensor([[0.0, 0.01, 0.0]], dtype=torch.float64),
                              torch.tensor([[0.05, 0.0, -0.6]], dtype=torch.float64))
    target = warp(source, depth, K, T)
    boxes = torch.tensor([box])
    zs, zt, zd = zoom_images(source, boxes), zoom_images(target, boxes), zoom_images(depth, boxes)
    Kz = zoom_intrinsics(K, boxes, H, W)
    x0, y0, w, h = (float(t) for t in box)
    sx, sy = W / w, H / h
    K_half = Kz.clone()  # the align_corners=False ("(u + 0.5) s - 0.5") principal point
    K_half[:, 0, 2] = (K[:, 0, 2] - x0 + 0.5) * sx - 0.5
    K_half[:, 1, 2] = (K[:, 1, 2] - y0 + 0.5) * sy - 0.5
    K_c_unchanged = Kz.clone()
    K_c_unchanged[:, :2, 2] = K[:, :2, 2]
    uv = project(backproject(zd, Kz), Kz, T)
    valid = ((uv[:, 0] > 1) & (uv[:, 0] < W - 2) & (uv[:, 1] > 1) & (uv[:, 1] < H - 2))[:, None]
    valid = -torch.nn.functional.max_pool2d(-valid.double(), 5, 1, 2) > 0.5  # erode by 2 px
    assert valid.double().mean() > 0.5
    errors = {}
    for name, KK in (("exact", Kz), ("half_pixel", K_half), ("K_unchanged", K),
                     ("c_unchanged", K_c_unchanged)):
        err = (warp(zs, zd, KK, T) - zt).abs().mean(1, keepdim=True)
        errors[name] = err[valid].mean().item()
    return errors


@pytest.mark.parametrize("box", [[60, 18, 200, 60], [20, 5, 240, 70]], ids=["centred", "off_centre"])
@pytest.mark.parametrize("cx_frac", [0.5, 0.3], ids=["cx_centred", "cx_0.3W"])
def test_zoomed_warp_is_exact(cx_frac, box):
    e = _warp_errors(cx_frac, box)
    assert e["exact"] < 1e-3, e  # bilinear texture interpolation only
    assert e["K_unchanged"] > 10 * e["exact"], e
    assert e["exact"] < e["half_pixel"], e  # the resampling convention matches crop_intrinsics
    if cx_frac != 0.5 or box[0] != (W - box[2]) // 2:
        assert e["c_unchanged"] > 10 * e["exact"], e


# ---------------------------------------------------------------- gradients / devices


def test_gradcheck():
    x = torch.rand(2, 2, 6, 8, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor([[1, 1, 5, 4], [0, 0, 8, 6]])
    assert torch.autograd.gradcheck(lambda t: zoom_images(t, boxes), (x,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = torch.rand(4, 3, 3, H, W)
    boxes = sample_zoom_boxes(4, H, W, prob=1.0, generator=torch.Generator().manual_seed(4))
    K = _kitti_K(4, 0.3, torch.float32)
    xz, Kz = apply_zoom(x, K, boxes)
    xz_gpu, Kz_gpu = apply_zoom(x.cuda(), K.cuda(), boxes.cuda())
    torch.testing.assert_close(xz_gpu.cpu(), xz, rtol=0, atol=1e-5)
    torch.testing.assert_close(Kz_gpu.cpu(), Kz)


# ---------------------------------------------------------------- rendered street frames


_SS = 4  # supersampling factor of the renders (limits texture aliasing at 96 x 320)


@pytest.fixture(scope="module")
def street():
    """A rendered target/source pair of the synthetic street (depth known), at 96 x 320."""
    synthetic = pytest.importorskip("data.synthetic")
    scene = synthetic.build_scene(0)
    traj = synthetic.drive_trajectory(synthetic.drive_seed(0, 1), 12)
    cam = synthetic.cam_offsets(2)
    T_world_tgt, T_world_src = traj[10] @ cam, traj[11] @ cam
    K = synthetic.K_RECT.copy()
    K[0] *= W / synthetic.WIDTH
    K[1] *= H / synthetic.HEIGHT

    def render(T_world_cam, K_low):
        """Render at SS x the size and box-average: pixel (u, v) averages its SS x SS sub-pixels."""
        K_high = np.array(K_low, dtype=np.float64)
        K_high[:2, :2] *= _SS
        K_high[:2, 2] = (K_high[:2, 2] + 0.5) * _SS - 0.5
        rgb, depth = synthetic.render(scene, T_world_cam, K_high, H * _SS, W * _SS)
        img = torch.from_numpy(np.ascontiguousarray(rgb)).double().permute(2, 0, 1)[None] / 255
        d = torch.from_numpy(np.ascontiguousarray(depth)).double()[None, None]
        valid = torch.nn.functional.avg_pool2d((d > 0).double(), _SS) >= 1  # no sky sub-pixel
        return torch.nn.functional.avg_pool2d(img, _SS), torch.nn.functional.avg_pool2d(d, _SS), valid

    target, depth, valid = render(T_world_tgt, K)
    source, _, _ = render(T_world_src, K)
    T = torch.from_numpy(np.linalg.inv(T_world_src) @ T_world_tgt)[None]
    return dict(render=render, T_world_tgt=T_world_tgt, K=torch.from_numpy(K)[None], T=T,
                target=target, source=source, depth=depth, valid=valid)


def _candidate_Ks(K: torch.Tensor, box: list[int]) -> dict[str, torch.Tensor]:
    x0, y0, w, h = box
    Kz = zoom_intrinsics(K, torch.tensor([box]), H, W)
    K_half = Kz.clone()
    K_half[:, 0, 2] = (K[:, 0, 2] - x0 + 0.5) * W / w - 0.5
    K_half[:, 1, 2] = (K[:, 1, 2] - y0 + 0.5) * H / h - 0.5
    K_c = Kz.clone()
    K_c[:, :2, 2] = K[:, :2, 2]
    return {"exact": Kz, "half_pixel": K_half, "c_unchanged": K_c, "K_unchanged": K}


_STREET_BOXES = [[60, 18, 200, 60], [20, 5, 240, 70]]


@pytest.mark.parametrize("box", _STREET_BOXES, ids=["centred", "off_centre"])
def test_zoomed_street_frame_is_the_view_of_the_zoomed_camera(street, box):
    """``zoom_images(render(K))`` matches ``render(K')`` best for the ``K'`` of ``zoom_intrinsics``."""
    zoomed = zoom_images(street["target"], torch.tensor([box]))
    errors = {}
    for name, KK in _candidate_Ks(street["K"], box).items():
        if name == "K_unchanged":
            continue
        view, _, _ = street["render"](street["T_world_tgt"], KK[0].numpy())
        errors[name] = (view - zoomed).abs()[..., 4:-4, 4:-4].mean().item()
    assert errors["exact"] < errors["half_pixel"], errors
    assert errors["c_unchanged"] > 2 * errors["exact"], errors


@pytest.mark.parametrize("box", _STREET_BOXES, ids=["centred", "off_centre"])
def test_zoomed_street_warp(street, box):
    """Warping zoomed rendered frames with the zoomed K is as good as warping the originals."""
    T = street["T"]

    def error(source, target, depth, valid, K):
        uv = project(backproject(depth.clamp(min=1e-3), K), K, T)
        inside = (uv[:, 0] > 1) & (uv[:, 0] < W - 2) & (uv[:, 1] > 1) & (uv[:, 1] < H - 2)
        mask = valid & inside[:, None]
        err = (warp(source, depth.clamp(min=1e-3), K, T) - target).abs().mean(1, keepdim=True)
        return err[mask].mean().item()

    floor = error(street["source"], street["target"], street["depth"], street["valid"], street["K"])
    boxes = torch.tensor([box])
    zs, zt, zd = (zoom_images(street[k], boxes) for k in ("source", "target", "depth"))
    zv = zoom_images(street["valid"].double(), boxes) >= 1
    errors = {name: error(zs, zt, zd, zv, KK) for name, KK in _candidate_Ks(street["K"], box).items()}
    assert errors["exact"] < 1.25 * floor, (floor, errors)
    assert errors["K_unchanged"] > 1.4 * errors["exact"], (floor, errors)
    if box[0] != (W - box[2]) // 2:
        assert errors["c_unchanged"] > 1.4 * errors["exact"], (floor, errors)
