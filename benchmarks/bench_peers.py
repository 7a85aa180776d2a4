#!/usr/bin/env python
"""Our zoo against timm's models of the same family and size, through the same runtimes, in one run.

    .venv/bin/python benchmarks/bench_peers.py            # mobilevit_xxs, mobilevitv2_050, levit_128s (~10 min)
    .venv/bin/python benchmarks/bench_peers.py --all      # + mobilevit_xs, mobilevitv2_100
    .venv/bin/python benchmarks/bench_peers.py --rounds 5 --runs 40

Steps: (1) timm models are exported to .pt2 in the timm side venv (~/timm-venv, benchmarks/timm_export.py; timm
never enters the project venv), with non-trivial weights (no exact zeros, BN statistics from passes); (2) here,
each .pt2 is lowered to an ExecuTorch XNNPACK fp32 .pte and converted to an fp32 .tflite with litert-torch, and
our model is converted by the converter pipeline with the zoo benchmark's realistic weights (bench_zoo.py's
bundles, shared cache); (3) every model file is timed at 1 thread in a FRESH process, in interleaved rounds
(round 1: every file, round 2: every file, ...) so that a burst of load on a shared machine hits both sides; the
XNNPACK GEMM peak is measured in each round the same way; (4) the result per file is the median of its round
medians, and the ratios come from the same run. Writes benchmarks/results/peers.json and peers.md with the
machine, versions and the load average seen during the run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent
TIMM_PY = Path.home() / "timm-venv" / "bin" / "python"
QUICK = [("mobilevit_xxs", 256), ("mobilevitv2_050", 256), ("levit_128s", 224)]
MORE = [("mobilevit_xs", 256), ("mobilevitv2_100", 256), ("efficientnet_lite0", 224)]
MARK = "EDGE_SDK_PEERS "
RUNTIMES = ("executorch-fp32", "litert-fp32")
BUSY_LOAD = 1.5  # 1-minute load average above which something besides the one timed process ran


# ---- workers (fresh processes) ------------------------------------------------------------------------------------

def smooth_input(size: int, nhwc: bool = False):  # noqa: ANN201
    """An image-like normalized input (a smooth random field): i.i.d. noise can overflow attention blocks."""
    import cv2
    import numpy as np
    rng = np.random.default_rng(0)
    x = np.stack([cv2.resize(rng.standard_normal((8, 8)).astype(np.float32), (size, size),
                             interpolation=cv2.INTER_LINEAR) for _ in range(3)])[None]
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1) if nhwc else x)


def time_worker(path: str, size: int, threads: int, warmup: int, runs: int) -> None:
    """Load one model file with its runtime, time `runs` calls, print the latencies."""
    from edge_sdk.runtime.engines import open_executorch, open_tflite
    run = open_executorch(path, threads=threads) if path.endswith(".pte") else open_tflite(path, threads=threads)
    x = smooth_input(size)
    if path.endswith(".tflite"):  # int8 I/O files take the quantized input
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter
        detail = Interpreter(model_path=path).get_input_details()[0]
        scale, zero = detail["quantization"]
        if np.dtype(detail["dtype"]).kind in "iu" and scale:
            info = np.iinfo(detail["dtype"])
            x = np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    print(MARK + json.dumps({"median_ms": statistics.median(times), "min_ms": min(times),
                             "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))]}), flush=True)


def convert_timm_worker(pt2: str, size: int) -> None:
    """timm .pt2 -> XNNPACK fp32 .pte and litert fp32 .tflite next to it; prints what failed and why."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edge_sdk.bundle import atomic_write
    ep = torch.export.load(pt2)
    out = {}
    pte, tfl = Path(pt2).with_suffix(".pte"), Path(pt2).with_suffix(".tflite")
    try:
        edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
        atomic_write(pte, edge.to_executorch().buffer)
        from edge_sdk.converters.executorch import delegation_report
        rep = delegation_report(edge, "xnnpack")
        out["executorch-fp32"] = {"file": str(pte), "delegated_subgraphs": rep["delegated_subgraphs"],
                                  "delegated_ops": rep["delegated_ops"], "non_delegated": rep["non_delegated"]}
    except Exception as exc:  # a peer that fails to convert is a result, not a crash
        out["executorch-fp32"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    try:
        import litert_torch
        model = litert_torch.convert(ep.module(), (torch.randn(1, 3, size, size),))
        model.export(str(tfl))
        out["litert-fp32"] = {"file": str(tfl)}
    except Exception as exc:
        out["litert-fp32"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    print(MARK + json.dumps(out), flush=True)


# ---- the parent ---------------------------------------------------------------------------------------------------

def _child(args: list[str], timeout: float = 3600, threads: int = 1) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith(MARK)), None)
    if line is None:
        tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:300]
        return {"error": f"worker exit {proc.returncode}: {tail}"}
    return json.loads(line[len(MARK):])


