"""Dynamic cross-attention and its disparity head (docs/method.md §5)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import depth.networks.cross_attention as ca
from depth.networks.cross_attention import (DCAHead, DynamicCrossAttention, attention_reference,
                                            dca_parameter_count)


def _features(batch: int, height: int, width: int, dtype=torch.float32, seed: int = 0) -> list[torch.Tensor]:
    """Random (X2, X4, X8, X16, E) with the sizes a ResNet-18 U-Net produces for an H x W image.

    Every stride-2 stage of ResNet-18 maps a size s to ceil(s / 2).
    """
    g = torch.Generator().manual_seed(seed)
    sizes, h, w = [], height, width
    for _ in range(5):
        h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
    channels = (32, 64, 128, 256, 512)
    return [torch.randn(batch, c, *s, generator=g, dtype=dtype) for c, s in zip(channels, sizes)]


def _n_params(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


# ---------------------------------------------------------------- smoke / shapes


def test_shapes_and_token_counts_640x192(monkeypatch):
    x2, x4, x8, x16, enc = _features(1, 192, 640)
    sizes = [tuple(t.shape[-2:]) for t in (x2, x4, x8, x16, enc)]
    assert sizes == [(96, 320), (48, 160), (24, 80), (12, 40), (6, 20)]
    tokens = []

    def recording_reference(q, k, v):
        tokens.append(q.shape[-2])
        assert k.shape[-2] == v.shape[-2] == q.shape[-2]
        return attention_reference(q, k, v)

    monkeypatch.setattr(ca, "attention_reference", recording_reference)
    dca, head = DynamicCrossAttention(use_sdpa=False).eval(), DCAHead().eval()
    with torch.no_grad():
        y = dca(x2, x4, x8, x16, enc)
        disp = head(y, (192, 640))
    assert tokens == [1920, 1920, 480]
    assert y.shape == (1, 32, 96, 320)
    assert disp.shape == (1, 1, 192, 640)
    assert bool(((disp > 0) & (disp < 1)).all())


@pytest.mark.parametrize("size", [(100, 300), (97, 211)])
def test_odd_input_size(size):
    feats = _features(2, *size)
    dca, head = DynamicCrossAttention().eval(), DCAHead().eval()
    with torch.no_grad():
        y = dca(*feats)
        disp = head(y, size)
    assert y.shape == feats[0].shape
    assert disp.shape == (2, 1, *size)
    assert torch.isfinite(disp).all()


def test_head_default_size():
    assert DCAHead()(torch.randn(1, 32, 5, 7)).shape == (1, 1, 10, 14)


# ---------------------------------------------------------------- parameters


def test_parameter_count():
    dca, head = DynamicCrossAttention(), DCAHead()
    n = _n_params(dca, head)
    print(f"DynamicCrossAttention {_n_params(dca)} + DCAHead {_n_params(head)} = {n} parameters")
    assert n == dca_parameter_count() == 47089
    assert _n_params(dca) == 40000
    custom = dict(channels=(16, 24, 40), x2_channels=8, enc_channels=64, qk_dim=12)
    assert _n_params(DynamicCrossAttention(**custom), DCAHead(8)) == dca_parameter_count(**custom)
    # every attention projection and the MLP are bias-free; the head's 3x3 convs have biases
    for name, p in dca.named_parameters():
        assert name.endswith("weight"), name


# ---------------------------------------------------------------- exceptions


def test_exceptions():
    feats = _features(1, 64, 96)
    dca = DynamicCrossAttention()
    with pytest.raises(ValueError):
        dca(feats[0][:, :16], *feats[1:])
    with pytest.raises(ValueError):
        dca(*feats[:4], feats[4][:, :100])
    with pytest.raises(ValueError):
        dca(feats[0], feats[1].repeat(2, 1, 1, 1), *feats[2:])
    with pytest.raises(ValueError):
        dca(feats[0][0], *feats[1:])
    with pytest.raises(ValueError):
        DynamicCrossAttention(channels=(64, 128))
    with pytest.raises(ValueError):
        DCAHead()(torch.randn(1, 16, 4, 4))
    with pytest.raises(ValueError):
        attention_reference(torch.randn(4, 8), torch.randn(4, 6), torch.randn(4, 8))


# ---------------------------------------------------------------- numerical correctness


def test_branch_weights_sum_to_one():
    feats = _features(3, 64, 192)
    dca = DynamicCrossAttention().eval()
    y, w = dca(*feats, return_weights=True)
    assert w.shape == (3, 4)
    torch.testing.assert_close(w.sum(1), torch.ones(3))
    assert bool((w > 0).all())
    assert torch.equal(dca.last_weights, w.detach())
    assert torch.equal(y, dca(*feats))


def test_sdpa_equals_reference():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 1, 300, 32, generator=g), torch.randn(2, 1, 300, 32, generator=g)
    v = torch.randn(2, 1, 300, 32, generator=g)
    out = F.scaled_dot_product_attention(q, k, v, scale=1.0)
    torch.testing.assert_close(out, attention_reference(q, k, v), rtol=1e-5, atol=1e-5)
    feats = _features(2, 64, 192)
    dca = DynamicCrossAttention().eval()
    with torch.no_grad():
        y_sdpa = dca(*feats)
        dca.use_sdpa = False
        y_ref = dca(*feats)
    torch.testing.assert_close(y_sdpa, y_ref, rtol=1e-5, atol=1e-5)


def _manual_forward(dca: DynamicCrossAttention, x2, x4, x8, x16, enc) -> torch.Tensor:
    """docs/method.md §5 written out with explicit matrices (sizes divisible by 32, no dropout)."""
    def conv(module, x):
        return torch.einsum("oc,bchw->bohw", module.weight[:, :, 0, 0], x)

    def branch(b, x_qk, x_v):
        bsz, _, h, w = x_qk.shape
        Q = conv(b.query, x_qk).flatten(2)  # B x d x N
        Kt = conv(b.key, x_qk).flatten(2)
        V = conv(b.value, x_v).flatten(2)  # B x C x N
        A = torch.softmax(Q.transpose(1, 2) @ Kt, dim=-1)  # B x N(query) x N(key)
        return (V @ A.transpose(1, 2)).reshape(bsz, -1, h, w)  # O = V A^T

    size = x2.shape[-2:]
    b4 = F.interpolate(branch(dca.branches["b4"], F.avg_pool2d(x4, 2), F.avg_pool2d(x2, 4)), size=size) + x2
    b8 = F.interpolate(branch(dca.branches["b8"], x8, F.avg_pool2d(x2, 4)), size=size) + x2
    b16 = F.interpolate(branch(dca.branches["b16"], x16, F.avg_pool2d(x2, 8)), size=size) + x2
    hidden = torch.relu(enc.mean((2, 3)) @ dca.weight_mlp[0].weight.T)
    w = torch.softmax(hidden @ dca.weight_mlp[2].weight.T, dim=1)[:, :, None, None, None]
    return w[:, 0] * x2 + w[:, 1] * b4 + w[:, 2] * b8 + w[:, 3] * b16


def test_matches_written_out_method():
    feats = _features(2, 64, 128, dtype=torch.float64)
    dca = DynamicCrossAttention().double().eval()
    with torch.no_grad():
        torch.testing.assert_close(dca(*feats), _manual_forward(dca, *feats))


def test_eval_deterministic_and_dropout_only_in_training():
    feats = _features(2, 64, 192)
    dca = DynamicCrossAttention().eval()
    with torch.no_grad():
        assert torch.equal(dca(*feats), dca(*feats))
        dca.train()
        torch.manual_seed(0)
        y_train = dca(*feats)
        dca.eval()
        assert not torch.allclose(y_train, dca(*feats))
        no_drop = DynamicCrossAttention(dropout=0.0)
        no_drop.load_state_dict(dca.state_dict())
        torch.testing.assert_close(no_drop.train()(*feats), no_drop.eval()(*feats))


# ---------------------------------------------------------------- gradients


def test_gradients_reach_every_parameter():
    feats = _features(2, 64, 192)
    dca, head = DynamicCrossAttention(), DCAHead()
    disp = head(dca(*feats), (64, 192))
    disp.sum().backward()
    for name, p in list(dca.named_parameters()) + list(head.named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_gradcheck():
    dca = DynamicCrossAttention(channels=(4, 4, 4), x2_channels=3, enc_channels=5, qk_dim=2,
                                dropout=0.0).double()
    g = torch.Generator().manual_seed(0)
    x2, x4, x8, x16, enc = (torch.randn(1, c, h, w, generator=g, dtype=torch.float64)
                            for c, h, w in ((3, 8, 8), (4, 4, 4), (4, 2, 2), (4, 1, 1), (5, 1, 1)))
    x2.requires_grad_(True)
    x4.requires_grad_(True)
    enc.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, e: dca(a, b, x8, x16, e), (x2, x4, enc), fast_mode=True)


# ---------------------------------------------------------------- devices


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sdpa_matches_reference_1024x320():
    feats = [t.cuda() for t in _features(2, 320, 1024)]
    dca = DynamicCrossAttention().cuda().eval()
    with torch.no_grad():
        y_sdpa = dca(*feats)
        dca.use_sdpa = False
        y_ref = dca(*feats)
    torch.testing.assert_close(y_sdpa, y_ref, rtol=1e-4, atol=1e-4)
