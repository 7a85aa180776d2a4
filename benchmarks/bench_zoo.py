#!/usr/bin/env python
"""Reproducible zoo benchmark: standard-size models x runtimes x threads, each measurement in a fresh process.

Runtimes: PyTorch eager, ExecuTorch XNNPACK fp32 / int8, LiteRT fp32 / int8 (full integer; dynamic_int8 when the
full-integer conversion fails). Models get realistic weights first (no exact zeros, BN statistics from synthetic
images: random init lets LiteRT prune branches). Each runtime's efficiency is reported against this CPU's measured
peak: a large GEMM lowered to an XNNPACK .pte at the same thread count (torch.matmul reaches far less, so it would
make efficiencies exceed 100%).

Writes benchmarks/results/zoo.json, zoo.md and zoo.png (with the machine and toolchain versions).

    .venv/bin/python benchmarks/bench_zoo.py                      # whole zoo (slow: hours on 2 busy cores)
    .venv/bin/python benchmarks/bench_zoo.py --models levit_128s,mobilevitv2_050 --quick
    .venv/bin/python benchmarks/bench_zoo.py --representative --quick --threads 1   # 1-2 per family
    .venv/bin/python benchmarks/bench_zoo.py --convert-only --variants executorch-fp32,litert-fp32  # then time
      # quietly: conversions are the slow, noisy part; run them first, time later with nothing else running
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VARIANTS = [  # (label, target, precision, fallback precision)
    ("executorch-fp32", "executorch", "fp32", None),
    ("executorch-int8", "executorch", "int8", None),
    ("litert-fp32", "tflite", "fp32", None),
    ("litert-int8", "tflite", "int8", "dynamic_int8"),
]
PEAK_MARK = "EDGE_SDK_PEAK "
LOADS: list[float] = []  # 1-minute load average at the start of each model's measurements
# One or two standard models per family (the quiet-machine re-run: conversions + 1 thread --quick in ~15 min).
REPRESENTATIVE = ["levit_128s", "mobilevit_xxs", "mobilevitv2_050", "mobilevitv2_100", "pbhybrid_tiny", "cctt_tiny"]


# ---- the CPU's peak: a big GEMM through XNNPACK ------------------------------------------------------------------

def build_gemm_pte(path: Path, rows: int = 256, dim: int = 2048) -> None:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    lin = torch.nn.Linear(dim, dim, bias=False).eval()
    ep = torch.export.export(lin, (torch.randn(rows, dim),))
    path.write_bytes(to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)


def peak_worker(pte: str, threads: int, rows: int = 256, dim: int = 2048, runs: int = 20) -> None:
    """Fresh process: size ExecuTorch's pool, load the GEMM, print the best GMAC/s."""
    import numpy as np
    from edge_sdk.runtime.engines import open_executorch
    run = open_executorch(pte, threads=threads)
    x = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
    for _ in range(3):
        run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
    macs = rows * dim * dim
    print(PEAK_MARK + json.dumps({"threads": threads, "gmacs_per_s": macs / min(times) / 1e9,
                                  "median_gmacs_per_s": macs / float(np.median(times)) / 1e9}), flush=True)


def measure_peak(work: Path, threads: int) -> dict:
    pte = work / "gemm_256x2048x2048.pte"
    if not pte.exists():
        build_gemm_pte(pte)
    out = subprocess.run([sys.executable, __file__, "--peak-worker", str(pte), str(threads)], capture_output=True,
                         text=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)), timeout=600)
    for line in out.stdout.splitlines():
        if line.startswith(PEAK_MARK):
            return json.loads(line[len(PEAK_MARK):])
    raise RuntimeError(f"peak worker failed: {out.stderr[-500:]}")


# ---- conversions --------------------------------------------------------------------------------------------------

def convert_worker(name: str, target: str, precision: str, work: str) -> None:
    """Child process: one conversion (a native crash in a runtime's parity check must not kill the benchmark)."""
    from edge_sdk.converters.base import ConvertOptions
    from edge_sdk.converters.pipeline import convert
    from edge_sdk.models import create_model
    from edge_sdk.runtime.realistic import fill_realistic_weights
    model = fill_realistic_weights(create_model(name), seed=0)
    model.name = name
    convert(model, target, ConvertOptions(precision=precision), Path(work), force=True, show_progress=False)


