"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) on a batch, with label smoothing, as DeiT uses them.

Per batch: with probability `prob` mix; choose CutMix with probability `switch_prob` when both are enabled.
Targets become soft (B, num_classes). The generator is passed in so a resumed run mixes exactly the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def one_hot_smooth(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """(B,) int64 -> (B, C) float with `smoothing` spread over all classes."""
    off = smoothing / num_classes
    out = torch.full((y.shape[0], num_classes), off, device=y.device)
    return out.scatter_(1, y.view(-1, 1), 1.0 - smoothing + off)


@dataclass(frozen=True)
class Mixer:
    num_classes: int
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5
    smoothing: float = 0.1

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, H, W), y (B,) -> mixed x, soft targets (B, C). Pairs sample i with i reversed (timm)."""
        target = one_hot_smooth(y, self.num_classes, self.smoothing)
        if not self.enabled or torch.rand(1, generator=gen).item() >= self.prob:
            return x, target
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or
                                                torch.rand(1, generator=gen).item() < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = _beta(alpha, gen)
        x_flip = x.flip(0)
        if use_cutmix:
            lam, (t, b, l, r) = _cut_box(x.shape[-2], x.shape[-1], lam, gen)
            x = x.clone()
            x[..., t:b, l:r] = x_flip[..., t:b, l:r]
        else:
            x = x * lam + x_flip * (1 - lam)
        return x, target * lam + target.flip(0) * (1 - lam)


def _beta(alpha: float, gen: torch.Generator) -> float:
    """Beta(alpha, alpha) from two Gamma draws made with `gen` (torch.distributions has no generator argument)."""
    g1 = torch._standard_gamma(torch.tensor([alpha], dtype=torch.float64), generator=gen)
    g2 = torch._standard_gamma(torch.tensor([alpha], dtype=torch.float64), generator=gen)
    return float(g1 / (g1 + g2))


def _cut_box(h: int, w: int, lam: float, gen: torch.Generator) -> tuple[float, tuple[int, int, int, int]]:
    """A box of area (1 - lam) at a uniform center, clipped; returns the lam that matches the clipped area."""
    cut = (1 - lam) ** 0.5
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = (int(torch.randint(0, n, (1,), generator=gen)) for n in (h, w))
    t, b = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    l, r = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    return 1 - (b - t) * (r - l) / (h * w), (t, b, l, r)
