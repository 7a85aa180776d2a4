"""AdamW with layer-wise learning rates and a per-step cosine schedule with linear warmup.

Layer-wise: hybrids mix convolutions (which like larger rates) with attention (which is less stable), so the
parameters are split into a convolutional and an attention group, each with its own lr multiplier. A parameter is
"attention" when one of the modules that own it has a class name that says so (attention, transformer, mixer,
LeViT stage); everything else (stem, MV2/conv stages, heads) is "conv". Biases, norm parameters and attention-bias
tables get no weight decay, as in timm/DeiT.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn

ATTN_PATTERN = re.compile(r"attn|attention|transformer|mixer|levitstage", re.IGNORECASE)


def attention_param_names(model: nn.Module) -> set[str]:
    """Names of parameters that live under a module whose class name matches ATTN_PATTERN."""
    names: set[str] = set()
    for mod_name, module in model.named_modules():
        if ATTN_PATTERN.search(type(module).__name__):
            prefix = f"{mod_name}." if mod_name else ""
            names.update(prefix + n for n, _ in module.named_parameters())
    return names


def _no_decay(name: str, p: nn.Parameter) -> bool:
    return p.ndim <= 1 or name.endswith(".bias") or "bias_table" in name or "attention_biases" in name


HEAD_PREFIXES = ("head.fc.", "head_dist.fc.")  # the classifier a fine-tune replaces (models.pretrained)


def param_groups(model: nn.Module, weight_decay: float, conv_lr_scale: float, attn_lr_scale: float,
                 attn_names: set[str] | None = None, backbone_lr_scale: float = 1.0) -> list[dict]:
    """Up to six groups: {conv, attn, head} x {decay, no decay}; each carries `lr_scale` and a `kind` label.

    `attn_names` overrides the module-type detection (a QAT graph module has lost its module classes, so the
    names are computed on the eager model before export). With `backbone_lr_scale != 1` (fine-tuning from
    published weights) the new classifier is its own "head" group at the full rate and every other group runs at
    `backbone_lr_scale` times its rate: the pretrained features move slowly, the fresh head learns fast.
    """
    attn = attention_param_names(model) if attn_names is None else attn_names
    groups: dict[tuple[str, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        head = backbone_lr_scale != 1.0 and name.startswith(HEAD_PREFIXES)
        kind = "head" if head else "attn" if name in attn else "conv"
        decay = not _no_decay(name, p)
        scale = 1.0 if head else (attn_lr_scale if kind == "attn" else conv_lr_scale) * backbone_lr_scale
        g = groups.setdefault((kind, decay), {
            "params": [], "kind": kind, "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale})
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                   conv_lr_scale: float = 1.0, attn_lr_scale: float = 1.0,
                   attn_names: set[str] | None = None, backbone_lr_scale: float = 1.0) -> torch.optim.AdamW:
    groups = param_groups(model, weight_decay, conv_lr_scale, attn_lr_scale, attn_names, backbone_lr_scale)
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay)


@dataclass(frozen=True)
class CosineSchedule:
    """lr(step): linear from warmup_lr to peak over `warmup` steps, then cosine from peak to min_lr at `total`."""

    peak: float
    min_lr: float
    warmup_lr: float
    warmup: int
    total: int

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.warmup_lr + (self.peak - self.warmup_lr) * step / max(1, self.warmup)
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_lr + 0.5 * (self.peak - self.min_lr) * (1 + math.cos(math.pi * t))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Apply the schedule's base lr to every group, times the group's layer-wise scale."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
