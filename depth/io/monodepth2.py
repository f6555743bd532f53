"""Monodepth2 model folders: read them as this project's checkpoint, write them from its networks.

A Monodepth2 model folder (what Monodepth2's trainer writes to ``models/weights_N/`` and what its
published models unpack to) holds

* ``encoder.pth``: the ``ResnetEncoder`` state dict -- a torchvision ResNet kept as ``.encoder``,
  so keys ``encoder.conv1.weight``, ``encoder.bn1.running_mean``, ``encoder.layer1.0.conv1.weight``,
  ..., the unused classifier ``encoder.fc.weight/bias`` -- plus the entries ``height``, ``width``
  (the network input size) and ``use_stereo`` that the trainer adds when saving;
* ``depth.pth``: the ``DepthDecoder`` state dict. Its convs live in an ``nn.ModuleList`` in
  insertion order, so ``decoder.<i>``: ``i = 2 (4 - l) + j`` is ``("upconv", l, j)`` (``l`` = 4..0,
  ``j`` = 0, 1; ``decoder.<i>.conv.conv.weight/bias``: 3x3 conv, reflection padding, ELU) and
  ``decoder.10``, ``decoder.11``, ... are the sigmoid heads ``("dispconv", s)`` in the order of the
  trainer's scales (``decoder.<i>.conv.weight/bias``);
* optionally ``pose_encoder.pth`` (a ResNet on two stacked frames: ``encoder.conv1.weight`` is
  ``(64, 6, 7, 7)``) and ``pose.pth`` (``PoseDecoder``: ``net.0`` squeeze 1x1, ``net.1``/``net.2``
  3x3, ``net.3`` 1x1 to ``6 x num_frames_to_predict_for`` = 12 channels, outputs times 0.01).
  Other files (``adam.pth``) are ignored.

**Recognition** (:func:`monodepth2_folder`): a folder holding ``encoder.pth`` or ``depth.pth`` is
read as a Monodepth2 model folder, whatever its name (a run folder of this project holds
``checkpoints/`` or ``last.pt`` instead); a path to one of the four files above inside such a
folder means the folder. Its content is then checked key by key against Monodepth2's layout.

**Mapping.** The ResNet keys are this project's keys unchanged (``depth_net.encoder.*``,
``pose_net.encoder.*``); ``decoder.<i>`` maps to ``decoder.convs.upconv_<l>_<j>`` and
``decoder.convs.dispconv_<s>`` (a head's scale ``s`` is read from its input channels 16, 32, 64,
128); ``net.0..3`` map to ``decoder.convs.squeeze, pose_0, pose_1, pose_2``. Monodepth2's trainer
uses only the first of the pose decoder's two frame predictions (``axisangle[:, 0]``), so
``pose_2`` takes output channels 0..5 of ``net.3``. The networks compute exactly what Monodepth2
computes: the same ``(x - 0.45) / 0.225`` input normalisation, nearest x2 upsampling (the project
upsamples to the skip's size: the same for sizes divisible by 32, which Monodepth2 requires),
sigmoid heads, ``disp_to_depth(disp, 0.1, 100)``; pose outputs times 0.01 and the frame order of
Monodepth2's pair mode (inverted for source frames before the target).

**Config** of a Monodepth2 model (:func:`monodepth2_config`): ``data.height/width`` from
``encoder.pth``, ``data.intrinsics=monodepth2`` (Monodepth2's fixed normalised K),
``data.stereo=use_stereo`` with Monodepth2's baseline convention (``data.stereo_baseline=0.1`` for
KITTI's 0.54 m rig: the stereo evaluation factor is 5.4), ``model.encoder`` = ``resnet{N}`` from the ResNet's
blocks (18, 34 or 50), ``model.scales`` from the heads present, min/max depth 0.1/100, pose scales
0.01, ``data.frame_ids`` ``[0, -1, 1]`` (``[0]`` for a stereo model without a pose network).

**Round trip.** Converting a folder to a checkpoint keeps the tensors the project's networks do not
use (the classifiers ``encoder.fc.*`` and ``net.3``'s channels 6..11) under the checkpoint key
``monodepth2_extra``, so that converting back writes every file bit for bit. A checkpoint without
them (trained here) gets zero classifiers (Monodepth2 never runs them, but loads them strictly) and
``net.3`` channels 6..11 equal to 0..5 (a tool reading the second frame's prediction gets the
same pose). Heads of scales a model lacks are written as zeros (Monodepth2 builds four).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor

from common.errors import InputError, Monodepth2FormatError
from common.atomic import atomic_write_dir
from depth.config import Config, ConfigError, to_dict, validate
from depth.io.checkpoint import CheckpointRefused, atomic_torch_save, library_versions, safe_torch_load
from depth.networks import DepthNet, PoseNet
from depth.networks.decoder import NUM_CH_DEC

__all__ = ["Monodepth2FormatError", "MONODEPTH2_FILES", "EXTRA_KEY", "monodepth2_folder", "monodepth2_config",
           "from_monodepth2", "monodepth2_state_dicts", "write_monodepth2"]

MONODEPTH2_FILES = ("encoder.pth", "depth.pth", "pose_encoder.pth", "pose.pth")
EXTRA_KEY = "monodepth2_extra"  # checkpoint key: Monodepth2 tensors the project's networks do not use
ENCODER_META = ("height", "width", "use_stereo")
POSE_SCALE = 0.01  # Monodepth2's PoseDecoder multiplies its outputs by this
STEREO_BASELINE, STEREO_BASELINE_METRIC = 0.1, 0.54  # Monodepth2: 0.1 in the loss for KITTI's 0.54 m rig
MIN_DEPTH, MAX_DEPTH = 0.1, 100.0
CLASSIFIER_CLASSES = 1000  # torchvision ResNet's fc layer
_RESNETS = {(False, (2, 2, 2, 2)): 18, (False, (3, 4, 6, 3)): 34, (True, (3, 4, 6, 3)): 50}
_POSE_NAMES = (("net.0", "decoder.convs.squeeze"), ("net.1", "decoder.convs.pose_0"),
               ("net.2", "decoder.convs.pose_1"), ("net.3", "decoder.convs.pose_2"))


# ----------------------------------------------------------------------------------------------
# Names and shapes
# ----------------------------------------------------------------------------------------------

def _few(items, n: int = 4) -> str:
    items = [str(i) for i in items]
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def _depth_names(head_scales: list[int]) -> list[tuple[str, str]]:
    """``(Monodepth2 key, project key)`` of the depth decoder; ``head_scales[k]`` is the scale of
    ``decoder.<10 + k>``."""
    names = []
    for level in range(4, -1, -1):
        for j in (0, 1):
            i = 2 * (4 - level) + j
            names += [(f"decoder.{i}.conv.conv.{p}", f"decoder.convs.upconv_{level}_{j}.conv.conv.{p}")
                      for p in ("weight", "bias")]
    for k, s in enumerate(head_scales):
        names += [(f"decoder.{10 + k}.conv.{p}", f"decoder.convs.dispconv_{s}.conv.{p}") for p in ("weight", "bias")]
    return names


def _pose_names() -> list[tuple[str, str]]:
    return [(f"{a}.{p}", f"{b}.{p}") for a, b in _POSE_NAMES for p in ("weight", "bias")]


def _shapes(module: torch.nn.Module) -> "OrderedDict[str, tuple[int, ...]]":
    return OrderedDict((k, tuple(v.shape)) for k, v in module.state_dict().items())


def _templates(num_layers: int, scales: list[int]) -> tuple[dict, dict]:
    """Key -> shape of this project's depth and pose nets (built on the meta device: no memory)."""
    with torch.device("meta"):
        return _shapes(DepthNet(f"resnet{num_layers}", scales=tuple(scales))), _shapes(PoseNet(f"resnet{num_layers}"))


