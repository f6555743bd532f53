"""Checkpoints of the DaB-Net authors' code (their ``mono_hrnet`` trainer): read them as this project's.

Their trainer (mmcv) saves ``{'meta': ..., 'state_dict': ..., 'optimizer': ...}``; ``state_dict`` holds
the model's four parts under their attribute names:

* ``DepthEncoder.<name>``: their HRNet-18 -- the same module names as timm's ``hrnet_w18`` feature
  extractor (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``layer1``, ``transition1..3``, ``stage2..4``),
  mapped one to one onto ``depth_net.encoder.<name>``;
* ``DepthDecoder.<name>``: their DIFFNet decoder (``deconvs_72/36/18/9`` fusion stages, ``QKV18/36/72``
  attention branches, ``attention.dy_att`` branch weights, ``convs_up_x9_0/1`` and ``disp_head``; or,
  without DCA, ``dispConvScale0`` and no attention), mapped onto
  :class:`depth.networks.diffnet.DiffNetDecoder` as :data:`DECODER_NAMES` says;
* ``PoseEncoder.encoder.<name>`` (a torchvision-layout ResNet-18 on 6 channels, its unused ``fc``
  classifier included) and ``PoseDecoder.reduce/conv1/conv2/conv3`` (FeatDepth's pose decoder: the
  same layers as Monodepth2's, outputs x0.01), mapped onto ``pose_net.encoder.<name>`` and
  ``pose_net.decoder.convs.squeeze/pose_0/pose_1/pose_2``.

**Recognition** (:func:`dabnet_file`): a file whose pickled object names ``state_dict`` and
``DepthEncoder.`` keys (looked up in the archive's ``data.pkl`` without unpickling anything), then
read with ``torch.load(..., weights_only=True)`` and checked key by key: a key missing or unexpected
(the first few named) or of the wrong shape is a :class:`DabnetFormatError` naming the file.

**Config** (:func:`dabnet_config`): ``model.encoder=hrnet_w{C}`` (C from the branch-0 width),
``model.decoder=diffnet``, ``model.dca`` from the presence of the attention layers,
``model.input_norm=none``, a ResNet-18 pose net fed at 192x640 (``model.pose_size``), min/max depth
0.1/100, pose scales 0.01, Monodepth2's fixed intrinsics and ``loss.recipe=dabnet``; the network
size is their released model's, 1024x320 (``data.height/width``; the weights do not record it; their
evaluation feeds the network at the config's size; pass ``--height/--width`` where a command takes
them). Frames ``[0, -1, 1]``; a checkpoint without pose keys has no pose net.
"""
from __future__ import annotations

import zipfile
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor

from common.errors import DabnetFormatError
from depth.config import Config, to_dict, validate
from depth.io.checkpoint import library_versions
from depth.networks import DepthNet, PoseNet

__all__ = ["DabnetFormatError", "DECODER_NAMES", "dabnet_file", "dabnet_config", "from_dabnet"]

