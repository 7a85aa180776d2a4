#!/usr/bin/env python
"""Where each family's fp32 time goes, and how close to the GEMM peak it could get: `edge-sdk profile` per model.

    .venv/bin/python benchmarks/profile_zoo.py                 # bench_zoo.py's representative fp32 .pte bundles
    .venv/bin/python benchmarks/profile_zoo.py --models levit_128s,mobilevit_xxs --precision int8

Reads the bundles bench_zoo.py converted (benchmarks/.work; run `bench_zoo.py --convert-only` first), profiles each
ExecuTorch .pte at 1 thread in a fresh process (ETDump + Inspector, every XNNPACK kernel mapped to a module) and
writes benchmarks/results/profile_<precision>.json / .md: per model the % of the GEMM peak, the time share and
GMAC/s of every op class, and a ceiling: the % of peak the model would reach if every op that carries MACs (1x1 GEMMs,
convs, depthwise convs, attention bmm) ran AT the GEMM peak while everything else (softmax, activations, data
movement, normalizers, runtime overhead) kept its measured time. A ceiling under 70% means no GEMM tuning can
reach the 70% bar; only removing the MAC-free work can.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MODELS = ["levit_128s", "mobilevit_xxs", "mobilevitv2_050", "mobilevitv2_100", "pbhybrid_tiny", "cctt_tiny",
          "efficientnet_lite0"]


def profile(bundle: Path, runs: int) -> dict:
    proc = subprocess.run([str(Path(sys.executable).parent / "edge-sdk"), "profile", str(bundle), "--json",
                           "--runs", str(runs)], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:200]}
    return json.loads(proc.stdout)


def ceiling_pct(prof: dict) -> float | None:
    """% of peak with every MAC-carrying op class at the peak and the rest as measured."""
    peak = prof.get("peak_gmacs_per_s")
    if not peak:
        return None
    rest_ms = prof["overhead_ms"] + sum(c["ms"] for c in prof["by_op_class"] if not c["macs"])
    ideal_ms = prof["model_macs"] / peak / 1e6 + rest_ms
    return 100.0 * prof["model_macs"] / (ideal_ms * 1e6) / peak


def markdown(rows: list[dict], precision: str) -> str:
    first = next((r["profile"] for r in rows if "error" not in r["profile"]), None)
    m = first["machine"] if first else {"cpu": "?", "cores": "?", "versions": {}}
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
             "", f"`edge-sdk profile` of each ExecuTorch XNNPACK {precision} .pte (bench_zoo.py's realistic weights), "
             "1 thread, fresh process each. `ceiling`: the % of peak with every MAC-carrying op at the GEMM peak and "
             "everything else as measured.", "",
             "| model | ms | % of peak | ceiling | time by op class (share, % of peak where it has MACs) |",
             "|---|---|---|---|---|"]
    for r in rows:
        p = r["profile"]
        if "error" in p:
            lines.append(f"| {r['model']} | error: {p['error'][:80]} | | | |")
            continue
        parts = [f"{c['name']} {c['share']:.0f}%" + (f" @{c['pct_of_peak']:.0f}%" if c.get("pct_of_peak") else "")
                 for c in p["by_op_class"] if c["share"] >= 1.0]
        lines.append(f"| {r['model']} | {p['execute_ms']:.2f} | {p['pct_of_peak'] or 0:.0f}% | "
                     f"{r['ceiling_pct'] or 0:.0f}% | {'; '.join(parts)} |")
    peak = first.get("peak_gmacs_per_s") if first else None
    return "\n".join(lines) + f"\n\nGEMM peak (XNNPACK 256x2048x2048, 1 thread): {peak or float('nan'):.1f} GMAC/s.\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--work", type=Path, default=ROOT / ".work")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    ap.add_argument("--report-only", action="store_true", help="Re-render the .md from --out's .json.")
    args = ap.parse_args()
    if args.report_only:
        from edge_sdk.bundle import atomic_write
        data = json.loads((args.out / f"profile_{args.precision}.json").read_text())
        atomic_write(args.out / f"profile_{args.precision}.md", markdown(data["results"], args.precision))
        return 0
    sys.path.insert(0, str(ROOT))
    from bench_peers import write_results
    rows = []
    for name in args.models.split(","):
        bundle = args.work / f"{name}-executorch-xnnpack-{args.precision}"
        print(f"[{time.strftime('%H:%M:%S')}] profiling {bundle.name}", flush=True)
        prof = profile(bundle, args.runs) if bundle.exists() else {"error": f"no bundle {bundle}"}
        rows.append({"model": name, "profile": prof, "ceiling_pct": None if "error" in prof else ceiling_pct(prof)})
    data = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "precision": args.precision,
            "results": rows}
    write_results(args.out, f"profile_{args.precision}", data, markdown(rows, args.precision),
                  lambda msg: print(msg, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
