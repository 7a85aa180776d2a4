#!/usr/bin/env python
"""Convert the standard-size zoo to every target and record what each bundle is: size, delegation, parity.

Each (model, target, precision) runs `edge-sdk convert ... --json` in a fresh process (the CLI a user runs, with
its own parity check), so one model's memory or a toolchain crash cannot affect the next. Results are appended to
benchmarks/results/convert_zoo.json as they arrive (an interrupted run resumes where it stopped) and rendered to
convert_zoo.md with the machine and toolchain versions.

Weights: each family's default random init, 1000 classes, deploy input size (no pretrained weights can be
downloaded here). fp32 parity is exact either way; for int8 with random weights few images are decisive, so top-1
is judged on few images and the cosine carries the verdict (docs/converters.md, "Decisive images").

    .venv/bin/python benchmarks/convert_zoo.py                                # all 19 standard models, defaults
    .venv/bin/python benchmarks/convert_zoo.py --models levit_128s --variants executorch:int8,tflite:int8
    .venv/bin/python benchmarks/convert_zoo.py --render                       # only rewrite the markdown
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "convert_zoo.json"
DEFAULT_VARIANTS = ("executorch:fp32", "tflite:fp32", "coreml:fp16")
TIMEOUT_S = 3600


def standard_models() -> list[str]:
    """Every registered model except the tiny test variants."""
    from edge_sdk.models.registry import list_models
    return list_models(include_tiny=False)


def convert_cli(model: str, target: str, precision: str, out: Path) -> dict:
    """One `edge-sdk convert --json` run; returns its result dict or {"error": ...}."""
    exe = Path(sys.executable).with_name("edge-sdk")
    cmd = [str(exe), "convert", model, "--target", target, "--precision", precision, "-o", str(out), "--force",
           "--json"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S,
                          env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    wall = round(time.perf_counter() - start, 1)
    try:
        (result,) = json.loads(proc.stdout)
    except (ValueError, TypeError):
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": err[:300], "exit_code": proc.returncode, "wall_s": wall}
    result["exit_code"], result["wall_s"] = proc.returncode, wall
    return result


def summarize(result: dict) -> dict:
    """The columns of the table, from the CLI's JSON (report and parity as stored in the manifest)."""
    if "error" in result:
        return {"error": result["error"], "exit_code": result["exit_code"], "wall_s": result["wall_s"]}
    rep, par = result["report"], result["parity"]
    row = {"size_mb": round(result["size_bytes"] / 1e6, 2), "exit_code": result["exit_code"],
           "convert_s": result["seconds"], "wall_s": result["wall_s"], "parity": par.get("status"),
           "failures": par.get("failures", []), "reason": par.get("reason")}
    images = par.get("images") or {}
    row.update({k: images.get(k) for k in ("max_abs_ratio", "cosine_mean", "top1_agreement_decisive", "decisive")})
    if "delegated_subgraphs" in rep:
        row["delegation"] = {"subgraphs": rep["delegated_subgraphs"], "delegated_ops": rep.get("delegated_ops"),
                             "outside": rep.get("non_delegated") or {}}
    elif "ane_ready" in rep:
        row["delegation"] = {"ane_ready": rep["ane_ready"], "ops": rep["summary"]["ops"],
                             "issues": rep["summary"].get("issues_by_rule", {})}
    else:
        row["delegation"] = {k: rep.get(k) for k in ("ops", "gpu_compatible", "nnapi_compatible",
                                                     "transpose_count", "internal_transpose_count", "reshape_count")}
    return row


def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"machine": None, "rows": {}}


