"""`edge-sdk quickstart` (what `make demo` runs): the whole edge-sdk flow on this machine, end to end.

1. list the zoo and run every standard model once (shape check, params, MACs);
2. convert one zoo model to every target (ExecuTorch XNNPACK fp32 + int8, Core ML fp16, TFLite fp32) and
   validate every bundle from the bundle alone on decoded images;
3. benchmark the runnable bundles against the 50 ms per-frame budget.
Outputs go to `demo-out/` (bundles). Exit code 1 when a step misses its threshold.
Why a command and not a script inside the library: `make demo` then exercises the same entry point a user types,
and `edge-sdk quickstart --help` documents it. Needs the [convert] extra (it converts).
"""
from __future__ import annotations

import time
from pathlib import Path

from edge_sdk.output import console, human_count, print_table


def run_zoo() -> list[dict]:
    """Instantiate and run every standard model once at its deploy input size."""
    import torch

    from edge_sdk.models import count_macs, count_params, create_model, get_entry, list_models
    rows = []
    for name in list_models(include_tiny=False):
        model = create_model(name).eval()
        (x,) = model.example_inputs(1)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model(x)
        ms = (time.perf_counter() - t0) * 1e3
        assert out.shape == (1, 1000), name
        rows.append({"name": name, "family": get_entry(name).family, "params": count_params(model),
                     "macs": count_macs(model), "input": x.shape[-1], "eager_ms": ms})
    print_table("zoo: every standard model, one forward pass (PyTorch eager, first call)",
                ["model", "family", "params", "MACs", "input", "first call ms"],
                [(r["name"], r["family"], human_count(r["params"]), human_count(r["macs"]), r["input"],
                  f"{r['eager_ms']:.0f}") for r in rows])
    return rows


DEMO_CONVERSIONS = (  # (target, precision)
    ("executorch", "fp32"), ("executorch", "int8"), ("tflite", "fp32"), ("tflite", "dynamic_int8"),
    ("coreml", "fp16"),
)


def run_convert(model: str, out: Path) -> list[Path]:
    """Convert `model` to every target; the pipeline checks parity and writes it into each manifest."""
    from edge_sdk.converters import ConvertOptions
    from edge_sdk.converters.pipeline import convert
    bundles = []
    for target, precision in DEMO_CONVERSIONS:
        results = convert(model, target, ConvertOptions(precision=precision), out, force=True)
        bundles += [r.bundle for r in results]
    return bundles


def run_validate(bundles: list[Path]) -> bool:
    """Re-run parity from each bundle alone (what an app team would do after receiving it)."""
    from edge_sdk.parity import summary
    from edge_sdk.validate import validate_bundle
    ok, rows = True, []
    for b in bundles:
        rep = validate_bundle(b)
        ok &= rep["passed"]
        rows.append((b.name, rep["parity"]["status"], summary(rep["parity"])
                     if rep["parity"]["status"] != "not_run" else rep["parity"]["reason"]))
    print_table("validate: parity re-run from each bundle alone", ["bundle", "parity", "detail"], rows)
    return ok


def run_bench(bundles: list[Path], budget_ms: float) -> bool:
    """Benchmark every bundle that can execute here (Core ML needs macOS) against the budget, 1 thread."""
    from edge_sdk.bench import bench_and_report
    from edge_sdk.bundle import read_bundle
    runnable = [b for b in bundles if read_bundle(b).target != "coreml"]
    return bench_and_report(runnable, budget_ms=budget_ms, threads=(1,))


def run(model: str = "levit_128s", out: Path = Path("demo-out"), budget_ms: float = 50.0) -> bool:
    """The three steps; True when every threshold was met."""
    console.rule("1/3 the zoo")
    run_zoo()
    console.rule(f"2/3 convert {model} to every target, then validate")
    bundles = run_convert(model, Path(out))
    ok = run_validate(bundles)
    console.rule(f"3/3 benchmark against the {budget_ms:g} ms budget")
    ok &= run_bench(bundles, budget_ms)
    console.print("[green]quickstart passed[/green]" if ok else "[red]quickstart: a threshold was missed[/red]")
    return ok
