"""The trainer's loss assembly (``Trainer.compute_loss``) fed the synthetic street's true depth and
true poses in place of the networks' outputs.

The synthetic street is Lambertian and static, so warping a source frame into the target with the
true depth and the true relative pose reproduces the target up to resampling. Here the two networks
are replaced by :class:`TrueNetworks`, a module with the interface of :class:`depth.model.Networks`
(``compute_loss``'s ``model`` argument) that returns the true depth as the depth net's sigmoids
(through the inverse of :func:`depth.geometry.disp_to_depth` with ``model.min_depth/max_depth``,
at every scale of ``model.scales``) and the true relative poses as the pose net's axis-angle and
translation vectors, in the pose net's convention: for a source ``f > 0`` the net sees
``(target, source)`` and its transform is used as it is (``T_src_tgt``); for ``f < 0`` it sees
``(source, target)``, predicts ``T_tgt_src`` and ``compute_loss`` inverts it (Monodepth2's
``invert=f < 0``). Everything after the networks is the trainer's own code: the zoom imitation,
the pose matrices, the stereo transform, the intrinsics, the warps and the photometric loss.

What is measured: the per-pixel photometric error (the loss's own ``photometric_error``: 0.85
DSSIM + 0.15 L1) between the target and each source as ``compute_loss`` warped it (the warps are
recorded where :func:`depth.train.losses.self_supervised_loss` makes them), averaged over the
pixels where the true warp is defined: GT depth present (not sky, within the depth range), the
projection lands at least one pixel inside the source, and the point is not hidden in the source
by a nearer target point (a z-buffer of the target's own points moved into the source, 3%
tolerance). A mask rather than a median: the mean over the valid pixels keeps every well-posed
pixel's residual in the figure (a median would hide a wrong warp of up to half the image), and
the mask removes exactly the pixels that no pose can explain (those leaving the frame at the
borders, disoccluded ones). The remaining residual with the truth (~0.03) is resampling: INTER_AREA
frames, the bilinear warp, depth edges where one low-resolution pixel mixes surfaces. The identity
pose leaves ~0.19; a wrong source order or a missing inversion ~0.2 (ratios ~7x).

The frames are 128 x 416 rather than the preset's 64 x 192: against the resampling residual a
wrong intrinsic stands out more clearly at the larger size (zoomed frames warped with the
un-zoomed K: 2.0x / 2.6x the truth's error here, 1.35x / 1.6x at 64 x 192).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import kornia.geometry.conversions as kconv
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import depth.train.losses as losses_module
from data.datasets import build_training_data
from data.samples import collate
from data.splits import read_split_file, split_file
from data.velodyne import benchmark_png_path, read_benchmark_png
from depth.config import load_config
from depth.geometry import backproject, project
from depth.train.reprojection import photometric_error, warp
from depth.train.trainer import Trainer
from depth.train.zoom import zoom_images

ROOT = Path(__file__).resolve().parents[1]
H, W = 128, 416
NEAR_ZERO = 0.05  # per-source masked error with the truth (measured 0.022..0.032)
MIRROR = np.diag([-1.0, 1.0, 1.0, 1.0])  # a horizontal flip of the image mirrors the camera x axis


# ---------------------------------------------------------------- data and truth


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Batches of four small frames: extra intra-op threads only thrash on a busy CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def street(tiny_synthetic, tmp_path_factory):
    """The tiny synthetic dataset with a training split of four test-drive frames (2..5): every
    test frame has dense GT, and their neighbours exist. Returns ``(root, split_dir)``."""
    entries = read_split_file(split_file(tiny_synthetic / "splits", "test"))
    chosen = [e for e in entries if 2 <= e.frame <= 5]
    assert len(chosen) == 4
    split = tmp_path_factory.mktemp("truth_split")
    (split / "train_files.txt").write_text("".join(f"{e.folder} {e.frame} {e.side}\n" for e in chosen))
    return tiny_synthetic, split


def _config(street, tmp_path, base: str = "synthetic.yaml", *extra: str):
    root, split = street
    return load_config(ROOT / "configs" / base, [
        f"data.root={root}", f"data.split={split}", "data.synthetic.generate=false", "data.val_gt=none",
        f"data.height={H}", f"data.width={W}", "train.batch_size=4", "augment.color_jitter_prob=0",
        "augment.flip_prob=0", "augment.zoom_prob=0", f"output.dir={tmp_path / 'run'}", *extra])


def _data(cfg):
    """The trainer's dataset for ``cfg`` (its own build path) and one batch of all four samples."""
    train_set, _, _ = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
    assert len(train_set) == 4
    train_set.set_epoch(0)
    return train_set, collate([train_set[i] for i in range(len(train_set))])


