"""Typed configuration: documented defaults (one dataclass per section), YAML presets, and dotted
``key=value`` overrides from the command line.

Resolution order: defaults < the YAML preset (which may name a ``base:`` preset of its own,
resolved relative to its file) < CLI overrides. An unknown key is an error that names it first,
with the closest valid keys ("did you mean train.batch_size?"), then the keys of its section;
values of the wrong type are errors naming the key. Values are checked by :func:`validate` before
any work starts.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError
from common.errors import ConfigError
from data.config import AugmentConfig, DataConfig, SyntheticConfig
from depth.registry import DECODERS, RECIPES


__all__ = ["Config", "load_config", "to_dict", "validate", "ConfigError", "DataConfig", "AugmentConfig", "SyntheticConfig"]


@dataclass
class ModelConfig:
    # depth encoder: a timm model name (features_only), optionally with a pretrained tag (name.tag):
    # resnet18 (Monodepth2), resnet50, hrnet_w18 (the paper's), efficientnet_b0, convnext_tiny, ...
    encoder: str = "resnet18"
    pose_encoder: str = "resnet18"  # the pose net's encoder (timm name), fed two stacked frames
    # [H, W] at which the pose net sees the frames (resized inside it); [] = the data size
    pose_size: list[int] = field(default_factory=list)
    # pose net: monodepth2 (frames resized to pose_size bilinearly with antialiasing, like the data's
    # INTER_AREA) | featdepth (the DaB-Net authors' pose net: the same ResNet encoder on 6 channels and
    # 1x1 / 3x3 pose decoder with x0.01 outputs, layer for layer; frames resized bilinearly without
    # antialiasing, as their code's F.interpolate). docs/method.md §2b
    pose_decoder: str = "monodepth2"
    # ImageNet weights for both encoders from model.weights_path or the torch / Hugging Face hub caches
    # (depth/io/imagenet.py); true and not found = the run stops before any work. false = train from scratch.
    pretrained: bool = True
    # optional local ImageNet state dict of model.encoder (also of a pose_encoder of the same architecture)
    weights_path: str = ""
    # legacy (configs and checkpoints written before model.encoder): 18 | 34 | 50 sets model.encoder and
    # model.pose_encoder to resnet{N} when the config is loaded, then reads 0; 0 = not used
    num_layers: int = 0
    scales: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    # depth decoder: monodepth2 (Monodepth2's U-Net; with dca the project's DCA and head) | diffnet (the
    # DaB-Net authors' DIFFNet decoder, with dca their DCA and head; on an HRNet their concatenated
    # features). docs/method.md §2b
    decoder: str = "monodepth2"
    # depth-net input normalisation: imagenet ((x - 0.45) / 0.225, Monodepth2) | none (raw [0, 1] RGB, the
    # DaB-Net authors' HRNet) | auto = none for an HRNet with decoder=diffnet, else imagenet (resolved when
    # the config is loaded: checkpoints record the value used)
    input_norm: str = "auto"
    dca: bool = False  # dynamic cross-attention decoder (single full-resolution output)
    dca_dropout: float = 0.1  # Dropout2d on the DCA's X_2 input while training (the authors' 0.1); 0 = off
    pose_rotation_scale: float = 0.01  # the pose decoder's axis-angle output is multiplied by this (Monodepth2 0.01)
    pose_translation_scale: float = 0.01  # ... and its translation output by this (Monodepth2 0.01)
    min_depth: float = 0.1
    max_depth: float = 100.0
    # Scratch-training initialisation: an untrained depth net predicts about init_depth (training
    # units) everywhere: the disparity heads' biases start at the matching logit. 0 = PyTorch's
    # default init (sigmoid ~0.5, depth ~2 min_depth = 0.2).
    init_depth: float = 0.0
    # Fine-tuning: a project checkpoint / run folder or a Monodepth2 model folder whose weights
    # initialise the depth net (encoder exactly; decoder tensors of the same name, e.g. a baseline
    # model's into a DCA model) and the pose net when the source has a matching one; fresh
    # optimiser, step 0; not applied on --resume. "" = off. See docs/monodepth2.md.
    init_from: str = ""


@dataclass
class LossConfig:
    recipe: str = "baseline"  # baseline (Monodepth2) | dabnet
    ssim_weight: float = 0.85
    smoothness_weight: float = 1e-3
    automask: bool = True
    min_reprojection: bool = True


@dataclass
class OptimConfig:
    lr: float = 1e-4
    milestones: list[int] = field(default_factory=lambda: [15])  # epochs after which lr *= gamma
    # optimiser steps after which lr *= gamma; when non-empty it replaces `milestones` (for runs
    # whose length is set by train.max_steps on a small dataset, where an epoch is a few steps)
    step_milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    warmup_steps: int = 0  # linear warm-up from lr * warmup_start_factor
    warmup_start_factor: float = 1.0 / 3.0
    grad_clip: float = 0.0  # max global gradient norm; 0 = off
    weight_decay: float = 0.0


@dataclass
class TrainConfig:
    batch_size: int = 12
    epochs: int = 20
    max_steps: int = 0  # stop after this many optimiser steps (overrides epochs); 0 = off
    seed: int = 0
    # loader workers: a count, or auto = the cores this process may use less one, shared by the ranks
    # of the node (depth.train.loader.resolve_num_workers)
    num_workers: Union[int, str] = "auto"
    device: str = "auto"  # auto | cpu | cuda
    log_every: int = 50
    image_every: int = 500
    val_every: int = 0  # steps between validations; 0 = at the end of every epoch only
    checkpoint_every: int = 0  # steps between checkpoints; 0 = end of every epoch
    keep_checkpoints: int = 2
    deterministic: bool = False
    amp: str = "auto"  # auto | off | bf16 | fp16 (CUDA only)
    channels_last: bool = True  # CUDA only: NHWC weights and inputs (ignored on the CPU)
    # torch.compile the networks (in place: checkpoint keys unchanged) and the loss (one graph)
    compile: bool = False
    # one pose-net call on all (source, target) pairs stacked along the batch instead of one call
    # per source: fewer, larger kernels on a GPU; its BatchNorm then normalises over all pairs
    # together, which changes the training arithmetic (off: Monodepth2's per-source calls)
    pose_stacked: bool = False
    nan_policy: str = "error"  # error | skip
    sync_bn: bool = False
    progress: bool = True
    # off: a new run into a folder holding checkpoints stops (output.overwrite, --resume); auto: a run
    # into a folder holding this run's checkpoints continues from the newest complete one (the same
    # config, else it stops naming the differing keys), into an empty one starts at step 0 --
    # the setting for jobs that are requeued or restarted (docs/training.md, Preemption)
    resume: str = "off"


@dataclass
class OutputConfig:
    dir: str = "runs/default"
    # a new run into a folder that holds checkpoints stops before any work unless this is true;
    # true removes that folder's checkpoints, metrics.json and tensorboard/ when training starts
    overwrite: bool = False


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


def _valid_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            keys += _valid_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def closest_keys(key: str, n: int = 3) -> list[str]:
    """The valid dotted keys closest to ``key``: by the whole name, then by its last part alone
    (``batchsize`` -> ``train.batch_size``; ``data.batch_size`` -> ``train.batch_size``)."""
    valid = _valid_keys(Config())
    found = difflib.get_close_matches(key, valid, n=n, cutoff=0.75)
    leaves: dict[str, list[str]] = {}
    for k in valid:
        leaves.setdefault(k.rsplit(".", 1)[-1], []).append(k)
    for leaf in difflib.get_close_matches(key.rsplit(".", 1)[-1], list(leaves), n=n, cutoff=0.75):
        found += [k for k in leaves[leaf] if k not in found]
    return found[:n]


def unknown_key_error(key: str, source: str) -> ConfigError:
    """``<source>: unknown config key 'k' (did you mean a or b?)`` on the first line, then the keys
    of the key's section (or the section names when the section is unknown too)."""
    near = closest_keys(key)
    msg = f"{source}: unknown config key {key!r}"
    if near:
        msg += f" (did you mean {' or '.join(near)}?)"
    section = key.split(".", 1)[0]
    sections = [f.name for f in dataclasses.fields(Config)]
    if section in sections:
        msg += f"\n  keys of section {section}: " + ", ".join(
            k for k in _valid_keys(Config()) if k.startswith(section + "."))
    else:
        msg += "\n  sections: " + ", ".join(sections) + " (keys are section.name, e.g. train.batch_size)"
    return ConfigError(msg)


