"""A small re-implementation of Monodepth2's networks, for the tests of depth/io/monodepth2.py.

Independent of the project's networks: the module structure (hence the state-dict key layout) and
the forward passes are Monodepth2's --

* ``ResnetEncoder``: a torchvision ResNet kept as ``.encoder`` (classifier included); the
  multi-image variant replaces ``conv1`` by a ``3 * num_input_images``-channel conv; forward:
  ``(x - 0.45) / 0.225``, conv1, bn1, relu (feature 0), maxpool + layer1 .. layer4 (features 1-4);
* ``DepthDecoder``: convs in an ``OrderedDict`` keyed by tuples, registered as
  ``nn.ModuleList(list(convs.values()))``; per level 4..0: upconv 0, nearest x2 upsampling
  (``scale_factor=2``), skip concatenation, upconv 1, a sigmoid head at the scales;
* ``PoseDecoder``: squeeze 1x1 + ReLU, two 3x3 convs + ReLU, a 1x1 conv to 6 per predicted frame,
  spatial mean, times 0.01, ``(B, frames, 1, 6)`` split into axis-angle and translation.

:func:`save_folder` writes the four files as Monodepth2's trainer does (``height``, ``width``,
``use_stereo`` added to the encoder's state dict); :func:`load_folder` loads a folder as
Monodepth2's ``test_simple.py`` does (encoder entries filtered to the model's keys, strict loads).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models as tvm

__all__ = ["ResnetEncoder", "DepthDecoder", "PoseDecoder", "randomise", "save_folder", "load_folder",
           "disp_to_depth", "make_folder"]


class Conv3x3(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(int(c_in), int(c_out), 3)

    def forward(self, x):
        return self.conv(self.pad(x))


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = Conv3x3(c_in, c_out)
        self.nonlin = nn.ELU(inplace=True)

    def forward(self, x):
        return self.nonlin(self.conv(x))


class ResnetEncoder(nn.Module):
    def __init__(self, num_layers: int, num_input_images: int = 1):
        super().__init__()
        self.num_ch_enc = np.array([64, 64, 128, 256, 512])
        self.encoder = {18: tvm.resnet18, 34: tvm.resnet34, 50: tvm.resnet50}[num_layers](weights=None)
        if num_input_images > 1:
            self.encoder.conv1 = nn.Conv2d(3 * num_input_images, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if num_layers > 34:
            self.num_ch_enc[1:] *= 4

    def forward(self, image):
        feats = []
        x = (image - 0.45) / 0.225
        x = self.encoder.relu(self.encoder.bn1(self.encoder.conv1(x)))
        feats.append(x)
        feats.append(self.encoder.layer1(self.encoder.maxpool(feats[-1])))
        feats.append(self.encoder.layer2(feats[-1]))
        feats.append(self.encoder.layer3(feats[-1]))
        feats.append(self.encoder.layer4(feats[-1]))
        return feats


class DepthDecoder(nn.Module):
    def __init__(self, num_ch_enc, scales=range(4)):
        super().__init__()
        self.scales = list(scales)
        self.num_ch_enc = num_ch_enc
        self.num_ch_dec = np.array([16, 32, 64, 128, 256])
        self.convs = OrderedDict()
        for i in range(4, -1, -1):
            c_in = self.num_ch_enc[-1] if i == 4 else self.num_ch_dec[i + 1]
            self.convs[("upconv", i, 0)] = ConvBlock(c_in, self.num_ch_dec[i])
            c_in = self.num_ch_dec[i] + (self.num_ch_enc[i - 1] if i > 0 else 0)
            self.convs[("upconv", i, 1)] = ConvBlock(c_in, self.num_ch_dec[i])
        for s in self.scales:
            self.convs[("dispconv", s)] = Conv3x3(self.num_ch_dec[s], 1)
        self.decoder = nn.ModuleList(list(self.convs.values()))
        self.sigmoid = nn.Sigmoid()

    def forward(self, feats):
        outputs = {}
        x = feats[-1]
        for i in range(4, -1, -1):
            x = self.convs[("upconv", i, 0)](x)
            x = [F.interpolate(x, scale_factor=2, mode="nearest")]
            if i > 0:
                x.append(feats[i - 1])
            x = self.convs[("upconv", i, 1)](torch.cat(x, 1))
            if i in self.scales:
                outputs[("disp", i)] = self.sigmoid(self.convs[("dispconv", i)](x))
        return outputs


class PoseDecoder(nn.Module):
    def __init__(self, num_ch_enc, num_input_features: int = 1, num_frames_to_predict_for: int = 2):
        super().__init__()
        self.frames = num_frames_to_predict_for
        self.convs = OrderedDict()
        self.convs["squeeze"] = nn.Conv2d(int(num_ch_enc[-1]), 256, 1)
        self.convs[("pose", 0)] = nn.Conv2d(num_input_features * 256, 256, 3, 1, 1)
        self.convs[("pose", 1)] = nn.Conv2d(256, 256, 3, 1, 1)
        self.convs[("pose", 2)] = nn.Conv2d(256, 6 * num_frames_to_predict_for, 1)
        self.relu = nn.ReLU()
        self.net = nn.ModuleList(list(self.convs.values()))

    def forward(self, input_features):
        out = torch.cat([self.relu(self.convs["squeeze"](f[-1])) for f in input_features], 1)
        for i in range(3):
            out = self.convs[("pose", i)](out)
            if i != 2:
                out = self.relu(out)
        out = 0.01 * out.mean(3).mean(2).view(-1, self.frames, 1, 6)
        return out[..., :3], out[..., 3:]


def disp_to_depth(disp, min_depth: float = 0.1, max_depth: float = 100.0):
    min_disp, max_disp = 1 / max_depth, 1 / min_depth
    scaled = min_disp + (max_disp - min_disp) * disp
    return scaled, 1 / scaled


@torch.no_grad()
def randomise(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """Random BatchNorm affine parameters and running statistics, small random conv biases and
    classifiers (the default initialisation leaves them at 0/1 or unused)."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.copy_(torch.rand(c, generator=gen) * 0.6 + 0.5)
            m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
            m.num_batches_tracked.fill_(int(torch.randint(1, 10 ** 6, (1,), generator=gen)))
        elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.05)
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.01)
    return module.eval()