POSE_NAMES = (("reduce", "squeeze"), ("conv1", "pose_0"), ("conv2", "pose_1"), ("conv3", "pose_2"))
# their decoder's module prefix -> the project's (depth_net.decoder.*)
DECODER_NAMES = (
    ("deconvs_72.ca.att.1.", "stage16.squeeze."), ("deconvs_72.ca.att.3.", "stage16.excite."),
    ("deconvs_72.conv_se.0.", "stage16.conv."),
    ("deconvs_36.ca.att.1.", "stage8.squeeze."), ("deconvs_36.ca.att.3.", "stage8.excite."),
    ("deconvs_36.conv_se.0.", "stage8.conv."),
    ("deconvs_18.ca.att.1.", "stage4.squeeze."), ("deconvs_18.ca.att.3.", "stage4.excite."),
    ("deconvs_18.conv_se.0.", "stage4.conv."),
    ("deconvs_9.ca.att.1.", "stage2.squeeze."), ("deconvs_9.ca.att.3.", "stage2.excite."),
    ("deconvs_9.conv_se.0.", "stage2.conv."),
    ("QKV18.query_conv.", "dca.branches.b4.query."), ("QKV18.key_conv.", "dca.branches.b4.key."),
    ("QKV18.value_conv.", "dca.branches.b4.value."),
    ("QKV36.query_conv.", "dca.branches.b8.query."), ("QKV36.key_conv.", "dca.branches.b8.key."),
    ("QKV36.value_conv.", "dca.branches.b8.value."),
    ("QKV72.query_conv.", "dca.branches.b16.query."), ("QKV72.key_conv.", "dca.branches.b16.key."),
    ("QKV72.value_conv.", "dca.branches.b16.value."),
    ("attention.dy_att.1.", "dca.weight_mlp.0."), ("attention.dy_att.3.", "dca.weight_mlp.2."),
    ("convs_up_x9_0.convelu.0.", "head.conv0."), ("convs_up_x9_1.convelu.0.", "head.conv1."),
    ("disp_head.0.", "head.disp."), ("dispConvScale0.0.", "head.disp."),
)
POSE_EXTRA = ("PoseEncoder.encoder.fc.weight", "PoseEncoder.encoder.fc.bias")  # unused classifier
RELEASED_SIZE = (320, 1024)  # (H, W) of their released model (cfg_kitti_hrnet.py)
POSE_SIZE = [192, 640]