def _field_type(dotted: str):
    node: Any = Config
    for part in dotted.split("."):
        fields = {f.name: f for f in dataclasses.fields(node)}
        f = fields[part]
        node = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if not dataclasses.is_dataclass(node):
            return f.type if not isinstance(f.type, str) else {"str": str, "int": int, "float": float,
                                                                 "bool": bool}.get(f.type)
    return None


def _read_yaml(path: Path, seen: tuple = ()) -> list[dict]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise ConfigError(f"config {path}: circular 'base:' chain")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected a mapping at the top level")
    base = data.pop("base", None)
    layers = []
    if base:
        layers += _read_yaml((path.parent / base), seen + (path.resolve(),))
    return layers + [(str(path), data)]


def _merge(cfg, layer: Any, source: str):
    try:
        return OmegaConf.merge(cfg, layer)
    except (ConfigKeyError, ConfigAttributeError) as e:
        raise unknown_key_error(getattr(e, "full_key", None) or str(e), source) from None
    except ValidationError as e:
        # OmegaConf appends full_key / reference_type / object_type lines: keep the first one
        msg = str(getattr(e, "msg", e)).strip().splitlines()[0]
        raise ConfigError(f"{source}: bad value for {getattr(e, 'full_key', '?')!r}: {msg}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                saved: dict | None = None) -> Config:
    """Defaults, then ``saved`` (a checkpoint's config dict; keys it predates take the value its run
    used, :data:`LEGACY_VALUES`) or the YAML preset at ``path`` (with
    its ``base:`` chain), then the ``key=value`` overrides."""
    cfg = OmegaConf.structured(Config)
    if saved is not None:
        cfg = _merge(cfg, _with_legacy_values(saved), "saved config")
    if path is not None:
        for source, layer in _read_yaml(Path(path)):
            cfg = _merge(cfg, layer, source)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.batch_size=8)")
        key = item.split("=", 1)[0]
        if key not in _valid_keys(Config()):
            raise unknown_key_error(key, "command line")
        value = item.split("=", 1)[1]
        if _field_type(key) is str:
            # keep strings literal: YAML would read off/no/on/yes as booleans, 1e-3 as a float;
            # one pair of matching quotes (key='off') is the shell-safe spelling of the same string
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            layer = OmegaConf.create({})
            OmegaConf.update(layer, key, value, force_add=True)
        else:
            layer = OmegaConf.from_dotlist([item])
        cfg = _merge(cfg, layer, "command line")
    config: Config = OmegaConf.to_object(cfg)
    if config.train.amp in ("False", "false"):  # `amp: off` in a YAML file reads as a boolean
        config.train.amp = "off"
    apply_legacy_num_layers(config)
    resolve_input_norm(config)
    validate(config)
    return config


