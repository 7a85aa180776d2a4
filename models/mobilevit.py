"""MobileViT v1 (Mehta & Rastegari, "MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision
Transformer", ICLR 2022, https://arxiv.org/abs/2110.02178), rebuilt for edge converters.

Same layers and parameter count as the paper's XXS/XS/S (MV2 stages, MobileViT blocks with depths 2/4/3, 2x2
patches, SiLU, FFN = 2 x dim), but:
- no unfold/fold: patches are regrouped by `layers.PatchGrid` (contiguous slices and concatenations on
  channels-last views), so every tensor stays rank 4, laid out (B, C, P, N) (rule 1; Core ML cannot convert the
  reference unfold), and TFLite holds no TRANSPOSE at all (docs/tflite.md);
- the transformer runs as 1x1 convs on (B, C, P, N) with BatchNorm instead of LayerNorm (rule 2). BN has the same
  2*dim parameters as LN and, being a pre-norm in front of 1x1 convs, folds into them at deploy time;
- separate q/k/v 1x1 convs instead of one qkv projection plus split (rule 4); heads are channel slices of
  channels-last tokens, so the attention has no TRANSPOSE in TFLite (docs/tflite.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import DeployConfig, EdgeModel
from .layers import (ClassifierHead, ConvBN, InvertedResidual, PatchGrid, Residual, cat_channels,
                     fold_bn_into_next_conv, head_slices)
from .norms import EXACT_NORMS, drop_affine, fold_affine_into_conv, make_norm
from .registry import ModelEntry, register

OUTPUT_STRIDE = 32


# ---------------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class MobileViTConfig:
    """Every architecture knob of MobileViT v1 (overridable through `create_model(name, **fields)`)."""

    channels: tuple[int, ...] = (16, 16, 24, 48, 64, 80, 320)  # stem, layer1..layer5, final 1x1 expansion
    dims: tuple[int, int, int] = (64, 80, 96)  # transformer width of the MobileViT blocks in layer3..layer5
    depths: tuple[int, int, int] = (2, 4, 3)  # transformer layers per MobileViT block
    expansion: float = 2.0  # MV2 expansion ratio (2 for XXS, 4 for XS/S)
    num_heads: int = 4  # attention heads (the reference code's default; 240 is not a multiple of 32)
    ffn_ratio: float = 2.0  # FFN hidden width = ffn_ratio x dim
    patch_size: int = 2
    layer2_blocks: int = 3  # MV2 blocks in layer2 (the first one strides)
    head_dropout: float = 0.1
    drop_path: float = 0.0  # stochastic depth on the transformer residuals (training only)
    norm: str = "bn"  # transformer norms: "bn" (folds away) or "exact" (LayerNorm as published: norms.py)


def check_input_size(size: int, patch: int) -> None:
    """Every attention stage must see whole patches; the last one runs at stride 32."""
    multiple = OUTPUT_STRIDE * patch
    if size % multiple:
        raise ValueError(f"input size must be a multiple of {multiple} (output stride {OUTPUT_STRIDE} x "
                         f"{patch}x{patch} patches in the last attention stage), got {size}")


# ---------------------------------------------------------------------------------------------------- blocks
class Attention(nn.Module):
    """Pre-norm multi-head softmax attention over the N patches, one sequence per patch position P.

    Input/output (B, d, P, N). Patch positions are folded into the batch dim and q/k/v read as channels-last
    tokens (B*P, N, d) with each head a channel slice (`layers.to_tokens`): in TFLite's NHWC layout that view is
    free, so the attention itself has no TRANSPOSE (splitting C into (heads, dh) by a reshape cost 4 per layer).
    Products are rank-3 `bmm` per head (a rank-4 matmul becomes expand_copy, which XNNPACK does not delegate); the
    largest tensor is the rank-3 score map (B*P, N, N).
    """

    transformer_init = True  # `init_weights`: trunc-normal(0.02) like the paper's Linear layers
    deploy_folds = True  # class switch, False = the deploy form before the scale fold (benchmarks/bench_fold.py)

    def __init__(self, dim: int, num_heads: int, norm: str = "bn") -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention dim {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.norm: nn.Module = make_norm(norm, dim, "layer")
        self.q, self.k, self.v = (nn.Conv2d(dim, dim, 1) for _ in range(3))  # rule 4: no qkv split
        self.proj = nn.Conv2d(dim, dim, 1)
        self.scale_in_q = False  # reparameterize(): the softmax scale lives in the q conv's weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, p, n = x.shape
        y = self.norm(x)
        seqs = lambda t: t.permute(0, 2, 3, 1).reshape(b * p, n, d)  # (B*P, N, d): one sequence per P
        q, k, v = (head_slices(seqs(conv(y)), self.num_heads) for conv in (self.q, self.k, self.v))
        scale = 1.0 if self.scale_in_q else self.scale
        q = q if scale == 1.0 else [qi * scale for qi in q]
        outs = [torch.bmm(torch.softmax(torch.bmm(qi, ki.transpose(1, 2)), dim=-1), vi)
                for qi, ki, vi in zip(q, k, v)]  # heads x (B*P, N, dh)
        out = cat_channels(outs).reshape(b, p, n, d).permute(0, 3, 1, 2)  # (B, d, P, N)
        return self.proj(out)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the pre-norm into q/k/v, then the softmax scale into q: one MUL per head less (36 in
        mobilevit_xxs, each over a (B*P, N, dh) tensor); the same function up to rounding."""
        fold_pre_norm(self, ("q", "k", "v"))
        if self.deploy_folds and not self.scale_in_q:
            self.q.weight.mul_(self.scale)
            self.q.bias.mul_(self.scale)
            self.scale_in_q = True


