"""Two CNN/Transformer hybrid families built only from edge-friendly ops (rules in ../shared/DESIGN.md).

* "pbhybrid" - parallel branches: every block runs a convolutional branch (MV2 body: 1x1 expand -> 3x3 depthwise
  -> 1x1 project) and a ReLU linear-attention branch (EfficientViT, arXiv 2205.14756) side by side on the same map
  and mixes them with a learned, input-dependent gate (SKNet-style selective kernel fusion, arXiv 1903.06586).
  The idea of running local convolution and global attention in parallel follows Mobile-Former
  (arXiv 2108.05895), Conformer (arXiv 2105.03889) and ACmix (arXiv 2111.14556); here both branches see the same
  NCHW map so no token bridge (and no rank change) is needed.
* "cctt" - stage-wise C-C-T-T (CoAtNet, arXiv 2106.04803): two MV2 stages, then two transformer stages whose blocks
  are conditional positional encoding (CPVT, arXiv 2102.10882) -> attention -> locally-enhanced FFN
  (LocalViT/CMT). Attention is ReLU linear attention at 1/16 (196 tokens at 224: O(N) matters) and LeViT softmax
  attention with relative bias at 1/32 (49 tokens: N^2 is cheap and softmax is the stronger mixer).

Both: conv stem, stride-2 MV2 blocks between stages, BN everywhere (fused at deploy), Hardswish/ReLU only, spatial
`mean` pooling, every tensor 4-D NCHW.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import DeployConfig, EdgeModel
from .layers import (ActFactory, ClassifierHead, ConditionalPosEnc, ConvBN, DepthwiseSeparable, InvertedResidual,
                     LocallyEnhancedFFN, ReLULinearAttention, Residual)
from .levit import LeViTAttention
from .registry import ModelEntry, register

_ACTS: dict[str, type[nn.Module]] = {"hardswish": nn.Hardswish, "relu": nn.ReLU}


def _act(name: str) -> type[nn.Module]:
    if name not in _ACTS:
        raise ValueError(f"act must be one of {sorted(_ACTS)}, got {name!r}")
    return _ACTS[name]


@dataclass(frozen=True)
class PBHybridConfig:
    """Parallel-branch hybrid: stem -> 4 stages (each a stride-2 MV2 then `depths[i]` blocks) -> head."""

    stem_ch: int = 16
    dims: tuple[int, ...] = (32, 64, 96, 128)  # stage widths at 1/4, 1/8, 1/16, 1/32
    depths: tuple[int, ...] = (1, 2, 2, 2)  # blocks after each downsampling MV2
    attn_from: int = 1  # stages >= this use parallel blocks; earlier ones plain MV2 (attention at 1/4 is waste)
    key_dim: int = 16  # channels per attention head; heads = dim // key_dim
    expand_ratio: float = 4.0  # MV2 blocks (downsampling and pure-conv stages)
    branch_expand: float = 2.0  # conv branch of the parallel block
    mlp_ratio: float = 2.0  # 1x1 FFN after the fused branches (0 disables)
    gate_reduction: int = 4  # squeeze ratio of the branch gate
    head_ch: int = 0  # 1x1 ConvBN before pooling (0: none)
    act: str = "hardswish"
    res_bn_init: float = 0.1  # BN gamma closing residual branches: small, never exactly 0 (TOOLCHAIN.md)
    drop_path: float = 0.0
    drop_rate: float = 0.0


@dataclass(frozen=True)
class CCTTConfig:
    """C-C-T-T hybrid: stem -> 2 MV2 stages -> 2 transformer stages (each stage opens with a stride-2 MV2) -> head."""

    stem_ch: int = 16
    dims: tuple[int, int, int, int] = (32, 64, 96, 128)  # stage widths at 1/4, 1/8, 1/16, 1/32
    depths: tuple[int, int, int, int] = (1, 2, 2, 2)  # blocks after each downsampling MV2
    attn_types: tuple[str, str] = ("linear", "softmax")  # attention of the two T stages
    key_dim: int = 16  # q/k channels per head; heads = dim // key_dim
    attn_ratio: float = 2.0  # value channels per head / key_dim (softmax attention)
    expand_ratio: float = 4.0  # MV2 blocks
    mlp_ratio: float = 2.0  # locally-enhanced FFN expansion
    head_ch: int = 0  # 1x1 ConvBN before pooling (0: none)
    act: str = "hardswish"
    res_bn_init: float = 0.1
    bias_init_std: float = 0.02  # softmax-attention relative bias table: small random, not zeros
    drop_path: float = 0.0
    drop_rate: float = 0.0


class HardSigmoid(nn.Module):
    """relu6(x + 3) / 6 written out: `nn.Hardsigmoid` decomposes with two scalar tensor constants whose
    `_to_dim_order_copy` XNNPACK leaves outside the delegate (2 per gate); this form is fully delegated."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.relu6(x + 3.0) * (1.0 / 6.0)


