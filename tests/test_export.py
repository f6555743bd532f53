"""ONNX export of the depth network (baseline and DCA), checked with onnxruntime on CPU."""
from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from depth.config import Config
from depth.export import main
from depth.geometry import disp_to_depth
from depth.inference import network_input
from depth.io.onnx_file import DepthExportModel, UnsupportedOpError, check_image, check_onnx_ops, verify_onnx
from tests.helpers import procedural_image, write_checkpoint

H, W = 64, 192
META_KEYS = ("output_kind", "height", "width", "min_depth", "max_depth", "config", "commit")


def _checkpoint(tmp_path, dca: bool):
    cfg = Config()
    cfg.model.dca = dca
    cfg.data.height, cfg.data.width = H, W
    path = tmp_path / ("dca.pt" if dca else "baseline.pt")
    return path, write_checkpoint(path, cfg, seed=1).depth_net, cfg


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _real_image():
    return network_input([procedural_image(2 * H, 2 * W)], (W, H))


def _exported_files(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if ".onnx" in p.name)


def test_export_baseline_depth_roundtrip(tmp_path, capsys):
    ckpt, net, cfg = _checkpoint(tmp_path, dca=False)
    out = tmp_path / "baseline.onnx"
    assert main(["--checkpoint", str(ckpt), "--output", str(out), "--output-kind", "depth"]) == 0
    printed = capsys.readouterr().out
    assert "max abs diff" in printed and "check image:" in printed
    assert _exported_files(tmp_path) == ["baseline.onnx"]  # weights embedded, no temp file left

    model = onnx.load(str(out))
    meta = {p.key: p.value for p in model.metadata_props}
    assert set(META_KEYS) <= set(meta)
    assert meta["output_kind"] == "depth" and (meta["height"], meta["width"]) == (str(H), str(W))
    assert float(meta["min_depth"]) == 0.1 and float(meta["max_depth"]) == 100.0
    assert json.loads(meta["config"])["model"]["dca"] is False
    assert meta["commit"]
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, H, W]

    sess = _session(out)
    x = _real_image()
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        _, depth = disp_to_depth(net(x), 0.1, 100.0)
    assert got.shape == (1, 1, H, W)
    assert np.abs(got - depth.numpy()).max() <= 1e-4
    assert got.min() >= 0.1 - 1e-5 and got.max() <= 100.0 + 1e-3


def test_export_dca_dynamic_batch_roundtrip(tmp_path, capsys):
    ckpt, net, _ = _checkpoint(tmp_path, dca=True)
    out = tmp_path / "dca.onnx"
    assert main(["--checkpoint", str(ckpt), "--output", str(out), "--dynamic-batch"]) == 0
    assert "batch 3" in capsys.readouterr().out
    model = onnx.load(str(out))
    assert {p.key: p.value for p in model.metadata_props}["output_kind"] == "disparity"
    ops = check_onnx_ops(model)
    assert "Softmax" in ops and "MatMul" in ops  # the attention is in the graph as standard ops

    sess = _session(out)
    ref_model = DepthExportModel(net, "disparity").eval()
    gen = torch.Generator().manual_seed(3)
    for x in (_real_image(), torch.rand(3, 3, H, W, generator=gen)):
        got = sess.run(None, {"image": x.numpy()})[0]
        with torch.no_grad():
            ref = ref_model(x).numpy()
        assert got.shape == (x.shape[0], 1, H, W)
        assert np.abs(got - ref).max() <= 1e-4
        # scaled disparity, not the raw sigmoid
        assert got.min() >= 0.01 - 1e-6 and got.max() <= 10.0 + 1e-5 and got.max() > 1.0


def _tiny_onnx(path, domain=""):
    """image (N,3,8,8) -> mean over channels (N,1,8,8); optionally a node in a custom domain."""
    nodes = [helper.make_node("ReduceMean", ["image", "axes"], ["m"], keepdims=1)]
    if domain:
        nodes.append(helper.make_node("Custom", ["m"], ["out"], domain=domain))
    else:
        nodes.append(helper.make_node("Identity", ["m"], ["out"]))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 1, 8, 8])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    opsets = [helper.make_opsetid("", 20)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    onnx.save(model, str(path))
    return model


def test_fallback_ops_are_rejected(tmp_path):
    assert check_onnx_ops(_tiny_onnx(tmp_path / "ok.onnx")) == ["Identity", "ReduceMean"]
    with pytest.raises(UnsupportedOpError, match="Custom"):
        check_onnx_ops(_tiny_onnx(tmp_path / "bad.onnx", domain="pkg.torch.aten"))


def test_verify_reports_differences(tmp_path):
    _tiny_onnx(tmp_path / "ok.onnx")
    sess = _session(tmp_path / "ok.onnx")
    x = {"a": torch.rand(2, 3, 8, 8)}
    assert verify_onnx(sess, lambda t: t.mean(1, keepdim=True), x)["a"] <= 1e-6
    assert verify_onnx(sess, lambda t: t.mean(1, keepdim=True) + 1e-3, x)["a"] > 1e-4


def test_check_image_is_the_network_input(tmp_path):
    img = procedural_image(100, 300)
    cv2.imwrite(str(tmp_path / "x.png"), img[:, :, ::-1])
    got, source = check_image(tmp_path / "x.png", H, W)
    assert torch.equal(got, network_input([img], (W, H))) and "x.png" in source
    ramp, source = check_image(None, H, W)
    assert ramp.shape == (1, 3, H, W) and 0 <= ramp.min() and ramp.max() <= 1 and "ramp" in source


def test_bad_checkpoint_exit_code(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "nope.pt"), "--output", str(tmp_path / "m.onnx")]) == 2
    assert "nope.pt" in capsys.readouterr().err