def _camera_poses(root: Path, folder: str) -> np.ndarray:
    """``(N, 4, 4)`` camera-02-to-world poses of a drive, as the generator writes them."""
    rows = np.loadtxt(root / folder / "poses_image_02.txt").reshape(-1, 3, 4)
    T = np.tile(np.eye(4), (len(rows), 1, 1))
    T[:, :3] = rows
    return T


def _truth(cfg, train_set, flip: bool = False) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """The true target depth at the network size (metres, 0 = no GT) and ``T_src_tgt`` (metres)
    for every temporal source, mirrored when the batch was flipped (``M T M``, depth flipped)."""
    root = Path(cfg.data.root)
    depths, poses = [], {f: [] for f in cfg.data.frame_ids[1:]}
    for e in train_set.entries:
        gt = read_benchmark_png(benchmark_png_path(root, e.folder, e.frame, e.side))
        # nearest: low-res pixel (u, v) shows full-res (u, v) * scale, the intrinsics' convention
        d = cv2.resize(gt, (W, H), interpolation=cv2.INTER_NEAREST)
        depths.append(d[:, ::-1] if flip else d)
        P = _camera_poses(root, e.folder)
        for f in poses:
            T = np.linalg.inv(P[e.frame + f]) @ P[e.frame]
            poses[f].append(MIRROR @ T @ MIRROR if flip else T)
    depth = torch.from_numpy(np.ascontiguousarray(np.stack(depths)[:, None])).float()
    return depth, {f: torch.from_numpy(np.stack(v)).float() for f, v in poses.items()}


