"""The paper's network exactly: hrnet_w18 + diffnet (+ DCA) against an independent re-implementation
of the DaB-Net authors' code (tests/dabnet_reference.py), fed their checkpoint layout."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from depth.config import Config, ConfigError, load_config
from depth.convert import main as convert_main
from depth.export import main as export_main
from depth.geometry import disp_to_depth
from depth.io.dabnet import DabnetFormatError, dabnet_file
from depth.model import build_networks, load_model
from depth.networks import DepthNet
from depth.networks.encoder import encoder_layout
from tests import dabnet_reference as ref

TOL = 2e-5  # float32: disparities in (0, 1), the two networks sum in different orders


@pytest.fixture(scope="module")
def dca_model(tmp_path_factory):
    """(reference net, its checkpoint file) with DCA and the pose net."""
    net = ref.randomize(ref.DaBNet(dca=True)).eval()
    path = tmp_path_factory.mktemp("dabnet") / "dab_dca.pth"
    torch.save(ref.checkpoint(net), path)
    return net, path


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory):
    """(reference net, checkpoint file) without DCA (their commented-out decoder), no pose net."""
    net = ref.randomize(ref.DaBNet(dca=False, pose=False), seed=1).eval()
    path = tmp_path_factory.mktemp("dabnet") / "dab_plain.pth"
    torch.save(ref.checkpoint(net), path)
    return net, path


def _image(h, w, seed=0):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_feature_channels_and_sizes():
    net = DepthNet("hrnet_w18", decoder="diffnet", input_norm="none").eval()
    assert net.layout.channels == (64, 118, 108, 144, 144)
    their_net = ref.HRNet18().eval()
    with torch.no_grad():
        feats = net.features(_image(64, 96))
        theirs = their_net(_image(64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 32, 48), (118, 16, 24), (108, 8, 12), (144, 4, 6),
                                                   (144, 2, 3)]
    assert [f.shape for f in feats] == [f.shape for f in theirs]
    # the monodepth2 decoder keeps timm's own HRNet features (today's networks)
    assert encoder_layout("hrnet_w18")[0] == (64, 18, 36, 72, 144)
    # same modules as timm's: their encoder's names are the project's encoder names
    assert set(net.encoder.state_dict()) == set(their_net.state_dict())


def test_dca_network_matches_reference_192x640(dca_model):
    theirs, path = dca_model
    assert dabnet_file(path)
    nets, cfg = load_model(path)
    m = cfg.model
    assert (m.encoder, m.decoder, m.dca, m.input_norm, m.pose_size) == ("hrnet_w18", "diffnet", True, "none",
                                                                          [192, 640])
    x = _image(192, 640)
    with torch.no_grad():  # 192x640 is a multiple of 32: forward = decoder(features)
        want_feats = theirs.DepthEncoder(x)
        got_feats = nets.depth_net.features(x)
        want, got = theirs.DepthDecoder(want_feats), nets.depth_net.decoder(got_feats)[0]
    for a, b in zip(got_feats, want_feats):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= 1e-4 * b.abs().max()
    assert got.shape == (1, 1, 192, 640)
    assert float(want.std()) > 0.01  # not a saturated sigmoid: the comparison means something
    assert (got - want).abs().max() <= TOL


def test_pose_net_matches_reference(dca_model):
    theirs, path = dca_model
    nets, _ = load_model(path)
    a, b = _image(192, 640, 1), _image(192, 640, 2)
    with torch.no_grad():
        want = theirs.pose(a, b)
        got = nets.pose_net(a, b)
    for g, w in zip(got, want):
        assert g.shape == (1, 3) and float(w.abs().max()) > 1e-4
        assert (g - w).abs().max() <= 1e-4 * w.abs().max() + 1e-9


def test_plain_network_and_size_not_divisible_by_32(plain_model):
    theirs, path = plain_model
    nets, cfg = load_model(path)
    assert cfg.model.dca is False and nets.pose_net is None
    x = _image(64, 96, 3)
    with torch.no_grad():
        assert (nets.depth_net(x) - theirs.depth(x)).abs().max() <= TOL
    # the authors' network fails at 80x150 (x2 upsampling does not meet the skip); the project's pads
    # to 96x160 (replicate, bottom and right) and crops: the reference on the padded image, cropped
    y = _image(80, 150, 4)
    with pytest.raises(RuntimeError):
        with torch.no_grad():
            theirs.depth(y)
    with torch.no_grad():
        want = theirs.depth(F.pad(y, (0, 10, 0, 16), mode="replicate"))[..., :80, :150]
        got = nets.depth_net(y)
    assert got.shape == (1, 1, 80, 150)
    assert (got - want).abs().max() <= TOL


def test_dca_network_size_not_divisible_by_32(dca_model):
    theirs, path = dca_model
    nets, _ = load_model(path)
    y = _image(80, 150, 5)
    with torch.no_grad():
        want = theirs.depth(F.pad(y, (0, 10, 0, 16), mode="replicate"))[..., :80, :150]
        assert (nets.depth_net(y) - want).abs().max() <= TOL


def test_wrong_keys_name_the_file_and_exit_2(tmp_path, plain_model, capsys):
    theirs, _ = plain_model
    state = theirs.state_dict()
    bad = dict(state)
    bad.pop("DepthDecoder.deconvs_9.conv_se.0.bias")
    bad["DepthDecoder.extra_layer.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": bad}, path)
    with pytest.raises(DabnetFormatError, match=r"bad\.pth.*deconvs_9\.conv_se\.0\.bias.*extra_layer"):
        load_model(path)
    assert export_main(["--checkpoint", str(path), "--output", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.pth" in err[0] and "deconvs_9.conv_se.0.bias" in err[0]
    # an unexpected key alone (a layer this network does not have) is refused too
    extra = dict(state)
    extra["DepthDecoder.dispConvScale1.0.weight"] = torch.zeros(1, 32, 3, 3)  # a head their decoder has not
    torch.save({"state_dict": extra}, path)
    with pytest.raises(DabnetFormatError, match=r"1 unexpected keys \(DepthDecoder\.dispConvScale1"):
        load_model(path)


def test_export_matches_onnxruntime(tmp_path, plain_model):
    theirs, path = plain_model
    out = tmp_path / "dab.onnx"
    assert export_main(["--checkpoint", str(path), "--output", str(out), "--height", "64", "--width", "96"]) == 0
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = _image(64, 96, 6)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():  # the exported "disparity" is the scaled disparity of the sigmoid
        want = disp_to_depth(theirs.depth(x), 0.1, 100.0)[0].numpy()
    assert got.shape == (1, 1, 64, 96)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_input_norm_default_per_pair():
    cfg = load_config("configs/dabnet_kitti_640x192.yaml")
    assert (cfg.model.encoder, cfg.model.decoder, cfg.model.dca, cfg.model.input_norm) == \
        ("hrnet_w18", "diffnet", True, "none")
    assert load_config("configs/dabnet_kitti_640x192_r18.yaml").model.input_norm == "imagenet"
    assert load_config(None).model.input_norm == "imagenet"
    assert load_config(None, ["model.encoder=hrnet_w18", "model.decoder=diffnet",
                              "model.input_norm=imagenet"]).model.input_norm == "imagenet"
    # the value used is what the networks do: raw RGB into the HRNet for `none`
    cfg = Config()
    cfg.model.encoder, cfg.model.decoder, cfg.model.pretrained = "hrnet_w18", "diffnet", False
    cfg.data.frame_ids = [0]
    cfg.data.stereo = True
    nets = build_networks(cfg)
    assert cfg.model.input_norm == "none" and nets.depth_net.input_norm == "none"


def test_featdepth_pose_net_resizes_as_the_authors_do():
    """model.pose_decoder=featdepth: frames reach the pose encoder through plain bilinear resizing
    (the authors' F.interpolate); monodepth2 keeps the antialiased (area-like) shrink."""
    a, b = torch.rand(1, 3, 320, 1024), torch.rand(1, 3, 320, 1024)
    cfg = Config()
    cfg.model.pretrained, cfg.model.pose_size = False, [192, 640]
    cfg.model.pose_decoder = "featdepth"
    authors = build_networks(cfg).pose_net.pair_input(a, b)
    plain = F.interpolate(torch.cat([a, b], 1), size=(192, 640), mode="bilinear", align_corners=False)
    torch.testing.assert_close(authors, plain, rtol=0, atol=0)
    cfg.model.pose_decoder = "monodepth2"
    ours = build_networks(cfg).pose_net.pair_input(a, b)
    smooth = F.interpolate(torch.cat([a, b], 1), size=(192, 640), mode="bilinear", align_corners=False,
                           antialias=True)
    torch.testing.assert_close(ours, smooth, rtol=0, atol=0)
    assert (ours - authors).abs().max() > 0.05
    configs = Path(__file__).resolve().parents[1] / "configs"
    assert load_config(configs / "dabnet_kitti_1024x320.yaml").model.pose_decoder == "featdepth"
    with pytest.raises(ConfigError, match="model.pose_decoder"):
        load_config(configs / "synthetic.yaml", ["model.pose_decoder=posecnn"])


def test_convert_their_checkpoint_to_a_project_checkpoint(tmp_path, dca_model, capsys):
    """python -m depth.convert THEIR_FILE --out DST: a project checkpoint whose networks give their
    network's outputs; --to monodepth2 is refused (one line, nothing written)."""
    theirs, path = dca_model
    out = tmp_path / "ours.pt"
    assert convert_main([str(path), "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {out}: project checkpoint of the DaB-Net authors' model in {path}")
    assert "hrnet_w18" in line and "diffnet + DCA decoder" in line and "depth + pose" in line
    nets, cfg = load_model(out)
    assert (cfg.model.encoder, cfg.model.decoder, cfg.model.dca) == ("hrnet_w18", "diffnet", True)
    x = _image(64, 96, 3)
    with torch.no_grad():
        assert torch.allclose(nets.depth_net(x), theirs.depth(x), atol=TOL)
    bad = tmp_path / "mono"
    assert convert_main([str(path), "--out", str(bad), "--to", "monodepth2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "converts to a project checkpoint only" in err[0] and not bad.exists()