def export_timm(models: list[tuple[str, int]], work: Path, log) -> dict[str, dict]:  # noqa: ANN001
    """Run timm_export.py in the timm venv; returns {name: meta}."""
    if not TIMM_PY.exists():
        raise SystemExit(f"needs the timm side venv at {TIMM_PY} (docs/TOOLCHAIN.md)")
    todo = [f"{n}:{s}" for n, s in models if not (work / f"{n}.pt2").exists()]
    if todo:
        log(f"exporting timm {', '.join(todo)} in {TIMM_PY.parent.parent}")
        proc = subprocess.run([str(TIMM_PY), str(ROOT / "timm_export.py"), str(work), *todo], capture_output=True,
                              text=True, timeout=3600)
        if proc.returncode != 0:
            raise SystemExit(f"timm export failed: {proc.stderr.strip().splitlines()[-1:]}")
    return {n: json.loads((work / f"{n}.json").read_text()) for n, _ in models}


def timm_files(models: list[tuple[str, int]], work: Path, log) -> dict[tuple[str, str], dict]:  # noqa: ANN001
    out = {}
    for name, size in models:
        cache = work / f"{name}.convert.json"
        if not cache.exists():
            log(f"converting timm {name}")
            cache.write_text(json.dumps(_child(["--convert-timm", str(work / f"{name}.pt2"), str(size)])))
        res = json.loads(cache.read_text())
        for rt in RUNTIMES:
            out[(name, rt)] = res.get(rt, {"error": res.get("error", "not converted")})
    return out


def our_files(models: list[tuple[str, int]], work: Path, log) -> dict[tuple[str, str], dict]:  # noqa: ANN001
    """Our fp32 bundles (bench_zoo.py's realistic weights and conversion, cached in its work folder)."""
    sys.path.insert(0, str(ROOT))
    import bench_zoo
    out = {}
    for name, _ in models:
        bundles = bench_zoo.convert_variants(name, work, log, labels=RUNTIMES)
        for rt in RUNTIMES:
            if rt in bundles:
                from edge_sdk.bundle import read_bundle
                b = read_bundle(bundles[rt])
                out[(name, rt)] = {"file": str(b.model_file), "macs": b.manifest.model.macs,
                                   "params": b.manifest.model.params}
            else:
                out[(name, rt)] = {"error": "conversion failed (see log)"}
    return out


def measure_rounds(files: dict[tuple[str, str, str], dict], sizes: dict[str, int], rounds: int, warmup: int,
                   runs: int, peak_pte: Path, log) -> tuple[dict, list[float]]:  # noqa: ANN001
    """Interleaved rounds: every file once per round, each in a fresh process; the GEMM peak once per round."""
    samples: dict[tuple[str, str, str], list[float]] = {k: [] for k, v in files.items() if "file" in v}
    peaks = []
    for r in range(rounds):
        peak = _child(["--peak-worker", str(peak_pte)])
        if "gmacs_per_s" in peak:
            peaks.append(peak["gmacs_per_s"])
        for key in samples:
            res = _child(["--time-worker", files[key]["file"], str(sizes[key[0]]), "1", str(warmup), str(runs)])
            if "median_ms" in res:
                samples[key].append(res["median_ms"])
            else:
                files[key]["error"] = res.get("error")
        log(f"round {r + 1}/{rounds} done (peak {peaks[-1] if peaks else float('nan'):.1f} GMAC/s)")
    return samples, peaks


def peak_worker(pte: str) -> None:
    from edge_sdk.profile import measure_gemm
    print(MARK + json.dumps({"gmacs_per_s": measure_gemm(Path(pte), 1)}), flush=True)


