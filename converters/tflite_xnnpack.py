"""Conversion-time rewrites of an fp32 .tflite so LiteRT's XNNPACK delegate takes the whole graph as ONE partition.

Found with `edge-sdk profile` on the .tflite bundles (docs/benchmarks.md, "Where the time goes"): litert-torch
writes a per-head attention product `q @ k^T` (batch 1) as FULLY_CONNECTED with the key tensor as its *weights*,
which avoids a TRANSPOSE; but XNNPACK delegates FULLY_CONNECTED only with constant weights, so each of those ops
(82 in levit_128s, 20 in cctt_tiny) runs on TFLite's own kernel and splits the graph (levit_128s: 21 XNNPACK
partitions). And XNNPACK's CONCATENATION takes at most 5 inputs, so LeViT's concat of 6, 8 or 16 heads stays
outside too. Two rewrites, both exact up to float summation order:

- FULLY_CONNECTED(x, W) with a computed W, no bias and no fused activation -> BATCH_MATMUL(x, W, adj_y=True):
  the same x @ W^T, which XNNPACK delegates with dynamic operands (no TRANSPOSE added).
- CONCATENATION of more than 5 inputs -> a concatenation of concatenations of at most 4 inputs each.

Measured (levit_128s, 1 thread, fresh processes, 3 interleaved rounds, shared machine): 21 -> 1 partition,
8.43 -> 7.79 ms median; max |logit| difference 4.6e-4 at logits of ~20 (summation order). Cost: BATCH_MATMUL
needs NNAPI feature level 31 (Android 12) where FULLY_CONNECTED needed less; the compatibility report says so.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

MAX_XNNPACK_CONCAT = 5  # XNNPACK's concatenate2..5
GROUP = 4


def _builtin(model: Any, op: Any) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def _opcode_index(model: Any, builtin: int) -> int:
    from ai_edge_litert import schema_py_generated as fb
    for i, code in enumerate(model.operatorCodes):
        if max(int(code.builtinCode), int(code.deprecatedBuiltinCode)) == builtin:
            return i
    model.operatorCodes.append(fb.OperatorCodeT(deprecatedBuiltinCode=min(builtin, 127), builtinCode=builtin,
                                                version=1))
    return len(model.operatorCodes) - 1


def dynamic_fc_to_batch_matmul(model: Any) -> int:
    """FULLY_CONNECTED ops whose weights are computed (not a constant) become BATCH_MATMUL(adj_y); returns count."""
    from ai_edge_litert import schema_py_generated as fb
    count = 0
    for sg in model.subgraphs:
        produced = {int(t) for op in sg.operators for t in op.outputs}
        for op in sg.operators:
            if _builtin(model, op) != fb.BuiltinOperator.FULLY_CONNECTED:
                continue
            ins = [int(i) for i in op.inputs]
            bias = ins[2] if len(ins) > 2 else -1
            opts = op.builtinOptions
            fused = getattr(opts, "fusedActivationFunction", 0) if opts is not None else 0
            x, w, y = (sg.tensors[i] for i in (ins[0], ins[1], int(op.outputs[0])))
            if ins[1] not in produced or bias >= 0 or fused or len(x.shape) != len(y.shape) or len(w.shape) != 2:
                continue
            op.opcodeIndex = _opcode_index(model, fb.BuiltinOperator.BATCH_MATMUL)
            op.inputs = np.array(ins[:2], dtype=np.int32)
            op.builtinOptionsType = fb.BuiltinOptions.BatchMatMulOptions
            op.builtinOptions = fb.BatchMatMulOptionsT(adjX=False, adjY=True)
            count += 1
    return count


def split_wide_concats(model: Any) -> int:
    """CONCATENATION ops with more inputs than XNNPACK takes become a two-level tree; returns how many."""
    from ai_edge_litert import schema_py_generated as fb
    count = 0
    for sg in model.subgraphs:
        ops = []
        for op in sg.operators:
            if _builtin(model, op) != fb.BuiltinOperator.CONCATENATION or len(op.inputs) <= MAX_XNNPACK_CONCAT:
                ops.append(op)
                continue
            ins, out = [int(i) for i in op.inputs], sg.tensors[int(op.outputs[0])]
            axis = int(op.builtinOptions.axis) % len(out.shape)
            parts = []
            for k in range(0, len(ins), GROUP):
                group = ins[k:k + GROUP]
                if len(group) == 1:
                    parts.append(group[0])
                    continue
                parts.append(_partial_concat(sg, op, group, axis, out, k // GROUP, ops))
            top = copy.deepcopy(op)
            top.inputs = np.array(parts, dtype=np.int32)
            ops.append(top)
            count += 1
        sg.operators = ops
    return count


def _partial_concat(sg: Any, op: Any, group: list[int], axis: int, out: Any, index: int, ops: list[Any]) -> int:
    """Append a CONCATENATION of `group` (its new output tensor has the summed axis) and return that tensor."""
    t = copy.deepcopy(sg.tensors[group[0]])
    shape = [int(d) for d in t.shape]
    shape[axis] = sum(int(sg.tensors[i].shape[axis]) for i in group)
    t.shape, t.shapeSignature, t.buffer = np.array(shape, dtype=np.int32), None, 0
    name = out.name.decode() if isinstance(out.name, bytes) else str(out.name)
    t.name = f"{name}/xnnpack_part{index}"
    sg.tensors.append(t)
    sub = copy.deepcopy(op)
    sub.inputs, sub.outputs = np.array(group, dtype=np.int32), np.array([len(sg.tensors) - 1], dtype=np.int32)
    sub.builtinOptions.fusedActivationFunction = 0
    ops.append(sub)
    return len(sg.tensors) - 1


def one_xnnpack_partition(data: bytes) -> tuple[bytes, dict[str, int]]:
    """Apply both rewrites; returns the new flatbuffer (unchanged bytes when nothing applied) and the counts."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb
    model = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    counts = {"fully_connected_to_batch_matmul": dynamic_fc_to_batch_matmul(model),
              "concatenations_split": split_wide_concats(model)}
    if not any(counts.values()):
        return data, counts
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), counts
