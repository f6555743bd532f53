"""depth/model.py: building the networks, loading checkpoints, and the one prediction path.

The central property: the trainer's validation and ``evaluate.py depth`` score the same checkpoint
on the same images and GT to the same numbers (one resize, one forward, one metric call).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision.models as tvm

from common.errors import CheckpointError
import evaluate
from data.datasets import build_training_data
from data.frames import frames_to_tensor
from depth.config import Config, ConfigError, load_config, to_dict
from depth.eval.gt import save_dense_gt
from depth.geometry import disp_to_depth
from depth.inference import network_input, predict_disparities
from depth.io.checkpoint import save_checkpoint
from depth.model import Networks, build_networks, load_model
from depth.train.trainer import Trainer, ValidationData
from tests.helpers import procedural_image

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- build


def _key_hash(state: dict) -> tuple[int, str]:
    keys = sorted(state)
    return len(keys), hashlib.sha1(" ".join(keys).encode()).hexdigest()[:16]


def test_state_dict_keys_are_those_of_existing_checkpoints():
    """Checkpoints written before the model module existed load unchanged: same parameter names."""
    baseline = build_networks(Config())
    cfg = Config()
    cfg.model.dca = True
    assert _key_hash(baseline.depth_net.state_dict()) == (148, "405eec6d09cbf7d5")
    assert _key_hash(build_networks(cfg).depth_net.state_dict()) == (153, "7fe7ff43f9459f8c")
    assert _key_hash(baseline.pose_net.state_dict()) == (128, "30b7dae9eda010f9")


def test_imagenet_weights_reach_both_encoders_only_when_asked(tmp_path):
    torch.manual_seed(5)
    state = tvm.resnet18(weights=None).state_dict()
    torch.save(state, tmp_path / "r18.pth")
    cfg = load_config(overrides=["model.pretrained=true", f"model.weights_path={tmp_path / 'r18.pth'}"])
    nets = build_networks(cfg, pretrained=True)
    torch.testing.assert_close(nets.depth_net.encoder.conv1.weight, state["conv1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(nets.depth_net.encoder.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    # the pose encoder takes two stacked frames: conv1 repeated and divided by two
    torch.testing.assert_close(nets.pose_net.encoder.conv1.weight,
                               state["conv1.weight"].repeat(1, 2, 1, 1) / 2, rtol=0, atol=0)
    torch.testing.assert_close(nets.pose_net.encoder.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    # a checkpoint build (pretrained=False) and model.pretrained=false never read the file
    for nets in (build_networks(cfg), build_networks(load_config(overrides=[
            "model.pretrained=false", "model.weights_path=/nonexistent.pth"]), pretrained=True)):
        assert not torch.equal(nets.depth_net.encoder.conv1.weight, state["conv1.weight"])


@pytest.mark.parametrize("dca", ["false", "true"])
def test_init_depth_sets_the_untrained_depth(dca):
    """model.init_depth: an untrained net predicts about that depth (the heads' biases start at the
    matching logit); the default init predicts ~0.2 (sigmoid ~0.5)."""
    x = torch.rand(2, 3, 64, 192)
    torch.manual_seed(0)
    default = build_networks(load_config(overrides=[f"model.dca={dca}"])).depth_net.eval()
    for init in (1.0, 5.0):
        torch.manual_seed(0)
        nets = build_networks(load_config(overrides=[f"model.dca={dca}", f"model.init_depth={init}"])).eval()
        heads = nets.depth_net.decoder.disparity_heads()
        assert len(heads) == (1 if dca == "true" else 4)
        with torch.no_grad():
            _, depth = disp_to_depth(nets.depth_net(x), 0.1, 100.0)
            _, depth0 = disp_to_depth(default(x), 0.1, 100.0)
        assert depth.median().item() == pytest.approx(init, rel=0.15)
        assert depth0.median().item() == pytest.approx(0.2, rel=0.15)


def test_pose_output_scales():
    """model.pose_rotation_scale / pose_translation_scale multiply the pose decoder's outputs."""
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    torch.manual_seed(0)
    ref = build_networks(Config()).pose_net.eval()
    torch.manual_seed(0)
    scaled = build_networks(load_config(overrides=["model.pose_translation_scale=0.5",
                                                   "model.pose_rotation_scale=0.02"])).pose_net.eval()
    with torch.no_grad():
        (r0, t0), (r1, t1) = ref(a, b), scaled(a, b)
    torch.testing.assert_close(t1, t0 * 50, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(r1, r0 * 2, rtol=1e-5, atol=1e-9)


def test_stacked_pose_pairs_equal_separate_calls_in_eval_and_differ_in_training():
    """train.pose_stacked: one pose-net call on all pairs (temporal order kept: (-1, 0) and (0, +1))
    gives each pair's own pose when BatchNorm uses its running statistics; in training the batch
    statistics of the stacked call mix the pairs, so the poses differ (why it is off by default)."""
    torch.manual_seed(0)
    nets = build_networks(load_config(overrides=["model.encoder=resnet18", "model.pretrained=false"]))
    color_aug = torch.rand(2, 3, 3, 64, 96)
    depth_in = color_aug[:, 0]
    frame_ids = (0, -1, 1)
    nets.eval()
    with torch.no_grad():
        _, separate = nets(color_aug, depth_in, frame_ids)
        _, stacked = nets(color_aug, depth_in, frame_ids, pose_stacked=True)
        by_hand = nets.pose_net(color_aug[:, 1], color_aug[:, 0]), nets.pose_net(color_aug[:, 0], color_aug[:, 2])
    for (aa, t), (aa_s, t_s), (aa_h, t_h) in zip(separate, stacked, by_hand):
        assert aa_s.shape == aa.shape and t_s.shape == t.shape
        torch.testing.assert_close(aa_s, aa, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(t_s, t, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(aa, aa_h, rtol=0, atol=0)
    nets.train()
    with torch.no_grad():
        _, separate = nets(color_aug, depth_in, frame_ids)
        _, stacked = nets(color_aug, depth_in, frame_ids, pose_stacked=True)
    assert not torch.allclose(separate[0][1], stacked[0][1], rtol=1e-3, atol=1e-6)
    assert load_config(overrides=[]).train.pose_stacked is False


def test_init_keys_are_validated():
    with pytest.raises(ConfigError, match="model.init_depth"):
        load_config(overrides=["model.init_depth=0.05"])
    with pytest.raises(ConfigError, match="model.pose_"):
        load_config(overrides=["model.pose_translation_scale=0"])


# ---------------------------------------------------------------- load


def test_load_model_roundtrip_returns_config(tmp_path):
    cfg = load_config(overrides=["model.scales=[0]", "data.height=64", "data.width=64", "model.dca=true"])
    torch.manual_seed(0)
    nets = build_networks(cfg)
    with torch.no_grad():
        for p in nets.parameters():
            p.add_(0.01)  # differ from a fresh initialisation
    save_checkpoint({"depth_net": nets.depth_net.state_dict(), "pose_net": nets.pose_net.state_dict(),
                     "config": to_dict(cfg), "step": 1}, tmp_path / "checkpoints", 1)
    for path in (tmp_path / "checkpoints" / "last.pt", tmp_path):  # a file or a run folder
        loaded, loaded_cfg = load_model(path)
        assert isinstance(loaded, Networks) and isinstance(loaded_cfg, Config)
        assert not loaded.training and loaded_cfg.model.dca and loaded_cfg.data.width == 64
        for a, b in ((nets.depth_net, loaded.depth_net), (nets.pose_net, loaded.pose_net)):
            for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
                assert torch.equal(x, y), n


def test_load_model_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt"):
        load_model(tmp_path / "nope.pt")
    torch.save({"depth_net": {}, "config": {}}, tmp_path / "depth_only.pt")
    with pytest.raises(CheckpointError, match="pose_net"):
        load_model(tmp_path / "depth_only.pt")


# ---------------------------------------------------------------- run


def test_network_input_is_the_training_resize():
    img = procedural_image(120, 400)
    x = network_input([img], (96, 32))
    ref = frames_to_tensor([cv2.resize(img, (96, 32), interpolation=cv2.INTER_AREA)])
    assert x.shape == (1, 3, 32, 96) and torch.equal(x, ref)
    assert torch.equal(network_input([img], (400, 120)), frames_to_tensor([img]))  # no resize at size


def test_predict_disparities_sigmoid_and_disparity_outputs_agree():
    torch.manual_seed(0)
    net = build_networks(Config()).depth_net.eval()
    imgs = [procedural_image(100, 300, seed=s) for s in range(3)]
    a = predict_disparities(net, imgs, (192, 64), min_depth=0.5, max_depth=50.0, batch_size=2)
    b = predict_disparities(lambda x: disp_to_depth(net(x), 0.5, 50.0)[0], imgs, (192, 64), output="disparity")
    assert a.shape == (3, 64, 192) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert a.min() >= 1 / 50.0 - 1e-6 and a.max() <= 1 / 0.5 + 1e-6
    with pytest.raises(ValueError, match="output"):
        predict_disparities(net, imgs, (192, 64), output="depth")


def test_validation_equals_evaluate_cli(tiny_synthetic, tmp_path, capsys):
    """Trainer.validate and ``evaluate.py depth`` on the same checkpoint, images and GT: equal to 1e-6."""
    cfg = load_config(ROOT / "configs" / "synthetic.yaml", [
        f"data.root={tiny_synthetic}", f"data.split={tiny_synthetic / 'splits'}", "data.synthetic.generate=false",
        "data.cache_images=false", "data.val_split=test", "train.batch_size=2", "train.max_steps=1",
        "train.progress=false", "train.image_every=0", "train.val_every=1", "train.checkpoint_every=1",
        f"output.dir={tmp_path / 'run'}"])
    train_set, val_images, val_gt = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
    assert len(val_gt) == len(val_images) > 1 and val_images[0].shape[:2] != (cfg.data.height, cfg.data.width)
    trainer = Trainer(cfg, train_set, ValidationData(val_images, val_gt))
    validated = trainer.fit()  # one step, validation, checkpoint
    assert validated["n_images"] == len(val_gt)

    save_dense_gt(tmp_path / "gt.npz", val_gt)
    split = tmp_path / "val_split.txt"
    split.write_text("".join(f"{e.folder} {e.frame} {e.side}\n" for e in val_images.entries))
    rc = evaluate.main(["depth", "--checkpoint", str(tmp_path / "run"), "--data-path", str(tiny_synthetic),
                        "--split", str(split), "--gt", str(tmp_path / "gt.npz"), "--json", str(tmp_path / "m.json"),
                        "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    evaluated = json.loads((tmp_path / "m.json").read_text())
    for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "ratio_median", "ratio_std"):
        assert evaluated[k] == pytest.approx(validated[k], rel=1e-6, abs=1e-6), k
    assert evaluated["n_images"] == validated["n_images"]


def test_pose_init_does_not_depend_on_the_depth_architecture():
    """Ablation rows at one seed share one pose init: the pose net's initial weights are a function
    of (train.seed, pose architecture), not of what the depth net drew before it."""
    def pose(*overrides):
        return build_networks(load_config(overrides=list(overrides))).pose_net.state_dict()

    a = pose()
    for other in (pose("model.dca=true"), pose("model.scales=[0]"), pose("model.encoder=efficientnet_b0")):
        assert a.keys() == other.keys() and all(torch.equal(a[k], other[k]) for k in a)
    seeded = pose("train.seed=1")
    assert not all(torch.equal(a[k], seeded[k]) for k in a)  # the seed still matters
    state = torch.get_rng_state()
    build_networks(Config())
    assert torch.equal(state, torch.get_rng_state())  # building leaves the global generator alone
