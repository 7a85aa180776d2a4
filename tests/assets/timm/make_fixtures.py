"""Build the timm fixtures of tests/test_pretrained.py (run by hand in the timm side venv, never by the suite):

    ~/timm-venv/bin/python tests/assets/timm/make_fixtures.py

(~/timm-venv: torch 2.14.1 + torchvision 0.29.1 + timm, docs/TOOLCHAIN.md; the project's venv never gets timm.)

For every zoo family, a REDUCED configuration of timm's own model class (the same code the published checkpoints
run through, just narrower and shallower, yet exercising every key pattern: repeated blocks, several stages,
fused projections, shrink attention, both heads) gets random, non-trivial weights (BN statistics, norm gammas,
attention biases), rounded to fp16. Saved per fixture:
- `<name>.safetensors`: the timm-layout state dict, fp16 (what a user's checkpoint looks like, only smaller);
- `<name>.io.safetensors`: fixed inputs (fp16 values) and timm's fp32 outputs (logits and the
  pre-pool feature map) computed with those fp16-rounded weights;
- `fixtures.json`: per fixture the zoo model and config overrides that must reproduce timm, and the
  timm class used.
Plus `shapes.json.gz`: key -> shape of every published full-size variant (timm.create_model, no weights), so
the suite checks that each published checkpoint layout maps onto our variant of the same name.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file
from timm.models import byobnet, efficientnet, levit, mobilevit

OUT = Path(__file__).resolve().parent
torch.manual_seed(0)


def randomize(model: torch.nn.Module) -> None:
    """Non-trivial weights: BN running stats and affines, norm gammas/betas, attention biases; then fp16-round
    every float tensor so the saved fp16 file and the reference outputs describe the same function."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif "attention_biases" in name:
                t.copy_(torch.randn(t.shape, generator=g) * 0.5)
            elif t.dim() == 1 and name.endswith("weight"):  # BN / LN / GN gammas
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            elif name.endswith("bias"):
                t.copy_(torch.randn(t.shape, generator=g) * (0.01 if t.numel() == 10 else 0.1))  # classifier: small
            t.copy_(t.half().float())


def inputs(size: int) -> torch.Tensor:
    """Two images with different global content (smooth random fields of 4x4 and 8x8 cells, plus a little
    noise), fp16-exact: i.i.d. noise images all look alike after pooling and would make every output the same."""
    g = torch.Generator().manual_seed(2)
    fields = [torch.nn.functional.interpolate(torch.randn(1, 3, c, c, generator=g), size=(size, size),
                                              mode="bilinear", align_corners=False) for c in (4, 8)]
    x = torch.cat(fields) * 1.5 + torch.randn(2, 3, size, size, generator=g) * 0.2
    return x.half().float()


def save(name: str, model: torch.nn.Module, size: int, zoo: str, overrides: dict, num_classes: int,
         registry: dict, timm_class: str) -> None:
    model.eval()
    randomize(model)
    x = inputs(size)
    with torch.no_grad():
        y = model(x)
        feats = model.forward_features(x)  # pre-pool map (LeViT: (B, N, C) tokens): input-sensitive everywhere
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(OUT / f"{name}.safetensors"))
    save_file({"input": x.half().contiguous(), "output": y.contiguous(), "features": feats.contiguous()}, str(OUT / f"{name}.io.safetensors"))
    registry[name] = {"zoo": zoo, "overrides": overrides, "num_classes": num_classes, "input_size": size,
                      "timm_class": timm_class, "timm_version": timm.__version__, "torch_version": torch.__version__}
    print(f"{name}: {sum(v.numel() for v in state.values())} values, out scale {y.abs().max():.3g}")


def mobilevit_v1(registry: dict) -> None:
    """MobileViT v1: 2 transformer layers in the first block (indices 0/1 -> our 0..3), 4 heads, 2 MV2 in layer2."""
    ir, mvb = mobilevit._inverted_residual_block, mobilevit._mobilevit_block
    cfg = byobnet.ByoModelCfg(
        blocks=(ir(d=1, c=8, s=1, br=2.0), ir(d=2, c=16, s=2, br=2.0),
                mvb(d=1, c=16, s=2, transformer_dim=16, transformer_depth=2, patch_size=2, br=2.0),
                mvb(d=1, c=16, s=2, transformer_dim=16, transformer_depth=1, patch_size=2, br=2.0),
                mvb(d=1, c=24, s=2, transformer_dim=16, transformer_depth=1, patch_size=2, br=2.0)),
        stem_chs=8, stem_type="3x3", stem_pool="", downsample="", act_layer="silu", num_features=32)
    model = byobnet.ByobNet(cfg, num_classes=10)
    save("mobilevit_reduced", model, 64, "mobilevit_xxs",
         {"channels": [8, 8, 16, 16, 16, 24, 32], "dims": [16, 16, 16], "depths": [2, 1, 1], "num_heads": 4,
          "layer2_blocks": 2, "expansion": 2.0, "norm": "exact", "input_size": 64}, 10, registry,
         "timm.models.byobnet.ByobNet(mobilevit blocks)")


