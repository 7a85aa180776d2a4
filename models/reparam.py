"""Deploy-time reparameterization: fuse conv+BN and cache constants, before every export.

Ml-fastvit's lesson: always reparameterize before export and check the outputs did not change.
"""
from __future__ import annotations

import copy

from torch import nn


def reparameterize_model(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Return an eval-mode model whose blocks have called `reparameterize()` (children first).

    Blocks implement `reparameterize()` when they can fold (ConvBN folds BN; LeViT attention caches its bias).
    Outputs agree with the unfused eval model to float rounding (tested for every zoo model).
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    for module in reversed(list(model.modules())):  # children before parents
        if module is not model and hasattr(module, "reparameterize"):
            module.reparameterize()
    return model
