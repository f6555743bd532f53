"""Depth and pose networks: shapes, batch agnosticism, parameter counts, gradients (docs/method.md §2)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from depth.networks import DepthNet, PoseNet
from depth.networks.decoder import DepthDecoder
from depth.networks.encoder import encode
from depth.networks.layers import Conv3x3, ConvBlock, upsample_to

pytestmark = pytest.mark.usefixtures("one_thread")


ROOT = Path(__file__).resolve().parents[1]
HAS_DCA = (ROOT / "depth" / "networks" / "cross_attention.py").is_file()


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def depth_net() -> DepthNet:
    torch.manual_seed(0)
    return DepthNet("resnet18").eval()


@pytest.fixture(scope="module")
def pose_net() -> PoseNet:
    torch.manual_seed(0)
    return PoseNet("resnet18").eval()


# ---------------------------------------------------------------- shapes


def test_depth_net_shapes_64x192(depth_net):
    x = torch.rand(1, 3, 64, 192)
    with torch.no_grad():
        outs = depth_net.forward_scales(x)
    assert [tuple(o.shape) for o in outs] == [(1, 1, 64, 192), (1, 1, 32, 96), (1, 1, 16, 48), (1, 1, 8, 24)]
    assert all(((o > 0) & (o < 1)).all() for o in outs)  # sigmoid outputs
    assert depth_net.scales == (0, 1, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(depth_net(x), outs[0])


def test_depth_net_odd_size_100x300(depth_net):
    with torch.no_grad():
        outs = depth_net.forward_scales(torch.rand(1, 3, 100, 300))
    # scale 0 is the input size; scale s follows the encoder's ceil(size / 2^s)
    expected = [(100, 300)] + [(math.ceil(100 / 2 ** s), math.ceil(300 / 2 ** s)) for s in (1, 2, 3)]
    assert [tuple(o.shape[-2:]) for o in outs] == expected


@pytest.mark.parametrize("dca", [False, True], ids=["baseline", "dca"])
def test_depth_net_small_inputs_with_one_pixel_deep_features(dca):
    """96x32 (0.5x the synthetic size) and 48x24 leave a 1-pixel-tall 1/32 feature: it is padded by
    replication (reflection needs 2 pixels); the output keeps the input size."""
    torch.manual_seed(0)
    net = DepthNet("resnet18", dca=dca).eval()
    for h, w in ((32, 96), (24, 48)):
        with torch.no_grad():
            out = net(torch.rand(2, 3, h, w))
        assert tuple(out.shape) == (2, 1, h, w)
        assert torch.isfinite(out).all()


def test_conv3x3_replicates_a_one_pixel_map():
    conv = Conv3x3(1, 1)
    with torch.no_grad():
        conv.conv.weight.fill_(1.0)
        conv.conv.bias.zero_()
        x = torch.tensor([[[[1.0, 2.0, 4.0]]]])  # 1 x 3: reflection impossible in height
        y = conv(x)
    # replicated rows: each output = 3 x (left + centre + right), edges replicated
    torch.testing.assert_close(y, torch.tensor([[[[3.0 * (1 + 1 + 2), 3.0 * (1 + 2 + 4), 3.0 * (2 + 4 + 4)]]]]))


def test_depth_net_batch_sizes_1_and_3(depth_net):
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out3 = depth_net(x)
        out1 = depth_net(x[1:2])
    assert out3.shape == (3, 1, 64, 64) and out1.shape == (1, 1, 64, 64)
    torch.testing.assert_close(out3[1:2], out1, atol=1e-5, rtol=1e-4)  # eval: samples are independent


def test_decoder_scale_subset_and_sizes():
    g = torch.Generator().manual_seed(0)
    sizes = [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    feats = [torch.rand(1, c, *s, generator=g) for c, s in zip((64, 64, 128, 256, 512), sizes)]
    dec = DepthDecoder([64, 64, 128, 256, 512], scales=(2, 0))
    with torch.no_grad():
        outs = dec(feats)
    assert dec.scales == (0, 2)
    assert [tuple(o.shape) for o in outs] == [(1, 1, 64, 96), (1, 1, 16, 24)]
    with torch.no_grad():
        outs_sized = dec(feats, out_size=(63, 95))  # an odd input size: scale 0 follows out_size
    assert tuple(outs_sized[0].shape[-2:]) == (63, 95)


def test_pose_net_shapes_and_batch_agnostic(pose_net):
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(3, 3, 64, 64, generator=g), torch.rand(3, 3, 64, 64, generator=g)
    with torch.no_grad():
        aa3, t3 = pose_net(a, b)
        aa1, t1 = pose_net(a[2:], b[2:])
    assert aa3.shape == (3, 3) and t3.shape == (3, 3) and aa1.shape == (1, 3) and t1.shape == (1, 3)
    torch.testing.assert_close(aa3[2:], aa1, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(t3[2:], t1, atol=1e-6, rtol=1e-4)


def test_pose_output_scaled_by_0_01_and_order_matters(pose_net):
    """The decoder's output is 0.01 x the spatial mean of the last conv (recomputed by hand here)."""
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        aa, t = pose_net(a, b)
        feat = pose_net.encoder((torch.cat([a, b], 1) - 0.45) / 0.225)[-1]
        c = pose_net.decoder.convs
        x = F.relu(c["squeeze"](feat))
        x = F.relu(c["pose_0"](x))
        x = F.relu(c["pose_1"](x))
        raw = c["pose_2"](x).mean((2, 3))
        _, t_swapped = pose_net(b, a)
    torch.testing.assert_close(torch.cat([aa, t], 1), 0.01 * raw)
    assert aa.abs().max() < 0.1 and t.abs().max() < 0.1
    assert not torch.allclose(t, t_swapped)  # frames are stacked in order, not symmetrised


