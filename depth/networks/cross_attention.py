"""Dynamic cross-attention (DCA) over the decoder's multi-scale features, and its disparity head.

Inputs are the depth decoder's features ``X2`` (32 ch, 1/2 resolution), ``X4`` (64, 1/4), ``X8``
(128, 1/8), ``X16`` (256, 1/16) and the deepest encoder feature ``E`` (512, 1/32). For each
``k in {4, 8, 16}`` one attention branch:

* queries and keys: separate bias-free 1x1 convs ``C_k -> qk_dim`` of ``X_k`` (``X4`` is first
  2x2-average-pooled to the 1/8 grid);
* values: a bias-free 1x1 conv ``C_2 -> C_2`` of ``X2`` average-pooled to the same grid (4x4 for
  ``k = 4, 8``; 8x8 for ``k = 16``);
* ``A = softmax_keys(Q K^T)`` -- single head, **no** ``1/sqrt(d)`` scaling; ``O = V A^T``
  (token ``i`` of ``O`` is ``sum_j A_ij v_j``);
* ``B_k = nearest_upsample(O, size(X2)) + X2``.

Branch weights ``w = softmax(MLP(GAP(E)))`` with a bias-free ``C_E -> 16 -> 4`` MLP (ReLU between),
one scalar per image and branch (``weight_net="conv3x3"``: the DaB-Net authors' form of the same MLP,
a 3x3 zero-padded convolution on the 1x1 pooled map -- only its centre tap sees data -- then a 1x1
convolution: the same function, their parameter shapes and initialisation); ``Y = w_1 X2 + w_2 B_4 + w_3 B_8 + w_4 B_16``. ``Dropout2d`` is
applied to ``X2`` (training only) before everything else.

Grids: the attention grid of branches 4 and 8 is ``X8``'s size and that of branch 16 is ``X16``'s
size. When a feature's size is an exact multiple of its grid the pooling is ``avg_pool2d`` with the
nominal kernel (2, 4 or 8); otherwise (inputs not divisible by 32) ``adaptive_avg_pool2d`` to the
grid, so that queries, keys and values always have the same token count.

The attention uses ``torch.nn.functional.scaled_dot_product_attention(..., scale=1.0)``, which picks
memory-efficient kernels on GPU (at 1024x320 an explicit attention map has 5120^2 entries per
image); :func:`attention_reference` is the plain matmul-softmax it is tested against.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from depth.checks import check_shape
from depth.networks.layers import Conv3x3, ConvBlock, full_precision, sigmoid_head, upsample_to

__all__ = ["attention_reference", "DynamicCrossAttention", "DCAHead", "dca_parameter_count"]

_BRANCHES = (4, 8, 16)


def attention_reference(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``softmax(q k^T, dim=-1) v`` without scaling: ``(..., N, d) x3 -> (..., N, d_v)``."""
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"incompatible q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    attn = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
    return attn @ v


def _pool_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Average-pool ``x`` to ``size``: exact ``avg_pool2d`` when the size divides, else adaptive."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    fh, fw = h // size[0], w // size[1]
    if fh >= 1 and fw >= 1 and fh * size[0] == h and fw * size[1] == w:
        return F.avg_pool2d(x, (fh, fw))
    return F.adaptive_avg_pool2d(x, size)