def _resnet_layers(state: dict, file: str) -> int:
    """18, 34 or 50 from the block layout of ``encoder.layer1..4`` in a state dict."""
    if "encoder.conv1.weight" not in state:
        keys = [k for k in state if k not in ENCODER_META]
        raise Monodepth2FormatError(f"{file}: not a Monodepth2 ResnetEncoder state dict: no 'encoder.conv1.weight' "
                                    f"(its keys: {_few(keys) or 'none'})")
    bottleneck = "encoder.layer1.0.conv3.weight" in state
    blocks = []
    for n in range(1, 5):
        ids = [int(m.group(1)) for k in state if (m := re.match(rf"encoder\.layer{n}\.(\d+)\.", k))]
        blocks.append(max(ids) + 1 if ids else 0)
    layers = _RESNETS.get((bottleneck, tuple(blocks)))
    if layers is None:
        raise Monodepth2FormatError(
            f"{file}: a ResNet with {tuple(blocks)} {'Bottleneck' if bottleneck else 'BasicBlock'} blocks per stage; "
            f"supported: ResNet-18 (2, 2, 2, 2), ResNet-34 (3, 4, 6, 3), ResNet-50 (3, 4, 6, 3 Bottleneck)")
    return layers


def _check_keys(tensors: dict, expected: dict, file: str, optional: set[str] = frozenset()) -> None:
    """Every expected key present (except ``optional`` ones), none unexpected, every shape right."""
    not_tensors = [k for k, v in tensors.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise Monodepth2FormatError(f"{file}: entries that are not tensors: {_few(not_tensors)}")
    missing = [k for k in expected if k not in tensors and k not in optional]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        parts = ([f"{len(missing)} missing keys ({_few(missing)})"] if missing else []) + \
                ([f"{len(unexpected)} unexpected keys ({_few(unexpected)})"] if unexpected else [])
        raise Monodepth2FormatError(f"{file}: not Monodepth2's layout: " + "; ".join(parts))
    wrong = [f"{k} {tuple(v.shape)} (expected {expected[k]})" for k, v in tensors.items()
             if tuple(v.shape) != tuple(expected[k])]
    if wrong:
        raise Monodepth2FormatError(f"{file}: tensors of the wrong shape: {_few(wrong, 3)}")


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------

def monodepth2_folder(path: str | Path) -> Path | None:
    """The Monodepth2 model folder ``path`` designates, or None (then it is not one).

    A folder holding ``encoder.pth`` or ``depth.pth``, or one of :data:`MONODEPTH2_FILES` inside
    such a folder. Only the presence of the files is looked at here; :func:`from_monodepth2`
    checks their content."""
    p = Path(path)
    if p.is_dir():
        return p if any((p / n).is_file() for n in ("encoder.pth", "depth.pth")) else None
    if p.is_file() and p.name in MONODEPTH2_FILES and monodepth2_folder(p.parent) is not None:
        return p.parent
    return None


def _not_found(path: Path) -> Monodepth2FormatError:
    return Monodepth2FormatError(f"{path}: not found (a Monodepth2 model folder holds encoder.pth and depth.pth, "
                             f"and optionally pose_encoder.pth with pose.pth)")


def _load_pth(path: Path, map_location) -> dict:
    if not path.is_file():
        raise _not_found(path)
    try:
        obj = safe_torch_load(path, map_location=map_location)
    except CheckpointRefused:
        raise  # names the file and the objects it would build
    except Exception as e:  # truncated zip, not a torch file
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise Monodepth2FormatError(
            f"{path}: could not be read as a state dict ({type(e).__name__}: {reason})") from None
    if not isinstance(obj, dict):
        raise Monodepth2FormatError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return obj


def _size(value, key: str, file: Path) -> int:
    v = value.item() if isinstance(value, Tensor) and value.numel() == 1 else value
    if isinstance(v, bool) or not isinstance(v, int | float) or int(v) != v or v <= 0:
        raise Monodepth2FormatError(f"{file}: '{key}' must be a positive integer, got {value!r}")
    return int(v)


def _head_scales(state: dict, file: Path) -> list[int]:
    """The scale of each sigmoid head ``decoder.10``, ``decoder.11``, ... from its input channels."""
    ids = sorted({int(m.group(1)) for k in state if (m := re.match(r"decoder\.(\d+)\.", k)) and int(m.group(1)) >= 10})
    if not ids:
        raise Monodepth2FormatError(
            f"{file}: no disparity head (decoder.10.conv.weight): not a Monodepth2 DepthDecoder")
    if ids != list(range(10, 10 + len(ids))):
        raise Monodepth2FormatError(f"{file}: disparity heads decoder.{ids} are not numbered from decoder.10 on")
    by_channels = {NUM_CH_DEC[s]: s for s in range(4)}
    scales = []
    for i in ids:
        w = state.get(f"decoder.{i}.conv.weight")
        s = by_channels.get(w.shape[1]) if isinstance(w, Tensor) and w.ndim == 4 and w.shape[0] == 1 else None
        if s is None:
            got = tuple(w.shape) if isinstance(w, Tensor) else "missing"
            raise Monodepth2FormatError(f"{file}: decoder.{i}.conv.weight: expected a (1, C, 3, 3) disparity head with "
                                        f"C in {sorted(by_channels)}, got {got}")
        scales.append(s)
    if len(set(scales)) != len(scales):
        raise Monodepth2FormatError(f"{file}: two disparity heads for the same scale ({scales})")
    return scales


def monodepth2_config(height: int, width: int, use_stereo: bool, num_layers: int, scales: list[int],
                      has_pose: bool) -> Config:
    """The config of a Monodepth2 model (see the module doc); raises ``ConfigError`` for sizes
    Monodepth2 could not have trained at."""
    cfg = Config()
    d, m = cfg.data, cfg.model
    d.height, d.width = int(height), int(width)
    d.intrinsics = "monodepth2"
    d.stereo = bool(use_stereo)
    d.stereo_baseline, d.stereo_baseline_metric = STEREO_BASELINE, STEREO_BASELINE_METRIC
    d.frame_ids = [0] if (use_stereo and not has_pose) else [0, -1, 1]
    m.encoder = m.pose_encoder = f"resnet{int(num_layers)}"
    m.scales, m.dca, m.pretrained = sorted(scales), False, False
    m.min_depth, m.max_depth = MIN_DEPTH, MAX_DEPTH
    m.pose_rotation_scale = m.pose_translation_scale = POSE_SCALE
    validate(cfg)
    return cfg


def from_monodepth2(folder: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A Monodepth2 model folder as a checkpoint dict of this project: ``depth_net``, ``pose_net``
    (None when the folder has no pose files), ``config`` (:func:`monodepth2_config`, as a dict),
    ``versions``, ``source`` and :data:`EXTRA_KEY` (the unused tensors, for the way back).

    Raises :class:`Monodepth2FormatError` (no ``encoder.pth``/``depth.pth``, or only one of the pose files)
    or :class:`Monodepth2FormatError` naming the file: unreadable or truncated, keys missing or
    unexpected (the first few named), wrong shapes, no ``height``/``width``.
    """
    folder = Path(folder)
    enc_path, dec_path = folder / "encoder.pth", folder / "depth.pth"
    pose_paths = (folder / "pose_encoder.pth", folder / "pose.pth")
    for p in (enc_path, dec_path):
        if not p.is_file():
            raise _not_found(p)
    has_pose = [p.is_file() for p in pose_paths]
    if any(has_pose) and not all(has_pose):
        there, absent = (pose_paths if has_pose[0] else pose_paths[::-1])
        raise Monodepth2FormatError(f"{absent}: not found, but {there.name} is there: a Monodepth2 pose network "
                                f"needs both pose_encoder.pth and pose.pth")
    enc = _load_pth(enc_path, map_location)
    missing_meta = [k for k in ("height", "width") if k not in enc]
    if missing_meta:
        raise Monodepth2FormatError(f"{enc_path}: no {' / '.join(repr(k) for k in missing_meta)} entry: Monodepth2's "
                                    f"trainer saves the network input size with the encoder (encoder.pth['height'], "
                                    f"encoder.pth['width']); add them for this model")
    height, width = _size(enc["height"], "height", enc_path), _size(enc["width"], "width", enc_path)
    use_stereo = enc.get("use_stereo", False)
    if isinstance(use_stereo, Tensor) and use_stereo.numel() == 1:
        use_stereo = use_stereo.item()
    if not isinstance(use_stereo, bool | int):
        raise Monodepth2FormatError(f"{enc_path}: 'use_stereo' must be a boolean, got {use_stereo!r}")
    num_layers = _resnet_layers(enc, str(enc_path))
    dec = _load_pth(dec_path, map_location)
    heads = _head_scales(dec, dec_path)
    depth_shapes, pose_shapes = _templates(num_layers, sorted(heads))

    enc_tensors = {k: v for k, v in enc.items() if k not in ENCODER_META}
    enc_expected = OrderedDict((k, s) for k, s in depth_shapes.items() if k.startswith("encoder."))
    channels = 512 if num_layers < 50 else 2048
    fc = {"encoder.fc.weight": (CLASSIFIER_CLASSES, channels), "encoder.fc.bias": (CLASSIFIER_CLASSES,)}
    optional = {k for k in enc_expected if k.endswith("num_batches_tracked")} | set(fc)
    _check_keys(enc_tensors, {**enc_expected, **fc}, str(enc_path), optional)
    names = _depth_names(heads)
    _check_keys(dec, {a: depth_shapes[b] for a, b in names}, str(dec_path))

    def take(tensors: dict, key: str, shape: tuple) -> Tensor:  # absent only when optional
        return tensors[key] if key in tensors else torch.zeros(shape, dtype=torch.long)

    dec_map = dict((b, a) for a, b in names)
    depth_state = OrderedDict(
        (k, take(enc_tensors, k, s) if k.startswith("encoder.") else dec[dec_map[k]]) for k, s in depth_shapes.items())
    extra: dict[str, dict[str, Tensor]] = {"encoder.pth": {k: v for k, v in enc_tensors.items() if k in fc}}

    pose_state = None
    if all(has_pose):
        penc_path, pdec_path = pose_paths
        penc = _load_pth(penc_path, map_location)
        conv1 = penc.get("encoder.conv1.weight")
        if isinstance(conv1, Tensor) and conv1.ndim == 4 and conv1.shape[1] != 6:
            raise Monodepth2FormatError(f"{penc_path}: encoder.conv1.weight takes {conv1.shape[1]} channels "
                                        f"({conv1.shape[1] / 3:g} stacked frames); only frame pairs "
                                        f"(6 channels) are supported")
        pose_layers = _resnet_layers(penc, str(penc_path))
        if pose_layers != num_layers:
            raise Monodepth2FormatError(f"{penc_path}: a ResNet-{pose_layers} pose encoder with a ResNet-{num_layers} "
                                        f"depth encoder; load it with a matching depth encoder")
        penc_tensors = {k: v for k, v in penc.items() if k not in ENCODER_META}
        penc_expected = OrderedDict((k, s) for k, s in pose_shapes.items() if k.startswith("encoder."))
        poptional = {k for k in penc_expected if k.endswith("num_batches_tracked")} | set(fc)
        _check_keys(penc_tensors, {**penc_expected, **fc}, str(penc_path), poptional)
        pdec = _load_pth(pdec_path, map_location)
        out = pdec.get("net.3.weight")
        n_out = out.shape[0] if isinstance(out, Tensor) and out.ndim == 4 else 6
        if n_out < 6 or n_out % 6:
            raise Monodepth2FormatError(f"{pdec_path}: net.3.weight has {n_out} output channels; expected 6 per "
                                        f"predicted frame (Monodepth2: 12)")
        expected = {a: pose_shapes[b] for a, b in _pose_names()}
        expected["net.3.weight"], expected["net.3.bias"] = (n_out, 256, 1, 1), (n_out,)
        _check_keys(pdec, expected, str(pdec_path))
        pmap = dict((b, a) for a, b in _pose_names())
        pose_state = OrderedDict()
        for k, s in pose_shapes.items():
            if k.startswith("encoder."):
                pose_state[k] = take(penc_tensors, k, s)
            else:
                v = pdec[pmap[k]]
                pose_state[k] = v[:6].clone() if k.startswith("decoder.convs.pose_2") else v
        extra["pose_encoder.pth"] = {k: v for k, v in penc_tensors.items() if k in fc}
        extra["pose.pth"] = {k: pdec[k][6:].clone() for k in ("net.3.weight", "net.3.bias") if n_out > 6}
    try:
        cfg = monodepth2_config(height, width, bool(use_stereo), num_layers, heads, pose_state is not None)
    except ConfigError as e:
        raise Monodepth2FormatError(f"{enc_path}: {e}") from None
    return {"depth_net": depth_state, "pose_net": pose_state, "config": to_dict(cfg), "versions": library_versions(),
            "source": f"monodepth2 folder {folder}", EXTRA_KEY: extra}


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

def _extra_tensor(extra: dict | None, file: str, key: str, shape: tuple[int, ...]) -> Tensor | None:
    """A tensor kept from a Monodepth2 folder, if the checkpoint has it with the right shape."""
    v = ((extra or {}).get(file) or {}).get(key) if isinstance(extra, dict) else None
    return v if isinstance(v, Tensor) and tuple(v.shape) == tuple(shape) else None


def _encoder_file(state: dict, layers: int, extra: dict | None, file: str) -> "OrderedDict[str, object]":
    out = OrderedDict((k, v) for k, v in state.items() if k.startswith("encoder."))
    channels = 512 if layers < 50 else 2048
    classifier = (("encoder.fc.weight", (CLASSIFIER_CLASSES, channels)), ("encoder.fc.bias", (CLASSIFIER_CLASSES,)))
    for key, shape in classifier:
        kept = _extra_tensor(extra, file, key, shape)
        out[key] = kept if kept is not None else torch.zeros(shape)
    return out


def monodepth2_state_dicts(nets, cfg: Config, extra: dict | None = None) -> tuple[dict[str, dict], list[str]]:
    """The files of a Monodepth2 model folder for a model of this project, in memory: ``({file
    name: state dict}, notes)``; the notes say what Monodepth2's format could not hold as it is.

    ``nets``: :class:`depth.model.Networks` (``pose_net`` may be None: no pose files). ``extra``:
    a checkpoint's :data:`EXTRA_KEY` (tensors kept from a Monodepth2 folder), else None.
    Raises :class:`Monodepth2FormatError` with the reason for a DCA decoder or a non-ResNet
    encoder. The pose scales are folded into ``net.3`` (bit-identical at Monodepth2's 0.01).
    """
    if cfg.model.dca or getattr(nets.depth_net.decoder, "dca_enabled", False):
        raise Monodepth2FormatError(
            "the model has a dynamic cross-attention (DCA) decoder: Monodepth2's DepthDecoder has no attention "
            "layers and no single full-resolution DCA head, so its weights have no place in depth.pth and a "
            "Monodepth2 tool would build a different network; only baseline-decoder models convert")
    state = nets.depth_net.state_dict()
    layers = _resnet_layers(state, "the depth encoder")
    scales = sorted(int(s) for s in nets.depth_net.scales)
    depth_shapes, pose_shapes = _templates(layers, scales)
    if _shapes(nets.depth_net) != depth_shapes:
        odd = [k for k in state if k not in depth_shapes] or [k for k in depth_shapes if k not in state]
        raise Monodepth2FormatError(f"the depth net is not a ResNet-{layers} with the baseline decoder: "
                                    f"{_few(odd) or 'tensor shapes differ'}")
    notes = []
    encoder = _encoder_file(state, layers, extra, "encoder.pth")
    encoder["height"], encoder["width"], encoder["use_stereo"] = int(cfg.data.height), int(cfg.data.width), \
        bool(cfg.data.stereo)
    depth = OrderedDict()
    for a, b in _depth_names([0, 1, 2, 3]):
        if b in state:
            depth[a] = state[b]
        else:
            s = int(b.split("dispconv_")[1].split(".")[0])
            depth[a] = torch.zeros(1 if a.endswith("bias") else (1, NUM_CH_DEC[s], 3, 3))
    lacking = [s for s in range(4) if s not in scales]
    if lacking:
        notes.append(f"the model has no disparity head for scale(s) {lacking}: written as zeros "
                     f"(Monodepth2 builds four heads and uses scale 0 for prediction)")
    files: dict[str, dict] = {"encoder.pth": encoder, "depth.pth": depth}
    if cfg.data.stereo:
        factor = float(cfg.data.stereo_baseline_metric) / float(cfg.data.stereo_baseline)
        if abs(factor - STEREO_BASELINE_METRIC / STEREO_BASELINE) > 1e-9:
            notes.append(f"stereo model with a metric factor of {factor:g} (Monodepth2's --eval_stereo assumes 5.4): "
                         f"evaluate it there with --disable_median_scaling --pred_depth_scale_factor {factor:g}")
    if (cfg.model.min_depth, cfg.model.max_depth) != (MIN_DEPTH, MAX_DEPTH):
        notes.append(f"trained with min/max depth {cfg.model.min_depth:g}/{cfg.model.max_depth:g}: pass "
                     f"--min_depth/--max_depth to Monodepth2 tools (they default to 0.1/100)")
    pose_net = nets.pose_net
    if pose_net is None:
        notes.append("no pose network: pose_encoder.pth and pose.pth not written")
        return files, notes
    if layers not in (18, 50):
        notes.append(f"Monodepth2 builds two-frame pose encoders for ResNet-18/50 only: the ResNet-{layers} "
                     f"pose network is not written")
        return files, notes
    pstate = pose_net.state_dict()
    if _shapes(pose_net) != pose_shapes:
        raise Monodepth2FormatError(
            f"the pose net is not a ResNet-{layers} on two frames with Monodepth2's pose decoder")
    files["pose_encoder.pth"] = _encoder_file(pstate, layers, extra, "pose_encoder.pth")
    rot, trans = float(pose_net.decoder.rotation_scale), float(pose_net.decoder.translation_scale)
    factor = torch.tensor([rot / POSE_SCALE] * 3 + [trans / POSE_SCALE] * 3)
    pose = OrderedDict()
    for a, b in _pose_names():
        v = pstate[b]
        if a.startswith("net.3"):
            if not bool((factor == 1).all()):
                v = v * factor.to(v.dtype).view(-1, *([1] * (v.ndim - 1)))
            rest = ((extra or {}).get("pose.pth") or {}).get(a) if isinstance(extra, dict) else None
            if not (isinstance(rest, Tensor) and rest.shape[1:] == v.shape[1:] and rest.shape[0] % 6 == 0):
                rest = v  # trained here: the second frame's channels repeat the first's
            v = torch.cat([v, rest])
        pose[a] = v
    if not bool((factor == 1).all()):
        notes.append(f"pose scales {rot:g}/{trans:g} folded into pose.pth net.3 (Monodepth2 multiplies by 0.01)")
    files["pose.pth"] = pose
    return files, notes


def write_monodepth2(files: dict[str, dict], folder: str | Path) -> list[Path]:
    """Write :func:`monodepth2_state_dicts`'s files as the new folder ``folder``, whole or not at
    all (:func:`common.atomic.atomic_write_dir`: ``folder`` must not exist or be empty). Returns
    the written paths."""
    folder = Path(folder)

    def write(tmp: Path) -> None:
        for name, state in files.items():
            atomic_torch_save(state, tmp / name)

    try:
        atomic_write_dir(folder, write)
    except FileExistsError:
        raise InputError(
            f"{folder}: exists and is not empty; give a new folder for the Monodepth2 model") from None
    return [folder / name for name in files]
