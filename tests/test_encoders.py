"""Encoders from timm (model.encoder, model.pose_encoder, model.pose_size) and their ImageNet weights.

Every encoder the presets name builds, trains two steps with both decoders (tiny inputs), runs at
sizes not divisible by 32 and exports to ONNX with onnxruntime parity; ResNet-18 is bit-identical
to the torchvision network earlier checkpoints were trained with; ImageNet files load through the
trainer's own path or stop the run.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from huggingface_hub import constants as hf_constants
from safetensors.torch import save_file

import train
from data.datasets import build_training_data
from data.samples import collate
from depth.config import ConfigError, load_config, to_dict
from depth.inference import predict_relative_poses
from depth.io.imagenet import MissingWeightsError, find_imagenet_weights, weights_name
from depth.io.onnx_file import DepthExportModel, export_onnx, onnx_session, verify_onnx
from depth.model import build_networks, check_encoders, imagenet_weights, load_model
from depth.networks import DepthNet, PoseNet
from depth.networks.encoder import create_encoder
from depth.train.trainer import Trainer
from tests.helpers import procedural_image

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
ENCODERS = ["resnet18", "resnet50", "hrnet_w18", "efficientnet_b0", "convnext_tiny"]
# the ONNX export of HRNet takes 40-90 s on a 2-core CPU (its many fusion branches)
EXPORTED = ["resnet18", "resnet50", "efficientnet_b0", "convnext_tiny",
            pytest.param("hrnet_w18", marks=pytest.mark.slow)]
EXPECTED_LAYOUT = {  # channels, strides, pad_to (0: runs at any size)
    "resnet18": ((64, 64, 128, 256, 512), (2, 4, 8, 16, 32), 0),
    "resnet50": ((64, 256, 512, 1024, 2048), (2, 4, 8, 16, 32), 0),
    "hrnet_w18": ((64, 18, 36, 72, 144), (2, 4, 8, 16, 32), 32),
    "efficientnet_b0": ((16, 24, 40, 112, 320), (2, 4, 8, 16, 32), 0),
    "convnext_tiny": ((96, 192, 384, 768), (4, 8, 16, 32), 32),
}


def _cfg(root: Path, out: Path, *extra: str):
    return load_config(ROOT / "configs" / "synthetic.yaml", [
        f"data.root={root}", f"data.split={root / 'splits'}", "data.synthetic.generate=false",
        "data.height=64", "data.width=64", "data.val_gt=none", "data.cache_images=false",
        "train.batch_size=2", "train.num_workers=0", "train.progress=false", "train.image_every=0",
        f"output.dir={out}", *extra])


def _calibrated(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` in eval mode with BatchNorm statistics of a few random batches: with the initial
    statistics (mean 0, var 1) a deep random network's activations grow to ~1e8 (HRNet), saturating
    the sigmoid and hiding any error in float32 noise."""
    net.train()
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(2, 3, 64, 96, generator=g))
    return net.eval()


def _file_key(key: str, state: dict) -> str:
    """The full model's name of a feature extractor's parameter (timm flattens ``stages.0`` to
    ``stages_0``)."""
    return key if key in state else key.replace("_", ".", 1)


# ---------------------------------------------------------------- ResNet-18: today's network