class _AttentionBranch(nn.Module):
    """One DCA branch: bias-free 1x1 projections and single-head unscaled attention."""

    def __init__(self, in_channels: int, v_channels: int, qk_dim: int):
        super().__init__()
        self.query = nn.Conv2d(in_channels, qk_dim, 1, bias=False)
        self.key = nn.Conv2d(in_channels, qk_dim, 1, bias=False)
        self.value = nn.Conv2d(v_channels, v_channels, 1, bias=False)

    def forward(self, x_qk: Tensor, x_v: Tensor, use_sdpa: bool = True) -> Tensor:
        """``x_qk`` (B, C_k, h, w) and ``x_v`` (B, C_2, h, w) on the same grid -> ``O`` (B, C_2, h, w)."""
        b, _, h, w = x_qk.shape
        q = self.query(x_qk).flatten(2).transpose(1, 2).unsqueeze(1)  # B x 1 x N x d
        k = self.key(x_qk).flatten(2).transpose(1, 2).unsqueeze(1)
        v = self.value(x_v).flatten(2).transpose(1, 2).unsqueeze(1)  # B x 1 x N x C_2
        if torch.is_autocast_enabled(q.device.type):  # un-scaled logits: in fp32 under autocast too
            q, k, v = q.float(), k.float(), v.float()
        with full_precision(q):
            o = F.scaled_dot_product_attention(q, k, v, scale=1.0) if use_sdpa else attention_reference(q, k, v)
        return o.squeeze(1).transpose(1, 2).reshape(b, -1, h, w)


