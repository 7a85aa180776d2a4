"""The model contract every zoo family implements.

Everything downstream (converters, runtime, training) relies only on this: `forward_features` returns a 4-D
NCHW feature map, `forward_head` turns it into logits, `example_inputs` gives export-ready inputs and `deploy`
says how a camera frame must be prepared (input size, resize/crop, mean/std, labels).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DeployConfig:
    """How to feed the model: pixels are RGB scaled to [0, 1], then `(x - mean) / std`.

    `resize` is the shorter side an image is resized to before a center crop of `input_size`
    (timm's crop_pct convention: resize = input_size / crop_pct).
    """

    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.875
    labels: tuple[str, ...] | None = None

    @property
    def resize(self) -> int:
        return int(round(self.input_size / self.crop_pct))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resize"] = self.resize
        d["labels"] = list(self.labels) if self.labels else None
        return d


class EdgeModel(nn.Module):
    """Base class of every zoo model.

    Subclasses set `self.cfg` (a frozen dataclass), implement `forward_features` and `forward_head`, and list their
    stages in `stages()` so `edge-sdk info` can print per-stage output shapes.
    """

    family: str = "base"
    name: str = ""

    def __init__(self, cfg: Any, num_classes: int, deploy: DeployConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.deploy = deploy

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, C, h, w)
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, num_classes)
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def stages(self) -> list[tuple[str, nn.Module]]:
        """Named top-level stages in execution order (stem first), for per-stage shape reports."""
        return [(n, m) for n, m in self.named_children()]

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor]:
        """Inputs of the deploy shape, in the normalized range the model sees in practice."""
        s = self.deploy.input_size
        return (torch.randn(batch, 3, s, s),)

    def config_dict(self) -> dict[str, Any]:
        """The frozen config as plain JSON-able values."""
        return dataclasses.asdict(self.cfg) if dataclasses.is_dataclass(self.cfg) else dict(self.cfg)

    def reparameterize(self) -> "EdgeModel":
        """Fuse for deployment in place (conv+BN, cached attention biases); returns self in eval mode."""
        from .reparam import reparameterize_model
        return reparameterize_model(self, inplace=True)
