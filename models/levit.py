"""LeViT in 4-D convolution form (Graham et al. 2021, "LeViT: a Vision Transformer in ConvNet's Clothing for Faster
Inference", https://arxiv.org/abs/2104.01136).

The paper's "Linear + BN over tokens" is written here as 1x1 ConvBN over an NCHW map (the idea behind timm's
`levit_conv`; this is an independent implementation), so the whole network stays 4-D (rule 1), every projection
fuses with its BN at deploy time (rule 2) and q/k/v are three separate 1x1 convs rather than one projection plus a
split (rule 4: the split was not delegated by XNNPACK). Full softmax attention is kept only at 1/16 resolution and
below, with a learned per-head relative-position bias (rule 3) that `reparameterize()` turns into a constant.

Layout: stride-16 conv stem -> stage0 -> [shrink attention + MLP -> stage1] -> [shrink attention + MLP -> stage2]
-> mean pool -> class head and distillation head (each BN + Linear), averaged at inference.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .base import DeployConfig, EdgeModel
from .layers import ConvBN, Residual, cat_channels, from_tokens, head_slices, to_tokens
from .registry import ModelEntry, register


@dataclass(frozen=True)
class LeViTConfig:
    """Every architecture knob of a LeViT variant (overridable through `create_model`)."""

    dims: tuple[int, ...] = (128, 256, 384)  # channels of each stage
    heads: tuple[int, ...] = (4, 6, 8)  # attention heads of each stage
    depths: tuple[int, ...] = (2, 3, 4)  # attention+MLP blocks per stage
    key_dim: int = 16  # q/k channels per head
    attn_ratio: float = 2.0  # value channels per head = attn_ratio * key_dim (stage blocks)
    mlp_ratio: float = 2.0  # hidden width of the residual MLPs
    down_attn_ratio: float = 4.0  # value ratio of the shrink attention (paper's "Subsample" op)
    down_mlp_ratio: float = 2.0  # MLP after each shrink attention
    stem_stride: int = 16  # number of stride-2 3x3 convs = log2(stem_stride)
    res_bn_init: float = 0.1  # BN gamma closing each residual branch: small, never exactly 0 (TOOLCHAIN.md)
    bias_init_std: float = 0.02  # relative-position bias tables: small random values, not zeros
    drop_path: float = 0.0  # stochastic depth of the residual blocks
    drop_rate: float = 0.0  # dropout before the classifiers
    distillation: bool = True  # add the DeiT-style distillation head


# Deploy form: attention whose heads * keys <= this runs block-diagonal (all heads in two bmm; levit_128s: the
# 4 blocks of stage 2, 8 heads x 16 tokens). Above it the zero blocks' MACs cost more than the per-head kernels.
BLOCK_DIAG_MAX = 128


def _conv(in_ch: int, out_ch: int, bn_init: float = 1.0) -> ConvBN:
    """The paper's Linear+BN over tokens as a fusable 1x1 ConvBN without activation (rule 2)."""
    return ConvBN(in_ch, out_ch, 1, act=None, bn_weight_init=bn_init)


def relative_offsets(resolution: int, stride: int = 1) -> torch.Tensor:
    """(Nq, Nk) index into a (resolution**2)-entry table: |dy| * resolution + |dx| between query and key pixels.

    Queries sit on the strided grid (pixel (i*stride, j*stride)), keys on the full grid, as in the paper.
    """
    k = torch.arange(resolution)
    q = torch.arange(0, resolution, stride)
    ky, kx = torch.meshgrid(k, k, indexing="ij")
    qy, qx = torch.meshgrid(q, q, indexing="ij")
    dy = (qy.reshape(-1, 1) - ky.reshape(1, -1)).abs()  # (Nq, Nk)
    dx = (qx.reshape(-1, 1) - kx.reshape(1, -1)).abs()
    return dy * resolution + dx


