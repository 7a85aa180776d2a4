"""Exact LayerNorm-over-channels and GroupNorm(1) for 4-D maps, written with ops every delegate runs.

Published MobileViT checkpoints were trained with LayerNorm (v1, per token over the channels) and GroupNorm(1, C)
(v2, per sample over channels and positions). `aten.layer_norm` / `aten.group_norm` are not delegated by XNNPACK
and need a layout change in TFLite, so both are written here as:

    mean = conv2d(x, 1/C kernel)            # (B, 1, H, W): channel mean as a 1x1 conv, a GEMM every backend has
    d    = x - mean
    var  = conv2d(d * d, 1/C kernel)        # biased variance, as nn.LayerNorm
    y    = d * rsqrt(var + eps) * gamma + beta

GroupNorm(1) adds a spatial `mean((2, 3), keepdim=True)` after each conv (the only `mean` XNNPACK delegates).
Every op is rank 4, elementwise or a conv: one XNNPACK subgraph, NHWC-native in TFLite (no TRANSPOSE), Core ML
fp16-friendly (the variance is a mean, never a sum). The 1/C kernel is a persistent buffer because coremltools
looks up every buffer of an exported program in its state dict; it is derived from C, never loaded.

`fold_affine_into_conv` moves gamma/beta into the 1x1 conv that follows a pre-norm (deploy-time fusion, like BN).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class _ExactNorm(nn.Module):
    """Shared parameters of the exact norms: `weight`/`bias` named as in nn.LayerNorm / nn.GroupNorm (so published
    checkpoints map key for key) and the fixed averaging kernel."""

    spatial = False  # GroupNorm(1) also averages over H, W

    def __init__(self, channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.channels, self.eps = channels, eps
        self.register_buffer("avg_kernel", torch.full((1, channels, 1, 1), 1.0 / channels))
        if affine:
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def _mean(self, t: torch.Tensor) -> torch.Tensor:
        m = F.conv2d(t, self.avg_kernel)  # (B, 1, H, W): mean over channels
        return m.mean(dim=(2, 3), keepdim=True) if self.spatial else m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x - self._mean(x)
        y = d * torch.rsqrt(self._mean(d * d) + self.eps)
        if self.weight is None:
            return y
        return y * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}, affine={self.weight is not None}"


class ChannelLayerNorm(_ExactNorm):
    """nn.LayerNorm over the C of every pixel of a (B, C, H, W) map (= LayerNorm of (B, H*W, C) tokens)."""


class GroupNorm1(_ExactNorm):
    """nn.GroupNorm(1, C) of a (B, C, H, W) map: statistics over C, H and W of each sample."""

    spatial = True


EXACT_NORMS = (ChannelLayerNorm, GroupNorm1)


@torch.no_grad()
def fold_affine_into_conv(norm: _ExactNorm, conv: nn.Conv2d) -> nn.Conv2d:
    """Return a 1x1 conv computing conv(gamma * n + beta) from the normalized n, and drop the norm's affine.

    Same algebra as `layers.fold_bn_into_next_conv`: conv(g*n + b) = (W * g) n + (W b + bias).
    """
    if conv.kernel_size != (1, 1) or conv.groups != 1:
        raise ValueError("a norm's affine folds only into a 1x1 conv with groups=1")
    if norm.weight is None:
        return conv
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, 1, conv.stride, 0, bias=True,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight * norm.weight.reshape(1, -1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(fused.bias)
    fused.bias.copy_(bias + conv.weight[:, :, 0, 0] @ norm.bias)
    return fused


def drop_affine(norm: _ExactNorm) -> None:
    """Make `norm` affine-free once its gamma/beta were folded into every consumer."""
    norm.weight = None
    norm.bias = None


def make_norm(kind: str, channels: int, token_norm: str) -> nn.Module:
    """The pre-norm of a transformer layer: "bn" (foldable BatchNorm, the zoo's default) or "exact" (the
    published checkpoint's norm: `token_norm` = "layer" for MobileViT v1, "group" for v2)."""
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "exact":
        return ChannelLayerNorm(channels) if token_norm == "layer" else GroupNorm1(channels)
    raise ValueError(f"norm must be 'bn' or 'exact', got {kind!r}")