def resolve_input_norm(cfg: Config) -> Config:
    """``model.input_norm=auto`` -> the pair's default (``none`` for an HRNet with a decoder that
    takes the concatenated HRNet features, e.g. ``model.decoder=diffnet``, else ``imagenet``).
    Modifies and returns ``cfg``."""
    m = cfg.model
    if m.input_norm == "auto":
        hrnet = m.encoder.split(".")[0].startswith("hrnet")
        m.input_norm = "none" if hrnet and DECODERS.get(m.decoder).hrnet_features else "imagenet"
    return cfg


def apply_legacy_num_layers(cfg: Config) -> Config:
    """Translate the legacy ``model.num_layers`` (18 | 34 | 50) of configs and checkpoints written before
    ``model.encoder`` existed into ``model.encoder = model.pose_encoder = resnet{N}`` (what those runs
    built), and reset it to 0. A ``model.encoder`` / ``model.pose_encoder`` set to something else
    beside it is a :class:`ConfigError`. Modifies and returns ``cfg``."""
    m = cfg.model
    if m.num_layers == 0:
        return cfg
    _check(m.num_layers in (18, 34, 50), "model.num_layers",
           f"legacy ResNet depth 18 | 34 | 50 (or 0; prefer model.encoder=resnet{{N}}), got {m.num_layers}")
    legacy, default = f"resnet{m.num_layers}", ModelConfig().encoder
    for key in ("encoder", "pose_encoder"):
        _check(getattr(m, key) in (default, legacy), f"model.{key}",
               f"{getattr(m, key)!r} contradicts the legacy model.num_layers={m.num_layers}; "
               "drop model.num_layers")
    m.encoder = m.pose_encoder = legacy
    m.num_layers = 0
    return cfg


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


