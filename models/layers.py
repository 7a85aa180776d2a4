"""Edge-friendly building blocks shared by the zoo families.

Rules (../shared/DESIGN.md, docs/DESIGN.md): tensors stay 4-D NCHW; 1x1 convs instead of Linear; BatchNorm (never
LayerNorm/GroupNorm) so conv+BN fuses at deploy time; ReLU/Hardswish/Hardsigmoid (SiLU where the paper uses it:
XNNPACK, Core ML and TFLite all run it natively).

Every block that can fuse implements `reparameterize()`; `models.reparam.reparameterize_model` calls it.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

ActFactory = Callable[[], nn.Module] | None


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of `divisor` without dropping more than 10% (MobileNet convention)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


# --------------------------------------------------------------------------- TRANSPOSE-free attention helpers
# TFLite (litert-torch) runs convs NHWC: a conv output (B, C, H, W) is stored as (B, H, W, C). Reading it as
# channels-last tokens, `permute(0, 2, 3, 1).reshape(B, H*W, C)`, is therefore a no-op in the .tflite, while any
# reshape that splits C (e.g. to (B*heads, d, N)) needs the NCHW order and costs a layout TRANSPOSE on each side.
# So attention takes heads as channel SLICES of the token matrix (a SLICE on the innermost axis), transposes k only
# as the `bmm` operand (BATCH_MATMUL adj_y, no TRANSPOSE op), concatenates the heads on the channel axis and turns
# the tokens back with the inverse permute (again a no-op). docs/tflite.md, "TRANSPOSE".
MAX_CAT = 5  # XNNPACK delegates `cat` of 2..5 tensors only


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> channels-last tokens (B, H*W, C); free in TFLite's NHWC layout."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c)


def from_tokens(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, H*W, C) -> (B, C, H, W); the inverse of `to_tokens`, free in TFLite's NHWC layout."""
    b, _, c = t.shape
    return t.reshape(b, h, w, c).permute(0, 3, 1, 2)


def head_slices(t: torch.Tensor, heads: int) -> list[torch.Tensor]:
    """(B, N, heads*d) -> heads x (B, N, d): contiguous channel slices (SLICE on the innermost axis)."""
    d = t.shape[-1] // heads
    return [t[:, :, i * d:(i + 1) * d] for i in range(heads)]


def cat_tree(ts: list[torch.Tensor], dim: int) -> torch.Tensor:
    """Concatenate on `dim` in a tree of at most MAX_CAT inputs per `cat` (all of them XNNPACK-delegated)."""
    while len(ts) > 1:
        ts = [torch.cat(ts[i:i + MAX_CAT], dim=dim) if len(ts[i:i + MAX_CAT]) > 1 else ts[i]
              for i in range(0, len(ts), MAX_CAT)]
    return ts[0]


