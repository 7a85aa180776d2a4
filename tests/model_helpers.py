"""Helpers shared by the model-family tests."""
from __future__ import annotations

import torch

from edge_sdk.models import create_model


def calibrated(name: str, **kw) -> torch.nn.Module:
    """A seeded model whose BN running stats are non-trivial (two train-mode passes), so fusion is really tested."""
    torch.manual_seed(0)
    model = create_model(name, **kw)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(*model.example_inputs(4))
    return model.eval()
