"""Neural Engine readiness of a converted Core ML ML Program, read from the program itself (no device needed).

Core ML decides at load time which ops run on the Apple Neural Engine (ANE), GPU or CPU, and every switch costs a
copy. Apple publishes no op list, so this report checks the program against the rules below, each with its source.
It reports what is *known to push work off the ANE*; a clean report means "nothing known to block the ANE", not a
proof — confirm on a device with Xcode's Core ML performance report (see docs/coreml.md).

Rules (rule id -> why, source):
- `fp32_program`: the ANE computes in float16 only; a program compiled with fp32 compute precision runs on GPU/CPU.
  Source: coremltools guide "Typed Execution" (https://apple.github.io/coremltools/docs-guides/source/typed-execution.html).
- `fp32_op`: an fp32 op inside an fp16 program (other than the input/output boundary casts) runs off the ANE for
  the same reason. Source: as above.
- `int_op`: an op computing on integer/bool tensors at run time (not a compile-time constant): the ANE is a float16
  engine, such ops run on the CPU. Source: as above (ANE precision is fp16).
- `rank_gt_4`: a tensor of rank > 4. The ANE works on 4-D channels-first tensors (B, C, H, W) / (B, C, 1, S).
  Source: Apple, "Deploying Transformers on the Apple Neural Engine" (2022) and github.com/apple/ml-ane-transformers.
- `unsupported_op`: op types listed in `ANE_UNSUPPORTED_OPS` with their individual sources.
- `dilated_conv`: convolutions with dilation > 1. Source: github.com/hollance/neural-engine
  docs/unsupported-layers.md (community, found by experiment).
- `dynamic_shape`: a tensor or model input whose shape is not fixed at compile time (symbolic dims, shape ranges).
  The ANE compiles static shapes; coremltools' "Flexible Input Shapes" guide says range shapes run on CPU/GPU
  while enumerated shapes can use the ANE
  (https://apple.github.io/coremltools/docs-guides/source/flexible-inputs.html).

Hints (counted, not issues): reshape/transpose ops, each a memory copy on the ANE (ml-ane-transformers principle 2:
"chunk, don't reshape/transpose").
Not checked, because no public source gives limits: kernel sizes, padding modes, per-op size limits.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

# op type -> source. Keep each entry attributable; do not add guesses without saying so.
_HOLLANCE = "hollance/neural-engine docs/unsupported-layers.md (community, experimental)"
_STATIC = ("data-dependent output shape or control flow: the ANE compiles static graphs (coremltools Flexible "
           "Input Shapes guide); our inference, not an Apple statement")
ANE_UNSUPPORTED_OPS: dict[str, str] = {
    "gather": _HOLLANCE,
    "gather_nd": _HOLLANCE + " (gather family)",
    "gather_along_axis": _HOLLANCE + " (gather family)",
    "scatter": _HOLLANCE + " (gather family, inverse)",
    "scatter_nd": _HOLLANCE + " (gather family, inverse)",
    "scatter_along_axis": _HOLLANCE + " (gather family, inverse)",
    "lstm": _HOLLANCE,
    "gru": _HOLLANCE,
    "rnn": _HOLLANCE,
    "non_maximum_suppression": _STATIC,
    "non_zero": _STATIC,
    "cond": _STATIC,
    "while_loop": _STATIC,
    "random_bernoulli": _STATIC,
    "random_categorical": _STATIC,
    "random_normal": _STATIC,
    "random_uniform": _STATIC,
}

# Ops that only describe constants (weights, compressed weights): they run at load time, not on any engine.
CONST_OPS = frozenset({"const", "constexpr_affine_dequantize", "constexpr_lut_to_dense", "constexpr_sparse_to_dense",
                       "constexpr_cast", "constexpr_blockwise_shift_scale", "constexpr_sparse_blockwise_shift_scale",
                       "constexpr_lut_to_sparse"})
COMPRESSION_OPS = CONST_OPS - {"const"}
LAYOUT_OPS = ("reshape", "transpose")
MAX_LISTED_ISSUES = 200


def load_program(package: str | Path) -> Any:
    """The MIL program of a saved .mlpackage, with weights, via coremltools' proto loader (works on Linux)."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as load_mil
    spec = ct.utils.load_spec(str(package))
    weights = os.path.join(str(package), "Data", "com.apple.CoreML", "weights")
    return load_mil(spec, spec.specificationVersion, weights)


def iter_ops(block: Any) -> Iterator[Any]:
    """Every op in a block, including ops of nested blocks (cond/while bodies)."""
    for op in block.operations:
        yield op
        for inner in op.blocks:
            yield from iter_ops(inner)


def _tensor_outputs(op: Any) -> list[Any]:
    from coremltools.converters.mil.mil import types
    return [v for v in op.outputs if types.is_tensor(v.sym_type) or types.is_scalar(v.sym_type)]


def _dtype(var: Any) -> str:
    from coremltools.converters.mil.mil import types
    return types.builtin_to_string(var.dtype)


def _is_symbolic(shape: tuple) -> bool:
    from coremltools.converters.mil.mil.types.symbolic import is_symbolic
    return any(is_symbolic(d) for d in shape)


def _boundary_ops(func: Any) -> set[int]:
    """Ids of the casts right after the inputs / right before the outputs and the classify op: the fp32 <-> fp16
    I/O boundary every fp16 program with fp32 I/O has. They are not compute inside the network."""
    inputs = {id(v) for v in func.inputs.values()}
    outputs = {id(v) for v in func.outputs}
    ids = set()
    for op in func.operations:
        if op.op_type == "classify":
            ids.add(id(op))
        elif op.op_type == "cast":
            x = op.inputs.get("x")
            feeds_out = any(id(v) in outputs or any(c.op_type == "classify" for c in v.child_ops) for v in op.outputs)
            if (x is not None and id(x) in inputs) or feeds_out:
                ids.add(id(op))
    return ids


