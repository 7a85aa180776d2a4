"""ExecuTorch `.pte` target: XNNPACK (fp32, int8, mixed) or the Core ML delegate (fp32, fp16).

The pipeline is ExecuTorch's own handful of plain steps: `torch.export` -> (PT2E quantize) -> lower with a
partitioner -> serialize. Every step is a short function so the tests and the docs can point at it.

Precisions (XNNPACK):
- fp32: the exported program, fully delegated to XNNPACK.
- int8: PT2E static quantization with `XNNPACKQuantizer` (symmetric per-channel int8 weights, per-tensor affine
  int8 activations from a histogram observer), calibrated on real or generated images; the .pte computes what the
  simulated-quantized model computes. XNNPACK's quantizer quantizes conv, linear, add, mul, cat and pooling;
  SiLU (as x * sigmoid(x)) and Hardswish run on XNNPACK's int8 table kernels and zero pads copy int8
  (converters/quant_int8_ops.py); ReLU6 is observed after the clamp (converters/quant_clamp.py). Normalizers,
  softmax, bmm and exp/div of the linear attention stay float inside the same delegate (dequantize -> fp32 op ->
  quantize). The report lists them (`float_ops`).
- mixed: only convolutions OUTSIDE attention modules are quantized; every module whose class name contains
  "Attention" (q/k/v projections, matmuls, softmax) stays float ("convs int8, attention float").
Measured on the trained tiny zoo (docs/converters.md, "int8 on trained weights"): the int8 error is dominated by
the per-tensor activation quantization of the convolutional stages (heavy-tailed SiLU outputs feeding depthwise
and projection convs), not by attention; weights alone (per-channel) cost little.
Core ML delegate: produced on Linux, but the Linux ExecuTorch runtime has no Core ML backend, so parity is not run.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from edge_sdk.errors import EdgeError, toolchain_errors
from edge_sdk.manifest import InputSpec, OutputSpec

from .base import Artifact, ConvertOptions, Target, deploy_of, step
from .quant_clamp import clamp_aware, move_observers_after_clamps
from .quant_int8_ops import annotate_int8_ops, decompose_silu, int8_grids_ok, partitioner_configs
from .quant_steps import with_steps
from .weight_rounding import fit_depthwise_rounding

MODEL_FILE = "model.pte"
# Nodes the delegation report does not count as work left outside a delegate: graph plumbing only.
PLUMBING = {"getitem", "output", "placeholder"}
DEPLOYMENT_TARGETS = ("iOS16", "iOS17", "iOS18")


def attention_module_types(model: nn.Module) -> set[type]:
    """Module classes that hold attention (class name contains 'Attention'): kept float by `mixed`."""
    return {type(m) for m in model.modules() if "Attention" in type(m).__name__}


def export_program(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """torch.export with the failure turned into one EdgeError line."""
    with toolchain_errors("torch.export"):
        return torch.export.export(model, (example,))


def make_quantizer(model: nn.Module, precision: str):  # noqa: ANN201 (XNNPACKQuantizer, imported lazily)
    """The XNNPACKQuantizer for `int8` (everything XNNPACK can quantize) or `mixed` (convs outside attention)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    config = get_symmetric_quantization_config(is_per_channel=True)
    quantizer = XNNPACKQuantizer()
    if precision == "int8":  # + SiLU / Hardswish / zero pads in int8 (converters/quant_int8_ops.py)
        return with_steps(quantizer.set_global(config), transforms=(decompose_silu,), annotations=(
            move_observers_after_clamps, lambda gm: annotate_int8_ops(gm, config.input_activation)))
    quantizer.set_operator_type(torch.ops.aten.conv2d.default, config)
    for module_type in attention_module_types(model):  # None: excluded from every other config, left float
        quantizer.set_module_type(module_type, None)
    return clamp_aware(quantizer)