def report(models, files, samples, peaks, timm_meta, loads) -> tuple[dict, str]:  # noqa: ANN001
    from edge_sdk.bench import machine_info
    peak = statistics.median(peaks) if peaks else None
    rows = []
    for name, _ in models:
        for rt in RUNTIMES:
            row = {"model": name, "runtime": rt}
            for who, macs in (("ours", files[(name, rt, "ours")].get("macs")), ("timm", timm_meta[name]["macs"])):
                f = files[(name, rt, who)]
                s = samples.get((name, rt, who)) or []
                ms = statistics.median(s) if s else None
                row[who] = {"ms": ms, "rounds_ms": s, "macs": macs, "error": None if s else f.get("error"),
                            "pct_of_peak": 100 * macs / (ms * 1e6) / peak if ms and macs and peak else None}
            o, t = row["ours"]["ms"], row["timm"]["ms"]
            row["timm_over_ours"] = t / o if o and t else None
            rows.append(row)
    meta = {"machine": machine_info(), "peak_gmacs_per_s_1t": peak, "peak_rounds": peaks,
            "load_average_during_run": loads, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "timm": next(iter(timm_meta.values()))["timm"] if timm_meta else None}
    lines = [f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores; "
             + ", ".join(f"{k} {v}" for k, v in meta["machine"]["versions"].items()) + f"; timm {meta['timm']}",
             "", f"1 thread, fp32; every file timed in a fresh process, {len(peaks)} interleaved rounds, median of the "
             f"round medians. XNNPACK GEMM peak in the same run: {peak or float('nan'):.1f} GMAC/s. Load average "
             f"(1 min) during the run: {', '.join(f'{x:.1f}' for x in loads)} on {meta['machine']['cores']} cores"
             + (" - NOT a quiet machine: compare within a row, not across runs." if max(loads) > BUSY_LOAD
                else " (the measuring process itself is 1.0: nothing else ran)."), "",
             "| model | runtime | ours ms | timm ms | timm / ours | ours % of peak | timm % of peak |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        def cell(side: dict) -> str:
            return f"{side['ms']:.2f}" if side["ms"] else f"fails: {str(side['error'])[:60]}"
        ratio = f"{r['timm_over_ours']:.2f}x" if r["timm_over_ours"] else ""
        pct = [f"{s['pct_of_peak']:.0f}%" if s["pct_of_peak"] else "" for s in (r["ours"], r["timm"])]
        lines.append(f"| {r['model']} | {r['runtime']} | {cell(r['ours'])} | {cell(r['timm'])} | {ratio} | "
                     f"{pct[0]} | {pct[1]} |")
    return {**meta, "results": rows}, "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--all", action="store_true", help="Also mobilevit_xs, mobilevitv2_100 and efficientnet_lite0.")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--work", type=Path, default=ROOT / ".work")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    ap.add_argument("--time-worker", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--convert-timm", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--peak-worker", nargs=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    from edge_sdk.cli import quiet_toolchain_logs
    quiet_toolchain_logs()
    if args.time_worker:
        p, size, threads, warmup, runs = args.time_worker
        time_worker(p, int(size), int(threads), int(warmup), int(runs))
        return 0
    if args.convert_timm:
        convert_timm_worker(args.convert_timm[0], int(args.convert_timm[1]))
        return 0
    if args.peak_worker:
        peak_worker(args.peak_worker[0])
        return 0

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    models = QUICK + (MORE if args.all else [])
    sizes = dict(models)
    tw = args.work / "timm"
    tw.mkdir(parents=True, exist_ok=True)
    loads = [os.getloadavg()[0]]
    timm_meta = export_timm(models, tw, log)
    files = {(n, rt, "timm"): v for (n, rt), v in timm_files(models, tw, log).items()}
    files.update({(n, rt, "ours"): v for (n, rt), v in our_files(models, args.work, log).items()})
    from edge_sdk.profile import build_gemm_pte
    peak_pte = args.work / "gemm_256x2048x2048.pte"
    if not peak_pte.exists():
        build_gemm_pte(peak_pte)
    loads.append(os.getloadavg()[0])
    samples, peaks = measure_rounds(files, sizes, args.rounds, args.warmup, args.runs, peak_pte, log)
    loads.append(os.getloadavg()[0])
    data, md = report(models, files, samples, peaks, timm_meta, loads)
    write_results(args.out, "peers", data, md, log)
    return 0


def write_results(out: Path, stem: str, data: dict, md: str, log: Callable[[str], None]) -> None:
    """<stem>.json and <stem>.md under `out`, atomically; the table printed (also used by bench_fold.py)."""
    from edge_sdk.bundle import atomic_write
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / f"{stem}.json", json.dumps(data, indent=2, default=str) + "\n")
    atomic_write(out / f"{stem}.md", md)
    print(md)
    log(f"wrote {out}/{stem}.json, {stem}.md")


if __name__ == "__main__":
    sys.exit(main())