# Keys added after runs were already being saved, with the value those runs trained with where it is
# not the key's default: a checkpoint written before the key existed reads back as what it did, so a
# resumed run continues exactly and a changed default shows up as a config difference.
LEGACY_VALUES: dict[str, object] = {
    "augment.color_jitter_on": "loader",  # the albumentations jitter in the loader, before the device one
}


def _with_legacy_values(d: dict) -> dict:
    """A copy of ``d`` with each :data:`LEGACY_VALUES` key (dotted, at any depth) filled in where its
    section is present but the key is not (a config saved before the key existed)."""
    out = copy.deepcopy(d)
    for key, value in LEGACY_VALUES.items():
        *path, name = key.split(".")
        node = out
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and name not in node:
            node[name] = value
    return out


def from_dict(d: dict) -> Config:
    """Rebuild a Config from :func:`to_dict` output (e.g. a checkpoint's), ignoring unknown keys;
    keys the saved config predates take the value its run used (:data:`LEGACY_VALUES`)."""
    d = _with_legacy_values(d)
    cfg = OmegaConf.structured(Config)
    known = set(_valid_keys(Config()))

    def prune(node: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in node.items():
            full = f"{prefix}{k}"
            if isinstance(v, dict) and any(x.startswith(full + ".") for x in known):
                out[k] = prune(v, full + ".")
            elif full in known:
                out[k] = v
        return out

    return resolve_input_norm(apply_legacy_num_layers(OmegaConf.to_object(OmegaConf.merge(cfg, prune(d)))))


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def validate(cfg: Config) -> None:
    """Range checks that would otherwise fail late (after data loading or mid-training)."""
    d, m, t, o, a, l = cfg.data, cfg.model, cfg.train, cfg.optim, cfg.augment, cfg.loss
    _check(d.height >= 64 and d.height % 32 == 0, "data.height", f"must be a multiple of 32 and >= 64, got {d.height}")
    _check(d.width >= 64 and d.width % 32 == 0, "data.width", f"must be a multiple of 32 and >= 64, got {d.width}")
    _check(d.frame_ids[:1] == [0], "data.frame_ids", f"must start with 0 (the target), got {d.frame_ids}")
    _check(d.dataset in ("kitti", "video"), "data.dataset", f"kitti | video, got {d.dataset!r}")
    if d.dataset == "kitti":
        _check(d.intrinsics in ("calib", "monodepth2"), "data.intrinsics", f"calib | monodepth2, got {d.intrinsics!r}")
    _check(d.frame_stride >= 1, "data.frame_stride", f"must be >= 1, got {d.frame_stride}")
    _check(d.static_threshold >= 0, "data.static_threshold", f"must be >= 0, got {d.static_threshold}")
    _check(0 <= d.val_fraction < 1, "data.val_fraction", f"must be in [0, 1), got {d.val_fraction}")
    _check(d.stereo_baseline > 0, "data.stereo_baseline", f"must be > 0, got {d.stereo_baseline}")
    _check(d.stereo_baseline_metric > 0, "data.stereo_baseline_metric", f"must be > 0, got {d.stereo_baseline_metric}")
    _check(not (d.stereo and d.dataset == "video"), "data.stereo",
           "stereo training needs a rectified pair (data.dataset=kitti); video folders are monocular")
    _check(d.img_ext in ("auto", "png", "jpg"), "data.img_ext", f"auto | png | jpg, got {d.img_ext!r}")
    _check(d.on_bad_sample in ("error", "skip"), "data.on_bad_sample", f"error | skip, got {d.on_bad_sample!r}")
    _check(d.val_split in ("val", "test"), "data.val_split", f"val | test, got {d.val_split!r}")
    _check(d.val_gt in ("auto", "benchmark", "velodyne", "none"), "data.val_gt",
           f"auto | benchmark | velodyne | none, got {d.val_gt!r}")
    _check(len(d.frame_ids) > 1 or d.stereo, "data.frame_ids", "needs a source frame (or data.stereo=true)")
    _check(0 < m.min_depth < m.max_depth, "model.min_depth/max_depth", f"need 0 < min < max, got {m.min_depth}, {m.max_depth}")
    _check(m.init_depth == 0 or m.min_depth < m.init_depth < m.max_depth, "model.init_depth",
           f"0 (default init) or between model.min_depth and model.max_depth, got {m.init_depth}")
    _check(m.pose_translation_scale > 0 and m.pose_rotation_scale > 0, "model.pose_*_scale",
           f"must be > 0, got {m.pose_rotation_scale}, {m.pose_translation_scale}")
    _check(m.num_layers in (0, 18, 34, 50), "model.num_layers",
           f"0 | 18 | 34 | 50 (legacy), got {m.num_layers}")
    for key in ("encoder", "pose_encoder"):  # checked against timm by depth.model.check_encoders
        v = getattr(m, key)
        _check(bool(v) and v == v.strip() and " " not in v, f"model.{key}", f"a timm model name, got {v!r}")
    _check(len(m.pose_size) == 0 or (len(m.pose_size) == 2 and min(m.pose_size) >= 32), "model.pose_size",
           f"[H, W] with H, W >= 32, or [] (the data size), got {m.pose_size}")
    _check(0 <= m.dca_dropout < 1, "model.dca_dropout", f"must be in [0, 1), got {m.dca_dropout}")
    DECODERS.check(m.decoder)  # the registered decoders (depth/registry.py), with did-you-mean
    _check(m.pose_decoder in ("monodepth2", "featdepth"), "model.pose_decoder",
           f"monodepth2 | featdepth, got {m.pose_decoder!r}")
    _check(m.input_norm in ("auto", "imagenet", "none"), "model.input_norm",
           f"auto | imagenet | none, got {m.input_norm!r}")
    _check(len(m.scales) > 0 and all(0 <= s <= 3 for s in m.scales), "model.scales", f"subset of 0..3, got {m.scales}")
    RECIPES.check(l.recipe)  # the registered loss recipes (depth/train/recipes/)
    _check(0 <= l.ssim_weight <= 1, "loss.ssim_weight", f"must be in [0, 1], got {l.ssim_weight}")
    _check(l.smoothness_weight >= 0, "loss.smoothness_weight", f"must be >= 0, got {l.smoothness_weight}")
    for key in ("color_jitter_prob", "flip_prob", "zoom_prob"):
        v = getattr(a, key)
        _check(0 <= v <= 1, f"augment.{key}", f"must be a probability in [0, 1], got {v}")
    _check(0 < a.zoom_min_scale <= 1, "augment.zoom_min_scale", f"must be in (0, 1], got {a.zoom_min_scale}")
    _check(a.color_jitter_on in ("device", "loader"), "augment.color_jitter_on",
           f"device | loader, got {a.color_jitter_on!r}")
    _check(a.zoom_source in ("network", "frame"), "augment.zoom_source",
           f"network | frame, got {a.zoom_source!r}")
    _check(o.lr > 0, "optim.lr", f"must be > 0, got {o.lr}")
    _check(o.gamma > 0, "optim.gamma", f"must be > 0, got {o.gamma}")
    _check(o.grad_clip >= 0, "optim.grad_clip", f"must be >= 0, got {o.grad_clip}")
    _check(o.warmup_steps >= 0, "optim.warmup_steps", f"must be >= 0, got {o.warmup_steps}")
    _check(all(m >= 0 for m in o.milestones), "optim.milestones", f"epochs >= 0, got {o.milestones}")
    _check(all(m >= 0 for m in o.step_milestones), "optim.step_milestones",
           f"optimiser steps >= 0, got {o.step_milestones}")
    _check(t.batch_size > 0, "train.batch_size", f"must be > 0, got {t.batch_size}")
    _check(t.epochs > 0, "train.epochs", f"must be > 0, got {t.epochs}")
    _check(t.max_steps >= 0, "train.max_steps", f"must be >= 0, got {t.max_steps}")
    _check(t.num_workers == "auto" or (isinstance(t.num_workers, int) and t.num_workers >= 0), "train.num_workers",
           f"a count >= 0 or auto, got {t.num_workers!r}")
    _check(t.device in ("auto", "cpu", "cuda"), "train.device", f"auto | cpu | cuda, got {t.device!r}")
    _check(t.amp in ("auto", "off", "bf16", "fp16"), "train.amp", f"auto | off | bf16 | fp16, got {t.amp!r}")
    _check(t.nan_policy in ("error", "skip"), "train.nan_policy", f"error | skip, got {t.nan_policy!r}")
    _check(t.keep_checkpoints >= 1, "train.keep_checkpoints", f"must be >= 1, got {t.keep_checkpoints}")
    _check(t.resume in ("off", "auto"), "train.resume", f"off | auto, got {t.resume!r}")
    _check(not (t.resume == "auto" and cfg.output.overwrite), "train.resume",
           "auto continues the checkpoints in output.dir, which output.overwrite=true would remove: set one of them")