def mobilevit_v2(registry: dict) -> None:
    """MobileViTv2 at multiplier 0.25 (timm's own cfg builder), transformer depths (2, 1, 1)."""
    cfg = mobilevit._mobilevitv2_cfg(0.25)
    blocks = list(cfg.blocks)
    for i, depth in ((2, 2), (3, 1), (4, 1)):  # (inverted residual, mobilevit2 block) pairs
        ir_b, mv_b = blocks[i]
        blocks[i] = (ir_b, byobnet.ByoBlockCfg(**{**mv_b.__dict__, "block_kwargs": {**mv_b.block_kwargs,
                                                                                     "transformer_depth": depth}}))
    # stem 16, not timm's int(32 x 0.25) = 8: ml-cvnets (and our MobileViTv2Config) clamp the stem to >= 16; at
    # the published widths (>= 0.5) both give the same stem, which shapes.json.gz checks.
    cfg = byobnet.ByoModelCfg(**{**cfg.__dict__, "blocks": tuple(blocks), "stem_chs": 16})
    model = byobnet.ByobNet(cfg, num_classes=10)
    save("mobilevitv2_reduced", model, 64, "mobilevitv2_050",
         {"width": 0.25, "depths": [2, 1, 1], "norm": "exact", "input_size": 64}, 10, registry,
         "timm.models.byobnet.ByobNet(mobilevitv2 cfg x0.25)")


def levit_reduced(registry: dict) -> None:
    """LeViT (distilled): three stages, two shrink attentions, two blocks in stage 0, both heads."""
    model = levit.LevitDistilled(img_size=128, num_classes=10, embed_dim=(32, 48, 64), key_dim=16,
                                 num_heads=(2, 3, 4), depth=(2, 1, 1))
    save("levit_reduced", model, 128, "levit_128s",
         {"dims": [32, 48, 64], "heads": [2, 3, 4], "depths": [2, 1, 1], "key_dim": 16, "input_size": 128},
         10, registry, "timm.models.levit.LevitDistilled")


def _effnet_stages(model: torch.nn.Module) -> list[list[int]]:
    """Our EfficientNetLiteConfig.stages (expand, kernel, stride, repeats, out) read off timm's built blocks."""
    stages = []
    for stage in model.blocks:
        b = stage[0]
        if hasattr(b, "conv_pwl"):
            expand = b.conv_pw.out_channels // b.conv_pw.in_channels
            out = b.conv_pwl.out_channels
        else:
            expand, out = 1, b.conv_pw.out_channels
        stages.append([expand, b.conv_dw.kernel_size[0], b.conv_dw.stride[0], len(stage), out])
    return stages


def efficientnet_reduced(registry: dict) -> None:
    """EfficientNet-Lite at channel x0.25 / depth x0.5 through timm's own Lite generator: timm's PyTorch variant
    (symmetric padding, BN eps 1e-5) and its TF port (`tf_`: 'same' padding, BN eps 1e-3)."""
    for prefix, padding, eps, kw in (("", "symmetric", 1e-5, {}),
                                     ("tf_", "same", 1e-3, {"bn_eps": 1e-3, "pad_type": "same"})):
        model = efficientnet._gen_efficientnet_lite(f"{prefix}efficientnet_lite0", channel_multiplier=0.25,
                                                    depth_multiplier=0.5, num_classes=10, **kw)
        save(f"{prefix}efficientnet_lite_reduced", model, 64, "efficientnet_lite0",
             {"stem": model.conv_stem.out_channels, "stages": _effnet_stages(model),
              "head": model.conv_head.out_channels, "padding": padding, "bn_eps": eps, "input_size": 64},
             10, registry, f"timm {prefix}efficientnet_lite0 generator (x0.25, depth x0.5)")


def published_shapes() -> None:
    names = ([f"mobilevit_{v}" for v in ("xxs", "xs", "s")]
             + [f"mobilevitv2_{w}" for w in ("050", "075", "100", "125", "150", "175", "200")]
             + [f"levit_{v}" for v in ("128s", "128", "192", "256", "384")] + ["efficientnet_lite0"])
    shapes = {n: {k: list(v.shape) for k, v in timm.create_model(n).state_dict().items()} for n in names}
    with gzip.open(OUT / "shapes.json.gz", "wt", encoding="utf-8") as f:
        json.dump(shapes, f)
    print(f"shapes of {len(shapes)} published variants")


def main() -> None:
    registry: dict = {}
    mobilevit_v1(registry)
    mobilevit_v2(registry)
    levit_reduced(registry)
    efficientnet_reduced(registry)
    (OUT / "fixtures.json").write_text(json.dumps(registry, indent=1) + "\n", encoding="utf-8")
    published_shapes()


if __name__ == "__main__":
    main()
