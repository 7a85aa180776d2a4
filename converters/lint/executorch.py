"""ExecuTorch lint: lower to XNNPACK exactly as `convert` does and say, per op, whether it was delegated and why not.

Reasons come from the partitioner itself: its configs report rejected nodes through `WhyNoPartition` on the
`executorch.backends.xnnpack` loggers (captured here at DEBUG level); an op with no config at all has no XNNPACK
kernel. Delegated ops are read from each lowered module's original program, so their MACs count toward the
delegated share.
"""
from __future__ import annotations

import contextlib
import logging
from collections import Counter
from typing import Any, Iterator

import torch

from .graph import location, macs, op_name, op_target
from .rules import rule_for

PLUMBING = {"getitem", "output", "placeholder", "executorch_call_delegate", "_assert_tensor_metadata"}


class _WhyHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.reasons: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.msg  # a WhyNoPartition object, mutated after this call: read it now
        node, reason = getattr(msg, "node", None), getattr(msg, "reason", None)
        if node is not None and reason:
            self.reasons.setdefault(str(node), str(reason))


@contextlib.contextmanager
def partitioner_reasons() -> Iterator[dict[str, str]]:
    """{node name: reason} for every node an XNNPACK config rejected while the block runs."""
    log = logging.getLogger("executorch.backends.xnnpack")
    handler, old, propagate = _WhyHandler(), log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False  # DEBUG records must not reach the user's (or pytest's) root handlers
    try:
        yield handler.reasons
    finally:
        log.removeHandler(handler)
        log.setLevel(old)
        log.propagate = propagate


def supported_ops() -> set[str]:
    """Edge op overloads ('convolution.default', 'mean.dim', ...) that have an XNNPACK partitioner config."""
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    return {c.target_name for c in ALL_PARTITIONER_CONFIGS}


def lower(program: torch.export.ExportedProgram) -> tuple[Any, dict[str, str]]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    with partitioner_reasons() as reasons:
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    return edge, reasons


def analyze(program: torch.export.ExportedProgram) -> dict[str, Any]:
    """Per-op delegation with reasons and locations, plus the summary numbers."""
    edge, reasons = lower(program)
    gm = edge.exported_program().graph_module
    supported = supported_ops()
    delegated: Counter[str] = Counter()
    delegated_macs, subgraphs = 0, 0
    outside: list[dict[str, Any]] = []
    wrong: list[dict[str, Any]] = []  # delegated, but computed wrongly by this XNNPACK
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        name = op_name(node)
        if name == "executorch_call_delegate":
            subgraphs += 1
            for inner in _lowered_nodes(gm, node):
                delegated[op_name(inner)] += 1
                delegated_macs += macs(inner)
                if _wrong_softmax(inner):
                    wrong.append(_softmax_finding(inner))
        elif name not in PLUMBING:
            outside.append(_finding(node, name, reasons, supported))
    outside_macs = sum(f["macs"] for f in outside)
    total_ops = sum(delegated.values()) + len(outside)
    return {
        "target": "executorch",
        "backend": "xnnpack",
        "subgraphs": subgraphs,
        "ops": total_ops,
        "delegated_ops": sum(delegated.values()),
        "outside_ops": len(outside),
        "delegated_share_ops": sum(delegated.values()) / total_ops if total_ops else 1.0,
        "delegated_share_macs": delegated_macs / (delegated_macs + outside_macs) if delegated_macs + outside_macs
        else 1.0,
        "delegated_by_op": dict(sorted(delegated.items())),
        "outside_by_op": dict(Counter(f["op"] for f in outside).most_common()),
        "findings": outside + wrong,
        "delegated_but_wrong": len(wrong),
        "clean": subgraphs <= 1 and not outside and not wrong,
    }


def _lowered_nodes(gm: torch.fx.GraphModule, call: torch.fx.Node) -> list[torch.fx.Node]:
    lowered = getattr(gm, str(call.args[0].target), None) if isinstance(call.args[0], torch.fx.Node) else None
    prog = getattr(lowered, "original_module", None)
    if prog is None:
        return []
    return [n for n in prog.graph.nodes if n.op == "call_function" and op_name(n) not in PLUMBING]


def _finding(node: torch.fx.Node, name: str, reasons: dict[str, str], supported: set[str]) -> dict[str, Any]:
    loc = location(node)
    rule = rule_for(name, loc.code, loc.module_type)
    if node.name in reasons:
        why = f"XNNPACK partitioner: {reasons[node.name]}"
    elif ".".join(op_target(node).split(".")[-2:]) in supported:
        why = "XNNPACK has this op but rejected this use (dtype/shape check: float32/float16 static tensors only)"
    else:
        why = f"XNNPACK has no kernel for {op_target(node)} (not among the partitioner's ops)"
    return {"target": "executorch", "op": name, "node": node.name, "delegated": False, "reason": why,
            "edge_rule": rule.design_rule, "rule_text": rule.why, "fix": list(rule.fixes),
            "where": loc.to_dict(), "macs": macs(node)}


def _wrong_softmax(node: torch.fx.Node) -> bool:
    """Softmax over the last dim of a rank-4 tensor: XNNPACK 1.5.1 takes it and computes it wrongly (measured)."""
    from .graph import shape
    s = shape(node.args[0]) if node.args else None
    return op_name(node) == "_softmax" and bool(s) and len(s) == 4 and int(node.args[1]) % 4 == 3


def _softmax_finding(node: torch.fx.Node) -> dict[str, Any]:
    return {"target": "executorch", "op": "_softmax", "node": node.name, "delegated": True,
            "reason": "delegated to XNNPACK but computed wrongly: softmax over the last dim of a rank-4 tensor "
                      "(measured on executorch 1.5.1: the .pte's logits off by ~100x max|logit|)",
            "edge_rule": "3", "rule_text": "attention softmax on rank-3 (B*h, N, M) tensors or a pooled "
                                          "exp(s - max) / mean(exp) (docs/DESIGN.md)",
            "fix": ["softmax4d_to_rank3"], "where": location(node).to_dict(), "macs": 0}