# ---------------------------------------------------------------- architecture / parameter counts


def _conv3x3_params(c_in: int, c_out: int) -> int:
    return 9 * c_in * c_out + c_out


def _decoder_params(enc=(64, 64, 128, 256, 512), dec=(16, 32, 64, 128, 256), scales=(0, 1, 2, 3)) -> int:
    n = 0
    for i in range(4, -1, -1):
        c_in = enc[-1] if i == 4 else dec[i + 1]
        n += _conv3x3_params(c_in, dec[i])
        n += _conv3x3_params(dec[i] + (enc[i - 1] if i > 0 else 0), dec[i])
    return n + sum(_conv3x3_params(dec[s], 1) for s in scales)


def test_depth_net_parameter_count(depth_net):
    resnet = torchvision.models.resnet18(weights=None)
    encoder = _n_params(resnet) - _n_params(resnet.fc)
    expected = encoder + _decoder_params()
    assert _n_params(depth_net.encoder) == encoder == 11_176_512
    assert _n_params(depth_net) == expected
    assert abs(expected - 14.3e6) < 0.1e6


def test_pose_net_parameter_count(pose_net):
    resnet = torchvision.models.resnet18(weights=None)
    encoder = _n_params(resnet) - _n_params(resnet.fc) + 3 * 64 * 7 * 7  # conv1 takes 6 channels
    decoder = (512 * 256 + 256) + 2 * (9 * 256 * 256 + 256) + (256 * 6 + 6)
    assert _n_params(pose_net) == encoder + decoder


def test_encoder_features_and_normalisation(depth_net):
    enc = depth_net.encoder
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        feats = encode(enc, depth_net.layout, x)
        f0 = enc.act1(enc.bn1(enc.conv1((x - 0.45) / 0.225)))
    expected = [(64, 32, 48), (64, 16, 24), (128, 8, 12), (256, 4, 6), (512, 2, 3)]
    assert [tuple(f.shape[1:]) for f in feats] == expected
    assert depth_net.layout.channels == (64, 64, 128, 256, 512)
    torch.testing.assert_close(feats[0], f0)


def test_pose_encoder_conv1_from_imagenet_repeated_and_halved(tmp_path):
    resnet = torchvision.models.resnet18(weights=None)
    state = resnet.state_dict()
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    enc = PoseNet("resnet18", weights=path).encoder
    w = enc.conv1.weight.detach()
    assert w.shape == (64, 6, 7, 7)
    torch.testing.assert_close(w[:, :3], state["conv1.weight"] / 2)
    torch.testing.assert_close(w[:, 3:], state["conv1.weight"] / 2)
    torch.testing.assert_close(enc.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_layers_reflection_padding_and_nearest_upsampling():
    torch.manual_seed(0)
    conv = Conv3x3(2, 3)
    x = torch.rand(1, 2, 5, 6)
    expected = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), conv.conv.weight, conv.conv.bias)
    torch.testing.assert_close(conv(x), expected)
    block = ConvBlock(2, 3)
    assert (block(x) >= -1).all()  # ELU lower bound
    up = upsample_to(x, (10, 12))
    torch.testing.assert_close(up, x.repeat_interleave(2, -2).repeat_interleave(2, -1))


# ---------------------------------------------------------------- gradients


def test_gradients_reach_every_depth_parameter():
    torch.manual_seed(0)
    net = DepthNet("resnet18").train()
    outs = net.forward_scales(torch.rand(2, 3, 64, 64))
    sum(o.sum() for o in outs).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert missing == []


def test_gradients_reach_every_pose_parameter():
    torch.manual_seed(0)
    net = PoseNet("resnet18").train()
    aa, t = net(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    (aa.sum() + t.sum()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


# ---------------------------------------------------------------- exceptions


def test_network_exceptions(depth_net):
    with pytest.raises(ValueError, match="model.encoder"):
        DepthNet("resnet20")
    with pytest.raises(ValueError, match="scales"):
        DepthDecoder([64, 64, 128, 256, 512], scales=(0, 4))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        depth_net(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        depth_net(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match="num_ch_enc"):
        DepthDecoder([64, 128, 256])


# ---------------------------------------------------------------- DCA decoder


@pytest.mark.skipif(not HAS_DCA, reason="depth/networks/cross_attention.py is not present")
def test_depth_net_dca_single_full_resolution_output():
    torch.manual_seed(0)
    net = DepthNet("resnet18", dca=True).eval()
    with torch.no_grad():
        outs = net.forward_scales(torch.rand(1, 3, 64, 192))
    assert len(outs) == 1 and outs[0].shape == (1, 1, 64, 192)
    assert ((outs[0] > 0) & (outs[0] < 1)).all()
    assert net.scales == (0,)
