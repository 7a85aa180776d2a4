"""Benchmark bundles on an Android phone over adb with the runtimes' own benchmark binaries.

The Python runtimes do not run on a phone, so the measurement is delegated to the binary the runtime vendors ship:
LiteRT's `benchmark_model` (for .tflite bundles) or ExecuTorch's `executor_runner` (for .pte bundles, built with
XNNPACK for the phone's ABI). Both are user-supplied (`--runner PATH`); this module pushes the model file and the
binary to /data/local/tmp/edge-sdk/, runs it with the thread/run/warmup flags and parses its log into the same
result fields as a host benchmark. Needs a phone with USB debugging and `adb` (Android platform-tools) on PATH.

This is the `adb` bench backend: `run(sources, device, BenchRequest)`, the same signature as the host backend
(`edge_sdk.bench.run_host`), so `edge-sdk bench --device adb:SERIAL` reports, gates and exports identically.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Sequence

from edge_sdk.errors import EdgeError, UsageError

REMOTE_DIR = "/data/local/tmp/edge-sdk"
RUNNERS = {"benchmark_model": "tflite", "executor_runner": "executorch"}  # runner kind -> bundle target

_NUM = r"([0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
_TIMINGS = re.compile(rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, "
                      rf"Warmup \(avg\): {_NUM}, Inference \(avg\): {_NUM}")
_COUNT = re.compile(rf"count=(\d+) first={_NUM} curr={_NUM} min={_NUM} max={_NUM} avg={_NUM} std={_NUM}"
                    rf"(?: p5={_NUM} median={_NUM} p95={_NUM})?")
_MEMORY = [re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUM}"),
           re.compile(rf"Peak memory footprint \(MB\): init={_NUM} overall={_NUM}"),
           re.compile(rf"Memory footprint delta from the start of the tool \(MB\): init={_NUM} overall={_NUM}")]
_ET_DONE = re.compile(rf"Model executed successfully (\d+) time\(s\) in {_NUM} ms")


def parse_device(device: str) -> str | None:
    """'adb' -> None (the only connected phone), 'adb:SERIAL' -> SERIAL."""
    if device == "adb":
        return None
    if device.startswith("adb:") and len(device) > 4:
        return device[4:]
    raise UsageError(f"--device must be host, adb or adb:SERIAL; got {device!r}")


def runner_kind_of(runner: Path, kind: str | None) -> str:
    if kind:
        return kind
    for name in RUNNERS:
        if name in runner.name:
            return name
    raise UsageError(f"cannot tell which runner {runner.name} is; pass --runner-kind benchmark_model|executor_runner")


# ---- output parsers (pure functions, tested on recorded logs) ------------------------------------------------------

def parse_benchmark_model(log: str) -> dict[str, Any]:
    """LiteRT benchmark_model log -> result fields in ms / MB."""
    m = _TIMINGS.search(log)
    if not m:
        raise EdgeError(f"benchmark_model did not report timings: {_last_line(log)}")
    init, first, _warm, avg = (float(v) for v in m.groups())
    out: dict[str, Any] = {"load_ms": init / 1e3, "first_ms": first / 1e3, "mean_ms": avg / 1e3}
    counts = list(_COUNT.finditer(log))
    if counts:  # the last count= line is the timed phase (the first one is warmup)
        g = counts[-1].groups()
        out.update(min_ms=float(g[3]) / 1e3, max_ms=float(g[4]) / 1e3, std_ms=float(g[6]) / 1e3)
        if g[8] is not None:
            out.update(p50_ms=float(g[8]) / 1e3, p95_ms=float(g[9]) / 1e3)
    for pattern in _MEMORY:
        mm = pattern.search(log)
        if mm:
            out["peak_rss_mb"] = float(mm.groups()[-1])
            break
    return out


def parse_executor_runner(log: str) -> tuple[int, float]:
    """ExecuTorch executor_runner log -> (executions, total ms)."""
    m = _ET_DONE.search(log)
    if not m:
        raise EdgeError(f"executor_runner did not finish: {_last_line(log)}")
    return int(m.group(1)), float(m.group(2))


def _last_line(log: str) -> str:
    lines = [line for line in log.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


# ---- adb -----------------------------------------------------------------------------------------------------------

class Adb:
    """Thin wrapper: every call raises one EdgeError with adb's own message when it fails."""

    def __init__(self, serial: str | None) -> None:
        exe = shutil.which("adb")
        if exe is None:
            raise EdgeError("adb not found on PATH; install Android platform-tools and connect a phone with USB "
                            "debugging enabled")
        self.cmd = [exe] + (["-s", serial] if serial else [])

    def __call__(self, *args: str, timeout: float = 900) -> str:
        try:
            proc = subprocess.run(self.cmd + list(args), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EdgeError(f"adb {' '.join(args[:2])} timed out after {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise EdgeError(f"adb {' '.join(args[:2])} failed: {_last_line(proc.stderr + proc.stdout)}")
        return proc.stdout + proc.stderr

    def shell(self, command: str) -> str:
        return self("shell", command)


def _bench_one(adb: Adb, kind: str, remote_runner: str, remote_model: str, threads: int, warmup: int,
               runs: int) -> dict[str, Any]:
    if kind == "benchmark_model":
        log = adb.shell(f"{remote_runner} --graph={remote_model} --num_threads={threads} --warmup_runs={warmup} "
                        f"--num_runs={runs} --use_xnnpack=true --report_peak_memory_footprint=true")
        return parse_benchmark_model(log)
    # executor_runner has no warmup flag and reports only a total: one run for the first inference, one timed.
    _, first = parse_executor_runner(adb.shell(
        f"{remote_runner} --model_path={remote_model} --num_executions=1 --cpu_threads={threads}"))
    n, total = parse_executor_runner(adb.shell(
        f"{remote_runner} --model_path={remote_model} --num_executions={runs} --cpu_threads={threads}"))
    return {"first_ms": first, "mean_ms": total / max(n, 1)}


def run(sources: Sequence[str], device: str, req: Any) -> list[dict[str, Any]]:
    """The adb backend (`req` is an edge_sdk.bench.BenchRequest)."""
    return run_on_device(sources, device, req.runner, req.runner_kind, req.threads, req.warmup, req.runs,
                         req.budget_ms, e2e=req.e2e, show_progress=req.show_progress)


def run_on_device(bundles: Sequence[str], device: str, runner: Path | None, runner_kind: str | None,
                  threads: Sequence[int], warmup: int, runs: int, budget_ms: float | None, e2e: bool = False,
                  show_progress: bool = True) -> list[dict[str, Any]]:
    """Push each bundle's model file and the runner, run per thread count, parse into bench result dicts."""
    from edge_sdk.bench import apply_budget, bundle_meta
    from edge_sdk.bundle import read_bundle
    from edge_sdk.output import err_console
    serial = parse_device(device)
    if e2e:
        raise UsageError("--e2e measures host-side decoding; on a phone the runner times the model only")
    if runner is None:
        raise UsageError("--device adb needs --runner PATH (LiteRT benchmark_model or ExecuTorch executor_runner)")
    if not runner.is_file():
        raise UsageError(f"runner not found: {runner}")
    kind = runner_kind_of(runner, runner_kind)
    loaded = [read_bundle(b) for b in bundles]  # schema + sha256 before anything is pushed
    for b in loaded:
        if b.target != RUNNERS[kind]:
            raise UsageError(f"{b.path.name} is a {b.target} bundle; {kind} runs only {RUNNERS[kind]} bundles")
    adb = Adb(serial)
    adb.shell(f"mkdir -p {REMOTE_DIR}")
    remote_runner = f"{REMOTE_DIR}/{kind}"
    adb("push", str(runner), remote_runner)
    adb.shell(f"chmod 755 {remote_runner}")
    results = []
    for b in loaded:
        remote_model = f"{REMOTE_DIR}/{b.path.name}{b.model_file.suffix}"
        if show_progress:
            err_console.print(f"pushing {b.path.name} to {device}")
        adb("push", str(b.model_file), remote_model)
        for t in threads:
            if show_progress:
                err_console.print(f"running {kind} on {b.path.name} @ {t} thread(s)")
            r = _bench_one(adb, kind, remote_runner, remote_model, t, warmup, runs)
            meta = {**bundle_meta(b), "threads": t, "e2e": False, "device": device, "runner": kind,
                    "runs": runs, "warmup": warmup}
            mean = r.get("mean_ms")
            results.append(apply_budget({**meta, **r, "throughput_fps": 1e3 / mean if mean else None}, budget_ms))
    return results