def save_folder(folder: Path, encoder, decoder, pose_encoder=None, pose_decoder=None, *, height: int, width: int,
                use_stereo: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    enc = encoder.state_dict()
    enc["height"], enc["width"], enc["use_stereo"] = height, width, use_stereo
    torch.save(enc, folder / "encoder.pth")
    torch.save(decoder.state_dict(), folder / "depth.pth")
    if pose_encoder is not None:
        torch.save(pose_encoder.state_dict(), folder / "pose_encoder.pth")
        torch.save(pose_decoder.state_dict(), folder / "pose.pth")
    return folder


def make_folder(folder: Path, num_layers: int = 18, *, height: int = 64, width: int = 192, pose: bool = True,
                use_stereo: bool = False, seed: int = 0):
    """Random Monodepth2 networks (random BatchNorm statistics) saved as a model folder; returns
    ``(encoder, decoder, pose_encoder, pose_decoder)`` in eval mode (the pose pair None without pose)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    enc = randomise(ResnetEncoder(num_layers), gen)
    dec = randomise(DepthDecoder(enc.num_ch_enc), gen)
    penc = pdec = None
    if pose:
        penc = randomise(ResnetEncoder(num_layers, 2), gen)
        pdec = randomise(PoseDecoder(penc.num_ch_enc), gen)
    save_folder(folder, enc, dec, penc, pdec, height=height, width=width, use_stereo=use_stereo)
    return enc, dec, penc, pdec


def load_folder(folder: Path, num_layers: int = 18):
    """The networks of a Monodepth2 folder, loaded the way Monodepth2's tools load them."""
    enc = ResnetEncoder(num_layers)
    saved = torch.load(folder / "encoder.pth", map_location="cpu", weights_only=True)
    enc.load_state_dict({k: v for k, v in saved.items() if k in enc.state_dict()})
    dec = DepthDecoder(enc.num_ch_enc)
    dec.load_state_dict(torch.load(folder / "depth.pth", map_location="cpu", weights_only=True))
    penc = pdec = None
    if (folder / "pose.pth").is_file():
        penc = ResnetEncoder(num_layers, 2)
        penc.load_state_dict(torch.load(folder / "pose_encoder.pth", map_location="cpu", weights_only=True))
        pdec = PoseDecoder(penc.num_ch_enc)
        pdec.load_state_dict(torch.load(folder / "pose.pth", map_location="cpu", weights_only=True))
    return (enc.eval(), dec.eval(), penc.eval() if penc else None, pdec.eval() if pdec else None), \
        (saved["height"], saved["width"], saved["use_stereo"])
