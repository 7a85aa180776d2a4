"""The before/after table of `lint --fix`: delegation, TRANSPOSE count, TFLite convertibility and latency.

Latency is measured as `edge-sdk bench` measures it: each model converted to an fp32 bundle (ExecuTorch XNNPACK,
LiteRT) in a temp folder by the normal pipeline (parity included), each bundle timed at 1 thread in a fresh process;
`latency_pair` times the before and after bundles interleaved, so their ratio survives a shared machine.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from torch import nn

ROWS = (("XNNPACK subgraphs", "xnnpack_subgraphs"), ("ops outside XNNPACK", "ops_outside_xnnpack"),
        ("delegated share of MACs", "delegated_share_macs"), ("TFLite convertible", "tflite_convertible"),
        ("TFLite TRANSPOSE ops", "tflite_transposes"), ("ExecuTorch p50 ms (1 thread)", "executorch_p50_ms"),
        ("LiteRT p50 ms (1 thread)", "litert_p50_ms"))


def latency(model: nn.Module, runs: int = 20, warmup: int = 3) -> dict[str, float | None]:
    """p50 at 1 thread in ExecuTorch (XNNPACK) and LiteRT; None where the model does not convert."""
    from edge_sdk import bench
    from edge_sdk.converters.base import ConvertOptions
    from edge_sdk.converters.pipeline import convert
    from edge_sdk.errors import EdgeError
    out: dict[str, float | None] = {"executorch_p50_ms": None, "litert_p50_ms": None}
    with tempfile.TemporaryDirectory() as tmp:
        for target, key in (("executorch", "executorch_p50_ms"), ("tflite", "litert_p50_ms")):
            try:
                res = convert(model, target, ConvertOptions(precision="fp32"), Path(tmp), force=True,
                              show_progress=False)
            except EdgeError:
                continue
            r = bench.run_benchmarks([str(res[0].bundle)], [1], warmup, runs, budget_ms=None,
                                     show_progress=False)[0]
            out[key] = r.get("p50_ms")
    return out


def latency_pair(before: nn.Module, after: nn.Module, runs: int = 20, warmup: int = 3,
                 rounds: int = 2) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """`latency` for the original and the fixed model, timed INTERLEAVED (before, after, before, after, ...) once
    all four bundles exist, each run in a fresh process; per bundle the lowest p50 of the rounds. On a shared
    machine a slow spell then hits both sides, instead of one side converted and timed minutes after the other."""
    from edge_sdk import bench
    from edge_sdk.converters.base import ConvertOptions
    from edge_sdk.converters.pipeline import convert
    from edge_sdk.errors import EdgeError
    keys = (("executorch", "executorch_p50_ms"), ("tflite", "litert_p50_ms"))
    out: tuple[dict[str, float | None], ...] = ({k: None for _, k in keys}, {k: None for _, k in keys})
    with tempfile.TemporaryDirectory() as tmp:
        for target, key in keys:
            bundles = []
            for i, model in enumerate((before, after)):
                try:
                    res = convert(model, target, ConvertOptions(precision="fp32"), Path(tmp) / str(i), force=True,
                                  show_progress=False)
                    bundles.append(str(res[0].bundle))
                except EdgeError:
                    bundles.append(None)
            present = [b for b in bundles if b]
            if not present:
                continue
            results = bench.run_benchmarks(present * rounds, [1], warmup, runs, budget_ms=None,
                                           show_progress=False)
            for i, b in enumerate(bundles):
                p50s = [r.get("p50_ms") for j, r in enumerate(results) if present[j % len(present)] == b]
                p50s = [v for v in p50s if v]
                out[i][key] = min(p50s) if p50s else None
    return out[0], out[1]


def table(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"metric": label, "before": before.get(key), "after": after.get(key)} for label, key in ROWS]


def markdown(rows: list[dict[str, Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if v < 10 else f"{v:.1f}"
        return "n/a" if v is None else str(v)
    lines = ["| metric | before | after |", "|---|---|---|"]
    lines += [f"| {r['metric']} | {cell(r['before'])} | {cell(r['after'])} |" for r in rows]
    return "\n".join(lines)
