"""Latency benchmark: every bundle x thread setting in its own fresh process, one comparison table, a budget gate.

Why fresh processes: ExecuTorch's thread pool can only be sized before the first program is loaded (resizing later
corrupted the heap), and eager PyTorch timings drift after `torch.export` ran in the same process. So the parent
spawns `python -m edge_sdk.bench --worker SPEC_JSON` per measurement; the worker prints one JSON result line.

Sources: a bundle directory, or `torch:MODEL_NAME` for the PyTorch eager reference of a zoo model (realistic random
weights, see edge_sdk.runtime.realistic; needs the [convert] extra).

Backends: this module is the `host` backend (`run_host`); `edge_sdk.android.run` is the `adb` backend (a phone,
timed by the runtime's own benchmark binary). Both take `(sources, device, BenchRequest)` and return result dicts
with the same fields, so `edge-sdk bench --device host|adb[:SERIAL]` prints, gates and exports them the same way.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from edge_sdk.bundle import atomic_write
from edge_sdk.machine import machine_info  # re-exported: benchmarks/ read it from here
from edge_sdk.errors import EdgeError, UsageError

RESULT_MARK = "EDGE_SDK_BENCH_RESULT "
TORCH_PREFIX = "torch:"
FIELDS = ("name", "target", "backend", "precision", "model", "macs", "threads", "e2e", "device", "import_ms",
          "load_ms", "first_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "throughput_fps",
          "peak_rss_mb", "runs", "warmup", "gmacs_per_s", "budget_ms", "within_budget", "runner", "error")


@dataclass(frozen=True)
class BenchRequest:
    """What every bench backend is asked to do (the sources and the device are passed beside it)."""

    threads: tuple[int, ...] = (1,)
    warmup: int = 5
    runs: int = 30
    budget_ms: float | None = 50.0
    e2e: bool = False
    show_progress: bool = True
    runner: Path | None = None  # adb backend: the phone-side benchmark binary
    runner_kind: str | None = None
    input_size: int | None = None  # torch:file.py:factory / torch:MODEL sources (issue 11)
    weights: str | None = None  # torch:file.py:factory: the user's state dict


@dataclass(frozen=True)
class BenchSpec:
    """One measurement: what to run, how many threads, how many runs, with or without image preprocessing."""

    source: str  # bundle path or "torch:MODEL"
    threads: int = 1
    warmup: int = 5
    runs: int = 30
    e2e: bool = False
    num_classes: int = 1000
    input_size: int | None = None
    weights: str | None = None  # torch:file.py:factory sources


# ---- the worker (runs inside the fresh process) ----------------------------------------------------------------

def _open(spec: BenchSpec):  # noqa: ANN202
    if spec.source.startswith(TORCH_PREFIX):
        import torch
        torch.set_num_threads(spec.threads)
        from edge_sdk.models import count_macs, create_model
        from edge_sdk.runtime import TorchPredictor
        from edge_sdk.runtime.realistic import fill_realistic_weights
        name = spec.source[len(TORCH_PREFIX):]
        from edge_sdk.converters.sources import SourceOptions, is_external, resolve_source
        if is_external(name):  # torch:model.pt2 / torch:file.py:factory (issue 11): the user's model as given
            weights = Path(spec.weights) if spec.weights else None
            model = resolve_source(name, SourceOptions(input_size=spec.input_size, weights=weights,
                                                       require_deploy=False)).model
        else:
            model = fill_realistic_weights(create_model(name, num_classes=spec.num_classes,
                                                        input_size=spec.input_size))
        meta = {"name": f"{name}-pytorch-eager-fp32", "target": "pytorch", "backend": "eager", "precision": "fp32",
                "model": name, "macs": count_macs(model)}
        return TorchPredictor(model, threads=spec.threads), meta
    from edge_sdk.runtime import load_bundle
    p = load_bundle(spec.source, threads=spec.threads)  # verifies sha256 too, as an app would
    return p, bundle_meta(p.bundle)


def bundle_meta(bundle: Any) -> dict[str, Any]:
    """The identifying fields of a bench result, from a read Bundle (shared by the host and adb backends)."""
    m = bundle.manifest
    return {"name": bundle.path.name, "target": m.target, "backend": m.backend, "precision": m.precision,
            "model": m.model.name, "macs": m.model.macs}


def _preimport(spec: BenchSpec) -> None:
    """Import the runtime's Python modules before timing the load: an app pays that once at start-up, not per
    model, and torch's import alone takes seconds on a busy machine."""
    import numpy  # noqa: F401
    if spec.source.startswith(TORCH_PREFIX):
        import torch  # noqa: F401
        return
    from edge_sdk.bundle import read_bundle
    target = read_bundle(spec.source, verify=False).manifest.target
    if target == "executorch":
        import torch  # noqa: F401
        from executorch.runtime import Runtime  # noqa: F401
    elif target == "tflite":
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401


