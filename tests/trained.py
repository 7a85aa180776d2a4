"""Trained tiny zoo models for tests: weights shipped in tests/assets/tiny (see tests/assets/train_tiny_zoo.py).

Quantization parity is judged on models that make decisions: these weights were trained on the generated
shape x texture data, so their top-1 on real decoded images is decisive, unlike random-weight tiny models.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

ASSETS = Path(__file__).resolve().parent / "assets" / "tiny"
TINY = ("levit_tiny", "mobilevit_tiny", "mobilevitv2_tiny", "pbhybrid_micro", "cctt_micro")
CLASSES = 10


def trained_path(name: str) -> Path:
    """The shipped edge-sdk weights file of tiny model `name` (convert accepts it as MODEL|CHECKPOINT)."""
    return ASSETS / f"{name}.pt"


def trained_tiny(name: str) -> nn.Module:
    """Tiny model `name` with its trained weights, in eval mode (not reparameterized: convert does that)."""
    from edge_sdk.models import create_model
    return create_model(name, num_classes=CLASSES, checkpoint=trained_path(name)).eval()