def save(data: dict) -> None:
    from edge_sdk.bundle import atomic_write
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(RESULTS, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def _delegation_cell(d: dict) -> str:
    if "subgraphs" in d:
        outside = ", ".join(f"{k} x{v}" for k, v in d["outside"].items()) or "nothing outside"
        return f"{d['subgraphs']} XNNPACK subgraph, {d['delegated_ops']} ops; {outside}"
    if "ane_ready" in d:
        issues = ", ".join(f"{k} x{v}" for k, v in d["issues"].items()) or "no issues"
        return f"ANE ready: {'yes' if d['ane_ready'] else 'no'} ({d['ops']} ops; {issues})"
    gpu, nnapi = ("yes" if d.get(k) else "no" for k in ("gpu_compatible", "nnapi_compatible"))
    inside = d.get("internal_transpose_count")
    boundary = (d.get("transpose_count") or 0) - (inside or 0)
    return (f"{d.get('ops')} ops, GPU {gpu}, NNAPI {nnapi}, TRANSPOSE inside: {inside}"
            + (f" (+{boundary} at the NCHW input)" if boundary else ""))


def _parity_cell(r: dict) -> str:
    if r.get("parity") == "not_run":
        return "not run (needs macOS)"
    parts = [r.get("parity") or "?"]
    if r.get("max_abs_ratio") is not None:
        parts.append(f"max-abs {r['max_abs_ratio']:.1e}")
    if r.get("cosine_mean") is not None:
        parts.append(f"cos {r['cosine_mean']:.4f}")
    if r.get("decisive") and r.get("top1_agreement_decisive") is not None:
        parts.append(f"top-1 {r['top1_agreement_decisive']:.0%} of {r['decisive']} decisive")
    return ", ".join(parts)


def render(data: dict) -> str:
    m = data.get("machine") or {}
    lines = ["# Standard zoo: convert every model to every target", "",
             f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores (shared with other jobs while measured). "
             f"Toolchain: {', '.join(f'{k} {v}' for k, v in sorted((m.get('versions') or {}).items()) if v)}.",
             f"Measured {m.get('date', '?')} with `benchmarks/convert_zoo.py` (each conversion is `edge-sdk convert "
             "--json` in a fresh process; random init weights, 1000 classes, deploy input size).", "",
             "| model | target | precision | size MB | delegation / compatibility | parity (8 decoded images) | "
             "convert s |", "|---|---|---|---|---|---|---|"]
    for key in sorted(data["rows"]):
        model, target, precision = key.split("|")
        r = data["rows"][key]
        if "error" in r:
            lines.append(f"| {model} | {target} | {precision} | - | failed: {r['error']} | - | - |")
            continue
        lines.append(f"| {model} | {target} | {precision} | {r['size_mb']:.2f} | {_delegation_cell(r['delegation'])} "
                     f"| {_parity_cell(r)} | {r['convert_s']:.0f} |")
    return "\n".join(lines) + "\n"


def _compact_cell(r: dict | None, target: str) -> str:
    if r is None:
        return "-"
    if "error" in r:
        return f"failed: {r['error'][:60]}"
    d, size = r["delegation"], f"{r['size_mb']:.1f} MB"
    if target == "coreml":
        return f"{size}, ANE ready: {'yes' if d['ane_ready'] else 'no'}"
    verdict = r.get("parity") or "?"
    if target == "executorch":
        outside = "nothing outside" if not d["outside"] else f"{sum(d['outside'].values())} ops outside"
        return f"{size}, {d['subgraphs']} subgraph, {outside}, parity {verdict} ({r['max_abs_ratio']:.0e})"
    gpu = "GPU+NNAPI ok" if d.get("gpu_compatible") and d.get("nnapi_compatible") else "GPU/NNAPI blocked"
    return (f"{size}, {d.get('internal_transpose_count')} TRANSPOSE inside, {gpu}, parity {verdict} "
            f"({r['max_abs_ratio']:.0e})")


def render_compact(data: dict) -> str:
    """One row per model, default precision per target (the README table)."""
    rows = data["rows"]
    lines = ["| model | ExecuTorch XNNPACK fp32 | TFLite fp32 | Core ML fp16 (iOS17) |", "|---|---|---|---|"]
    for model in sorted({k.split("|")[0] for k in rows}):
        cells = [_compact_cell(rows.get(f"{model}|{t}|{p}"), t)
                 for t, p in (("executorch", "fp32"), ("tflite", "fp32"), ("coreml", "fp16"))]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def machine() -> dict:
    from edge_sdk.bench import machine_info
    info = machine_info()
    info["date"] = time.strftime("%Y-%m-%d")
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example: benchmarks/convert_zoo.py --models levit_128s,cctt_tiny")
    ap.add_argument("--models", help="comma-separated zoo names (default: every standard model)")
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="target:precision list")
    ap.add_argument("--redo", action="store_true", help="convert again even when a result is stored")
    ap.add_argument("--render", action="store_true", help="only rewrite convert_zoo.md from the JSON")
    args = ap.parse_args(argv)
    data = load()
    if not args.render:
        data["machine"] = machine()
        models = args.models.split(",") if args.models else standard_models()
        variants = [v.split(":") for v in args.variants.split(",")]
        with tempfile.TemporaryDirectory(prefix="convert-zoo-") as tmp:
            for model in models:
                for target, precision in variants:
                    key = f"{model}|{target}|{precision}"
                    if key in data["rows"] and not args.redo:
                        continue
                    data["rows"][key] = summarize(convert_cli(model, target, precision, Path(tmp)))
                    print(key, json.dumps(data["rows"][key])[:200], flush=True)
                    save(data)
    (ROOT / "results" / "convert_zoo.md").write_text(render(data) + "\n## One row per model\n\n"
                                                      + render_compact(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