def cat_channels(ts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate on the last (channels-last) dim, `cat_tree(ts, -1)`."""
    return cat_tree(ts, dim=-1)


class ConvBN(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation; `reparameterize()` folds BN into the conv.

    After fusion `bn` is an Identity and `conv` has a bias, so the exported graph holds a single conv (+ act).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: ActFactory = nn.ReLU, bn_weight_init: float = 1.0, padding: int | None = None) -> None:
        super().__init__()
        padding = kernel // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(out_ch)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        self.act = act() if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def reparameterize(self) -> None:
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        self.conv = fuse_conv_bn(self.conv, self.bn)
        self.bn = nn.Identity()


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a new Conv2d computing bn(conv(x)) in eval mode."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


class DepthwiseSeparable(nn.Module):
    """Depthwise kxk ConvBN + act -> pointwise 1x1 ConvBN (MobileNetV1); residual when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1,
                 act: ActFactory = nn.ReLU) -> None:
        super().__init__()
        self.dw = ConvBN(in_ch, in_ch, kernel, stride, groups=in_ch, act=act)
        self.pw = ConvBN(in_ch, out_ch, 1, act=None)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.dw(x))
        return x + y if self.residual else y


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> depthwise kxk -> 1x1 project (linear), residual when stride 1 and same width."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, expand_ratio: float = 4.0, kernel: int = 3,
                 act: ActFactory = nn.SiLU) -> None:
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBN(in_ch, hidden, 1, act=act))
        layers += [ConvBN(hidden, hidden, kernel, stride, groups=hidden, act=act),
                   ConvBN(hidden, out_ch, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class ConditionalPosEnc(nn.Module):
    """Conditional positional encoding (CPVT): x + DWConv3x3(x). Works at any resolution; no position tables."""

    def __init__(self, dim: int, kernel: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, kernel, 1, kernel // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(x)


class LocallyEnhancedFFN(nn.Module):
    """FFN as 1x1 ConvBN expand -> 3x3 depthwise ConvBN -> 1x1 ConvBN project (LocalViT/CMT/EfficientViT's MBConv FFN).

    The depthwise conv inside the FFN gives the transformer block the local inductive bias it otherwise lacks.
    """

    def __init__(self, dim: int, ratio: float = 4.0, act: ActFactory = nn.Hardswish) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = ConvBN(dim, hidden, 1, act=act)
        self.dw = ConvBN(hidden, hidden, 3, groups=hidden, act=act)
        self.fc2 = ConvBN(hidden, dim, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dw(self.fc1(x)))


class Residual(nn.Module):
    """x + m(x), optional stochastic depth (per-sample drop) during training."""

    def __init__(self, m: nn.Module, drop: float = 0.0) -> None:
        super().__init__()
        self.m = m
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.drop > 0:
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.drop
            return x + self.m(x) * keep.to(x.dtype) / (1 - self.drop)
        return x + self.m(x)


class ClassifierHead(nn.Module):
    """Global average pool (spatial `mean`, rule 4) -> optional BN -> dropout -> 1x1-conv classifier kept 4-D.

    Output is (B, num_classes): the final flatten is the only rank change in the network.
    """

    def __init__(self, in_ch: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(dim=(2, 3), keepdim=True).flatten(1)  # (B, C); XNNPACK delegates only the 4-D keepdim mean
        return self.fc(self.drop(x))


@torch.no_grad()
def fold_bn_into_next_conv(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """Return a Conv2d computing conv(bn(x)) in eval mode, for a pre-norm BN feeding a 1x1 conv.

    Pre-norm transformer blocks (norm -> q/k/v or FFN convs) have BN *before* the conv, which `fuse_conv_bn`
    cannot handle; for a 1x1, groups=1 conv the per-channel affine folds exactly into the weight's input axis.
    """
    if conv.kernel_size != (1, 1) or conv.groups != 1:
        raise ValueError("a pre-norm BN folds only into a 1x1 conv with groups=1")
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (Cin,)
    shift = bn.bias - bn.running_mean * scale  # (Cin,)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, 1, conv.stride, 0, bias=True,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.reshape(1, -1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(fused.bias)
    fused.bias.copy_(bias + conv.weight[:, :, 0, 0] @ shift)
    return fused


class PatchGrid(nn.Module):
    """Regroup a feature map into p x p patches and back, without unfold/fold, TRANSPOSE or rank > 4 (rule 1).

    `to_patches`: (B, C, H, W) -> (B, C, P, N) with P = p*p pixel positions inside a patch (k = a*p + b for the
    pixel at row i*p + a, column j*p + b) and N = (H/p)*(W/p) patches (n = i*W/p + j): exactly
    `F.unfold(x, p, stride=p).reshape(B, C, P, N)`, the layout MobileViT attends over (one sequence per P).
    `from_patches` is the exact inverse (`F.fold`, a depth-to-space). Both only copy values: bit-exact in any dtype.

    Why slices and concatenations: TFLite (litert-torch) stores a conv output (B, C, H, W) as NHWC,
    [B][i][a][j][b][C]; the (B, C, P, N) tensor that feeds the next 1x1 conv is stored [B][k][n][C]. Every view
    below is written channels-last (`permute(0, 2, 3, 1)` first), which is free in that layout, and the pixels
    are moved by contiguous SLICEs (a row phase a, then a column phase b: C channels of the innermost axis) and
    one CONCATENATION along P; `from_patches` slices P and concatenates b on the innermost axis, then a rows.
    Each is a unit-stride slice/concat on a rank-4 tensor: XNNPACK delegates both (not strided slices), Core ML
    and TFLite run them natively, and no TRANSPOSE is left (the one-hot space-to-depth conv + permutes used
    before cost 1 TRANSPOSE in and 2 out per block: docs/tflite.md, "TRANSPOSE").

    No weights or buffers: the regrouping is pure data movement.
    """

    def __init__(self, channels: int, patch: int = 2) -> None:
        super().__init__()
        self.channels, self.patch = channels, patch

    def to_patches(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        b, c, h, w = x.shape
        p = self.patch
        if h % p or w % p:
            raise ValueError(f"feature map {h}x{w} is not divisible into {p}x{p} patches")
        gh, gw = h // p, w // p
        rows = x.permute(0, 2, 3, 1).reshape(b, gh, p, w * c)  # [i][a][j b C]: NHWC memory, free
        pieces = []
        for a in range(p):
            row = rows[:, :, a:a + 1].reshape(b, gh * gw, p, c)  # (B, N, b, C): pixels of row phase a
            pieces += [row[:, :, j:j + 1].reshape(b, 1, gh * gw, c) for j in range(p)]  # (B, 1, N, C): k = a*p + j
        return cat_tree(pieces, dim=1).permute(0, 3, 1, 2), (gh, gw)  # (B, P, N, C) -> (B, C, P, N)

    def from_patches(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        b, c, _, n = x.shape
        (gh, gw), p = grid, self.patch
        t = x.permute(0, 2, 3, 1)  # (B, P, N, C): NHWC memory of the conv output, free
        rows = []
        for a in range(p):
            cols = [t[:, a * p + j:a * p + j + 1].reshape(b, n, 1, c) for j in range(p)]  # (B, N, 1, C) each
            rows.append(cat_tree(cols, dim=2).reshape(b, gh, 1, gw * p * c))  # [i][j b C] of row phase a
        full = cat_tree(rows, dim=2)  # (B, gh, p, W*C) = [i][a][j b C]
        return full.reshape(b, gh * p, gw * p, c).permute(0, 3, 1, 2)  # (B, C, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_patches(x)[0]


class ReLULinearAttention(nn.Module):
    """Multi-head ReLU linear attention (EfficientViT, Cai et al. 2023, arXiv 2205.14756), O(N) in tokens, all 4-D.

    out_i = sum_j v_j (k_j . q_i) / (sum_j k_j . q_i + eps), with q = ReLU(q-proj), k = ReLU(k-proj), computed
    as (V K^T) Q / ((K 1)^T Q): the (N, N) score matrix is never formed. Both token sums are written as means
    (the 1/N cancels in the ratio; `eps` is relative to the mean): `mean` is delegated where `sum` was not
    (rule 4) and means keep fp16 (Core ML) in range at high token counts. q/k/v are separate 1x1 ConvBN (rule 4).

    Layout (TRANSPOSE-free in TFLite, fully delegated in XNNPACK): q/k/v are channels-last tokens (B, N, heads*d)
    and each head a channel slice, so the products are rank-3 `bmm` per head. The denominator stays 4-D: the k mean
    over dims (2, 3) (the only `mean` XNNPACK delegates), times q, summed over each head's channels by a fixed
    block-of-ones 1x1 conv (`head_sum`, a buffer: not a parameter) -> (B, heads, H, W), read as tokens. Taking the
    (B, C, 1, 1) mean as tokens directly would need one TRANSPOSE in TFLite.
    """

    def __init__(self, dim: int, heads: int, key_dim: int, out_dim: int | None = None, eps: float = 1e-4,
                 out_bn_init: float = 1.0) -> None:
        super().__init__()
        self.heads, self.key_dim, self.eps = heads, key_dim, eps
        inner = heads * key_dim
        self.q = ConvBN(dim, inner, 1, act=nn.ReLU)  # ReLU kernel feature map
        self.k = ConvBN(dim, inner, 1, act=nn.ReLU)
        self.v = ConvBN(dim, inner, 1, act=None)
        self.proj = ConvBN(inner, out_dim or dim, 1, act=None, bn_weight_init=out_bn_init)
        # (heads, heads*d, 1, 1): output channel i sums input channels of head i. Persistent: coremltools 9 looks
        # up every buffer of the exported program in its state dict.
        self.register_buffer("head_sum", torch.eye(heads).repeat_interleave(key_dim, dim=1)[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        q4, k4 = self.q(x), self.k(x)  # (B, heads*d, H, W), >= 0
        k_mean = k4.mean(dim=(2, 3), keepdim=True)  # (B, heads*d, 1, 1): 4-D spatial mean
        den = head_slices(to_tokens(nn.functional.conv2d(q4 * k_mean, self.head_sum)), self.heads)  # (B, N, 1)
        q, k, v = (head_slices(to_tokens(t), self.heads) for t in (q4, k4, self.v(x)))  # heads x (B, N, d)
        outs = []
        for i in range(self.heads):
            kv = torch.bmm(k[i].transpose(1, 2), v[i]) * (1.0 / (h * w))  # (B, d_k, d_v): mean_j k_j v_j^T
            outs.append(torch.bmm(q[i], kv) / (den[i] + self.eps))  # (B, N, d_v)
        return self.proj(from_tokens(cat_channels(outs), h, w))
