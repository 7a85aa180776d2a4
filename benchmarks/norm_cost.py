"""Latency cost of the exact norms (models/norms.py: LayerNorm / GroupNorm(1) as convs, rsqrt, mul, add) against
the zoo's BatchNorm form (which folds away entirely at deploy time), for MobileViT v1/v2.

    nice -n 10 .venv/bin/python benchmarks/norm_cost.py [--models mobilevit_xxs,mobilevitv2_050] [--runs 30]

Each model x norm is converted to ExecuTorch XNNPACK fp32 and TFLite fp32 (same random-realistic weights; only
latency is compared), then timed with `edge-sdk bench` (each bundle in its own fresh process, 1 thread, one run
of --runs timed iterations after 5 warmups). Results: benchmarks/results/norm_cost.{json,md}, with the machine.
Numbers from a shared 2-core machine: compare rows of the same run, not across runs.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(models: list[str], out: Path, targets: tuple[str, ...] = ("executorch", "tflite")) -> list[Path]:
    import torch
    from edge_sdk.converters.base import ConvertOptions
    from edge_sdk.converters.pipeline import convert
    from edge_sdk.models import create_model
    from edge_sdk.runtime.realistic import fill_realistic_weights
    paths = []
    for name in models:
        for norm in ("bn", "exact"):
            torch.manual_seed(0)
            model = fill_realistic_weights(create_model(name, norm=norm), seed=0)
            model.name = f"{name}-{norm}"
            for target in targets:
                (res,) = convert(model, target, ConvertOptions(precision="fp32"), out, force=True,
                                 show_progress=False)
                paths.append(res.bundle)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilevit_xxs,mobilevitv2_050")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--targets", default="executorch,tflite")
    ap.add_argument("--bundles", type=Path, default=Path("/tmp/norm_cost_bundles"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "norm_cost")
    args = ap.parse_args()
    bundles = build(args.models.split(","), args.bundles, tuple(args.targets.split(",")))
    raw = args.out.with_suffix(".bench.json")
    subprocess.run([sys.executable, "-m", "edge_sdk.cli", "bench", *map(str, bundles), "--threads", "1",
                    "--runs", str(args.runs), "--budget-ms", "10000", "--json", str(raw), "--quiet"], check=False)
    print(report(raw, args.out))


def report(raw: Path, out: Path) -> str:
    """BN vs exact-norm rows side by side per model and runtime, from `edge-sdk bench --json` output."""
    data = json.loads(raw.read_text())
    results = data.get("results", data) if isinstance(data, dict) else data
    by = {}
    for r in results:  # name: MODEL-NORM-TARGET-BACKEND-PRECISION
        model, norm = r["model"].rsplit("-", 1)
        by.setdefault((model, r["target"]), {})[norm] = r
    lines = ["| model | runtime | BN p50 / p90 ms | exact p50 / p90 ms | exact / BN (p50) |", "|---|---|---|---|---|"]
    for (model, target), d in sorted(by.items()):
        bn, ex = d.get("bn"), d.get("exact")
        if not (bn and ex):
            continue
        lines.append(f"| {model} | {target} | {bn['p50_ms']:.2f} / {bn['p90_ms']:.2f} | {ex['p50_ms']:.2f} / "
                     f"{ex['p90_ms']:.2f} | {ex['p50_ms'] / bn['p50_ms']:.2f}x |")
    machine = data.get("machine") if isinstance(data, dict) else None
    out.with_suffix(".json").write_text(json.dumps({"rows": {f"{m}/{t}": d for (m, t), d in by.items()},
                                                    "machine": machine}, indent=1) + "\n")
    table = "\n".join(lines)
    out.with_suffix(".md").write_text(
        "# Exact norms vs BatchNorm (1 thread, fp32)\n\n`benchmarks/norm_cost.py`: same random-realistic weights, "
        "each bundle timed by `edge-sdk bench` in its own fresh process. The BN form folds into the convs at deploy "
        "time; the exact LayerNorm/GroupNorm(1) forms (models/norms.py) run as convs + rsqrt + mul + add.\n\n"
        + table + f"\n\nMachine: {json.dumps(machine)}\n")
    return table


if __name__ == "__main__":
    main()
