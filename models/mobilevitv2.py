"""MobileViTv2 (Mehta & Rastegari, "Separable Self-attention for Mobile Vision Transformers", TMLR 2023,
https://arxiv.org/abs/2206.02680), rebuilt for edge converters.

Same layers and parameter count as the paper's width-multiplier family 0.5 ... 2.0 (ml-cvnets configuration:
base channels 32/64/128/256/384/512 x width, attention dims 128/192/256 x width, 2/4/3 attention blocks, FFN 2x),
with these edge changes:
- separable self-attention with SEPARATE q (1 channel), k, v 1x1 convs instead of one (1 + 2d) projection and a split,
  and the softmax/context sum written with (1, N) max/avg pooling (rule 4: XNNPACK delegates neither split nor sum;
  pooling keeps the attention free of TFLite TRANSPOSEs, docs/tflite.md);
- ReLU(v) * context broadcasts by plain multiplication, no `expand_as` (rule 4: litert-torch mishandled it);
- BatchNorm instead of GroupNorm(1, d) (rule 2: XNNPACK does not delegate group_norm); every BN folds away at deploy;
- patches regrouped by the same `layers.PatchGrid` as MobileViT v1 (rule 1: rank <= 4, no unfold, no TFLite
  TRANSPOSE), on the d = C/2 transformer channels (conv_in before, projection after: `PatchMixer`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import DeployConfig, EdgeModel
from .layers import ClassifierHead, ConvBN, Residual, make_divisible
from .mobilevit import ConvFFN, PatchMixer, check_input_size, fold_pre_norm, init_weights, mv2_stage
from .norms import make_norm
from .registry import ModelEntry, register


@dataclass(frozen=True)
class MobileViTv2Config:
    """Every architecture knob of MobileViTv2; channels are derived from `width` as in the reference code."""

    width: float = 1.0  # the paper's width multiplier alpha
    base_channels: tuple[int, ...] = (32, 64, 128, 256, 384, 512)  # stem, layer1..layer5 at width 1.0
    attn_dims: tuple[int, int, int] = (128, 192, 256)  # attention width in layer3..layer5 at width 1.0
    depths: tuple[int, int, int] = (2, 4, 3)  # attention blocks per MobileViTv2 block
    expansion: float = 2.0  # MV2 expansion ratio
    ffn_ratio: float = 2.0
    patch_size: int = 2
    layer2_blocks: int = 2
    head_dropout: float = 0.1
    drop_path: float = 0.0
    norm: str = "bn"  # transformer norms: "bn" (folds away) or "exact" (GroupNorm(1) as published: norms.py)

    def channels(self) -> tuple[int, ...]:
        """Stem (clamped to 16..64), layer1 (multiple of 16), layer2..5 (multiples of 8), as in ml-cvnets."""
        w, base = self.width, self.base_channels
        stem = make_divisible(min(max(base[0] * w, 16), 64), 8, 16)
        return (stem, make_divisible(base[1] * w, 16)) + tuple(make_divisible(c * w, 8) for c in base[2:])

    def dims(self) -> tuple[int, ...]:
        return tuple(make_divisible(d * self.width, 8) for d in self.attn_dims)


class SeparableAttention(nn.Module):
    """Pre-norm separable self-attention, linear in the N tokens. (B, d, P, N) -> (B, d, P, N).

    One context score per token (softmax over N), a context vector = score-weighted sum of keys, then
    ReLU(values) scaled channel-wise by that context.
    """

    transformer_init = True  # `init_weights`: trunc-normal(0.02) like the reference's attention layers

    def __init__(self, dim: int, norm: str = "bn") -> None:
        super().__init__()
        self.norm: nn.Module = make_norm(norm, dim, "group")
        self.q = nn.Conv2d(dim, 1, 1)
        self.k = nn.Conv2d(dim, dim, 1)
        self.v = nn.Conv2d(dim, dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[3]
        y = self.norm(x)
        # Softmax over N written with row pooling, no reshape: exp(s - rowmax) / rowmean(...) and the context
        # mean_j(k_j e_j) / mean_j(e_j) (= sum_j k_j softmax_j; the 1/N cancels). (1, N) max/avg pools are NHWC
        # kernels in TFLite (the reshape form cost 5 TRANSPOSEs per layer) and XNNPACK delegates both (it runs a
        # 4-D softmax(dim=-1) of a conv output wrongly, and `mean` only over dims (2, 3)).
        row = (1, n)  # one pooling window per patch position P; stride given explicitly (coremltools needs it)
        s = self.q(y)  # (B, 1, P, N)
        e = torch.exp(s - nn.functional.max_pool2d(s, row, row))  # (B, 1, P, N), <= 1: fp16-safe
        context = nn.functional.avg_pool2d(self.k(y) * e, row, row) / nn.functional.avg_pool2d(e, row, row)  # (B,d,P,1)
        return self.proj(torch.relu(self.v(y)) * context)  # (B, d, P, N) * (B, d, P, 1)

    @torch.no_grad()
    def reparameterize(self) -> None:
        fold_pre_norm(self, ("q", "k", "v"))


class MobileViTv2Block(nn.Module):
    """3x3 depthwise ConvBN (local) -> PatchMixer of separable-attention layers (global); no concat/fusion."""

    def __init__(self, ch: int, dim: int, depth: int, ffn_ratio: float, patch: int, drop_path: float = 0.0,
                 norm: str = "bn") -> None:
        super().__init__()
        hidden = int(ffn_ratio * dim) // 16 * 16
        layers = [m for _ in range(depth) for m in (Residual(SeparableAttention(dim, norm), drop_path),
                                                    Residual(ConvFFN(dim, hidden, norm, "group"), drop_path))]
        self.local = ConvBN(ch, ch, 3, groups=ch, act=nn.SiLU)
        self.mixer = PatchMixer(ch, dim, nn.Sequential(*layers), patch, proj_act=None, norm=norm,
                                token_norm="group")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixer(self.local(x))


class MobileViTv2(EdgeModel):
    """stem -> layer1/2 (MV2) -> layer3..5 (strided MV2 + MobileViTv2 block) -> head (no final 1x1 expansion)."""

    family = "mobilevitv2"

    def __init__(self, cfg: MobileViTv2Config, num_classes: int, deploy: DeployConfig) -> None:
        super().__init__(cfg, num_classes, deploy)
        if len(cfg.base_channels) != 6 or len(cfg.attn_dims) != 3 or len(cfg.depths) != 3:
            raise ValueError("base_channels needs 6 values (stem, layer1..5), attn_dims and depths 3 each")
        if cfg.width <= 0:
            raise ValueError(f"width must be positive, got {cfg.width}")
        check_input_size(deploy.input_size, cfg.patch_size)
        c, e = cfg.channels(), cfg.expansion
        self.stem = ConvBN(3, c[0], 3, stride=2, act=nn.SiLU)
        self.layer1 = nn.Sequential(*mv2_stage(c[0], c[1], 1, 1, e))
        self.layer2 = nn.Sequential(*mv2_stage(c[1], c[2], cfg.layer2_blocks, 2, e))
        for i, (dim, depth) in enumerate(zip(cfg.dims(), cfg.depths)):
            block = MobileViTv2Block(c[i + 3], dim, depth, cfg.ffn_ratio, cfg.patch_size, cfg.drop_path, cfg.norm)
            setattr(self, f"layer{i + 3}", nn.Sequential(*mv2_stage(c[i + 2], c[i + 3], 1, 2, e), block))
        self.head = ClassifierHead(c[5], num_classes, cfg.head_dropout)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, C, H/32, W/32)
        x = self.stem(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4, self.layer5):
            x = layer(x)
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, num_classes)
        return self.head(x)


DEPLOY = DeployConfig(input_size=256, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_pct=0.888)

# width multiplier -> published params (millions, paper Table / ml-cvnets model zoo)
_PUBLISHED = {0.5: 1.4, 0.75: 2.9, 1.0: 4.9, 1.25: 7.5, 1.5: 10.6, 1.75: 14.3, 2.0: 18.4}

for _width, _params in _PUBLISHED.items():
    register(ModelEntry(name=f"mobilevitv2_{round(_width * 100):03d}", family="mobilevitv2", model_cls=MobileViTv2,
                        cfg=MobileViTv2Config(width=_width), deploy=DEPLOY, published_params=_params))

register(ModelEntry(
    name="mobilevitv2_tiny", family="mobilevitv2", model_cls=MobileViTv2,
    cfg=MobileViTv2Config(base_channels=(16, 16, 16, 24, 32, 32), attn_dims=(16, 16, 16), depths=(1, 1, 1),
                          layer2_blocks=1),
    deploy=DeployConfig(input_size=64, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_pct=0.888), tiny=True))
