"""Small plain-PyTorch models that each use one pattern that falls off a delegate (tests for `edge-sdk lint`).

Every factory takes `num_classes` and returns a seeded eval-mode model for a 32x32 input. Together they cover
docs/DESIGN.md's rules: LayerNorm over channels, GroupNorm(1), nn.MultiheadAttention, F.scaled_dot_product_attention,
expand_as, Linear on a 4-D channels-last map, sum over tokens, split of one projection, `@` on rank-4 heads.
`hybrid` combines them the way a paper's code does (a user's own hybrid). Used as `tests/assets/byom/patterns.py:<factory>`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SIZE = 32


class LayerNorm2d(nn.LayerNorm):
    """timm-style LayerNorm over the channels of an NCHW map (permute, normalize, permute back)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class Stem(nn.Module):
    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 32, 32) -> (B, C, 16, 16)
        return F.relu(self.bn(self.conv(x)))


class Classifier(nn.Module):
    """Stem -> body -> global pool -> Linear; `body` is the pattern under test."""

    def __init__(self, body: nn.Module, num_classes: int = 10, c: int = 16) -> None:
        super().__init__()
        self.stem, self.body, self.head = Stem(c), body, nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.stem(x))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


class NormBlock(nn.Module):
    def __init__(self, norm: nn.Module, c: int = 16) -> None:
        super().__init__()
        self.norm, self.conv = norm, nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.norm(x))


class Tokens(nn.Module):
    """(B, C, H, W) <-> (B, N, C) around a token mixer."""

    def __init__(self, mixer: nn.Module) -> None:
        super().__init__()
        self.mixer = mixer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, N, C)
        t = t + self.mixer(t)
        return t.transpose(1, 2).reshape(b, c, h, w)