def fold_pre_norm(block: nn.Module, convs: tuple[str, ...]) -> None:
    """Fold `block.norm` into the 1x1 convs it feeds: a BN entirely (norm -> Identity), an exact norm's
    gamma/beta (the normalization itself stays: it depends on the input)."""
    norm = block.norm
    if isinstance(norm, nn.BatchNorm2d):
        for name in convs:
            setattr(block, name, fold_bn_into_next_conv(norm, getattr(block, name)))
        block.norm = nn.Identity()
    elif isinstance(norm, EXACT_NORMS) and norm.weight is not None:
        for name in convs:
            setattr(block, name, fold_affine_into_conv(norm, getattr(block, name)))
        drop_affine(norm)


class ConvFFN(nn.Module):
    """Pre-norm FFN as 1x1 convs: BN -> conv (dim -> hidden) -> SiLU -> conv (hidden -> dim). (B, d, P, N)."""

    transformer_init = True

    def __init__(self, dim: int, hidden: int, norm: str = "bn", token_norm: str = "layer") -> None:
        super().__init__()
        self.norm: nn.Module = make_norm(norm, dim, token_norm)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.SiLU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))

    @torch.no_grad()
    def reparameterize(self) -> None:
        fold_pre_norm(self, ("fc1",))


class PatchMixer(nn.Module):
    """The shared global half of MobileViT v1/v2 blocks: x (B, C, H, W) -> patches (B, C, P, N) -> 1x1 conv to d
    -> transformer layers -> final norm -> 1x1 ConvBN projection to C -> back to (B, C, H, W).

    The paper's order is conv_in -> unfold -> ... -> fold -> proj; all of conv_in, the final norm (LN/GN in the
    papers, BN here: statistics over (B, P, N) and (B, H, W) are the same set of values) and proj are per-pixel,
    so they may run on either side of the regrouping: the same function. The regrouping is pure data movement,
    so it moves the narrower tensor: the block's C channels when d >= C (v1: conv_in/norm/proj on the patch
    side), the transformer's d channels when d < C (v2, d = C/2: conv_in before, proj after). Either way
    the transformer's input is a regrouped tensor read as a conv input and its output ends in a conv, which keeps
    TFLite's residual stream NHWC; and v2's last block ends in the proj conv, so the head's mean stays NHWC too
    (ending in the regrouping's permute cost one TRANSPOSE in front of the mean). BN sits directly in front of
    the projection conv, into which it folds at deploy time.
    """

    def __init__(self, in_ch: int, dim: int, layers: nn.Module, patch: int, proj_act: type[nn.Module] | None,
                 norm: str = "bn", token_norm: str = "layer") -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_ch, dim, 1, bias=False)
        self.grid = PatchGrid(in_ch, patch)  # regroups the block's input (C channels), before conv_in
        self.layers = layers
        self.norm: nn.Module = make_norm(norm, dim, token_norm)
        self.proj = ConvBN(dim, in_ch, 1, act=proj_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # conv_in, norm and proj are pointwise, so they commute with the patch regrouping: regroup the narrower
        # side (C channels of the block, or d of the transformer), since the regrouping is pure data movement.
        if self.conv_in.out_channels < self.conv_in.in_channels:  # d < C (MobileViTv2: d = C/2)
            tokens, grid = self.grid.to_patches(self.conv_in(x))  # (B, d, P, N)
            y = self.grid.from_patches(self.norm(self.layers(tokens)), grid)  # (B, d, H, W)
            return self.proj(y)  # (B, C, H, W)
        tokens, grid = self.grid.to_patches(x)  # (B, C, P, N)
        y = self.layers(self.conv_in(tokens))  # (B, d, P, N)
        return self.grid.from_patches(self.proj(self.norm(y)), grid)  # (B, C, P, N) -> (B, C, H, W)

    @torch.no_grad()
    def reparameterize(self) -> None:
        # Children first: proj's own BN is already fused, so proj.conv is a plain 1x1 conv with bias.
        if isinstance(self.proj.bn, nn.BatchNorm2d):
            return
        if isinstance(self.norm, nn.BatchNorm2d):
            self.proj.conv = fold_bn_into_next_conv(self.norm, self.proj.conv)
            self.norm = nn.Identity()
        elif isinstance(self.norm, EXACT_NORMS) and self.norm.weight is not None:
            self.proj.conv = fold_affine_into_conv(self.norm, self.proj.conv)  # per-pixel affine: commutes with
            drop_affine(self.norm)  # the regrouping, so it folds across it


class MobileViTBlock(nn.Module):
    """MobileViT v1 block: 3x3 ConvBN (local) -> PatchMixer (global) -> concat with input -> 3x3 ConvBN fusion."""

    def __init__(self, ch: int, dim: int, depth: int, num_heads: int, ffn_ratio: float, patch: int,
                 drop_path: float = 0.0, norm: str = "bn") -> None:
        super().__init__()
        hidden = int(dim * ffn_ratio)
        layers = [m for _ in range(depth) for m in (Residual(Attention(dim, num_heads, norm), drop_path),
                                                    Residual(ConvFFN(dim, hidden, norm), drop_path))]
        self.local = ConvBN(ch, ch, 3, act=nn.SiLU)
        self.mixer = PatchMixer(ch, dim, nn.Sequential(*layers), patch, proj_act=nn.SiLU, norm=norm)
        self.fusion = ConvBN(2 * ch, ch, 3, act=nn.SiLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mixer(self.local(x))  # (B, C, H, W)
        return self.fusion(torch.cat([x, y], dim=1))  # (B, 2C, H, W) -> (B, C, H, W)


# ---------------------------------------------------------------------------------------------------- model
@torch.no_grad()
def init_weights(model: nn.Module) -> None:
    """Kaiming (fan-in) for convs, trunc-normal for the classifier, BN gamma 1 / beta 0, biases 0.

    Fan-in, not the reference code's fan-out: torch computes a depthwise conv's fan-out as C*k*k instead of k*k,
    which shrinks activations by sqrt(C) per depthwise conv, so an untrained model in eval mode (default BN
    statistics) outputs ~0 from layer3 on. Fan-in keeps activations of order one through every stage, which
    benchmarks of random-init models need. No zero-init gammas either: exact zeros let LiteRT prune whole branches
    (docs/TOOLCHAIN.md, "random initialisation"). `PatchGrid` buffers are not parameters and stay.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():  # transformer 1x1 convs are the paper's Linear layers: trunc-normal(0.02) like them
        if getattr(m, "transformer_init", False):
            for conv in m.modules():
                if isinstance(conv, nn.Conv2d):
                    nn.init.trunc_normal_(conv.weight, std=0.02)


def mv2_stage(in_ch: int, out_ch: int, blocks: int, stride: int, expansion: float) -> list[nn.Module]:
    """MobileNetV2 blocks; the first one carries the stride."""
    return [InvertedResidual(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1, expansion, act=nn.SiLU)
            for i in range(blocks)]


class MobileViT(EdgeModel):
    """MobileViT v1: stem -> layer1/2 (MV2) -> layer3..5 (strided MV2 + MobileViT block) -> 1x1 exp -> head."""

    family = "mobilevit"

    def __init__(self, cfg: MobileViTConfig, num_classes: int, deploy: DeployConfig) -> None:
        super().__init__(cfg, num_classes, deploy)
        if len(cfg.channels) != 7 or len(cfg.dims) != 3 or len(cfg.depths) != 3:
            raise ValueError("channels needs 7 values (stem, layer1..5, final), dims and depths 3 each")
        check_input_size(deploy.input_size, cfg.patch_size)
        c, e = cfg.channels, cfg.expansion
        self.stem = ConvBN(3, c[0], 3, stride=2, act=nn.SiLU)
        self.layer1 = nn.Sequential(*mv2_stage(c[0], c[1], 1, 1, e))
        self.layer2 = nn.Sequential(*mv2_stage(c[1], c[2], cfg.layer2_blocks, 2, e))
        for i, (dim, depth) in enumerate(zip(cfg.dims, cfg.depths)):
            block = MobileViTBlock(c[i + 3], dim, depth, cfg.num_heads, cfg.ffn_ratio, cfg.patch_size,
                                   cfg.drop_path, cfg.norm)
            setattr(self, f"layer{i + 3}", nn.Sequential(*mv2_stage(c[i + 2], c[i + 3], 1, 2, e), block))
        self.final_conv = ConvBN(c[5], c[6], 1, act=nn.SiLU)
        self.head = ClassifierHead(c[6], num_classes, cfg.head_dropout)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, C, H/32, W/32)
        x = self.stem(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4, self.layer5):
            x = layer(x)
        return self.final_conv(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, num_classes)
        return self.head(x)


# ---------------------------------------------------------------------------------------------------- variants
DEPLOY = DeployConfig(input_size=256, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_pct=0.9)

_VARIANTS = {  # name: (config, published params in millions, paper Table 1 / ml-cvnets configs)
    "mobilevit_xxs": (MobileViTConfig((16, 16, 24, 48, 64, 80, 320), (64, 80, 96), expansion=2.0), 1.3),
    "mobilevit_xs": (MobileViTConfig((16, 32, 48, 64, 80, 96, 384), (96, 120, 144), expansion=4.0), 2.3),
    "mobilevit_s": (MobileViTConfig((16, 32, 64, 96, 128, 160, 640), (144, 192, 240), expansion=4.0), 5.6),
}

for _name, (_cfg, _params) in _VARIANTS.items():
    register(ModelEntry(name=_name, family="mobilevit", model_cls=MobileViT, cfg=_cfg, deploy=DEPLOY,
                        published_params=_params))

register(ModelEntry(
    name="mobilevit_tiny", family="mobilevit", model_cls=MobileViT,
    cfg=MobileViTConfig((8, 8, 16, 16, 16, 24, 32), (16, 16, 16), depths=(1, 1, 1), num_heads=2, layer2_blocks=1),
    deploy=DeployConfig(input_size=64, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_pct=0.9), tiny=True))
