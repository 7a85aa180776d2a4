"""`edge-sdk lint`: what falls off each delegate, why (the edge rule), where (module + file:line), and what `--fix`
can do about it. Per target: executorch.py (XNNPACK partitioner), tflite.py (litert-torch + tflite_report),
coreml.py (ML Program + coreml_report). Rewrites: rewrites.py; parity-checked application: fix.py.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

TARGETS = ("executorch", "tflite", "coreml")


def deploy_net(model: nn.Module) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    """(deploy model, the user's net inside it, example input): lint looks at what ships (reparameterized)."""
    from edge_sdk.converters.sources import ExternalModel
    from edge_sdk.models import reparameterize_model
    deploy = reparameterize_model(model)
    net = deploy.net if isinstance(deploy, ExternalModel) else deploy
    return deploy, net, deploy.example_inputs(1)[0]


def lint_model(model: nn.Module, targets: Sequence[str] = TARGETS) -> dict[str, Any]:
    """Analyse `model` (a resolved zoo model or ExternalModel) for each target; JSON-able report."""
    from .fix import export
    deploy, net, example = deploy_net(model)
    program = export(net, example)
    report: dict[str, Any] = {"model": getattr(model, "name", ""), "input_size": int(example.shape[-1]),
                              "targets": {}}
    for t in targets:
        report["targets"][t] = analyze_target(t, deploy, net, example, program)
    report["summary"] = summarize(report["targets"])
    return report


def analyze_target(target: str, deploy: nn.Module, net: nn.Module, example: torch.Tensor,
                   program: torch.export.ExportedProgram) -> dict[str, Any]:
    if target == "executorch":
        from . import executorch
        return executorch.analyze(program)
    if target == "tflite":
        from . import tflite
        return tflite.analyze(net, example, program)
    from . import coreml
    return coreml.analyze(deploy, example)


def summarize(per_target: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Counts per target and, for each fix rule, how many findings it addresses."""
    fixes: dict[str, int] = {}
    report_only = 0
    for r in per_target.values():
        for f in r.get("findings", []):
            for name in f.get("fix") or []:
                fixes[name] = fixes.get(name, 0) + 1
            report_only += not f.get("fix")
    et = per_target.get("executorch") or {}
    tfl = per_target.get("tflite") or {}
    return {"clean": all(r.get("clean") for r in per_target.values()),
            "findings": sum(len(r.get("findings", [])) for r in per_target.values()),
            "xnnpack_subgraphs": et.get("subgraphs"), "ops_outside_xnnpack": et.get("outside_ops"),
            "delegated_share_ops": et.get("delegated_share_ops"),
            "delegated_share_macs": et.get("delegated_share_macs"),
            "tflite_convertible": tfl.get("convertible"), "tflite_transposes": tfl.get("transpose_count"),
            "fixable_by": dict(sorted(fixes.items(), key=lambda kv: -kv[1])), "not_fixable": report_only}
