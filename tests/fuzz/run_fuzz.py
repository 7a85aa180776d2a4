"""`make fuzz`: the long fuzz run (>= 5,000 mutants per runtime), the measurements behind the defences, atheris.

    python tests/fuzz/run_fuzz.py [--mutants 5000] [--seed 2026] [--out benchmarks/results/fuzz.md]

Writes the counts per corpus (ok / refused / traceback / crash / hang), which defence stops which crash (the same
.pte mutants with the pip pybindings' log sink, and with Minimal instead of InternalConsistency verification), and
the atheris runs, with the machine and library versions, to benchmarks/results/fuzz.md. Exit 1 when any default
run had a crash, hang or traceback, or a pickle payload ran.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzzlib  # noqa: E402

HARNESS = Path(__file__).resolve().parent / "atheris_harness.py"


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    versions = []
    for pkg in ("executorch", "ai-edge-litert", "torch", "opencv-python-headless", "pillow", "atheris"):
        try:
            versions.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            versions.append(f"{pkg} (not installed)")
    return f"{platform.system()} {platform.machine()}, {cpu}, Python {platform.python_version()}; {', '.join(versions)}"


def atheris_run(kind: str, work: Path, seconds: int, env: dict) -> str:
    corpus = work / f"corpus-{kind}"
    cmd = [sys.executable, str(HARNESS), kind, str(corpus), f"-max_total_time={seconds}", "-print_final_stats=1",
           f"-artifact_prefix={work}/"]
    try:
        import atheris  # noqa: F401
    except ImportError as exc:
        return f"| {kind} | not run: atheris does not import ({exc}) | |"
    t = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=fuzzlib.ROOT)
    runs = next((ln.split(":")[-1].strip() for ln in proc.stderr.splitlines() if "stat::number_of_executed_units" in ln),
                "?")
    verdict = "0 findings" if proc.returncode == 0 else f"FINDING (exit {proc.returncode}): {proc.stderr[-400:]}"
    return f"| {kind} | {runs} inputs in {time.time() - t:.0f} s | {verdict} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", type=int, default=5000, help="mutants per runtime (images: the same; checkpoints: 1/5)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--variant-mutants", type=int, default=200, help=".pte mutants for each defence measurement")
    ap.add_argument("--atheris-seconds", type=int, default=45)
    ap.add_argument("--out", type=Path, default=fuzzlib.ROOT / "benchmarks" / "results" / "fuzz.md")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edge-sdk-fuzz-"))
    t0 = time.time()
    bundles = {t: fuzzlib.convert_tiny(t, work / "bundles") for t in ("executorch", "tflite")}
    sentinel = work / "PAYLOAD_RAN"
    tiny = fuzzlib.ROOT / "tests" / "assets" / "tiny" / "levit_tiny.pt"
    runs = [("ExecuTorch .pte (load_bundle + predict)", "bundle", bundles["executorch"], args.mutants, {}),
            ("LiteRT .tflite (load_bundle + predict)", "bundle", bundles["tflite"], args.mutants, {}),
            ("images (read_image + predict)", "image", bundles["tflite"], args.mutants, {}),
            ("checkpoints (model_from_checkpoint)", "checkpoint", tiny, max(300, args.mutants // 5), {}),
            ("ExecuTorch .pte, probe process off (EDGE_SDK_PTE_PROBE=0)", "bundle", bundles["executorch"],
             args.mutants, {"EDGE_SDK_PTE_PROBE": "0"})]
    variants = [(".pte, no probe, pip pybindings log sink (before the fix)", {"FUZZ_PYTHON_LOG_SINK": "1",
                                                                            "EDGE_SDK_PTE_PROBE": "0"}),
                (".pte, no probe, safe sink, Verification.Minimal", {"FUZZ_VERIFICATION": "Minimal",
                                                                     "EDGE_SDK_PTE_PROBE": "0"})]
    rows, failed = [], False
    for title, kind, src, n, env in runs:
        r = fuzzlib.run_mutants(kind, str(src), args.seed, n, work / f"run{len(rows)}", per_child=1000,
                                sentinel=sentinel, env=env)
        print(r.line(), flush=True)
        bad = r.counts["crash"] + r.counts["hang"] + r.counts["traceback"] + r.stderr_tracebacks
        failed |= bad > 0 and not env  # the probe-off row measures what the probe is for
        rows.append((title, r))
        (work / f"{kind}-{src.name}-bad.json").write_text(json.dumps(r.bad, indent=1))
    vrows = []
    for title, env in variants:
        r = fuzzlib.run_mutants("bundle", str(bundles["executorch"]), args.seed, args.variant_mutants,
                                work / ("variant-" + str(len(vrows))), env=env)
        print(title, r.line(), flush=True)
        vrows.append((title, r))
    payload_ran = sentinel.exists()
    failed |= payload_ran
    env = {**__import__("os").environ, "EDGE_SDK_FUZZ_BUNDLE": str(bundles["tflite"])}
    arows = [atheris_run(k, work, args.atheris_seconds, env) for k in ("manifest", "image")]
    failed |= any("FINDING" in a for a in arows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, vrows, arows, payload_ran, args, time.time() - t0), encoding="utf-8")
    print(f"wrote {args.out} ({time.time() - t0:.0f} s); work files in {work}")
    return 1 if failed else 0


def _cells(r: fuzzlib.FuzzReport) -> str:
    return " | ".join(str(r.counts.get(k, 0)) for k in fuzzlib.OUTCOMES)


def render(rows, vrows, arows, payload_ran, args, seconds) -> str:  # noqa: ANN001
    head = "| corpus | mutants | ok | refused (one error line) | traceback | native crash | hang | s |\n|---|---|---|---|---|---|---|---|\n"
    lines = [f"# Fuzz results (`make fuzz`, tests/fuzz/run_fuzz.py)", "",
             f"Run {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, seed {args.seed}, {seconds / 60:.1f} min "
             f"(niced, on a shared 2-core machine).", f"Machine: {machine()}.", "",
             "Each mutant is a real bundle of the tiny trained LeViT (`edge-sdk convert tests/assets/tiny/levit_tiny.pt`)"
             " with its model file truncated, byte-flipped (whole file and the program / delegate flatbuffers), "
             "overwritten at a random offset, given boundary integers, or replaced by a header-valid random body, "
             "and the manifest sha256 updated to match; or an image (PNG header bombs up to 2^32-1 per side, "
             "truncated/flipped PNG, JPEG, CMYK JPEG, 16-bit PNG, BMP, WebP, TIFF, zero-size, directories); or a "
             "checkpoint (truncated, flipped, random, `__reduce__` pickles in zip and raw format, hostile metadata, "
             "edited state dicts). Many mutants run in one child process; a child that dies marks its current "
             "mutant as a native crash and a new child continues.", "", "## Default configuration (what ships)", "",
             head + "\n".join(f"| {t} | {r.total} | {_cells(r)} | {r.seconds:.0f} |" for t, r in rows), "",
             f"Pickle payloads executed: {'YES' if payload_ran else 0} (a sentinel file the payloads would create "
             "never appeared). Tracebacks on child stderr: "
             f"{sum(r.stderr_tracebacks for _, r in rows)}.", "",
             "## Which defence stops the .pte aborts", "",
             f"The same seed's first {args.variant_mutants} .pte mutants with one defence switched off "
             "(tests/fuzz/worker.py FUZZ_PYTHON_LOG_SINK / FUZZ_VERIFICATION):", "",
             head + "\n".join(f"| {t} | {r.total} | {_cells(r)} | {r.seconds:.0f} |" for t, r in vrows), "",
             "## atheris (coverage-guided, tests/fuzz/atheris_harness.py)", "",
             "| target | inputs | result |\n|---|---|---|", *arows, ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
