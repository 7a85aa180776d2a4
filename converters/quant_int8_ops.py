"""int8 for ops XNNPACK has int8 kernels for but ExecuTorch's quantizer or partitioner leave in fp32: the table
activations sigmoid (so SiLU = x * sigmoid(x)) and Hardswish, and constant (zero) padding.

Why: `XNNPACKQuantizer` annotates none of them, and ExecuTorch's XNNPACK partitioner accepts sigmoid, hardswish
and constant_pad_nd in fp32 only, so each ran as dequantize -> fp32 op -> quantize inside the int8 delegate:
- SiLU in every int8 MobileViT (dequantize -> fp32 sigmoid -> fp32 multiply -> quantize over the expanded MV2
  channels; measured with `edge-sdk profile` on mobilevitv2_050 int8: 25 sigmoids, 43 multiplies and 99 converts
  took 47% of the run), Hardswish in LeViT and the hybrids;
- EfficientNet-Lite0's TF "same" padding (an explicit ZeroPad2d before each stride-2 conv): 5 fp32 pads and their
  10 converts were 15% of its int8 run.
XNNPACK itself runs all three in int8 (sigmoid and Hardswish through a 256-entry table built from the tensors'
scales; the pad fills with the quantized zero).

What this does, at PT2E annotation time (ExecuTorch `int8` only; `mixed` keeps its float activations):
- SiLU is written out as x * sigmoid(x) before annotation (`decompose_silu`), the form ExecuTorch lowers it to
  anyway, so its multiply becomes an ordinary int8 multiply;
- sigmoid gets the fixed output grid XNNPACK's int8 sigmoid uses (scale 1/256, zero point -128: [0, 1) in 256
  steps);
- Hardswish gets an input and an output observer like any int8 op. Its table computes exactly what
  dequantize -> fp32 hardswish -> quantize computed before (same input and output parameters), so Hardswish costs
  no accuracy; the sigmoid's grid adds one rounding of at most 1/512 to SiLU's gate;
- a constant pad with value 0 shares its input's quantization (0.0 is exactly the zero point of an affine int8
  tensor), so it copies int8 values: one rounding less than before.
The partitioner then needs configs that accept the three ops quantized (`partitioner_configs`).
"""
from __future__ import annotations

from typing import Any

import torch
from torch.fx import GraphModule

ANNOTATION = "quantization_annotation"  # torchao's Q_ANNOTATION_KEY
SIGMOID = torch.ops.aten.sigmoid.default
SILU = (torch.ops.aten.silu.default, torch.ops.aten.silu_.default)
HARDSWISH = (torch.ops.aten.hardswish.default, torch.ops.aten.hardswish_.default)
PADS = (torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default)  # ZeroPad2d exports as aten.pad


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


def annotate_int8_ops(gm: GraphModule, act_spec: Any) -> int:
    """Annotate every sigmoid, hardswish and zero pad not yet annotated (input observed with `act_spec`; output:
    the fixed sigmoid grid, `act_spec`, or the pad's input observer); returns how many. An input already observed
    as its producer's output shares that observer (PT2E), so a conv -> hardswish edge keeps one quantize."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec
    done = 0
    for node in gm.graph.nodes:
        if node.op != "call_function" or ANNOTATION in node.meta:
            continue
        x = node.args[0] if node.args else None
        if node.target == SIGMOID:
            out_spec = sigmoid_output_spec()
        elif node.target in HARDSWISH:
            out_spec = act_spec
        elif node.target in PADS and _zero_fill(node):
            out_spec = SharedQuantizationSpec((x, node))
        else:
            continue
        node.meta[ANNOTATION] = QuantizationAnnotation(input_qspec_map={x: act_spec}, output_qspec=out_spec,
                                                       _annotated=True)
        done += 1
    return done


def _zero_fill(pad: Any) -> bool:
    """A constant pad with value 0 and no cropping (aten.pad: (x, pad, mode, value); constant_pad_nd: (x, pad,
    value))."""
    if pad.target == torch.ops.aten.pad.default:
        mode = pad.args[2] if len(pad.args) > 2 else pad.kwargs.get("mode", "constant")
        value = pad.args[3] if len(pad.args) > 3 else pad.kwargs.get("value")
        if mode != "constant":
            return False
    else:
        value = pad.args[2] if len(pad.args) > 2 else pad.kwargs.get("value", 0.0)
    return value in (None, 0, 0.0) and all(p >= 0 for p in pad.args[1])


def int8_grids_ok(op: str, src_dq: Any, out_q: Any) -> bool:
    """Whether XNNPACK's int8 kernel for `op` takes the grids around it (the dequantize feeding it, the quantize
    after it): a pad copies int8 values, so only between equal grids (else the .pte fails to load:
    xnn_status_invalid_parameter); a sigmoid only onto its fixed grid; the rest on any. The partitioner and the
    manifest's int8/float split (executorch.precision_split) both ask this, so the report says what really runs."""
    if op in ("pad", "constant_pad_nd"):
        return tuple(src_dq.args[1:3]) == tuple(out_q.args[1:3])
    if op == "sigmoid":
        scale, zero = out_q.args[1:3]
        return isinstance(scale, float) and abs(scale * 256 - 1) < 1e-6 and zero == -128
    return True


def partitioner_configs() -> list[type]:
    """ExecuTorch's XNNPACK partitioner configs with sigmoid, hardswish and constant pad accepted quantized as well
    as fp32; one between grids its int8 kernel does not take (`int8_grids_ok`: an unannotated pad or sigmoid in
    `mixed`, a user's model) stays fp32 between converts, as ExecuTorch lowers it by default."""
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    from executorch.backends.xnnpack.partition.config.generic_node_configs import (
        ConstantPadConfig, HardswishConfig, SigmoidConfig)
    from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType
    from executorch.backends.xnnpack.utils.quant_utils import is_dequant, is_quant

    def quantized_too(base: type, op: str) -> type:
        def supported_precision_types(self: Any) -> list:
            return [ConfigPrecisionType.FP32, ConfigPrecisionType.STATIC_QUANT]

        def get_node_and_deps(self: Any, node: Any, ep: Any) -> list:
            src, users = node.args[0], list(node.users)
            if (is_dequant(src) and len(users) == 1 and is_quant(users[0])
                    and not int8_grids_ok(op, src, users[0])):
                return [node]
            return base.get_node_and_deps(self, node, ep)

        return type(f"Int8{base.__name__}", (base,), {"supported_precision_types": supported_precision_types,
                                                      "get_node_and_deps": get_node_and_deps})

    int8 = {SigmoidConfig: quantized_too(SigmoidConfig, "sigmoid"),
            HardswishConfig: quantized_too(HardswishConfig, "hardswish"),
            ConstantPadConfig: quantized_too(ConstantPadConfig, "constant_pad_nd")}
    return [int8.get(cfg, cfg) for cfg in ALL_PARTITIONER_CONFIGS]
