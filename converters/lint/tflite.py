"""TFLite lint: convert with litert-torch as `convert` does, then read the file's ops with the existing
compatibility tables (converters/tflite_report.py: GPU delegate, NNAPI, TRANSPOSE attribution), per op.

Each TFLite op is listed with the op it became, the module scope litert-torch recorded in its tensor names, and
what the GPU delegate / NNAPI would refuse; TRANSPOSE and RESHAPE ops inside the network are findings (rule 1).
A model litert-torch cannot convert at all is one finding with the converter's first error line.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .graph import Location, location

TRANSPOSE_FIXES = ["cancel_permutes", "linear4d_to_conv1x1", "layernorm_to_edge"]


def module_locations(program: torch.export.ExportedProgram) -> dict[str, Location]:
    """First location seen per module path, to turn a TFLite scope into file:line."""
    out: dict[str, Location] = {}
    for n in program.graph.nodes:
        if n.op == "call_function":
            loc = location(n)
            out.setdefault(loc.module, loc)
    return out


def _where(scope: str, locs: dict[str, Location]) -> dict[str, Any]:
    path = scope
    while path and path not in locs:
        path = path.rpartition(".")[0]
    loc = locs.get(path)
    return {**(loc.to_dict() if loc else {"file": None, "line": None, "code": None, "module_type": ""}),
            "module": scope}


def analyze(net: nn.Module, example: torch.Tensor, program: torch.export.ExportedProgram) -> dict[str, Any]:
    from edge_sdk.converters import tflite_report
    from edge_sdk.converters.tflite import convert_fp32
    from edge_sdk.errors import EdgeError
    try:
        data = convert_fp32(net, example, nhwc=False)
    except EdgeError as exc:
        return _not_convertible(str(exc))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(data)
        report = tflite_report.build_report(path)
        ops = _ops(tflite_report, path, module_locations(program))
    findings = [o for o in ops if o["findings"]]
    expands = _expand_findings(program)
    internal = sum(1 for o in findings if o["tflite_op"] == "TRANSPOSE")
    return {"target": "tflite", "convertible": True, "ops": report["ops"],
            "op_histogram": report["op_histogram"], "transpose_count": report["transpose_count"],
            "internal_transpose_count": internal,  # input-layout TRANSPOSEs behind a stem PAD excluded
            "reshape_count": report["reshape_count"], "gpu_compatible": report["gpu_compatible"],
            "nnapi_compatible": report["nnapi_compatible"], "nnapi_min_android_api": report["nnapi_min_android_api"],
            "transposes_by_module": report["transposes_by_module"], "per_op": ops,
            "findings": expands + [_finding(o) for o in findings],
            "clean": not any(o["tflite_op"] == "TRANSPOSE" for o in findings) and report["gpu_compatible"]
            and report["nnapi_compatible"] and not expands}


def _ops(tflite_report: Any, path: Path, locs: dict[str, Location]) -> list[dict[str, Any]]:
    """Every op of the file: TFLite op, module scope, GPU/NNAPI problems, and whether it is a layout op."""
    g = tflite_report._Graph(path)
    out = []
    for op in g.ops:
        scope = tflite_report._scope(g.tensors[op["outputs"][0]]["name"])
        gpu = tflite_report.gpu_problems(g, op)
        nnapi, _ = tflite_report.nnapi_problems(g, op)
        layout, perm = [], None
        if op["op_name"] == "TRANSPOSE":
            entry = tflite_report._transpose_entry(g, op)
            perm = entry["perm"]
            if entry["where"] == "internal" and not _input_layout(g, op):
                layout.append(f"TRANSPOSE {entry['perm']} of {entry['in_shape']} inside the network (rule 1: "
                              "each layout change is a full copy; NHWC convs around channel-moving reshapes)")
        out.append({"index": int(op["index"]), "tflite_op": op["op_name"], "scope": scope, "gpu": gpu,
                    "nnapi": nnapi, "perm": perm, "findings": layout + [f"GPU: {p}" for p in gpu] + [f"NNAPI: {p}" for p in nnapi],
                    "where": _where(scope, locs)})
    return out


def _input_layout(g: Any, op: dict[str, Any]) -> bool:
    """The model input's NCHW -> NHWC TRANSPOSE, displaced behind a PAD (TF 'same' padding of the stem conv):
    the same single layout change every NCHW model has at its input, not one inside the network."""
    producers = {o: p for p in g.ops for o in p["outputs"]}
    src = producers.get(op["inputs"][0])
    return (src is not None and src["op_name"] in ("PAD", "PADV2")
            and any(i in g.inputs for i in src["inputs"] if i >= 0))


def _finding(op: dict[str, Any]) -> dict[str, Any]:
    """A channel-moving 4-D TRANSPOSE (NCHW <-> NHWC around a Linear/LayerNorm) is what the permute rules remove;
    a token-layout one ((B, C, H, W) <-> (B, N, C)) is reported only: write tokens as 4-D (B, C, 1, N) maps."""
    transpose = op["tflite_op"] == "TRANSPOSE"
    channel_moving = transpose and op.get("perm") in ([0, 2, 3, 1], [0, 3, 1, 2])
    return {"target": "tflite", "op": op["tflite_op"], "reason": "; ".join(op["findings"]),
            "edge_rule": "1" if transpose else "-", "fix": TRANSPOSE_FIXES if channel_moving else [],
            "where": op["where"]}


def _not_convertible(error: str) -> dict[str, Any]:
    fix = ["expand_to_broadcast"] if "broadcast" in error or "expand" in error else []
    return {"target": "tflite", "convertible": False, "error": error, "ops": 0, "transpose_count": None,
            "findings": [{"target": "tflite", "op": "(conversion)", "reason": error,
                          "edge_rule": "4" if fix else "-", "fix": fix,
                          "where": {"module": "", "module_type": "", "file": None, "line": None, "code": None}}],
            "clean": False}


def _expand_findings(program: torch.export.ExportedProgram) -> list[dict[str, Any]]:
    """expand/expand_as that really broadcast: litert-torch 0.10 converts them, but the file computes wrong values
    (measured on tests/assets/byom/patterns.py:expand_as: parity error 0.15 x max|logit|; timm MobileViTv2 fails
    to convert at all). Read from the exported graph, since the .tflite no longer shows them."""
    from .graph import shape
    out = []
    for n in program.graph.nodes:
        if n.op == "call_function" and "expand" in str(n.target) and shape(n.args[0]) != shape(n):
            out.append({"target": "tflite", "op": "expand", "edge_rule": "4", "fix": ["expand_to_broadcast"],
                        "reason": "expand/expand_as broadcast: litert-torch mishandles it (wrong values or "
                                  "tfl.mul broadcast errors); write a plain broadcast", "where": location(n).to_dict()})
    return out
