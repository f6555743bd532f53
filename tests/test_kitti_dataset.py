"""KITTI raw loading on the real sample: calibration, triplets, intrinsics, augmentation, bad files."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from common.errors import DataError
from data.calib import intrinsics_from_calib
from data.frames import BadSampleError, read_image
from data.kitti import KittiImageSet, KittiRawDataset, image_path, odometry_frames
from data.splits import SplitEntry, read_split_file

pytestmark = pytest.mark.usefixtures("one_thread")


DATE = "2011_09_26"
DRIVE = f"{DATE}/{DATE}_drive_0001_sync"
FX, CX, CY = 721.5377, 609.5593, 172.854
FULL_W, FULL_H = 1242, 375
H, W = 64, 192


def _K_full() -> np.ndarray:
    return np.array([[FX, 0, CX], [0, FX, CY], [0, 0, 1]])


def _split(tmp_path: Path, lines: str) -> list[SplitEntry]:
    p = tmp_path / "train_files.txt"
    p.write_text(lines)
    return read_split_file(p)


def _frame_file(root: Path, frame: int, ext: str = "png", cam: int = 2) -> Path:
    return root / DRIVE / f"image_0{cam}" / "data" / f"{frame:010d}.{ext}"


def _tmp_layout(kitti_sample: Path, tmp_path: Path, frames=(0, 1, 2), same_png: int | None = None) -> Path:
    """A writable KITTI layout in tmp_path with the real calib and copies of real frames."""
    root = tmp_path / "kitti"
    (root / DRIVE / "image_02" / "data").mkdir(parents=True)
    shutil.copy(kitti_sample / DATE / "calib_cam_to_cam.txt", root / DATE / "calib_cam_to_cam.txt")
    for f in frames:
        src = _frame_file(kitti_sample, f if same_png is None else same_png)
        shutil.copy(src, _frame_file(root, f))
    return root


class _Viewed:
    """A dataset whose samples read as the training device sees them: ``color`` and ``color_aug``
    float32 in [0, 1] with the jitter applied (``FrameSample.images``); ``raw`` is the sample."""

    def __init__(self, ds: KittiRawDataset):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getattr__(self, name: str):  # set_epoch, paths, ...
        return getattr(self.ds, name)

    def __getitem__(self, index: int) -> dict:
        raw = self.ds[index]
        color, color_aug = raw.images()
        return {**{k: raw[k] for k in raw.keys()}, "color": color, "color_aug": color_aug, "raw": raw}


def _dataset(root, entries, **kw) -> _Viewed:
    defaults = dict(color_jitter_prob=0.0, flip_prob=0.0)
    defaults.update(kw)
    return _Viewed(KittiRawDataset(root, entries, H, W, **defaults))


# ---------------------------------------------------------------- calibration


def test_intrinsics_from_real_calib(kitti_sample):
    K, size = intrinsics_from_calib(kitti_sample / DATE, cam=2)
    np.testing.assert_allclose(K, _K_full(), rtol=0, atol=1e-9)
    assert size == (FULL_W, FULL_H)
    K3, size3 = intrinsics_from_calib(kitti_sample / DATE, cam=3)
    assert K3[0, 0] == pytest.approx(FX) and size3 == (FULL_W, FULL_H)


def test_calib_without_p_rect_02_names_file_and_key(kitti_sample, tmp_path):
    root = _tmp_layout(kitti_sample, tmp_path)
    calib = root / DATE / "calib_cam_to_cam.txt"
    calib.write_text("".join(l for l in calib.read_text().splitlines(True) if not l.startswith("P_rect_02")))
    entries = _split(tmp_path, f"{DRIVE} 1 l\n")
    with pytest.raises(DataError) as e:
        _dataset(root, entries)[0]
    assert "P_rect_02" in str(e.value) and str(calib) in str(e.value)


def test_missing_calib_file_names_it(kitti_sample, tmp_path):
    root = _tmp_layout(kitti_sample, tmp_path)
    (root / DATE / "calib_cam_to_cam.txt").unlink()
    with pytest.raises(DataError, match="calib_cam_to_cam.txt"):
        _dataset(root, _split(tmp_path, f"{DRIVE} 1 l\n"))[0]


# ---------------------------------------------------------------- a real triplet


def test_real_triplet_shapes_values_and_K(kitti_sample, tmp_path):
    entries = _split(tmp_path, f"{DRIVE} 1 l\n")
    assert entries == [SplitEntry(DRIVE, 1, "l")]
    ds = _dataset(kitti_sample, entries)
    assert len(ds) == 1
    s = ds[0]
    assert s["raw"].color.dtype == torch.uint8  # frames travel as uint8, converted on the device
    assert s["color"].shape == (3, 3, H, W) and s["color"].dtype == torch.float32
    assert s["color_aug"].shape == (3, 3, H, W)
    assert 0.0 <= s["color"].min() and s["color"].max() <= 1.0
    assert s["color"].std() > 0.05  # a real image, not blank
    expected_K = _K_full() * np.array([[W / FULL_W], [H / FULL_H], [1.0]])
    np.testing.assert_allclose(s["K"].numpy(), expected_K, rtol=1e-6)
    assert s["K"][0, 0].item() == pytest.approx(FX * W / FULL_W, rel=1e-6)
    assert s["K"][1, 2].item() == pytest.approx(CY * H / FULL_H, rel=1e-6)
    assert s["index"] == 0


def test_triplet_frame_order_is_target_prev_next(kitti_sample, tmp_path):
    ds = _dataset(kitti_sample, _split(tmp_path, f"{DRIVE} 1 l\n"))
    color = ds[0]["color"]
    for i, f in enumerate((1, 0, 2)):  # frame_ids (0, -1, 1) around frame 1
        img = cv2.cvtColor(cv2.imread(str(_frame_file(kitti_sample, f))), cv2.COLOR_BGR2RGB)
        ref = cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)
        ref = torch.from_numpy(ref).permute(2, 0, 1).float() / 255
        torch.testing.assert_close(color[i], ref, atol=1e-6, rtol=0)


def test_monodepth2_intrinsics_mode(kitti_sample, tmp_path):
    ds = _dataset(kitti_sample, _split(tmp_path, f"{DRIVE} 1 l\n"), intrinsics="monodepth2")
    K = ds[0]["K"].numpy()
    np.testing.assert_allclose(K, [[0.58 * W, 0, 0.5 * W], [0, 1.92 * H, 0.5 * H], [0, 0, 1]], rtol=1e-6)


def test_bad_intrinsics_mode_raises(kitti_sample):
    with pytest.raises(ValueError, match="intrinsics"):
        KittiRawDataset(kitti_sample, [], H, W, intrinsics="pinhole")


def test_stereo_partner_and_transform(kitti_sample, tmp_path):
    ds = _dataset(kitti_sample, _split(tmp_path, f"{DRIVE} 1 l\n"), stereo=True)
    s = ds[0]
    assert s["color"].shape == (4, 3, H, W)
    assert s["T_stereo"][0, 3].item() == pytest.approx(-0.54)
    torch.testing.assert_close(s["T_stereo"][:3, :3], torch.eye(3))
    # the partner is image_03 of the same frame: a different image from the target
    assert (s["color"][3] - s["color"][0]).abs().mean() > 0.01
    flipped = _dataset(kitti_sample, _split(tmp_path, f"{DRIVE} 1 l\n"), stereo=True, flip_prob=1.0)[0]
    assert flipped["T_stereo"][0, 3].item() == pytest.approx(0.54)


def test_image_set_reads_full_resolution_frames(kitti_sample, tmp_path):
    ds = KittiImageSet(kitti_sample, _split(tmp_path, f"{DRIVE} 5 l\n{DRIVE} 50 l\n"))
    frames = list(ds)
    assert len(ds) == len(frames) == 2 and frames[0].shape == (FULL_H, FULL_W, 3) and frames[0].dtype == np.uint8
    np.testing.assert_array_equal(ds[1], read_image(image_path(kitti_sample, ds.entries[1])))


def test_odometry_frames_png_or_jpg_and_missing_named(kitti_sample, tmp_path):
    folder = tmp_path / "sequences" / "09" / "image_2"
    folder.mkdir(parents=True)
    frame = cv2.imread(str(_frame_file(kitti_sample, 1)))
    cv2.imwrite(str(folder / "000000.png"), frame)
    cv2.imwrite(str(folder / "000001.jpg"), frame)
    got = list(odometry_frames(tmp_path, 9, 2))
    assert [f.shape for f in got] == [(FULL_H, FULL_W, 3)] * 2
    with pytest.raises(BadSampleError, match="odometry frame 2 not found as .*000002.png or .jpg"):
        list(odometry_frames(tmp_path, 9, 3))


# ---------------------------------------------------------------- augmentation


def test_flip_mirrors_images_and_principal_point(kitti_sample, tmp_path):
    entries = _split(tmp_path, f"{DRIVE} 1 l\n")
    plain = _dataset(kitti_sample, entries)[0]
    flipped = _dataset(kitti_sample, entries, flip_prob=1.0)[0]
    torch.testing.assert_close(flipped["color"], plain["color"].flip(-1))
    torch.testing.assert_close(flipped["color_aug"], plain["color"].flip(-1))
    assert flipped["K"][0, 2].item() == pytest.approx(W - 1 - plain["K"][0, 2].item(), rel=1e-6)
    for r, c in ((0, 0), (1, 1), (1, 2), (2, 2)):
        assert flipped["K"][r, c].item() == pytest.approx(plain["K"][r, c].item())


JITTER_ON = pytest.mark.parametrize("jitter_on", ["device", "loader"])


@JITTER_ON
def test_jitter_only_changes_color_aug(kitti_sample, tmp_path, jitter_on):
    entries = _split(tmp_path, f"{DRIVE} 1 l\n")
    plain = _dataset(kitti_sample, entries)[0]
    jit = _dataset(kitti_sample, entries, color_jitter_prob=1.0, jitter_on=jitter_on)[0]
    torch.testing.assert_close(jit["color"], plain["color"])  # the loss sees un-jittered frames
    assert (jit["color_aug"] - jit["color"]).abs().mean() > 1e-3
    assert 0 <= jit["color_aug"].min() and jit["color_aug"].max() <= 1


@JITTER_ON
def test_jitter_parameters_shared_by_all_frames(kitti_sample, tmp_path, jitter_on):
    """Three identical frames jittered with one parameter draw stay identical (docs/method.md §1)."""
    root = _tmp_layout(kitti_sample, tmp_path, frames=(0, 1, 2), same_png=1)
    entries = _split(tmp_path, f"{DRIVE} 1 l\n")
    ds = _dataset(root, entries, color_jitter_prob=1.0, jitter_on=jitter_on)
    for epoch in range(3):
        ds.set_epoch(epoch)
        s = ds[0]
        assert torch.equal(s["color"][0], s["color"][1]) and torch.equal(s["color"][0], s["color"][2])
        assert (s["color_aug"][0] - s["color"][0]).abs().mean() > 1e-3, "jitter was not applied"
        torch.testing.assert_close(s["color_aug"][1], s["color_aug"][0], atol=0, rtol=0)
        torch.testing.assert_close(s["color_aug"][2], s["color_aug"][0], atol=0, rtol=0)


@JITTER_ON
def test_same_seed_epoch_index_gives_same_sample(kitti_sample, tmp_path, jitter_on):
    entries = _split(tmp_path, f"{DRIVE} 1 l\n{DRIVE} 1 l\n")
    kw = dict(color_jitter_prob=1.0, flip_prob=0.5, seed=3, jitter_on=jitter_on)
    a, b = _dataset(kitti_sample, entries, **kw), _dataset(kitti_sample, entries, **kw)
    a.set_epoch(2)
    b.set_epoch(2)
    sa, sb = a[0], b[0]
    torch.testing.assert_close(sa["color_aug"], sb["color_aug"], atol=0, rtol=0)
    torch.testing.assert_close(sa["K"], sb["K"], atol=0, rtol=0)
    torch.testing.assert_close(a[0]["color_aug"], sa["color_aug"], atol=0, rtol=0)  # repeated call
    # another epoch (or another index of the same file) draws other augmentation
    b.set_epoch(3)
    assert not torch.equal(b[0]["color_aug"], sa["color_aug"])
    assert not torch.equal(a[1]["color_aug"], sa["color_aug"])
    # another seed too
    c = _dataset(kitti_sample, entries, **{**kw, "seed": 4})
    c.set_epoch(2)
    assert not torch.equal(c[0]["color_aug"], sa["color_aug"])


def test_validation_mode_never_augments(kitti_sample, tmp_path):
    entries = _split(tmp_path, f"{DRIVE} 1 l\n")
    ds = _dataset(kitti_sample, entries, color_jitter_prob=1.0, flip_prob=1.0, is_train=False)
    plain = _dataset(kitti_sample, entries)[0]
    s = ds[0]
    assert s["raw"].jitter is None and s["raw"].color_aug is None  # nothing drawn, nothing shipped
    torch.testing.assert_close(s["color_aug"], plain["color"])
    torch.testing.assert_close(s["K"], plain["K"])


# ---------------------------------------------------------------- bad files / formats


def test_missing_frame_raises_naming_path(kitti_sample, tmp_path):
    # frame 5 exists but its neighbour 4 does not
    ds = _dataset(kitti_sample, _split(tmp_path, f"{DRIVE} 5 l\n"))
    with pytest.raises(BadSampleError) as e:
        ds[0]
    assert "0000000004" in str(e.value) and "image_02" in str(e.value)
    assert ds.paths(0)[1].name.startswith("0000000004")


def test_corrupt_png_raises_naming_file(kitti_sample, tmp_path):
    root = _tmp_layout(kitti_sample, tmp_path)
    bad = _frame_file(root, 2)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    with pytest.raises(BadSampleError) as e:
        _dataset(root, _split(tmp_path, f"{DRIVE} 1 l\n"))[0]
    assert str(bad) in str(e.value)
    with pytest.raises(BadSampleError, match="missing"):
        read_image(root / "nope.png")


def test_jpg_frames_accepted(kitti_sample, tmp_path):
    root = tmp_path / "kitti"
    (root / DRIVE / "image_02" / "data").mkdir(parents=True)
    shutil.copy(kitti_sample / DATE / "calib_cam_to_cam.txt", root / DATE / "calib_cam_to_cam.txt")
    for f in (0, 1, 2):
        img = cv2.imread(str(_frame_file(kitti_sample, f)))
        assert cv2.imwrite(str(_frame_file(root, f, "jpg")), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    entries = _split(tmp_path, f"{DRIVE} 1 l\n")
    assert image_path(root, entries[0]).suffix == ".jpg"
    png = _dataset(kitti_sample, entries)[0]
    for ext in ("auto", "jpg"):
        s = _dataset(root, entries, img_ext=ext)[0]
        assert s["color"].shape == (3, 3, H, W)
        assert (s["color"] - png["color"]).abs().mean() < 0.02  # same frames, JPEG-compressed
        torch.testing.assert_close(s["K"], png["K"])
    with pytest.raises(BadSampleError, match="png"):
        _dataset(root, entries, img_ext="png")[0]


def test_png_preferred_when_both_exist(kitti_sample, tmp_path):
    root = _tmp_layout(kitti_sample, tmp_path, frames=(1,))
    _frame_file(root, 1, "jpg").write_bytes(b"not an image")
    entry = SplitEntry(DRIVE, 1, "l")
    assert image_path(root, entry).suffix == ".png"


def test_split_file_parsing_errors(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text(f"# comment\n\n{DRIVE} 0000000005 r\n{DRIVE} 7\n")
    assert read_split_file(p) == [SplitEntry(DRIVE, 5, "r"), SplitEntry(DRIVE, 7, "l")]
    p.write_text(f"{DRIVE} 1 l\n{DRIVE} x l\n")
    with pytest.raises(ValueError, match=r":2:.*integer"):
        read_split_file(p)
    p.write_text(f"{DRIVE} 1 left\n")
    with pytest.raises(ValueError, match="side"):
        read_split_file(p)
