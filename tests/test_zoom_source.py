"""Zoom from the source frame (``augment.zoom_source=frame``): the crop comes from the full-resolution
file and is resized once; K follows the actual crop; one box for every frame of a sample; the draw
is a function of (seed, epoch, index); the trainer does not zoom such batches again."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from common.errors import ConfigError
from data.color_jitter import IDENTITY, color_jitter
from data.datasets import build_training_data
from data.frames import FrameSampleDataset
from data.samples import collate
from depth.config import load_config
from depth.train import objective as objective_module
from depth.train.trainer import Trainer, ValidationData
from tests.helpers import SMALL_NETS

ROOT = Path(__file__).resolve().parents[1]
H, W = 64, 192  # network size
FULL = 4  # the file is FULL x the network size
_SS = 4  # supersampling of the reference renders


class _Files(FrameSampleDataset):
    """A one-sample dataset over given image files (``K_net``: intrinsics at the network size)."""

    def __init__(self, paths, K_net, **kw):
        super().__init__(H, W, len(paths), **{"color_jitter_prob": 0.0, "flip_prob": 0.0, **kw})
        self._paths, self.K_net = [Path(p) for p in paths], np.asarray(K_net, np.float32)

    def __len__(self):
        return 1

    def paths(self, index):
        return list(self._paths)

    def load_frames(self, index):
        return [self.read_resized(p)[0] for p in self._paths], self.K_net


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    """A synthetic street frame rendered at 4x the network size, written as a PNG, with the renderer."""
    synthetic = pytest.importorskip("data.synthetic")
    scene = synthetic.build_scene(0)
    T = synthetic.drive_trajectory(synthetic.drive_seed(0, 1), 12)[10] @ synthetic.cam_offsets(2)
    K_net = synthetic.K_RECT.astype(np.float64).copy()
    K_net[0] *= W / synthetic.WIDTH
    K_net[1] *= H / synthetic.HEIGHT

    def render(K, height, width, ss=1):
        """Pixel (u, v) of a ``height x width`` image with intrinsics K, box-averaged over ss x ss samples."""
        K_high = np.array(K, dtype=np.float64)
        K_high[:2, :2] *= ss
        K_high[:2, 2] = (K_high[:2, 2] + 0.5) * ss - 0.5
        rgb, _ = synthetic.render(scene, T, K_high, height * ss, width * ss)
        return cv2.resize(np.ascontiguousarray(rgb), (width, height), interpolation=cv2.INTER_AREA) if ss > 1 else rgb

    # the file: K_net in the resize convention of data.images.resize_intrinsics (u_full = u * FULL)
    K_full = K_net.copy()
    K_full[:2] *= FULL
    path = tmp_path_factory.mktemp("zoom_source") / "frame.png"
    cv2.imwrite(str(path), cv2.cvtColor(render(K_full, H * FULL, W * FULL, ss=2), cv2.COLOR_RGB2BGR))
    return dict(render=render, K_net=K_net, path=path)


@pytest.mark.parametrize("fractions", [(0.6, 0.7), (0.83, 0.52)])
def test_zoomed_frame_is_the_view_of_the_longer_lens(street, fractions):
    """The frame-source zoom of a rendered file matches a render with its K' better than a render
    with the u * s or c-unchanged alternatives, and K' is the crop's closed form."""
    ds = _Files([street["path"], street["path"]], street["K_net"])
    frames, K = ds.zoomed_frames(0, ds.K_net, fractions)
    assert len(frames) == 2 and np.array_equal(frames[0], frames[1])  # one box for every frame
    wf, hf = W * FULL, H * FULL
    w, h = round(fractions[0] * wf), round(fractions[1] * hf)
    x0, y0 = (wf - w) // 2, (hf - h) // 2
    K_full = street["K_net"].copy()
    K_full[:2] *= FULL
    # OpenCV's resize maps pixel centres: u' + 0.5 = (u - x0 + 0.5) W / w
    expected = np.array([[K_full[0, 0] * W / w, 0, (K_full[0, 2] - x0 + 0.5) * W / w - 0.5],
                         [0, K_full[1, 1] * H / h, (K_full[1, 2] - y0 + 0.5) * H / h - 0.5], [0, 0, 1]])
    np.testing.assert_allclose(K, expected, rtol=1e-6)
    u_times_s = expected.copy()  # the convention of resize_intrinsics
    u_times_s[0, 2] = (K_full[0, 2] - x0) * W / w
    u_times_s[1, 2] = (K_full[1, 2] - y0) * H / h
    c_same = expected.copy()
    c_same[:2, 2] = street["K_net"][:2, 2]
    zoomed = frames[0].astype(np.float64)
    err = {name: np.abs(street["render"](KK, H, W, ss=_SS).astype(np.float64) - zoomed)[4:-4, 4:-4].mean()
           for name, KK in (("exact", K), ("u_times_s", u_times_s), ("c_unchanged", c_same))}
    assert err["exact"] < err["u_times_s"] and err["c_unchanged"] > 2 * err["exact"], err
    assert err["exact"] < 6.0, err  # grey levels: texture interpolation only


def test_frame_zoom_sample_fields_and_reproducibility(street):
    ds = _Files([street["path"]] * 3, street["K_net"], zoom_prob=1.0, zoom_min_scale=0.5)
    ds.set_epoch(0)
    s = ds[0]
    fr = ds.draw_zoom(0)
    assert fr is not None and all(0.5 <= f <= 1.0 for f in fr)
    frames, K = ds.zoomed_frames(0, ds.K_net, fr)
    zoomed = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # uint8, as the frames travel
    torch.testing.assert_close(s.color, zoomed)  # what the loss compares: the zoomed view
    torch.testing.assert_close(s.depth_in, zoomed[0])  # the depth input: its (here un-jittered) target
    torch.testing.assert_close(s.K, torch.from_numpy(K))
    plain = ds.make_sample(0, *ds.load_frames(0), False, False, 0)
    torch.testing.assert_close(s.color_aug, plain.network_frames())  # the pose network's frames: un-zoomed
    assert not torch.equal(s.color, s.color_aug)
    again = ds[0]  # a function of (seed, epoch, index): resume and workers see the same sample
    assert torch.equal(again.color, s.color) and torch.equal(again.K, s.K)
    draws = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        draws.add(ds.draw_zoom(0))
    assert len(draws) == 4
    batch = collate([s, again])
    assert batch.depth_in.shape == (2, 3, H, W)
    off = _Files([street["path"]], street["K_net"])  # zoom_prob 0: nothing extra
    assert off[0].depth_in is None and collate([off[0]]).depth_in is None and off.draw_zoom(0) is None
    assert _Files([street["path"]], street["K_net"], zoom_prob=1.0, is_train=False).draw_zoom(0) is None


def test_frame_zoom_depth_input_takes_the_device_jitter(street):
    """With the jitter on the device, the zoomed depth input and the un-zoomed pose frames both get
    the sample's one parameter draw; the loss's zoomed frames get none."""
    ds = _Files([street["path"]] * 3, street["K_net"], zoom_prob=1.0, color_jitter_prob=1.0, jitter_on="device")
    s = ds[0]
    assert s.jitter is not None and tuple(s.jitter.tolist()) != IDENTITY
    color, color_aug, depth_in = collate([s]).network_images("cpu")
    as_float = lambda t: t.float()[None] / 255  # noqa: E731
    params = (s.jitter[None], s.jitter_order[None])
    torch.testing.assert_close(color, as_float(s.color))  # un-jittered, zoomed
    torch.testing.assert_close(depth_in, color_jitter(as_float(s.depth_in), *params))
    torch.testing.assert_close(color_aug, color_jitter(as_float(s.color_aug), *params))
    assert (depth_in - as_float(s.depth_in)).abs().mean() > 1e-3  # the jitter was applied
    torch.testing.assert_close(as_float(s.depth_in), color[:, 0])  # before it: the zoomed target


def _cfg(root, out, source):
    return load_config(ROOT / "configs" / "synthetic.yaml", [
        f"data.root={root}", f"data.split={root / 'splits'}", "data.synthetic.generate=false",
        "train.batch_size=2", "train.num_workers=0", "train.progress=false", f"output.dir={out}",
        "train.val_every=0", "train.checkpoint_every=0", "augment.zoom_prob=1.0",
        f"augment.zoom_source={source}", *SMALL_NETS])


def test_trainer_does_not_zoom_frame_source_batches_again(tiny_synthetic, tmp_path, monkeypatch, one_thread):
    calls = []
    real = objective_module.zoom_images
    monkeypatch.setattr(objective_module, "zoom_images", lambda *a: calls.append(1) or real(*a))
    for source, n_calls in (("network", 2), ("frame", 0)):
        calls.clear()
        cfg = _cfg(tiny_synthetic, tmp_path / source, source)
        train_set, _, _ = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
        train_set.set_epoch(0)
        batch = collate([train_set[i] for i in range(2)])
        assert (batch.depth_in is not None) == (source == "frame")
        trainer = Trainer(cfg, train_set, ValidationData(None, None))
        with torch.no_grad():
            terms, disp = trainer.compute_loss(batch, step=0)
        assert torch.isfinite(terms.total) and len(calls) == n_calls, (source, calls)


def test_zoom_source_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="augment.zoom_source"):
        load_config(ROOT / "configs" / "synthetic.yaml", ["augment.zoom_source=lens"])
