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
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused.to(conv.weight.device)


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
        x = x.mean(dim=(2, 3))  # (B, C)
        return self.fc(self.drop(x))
