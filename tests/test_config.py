"""Typed configuration: defaults, YAML presets with ``base:`` chains, dotted overrides, validation."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from depth.config import Config, ConfigError, TrainConfig, closest_keys, from_dict, load_config, resolve_input_norm, to_dict
from depth.train.run_dir import config_differences
from depth.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


# ---------------------------------------------------------------- defaults / presets / overrides


def test_defaults_load():
    cfg = load_config()
    assert isinstance(cfg, Config)
    # the baseline recipe's numbers (docs/method.md, optimisation) are the documented defaults
    assert cfg.train.batch_size == 12 and cfg.train.epochs == 20
    assert cfg.optim.lr == pytest.approx(1e-4) and cfg.optim.milestones == [15] and cfg.optim.gamma == 0.1
    assert (cfg.data.height, cfg.data.width) == (192, 640)
    assert cfg.data.frame_ids == [0, -1, 1]
    assert cfg.loss.recipe == "baseline" and cfg.loss.ssim_weight == 0.85
    assert cfg.loss.smoothness_weight == 1e-3
    assert cfg.model.scales == [0, 1, 2, 3] and cfg.model.min_depth == 0.1 and cfg.model.max_depth == 100.0
    assert cfg.augment.flip_prob == 0.5 and cfg.augment.color_jitter_prob == 0.5
    a = cfg.augment
    assert (a.brightness, a.contrast, a.saturation, a.hue) == (0.2, 0.2, 0.2, 0.1)
    assert cfg == resolve_input_norm(Config())  # a loaded config records the input normalisation it resolved


def test_preset_plus_overrides_with_type_conversion():
    cfg = load_config(ROOT / "configs" / "baseline_kitti_640x192.yaml",
                      ["train.batch_size=8", "optim.lr=2e-4", "model.dca=true", "data.frame_ids=[0,-1]",
                       "augment.zoom_prob=0.5", "output.dir=runs/x"])
    assert cfg.train.batch_size == 8 and type(cfg.train.batch_size) is int
    assert cfg.optim.lr == pytest.approx(2e-4) and type(cfg.optim.lr) is float
    assert cfg.model.dca is True
    assert cfg.data.frame_ids == [0, -1]
    assert cfg.augment.zoom_prob == 0.5
    assert cfg.output.dir == "runs/x"
    # values from the preset survive where not overridden
    assert cfg.train.log_every == 250 and cfg.train.num_workers == "auto" and cfg.model.pretrained is True


def test_string_overrides_stay_literal_and_accept_quotes():
    cfg = load_config(overrides=["train.amp=off", "output.dir=1e-3"])
    assert cfg.train.amp == "off" and cfg.output.dir == "1e-3"
    cfg = load_config(overrides=["train.amp='off'", 'output.dir="runs/a b"'])
    assert cfg.train.amp == "off" and cfg.output.dir == "runs/a b"


def test_later_override_wins():
    cfg = load_config(overrides=["train.batch_size=4", "train.batch_size=6"])
    assert cfg.train.batch_size == 6


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_yaml_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)


def test_base_chain(tmp_path):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "root.yaml").write_text(
        "data:\n  height: 128\n  width: 416\ntrain:\n  batch_size: 4\n  epochs: 3\n")
    (tmp_path / "presets" / "mid.yaml").write_text(
        "base: root.yaml\ntrain:\n  batch_size: 6\nloss:\n  recipe: dabnet\n")
    (tmp_path / "child.yaml").write_text("base: presets/mid.yaml\ntrain:\n  epochs: 7\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.data.height, cfg.data.width) == (128, 416)  # from the root
    assert cfg.train.batch_size == 6 and cfg.loss.recipe == "dabnet"  # mid overrides root
    assert cfg.train.epochs == 7  # child overrides everything
    assert load_config(tmp_path / "child.yaml", ["train.epochs=9"]).train.epochs == 9  # CLI last


def test_circular_base_raises(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml")


def test_roundtrip_to_dict_from_dict():
    cfg = load_config(overrides=["train.batch_size=3", "model.scales=[0,2]", "loss.recipe=dabnet",
                                 "data.root=/x"])
    d = to_dict(cfg)
    assert d["train"]["batch_size"] == 3 and d["model"]["scales"] == [0, 2]
    back = from_dict(d)
    assert back == cfg
    assert dataclasses.asdict(back) == d
    # unknown keys (e.g. a checkpoint of a newer version) are ignored
    d["train"]["no_such_key"] = 1
    d["extra_section"] = {"a": 1}
    assert from_dict(d) == cfg


def test_config_saved_before_a_key_existed_reads_back_as_its_run_trained():
    # a checkpoint written before augment.color_jitter_on existed jittered in the loader: resuming
    # it must not switch to the device jitter (the new default) silently
    cfg = load_config()
    assert cfg.augment.color_jitter_on == "device"
    old = to_dict(cfg)
    del old["augment"]["color_jitter_on"]
    assert from_dict(old).augment.color_jitter_on == "loader"
    assert load_config(saved=old).augment.color_jitter_on == "loader"
    assert "color_jitter_on" not in old["augment"]  # the caller's dict is left alone
    # a saved config that has the key keeps its value; the difference shows on auto-resume
    assert from_dict(to_dict(cfg)).augment.color_jitter_on == "device"
    assert config_differences(cfg, old) == ["augment.color_jitter_on: 'loader' -> 'device'"]


def test_saved_config_then_overrides():
    saved = to_dict(load_config(overrides=["train.batch_size=5", "data.height=128"]))
    cfg = load_config(saved=saved, overrides=["data.height=256"])
    assert cfg.train.batch_size == 5 and cfg.data.height == 256


# ---------------------------------------------------------------- exceptions


def test_unknown_override_key_says_did_you_mean_then_the_section_keys():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["train.batchsize=8"])
    first, *rest = str(e.value).splitlines()
    assert first == "command line: unknown config key 'train.batchsize' (did you mean train.batch_size?)"
    assert len(rest) == 1 and rest[0].startswith("  keys of section train: train.batch_size, train.epochs,")
    listed = rest[0].split(": ", 1)[1].split(", ")
    assert listed == [f"train.{f.name}" for f in dataclasses.fields(TrainConfig)]  # that section only
    assert "optim.lr" not in str(e.value) and "data.height" not in str(e.value)


@pytest.mark.parametrize("key, near", [
    ("batch_size", ["train.batch_size"]),                 # the section left out
    ("data.batch_size", ["train.batch_size"]),            # the wrong section
    ("trian.batch_size", ["train.batch_size"]),           # a typo in the section
    ("model.dcaa", ["model.dca"]),
    ("augment.zoom_probability", ["augment.zoom_prob"]),
])
def test_closest_keys(key, near):
    assert closest_keys(key)[:len(near)] == near
    with pytest.raises(ConfigError, match=f"did you mean {near[0]}"):
        load_config(overrides=[f"{key}=1"])


def test_unknown_key_without_a_close_one_lists_sections():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["zzz=1"])
    assert "did you mean" not in str(e.value)
    assert str(e.value).splitlines()[1].startswith("  sections: data, model, loss, augment, optim, train, output")


def test_unknown_yaml_key_lists_valid_keys(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert msg.splitlines()[0] == f"{p}: unknown config key 'optim.learning_rate'"
    assert "optim.lr" in msg.splitlines()[1]


def test_unknown_section_raises(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("trainer:\n  batch_size: 2\n")
    with pytest.raises(ConfigError, match="trainer"):
        load_config(p)


def test_wrong_type_is_one_line_naming_the_key_and_the_value():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["train.batch_size=two"])
    msg = str(e.value)
    assert "\n" not in msg  # not OmegaConf's full_key / reference_type / object_type lines
    assert msg.startswith("command line: bad value for 'train.batch_size'") and "'two'" in msg and "Integer" in msg


def test_wrong_type_in_a_preset_names_the_file(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("train:\n  max_steps: many\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{p}: bad value for 'train.max_steps'")


def test_override_without_equals_raises():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(overrides=["train.batch_size"])


@pytest.mark.parametrize("override,key", [
    ("optim.lr=-1e-4", "optim.lr"),
    ("optim.lr=0", "optim.lr"),
    ("data.height=100", "data.height"),
    ("data.width=650", "data.width"),
    ("loss.recipe=monodepth3", "loss.recipe"),
    ("train.batch_size=0", "train.batch_size"),
    ("augment.flip_prob=1.5", "augment.flip_prob"),
    ("model.scales=[0,4]", "model.scales"),
    ("data.frame_ids=[-1,0,1]", "data.frame_ids"),
    ("data.intrinsics=pinhole", "data.intrinsics"),
    ("model.num_layers=20", "model.num_layers"),
    ("model.pose_size=[16,64]", "model.pose_size"),
    ("loss.ssim_weight=1.5", "loss.ssim_weight"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints"),
])
def test_out_of_range_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    assert key in str(e.value)


def test_min_max_depth_order():
    with pytest.raises(ConfigError, match="min_depth"):
        load_config(overrides=["model.min_depth=50", "model.max_depth=10"])


def test_missing_or_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)
    missing_base = tmp_path / "child.yaml"
    missing_base.write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        load_config(missing_base)


@pytest.mark.parametrize("decoder", ["monodepth2", "monodepth2+dca", "diffnet+dca"])
def test_smallest_valid_size_is_usable_by_the_depth_net(decoder):
    """The smallest size validation accepts (64x64: multiples of 32, the 1/32 feature 2 px, as the
    decoder's 3x3 reflection padding needs) runs through the depth network, with every decoder, and
    gives a full-size disparity; the next smaller multiple of 32 is refused by name."""
    for key in ("data.height", "data.width"):
        with pytest.raises(ConfigError, match=key):
            load_config(overrides=[f"{key}=32"])
    name, _, dca = decoder.partition("+")
    overrides = ["data.height=64", "data.width=64", f"model.decoder={name}", f"model.dca={bool(dca)}",
                 "model.pretrained=false"]
    if name == "diffnet":
        overrides.append("model.encoder=hrnet_w18")
    cfg = load_config(overrides=overrides)
    from depth.model import build_networks  # the networks train.py builds for this config
    torch.manual_seed(0)
    net = build_networks(cfg).depth_net.eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, cfg.data.height, cfg.data.width))
    disp = out[0] if isinstance(out, (list, tuple)) else out
    assert disp.shape == (1, 1, 64, 64) and torch.isfinite(disp).all()


def test_lr_schedule_epochs_or_steps():
    cfg = load_config(overrides=["optim.lr=1e-4", "optim.milestones=[15]", "optim.gamma=0.1"])
    lr_at = lambda step, epoch: Trainer.lr_at(SimpleNamespace(cfg=cfg), step, epoch)  # noqa: E731
    assert lr_at(10_000, 14) == pytest.approx(1e-4) and lr_at(0, 15) == pytest.approx(1e-5)
    cfg = load_config(overrides=["optim.lr=1e-4", "optim.step_milestones=[300,400]", "optim.gamma=0.5"])
    # step milestones replace the epoch ones: epoch 99 changes nothing, steps 300 and 400 halve
    assert [lr_at(s, 99) for s in (0, 299, 300, 399, 400)] == pytest.approx([1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5])
    with pytest.raises(ConfigError, match="optim.step_milestones"):
        load_config(overrides=["optim.step_milestones=[-1]"])