def _frames(size: int, n: int = 8) -> list[bytes]:
    """JPEG-encoded camera-like frames (4:3, larger than the model input) to decode in the e2e loop."""
    import cv2
    from edge_sdk.data.synth import make_images
    side = max(2 * size, 128)
    images, _ = make_images(n, size=side, seed=7)
    frames = []
    for img in images:
        frame = cv2.resize(img, (side * 4 // 3, side))  # (H, W*4/3, 3)
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        frames.append(buf.tobytes())
    return frames


def _step_fn(predictor, e2e: bool):  # noqa: ANN001, ANN202
    """The timed unit of work: run on a ready tensor, or decode + preprocess + run a real frame."""
    import cv2
    import numpy as np
    size = predictor.input_size
    if not e2e:  # a real preprocessed image: random normal input can overflow attention blocks to inf/NaN
        frame = cv2.imdecode(np.frombuffer(_frames(size, n=1)[0], np.uint8), cv2.IMREAD_COLOR)
        x = predictor.preprocess([frame])
        return lambda i: predictor.run(x)
    frames = _frames(size)

    def step(i: int):  # noqa: ANN202
        img = cv2.imdecode(np.frombuffer(frames[i % len(frames)], np.uint8), cv2.IMREAD_COLOR)
        return predictor.run(predictor.preprocess([img]))
    return step


def measure(spec: BenchSpec) -> dict[str, Any]:
    """Load, first inference, warmup, timed runs: the numbers a mobile engineer asks for."""
    import resource

    t0 = time.perf_counter()
    _preimport(spec)
    import_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    predictor, meta = _open(spec)
    load_ms = (time.perf_counter() - t0) * 1e3
    step = _step_fn(predictor, spec.e2e)
    t0 = time.perf_counter()
    step(0)
    first_ms = (time.perf_counter() - t0) * 1e3
    for i in range(spec.warmup):
        step(i)
    times = []
    for i in range(spec.runs):
        t0 = time.perf_counter_ns()
        step(i)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    from edge_sdk.runtime.engines import executorch_threads
    meta["executorch_threads"] = executorch_threads()  # proves the pool was sized in this fresh process
    return {**meta, "threads": spec.threads, "e2e": spec.e2e, "device": "host", "import_ms": import_ms,
            "load_ms": load_ms,
            "first_ms": first_ms, **latency_stats(times), "peak_rss_mb": rss_mb, "runs": spec.runs,
            "warmup": spec.warmup}


def latency_stats(times_ms: Sequence[float]) -> dict[str, float]:
    import numpy as np
    t = np.asarray(times_ms, np.float64)
    mean = float(t.mean())
    return {"p50_ms": float(np.percentile(t, 50)), "p90_ms": float(np.percentile(t, 90)),
            "p99_ms": float(np.percentile(t, 99)), "mean_ms": mean, "std_ms": float(t.std()),
            "min_ms": float(t.min()), "max_ms": float(t.max()), "throughput_fps": 1e3 / mean if mean > 0 else None}


def _worker_main(spec_json: str) -> int:
    """Entry point of the fresh process: print one marked JSON line (result or error)."""
    spec = BenchSpec(**json.loads(spec_json))
    try:
        result = measure(spec)
    except EdgeError as exc:
        result = {"name": Path(spec.source).name, "threads": spec.threads, "error": str(exc)}
    sys.stdout.flush()
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


# ---- the parent ------------------------------------------------------------------------------------------------

def run_in_fresh_process(spec: BenchSpec, timeout_s: float = 1800) -> dict[str, Any]:
    """Run one measurement in a new interpreter; errors come back as a result with an `error` field."""
    env = dict(os.environ, OMP_NUM_THREADS=str(spec.threads), TF_CPP_MIN_LOG_LEVEL="2")
    env.setdefault("EDGE_SDK_PTE_PROBE", "0")  # the worker is already a throwaway process; a probe would skew load_ms
    cmd = [sys.executable, "-m", "edge_sdk.bench", "--worker", json.dumps(asdict(spec))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return _failed(spec, f"timed out after {timeout_s:.0f} s")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
    return _failed(spec, f"worker exited with code {proc.returncode}: {tail}")


def _failed(spec: BenchSpec, why: str) -> dict[str, Any]:
    return {"name": Path(spec.source).name, "threads": spec.threads, "e2e": spec.e2e, "error": why}


def check_sources(sources: Sequence[str]) -> None:
    """Fail fast on paths that are not bundles, before spawning anything."""
    from edge_sdk.bundle import read_bundle
    for s in sources:
        if not s.startswith(TORCH_PREFIX):
            read_bundle(s, verify=False)


def run_host(sources: Sequence[str], device: str, req: BenchRequest) -> list[dict[str, Any]]:
    """The host backend: each source x thread count measured in a fresh process on this machine."""
    if device != "host":
        raise UsageError(f"the host backend runs on this machine, not {device!r}")
    if req.runner is not None or req.runner_kind is not None:
        raise UsageError("--runner/--runner-kind are for --device adb; the host backend uses the Python runtimes")
    return run_benchmarks(sources, req.threads, req.warmup, req.runs, e2e=req.e2e, budget_ms=req.budget_ms,
                          show_progress=req.show_progress, input_size=req.input_size, weights=req.weights)


def run_benchmarks(sources: Sequence[str], threads: Sequence[int] = (1,), warmup: int = 5, runs: int = 30,
                   e2e: bool = False, budget_ms: float | None = 50.0, show_progress: bool = True,
                   num_classes: int = 1000, input_size: int | None = None,
                   weights: str | None = None) -> list[dict[str, Any]]:
    """Every source x thread count in a fresh process, with a progress bar; results get budget verdicts."""
    if not sources:
        raise UsageError("nothing to benchmark: give at least one bundle")
    if runs < 1 or warmup < 0 or any(t < 1 for t in threads):
        raise UsageError("need --runs >= 1, --warmup >= 0 and thread counts >= 1")
    check_sources(sources)
    specs = [BenchSpec(str(s), t, warmup, runs, e2e, num_classes, input_size, weights) for s in sources
             for t in threads]
    results = []
    with _progress(show_progress) as prog:
        task = prog.add_task("benchmarking", total=len(specs)) if prog else None
        for spec in specs:
            if prog:
                prog.update(task, description=f"{Path(spec.source).name} @ {spec.threads} thread(s)")
            results.append(apply_budget(run_in_fresh_process(spec), budget_ms))
            if prog:
                prog.advance(task)
    return results


class _NoProgress:
    def __enter__(self):  # noqa: ANN204
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress(enabled: bool):  # noqa: ANN202
    if not enabled:
        return _NoProgress()
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from edge_sdk.output import err_console
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=err_console, transient=True)


def gate_latency(r: dict[str, Any]) -> float | None:
    """The latency compared with the budget: p90, else the next most conservative figure the runner gave."""
    for key in ("p90_ms", "p95_ms", "p99_ms", "mean_ms"):
        if r.get(key) is not None:
            return float(r[key])
    return None


def apply_budget(r: dict[str, Any], budget_ms: float | None) -> dict[str, Any]:
    r = dict(r)
    r["budget_ms"] = budget_ms
    lat = gate_latency(r)
    r["within_budget"] = None if budget_ms is None or lat is None else lat <= budget_ms
    if r.get("macs") and r.get("mean_ms") and not r.get("e2e"):
        r["gmacs_per_s"] = r["macs"] / (r["mean_ms"] * 1e6)
    return r


def over_budget(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results that failed or whose p90 exceeds the budget (exit code 1 in `edge-sdk bench`)."""
    return [r for r in results if r.get("error") or r.get("within_budget") is False]


# ---- reporting ---------------------------------------------------------------------------------------------------

def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _p90_cell(r: dict[str, Any]) -> str:
    if r.get("p90_ms") is None and r.get("p95_ms") is not None:  # phone runners report p95, not p90
        return f"{r['p95_ms']:.2f} (p95)"
    return _fmt(r.get("p90_ms"))


def print_comparison(results: Sequence[dict[str, Any]], budget_ms: float | None) -> None:
    """One table: a row per bundle x threads, the budget verdict last."""
    from rich.console import Console
    from rich.table import Table

    from edge_sdk.output import console
    title = "latency (ms)" + (f", budget p90 <= {budget_ms:g} ms" if budget_ms is not None else "")
    cols = ["bundle", "thr", "load", "first", "p50", "p90", "p99", "mean", "std", "fps", "RSS MB", "budget"]
    rows = []
    for r in results:
        if r.get("error"):
            rows.append([r.get("name"), r.get("threads"), *["-"] * 9, f"ERROR: {r['error']}"])
            continue
        verdict = {True: "ok", False: "OVER", None: "-"}[r.get("within_budget")]
        rows.append([r["name"] + (" (e2e)" if r.get("e2e") else ""), r["threads"], _fmt(r.get("load_ms"), 1),
                     _fmt(r.get("first_ms")), _fmt(r.get("p50_ms")), _p90_cell(r), _fmt(r.get("p99_ms")),
                     _fmt(r.get("mean_ms")), _fmt(r.get("std_ms")), _fmt(r.get("throughput_fps"), 1),
                     _fmt(r.get("peak_rss_mb"), 0), verdict])
    table = Table(title=title)
    for c in cols:
        table.add_column(c, no_wrap=c != "bundle", overflow="fold")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    out = console if console.is_terminal else Console(width=160, highlight=False)  # pipes/CI: no narrow wrap
    out.print(table)


def write_json(path: Path, results: Sequence[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
    atomic_write(path, json.dumps({"machine": machine_info(), **(extra or {}), "results": list(results)},
                                   indent=2, default=str) + "\n")


def write_csv(path: Path, results: Sequence[dict[str, Any]]) -> None:
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(FIELDS), extrasaction="ignore")
    w.writeheader()
    for r in results:
        w.writerow({k: r.get(k) for k in FIELDS})
    atomic_write(path, buf.getvalue())


def bench_and_report(bundles: Sequence[str | Path], budget_ms: float = 50.0, threads: Sequence[int] = (1,),
                     warmup: int = 3, runs: int = 20, show_progress: bool = True, html: Path | None = None) -> bool:
    """For `make demo`: benchmark bundles against the budget, print the table (and, with `html`, write the
    self-contained HTML report); True when every p90 fits."""
    sources = [str(b) for b in bundles]
    results = run_benchmarks(sources, threads, warmup, runs, budget_ms=budget_ms, show_progress=show_progress)
    print_comparison(results, budget_ms)
    if html is not None:
        from edge_sdk.report_html import write_html_report
        write_html_report(html, results, sources, budget_ms)
        print(f"benchmark report: {Path(html).absolute()}")
    return not over_budget(results)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2]))
    sys.exit("usage: python -m edge_sdk.bench --worker SPEC_JSON (internal; use `edge-sdk bench`)")