class DynamicCrossAttention(nn.Module):
    """Dynamic cross-attention fusion of ``X2, X4, X8, X16`` (docs/method.md §5).

    Args:
        channels: channels of ``(X4, X8, X16)``.
        x2_channels: channels of ``X2`` (also the value and output channels).
        enc_channels: channels of the deepest encoder feature ``E``.
        qk_dim: query/key dimension (single head).
        dropout: ``Dropout2d`` probability on ``X2`` in training.
        hidden: hidden width of the branch-weight MLP.
        use_sdpa: ``scaled_dot_product_attention`` (default) or :func:`attention_reference`.
        weight_net: ``linear`` (two bias-free ``nn.Linear``) or ``conv3x3`` (the authors' layers).

    ``forward(x2, x4, x8, x16, enc)`` returns ``Y`` ``(B, x2_channels, H2, W2)``; with
    ``return_weights=True`` it returns ``(Y, w)`` where ``w`` ``(B, 4)`` are the softmax weights of
    ``(X2, B4, B8, B16)``. The last weights are also kept (detached) in ``self.last_weights``.
    """

    def __init__(self, channels: Sequence[int] = (64, 128, 256), x2_channels: int = 32,
                 enc_channels: int = 512, qk_dim: int = 32, dropout: float = 0.1, hidden: int = 16,
                 use_sdpa: bool = True, weight_net: str = "linear"):
        super().__init__()
        if weight_net not in ("linear", "conv3x3"):
            raise ValueError(f"weight_net must be linear | conv3x3, got {weight_net!r}")
        channels = tuple(int(c) for c in channels)
        if len(channels) != 3:
            raise ValueError(f"channels must give (C4, C8, C16), got {channels}")
        self.channels = channels
        self.x2_channels = int(x2_channels)
        self.enc_channels = int(enc_channels)
        self.use_sdpa = use_sdpa
        self.dropout = nn.Dropout2d(dropout)
        self.branches = nn.ModuleDict({
            f"b{k}": _AttentionBranch(c, self.x2_channels, qk_dim) for k, c in zip(_BRANCHES, channels)
        })
        self.weight_net = weight_net
        if weight_net == "linear":
            self.weight_mlp = nn.Sequential(
                nn.Linear(self.enc_channels, hidden, bias=False),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, len(_BRANCHES) + 1, bias=False),
            )
        else:
            self.weight_mlp = nn.Sequential(
                nn.Conv2d(self.enc_channels, hidden, 3, padding=1, bias=False),
                nn.ReLU(inplace=True),
                nn.Conv2d(hidden, len(_BRANCHES) + 1, 1, bias=False),
            )
        self.last_weights: Tensor | None = None

    def forward(self, x2: Tensor, x4: Tensor, x8: Tensor, x16: Tensor, enc: Tensor,
                return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        c4, c8, c16 = self.channels
        check_shape(x2, f"B {self.x2_channels} H W", "x2")
        b = x2.shape[0]  # every feature has the batch size of x2
        check_shape(x4, f"B {c4} H W", "x4", B=b)
        check_shape(x8, f"B {c8} H W", "x8", B=b)
        check_shape(x16, f"B {c16} H W", "x16", B=b)
        check_shape(enc, f"B {self.enc_channels} H W", "enc", B=b)
        x2 = self.dropout(x2)
        size2 = tuple(x2.shape[-2:])
        grid8 = tuple(x8.shape[-2:])
        grid16 = tuple(x16.shape[-2:])
        v8 = _pool_to(x2, grid8)  # shared by branches 4 and 8
        v16 = _pool_to(x2, grid16)
        inputs = {4: (_pool_to(x4, grid8), v8), 8: (x8, v8), 16: (x16, v16)}
        fused = []
        for k in _BRANCHES:
            o = self.branches[f"b{k}"](*inputs[k], use_sdpa=self.use_sdpa)
            fused.append(upsample_to(o, size2) + x2)
        if self.weight_net == "linear":
            logits = self.weight_mlp(enc.mean(dim=(2, 3)))
        else:
            logits = self.weight_mlp(enc.mean(dim=(2, 3), keepdim=True)).flatten(1)
        w = torch.softmax(logits, dim=1)  # B x 4
        if not torch.compiler.is_exporting():
            self.last_weights = w.detach()
        y = w[:, 0, None, None, None] * x2
        for i, b_k in enumerate(fused, start=1):
            y = y + w[:, i, None, None, None] * b_k
        return (y, w) if return_weights else y


class DCAHead(nn.Module):
    """Full-resolution sigmoid disparity from the fused 1/2-resolution feature ``Y``.

    ``ConvBlock(in_ch -> mid_ch)`` (3x3, reflection padding, ELU), nearest upsampling to
    ``out_size`` (default: twice the input size), ``ConvBlock(mid_ch -> mid_ch)``,
    ``Conv3x3(mid_ch -> 1)``, sigmoid. Returns ``(B, 1, H, W)`` in ``(0, 1)``.
    """

    def __init__(self, in_ch: int = 32, mid_ch: int = 16):
        super().__init__()
        self.in_ch = int(in_ch)
        self.conv0 = ConvBlock(in_ch, mid_ch)
        self.conv1 = ConvBlock(mid_ch, mid_ch)
        self.disp = Conv3x3(mid_ch, 1)

    def forward(self, y: Tensor, out_size: tuple[int, int] | None = None) -> Tensor:
        check_shape(y, f"B {self.in_ch} H W", "y")
        if out_size is None:
            out_size = (2 * y.shape[-2], 2 * y.shape[-1])
        x = upsample_to(self.conv0(y), tuple(int(s) for s in out_size))
        return sigmoid_head(self.disp, self.conv1(x))


def dca_parameter_count(channels: Sequence[int] = (64, 128, 256), x2_channels: int = 32,
                        enc_channels: int = 512, qk_dim: int = 32, hidden: int = 16,
                        head_channels: int = 16) -> int:
    """Number of parameters of ``DynamicCrossAttention`` + ``DCAHead``.

    * attention: ``sum_k 2 * C_k * qk_dim`` (Q, K) ``+ 3 * C_2^2`` (one V per branch);
    * branch-weight MLP: ``C_E * hidden + hidden * 4``;
    * head: ``9 C_2 m + m`` + ``9 m^2 + m`` + ``9 m + 1`` (``m = head_channels``; 3x3 convs with bias).

    At the defaults: 31,744 + 8,256 = 40,000 (DCA) and 7,089 (head), 47,089 in all. The paper
    quotes "about 52.5K"; the listed layers give 47,089 and no layer is added to reach the quoted figure.
    """
    channels = tuple(int(c) for c in channels)
    c2, m = int(x2_channels), int(head_channels)
    attention = sum(2 * c * qk_dim for c in channels) + len(channels) * c2 * c2
    mlp = enc_channels * hidden + hidden * (len(channels) + 1)
    head = (9 * c2 * m + m) + (9 * m * m + m) + (9 * m + 1)
    return attention + mlp + head
