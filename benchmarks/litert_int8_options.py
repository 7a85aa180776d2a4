#!/usr/bin/env python
"""LiteRT int8 options against fp32, per model, timed in one run (docs/benchmarks.md, "int8 that is faster").

    .venv/bin/python benchmarks/litert_int8_options.py                       # the five representative models
    .venv/bin/python benchmarks/litert_int8_options.py --models pbhybrid_tiny --rounds 5

From each model's fp32 .tflite (bench_zoo.py's bundle: realistic weights) it builds the variants below, counts
XNNPACK partitions (edge_sdk.profile.xnnpack_outside), measures cosine vs fp32 on smooth random inputs, and times
every file at 1 thread in fresh processes, in interleaved rounds (bench_peers.py's worker):
- fp32: litert-torch as is;  fp32-onepart: + converters/tflite_xnnpack.py (what `convert` now writes);
- int8-islands: static int8 with only the zero-risk DIVs float (the converter before this change);
- int8: static int8 + every op XNNPACK leaves outside in int8 kept float (what `convert` now writes);
- dynamic_int8: dynamic-range int8 weights.
Calibration here is 16 smooth random fields (the converter uses real or generated images); parity with the
real bars is the converter's job, this script measures speed and partitions. Writes benchmarks/results/
litert_int8.json and .md.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MODELS = {"levit_128s": 224, "mobilevit_xxs": 256, "mobilevitv2_050": 256, "pbhybrid_tiny": 224, "cctt_tiny": 224}


def _sample(size: int, seed: int):  # noqa: ANN202
    import cv2
    import numpy as np
    r = np.random.default_rng(seed)
    return np.stack([cv2.resize(r.standard_normal((8, 8)).astype(np.float32), (size, size)) for _ in range(3)])[None]


def variants(fp32_path: Path, size: int, out: Path) -> dict[str, Path]:
    from ai_edge_quantizer import quantizer

    from edge_sdk.converters import tflite as T
    from edge_sdk.converters.tflite_xnnpack import one_xnnpack_partition
    raw = fp32_path.read_bytes()
    fixed, _ = one_xnnpack_partition(raw)
    files = {"fp32": raw, "fp32-onepart": fixed}
    inp = T._input_name(fixed)
    with contextlib.redirect_stderr(io.StringIO()):
        qsvs = T.calibrate_min_max(fixed, T._recipe("int8"), {T.SIGNATURE: [{inp: _sample(size, s)}
                                                                              for s in range(16)]})
        kept = T.zero_risk_divisions(fixed, qsvs)
        q = quantizer.Quantizer(bytearray(fixed))
        q.load_quantization_recipe(T._recipe("int8", kept))
        files["int8-islands"] = bytes(q.quantize(qsvs, enable_progress_bar=False,
                                                 enable_progress_report=False).quantized_model)
        files["int8"] = bytes(T._quantize_one_partition(fixed, qsvs, list(kept)).quantized_model)
        q = quantizer.Quantizer(bytearray(raw))
        q.load_quantization_recipe(T._recipe("dynamic_int8"))
        files["dynamic_int8"] = bytes(q.quantize(None, enable_progress_bar=False,
                                                 enable_progress_report=False).quantized_model)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for k, data in files.items():
        paths[k] = out / f"{k}.tflite"
        paths[k].write_bytes(data)
    return paths


def cosine(ref: Path, other: Path, size: int) -> float:
    import numpy as np

    from edge_sdk.runtime.engines import open_tflite
    from ai_edge_litert.interpreter import Interpreter

    def run(path: Path):  # noqa: ANN202
        fn = open_tflite(path, threads=1)
        d_in = Interpreter(model_path=str(path)).get_input_details()[0]
        d_out = Interpreter(model_path=str(path)).get_output_details()[0]
        ys = []
        for s in range(6):
            x = _sample(size, 100 + s)
            scale, zero = d_in["quantization"]
            if np.dtype(d_in["dtype"]).kind in "iu" and scale:
                x = np.clip(np.round(x / scale) + zero, -128, 127).astype(d_in["dtype"])
            y = fn(x).astype(np.float32).ravel()
            scale, zero = d_out["quantization"]
            if np.dtype(d_out["dtype"]).kind in "iu" and scale:
                y = (y - zero) * scale
            ys.append(y)
        return ys
    a, b = run(ref), run(other)
    return float(np.mean([np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v) for u, v in zip(a, b)]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--work", type=Path, default=ROOT / ".work")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args()
    from edge_sdk.cli import quiet_toolchain_logs
    quiet_toolchain_logs()
    sys.path.insert(0, str(ROOT))
    import bench_peers
    import bench_zoo
    from edge_sdk.bench import machine_info
    from edge_sdk.bundle import atomic_write, read_bundle
    from edge_sdk.profile import tflite_partitions

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    names = args.models.split(",")
    files: dict[tuple[str, str], Path] = {}
    meta: dict[tuple[str, str], dict] = {}
    loads = [os.getloadavg()[0]]
    for name in names:
        bundle = bench_zoo.convert_variants(name, args.work, log, labels=("litert-fp32",))["litert-fp32"]
        paths = variants(read_bundle(bundle).model_file, MODELS[name], args.work / "litert-int8" / name)
        for k, p in paths.items():
            files[(name, k)] = p
            meta[(name, k)] = {**tflite_partitions(p, 1), "cos_vs_fp32": cosine(paths["fp32"], p, MODELS[name]),
                               "size_mb": p.stat().st_size / 1e6}
        log(f"{name}: variants built")
    samples: dict[tuple[str, str], list[float]] = {k: [] for k in files}
    for r in range(args.rounds):
        for key, path in files.items():
            res = bench_peers._child(["--time-worker", str(path), str(MODELS[key[0]]), "1", "3", str(args.runs)])
            if "median_ms" in res:
                samples[key].append(res["median_ms"])
        loads.append(os.getloadavg()[0])
        log(f"round {r + 1}/{args.rounds} done")
    rows = []
    for (name, k), s in samples.items():
        fp32 = statistics.median(samples[(name, "fp32")]) if samples[(name, "fp32")] else None
        ms = statistics.median(s) if s else None
        rows.append({"model": name, "variant": k, "ms": ms, "rounds_ms": s, "speedup_vs_fp32": fp32 / ms if ms and fp32
                     else None, **meta[(name, k)]})
    machine = machine_info()
    lines = [f"Machine: {machine['cpu']}, {machine['cores']} cores; "
             + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()), "",
             f"1 thread; fresh process per file, {args.rounds} interleaved rounds, median of round medians. Load "
             f"average (1 min) during the run: {', '.join(f'{x:.1f}' for x in loads)}.", "",
             "| model | variant | ms | vs fp32 | XNNPACK partitions | ops outside XNNPACK | cos vs fp32 | MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        outside = ", ".join(f"{k} x{v}" for k, v in r["outside_by_op"].items()) or "0"
        lines.append(f"| {r['model']} | {r['variant']} | {r['ms'] or float('nan'):.2f} | "
                     f"{r['speedup_vs_fp32'] or float('nan'):.2f}x | {r['partitions']} | {outside} | "
                     f"{r['cos_vs_fp32']:.4f} | {r['size_mb']:.2f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "litert_int8.json", json.dumps({"machine": machine, "load_average": loads,
                                                            "results": rows}, indent=2, default=str) + "\n")
    atomic_write(args.out / "litert_int8.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
