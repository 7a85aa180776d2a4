"""Exact LayerNorm-over-channels and GroupNorm forms from delegate-friendly ops (docs/DESIGN.md rule 2).

XNNPACK 1.5.1 has no layer_norm/group_norm kernel, so one such op splits the delegated graph in two. These forms
compute the same function from ops every delegate takes: the channel mean is a 1x1 conv with a 1/C kernel, the
spatial mean a `mean((2, 3), keepdim=True)`, then sub, mul, rsqrt, add (measured: ONE XNNPACK subgraph, GroupNorm
max error 1e-6 against nn.GroupNorm; ../shared/TOOLCHAIN.md "Exact norms").

The zoo's LayerNorm-over-channels lives in models/norms.py (issue 10) and `make_edge_norm()` uses it; GroupNorm (any
number of groups) uses `GroupNormEdge` here, which takes the spatial mean first (cheaper, same statistics).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNormChannels(nn.Module):
    """LayerNorm over C of a (B, C, H, W) map (timm's LayerNorm2d), written as 1x1 convs + elementwise ops."""

    def __init__(self, channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("avg", torch.full((1, channels, 1, 1), 1.0 / channels), persistent=False)
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        mean = F.conv2d(x, self.avg)  # (B, 1, H, W): channel mean as a 1x1 conv
        d = x - mean
        var = F.conv2d(d * d, self.avg)
        y = d * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y


class GroupNormEdge(nn.Module):
    """GroupNorm(G, C) of a (B, C, H, W) map: spatial mean, then the per-group channel mean as a 1x1 conv on the
    (B, C, 1, 1) result (the same average, reordered; measured 1.05-1.6x faster in XNNPACK than the conv over every
    pixel first, benchmarks/results/byom_peers.norms.md), gamma folded into the per-channel scale.

    G = 1 uses a (1, C) kernel (output one channel, broadcast back); G > 1 a (C, C) block kernel whose rows average
    the channels of their group, so every channel receives its group's mean directly.
    """

    def __init__(self, groups: int, channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        if groups == 1:
            kernel = torch.full((1, channels, 1, 1), 1.0 / channels)
        else:
            size = channels // groups
            block = torch.block_diag(*[torch.full((size, size), 1.0 / size)] * groups)
            kernel = block.view(channels, channels, 1, 1)
        self.register_buffer("avg", kernel, persistent=False)
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        # spatial mean first: the group average then runs on (B, C, 1, 1), not as a GEMM over every pixel
        mean = F.conv2d(x.mean((2, 3), keepdim=True), self.avg)
        d = x - mean
        scale = torch.rsqrt(F.conv2d((d * d).mean((2, 3), keepdim=True), self.avg) + self.eps)
        if self.weight is None:
            return d * scale
        return d * (scale * self.weight.view(1, -1, 1, 1)) + self.bias.view(1, -1, 1, 1)


def make_edge_norm(kind: str, channels: int, eps: float, affine: bool, groups: int = 1) -> nn.Module:
    """The exact edge form of a LayerNorm over channels (`kind="layer"`) or a GroupNorm (`kind="group"`).

    LayerNorm uses the zoo's ChannelLayerNorm (models/norms.py, issue 10) when present, so the zoo and `--fix`
    share one implementation; GroupNorm (any G) uses `GroupNormEdge`, whose spatial-mean-first order is cheaper
    than the zoo's GroupNorm1 (conv over every pixel first) and computes the same statistics.
    """
    if kind != "layer":  # GroupNormEdge's mean-first form is faster than the zoo's GroupNorm1 (conv first)
        return GroupNormEdge(groups, channels, eps, affine)
    try:
        from edge_sdk.models import norms
        return norms.ChannelLayerNorm(channels, eps, affine)
    except (ImportError, AttributeError):
        return LayerNormChannels(channels, eps, affine)