class LeViTAttention(nn.Module):
    """Multi-head softmax attention with a learned relative-position bias, all 4-D.

    q, k, v are separate 1x1 ConvBN (rule 4). `stride=2` makes it the paper's shrink attention: the q projection
    is a stride-2 1x1 conv, which equals subsampling the input on the strided grid and then projecting (no
    unfold, no strided slice), so the output has half the resolution and `out_dim` channels.
    q/k/v are read as channels-last tokens (B, N, heads*d) and each head is a channel slice, so the TFLite file has
    no TRANSPOSE (a reshape that splits C into (heads, d) costs one on each side in NHWC; `layers.to_tokens`). The
    products are rank-3 `bmm` per head (a 4-D `matmul` decomposes into expand_copy, which XNNPACK does not
    delegate) and the softmax runs on a rank-3 (B, Nq, Nk) tensor. Never rank 5.
    """

    deploy_folds = True  # class switch, False = the deploy form before the speed folds (benchmarks/bench_fold.py)

    def __init__(self, dim: int, out_dim: int, key_dim: int, heads: int, attn_ratio: float, resolution: int,
                 stride: int = 1, out_bn_init: float = 1.0, bias_init_std: float = 0.02) -> None:
        super().__init__()
        self.heads, self.key_dim, self.stride = heads, key_dim, stride
        self.val_dim = int(attn_ratio * key_dim)
        self.scale = key_dim ** -0.5
        self.q = ConvBN(dim, heads * key_dim, 1, stride=stride, act=None, padding=0)
        self.k = _conv(dim, heads * key_dim)
        self.v = _conv(dim, heads * self.val_dim)
        self.proj = nn.Sequential(nn.Hardswish(), _conv(heads * self.val_dim, out_dim, out_bn_init))
        self.bias_table = nn.Parameter(torch.randn(heads, resolution * resolution) * bias_init_std)
        self.register_buffer("bias_idx", relative_offsets(resolution, stride), persistent=False)
        self.deployed = False  # reparameterize(): bias per head as constants, softmax scale inside the q conv
        self.scale_in_q = False
        self.block_diag = False  # reparameterize() on small grids: all heads in two bmm (_forward_block_diag)

    def attention_bias(self) -> torch.Tensor:
        """(heads, Nq, Nk): the cached constants after `reparameterize()`, else gathered from the table."""
        if self.deployed:
            if hasattr(self, "cached_bias"):  # deploy_folds off: the (1, heads, Nq, Nk) buffer
                return self.cached_bias.reshape(self.cached_bias.shape[1:])
            if self.block_diag:  # (1, Nq, heads*Nk)
                nq = self.bias_bd.shape[1]
                return self.bias_bd.reshape(nq, self.heads, -1).permute(1, 0, 2)
            return torch.cat(self.head_biases())
        return self.bias_table[:, self.bias_idx]

    def head_biases(self) -> list[torch.Tensor]:
        """heads x (1, Nq, Nk): one constant buffer per head after `reparameterize()` (no runtime slicing)."""
        if self.deployed and not hasattr(self, "cached_bias"):
            return [getattr(self, f"bias{i}") for i in range(self.heads)]
        bias = self.attention_bias()
        return [bias[i:i + 1] for i in range(self.heads)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q4 = self.q(x)  # (B, heads*kd, h', w')
        ho, wo = q4.shape[2], q4.shape[3]
        if self.block_diag:
            return self._forward_block_diag(q4, x)
        q, k, v = (head_slices(to_tokens(t), self.heads) for t in (q4, self.k(x), self.v(x)))  # heads x (B, N, d)
        biases = self.head_biases()
        outs = []
        for i in range(self.heads):
            scores = torch.bmm(q[i], k[i].transpose(1, 2))  # (B, Nq, Nk)
            attn = (scores if self.scale_in_q else scores * self.scale) + biases[i]
            outs.append(torch.bmm(attn.softmax(dim=-1), v[i]))  # (B, Nq, dv)
        # proj = (Hardswish, ConvBN): the activation runs on the tokens, so from_tokens feeds the conv directly.
        # Elementwise, it commutes with the permute (same function); written after it, litert-torch's greedy layout
        # pass (used for graphs too large for its min-cut pass, e.g. levit_384) kept it NCHW and paid 2 TRANSPOSEs.
        act, conv = self.proj
        return conv(from_tokens(act(cat_channels(outs)), ho, wo))  # (B, N', heads*dv) -> (B, out, h', w')

    def _forward_block_diag(self, q4: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """All heads in two bmm (deploy form of small token grids, `BLOCK_DIAG_MAX`): k and v are replicated per
        head and masked to block-diagonal (B, heads*Nk, C) by ONE broadcast MUL with a 0/1 constant, so
        q (B, Nq, heads*kd) x that^T gives every head's scores side by side (B, Nq, heads*Nk), and the
        probabilities x the masked v give the heads' outputs already concatenated (B, Nq, heads*dv). The zero
        blocks cost heads x the attention MACs (tiny here) and add exact zeros; no slice, no per-head op."""
        b, h = x.shape[0], self.heads
        ho, wo = q4.shape[2], q4.shape[3]
        q, k, v = to_tokens(q4), to_tokens(self.k(x)), to_tokens(self.v(x))
        nq, nk = q.shape[1], k.shape[1]
        kb = (k.reshape(b, 1, -1) * self.mask_k).reshape(b, h * nk, k.shape[2])  # block-diagonal keys
        vb = (v.reshape(b, 1, -1) * self.mask_v).reshape(b, h * nk, v.shape[2])
        scores = torch.bmm(q, kb.transpose(1, 2)) + self.bias_bd  # (B, Nq, heads*Nk), scale in q's weights
        attn = scores.reshape(b, nq * h, nk).softmax(dim=-1).reshape(b, nq, h * nk)  # per head: free reshapes
        act, conv = self.proj
        return conv(from_tokens(act(torch.bmm(attn, vb)), ho, wo))  # (B, Nq, heads*dv) -> (B, out, h', w')

    @torch.no_grad()
    def _build_block_diag(self, bias: torch.Tensor) -> None:
        h, kd, dv = self.heads, self.key_dim, self.val_dim
        nq, nk = bias.shape[1:]
        owner = torch.arange(h)
        for name, d in (("mask_k", kd), ("mask_v", dv)):  # (1, heads, Nk*heads*d): 1 where channel is head i's
            m = (owner[:, None] == torch.arange(h * d)[None] // d).to(bias.dtype)  # (heads, heads*d)
            self.register_buffer(name, m[:, None, :].expand(h, nk, h * d).reshape(1, h, -1).contiguous())
        self.register_buffer("bias_bd", bias.permute(1, 0, 2).reshape(1, nq, h * nk).contiguous())
        self.block_diag = True

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Deploy form, same function, fewer kernels (docs/perf-findings.md: ~1 us of dispatch per XNNPACK op):
        the table + index gather becomes one constant bias buffer per head (a slice of one (heads, Nq, Nk)
        buffer stayed a runtime SLICE per head: 82 in levit_128s), and the softmax scale moves into the fused
        q conv (one MUL per head less; exact for key_dim 16, a power-of-two scale). Runs after the q ConvBN
        fused its BN (reparameterize_model goes children first); the trained parameters are only read."""
        if self.deployed:
            return
        if isinstance(self.q.bn, nn.BatchNorm2d):
            self.q.reparameterize()
        bias = self.bias_table[:, self.bias_idx].detach().clone()  # (heads, Nq, Nk)
        del self.bias_table
        del self.bias_idx
        self.deployed = True
        if not self.deploy_folds:  # the earlier deploy form: one (1, heads, Nq, Nk) buffer, scale as a MUL
            self.register_buffer("cached_bias", bias.unsqueeze(0))
            return
        self.q.conv.weight.mul_(self.scale)
        self.q.conv.bias.mul_(self.scale)
        self.scale_in_q = True
        if self.heads * bias.shape[2] <= BLOCK_DIAG_MAX:
            self._build_block_diag(bias)
            return
        for i in range(self.heads):
            self.register_buffer(f"bias{i}", bias[i:i + 1].clone())  # (1, Nq, Nk)


def _mlp(dim: int, ratio: float, out_bn_init: float) -> nn.Sequential:
    hidden = int(dim * ratio)
    return nn.Sequential(_conv(dim, hidden), nn.Hardswish(), _conv(hidden, dim, out_bn_init))


class LeViTStage(nn.Sequential):
    """Optional shrink attention (+ its residual MLP), then `depth` residual (attention, MLP) pairs."""

    def __init__(self, cfg: LeViTConfig, i: int, resolution: int) -> None:
        layers: list[nn.Module] = []
        dim, kd = cfg.dims[i], cfg.key_dim
        if i > 0:
            prev = cfg.dims[i - 1]
            layers += [LeViTAttention(prev, dim, kd, prev // kd, cfg.down_attn_ratio, resolution, stride=2,
                                      bias_init_std=cfg.bias_init_std),
                       Residual(_mlp(dim, cfg.down_mlp_ratio, cfg.res_bn_init), cfg.drop_path)]
            resolution = (resolution - 1) // 2 + 1
        for _ in range(cfg.depths[i]):
            layers += [Residual(LeViTAttention(dim, dim, kd, cfg.heads[i], cfg.attn_ratio, resolution,
                                               out_bn_init=cfg.res_bn_init, bias_init_std=cfg.bias_init_std),
                                cfg.drop_path),
                       Residual(_mlp(dim, cfg.mlp_ratio, cfg.res_bn_init), cfg.drop_path)]
        super().__init__(*layers)
        self.out_resolution = resolution


class BNLinear(nn.Module):
    """BatchNorm1d -> dropout -> Linear; `reparameterize()` folds the BN into the Linear (one GEMM at deploy)."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn: nn.Module = nn.BatchNorm1d(in_ch)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C) -> (B, out)
        return self.fc(self.drop(self.bn(x)))

    @torch.no_grad()
    def reparameterize(self) -> None:
        if not isinstance(self.bn, nn.BatchNorm1d):
            return
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        shift = self.bn.bias - self.bn.running_mean * scale
        self.fc.bias.add_(self.fc.weight @ shift)
        self.fc.weight.mul_(scale.reshape(1, -1))
        self.bn = nn.Identity()


class HeadMerge(nn.Module):
    """No parameters; its `reparameterize()` averages the class and distillation heads into ONE Linear.

    At inference the model returns (head(x) + head_dist(x)) / 2, which is one Linear with the averaged weights
    and biases: the deploy graph runs one 384->1000 GEMV instead of two (memory-bound: 7 GMAC/s, ~0.4 ms on
    levit_128s). A child module because `reparameterize_model` calls children only; registered last, so it runs
    first and fuses the two heads' BNs itself. The trained heads stay as they are until deployment.
    """

    def __init__(self, owner: "LeViT") -> None:
        super().__init__()
        self.__dict__["owner"] = owner  # a plain reference, not a submodule (no cycle in modules())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # never called: the owner reads its heads
        return x

    @torch.no_grad()
    def reparameterize(self) -> None:
        owner = self.owner
        if owner.head_dist is None or not LeViTAttention.deploy_folds:
            return
        owner.head.reparameterize()
        owner.head_dist.reparameterize()
        fc, dist = owner.head.fc, owner.head_dist.fc
        fc.weight.add_(dist.weight).mul_(0.5)
        fc.bias.add_(dist.bias).mul_(0.5)
        owner.head_dist = None  # forward_head now returns head(x): the average


def _stem(stride: int, out_ch: int) -> nn.Sequential:
    """log2(stride) stride-2 3x3 ConvBN, widths out/8, out/4, out/2, out; Hardswish between (not after the last)."""
    n = stride.bit_length() - 1
    if stride != 2 ** n or n < 1:
        raise ValueError(f"stem_stride must be a power of two, got {stride}")
    widths = [3] + [out_ch // 2 ** (n - 1 - j) for j in range(n)]
    return nn.Sequential(*[ConvBN(widths[j], widths[j + 1], 3, 2, act=nn.Hardswish if j < n - 1 else None)
                           for j in range(n)])


class LeViT(EdgeModel):
    """LeViT classifier; `forward` returns the average of the class and distillation heads (DeiT convention)."""

    has_dist_head = True

    def __init__(self, cfg: LeViTConfig, num_classes: int, deploy: DeployConfig) -> None:
        super().__init__(cfg, num_classes, deploy)
        if not (len(cfg.dims) == len(cfg.heads) == len(cfg.depths)):
            raise ValueError("dims, heads and depths must have the same length")
        if any(d % cfg.key_dim for d in cfg.dims[:-1]):
            raise ValueError(f"dims feeding a shrink attention must be multiples of key_dim={cfg.key_dim}")
        if deploy.input_size % cfg.stem_stride:
            raise ValueError(f"input_size must be a multiple of {cfg.stem_stride}, got {deploy.input_size}")
        self.has_dist_head = cfg.distillation
        self.distilled_training = False
        self.stem = _stem(cfg.stem_stride, cfg.dims[0])
        res = deploy.input_size // cfg.stem_stride
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        for i in range(len(cfg.dims)):
            stages[f"stage{i}"] = stage = LeViTStage(cfg, i, res)
            res = stage.out_resolution
        self.body = nn.Sequential(stages)
        self.head = BNLinear(cfg.dims[-1], num_classes, cfg.drop_rate)
        self.head_dist = BNLinear(cfg.dims[-1], num_classes, cfg.drop_rate) if cfg.distillation else None
        self.head_merge = HeadMerge(self)  # last: deploy-time average of the two heads (no parameters)

    def set_distilled_training(self, enable: bool = True) -> None:
        """In train mode with this on, `forward` returns (class_logits, dist_logits) for a distillation loss."""
        if enable and self.head_dist is None:
            raise ValueError("this LeViT was built with distillation=False")
        self.distilled_training = enable

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, C, H/64, W/64)
        return self.body(self.stem(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = x.mean(dim=(2, 3), keepdim=True).flatten(1)  # (B, C): 4-D keepdim mean is what XNNPACK delegates
        logits = self.head(x)
        if self.head_dist is None:
            return logits
        dist = self.head_dist(x)
        if self.training and self.distilled_training:
            return logits, dist
        return (logits + dist) * 0.5  # `/ 2` left a scalar `_to_dim_order_copy` outside the XNNPACK delegate

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [("stem", self.stem)] + list(self.body.named_children())


_LEVIT_DEPLOY = DeployConfig(input_size=224, crop_pct=0.9)

_LEVIT_VARIANTS: dict[str, tuple[LeViTConfig, float]] = {
    "levit_128s": (LeViTConfig((128, 256, 384), (4, 6, 8), (2, 3, 4), key_dim=16), 7.8),
    "levit_128": (LeViTConfig((128, 256, 384), (4, 8, 12), (4, 4, 4), key_dim=16), 9.2),
    "levit_192": (LeViTConfig((192, 288, 384), (3, 5, 6), (4, 4, 4), key_dim=32), 11.0),
    "levit_256": (LeViTConfig((256, 384, 512), (4, 6, 8), (4, 4, 4), key_dim=32), 19.0),
    "levit_384": (LeViTConfig((384, 512, 768), (6, 9, 12), (4, 4, 4), key_dim=32), 39.0),
}

for _name, (_cfg, _published) in _LEVIT_VARIANTS.items():
    register(ModelEntry(name=_name, family="levit", model_cls=LeViT, cfg=_cfg, deploy=_LEVIT_DEPLOY,
                        published_params=_published))

# Test variant: 64x64 input -> 4x4 tokens after the stem, one shrink attention to 2x2. dims[0]=32 gives stem convs
# of 4-8-16-32 channels: with 16 the first conv had 2 channels and the model could not learn textures (training.md).
register(ModelEntry(name="levit_tiny", family="levit", model_cls=LeViT,
                    cfg=LeViTConfig(dims=(32, 24), heads=(2, 3), depths=(1, 1), key_dim=16),
                    deploy=DeployConfig(input_size=64, crop_pct=0.9), tiny=True))