def _pose_vector(T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return kconv.rotation_matrix_to_axis_angle(T[:, :3, :3].contiguous()), T[:, :3, 3].clone()


class TrueNetworks(nn.Module):
    """Stands in for :class:`depth.model.Networks` and answers with the truth.

    ``depth``: ``(B, 1, H, W)`` metres (0 = sky); ``poses``: ``{f: T_src_tgt}`` in metres;
    ``units``: network units per metre (``stereo_baseline / stereo_baseline_metric`` for a
    stereo run, else 1), applied to depth and translations; ``boxes``: the zoom boxes
    ``compute_loss`` draws (the depth net sees the zoomed target, so its depth is zoomed too).
    ``mode`` makes the poses deliberately wrong: ``"identity"``, ``"swap"`` (each source gets the
    other temporal source's transform), ``"uninverted"`` (the ``f < 0`` net answers ``T_src_tgt``
    instead of ``T_tgt_src``, so the inversion ``compute_loss`` applies makes it wrong)."""

    def __init__(self, cfg, depth, poses, units: float = 1.0, boxes=None, mode: str = "true"):
        super().__init__()
        self.cfg, self.depth, self.poses = cfg, depth, poses
        self.units, self.boxes, self.mode = units, boxes, mode
        self.depth_in = None

    def sigmoid(self) -> torch.Tensor:
        m = self.cfg.model
        d = torch.where(self.depth > 0, self.depth * self.units, torch.full_like(self.depth, m.max_depth))
        if self.boxes is not None:
            d = zoom_images(d, self.boxes)
        d = d.clamp(m.min_depth, m.max_depth)
        return ((1 / d - 1 / m.max_depth) / (1 / m.min_depth - 1 / m.max_depth)).clamp(0, 1)

    def forward(self, color_aug, depth_in, frame_ids, pose_stacked=False):
        self.depth_in = depth_in
        sig = self.sigmoid()
        disparities = [sig if s == 0 else F.interpolate(sig, size=(H >> s, W >> s), mode="area")
                       for s in self.cfg.model.scales]
        vectors = []
        for f in frame_ids[1:]:
            T = self.poses[-f if self.mode == "swap" else f].clone()
            T[:, :3, 3] *= self.units
            if self.mode == "identity":
                T = torch.eye(4).expand_as(T).clone()
            net_T = T if f > 0 or self.mode == "uninverted" else torch.linalg.inv(T)
            vectors.append(_pose_vector(net_T))
        return disparities, vectors


# ---------------------------------------------------------------- running the assembly


def _assemble(trainer: Trainer, batch, nets: nn.Module, step: int = 0) -> dict:
    """``trainer.compute_loss(batch, model=nets)``, recording what it hands to the loss (target,
    sources, K, the pose matrices) and the finest-scale warp of every source (the loss warps all
    sources in one call per scale, stacked on the batch)."""
    seen: dict = {}
    warps: list = []
    real_loss, real_warp = trainer.objective.loss, losses_module.warp

    def loss_spy(disparities, target, sources, K, poses, **kw):
        seen.update(target=target, sources=sources, K=K, poses=poses)
        return real_loss(disparities, target, sources, K, poses, **kw)

    def warp_spy(source, depth, K, T, K_src=None):
        out = real_warp(source, depth, K, T, K_src)
        warps.append((depth, out))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer.objective, "loss", loss_spy)
        mp.setattr(losses_module, "warp", warp_spy)
        with torch.no_grad():
            terms, _ = trainer.compute_loss(batch, step=step, model=nets)
    n = len(seen["sources"])
    assert len(warps) == len(trainer.cfg.model.scales)  # one warp of all sources per scale
    depth, warped = warps[0]
    assert depth.shape[0] == n * seen["target"].shape[0]
    seen.update(terms=terms, depth=depth.chunk(n)[0], warped=list(warped.chunk(n)))
    return seen


def _valid(depth: torch.Tensor, K: torch.Tensor, T: torch.Tensor, has_gt: torch.Tensor) -> torch.Tensor:
    """Target pixels where the warp into the source is defined: GT, inside the source by one pixel,
    in front of it and not hidden there by a nearer target point (z-buffer, 3% tolerance)."""
    b, _, h, w = depth.shape
    X = backproject(depth, K).reshape(b, 3, -1)
    z = (T[:, 2:3, :3] @ X + T[:, 2:3, 3:])[:, 0]
    uv = project(backproject(depth, K), K, T).reshape(b, 2, -1)
    u, v = uv[:, 0], uv[:, 1]
    inside = (u >= 1) & (u <= w - 2) & (v >= 1) & (v <= h - 2) & (z > 0)
    cell = (v.round().clamp(0, h - 1) * w + u.round().clamp(0, w - 1)).long()
    nearest = torch.full((b, h * w), float("inf")).scatter_reduce(
        1, cell, torch.where(inside, z, torch.full_like(z, float("inf"))), "amin")
    visible = z <= 1.03 * nearest.gather(1, cell)
    return (inside & visible).reshape(b, 1, h, w) & has_gt