def convert_variants(name: str, work: Path, log,  # noqa: ANN001
                     labels: tuple[str, ...] | None = None, cached_only: bool = False) -> dict[str, Path]:
    """The bundles of one model (all four, or only `labels`), with realistic weights; reuses earlier bundles
    (`cached_only`: only those, converting nothing)."""
    from edge_sdk.converters.pipeline import bundle_name
    out = {}
    for label, target, precision, fallback in VARIANTS:
        if labels is not None and label not in labels:
            continue
        for prec in [precision] + ([fallback] if fallback else []):
            backend = "xnnpack" if target == "executorch" else "litert"
            dest = work / bundle_name(name, target, backend, prec)
            if not (dest / "manifest.json").exists():
                if cached_only:
                    continue
                t0 = time.time()
                proc = subprocess.run([sys.executable, __file__, "--convert-worker", name, target, prec, str(work)],
                                      capture_output=True, text=True, timeout=3600)
                if proc.returncode != 0 or not (dest / "manifest.json").exists():
                    why = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1][:200]
                    log(f"  convert {name} {target} {prec} FAILED (exit {proc.returncode}): {why}")
                    continue
                log(f"  converted {dest.name} in {time.time() - t0:.0f} s")
            out[f"{label}" if prec == precision else f"litert-{prec}"] = dest
            break
    return out


# ---- report -------------------------------------------------------------------------------------------------------

def efficiency(r: dict, peaks: dict[int, float]) -> float | None:
    g = r.get("gmacs_per_s")
    peak = peaks.get(r.get("threads"))
    return 100.0 * g / peak if g and peak else None


def summary(results: list[dict], peaks: dict[int, float], budget: float, threads: int = 1) -> list[str]:
    """One row per model at `threads`: p90 and % of peak per runtime, int8 over fp32 per runtime (medians)."""
    rows = {(r["model"], r["runtime"]): r for r in results if not r.get("error") and r.get("threads") == threads}
    macs: dict[str, int] = {}
    for (m, _), r in rows.items():  # the model's first row (PyTorch eager when measured): its nominal MACs
        macs.setdefault(m, r["macs"])

    def cell(m: str, rt: str) -> str:
        r = rows.get((m, rt))
        if not r:
            return "-"
        eff = r.get("efficiency_pct", efficiency(r, peaks))
        return f"{r['p90_ms']:.1f}" + (f" ({eff:.0f}%)" if eff is not None and "fp32" in rt else "")

    def gain(m: str, rt: str) -> str:
        f, q = rows.get((m, f"{rt}-fp32")), rows.get((m, f"{rt}-int8")) or rows.get((m, "litert-dynamic_int8"))
        return f"{f['p50_ms'] / q['p50_ms']:.2f}x" if f and q else "-"

    lines = [f"| model | GMACs | ExecuTorch fp32 p90 ms (% of peak) | ExecuTorch int8 p90 ms | int8 speed-up | "
             f"LiteRT fp32 p90 ms (% of peak) | LiteRT int8 p90 ms | int8 speed-up | fp32 p90 <= {budget:g} ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in sorted(macs, key=macs.get):
        fp32 = [rows.get((m, rt)) for rt in ("executorch-fp32", "litert-fp32")]
        ok = "yes" if all(r and r["p90_ms"] <= budget for r in fp32) else "NO"
        lines.append(f"| {m} | {macs[m] / 1e9:.2f} | {cell(m, 'executorch-fp32')} | {cell(m, 'executorch-int8')} | "
                     f"{gain(m, 'executorch')} | {cell(m, 'litert-fp32')} | "
                     f"{cell(m, 'litert-int8') if (m, 'litert-int8') in rows else cell(m, 'litert-dynamic_int8')} | "
                     f"{gain(m, 'litert')} | {ok} |")
    return lines


def markdown(results: list[dict], peaks: dict[int, float], machine: dict, budget: float,
             loads: list[float] = ()) -> str:
    lines = [f"Machine: {machine['cpu']}, {machine['cores']} cores; "
             + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()), "",
             *([f"1-minute load average at the start of each model: {min(loads):.2f}-{max(loads):.2f} on "
                f"{machine['cores']} cores (each measurement uses one core, in a fresh process).", ""]
               if loads else []),
             "Peak (XNNPACK GEMM 256x2048x2048 .pte): "
             + ", ".join(f"{t} thread(s) {p:.1f} GMAC/s" for t, p in sorted(peaks.items())), "",
             "Per model, 1 thread (int8 speed-up: fp32 median / int8 median, same runtime, same run):", "",
             *summary(results, peaks, budget), "", "Every row:", "",
             "| model | GMACs | runtime | threads | p50 ms | p90 ms | mean ms | GMAC/s | % of peak | vs eager | "
             f"p90 <= {budget:g} ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    eager = {(r["model"], r["threads"]): r["mean_ms"] for r in results
             if r.get("runtime") == "pytorch-eager" and r.get("mean_ms")}
    for r in results:
        if r.get("error"):
            lines.append(f"| {r.get('model')} | | {r.get('runtime')} | {r.get('threads')} | error: "
                         f"{str(r['error'])[:80]} | | | | | | |")
            continue
        e = eager.get((r["model"], r["threads"]))
        speed = f"{e / r['mean_ms']:.1f}x" if e and r.get("runtime") != "pytorch-eager" else ""
        eff = r.get("efficiency_pct", efficiency(r, peaks))
        lines.append(f"| {r['model']} | {r['macs'] / 1e9:.2f} | {r['runtime']} | {r['threads']} | "
                     f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['mean_ms']:.2f} | {r.get('gmacs_per_s', 0):.1f} | "
                     f"{'' if eff is None else f'{eff:.0f}%'} | {speed} | "
                     f"{'yes' if r['p90_ms'] <= budget else 'NO'} |")
    return "\n".join(lines) + "\n"