def _torchvision_features(net: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The encoder earlier checkpoints were trained with: torchvision's ResNet, Monodepth2's input norm."""
    x = (x - 0.45) / 0.225
    f0 = net.relu(net.bn1(net.conv1(x)))
    f1 = net.layer1(net.maxpool(f0))
    f2 = net.layer2(f1)
    f3 = net.layer3(f2)
    return [f0, f1, f2, f3, net.layer4(f3)]


@pytest.mark.parametrize("size", [(64, 96), (65, 97)])
def test_resnet18_encoder_equals_torchvision_resnet18(size):
    torch.manual_seed(0)
    ref = tvm.resnet18(weights=None).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    net = DepthNet("resnet18").eval()
    net.encoder.load_state_dict(state, strict=True)  # same names, same shapes
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = net.features(x), _torchvision_features(ref, x)
    assert len(ours) == 5
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_resnet18_initialisation_is_torchvisions():
    """timm's ResNets zero the last BN of each block by default; this project keeps torchvision's init."""
    torch.manual_seed(0)
    enc = DepthNet("resnet18").encoder
    assert torch.equal(enc.layer1[0].bn2.weight, torch.ones(64))
    std = enc.layer2[0].conv1.weight.std().item()  # kaiming_normal_(fan_out, relu): sqrt(2 / (128 * 9))
    assert std == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.05)


# ---------------------------------------------------------------- every encoder


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_layout_and_sizes_not_divisible_by_32(name):
    torch.manual_seed(0)
    net = _calibrated(DepthNet(name))
    channels, strides, pad_to = EXPECTED_LAYOUT[name]
    assert (net.layout.channels, net.layout.reductions, net.layout.pad_to) == (channels, strides, pad_to)
    for h, w in ((64, 64), (63, 95), (100, 130), (24, 48)):
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h))
        with torch.no_grad():
            feats = net.features(x)
            outs = net.forward_scales(x)
        assert [tuple(f.shape[1:]) for f in feats] == [
            (c, math.ceil(h / r), math.ceil(w / r)) for c, r in zip(channels, strides)]
        assert [tuple(o.shape[-2:]) for o in outs] == [(h, w)] + [
            (math.ceil(h / 2 ** s), math.ceil(w / 2 ** s)) for s in (1, 2, 3)]
        assert all(torch.isfinite(o).all() and ((o > 0) & (o < 1)).all() for o in outs)


def test_padded_encoder_crops_the_padded_run():
    """An encoder that cannot run at any size sees the input replicate-padded to a multiple of 32 and
    returns the top-left ceil(size / stride) of each feature map."""
    torch.manual_seed(0)
    net = DepthNet("convnext_tiny").eval()
    x = torch.rand(1, 3, 50, 70, generator=torch.Generator().manual_seed(0))
    padded = F.pad((x - 0.45) / 0.225, (0, 26, 0, 14), mode="replicate")  # 64 x 96
    with torch.no_grad():
        ours = net.features(x)
        full = net.encoder(padded)
    for f, g, r in zip(ours, full, (4, 8, 16, 32)):
        torch.testing.assert_close(f, g[..., :math.ceil(50 / r), :math.ceil(70 / r)], rtol=0, atol=0)


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_trains_two_steps_with_both_decoders(name, tiny_synthetic, tmp_path):
    for dca in (False, True):
        cfg = _cfg(tiny_synthetic, tmp_path / f"run_{dca}", f"model.encoder={name}",
                   f"model.dca={str(dca).lower()}")
        train_set, _, _ = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
        train_set.set_epoch(0)
        batch = collate([train_set[i] for i in range(2)])
        trainer = Trainer(cfg, train_set)
        assert trainer.depth_net.decoder.dca_enabled is dca
        if dca:  # DCA's branch-weight MLP follows the deepest encoder feature
            assert trainer.depth_net.decoder.dca.enc_channels == EXPECTED_LAYOUT[name][0][-1]
        before = {n: p.detach().clone() for n, p in trainer.depth_net.encoder.named_parameters()}
        losses = []
        for _ in range(2):
            terms = trainer.train_step(batch)
            trainer.step_count += 1
            losses.append(terms.total.item())
        assert all(math.isfinite(v) for v in losses)
        changed = [n for n, p in trainer.depth_net.encoder.named_parameters()
                   if not torch.equal(p, before[n])]
        assert len(changed) == len(before)  # the optimiser reached every encoder parameter


@pytest.mark.parametrize("name", EXPORTED)
def test_encoder_exports_to_onnx_with_onnxruntime_parity(name, tmp_path):
    torch.manual_seed(0)
    h, w = 64, 96
    model = DepthExportModel(_calibrated(DepthNet(name, dca=True)))
    path = tmp_path / f"{name}.onnx"
    export_onnx(model, path, h, w)
    session = onnx_session(path)
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(3))
    diffs = verify_onnx(session, model, {"random": x})
    assert diffs["random"] < 1e-4


def test_padded_encoder_exports_at_a_size_not_divisible_by_32(tmp_path):
    """The replicate padding and the crops are part of the graph (ONNX Pad 'edge' + Slice)."""
    torch.manual_seed(0)
    h, w = 50, 70
    model = DepthExportModel(_calibrated(DepthNet("convnext_tiny")))
    assert model.net.layout.pad_to == 32
    export_onnx(model, tmp_path / "convnext.onnx", h, w)
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(4))
    assert verify_onnx(onnx_session(tmp_path / "convnext.onnx"), model, {"x": x})["x"] < 1e-4


@pytest.mark.parametrize("name", ENCODERS)
def test_pose_net_with_encoder(name):
    torch.manual_seed(0)
    net = PoseNet(name).eval()
    a, b = torch.rand(2, 3, 63, 95), torch.rand(2, 3, 63, 95)
    with torch.no_grad():
        aa, t = net(a, b)
        aa1, t1 = net(a[1:], b[1:])
    assert aa.shape == t.shape == (2, 3) and torch.isfinite(aa).all() and torch.isfinite(t).all()
    torch.testing.assert_close(aa[1:], aa1, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(t[1:], t1, atol=1e-6, rtol=1e-4)


def test_unknown_or_unusable_encoder_names_are_config_errors():
    for key, value, match in (("model.encoder", "resnet19", "not a timm model"),
                              ("model.pose_encoder", "resnet18.nope", "model.pose_encoder"),
                              ("model.encoder", "vit_small_patch16_224", "strides")):
        cfg = load_config(overrides=[f"{key}={value}"])
        with pytest.raises(ValueError, match=match):
            check_encoders(cfg)
    with pytest.raises(ConfigError, match="model.encoder"):
        load_config(overrides=["model.encoder=''"])


def test_train_py_reports_an_unknown_encoder_as_one_error_line(tmp_path, capsys):
    """train.py checks the encoder names before any data is read: exit 2, one ``error:`` line naming
    the key, nothing generated or written."""
    data, run = tmp_path / "data", tmp_path / "run"
    code = train.main(["--config", str(ROOT / "configs" / "synthetic.yaml"), "model.encoder=resnet19",
                       f"data.root={data}", f"data.split={data / 'splits'}", f"output.dir={run}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "model.encoder" in err[0], err
    assert not data.exists() and not run.exists()


# ---------------------------------------------------------------- ImageNet weights


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "convnext_tiny"])
def test_timm_state_dict_loads_through_the_trainers_path(name, tmp_path):
    """A state dict of timm.create_model(name) reaches both encoders of a Trainer unchanged (the pose
    encoder's input conv repeated over the two frames and halved)."""
    torch.manual_seed(7)
    state = timm.create_model(name).state_dict()
    torch.save(state, tmp_path / "w.pth")
    cfg = load_config(overrides=[f"model.encoder={name}", f"model.pose_encoder={name}",
                                 "model.pretrained=true",
                                 f"model.weights_path={tmp_path / 'w.pth'}", f"output.dir={tmp_path / 'run'}",
                                 "train.device=cpu"])
    trainer = Trainer(cfg, [None] * 24)
    for net, stacked in ((trainer.depth_net.encoder, 1), (trainer.pose_net.encoder, 2)):
        loaded = net.state_dict()
        for k, v in loaded.items():
            ref = state[_file_key(k, state)]
            if v.shape != ref.shape:  # the input convolution of the pose encoder
                ref = ref.repeat(1, stacked, 1, 1) / stacked
            torch.testing.assert_close(v, ref, rtol=0, atol=0, msg=k)
    # a checkpoint build (pretrained=False) never reads the file
    assert not torch.equal(build_networks(cfg).depth_net.encoder.state_dict()[next(iter(loaded))],
                           state[_file_key(next(iter(loaded)), state)])


def test_torchvision_hub_file_is_found_and_loaded(tmp_path, monkeypatch):
    """Bare ResNet names take torchvision's ImageNet weights (Monodepth2's): its cached file loads."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    torch.manual_seed(3)
    state = tvm.resnet18(weights=None).state_dict()
    url = tvm.get_weight("ResNet18_Weights.IMAGENET1K_V1").url
    f = tmp_path / "torch" / "hub" / "checkpoints" / os.path.basename(url)
    f.parent.mkdir(parents=True)
    torch.save(state, f)
    assert weights_name("resnet18") == "resnet18.tv_in1k"
    cfg = load_config(overrides=["model.pretrained=true"])
    assert imagenet_weights(cfg) == {"encoder": f, "pose_encoder": f}
    nets = build_networks(cfg, pretrained=True)
    assert torch.equal(nets.depth_net.encoder.conv1.weight, state["conv1.weight"])
    assert torch.equal(nets.pose_net.encoder.conv1.weight, state["conv1.weight"].repeat(1, 2, 1, 1) / 2)
    assert torch.equal(nets.depth_net.encoder.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_hugging_face_cache_is_found(tmp_path, monkeypatch):
    """Weights that timm.create_model(name, pretrained=True) downloaded (HF hub cache layout)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    name = weights_name("efficientnet_b0")
    repo = tmp_path / "hf" / f"models--timm--{name}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    torch.manual_seed(4)
    state = timm.create_model("efficientnet_b0").state_dict()
    snapshot = repo / "snapshots" / "abc123" / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot))
    src = find_imagenet_weights("efficientnet_b0")
    assert src.path == snapshot
    net = DepthNet("efficientnet_b0", src.path)
    assert torch.equal(net.encoder.conv_stem.weight, state["conv_stem.weight"])