def quantize(model: nn.Module, example: torch.Tensor, precision: str,
             calib: Callable[[], list[torch.Tensor]]) -> torch.export.ExportedProgram:
    """PT2E static quantization: prepare, calibrate on every batch, convert, export again."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    with step("quantize", f"{precision}: prepare (PT2E)"):
        prepared = prepare_pt2e(export_program(model, example).module(), make_quantizer(model, precision))
    with step("calibrate", precision):
        batches = calib()
        if not batches:
            raise EdgeError("no calibration images")
        with torch.no_grad():
            for batch in batches:  # the exported module has batch 1 baked in
                for x in batch.split(1):
                    prepared(x)
    with step("quantize", f"{precision}: convert"):
        converted = convert_pt2e(prepared)
        return export_program(converted, example)


def partitioner(backend: str, opts: ConvertOptions) -> Any:
    if backend == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        return XnnpackPartitioner(configs=partitioner_configs())  # int8 sigmoid/hardswish/pad accepted too
    import coremltools as ct
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner
    precision = ct.precision.FLOAT16 if opts.precision == "fp16" else ct.precision.FLOAT32
    target = getattr(ct.target, opts.deployment_target or "iOS17")
    specs = CoreMLBackend.generate_compile_specs(compute_precision=precision, minimum_deployment_target=target)
    return CoreMLPartitioner(compile_specs=specs)


def lower(program: torch.export.ExportedProgram, backend: str, opts: ConvertOptions):  # noqa: ANN201
    """to_edge_transform_and_lower with the backend's partitioner -> EdgeProgramManager."""
    from executorch.exir import to_edge_transform_and_lower
    with toolchain_errors(f"ExecuTorch lowering to {backend}"):
        return to_edge_transform_and_lower(program, partitioner=[partitioner(backend, opts)])


def delegation_report(edge: Any, backend: str) -> dict[str, Any]:
    """Delegated subgraphs, delegated op count, and every op left outside a delegate (with counts).

    `fully_delegated` is True when there is exactly one delegated subgraph and no compute op outside it: the
    zoo's promise for fp32 XNNPACK.
    """
    from executorch.devtools.backend_debug import get_delegation_info
    info = get_delegation_info(edge.exported_program().graph_module)
    outside = {op: b.non_delegated for op, b in info.delegation_by_operator.items()
               if b.non_delegated and op not in PLUMBING}
    delegated = {op: b.delegated for op, b in info.delegation_by_operator.items() if b.delegated}
    return {"backend": backend,
            "delegated_subgraphs": info.num_delegated_subgraphs,
            "delegated_ops": sum(delegated.values()),
            "non_delegated_ops": sum(outside.values()),
            "non_delegated": dict(sorted(outside.items(), key=lambda kv: (-kv[1], kv[0]))),
            "delegated_by_op": dict(sorted(delegated.items())),
            "fully_delegated": info.num_delegated_subgraphs == 1 and not outside}


def serialize(edge: Any, path: Path) -> int:
    """to_executorch -> .pte bytes on disk; returns the size."""
    with toolchain_errors("ExecuTorch serialization"):
        buffer = edge.to_executorch().buffer
    path.write_bytes(buffer)
    return len(buffer)


def quantized_op_count(program: torch.export.ExportedProgram) -> dict[str, int]:
    """How many quantize ops the PT2E program holds (int8 vs mixed sanity, shown in the report)."""
    counts = Counter(str(n.target).split(".")[-2] for n in program.graph.nodes
                     if n.op == "call_function" and "quantize_per" in str(n.target))
    return dict(counts)


# Ops that only move or reshape data (or are identities in eval, like dropout): no work worth listing.
DATA_MOVEMENT = {"reshape", "view", "permute", "transpose", "slice", "select", "squeeze", "unsqueeze", "clone",
                 "contiguous", "alias", "flatten", "cat", "getitem", "_assert_tensor_metadata", "dropout"}
# What XNNPACKQuantizer annotates, + the table activations and zero pads of converters/quant_int8_ops.py.
INT8_CAPABLE = {"conv2d", "linear", "add", "mul", "adaptive_avg_pool2d", "sigmoid", "hardswish", "pad",
                "constant_pad_nd"}
FUSED_ACTIVATIONS = ("relu", "relu_", "hardtanh", "hardtanh_")  # folded into the kernel's output min/max


def _op_name(node: torch.fx.Node) -> str:
    return str(getattr(node.target, "__name__", node.target)).split(".")[0]


def _is_qdq(node: Any, kind: str) -> bool:
    return isinstance(node, torch.fx.Node) and node.op == "call_function" and kind in str(node.target)


def precision_split(program: torch.export.ExportedProgram) -> dict[str, dict[str, int]]:
    """Compute ops of a PT2E program split into `int8_ops` (int8 in and out) and `float_ops` (the rest).

    XNNPACK runs an op in int8 when it has an int8 kernel for it (conv, linear, add, mul, pooling; the table
    activations sigmoid and hardswish and zero pads: quant_int8_ops.py) and the op reads dequantized tensors and
    feeds a quantize (a ReLU right after it is fused, as XNNPACKQuantizer's conv_relu / add_relu patterns
    annotate). Anything else (softmax, bmm, div, a conv whose output is not quantized) computes in fp32 between
    dequantize and quantize. This is what the manifest states as "what stays float".
    """
    int8, flt, fused = Counter(), Counter(), set()
    for n in program.graph.nodes:
        name = _op_name(n) if n.op == "call_function" else ""
        if not name or n in fused or _is_qdq(n, "quantize_per") or name in DATA_MOVEMENT:
            continue
        out = _fused_relu(n)
        if _runs_int8(n, name, out):
            int8[name] += 1
            fused.add(out)
        else:
            flt[name] += 1
    return {"int8_ops": dict(sorted(int8.items())), "float_ops": dict(sorted(flt.items()))}


