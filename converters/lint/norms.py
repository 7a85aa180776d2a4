"""Exact LayerNorm-over-channels and GroupNorm forms from delegate-friendly ops (docs/DESIGN.md rule 2).

XNNPACK 1.5.1 has no layer_norm/group_norm kernel, so one such op splits the delegated graph in two. These forms
compute the same function from ops every delegate takes: the channel mean is a 1x1 conv with a 1/C kernel, the
spatial mean a `mean((2, 3), keepdim=True)`, then sub, mul, rsqrt, add (measured: ONE XNNPACK subgraph, GroupNorm
max error 1e-6 against nn.GroupNorm; ../shared/TOOLCHAIN.md "Exact norms").

The zoo's versions live in models/norms.py (issue 10); `make_edge_norm()` uses them, and the classes here only
where the zoo has none (GroupNorm with several groups) or as a fallback.
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
    """GroupNorm(G, C) of a (B, C, H, W) map: per-group channel mean as a 1x1 conv, then a spatial mean.

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
        mean = F.conv2d(x, self.avg).mean((2, 3), keepdim=True)
        d = x - mean
        var = F.conv2d(d * d, self.avg).mean((2, 3), keepdim=True)
        y = d * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y


def make_edge_norm(kind: str, channels: int, eps: float, affine: bool, groups: int = 1) -> nn.Module:
    """The exact edge form of a LayerNorm over channels (`kind="layer"`) or a GroupNorm (`kind="group"`).

    The zoo's modules (models/norms.py, issue 10: ChannelLayerNorm, GroupNorm1) are used when present, so the zoo
    and `--fix` share one implementation; GroupNorm with more than one group uses `GroupNormEdge` from here.
    """
    try:
        from edge_sdk.models import norms
        if kind == "layer":
            return norms.ChannelLayerNorm(channels, eps, affine)
        if groups == 1:
            return norms.GroupNorm1(channels, eps, affine)
    except (ImportError, AttributeError):
        if kind == "layer":
            return LayerNormChannels(channels, eps, affine)
    return GroupNormEdge(groups, channels, eps, affine)
