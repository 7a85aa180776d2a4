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


def quantized(model: torch.nn.Module, quantizer, x: torch.Tensor) -> torch.fx.GraphModule:
    """PT2E prepare -> calibrate on every sample of `x` (batch 1) -> convert: the simulated-quantized module."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    prepared = prepare_pt2e(torch.export.export(model, (x[:1],)).module(), quantizer)
    with torch.no_grad():
        for xi in x.split(1):
            prepared(xi)
    return convert_pt2e(prepared)


def plain_quantizer():  # noqa: ANN201
    """XNNPACKQuantizer as it comes (per-channel symmetric), without the converters' corrections."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
