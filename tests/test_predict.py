"""python -m depth.predict on real KITTI frames, a synthetic video, bad inputs and an ONNX model."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from depth.config import Config
from depth.eval.scale import ground_scale
from depth.inference import prefetched
from depth.predict import main
from depth.visualize import colorize_disparity
from tests.helpers import write_checkpoint

H, W = 64, 192


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = Config()
    cfg.data.height, cfg.data.width = H, W
    path = tmp_path_factory.mktemp("ckpt") / "baseline.pt"
    write_checkpoint(path, cfg)
    return path


def _outputs(folder):
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".png"), \
        sorted(p.name for p in folder.iterdir() if p.suffix == ".npy")


def test_predict_kitti_frames(checkpoint, kitti_sample, tmp_path):
    folders = sorted(kitti_sample.glob("2011_09_26/*_sync/image_02/data"))
    assert len(folders) >= 2
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), *map(str, folders), "--out", str(out), "--quiet"]) == 0
    # both folders are named "data": the second gets a suffix instead of overwriting the first
    for folder, target in zip(folders, ["data", "data_1"]):
        frames = sorted(folder.glob("*.png"))
        pngs, npys = _outputs(out / target)
        assert pngs == [f"{f.stem}_disp.png" for f in frames]
        assert npys == [f"{f.stem}_depth.npy" for f in frames]
        for f in frames:
            h, w = cv2.imread(str(f)).shape[:2]
            depth = np.load(out / target / f"{f.stem}_depth.npy")
            assert depth.shape == (h, w) and depth.dtype == np.float32
            assert np.all(depth >= 0.1 - 1e-5) and np.all(depth <= 100 + 1e-3)
            assert cv2.imread(str(out / target / f"{f.stem}_disp.png")).shape == (2 * h, w, 3)


def test_predict_scale(checkpoint, kitti_sample, tmp_path):
    frame = sorted(kitti_sample.glob("2011_09_26/*_sync/image_02/data/*.png"))[0]
    assert main(["--checkpoint", str(checkpoint), str(frame), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert main(["--checkpoint", str(checkpoint), str(frame), "--out", str(tmp_path / "b"), "--quiet",
                 "--scale", "5.4"]) == 0
    a = np.load(tmp_path / "a" / f"{frame.stem}_depth.npy")
    b = np.load(tmp_path / "b" / f"{frame.stem}_depth.npy")
    np.testing.assert_allclose(b, 5.4 * a, rtol=1e-5)


def _write_video(path, n, size=(160, 96)):
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, size)
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    rng = np.random.default_rng(0)
    for i in range(n):
        frame = np.full((size[1], size[0], 3), 40 * i, np.uint8)
        frame[:, : size[0] // 2] = rng.integers(0, 255, (size[1], size[0] // 2, 3), dtype=np.uint8)
        writer.write(frame)
    writer.release()


@pytest.mark.parametrize("ext", [".avi", ".mp4"])
def test_predict_video(checkpoint, tmp_path, ext):
    video = tmp_path / f"clip{ext}"
    _write_video(video, 4)
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), str(video), "--out", str(out), "--quiet"]) == 0
    pngs, npys = _outputs(out / "clip")
    assert pngs == [f"{i:06d}_disp.png" for i in range(4)]
    assert npys == [f"{i:06d}_depth.npy" for i in range(4)]
    assert np.load(out / "clip" / "000003_depth.npy").shape == (96, 160)


def test_bad_inputs_are_named_and_skipped(checkpoint, tmp_path, capsys):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.random.default_rng(0).integers(0, 255, (50, 120, 3), dtype=np.uint8))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png at all")
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"\x00" * 100)
    missing = tmp_path / "missing.jpg"
    out = tmp_path / "out"
    rc = main(["--checkpoint", str(checkpoint), str(missing), str(corrupt), str(bad_video), str(good),
               "--out", str(out), "--quiet"])
    assert rc == 1
    err = capsys.readouterr().err
    for name in ("missing.jpg", "corrupt.png", "broken.mp4"):
        assert name in err
    assert _outputs(out) == (["good_disp.png"], ["good_depth.npy"])
    assert np.load(out / "good_depth.npy").shape == (50, 120)


def test_predict_with_onnx(tmp_path):
    """The ONNX path reads size and output kind from the metadata (a tiny hand-built graph)."""
    h, w = 32, 96
    nodes = [helper.make_node("ReduceMean", ["image", "axes"], ["m"], keepdims=1),
             helper.make_node("Mul", ["m", "k"], ["mk"]),
             helper.make_node("Add", ["mk", "one"], ["depth"])]  # depth = 1 + 10 * mean(rgb)
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, h, w])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["N", 1, h, w])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("k", TensorProto.FLOAT, [], [10.0]),
                     helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    helper.set_model_props(model, {"output_kind": "depth", "height": str(h), "width": str(w),
                                   "min_depth": "0.1", "max_depth": "100.0"})
    onnx.save(model, str(tmp_path / "tiny.onnx"))
    img = tmp_path / "grey.png"
    cv2.imwrite(str(img), np.full((40, 130, 3), 51, np.uint8))  # mean 0.2 -> depth 3
    out = tmp_path / "out"
    assert main(["--onnx", str(tmp_path / "tiny.onnx"), str(img), "--out", str(out), "--quiet"]) == 0
    depth = np.load(out / "grey_depth.npy")
    assert depth.shape == (40, 130)
    np.testing.assert_allclose(depth, 3.0, rtol=1e-4)
    assert main(["--onnx", str(tmp_path / "tiny.onnx"), str(img), "--out", str(out), "--quiet",
                 "--height", "64"]) == 2


def test_ground_scale_recovers_camera_height_with_rescaled_K():
    """A flat road 1.65 m below the camera, predicted at 1/4 of metric scale: the factor is 4,
    also when K is given for a larger image than the depth map (K is rescaled to the map)."""
    h, w, fx, cx, cy = 120, 400, 200.0, 200.0, 60.0
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    ray_y = (v - cy) / fx
    depth = np.where(ray_y > 0.02, 1.65 / np.maximum(ray_y, 1e-6), 80.0)  # ground plane y = 1.65
    K_big = np.array([[2 * fx, 0, 2 * cx], [0, 2 * fx, 2 * cy], [0, 0, 1]])
    s = ground_scale(depth / 4.0, (K_big, (2 * w, 2 * h)), depth.shape, 1.65)
    assert abs(s - 4.0) < 0.04
    K = np.array([[fx, 0, cx], [0, fx, cy], [0, 0, 1]])
    assert abs(ground_scale(depth, (K, None), depth.shape, 1.65) - 1.0) < 0.01


def test_colorize_disparity_spans_min_to_95th_percentile():
    """Black at the minimum disparity, white (the top of magma) from the 95th percentile up."""
    d = torch.linspace(2.0, 12.0, 101).view(1, 1, 101)  # 95th percentile = 11.5
    rgb = colorize_disparity(d)
    assert rgb.shape == (3, 1, 101) and rgb.dtype == np.uint8
    lut = cv2.cvtColor(cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None], cv2.COLORMAP_MAGMA),
                       cv2.COLOR_BGR2RGB)[0]
    np.testing.assert_array_equal(rgb[:, 0, 0], lut[0])
    np.testing.assert_array_equal(rgb[:, 0, 95:].T, np.repeat(lut[255][None], 6, 0))
    mid = int((7.0 - 2.0) / (11.5 - 2.0) * 255)  # disparity 7.0 sits at index 50
    np.testing.assert_array_equal(rgb[:, 0, 50], lut[mid])
    flat = colorize_disparity(torch.full((1, 4, 4), 3.0))  # constant input: no division by zero
    assert (flat == flat[:, :1, :1]).all()


def _fake_predict(monkeypatch):
    """predict_frame replaced by a disparity that grows with the frame's brightness (frame i of
    _write_video is 40 i grey on its right half): a per-frame colour range would hide the growth."""
    import depth.commands.predict as predict_mod

    def fake(runner, rgb, scale=None):
        h, w = rgb.shape[:2]
        ramp = np.linspace(0.05, 0.5, w, dtype=np.float32)[None].repeat(h, 0)
        disp = ramp * (1.0 + rgb[:, w // 2:].mean() / 40.0)
        return disp, ((1.0 if scale is None else scale) / disp).astype(np.float32)
    monkeypatch.setattr(predict_mod, "predict_frame", fake)
    return fake


def test_video_frames_share_one_colour_range(checkpoint, tmp_path, monkeypatch):
    from depth.visualize import disparity_range
    fake = _fake_predict(monkeypatch)
    video = tmp_path / "clip.avi"
    _write_video(video, 4)
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), str(video), "--out", str(out), "--quiet", "--save", "png"]) == 0
    assert _outputs(out / "clip") == ([f"{i:06d}_disp.png" for i in range(4)], [])
    from data.video import video_frames
    frames = list(video_frames(video))
    disps = [fake(None, f)[0] for f in frames]
    vrange = disparity_range(disps)  # 4 frames <= RANGE_FRAMES: every frame fixes the range
    means = []
    for i, (f, d) in enumerate(zip(frames, disps)):
        png = cv2.cvtColor(cv2.imread(str(out / "clip" / f"{i:06d}_disp.png")), cv2.COLOR_BGR2RGB)
        bottom = png[f.shape[0]:]
        np.testing.assert_array_equal(bottom, colorize_disparity(torch.from_numpy(d[None]), vrange).transpose(1, 2, 0))
        means.append(bottom.astype(float).mean())
    # brighter frames are nearer: their disparity panels are brighter (per-frame ranges give 4 equal panels)
    assert all(b > a + 5 for a, b in zip(means, means[1:])), means


def test_video_out_writes_input_beside_depth(checkpoint, tmp_path, monkeypatch):
    _fake_predict(monkeypatch)
    video = tmp_path / "clip.mp4"
    _write_video(video, 5)
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), str(video), "--out", str(out), "--quiet", "--save", "npy",
                 "--video-out"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip", "clip.mp4"]  # no temporary file left
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    n, shapes = 0, set()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shapes = n + 1, shapes | {frame.shape}
    assert n == 5 and shapes == {(96, 320, 3)}  # 160x96 input | 160x96 disparity
    assert _outputs(out / "clip") == ([], [f"{i:06d}_depth.npy" for i in range(5)])
    # one named file for one sequence; a name for two sequences is refused
    assert main(["--checkpoint", str(checkpoint), str(video), "--out", str(out / "b"), "--quiet", "--save", "npy",
                 "--video-out", str(tmp_path / "named.mp4")]) == 0
    assert (tmp_path / "named.mp4").is_file()
    assert main(["--checkpoint", str(checkpoint), str(video), str(video), "--out", str(out / "c"), "--quiet",
                 "--video-out", str(tmp_path / "two.mp4")]) == 2


def test_save_chooses_outputs_and_a_known_scale_adds_a_colour_bar(checkpoint, tmp_path, capsys):
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 255, (50, 120, 3), dtype=np.uint8))
    run = ["--checkpoint", str(checkpoint), str(img), "--quiet", "--out"]
    assert main(run + [str(tmp_path / "a"), "--save", "png"]) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x_disp.png"]
    assert cv2.imread(str(tmp_path / "a" / "x_disp.png")).shape == (100, 120, 3)
    assert main(run + [str(tmp_path / "b"), "--save", "npy,ply"]) == 0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["x.ply", "x_depth.npy"]
    assert main(run + [str(tmp_path / "c"), "--save", "png", "--scale", "5.4"]) == 0
    assert cv2.imread(str(tmp_path / "c" / "x_disp.png")).shape == (100, 120 + 64, 3)  # + the metres bar
    capsys.readouterr()
    assert main(run + [str(tmp_path / "d"), "--save", "png,tiff"]) == 2
    assert "--save: unknown ['tiff']" in capsys.readouterr().err


def test_threads_caps_torch_and_opencv(checkpoint, tmp_path):
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((40, 90, 3), np.uint8))
    before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        assert main(["--checkpoint", str(checkpoint), str(img), "--quiet", "--out", str(tmp_path / "o"),
                     "--threads", "1"]) == 0
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1)
        assert main(["--checkpoint", str(checkpoint), str(img), "--quiet", "--out", str(tmp_path / "o"),
                     "--threads", "0"]) == 2
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def test_disparity_range_pools_frames_and_colour_bar_reads_depth():
    from depth.visualize import colour_bar, disparity_range
    a = np.linspace(1.0, 2.0, 101, dtype=np.float32)
    assert disparity_range([a]) == (1.0, pytest.approx(float(np.percentile(a, 95))))
    lo, hi = disparity_range([a, 3 * a])  # pooled: min of both, 95th percentile of the union
    assert lo == 1.0 and hi == pytest.approx(float(np.percentile(np.concatenate([a, 3 * a]), 95)))
    bar = colour_bar(100, (0.1, 0.5), scale=5.0)
    lut = cv2.cvtColor(cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None], cv2.COLORMAP_MAGMA),
                       cv2.COLOR_BGR2RGB)[0]
    assert bar.shape == (100, 64, 3)
    np.testing.assert_array_equal(bar[0, 0], lut[255])  # near (vmax) on top
    np.testing.assert_array_equal(bar[99, 0], lut[0])  # far (vmin) at the bottom
    assert bar[:, 20:].max() == 255  # tick labels drawn


# ---------------------------------------------------------------- prefetching


def test_prefetched_keeps_order_and_runs_ahead_in_another_thread():
    producers = []

    def items():
        for i in range(7):
            producers.append(threading.current_thread().name)
            yield i
    seen = []
    for i in prefetched(items(), depth=2):
        if i == 0:  # while the first item is consumed, the producer works ahead
            deadline = time.monotonic() + 5
            while len(producers) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(producers) >= 3
        seen.append(i)
    assert seen == list(range(7))
    assert set(producers) == {"prefetch"}


def test_prefetched_raises_where_the_item_failed_and_stops_early():
    def failing():
        yield 1
        yield 2
        raise ValueError("image 2 is unreadable")
    got = []
    with pytest.raises(ValueError, match="image 2 is unreadable"):
        for i in prefetched(failing()):
            got.append(i)
    assert got == [1, 2]
    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1
    for i in prefetched(endless(), depth=2):
        if i == 3:
            break
    time.sleep(0.3)
    assert len(produced) <= 3 + 1 + 2 + 1  # stopped: at most the queue's depth beyond the last item read
    n_after = len(produced)
    time.sleep(0.2)
    assert len(produced) == n_after