def test_wrong_weights_file_stops_instead_of_training_from_scratch(tmp_path):
    torch.manual_seed(0)
    # Monodepth2's encoder.pth names: every key prefixed, nothing matches
    prefixed = {f"encoder.{k}": v for k, v in tvm.resnet18(weights=None).state_dict().items()}
    torch.save(prefixed, tmp_path / "encoder.pth")
    with pytest.raises(MissingWeightsError, match=r"parameters of resnet18 are not in this file"):
        create_encoder("resnet18", 3, tmp_path / "encoder.pth")
    torch.save(tvm.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(MissingWeightsError, match="not ImageNet weights of resnet50"):
        create_encoder("resnet50", 3, tmp_path / "r18.pth")
    with pytest.raises(MissingWeightsError, match="^model.weights_path: no such file"):
        imagenet_weights(load_config(overrides=["model.weights_path=/nonexistent/r18.pth"]))


def test_missing_weights_stop_the_run_before_any_work(tmp_path):
    """model.pretrained=true without the weights: exit 2 before data generation, one line naming the
    places searched and the command that fills the cache."""
    data = tmp_path / "data"
    env = dict(os.environ, OMP_NUM_THREADS="1", TORCH_HOME=str(tmp_path / "torch"),
               HF_HOME=str(tmp_path / "hf"))
    env.pop("HF_HUB_CACHE", None)
    r = subprocess.run([sys.executable, str(ROOT / "train.py"),
                        "--config", str(ROOT / "configs" / "synthetic.yaml"),
                        "model.pretrained=true", "model.encoder=hrnet_w18", f"data.root={data}",
                        f"data.split={data / 'splits'}", f"output.dir={tmp_path / 'run'}"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ImageNet weights not found"), r.stderr
    line = lines[0]
    for expected in ("model.weights_path (not set)",
                     str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"),
                     str(tmp_path / "hf" / "hub" / "models--timm--hrnet_w18.ms_aug_in1k"),
                     str(tmp_path / "hf" / "hub" / "models--timm--resnet18.tv_in1k"),
                     "python -c \"import timm; [timm.create_model(n, pretrained=True) for n in "
                     "('hrnet_w18.ms_aug_in1k', 'resnet18.tv_in1k')]\"",
                     "model.pretrained=false"):
        assert expected in line, expected
    assert not data.exists() and not (tmp_path / "run").exists()  # nothing generated, nothing written


# ---------------------------------------------------------------- legacy model.num_layers


def test_old_num_layers_checkpoint_loads_unchanged(tmp_path):
    """A checkpoint written before model.encoder existed: config with model.num_layers and no encoder
    keys, weights named after torchvision's ResNet."""
    for layers in (18, 50):
        torch.manual_seed(layers)
        ref = getattr(tvm, f"resnet{layers}")(weights=None)
        enc_state = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
        cfg = load_config(overrides=[f"model.encoder=resnet{layers}", f"model.pose_encoder=resnet{layers}",
                                     "data.height=64", "data.width=64"])
        nets = build_networks(cfg)
        depth_state = {**nets.depth_net.state_dict(), **{f"encoder.{k}": v for k, v in enc_state.items()}}
        old_cfg = to_dict(cfg)
        for key in ("encoder", "pose_encoder", "pose_size"):
            del old_cfg["model"][key]
        old_cfg["model"]["num_layers"] = layers
        torch.save({"depth_net": depth_state, "pose_net": nets.pose_net.state_dict(), "config": old_cfg,
                    "step": 1}, tmp_path / f"old{layers}.pt")
        loaded, loaded_cfg = load_model(tmp_path / f"old{layers}.pt")
        assert loaded_cfg.model.encoder == loaded_cfg.model.pose_encoder == f"resnet{layers}"
        assert loaded_cfg.model.num_layers == 0
        for k, v in enc_state.items():
            assert torch.equal(loaded.depth_net.encoder.state_dict()[k], v), k
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            assert torch.equal(loaded.depth_net.features(x)[-1], _torchvision_features(ref.eval(), x)[-1])


def test_num_layers_override_and_conflicts():
    cfg = load_config(overrides=["model.num_layers=34"])
    assert (cfg.model.encoder, cfg.model.pose_encoder, cfg.model.num_layers) == ("resnet34", "resnet34", 0)
    with pytest.raises(ConfigError, match="contradicts"):
        load_config(overrides=["model.num_layers=50", "model.encoder=hrnet_w18"])
    with pytest.raises(ConfigError, match="model.num_layers"):
        load_config(overrides=["model.num_layers=20"])


# ---------------------------------------------------------------- model.pose_size


def test_pose_size_resizes_inside_the_pose_net(tiny_synthetic, tmp_path):
    """Training (Networks.forward) and evaluate.py's pose path both feed the pose net at model.pose_size."""
    cfg = _cfg(tiny_synthetic, tmp_path / "run", "model.pose_size=[32,48]")
    nets = build_networks(cfg).eval()
    seen = []
    nets.pose_net.encoder.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    frames = torch.rand(2, 3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, poses = nets(frames, frames[:, 0], (0, -1, 1))
    assert len(poses) == 2 and seen == [(2, 6, 32, 48), (2, 6, 32, 48)]
    seen.clear()
    imgs = [procedural_image(120, 300, seed=s) for s in range(3)]
    rel = predict_relative_poses(nets.pose_net, imgs, (cfg.data.width, cfg.data.height))
    assert rel.shape == (2, 4, 4) and seen == [(2, 6, 32, 48)]
    # the resize: bilinear with antialiasing, the stacked pair at once
    a, b = frames[:, 1], frames[:, 0]
    expected = F.interpolate(torch.cat([a, b], 1), size=(32, 48), mode="bilinear", align_corners=False,
                             antialias=True)
    assert torch.equal(nets.pose_net.pair_input(a, b), expected)
    with pytest.raises(ConfigError, match="model.pose_size"):
        load_config(overrides=["model.pose_size=[192]"])
    assert build_networks(load_config()).pose_net.input_size is None  # default: the data size
