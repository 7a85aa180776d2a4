"""Delegate-compatibility report of a .tflite file: what the Android GPU delegate and NNAPI would refuse, and why.

Read from the produced file itself (`Interpreter._get_ops_details()` + tensor details), never from the PyTorch
model, so it describes exactly what ships. Each op is checked against tables written down from the vendors'
documentation (sources below). These are static checks: a device driver can still refuse an op the table allows,
but an op the table forbids certainly falls back to the CPU and splits the delegated graph.

The report also counts TRANSPOSE and RESHAPE ops and attributes each TRANSPOSE to the PyTorch module that produced
it (litert-torch keeps the module path in tensor names), because the zoo rule is "no TRANSPOSE inside the network".
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

# --- GPU delegate ---------------------------------------------------------------------------------------------
GPU_SOURCE = ("LiteRT GPU delegate: op parsers in tensorflow/lite/delegates/gpu/common/model_builder.cc "
              "(NewOperationParser, TF 2.16 / LiteRT 1.x) and ai.google.dev/edge/litert/performance/gpu "
              "(supported ops, 4-D BHWC tensors); quantized-model support from "
              "ai.google.dev/edge/litert/models/post_training_quantization (GPU: fp16 and full-integer, "
              "not dynamic-range)")
GPU_OPS = frozenset("""
ABS ADD ADD_N AVERAGE_POOL_2D BATCH_MATMUL CAST CONCATENATION CONV_2D COS CUMSUM DEPTHWISE_CONV_2D DEPTH_TO_SPACE
DEQUANTIZE DIV ELU EQUAL EXP FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GELU GREATER GREATER_EQUAL HARD_SWISH
LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND LOGISTIC LSTM MAXIMUM MAX_POOL_2D MEAN MINIMUM MIRROR_PAD MUL NEG
NOT_EQUAL ONE_HOT PACK PAD PADV2 POW PRELU QUANTIZE REDUCE_MAX REDUCE_MIN REDUCE_PROD RELU RELU6 RELU_N1_TO_1
RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT SELECT_V2 SIN SLICE SOFTMAX SPACE_TO_DEPTH SPLIT SPLIT_V
SQRT SQUARE SQUARED_DIFFERENCE STRIDED_SLICE SUB SUM TANH TILE TRANSPOSE TRANSPOSE_CONV
""".split())
GPU_MAX_RANK = 4  # the delegate's tensors are BHWC
GPU_DTYPES = frozenset({"float32", "float16", "int8", "uint8"})  # int8/uint8: quantized models, run in float
GPU_BINARY = frozenset({"ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "POW", "SQUARED_DIFFERENCE"})

# --- NNAPI ----------------------------------------------------------------------------------------------------
NNAPI_SOURCE = ("Android NNAPI operation list (developer.android.com/ndk/reference/group/neural-networks, "
                "API levels per op) as mapped by the TFLite NNAPI delegate "
                "(tensorflow/lite/delegates/nnapi/nnapi_delegate.cc, TF 2.16); NNAPI is deprecated from Android 15")
# op -> minimum Android API level at which the TFLite NNAPI delegate maps it (27 = NNAPI 1.0, 28 = 1.1, 29 = 1.2,
# 30 = 1.3, 31 = feature level 5).
NNAPI_OPS: dict[str, int] = {
    **dict.fromkeys("ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE FLOOR "
                    "FULLY_CONNECTED L2_NORMALIZATION LOCAL_RESPONSE_NORMALIZATION LOGISTIC MAX_POOL_2D MUL RELU "
                    "RELU_N1_TO_1 RELU6 RESHAPE RESIZE_BILINEAR SOFTMAX SPACE_TO_DEPTH TANH".split(), 27),
    **dict.fromkeys("BATCH_TO_SPACE_ND DIV MEAN PAD SPACE_TO_BATCH_ND SQUEEZE STRIDED_SLICE SUB "
                    "TRANSPOSE".split(), 28),
    **dict.fromkeys("ABS ARG_MAX ARG_MIN CAST EQUAL EXP GATHER GREATER GREATER_EQUAL HARD_SWISH LESS LESS_EQUAL "
                    "LOG LOGICAL_AND LOGICAL_NOT LOGICAL_OR MAXIMUM MINIMUM NEG NOT_EQUAL PADV2 POW PRELU QUANTIZE "
                    "REDUCE_MAX REDUCE_MIN REDUCE_PROD RESIZE_NEAREST_NEIGHBOR RSQRT SELECT SIN SLICE SPLIT SQRT "
                    "SUM TILE TOPK_V2 TRANSPOSE_CONV".split(), 29),
    **dict.fromkeys("ELU FILL LEAKY_RELU PACK SQUARED_DIFFERENCE".split(), 30),
    **dict.fromkeys("BATCH_MATMUL".split(), 31),
}
NNAPI_TARGET_API = 31  # the last NNAPI feature level; a model needing more has no NNAPI path at all
NNAPI_INT8_API = 30  # signed int8 tensors (TENSOR_QUANT8_ASYMM_SIGNED) arrived in NNAPI 1.3
NNAPI_MAX_RANK = 4
NNAPI_DTYPES = frozenset({"float32", "float16", "int8", "uint8", "int32"})
WEIGHT_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV"})


def _dtype(t: dict[str, Any]) -> str:
    return np.dtype(t["dtype"]).name


def _scope(name: str) -> str:
    """'pkg.LeViT/torch...Sequential_body/...LeViTAttention_m/...ConvBN_q/...Conv2d_conv;2' -> 'body.m.q.conv'.

    litert-torch names tensors after the module path (class_attr components); keep the attribute names only.
    """
    first = name.split(";")[0]
    parts = first.split("/")
    # --nhwc wraps the model in litert-torch's ChannelLastIOWrapper (attribute `wrapped`): report the model's paths.
    parts = parts[2:] if "ChannelLastIOWrapper" in parts[0] else parts[1:]
    return ".".join(p.rsplit(".", 1)[-1].partition("_")[2] or p for p in parts) or "(model)"


class _Graph:
    """Ops and tensors of the main subgraph, read with the builtin kernels only (no XNNPACK rewrite)."""

    def __init__(self, path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
        self.interp = Interpreter(model_path=str(path),
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interp.allocate_tensors()
        self.ops = self.interp._get_ops_details()
        self.tensors = {t["index"]: t for t in self.interp.get_tensor_details()}
        self.inputs = {d["index"] for d in self.interp.get_input_details()}
        self.outputs = {d["index"] for d in self.interp.get_output_details()}
        produced = {o for op in self.ops for o in op["outputs"]}
        self.constants = {i for i in self.tensors if i not in produced and i not in self.inputs}

    def const_value(self, index: int) -> np.ndarray | None:
        try:
            return self.interp.get_tensor(index)
        except ValueError:
            return None

    def shape(self, index: int) -> list[int]:
        return [int(d) for d in self.tensors[index]["shape"]]


def _runtime_inputs(g: _Graph, op: dict) -> list[int]:
    return [i for i in op["inputs"] if i >= 0 and i not in g.constants]


def _io_tensors(g: _Graph, op: dict) -> list[int]:
    return [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0]


def _is_hybrid(g: _Graph, op: dict) -> bool:
    """Dynamic-range kernel: float activations with int8 constant weights."""
    if op["op_name"] not in WEIGHT_OPS:
        return False
    dts = [_dtype(g.tensors[i]) for i in op["inputs"] if i >= 0]
    acts = [_dtype(g.tensors[i]) for i in _runtime_inputs(g, op)]
    return "int8" in dts and bool(acts) and all(a == "float32" for a in acts)


def _gpu_broadcast_ok(g: _Graph, op: dict) -> bool:
    """Two runtime operands: one must be at least as large as the other in every dimension (one-sided broadcast).

    model_builder.cc's MUL parser refuses a pair where each operand is smaller in some dimension ("MUL requires one
    tensor that not less than second in all dimensions", the outer-product case); the GPU elementwise kernels
    broadcast the smaller operand over B/H/W/C otherwise. The same check is applied to the other binary ops.
    """
    runtime = _runtime_inputs(g, op)
    if len(runtime) < 2:
        return True
    a, b = (g.shape(i) for i in runtime[:2])
    if len(a) != len(b):
        return True  # rank-mismatched broadcasts are expanded by the converter to equal rank in practice
    a_smaller = any(x < y for x, y in zip(a, b))
    b_smaller = any(y < x for x, y in zip(a, b))
    return not (a_smaller and b_smaller)


def gpu_problems(g: _Graph, op: dict) -> list[str]:
    name = op["op_name"]
    if name not in GPU_OPS:
        return [f"{name} is not implemented by the GPU delegate"]
    problems = []
    ranks = [len(g.shape(i)) for i in _io_tensors(g, op) if i not in g.constants or name != "RESHAPE"]
    if ranks and max(ranks) > GPU_MAX_RANK:
        problems.append(f"rank-{max(ranks)} tensor (GPU delegate handles rank <= {GPU_MAX_RANK})")
    bad = sorted({_dtype(g.tensors[i]) for i in _io_tensors(g, op) if i not in g.constants} - GPU_DTYPES)
    if bad:
        problems.append(f"runtime tensor dtype {', '.join(bad)} (GPU delegate: float32/float16, quantized int8)")
    if _is_hybrid(g, op):
        problems.append("dynamic-range (hybrid) kernel: float activations with int8 weights run on CPU only")
    if name in GPU_BINARY and not _gpu_broadcast_ok(g, op):
        shapes = [g.shape(i) for i in _runtime_inputs(g, op)]
        problems.append(f"two-sided broadcast between runtime tensors {shapes} (outer-product style)")
    return problems


def nnapi_problems(g: _Graph, op: dict, api: int = NNAPI_TARGET_API) -> tuple[list[str], int]:
    """Problems at Android API `api`, and the minimum API level this op needs."""
    name = op["op_name"]
    if name not in NNAPI_OPS:
        return [f"{name} has no NNAPI mapping"], 0
    need = NNAPI_OPS[name]
    dts = {_dtype(g.tensors[i]) for i in _io_tensors(g, op)}
    if "int8" in dts and not _is_hybrid(g, op):
        need = max(need, NNAPI_INT8_API)
    problems = []
    if need > api:
        problems.append(f"{name} needs Android API {need}")
    ranks = [len(g.shape(i)) for i in _io_tensors(g, op) if i not in g.constants]
    if ranks and max(ranks) > NNAPI_MAX_RANK:
        problems.append(f"rank-{max(ranks)} tensor (NNAPI handles rank <= {NNAPI_MAX_RANK})")
    bad = sorted(dts - NNAPI_DTYPES)
    if bad:
        problems.append(f"tensor dtype {', '.join(bad)} not supported by NNAPI")
    if _is_hybrid(g, op):
        problems.append("dynamic-range (hybrid) kernel: the NNAPI delegate needs float or fully quantized ops")
    return problems, need


def _transpose_entry(g: _Graph, op: dict) -> dict[str, Any]:
    src, dst = op["inputs"][0], op["outputs"][0]
    perm = g.const_value(op["inputs"][1])
    at_io = src in g.inputs or dst in g.outputs
    return {"index": int(op["index"]), "scope": _scope(g.tensors[dst]["name"]),
            "perm": perm.tolist() if perm is not None else None, "in_shape": g.shape(src),
            "where": "io" if at_io else "internal"}


def _blocking(g: _Graph, op: dict, problems: list[str]) -> dict[str, Any]:
    return {"index": int(op["index"]), "op": op["op_name"], "scope": _scope(g.tensors[op["outputs"][0]]["name"]),
            "reasons": problems}


def saturated_biases(g: _Graph) -> list[dict[str, Any]]:
    """Quantized ops whose int32 bias hit the int32 limit: bias scale = input scale x weight scale, so an input
    whose calibrated range is tiny (e.g. 1e-6-scale activations from an untrained init) overflows the bias and
    the op's output is wrong. Measured on pbhybrid_micro (random init): every logit wrong at int8."""
    out = []
    for op in g.ops:
        ins = [i for i in op["inputs"] if i >= 0]
        if op["op_name"] not in WEIGHT_OPS or len(ins) < 3 or _dtype(g.tensors[ins[2]]) != "int32":
            continue
        bias = g.const_value(ins[2])
        n = int((np.abs(bias.astype(np.int64)) >= 2**31 - 1).sum()) if bias is not None else 0
        if n:
            scope = _scope(g.tensors[op["outputs"][0]]["name"])
            out.append({"index": int(op["index"]), "op": op["op_name"], "scope": scope, "saturated": n,
                        "of": int(bias.size)})
    return out