def _error(image: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    return float(photometric_error(image, target)[mask].mean())


def _masks(run: dict, has_gt: torch.Tensor) -> list[torch.Tensor]:
    masks = [_valid(run["depth"], run["K"], T, has_gt) for T in run["poses"]]
    assert all(m.float().mean() > 0.5 for m in masks), [float(m.float().mean()) for m in masks]
    return masks


def _errors(run: dict, masks) -> list[float]:
    return [_error(w, run["target"], m) for w, m in zip(run["warped"], masks)]


def _has_gt(cfg, depth: torch.Tensor, units: float = 1.0) -> torch.Tensor:
    m = cfg.model
    return (depth > 0) & (depth * units > m.min_depth) & (depth * units < m.max_depth)


# ---------------------------------------------------------------- monocular (frames 0, -1, 1)


@pytest.fixture(scope="module")
def mono(street, tmp_path_factory):
    """The preset's monocular trainer on the four-frame batch, the truth, and the assembly with it."""
    cfg = _config(street, tmp_path_factory.mktemp("mono"))
    assert cfg.data.frame_ids == [0, -1, 1] and not cfg.data.stereo
    train_set, batch = _data(cfg)
    trainer = Trainer(cfg, train_set, device="cpu")
    depth, poses = _truth(cfg, train_set)
    has_gt = _has_gt(cfg, depth)
    run = _assemble(trainer, batch, TrueNetworks(cfg, depth, poses))
    masks = _masks(run, has_gt)
    return dict(cfg=cfg, train_set=train_set, batch=batch, trainer=trainer, depth=depth, poses=poses,
                has_gt=has_gt, run=run, masks=masks, errors=_errors(run, masks))


def test_true_depth_and_poses_reach_the_loss_unchanged(mono):
    """What ``compute_loss`` hands to the loss is the truth: the pose matrices it builds from the
    pose vectors are the true ``T_src_tgt`` of sources -1 and +1 in that order (so the inversion of
    the ``f < 0`` vector and the source order are right), the depth it derives from the sigmoids
    is the true depth (``model.min_depth/max_depth`` used as the inverse mapping assumes), the
    sources are frames -1 and +1, the intrinsics the batch's."""
    run, batch = mono["run"], mono["batch"]
    for T, f in zip(run["poses"], (-1, 1)):
        torch.testing.assert_close(T, mono["poses"][f], atol=2e-5, rtol=0)
    m = mono["cfg"].model
    d = torch.where(mono["depth"] > 0, mono["depth"], torch.full_like(mono["depth"], m.max_depth))
    torch.testing.assert_close(run["depth"], d.clamp(m.min_depth, m.max_depth), rtol=1e-4, atol=1e-4)
    color = batch.network_images("cpu")[0]  # float32 in [0, 1]: the loss's frames
    torch.testing.assert_close(run["target"], color[:, 0])
    torch.testing.assert_close(run["sources"][0], color[:, 1])
    torch.testing.assert_close(run["sources"][1], color[:, 2])
    torch.testing.assert_close(run["K"], batch.K)


def test_true_depth_and_poses_reproduce_the_target(mono):
    """(a) With the truth the masked photometric error of both temporal sources is near zero and
    far below the identity pose's (measured 0.029 / 0.026 against 0.186 / 0.202: ratios 6.5x and
    7.7x), and the loss's photometric term (auto-masked minimum over sources, every scale) is far
    below the identity pose's (0.020 against 0.137)."""
    run, masks = mono["run"], mono["masks"]
    identity = [_error(s, run["target"], m) for s, m in zip(run["sources"], masks)]
    for e, e_id in zip(mono["errors"], identity):
        assert e < NEAR_ZERO and e < 0.25 * e_id, (mono["errors"], identity)
    nets = TrueNetworks(mono["cfg"], mono["depth"], mono["poses"], mode="identity")
    still = _assemble(mono["trainer"], mono["batch"], nets)
    assert _errors(still, masks) == pytest.approx(identity, rel=1e-4)  # the identity warp is the source
    photometric, still_photometric = float(run["terms"].photometric), float(still["terms"].photometric)
    assert photometric < 0.3 * still_photometric, (photometric, still_photometric)


def test_swapped_or_uninverted_poses_do_not_explain_the_frames(mono):
    """(b) Each source warped with the other source's transform (frame -1's pose used for +1 and
    the reverse; measured 0.205 / 0.221: 7.2x and 8.5x the truth's) or with the ``f < 0`` vector
    left uninverted (source -1: 0.206, 7.2x; source +1 untouched) is clearly worse: the check sees
    the source order and the inversion."""
    true = mono["errors"]

    def errors(mode):
        nets = TrueNetworks(mono["cfg"], mono["depth"], mono["poses"], mode=mode)
        return _errors(_assemble(mono["trainer"], mono["batch"], nets), mono["masks"])

    swapped = errors("swap")
    assert swapped[0] > 3 * true[0] and swapped[1] > 3 * true[1], (true, swapped)
    uninverted = errors("uninverted")
    assert uninverted[0] > 3 * true[0], (true, uninverted)
    assert uninverted[1] == pytest.approx(true[1], rel=1e-5)


def test_flipped_batch_with_mirrored_truth(mono, street, tmp_path):
    """(c) ``augment.flip_prob=1``: the frames are mirrored and ``c_x -> W - 1 - c_x``; with the
    depth mirrored and the poses conjugated by the mirror (``M T M``, ``M = diag(-1, 1, 1)``: the
    x translation and the y/z rotation components change sign) the error is the un-flipped batch's
    (measured equal to 1e-6), while the un-mirrored poses leave 0.139 / 0.175 (4.9x, 6.7x)."""
    cfg = _config(street, tmp_path, "synthetic.yaml", "augment.flip_prob=1")
    train_set, batch = _data(cfg)
    torch.testing.assert_close(batch.color, mono["batch"].color.flip(-1))
    torch.testing.assert_close(batch.K[:, 0, 2], W - 1 - mono["batch"].K[:, 0, 2])
    depth, poses = _truth(cfg, train_set, flip=True)
    run = _assemble(mono["trainer"], batch, TrueNetworks(cfg, depth, poses))
    masks = _masks(run, _has_gt(cfg, depth))
    errors = _errors(run, masks)
    for e, e_plain in zip(errors, mono["errors"]):
        assert e < NEAR_ZERO and e < 1.05 * e_plain, (errors, mono["errors"])
    _, plain_poses = _truth(cfg, train_set, flip=False)
    unmirrored = _errors(_assemble(mono["trainer"], batch, TrueNetworks(cfg, depth, plain_poses)), masks)
    assert all(u > 3 * e for u, e in zip(unmirrored, errors)), (errors, unmirrored)


def test_zoomed_batch_with_zoomed_truth(mono, street, tmp_path):
    """(c) ``augment.zoom_prob=1``: ``compute_loss`` crops every frame and changes the intrinsics
    exactly (``zoom_intrinsics``); with the true depth zoomed by the same boxes (what the depth net
    sees) and the unchanged true poses the error stays near zero (measured 0.024 / 0.025, at most
    the un-zoomed batch's), while the same zoomed frames warped with the un-zoomed intrinsics leave
    2.0x and 2.6x that."""
    cfg = _config(street, tmp_path, "synthetic.yaml", "augment.zoom_prob=1")
    trainer = Trainer(cfg, mono["train_set"], device="cpu")
    boxes = trainer.zoom_boxes(0, 0, 4, H, W)
    assert not (boxes == torch.tensor([0, 0, W, H])).all(1).any(), boxes  # every sample zoomed
    nets = TrueNetworks(cfg, mono["depth"], mono["poses"], boxes=boxes)
    run = _assemble(trainer, mono["batch"], nets, step=0)
    # the boxes are the ones compute_loss drew: the depth net's input is the target zoomed by them
    color, color_aug, _ = mono["batch"].network_images("cpu")
    torch.testing.assert_close(nets.depth_in, zoom_images(color_aug[:, 0], boxes))
    torch.testing.assert_close(run["target"], zoom_images(color[:, 0], boxes))
    has_gt = zoom_images(mono["has_gt"].float(), boxes) >= 1  # no bilinear mix with a pixel without GT
    masks = _masks(run, has_gt)
    errors = _errors(run, masks)
    for e, e_plain in zip(errors, mono["errors"]):
        assert e < NEAR_ZERO and e < 1.1 * e_plain, (errors, mono["errors"])
    K_plain = mono["batch"].K
    stale = [_error(warp(s, run["depth"], K_plain, T), run["target"], m)
             for s, T, m in zip(run["sources"], run["poses"], masks)]
    assert all(s > 1.5 * e for s, e in zip(stale, errors)), (errors, stale)


# ---------------------------------------------------------------- stereo (frames 0, -1, 1 and the partner)


UNITS = 0.02 / 0.54  # configs/synthetic_stereo.yaml: stereo_baseline 0.02 units for the rig's 0.54 m


def _stereo(street, tmp_path, *extra):
    cfg = _config(street, tmp_path, "synthetic_stereo.yaml", *extra)
    d = cfg.data
    assert d.stereo and d.stereo_baseline / d.stereo_baseline_metric == pytest.approx(UNITS)
    train_set, batch = _data(cfg)
    return cfg, train_set, batch, Trainer(cfg, train_set, device="cpu")


def test_stereo_source_with_the_true_baseline(street, tmp_path):
    """(c) The stereo preset (mono + stereo, training units of 27 m): the stereo partner is the last
    source, warped with ``T_stereo`` (-0.02 units along x). With the true depth and translations in
    those units every source, the stereo one included, is near zero (measured 0.032 / 0.031 /
    0.022 against 0.20 / 0.22 / 0.19 unwarped); twice the depth (translations scaled alike, so the
    temporal sources cannot tell) breaks only the stereo source (0.152, 6.8x): the fixed baseline
    pins the scale."""
    cfg, train_set, batch, trainer = _stereo(street, tmp_path)
    depth, poses = _truth(cfg, train_set)
    run = _assemble(trainer, batch, TrueNetworks(cfg, depth, poses, units=UNITS))
    assert len(run["sources"]) == 3
    torch.testing.assert_close(run["sources"][2], batch.network_images("cpu")[0][:, 3])
    expected = torch.eye(4).repeat(4, 1, 1)
    expected[:, 0, 3] = -0.02
    torch.testing.assert_close(run["poses"][2], expected)
    masks = _masks(run, _has_gt(cfg, depth, UNITS))
    errors = _errors(run, masks)
    unwarped = [_error(s, run["target"], m) for s, m in zip(run["sources"], masks)]
    for e, e_id in zip(errors, unwarped):
        assert e < NEAR_ZERO and e < 0.25 * e_id, (errors, unwarped)
    doubled = _errors(_assemble(trainer, batch, TrueNetworks(cfg, depth, poses, units=2 * UNITS)), masks)
    assert doubled[2] > 3 * errors[2], (errors, doubled)
    assert doubled[:2] == pytest.approx(errors[:2], rel=0.05, abs=1e-3)


def test_flipped_zoomed_stereo_batch_with_adapted_truth(street, tmp_path):
    """Flip, zoom and stereo together (what an MS run with both augmentations assembles): a flipped
    sample's partner is on the left (``T_stereo`` +0.02 units), the frames and intrinsics are zoomed;
    with the mirrored, zoomed truth every source stays near zero (measured 0.028 / 0.031 / 0.025
    against 0.17 / 0.19 / 0.16 unwarped)."""
    cfg, train_set, batch, trainer = _stereo(street, tmp_path, "augment.flip_prob=1", "augment.zoom_prob=1")
    depth, poses = _truth(cfg, train_set, flip=True)
    boxes = trainer.zoom_boxes(0, 0, 4, H, W)
    run = _assemble(trainer, batch, TrueNetworks(cfg, depth, poses, units=UNITS, boxes=boxes), step=0)
    assert run["poses"][2][:, 0, 3].tolist() == pytest.approx([0.02] * 4)
    has_gt = zoom_images(_has_gt(cfg, depth, UNITS).float(), boxes) >= 1
    masks = _masks(run, has_gt)
    errors = _errors(run, masks)
    unwarped = [_error(s, run["target"], m) for s, m in zip(run["sources"], masks)]
    for e, e_id in zip(errors, unwarped):
        assert e < NEAR_ZERO and e < 0.25 * e_id, (errors, unwarped)