def chart(results: list[dict], path: Path, threads: int = 1) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    rows = [r for r in results if not r.get("error") and r["threads"] == threads]
    models = sorted({r["model"] for r in rows}, key=lambda m: next(r["macs"] for r in rows if r["model"] == m))
    runtimes = ["pytorch-eager"] + [v[0] for v in VARIANTS] + ["litert-dynamic_int8"]
    runtimes = [rt for rt in runtimes if any(r["runtime"] == rt for r in rows)]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(models)), 4.5))
    w = 0.8 / max(1, len(runtimes))
    for i, rt in enumerate(runtimes):
        vals = [next((r["p90_ms"] for r in rows if r["model"] == m and r["runtime"] == rt), np.nan) for m in models]
        ax.bar(np.arange(len(models)) + i * w, vals, w, label=rt)
    ax.axhline(50, color="red", linestyle="--", linewidth=1, label="50 ms budget")
    ax.set_xticks(np.arange(len(models)) + 0.4 - w / 2, models, rotation=20)
    ax.set_ylabel(f"p90 latency (ms), {threads} thread")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("edge-sdk zoo latency by runtime")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ---- main ---------------------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="Comma-separated zoo names (default: every standard-size model).")
    ap.add_argument("--representative", action="store_true",
                    help=f"One or two models per family: {','.join(REPRESENTATIVE)}.")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quick", action="store_true", help="Fewer runs (warmup 2, runs 10).")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--budget-ms", type=float, default=50.0)
    ap.add_argument("--work", type=Path, default=ROOT / ".work", help="Converted bundles (reused between runs).")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    ap.add_argument("--variants", help="Comma-separated runtimes to include (default: all): pytorch-eager,"
                    + ",".join(v[0] for v in VARIANTS) + ".")
    ap.add_argument("--convert-only", action="store_true", help="Convert the bundles into --work and stop.")
    ap.add_argument("--report-only", action="store_true", help="Re-render zoo.md / zoo.png from --out's zoo.json.")
    ap.add_argument("--cached-only", action="store_true",
                    help="Time only the bundles already in --work (after a --convert-only run).")
    ap.add_argument("--peak-worker", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--convert-worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    from edge_sdk.cli import quiet_toolchain_logs
    quiet_toolchain_logs()  # before any toolchain import, also in the worker processes
    if args.convert_worker:
        convert_worker(*args.convert_worker)
        return 0
    if args.report_only:
        return _rerender(args.out)
    if args.peak_worker:
        peak_worker(args.peak_worker[0], int(args.peak_worker[1]))
        return 0
    from edge_sdk import bench
    from edge_sdk.models import list_models
    names = (args.models.split(",") if args.models else REPRESENTATIVE if args.representative
             else list_models(include_tiny=False))
    wanted = tuple(args.variants.split(",")) if args.variants else None
    if args.convert_only:
        args.work.mkdir(parents=True, exist_ok=True)
        for name in names:
            print(f"[{time.strftime('%H:%M:%S')}] {name}: converting", flush=True)
            convert_variants(name, args.work, print, wanted)
        return 0
    threads = [int(t) for t in args.threads.split(",")]
    runs, warmup = (10, 2) if args.quick else (args.runs, args.warmup)
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    peaks = {}
    for t in threads:
        peaks[t] = measure_peak(args.work, t)["gmacs_per_s"]
        log(f"peak {t} thread(s): {peaks[t]:.1f} GMAC/s")
    results: list[dict] = _kept_rows(args.out / "zoo.json", names)  # earlier runs' other models stay
    machine = bench.machine_info()
    for name in names:
        LOADS.append(round(os.getloadavg()[0], 2))  # recorded with the results: was the machine quiet?
        log(f"{name}: converting")
        eager = {"pytorch-eager": f"torch:{name}"} if wanted is None or "pytorch-eager" in wanted else {}
        sources = {**eager, **{k: str(v) for k, v in convert_variants(  # only the `wanted` bundles
            name, args.work, log, wanted, cached_only=args.cached_only).items()}}
        for runtime, src in sources.items():
            for r in bench.run_benchmarks([src], threads, warmup, runs, budget_ms=args.budget_ms,
                                          show_progress=False):
                r.update(runtime=runtime, model=name, efficiency_pct=efficiency(r, peaks))
                results.append(r)
                log(f"  {runtime:>20} @{r['threads']}t p90 {r.get('p90_ms', float('nan')):.2f} ms "
                    f"{r.get('error', '')}")
        _write(args.out, results, peaks, machine, args, runs, warmup)  # partial results survive interruption
    log(f"wrote {args.out}/zoo.json, zoo.md, zoo.png")
    return 0


def _rerender(out: Path) -> int:
    from edge_sdk.bundle import atomic_write
    data = json.loads((out / "zoo.json").read_text())
    peaks = {int(k): v for k, v in data["peak_gmacs_per_s"].items()}
    atomic_write(out / "zoo.md", markdown(data["results"], peaks, data["machine"], data["budget_ms"],
                                          data.get("load_average_1min", [])))
    chart(data["results"], out / "zoo.png")
    return 0


def _kept_rows(path: Path, names: list[str]) -> list[dict]:
    """Rows of models this run does not re-measure (each keeps the efficiency computed against its run's peak)."""
    if not path.exists():
        return []
    return [r for r in json.loads(path.read_text())["results"] if r.get("model") not in names]


def _write(out: Path, results: list[dict], peaks: dict, machine: dict, args, runs: int, warmup: int) -> None:  # noqa: ANN001
    from edge_sdk.bundle import atomic_write
    meta = {"machine": machine, "peak_gmacs_per_s": peaks, "runs": runs, "warmup": warmup,
            "budget_ms": args.budget_ms, "load_average_1min": LOADS,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write(out / "zoo.json", json.dumps({**meta, "results": results}, indent=2, default=str) + "\n")
    atomic_write(out / "zoo.md", markdown(results, peaks, machine, args.budget_ms, LOADS))
    chart(results, out / "zoo.png")


if __name__ == "__main__":
    sys.exit(main())
