"""Clamp-aware PT2E annotation: quantize a conv's output AFTER its ReLU6/hardtanh, as XNNPACK and TFLite run it.

Why: `XNNPACKQuantizer` fuses conv + ReLU (the observer sits after the ReLU) but treats hardtanh (ReLU6) as an op
that shares its input's observer. The int8 scale of every conv feeding a ReLU6 is then set by the conv's
pre-activation range, negative tail and values far above 6 included, and the [0, 6] that the next layer sees gets
a fraction of the 256 levels. On EfficientNet-Lite0 with its published weights (every conv but the projections
ends in ReLU6) that took the int8 .pte to 78.7 % top-1 agreement with fp32 over 216 real-photo views (cosine
0.920); with the observer after the clamp, docs/models-efficientnet.md has the number.

The graph ExecuTorch lowers is then conv -> hardtanh -> quantize, the pattern XNNPACK's FuseActivationPass folds
into the convolution's output min/max: one quantized conv kernel, no separate clamp. TFLite's converter does the
same fusion for its own int8 path (fused_activation_function RELU6).
"""
from __future__ import annotations

from typing import Any

import torch
from torch.fx import GraphModule, Node

ANNOTATION = "quantization_annotation"  # torchao's Q_ANNOTATION_KEY
CLAMPS = (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default)
# Producers whose quantized partition takes a fused clamp (XNNPACK's gemm configs: fused_acts relu, hardtanh).
# add is not among them: its quantized config expects the quantize right after the add.
FUSABLE = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)


def move_observers_after_clamps(gm: GraphModule) -> int:
    """Give each clamp fed by a fusable, annotated producer its own output observer and leave the producer's output
    unquantized; returns how many clamps moved. Producers with other users keep their annotation (no fusion)."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    moved = 0
    for clamp in gm.graph.nodes:
        producer = clamp.args[0] if clamp.op == "call_function" and clamp.target in CLAMPS else None
        if not _fusable(producer):
            continue
        annotation = producer.meta[ANNOTATION]
        spec, annotation.output_qspec = annotation.output_qspec, None
        clamp.meta[ANNOTATION] = QuantizationAnnotation(input_qspec_map={}, output_qspec=spec, _annotated=True)
        moved += 1
    return moved


def _fusable(producer: Any) -> bool:
    if not isinstance(producer, Node) or producer.op != "call_function" or producer.target not in FUSABLE:
        return False
    annotation = producer.meta.get(ANNOTATION)
    return annotation is not None and annotation.output_qspec is not None and len(producer.users) == 1


def clamp_aware(quantizer: Any) -> Any:
    """`quantizer` (configured as usual) whose annotation then moves observers after clamps."""
    from .quant_steps import with_steps
    return with_steps(quantizer, annotations=(move_observers_after_clamps,))