class MHAMixer(nn.Module):
    def __init__(self, c: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(c, heads, batch_first=True)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.attn(t, t, t, need_weights=False)[0]


class SDPAMixer(nn.Module):
    """Fused qkv projection, split into q/k/v, heads as a rank-4 tensor, F.scaled_dot_product_attention."""

    def __init__(self, c: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(c, 3 * c), nn.Linear(c, c)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        b, n, c = t.shape
        q, k, v = self.qkv(t).split(c, dim=-1)  # split of one projection
        q, k, v = (z.reshape(b, n, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, d)
        return self.proj(o.transpose(1, 2).reshape(b, n, c))


class MatmulMixer(nn.Module):
    """LeViT-style attention written with `@` on rank-4 heads (to_edge turns each into expand_copy + bmm); the
    values use one head shared by all (multi-query: a (B, 1, N, d) operand broadcast over the heads)."""

    def __init__(self, c: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads, self.d = heads, c // heads
        self.qk, self.v, self.proj = nn.Linear(c, 2 * c), nn.Linear(c, self.d), nn.Linear(c, c)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        b, n, c = t.shape
        q, k = self.qk(t).reshape(b, n, 2, self.heads, self.d).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.d ** -0.5  # (B, h, N, N)
        v = self.v(t).unsqueeze(1)  # (B, 1, N, d): one value head for every query head
        o = attn.softmax(dim=-1) @ v  # (B, h, N, d)
        return self.proj(o.transpose(1, 2).reshape(b, n, c))


class IntConstant(nn.Module):
    """Two heads averaged with an integer tensor constant, plus a division by a Python int (timm LeViT's distilled
    head `(x + x_dist) / 2`): to_edge makes both int64 constants, cast to float at run time outside XNNPACK."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.a(x) + self.b(x)) / torch.tensor(2) + x / 2  # a tensor literal and a Python int


class MQAMixer(nn.Module):
    """Multi-query attention as timm MobileNetV4 writes it: query heads (B, h, N, d), ONE key/value head
    (B, 1, N, d) that F.scaled_dot_product_attention broadcasts over them."""

    def __init__(self, c: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads, self.d = heads, c // heads
        self.q, self.kv, self.proj = nn.Linear(c, c), nn.Linear(c, 2 * self.d), nn.Linear(c, c)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        b, n, c = t.shape
        q = self.q(t).reshape(b, n, self.heads, self.d).transpose(1, 2)
        k, v = self.kv(t).unsqueeze(1).chunk(2, dim=-1)  # (B, 1, N, d) each
        o = F.scaled_dot_product_attention(query=q, key=k, value=v)  # one key/value head for all
        return self.proj(o.transpose(1, 2).reshape(b, n, c))


class SplitProjection(nn.Module):
    """A 1x1 conv projection split along channels (MobileViTv2's fused qkv)."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.qkv = nn.Conv2d(c, 1 + 2 * c, 1)
        self.out = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        q, k, v = self.qkv(x).split([1, c, c], dim=1)
        scores = torch.sigmoid(q)  # (B, 1, H, W)
        ctx = (k * scores).mean((2, 3), keepdim=True)
        return x + self.out(F.relu(v) * ctx)


class ExpandAs(nn.Module):
    """A per-channel context vector broadcast with expand_as (timm MobileViTv2's pattern)."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.key, self.value = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.key(x).mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        return x + self.value(x) * ctx.expand_as(x)


class SumTokens(nn.Module):
    """Context vector as a sum over tokens (last dim) of a (B, C, 1, N) map, scaled back."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.key, self.query = nn.Conv2d(c, c, 1), nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.reshape(b, c, 1, h * w)
        scores = torch.softmax(self.query(t), dim=-1)  # (B, 1, 1, N)
        ctx = (self.key(t) * scores).sum(dim=-1, keepdim=True)  # (B, C, 1, 1)
        return x + ctx.reshape(b, c, 1, 1)


class Linear4d(nn.Module):
    """ConvNeXt-style MLP: permute to channels-last, Linear-GELU-Linear, permute back."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, 2 * c), nn.Linear(2 * c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        return x + self.fc2(F.gelu(self.fc1(t))).permute(0, 3, 1, 2)


def _seeded(body: nn.Module, num_classes: int) -> nn.Module:
    torch.manual_seed(0)
    model = Classifier(body, num_classes)
    for p in model.parameters():  # no exact zeros or ones: every weight matters for parity
        with torch.no_grad():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def layernorm_channels(num_classes: int = 10) -> nn.Module:
    return _seeded(NormBlock(LayerNorm2d(16)), num_classes)


def groupnorm1(num_classes: int = 10) -> nn.Module:
    return _seeded(NormBlock(nn.GroupNorm(1, 16)), num_classes)


def mha(num_classes: int = 10) -> nn.Module:
    return _seeded(Tokens(MHAMixer()), num_classes)


def sdpa(num_classes: int = 10) -> nn.Module:
    return _seeded(Tokens(SDPAMixer()), num_classes)


def matmul4d(num_classes: int = 10) -> nn.Module:
    return _seeded(Tokens(MatmulMixer()), num_classes)


def int_constant(num_classes: int = 10) -> nn.Module:
    return _seeded(IntConstant(), num_classes)


def mqa(num_classes: int = 10) -> nn.Module:
    return _seeded(Tokens(MQAMixer()), num_classes)


def expand_as(num_classes: int = 10) -> nn.Module:
    return _seeded(ExpandAs(), num_classes)


def linear4d(num_classes: int = 10) -> nn.Module:
    return _seeded(Linear4d(), num_classes)


def sum_tokens(num_classes: int = 10) -> nn.Module:
    return _seeded(SumTokens(), num_classes)


def split_projection(num_classes: int = 10) -> nn.Module:
    return _seeded(SplitProjection(), num_classes)


def hybrid(num_classes: int = 10) -> nn.Module:
    """A user's own hybrid: every pattern above in one network."""
    body = nn.Sequential(NormBlock(nn.GroupNorm(1, 16)), SplitProjection(), ExpandAs(), SumTokens(),
                         NormBlock(LayerNorm2d(16)), Tokens(SDPAMixer()), Tokens(MHAMixer()), Linear4d())
    return _seeded(body, num_classes)


# ---- bad sources (each must give one error line and write nothing) ----------------------------------------------

def not_a_module(num_classes: int = 10) -> object:
    return {"not": "a module"}


def raises(num_classes: int = 10) -> nn.Module:
    raise RuntimeError("this factory is broken on purpose")
