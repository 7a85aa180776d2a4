"""Per model: internal TRANSPOSE count in the fp32 .tflite, ExecuTorch XNNPACK fp32 delegation and parity, Core ML.

The issue's rule is "no TRANSPOSE inside the network" (TFLite) without breaking the other targets, so this prints
every number a layout rewrite can move, for a before/after comparison:

    .venv/bin/python benchmarks/transpose_check.py levit_tiny mobilevitv2_tiny          # tiny models
    .venv/bin/python benchmarks/transpose_check.py --coreml --json out.json levit_128s  # + Core ML convert

Parity is the .pte vs PyTorch eager on 4 seeded random inputs: max-abs / max|logit| (the zoo's bound is 1e-4).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

TINY = ("levit_tiny", "cctt_micro", "pbhybrid_micro", "mobilevitv2_tiny", "mobilevit_tiny")
STANDARD = ("levit_128s", "mobilevitv2_050", "mobilevit_xxs")


def tflite_transposes(model: torch.nn.Module, example: torch.Tensor, tmp: Path) -> dict:
    from edge_sdk.converters import tflite as T
    from edge_sdk.converters.tflite_report import build_report
    path = tmp / "m.tflite"
    path.write_bytes(T.convert_fp32(model, example, nhwc=True))
    rep = build_report(path)
    return {"internal_transpose": rep["internal_transpose_count"], "by_module": rep["transposes_by_module"],
            "reshape": rep["reshape_count"]}


def executorch_check(model: torch.nn.Module, example: torch.Tensor, tmp: Path) -> dict:
    from executorch.runtime import Runtime

    from edge_sdk.converters import executorch as E
    from edge_sdk.converters.base import ConvertOptions
    edge = E.lower(E.export_program(model, example), "xnnpack", ConvertOptions())
    rep = E.delegation_report(edge, "xnnpack")
    path = tmp / "m.pte"
    E.serialize(edge, path)
    method = Runtime.get().load_program(str(path)).load_method("forward")
    g = torch.Generator().manual_seed(3)
    ratio = 0.0
    for _ in range(4):
        x = torch.randn(example.shape, generator=g)
        with torch.no_grad():
            ref = model(x)
        out = method.execute([x])[0]
        ratio = max(ratio, float((out - ref).abs().max() / ref.abs().max()))
    return {"subgraphs": rep["delegated_subgraphs"], "non_delegated": rep["non_delegated"], "parity": ratio}


def coreml_check(model: torch.nn.Module, example: torch.Tensor) -> str:
    import coremltools as ct
    ep = torch.export.export(model, (example,)).run_decompositions({})
    ct.convert(ep, convert_to="milinternal", minimum_deployment_target=ct.target.iOS17)
    return "ok"


def check(name: str, coreml: bool) -> dict:
    from edge_sdk.models import create_model
    torch.manual_seed(0)
    model = create_model(name, num_classes=100).reparameterize().eval()
    example = model.example_inputs(1)[0]
    row: dict = {"model": name}
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        row.update(tflite_transposes(model, example, Path(d)))
        row.update(executorch_check(model, example, Path(d)))
        if coreml:
            try:
                row["coreml"] = coreml_check(model, example)
            except Exception as exc:  # report, keep measuring the others
                row["coreml"] = f"FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        row["seconds"] = round(time.time() - t0, 1)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help=f"default: {' '.join(TINY + STANDARD)}")
    ap.add_argument("--coreml", action="store_true", help="also convert with coremltools (MIL)")
    ap.add_argument("--json", type=Path, help="append one JSON row per model to this file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in args.models or TINY + STANDARD:
        row = check(name, args.coreml)
        print(f"{name:18s} transpose={row['internal_transpose']:3d} subgraphs={row['subgraphs']} "
              f"parity={row['parity']:.1e} outside={row['non_delegated']} coreml={row.get('coreml', '-')} "
              f"({row['seconds']} s)\n    by_module={row['by_module']}", flush=True)
        if args.json:
            with args.json.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
