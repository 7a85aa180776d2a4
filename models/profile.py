"""Parameter and MAC counts, and per-stage output shapes, for `edge-sdk models` / `edge-sdk info` and README."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...] | None = None) -> int:
    """Multiply-accumulates of one forward pass (convs, matmuls incl. attention), from torch's FLOP counter / 2."""
    model = model.eval()
    if inputs is None:
        inputs = model.example_inputs(1)
        if next(model.parameters()).is_meta:
            inputs = tuple(x.to("meta") for x in inputs)
    counter = FlopCounterMode(display=False)
    with counter:
        model(*inputs)
    return counter.get_total_flops() // 2


@torch.no_grad()
def stage_shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """Output shape of each named stage for one example input."""
    shapes: list[tuple[str, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=name: shapes.append((n, tuple(out.shape))))
             for name, m in model.stages()]
    try:
        inputs = model.example_inputs(1)
        if next(model.parameters()).is_meta:
            inputs = tuple(x.to("meta") for x in inputs)
        model.eval()(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def meta_model(name: str, **kwargs) -> nn.Module:
    """Build a zoo model on the meta device: shapes, params and MACs without allocating or initialising weights.

    Counting on meta tensors gives the same numbers as on real ones (checked in tests) in a fraction of the time,
    which keeps `edge-sdk models` fast for the whole zoo.
    """
    from .registry import create_model
    with torch.device("meta"):
        return create_model(name, **kwargs).eval()

