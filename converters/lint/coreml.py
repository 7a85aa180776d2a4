"""Core ML lint: convert to an fp16 ML Program as `convert --target coreml` does, and list what keeps work off the
Neural Engine with the existing readiness rules (converters/coreml_report.py), mapped back to the user's modules.

MIL op names come from the exported graph's node names, so a finding is matched to its node (module path,
file:line) where the names agree; otherwise the module is left blank rather than guessed.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .graph import location

FIXES = {"rank_gt_4": ["sdpa_to_matmul", "mha_to_matmul", "squeeze_to_reshape"],
         "int_op": ["fold_constants"], "unsupported_op": ["fold_constants"]}


def analyze(model: nn.Module, example: torch.Tensor) -> dict[str, Any]:
    """`model` must have the zoo contract (deploy mean/std: the Core ML package takes pixels)."""
    from edge_sdk.converters import coreml as coreml_target
    from edge_sdk.converters.base import ConvertOptions
    from edge_sdk.converters.coreml_report import ane_report
    from edge_sdk.errors import EdgeError
    opts = ConvertOptions(precision="fp16")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            pkg = coreml_target.build_package(model, example, opts, Path(tmp), labels=None)
        except EdgeError as exc:
            return {"target": "coreml", "convertible": False, "error": str(exc), "clean": False,
                    "findings": [{"target": "coreml", "op": "(conversion)", "reason": str(exc), "edge_rule": "-",
                                  "fix": [], "where": {"module": "", "file": None, "line": None}}]}
        report = ane_report(pkg, "fp16")
    names = _node_locations(model, example)
    findings = [{"target": "coreml", "op": i["op_type"], "reason": f"{i['rule']}: {i['detail']}",
                 "edge_rule": "1" if i["rule"] == "rank_gt_4" else "-", "fix": FIXES.get(i["rule"], []),
                 "source": i["source"], "where": names.get(i["op"], {"module": "", "file": None, "line": None})}
                for i in report["issues"]]
    return {"target": "coreml", "convertible": True, "ane_ready": report["ane_ready"],
            "summary": report["summary"], "op_histogram": report["op_histogram"], "findings": findings,
            "clean": report["ane_ready"]}


def _node_locations(model: nn.Module, example: torch.Tensor) -> dict[str, dict[str, Any]]:
    from edge_sdk.converters import coreml as coreml_target
    try:
        wrapped = coreml_target.wrap_model(model, with_probs=False)
        ep = torch.export.export(wrapped, (coreml_target.example_pixels(example, model),)).run_decompositions({})
    except Exception:  # locations are a convenience; the findings stand without them
        return {}
    return {n.name: location(n).to_dict() for n in ep.graph.nodes if n.op == "call_function"}