def _few(items, n: int = 4) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def dabnet_file(path: str | Path) -> bool:
    """Whether ``path`` is a file that looks like the authors' checkpoint (module doc); reads only
    the pickle's bytes (``data.pkl`` of a zip archive, else the first 8 MB of a legacy file)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                names = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
                if not names:
                    return False
                data = z.read(names[0])
        else:
            with open(p, "rb") as f:
                data = f.read(8 << 20)
    except (OSError, zipfile.BadZipFile):
        return False
    return b"state_dict" in data and b"DepthEncoder." in data


def _pose_key(their_key: str) -> str | None:
    if their_key.startswith("PoseEncoder.encoder."):
        return "encoder." + their_key[len("PoseEncoder.encoder."):]
    for theirs, ours in POSE_NAMES:
        if their_key.startswith(f"PoseDecoder.{theirs}."):
            return f"decoder.convs.{ours}." + their_key[len(f"PoseDecoder.{theirs}."):]
    return None


def dabnet_config(width: int, dca: bool, has_pose: bool, height: int = RELEASED_SIZE[0],
                  image_width: int = RELEASED_SIZE[1]) -> Config:
    """The config of an authors' model (module doc); ``width`` is the HRNet's branch-0 width (18)."""
    cfg = Config()
    d, m = cfg.data, cfg.model
    d.height, d.width = int(height), int(image_width)
    d.intrinsics = "monodepth2"
    d.frame_ids = [0, -1, 1]
    m.encoder, m.pose_encoder = f"hrnet_w{int(width)}", "resnet18"
    m.decoder, m.dca, m.input_norm, m.pretrained = "diffnet", bool(dca), "none", False
    m.scales = [0]
    m.pose_size = list(POSE_SIZE)
    m.pose_decoder = "featdepth"
    m.min_depth, m.max_depth = 0.1, 100.0
    m.pose_rotation_scale = m.pose_translation_scale = 0.01
    cfg.loss.recipe = "dabnet"
    validate(cfg)
    return cfg


def _check(tensors: dict, expected: dict, file: Path, what: str) -> None:
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        parts = ([f"{len(missing)} missing keys ({_few(missing)})"] if missing else []) + \
                ([f"{len(unexpected)} unexpected keys ({_few(unexpected)})"] if unexpected else [])
        raise DabnetFormatError(f"{file}: not the DaB-Net authors' {what} layout: " + "; ".join(parts))
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(expected[k])})" for k, v in tensors.items()
             if tuple(v.shape) != tuple(expected[k])]
    if wrong:
        raise DabnetFormatError(f"{file}: tensors of the wrong shape: {_few(wrong, 3)}")


def from_dabnet(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The authors' checkpoint at ``path`` as a checkpoint dict of this project (``depth_net``,
    ``pose_net`` or None, ``config``, ``versions``, ``source``). Raises :class:`DabnetFormatError`."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise DabnetFormatError(f"{path}: could not be read with weights_only=True ({type(e).__name__}: "
                                f"{reason})") from None
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise DabnetFormatError(f"{path}: expected a dict with a 'state_dict' entry (the authors' mmcv checkpoint)")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    not_tensors = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise DabnetFormatError(f"{path}: state_dict entries that are not tensors: {_few(not_tensors)}")
    parts = {"DepthEncoder.": {}, "DepthDecoder.": {}, "Pose": {}}
    other = []
    for k, v in state.items():
        prefix = next((p for p in parts if k.startswith(p)), None)
        (parts[prefix].__setitem__(k, v) if prefix else other.append(k))
    if other:
        raise DabnetFormatError(f"{path}: not the DaB-Net authors' layout: {len(other)} unexpected keys "
                                f"({_few(other)}); expected DepthEncoder., DepthDecoder., PoseEncoder., PoseDecoder.")
    b0 = parts["DepthEncoder."].get("DepthEncoder.stage4.0.branches.0.0.conv1.weight")
    if not isinstance(b0, Tensor) or b0.ndim != 4:
        raise DabnetFormatError(f"{path}: no DepthEncoder.stage4.0.branches.0.0.conv1.weight: not their HRNet encoder")
    dca = any(k.startswith("DepthDecoder.QKV") or k.startswith("DepthDecoder.attention.") for k in parts["DepthDecoder."])
    has_pose = bool(parts["Pose"])
    cfg = dabnet_config(b0.shape[0], dca, has_pose)
    with torch.device("meta"):
        depth = DepthNet(cfg.model.encoder, dca=dca, decoder="diffnet", input_norm="none")
        pose = PoseNet(cfg.model.pose_encoder, input_size=tuple(POSE_SIZE)) if has_pose else None
    shapes = OrderedDict((k, tuple(v.shape)) for k, v in depth.state_dict().items())

    depth_state = OrderedDict()
    expected = {}
    for k, s in shapes.items():
        if k.startswith("encoder."):
            theirs = "DepthEncoder." + k[len("encoder."):]
        else:
            sub = k[len("decoder."):]
            names = [t + sub[len(o):] for t, o in DECODER_NAMES if sub.startswith(o)]
            head = [n for n in names if n.startswith("disp_head" if dca else "dispConvScale0")]
            theirs = "DepthDecoder." + (head[0] if head else names[0])
        expected[theirs] = s
        depth_state[k] = theirs
    _check({**parts["DepthEncoder."], **parts["DepthDecoder."]}, expected, path, "depth network")
    depth_state = OrderedDict((k, state[t]) for k, t in depth_state.items())

    pose_state = None
    if has_pose:
        pshapes = OrderedDict((k, tuple(v.shape)) for k, v in pose.state_dict().items())
        inverse = {}
        for their_key in parts["Pose"]:
            ours = _pose_key(their_key)
            if ours is not None:
                inverse[ours] = their_key
        pexpected = {}
        for k, s in pshapes.items():
            theirs = inverse.get(k) or ("PoseEncoder.encoder." + k[len("encoder."):] if k.startswith("encoder.")
                                        else "PoseDecoder." + k)
            pexpected[theirs] = s
        present = {k: v for k, v in parts["Pose"].items() if k not in POSE_EXTRA}
        _check(present, pexpected, path, "pose network")
        pose_state = OrderedDict((k, state[inverse[k]]) for k in pshapes)
    return {"depth_net": depth_state, "pose_net": pose_state, "config": to_dict(cfg),
            "versions": library_versions(), "source": f"DaB-Net checkpoint {path}"}
