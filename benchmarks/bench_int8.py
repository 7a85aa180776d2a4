#!/usr/bin/env python
"""int8 against fp32 in the same runtime, one model per family, in interleaved rounds of fresh processes.

    .venv/bin/python benchmarks/bench_int8.py                  # bench_zoo.py's representative bundles (~6 min)
    .venv/bin/python benchmarks/bench_int8.py --models levit_128s,mobilevit_xxs --rounds 5

Reads the bundles bench_zoo.py converted (benchmarks/.work; `bench_zoo.py --convert-only --representative` first).
Every model file (ExecuTorch fp32 / int8 .pte, LiteRT fp32 / int8 .tflite) is timed at 1 thread in a fresh process,
round after round (round 1: every file, round 2: every file, ...), so a burst of load hits fp32 and int8 alike; the
result per file is the median of its round medians and each speed-up is fp32 / int8 within the run. Writes
benchmarks/results/int8_speedup.json / .md with the machine, versions and the load average seen.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MODELS = ["levit_128s", "mobilevit_xxs", "mobilevitv2_050", "mobilevitv2_100", "pbhybrid_tiny", "cctt_tiny",
          "efficientnet_lite0"]
FILES = {"executorch": ("executorch-xnnpack", "model.pte"), "litert": ("tflite-litert", "model.tflite")}


def model_files(names: list[str], work: Path) -> tuple[dict, dict]:
    """{(model, runtime, precision): {"file": path}} for the bundles present, and {model: input size}."""
    from edge_sdk.bundle import read_bundle
    files, sizes = {}, {}
    for name in names:
        for rt, (stem, fname) in FILES.items():
            for prec in ("fp32", "int8"):
                bundle = work / f"{name}-{stem}-{prec}"
                if (bundle / fname).exists():
                    files[(name, rt, prec)] = {"file": str(bundle / fname)}
                    sizes[name] = read_bundle(bundle).manifest.input.crop
    return files, sizes


def report(names: list[str], samples: dict, peaks: list[float], loads: list[float]) -> tuple[dict, str]:
    from edge_sdk.machine import machine_info
    machine = machine_info()
    rows = []
    for name in names:
        for rt in FILES:
            ms = {p: statistics.median(samples[(name, rt, p)]) if samples.get((name, rt, p)) else None
                  for p in ("fp32", "int8")}
            rows.append({"model": name, "runtime": rt, "fp32_ms": ms["fp32"], "int8_ms": ms["int8"],
                         "rounds": {p: samples.get((name, rt, p), []) for p in ("fp32", "int8")},
                         "speedup": ms["fp32"] / ms["int8"] if ms["fp32"] and ms["int8"] else None})
    lines = [f"Machine: {machine['cpu']}, {machine['cores']} cores; "
             + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()), "",
             f"1 thread; every file timed in a fresh process, {len(peaks)} interleaved rounds, median of the round "
             f"medians; speed-up = fp32 / int8 in the same runtime and run. XNNPACK GEMM peak per round: "
             f"{', '.join(f'{p:.1f}' for p in peaks)} GMAC/s. Load average (1 min): "
             f"{', '.join(f'{x:.2f}' for x in loads)} on {machine['cores']} cores (the timed process itself is 1.0).",
             "", "| model | runtime | fp32 ms | int8 ms | int8 speed-up | >= 1.5x |", "|---|---|---|---|---|---|"]
    for r in rows:
        def cell(v: float | None) -> str:
            return f"{v:.2f}" if v else "-"
        s = r["speedup"]
        lines.append(f"| {r['model']} | {r['runtime']} | {cell(r['fp32_ms'])} | {cell(r['int8_ms'])} | "
                     f"{f'{s:.2f}x' if s else '-'} | {'' if s is None else 'yes' if s >= 1.5 else 'NO'} |")
    data = {"machine": machine, "peak_rounds": peaks, "load_average": loads, "results": rows,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return data, "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--work", type=Path, default=ROOT / ".work")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench_peers import measure_rounds, write_results

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    names = args.models.split(",")
    files, sizes = model_files(names, args.work)
    loads = [os.getloadavg()[0]]
    samples, peaks = measure_rounds(files, sizes, args.rounds, args.warmup, args.runs,
                                    args.work / "gemm_256x2048x2048.pte", log)
    loads.append(os.getloadavg()[0])
    data, md = report(names, samples, peaks, loads)
    write_results(args.out, "int8_speedup", data, md, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
