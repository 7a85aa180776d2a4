"""int8 activations through XNNPACK's lookup-table kernels: sigmoid (so SiLU = x * sigmoid(x)) and Hardswish.

Why: `XNNPACKQuantizer` annotates neither SiLU nor Hardswish, and ExecuTorch's XNNPACK partitioner accepts
sigmoid and hardswish in fp32 only, so in every int8 MobileViT, LeViT and hybrid each activation ran as
dequantize -> fp32 sigmoid -> fp32 multiply -> quantize over the model's largest tensors (the expanded MV2
channels). Measured with `edge-sdk profile` on mobilevitv2_050 int8: 25 sigmoids, 43 multiplies and 99 converts
took 47% of the run. XNNPACK itself has int8 kernels for both (a 256-entry table built from the tensors' scales).

What this does, at PT2E annotation time (ExecuTorch `int8` only; `mixed` keeps its float activations):
- SiLU is written out as x * sigmoid(x) before annotation (`decompose_silu`), the form ExecuTorch lowers it to
  anyway, so its multiply becomes an ordinary int8 multiply;
- sigmoid gets the fixed output grid XNNPACK's int8 sigmoid uses (scale 1/256, zero point -128: [0, 1) in 256
  steps);
- Hardswish gets an input and an output observer like any int8 op. Its table computes exactly what
  dequantize -> fp32 hardswish -> quantize computed before (same input and output parameters), so Hardswish costs
  no accuracy; the sigmoid's grid adds one rounding of at most 1/512 to SiLU's gate.
The partitioner then needs configs that accept the two ops quantized (`partitioner_configs`).
"""
from __future__ import annotations

from typing import Any

import torch
from torch.fx import GraphModule

ANNOTATION = "quantization_annotation"  # torchao's Q_ANNOTATION_KEY
SIGMOID = torch.ops.aten.sigmoid.default
SILU = (torch.ops.aten.silu.default, torch.ops.aten.silu_.default)
HARDSWISH = (torch.ops.aten.hardswish.default, torch.ops.aten.hardswish_.default)


def decompose_silu(gm: GraphModule) -> int:
    """Rewrite every silu(x) as mul(x, sigmoid(x)) in place; returns how many."""
    done = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in SILU:
            continue
        x = node.args[0]
        with gm.graph.inserting_before(node):
            gate = gm.graph.call_function(SIGMOID, (x,))
            out = gm.graph.call_function(torch.ops.aten.mul.Tensor, (x, gate))
        for new in (gate, out):
            new.meta.update({k: v for k, v in node.meta.items() if k in ("val", "nn_module_stack", "stack_trace")})
        node.replace_all_uses_with(out)
        gm.graph.erase_node(node)
        done += 1
    if done:
        gm.graph.lint()
        gm.recompile()
    return done


def sigmoid_output_spec() -> Any:
    """The fixed int8 grid of XNNPACK's sigmoid: [0, 1) in steps of 1/256."""
    from torchao.quantization.pt2e.quantizer import FixedQParamsQuantizationSpec
    return FixedQParamsQuantizationSpec(dtype=torch.int8, scale=1.0 / 256, zero_point=-128, quant_min=-128,
                                        quant_max=127, qscheme=torch.per_tensor_affine)


def annotate_lut_activations(gm: GraphModule, act_spec: Any) -> int:
    """Annotate every sigmoid and hardswish not yet annotated (input observed with `act_spec`, output: the fixed
    sigmoid grid or `act_spec`); returns how many. An input already observed as its producer's output shares that
    observer (PT2E), so a conv -> hardswish edge keeps one quantize."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    done = 0
    for node in gm.graph.nodes:
        if node.op != "call_function" or ANNOTATION in node.meta:
            continue
        if node.target == SIGMOID:
            out_spec = sigmoid_output_spec()
        elif node.target in HARDSWISH:
            out_spec = act_spec
        else:
            continue
        x = node.args[0]
        node.meta[ANNOTATION] = QuantizationAnnotation(input_qspec_map={x: act_spec}, output_qspec=out_spec,
                                                       _annotated=True)
        done += 1
    return done


def partitioner_configs() -> list[type]:
    """ExecuTorch's XNNPACK partitioner configs with sigmoid and hardswish accepted quantized as well as fp32."""
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    from executorch.backends.xnnpack.partition.config.generic_node_configs import HardswishConfig, SigmoidConfig
    from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType

    def quantized_too(base: type) -> type:
        def supported_precision_types(self: Any) -> list:
            return [ConfigPrecisionType.FP32, ConfigPrecisionType.STATIC_QUANT]
        return type(f"Int8{base.__name__}", (base,), {"supported_precision_types": supported_precision_types})

    lut = {SigmoidConfig: quantized_too(SigmoidConfig), HardswishConfig: quantized_too(HardswishConfig)}
    return [lut.get(cfg, cfg) for cfg in ALL_PARTITIONER_CONFIGS]