def _issue(op: Any, rule: str, detail: str, source: str) -> dict[str, str]:
    return {"op": op.name, "op_type": op.op_type, "rule": rule, "detail": detail, "source": source}


def _op_issues(op: Any, fp16_program: bool, boundary: set[int]) -> list[dict[str, str]]:
    """Everything about one runtime op known to push it off the ANE."""
    found = []
    if op.op_type in ANE_UNSUPPORTED_OPS:
        found.append(_issue(op, "unsupported_op", f"{op.op_type} is not run by the Neural Engine",
                            ANE_UNSUPPORTED_OPS[op.op_type]))
    if op.op_type == "conv" and op.inputs.get("dilations") is not None:
        dil = [int(d) for d in op.inputs["dilations"].val]
        if any(d > 1 for d in dil):
            found.append(_issue(op, "dilated_conv", f"dilations {dil}", _HOLLANCE))
    for var in _tensor_outputs(op):
        shape = tuple(var.shape)
        if len(shape) > 4:
            found.append(_issue(op, "rank_gt_4", f"{var.name}: rank {len(shape)} {list(map(str, shape))}",
                                "Apple ml-ane-transformers: the ANE works on 4-D (B, C, 1, S) tensors"))
        if _is_symbolic(shape):
            found.append(_issue(op, "dynamic_shape", f"{var.name}: shape {list(map(str, shape))}",
                                "coremltools Flexible Input Shapes guide"))
        dt = _dtype(var)
        if dt.startswith(("int", "uint", "bool")) and op.op_type not in ("shape",):
            found.append(_issue(op, "int_op", f"{var.name}: {dt} tensor computed at run time",
                                "coremltools Typed Execution guide (ANE computes fp16)"))
        elif dt == "fp32" and fp16_program and id(op) not in boundary:
            found.append(_issue(op, "fp32_op", f"{var.name}: fp32 inside an fp16 program",
                                "coremltools Typed Execution guide (ANE computes fp16)"))
    return found[:1] if op.op_type in ANE_UNSUPPORTED_OPS else found


def _input_issues(spec: Any) -> list[dict[str, str]]:
    """Flexible (range/enumerated) input shapes declared in the model description."""
    found = []
    for inp in spec.description.input:
        kind = inp.type.WhichOneof("Type")
        t = getattr(inp.type, kind)
        flexible = None
        if kind == "imageType":
            flexible = t.WhichOneof("SizeFlexibility")
        elif kind == "multiArrayType":
            flexible = t.WhichOneof("ShapeFlexibility")
        if flexible:
            found.append({"op": inp.name, "op_type": "input", "rule": "dynamic_shape",
                          "detail": f"input {inp.name} has flexible shape ({flexible})",
                          "source": "coremltools Flexible Input Shapes guide"})
    return found


def ane_report(package: str | Path, precision: str) -> dict[str, Any]:
    """Read the saved package and list each op/tensor known to push work off the Neural Engine.

    Returns {"ane_ready", "summary": {counts}, "op_histogram", "compression_ops", "issues": [...], "rules"}.
    """
    import coremltools as ct
    spec = ct.utils.load_spec(str(package))
    prog = load_program(package)
    func = prog.functions["main"]
    ops = list(iter_ops(func))
    fp16 = any(_dtype(v) == "fp16" for op in ops if op.op_type not in CONST_OPS for v in _tensor_outputs(op))
    boundary = _boundary_ops(func)
    issues = _input_issues(spec)
    if not fp16:
        issues.append({"op": "main", "op_type": "program", "rule": "fp32_program",
                       "detail": "compute precision is fp32: Core ML runs the whole program on GPU/CPU",
                       "source": "coremltools Typed Execution guide (ANE computes fp16)"})
    runtime_ops = [op for op in ops if op.op_type not in CONST_OPS]
    for op in runtime_ops:
        issues.extend(_op_issues(op, fp16, boundary))
    return _summarize(spec, ops, runtime_ops, issues, precision)


def _summarize(spec: Any, ops: list, runtime_ops: list, issues: list[dict], precision: str) -> dict[str, Any]:
    hist = Counter(op.op_type for op in runtime_ops)
    by_rule = Counter(i["rule"] for i in issues)
    flagged_ops = {i["op"] for i in issues if i["op_type"] not in ("input", "program")}
    compression = Counter(op.op_type for op in ops if op.op_type in COMPRESSION_OPS)
    return {
        "kind": "coreml_ane_readiness",
        "ane_ready": not issues,
        "precision": precision,
        "spec_version": int(spec.specificationVersion),
        "summary": {
            "ops": len(runtime_ops),
            "ops_flagged": len(flagged_ops),
            "issues": len(issues),
            "issues_by_rule": dict(sorted(by_rule.items())),
            "reshape_transpose_ops": sum(hist[t] for t in LAYOUT_OPS),
            "compressed_weight_ops": sum(compression.values()),
        },
        "op_histogram": dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))),
        "compression_ops": dict(sorted(compression.items())),
        "issues": issues[:MAX_LISTED_ISSUES],
        "issues_truncated": max(0, len(issues) - MAX_LISTED_ISSUES),
        "rules_source": "converters/coreml_report.py docstring",
    }
