"""Monodepth2 model folders: the same outputs as Monodepth2's networks, the config they imply,
conversion both ways (bit-identical round trips), every command accepting a folder, bad input,
and ``model.init_from``.

Monodepth2's networks are re-implemented in tests/monodepth2_reference.py (its module layout, hence
its state-dict keys, and its forward passes) with random weights and random BatchNorm statistics.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from common.errors import InputError
import evaluate
from data.datasets import build_training_data
from data.samples import collate
from depth import convert, export, predict
from depth.config import Config, load_config, to_dict
from depth.eval.pose import load_odometry_poses, snippet_ates
from depth.eval.scale import stereo_eval_scale, stereo_scale
from depth.geometry import disp_to_depth, pose_vector_to_matrix
from depth.io.monodepth2 import EXTRA_KEY, Monodepth2FormatError, monodepth2_state_dicts
from depth.model import build_networks, load_model
from depth.train.finetune import init_networks
from depth.train.trainer import Trainer
from tests import monodepth2_reference as ref
from tests.helpers import procedural_image

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
H, W = 64, 192
FILES = ("encoder.pth", "depth.pth", "pose_encoder.pth", "pose.pth")


def _images(n: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_state(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k] and type(a[k]) is type(b[k]), k


@pytest.fixture(scope="module")
def mono_folder(tmp_path_factory):
    """A ResNet-18 Monodepth2 folder with a pose network, 64x192, and its reference networks."""
    folder = tmp_path_factory.mktemp("md2") / "mono_192x64"
    return folder, ref.make_folder(folder, 18, height=H, width=W, seed=3)


# ----------------------------------------------------------------------------------------------
# The same numbers as Monodepth2
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layers, size", [(18, (192, 640)), (50, (96, 320))], ids=["resnet18", "resnet50"])
def test_outputs_equal_monodepth2(tmp_path, layers, size):
    h, w = size
    enc, dec, penc, pdec = ref.make_folder(tmp_path / "model", layers, height=h, width=w, seed=layers)
    nets, cfg = load_model(tmp_path / "model")
    d, m = cfg.data, cfg.model
    assert (d.height, d.width, m.encoder, d.intrinsics) == (h, w, f"resnet{layers}", "monodepth2")
    assert (m.scales, m.dca, m.min_depth, m.max_depth) == ([0, 1, 2, 3], False, 0.1, 100.0)
    assert (m.pose_rotation_scale, m.pose_translation_scale, d.frame_ids) == (0.01, 0.01, [0, -1, 1])
    assert not d.stereo and stereo_scale(cfg) is None and not nets.training

    frames = _images(3, h, w)  # frames -1, 0, 1 of one snippet
    with torch.no_grad():
        want = dec(enc(frames))
        got = nets.depth_net.forward_scales(frames)
        for s in range(4):
            assert got[s].shape == want[("disp", s)].shape == (3, 1, h >> s, w >> s)
            torch.testing.assert_close(got[s], want[("disp", s)], rtol=0, atol=1e-6)
        assert want[("disp", 0)].std() > 1e-3  # not a saturated sigmoid
        scaled, depth = disp_to_depth(nets.depth_net(frames), m.min_depth, m.max_depth)
        ref_scaled, ref_depth = ref.disp_to_depth(want[("disp", 0)], 0.1, 100)
        torch.testing.assert_close(scaled, ref_scaled, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(depth, ref_depth, rtol=1e-6, atol=1e-6)

        # pose, as Monodepth2's trainer feeds it (pair mode): (f, 0) for f < 0, (0, f) otherwise
        color = frames[[1, 0, 2]][None]  # B=1, frames in frame_ids order (0, -1, 1)
        _, poses = nets(color, color[:, 0], (0, -1, 1))
        for (aa, t), f in zip(poses, (-1, 1)):
            pair = [color[:, 1], color[:, 0]] if f < 0 else [color[:, 0], color[:, 2]]
            ref_aa, ref_t = pdec([penc(torch.cat(pair, 1))])
            torch.testing.assert_close(aa, ref_aa[:, 0, 0], rtol=1e-5, atol=1e-9)
            torch.testing.assert_close(t, ref_t[:, 0, 0], rtol=1e-5, atol=1e-9)
            assert ref_aa.abs().max() > 1e-5


def test_stereo_folder_config_and_file_paths(tmp_path):
    ref.make_folder(tmp_path / "s", 18, height=H, width=W, pose=False, use_stereo=True)
    nets, cfg = load_model(tmp_path / "s")
    assert cfg.data.stereo and cfg.data.frame_ids == [0] and nets.pose_net is None
    assert (cfg.data.stereo_baseline, cfg.data.stereo_baseline_metric) == (0.1, 0.54)
    assert stereo_scale(cfg) == stereo_eval_scale(cfg) == 5.4
    x = _images(1, H, W)
    with torch.no_grad():
        for name in ("encoder.pth", "depth.pth"):  # a file of the folder means the folder
            other, other_cfg = load_model(tmp_path / "s" / name)
            assert to_dict(other_cfg) == to_dict(cfg) and torch.equal(other.depth_net(x), nets.depth_net(x))
    # a model saved by an older Monodepth2 trainer without use_stereo: monocular
    enc = _load(tmp_path / "s" / "encoder.pth")
    del enc["use_stereo"]
    torch.save(enc, tmp_path / "s" / "encoder.pth")
    assert not load_model(tmp_path / "s")[1].data.stereo


# ----------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------

def test_monodepth2_to_checkpoint_and_back_is_bit_identical(mono_folder, tmp_path, capsys):
    folder, _ = mono_folder
    ckpt, back = tmp_path / "model.pt", tmp_path / "back"
    assert convert.main([str(folder), "--output", str(ckpt)]) == 0
    assert "resnet18, 192x64, mono, baseline decoder, depth + pose" in capsys.readouterr().out
    nets, cfg = load_model(ckpt)
    direct, direct_cfg = load_model(folder)
    assert to_dict(cfg) == to_dict(direct_cfg)
    with torch.no_grad():
        x = _images(2, H, W)
        assert torch.equal(nets.depth_net(x), direct.depth_net(x))
    extra = torch.load(ckpt, weights_only=False)[EXTRA_KEY]  # what the project's networks do not use
    assert set(extra["encoder.pth"]) == set(extra["pose_encoder.pth"]) == {"encoder.fc.weight", "encoder.fc.bias"}
    assert extra["pose.pth"]["net.3.weight"].shape == (6, 256, 1, 1)
    assert convert.main([str(ckpt), "--output", str(back), "--to", "monodepth2"]) == 0
    assert sorted(p.name for p in back.iterdir()) == sorted(FILES)
    for name in FILES:
        _assert_same_state(_load(folder / name), _load(back / name))


def _random_checkpoint(path: Path, cfg: Config, seed: int = 0):
    """Project networks with random BatchNorm statistics and biases, saved as a checkpoint."""
    torch.manual_seed(seed)
    nets = build_networks(cfg)
    ref.randomise(nets, torch.Generator().manual_seed(seed))
    torch.save({"depth_net": nets.depth_net.state_dict(), "pose_net": nets.pose_net.state_dict(),
                "config": to_dict(cfg), "step": 7}, path)
    return nets.eval()


def test_checkpoint_to_monodepth2_runs_in_monodepth2_and_comes_back(tmp_path, capsys):
    cfg = load_config(overrides=[f"data.height={H}", f"data.width={W}", "data.stereo=true"])
    nets = _random_checkpoint(tmp_path / "ours.pt", cfg)
    folder, again = tmp_path / "md2", tmp_path / "again.pt"
    assert convert.main([str(tmp_path / "ours.pt"), "--output", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "mono+stereo" in out and "metric factor of 1" in out  # this project's 0.54 baseline, noted
    # Monodepth2's own loading (strict, the classifier included) and forward give our outputs
    (enc, dec, penc, pdec), meta = ref.load_folder(folder, 18)
    assert meta == (H, W, True)
    x = _images(2, H, W)
    with torch.no_grad():
        want = dec(enc(x))
        for s, got in enumerate(nets.depth_net.forward_scales(x)):
            torch.testing.assert_close(got, want[("disp", s)], rtol=0, atol=1e-6)
        aa, t = nets.pose_net(x[:1], x[1:])
        ref_aa, ref_t = pdec([penc(torch.cat([x[:1], x[1:]], 1))])
        for frame in (0, 1):  # the second frame's channels repeat the first's
            torch.testing.assert_close(aa, ref_aa[:, frame, 0], rtol=1e-5, atol=1e-9)
            torch.testing.assert_close(t, ref_t[:, frame, 0], rtol=1e-5, atol=1e-9)
    assert not enc.encoder.fc.weight.any() and not penc.encoder.fc.bias.any()
    # and back: every tensor bit-identical, the network-defining config the same
    assert convert.main([str(folder), "--output", str(again)]) == 0
    back = torch.load(again, weights_only=False)
    _assert_same_state(nets.depth_net.state_dict(), back["depth_net"])
    _assert_same_state(nets.pose_net.state_dict(), back["pose_net"])
    for section, key in (("data", "height"), ("data", "width"), ("data", "stereo"), ("model", "encoder"),
                         ("model", "scales"), ("model", "dca")):
        assert back["config"][section][key] == to_dict(cfg)[section][key], key


def test_export_folds_pose_scales_and_fills_missing_heads(tmp_path):
    cfg = load_config(overrides=[f"data.height={H}", f"data.width={W}", "model.scales=[0]",
                                 "model.pose_rotation_scale=0.002", "model.pose_translation_scale=0.05",
                                 "model.min_depth=0.5", "model.max_depth=80"])
    nets = _random_checkpoint(tmp_path / "c.pt", cfg)
    files, notes = monodepth2_state_dicts(nets, cfg)
    assert any("scale(s) [1, 2, 3]" in n for n in notes) and any("folded" in n for n in notes)
    assert any("--min_depth" in n for n in notes)
    for k in (11, 12, 13):
        assert not files["depth.pth"][f"decoder.{k}.conv.weight"].any()
    pdec = ref.PoseDecoder([512])
    pdec.load_state_dict(files["pose.pth"])
    feats = torch.randn(2, 512, 2, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref_aa, ref_t = pdec([[feats]])
        aa, t = nets.pose_net.decoder(feats)
    torch.testing.assert_close(aa, ref_aa[:, 0, 0], rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(t, ref_t[:, 0, 0], rtol=1e-5, atol=1e-9)
    assert aa.abs().max() > 1e-5 and t.abs().max() > 1e-5


def test_dca_checkpoint_is_refused_with_the_reason(tmp_path, capsys):
    cfg = load_config(overrides=[f"data.height={H}", f"data.width={W}", "model.dca=true"])
    _random_checkpoint(tmp_path / "dca.pt", cfg)
    assert convert.main([str(tmp_path / "dca.pt"), "--output", str(tmp_path / "out"), "--to", "monodepth2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "DCA" in err and "attention" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    with pytest.raises(Monodepth2FormatError, match="cross-attention"):
        monodepth2_state_dicts(*load_model(tmp_path / "dca.pt"))


def test_convert_refuses_same_format_and_existing_folder(mono_folder, tmp_path, capsys):
    folder, _ = mono_folder
    assert convert.main([str(folder), "--output", str(tmp_path / "x"), "--to", "monodepth2"]) == 2
    assert "already a Monodepth2 model folder" in capsys.readouterr().err
    assert convert.main([str(folder), "--output", str(tmp_path / "m.pt")]) == 0
    assert convert.main([str(tmp_path / "m.pt"), "--output", str(tmp_path / "y.pt"), "--to", "checkpoint"]) == 2
    assert "already a checkpoint" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("keep me")
    assert convert.main([str(tmp_path / "m.pt"), "--output", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


# ----------------------------------------------------------------------------------------------
# Bad input: a clear error naming the file, exit status 2, nothing written
# ----------------------------------------------------------------------------------------------

def _edit(folder: Path, name: str, change) -> None:
    state = _load(folder / name)
    change(state)
    torch.save(state, folder / name)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD = {
    "no depth.pth": ("depth.pth", "not found", lambda f: (f / "depth.pth").unlink()),
    "no encoder.pth": ("encoder.pth", "not found", lambda f: (f / "encoder.pth").unlink()),
    "pose.pth without pose_encoder.pth": ("pose_encoder.pth", "needs both",
                                          lambda f: (f / "pose_encoder.pth").unlink()),
    "truncated": ("encoder.pth", "could not be read", lambda f: _truncate(f / "encoder.pth")),
    "not a state dict": ("depth.pth", "expected a state dict", lambda f: torch.save([1, 2], f / "depth.pth")),
    "missing key": ("depth.pth", "missing keys (decoder.3.conv.conv.bias)",
                    lambda f: _edit(f, "depth.pth", lambda s: s.pop("decoder.3.conv.conv.bias"))),
    "unexpected key": ("encoder.pth", "unexpected keys (encoder.attention.weight)",
                       lambda f: _edit(f, "encoder.pth",
                                       lambda s: s.update({"encoder.attention.weight": torch.ones(3)}))),
    "wrong shape": ("pose.pth", "net.1.weight (256, 128, 3, 3)",
                    lambda f: _edit(f, "pose.pth", lambda s: s.update({"net.1.weight": torch.ones(256, 128, 3, 3)}))),
    "no height": ("encoder.pth", "'height'", lambda f: _edit(f, "encoder.pth", lambda s: s.pop("height"))),
    "size not a multiple of 32": ("encoder.pth", "data.height",
                                  lambda f: _edit(f, "encoder.pth", lambda s: s.update({"height": 100}))),
    "three-frame pose encoder": ("pose_encoder.pth", "6 channels", lambda f: _edit(
        f, "pose_encoder.pth", lambda s: s.update({"encoder.conv1.weight": torch.ones(64, 9, 7, 7)}))),
    "not a ResNet": ("encoder.pth", "no 'encoder.conv1.weight'",
                     lambda f: torch.save({"conv1.weight": torch.ones(1), "height": 64, "width": 64},
                                          f / "encoder.pth")),
}


def _copy_folder(src: Path, dst: Path, damaged: str) -> None:
    """``src`` as ``dst``: the file ``damaged`` (the one a case rewrites or removes) copied, every
    other file hard-linked (the cases never write them; ~100 MB saved per case)."""
    dst.mkdir()
    for p in src.iterdir():
        if p.name == damaged:
            shutil.copyfile(p, dst / p.name)
        else:
            os.link(p, dst / p.name)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_folder_named_exit_2_nothing_written(mono_folder, tmp_path, capsys, case):
    name, message, damage = BAD[case]
    folder = tmp_path / "model"
    _copy_folder(mono_folder[0], folder, name)
    damage(folder)
    with pytest.raises(Monodepth2FormatError) as info:
        load_model(folder)
    assert str(folder / name) in str(info.value) and message in str(info.value)
    assert isinstance(info.value, InputError)  # what every command turns into exit 2
    out = tmp_path / "out.pt"
    assert convert.main([str(folder), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(folder / name) in err and message in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_commands_exit_2_on_a_bad_folder(mono_folder, tmp_path, capsys):
    folder = tmp_path / "model"
    _copy_folder(mono_folder[0], folder, "depth.pth")
    _truncate(folder / "depth.pth")
    img = tmp_path / "frame.png"
    cv2.imwrite(str(img), procedural_image(H, W))
    runs = {
        "evaluate": lambda: evaluate.main(["depth", "--checkpoint", str(folder), "--data-path", str(tmp_path),
                                           "--gt", str(tmp_path / "gt.npz"), "--no-progress"]),
        "export": lambda: export.main(["--checkpoint", str(folder), "--output", str(tmp_path / "m.onnx")]),
        "predict": lambda: predict.main(["--checkpoint", str(folder), str(img), "--out", str(tmp_path / "p"),
                                         "--quiet"]),
    }
    for command, run in runs.items():
        assert run() == 2, command
        assert str(folder / "depth.pth") in capsys.readouterr().err, command
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.png", "model"]


def test_evaluate_pose_with_and_without_pose_files(mono_folder, tmp_path, capsys):
    folder, (_, _, penc, pdec) = mono_folder
    n = 7
    seq = tmp_path / "odometry" / "sequences" / "09" / "image_2"
    seq.mkdir(parents=True)
    frames = [procedural_image(H, W, seed=i) for i in range(n)]  # at the network size: no resize
    for i, im in enumerate(frames):
        cv2.imwrite(str(seq / f"{i:06d}.png"), im[:, :, ::-1])
    poses = tmp_path / "poses.txt"
    poses.write_text("".join(f"1 0 0 {0.02 * i * i} 0 1 0 0 0 0 1 {0.8 * i}\n" for i in range(n)))
    args = ["pose", "--poses", str(poses), "--odometry-path", str(tmp_path / "odometry"), "--no-progress"]
    assert evaluate.main([*args, "--checkpoint", str(folder), "--json", str(tmp_path / "ate.json")]) == 0
    # Monodepth2's evaluate_pose: frames (i, i+1) stacked, the first prediction, not inverted
    x = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in frames])
    with torch.no_grad():
        aa, t = pdec([penc(torch.cat([x[:-1], x[1:]], 1))])
    pred = pose_vector_to_matrix(aa[:, 0, 0], t[:, 0, 0]).double().numpy()
    want = snippet_ates(pred, load_odometry_poses(poses), track_length=5)
    got = json.loads((tmp_path / "ate.json").read_text())
    assert got["n_snippets"] == len(want) == n - 1
    assert got["ate_mean"] == pytest.approx(float(np.mean(want)), rel=1e-4) and got["ate_mean"] > 1e-3
    # a folder without pose files
    ref.make_folder(tmp_path / "depth_only", 18, height=H, width=W, pose=False)
    capsys.readouterr()
    assert evaluate.main([*args, "--checkpoint", str(tmp_path / "depth_only")]) == 2
    assert "no pose network" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Every command takes a folder
# ----------------------------------------------------------------------------------------------

def test_evaluate_stereo_folder_uses_5_4(tiny_synthetic, tmp_path, capsys):
    ref.make_folder(tmp_path / "ms", 18, height=H, width=W, use_stereo=True, seed=5)
    lines = (tiny_synthetic / "splits" / "test_files.txt").read_text().splitlines()[:3]
    (tmp_path / "split.txt").write_text("\n".join(lines) + "\n")
    results = {}
    for name, extra in (("stereo", []), ("explicit", ["--stereo-scale", "5.4"]), ("one", ["--stereo-scale", "1"])):
        assert evaluate.main(["depth", "--checkpoint", str(tmp_path / "ms"), "--data-path", str(tiny_synthetic),
                              "--split", str(tmp_path / "split.txt"), "--stereo", "--no-progress",
                              "--json", str(tmp_path / f"{name}.json"), *extra]) == 0
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())
        assert results[name]["n_images"] == 3
    assert "stereo scale 5.4," in capsys.readouterr().out
    assert results["stereo"] == results["explicit"]
    assert results["stereo"]["abs_rel"] != results["one"]["abs_rel"]


def test_predict_and_export_take_a_folder(mono_folder, tmp_path, capsys):
    folder, (enc, dec, _, _) = mono_folder
    image = procedural_image(H, W)  # at the network size: no resize on the way in or out
    cv2.imwrite(str(tmp_path / "frame.png"), image[:, :, ::-1])
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        ref_scaled, ref_depth = ref.disp_to_depth(dec(enc(x))[("disp", 0)], 0.1, 100)
    assert predict.main(["--checkpoint", str(folder), str(tmp_path / "frame.png"), "--out", str(tmp_path / "p"),
                         "--quiet"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "p" / "frame_depth.npy"), ref_depth[0, 0].numpy(), rtol=1e-5)
    assert export.main(["--checkpoint", str(folder), "--output", str(tmp_path / "m.onnx")]) == 0
    assert "OK: max abs diff" in capsys.readouterr().out
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(out, ref_scaled.numpy(), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Fine-tuning: model.init_from
# ----------------------------------------------------------------------------------------------

def _train_cfg(root: Path, out: Path, *extra: str) -> Config:
    return load_config(ROOT / "configs" / "synthetic.yaml", [
        f"data.root={root}", f"data.split={root / 'splits'}", "data.synthetic.generate=false",
        "train.batch_size=2", "train.num_workers=0", "train.progress=false", f"output.dir={out}",
        "train.image_every=0", "data.val_gt=none", "optim.lr=1e-3", *extra])


def test_init_from_monodepth2_folder_starts_the_first_step(mono_folder, tiny_synthetic, tmp_path):
    folder, _ = mono_folder
    # Monodepth2's pose output scales (the synthetic preset's translation scale would be folded in)
    cfg = _train_cfg(tiny_synthetic, tmp_path / "run", f"model.init_from={folder}", "optim.warmup_steps=0",
                     "model.pose_translation_scale=0.01")
    train_set, _, _ = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
    trainer = Trainer(cfg, train_set)
    src, _ = load_model(folder)
    for mine, theirs in ((trainer.depth_net, src.depth_net), (trainer.pose_net, src.pose_net)):
        _assert_same_state(theirs.state_dict(), mine.state_dict())
    assert trainer.step_count == 0 and not trainer.optimizer.state
    assert "depth net 148/148 tensors" in trainer.init_summary and "pose net 128/128" in trainer.init_summary
    before = {k: v.clone() for k, v in trainer.depth_net.named_parameters()}
    train_set.set_epoch(0)
    assert trainer.train_step(collate([train_set[i] for i in range(2)])) is not None
    moved = max((p - before[k]).abs().max().item() for k, p in trainer.depth_net.named_parameters())
    assert 0 < moved <= 1.001e-3  # one Adam step (|update| <= lr) away from the imported weights
    # a resumed run keeps its checkpoint's weights: init_from is not applied
    fresh = Trainer(cfg, train_set, init_weights=False)
    assert not torch.equal(fresh.depth_net.encoder.conv1.weight, src.depth_net.encoder.conv1.weight)


def test_init_from_baseline_into_dca_and_pose_scales(tmp_path):
    cfg = load_config(overrides=[f"data.height={H}", f"data.width={W}"])
    src = _random_checkpoint(tmp_path / "base.pt", cfg)
    dca = load_config(overrides=[f"data.height={H}", f"data.width={W}", "model.dca=true",
                                 "model.pose_rotation_scale=0.004"])
    nets = build_networks(dca).eval()
    summary = init_networks(nets, tmp_path / "base.pt")
    assert "fresh: decoder.dca, decoder.head" in summary and "output scales folded in" in summary
    mine, theirs = nets.depth_net.state_dict(), src.depth_net.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine if k in theirs)
    assert {k for k in theirs if k not in mine} == {k for k in theirs if "upconv_0" in k or "dispconv" in k}
    x = _images(2, H, W)
    with torch.no_grad():  # the pose net predicts what the source predicts, whatever its output scales
        for a, b in zip(nets.pose_net(x[:1], x[1:]), src.pose_net(x[:1], x[1:])):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)


def test_init_from_shape_mismatch_names_tensors(tmp_path):
    ref.make_folder(tmp_path / "r50", 50, height=H, width=W, pose=False)
    nets = build_networks(load_config(overrides=[f"data.height={H}", f"data.width={W}"]))
    with pytest.raises(ValueError, match=r"differ in shape: encoder\.layer1\.0\.conv1\.weight \(64, 64, 1, 1\)"):
        init_networks(nets, tmp_path / "r50")


def test_init_from_foreign_file_is_bad_input_naming_the_key(tmp_path):
    # a torch file that is not a model of this project: a ValueError (bad input, exit 2 in train.py)
    torch.save({"state": torch.zeros(3)}, tmp_path / "foreign.pt")
    nets = build_networks(load_config(overrides=[f"data.height={H}", f"data.width={W}"]))
    with pytest.raises(ValueError, match=r"^model\.init_from: .*foreign\.pt"):
        init_networks(nets, tmp_path / "foreign.pt")


def test_train_cli_init_from_missing_stops_before_work(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "synthetic.yaml"),
                        f"model.init_from={tmp_path / 'nothing'}", f"output.dir={tmp_path / 'run'}",
                        f"data.root={tmp_path / 'data'}"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and "model.init_from" in r.stderr and str(tmp_path / "nothing") in r.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()