class BranchGate(nn.Module):
    """Mix two branch outputs with input-dependent per-channel weights (softmax over the two branches).

    pool(a + b) -> 1x1 conv -> ReLU -> 1x1 conv = logit difference g; softmax([g, 0]) = (w, 1 - w) with
    w = Hardsigmoid(g) (rule 5). Returns w * a + (1 - w) * b = b + w * (a - b), one multiply.
    """

    def __init__(self, dim: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(8, dim // reduction)
        self.fc = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, dim, 1), HardSigmoid())

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        w = self.fc((a + b).mean(dim=(2, 3), keepdim=True))  # (B, C, 1, 1): weight of branch a
        return b + w * (a - b)


class ParallelBranches(nn.Module):
    """Conv branch and ReLU linear-attention branch on the same map, gated (the residual is outside)."""

    def __init__(self, dim: int, cfg: PBHybridConfig) -> None:
        super().__init__()
        act = _act(cfg.act)
        hidden = int(dim * cfg.branch_expand)
        self.conv = nn.Sequential(ConvBN(dim, hidden, 1, act=act), ConvBN(hidden, hidden, 3, groups=hidden, act=act),
                                  ConvBN(hidden, dim, 1, act=None, bn_weight_init=cfg.res_bn_init))
        self.attn = ReLULinearAttention(dim, dim // cfg.key_dim, cfg.key_dim, out_bn_init=cfg.res_bn_init)
        self.gate = BranchGate(dim, cfg.gate_reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.conv(x), self.attn(x))


def _ffn(dim: int, ratio: float, act: ActFactory, bn_init: float) -> nn.Sequential:
    hidden = int(dim * ratio)
    return nn.Sequential(ConvBN(dim, hidden, 1, act=act), ConvBN(hidden, dim, 1, act=None, bn_weight_init=bn_init))


def _parallel_block(dim: int, cfg: PBHybridConfig) -> nn.Sequential:
    layers: list[nn.Module] = [Residual(ParallelBranches(dim, cfg), cfg.drop_path)]
    if cfg.mlp_ratio > 0:
        layers.append(Residual(_ffn(dim, cfg.mlp_ratio, _act(cfg.act), cfg.res_bn_init), cfg.drop_path))
    return nn.Sequential(*layers)


def _transformer_block(dim: int, cfg: CCTTConfig, attn_type: str, resolution: int) -> nn.Sequential:
    """CPE -> residual attention -> residual locally-enhanced FFN; no LayerNorm: BN sits inside q/k/v (as LeViT)."""
    heads = dim // cfg.key_dim
    if attn_type == "linear":
        attn: nn.Module = ReLULinearAttention(dim, heads, cfg.key_dim, out_bn_init=cfg.res_bn_init)
    elif attn_type == "softmax":
        attn = LeViTAttention(dim, dim, cfg.key_dim, heads, cfg.attn_ratio, resolution,
                              out_bn_init=cfg.res_bn_init, bias_init_std=cfg.bias_init_std)
    else:
        raise ValueError(f"attn_types entries must be 'linear' or 'softmax', got {attn_type!r}")
    ffn = LocallyEnhancedFFN(dim, cfg.mlp_ratio, act=_act(cfg.act))
    nn.init.constant_(ffn.fc2.bn.weight, cfg.res_bn_init)
    return nn.Sequential(ConditionalPosEnc(dim), Residual(attn, cfg.drop_path), Residual(ffn, cfg.drop_path))


class HybridNet(EdgeModel):
    """Shared skeleton: stem, stage0..stage3 (each opens with a stride-2 MV2), optional 1x1 head conv, classifier.

    Subclasses provide `_block(i, dim, resolution)`: the repeated block of stage i.
    """

    def __init__(self, cfg: PBHybridConfig | CCTTConfig, num_classes: int, deploy: DeployConfig) -> None:
        super().__init__(cfg, num_classes, deploy)
        if len(cfg.dims) != 4 or len(cfg.depths) != 4:
            raise ValueError("dims and depths must have 4 entries (stages at 1/4, 1/8, 1/16, 1/32)")
        if deploy.input_size % 32:
            raise ValueError(f"input_size must be a multiple of 32, got {deploy.input_size}")
        act = _act(cfg.act)
        self.stem = nn.Sequential(ConvBN(3, cfg.stem_ch, 3, 2, act=act),
                                  DepthwiseSeparable(cfg.stem_ch, cfg.stem_ch, act=act))
        prev, res = cfg.stem_ch, deploy.input_size // 2
        for i, (dim, depth) in enumerate(zip(cfg.dims, cfg.depths)):
            res //= 2
            blocks = [InvertedResidual(prev, dim, 2, cfg.expand_ratio, act=act)]
            blocks += [self._block(i, dim, res) for _ in range(depth)]
            self.add_module(f"stage{i}", nn.Sequential(*blocks))
            prev = dim
        self.head_conv = ConvBN(prev, cfg.head_ch, 1, act=act) if cfg.head_ch else nn.Identity()
        self.head = ClassifierHead(cfg.head_ch or prev, num_classes, cfg.drop_rate)

    def _block(self, i: int, dim: int, resolution: int) -> nn.Module:
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, C, H/32, W/32)
        x = self.stem(x)
        for i in range(4):
            x = getattr(self, f"stage{i}")(x)
        return self.head_conv(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


class PBHybrid(HybridNet):
    """Parallel-branch hybrid (family "pbhybrid")."""

    def _block(self, i: int, dim: int, resolution: int) -> nn.Module:
        cfg = self.cfg
        if i < cfg.attn_from:
            return InvertedResidual(dim, dim, 1, cfg.expand_ratio, act=_act(cfg.act))
        if dim % cfg.key_dim:
            raise ValueError(f"dims of attention stages must be multiples of key_dim={cfg.key_dim}")
        return _parallel_block(dim, cfg)


class CCTT(HybridNet):
    """Stage-wise C-C-T-T hybrid (family "cctt")."""

    def _block(self, i: int, dim: int, resolution: int) -> nn.Module:
        cfg = self.cfg
        if i < 2:
            return InvertedResidual(dim, dim, 1, cfg.expand_ratio, act=_act(cfg.act))
        if dim % cfg.key_dim:
            raise ValueError(f"dims of transformer stages must be multiples of key_dim={cfg.key_dim}")
        return _transformer_block(dim, cfg, cfg.attn_types[i - 2], resolution)


_DEPLOY = DeployConfig(input_size=224)
_MICRO_DEPLOY = DeployConfig(input_size=64)

register(ModelEntry(name="pbhybrid_tiny", family="pbhybrid", model_cls=PBHybrid, deploy=_DEPLOY,
                    cfg=PBHybridConfig(stem_ch=16, dims=(24, 48, 80, 128), depths=(1, 2, 3, 2), head_ch=0)))
register(ModelEntry(name="pbhybrid_small", family="pbhybrid", model_cls=PBHybrid, deploy=_DEPLOY,
                    cfg=PBHybridConfig(stem_ch=24, dims=(48, 96, 160, 256), depths=(2, 2, 4, 3), key_dim=32,
                                       head_ch=768)))
register(ModelEntry(name="pbhybrid_micro", family="pbhybrid", model_cls=PBHybrid, deploy=_MICRO_DEPLOY, tiny=True,
                    cfg=PBHybridConfig(stem_ch=8, dims=(8, 16, 16, 24), depths=(1, 1, 1, 1), key_dim=8,
                                       expand_ratio=2.0, gate_reduction=2)))
register(ModelEntry(name="cctt_tiny", family="cctt", model_cls=CCTT, deploy=_DEPLOY,
                    cfg=CCTTConfig(stem_ch=16, dims=(24, 48, 96, 160), depths=(1, 2, 3, 2), head_ch=0)))
register(ModelEntry(name="cctt_small", family="cctt", model_cls=CCTT, deploy=_DEPLOY,
                    cfg=CCTTConfig(stem_ch=24, dims=(48, 96, 192, 320), depths=(2, 2, 4, 3), key_dim=32,
                                   head_ch=1024)))
register(ModelEntry(name="cctt_micro", family="cctt", model_cls=CCTT, deploy=_MICRO_DEPLOY, tiny=True,
                    cfg=CCTTConfig(stem_ch=8, dims=(8, 16, 16, 24), depths=(1, 1, 1, 1), key_dim=8,
                                   expand_ratio=2.0)))
