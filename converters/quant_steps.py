"""A PT2E quantizer with extra graph steps around a wrapped quantizer's own annotation.

Why: the converters keep `XNNPACKQuantizer` (its patterns are what XNNPACK's int8 kernels expect) and correct it in
a few measured places (converters/quant_clamp.py, converters/quant_int8_ops.py); each correction is a plain function on
the FX graph, run before (`transforms`) or after (`annotations`) the wrapped quantizer annotates.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from torch.fx import GraphModule

GraphStep = Callable[[GraphModule], Any]


def with_steps(quantizer: Any, transforms: Sequence[GraphStep] = (), annotations: Sequence[GraphStep] = ()) -> Any:
    """`quantizer` whose `transform_for_annotation` then runs `transforms`, and whose `annotate` then runs
    `annotations` (each in order, on the graph in place)."""
    from torchao.quantization.pt2e.quantizer import Quantizer

    class WithSteps(Quantizer):
        """Delegates every step to the wrapped quantizer, then runs the extra graph steps."""

        def transform_for_annotation(self, model: GraphModule) -> GraphModule:
            model = quantizer.transform_for_annotation(model)
            for fn in transforms:
                fn(model)
            return model

        def annotate(self, model: GraphModule) -> GraphModule:
            model = quantizer.annotate(model)
            for fn in annotations:
                fn(model)
            return model

        def validate(self, model: GraphModule) -> None:
            quantizer.validate(model)

    return WithSteps()
