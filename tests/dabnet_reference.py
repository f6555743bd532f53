"""An independent plain-torch re-implementation of the DaB-Net authors' released network (their
``mono_hrnet``: HRNet-18 encoder, DIFFNet decoder with dynamic cross-attention, FeatDepth pose net),
written from reading their code, with their module names -- so ``state_dict()`` has their checkpoint
layout (``DepthEncoder.<name>``, ``DepthDecoder.<name>``, ``PoseEncoder.<name>``, ``PoseDecoder.<name>``
under ``checkpoint['state_dict']``). It imports nothing from ``depth``; tests compare the project's
networks, given the mapped weights, against it.

What their code does, and this file repeats:

* HRNet-18 (HRNetV2-W18: stem 3x3/2 convs 3->64->64, layer1 = 4 Bottlenecks to 256, stages of
  1/4/3 modules with 2/3/4 branches of 18/36/72/144 channels, 4 BasicBlocks per branch); a fusion
  of a lower-resolution branch j into branch i is 1x1 conv + BN then **bilinear, align_corners=True**
  resizing to branch i's size; higher-resolution branches go through stride-2 3x3 conv + BN (+ ReLU
  except the last); sum, ReLU. No input normalisation. Outputs: conv1's map (64 @ 1/2),
  cat[conv2's map, stage2/3/4 branch 0] (118 @ 1/4), cat[stage2/3/4 branch 1] (108 @ 1/8),
  cat[stage3/4 branch 2] (144 @ 1/16), stage4 branch 3 (144 @ 1/32).
* DIFFNet decoder: ``ChannelWiseAttention(high, low)`` = cat[nearest x2 (scale factor) of high, low]
  -> SE (GAP, 1x1 conv C->C//16 no bias, ReLU, 1x1 conv no bias, sigmoid, times the input) -> 3x3
  conv (padding 1, bias) + ReLU; 256, 128, 64, 32 channels. Dropout2d(0.1) on X9 (the 1/2 map).
* DCA (``DCAM``): q/k = avg-pooled (2 for the 1/4 map) 1x1 bias-free convs to 32, v = 1x1 bias-free
  conv 32->32 of X9 avg-pooled by 4 (branches 18, 36) or 8 (72); ``bmm(v, softmax(bmm(q, k)).T)``,
  nearest upsample by the v pool factor, + X9. Weights: GAP of the 1/32 map, 3x3 conv (padding 1,
  no bias) 144->16, ReLU, 1x1 conv 16->4 no bias, softmax over the 4; sum of the stacked
  (X9, B18, B36, B72) times the weights.
* Head: ConvELU (3x3, padding 1, no bias, ELU) 32->16, nearest x2, ConvELU 16->16, 3x3 conv 16->1
  (bias) + sigmoid. Without DCA (their commented-out decoder): the same on X9, head named
  ``dispConvScale0`` and no dropout.
* Pose: torchvision-layout ResNet-18 on 6 channels (``(x - 0.45) / 0.225``; the unused ``fc``
  classifier is in the state dict), decoder ``reduce`` 1x1 512->256, ``conv1``/``conv2`` 3x3, ``conv3``
  1x1 ->6 (all with bias, ReLU after the first three), mean over H and W, x0.01.

Their network only runs at input sizes that are multiples of 32 (elsewhere the decoder's x2
upsampling does not meet its skip: ``torch.cat`` fails).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

BRANCH_CHANNELS = (18, 36, 72, 144)
STAGES = ((2, 1), (3, 4), (4, 3))  # (branches, modules) of stages 2, 3, 4


def _bn(c):
    return nn.BatchNorm2d(c)


class Basic(nn.Module):
    def __init__(self, cin, c, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = _bn(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = _bn(c)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), _bn(c))
                           if stride != 1 or cin != c else None)

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottle(nn.Module):
    def __init__(self, cin, c):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 1, bias=False)
        self.bn1 = _bn(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = _bn(c)
        self.conv3 = nn.Conv2d(c, 4 * c, 1, bias=False)
        self.bn3 = _bn(4 * c)
        self.downsample = nn.Sequential(nn.Conv2d(cin, 4 * c, 1, bias=False), _bn(4 * c)) if cin != 4 * c else None

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class HRModule(nn.Module):
    def __init__(self, n):
        super().__init__()
        ch = BRANCH_CHANNELS[:n]
        self.branches = nn.ModuleList(nn.Sequential(*[Basic(c, c) for _ in range(4)]) for c in ch)
        rows = []
        for i in range(n):
            row = []
            for j in range(n):
                if j > i:
                    row.append(nn.Sequential(nn.Conv2d(ch[j], ch[i], 1, bias=False), _bn(ch[i])))
                elif j == i:
                    row.append(None)
                else:
                    steps = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        cout = ch[i] if last else ch[j]
                        layers = [nn.Conv2d(ch[j], cout, 3, 2, 1, bias=False), _bn(cout)]
                        steps.append(nn.Sequential(*(layers if last else layers + [nn.ReLU()])))
                    row.append(nn.Sequential(*steps))
            rows.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(rows)

    def forward(self, xs):
        xs = [b(x) for b, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, len(xs)):
                if j == i:
                    y = y + xs[j]
                elif j > i:
                    y = y + F.interpolate(row[j](xs[j]), size=list(xs[i].shape[-2:]), mode="bilinear",
                                          align_corners=True)
                else:
                    y = y + row[j](xs[j])
            out.append(F.relu(y))
        return out


def _transition(cin, n_new):
    """Transition into a stage of ``n_new`` branches from the previous stage's ``cin`` channels list."""
    mods = []
    for i in range(n_new):
        if i < len(cin):
            if cin[i] != BRANCH_CHANNELS[i]:
                mods.append(nn.Sequential(nn.Conv2d(cin[i], BRANCH_CHANNELS[i], 3, 1, 1, bias=False),
                                          _bn(BRANCH_CHANNELS[i]), nn.ReLU()))
            else:
                mods.append(None)
        else:
            mods.append(nn.Sequential(nn.Sequential(nn.Conv2d(cin[-1], BRANCH_CHANNELS[i], 3, 2, 1, bias=False),
                                                    _bn(BRANCH_CHANNELS[i]), nn.ReLU())))
    return nn.ModuleList(mods)


class HRNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = _bn(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = _bn(64)
        self.layer1 = nn.Sequential(Bottle(64, 64), *[Bottle(256, 64) for _ in range(3)])
        prev = [256]
        for s, (n, modules) in enumerate(STAGES, start=2):
            setattr(self, f"transition{s - 1}", _transition(prev, n))
            setattr(self, f"stage{s}", nn.Sequential(*[HRModule(n) for _ in range(modules)]))
            prev = list(BRANCH_CHANNELS[:n])

    def forward(self, x):
        f0 = F.relu(self.bn1(self.conv1(x)))
        stem = F.relu(self.bn2(self.conv2(f0)))
        ys = [self.layer1(stem)]
        per_stage = []
        for s in (2, 3, 4):
            trans = getattr(self, f"transition{s - 1}")
            xs = []
            for i, t in enumerate(trans):
                if t is None:
                    xs.append(ys[i])
                else:
                    xs.append(t(ys[i] if i < len(ys) else ys[-1]))
            ys = getattr(self, f"stage{s}")(xs)
            per_stage.append(ys)
        y2, y3, y4 = per_stage
        return [f0, torch.cat([stem, y2[0], y3[0], y4[0]], 1), torch.cat([y2[1], y3[1], y4[1]], 1),
                torch.cat([y3[2], y4[2]], 1), y4[3]]


class SE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.att = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c // 16, 1, bias=False), nn.ReLU(),
                                 nn.Conv2d(c // 16, c, 1, bias=False), nn.Sigmoid())

    def forward(self, x):
        return self.att(x) * x


class CWA(nn.Module):
    def __init__(self, hf, lf, out):
        super().__init__()
        self.ca = SE(hf + lf)
        self.conv_se = nn.Sequential(nn.Conv2d(hf + lf, out, 3, padding=1), nn.ReLU())

    def forward(self, high, low):
        return self.conv_se(self.ca(torch.cat([F.interpolate(high, scale_factor=2, mode="nearest"), low], 1)))


class ConvELU(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.convelu = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.ELU())

    def forward(self, x):
        return self.convelu(x)


class QKV(nn.Module):
    def __init__(self, cq, pool_q, pool_v):
        super().__init__()
        self.pool_q, self.pool_v = pool_q, pool_v
        self.query_conv = nn.Conv2d(cq, 32, 1, bias=False)
        self.key_conv = nn.Conv2d(cq, 32, 1, bias=False)
        self.value_conv = nn.Conv2d(32, 32, 1, bias=False)

    def forward(self, xq, xv):
        pq = F.avg_pool2d(xq, self.pool_q) if self.pool_q > 1 else xq
        v = F.avg_pool2d(xv, self.pool_v)
        b, c, h, w = v.shape
        q = self.query_conv(pq).view(b, -1, h * w).permute(0, 2, 1)
        k = self.key_conv(pq).view(b, -1, h * w)
        vv = self.value_conv(v).view(b, -1, h * w)
        o = torch.bmm(vv, torch.softmax(torch.bmm(q, k), dim=-1).permute(0, 2, 1)).view(b, c, h, w)
        return F.interpolate(o, scale_factor=self.pool_v, mode="nearest") + xv


class Weights(nn.Module):
    def __init__(self):
        super().__init__()
        self.dy_att = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(144, 16, 3, padding=1, bias=False), nn.ReLU(),
                                    nn.Conv2d(16, 4, 1, bias=False), nn.Softmax(dim=1))

    def forward(self, x):
        return self.dy_att(x)


class Decoder(nn.Module):
    def __init__(self, dca: bool = True):
        super().__init__()
        self.dca = dca
        self.convs_up_x9_0 = ConvELU(32, 16)
        self.convs_up_x9_1 = ConvELU(16, 16)
        self.deconvs_72 = CWA(144, 144, 256)
        self.deconvs_36 = CWA(256, 108, 128)
        self.deconvs_18 = CWA(128, 118, 64)
        self.deconvs_9 = CWA(64, 64, 32)
        head = nn.Sequential(nn.Conv2d(16, 1, 3, padding=1), nn.Sigmoid())
        if dca:
            self.disp_head = head
            self.dropout = nn.Dropout2d(0.1)
            self.attention = Weights()
            self.QKV18 = QKV(64, 2, 4)
            self.QKV36 = QKV(128, 1, 4)
            self.QKV72 = QKV(256, 1, 8)
        else:
            self.dispConvScale0 = head

    def forward(self, feats):
        f64, f18, f36, f72, f144 = feats
        x72 = self.deconvs_72(f144, f72)
        x36 = self.deconvs_36(x72, f36)
        x18 = self.deconvs_18(x36, f18)
        x9 = self.deconvs_9(x18, f64)
        if self.dca:
            x9 = self.dropout(x9)
            w = self.attention(f144).unsqueeze(2)
            stack = torch.stack((x9, self.QKV18(x18, x9), self.QKV36(x36, x9), self.QKV72(x72, x9)), dim=1)
            x9 = torch.sum(stack * w, dim=1)
        x = self.convs_up_x9_1(F.interpolate(self.convs_up_x9_0(x9), scale_factor=2, mode="nearest"))
        return (self.disp_head if self.dca else self.dispConvScale0)(x)


class ResNet18Pair(nn.Module):
    """torchvision-layout ResNet-18 on two stacked frames, classifier included (unused)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(6, 64, 7, 2, 3, bias=False)
        self.bn1 = _bn(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, c in enumerate((64, 128, 256, 512), start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(Basic(cin, c, stride), Basic(c, c)))
            cin = c
        self.fc = nn.Linear(512, 1000)

    def forward(self, x):
        x = (x - 0.45) / 0.225
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class PoseEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = ResNet18Pair()

    def forward(self, x):
        return self.encoder(x)


class PoseDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.reduce = nn.Conv2d(512, 256, 1)
        self.conv1 = nn.Conv2d(256, 256, 3, 1, 1)
        self.conv2 = nn.Conv2d(256, 256, 3, 1, 1)
        self.conv3 = nn.Conv2d(256, 6, 1)

    def forward(self, f):
        out = F.relu(self.reduce(f))
        out = F.relu(self.conv1(out))
        out = F.relu(self.conv2(out))
        out = 0.01 * self.conv3(out).mean(3).mean(2).view(-1, 1, 1, 6)
        return out[..., :3], out[..., 3:]


class DaBNet(nn.Module):
    """Their ``mono_hrnet`` minus the losses: ``depth(image)`` and ``pose(frame_a, frame_b)``."""

    def __init__(self, dca: bool = True, pose: bool = True):
        super().__init__()
        self.DepthEncoder = HRNet18()
        self.DepthDecoder = Decoder(dca)
        if pose:
            self.PoseEncoder = PoseEncoder()
            self.PoseDecoder = PoseDecoder()

    def depth(self, image):
        return self.DepthDecoder(self.DepthEncoder(image))

    def pose(self, frame_a, frame_b):
        a, t = self.PoseDecoder(self.PoseEncoder(torch.cat([frame_a, frame_b], 1)))
        return a[:, 0, 0], t[:, 0, 0]


def randomize(net: nn.Module, seed: int = 0, gain: float = 1.3) -> nn.Module:
    """Random weights everywhere, BatchNorm affine parameters and running statistics included (not
    the identity BN of a fresh network, so a mapping that drops statistics shows); scaled so that
    activations stay of order one through the 60 residual blocks and the sigmoid is not saturated."""
    g = torch.Generator().manual_seed(seed)

    def rand(shape, lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=g)

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(rand(m.weight.shape, 0.3, 0.7))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(rand(m.running_var.shape, 0.5, 1.5))
                m.num_batches_tracked.fill_(7)
            elif isinstance(m, nn.Conv2d | nn.Linear):
                fan_in = m.weight[0].numel()
                m.weight.copy_(gain * torch.randn(m.weight.shape, generator=g) / fan_in ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        for m in net.modules():  # branch weights not far from uniform: every DCA branch counts
            if isinstance(m, Weights):
                m.dy_att[1].weight.mul_(0.1)
    return net


def checkpoint(net: DaBNet) -> dict:
    """What their mmcv trainer saves: ``{'meta': ..., 'state_dict': ...}``."""
    return {"meta": {"epoch": 40, "iter": 1}, "state_dict": net.state_dict()}


def centre_crop_upsampled(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Their test-time zoomed input (``MonoDataset.center_crop``): the centre ``scale`` window of the
    network-size image (start ``int((h - h * scale) / 2)``, end ``h - start``, columns alike), upsampled
    back to ``h x w`` (bilinear, ``align_corners=False``)."""
    h, w = x.shape[-2:]
    hs, ws = int((h - h * scale) / 2), int((w - w * scale) / 2)
    return F.interpolate(x[:, :, hs:h - hs, ws:w - ws], [int(h), int(w)], mode="bilinear", align_corners=False)


def zoom_pp(disp: torch.Tensor, zoomed_disp: torch.Tensor, scale: float) -> torch.Tensor:
    """Their ``zoom_pp`` / ``zoom_pp_twice`` (``eval_depth_pp.py``): ``zoomed_disp`` (the sigmoid of
    the zoomed input) resized to ``int(H * scale) x int(W * scale)`` and averaged into the centre
    window of ``disp`` (the same window formula), in place; returns ``disp``."""
    _, _, H, W = disp.shape
    h, w = H * scale, W * scale
    z = F.interpolate(zoomed_disp, [int(h), int(w)], mode="bilinear", align_corners=False)
    hs, ws = int((H - h) / 2), int((W - w) / 2)
    he, we = int(H - hs), int(W - ws)
    disp[:, :, hs:he, ws:we] = (disp[:, :, hs:he, ws:we] + z) / 2
    return disp


def evaluate_zoom_pp(sigmoid_net, x: torch.Tensor, min_depth: float = 0.1, max_depth: float = 100.0) -> torch.Tensor:
    """Their evaluation with ``zoom_post_process = True``: ``zoom_pp`` at 0.5 then ``zoom_pp_twice`` at
    0.75 on the sigmoid, then ``disp_to_depth``'s scaled disparity ``(B, 1, H, W)``."""
    disp = sigmoid_net(x)
    disp = zoom_pp(disp, sigmoid_net(centre_crop_upsampled(x, 0.5)), 0.5)
    disp = zoom_pp(disp, sigmoid_net(centre_crop_upsampled(x, 0.75)), 0.75)
    lo, hi = 1 / max_depth, 1 / min_depth
    return lo + (hi - lo) * disp
