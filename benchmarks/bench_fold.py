#!/usr/bin/env python
"""Deploy-time folds (issue 12, section 2): each model's deploy form before and after, in one run.

    .venv/bin/python benchmarks/bench_fold.py                    # levit_128s, mobilevit_xxs (~10 min)
    .venv/bin/python benchmarks/bench_fold.py --rounds 5 --runs 40

"before" is the deploy form with the folds switched off (`LeViTAttention.deploy_folds`, `mobilevit.Attention.
deploy_folds` = False: the graph of the code before them), "after" the current one. Both are converted by the
converter pipeline (parity checks included) with bench_zoo.py's realistic weights, to ExecuTorch XNNPACK fp32 and
LiteRT fp32. Structure per file: delegated subgraphs and ops (ExecuTorch), ops, internal TRANSPOSEs and XNNPACK
partitions (TFLite). Timing as in bench_peers.py: 1 thread, every file in a FRESH process, interleaved rounds with
the XNNPACK GEMM peak measured in each round; per file the median of its round medians; % of peak = MACs / time
/ peak. Writes benchmarks/results/perf_fold.json and perf_fold.md with machine, versions and load averages.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MODELS = [("levit_128s", 224), ("mobilevit_xxs", 256)]
FORMS = ("before", "after")
TARGETS = {"executorch-fp32": ("executorch", "xnnpack"), "litert-fp32": ("tflite", "litert")}


def set_deploy_folds(on: bool) -> None:
    """The class switches of the folds (models/levit.py, models/mobilevit.py)."""
    from edge_sdk.models import levit, mobilevit
    levit.LeViTAttention.deploy_folds = on
    mobilevit.Attention.deploy_folds = on


def convert_worker(name: str, form: str, target: str, work: str) -> None:
    """Child process: one conversion through the pipeline, folds on or off."""
    from edge_sdk.converters.base import ConvertOptions
    from edge_sdk.converters.pipeline import convert
    from edge_sdk.models import create_model
    from edge_sdk.runtime.realistic import fill_realistic_weights
    set_deploy_folds(form == "after")
    model = fill_realistic_weights(create_model(name), seed=0)
    model.name = name
    convert(model, target, ConvertOptions(precision="fp32"), Path(work), force=True, show_progress=False)


def convert_all(work: Path, log) -> dict[tuple[str, str, str], dict]:  # noqa: ANN001
    """{(model, runtime, form): {file, macs, structure}}; reuses bundles already converted in `work`."""
    from edge_sdk.bundle import read_bundle
    from edge_sdk.converters.pipeline import bundle_name
    from edge_sdk.profile import tflite_partitions
    out = {}
    for name, _ in MODELS:
        for form in FORMS:
            for rt, (target, backend) in TARGETS.items():
                dest_dir = work / form
                dest = dest_dir / bundle_name(name, target, backend, "fp32")
                if not (dest / "manifest.json").exists():
                    t0 = time.time()
                    proc = subprocess.run([sys.executable, __file__, "--convert-worker", name, form, target,
                                           str(dest_dir)], capture_output=True, text=True, timeout=3600)
                    if proc.returncode != 0 or not (dest / "manifest.json").exists():
                        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:200]
                        log(f"convert {name} {form} {target} FAILED: {why}")
                        out[(name, rt, form)] = {"error": why}
                        continue
                    log(f"converted {form}/{dest.name} in {time.time() - t0:.0f} s")
                b = read_bundle(dest)
                rep = b.manifest.report
                if target == "executorch":
                    st = {"subgraphs": rep["delegated_subgraphs"], "ops": rep["delegated_ops"],
                          "outside": rep["non_delegated_ops"]}
                else:
                    st = {"ops": rep["ops"], "internal_transpose": rep["internal_transpose_count"],
                          "partitions": tflite_partitions(b.model_file, 1)["partitions"]}
                out[(name, rt, form)] = {"file": str(b.model_file), "macs": b.manifest.model.macs, **st}
    return out


def measure_rounds(bench_peers, files: dict, sizes: dict, args, peak_pte: Path, log):  # noqa: ANN001, ANN201
    """bench_peers' interleaved fresh-process rounds, keeping each file's fastest run too: on a shared machine
    the minimum is the least contended number (bursts of load only ever add time)."""
    samples = {k: [] for k, v in files.items() if "file" in v}
    mins = {k: [] for k in samples}
    peaks = []
    for r in range(args.rounds):
        peak = bench_peers._child(["--peak-worker", str(peak_pte)])
        peaks += [peak["gmacs_per_s"]] if "gmacs_per_s" in peak else []
        for key in samples:
            res = bench_peers._child(["--time-worker", files[key]["file"], str(sizes[key[0]]), "1",
                                      str(args.warmup), str(args.runs)])
            if "median_ms" in res:
                samples[key].append(res["median_ms"])
                mins[key].append(res["min_ms"])
        log(f"round {r + 1}/{args.rounds} done (peak {peaks[-1] if peaks else float('nan'):.1f} GMAC/s)")
    return samples, mins, peaks


def report(files: dict, samples: dict, mins: dict, peaks: list[float], loads: list[float]) -> tuple[dict, str]:
    from edge_sdk.bench import machine_info
    peak = statistics.median(peaks) if peaks else None
    best_peak = max(peaks) if peaks else None
    rows = []
    for name, _ in MODELS:
        for rt in TARGETS:
            row = {"model": name, "runtime": rt}
            for form in FORMS:
                f = files.get((name, rt, form), {})
                s = samples.get((name, rt, form)) or []
                ms = statistics.median(s) if s else None
                best = min(mins.get((name, rt, form)) or [0]) or None
                row[form] = {**{k: v for k, v in f.items() if k != "file"}, "ms": ms, "rounds_ms": s,
                             "min_ms": best, "rounds_min_ms": mins.get((name, rt, form)),
                             "pct_of_peak": 100 * f["macs"] / (ms * 1e6) / peak if ms and f.get("macs") and peak
                             else None,
                             "min_pct_of_best_peak": 100 * f["macs"] / (best * 1e6) / best_peak
                             if best and f.get("macs") and best_peak else None}
            b, a = row["before"]["ms"], row["after"]["ms"]
            row["speedup"] = b / a if a and b else None
            rows.append(row)
    machine = machine_info()
    meta = {"machine": machine, "peak_gmacs_per_s_1t": peak, "peak_rounds": peaks,
            "load_average_during_run": loads, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    busy = max(loads) > 0.5 * (machine["cores"] or 1)
    lines = [f"Machine: {machine['cpu']}, {machine['cores']} cores; "
             + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()), "",
             f"1 thread, fp32; every file timed in a fresh process, {len(peaks)} interleaved rounds, median of the "
             f"round medians. XNNPACK GEMM peak in the same run: {peak or float('nan'):.1f} GMAC/s (rounds: "
             + ", ".join(f"{p:.1f}" for p in peaks) + f"). Load average (1 min) during the run: "
             + ", ".join(f"{x:.1f}" for x in loads) + f" on {machine['cores']} cores"
             + (" - NOT a quiet machine: read before/after within a row, not across runs." if busy else "."), "",
             "| model | runtime | structure before -> after | median ms before / after | after / before | "
             "fastest run ms before / after | after / before | % of best peak (fastest runs) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b, a = r["before"], r["after"]
        if "executorch" in r["runtime"]:
            st = f"{b.get('ops')} -> {a.get('ops')} delegated ops, {a.get('subgraphs')} subgraph(s)"
        else:
            st = (f"{b.get('ops')} -> {a.get('ops')} ops, {a.get('partitions')} partition(s), "
                  f"{a.get('internal_transpose')} internal TRANSPOSE")
        ms = " / ".join(f"{x['ms']:.2f}" if x["ms"] else f"fails: {str(x.get('error'))[:40]}" for x in (b, a))
        ratio = f"{a['ms'] / b['ms']:.3f}" if a["ms"] and b["ms"] else ""
        fast = " / ".join(f"{x['min_ms']:.2f}" if x["min_ms"] else "?" for x in (b, a))
        fratio = f"{a['min_ms'] / b['min_ms']:.3f}" if a["min_ms"] and b["min_ms"] else ""
        pct = " -> ".join(f"{x['min_pct_of_best_peak']:.0f}%" if x["min_pct_of_best_peak"] else "?" for x in (b, a))
        lines.append(f"| {r['model']} | {r['runtime']} | {st} | {ms} | {ratio} | {fast} | {fratio} | {pct} |")
    lines += ["", f"Best GEMM peak of the rounds: {best_peak or float('nan'):.1f} GMAC/s. The fastest-run columns "
              "are the least contended numbers on a shared machine; the median columns swing with the load.", "",
              "Per-round medians (ms), before | after:", ""]
    for r in rows:
        lines.append(f"- {r['model']} {r['runtime']}: " + " | ".join(
            ", ".join(f"{x:.2f}" for x in r[f]["rounds_ms"]) for f in FORMS))
    return {**meta, "results": rows}, "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--work", type=Path, default=ROOT / ".work" / "fold")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    ap.add_argument("--convert-worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    from edge_sdk.cli import quiet_toolchain_logs
    quiet_toolchain_logs()
    if args.convert_worker:
        convert_worker(*args.convert_worker)
        return 0

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    sys.path.insert(0, str(ROOT))
    import bench_peers
    loads = [os.getloadavg()[0]]
    files = convert_all(args.work, log)
    from edge_sdk.profile import build_gemm_pte
    peak_pte = ROOT / ".work" / "gemm_256x2048x2048.pte"
    if not peak_pte.exists():
        peak_pte.parent.mkdir(parents=True, exist_ok=True)
        build_gemm_pte(peak_pte)
    loads.append(os.getloadavg()[0])
    sizes = dict(MODELS)
    samples, mins, peaks = measure_rounds(bench_peers, files, sizes, args, peak_pte, log)
    loads.append(os.getloadavg()[0])
    data, md = report(files, samples, mins, peaks, loads)
    bench_peers.write_results(args.out, "perf_fold", data, md, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