def _fused_relu(node: torch.fx.Node) -> torch.fx.Node:
    """The ReLU or ReLU6 (hardtanh, observed after the clamp: converters/quant_clamp.py) that follows `node` alone
    (fused into its int8 kernel), else `node` itself."""
    users = list(node.users)
    if len(users) == 1 and users[0].op == "call_function" and _op_name(users[0]) in FUSED_ACTIVATIONS:
        return users[0]
    return node


def _runs_int8(node: torch.fx.Node, name: str, out: torch.fx.Node) -> bool:
    args = node.args[:2] if name in ("conv2d", "linear") else node.args  # the bias stays fp32 in XNNPACK
    tensor_in = [a for a in args if isinstance(a, torch.fx.Node)]
    return (name in INT8_CAPABLE and bool(tensor_in) and all(_is_qdq(a, "dequantize_per") for a in tensor_in)
            and bool(out.users) and all(_is_qdq(u, "quantize_per") and int8_grids_ok(name, tensor_in[0], u)
                                        for u in out.users))


class ExecuTorchTarget(Target):
    name = "executorch"
    suffix = ".pte"
    description = "ExecuTorch .pte: XNNPACK (CPU, Android/iOS) or the Core ML delegate (iOS)"
    backends = ("xnnpack", "coreml")
    precisions = ("fp32", "int8", "mixed", "fp16")
    backend_precisions = {"xnnpack": ("fp32", "int8", "mixed"), "coreml": ("fp32", "fp16")}
    deployment_targets = DEPLOYMENT_TARGETS
    default_deployment_target = "iOS17"
    deployment_backends = ("coreml",)
    supports_calib = ("int8", "mixed")

    def available(self) -> tuple[bool, str]:
        try:
            import executorch.exir  # noqa: F401
        except ImportError as exc:
            return False, f"executorch is not importable: {exc}"
        return True, ""

    def summary(self, report: dict[str, Any]) -> str:
        """Delegated subgraphs and ops, and what stayed outside a delegate."""
        outside = report.get("non_delegated") or {}
        extra = f", outside: {', '.join(f'{k} x{v}' for k, v in outside.items())}" if outside else ""
        return f"{report.get('delegated_subgraphs', '?')} subgraph(s), {report.get('delegated_ops', 0)} ops{extra}"

    def export(self, model: nn.Module, example: torch.Tensor, opts: ConvertOptions, out_dir: Path,
               calib: Callable[[], list[torch.Tensor]]) -> Artifact:
        opts = self.resolve(opts)
        backend = opts.backend
        if opts.precision in ("int8", "mixed"):  # depthwise rounding fitted first: weight_rounding.py
            with step("calibrate", "depthwise int8 rounding"):
                snapped, rounded = fit_depthwise_rounding(model, calib)
            program = quantize(snapped, example, opts.precision, calib)
        else:
            with step("export", "torch.export"):
                program = export_program(model, example)
        with step("lower", backend):
            edge = lower(program, backend, opts)
            report = delegation_report(edge, backend)
        if opts.precision in ("int8", "mixed"):
            report["quantize_ops"] = quantized_op_count(program)
            report["depthwise_rounding_fitted"] = rounded
            report.update(precision_split(program))
            report["float_modules"] = sorted(t.__name__ for t in attention_module_types(model)) \
                if opts.precision == "mixed" else []
        with step("serialize", MODEL_FILE):
            serialize(edge, out_dir / MODEL_FILE)
        shape = tuple(example.shape)
        return Artifact(
            file=MODEL_FILE, backend=backend,
            input=InputSpec.from_deploy(deploy_of(model, example), name="x", shape=shape, layout="NCHW",
                                        dtype="float32"),
            output=OutputSpec(shape=(shape[0], _num_outputs(model, example)), name="logits"),
            report=report,
            cannot_run_reason=("the ExecuTorch runtime on this machine has no Core ML backend (Core ML-delegated "
                               ".pte files run only on Apple devices)") if backend == "coreml" else None)


def _num_outputs(model: nn.Module, example: torch.Tensor) -> int:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int):
        return n
    with torch.no_grad():
        return int(model(example).shape[-1])


TARGET = ExecuTorchTarget()
