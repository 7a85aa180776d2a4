"""Quantization-aware training with PT2E (torchao `prepare_qat_pt2e`) and the XNNPACK int8 configuration.

The model is exported (`torch.export`, dynamic batch), fake-quantize nodes are inserted where the XNNPACK int8
config (symmetric, per-channel weights, `is_qat=True`) will quantize, and training continues through them, so the
weights learn to tolerate int8 rounding. The prepared module keeps the eager model's parameter names, so the
checkpoint's `state_dict` holds plain float weights that `create_model(checkpoint=...)` and
`edge-sdk convert --checkpoint` load like any other; the int8 converter then calibrates those weights again (PTQ).
The learned fake-quant ranges are kept in `qat_state_dict` (for resuming), not handed to the converter.
"""
from __future__ import annotations

import torch
from torch import nn

from edge_sdk.errors import EdgeError


def qat_quantizer():  # noqa: ANN201 (XNNPACKQuantizer)
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))


def prepare_qat(model: nn.Module, device: torch.device) -> nn.Module:
    """Export in train mode with a dynamic batch and insert fake-quant; `.train()`/`.eval()` keep working."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
    example = tuple(t.to(device) for t in model.example_inputs(2))
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        gm = torch.export.export(model.train(), example, dynamic_shapes=({0: batch},)).module()
        prepared = prepare_qat_pt2e(gm, qat_quantizer())
    except Exception as exc:  # export/quantizer errors are long; keep the first line
        raise EdgeError(f"QAT preparation failed for {getattr(model, 'name', type(model).__name__)}: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from exc
    allow_exported_model_train_eval(prepared)
    for attr in ("name", "family", "deploy", "num_classes"):
        setattr(prepared, attr, getattr(model, attr, None))
    return prepared


def set_train(prepared: nn.Module, mode: bool) -> None:
    """BatchNorm and dropout in an exported graph switch through torchao's helpers, not `module.train()`."""
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
    (move_exported_model_to_train if mode else move_exported_model_to_eval)(prepared)


def eager_state_dict(prepared: nn.Module, fresh: nn.Module) -> dict[str, torch.Tensor]:
    """The float weights of a QAT-prepared module under the eager model's names (observers dropped)."""
    own = prepared.state_dict()
    missing = [k for k in fresh.state_dict() if k not in own]
    if missing:
        raise EdgeError(f"QAT module lost parameter names ({', '.join(missing[:3])}); cannot save eager weights")
    return {k: own[k].detach().clone() for k in fresh.state_dict()}
