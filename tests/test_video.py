"""Your own videos: folder / mp4 loading, intrinsics (files, keys, rescaling), split (sequences, or
frames for a tiny dataset), static-frame filter, validation loss without GT."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import train
from data.config import AugmentConfig, DataConfig
from data.frames import monodepth2_intrinsics
from data.samples import collate
from data.video import (
    IntrinsicsMissing,
    Sequence,
    build_video_data,
    decode_video,
    discover_sequences,
    hold_out_tail,
    parse_intrinsics_text,
    resolve_intrinsics,
    split_sequences,
)
from depth.config import ConfigError, load_config
from depth.train.trainer import Trainer

W0, H0 = 320, 176  # "original" frames (even sizes for the mp4 encoder)


def _texture(seed: int = 0, size: int = 640) -> np.ndarray:
    """A smooth random RGB texture (low frequencies survive video compression)."""
    rng = np.random.default_rng(seed)
    t = rng.random((size // 8, size // 8, 3)).astype(np.float32)
    t = cv2.resize(t, (size, size), interpolation=cv2.INTER_CUBIC)
    t = cv2.GaussianBlur(t, (0, 0), 6)
    t = (t - t.min()) / (t.max() - t.min())
    return (t * 255).astype(np.uint8)


def _frames(n: int = 8, step: int = 6, repeat: int | None = None) -> list[np.ndarray]:
    """A camera panning over the texture by ``step`` px per frame; frame ``repeat`` repeats its predecessor."""
    tex = _texture()
    out, x = [], 0
    for i in range(n):
        if repeat is not None and i == repeat:
            out.append(out[-1].copy())
            continue
        out.append(np.ascontiguousarray(tex[40:40 + H0, x:x + W0]))
        x += step
    return out


def _write_jpgs(folder, frames):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])


def _write_mp4(path, frames, fps=10):
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (W0, H0))
    if not w.isOpened():
        pytest.skip("OpenCV has no mp4v encoder here")
    for f in frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()


def _cfg(root, **kw) -> DataConfig:
    d = dict(dataset="video", root=str(root), intrinsics="auto", val_fraction=0.0, height=64, width=128)
    d.update(kw)
    return DataConfig(**d)


def _augment(**kw) -> AugmentConfig:
    d = dict(color_jitter_prob=0.0, flip_prob=0.0)
    d.update(kw)
    return AugmentConfig(**d)


K_ORIG = dict(fx=250.0, fy=240.0, cx=0.3 * W0, cy=0.7 * H0)  # non-centred principal point


def test_mp4_and_jpeg_folder_load_identically(tmp_path):
    frames = _frames(8)
    _write_jpgs(tmp_path / "a" / "seq", frames)
    _write_mp4(tmp_path / "b" / "seq.mp4", frames)
    ds_a, _ = build_video_data(_cfg(tmp_path / "a", **K_ORIG), _augment(), verbose=False)
    ds_b, _ = build_video_data(_cfg(tmp_path / "b", **K_ORIG), _augment(), verbose=False)
    assert len(ds_a) == len(ds_b) == 6
    for i in (0, 3, 5):
        a, b = ds_a[i], ds_b[i]
        assert a.keys() == b.keys() == {"color", "K", "index"}  # no jitter drawn: no second set of frames
        assert a["color"].shape == b["color"].shape == (3, 3, 64, 128) and a["color"].dtype == torch.uint8
        torch.testing.assert_close(a["K"], b["K"])
        diff = (a.images()[0] - b.images()[0]).abs()
        assert diff.mean() < 0.02 and diff.max() < 0.25, (float(diff.mean()), float(diff.max()))
    # decoded once: a second discovery reuses the cached frames
    marker = tmp_path / "b" / ".frames" / "seq-stride1" / "frames.json"
    stamp = marker.stat().st_mtime_ns
    discover_sequences(tmp_path / "b")
    assert marker.stat().st_mtime_ns == stamp and json.loads(marker.read_text())["frames"] == 8


def test_video_stride_matches_folder_stride(tmp_path):
    frames = _frames(9)
    _write_jpgs(tmp_path / "a" / "seq", frames)
    _write_mp4(tmp_path / "b" / "seq.mp4", frames)
    (sa,) = discover_sequences(tmp_path / "a", stride=3)
    (sb,) = discover_sequences(tmp_path / "b", stride=3)
    assert [p.name for p in sa.frames] == ["000000.jpg", "000003.jpg", "000006.jpg"]
    assert len(sb.frames) == 3
    for pa, pb in zip(sa.frames, sb.frames):
        assert np.abs(cv2.imread(str(pa)).astype(int) - cv2.imread(str(pb)).astype(int)).mean() < 5


def _blob_centroid(img: np.ndarray, u: float, v: float, r: int = 6) -> tuple[float, float]:
    g = img.astype(np.float64).mean(-1)
    u0, v0 = int(round(u)), int(round(v))
    win = g[v0 - r:v0 + r + 1, u0 - r:u0 + r + 1]
    yy, xx = np.mgrid[v0 - r:v0 + r + 1, u0 - r:u0 + r + 1]
    return float((win * xx).sum() / win.sum()), float((win * yy).sum() / win.sum())


def test_intrinsics_rescaled_for_non_centred_principal_point_and_aspect_change(tmp_path):
    """Blobs drawn where 3-D points project with the original K land where the network-size K
    projects them, after a resize that changes the aspect ratio (320x176 -> 128x96)."""
    W1, H1 = 400, 300
    K0 = np.array([[310.0, 0, 0.3 * W1], [0, 290.0, 0.7 * H1], [0, 0, 1]])
    pts = np.array([[x, y, 10.0] for x in (-2.5, 1.0, 4.5, 7.5) for y in (-5.5, -2.0, 1.5)])
    uv0 = (K0 @ pts.T).T
    uv0 = uv0[:, :2] / uv0[:, 2:]
    yy, xx = np.mgrid[0:H1, 0:W1].astype(np.float64)
    img = np.zeros((H1, W1), np.float64)
    for u, v in uv0:
        img += np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 8.0 ** 2))
    img = np.repeat((np.clip(img, 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)
    seq = tmp_path / "seq"
    seq.mkdir()
    for i in range(3):
        cv2.imwrite(str(seq / f"{i:04d}.png"), img)
    (seq / "intrinsics.txt").write_text(f"{K0[0, 0]} {K0[1, 1]} {K0[0, 2]} {K0[1, 2]}\n")
    ds, _ = build_video_data(_cfg(tmp_path, height=96, width=128), _augment(), verbose=False)
    s = ds[0]
    K = s["K"].numpy().astype(np.float64)
    sx, sy = 128 / W1, 96 / H1
    np.testing.assert_allclose(K, np.array([[310 * sx, 0, 0.3 * W1 * sx], [0, 290 * sy, 0.7 * H1 * sy], [0, 0, 1]]),
                               rtol=1e-6)
    net = s["color"][0].permute(1, 2, 0).numpy().astype(np.float64)
    uv1 = (K @ pts.T).T
    uv1 = uv1[:, :2] / uv1[:, 2:]
    for u, v in uv1:
        cu, cv_ = _blob_centroid(net, u, v, r=6)
        # the community rescaling (u' = u * s) differs from the exact pixel-centre map by 0.5 (1 - s) px
        assert abs(cu - u) < 0.5 and abs(cv_ - v) < 0.5, (u, v, cu, cv_)
    # a flipped sample mirrors the principal point: cx' = W - 1 - cx
    ds_f, _ = build_video_data(_cfg(tmp_path, height=96, width=128), _augment(flip_prob=1.0), verbose=False)
    assert ds_f[0]["K"][0, 2].item() == pytest.approx(127 - K[0, 2], rel=1e-6)


def test_intrinsics_sources_and_formats(tmp_path):
    frames = _frames(4)
    _write_jpgs(tmp_path / "s1", frames)
    _write_jpgs(tmp_path / "s2", frames)
    # nothing given: stop and explain
    seqs = discover_sequences(tmp_path)
    with pytest.raises(IntrinsicsMissing, match="allow_default_intrinsics") as e:
        resolve_intrinsics(seqs, _cfg(tmp_path), tmp_path)
    assert "calibrateCamera" in str(e.value) and "s1" in str(e.value)
    # explicit default flag: Monodepth2's K at the network size
    ds, _ = build_video_data(_cfg(tmp_path, allow_default_intrinsics=True), _augment(), verbose=False)
    np.testing.assert_allclose(ds[0]["K"].numpy(), monodepth2_intrinsics(128, 64))
    # a KITTI calib file whose S_rect_02 is twice the frames' size: K is rescaled from S_rect
    calib = tmp_path / "calib_cam_to_cam.txt"
    calib.write_text("calib_time: 09-Jan-2012 13:57:47\nS_rect_02: 6.400000e+02 3.520000e+02\n"
                     "P_rect_02: 5.0e+02 0.0 2.0e+02 4.5e+01 0.0 4.8e+02 2.5e+02 0.0 0.0 0.0 1.0 0.0\n")
    ds, _ = build_video_data(_cfg(tmp_path, intrinsics=str(calib)), _augment(), verbose=False)
    np.testing.assert_allclose(ds[0]["K"].numpy(), [[500 * 128 / 640, 0, 200 * 128 / 640],
                                                    [0, 480 * 64 / 352, 250 * 64 / 352], [0, 0, 1]], rtol=1e-6)
    # a per-sequence intrinsics.txt wins over the dataset-wide value
    (tmp_path / "s2" / "intrinsics.txt").write_text("K: 100 0 150 0 110 90 0 0 1\n")
    seqs = discover_sequences(tmp_path)
    resolve_intrinsics(seqs, _cfg(tmp_path, fx=300.0, fy=300.0, cx=160.0, cy=88.0), tmp_path)
    assert seqs[0].K[0, 0] == 300.0 and seqs[1].K[0, 0] == 100.0 and seqs[1].K[1, 2] == 90.0
    # formats
    K, size = parse_intrinsics_text("fx: 700\nfy: 710\ncx: 600\ncy: 180\nsize: 1242 375\n")
    assert K[0, 0] == 700 and K[1, 2] == 180 and size == (1242, 375)
    K, size = parse_intrinsics_text("700 0 600\n0 710 180\n0 0 1\n")
    assert K[1, 1] == 710 and size is None
    with pytest.raises(ValueError, match="numbers"):
        parse_intrinsics_text("700 710 600\n")


def test_static_frame_filter_drops_repeated_frame(tmp_path, capsys):
    frames = _frames(8, repeat=4)  # frame 4 == frame 3: the car stood still
    _write_jpgs(tmp_path / "seq", frames)
    cfg = _cfg(tmp_path, static_threshold=0.01, fx=200.0, fy=200.0, cx=160.0, cy=88.0)
    ds, _ = build_video_data(cfg, _augment(), verbose=True)
    assert ds.n_candidates == 6 and ds.n_static == 2  # targets 3 (source 4) and 4 (source 3)
    assert [t for _, t in ds.samples] == [1, 2, 5, 6]
    assert "dropped 2 of 6 samples" in capsys.readouterr().out
    ds0, _ = build_video_data(_cfg(tmp_path, fx=200.0, fy=200.0, cx=160.0, cy=88.0), _augment(), verbose=False)
    assert len(ds0) == 6 and ds0.n_static == 0


def test_split_by_sequence_and_sample_contract(tmp_path):
    for k in range(5):
        _write_jpgs(tmp_path / f"seq{k}", _frames(5))
    tr, va = split_sequences([f"seq{k}" for k in range(5)], 0.2, seed=0)
    assert len(va) == 1 and set(tr) | set(va) == {f"seq{k}" for k in range(5)} and not set(tr) & set(va)
    assert split_sequences([f"seq{k}" for k in range(5)], 0.2, seed=0) == (tr, va)
    assert split_sequences(["one"], 0.5) == (["one"], [])
    train, val = build_video_data(_cfg(tmp_path, val_fraction=0.2, fx=200.0, fy=200.0, cx=160.0, cy=88.0,
                                       frame_ids=[0, -2, 2]),
                                  _augment(color_jitter_prob=1.0, flip_prob=0.5), seed=3, verbose=False)
    assert len(train) == 4 * 1 and len(val) == 1
    assert {s.name for s in train.sequences}.isdisjoint({s.name for s in val.sequences})
    s = train[0]
    color, color_aug = s.images()
    assert color.shape == color_aug.shape == (3, 3, 64, 128) and color.dtype == torch.float32
    assert not torch.equal(color, color_aug)  # jittered
    torch.testing.assert_close(train[0].images()[1], color_aug)  # deterministic per (seed, epoch, index)
    v = val[0]
    assert v.jitter is None and v.color_aug is None  # no augmentation for validation
    assert torch.equal(*v.images())


def test_config_keys_and_train_command_without_intrinsics(tmp_path, capsys):
    cfg = load_config("configs/custom_video.yaml", [f"data.root={tmp_path}"])
    assert cfg.data.dataset == "video" and cfg.data.height % 32 == 0
    with pytest.raises(ConfigError, match="data.dataset"):
        load_config(None, ["data.dataset=folder"])
    with pytest.raises(ConfigError, match="data.stereo"):
        load_config("configs/custom_video.yaml", ["data.stereo=true"])
    with pytest.raises(ConfigError, match="frame_stride"):
        load_config("configs/custom_video.yaml", ["data.frame_stride=0"])
    _write_jpgs(tmp_path / "seq", _frames(4))
    rc = train.main(["--config", "configs/custom_video.yaml", f"data.root={tmp_path}", "model.pretrained=false"])
    err = capsys.readouterr().err
    assert rc == 2 and "No camera intrinsics" in err and "data.intrinsics=" in err
    rc = train.main(["--config", "configs/custom_video.yaml", f"data.root={tmp_path / 'missing'}",
                     "model.pretrained=false"])
    assert rc == 2 and "No video dataset" in capsys.readouterr().err


def test_decode_video_refreshes_when_source_changes(tmp_path):
    _write_mp4(tmp_path / "v.mp4", _frames(4))
    out = tmp_path / "cache"
    assert len(decode_video(tmp_path / "v.mp4", out)) == 4
    _write_mp4(tmp_path / "v.mp4", _frames(6))
    assert len(decode_video(tmp_path / "v.mp4", out)) == 6 and not (out / "000006.jpg").exists()


# ---------------------------------------------------------------- validation split and loss


def test_split_sequences_never_takes_half_of_a_tiny_dataset():
    names = [f"s{k}" for k in range(10)]
    assert split_sequences(["a", "b"], 0.1) == (["a", "b"], [])  # 0.2 sequences: none held out
    assert split_sequences(["a", "b", "c", "d", "e"], 0.1) == (["a", "b", "c", "d", "e"], [])
    tr, va = split_sequences(["a", "b"], 0.5)  # asked for half: one each, never both
    assert len(tr) == len(va) == 1
    assert len(split_sequences(names, 0.1)[1]) == 1 and len(split_sequences(names, 0.25)[1]) == 2
    assert len(split_sequences(names, 0.99)[0]) == 1  # at least one sequence always trains
    assert split_sequences(names, 0.0) == (names, [])


def test_hold_out_tail_counts():
    seq = Sequence("s", [Path(f"{i:06d}.jpg") for i in range(30)], Path("s"), K=np.eye(3), K_source="x")
    tr, va = hold_out_tail(seq, 0.1, [0, -1, 1])  # 3 val frames, a gap of 3, 24 training frames
    assert [p.name for p in tr.frames] == [f"{i:06d}.jpg" for i in range(24)]
    assert [p.name for p in va.frames] == [f"{i:06d}.jpg" for i in range(27, 30)]
    assert va.name == "s[val]" and va.K is seq.K and tr.K_source == "x"
    tr, va = hold_out_tail(seq, 0.5, [0, -2, 2])  # window 5: 15 val frames, gap 5, 10 training frames
    assert len(tr.frames) == 10 and va.frames[0].name == "000015.jpg"
    short = Sequence("t", seq.frames[:8], Path("t"))
    assert hold_out_tail(short, 0.1, [0, -1, 1]) == (short, None)  # 8 < 3 val + 3 gap + 3 train
    assert hold_out_tail(seq, 0.0, [0, -1, 1]) == (seq, None)


def _two_sequences(root, n=30):
    for k in range(2):
        _write_jpgs(root / f"seq{k}", _frames(n, step=4 + k))
        (root / f"seq{k}" / "intrinsics.txt").write_text("200 200 160 88\n")


def test_tiny_dataset_holds_out_frames_with_a_gap(tmp_path, capsys):
    _two_sequences(tmp_path)
    train_set, val = build_video_data(_cfg(tmp_path, val_fraction=0.1), _augment(), verbose=True)
    assert "val the last frames of 2 sequence(s) (6 frames) / 2 samples" in capsys.readouterr().out
    assert [s.name for s in train_set.sequences] == ["seq0", "seq1"]  # both sequences train
    assert len(train_set) == 2 * (24 - 2) and len(val) == 2 * (3 - 2)
    train_frames = {p for i in range(len(train_set)) for p in train_set.paths(i)}
    val_frames = {p for i in range(len(val)) for p in val.paths(i)}
    assert not train_frames & val_frames
    for k in range(2):  # a gap of one frame window (3 frames) between the two parts
        last_train = max(int(p.stem) for p in train_frames if p.parent.name == f"seq{k}")
        first_val = min(int(p.stem) for p in val_frames if p.parent.name == f"seq{k}")
        assert (last_train, first_val) == (23, 27)


def test_validation_loss_without_gt(tmp_path):
    """Held-out samples are scored by the photometric loss, without gradients, in eval mode,
    without zoom: the mean of the per-sample losses; the global random state is left alone."""
    _two_sequences(tmp_path, n=20)
    cfg = load_config("configs/custom_video.yaml", [
        f"data.root={tmp_path}", "data.height=64", "data.width=96", "data.val_fraction=0.2",
        "data.static_threshold=0", "model.pretrained=false", "train.batch_size=2", "train.num_workers=0",
        "train.device=cpu", f"output.dir={tmp_path / 'run'}"])
    train_set, val = build_video_data(cfg.data, cfg.augment, verbose=False)
    assert len(val) == 2 * (4 - 2)  # 0.2 x 2 sequences rounds to 0: 4 frames of each
    trainer = Trainer(cfg, train_set, val_samples=val)
    rng_before = torch.get_rng_state()
    m = trainer.validate()
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert set(m) == {"val_loss", "val_photometric", "n_val_samples"} and m["n_val_samples"] == len(val)
    trainer.depth_net.eval(), trainer.pose_net.eval()
    with torch.no_grad():
        per = [trainer.compute_loss(collate([val[i]]), step=0, rank=0, model=trainer.nets, zoom=False)[0]
               for i in range(len(val))]
    assert m["val_loss"] == pytest.approx(np.mean([float(t.total) for t in per]), rel=1e-4)
    assert m["val_photometric"] == pytest.approx(np.mean([float(t.photometric) for t in per]), rel=1e-4)
    assert trainer.validate() == m  # deterministic
    cfg.augment.zoom_prob = 1.0  # a training augmentation: not applied to validation
    assert trainer.validate() == m


def test_train_command_reports_the_validation_loss(tmp_path, capsys):
    _two_sequences(tmp_path, n=12)
    rc = train.main(["--config", "configs/custom_video.yaml", f"data.root={tmp_path}", "data.height=64",
                     "data.width=96", "data.static_threshold=0", "model.pretrained=false", "train.batch_size=2",
                     "train.max_steps=2", "train.num_workers=0", "train.device=cpu", "train.progress=false",
                     "train.image_every=0", f"output.dir={tmp_path / 'run'}"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["n_val_samples"] == 2 and np.isfinite(metrics["val_photometric"])