BOUNDARY_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})


def float_ops(g: _Graph) -> list[dict[str, Any]] | None:
    """In a file with an int8 input (full-integer recipe): the ops that still compute in float32.

    Read from the file, so the manifest cannot claim "full integer" when it is not: the quantizer leaves ops it has
    no int8 kernel for in float (EXP, REDUCE_MAX) and the converter keeps zero-risk DIVs float on purpose.
    QUANTIZE / DEQUANTIZE are the boundaries of those float islands, not float compute, so they are not listed.
    None for files whose input is not int8 (fp32, fp16, dynamic_int8: float by design).
    """
    if not any(_dtype(g.tensors[i]) == "int8" for i in g.inputs):
        return None
    out = []
    for op in g.ops:
        if op["op_name"] in BOUNDARY_OPS:
            continue
        if any(_dtype(g.tensors[i]) == "float32" for i in _io_tensors(g, op) if i not in g.constants):
            out.append({"index": int(op["index"]), "op": op["op_name"],
                        "scope": _scope(g.tensors[op["outputs"][0]]["name"])})
    return out


def build_report(path: str | Path) -> dict[str, Any]:
    """The compatibility report stored in the bundle manifest (JSON-able)."""
    g = _Graph(Path(path))
    hist = Counter(op["op_name"] for op in g.ops)
    transposes = [_transpose_entry(g, op) for op in g.ops if op["op_name"] == "TRANSPOSE"]
    gpu_block, nnapi_block, min_api = [], [], 27
    for op in g.ops:
        if problems := gpu_problems(g, op):
            gpu_block.append(_blocking(g, op, problems))
        problems, need = nnapi_problems(g, op)
        min_api = max(min_api, need)
        if problems:
            nnapi_block.append(_blocking(g, op, problems))
    by_scope = Counter(t["scope"] for t in transposes if t["where"] == "internal")
    dtypes = Counter(_dtype(t) for t in g.tensors.values())
    return {
        "ops": len(g.ops),
        "op_histogram": dict(hist.most_common()),
        "transpose_count": hist.get("TRANSPOSE", 0),
        "internal_transpose_count": sum(t["where"] == "internal" for t in transposes),
        "reshape_count": hist.get("RESHAPE", 0),
        "transposes": transposes,
        "transposes_by_module": dict(by_scope.most_common()),
        "max_tensor_rank": max((len(t["shape"]) for t in g.tensors.values()), default=0),
        "tensor_dtypes": dict(dtypes.most_common()),
        "gpu_compatible": not gpu_block,
        "nnapi_compatible": not nnapi_block,
        "nnapi_min_android_api": min_api,
        "blocking_ops": {"gpu": gpu_block, "nnapi": nnapi_block},
        "int8_saturated_biases": saturated_biases(g),
        "float_ops": float_ops(g),
        "sources": {"gpu": GPU_SOURCE, "nnapi": f"{NNAPI_SOURCE}; checked at Android API {NNAPI_TARGET_API}"},
    }


def summary(report: dict[str, Any]) -> str:
    """One line for the convert summary table."""
    return (f"{report['ops']} ops, TRANSPOSE {report['transpose_count']} "
            f"({report['internal_transpose_count']} internal), RESHAPE {report['reshape_count']}, "
            f"GPU {'ok' if report['gpu_compatible'] else 'no'}, NNAPI {'ok' if report['nnapi_compatible'] else 'no'}"
            + (f", {len(report['float_ops'])} float op(s)" if report.get("float_ops") else ""))
